//! What a speech run measured: finals latency, word error rate, partial rate, CPU, and how
//! many calls were transcribed live; whether a run held the bounds of `--find-max`. Serializes
//! to JSON (`--json`); displays as a table.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use mediagate_speech::wer::Score;
use serde::Serialize;

use crate::ErrorSummary;

/// The whole report of one speech run.
#[derive(Debug, Clone, Serialize)]
pub struct SpeechReport {
    /// The gateway's URL.
    pub url: String,
    /// Calls asked for.
    pub calls: usize,
    /// Calls that connected.
    pub connected: usize,
    /// Sample rate of the calls' audio.
    pub rate_hz: u32,
    /// Distinct clips the calls play.
    pub clips: usize,
    /// Silence after each clip, ms.
    pub clip_gap_ms: u64,
    /// Audio sent, over all calls, seconds.
    pub audio_secs: f64,
    /// Of that, the clips' audio (speech), seconds.
    pub speech_secs: f64,
    /// From the first call's start to the last hang-up, seconds.
    pub stream_secs: f64,
    /// From the last hang-up until every call's session.json said it had finished (or the
    /// wait ran out), seconds.
    pub transcripts_wait_secs: f64,
    /// Finals from the engine, all calls.
    pub finals: u64,
    /// Of those, finals with no text.
    pub empty_finals: u64,
    /// Partials from the engine, all calls.
    pub partials: u64,
    /// Partials per second of speech.
    pub partials_per_speech_sec: f64,
    /// Finals latency after the end of the utterance, over the calls transcribed live.
    pub finals_latency: Option<FinalsLatency>,
    /// Word error rate of all calls' finals.
    pub wer: WerFigure,
    /// How many calls were transcribed live.
    pub live: LiveCounts,
    /// Calls whose session.json did not say, within the wait, that the call had ended and no
    /// processor was still working: their transcripts may be incomplete.
    pub unfinished_calls: usize,
    /// The gateway's CPU and memory, when it runs on this machine and its pid is known.
    pub gateway: Option<SpeechCpu>,
    /// `compute_secs` the speech engine reported, summed over the calls.
    pub engine_compute_secs: f64,
    /// Of that, per second of speech.
    pub engine_compute_per_speech_sec: f64,
    /// The generator's average cores while the calls streamed.
    pub generator_cores: f64,
    /// How late a call's 20 ms clock ran at worst, µs: large values mean the generator was
    /// starved and the latency figures are pessimistic.
    pub generator_late_max_us: u64,
    /// Calls that ended in an error, with the first few errors.
    pub errors: ErrorSummary,
    /// Each call.
    pub per_call: Vec<SpeechCallReport>,
}

/// Percentiles of the finals latency, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FinalsLatency {
    /// Finals measured.
    pub finals: u64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Finals that came before the end of their utterance by the clocks (counted as 0):
    /// only clock trouble makes them.
    pub negative: u64,
}

impl FinalsLatency {
    /// The percentiles of `h` (µs), `None` when empty.
    pub(crate) fn of(h: &Histogram<u64>, negative: u64) -> Option<FinalsLatency> {
        let ms = |us: u64| us as f64 / 1_000.0;
        (!h.is_empty()).then(|| FinalsLatency {
            finals: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            negative,
        })
    }
}

/// A word error rate with its counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WerFigure {
    /// Substitutions, deletions and insertions.
    pub errors: usize,
    /// Words in the references.
    pub words: usize,
    /// `errors / words`.
    pub rate: f64,
}

impl From<Score> for WerFigure {
    fn from(score: Score) -> Self {
        WerFigure {
            errors: score.errors,
            words: score.words,
            rate: score.wer(),
        }
    }
}

/// Calls by whether they were transcribed live (from the speech engine's report in
/// session.json: `"live": false` means not; no such field means live).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LiveCounts {
    /// Transcribed live.
    pub live: usize,
    /// Not transcribed live.
    pub not_live: usize,
    /// Of those, transcribed after the call instead.
    pub after_call: usize,
    /// No session.json read: unknown.
    pub unknown: usize,
}

/// What the gateway's process cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SpeechCpu {
    /// The process.
    pub pid: u32,
    /// Average cores busy while the calls streamed.
    pub streaming_cores: f64,
    /// CPU time from the first call to the end of the wait for transcripts, seconds.
    pub cpu_secs: f64,
    /// Of that, per second of speech sent.
    pub cpu_secs_per_speech_sec: f64,
    /// Resident memory at the end, KiB.
    pub rss_kib: u64,
}

