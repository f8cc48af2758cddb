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
//! Control messages (`input_audio_buffer.commit`, `response.create`, `response.cancel`,
//! `conversation.item.truncate`) are never dropped: they wait in a queue of their own, which
//! the socket's writer serves before the audio (a commit after the audio it commits, so a
//! barge-in reaches a slow service at once and a turn keeps its words). A service that leaves
//! even that queue full has read nothing for many turns: the conversation ends, with
//! `last_error` saying so.
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
//!
//! # Code
//!
//! `settings.rs` checks the settings and makes the endpoint; `events.rs` holds the event
//! shapes, both ways; `bridge.rs` is the conversation as a pure state machine (the call's
//! happenings and the service's events in, commands out); `io.rs` connects, reads and writes
//! the socket and carries the commands out. This file is the processor and its report.

mod bridge;
mod events;
mod io;
mod settings;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mediagate_audio::{AudioFormat, AudioFrame, AudioSource};
use mediagate_pipeline::{BargeIn, Context, Event, Input, Processor, ProcessorError};
use mediagate_pipeline::{CallInfo, Registry};
use mediagate_processors::BuildError;
use mediagate_processors::settings::{invalid, parse};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::Instrument as _;

#[cfg(doc)]
use mediagate_pipeline::processor::Playback;

use events::SessionUpdate;
use io::run;
use settings::Endpoint;
pub use settings::{Api, Auth, RealtimeSettings, TurnDetection};

/// The registry name.
const NAME: &str = "realtime";
/// What the service hears and says: PCM16 mono at 24 kHz.
const SERVICE_FORMAT: AudioFormat = AudioFormat::mono(24_000);
/// Frames waiting for the socket task (2 s: covers the connection's set-up at call start).
const AUDIO_QUEUE_FRAMES: usize = 100;
/// Turn changes and cuts waiting for the socket task.
const TURN_QUEUE: usize = 16;
/// Largest message (and frame) accepted from the service: a delta is a few tens of KiB. A
/// larger one ends the conversation (`last_error` says so); the call goes on.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

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
                session_update: SessionUpdate::new(&settings).to_json(),
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
        let (turns, turns_rx) = mpsc::channel(TURN_QUEUE);
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

/// Adds `realtime` to `registry`: the settings and the key are checked once per route; each
/// call gets a bridge of its own, sharing the checked configuration.
pub(crate) fn register(registry: &mut Registry) {
    registry.register(NAME, |settings| {
        let checked = Realtime::from_settings(settings.value())?;
        Ok(move |_: &CallInfo| Box::new(checked.fresh()) as Box<dyn Processor>)
    });
}

impl Realtime {
    /// A bridge for one call, with this one's configuration and counters of its own.
    fn fresh(&self) -> Realtime {
        Realtime {
            config: Arc::clone(&self.config),
            counters: Arc::default(),
            link: None,
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

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
}
