//! The admin API, on its own listener (`[admin] listen`, loopback by default): the live calls
//! and their processors' counters, audio played into a call, barge-in, ending a call, and
//! draining the node; its OpenAPI document at `/openapi.json`, derived from these handlers.
//!
//! Every route but `/healthz`, `/readyz` and the dashboard's own pages needs
//! `Authorization: Bearer <admin.token>` or the dashboard's session cookie; with no token
//! configured, only loopback clients are served (and the config refuses a public `admin.listen`
//! without one). Refusals are counted in `mediagate_admin_refused_total`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::sse::{self, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{Stream, StreamExt};
use mediagate_audio::{AudioFormat, Clip, Timestamp};
use mediagate_pipeline::PlayError;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

pub(crate) mod dashboard;
pub(crate) mod guest;
mod listen;

use crate::AppState;
use crate::config::MetricsListener;
use crate::live::LiveTransport;
use crate::metrics::AdminRefusal;

/// The admin listener's routes.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let mut api = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/calls", get(list_calls))
        .route("/calls/{call_id}", get(get_call))
        .route("/ended-calls", get(ended_calls))
        .route("/calls/{call_id}/play", post(play))
        .route("/clips", get(clips))
        .route("/calls/{call_id}/stop-audio", post(stop_audio))
        .route("/calls/{call_id}/hangup", post(hangup))
        .route("/calls/{call_id}/listen", get(listen::listen))
        .route("/guest-links", post(guest::issue))
        .route("/guest-links/{id}", axum::routing::delete(guest::revoke))
        .route("/drain", post(drain))
        .route("/events", get(events))
        .route("/files/{call_id}/", get(dashboard::folder))
        .route("/files/{call_id}/{name}", get(dashboard::file));
    if state.config.metrics.listen == MetricsListener::Admin {
        api = api.route("/metrics", get(crate::routes::metrics));
    }
    let api = api.route_layer(middleware::from_fn_with_state(
        Arc::clone(&state),
        authorize,
    ));
    Router::new()
        .route("/healthz", get(crate::routes::healthz))
        .route("/readyz", get(crate::routes::readyz))
        // The dashboard's pages let a browser in themselves (a token in the address, then a
        // session cookie); its script and style hold nothing secret.
        .route("/", get(dashboard::index).post(dashboard::login))
        .route("/dashboard.js", get(dashboard::script))
        .route("/dashboard.css", get(dashboard::style))
        .route("/listen-worklet.js", get(dashboard::worklet))
        // Guest links check their own token on every request.
        .route("/guest/{token}", get(guest::page))
        .route("/guest/{token}/calls/{call_id}", get(guest::call))
        .route("/guest/{token}/calls/{call_id}/events", get(guest::events))
        .route("/guest/{token}/calls/{call_id}/listen", get(guest::listen))
        .merge(api)
        .fallback(|| async { Failure::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(state.config.admin.max_body_bytes))
        .with_state(state)
}

/// Lets a request through when it carries the admin token (or, with none configured, comes
/// from loopback).
async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let refusal = match &state.config.admin.token {
        // A web page's script can reach loopback too: its requests are refused by their
        // `Origin`, and a rebound DNS name by its `Host`.
        _ if cross_origin(request.headers()) => Some(AdminRefusal::CrossOrigin),
        None if !loopback_host(request.headers()) => Some(AdminRefusal::NotLoopback),
        None => {
            let remote = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0);
            match remote {
                Some(remote) if remote.ip().is_loopback() => None,
                _ => Some(AdminRefusal::NotLoopback),
            }
        }
        Some(_) if state.sessions.admits(request.headers()) => None,
        Some(token) => match bearer(request.headers()) {
            None => Some(AdminRefusal::Missing),
            Some(offered) if constant_time_eq(offered.as_bytes(), token.0.trim().as_bytes()) => {
                None
            }
            Some(_) => Some(AdminRefusal::Invalid),
        },
    };
    let Some(refusal) = refusal else {
        return next.run(request).await;
    };
    state.metrics.admin_refused(refusal);
    match refusal {
        AdminRefusal::NotLoopback => Failure::new(
            StatusCode::FORBIDDEN,
            "the admin API has no token configured: loopback clients (and loopback names) only",
        )
        .into_response(),
        AdminRefusal::CrossOrigin => Failure::new(
            StatusCode::FORBIDDEN,
            "a request from another origin (a web page's script) is refused",
        )
        .into_response(),
        _ => {
            let mut response = Failure::new(
                StatusCode::UNAUTHORIZED,
                if refusal == AdminRefusal::Missing {
                    "an `Authorization: Bearer <admin token>` header is required"
                } else {
                    "the admin token is not valid"
                },
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"mediagate-admin\""),
            );
            response
        }
    }
}

