//! The processor that runs a [`Recognizer`] on a call: utterances cut by energy, partial
//! results while they go on, a final result when they end.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mediagate_audio::{
    AudioFormat, AudioFrame, AudioSource, EnergyGate, GateChange, GateSettings, GateWindow,
    Timestamp,
};
use mediagate_pipeline::{
    CallInfo, Context, Event, Execution, Factory, Input, OverflowPolicy, Processor, ProcessorError,
    Transcript, TranscriptStatus, TranscriptWord,
};
use mediagate_processors::BuildError;
use mediagate_processors::settings::invalid;
use serde::{Deserialize, Serialize};

use crate::metrics::EngineMetrics;
use crate::{Engine, Pass, Pending, Recognition, Recognizer, SpeechError};

/// The rate every engine hears.
pub const SAMPLE_RATE_HZ: u32 = 16_000;
/// Samples in one 20 ms analysis window at [`SAMPLE_RATE_HZ`].
const WINDOW: usize = 320;
/// Milliseconds per window.
const WINDOW_MS: u64 = 20;

/// How a [`Transcriber`] cuts a source's audio into utterances (TOML: the `utterances` table
/// of an engine's settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscriberSettings {
    /// A 20 ms window louder than this (RMS, dBFS) counts as voice. Default -40.
    pub threshold_dbfs: f64,
    /// Voice for this long starts an utterance. Default 60 ms.
    pub start_ms: u64,
    /// Quiet for this long ends it. Default 600 ms.
    pub end_silence_ms: u64,
    /// Audio kept from before the start, so the first syllable is not clipped. Default 300 ms.
    pub preroll_ms: u64,
    /// Utterances shorter than this (voice included) are dropped as noise. Default 250 ms.
    pub min_utterance_ms: u64,
    /// An utterance this long is cut and transcribed, and the next one starts at once: a cap on
    /// latency, memory and the engine's input. Default 20 s.
    pub max_utterance_secs: u64,
    /// A partial result each time an utterance grows by this much; `0`: finals only.
    /// Default 1000 ms. Skipped while the engine is behind.
    pub partial_interval_ms: u64,
}

impl Default for TranscriberSettings {
    fn default() -> Self {
        TranscriberSettings {
            threshold_dbfs: -40.0,
            start_ms: 60,
            end_silence_ms: 600,
            preroll_ms: 300,
            min_utterance_ms: 250,
            max_utterance_secs: 20,
            partial_interval_ms: 1000,
        }
    }
}

impl TranscriberSettings {
    /// Checks the ranges; `engine` names the processor in the error.
    pub fn validate(&self, engine: &str) -> Result<(), BuildError> {
        if !(self.threshold_dbfs.is_finite() && self.threshold_dbfs <= 0.0) {
            return Err(invalid(
                engine,
                "utterances.threshold_dbfs must be at most 0",
            ));
        }
        if self.start_ms < WINDOW_MS || self.end_silence_ms < WINDOW_MS {
            return Err(invalid(
                engine,
                "utterances.start_ms and end_silence_ms must be at least 20",
            ));
        }
        if !(1..=30).contains(&self.max_utterance_secs) {
            return Err(invalid(
                engine,
                "utterances.max_utterance_secs must be 1..=30 (Whisper hears 30 s at most)",
            ));
        }
        if self.preroll_ms > 2_000 {
            return Err(invalid(
                engine,
                "utterances.preroll_ms must be at most 2000",
            ));
        }
        Ok(())
    }

    /// The energy gate these settings describe (at [`SAMPLE_RATE_HZ`], mono).
    pub(crate) fn gate(&self) -> GateSettings {
        let ms = |ms: u64| u32::try_from(ms).unwrap_or(u32::MAX);
        GateSettings {
            threshold_dbfs: self.threshold_dbfs,
            start_ms: ms(self.start_ms),
            stop_ms: ms(self.end_silence_ms),
        }
    }
}

