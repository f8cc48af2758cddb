//! The fake itself: its options, what it records, and [`ControlPlane`], which serves the REST
//! API and the signing keys and places calls through Event Grid.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hyper::Method;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::client::{HttpClient, host_of};
use super::driver::now_rfc3339;
use super::eventgrid;
use super::reference::{Operation, operations};
use super::routes::{JWKS_PATH, OPENID_PATHS, handle};
use super::scripted::{EventSchema, ScriptedCall};
use super::signing::{Claims, Signer};
use super::state::{ContextUse, State};
use crate::{EmulateReport, EmulatorError};

/// What the fake is started with.
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// Where to listen (a loopback address; port 0 picks one).
    pub listen: SocketAddr,
    /// The resource's access key, which requests must be signed with.
    pub access_key: Vec<u8>,
    /// An Entra token accepted as `Authorization: Bearer`.
    pub bearer_token: Option<String>,
    /// A certificate chain and key (DER) to serve `https://`.
    pub tls: Option<(Vec<Vec<u8>>, Vec<u8>)>,
    /// `iss` of every token the fake signs, and its OpenID configuration's `issuer`. `None`:
    /// the fake's endpoint without its trailing slash (`http://127.0.0.1:<port>`), as ACS's
    /// issuer is the root URL of the host that publishes its keys.
    pub issuer: Option<String>,
    /// `aud` of every token: the ACS resource's immutable id (a GUID), which a gateway is
    /// configured to expect.
    pub resource_id: String,
    /// The application's Event Grid webhook, used exactly as given (its query may carry a
    /// secret). Needed by [`ControlPlane::place_call`] and [`ControlPlane::validate_subscription`].
    pub webhook: Option<String>,
    /// The schema Event Grid delivers to the webhook in.
    pub event_schema: EventSchema,
    /// Root certificates (DER) trusted, besides the web's, for `https://` webhooks and callbacks
    /// and `wss://` streams.
    pub trusted_roots: Vec<Vec<u8>>,
}

impl ControlPlaneOptions {
    /// The resource id the fake's tokens name when none is set: a made-up GUID.
    pub const DEFAULT_RESOURCE_ID: &'static str = "5e3bd0c1-7f4a-4e8b-9c2d-6a1f0e9b8d7c";

    /// Plain `http://` on `127.0.0.1`, a port of the system's choosing, `access_key`, the
    /// default issuer and resource id, no webhook, the Event Grid schema.
    pub fn local(access_key: &[u8]) -> Self {
        ControlPlaneOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_key: access_key.to_vec(),
            bearer_token: None,
            tls: None,
            issuer: None,
            resource_id: Self::DEFAULT_RESOURCE_ID.to_owned(),
            webhook: None,
            event_schema: EventSchema::EventGrid,
            trusted_roots: Vec::new(),
        }
    }
}

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `POST`…
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The reference's name of the method (`AnswerCall`), when the path is one.
    pub operation: Option<String>,
    /// Whether the reference lists the repeatability headers for the method.
    pub repeatable: bool,
    /// `api-version`.
    pub api_version: Option<String>,
    /// `Repeatability-Request-ID` and `Repeatability-First-Sent`.
    pub repeatability: Option<(String, String)>,
    /// The body, parsed (`null` when empty or not JSON).
    pub body: Value,
    /// The status answered.
    pub status: u16,
    /// Why the request was refused, when it was.
    pub error: Option<String>,
}

/// An incoming call the fake made up, as Event Grid would announce it.
#[derive(Debug, Clone)]
pub struct IncomingCall {
    /// `incomingCallContext`, to answer, reject or redirect it with.
    pub context: String,
    /// `serverCallId`.
    pub server_call_id: String,
    /// `correlationId`.
    pub correlation_id: String,
    /// The caller's raw id.
    pub from: String,
    /// The callee's raw id.
    pub to: String,
}