/// Whether a browser sent the request from a page of another origin: its `Origin` names a host
/// other than the one it asked. (Clients that are not browsers send no `Origin`.)
pub(crate) fn cross_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(origin), Some(host)) => !origin.eq_ignore_ascii_case(host),
        // `Origin: null` (a sandboxed or file page), or no `Host`: not the dashboard.
        _ => true,
    }
}

/// Whether the request names a loopback host (`localhost`, 127.0.0.0/8, `[::1]`), as a
/// request to the token-less admin API must: another name pointing at 127.0.0.1 is a rebound
/// DNS name, a web page's way in.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        // HTTP/1.0 without Host: not a browser.
        return true;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The credential of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// An error: its status, and a message for whoever called.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiError {
    /// What went wrong.
    error: String,
}

/// An error response.
struct Failure(StatusCode, String);

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure(status, message.into())
    }

    fn no_call(call_id: &str) -> Self {
        Failure::new(StatusCode::NOT_FOUND, format!("no live call {call_id:?}"))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

/// A live call: its transports, each with its processors.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CallView {
    /// The call's id: its folder under the data dir (or its identity when nothing is recorded).
    call_id: String,
    /// When its first live transport began (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    started_at: Timestamp,
    /// Seconds since then.
    duration_secs: f64,
    /// Its live transports (media, transcription).
    transports: Vec<TransportView>,
    /// Its last final transcripts (up to 50), in the order they came.
    transcript: Vec<TranscriptLine>,
}

/// A final transcript.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TranscriptLine {
    /// `acs`, or the engine's name.
    source: String,
    /// Who spoke, when known.
    speaker: Option<String>,
    /// What was said.
    text: String,
    /// Where it starts on the call's timeline, in ms.
    start_ms: u64,
}

/// One live transport of a call.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TransportView {
    /// The connection's id (as in the logs).
    connection: u64,
    /// `media` or `transcription`.
    kind: &'static str,
    /// The WebSocket path it connected to.
    path: String,
    /// The platform's address.
    remote_addr: Option<String>,
    /// When the call began on it (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    started_at: Timestamp,
    /// Seconds since then.
    duration_secs: f64,
    /// The audio's sample rate.
    sample_rate_hz: u32,
    /// The audio's channels (1: mixed, or one participant per frame).
    channels: u16,
    /// Whether audio can be played into the call through it.
    bidirectional: bool,
    /// Outbound audio queued and not yet sent, in milliseconds.
    queued_playback_ms: u64,
    /// Its sources: the participants of an unmixed call (or `mixed`), each with its latest
    /// level when a `level_meter` measures them.
    sources: Vec<SourceView>,
    /// Its processors, in pipeline order.
    processors: Vec<ProcessorView>,
}

/// One source of a call's audio.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SourceView {
    /// `mixed`, or the participant's raw id.
    name: String,
    /// Its latest RMS level, in dBFS (absent until measured).
    rms_dbfs: Option<f64>,
    /// Its latest peak, in dBFS.
    peak_dbfs: Option<f64>,
}

/// A processor's counters so far.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProcessorView {
    /// Its name in the pipeline.
    name: String,
    /// Audio frames it processed.
    frames: u64,
    /// Events it processed.
    events: u64,
    /// Items dropped because its inbox was full.
    dropped: u64,
    /// Events dropped from a lossless inbox so that no audio was.
    events_dropped: u64,
    /// Callbacks that returned an error.
    errors: u64,
    /// Callbacks that panicked.
    panics: u64,
    /// Seconds spent in its callbacks.
    busy_seconds: f64,
    /// Its slowest callback, in seconds.
    max_callback_seconds: f64,
    /// Most items ever waiting in its inbox.
    queue_high_water: u64,
}

