//! `realtime`: a voice-bot bridge. Each call gets one WebSocket to a speech-to-speech model
//! service that speaks the OpenAI Realtime API event protocol (OpenAI, Azure OpenAI, or anything
//! compatible); the caller's audio goes up, the model's answers come back into the call, and
//! the caller talking over an answer cuts it (barge-in: StopAudio to the platform).
//!
//! # What goes over the socket
//!
//! - On connect: one `session.update` with 24 kHz PCM16 in and out, the `instructions`, the
//!   `voice` and the turn detection. The GA shape (`api = "ga"`, the default) is
//!   `{"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
//!   "turn_detection": …}, "output": {"format": …, "voice": …}}}`; the beta shape
//!   (`api = "beta"`, which also sends the `OpenAI-Beta: realtime=v1` header) is
//!   `{"input_audio_format": "pcm16", "output_audio_format": "pcm16", "turn_detection": …}`.
//! - Up: `input_audio_buffer.append` with base64 PCM16 LE mono at 24 kHz (the pipeline
//!   resamples the call's audio once). Frames are batched up to 200 ms when the socket is
//!   behind, one message per 20 ms frame otherwise. With `turn_detection = "gateway_vad"` also
//!   `input_audio_buffer.commit` + `response.create` at the end of each utterance, and
//!   `response.cancel` on barge-in.
//! - Down: `response.output_audio.delta` (GA) and `response.audio.delta` (beta) are played
//!   into the call (converted to the call's rate); `response.output_audio.done`,
//!   `response.audio.done` and `response.done` end the answer's stream;
//!   `input_audio_buffer.speech_started` while an answer is audible is a barge-in: the call's
//!   outbound audio is cut, StopAudio goes to the platform, and `conversation.item.truncate`
//!   tells the model how much of its answer was heard (so its memory of the conversation
//!   matches the caller's). Deltas of the cut response still in flight are dropped. `error`
//!   events are logged and counted. Everything else is ignored.
//!
//! # Turns
//!
//! `turn_detection = "server_vad"` (the default) or `"semantic_vad"`: the service decides when
//! the caller has finished (and answers) and when they start talking (`speech_started`).
//! `"gateway_vad"`: the service's turn detection is off and turns follow the call's
//! [`Event::Speech`] events, from the `vad` processor placed before `realtime` in the pipeline:
//!
//! ```toml
//! [pipeline]
//! processors = ["vad", "realtime"]
//! [pipeline.settings.vad]
//! stop_frames = 30    # 600 ms of quiet ends the caller's turn
//! barge_in = false    # the bridge cuts the answer itself, once, and knows how much was heard
//! [pipeline.settings.realtime]
//! turn_detection = "gateway_vad"
//! ```
//!
//! Whoever cuts the call's outbound audio ([`Event::BargeIn`]: this bridge, `vad`, another
//! processor), the rest of the answer is dropped and the model is told where it was cut. When
//! `vad` cuts first the truncation point is approximate, and StopAudio may go out twice.
//!
//! # Failure
//!
//! A service that cannot be reached, refuses the handshake, or closes mid-call is logged and
//! counted in the report (`connected`, `errors`, `last_error`, `closed_by_service`); the call
//! goes on without the bot. Nothing waits on the service: audio that finds the socket behind
//! is dropped and counted (`frames_dropped`), never queued without bound.
//!
//! The service is bounded like any peer: the handshakes must finish within
//! `connect_timeout_secs` (10 s), a message from it may hold at most [`MAX_MESSAGE_BYTES`]
//! (a larger one ends the conversation, with `last_error` saying why), its answer audio waits
//! in the call's bounded outbound queue (what does not fit is dropped and counted in
//! `deltas_not_queued`), and at the call's end it gets 2 s to close before the socket is
//! dropped.
//!
//! # OpenAI
//!
//! ```toml
//! [pipeline]
//! processors = ["wav", "realtime"]
//!
//! [pipeline.settings.realtime]
//! # These three are the defaults: the key is read from OPENAI_API_KEY and sent as
//! # `Authorization: Bearer …`; the model is appended as `?model=gpt-realtime`.
//! url = "wss://api.openai.com/v1/realtime"
//! model = "gpt-realtime"
//! api_key_env = "OPENAI_API_KEY"
//! instructions = "You are the front desk of Contoso Dental. Be brief and friendly."
//! voice = "marin"
//! ```
//!
//! # Azure OpenAI
//!
//! The GA endpoint takes the deployment name as `model` and the key in an `api-key` header:
//!
//! ```toml
//! [pipeline.settings.realtime]
//! url = "wss://my-resource.openai.azure.com/openai/v1/realtime"
//! model = "my-gpt-realtime-deployment"
//! auth = "api-key"
//! api_key_env = "AZURE_OPENAI_API_KEY"
//! ```
//!
//! The preview endpoints carry the deployment and `api-version` in the URL (then `model` must
//! not be set) and speak the beta event shapes:
//!
//! ```toml
//! [pipeline.settings.realtime]
//! url = "wss://my-resource.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=gpt-4o-realtime-preview"
//! auth = "api-key"
//! api_key_env = "AZURE_OPENAI_API_KEY"
//! api = "beta"
//! ```
//!
//! A bot usually gets its own route, so only the calls the application sends there talk to
//! it: `[routes."/ws/bot"]` with `processors = ["realtime"]`, and the settings in
//! `[routes."/ws/bot".settings.realtime]`.
//!
//! # Keys
//!
//! The key is read from the environment variable `api_key_env` names when the gateway starts
//! (a missing one stops start-up with an error naming the variable) and again for each call.
//! `wss://` URLs need one. Plain `ws://` is allowed only to a loopback host (a local test
//! service, or a local proxy that adds TLS and the key): the key, if set, is sent there too.
//! An Entra ID token works as a key with `auth = "bearer"`, for as long as it is valid (it is
//! read at each call's start). Servers are verified against the Mozilla root certificates
//! built in (webpki-roots), not the system's store.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use mediagate_audio::{AudioFormat, AudioFrame, AudioSource};
use mediagate_pipeline::processor::Playback;
use mediagate_pipeline::{BargeIn, Context, Event, Input, PlayError, Processor, ProcessorError};
use mediagate_protocol::{decode_pcm, encode_pcm};
use mediagate_sinks::settings::{invalid, parse};
use mediagate_sinks::{BuildError, Registry};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Request};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::Instrument as _;

