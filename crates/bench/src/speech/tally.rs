//! Each call's outcome, session and transcript, summed into the run's report.

use mediagate_speech::wer::Score;

use super::calls::CallOutcome;
use super::clips::{CallPlan, SpeechClip};
use super::report::{FinalsLatency, LiveCounts, SpeechCallReport, SpeechReport, WerFigure};
use super::results::{SessionState, TranscriptLine};
use super::score::score_call;
use super::{SpeechConfig, histogram};
use crate::ErrorSummary;

/// What the run found for each call, by call (parallel vectors).
pub(crate) struct CallResults {
    pub(crate) ids: Vec<String>,
    pub(crate) plans: Vec<CallPlan>,
    pub(crate) outcomes: Vec<CallOutcome>,
    /// The last session.json read (`None`: never).
    pub(crate) states: Vec<Option<SessionState>>,
    /// The transcript lines, and how many lines did not parse.
    pub(crate) transcripts: Vec<Result<(Vec<TranscriptLine>, usize), String>>,
}

impl CallResults {
    /// The report of the run, but for what only the run knows (its times and CPU).
    pub(crate) fn report(&self, clips: &[SpeechClip], config: &SpeechConfig) -> SpeechReport {
        let mut latency = histogram();
        let mut negative = 0;
        let mut wer = Score::default();
        let (mut finals, mut empty_finals, mut partials) = (0, 0, 0);
        let mut live = LiveCounts::default();
        let (mut unfinished_calls, mut connected) = (0, 0);
        let mut errors = ErrorSummary::default();
        let (mut frames, mut speech_ms, mut late_max_us) = (0usize, 0u64, 0u64);
        let mut engine_compute_secs = 0.0;
        let mut per_call = Vec::with_capacity(self.ids.len());
        for (i, id) in self.ids.iter().enumerate() {
            let (plan, outcome, state) = (&self.plans[i], &self.outcomes[i], &self.states[i]);
            let call_speech_ms: u64 = plan.spans.iter().map(|s| s.end_ms - s.start_ms).sum();
            speech_ms += call_speech_ms;
            frames += outcome.frames_sent;
            late_max_us = late_max_us.max(outcome.late_max_us);
            let mut error = outcome.error.clone();
            let lines: &[TranscriptLine] = match &self.transcripts[i] {
                Ok((lines, _)) => lines,
                Err(e) => {
                    error.get_or_insert_with(|| e.clone());
                    &[]
                }
            };
            let score = score_call(lines, &plan.spans, clips, outcome.first_frame_at);
            if outcome.connected {
                connected += 1;
                unfinished_calls +=
                    usize::from(!state.as_ref().is_some_and(SessionState::finished));
                match state {
                    Some(s) if s.live => {
                        live.live += 1;
                        for &us in &score.latencies_us {
                            negative += u64::from(us < 0);
                            let _ = latency.record(u64::try_from(us).unwrap_or(0).max(1));
                        }
                    }
                    Some(s) => {
                        live.not_live += 1;
                        live.after_call += usize::from(s.after_call == Some(true));
                    }
                    None => live.unknown += 1,
                }
            }
            if let Some(e) = &error {
                errors.calls += 1;
                if errors.first.len() < 5 && !errors.first.contains(e) {
                    errors.first.push(e.clone());
                }
            }
            engine_compute_secs += state.as_ref().map_or(0.0, |s| s.engine_compute_secs);
            finals += score.finals;
            empty_finals += score.empty_finals;
            partials += score.partials;
            wer += score.wer;
            per_call.push(SpeechCallReport {
                call_id: id.clone(),
                connected: outcome.connected,
                clips: plan
                    .spans
                    .iter()
                    .map(|s| clips[s.clip].name.clone())
                    .collect(),
                speech_secs: call_speech_ms as f64 / 1e3,
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
            });
        }
        let speech_secs = speech_ms as f64 / 1e3;
        SpeechReport {
            url: config.url.clone(),
            calls: config.calls,
            connected,
            rate_hz: config.rate_hz,
            clips: clips.len(),
            clip_gap_ms: u64::try_from(config.clip_gap.as_millis()).unwrap_or(u64::MAX),
            audio_secs: frames as f64 * 0.02,
            speech_secs,
            stream_secs: 0.0,
            transcripts_wait_secs: 0.0,
            finals,
            empty_finals,
            partials,
            partials_per_speech_sec: partials as f64 / speech_secs.max(1e-9),
            finals_latency: FinalsLatency::of(&latency, negative),
            wer: WerFigure::from(wer),
            live,
            unfinished_calls,
            gateway: None,
            engine_compute_secs,
            engine_compute_per_speech_sec: engine_compute_secs / speech_secs.max(1e-9),
            generator_cores: 0.0,
            generator_late_max_us: late_max_us,
            errors,
            per_call,
        }
    }
}
