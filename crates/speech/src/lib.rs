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
//! [`register`] adds all of these to a [`Registry`].

#[cfg(all(
    feature = "whisper",
    not(any(feature = "prebuilt-ctranslate2", feature = "ctranslate2-from-source"))
))]
compile_error!(
    "the `whisper` feature needs CTranslate2: add `prebuilt-ctranslate2` (the PyPI wheel's \
     library, x86_64 Linux) or `ctranslate2-from-source` (cmake and a C++17 compiler)"
);

mod engine;
mod file;
pub mod metrics;
pub mod models;
#[cfg(feature = "pocketsphinx")]
pub mod pocketsphinx;
pub mod realtime;
pub mod say;
pub mod scheduler;
mod transcriber;
pub mod wer;
#[cfg(feature = "whisper")]
pub mod whisper;
pub mod wyoming;

pub use engine::{Engine, Pass, Pending, Recognition, RecognizedWord, Recognizer, SpeechError};
pub use file::{FileError, FileTranscript, transcribe_wav};
pub use metrics::{EngineMetrics, SpeechMetrics};
pub use transcriber::{
    Capacity, SAMPLE_RATE_HZ, Transcriber, TranscriberFactory, TranscriberSettings,
};

use mediagate_pipeline::{BuildError, Registry};

/// The embedded speech-to-text engine a default pipeline runs: `whisper` when this build has
/// it (cargo feature `whisper`).
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

/// Installs the default Whisper model when it is missing and returns its directory: the
/// `mediagate` binary's installer (HTTPS from the package index), handed to the engines that
/// may need it. Blocking.
pub type ModelInstaller =
    std::sync::Arc<dyn Fn() -> Result<std::path::PathBuf, String> + Send + Sync>;

/// The factory of engine `name` from its settings (`[pipeline.settings.NAME]`). Blocking: an
/// engine may load its model, or first install it with `installer`. Its
/// [`TranscriberFactory::transcriber`] serves a file or a test; the registry's entry serves
/// calls.
pub fn engine(
    name: &str,
    settings: &serde_json::Value,
    installer: Option<&ModelInstaller>,
) -> Result<TranscriberFactory, BuildError> {
    engine_counted(name, settings, installer, EngineMetrics::detached())
}

/// [`engine`], counting in `metrics`.
fn engine_counted(
    name: &str,
    settings: &serde_json::Value,
    installer: Option<&ModelInstaller>,
    metrics: EngineMetrics,
) -> Result<TranscriberFactory, BuildError> {
    #[cfg(not(feature = "whisper"))]
    let _ = installer;
    let factory = match name {
        #[cfg(feature = "whisper")]
        whisper::NAME => return whisper::build(settings, installer, metrics),
        #[cfg(feature = "pocketsphinx")]
        pocketsphinx::NAME => pocketsphinx::build(settings),
        wyoming::NAME => wyoming::build(settings),
        other => Err(BuildError::Unknown {
            name: other.to_owned(),
            known: engines().join(", "),
        }),
    };
    Ok(factory?.with_metrics(metrics))
}

/// A transcriber of engine `name` for one file or test: [`engine`]'s factory, used once.
/// Blocking.
pub fn build_transcriber(
    name: &str,
    settings: &serde_json::Value,
    installer: Option<&ModelInstaller>,
) -> Result<Transcriber, BuildError> {
    Ok(engine(name, settings, installer)?.transcriber())
}

/// Adds the speech processors to `registry`: the engines this build has (with `installer`
/// for a missing default model), `say` and `realtime`; and `say`'s voice as the gateway's
/// speaker.
pub fn register(registry: &mut Registry, installer: Option<ModelInstaller>) {
    let metrics = SpeechMetrics::default();
    for name in engines() {
        let installer = installer.clone();
        let metrics = metrics.clone();
        registry.register(name, move |settings| {
            engine_counted(
                name,
                settings.value(),
                installer.as_ref(),
                metrics.engine(name),
            )
        });
    }
    registry.register_metrics(move |prometheus| metrics.register(prometheus));
    say::register(registry);
    realtime::register(registry);
}