/// How many calls an engine transcribes live at once, and what becomes of the others.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    /// Calls transcribed live at once (`usize::MAX`: no limit).
    pub max_live_calls: usize,
    /// A call beyond the limit keeps its utterances and is transcribed after it hangs up;
    /// `false`: it is not transcribed.
    pub after_call: bool,
    /// With `after_call`: most seconds of speech kept per call.
    pub after_call_max_secs: u64,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            max_live_calls: usize::MAX,
            after_call: false,
            after_call_max_secs: 600,
        }
    }
}

/// A call's place among those transcribed live: given back when the transcriber is dropped.
struct LiveSlot {
    live: Arc<AtomicUsize>,
    metrics: EngineMetrics,
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.metrics.live_call(false);
    }
}

/// How a transcriber serves its call.
enum Mode {
    /// Results while the call goes on.
    Live,
    /// Over capacity: utterances kept, transcribed after the call.
    AfterCall(KeptSpeech),
    /// Over capacity: not transcribed.
    Off,
}

/// What a call over capacity keeps for after it, within a bound.
struct KeptSpeech {
    utterances: Vec<Kept>,
    /// Samples kept, and the most allowed.
    samples: usize,
    max_samples: usize,
}

/// An utterance kept for after the call.
struct Kept {
    source: AudioSource,
    start: i64,
    samples: Vec<i16>,
}

/// What a transcriber did in a call (its `report` in session.json, which adds `live`: no
/// `not_live_reason`).
#[derive(Debug, Default, Clone, Serialize)]
struct Counters {
    /// Why the call was not transcribed live; `None`: it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_live_reason: Option<&'static str>,
    /// Over capacity, transcribed after the call instead.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    after_call: bool,
    /// Seconds of speech not kept for after the call (beyond `after_call_max_secs`).
    #[serde(skip_serializing_if = "is_zero")]
    after_call_dropped_secs: f64,
    utterances: u64,
    finals: u64,
    partials: u64,
    partials_skipped: u64,
    empty: u64,
    errors: u64,
    audio_secs: f64,
    compute_secs: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// One source's utterance in the making.
#[derive(Debug)]
struct Segmenter {
    /// Whether the source is speaking: open inside an utterance.
    gate: EnergyGate,
    /// Call-timeline position (in samples) of the next sample this source sends.
    position: i64,
    /// The last samples before speech, for the pre-roll.
    preroll: VecDeque<f32>,
    /// The current window's samples.
    window: Vec<f32>,
    /// The utterance so far and where it starts on the call timeline.
    utterance: Vec<f32>,
    start: i64,
    /// Samples of real voice in it (not pre-roll or trailing quiet).
    voiced: usize,
    /// Utterance length at the last partial.
    partial_at: usize,
    /// A partial the engine is working on (engines that take them without waiting), and the
    /// utterance length it is of.
    pending: Option<(Pending, usize)>,
}

impl Segmenter {
    fn new(gate: EnergyGate) -> Self {
        Segmenter {
            gate,
            position: 0,
            preroll: VecDeque::new(),
            window: Vec::new(),
            utterance: Vec::new(),
            start: 0,
            voiced: 0,
            partial_at: 0,
            pending: None,
        }
    }
}

/// Runs a [`Recognizer`] on every source of a call (the mixed stream, or each participant of an
/// unmixed call) and tells the call what was said, as [`Event::Transcript`]s whose `source` is
/// the engine's name: the `transcript` processor writes them next to the platform's, and any
/// processor (a bot) can react to them.
///
/// Audio arrives at 16 kHz (the pipeline resamples other rates once, for every processor that
/// asks). An [`EnergyGate`] per source (the one `vad` listens with) decides from each 20 ms
/// window's energy whether the source is speaking, with hysteresis; an
/// utterance runs from the first voiced window (plus a pre-roll) to `end_silence_ms` of quiet,
/// or is cut at `max_utterance_secs`. While it goes on, a partial result is asked for every
/// `partial_interval_ms` (if the engine offers them and keeps up); when it ends, the final one.
///
/// Runs on a blocking thread: engines decode in-process or wait on a server. A transcriber
/// that falls behind loses the oldest audio of its own inbox (counted), never the call's.
pub struct Transcriber {
    name: Arc<str>,
    settings: TranscriberSettings,
    /// A closed gate of the settings: each new source's, cloned.
    gate: EnergyGate,
    recognizer: Box<dyn Recognizer>,
    sources: HashMap<AudioSource, Segmenter>,
    /// How long the last partial took: partials pause while the engine is slower than them.
    last_partial: Duration,
    counters: Counters,
    /// Wait for the engine rather than drop audio ([`Transcriber::lossless`]).
    lossless: bool,
    mode: Mode,
    /// Held while the call counts as live.
    _slot: Option<LiveSlot>,
    metrics: EngineMetrics,
}

/// A speech engine's factory: one per route, holding the engine (its model loaded once) and
/// the utterance settings; it makes each call's [`Transcriber`].
#[derive(Clone)]
pub struct TranscriberFactory {
    name: Arc<str>,
    settings: TranscriberSettings,
    /// A closed gate of the settings, checked once.
    gate: EnergyGate,
    engine: Arc<dyn Engine>,
    capacity: Capacity,
    /// Calls transcribed live now.
    live: Arc<AtomicUsize>,
    metrics: EngineMetrics,
}

impl TranscriberFactory {
    /// The factory of engine `name` (the source its results carry), after checking `settings`.
    pub fn new(
        name: &str,
        settings: TranscriberSettings,
        engine: impl Engine,
    ) -> Result<Self, BuildError> {
        let gate = checked_gate(name, &settings)?;
        Ok(TranscriberFactory {
            name: name.into(),
            settings,
            gate,
            engine: Arc::new(engine),
            capacity: Capacity::default(),
            live: Arc::default(),
            metrics: EngineMetrics::detached(),
        })
    }