/// A call the fake knows, as the methods (and, for a played call, its script) left it.
#[derive(Debug, Clone, Default)]
pub struct FakeCall {
    /// `callConnectionId`.
    pub id: String,
    /// `serverCallId`.
    pub server_call_id: String,
    /// `correlationId`.
    pub correlation_id: String,
    /// `connected`, `disconnected`, `transferring`…
    pub state: String,
    /// Where its callbacks go.
    pub callback_uri: String,
    /// The caller's raw id (an answered call's).
    pub from: String,
    /// The callee's raw id (an answered call's).
    pub to: String,
    /// The answer's (or create's) `mediaStreamingOptions`.
    pub media_streaming: Option<Value>,
    /// The answer's `transcriptionOptions`.
    pub transcription: Option<Value>,
    /// The methods applied to it, by reference name, in order.
    pub actions: Vec<(String, Value)>,
    /// The fake plays it (it was placed with a script): streams, callbacks.
    pub played: bool,
    /// A played call is over: its last callback was delivered and its streams reported.
    pub ended: bool,
    /// The callbacks posted for it, in order (the first 1000).
    pub callbacks: Vec<DeliveredCallback>,
    /// What its streams did.
    pub streams: CallStreams,
}

/// One callback the fake posted, and what it got back.
#[derive(Debug, Clone)]
pub struct DeliveredCallback {
    /// `Microsoft.Communication.CallConnected`…
    pub event_type: String,
    /// Where it was posted.
    pub uri: String,
    /// The CloudEvent posted (the body is an array of it alone).
    pub event: Value,
    /// The status of the last attempt's answer; `None` when there was none.
    pub status: Option<u16>,
    /// Why the last attempt got no answer.
    pub error: Option<String>,
    /// Requests sent (1, or 2 after a retry).
    pub attempts: u32,
}

/// What a played call's streams did: each transport's report once it ended, or why it failed.
#[derive(Debug, Clone, Default)]
pub struct CallStreams {
    /// The media transport.
    pub media: Option<Result<EmulateReport, String>>,
    /// The transcription transport.
    pub transcription: Option<Result<EmulateReport, String>>,
}

/// What the server's and the calls' tasks share.
pub(crate) struct Shared {
    pub(crate) options: ControlPlaneOptions,
    pub(crate) operations: Vec<Operation>,
    pub(crate) state: Mutex<State>,
    pub(crate) signer: Signer,
    pub(crate) client: HttpClient,
    /// `http://127.0.0.1:<port>/`.
    pub(crate) endpoint: String,
    /// `iss` of the tokens.
    pub(crate) issuer: String,
    /// Changes (its sender is dropped) when the fake stops.
    pub(crate) stopped: watch::Receiver<bool>,
}

impl Shared {
    /// A fresh token for the resource: `Authorization: Bearer` of callbacks and upgrades.
    pub(crate) fn token(&self) -> Result<String, String> {
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.signer.token(Claims {
            issuer: &self.issuer,
            audience: &self.options.resource_id,
            now_unix,
        })
    }
}

