//! The control plane: this gateway as the Call Automation application ACS talks to.
//!
//! - `POST /acs/events` ([`webhook`]) takes Event Grid deliveries: the subscription
//!   handshake (both schemas) and `Microsoft.Communication.IncomingCall`. Deliveries carry a
//!   secret in the URL's query, compared in constant time.
//! - Each incoming call is matched against `[[acs.answer]]` ([`policy`]) and answered (media
//!   and transcription streamed to this gateway's own route, with the call's id), rejected or
//!   redirected through the Call Automation client (`mediagate-acs`).
//! - From the first webhook the call has its folder (held open by the control plane until ACS
//!   says it disconnected), which its sockets join: one call, one folder.
//! - `POST /acs/callbacks/{call}` takes the mid-call events, signed by ACS (a JWT checked by
//!   the upgrade tokens' validator). Each goes into the call's `events.jsonl`, to its
//!   processors (as a custom event `acs.<Type>`) and to the admin API's watchers; and drives
//!   the rule's [`attendant`].

mod attendant;
mod config;
mod policy;
mod webhook;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mediagate_acs::models::CommunicationIdentifier;
use mediagate_acs::{
    CallAutomationClient, ClientOptions, ConnectionString, Credential, TokenFrom, TokenSource,
};
use mediagate_protocol::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use url::Url;

pub use config::{AcsConfig, AnswerRule, AttendantConfig, AttendantMode, Channels, RuleAction};
pub(crate) use webhook::{callbacks, events};

use crate::AppState;
use crate::auth::CallbackVerifier;
use crate::session::{CallFolder, Identity};

/// The file of a call's control-plane events, one JSON object a line.
pub(crate) const EVENTS_FILE: &str = "events.jsonl";
/// The most lines written to one call's events.jsonl; past it, events are counted, not kept.
const MAX_EVENT_LINES: u64 = 4096;
/// The most bytes of one call's events.jsonl, likewise.
const MAX_EVENT_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// An event's data larger than this (as JSON) is kept as a note of its size instead (ACS's
/// are a few KiB).
const MAX_EVENT_DATA_BYTES: usize = 64 * 1024;
/// Event ids remembered per call, so a callback delivered twice is acted on once.
const SEEN_EVENTS: usize = 256;
/// Callbacks waiting for the call's task to act on them.
const ACTION_QUEUE: usize = 64;
/// The longest a connected call is held without any socket of its own (a rule that streams
/// nothing: ACS's recording, an attendant in ACS's voice), in case CallDisconnected is lost.
const MAX_HELD: Duration = Duration::from_secs(24 * 3600);
/// Events waiting for a socket task to hand them to its processors.
pub(crate) const INJECT_QUEUE: usize = 64;
/// Callback events kept per call for transports that join later.
const HISTORY: usize = 32;
/// Incoming calls remembered, so a redelivered event is not answered twice.
const REMEMBERED: usize = 4096;
/// How long an answered call may wait for `CallConnected`, and a call whose sockets closed for
/// `CallDisconnected`, before the control plane lets it go.
const SETTLE: Duration = Duration::from_secs(60);

/// What the control plane did with a call: session.json's `control`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ControlReport {
    /// The rule that decided.
    pub(crate) rule: String,
    /// `answered`, `rejected`, `redirected`, or `failed` (the request was refused).
    pub(crate) action: String,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) server_call_id: Option<String>,
    pub(crate) call_connection_id: Option<String>,
    pub(crate) connected_at: Option<Timestamp>,
    pub(crate) disconnected_at: Option<Timestamp>,
    /// Callbacks received (all of them, including those not kept past the events file's cap).
    pub(crate) callbacks: u64,
    /// Where the attendant transferred the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) transferred_to: Option<String>,
    /// The key the caller pressed for the attendant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
    /// Why a request failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// The control plane's state.