    /// The same factory, transcribing at most `capacity.max_live_calls` calls live.
    #[must_use]
    pub fn with_capacity(mut self, capacity: Capacity) -> Self {
        self.capacity = capacity;
        self
    }

    /// The same factory, counting in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: EngineMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// A transcriber with its own recognizer, outside any capacity (for a file, a test).
    pub fn transcriber(&self) -> Transcriber {
        let mut transcriber = Transcriber::with_parts(
            Arc::clone(&self.name),
            self.settings.clone(),
            self.gate.clone(),
            self.engine.recognizer(),
        );
        transcriber.metrics = self.metrics.clone();
        transcriber
    }

    /// A place among the calls transcribed live, if one is free.
    fn admit(&self) -> Option<LiveSlot> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity.max_live_calls).then_some(n + 1)
            })
            .ok()?;
        self.metrics.live_call(true);
        Some(LiveSlot {
            live: Arc::clone(&self.live),
            metrics: self.metrics.clone(),
        })
    }

    /// Call `call`'s transcriber: live if there is room, else as `capacity` says.
    fn for_call(&self, call: &CallInfo) -> Transcriber {
        let mut transcriber = self.transcriber();
        if let Some(slot) = self.admit() {
            transcriber._slot = Some(slot);
            return transcriber;
        }
        let after_call = self.capacity.after_call;
        tracing::warn!(
            call_id = &*call.call_id,
            engine = &*self.name,
            max_concurrent_calls = self.capacity.max_live_calls,
            after_call,
            "call not transcribed live: the engine is at capacity{}",
            if after_call {
                "; it will be transcribed after it ends"
            } else {
                ""
            }
        );
        self.metrics.not_live("capacity");
        transcriber.counters.not_live_reason = Some("capacity");
        transcriber.counters.after_call = after_call;
        transcriber.mode = if after_call {
            Mode::AfterCall(KeptSpeech {
                utterances: Vec::new(),
                samples: 0,
                max_samples: ms_to_samples(self.capacity.after_call_max_secs.saturating_mul(1_000)),
            })
        } else {
            Mode::Off
        };
        transcriber
    }
}