pub(crate) fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake. Stops when dropped (its calls' streams close, their callbacks stop).
pub struct ControlPlane {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: watch::Sender<bool>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ControlPlane {
    /// Starts serving.
    pub async fn start(options: ControlPlaneOptions) -> std::io::Result<ControlPlane> {
        let operations = operations().map_err(std::io::Error::other)?;
        let tls = match &options.tls {
            Some((chain, key)) => Some(tls_acceptor(chain, key)?),
            None => None,
        };
        let signer = Signer::builtin().map_err(std::io::Error::other)?;
        let client = HttpClient::new(&options.trusted_roots).map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(options.listen).await?;
        let addr = listener.local_addr()?;
        let endpoint = if tls.is_some() {
            format!("https://localhost:{}/", addr.port())
        } else {
            format!("http://{addr}/")
        };
        let issuer = options
            .issuer
            .clone()
            .unwrap_or_else(|| endpoint.trim_end_matches('/').to_owned());
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            options,
            operations,
            state: Mutex::new(State::default()),
            signer,
            client,
            endpoint,
            issuer,
            stopped: stopped.clone(),
        });
        tokio::spawn(serve(listener, tls, shared.clone(), stopped));
        Ok(ControlPlane {
            addr,
            shared,
            _stop: stop,
        })
    }

    /// The endpoint, `http://127.0.0.1:<port>/` (or `https://localhost:<port>/` with TLS,
    /// the name a test certificate is made for).
    pub fn endpoint(&self) -> String {
        self.shared.endpoint.clone()
    }

    /// The connection string a client of this fake uses.
    pub fn connection_string(&self) -> String {
        format!(
            "endpoint={};accesskey={}",
            self.endpoint(),
            STANDARD.encode(&self.shared.options.access_key)
        )
    }

    /// `iss` of the fake's tokens (see [`ControlPlaneOptions::issuer`]).
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// A token as the fake signs its callbacks and upgrades (`Authorization: Bearer`), for
    /// tests of a verifier.
    pub fn token(&self) -> Result<String, EmulatorError> {
        self.shared.token().map_err(EmulatorError::Task)
    }

    /// `aud` of the fake's tokens.
    pub fn resource_id(&self) -> &str {
        &self.shared.options.resource_id
    }

    /// The OpenID configuration's URL, at ACS's path:
    /// `<endpoint>calling/.well-known/acsopenidconfiguration` (also served at
    /// `<endpoint>.well-known/acsopenidconfiguration`). A gateway's `openid_config_url`.
    pub fn openid_configuration_url(&self) -> String {
        format!("{}{}", self.endpoint(), &OPENID_PATHS[0][1..])
    }

    /// The key set's URL, `<endpoint>calling/keys`.
    pub fn jwks_url(&self) -> String {
        format!("{}{}", self.endpoint(), &JWKS_PATH[1..])
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared).requests.clone()
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<FakeCall> {
        let mut calls: Vec<FakeCall> = lock(&self.shared).calls.values().cloned().collect();
        calls.sort_by(|a, b| a.id.cmp(&b.id));
        calls
    }

    /// One call, by `callConnectionId`.
    pub fn call(&self, id: &str) -> Option<FakeCall> {
        lock(&self.shared).calls.get(id).cloned()
    }

    /// The media stream's report of a played call, once the stream ended without error.
    pub fn call_report(&self, id: &str) -> Option<EmulateReport> {
        match &lock(&self.shared).calls.get(id)?.streams.media {
            Some(Ok(report)) => Some(report.clone()),
            _ => None,
        }
    }

    /// Waits (polling) until a played call is over, at most `limit`; the call as it ended,
    /// or `None` when it did not end in time.
    pub async fn wait_for_end(&self, id: &str, limit: Duration) -> Option<FakeCall> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(call) = self.call(id).filter(|c| c.ended) {
                return Some(call);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Answers the next `count` authenticated requests with `status` (429, 503…) and
    /// `Retry-After`, as a throttled or struggling service does.
    pub fn throttle(&self, status: u16, retry_after: Option<&str>, count: u32) {
        lock(&self.shared).throttle = Some((status, retry_after.map(str::to_owned), count));
    }

    /// Makes up an incoming call from `from` to `to` (raw ids) whose context can be answered,
    /// rejected or redirected once. The fake does not play it: see [`ControlPlane::place_call`].
    pub fn incoming_call(&self, from: &str, to: &str) -> IncomingCall {
        self.offer(from, to, None)
    }

    fn offer(&self, from: &str, to: &str, script: Option<Arc<ScriptedCall>>) -> IncomingCall {
        let mut state = lock(&self.shared);
        let n = state.id("ctx");
        let call = IncomingCall {
            context: format!(
                "eyJhbGciOiJub25lIn0.{}",
                STANDARD.encode(format!("incoming {n}"))
            ),
            server_call_id: format!("server-{n}"),
            correlation_id: format!("corr-{n}"),
            from: from.to_owned(),
            to: to.to_owned(),
        };
        state.contexts.insert(
            call.context.clone(),
            ContextUse::Offered(call.clone(), script),
        );
        call
    }

    /// Places a call: registers its context and posts the IncomingCall event to the webhook.
    /// Once the application answers it, the fake plays it: callbacks, and the script streamed
    /// into the answer's transport URLs. Fails when the webhook does not take the event (a 2xx,
    /// after one retry); the context stays registered then.
    pub async fn place_call(&self, call: ScriptedCall) -> Result<IncomingCall, EmulatorError> {
        if call.participant_ids.len() > call.wavs.len() {
            return Err(EmulatorError::TooManyParticipants {
                given: call.participant_ids.len(),
                tracks: call.wavs.len(),
            });
        }
        let webhook = self.webhook()?;
        let display_name = call.caller_display_name.clone();
        let call = Arc::new(call);
        let incoming = self.offer(&call.from, &call.to, Some(call.clone()));
        let envelope = eventgrid::incoming_call(
            self.shared.options.event_schema,
            &incoming,
            &display_name,
            &crate::config::fresh_subscription_id(),
            &now_rfc3339(),
        );
        let body = Bytes::from(envelope.body.to_string());
        let delivered = (self.shared.client)
            .deliver(Method::POST, &webhook, &envelope.headers, body)
            .await;
        if !delivered.succeeded() {
            let reason = match (delivered.status(), delivered.error) {
                (Some(status), _) => format!("it answered {status}"),
                (None, Some(error)) => error,
                (None, None) => "no answer".to_owned(),
            };
            return Err(EmulatorError::Webhook {
                url: host_of(&webhook),
                reason: format!("{reason} (after {} attempts)", delivered.attempts),
            });
        }
        Ok(incoming)
    }

    /// Runs Event Grid's subscription handshake against the webhook: a
    /// SubscriptionValidationEvent whose code must come back as `validationResponse` (Event
    /// Grid schema), or an OPTIONS request whose `WebHook-Allowed-Origin` must allow Event Grid
    /// (CloudEvents). The validation code, or the allowed origin; an error saying what was
    /// wrong otherwise.
    pub async fn validate_subscription(&self) -> Result<String, EmulatorError> {
        let webhook = self.webhook()?;
        let refused = |reason: String| EmulatorError::SubscriptionNotValidated {
            url: host_of(&webhook),
            reason,
        };
        let client = &self.shared.client;
        match self.shared.options.event_schema {
            EventSchema::EventGrid => {
                let code = crate::config::fresh_subscription_id();
                // Not served: the handshake is the synchronous one, `validationResponse`.
                let validation_url = format!("{}eventgrid/validate?code={code}", self.endpoint());
                let id = crate::config::fresh_subscription_id();
                let envelope =
                    eventgrid::validation_event(&code, &validation_url, &id, &now_rfc3339());
                let body = Bytes::from(envelope.body.to_string());
                let reply = client
                    .send(Method::POST, &webhook, &envelope.headers, body)
                    .await
                    .map_err(refused)?;
                eventgrid::check_validation_reply(&reply, &code).map_err(refused)?;
                Ok(code)
            }
            EventSchema::CloudEvents => {
                let headers = eventgrid::options_headers();
                let reply = client
                    .send(Method::OPTIONS, &webhook, &headers, Bytes::new())
                    .await
                    .map_err(refused)?;
                eventgrid::check_options_reply(&reply).map_err(refused)?;
                let origin = reply.headers.get("webhook-allowed-origin");
                Ok(origin
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned())
            }
        }
    }

    fn webhook(&self) -> Result<url::Url, EmulatorError> {
        let webhook = self
            .shared
            .options
            .webhook
            .as_deref()
            .ok_or(EmulatorError::NoWebhook)?;
        url::Url::parse(webhook).map_err(|e| EmulatorError::Webhook {
            url: "(the configured webhook)".to_owned(),
            reason: format!("not a URL: {e}"),
        })
    }
}

/// Accepts connections until the fake stops; each is served on a task of its own.
async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&shared, request).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    let handshake = acceptor.accept(tcp);
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(Duration::from_secs(10), handshake).await
                    {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                }
            }
        });
    }
}

fn tls_acceptor(chain: &[Vec<u8>], key: &[u8]) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let chain: Vec<CertificateDer<'static>> = chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(std::io::Error::other)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A random access key (32 bytes), for a fake started without one.
pub fn generate_access_key() -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut key = vec![0u8; 32];
    // The system's random source failing is not something a local fake can do better about;
    // a key of zeros still works (it is only ever local).
    let _ = ring::rand::SystemRandom::new().fill(&mut key);
    key
}

/// An access key as a connection string writes it (base64); `None` when it is not base64.
pub fn decode_access_key(base64: &str) -> Option<Vec<u8>> {
    STANDARD.decode(base64.trim()).ok()
}