/// The registry name.
const NAME: &str = "realtime";
/// What the service hears and says: PCM16 mono at 24 kHz.
const SERVICE_FORMAT: AudioFormat = AudioFormat::mono(24_000);
/// Frames waiting for the socket task (2 s: covers the connection's set-up at call start).
const AUDIO_QUEUE_FRAMES: usize = 100;
/// Most frames in one `input_audio_buffer.append` (200 ms) when the socket fell behind.
const FRAMES_PER_APPEND: u64 = 10;
/// Turn changes and cuts waiting for the socket task.
const CONTROL_QUEUE: usize = 16;
/// The bridge's own barge-ins remembered until their [`Event::BargeIn`] comes back.
const OWN_CUTS: usize = 8;
/// Messages waiting for the socket's writer.
const OUT_QUEUE: usize = 64;
/// Longest wait for the closing handshake at the end of the call; then the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest message (and frame) accepted from the service: a delta is a few tens of KiB. A
/// larger one ends the conversation (`last_error` says so); the call goes on.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Most bytes waiting in the socket's write buffer when the service reads slowly; the queue
/// before it ([`OUT_QUEUE`] messages) is bounded too, and what finds both full is dropped.
const MAX_WRITE_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// How the API key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Auth {
    /// `Authorization: Bearer <key>` (OpenAI; Azure with an Entra ID token).
    #[default]
    Bearer,
    /// `api-key: <key>` (Azure OpenAI keys).
    ApiKey,
}

/// Which shape of the event protocol the service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// The GA Realtime API (`session.type = "realtime"`, `audio.input.format`).
    #[default]
    Ga,
    /// The beta interface (`input_audio_format = "pcm16"`, `OpenAI-Beta: realtime=v1`), as
    /// Azure OpenAI's preview API versions speak it.
    Beta,
}

/// Who decides when the caller's turn ends and when they interrupt the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnDetection {
    /// The service's voice activity detection (answers after a pause; `speech_started`).
    #[default]
    ServerVad,
    /// The service's semantic end-of-turn detection.
    SemanticVad,
    /// The call's [`Event::Speech`] events (the `vad` processor): the service's detection is
    /// off, and the bridge commits each utterance and asks for the answer itself.
    GatewayVad,
}

/// `[pipeline.settings.realtime]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeSettings {
    /// The service's WebSocket URL. Default `wss://api.openai.com/v1/realtime`.
    pub url: String,
    /// Appended to the URL as `?model=`; default `gpt-realtime`, unless the URL already names
    /// a `model` or a `deployment` (then this must not be set).
    pub model: Option<String>,
    /// The environment variable holding the API key. Default `OPENAI_API_KEY`.
    pub api_key_env: String,
    /// How the key is sent. Default `bearer`.
    pub auth: Auth,
    /// The event protocol's shape. Default `ga`.
    pub api: Api,
    /// The model's instructions (its system prompt); default: the service's.
    pub instructions: Option<String>,
    /// The model's voice (`marin`, `alloy`…); default: the service's.
    pub voice: Option<String>,
    /// Who detects turns. Default `server_vad`.
    pub turn_detection: TurnDetection,
    /// Longest wait for the TCP, TLS and WebSocket handshakes together. Default 10 s.
    pub connect_timeout_secs: u64,
}

impl Default for RealtimeSettings {
    fn default() -> Self {
        RealtimeSettings {
            url: "wss://api.openai.com/v1/realtime".to_owned(),
            model: None,
            api_key_env: "OPENAI_API_KEY".to_owned(),
            auth: Auth::default(),
            api: Api::default(),
            instructions: None,
            voice: None,
            turn_detection: TurnDetection::default(),
            connect_timeout_secs: 10,
        }
    }
}

/// An API key; never printed.
#[derive(Clone, PartialEq, Eq)]
struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

/// Where and how to connect, checked.
#[derive(Debug, Clone)]
struct Endpoint {
    /// The URL with the model appended.
    url: String,
    key: Option<ApiKey>,
    auth: Auth,
    api: Api,
    tls: bool,
}