/// `settings` checked, and the closed energy gate they make. Errors name engine `name`.
fn checked_gate(name: &str, settings: &TranscriberSettings) -> Result<EnergyGate, BuildError> {
    settings.validate(name)?;
    EnergyGate::new(AudioFormat::mono(SAMPLE_RATE_HZ), settings.gate())
        .map_err(|e| invalid(name, format!("utterances.{e}")))
}

impl Factory for TranscriberFactory {
    fn make(&self, call: &CallInfo) -> Box<dyn Processor> {
        Box::new(self.for_call(call))
    }
}

impl Transcriber {
    /// A transcriber of `recognizer`'s, whose results carry `name` as their source (for one
    /// file or a test; calls get theirs from a [`TranscriberFactory`]).
    pub fn new(
        name: &str,
        settings: TranscriberSettings,
        recognizer: Box<dyn Recognizer>,
    ) -> Result<Self, BuildError> {
        let gate = checked_gate(name, &settings)?;
        Ok(Transcriber::with_parts(
            name.into(),
            settings,
            gate,
            recognizer,
        ))
    }

    /// A fresh transcriber of checked parts.
    fn with_parts(
        name: Arc<str>,
        settings: TranscriberSettings,
        gate: EnergyGate,
        recognizer: Box<dyn Recognizer>,
    ) -> Self {
        Transcriber {
            name,
            settings,
            gate,
            recognizer,
            sources: HashMap::new(),
            last_partial: Duration::ZERO,
            counters: Counters::default(),
            lossless: false,
            mode: Mode::Live,
            _slot: None,
            metrics: EngineMetrics::detached(),
        }
    }

    /// The name its results carry as their source.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// For a file, not a call: the inbox waits for the engine instead of dropping audio.
    pub fn lossless(mut self) -> Self {
        self.lossless = true;
        self
    }

    /// Where `frame` starts on the call's timeline, in samples: its place as the pipeline
    /// stamped it (a participant who was silent resumes at the right place), else right after
    /// the source's previous frame.
    fn place(frame: &AudioFrame) -> Option<i64> {
        let micros = i64::try_from(frame.position?.as_micros()).unwrap_or(i64::MAX);
        Some(micros.saturating_mul(i64::from(SAMPLE_RATE_HZ)) / 1_000_000)
    }

    /// Runs the engine on `source`'s utterance `samples`, which starts `start` samples into
    /// the call, and tells the call.
    fn recognize(
        &mut self,
        source: &AudioSource,
        start: i64,
        samples: &[f32],
        pass: Pass,
        ctx: &mut Context,
    ) {
        let began = Instant::now();
        let result = self.recognizer.recognize(samples, pass);
        let took = began.elapsed();
        self.counters.compute_secs += took.as_secs_f64();
        match pass {
            Pass::Partial => self.last_partial = took,
            Pass::Final => self.metrics.final_latency(took),
            Pass::AfterCall => {}
        }
        self.deliver(source, start, samples.len(), result, pass, ctx);
    }

    /// Tells the call what the engine made of `source`'s utterance of `len` samples from
    /// `start`, and counts it.
    fn deliver(
        &mut self,
        source: &AudioSource,
        start: i64,
        len: usize,
        result: Result<Recognition, SpeechError>,
        pass: Pass,
        ctx: &mut Context,
    ) {
        match result {
            Ok(recognition) => {
                if recognition.text.trim().is_empty() {
                    if pass != Pass::Partial {
                        self.counters.empty += 1;
                    }
                    return;
                }
                match pass {
                    Pass::Partial => self.counters.partials += 1,
                    Pass::Final | Pass::AfterCall => self.counters.finals += 1,
                }
                let transcript = self.transcript(source, start, len, recognition, pass);
                ctx.emit(Event::Transcript(Arc::new(transcript)));
            }
            Err(SpeechError::Busy) if pass == Pass::Partial => {
                self.counters.partials_skipped += 1;
            }
            Err(e) => {
                self.counters.errors += 1;
                tracing::warn!(
                    call_id = &*ctx.call().call_id,
                    engine = &*self.name,
                    error = %e,
                    "speech recognition failed"
                );
            }
        }
    }

