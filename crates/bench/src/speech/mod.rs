//! `mediagate bench --speech`: N real-time calls of real speech through a gateway's speech
//! pipeline, scored from what the gateway wrote.
//!
//! Each call streams clips of speech (WAV files with reference text) one after the other, a
//! gap of silence after each, at the platform's pace; calls start at different clips, spread
//! over the ramp. After the calls hang up, the bench waits (bounded) until every call's
//! session.json says it has ended with no processor still working, then reads each call's
//! transcript.jsonl and reports:
//! - **finals latency**: per final, `received_at` minus the wall time the end of its utterance
//!   was sent (the call's first frame's send time plus the utterance's end on the call
//!   timeline, which is the final's `end_ms` but never later than the end of the clip it
//!   overlaps); p50, p95, p99 and max over the finals of the calls transcribed live;
//! - **word error rate** per call and overall, of the finals against the clips' references;
//! - the **partial rate**, the gateway's **CPU**, and how many calls were **transcribed live**
//!   (the engine's report in session.json).
//!
//! The generator is cheap: the tape of messages is encoded once and shared; one task per call.

mod calls;
mod clips;
mod report;
mod results;
mod score;
mod search;
mod tally;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use mediagate_protocol::Timestamp;
use tokio::time::Instant;

use crate::BenchError;
use crate::load::call_url;
use crate::procstat::{self, ProcSample};
use calls::Progress;
use results::{SessionState, Transcript};
use tally::CallResults;

pub use clips::{ClipSpan, REFERENCES_FILE, SpeechClip, load_clips};
pub use report::{
    FinalsLatency, LiveCounts, SpeechBounds, SpeechCallReport, SpeechCpu, SpeechReport, WerFigure,
};
pub use search::CallSearch;

/// The longest call: the tape of messages grows with it (about 3 MiB per minute at 16 kHz).
const MAX_CALL_DURATION: Duration = Duration::from_secs(600);
/// The most calls of one run.
const MAX_CALLS: usize = 10_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct SpeechConfig {
    /// The gateway, `ws://host:port/path`; each call adds `callId=speech-<run>-<n>`.
    pub url: String,
    /// The gateway's recordings dir (its `data_dir`) on this machine: where the call folders
    /// with session.json and transcript.jsonl appear.
    pub recordings: PathBuf,
    /// Concurrent calls.
    pub calls: usize,
    /// The clips: folders (every WAV in them) or WAV files, each with the references.txt of
    /// its folder.
    pub clips: Vec<PathBuf>,
    /// Each call plays whole clips until it has played at least this long.
    pub duration: Duration,
    /// Calls start spread over this long.
    pub ramp: Duration,
    /// Silence after each clip.
    pub clip_gap: Duration,
    /// 16000 or 24000.
    pub rate_hz: u32,
    /// The gateway's process on this machine, for its CPU and memory.
    pub gateway_pid: Option<u32>,
    /// How long to wait after the last hang-up for every call's transcript.
    pub transcript_wait: Duration,
    /// Draw a progress line on stderr.
    pub progress: bool,
}

impl SpeechConfig {
    /// 2 calls of 30 s of `clips` at 16 kHz, 1.5 s apart, into the gateway at `url` whose
    /// recordings are in `recordings`; transcripts waited for up to 120 s.
    pub fn new(
        url: impl Into<String>,
        recordings: impl Into<PathBuf>,
        clips: Vec<PathBuf>,
    ) -> Self {
        SpeechConfig {
            url: url.into(),
            recordings: recordings.into(),
            calls: 2,
            clips,
            duration: Duration::from_secs(30),
            ramp: Duration::from_secs(2),
            clip_gap: Duration::from_millis(1_500),
            rate_hz: 16_000,
            gateway_pid: None,
            transcript_wait: Duration::from_secs(120),
            progress: false,
        }
    }

    fn validate(&self) -> Result<(), BenchError> {
        let bad = |reason: &str| Err(BenchError::Config(reason.to_owned()));
        if self.calls == 0 || self.calls > MAX_CALLS {
            return bad("--calls must be 1 to 10000");
        }
        if ![16_000, 24_000].contains(&self.rate_hz) {
            return bad("--rate must be 16000 or 24000 (what ACS streams)");
        }
        if self.duration.is_zero() || self.duration > MAX_CALL_DURATION {
            return bad("--duration of a speech call must be more than 0 and at most 10 minutes");
        }
        if self.clip_gap > Duration::from_secs(60) {
            return bad("--clip-gap must be at most 60 s");
        }
        if self.transcript_wait > Duration::from_secs(3_600) {
            return bad("--transcript-wait must be at most an hour");
        }
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return bad("--url must be ws:// or wss://");
        }
        if self.clips.is_empty() {
            return bad("no clips given");
        }
        Ok(())
    }
}

/// Reads at most `max_bytes` of a text file. **Blocking**.
fn read_bounded(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(max_bytes)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// A histogram of microseconds up to an hour, 1% resolution.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("constant bounds are valid")
}