fn transport_view(transport: &LiveTransport, now: Timestamp) -> TransportView {
    let (bidirectional, queued) = match &*transport.playback() {
        Some(playback) => (true, playback.queued()),
        None => (false, Duration::ZERO),
    };
    TransportView {
        connection: transport.connection,
        kind: transport.kind.as_str(),
        path: transport.path.clone(),
        remote_addr: transport.remote_addr.map(|a| a.to_string()),
        started_at: transport.started_at,
        duration_secs: seconds_between(transport.started_at, now),
        sample_rate_hz: transport.format.sample_rate_hz(),
        channels: transport.format.channels(),
        bidirectional,
        queued_playback_ms: u64::try_from(queued.as_millis()).unwrap_or(u64::MAX),
        sources: transport
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, level)| SourceView {
                name: name.clone(),
                rms_dbfs: level.map(|l| l.rms_dbfs),
                peak_dbfs: level.map(|l| l.peak_dbfs),
            })
            .collect(),
        processors: transport
            .probes
            .iter()
            .map(|probe| {
                let c = probe.counters();
                ProcessorView {
                    name: probe.name().to_string(),
                    frames: c.frames,
                    events: c.events,
                    dropped: c.dropped,
                    events_dropped: c.events_dropped,
                    errors: c.errors,
                    panics: c.panics,
                    busy_seconds: c.callback_nanos.sum as f64 / 1e9,
                    max_callback_seconds: c.max_callback_micros as f64 / 1e6,
                    queue_high_water: c.queue_high_water,
                }
            })
            .collect(),
    }
}

fn seconds_between(earlier: Timestamp, later: Timestamp) -> f64 {
    later.micros_since(earlier).max(0) as f64 / 1e6
}

/// The calls of `transports` (in connection order), each with its transports.
fn calls_of(transports: &[Arc<LiveTransport>]) -> Vec<CallView> {
    let now = Timestamp::now();
    let mut calls: Vec<CallView> = Vec::new();
    for transport in transports {
        let view = transport_view(transport, now);
        match calls.iter_mut().find(|c| *c.call_id == *transport.call_id) {
            Some(call) => {
                if view.started_at.unix_micros() < call.started_at.unix_micros() {
                    call.started_at = view.started_at;
                    call.duration_secs = view.duration_secs;
                }
                call.transports.push(view);
            }
            None => calls.push(CallView {
                call_id: transport.call_id.to_string(),
                started_at: view.started_at,
                duration_secs: view.duration_secs,
                transports: vec![view],
                transcript: Vec::new(),
            }),
        }
        // The call's list, once: its transports share it.
        if let Some(call) = calls.iter_mut().find(|c| *c.call_id == *transport.call_id) {
            if call.transcript.is_empty() {
                let recent = transport
                    .transcript
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                call.transcript = recent
                    .iter()
                    .map(|t| TranscriptLine {
                        source: t.source.to_string(),
                        speaker: t.speaker.as_deref().map(str::to_owned),
                        text: t.text.clone(),
                        start_ms: t.start_ms,
                    })
                    .collect();
            }
        }
    }
    calls
}

/// The live transports of `call_id`; 404 when it has none.
fn live_call(state: &AppState, call_id: &str) -> Result<Vec<Arc<LiveTransport>>, Failure> {
    let transports = state.live.of_call(call_id);
    if transports.is_empty() {
        return Err(Failure::no_call(call_id));
    }
    Ok(transports)
}

/// The live calls.
#[utoipa::path(get, path = "/calls", tag = "calls",
    responses((status = 200, description = "Every live call", body = [CallView])))]
async fn list_calls(State(state): State<Arc<AppState>>) -> Json<Vec<CallView>> {
    Json(calls_of(&state.live.all()))
}

/// One live call.
#[utoipa::path(get, path = "/calls/{call_id}", tag = "calls",
    params(("call_id" = String, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The call", body = CallView),
        (status = 404, description = "No such live call", body = ApiError),
    ))]
async fn get_call(
    State(state): State<Arc<AppState>>,
    Path(call_id): Path<String>,
) -> Result<Json<CallView>, Failure> {
    calls_of(&state.live.of_call(&call_id))
        .pop()
        .map(Json)
        .ok_or_else(|| Failure::no_call(&call_id))
}