impl Endpoint {
    /// Checks `settings`; `key` is the value of `api_key_env`, if set.
    fn new(settings: &RealtimeSettings, key: Option<String>) -> Result<Self, BuildError> {
        let mut url = url::Url::parse(&settings.url)
            .map_err(|e| invalid(NAME, format!("url `{}`: {e}", settings.url)))?;
        let tls = match url.scheme() {
            "wss" => true,
            "ws" if is_loopback(&url) => false,
            "ws" => {
                return Err(invalid(
                    NAME,
                    "url: plain ws:// only to a loopback host (the key and the call's audio \
                     would travel unencrypted); use wss://",
                ));
            }
            other => return Err(invalid(NAME, format!("url: scheme `{other}`, not wss://"))),
        };
        let named = url
            .query_pairs()
            .any(|(name, _)| name == "model" || name == "deployment");
        match (&settings.model, named) {
            (Some(_), true) => {
                return Err(invalid(
                    NAME,
                    "model is given twice: the url names a model or deployment already",
                ));
            }
            (Some(model), false) if model.is_empty() => {
                return Err(invalid(NAME, "model must not be empty"));
            }
            (model, false) => {
                let model = model.as_deref().unwrap_or("gpt-realtime");
                url.query_pairs_mut().append_pair("model", model);
            }
            (None, true) => {}
        }
        let key = key.filter(|k| !k.is_empty());
        if key.is_none() && tls {
            return Err(invalid(
                NAME,
                format!(
                    "the API key: environment variable {} is not set (or empty)",
                    settings.api_key_env
                ),
            ));
        }
        let endpoint = Endpoint {
            url: url.into(),
            key: key.map(ApiKey),
            auth: settings.auth,
            api: settings.api,
            tls,
        };
        endpoint.request()?;
        Ok(endpoint)
    }

    /// The handshake request: the URL and the key's header.
    fn request(&self) -> Result<Request<()>, BuildError> {
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| invalid(NAME, format!("url: {e}")))?;
        let headers = request.headers_mut();
        if let Some(ApiKey(key)) = &self.key {
            let (name, value) = match self.auth {
                Auth::Bearer => (
                    HeaderName::from_static("authorization"),
                    format!("Bearer {key}"),
                ),
                Auth::ApiKey => (HeaderName::from_static("api-key"), key.clone()),
            };
            let mut value = HeaderValue::try_from(value)
                .map_err(|_| invalid(NAME, "the API key is not a valid HTTP header value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if self.api == Api::Beta {
            headers.insert("openai-beta", HeaderValue::from_static("realtime=v1"));
        }
        Ok(request)
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The `session.update` that opens every conversation.
fn session_update(settings: &RealtimeSettings) -> String {
    let turn_detection = match settings.turn_detection {
        TurnDetection::ServerVad => {
            json!({ "type": "server_vad", "create_response": true, "interrupt_response": true })
        }
        TurnDetection::SemanticVad => {
            json!({ "type": "semantic_vad", "create_response": true, "interrupt_response": true })
        }
        TurnDetection::GatewayVad => serde_json::Value::Null,
    };
    let mut session = match settings.api {
        Api::Ga => {
            let format = json!({ "type": "audio/pcm", "rate": SERVICE_FORMAT.sample_rate_hz() });
            let mut output = json!({ "format": format });
            if let Some(voice) = &settings.voice {
                output["voice"] = json!(voice);
            }
            json!({
                "type": "realtime",
                "output_modalities": ["audio"],
                "audio": {
                    "input": { "format": format, "turn_detection": turn_detection },
                    "output": output,
                },
            })
        }
        Api::Beta => {
            let mut session = json!({
                "modalities": ["audio", "text"],
                "input_audio_format": "pcm16",
                "output_audio_format": "pcm16",
                "turn_detection": turn_detection,
            });
            if let Some(voice) = &settings.voice {
                session["voice"] = json!(voice);
            }
            session
        }
    };
    if let Some(instructions) = &settings.instructions {
        session["instructions"] = json!(instructions);
    }
    json!({ "type": "session.update", "session": session }).to_string()
}

/// What every call of one configuration shares.
#[derive(Debug)]
struct BridgeConfig {
    endpoint: Endpoint,
    connect_timeout: Duration,
    session_update: String,
    turn_detection: TurnDetection,
}

/// What a bridge did in a call (its `report` in session.json). Shared with its socket task.
#[derive(Debug, Default)]
struct Counters {
    connected: AtomicBool,
    closed_by_service: AtomicBool,
    /// Frames sent in `input_audio_buffer.append`.
    frames_sent: AtomicU64,
    /// Frames that found the socket task or its writer behind (or gone), not sent.
    frames_dropped: AtomicU64,
    /// Frames of another source than the one followed (unmixed calls), or not at 24 kHz mono.
    frames_ignored: AtomicU64,
    audio_deltas: AtomicU64,
    /// Samples received (24 kHz).
    samples_received: AtomicU64,
    /// Deltas of a cut response that arrived after the barge-in, not played.
    deltas_after_barge_in: AtomicU64,
    /// Deltas that found the call's outbound queue full.
    deltas_not_queued: AtomicU64,
    responses: AtomicU64,
    barge_ins: AtomicU64,
    /// `error` events from the service, and connection failures.
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// An error: counted, remembered, logged (the first few, then at powers of two).
    fn error(&self, what: &str, detail: impl std::fmt::Display) {
        let n = self.errors.fetch_add(1, Relaxed) + 1;
        let text = format!("{what}: {detail}");
        if n <= 5 || n.is_power_of_two() {
            tracing::warn!(errors = n, "realtime service: {text}");
        }
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }

    fn report(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Relaxed);
        let secs = |samples: u64| samples as f64 / f64::from(SERVICE_FORMAT.sample_rate_hz());
        let frame = SERVICE_FORMAT.frame_samples() as u64;
        json!({
            "connected": self.connected.load(Relaxed),
            "closed_by_service": self.closed_by_service.load(Relaxed),
            "frames_sent": get(&self.frames_sent),
            "audio_sent_secs": secs(get(&self.frames_sent) * frame),
            "frames_dropped": get(&self.frames_dropped),
            "frames_ignored": get(&self.frames_ignored),
            "audio_deltas": get(&self.audio_deltas),
            "audio_received_secs": secs(get(&self.samples_received)),
            "deltas_after_barge_in": get(&self.deltas_after_barge_in),
            "deltas_not_queued": get(&self.deltas_not_queued),
            "responses": get(&self.responses),
            "barge_ins": get(&self.barge_ins),
            "errors": get(&self.errors),
            "last_error": *self.last_error.lock().unwrap_or_else(|p| p.into_inner()),
        })
    }
}

/// What the call tells the socket task besides audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// [`TurnDetection::GatewayVad`]: the caller started talking.
    CallerStarted,
    /// [`TurnDetection::GatewayVad`]: the caller stopped talking.
    CallerStopped,
    /// The call's outbound audio was cut ([`Event::BargeIn`]): by this bridge, or by another
    /// processor (`vad`), which the bridge must then follow.
    Cut(BargeIn),
}

/// The processor's ends of the channels to its socket task. Dropping them ends the task.
struct Link {
    audio: mpsc::Sender<Bytes>,
    turns: mpsc::Sender<Turn>,
}

/// Bridges a call to a realtime speech-to-speech service: see the [module docs](self).
///
/// Runs inline and never waits: frames go to the call's socket task through a bounded channel
/// (dropped and counted when it is full); the task owns the WebSocket and the call's
/// [`Playback`]. It follows one source: the mixed stream, or the first participant heard.
pub struct Realtime {
    config: Arc<BridgeConfig>,
    counters: Arc<Counters>,
    link: Option<Link>,
    source: Option<AudioSource>,
}

impl Realtime {
    /// Checks the settings and reads the key from the environment.
    pub fn new(settings: RealtimeSettings) -> Result<Self, BuildError> {
        if settings.api_key_env.is_empty() {
            return Err(invalid(
                NAME,
                "api_key_env must name an environment variable",
            ));
        }
        let key = match std::env::var(&settings.api_key_env) {
            Ok(key) => Some(key),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(invalid(
                    NAME,
                    format!("environment variable {} is not UTF-8", settings.api_key_env),
                ));
            }
        };
        if !(1..=60).contains(&settings.connect_timeout_secs) {
            return Err(invalid(NAME, "connect_timeout_secs must be 1..=60"));
        }
        Ok(Realtime {
            config: Arc::new(BridgeConfig {
                endpoint: Endpoint::new(&settings, key)?,
                connect_timeout: Duration::from_secs(settings.connect_timeout_secs),
                session_update: session_update(&settings),
                turn_detection: settings.turn_detection,
            }),
            counters: Arc::default(),
            link: None,
            source: None,
        })
    }