/// Runs the calls, waits for their transcripts, and reports.
pub async fn run(config: SpeechConfig) -> Result<SpeechReport, BenchError> {
    config.validate()?;
    let (clips, plans, tape) = prepare(&config).await?;
    let run_id = Timestamp::now().unix_micros() / 1_000;
    let ids: Vec<String> = (0..config.calls)
        .map(|i| format!("speech-{run_id}-{i}"))
        .collect();
    let progress = Progress::new(config.progress);
    let me = std::process::id();
    let sample = |pid: Option<u32>| pid.and_then(|p| procstat::sample(p).ok());
    let (gateway_start, me_start) = (sample(config.gateway_pid), sample(Some(me)));
    let start = Instant::now();
    let outcomes = stream(&config, &ids, &plans, tape, &progress).await;
    let stream_secs = start.elapsed().as_secs_f64();
    let (gateway_streamed, me_streamed) = (sample(config.gateway_pid), sample(Some(me)));
    if outcomes.iter().all(|o| !o.connected) {
        let first_error = outcomes.iter().find_map(|o| o.error.clone());
        return Err(BenchError::no_connection(&config.url, first_error));
    }
    progress.say("waiting for the transcripts");
    let (states, waited, transcripts) = collect(&config, &ids).await?;
    let gateway_end = sample(config.gateway_pid);
    progress.finish();

    let calls = CallResults {
        ids,
        plans,
        outcomes,
        states,
        transcripts,
    };
    let mut report = calls.report(&clips, &config);
    report.stream_secs = stream_secs;
    report.transcripts_wait_secs = waited.as_secs_f64();
    report.gateway = match (gateway_start, gateway_streamed, gateway_end) {
        (Some(s), Some(m), Some(e)) => config
            .gateway_pid
            .map(|pid| gateway_cpu(pid, [s, m, e], stream_secs, report.speech_secs)),
        _ => None,
    };
    report.generator_cores = match (me_start, me_streamed) {
        (Some(s), Some(e)) => cpu_secs(s, e) / stream_secs.max(1e-9),
        _ => 0.0,
    };
    Ok(report)
}

/// Reads the clips and lays out the calls and their tape, on a blocking thread.
async fn prepare(
    config: &SpeechConfig,
) -> Result<(Vec<SpeechClip>, Vec<clips::CallPlan>, clips::Tape), BenchError> {
    let c = config.clone();
    tokio::task::spawn_blocking(move || {
        let clips = load_clips(&c.clips, c.rate_hz)?;
        let gap_ms = u64::try_from(c.clip_gap.as_millis()).unwrap_or(u64::MAX);
        let min_ms = u64::try_from(c.duration.as_millis()).unwrap_or(u64::MAX);
        let (plans, tape) = clips::prepare(&clips, gap_ms, min_ms, c.calls, c.rate_hz);
        Ok((clips, plans, tape))
    })
    .await
    .map_err(|e| BenchError::Config(e.to_string()))?
}

/// Plays every call (call `i` named `ids[i]`, starting `i / calls` into the ramp) and waits
/// until all have hung up.
async fn stream(
    config: &SpeechConfig,
    ids: &[String],
    plans: &[clips::CallPlan],
    tape: clips::Tape,
    progress: &Progress,
) -> Vec<calls::CallOutcome> {
    let tape = Arc::new(tape);
    let counters = Arc::new(calls::Counters::default());
    let start = Instant::now();
    let tasks: Vec<_> = plans
        .iter()
        .zip(ids)
        .enumerate()
        .map(|(i, (plan, id))| {
            let offset = config.ramp.mul_f64(i as f64 / config.calls as f64);
            tokio::spawn(calls::call(
                call_url(&config.url, id),
                start + offset,
                Arc::clone(&tape),
                plan.clone(),
                Arc::clone(&counters),
            ))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(progress.wait(task, &counters, config.calls).await);
    }
    outcomes
}

/// Each call's session.json once finished (or the wait ran out), how long that took, and its
/// transcript lines.
async fn collect(
    config: &SpeechConfig,
    ids: &[String],
) -> Result<(Vec<Option<SessionState>>, Duration, Vec<Transcript>), BenchError> {
    let folders: Vec<PathBuf> = ids.iter().map(|id| config.recordings.join(id)).collect();
    let (states, waited) =
        results::wait_until_finished(folders.clone(), config.transcript_wait).await;
    let names: Vec<Vec<String>> = states
        .iter()
        .map(|s| {
            s.as_ref()
                .map(|s| s.transcripts.clone())
                .unwrap_or_default()
        })
        .collect();
    let transcripts = tokio::task::spawn_blocking(move || {
        folders
            .iter()
            .zip(&names)
            .map(|(folder, names)| results::read_transcripts(folder, names))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| BenchError::Config(e.to_string()))?;
    Ok((states, waited, transcripts))
}

fn cpu_secs(from: ProcSample, to: ProcSample) -> f64 {
    to.cpu_micros.saturating_sub(from.cpu_micros) as f64 / 1e6
}

/// The gateway's CPU from `[start, streamed, end]` samples.
fn gateway_cpu(
    pid: u32,
    samples: [ProcSample; 3],
    stream_secs: f64,
    speech_secs: f64,
) -> SpeechCpu {
    let [start, streamed, end] = samples;
    let total = cpu_secs(start, end);
    SpeechCpu {
        pid,
        streaming_cores: cpu_secs(start, streamed) / stream_secs.max(1e-9),
        cpu_secs: total,
        cpu_secs_per_speech_sec: total / speech_secs.max(1e-9),
        rss_kib: end.rss_kib,
    }
}