    /// Emits the partials the engine has finished since the last look.
    fn collect_partials(&mut self, ctx: &mut Context) {
        let ready: Vec<_> = self
            .sources
            .iter_mut()
            .filter_map(|(source, seg)| {
                let result = seg.pending.as_ref()?.0.try_result()?;
                let (_, len) = seg.pending.take()?;
                Some((source.clone(), seg.start, len, result))
            })
            .collect();
        for (source, start, len, result) in ready {
            self.deliver(&source, start, len, result, Pass::Partial, ctx);
        }
    }

    /// The result of an utterance that starts `start` samples into the call and lasts `len`.
    fn transcript(
        &self,
        source: &AudioSource,
        start: i64,
        len: usize,
        recognition: Recognition,
        pass: Pass,
    ) -> Transcript {
        let start_ms = samples_to_ms(start);
        let secs_to_ms = |secs: f64| (secs.max(0.0) * 1_000.0).round() as u64;
        Transcript {
            source: Arc::clone(&self.name),
            status: match pass {
                Pass::Partial => TranscriptStatus::Partial,
                Pass::Final | Pass::AfterCall => TranscriptStatus::Final,
            },
            text: recognition.text.trim().to_owned(),
            start_ms,
            duration_ms: samples_to_ms(i64::try_from(len).unwrap_or(i64::MAX)),
            words: recognition
                .words
                .into_iter()
                .map(|w| TranscriptWord {
                    start_ms: start_ms.saturating_add(secs_to_ms(w.start_secs)),
                    duration_ms: secs_to_ms(w.end_secs - w.start_secs),
                    text: w.text,
                })
                .collect(),
            confidence: recognition.confidence,
            speaker: match source {
                AudioSource::Mixed => None,
                AudioSource::Participant(id) => Some(Arc::clone(id)),
            },
            received_at: Timestamp::now(),
        }
    }

    /// Ends `source`'s utterance: a final result if it was long enough to be speech.
    fn end_utterance(&mut self, source: &AudioSource, ctx: &mut Context) {
        let min_voiced = ms_to_samples(self.settings.min_utterance_ms);
        let Some(seg) = self.sources.get_mut(source) else {
            return;
        };
        let voiced = seg.voiced;
        // A partial still on its way is of no use once the final is asked for.
        seg.pending = None;
        // Taken for the engine's call, handed back emptied: one buffer per source.
        let utterance = std::mem::take(&mut seg.utterance);
        let start = seg.start;
        if voiced >= min_voiced && !utterance.is_empty() {
            self.counters.utterances += 1;
            self.counters.audio_secs += utterance.len() as f64 / f64::from(SAMPLE_RATE_HZ);
            match &mut self.mode {
                Mode::Live => self.recognize(source, start, &utterance, Pass::Final, ctx),
                Mode::AfterCall(kept) => {
                    if kept.samples + utterance.len() <= kept.max_samples {
                        kept.samples += utterance.len();
                        kept.utterances.push(Kept {
                            source: source.clone(),
                            start,
                            samples: utterance.iter().map(|&x| to_pcm16(x)).collect(),
                        });
                    } else {
                        self.counters.after_call_dropped_secs +=
                            utterance.len() as f64 / f64::from(SAMPLE_RATE_HZ);
                    }
                }
                Mode::Off => {}
            }
        }
        if let Some(seg) = self.sources.get_mut(source) {
            seg.utterance = utterance;
            seg.utterance.clear();
            seg.voiced = 0;
            seg.partial_at = 0;
        }
    }