    /// Builds from the config's settings: the registry's constructor.
    pub fn from_settings(value: &serde_json::Value) -> Result<Self, BuildError> {
        Realtime::new(parse(NAME, value)?)
    }

    /// Whether frames and speech of `source` are the ones the bot hears (the first seen).
    fn follows(&mut self, source: &AudioSource) -> bool {
        self.source.get_or_insert_with(|| source.clone()) == source
    }

    /// Passes `turn` to the socket task, if it runs.
    fn tell(&self, turn: Turn) {
        if let Some(link) = &self.link {
            if link.turns.try_send(turn).is_err() {
                self.counters
                    .error("turn change dropped", "the socket task is behind");
            }
        }
    }

    /// Starts the call's socket task.
    fn start(&mut self, ctx: &Context) {
        let call_id = &*ctx.call().call_id;
        let Some(playback) = ctx.playback() else {
            tracing::warn!(
                call_id,
                "realtime: the call has no outbound audio; bot not started"
            );
            self.counters
                .error("not started", "the call has no outbound audio");
            return;
        };
        let (audio, audio_rx) = mpsc::channel(AUDIO_QUEUE_FRAMES);
        let (turns, turns_rx) = mpsc::channel(CONTROL_QUEUE);
        self.link = Some(Link { audio, turns });
        let task = run(
            Arc::clone(&self.config),
            playback,
            audio_rx,
            turns_rx,
            Arc::clone(&self.counters),
        );
        tokio::spawn(task.instrument(tracing::info_span!("realtime", call_id)));
    }
}

