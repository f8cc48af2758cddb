//! The fake's HTTP side and its calls.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::reference::{Operation, operations};
use super::validate::validate;
use super::verify::{Credentials, authenticate, parse_http_date};

/// The largest request body read.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How many requests are kept for [`ControlPlane::requests`].
const MAX_RECORDED: usize = 10_000;

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
}

impl ControlPlaneOptions {
    /// Plain `http://` on `127.0.0.1`, a port of the system's choosing, and `access_key`.
    pub fn local(access_key: &[u8]) -> Self {
        ControlPlaneOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_key: access_key.to_vec(),
            bearer_token: None,
            tls: None,
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

/// A call the fake knows, as the methods left it.
#[derive(Debug, Clone, Default)]
pub struct FakeCall {
    /// `callConnectionId`.
    pub id: String,
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
}

/// What an incoming call context was used for.
#[derive(Debug, Clone)]
enum ContextUse {
    Offered(IncomingCall),
    Used(&'static str),
}

#[derive(Default)]
struct State {
    contexts: HashMap<String, ContextUse>,
    calls: HashMap<String, FakeCall>,
    recordings: HashMap<String, String>,
    /// Responses by repeatability id, replayed when a request is sent again.
    replies: HashMap<String, (u16, Value)>,
    requests: Vec<RecordedRequest>,
    throttle: Option<(u16, Option<String>, u32)>,
    next_id: u64,
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:08x}-{:04}", std::process::id(), self.next_id)
    }
}

struct Shared {
    options: ControlPlaneOptions,
    operations: Vec<Operation>,
    state: Mutex<State>,
}

/// A running fake. Stops when dropped.
pub struct ControlPlane {
    addr: SocketAddr,
    https: bool,
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

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

impl ControlPlane {
    /// Starts serving.
    pub async fn start(options: ControlPlaneOptions) -> std::io::Result<ControlPlane> {
        let operations = operations().map_err(std::io::Error::other)?;
        let tls = match &options.tls {
            Some((chain, key)) => Some(tls_acceptor(chain, key)?),
            None => None,
        };
        let listener = TcpListener::bind(options.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            operations,
            state: Mutex::new(State::default()),
        });
        let (stop, mut stopped) = watch::channel(false);
        let https = tls.is_some();
        let serving = shared.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stopped.changed() => return,
                };
                let Ok((tcp, _)) = accepted else { continue };
                let shared = serving.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&shared, request).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(Ok(stream)) = tokio::time::timeout(
                                std::time::Duration::from_secs(10),
                                acceptor.accept(tcp),
                            )
                            .await
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
        });
        Ok(ControlPlane {
            addr,
            https,
            shared,
            _stop: stop,
        })
    }

    /// The endpoint, `http://127.0.0.1:<port>/` (or `https://localhost:<port>/` with TLS,
    /// the name a test certificate is made for).
    pub fn endpoint(&self) -> String {
        if self.https {
            format!("https://localhost:{}/", self.addr.port())
        } else {
            format!("http://{}/", self.addr)
        }
    }

    /// The connection string a client of this fake uses.
    pub fn connection_string(&self) -> String {
        format!(
            "endpoint={};accesskey={}",
            self.endpoint(),
            STANDARD.encode(&self.shared.options.access_key)
        )
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

    /// Answers the next `count` authenticated requests with `status` (429, 503…) and
    /// `Retry-After`, as a throttled or struggling service does.
    pub fn throttle(&self, status: u16, retry_after: Option<&str>, count: u32) {
        lock(&self.shared).throttle = Some((status, retry_after.map(str::to_owned), count));
    }

    /// Makes up an incoming call from `from` to `to` (raw ids) whose context can be answered,
    /// rejected or redirected once.
    pub fn incoming_call(&self, from: &str, to: &str) -> IncomingCall {
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
        state
            .contexts
            .insert(call.context.clone(), ContextUse::Offered(call.clone()));
        call
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

/// A status and a JSON body (`null` for none).
type Reply = (u16, Value);
/// A path's parameters by name.
type Params = Vec<(String, String)>;

/// The service's error body.
fn error(status: StatusCode, code: &str, message: &str, target: Option<&str>) -> Reply {
    let mut error = json!({ "code": code, "message": message });
    if let Some(target) = target {
        error["target"] = json!(target);
    }
    (status.as_u16(), json!({ "error": error }))
}

fn respond(status: u16, body: &Value, retry_after: Option<&str>) -> Response<Full<Bytes>> {
    let bytes = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(retry_after) = retry_after {
        response = response.header("retry-after", retry_after);
    }
    response
        .body(Full::new(bytes))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            let (status, body) = error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLarge",
                "the body is larger than 1 MiB",
                None,
            );
            return respond(status, &body, None);
        }
    };
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
    let api_version = parts.uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "api-version")
            .map(|(_, v)| v.into_owned())
    });
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let repeatability = header("repeatability-request-id").zip(header("repeatability-first-sent"));
    let parsed: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let mut record = RecordedRequest {
        method: method.clone(),
        path: path.clone(),
        operation: None,
        repeatable: false,
        api_version: api_version.clone(),
        repeatability: repeatability.clone(),
        body: parsed.clone(),
        status: 0,
        error: None,
    };
    let credentials = Credentials {
        access_key: &shared.options.access_key,
        bearer: shared.options.bearer_token.as_deref(),
    };
    let outcome: Result<(Operation, Params), Reply> = (|| {
        authenticate(
            &credentials,
            &method,
            &path_and_query,
            &parts.headers,
            &body,
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|why| {
            error(
                StatusCode::UNAUTHORIZED,
                "Denied",
                &format!("Denied by the resource provider: {why}"),
                None,
            )
        })?;
        let Some(version) = &api_version else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "MissingApiVersionParameter",
                "The api-version query parameter is required",
                None,
            ));
        };
        if !valid_api_version(version) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "InvalidApiVersionParameter",
                &format!("The api-version `{version}` is invalid"),
                None,
            ));
        }
        let Some((operation, params)) = shared
            .operations
            .iter()
            .find_map(|o| o.matches(&method, &path).map(|p| (o, p)))
        else {
            return Err(error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("No Call Automation method is {method} {path}"),
                None,
            ));
        };
        record.operation = Some(operation.name.clone());
        record.repeatable = operation.repeatable;
        if !body.is_empty() && parsed.is_null() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "The request body is not JSON",
                None,
            ));
        }
        validate(operation, &parsed).map_err(|invalid| {
            error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &invalid.message,
                Some(&invalid.target),
            )
        })?;
        if let Some((id, first_sent)) = &repeatability {
            if parse_http_date(first_sent).is_none() || id.len() != 36 {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "Repeatability-Request-ID must be a UUID and Repeatability-First-Sent an RFC 1123 date",
                    Some("Repeatability-Request-ID"),
                ));
            }
        }
        Ok((operation.clone(), params))
    })();
    let (status, reply, retry_after) = match outcome {
        Err((status, reply)) => (status, reply, None),
        Ok((operation, params)) => {
            let mut state = lock(shared);
            let throttled = match &mut state.throttle {
                Some((status, retry_after, count)) if *count > 0 => {
                    *count -= 1;
                    Some((*status, retry_after.clone()))
                }
                _ => None,
            };
            if let Some((status, retry_after)) = throttled {
                let code = if status == 429 {
                    "TooManyRequests"
                } else {
                    "ServiceUnavailable"
                };
                let (status, reply) = error(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    code,
                    "Try again later",
                    None,
                );
                (status, reply, retry_after)
            } else if let Some(replayed) = repeatability
                .as_ref()
                .and_then(|(id, _)| state.replies.get(id).cloned())
            {
                (replayed.0, replayed.1, None)
            } else {
                let (status, reply) = execute(&mut state, &operation, &params, &parsed);
                if let Some((id, _)) = &repeatability {
                    if (200..300).contains(&status) {
                        state.replies.insert(id.clone(), (status, reply.clone()));
                    }
                }
                (status, reply, None)
            }
        }
    };
    record.status = status;
    if status >= 400 {
        record.error = reply["error"]["message"].as_str().map(str::to_owned);
    }
    {
        let mut state = lock(shared);
        if state.requests.len() < MAX_RECORDED {
            state.requests.push(record);
        }
    }
    respond(status, &reply, retry_after.as_deref())
}

