//! Speech for mediagate: engines that turn a call's audio into text, and voices that speak
//! into it.
//!
//! - [`Recognizer`]: the speech-to-text abstraction. One engine call per utterance (final) or
//!   per growing utterance (partial); blocking, on the transcriber's own thread.
//! - [`Transcriber`]: the processor that runs any [`Recognizer`] on a call: 16 kHz audio per
//!   source, utterances cut by energy VAD, partial results every second, final results as
//!   [`Event::Transcript`](mediagate_pipeline::Event::Transcript) for the `transcript` writer
//!   and every other processor.
//! - Engines: `whisper` (in-process, CTranslate2; cargo feature `whisper`), `wyoming` (any
//!   Wyoming ASR server over TCP).
//! - `say`: text to speech (espeak-ng) into the call. `realtime`: a voice-bot bridge to an
//!   OpenAI Realtime-compatible service.
//!
//! [`builtins`] is [`Registry::with_builtins`] plus all of these.

mod engine;
mod file;
pub mod models;
#[cfg(feature = "pocketsphinx")]
pub mod pocketsphinx;
pub mod realtime;
pub mod say;
mod transcriber;
pub mod wer;
#[cfg(feature = "whisper")]
pub mod whisper;
pub mod wyoming;

pub use engine::{Pass, Recognition, RecognizedWord, Recognizer, SpeechError};
pub use file::{FileError, FileTranscript, transcribe_wav};
pub use transcriber::{SAMPLE_RATE_HZ, Transcriber, TranscriberSettings};

use mediagate_processors::Registry;

/// The embedded speech-to-text engine a default pipeline runs: `whisper` when this build has
/// it (cargo feature `whisper`, on by default).
pub fn default_engine() -> Option<&'static str> {
    cfg!(feature = "whisper").then_some("whisper")
}

/// The speech-to-text engines this build has, by registry name.
pub fn engines() -> Vec<&'static str> {
    let mut engines = Vec::new();
    if cfg!(feature = "whisper") {
        engines.push("whisper");
    }
    if cfg!(feature = "pocketsphinx") {
        engines.push("pocketsphinx");
    }
    engines.push("wyoming");
    engines
}

/// Builds the transcriber of engine `name` from its settings (`[pipeline.settings.NAME]`),
/// for a file or a test rather than a call. Blocking: an engine may load its model.
pub fn build_transcriber(
    name: &str,
    settings: &serde_json::Value,
) -> Result<Transcriber, mediagate_processors::BuildError> {
    match name {
        #[cfg(feature = "whisper")]
        whisper::NAME => whisper::build(settings),
        #[cfg(feature = "pocketsphinx")]
        pocketsphinx::NAME => pocketsphinx::build(settings),
        wyoming::NAME => wyoming::build(settings),
        other => Err(mediagate_processors::BuildError::Unknown {
            name: other.to_owned(),
            known: engines().join(", "),
        }),
    }
}

/// Every built-in processor: the built-ins' ([`Registry::with_builtins`]) and the speech ones.
pub fn builtins() -> Registry {
    let mut registry = Registry::with_builtins();
    register(&mut registry);
    registry
}

/// Adds the speech processors to `registry`.
pub fn register(registry: &mut Registry) {
    for engine in engines() {
        registry.register(engine, move |settings| {
            Ok(Box::new(build_transcriber(engine, settings)?))
        });
    }
    say::register(registry);
    realtime::register(registry);
}
