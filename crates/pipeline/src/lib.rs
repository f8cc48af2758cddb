//! mediagate's extension API, and the heart of the gateway: what happens to a call's audio
//! between the socket and the processors.
//!
//! A **processor** ([`Processor`]) receives one call's frames and events, in order, in its own
//! task, and may play audio into the call ([`Context::play_audio`]), cut it
//! ([`Context::stop_audio`]), write files in the call's folder ([`Context::create_file`]) and
//! emit events to the other processors ([`Context::emit`]). Recorders, speech engines, prompts
//! and voice bots are all processors.
//!
//! A **factory** ([`Factory`]) makes a processor per call. It is built once per route, at
//! start-up and off the async threads, from the processor's settings (`[pipeline.settings.NAME]`
//! in the config); that is where settings are checked and anything heavy is loaded (a model, a
//! clip), so that making a call's processor is cheap and does no I/O. A [`Registry`] holds the
//! factories' builders by name; the gateway builds a [`Plan`] per route from it.
//!
//! A complete processor, registered and run on a call:
//!
//! ```
//! use std::sync::Arc;
//!
//! use bytes::Bytes;
//! use mediagate_audio::{AudioFormat, AudioFrame, AudioSource};
//! use mediagate_pipeline::{
//!     CallInfo, Context, Event, Input, Pipeline, Processor, ProcessorError, Registry,
//! };
//!
//! /// Tells the other processors when the caller gets loud: a level meter that emits events.
//! struct Meter {
//!     /// Peak above which the caller is loud, from the settings.
//!     loud: i16,
//!     was_loud: bool,
//!     frames: u64,
//! }
//!
//! #[derive(serde::Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! struct MeterSettings {
//!     loud: i16,
//! }
//!
//! impl Default for MeterSettings {
//!     fn default() -> Self {
//!         MeterSettings { loud: 8_000 }
//!     }
//! }
//!
//! impl Processor for Meter {
//!     fn input(&self) -> Input {
//!         // Audio at 16 kHz whatever the call's rate (resampled once, shared by refcount).
//!         Input { sample_rate_hz: Some(16_000), ..Input::default() }
//!     }
//!
//!     fn on_frame(&mut self, frame: &AudioFrame, ctx: &mut Context) -> Result<(), ProcessorError> {
//!         self.frames += 1;
//!         let peak = frame
//!             .pcm
//!             .chunks_exact(2)
//!             .map(|b| i16::from_le_bytes([b[0], b[1]]).saturating_abs())
//!             .max()
//!             .unwrap_or(0);
//!         let loud = peak > self.loud;
//!         if loud != std::mem::replace(&mut self.was_loud, loud) {
//!             ctx.emit(Event::Speech { source: frame.source.clone(), active: loud });
//!         }
//!         Ok(())
//!     }
//!
//!     fn report(&self) -> Option<serde_json::Value> {
//!         Some(serde_json::json!({ "frames": self.frames }))
//!     }
//! }
//!
//! // The factory: settings checked once; per call, a fresh meter.
//! let mut registry = Registry::new();
//! registry.register("meter", |settings| {
//!     let MeterSettings { loud } = settings.parse()?;
//!     if loud <= 0 {
//!         return Err(settings.invalid("loud must be positive"));
//!     }
//!     Ok(move |_: &CallInfo| {
//!         Box::new(Meter { loud, was_loud: false, frames: 0 }) as Box<dyn Processor>
//!     })
//! });
//! let plans = registry
//!     .plans([("pipeline", vec![("meter".to_owned(), serde_json::json!({ "loud": 1000 }))])])
//!     .expect("valid settings");
//!
//! // One call: 24 kHz frames in, the meter's report out.
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let format = AudioFormat::mono(24_000);
//! let call = CallInfo::new("call-1", "/ws", format);
//! let processors = plans[0].1.processors(&call, |_, _| {});
//! let mut pipeline = Pipeline::start(Arc::new(call), processors, None, None);
//! for loud in [false, true, true, false] {
//!     let sample: i16 = if loud { 20_000 } else { 0 };
//!     let pcm: Vec<u8> = std::iter::repeat_n(sample.to_le_bytes(), 480).flatten().collect();
//!     let frame = AudioFrame {
//!         pcm: Bytes::from(pcm),
//!         format,
//!         timestamp: None,
//!         position: None,
//!         source: AudioSource::Mixed,
//!         silent: false,
//!     };
//!     pipeline.push_frame(&frame).await;
//! }
//! let reports = pipeline.finish().await;
//! assert_eq!(reports[0].name, "meter");
//! assert_eq!(reports[0].report, Some(serde_json::json!({ "frames": 4 })));
//! # });
//! ```
//!
//! Underneath:
//! - [`Pipeline`] fans a call out to its processors: each frame and event is handed to every
//!   processor's bounded inbox (a refcount clone, never a copy of the samples); events a
//!   processor emits reach the others at once; at the call's end each processor finishes on
//!   its own ([`Pipeline::end`]).
//! - [`queue`]: a processor's bounded inbox, with an explicit [`OverflowPolicy`] (drop the
//!   oldest and count, detach, or make the socket wait for a lossless recorder), so a slow
//!   processor never stalls the socket or the others unless it asked to be lossless.
//! - [`outbound`]: audio into the call: one bounded queue paced as exactly-20 ms frames on one
//!   steady clock, with barge-in that flushes and sends StopAudio at once; [`Playback`] is
//!   the one player that converts audio into it.
//!
//! This crate knows no wire format and no socket: the server drives it.

pub mod event;
pub mod files;
pub mod histogram;
pub mod outbound;
pub mod pipeline;
pub mod processor;
pub mod queue;
pub mod registry;

pub use event::{CallInfo, CustomEvent, Dtmf, Event, Transcript, TranscriptStatus, TranscriptWord};
// The audio types of the API, so a processor crate needs this crate alone.
pub use files::{create_unique, sanitize_file_stem};
pub use histogram::{CALLBACK_NANOS, HISTOGRAM_BUCKETS, HistogramCounts, PACING_LAG_MICROS};
pub use mediagate_audio::{self, AudioFormat, AudioFrame, AudioSource};
pub use outbound::{BargeIn, OutboundQueue, Outgoing, PacerReport, QueueFull};
pub use pipeline::{
    ConsumerCounters, ConsumerProbe, ConsumerReport, EVENT_QUEUE, Ending, Pipeline,
};
pub use processor::{Context, Execution, Input, PlayError, Playback, Processor, ProcessorError};
pub use queue::{Inbox, InboxStats, Outbox, OverflowPolicy, Pushed, byte_bounded_inbox, inbox};
pub use registry::{BuildError, Factory, Plan, Prototype, Registry, Settings, Speaker};