impl std::fmt::Debug for Realtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Realtime")
            .field("url", &self.config.endpoint.url)
            .field("started", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

impl Processor for Realtime {
    fn input(&self) -> Input {
        Input {
            sample_rate_hz: Some(SERVICE_FORMAT.sample_rate_hz()),
            ..Input::default()
        }
    }

    fn on_frame(&mut self, frame: &AudioFrame, _ctx: &mut Context) -> Result<(), ProcessorError> {
        if self.link.is_none() {
            return Ok(());
        }
        if !self.follows(&frame.source) || frame.format != SERVICE_FORMAT {
            Counters::add(&self.counters.frames_ignored, 1);
            return Ok(());
        }
        let sent = self
            .link
            .as_ref()
            .is_some_and(|link| link.audio.try_send(frame.pcm.clone()).is_ok());
        if !sent {
            Counters::add(&self.counters.frames_dropped, 1);
        }
        Ok(())
    }

    fn on_event(&mut self, event: &Event, ctx: &mut Context) -> Result<(), ProcessorError> {
        match event {
            Event::CallStarted(_) if self.link.is_none() => self.start(ctx),
            Event::Speech { source, active }
                if self.config.turn_detection == TurnDetection::GatewayVad
                    && self.follows(source) =>
            {
                let turn = if *active {
                    Turn::CallerStarted
                } else {
                    Turn::CallerStopped
                };
                self.tell(turn);
            }
            Event::BargeIn(cut) => self.tell(Turn::Cut(*cut)),
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &mut Context) -> Result<(), ProcessorError> {
        // The socket task sends what is queued, then closes the socket.
        self.link = None;
        Ok(())
    }

    fn report(&self) -> Option<serde_json::Value> {
        Some(self.counters.report())
    }
}

/// Adds `realtime` to `registry`.
pub(crate) fn register(registry: &mut Registry) {
    registry.register(NAME, |settings| {
        Ok(Box::new(Realtime::from_settings(settings)?))
    });
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens the conversation's socket: TCP, TLS and WebSocket handshakes within `timeout`
/// (tungstenite caps the handshake's response at 64 KiB), messages from the service capped at
/// [`MAX_MESSAGE_BYTES`].
async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Socket, String> {
    let request = endpoint.request().map_err(|e| e.to_string())?;
    if endpoint.tls {
        // As the server does for its own TLS: ring, unless the process chose a provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES);
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no WebSocket handshake within {} s",
            timeout.as_secs_f64()
        )),
    }
}

/// One call's conversation: connects, then carries audio both ways until the call ends (the
/// processor drops its senders) or the service goes away.
async fn run(
    config: Arc<BridgeConfig>,
    playback: Playback,
    mut audio: mpsc::Receiver<Bytes>,
    mut turns: mpsc::Receiver<Turn>,
    counters: Arc<Counters>,
) {
    let socket = match connect(&config.endpoint, config.connect_timeout).await {
        Ok(socket) => socket,
        Err(e) => {
            counters.error("cannot connect", e);
            return;
        }
    };
    counters.connected.store(true, Relaxed);
    tracing::info!("connected to the realtime service");
    let (sink, mut stream) = socket.split();
    let (out, out_rx) = mpsc::channel(OUT_QUEUE);
    let writer = tokio::spawn(write_messages(sink, out_rx, Arc::clone(&counters)));
    let mut bridge = Bridge {
        playback,
        out,
        counters: Arc::clone(&counters),
        turn_detection: config.turn_detection,
        answer: None,
        interrupted: None,
        own_cuts: Vec::new(),
        pool: BytesMut::new(),
        batch: Vec::new(),
    };
    bridge.send(config.session_update.clone());
    loop {
        tokio::select! {
            biased;
            turn = turns.recv() => match turn {
                Some(Turn::CallerStarted) => bridge.barge_in(),
                Some(Turn::CallerStopped) => bridge.end_turn(),
                Some(Turn::Cut(cut)) => bridge.cut_elsewhere(cut),
                // The call ended: what is queued still goes up.
                None => {
                    while let Ok(frame) = audio.try_recv() {
                        bridge.send_audio(frame, &mut audio);
                    }
                    break;
                }
            },
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => bridge.on_service_event(&text),
                Some(Ok(Message::Close(frame))) => {
                    counters.closed_by_service.store(true, Relaxed);
                    let why = frame.map(|f| format!("{} {}", f.code, f.reason));
                    counters.error("closed by the service", why.unwrap_or_default());
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    counters.error("connection lost", e);
                    break;
                }
                None => {
                    counters.closed_by_service.store(true, Relaxed);
                    counters.error("connection lost", "the service went away");
                    break;
                }
            },
            frame = audio.recv() => match frame {
                Some(frame) => bridge.send_audio(frame, &mut audio),
                None => break,
            },
        }
    }
    // The writer sends what is queued and a close frame; the service's close ends the stream.
    // A service that reads nothing more, or never closes, gets CLOSE_TIMEOUT: then the writer
    // is stopped and the socket dropped, so nothing of the call outlives it for long.
    drop(bridge);
    let abort = writer.abort_handle();
    let closing = async {
        let _ = writer.await;
        while let Some(Ok(_)) = stream.next().await {}
    };
    if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
        abort.abort();
        tracing::debug!("the realtime service did not close in time");
    }
}

/// Sends the queued messages, then closes the socket.
async fn write_messages(
    mut sink: SplitSink<Socket, Message>,
    mut out: mpsc::Receiver<Message>,
    counters: Arc<Counters>,
) {
    while let Some(message) = out.recv().await {
        let sent = if out.is_empty() {
            sink.send(message).await
        } else {
            sink.feed(message).await
        };
        if let Err(e) = sent {
            if !matches!(
                e,
                tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed
            ) {
                counters.error("cannot send", e);
            }
            return;
        }
    }
    let _ = sink.close().await;
}

