//! `pocketsphinx`: the light speech-to-text engine, CMU PocketSphinx in process (cargo
//! feature `pocketsphinx`; Debian's `libpocketsphinx-dev` and `pocketsphinx-en-us`), through
//! the small safe binding in `mediagate-pocketsphinx`.
//!
//! Much lighter than Whisper (a decoder loads in about 0.4 s, decodes in a quarter to a half
//! of real time on one core, and needs no download) and much less accurate: it suits clear
//! speech and a closed vocabulary (a language model or dictionary of your own) better than
//! open conversation. It gives word times and per-word posteriors; no partial results.
//!
//! ```toml
//! [pipeline]
//! processors = ["wav", "transcript", "pocketsphinx"]
//! [pipeline.settings.pocketsphinx]
//! # The defaults: Debian's US English models.
//! hmm = "/usr/share/pocketsphinx/model/en-us/en-us"
//! lm = "/usr/share/pocketsphinx/model/en-us/en-us.lm.bin"
//! dict = "/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict"
//! [pipeline.settings.pocketsphinx.args]
//! lw = "7.5"  # any decoder argument of `pocketsphinx_continuous`, as text
//! ```
//!
//! Cost: a loaded decoder holds its own copy of the models (about 90 MB of memory with the
//! Debian ones; this version of the library cannot share them between decoders). Decoders
//! are kept in a process-wide pool per model set and lent to one utterance at a time, so a
//! gateway holds as many as it has decoded utterances at once (at most one per CPU stays
//! loaded when idle), not one per call. Building the processor, at start-up and at each
//! call's start, only checks that the files are there; the first utterance that needs a new
//! decoder loads it, on the transcriber's blocking thread.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use mediagate_pipeline::BuildError;
use mediagate_pipeline::registry::{invalid, parse};
use mediagate_pocketsphinx::{Config, Decoder, Hypothesis};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    Pass, Recognition, RecognizedWord, Recognizer, SpeechError, TranscriberFactory,
    TranscriberSettings,
};

/// The registry name.
pub const NAME: &str = "pocketsphinx";

/// `[pipeline.settings.pocketsphinx]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PocketsphinxSettings {
    /// The acoustic model directory. Default: Debian's US English one.
    pub hmm: PathBuf,
    /// The language model (`.lm.bin` or ARPA). Default: Debian's US English one.
    pub lm: PathBuf,
    /// The pronunciation dictionary. Default: Debian's CMUdict.
    pub dict: PathBuf,
    /// Further decoder arguments by name (`beam`, `lw`; the leading dash is optional), each
    /// value as text. Checked against the library's own list at start-up.
    pub args: BTreeMap<String, String>,
    /// How utterances are cut.
    pub utterances: TranscriberSettings,
}

impl Default for PocketsphinxSettings {
    fn default() -> Self {
        let debian = Config::default();
        PocketsphinxSettings {
            hmm: debian.hmm,
            lm: debian.lm,
            dict: debian.dict,
            args: BTreeMap::new(),
            utterances: TranscriberSettings::default(),
        }
    }
}

impl PocketsphinxSettings {
    fn config(&self) -> Config {
        Config {
            hmm: self.hmm.clone(),
            lm: self.lm.clone(),
            dict: self.dict.clone(),
            args: self
                .args
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        }
    }
}

/// Loaded decoders of one model set, lent to one utterance at a time.
struct DecoderPool {
    config: Config,
    idle: Mutex<Vec<Decoder>>,
    /// At most this many idle decoders are kept: one per CPU, since decoding is CPU-bound.
    keep: usize,
}

impl DecoderPool {
    /// The pool of `config`, after checking its files and arguments (microseconds): no
    /// decoder is loaded until speech comes.
    fn new(config: Config) -> Result<DecoderPool, BuildError> {
        config.check().map_err(|e| invalid(NAME, e.to_string()))?;
        Ok(DecoderPool {
            config,
            idle: Mutex::new(Vec::new()),
            keep: std::thread::available_parallelism().map_or(1, usize::from),
        })
    }