pub(crate) struct ControlPlane {
    pub(crate) config: AcsConfig,
    pub(crate) client: CallAutomationClient,
    /// Event Grid's secret; `None` only with `allow_unauthenticated_events`.
    events_secret: Option<Vec<u8>>,
    pub(crate) verifier: CallbackVerifier,
    public_url: Url,
    /// `[auth] mode = "secret"`: the secret each call's token in its transport URL is derived
    /// from (ACS sends no headers of ours).
    media_secret: Option<Vec<u8>>,
    calls: Mutex<Calls>,
    /// Incoming calls being decided.
    pending: Arc<Semaphore>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("public_url", &self.public_url.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Calls {
    by_id: HashMap<String, Arc<AcsCall>>,
    /// Correlation ids (else contexts) of the incoming calls seen lately, oldest first.
    seen: VecDeque<String>,
    seen_set: HashSet<String>,
}

/// One call of the control plane.
pub(crate) struct AcsCall {
    pub(crate) folder: Arc<CallFolder>,
    pub(crate) rule: AnswerRule,
    pub(crate) caller: CommunicationIdentifier,
    /// The call's key in its callback URL (`?k=`): random, so a token ACS signed for the
    /// resource (another application's, another call's) cannot speak for this call.
    pub(crate) key: String,
    /// Callbacks for the call's task to act on, in order.
    actions: tokio::sync::mpsc::Sender<Value>,
    state: Mutex<CallState>,
    /// Serializes appends to events.jsonl (held on a blocking thread, never across .await).
    log: Mutex<EventLog>,
    /// The call's events for its processors: those so far, and the transports' queues.
    taps: Mutex<Taps>,
    /// Cancelled when the control plane lets the call go.
    pub(crate) released: CancellationToken,
}

#[derive(Default)]
struct CallState {
    call_connection_id: Option<String>,
    connected: bool,
    disconnected: bool,
    /// ACS's recording was asked for (once).
    recording: bool,
    attendant: attendant::State,
    /// The ids of the callbacks received lately.
    seen: VecDeque<String>,
}

/// A call's control-plane events on their way to its processors.
#[derive(Default)]
struct Taps {
    /// The last [`HISTORY`] events, for a transport that joins later.
    history: VecDeque<mediagate_pipeline::Event>,
    /// Each transport's queue (its socket task hands the events to its pipeline).
    senders: Vec<tokio::sync::mpsc::Sender<mediagate_pipeline::Event>>,
}

#[derive(Default)]
struct EventLog {
    lines: u64,
    bytes: u64,
    dropped: u64,
    /// The call was let go: its files are about to be sealed, nothing more is written.
    closed: bool,
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// Credentials, endpoint or secret missing or wrong.
    #[error("[acs]: {0}")]
    Config(String),
    /// The callback verifier's keys.
    #[error("[acs]: {0}")]
    Auth(#[from] crate::auth::AuthError),
}

impl ControlPlane {
    /// From `[acs]` (validated) and the environment.
    pub(crate) async fn start(
        config: &AcsConfig,
        auth: &crate::auth::AuthConfig,
    ) -> Result<ControlPlane, ControlPlaneError> {
        let bad = |s: String| ControlPlaneError::Config(s);
        let mut options =
            if config.entra_token_file.is_some() || !config.entra_token_command.is_empty() {
                let endpoint = config.endpoint.as_deref().ok_or_else(|| {
                    bad("acs.endpoint is required with an Entra token".to_owned())
                })?;
                let endpoint =
                    Url::parse(endpoint).map_err(|e| bad(format!("acs.endpoint: {e}")))?;
                let from = match &config.entra_token_file {
                    Some(path) => TokenFrom::File(path.clone()),
                    None => TokenFrom::Command(config.entra_token_command.clone()),
                };
                ClientOptions {
                    endpoint,
                    credential: Credential::Entra(Arc::new(TokenSource::new(from))),
                    api_version: config.api_version.clone(),
                    retry: Default::default(),
                    extra_roots: Vec::new(),
                }
            } else {
                let value = read_secret(
                    config.connection_string_file.as_deref(),
                    &config.connection_string_env,
                )
                .map_err(bad)?
                .ok_or_else(|| {
                    bad(format!(
                        "neither acs.connection_string_file nor the environment variable {} \
                         (endpoint=…;accesskey=…) is set",
                        config.connection_string_env
                    ))
                })?;
                let cs: ConnectionString = value
                    .parse()
                    .map_err(|e: mediagate_acs::Error| bad(e.to_string()))?;
                ClientOptions::from_connection_string(&cs)
            };
        options.api_version = config.api_version.clone();
        let client = CallAutomationClient::new(options).map_err(|e| bad(e.to_string()))?;
        let secret = read_secret(
            config.events_secret_file.as_deref(),
            &config.events_secret_env,
        )
        .map_err(bad)?;
        let events_secret = match secret {
            Some(secret) if secret.len() >= crate::auth::MIN_SECRET_BYTES => {
                Some(secret.into_bytes())
            }
            Some(_) => {
                return Err(bad(
                    "the Event Grid secret must be at least 16 bytes".to_owned()
                ));
            }
            None if config.allow_unauthenticated_events => {
                tracing::warn!(
                    "[acs] allow_unauthenticated_events: anyone who reaches /acs/events can make this gateway answer calls"
                );
                None
            }
            None => {
                return Err(bad(format!(
                    "no Event Grid secret: set acs.events_secret_file or the environment variable {} \
                     (deliveries carry it: /acs/events?secret=…)",
                    config.events_secret_env
                )));
            }
        };
        let verifier = CallbackVerifier::start(config).await?;
        let public_url =
            Url::parse(&config.public_url).map_err(|e| bad(format!("acs.public_url: {e}")))?;
        let media_secret = crate::auth::url_secret(auth)?;
        tracing::info!(public_url = %public_url, endpoint = %client.endpoint(), rules = config.answer.len(), "Call Automation control plane");
        Ok(ControlPlane {
            config: config.clone(),
            client,
            events_secret,
            verifier,
            public_url,
            media_secret,
            calls: Mutex::new(Calls::default()),
            pending: Arc::new(Semaphore::new(config.max_pending)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A transport of call `id` starts: the call's events so far, and a queue of those to
    /// come; `None` for a call the control plane does not have.
    pub(crate) fn attach(
        &self,
        id: &str,
    ) -> Option<(
        Vec<mediagate_pipeline::Event>,
        tokio::sync::mpsc::Receiver<mediagate_pipeline::Event>,
    )> {
        let call = self.call(id)?;
        let (sender, queue) = tokio::sync::mpsc::channel(INJECT_QUEUE);
        let mut taps = call.taps.lock().unwrap_or_else(|p| p.into_inner());
        taps.senders.push(sender);
        Some((taps.history.iter().cloned().collect(), queue))
    }

    /// The call with this id (its folder name).
    pub(crate) fn call(&self, id: &str) -> Option<Arc<AcsCall>> {
        self.lock().by_id.get(id).cloned()
    }

    /// Whether an incoming call was seen already (and remembers it if not).
    fn first_sighting(&self, key: &str) -> bool {
        let mut calls = self.lock();
        if calls.seen_set.contains(key) {
            return false;
        }
        if calls.seen.len() >= REMEMBERED {
            if let Some(old) = calls.seen.pop_front() {
                calls.seen_set.remove(&old);
            }
        }
        calls.seen.push_back(key.to_owned());
        calls.seen_set.insert(key.to_owned());
        true
    }

    /// Where ACS posts a call's callbacks: `/acs/callbacks/{call}?k={key}`.
    fn callback_uri(&self, call: &AcsCall) -> String {
        let mut url = self.public_url.clone();
        url.set_path(&format!("/acs/callbacks/{}", call.folder.name()));
        url.query_pairs_mut().clear().append_pair("k", &call.key);
        url.to_string()
    }

    /// The WebSocket URL ACS streams a call to: the rule's route, with the call's id (and, in
    /// `secret` mode, a token that opens this call only).
    fn transport_url(&self, route: &str, call_id: &str) -> String {
        let mut url = self.public_url.clone();
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        let _ = url.set_scheme(scheme);
        url.set_path(route);
        {
            let mut query = url.query_pairs_mut();
            query.clear().append_pair("callId", call_id);
            if let Some(secret) = &self.media_secret {
                query.append_pair("token", &crate::auth::call_token(secret, call_id));
            }
        }
        url.to_string()
    }
}

/// A secret from `file` (whitespace trimmed), else from the variable `env`; `None` when
/// neither is there. Blocking (a small file, read once at start).
fn read_secret(file: Option<&std::path::Path>, env: &str) -> Result<Option<String>, String> {
    let value = match file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            if bytes.len() > 64 * 1024 {
                return Err(format!("{}: larger than 64 KiB", path.display()));
            }
            String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))?
        }
        None => match std::env::var(env) {
            Ok(value) => value,
            Err(_) => return Ok(None),
        },
    };
    let value = value.trim();
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

/// An incoming call, from an Event Grid delivery.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub(crate) event_id: String,
    pub(crate) from: CommunicationIdentifier,
    pub(crate) to: CommunicationIdentifier,
    pub(crate) context: String,
    pub(crate) correlation_id: Option<String>,
    pub(crate) server_call_id: Option<String>,
    pub(crate) data: Value,
}

/// Decides an incoming call: the rule, then the request. Runs in its own task.
pub(crate) async fn decide(app: Arc<AppState>, plane: Arc<ControlPlane>, incoming: Incoming) {
    let Some((index, rule)) = policy::choose(&plane.config.answer, &incoming.from, &incoming.to)
    else {
        tracing::info!(from = ?incoming.from.raw(), to = ?incoming.to.raw(), "incoming call matches no [[acs.answer]] rule: left to ring");
        return;
    };
    let rule = rule.clone();
    let rule_name = if rule.name.is_empty() {
        format!("#{}", index + 1)
    } else {
        rule.name.clone()
    };
    // The call's folder, from the first webhook: named by ACS's correlation id (the id ACS's
    // own logs and support use).
    let name = incoming
        .correlation_id
        .clone()
        .unwrap_or_else(|| incoming.event_id.clone());
    let identity = Identity {
        source: "acs:correlationId",
        value: name.clone(),
    };
    let keys = [name.clone()].into_iter().collect();
    let registry = Arc::clone(&app.registry);
    let now = Timestamp::now();
    let folder = match tokio::task::spawn_blocking(move || registry.reserve(identity, keys, now))
        .await
    {
        Ok(Ok(folder)) => folder,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot take an incoming call: no folder (left to ring)");
            return;
        }
        Err(_) => return,
    };
    let Some(key) = crate::admin::random_hex(16) else {
        tracing::warn!("no randomness for a call's key: the call is left to ring");
        app.registry.release(&folder, Timestamp::now());
        return;
    };
    let (actions, inbox) = tokio::sync::mpsc::channel(ACTION_QUEUE);
    let call = Arc::new(AcsCall {
        folder: Arc::clone(&folder),
        rule: rule.clone(),
        caller: incoming.from.clone(),
        key,
        actions,
        state: Mutex::new(CallState::default()),
        log: Mutex::new(EventLog::default()),
        taps: Mutex::new(Taps::default()),
        released: CancellationToken::new(),
    });
    let call_id = folder.name().to_owned();
    {
        let mut report = folder.report.lock().unwrap_or_else(|p| p.into_inner());
        // Boxed: most calls are not the control plane's, and carry only a pointer.
        report.control = Some(Box::new(ControlReport {
            rule: rule_name.clone(),
            from: incoming.from.raw(),
            to: incoming.to.raw(),
            correlation_id: incoming.correlation_id.clone(),
            server_call_id: incoming.server_call_id.clone(),
            ..ControlReport::default()
        }));
    }
    plane
        .lock()
        .by_id
        .insert(call_id.clone(), Arc::clone(&call));
    // The context answers the call: a credential for its short life, not kept.
    let mut data = incoming.data.clone();
    data["incomingCallContext"] = json!("<redacted>");
    record(
        &app,
        &call,
        "Microsoft.Communication.IncomingCall",
        &incoming.event_id,
        &data,
    )
    .await;
    // The decision is recorded before it is carried out: ACS's first callback may come before
    // the request's own response does.
    let intent = match rule.action {
        RuleAction::Answer => "answer",
        RuleAction::Reject => "reject",
        RuleAction::Redirect => "redirect",
    };
    let decision = json!({ "rule": rule_name, "action": intent });
    record(&app, &call, "mediagate.Decision", "", &decision).await;
    let outcome = match rule.action {
        RuleAction::Answer => {
            let request = policy::answer_request(
                &rule,
                &incoming.context,
                plane.callback_uri(&call),
                &plane.transport_url(&rule.route, &call_id),
                &call_id,
            );
            match plane.client.answer_call(&request).await {
                Ok(properties) => {
                    let id = properties.call_connection_id.clone();
                    if !id.is_empty() {
                        app.registry.add_key(&folder, &id);
                    }
                    call.state().call_connection_id = Some(id.clone());
                    control(&call, |c| c.call_connection_id = Some(id));
                    Ok("answered")
                }
                Err(e) => Err(e),
            }
        }
        RuleAction::Reject => plane
            .client
            .reject_call(&mediagate_acs::models::RejectCallRequest {
                incoming_call_context: incoming.context.clone(),
                call_reject_reason: Some(policy::reject_reason(&rule)),
            })
            .await
            .map(|()| "rejected"),
        RuleAction::Redirect => plane
            .client
            .redirect_call(&mediagate_acs::models::RedirectCallRequest {
                incoming_call_context: incoming.context.clone(),
                target: policy::target(rule.redirect_to.as_deref().unwrap_or_default()),
            })
            .await
            .map(|()| "redirected"),
    };
    if let Err(e) = &outcome {
        let failed = json!({ "rule": rule_name, "action": intent, "error": e.to_string() });
        record(&app, &call, "mediagate.RequestFailed", "", &failed).await;
    }
    match outcome {
        Ok(action) => {
            app.metrics.acs_call(action);
            tracing::info!(call = %call_id, rule = %rule_name, action, "incoming call");
            control(&call, |c| c.action = action.to_owned());
            if action == "answered" {
                tokio::spawn(supervise(app, plane, call, inbox));
                return;
            }
        }
        Err(e) => {
            app.metrics.acs_call("failed");
            tracing::warn!(call = %call_id, rule = %rule_name, error = %e, "incoming call: the request failed");
            control(&call, |c| {
                c.action = "failed".to_owned();
                c.error = Some(e.to_string());
            });
        }
    }
    release(&app, &plane, &call).await;
}

impl AcsCall {
    /// Hands an event to every transport's processors, and keeps it for those to come. A
    /// queue that is full loses it (its socket task is far behind); a closed one is dropped.
    fn tap(&self, event: mediagate_pipeline::Event) {
        let mut taps = self.taps.lock().unwrap_or_else(|p| p.into_inner());
        if taps.history.len() >= HISTORY {
            taps.history.pop_front();
        }
        taps.history.push_back(event.clone());
        taps.senders.retain(|sender| match sender.try_send(event.clone()) {
            Ok(()) => true,
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(call = %self.folder.name(), "the call's processors are behind: a control-plane event is dropped");
                true
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CallState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The call's id at ACS, once answered.
    pub(crate) fn call_connection_id(&self) -> Option<String> {
        self.state().call_connection_id.clone()
    }
}

/// Updates the call's `control` report.
fn control(call: &AcsCall, update: impl FnOnce(&mut ControlReport)) {
    let mut report = call.folder.report.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(control) = report.control.as_mut() {
        update(control);
    }
}

/// Appends an event to the call's events.jsonl (on a blocking thread) and publishes it to the
/// admin API's watchers.
pub(crate) async fn record(
    app: &AppState,
    call: &Arc<AcsCall>,
    kind: &str,
    id: &str,
    data: &Value,
) {
    let call_id: Arc<str> = Arc::from(call.folder.name());
    app.events.publish(&call_id, || {
        Some(("acs", json!({ "type": kind, "data": data })))
    });
    if app.low_on_disk() {
        call.log.lock().unwrap_or_else(|p| p.into_inner()).dropped += 1;
        return;
    }
    let mut bytes = json!({
        "at": Timestamp::now(),
        "type": kind,
        "id": id,
        "data": data,
    })
    .to_string()
    .into_bytes();
    bytes.push(b'\n');
    let call = Arc::clone(call);
    let written = tokio::task::spawn_blocking(move || {
        let mut log = call.log.lock().unwrap_or_else(|p| p.into_inner());
        if log.closed {
            return Ok(());
        }
        if log.lines >= MAX_EVENT_LINES || log.bytes + bytes.len() as u64 > MAX_EVENT_FILE_BYTES {
            log.dropped += 1;
            return Ok(());
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(call.folder.dir().join(EVENTS_FILE))?;
        file.write_all(&bytes)?;
        log.lines += 1;
        log.bytes += bytes.len() as u64;
        Ok::<_, std::io::Error>(())
    })
    .await;
    if let Ok(Err(e)) = written {
        tracing::warn!(error = %e, "cannot write events.jsonl");
    }
}

/// The call's task: acts on its callbacks in order, and watches it until ACS disconnects it,
/// or it never connects, or it lost every socket and ACS said nothing more; then lets it go.
async fn supervise(
    app: Arc<AppState>,
    plane: Arc<ControlPlane>,
    call: Arc<AcsCall>,
    mut inbox: tokio::sync::mpsc::Receiver<Value>,
) {
    let started = tokio::time::Instant::now();
    let mut quiet_since = started;
    loop {
        tokio::select! {
            () = call.released.cancelled() => break,
            () = app.shutdown.cancelled() => break,
            Some(event) = inbox.recv() => act(&app, &plane, &call, &event).await,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let (connected, disconnected) = {
            let state = call.state();
            (state.connected, state.disconnected)
        };
        if disconnected {
            break;
        }
        let transports = app.registry.transports_of(&call.folder).unwrap_or(0);
        // Alive while it has a socket, or ACS says it is connected (a rule may stream
        // nothing), within bounds.
        if transports > 0 || (connected && started.elapsed() < MAX_HELD) {
            quiet_since = tokio::time::Instant::now();
        } else if quiet_since.elapsed() >= SETTLE {
            tracing::info!(call = %call.folder.name(), connected, "no CallDisconnected and no socket for a minute: the call is let go");
            break;
        }
    }
    release(&app, &plane, &call).await;
}

/// Lets the call go: the registry ends it once its sockets are closed, and its session.json is
/// written; the control plane forgets it.
async fn release(app: &Arc<AppState>, plane: &ControlPlane, call: &Arc<AcsCall>) {
    if call.released.is_cancelled() {
        return;
    }
    call.released.cancel();
    plane.lock().by_id.remove(call.folder.name());
    // The log is closed first, so nothing is appended once the call may be sealed (which the
    // registry's release, or its last socket closing, makes possible).
    let closing = Arc::clone(call);
    let dropped = tokio::task::spawn_blocking(move || {
        let mut log = closing.log.lock().unwrap_or_else(|p| p.into_inner());
        log.closed = true;
        log.dropped
    })
    .await
    .unwrap_or(0);
    if dropped > 0 {
        tracing::warn!(call = %call.folder.name(), dropped, "events.jsonl was full (or the disk low): events counted, not kept");
    }
    let ended = app.registry.release(&call.folder, Timestamp::now());
    let folder = Arc::clone(&call.folder);
    let written = tokio::task::spawn_blocking(move || folder.write_report()).await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::warn!(call = %call.folder.name(), "cannot write session.json");
    }
    if ended {
        tracing::debug!(call = %call.folder.name(), "call ended by the control plane");
    }
}

/// A callback, authenticated: recorded, handed to the call's processors, and queued for the
/// call's task to act on. A callback delivered again (by its id) is dropped.
pub(crate) async fn on_callback(app: &Arc<AppState>, call: &Arc<AcsCall>, mut event: Value) {
    let id = event["id"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .take(128)
        .collect::<String>();
    if !id.is_empty() {
        let mut state = call.state();
        if state.seen.contains(&id) {
            return;
        }
        if state.seen.len() >= SEEN_EVENTS {
            state.seen.pop_front();
        }
        state.seen.push_back(id.clone());
    }
    let size = event["data"].to_string().len();
    if size > MAX_EVENT_DATA_BYTES {
        event["data"] = json!({ "truncated": true, "bytes": size });
    }
    let kind = event["type"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .take(128)
        .collect::<String>();
    let short = kind
        .strip_prefix("Microsoft.Communication.")
        .unwrap_or(&kind)
        .to_owned();
    control(call, |c| c.callbacks += 1);
    record(app, call, &kind, &id, &event["data"]).await;
    let custom = mediagate_pipeline::Event::Custom(Arc::new(mediagate_pipeline::CustomEvent::new(
        &format!("acs.{short}"),
        event["data"].clone(),
    )));
    call.tap(custom);
    if call.actions.try_send(event).is_err() {
        tracing::warn!(call = %call.folder.name(), "the call's task is behind: a callback is recorded but not acted on");
    }
}

/// Acts on a callback: the call's lifecycle, ACS's recording, the attendant.
async fn act(app: &Arc<AppState>, plane: &Arc<ControlPlane>, call: &Arc<AcsCall>, event: &Value) {
    let kind = event["type"].as_str().unwrap_or_default();
    let short = kind
        .strip_prefix("Microsoft.Communication.")
        .unwrap_or(kind);
    let data = &event["data"];
    match short {
        "CallConnected" => {
            let first = {
                let mut state = call.state();
                let first = !state.connected;
                state.connected = true;
                first
            };
            if !first {
                return;
            }
            control(call, |c| c.connected_at = Some(Timestamp::now()));
            let start = call.rule.record && !std::mem::replace(&mut call.state().recording, true);
            if start {
                start_recording(app, plane, call).await;
            }
        }
        "CallDisconnected" => {
            call.state().disconnected = true;
            control(call, |c| c.disconnected_at = Some(Timestamp::now()));
            // The sockets close on their own (ACS ends them); the loop lets go.
        }
        _ => {}
    }
    attendant::on_event(app, plane, call, short, data).await;
}

async fn start_recording(app: &Arc<AppState>, plane: &ControlPlane, call: &Arc<AcsCall>) {
    let Some(id) = call.call_connection_id() else {
        return;
    };
    let request = mediagate_acs::models::StartCallRecordingRequest {
        call_connection_id: Some(id),
        recording_state_callback_uri: Some(plane.callback_uri(call)),
        recording_content_type: Some("audio".to_owned()),
        recording_channel_type: Some(match call.rule.channels {
            Channels::Mixed => "mixed".to_owned(),
            Channels::Unmixed => "unmixed".to_owned(),
        }),
        recording_format_type: Some("wav".to_owned()),
        ..Default::default()
    };
    let result = match plane.client.start_recording(&request).await {
        Ok(r) => json!({ "recordingId": r.recording_id, "recordingState": r.recording_state }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    record(app, call, "mediagate.RecordingRequested", "", &result).await;
}