/// One call.
#[derive(Debug, Clone, Serialize)]
pub struct SpeechCallReport {
    /// Its call id (its folder under the recordings dir).
    pub call_id: String,
    /// The socket opened.
    pub connected: bool,
    /// The clips it played, in order.
    pub clips: Vec<String>,
    /// Seconds of speech it sent.
    pub speech_secs: f64,
    /// Finals from the engine.
    pub finals: u64,
    /// Partials from the engine.
    pub partials: u64,
    /// Its finals against the references of its clips.
    pub wer: WerFigure,
    /// Its slowest final, ms.
    pub latency_max_ms: Option<f64>,
    /// Transcribed live (`None`: its session.json was not read).
    pub live: Option<bool>,
    /// Why not, when the engine said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_live_reason: Option<String>,
    /// Transcribed after the call instead, when the engine said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_call: Option<bool>,
    /// Its session.json said, within the wait, that it had ended with every processor done.
    pub finished: bool,
    /// What the engine heard (its finals), in timeline order.
    pub heard: String,
    /// What went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The bounds a run must hold for `--find-max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeechBounds {
    /// p95 finals latency at most this.
    pub p95: Duration,
    /// Word error rate at most this (`0.1`: 10%).
    pub max_wer: f64,
}

impl SpeechReport {
    /// Why the run did not hold `bounds`; empty when it held: every call connected without
    /// error, was transcribed live and finished within the wait, finals came, p95 latency and
    /// WER within bounds.
    pub fn failures(&self, bounds: &SpeechBounds) -> Vec<String> {
        let mut why = Vec::new();
        if self.connected < self.calls {
            why.push(format!(
                "{} of {} calls connected",
                self.connected, self.calls
            ));
        }
        if self.errors.calls > 0 {
            why.push(format!("{} calls failed", self.errors.calls));
        }
        if self.live.not_live + self.live.unknown > 0 {
            why.push(format!(
                "{} calls not transcribed live, {} unknown",
                self.live.not_live, self.live.unknown
            ));
        }
        if self.unfinished_calls > 0 {
            why.push(format!(
                "{} calls still transcribing after the wait",
                self.unfinished_calls
            ));
        }
        match &self.finals_latency {
            None => why.push("no final".to_owned()),
            Some(l) if l.p95_ms > bounds.p95.as_secs_f64() * 1_000.0 => why.push(format!(
                "p95 finals latency {:.2} s over {:.2} s",
                l.p95_ms / 1_000.0,
                bounds.p95.as_secs_f64()
            )),
            Some(_) => {}
        }
        if self.wer.rate > bounds.max_wer {
            why.push(format!(
                "WER {:.1}% over {:.1}%",
                self.wer.rate * 100.0,
                bounds.max_wer * 100.0
            ));
        }
        why
    }
}

fn secs(ms: f64) -> String {
    format!("{:.2} s", ms / 1_000.0)
}