    /// One full 20 ms window of `source`, as its gate judged it: utterance bookkeeping.
    fn window(&mut self, source: &AudioSource, verdict: GateWindow, ctx: &mut Context) {
        let start_windows = self.gate.start_windows();
        let end_windows = self.gate.stop_windows();
        let preroll = ms_to_samples(self.settings.preroll_ms);
        let max_len = ms_to_samples(self.settings.max_utterance_secs * 1000);
        let Some(seg) = self.sources.get_mut(source) else {
            return;
        };
        // Taken for the length of this call (end_utterance borrows the whole transcriber) and
        // handed back at the end, emptied: one buffer per source for the whole call.
        let mut window = std::mem::take(&mut seg.window);
        let window_start = seg.position - WINDOW as i64;
        let was_speaking = verdict.open != verdict.change.is_some();
        if was_speaking {
            seg.utterance.extend_from_slice(&window);
            if verdict.loud {
                seg.voiced += WINDOW;
            }
            if let Some(GateChange::Stopped { .. }) = verdict.change {
                // Keep a little of the trailing quiet: the end of the last word.
                let trailing = (end_windows as usize * WINDOW).saturating_sub(preroll.min(4_800));
                let keep = seg.utterance.len().saturating_sub(trailing);
                seg.utterance.truncate(keep);
                self.end_utterance(source, ctx);
            } else if seg.utterance.len() >= max_len {
                self.end_utterance(source, ctx);
                if let Some(seg) = self.sources.get_mut(source) {
                    seg.start = seg.position;
                }
            }
        } else {
            seg.preroll.extend(window.iter().copied());
            while seg.preroll.len() > preroll + start_windows as usize * WINDOW {
                seg.preroll.pop_front();
            }
            if let Some(GateChange::Started { .. }) = verdict.change {
                seg.utterance.clear();
                seg.utterance.extend(seg.preroll.drain(..));
                seg.voiced = start_windows as usize * WINDOW;
                seg.start = window_start + WINDOW as i64 - seg.utterance.len() as i64;
                seg.start = seg.start.max(0);
                seg.partial_at = 0;
            }
        }
        if let Some(seg) = self.sources.get_mut(source) {
            window.clear();
            seg.window = window;
        }
    }
}

/// `samples` at [`SAMPLE_RATE_HZ`] in ms (negative: 0).
fn samples_to_ms(samples: i64) -> u64 {
    u64::try_from(samples).unwrap_or(0).saturating_mul(1_000) / u64::from(SAMPLE_RATE_HZ)
}

