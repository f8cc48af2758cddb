//! Each call's outcome, session and transcript, summed into the run's report.

use hdrhistogram::Histogram;
use mediagate_speech::wer::Score;

use super::calls::CallOutcome;
use super::clips::{CallPlan, SpeechClip};
use super::report::{FinalsLatency, LiveCounts, SpeechCallReport, SpeechReport, WerFigure};
use super::results::{SessionState, Transcript, TranscriptLine};
use super::score::{CallScore, score_call};
use super::{SpeechConfig, histogram};
use crate::ErrorSummary;

/// What the run found for each call, by call (parallel vectors).
pub(crate) struct CallResults {
    pub(crate) ids: Vec<String>,
    pub(crate) plans: Vec<CallPlan>,
    pub(crate) outcomes: Vec<CallOutcome>,
    /// The last session.json read (`None`: never).
    pub(crate) states: Vec<Option<SessionState>>,
    pub(crate) transcripts: Vec<Transcript>,
}

impl CallResults {
    /// The report of the run, but for what only the run knows (its times and CPU).
    pub(crate) fn report(&self, clips: &[SpeechClip], config: &SpeechConfig) -> SpeechReport {
        let mut totals = Totals::new();
        let per_call = (0..self.ids.len())
            .map(|i| self.call(i, clips, &mut totals))
            .collect();
        totals.report(config, clips.len(), per_call)
    }

    /// Call `i`'s report, added to `totals`.
    fn call(&self, i: usize, clips: &[SpeechClip], totals: &mut Totals) -> SpeechCallReport {
        let (plan, outcome, state) = (&self.plans[i], &self.outcomes[i], &self.states[i]);
        let mut error = outcome.error.clone();
        let lines: &[TranscriptLine] = match &self.transcripts[i] {
            Ok((lines, _)) => lines,
            Err(e) => {
                error.get_or_insert_with(|| e.clone());
                &[]
            }
        };
        let score = score_call(lines, &plan.spans, clips, outcome.first_frame_at);
        let speech_ms: u64 = plan.spans.iter().map(|s| s.end_ms - s.start_ms).sum();
        totals.add(outcome, state.as_ref(), &score, speech_ms, error.as_deref());
        SpeechCallReport {
            call_id: self.ids[i].clone(),
            connected: outcome.connected,
            clips: plan
                .spans
                .iter()
                .map(|s| clips[s.clip].name.clone())
                .collect(),
            speech_secs: speech_ms as f64 / 1e3,
            finals: score.finals,
            partials: score.partials,
            wer: score.wer.into(),
            latency_max_ms: score.latencies_us.iter().max().map(|&us| us as f64 / 1e3),
            live: state.as_ref().map(|s| s.live),
            not_live_reason: state.as_ref().and_then(|s| s.not_live_reason.clone()),
            after_call: state.as_ref().and_then(|s| s.after_call),
            finished: state.as_ref().is_some_and(SessionState::finished),
            heard: score.heard,
            error,
        }
    }
}

/// Sums over the calls.
struct Totals {
    /// Finals latency of the calls transcribed live, µs.
    latency: Histogram<u64>,
    negative: u64,
    wer: Score,
    finals: u64,
    empty_finals: u64,
    partials: u64,
    live: LiveCounts,
    connected: usize,
    unfinished_calls: usize,
    errors: ErrorSummary,
    frames: usize,
    speech_ms: u64,
    late_max_us: u64,
    engine_compute_secs: f64,
}

impl Totals {
    fn new() -> Self {
        Totals {
            latency: histogram(),
            negative: 0,
            wer: Score::default(),
            finals: 0,
            empty_finals: 0,
            partials: 0,
            live: LiveCounts::default(),
            connected: 0,
            unfinished_calls: 0,
            errors: ErrorSummary::default(),
            frames: 0,
            speech_ms: 0,
            late_max_us: 0,
            engine_compute_secs: 0.0,
        }
    }

    fn add(
        &mut self,
        outcome: &CallOutcome,
        state: Option<&SessionState>,
        score: &CallScore,
        speech_ms: u64,
        error: Option<&str>,
    ) {
        self.speech_ms += speech_ms;
        self.frames += outcome.frames_sent;
        self.late_max_us = self.late_max_us.max(outcome.late_max_us);
        if outcome.connected {
            self.connected += 1;
            self.unfinished_calls += usize::from(!state.is_some_and(SessionState::finished));
            match state {
                Some(s) if s.live => {
                    self.live.live += 1;
                    for &us in &score.latencies_us {
                        self.negative += u64::from(us < 0);
                        let _ = self.latency.record(u64::try_from(us).unwrap_or(0).max(1));
                    }
                }
                Some(s) => {
                    self.live.not_live += 1;
                    self.live.after_call += usize::from(s.after_call == Some(true));
                }
                None => self.live.unknown += 1,
            }
        }
        if let Some(e) = error {
            self.errors.calls += 1;
            if self.errors.first.len() < 5 && !self.errors.first.iter().any(|f| f == e) {
                self.errors.first.push(e.to_owned());
            }
        }
        self.engine_compute_secs += state.map_or(0.0, |s| s.engine_compute_secs);
        self.finals += score.finals;
        self.empty_finals += score.empty_finals;
        self.partials += score.partials;
        self.wer += score.wer;
    }