/// A call that ended.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EndedCallView {
    /// The call's id (its folder).
    call_id: String,
    /// When its last transport ended (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    ended_at: Timestamp,
    /// Its folder's files, read-only (when calls are recorded).
    files: Option<String>,
}

/// The last 100 calls that ended, newest first.
#[utoipa::path(get, path = "/ended-calls", tag = "calls",
    responses((status = 200, description = "Calls that ended, newest first", body = [EndedCallView])))]
async fn ended_calls(State(state): State<Arc<AppState>>) -> Json<Vec<EndedCallView>> {
    let recorded = state.config.recording.enabled;
    Json(
        state
            .live
            .ended()
            .into_iter()
            .map(|call| EndedCallView {
                files: recorded.then(|| {
                    let id: String =
                        form_urlencoded::byte_serialize(call.call_id.as_bytes()).collect();
                    format!("/files/{id}/")
                }),
                call_id: call.call_id.to_string(),
                ended_at: call.ended_at,
            })
            .collect(),
    )
}

/// A WAV file (PCM16, any rate from 8 to 48 kHz, up to 8 channels, mixed down on the way).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
struct WavUpload(Vec<u8>);

/// What was queued.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Played {
    /// The clip's length, in milliseconds.
    clip_ms: u64,
    /// Outbound audio queued after it (this clip and what was there before), in milliseconds.
    queued_ms: u64,
}

/// What to play, as JSON: a clip of `[admin] clips_dir` by name, or text to speak.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlayRequest {
    /// A clip's name: `<clips_dir>/<clip>.wav`.
    clip: Option<String>,
    /// Text to speak (espeak-ng's default voice), at most 4,096 bytes.
    text: Option<String>,
}

/// Longest text spoken into a call.
const MAX_TEXT_BYTES: usize = 4096;

/// Plays into the call, after what is already queued: an uploaded WAV file (`audio/wav`), or
/// (`application/json`) a server-side clip by name or text spoken with `say`'s voice.
#[utoipa::path(post, path = "/calls/{call_id}/play", tag = "calls",
    params(("call_id" = String, Path, description = "The call's id")),
    request_body(content(
        (inline(WavUpload) = "audio/wav"),
        (PlayRequest = "application/json"),
    )),
    responses(
        (status = 200, description = "Queued", body = Played),
        (status = 404, description = "No such live call, or no such clip", body = ApiError),
        (status = 409, description = "The call has no outbound audio (not bidirectional)", body = ApiError),
        (status = 413, description = "Larger than `admin.max_body_bytes`"),
        (status = 415, description = "Not a PCM16 WAV file the gateway can play", body = ApiError),
        (status = 422, description = "A request naming neither or both of `clip` and `text`, or text that cannot be spoken", body = ApiError),
        (status = 503, description = "The call's outbound queue is full", body = ApiError),
    ))]
async fn play(
    State(state): State<Arc<AppState>>,
    Path(call_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Played>, Failure> {
    let transports = live_call(&state, &call_id)?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let source = if json {
        let request: PlayRequest = serde_json::from_slice(&body)
            .map_err(|e| Failure::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
        match (request.clip, request.text) {
            (Some(clip), None) => Source::Clip(clip),
            (None, Some(text)) => Source::Text(text),
            _ => {
                return Err(Failure::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "name either a `clip` or a `text` to say",
                ));
            }
        }
    } else {
        Source::Wav(body)
    };
    let loader = Arc::clone(&state);
    // The call's rate, from its media transport (the one with a player).
    let rate = transports
        .iter()
        .find(|t| t.kind == crate::session::TransportKind::Media)
        .map(|t| t.format.sample_rate_hz())
        .ok_or_else(|| no_outbound(&call_id))?;
    // Decoded, mixed down and resampled here, off the async threads and before the player's
    // lock is taken: under it, the samples are only queued.
    let clip = tokio::task::spawn_blocking(move || {
        source
            .load(&loader)
            .and_then(|clip| to_call_format(&clip, rate))
    })
    .await
    .map_err(|_| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "loading the audio failed",
        )
    })??;
    for transport in &transports {
        let mut player = transport.playback();
        let Some(playback) = player.as_mut() else {
            continue;
        };
        return match playback.play_clip(&clip) {
            Ok(()) => Ok(Json(Played {
                clip_ms: millis(clip.duration()),
                queued_ms: millis(playback.queued()),
            })),
            Err(PlayError::Full(full)) => Err(Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                full.to_string(),
            )),
            Err(e) => Err(Failure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                e.to_string(),
            )),
        };
    }
    Err(no_outbound(&call_id))
}