/// `api-version` as Azure spells versions: `YYYY-MM-DD`, maybe `-preview`.
fn valid_api_version(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The properties of a call, as answer, create, connect and get return them.
fn properties(call: &FakeCall) -> Value {
    let mut p = json!({
        "callConnectionId": call.id,
        "serverCallId": format!("server-{}", call.id),
        "callConnectionState": call.state,
        "callbackUri": call.callback_uri,
        "correlationId": format!("corr-{}", call.id),
        "targets": [],
    });
    if let Some(options) = &call.media_streaming {
        p["mediaStreamingSubscription"] = json!({
            "id": format!("media-{}", call.id),
            "state": if options["startMediaStreaming"].as_bool() == Some(true) { "active" } else { "inactive" },
            "subscribedContentTypes": ["audio"],
        });
    }
    if let Some(options) = &call.transcription {
        p["transcriptionSubscription"] = json!({
            "id": format!("transcription-{}", call.id),
            "state": if options["startTranscription"].as_bool() == Some(true) { "active" } else { "inactive" },
            "subscribedResultTypes": ["final", "intermediate"],
        });
    }
    p
}

/// Applies a valid, authenticated request to the fake's state; the reference's success
/// status, or the service's error.
fn execute(
    state: &mut State,
    operation: &Operation,
    params: &[(String, String)],
    body: &Value,
) -> (u16, Value) {
    let ok = operation.success;
    let name = operation.name.as_str();
    match name {
        "AnswerCall" | "RejectCall" | "RedirectCall" => {
            let context = body["incomingCallContext"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let incoming = match state.contexts.get(&context) {
                Some(ContextUse::Offered(incoming)) => incoming.clone(),
                Some(ContextUse::Used(how)) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &format!("The incoming call was already {how}"),
                        Some("incomingCallContext"),
                    );
                }
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "Invalid incoming call context",
                        Some("incomingCallContext"),
                    );
                }
            };
            let how = match name {
                "AnswerCall" => "answered",
                "RejectCall" => "rejected",
                _ => "redirected",
            };
            state.contexts.insert(context, ContextUse::Used(how));
            if name != "AnswerCall" {
                return (ok, Value::Null);
            }
            let id = state.id("call");
            let call = FakeCall {
                id: id.clone(),
                state: "connecting".to_owned(),
                callback_uri: body["callbackUri"].as_str().unwrap_or_default().to_owned(),
                from: incoming.from,
                to: incoming.to,
                media_streaming: body.get("mediaStreamingOptions").cloned(),
                transcription: body.get("transcriptionOptions").cloned(),
                actions: vec![(name.to_owned(), body.clone())],
            };
            let reply = properties(&call);
            state.calls.insert(id, call);
            (ok, reply)
        }
        "CreateCall" | "Connect" => {
            let id = state.id("call");
            let call = FakeCall {
                id: id.clone(),
                state: "connecting".to_owned(),
                callback_uri: body["callbackUri"].as_str().unwrap_or_default().to_owned(),
                media_streaming: body.get("mediaStreamingOptions").cloned(),
                transcription: body.get("transcriptionOptions").cloned(),
                actions: vec![(name.to_owned(), body.clone())],
                ..FakeCall::default()
            };
            let reply = properties(&call);
            state.calls.insert(id, call);
            (ok, reply)
        }
        "CallRecording_StartRecording" => {
            let id = state.id("recording");
            state.recordings.insert(id.clone(), "active".to_owned());
            (
                ok,
                json!({"recordingId": id, "recordingState": "active", "recordingKind": "azureCommunicationServices"}),
            )
        }
        _ if name.starts_with("CallRecording_") => {
            let id = param(params, "recordingId").to_owned();
            let Some(current) = state.recordings.get(&id).cloned() else {
                return error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "Recording not found",
                    Some("recordingId"),
                );
            };
            let new = match name {
                "CallRecording_PauseRecording" => "inactive",
                "CallRecording_ResumeRecording" => "active",
                "CallRecording_StopRecording" => {
                    state.recordings.remove(&id);
                    return (ok, Value::Null);
                }
                _ => current.as_str(),
            }
            .to_owned();
            state.recordings.insert(id.clone(), new.clone());
            let reply = json!({"recordingId": id, "recordingState": new, "recordingKind": "azureCommunicationServices"});
            (ok, if ok == 200 { reply } else { Value::Null })
        }
        _ => {
            let id = param(params, "callConnectionId");
            let Some(call) = state.calls.get_mut(id) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "8522",
                    "Call not found",
                    Some("callConnectionId"),
                );
            };
            if call.state == "disconnected" {
                return error(
                    StatusCode::BAD_REQUEST,
                    "8501",
                    "Action is invalid when call is not in Established state",
                    None,
                );
            }
            call.actions.push((name.to_owned(), body.clone()));
            if call.state == "connecting" {
                call.state = "connected".to_owned();
            }
            let context = || json!({"operationContext": body["operationContext"]});
            let reply = match name {
                "CallConnection_GetCall" => properties(call),
                "CallConnection_HangupCall" | "CallConnection_TerminateCall" => {
                    call.state = "disconnected".to_owned();
                    Value::Null
                }
                "CallConnection_TransferToParticipant" => {
                    call.state = "transferring".to_owned();
                    context()
                }
                "CallConnection_GetParticipants" => json!({"value": [], "nextLink": null}),
                "CallConnection_AddParticipant" => json!({
                    "participant": {"identifier": body["participantToAdd"], "isMuted": false, "isOnHold": false},
                    "operationContext": body["operationContext"],
                    "invitationId": format!("invitation-{id}"),
                }),
                "CallConnection_GetParticipant" => {
                    json!({"identifier": {"rawId": param(params, "participantRawId")}, "isMuted": false, "isOnHold": false})
                }
                "CallConnection_CancelAddParticipant" => {
                    json!({"invitationId": body["invitationId"], "operationContext": body["operationContext"]})
                }
                "CallConnection_RemoveParticipant"
                | "CallConnection_Mute"
                | "CallMedia_SendDtmfTones" => context(),
                _ => Value::Null,
            };
            (ok, reply)
        }
    }
}