/// The answer being played (or last played): what a barge-in must cut and truncate.
#[derive(Debug)]
struct Answer {
    response_id: Option<String>,
    item_id: Option<String>,
    /// Samples of `item_id` received so far.
    samples: u64,
    /// The service is still sending it.
    streaming: bool,
}

/// A service event: the fields the bridge reads (the rest is ignored). The delta is borrowed.
#[derive(Debug, Deserialize)]
struct ServiceEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    /// Borrowed from the message unless it has escapes; empty when absent.
    #[serde(borrow, default)]
    delta: Cow<'a, str>,
    #[serde(default)]
    response_id: Option<String>,
    #[serde(default)]
    item_id: Option<String>,
    #[serde(default)]
    response: Option<ResponseInfo>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct ResponseInfo {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// The socket task's state: the call's playback and the conversation's.
struct Bridge {
    playback: Playback,
    out: mpsc::Sender<Message>,
    counters: Arc<Counters>,
    turn_detection: TurnDetection,
    answer: Option<Answer>,
    /// After a barge-in: the cut response (its id, if known), whose late deltas are dropped
    /// until another response starts.
    interrupted: Option<Option<String>>,
    /// The bridge's own barge-ins whose [`Event::BargeIn`] has not come back yet.
    own_cuts: Vec<BargeIn>,
    /// Decoded deltas.
    pool: BytesMut,
    /// Caller audio of one append.
    batch: Vec<u8>,
}

impl Bridge {
    /// Queues a message for the writer; `false` when the writer is behind (or gone).
    fn send(&self, text: String) -> bool {
        self.out.try_send(Message::text(text)).is_ok()
    }

    /// `frame` and whatever else is waiting (up to 200 ms) in one append.
    fn send_audio(&mut self, frame: Bytes, audio: &mut mpsc::Receiver<Bytes>) {
        self.batch.clear();
        self.batch.extend_from_slice(&frame);
        let mut frames = 1;
        while frames < FRAMES_PER_APPEND {
            let Ok(frame) = audio.try_recv() else { break };
            self.batch.extend_from_slice(&frame);
            frames += 1;
        }
        const HEAD: &str = r#"{"type":"input_audio_buffer.append","audio":""#;
        let mut text = String::with_capacity(HEAD.len() + self.batch.len().div_ceil(3) * 4 + 2);
        text.push_str(HEAD);
        encode_pcm(&self.batch, &mut text);
        text.push_str("\"}");
        let counter = if self.send(text) {
            &self.counters.frames_sent
        } else {
            &self.counters.frames_dropped
        };
        Counters::add(counter, frames);
    }

    fn on_service_event(&mut self, text: &str) {
        let event: ServiceEvent<'_> = match serde_json::from_str(text) {
            Ok(event) => event,
            Err(e) => {
                self.counters.error("unreadable event", e);
                return;
            }
        };
        match &*event.kind {
            "response.output_audio.delta" | "response.audio.delta" => self.audio_delta(event),
            "response.output_audio.done" | "response.audio.done" => self.end_stream(),
            "response.created" => {
                self.interrupted = None;
                self.answer = Some(Answer {
                    response_id: event.response.and_then(|r| r.id),
                    item_id: None,
                    samples: 0,
                    streaming: true,
                });
            }
            "response.done" => {
                self.end_stream();
                Counters::add(&self.counters.responses, 1);
                if let Some(answer) = &mut self.answer {
                    answer.streaming = false;
                }
                let status = event.response.and_then(|r| r.status);
                tracing::debug!(status = status.as_deref().unwrap_or("?"), "response done");
            }
            "input_audio_buffer.speech_started"
                if self.turn_detection != TurnDetection::GatewayVad =>
            {
                self.barge_in();
            }
            "error" => {
                let error = event.error.unwrap_or_default();
                let message = error["message"].as_str().unwrap_or("(no message)");
                self.counters.error("error event", message);
            }
            _ => {}
        }
    }

    fn audio_delta(&mut self, event: ServiceEvent<'_>) {
        if let Some(cut) = &self.interrupted {
            if event.response_id.is_none() || event.response_id == *cut {
                Counters::add(&self.counters.deltas_after_barge_in, 1);
                return;
            }
            self.interrupted = None;
        }
        let pcm = match decode_pcm(
            &event.delta,
            SERVICE_FORMAT.bytes_per_sample(),
            &mut self.pool,
        ) {
            Ok(pcm) => pcm,
            Err(e) => {
                self.counters.error("undecodable audio delta", e);
                return;
            }
        };
        let samples = (pcm.len() / SERVICE_FORMAT.bytes_per_sample()) as u64;
        Counters::add(&self.counters.audio_deltas, 1);
        Counters::add(&self.counters.samples_received, samples);
        let answer = self.answer.get_or_insert_with(|| Answer {
            response_id: event.response_id.clone(),
            item_id: None,
            samples: 0,
            streaming: true,
        });
        if answer.item_id != event.item_id {
            answer.item_id = event.item_id;
            answer.samples = 0;
        }
        answer.samples += samples;
        let played = self.playback.play_audio(&pcm, SERVICE_FORMAT);
        self.played(played);
    }

    fn end_stream(&mut self) {
        let played = self.playback.end_stream();
        self.played(played);
    }

    fn played(&self, result: Result<(), PlayError>) {
        match result {
            Ok(()) => {}
            Err(PlayError::Full(_)) => {
                if self.counters.deltas_not_queued.fetch_add(1, Relaxed) == 0 {
                    tracing::warn!("outbound queue full: the bot's audio is dropped");
                }
            }
            Err(e) => self.counters.error("cannot play", e),
        }
    }

    /// The caller started talking: if an answer is audible (or still coming), cut it and tell
    /// the platform (StopAudio).
    fn barge_in(&mut self) {
        let Some(answer) = self.answer.take() else {
            return;
        };
        if !answer.streaming && self.playback.queued().is_zero() {
            // Played to the end, or cut by another processor already (its cut is on its way).
            self.answer = Some(answer);
            return;
        }
        let cut = self.playback.stop_audio();
        self.remember(cut);
        self.interrupt(answer, cut.cut_ms);
    }

    /// One of the bridge's own cuts, whose [`Event::BargeIn`] will come back.
    fn remember(&mut self, cut: BargeIn) {
        if self.own_cuts.len() == OWN_CUTS {
            self.own_cuts.remove(0);
        }
        self.own_cuts.push(cut);
    }

    /// Another processor cut the call's outbound audio: what is left of the answer must not
    /// play on. (The bridge's own cuts come back here too, and are skipped.)
    fn cut_elsewhere(&mut self, cut: BargeIn) {
        if let Some(own) = self.own_cuts.iter().position(|c| *c == cut) {
            self.own_cuts.remove(own);
            return;
        }
        let Some(answer) = self.answer.take() else {
            return;
        };
        if !answer.streaming && cut.cut_ms == 0 {
            self.answer = Some(answer); // Nothing of it was left to cut.
            return;
        }
        // What the bridge queued since the cut (before it heard of it) goes too.
        let mut cut_ms = cut.cut_ms;
        if !self.playback.queued().is_zero() {
            let again = self.playback.stop_audio();
            self.remember(again);
            cut_ms += again.cut_ms;
        }
        self.interrupt(answer, cut_ms);
    }

    /// `answer` was cut with `cut_ms` of it unplayed: drop the rest of it, and tell the model
    /// how much was heard (and, when the bridge owns the turns, to stop).
    fn interrupt(&mut self, answer: Answer, cut_ms: u64) {
        Counters::add(&self.counters.barge_ins, 1);
        tracing::debug!(cut_ms, "barge-in");
        if answer.streaming {
            if self.turn_detection == TurnDetection::GatewayVad {
                self.send(json!({ "type": "response.cancel" }).to_string());
            }
            self.interrupted = Some(answer.response_id);
        }
        if let Some(item_id) = answer.item_id {
            let received_ms = answer.samples * 1000 / u64::from(SERVICE_FORMAT.sample_rate_hz());
            let heard_ms = received_ms.saturating_sub(cut_ms);
            self.send(
                json!({
                    "type": "conversation.item.truncate",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": heard_ms,
                })
                .to_string(),
            );
        }
    }

    /// [`TurnDetection::GatewayVad`]: the caller stopped talking; ask for the answer.
    fn end_turn(&mut self) {
        self.send(json!({ "type": "input_audio_buffer.commit" }).to_string());
        self.send(json!({ "type": "response.create" }).to_string());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    fn settings(value: serde_json::Value) -> RealtimeSettings {
        parse(NAME, &value).unwrap()
    }

    fn header(request: &Request<()>, name: &str) -> Option<String> {
        request
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn openai_gets_the_model_in_the_url_and_a_bearer_key() {
        let endpoint = Endpoint::new(&RealtimeSettings::default(), Some("sk-1".into())).unwrap();
        let request = endpoint.request().unwrap();
        assert_eq!(
            request.uri().to_string(),
            "wss://api.openai.com/v1/realtime?model=gpt-realtime"
        );
        assert_eq!(header(&request, "authorization").unwrap(), "Bearer sk-1");
        assert!(request.headers()["authorization"].is_sensitive());
        assert_eq!(header(&request, "openai-beta"), None);
        assert!(!format!("{endpoint:?}").contains("sk-1"));
    }

    #[test]
    fn azure_gets_an_api_key_header_and_keeps_the_deployment_of_the_url() {
        let ga = settings(json!({
            "url": "wss://r.openai.azure.com/openai/v1/realtime",
            "model": "my-deployment",
            "auth": "api-key",
        }));
        let request = Endpoint::new(&ga, Some("k".into()))
            .unwrap()
            .request()
            .unwrap();
        assert_eq!(
            request.uri().to_string(),
            "wss://r.openai.azure.com/openai/v1/realtime?model=my-deployment"
        );
        assert_eq!(header(&request, "api-key").unwrap(), "k");
        assert_eq!(header(&request, "authorization"), None);

        let preview = settings(json!({
            "url": "wss://r.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=d",
            "auth": "api-key",
            "api": "beta",
        }));
        let request = Endpoint::new(&preview, Some("k".into()))
            .unwrap()
            .request()
            .unwrap();
        assert_eq!(
            request.uri().query(),
            Some("api-version=2025-04-01-preview&deployment=d")
        );
        assert_eq!(header(&request, "openai-beta").unwrap(), "realtime=v1");

        let twice = RealtimeSettings {
            model: Some("m".into()),
            ..preview
        };
        let err = Endpoint::new(&twice, Some("k".into())).unwrap_err();
        assert!(err.to_string().contains("model is given twice"), "{err}");
    }

    #[test]
    fn a_missing_key_is_a_start_up_error_naming_the_variable() {
        let err = Realtime::from_settings(&json!({
            "api_key_env": "MEDIAGATE_TEST_SURELY_UNSET_REALTIME_KEY",
        }))
        .unwrap_err();
        assert!(
            err.to_string().contains(
                "environment variable MEDIAGATE_TEST_SURELY_UNSET_REALTIME_KEY is not set"
            ),
            "{err}"
        );
        // A local service needs none; a remote one over plain ws:// is refused.
        for url in [
            "ws://127.0.0.1:9/",
            "ws://localhost:9/v1/realtime",
            "ws://[::1]:9/",
        ] {
            let local = settings(json!({ "url": url }));
            let endpoint = Endpoint::new(&local, None).unwrap();
            assert!(header(&endpoint.request().unwrap(), "authorization").is_none());
        }
        let remote = settings(json!({ "url": "ws://example.com/v1/realtime" }));
        let err = Endpoint::new(&remote, Some("k".into())).unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        let https = settings(json!({ "url": "https://api.openai.com/v1/realtime" }));
        assert!(Endpoint::new(&https, Some("k".into())).is_err());
    }

    #[test]
    fn unknown_settings_are_refused() {
        let err = Realtime::from_settings(&json!({ "modle": "x" })).unwrap_err();
        assert!(err.to_string().contains("modle"), "{err}");
        let err = Realtime::from_settings(&json!({ "auth": "basic" })).unwrap_err();
        assert!(err.to_string().contains("basic"), "{err}");
        let err = Realtime::from_settings(&json!({
            "url": "ws://127.0.0.1:9/",
            "connect_timeout_secs": 0,
        }))
        .unwrap_err();
        assert!(err.to_string().contains("connect_timeout_secs"), "{err}");
    }

    /// An endpoint on a loopback listener, and the listener.
    async fn local_endpoint() -> (Endpoint, tokio::net::TcpListener) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/v1/realtime", listener.local_addr().unwrap());
        let endpoint = Endpoint::new(&settings(json!({ "url": url })), None).unwrap();
        (endpoint, listener)
    }

    #[tokio::test]
    async fn a_service_that_never_completes_the_handshake_fails_at_the_deadline() {
        let (endpoint, listener) = local_endpoint().await;
        let silent = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
        });
        let started = std::time::Instant::now();
        let err = connect(&endpoint, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(err, "no WebSocket handshake within 0.3 s");
        assert!(started.elapsed() < Duration::from_secs(2));
        silent.abort();
    }

    #[tokio::test]
    async fn a_message_over_the_cap_is_refused_unread() {
        let (endpoint, listener) = local_endpoint().await;
        let service = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            // Stuck once the bridge stops reading: aborted below.
            let _ = ws
                .send(Message::text("x".repeat(MAX_MESSAGE_BYTES + 1)))
                .await;
        });
        let mut socket = connect(&endpoint, Duration::from_secs(5)).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
        let err = next.unwrap().unwrap().unwrap_err();
        assert!(matches!(err, tungstenite::Error::Capacity(_)), "{err}");
        drop(socket);
        service.abort();
    }

    #[test]
    fn the_session_update_asks_for_24k_pcm_in_either_shape() {
        let ga: serde_json::Value = serde_json::from_str(&session_update(&settings(json!({
            "instructions": "Be brief.",
            "voice": "marin",
        }))))
        .unwrap();
        assert_eq!(ga["type"], "session.update");
        let session = &ga["session"];
        assert_eq!(session["type"], "realtime");
        assert_eq!(session["instructions"], "Be brief.");
        let pcm = json!({ "type": "audio/pcm", "rate": 24_000 });
        assert_eq!(session["audio"]["input"]["format"], pcm);
        assert_eq!(session["audio"]["output"]["format"], pcm);
        assert_eq!(session["audio"]["output"]["voice"], "marin");
        assert_eq!(
            session["audio"]["input"]["turn_detection"]["type"],
            "server_vad"
        );

        let beta: serde_json::Value = serde_json::from_str(&session_update(&settings(json!({
            "api": "beta",
            "voice": "alloy",
            "turn_detection": "gateway_vad",
        }))))
        .unwrap();
        let session = &beta["session"];
        assert_eq!(session["input_audio_format"], "pcm16");
        assert_eq!(session["output_audio_format"], "pcm16");
        assert_eq!(session["voice"], "alloy");
        assert!(session["turn_detection"].is_null());
        assert!(session.get("instructions").is_none());
    }

    #[test]
    fn service_events_borrow_the_delta_and_ignore_other_fields() {
        let text = r#"{"type":"response.output_audio.delta","event_id":"e","response_id":"r",
            "item_id":"i","output_index":0,"content_index":0,"delta":"AAEC"}"#;
        let event: ServiceEvent<'_> = serde_json::from_str(text).unwrap();
        assert_eq!(event.kind, "response.output_audio.delta");
        assert!(matches!(event.delta, Cow::Borrowed("AAEC")));
        assert_eq!(event.response_id.as_deref(), Some("r"));
        let done: ServiceEvent<'_> = serde_json::from_str(
            r#"{"type":"response.done","response":{"id":"r","status":"cancelled","output":[]}}"#,
        )
        .unwrap();
        assert_eq!(done.response.unwrap().status.as_deref(), Some("cancelled"));
    }
}