    /// Decodes `samples` on an idle decoder, or on a new one (loaded here: slow) if none is.
    fn decode(&self, samples: &[i16]) -> Result<Hypothesis, SpeechError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut decoder = match idle {
            Some(decoder) => decoder,
            None => {
                let began = std::time::Instant::now();
                let decoder =
                    Decoder::new(&self.config).map_err(|e| SpeechError::Setup(e.to_string()))?;
                tracing::debug!(elapsed = ?began.elapsed(), "pocketsphinx: decoder loaded");
                decoder
            }
        };
        // A decoder that failed is in an unknown state: it is dropped, not returned.
        let hypothesis = decoder
            .decode(samples)
            .map_err(|e| SpeechError::Utterance(e.to_string()))?;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.keep {
            idle.push(decoder);
        }
        Ok(hypothesis)
    }
}

/// A call's recognizer: the shared pool, and a buffer for the samples as PCM16.
struct PocketsphinxRecognizer {
    pool: Arc<DecoderPool>,
    pcm: Vec<i16>,
}

impl Recognizer for PocketsphinxRecognizer {
    fn recognize(&mut self, samples: &[f32], _pass: Pass) -> Result<Recognition, SpeechError> {
        self.pcm.clear();
        self.pcm.extend(samples.iter().copied().map(pcm16));
        let hypothesis = self.pool.decode(&self.pcm)?;
        Ok(recognition(hypothesis))
    }
}

/// A sample in [-1, 1] as PCM16: the exact inverse of the transcriber's division by 32768.
fn pcm16(sample: f32) -> i16 {
    (sample * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
}

/// The transcriber's view of a hypothesis. Its confidence is the mean of the words'
/// posteriors: the whole sentence's posterior (their product, near zero for any sentence of
/// a few words) says little about how good the text is.
fn recognition(hypothesis: Hypothesis) -> Recognition {
    let posteriors: Vec<f64> = hypothesis
        .words
        .iter()
        .filter_map(|w| w.confidence)
        .collect();
    let confidence =
        (!posteriors.is_empty()).then(|| posteriors.iter().sum::<f64>() / posteriors.len() as f64);
    Recognition {
        text: hypothesis.text,
        confidence,
        words: hypothesis
            .words
            .into_iter()
            .map(|w| RecognizedWord {
                text: w.text,
                start_secs: w.start_secs,
                end_secs: w.end_secs,
            })
            .collect(),
    }
}

/// Builds the `pocketsphinx` factory from its settings: checks the model files and arguments;
/// loads nothing until speech comes. The calls of a route share one pool of decoders.
pub fn build(value: &Value) -> Result<TranscriberFactory, BuildError> {
    let settings: PocketsphinxSettings = parse(NAME, value)?;
    settings.utterances.validate(NAME)?;
    let pool = Arc::new(DecoderPool::new(settings.config())?);
    TranscriberFactory::new(NAME, settings.utterances, move || {
        Box::new(PocketsphinxRecognizer {
            pool: Arc::clone(&pool),
            pcm: Vec::new(),
        }) as Box<dyn Recognizer>
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_settings_are_refused_with_what_to_do() {
        for (bad, expected) in [
            (
                json!({"hmm": "/nonexistent"}),
                "apt-get install libpocketsphinx-dev pocketsphinx-en-us",
            ),
            (
                json!({"lm": "/nonexistent/x.lm.bin"}),
                "/nonexistent/x.lm.bin",
            ),
            (json!({"args": {"beam": "wide"}}), "not a number"),
            (json!({"args": {"no_such_argument": "1"}}), "unknown"),
            (json!({"args": {"logfn": "/tmp/log"}}), "log is off"),
            (json!({"modle": "x"}), "modle"),
            (
                json!({"utterances": {"max_utterance_secs": 0}}),
                "max_utterance_secs",
            ),
        ] {
            let message = build(&bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains(expected), "{bad}: {message}");
        }
    }

    #[test]
    fn the_defaults_build() {
        assert!(build(&json!({"args": {"lw": "6.5"}})).is_ok());
    }

    #[test]
    fn samples_round_trip_to_pcm16() {
        let pcm: [i16; 5] = [i16::MIN, -1, 0, 1, i16::MAX];
        let samples: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32_768.0).collect();
        let back: Vec<i16> = samples.into_iter().map(pcm16).collect();
        assert_eq!(back, pcm);
        assert_eq!(pcm16(2.0), i16::MAX);
    }
}