/// Where the audio to play comes from.
enum Source {
    Wav(Bytes),
    Clip(String),
    Text(String),
}

impl Source {
    /// The clip to play. Blocking: reads a file or runs the speaker.
    fn load(self, state: &AppState) -> Result<Clip, Failure> {
        match self {
            Source::Wav(body) => parse_wav(&body),
            Source::Clip(name) => {
                let Some(dir) = &state.config.admin.clips_dir else {
                    return Err(Failure::new(
                        StatusCode::NOT_FOUND,
                        "no clips: `[admin] clips_dir` is not set",
                    ));
                };
                if !dashboard::plain_name(&name) {
                    return Err(Failure::new(StatusCode::NOT_FOUND, "no such clip"));
                }
                let path = dir.join(format!("{name}.wav"));
                let bytes =
                    read_capped(&path, state.config.admin.max_body_bytes).map_err(|_| {
                        Failure::new(StatusCode::NOT_FOUND, format!("no clip {name:?}"))
                    })?;
                parse_wav(&bytes)
            }
            Source::Text(text) => {
                if text.len() > MAX_TEXT_BYTES {
                    return Err(Failure::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("the text is over {MAX_TEXT_BYTES} bytes"),
                    ));
                }
                let Some(speaker) = &state.speaker else {
                    return Err(Failure::new(
                        StatusCode::CONFLICT,
                        "this gateway has no voice (its registry set no speaker)",
                    ));
                };
                speaker(&text).map_err(|e| Failure::new(StatusCode::UNPROCESSABLE_ENTITY, e))
            }
        }
    }
}

/// `clip` as mono samples at `rate`, what a call plays.
fn to_call_format(clip: &Clip, rate: u32) -> Result<Clip, Failure> {
    let channels = usize::from(clip.format.channels());
    let mono = if channels > 1 {
        let samples: Vec<i16> = clip.samples().collect();
        let mixed: Vec<i16> = samples
            .chunks_exact(channels)
            .map(|frame| {
                let sum: i32 = frame.iter().map(|&s| i32::from(s)).sum();
                (sum / channels as i32) as i16
            })
            .collect();
        Clip::from_samples(AudioFormat::mono(clip.format.sample_rate_hz()), &mixed)
    } else {
        clip.clone()
    };
    mono.at_rate(rate)
        .map_err(|e| Failure::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()))
}

/// The file at `path`, if it is no larger than `max` bytes.
fn read_capped(path: &std::path::Path, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > max {
        return Err(std::io::Error::other("too large"));
    }
    Ok(bytes)
}

/// The clips `[admin] clips_dir` holds, by name.
#[utoipa::path(get, path = "/clips", tag = "calls",
    responses((status = 200, description = "Clip names, to play by name", body = [String])))]
async fn clips(State(state): State<Arc<AppState>>) -> Json<Vec<String>> {
    let Some(dir) = state.config.admin.clips_dir.clone() else {
        return Json(Vec::new());
    };
    let names = tokio::task::spawn_blocking(move || {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let stem = name.strip_suffix(".wav")?;
                dashboard::plain_name(stem).then(|| stem.to_owned())
            })
            .take(1000)
            .collect();
        names.sort();
        names
    })
    .await
    .unwrap_or_default();
    Json(names)
}

fn no_outbound(call_id: &str) -> Failure {
    Failure::new(
        StatusCode::CONFLICT,
        format!("call {call_id:?} has no outbound audio: its media stream is not bidirectional"),
    )
}

/// The value of `key` in a query string or a form body, percent-decoded.
pub(super) fn form_value(form: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(form.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, value)| value.into_owned())
}