/// A sample in [-1, 1] as PCM16 (what the engine was given came from PCM16: exact).
fn to_pcm16(x: f32) -> i16 {
    (x * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
}

fn ms_to_samples(ms: u64) -> usize {
    usize::try_from(ms * u64::from(SAMPLE_RATE_HZ) / 1000).unwrap_or(usize::MAX)
}

impl Processor for Transcriber {
    fn input(&self) -> Input {
        if let Mode::Off = self.mode {
            return Input::events_only();
        }
        Input {
            frames: true,
            sample_rate_hz: Some(SAMPLE_RATE_HZ),
            // About two minutes of 16 kHz audio may wait while the engine works.
            queue: 8_192,
            execution: Execution::Blocking,
            gather_ms: 100,
            overflow: if self.lossless {
                OverflowPolicy::Wait
            } else {
                OverflowPolicy::DropOldest
            },
            emits: true,
            ..Input::default()
        }
    }

    fn on_frame(&mut self, frame: &AudioFrame, ctx: &mut Context) -> Result<(), ProcessorError> {
        let placed = Self::place(frame);
        // One sample of each channel per step; the first channel is heard.
        let stride = 2 * usize::from(frame.format.channels()).max(1);
        let seg = self
            .sources
            .entry(frame.source.clone())
            .or_insert_with(|| Segmenter::new(self.gate.clone()));
        if let Some(at) = placed {
            // A jump forward is a silence the platform did not send (an unmixed participant
            // who stopped talking): the timeline skips it.
            if at > seg.position + WINDOW as i64 {
                seg.position = at;
            }
        }
        let mut rest = &frame.pcm[..frame.pcm.len() / stride * stride];
        while let Some(seg) = self.sources.get_mut(&frame.source)
            && !rest.is_empty()
        {
            let take = (WINDOW - seg.window.len()).min(rest.len() / stride);
            let mut verdict = None;
            for s in rest[..take * stride].chunks_exact(stride) {
                let sample = i16::from_le_bytes([s[0], s[1]]);
                seg.window.push(f32::from(sample) / 32_768.0);
                verdict = seg.gate.push_sample(sample).or(verdict);
            }
            seg.position += take as i64;
            rest = &rest[take * stride..];
            if let Some(verdict) = verdict {
                self.window(&frame.source, verdict, ctx);
            }
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut Context) -> Result<(), ProcessorError> {
        let live = matches!(self.mode, Mode::Live);
        if !live || self.settings.partial_interval_ms == 0 || !self.recognizer.partials() {
            return Ok(());
        }
        self.collect_partials(ctx);
        let interval = ms_to_samples(self.settings.partial_interval_ms);
        let due: Vec<AudioSource> = self
            .sources
            .iter()
            .filter(|(_, seg)| {
                seg.gate.is_open() && seg.utterance.len() >= seg.partial_at + interval
            })
            .map(|(source, _)| source.clone())
            .collect();
        for source in due {
            if let Some(seg) = self.sources.get_mut(&source) {
                seg.partial_at = seg.utterance.len();
                // An engine that takes partials without waiting: one at a time per source.
                if seg.pending.is_some() {
                    self.counters.partials_skipped += 1;
                    continue;
                }
                if let Some(pending) = self.recognizer.start_partial(&seg.utterance) {
                    seg.pending = Some((pending, seg.utterance.len()));
                    continue;
                }
            }
            // An engine slower than half the interval would fall behind the call: skip.
            if self.last_partial.as_millis() > u128::from(self.settings.partial_interval_ms / 2) {
                self.counters.partials_skipped += 1;
                self.last_partial /= 2;
                continue;
            }
            if let Some(seg) = self.sources.get_mut(&source) {
                let (start, utterance) = (seg.start, std::mem::take(&mut seg.utterance));
                self.recognize(&source, start, &utterance, Pass::Partial, ctx);
                if let Some(seg) = self.sources.get_mut(&source) {
                    seg.utterance = utterance;
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, ctx: &mut Context) -> Result<(), ProcessorError> {
        let speaking: Vec<AudioSource> = self
            .sources
            .iter()
            .filter(|(_, seg)| seg.gate.is_open())
            .map(|(source, _)| source.clone())
            .collect();
        for source in speaking {
            self.end_utterance(&source, ctx);
        }
        // A call over capacity: what it said, now that it is over, behind live work.
        if let Mode::AfterCall(kept) = std::mem::replace(&mut self.mode, Mode::Off) {
            let mut samples = Vec::new();
            for utterance in kept.utterances {
                samples.clear();
                samples.extend(utterance.samples.iter().map(|&s| f32::from(s) / 32_768.0));
                self.recognize(
                    &utterance.source,
                    utterance.start,
                    &samples,
                    Pass::AfterCall,
                    ctx,
                );
            }
        }
        Ok(())
    }

    fn report(&self) -> Option<serde_json::Value> {
        let mut report = serde_json::to_value(&self.counters).ok()?;
        report["live"] = serde_json::json!(self.counters.not_live_reason.is_none());
        if self.counters.audio_secs > 0.0 {
            report["real_time_factor"] =
                serde_json::json!(self.counters.compute_secs / self.counters.audio_secs);
        }
        Some(report)
    }
}