impl fmt::Display for SpeechReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self;
        writeln!(f, "gateway      {}", r.url)?;
        writeln!(
            f,
            "load         {} real-time calls ({} connected) of {} clips {} ms apart, {} Hz: \
             {:.0} s of audio, {:.0} s of speech, in {:.1} s",
            r.calls,
            r.connected,
            r.clips,
            r.clip_gap_ms,
            r.rate_hz,
            r.audio_secs,
            r.speech_secs,
            r.stream_secs
        )?;
        match &r.finals_latency {
            Some(l) => writeln!(
                f,
                "finals       {} ({} empty); after the utterance: p50 {}  p95 {}  p99 {}  max {}",
                r.finals,
                r.empty_finals,
                secs(l.p50_ms),
                secs(l.p95_ms),
                secs(l.p99_ms),
                secs(l.max_ms)
            )?,
            None => writeln!(f, "finals       {} (no latency measured)", r.finals)?,
        }
        writeln!(
            f,
            "partials     {}, {:.2} per second of speech",
            r.partials, r.partials_per_speech_sec
        )?;
        writeln!(
            f,
            "WER          {:.1}% ({} errors in {} words)",
            r.wer.rate * 100.0,
            r.wer.errors,
            r.wer.words
        )?;
        writeln!(
            f,
            "live         {} of {} calls transcribed live ({} not, {} of them after the call; {} unknown); {} unfinished after {:.1} s",
            r.live.live,
            r.calls,
            r.live.not_live,
            r.live.after_call,
            r.live.unknown,
            r.unfinished_calls,
            r.transcripts_wait_secs
        )?;
        match &r.gateway {
            Some(g) => writeln!(
                f,
                "gateway      {:.2} cores while streaming; {:.1} s CPU in all, {:.2} s per second of speech; RSS {} KiB, pid {}",
                g.streaming_cores, g.cpu_secs, g.cpu_secs_per_speech_sec, g.rss_kib, g.pid
            )?,
            None => writeln!(
                f,
                "gateway      CPU not measured (pass --gateway-pid for a local one)"
            )?,
        }
        writeln!(
            f,
            "engine       {:.1} s compute reported, {:.3} s per second of speech",
            r.engine_compute_secs, r.engine_compute_per_speech_sec
        )?;
        writeln!(
            f,
            "generator    {:.2} cores; its 20 ms clock ran at most {:.1} ms late",
            r.generator_cores,
            r.generator_late_max_us as f64 / 1_000.0
        )?;
        if r.errors.calls > 0 {
            writeln!(
                f,
                "errors       {} calls: {:?}",
                r.errors.calls, r.errors.first
            )?;
        }
        write!(
            f,
            "calls        id, speech s, finals, partials, WER, slowest final, live"
        )?;
        for c in &r.per_call {
            write!(
                f,
                "\n             {} {:>6.1} {:>4} {:>5} {:>6.1}% {:>8} {}",
                c.call_id,
                c.speech_secs,
                c.finals,
                c.partials,
                c.wer.rate * 100.0,
                c.latency_max_ms.map_or("-".to_owned(), secs),
                match c.live {
                    Some(true) => "live".to_owned(),
                    Some(false) => format!(
                        "not live ({})",
                        c.not_live_reason.as_deref().unwrap_or("no reason given")
                    ),
                    None => "unknown".to_owned(),
                }
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    fn report() -> SpeechReport {
        SpeechReport {
            url: "ws://127.0.0.1:1/ws".into(),
            calls: 2,
            connected: 2,
            rate_hz: 16_000,
            clips: 2,
            clip_gap_ms: 1_500,
            audio_secs: 20.0,
            speech_secs: 14.0,
            stream_secs: 11.0,
            transcripts_wait_secs: 0.5,
            finals: 4,
            empty_finals: 0,
            partials: 7,
            partials_per_speech_sec: 0.5,
            finals_latency: Some(FinalsLatency {
                finals: 4,
                p50_ms: 600.0,
                p95_ms: 1_200.0,
                p99_ms: 1_300.0,
                max_ms: 1_300.0,
                negative: 0,
            }),
            wer: WerFigure {
                errors: 2,
                words: 40,
                rate: 0.05,
            },
            live: LiveCounts {
                live: 2,
                ..LiveCounts::default()
            },
            unfinished_calls: 0,
            gateway: None,
            engine_compute_secs: 3.0,
            engine_compute_per_speech_sec: 3.0 / 14.0,
            generator_cores: 0.01,
            generator_late_max_us: 300,
            errors: ErrorSummary::default(),
            per_call: Vec::new(),
        }
    }

    #[test]
    fn a_run_holds_only_within_every_bound() {
        let bounds = SpeechBounds {
            p95: Duration::from_millis(1_500),
            max_wer: 0.1,
        };
        let held = report();
        assert!(held.failures(&bounds).is_empty(), "{held}");
        let mut slow = report();
        slow.finals_latency.as_mut().unwrap().p95_ms = 1_600.0;
        assert_eq!(
            slow.failures(&bounds),
            ["p95 finals latency 1.60 s over 1.50 s"]
        );
        let mut inaccurate = report();
        inaccurate.wer.rate = 0.2;
        assert_eq!(inaccurate.failures(&bounds), ["WER 20.0% over 10.0%"]);
        let mut over = report();
        over.live = LiveCounts {
            live: 1,
            not_live: 1,
            after_call: 1,
            unknown: 0,
        };
        assert_eq!(over.failures(&bounds).len(), 1);
        let mut silent = report();
        silent.finals_latency = None;
        silent.unfinished_calls = 1;
        assert_eq!(silent.failures(&bounds).len(), 2);
        // The table says the figures.
        let text = held.to_string();
        assert!(
            text.contains("p95 1.20 s") && text.contains("WER          5.0%"),
            "{text}"
        );
    }

    #[test]
    fn a_sweep_is_drawn_with_one_point_per_run() {
        let mut four = report();
        four.calls = 4;
        four.finals_latency.as_mut().unwrap().p95_ms = 2_400.0;
        let svg = crate::speech_sweep_svg(&[four, report()], "pocketsphinx & co");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("finals after the end of the utterance (s)"));
        assert!(svg.contains("pocketsphinx &amp; co"));
        // p50 and p95 at 2 and 4 calls; no CPU measured, so no point there.
        assert_eq!(svg.matches("<circle").count(), 4, "{svg}");
    }
}