/// `bytes` random bytes from the kernel, as hex: session and guest-link ids. `None` when the
/// kernel gives none.
pub(crate) fn random_hex(bytes: usize) -> Option<String> {
    let mut random = vec![0u8; bytes];
    let mut filled = 0;
    while filled < random.len() {
        match rustix::rand::getrandom(&mut random[filled..], rustix::rand::GetRandomFlags::empty())
        {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
    Some(random.iter().map(|b| format!("{b:02x}")).collect())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A PCM16 WAV file as a clip; 415 for anything else.
fn parse_wav(body: &[u8]) -> Result<Clip, Failure> {
    let unsupported = |why: String| Failure::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, why);
    let reader = hound::WavReader::new(std::io::Cursor::new(body))
        .map_err(|e| unsupported(format!("not a WAV file: {e}")))?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(unsupported(format!(
            "{}-bit {:?} samples; only 16-bit PCM is played",
            spec.bits_per_sample, spec.sample_format
        )));
    }
    if !(8_000..=48_000).contains(&spec.sample_rate) || !(1..=8).contains(&spec.channels) {
        return Err(unsupported(format!(
            "{} Hz, {} channels; 8 to 48 kHz and 1 to 8 channels are played",
            spec.sample_rate, spec.channels
        )));
    }
    let samples = reader
        .into_samples::<i16>()
        .collect::<Result<Vec<i16>, _>>()
        .map_err(|e| unsupported(format!("the WAV data does not read: {e}")))?;
    let format = AudioFormat::new(spec.sample_rate, spec.channels)
        .map_err(|e| unsupported(e.to_string()))?;
    Ok(Clip::from_samples(format, &samples))
}

/// What a barge-in cut.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Stopped {
    /// Audio sent into the call before the cut, in milliseconds.
    played_ms: u64,
    /// Queued audio dropped, in milliseconds.
    cut_ms: u64,
}

/// Barge-in: drops the call's queued outbound audio and sends StopAudio to the platform; every
/// processor is told.
#[utoipa::path(post, path = "/calls/{call_id}/stop-audio", tag = "calls",
    params(("call_id" = String, Path, description = "The call's id")),
    responses(
        (status = 200, description = "Stopped", body = Stopped),
        (status = 404, description = "No such live call", body = ApiError),
        (status = 409, description = "The call has no outbound audio (not bidirectional)", body = ApiError),
    ))]
async fn stop_audio(
    State(state): State<Arc<AppState>>,
    Path(call_id): Path<String>,
) -> Result<Json<Stopped>, Failure> {
    let transports = live_call(&state, &call_id)?;
    for transport in &transports {
        if let Some(playback) = transport.playback().as_mut() {
            let cut = playback.stop_audio();
            return Ok(Json(Stopped {
                played_ms: cut.played_ms,
                cut_ms: cut.cut_ms,
            }));
        }
    }
    Err(no_outbound(&call_id))
}

/// What was ended.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HungUp {
    /// The transports asked to close (each closes with 1000, `ended by the operator`).
    transports: usize,
}

/// Ends the call: a call the control plane answered is terminated at ACS (for everyone) first;
/// then each of its transports closes with 1000, and its files are finalized as for any other
/// end (session.json says `operator`).
#[utoipa::path(post, path = "/calls/{call_id}/hangup", tag = "calls",
    params(("call_id" = String, Path, description = "The call's id")),
    responses(
        (status = 202, description = "Ending", body = HungUp),
        (status = 404, description = "No such live call", body = ApiError),
    ))]
async fn hangup(
    State(state): State<Arc<AppState>>,
    Path(call_id): Path<String>,
) -> Result<(StatusCode, Json<HungUp>), Failure> {
    let transports = live_call(&state, &call_id)?;
    // A call the control plane answered is ended at ACS too (for everyone), not only here:
    // closing the sockets alone would leave the caller on a line nobody listens to.
    if let Some(acs) = &state.acs {
        if let Some(id) = acs.call(&call_id).and_then(|c| c.call_connection_id()) {
            if let Err(e) = acs.client.terminate(&id).await {
                tracing::warn!(call_id = %call_id, error = %e, "cannot end the call at ACS");
            }
        }
    }
    for transport in &transports {
        transport.hangup.cancel();
    }
    tracing::info!(call_id = %call_id, "call ended by the operator");
    Ok((
        StatusCode::ACCEPTED,
        Json(HungUp {
            transports: transports.len(),
        }),
    ))
}