    fn report(
        self,
        config: &SpeechConfig,
        clips: usize,
        per_call: Vec<SpeechCallReport>,
    ) -> SpeechReport {
        let speech_secs = self.speech_ms as f64 / 1e3;
        SpeechReport {
            url: config.url.clone(),
            calls: config.calls,
            connected: self.connected,
            rate_hz: config.rate_hz,
            clips,
            clip_gap_ms: u64::try_from(config.clip_gap.as_millis()).unwrap_or(u64::MAX),
            audio_secs: self.frames as f64 * 0.02,
            speech_secs,
            stream_secs: 0.0,
            transcripts_wait_secs: 0.0,
            finals: self.finals,
            empty_finals: self.empty_finals,
            partials: self.partials,
            partials_per_speech_sec: self.partials as f64 / speech_secs.max(1e-9),
            finals_latency: FinalsLatency::of(&self.latency, self.negative),
            wer: WerFigure::from(self.wer),
            live: self.live,
            unfinished_calls: self.unfinished_calls,
            gateway: None,
            engine_compute_secs: self.engine_compute_secs,
            engine_compute_per_speech_sec: self.engine_compute_secs / speech_secs.max(1e-9),
            generator_cores: 0.0,
            generator_late_max_us: self.late_max_us,
            errors: self.errors,
            per_call,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use std::time::Duration;

    use mediagate_audio::{AudioFormat, Clip};
    use mediagate_protocol::Timestamp;

    use super::*;
    use crate::speech::ClipSpan;

    const T0: i64 = 1_000_000_000_000;

    fn final_at(text: &str, end_ms: u64, at_ms: i64) -> TranscriptLine {
        TranscriptLine {
            source: "whisper".into(),
            status: "final".into(),
            text: text.into(),
            start_ms: 0,
            end_ms,
            received_at: Some(Timestamp::from_unix_micros(T0 + at_ms * 1_000)),
        }
    }

    #[test]
    fn latency_counts_the_live_calls_only_and_every_call_counts_for_wer() {
        let clips = [SpeechClip {
            name: "one".into(),
            reference: "one two three".into(),
            audio: Clip::from_samples(AudioFormat::mono(16_000), &[0; 320]),
        }];
        let plan = CallPlan {
            first_frame: 0,
            frames: 100,
            spans: vec![ClipSpan {
                clip: 0,
                start_ms: 0,
                end_ms: 1_500,
            }],
        };
        let outcome = CallOutcome {
            connected: true,
            first_frame_at: Some(Timestamp::from_unix_micros(T0)),
            frames_sent: 100,
            late_max_us: 700,
            ..CallOutcome::default()
        };
        let live = SessionState {
            ended: true,
            live: true,
            engine_compute_secs: 0.5,
            ..SessionState::default()
        };
        let after_call = SessionState {
            live: false,
            not_live_reason: Some("capacity".into()),
            after_call: Some(true),
            ..live.clone()
        };
        let results = CallResults {
            ids: vec!["a".into(), "b".into(), "c".into()],
            plans: vec![plan.clone(), plan.clone(), plan],
            outcomes: vec![outcome.clone(), outcome.clone(), outcome],
            states: vec![Some(live), Some(after_call), None],
            transcripts: vec![
                Ok((vec![final_at("one two three", 1_700, 2_300)], 0)),
                // Transcribed after the call, a minute late: not in the latency.
                Ok((vec![final_at("one two", 1_500, 60_000)], 0)),
                Err("cannot read c/transcript.jsonl".into()),
            ],
        };
        let mut config = SpeechConfig::new("ws://127.0.0.1:1/ws", "/nowhere", Vec::new());
        config.calls = 3;
        config.clip_gap = Duration::from_millis(1_500);
        let report = results.report(&clips, &config);
        let latency = report.finals_latency.unwrap();
        // 2.3 s - 1.5 s (the clip's end, not the final's 1.7 s).
        assert_eq!(latency.finals, 1);
        assert!((latency.p95_ms - 800.0).abs() < 8.0, "{latency:?}");
        assert_eq!(
            report.live,
            LiveCounts {
                live: 1,
                not_live: 1,
                after_call: 1,
                unknown: 1
            }
        );
        // 0 + 1 + 3 errors in 9 words.
        assert_eq!((report.wer.errors, report.wer.words), (4, 9));
        assert_eq!((report.finals, report.unfinished_calls), (2, 1));
        assert_eq!(report.errors.calls, 1);
        assert_eq!(
            report.per_call[1].not_live_reason.as_deref(),
            Some("capacity")
        );
        assert!((report.speech_secs - 4.5).abs() < 1e-9);
        assert!((report.engine_compute_secs - 1.0).abs() < 1e-9);
        assert_eq!(
            (report.audio_secs, report.generator_late_max_us),
            (6.0, 700)
        );
    }
}