/// The node's state after a drain.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Draining {
    /// Calls still live (they go on until they end).
    live_calls: usize,
}

/// Drains the node: new calls are refused from now on (the main listener stops accepting,
/// `/readyz` answers 503) and live calls go on until they end. Stop the process afterwards; a
/// drain cannot be undone.
#[utoipa::path(post, path = "/drain", tag = "node",
    responses((status = 202, description = "Draining", body = Draining)))]
async fn drain(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Draining>) {
    if !state.draining.is_cancelled() {
        tracing::info!(
            live_calls = state.live_calls(),
            "draining (admin API): no new calls"
        );
        state.draining.cancel();
    }
    (
        StatusCode::ACCEPTED,
        Json(Draining {
            live_calls: state.live_calls(),
        }),
    )
}

/// Streams what happens in calls as server-sent events, from now on: `call_started`,
/// `call_ended`, `participant_joined`, `dtmf`, `transcript` (partial and final), `vad`,
/// `barge_in`, `processor_detached` and processors' `custom` events, each a JSON object with
/// its `call_id`. A watcher that falls behind by more than the gateway keeps is sent `lagged`
/// and its stream ends: it never slows a call, and nothing is buffered for it without bound.
#[utoipa::path(get, path = "/events", tag = "events",
    params(("call" = Option<String>, Query, description = "Only this call's events")),
    responses((status = 200, description = "A stream of server-sent events (`event:` its kind, \
        `data:` its JSON)", content_type = "text/event-stream", body = String)))]
async fn events(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Sse<impl Stream<Item = Result<sse::Event, Infallible>>> {
    let call = uri.query().and_then(|query| form_value(query, "call"));
    event_stream(state, call, None, None)
}

/// An SSE stream of the events of `call` (or all), of the `kinds` given (or all), until
/// `until` (a guest token's end) if given.
pub(crate) fn event_stream(
    state: Arc<AppState>,
    call: Option<String>,
    kinds: Option<&'static [&'static str]>,
    until: Option<guest::Until>,
) -> Sse<impl Stream<Item = Result<sse::Event, Infallible>>> {
    let watcher = Watcher::new(Arc::clone(&state), call, kinds, until);
    // A comment first: once a client reads it, it is subscribed.
    let subscribed = futures_util::stream::once(async {
        Ok::<_, Infallible>(sse::Event::default().comment("subscribed"))
    });
    let stream = futures_util::stream::unfold(Some(watcher), |watcher| async move {
        let mut watcher = watcher?;
        loop {
            let received = match &watcher.until {
                None => watcher.rx.recv().await,
                Some(until) => tokio::select! {
                    () = until.reached() => return None,
                    received = watcher.rx.recv() => received,
                },
            };
            match received {
                Ok(event) => {
                    if !watcher.wants(&event) {
                        continue;
                    }
                    let sent = sse::Event::default().event(event.kind).data(&event.data);
                    // A guest's stream ends with its call.
                    let over = watcher.until.is_some()
                        && event.kind == "call_ended"
                        && watcher.state.live.of_call(&event.call_id).is_empty();
                    return Some((Ok(sent), (!over).then_some(watcher)));
                }
                Err(RecvError::Lagged(missed)) => {
                    watcher.state.metrics.event_stream_cut();
                    tracing::info!(missed, "an event watcher fell behind: its stream is ended");
                    let data = serde_json::json!({ "missed": missed }).to_string();
                    let sent = sse::Event::default().event("lagged").data(data);
                    return Some((Ok(sent), None));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(subscribed.chain(stream)).keep_alive(sse::KeepAlive::default())
}

/// One `GET /events` stream: its subscription, its filter, and its place in the gauge of open
/// streams (left when the stream is dropped, however it ends).
struct Watcher {
    rx: tokio::sync::broadcast::Receiver<Arc<crate::events::Published>>,
    call: Option<String>,
    kinds: Option<&'static [&'static str]>,
    until: Option<guest::Until>,
    state: Arc<AppState>,
}

impl Watcher {
    fn new(
        state: Arc<AppState>,
        call: Option<String>,
        kinds: Option<&'static [&'static str]>,
        until: Option<guest::Until>,
    ) -> Self {
        state.metrics.event_stream_opened();
        Watcher {
            rx: state.events.subscribe(),
            call,
            kinds,
            until,
            state,
        }
    }

    /// Whether the watcher's filters let `event` through.
    /// (`custom:<tag>` in `kinds` lets only that processor kind of `custom` events through.)
    fn wants(&self, event: &crate::events::Published) -> bool {
        let kind_wanted = |wanted: &&str| {
            *wanted == event.kind
                || (event.kind == "custom"
                    && wanted.strip_prefix("custom:") == event.tag.as_deref())
        };
        self.call
            .as_deref()
            .is_none_or(|call| call == &*event.call_id)
            && self.kinds.is_none_or(|kinds| kinds.iter().any(kind_wanted))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.state.metrics.event_stream_closed();
    }
}

/// The admin API's OpenAPI 3.1 document.
async fn openapi() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mediagate admin API",
        description = "Live calls, control and drain of one mediagate node.",
    ),
    paths(
        crate::routes::healthz,
        crate::routes::readyz,
        list_calls,
        get_call,
        ended_calls,
        clips,
        play,
        stop_audio,
        hangup,
        drain,
        events,
        guest::issue,
        guest::revoke
    ),
    components(schemas(ApiError, PlayRequest, CallView, TransportView, SourceView, TranscriptLine, ProcessorView, EndedCallView, Played, Stopped, HungUp, Draining, guest::NewGuestLink, guest::GuestLink, guest::Scope)),
    modifiers(&BearerToken),
    security(("admin_token" = [])),
)]
struct ApiDoc;

/// The `admin_token` bearer scheme every authenticated route names.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_every_route() {
        let doc = ApiDoc::openapi();
        let paths: Vec<&String> = doc.paths.paths.keys().collect();
        for path in [
            "/healthz",
            "/readyz",
            "/calls",
            "/calls/{call_id}",
            "/ended-calls",
            "/calls/{call_id}/play",
            "/clips",
            "/calls/{call_id}/stop-audio",
            "/calls/{call_id}/hangup",
            "/drain",
            "/events",
        ] {
            assert!(paths.iter().any(|p| *p == path), "{path} not in {paths:?}");
        }
    }

    #[test]
    fn pages_of_other_origins_and_rebound_names_are_told_apart() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(
                    header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            map
        };
        assert!(!cross_origin(&headers(&[("host", "127.0.0.1:9090")])));
        assert!(!cross_origin(&headers(&[
            ("host", "127.0.0.1:9090"),
            ("origin", "http://127.0.0.1:9090")
        ])));
        assert!(cross_origin(&headers(&[
            ("host", "127.0.0.1:9090"),
            ("origin", "https://evil.example")
        ])));
        assert!(cross_origin(&headers(&[
            ("host", "127.0.0.1:9090"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(cross_origin(&headers(&[("host", "a"), ("origin", "null")])));
        for host in [
            "localhost:9090",
            "127.0.0.1",
            "127.1.2.3:1",
            "[::1]:9090",
            "LOCALHOST",
        ] {
            assert!(loopback_host(&headers(&[("host", host)])), "{host}");
        }
        for host in ["rebound.evil.example:9090", "10.0.0.1:9090", "[::2]:1"] {
            assert!(!loopback_host(&headers(&[("host", host)])), "{host}");
        }
    }

    #[test]
    fn only_a_bearer_header_carries_the_token() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "bearer  s3cret ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("s3cret"));
    }

    #[test]
    fn only_pcm16_wav_is_played() {
        let mut wav = Vec::new();
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 24_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::new(std::io::Cursor::new(&mut wav), spec).unwrap();
        for i in 0..480 {
            writer.write_sample(i as i16).unwrap();
        }
        writer.finalize().unwrap();
        let clip = parse_wav(&wav).unwrap_or_else(|e| panic!("{}", e.1));
        assert_eq!(clip.format, AudioFormat::new(24_000, 2).unwrap());
        assert_eq!(clip.duration(), Duration::from_millis(10));
        for bad in [&b"RIFF"[..], b"", &wav[..40]] {
            let err = parse_wav(bad).err().unwrap();
            assert_eq!(err.0, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", err.1);
        }
    }
}
