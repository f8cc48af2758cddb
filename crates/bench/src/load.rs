//! The load: N calls, each a WebSocket that sends AudioMetadata and then stamped AudioData
//! frames, on the 20 ms clock (`realtime`) or as fast as the gateway takes them (`max`), while
//! a reader task per call times every echoed frame.
//!
//! Timeline of a run: calls connect spread over the ramp; a warm-up follows; then the measured
//! window, in which latencies, gaps and CPU are counted; then senders stop, echoes drain, and
//! every socket is closed with a close frame.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use mediagate_protocol::{OutboundMessage, parse_outbound};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

use crate::BenchError;
use crate::frames::{FrameSet, STAMPS, read_stamp};
use crate::procstat::{self, ProcSample, ProcessUsage};
use crate::report::{BenchReport, ErrorSummary, FrameCounts, Percentiles, Rates};
use crate::rss::{RssSampler, default_rss_every};

/// How calls send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One frame per source every 20 ms, as the platform sends: how many calls hold the clock.
    Realtime,
    /// As fast as the gateway takes them (with an echo: at most `max_in_flight` unanswered
    /// frames per call): the throughput ceiling.
    Max,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "realtime" => Ok(Mode::Realtime),
            "max" => Ok(Mode::Max),
            other => Err(format!("unknown mode `{other}` (realtime, max)")),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The gateway, `ws://host:port/path`; each call adds `callId=bench-N` to the query.
    pub url: String,
    /// Concurrent calls.
    pub calls: usize,
    /// The measured window.
    pub duration: Duration,
    /// Calls connect spread over this long.
    pub ramp: Duration,
    /// Runs after the ramp and before the window; not measured.
    pub warmup: Duration,
    /// 16000 or 24000.
    pub rate_hz: u32,
    /// Participants per call; 0 sends mixed audio.
    pub unmixed: usize,
    /// How calls send.
    pub mode: Mode,
    /// Audio to send (mono PCM16 at `rate_hz`); `None`: a 440 Hz tone.
    pub wav: Option<PathBuf>,
    /// The gateway echoes every frame (its pipeline has `echo`): loss and latency are measured.
    pub expect_echo: bool,
    /// The gateway's process on this machine, for its CPU and memory.
    pub gateway_pid: Option<u32>,
    /// The gateway's resident memory with no call, KiB, when known from before an earlier run
    /// (a series of runs against one gateway); else it is read before this run's first call.
    pub gateway_idle_rss_kib: Option<u64>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// `max` mode: unanswered frames a call may have in flight.
    pub max_in_flight: u64,
    /// How often resident memory is sampled; `None`: [`default_rss_every`] of `duration`.
    pub rss_every: Option<Duration>,
    /// The gateway's resident memory counts as flat when its spread after the warm-up is at
    /// most this fraction (`0.05`: 5%).
    pub rss_flat_within: f64,
}

impl BenchConfig {
    /// 10 real-time calls of mixed 16 kHz audio for 10 s, after a 2 s ramp and 1 s warm-up.
    pub fn new(url: impl Into<String>) -> Self {
        BenchConfig {
            url: url.into(),
            calls: 10,
            duration: Duration::from_secs(10),
            ramp: Duration::from_secs(2),
            warmup: Duration::from_secs(1),
            rate_hz: 16_000,
            unmixed: 0,
            mode: Mode::Realtime,
            wav: None,
            expect_echo: true,
            gateway_pid: None,
            gateway_idle_rss_kib: None,
            progress: false,
            max_in_flight: 64,
            rss_every: None,
            rss_flat_within: 0.05,
        }
    }

    fn validate(&self) -> Result<(), BenchError> {
        let bad = |reason: &str| Err(BenchError::Config(reason.to_owned()));
        if self.calls == 0 {
            return bad("--calls must be at least 1");
        }
        if ![16_000, 24_000].contains(&self.rate_hz) {
            return bad("--rate must be 16000 or 24000 (what ACS streams)");
        }
        if self.unmixed > 64 {
            return bad("--unmixed is at most 64 participants");
        }
        if self.duration.is_zero() {
            return bad("--duration must be more than 0");
        }
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return bad("--url must be ws:// or wss://");
        }
        if self
            .rss_every
            .is_some_and(|every| every < Duration::from_millis(100))
        {
            return bad("--rss-every must be at least 100 ms");
        }
        if !(self.rss_flat_within >= 0.0 && self.rss_flat_within.is_finite()) {
            return bad("--rss-flat-within must be a percentage of 0 or more");
        }
        Ok(())
    }
}

/// Where the run is; calls watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Send,
    /// Stop sending; keep reading the echoes.
    Drain,
    /// Close the socket.
    Close,
}

/// Counters of the whole run, shared by every call.
struct Shared {
    epoch: Instant,
    sent: AtomicU64,
    received: AtomicU64,
    connected: AtomicUsize,
    /// Calls that may still send: the drain waits for none, so that no frame goes out after
    /// it has counted the last echo (the close would then race that frame's echo).
    sending: AtomicUsize,
    measuring: AtomicBool,
}

/// A call's place in [`Shared::sending`], given up when its sending is over (or it failed).
struct Sending(Arc<Shared>);

impl Drop for Sending {
    fn drop(&mut self) {
        self.0.sending.fetch_sub(1, Ordering::Release);
    }
}

impl Shared {
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// One call's send times by stamp, and how far its echo has come.
struct CallState {
    sent_at: Vec<AtomicU64>,
    sent: AtomicU64,
    received: AtomicU64,
    /// Signalled for each echoed frame (`max` mode waits on it for room in the window).
    echoed: Notify,
}

/// What one call saw.
#[derive(Default)]
struct CallOutcome {
    connected: bool,
    sent: u64,
    received: u64,
    skipped: u64,
    duplicated: u64,
    unstamped: u64,
    stop_audio: u64,
    late_max_us: u64,
    latency: Option<Histogram<u32>>,
    gaps: Option<Histogram<u32>>,
    gaps_over_25ms: u64,
    close_code: Option<u16>,
    error: Option<String>,
}

/// A histogram of microseconds up to a minute, 1% resolution (about 13 KiB).
fn histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("constant bounds are valid")
}

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;
type Source = SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>;

/// Runs the load and reports.
pub async fn run(config: BenchConfig) -> Result<BenchReport, BenchError> {
    config.validate()?;
    let config = Arc::new(config);
    let frames = {
        let c = Arc::clone(&config);
        tokio::task::spawn_blocking(move || FrameSet::build(c.rate_hz, c.unmixed, c.wav.as_deref()))
            .await
            .map_err(|e| BenchError::Config(e.to_string()))??
    };
    let frames = Arc::new(frames);
    let me = std::process::id();
    let gateway_before = config
        .gateway_pid
        .and_then(|pid| procstat::sample(pid).ok());
    let me_before = procstat::sample(me).ok();
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        connected: AtomicUsize::new(0),
        sending: AtomicUsize::new(config.calls),
        measuring: AtomicBool::new(false),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Send);
    let start = shared.epoch;
    let rss = RssSampler::start(
        start,
        config
            .rss_every
            .unwrap_or_else(|| default_rss_every(config.duration)),
        config.gateway_pid,
    );
    let calls: Vec<_> = (0..config.calls)
        .map(|i| {
            let offset = config.ramp.mul_f64(i as f64 / config.calls as f64);
            tokio::spawn(call(
                i,
                start + offset,
                Arc::clone(&config),
                Arc::clone(&frames),
                Arc::clone(&shared),
                phase_rx.clone(),
            ))
        })
        .collect();

    let progress = Progress::new(&config);
    let window_start = start + config.ramp + config.warmup;
    progress
        .follow(&shared, &config, window_start, "warming up")
        .await;
    let gateway_start = config
        .gateway_pid
        .and_then(|pid| procstat::sample(pid).ok());
    let me_start = procstat::sample(me).ok();
    let (sent_start, received_start) = (
        shared.sent.load(Ordering::Relaxed),
        shared.received.load(Ordering::Relaxed),
    );
    shared.measuring.store(true, Ordering::Relaxed);
    let window_end = window_start + config.duration;
    progress
        .follow(&shared, &config, window_end, "measuring")
        .await;
    shared.measuring.store(false, Ordering::Relaxed);
    let window_secs = Instant::now().duration_since(window_start).as_secs_f64();
    let gateway_end = config
        .gateway_pid
        .and_then(|pid| procstat::sample(pid).ok());
    let me_end = procstat::sample(me).ok();
    let (sent_end, received_end) = (
        shared.sent.load(Ordering::Relaxed),
        shared.received.load(Ordering::Relaxed),
    );
    // The trend counts from a tenth into the window: calls connected, buffers filled.
    let rss = rss
        .finish(
            config.ramp + config.warmup + config.duration / 10,
            config.rss_flat_within,
        )
        .await;
    let _ = phase_tx.send(Phase::Drain);
    // Let every call stop sending, then the echoes of the last frames come back.
    let drain_until = Instant::now() + Duration::from_secs(2);
    while config.expect_echo
        && Instant::now() < drain_until
        && (shared.sending.load(Ordering::Acquire) > 0
            || shared.received.load(Ordering::Relaxed) < shared.sent.load(Ordering::Relaxed))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = phase_tx.send(Phase::Close);
    progress.finish();

    let mut outcomes = Vec::with_capacity(calls.len());
    for task in calls {
        outcomes.push(task.await.unwrap_or_else(|e| CallOutcome {
            error: Some(format!("call task failed: {e}")),
            ..CallOutcome::default()
        }));
    }
    let connected = outcomes.iter().filter(|o| o.connected).count();
    if connected == 0 {
        let first_error = outcomes.iter().find_map(|o| o.error.clone());
        return Err(BenchError::no_connection(&config.url, first_error));
    }

    let mut frames_count = FrameCounts::default();
    let mut latency = histogram();
    let mut gaps = histogram();
    let (mut gaps_over, mut late_max) = (0, 0);
    let mut close_codes = BTreeMap::new();
    let mut errors = ErrorSummary::default();
    for o in &outcomes {
        frames_count.sent += o.sent;
        frames_count.received += o.received;
        frames_count.duplicated += o.duplicated;
        frames_count.unstamped += o.unstamped;
        frames_count.stop_audio += o.stop_audio;
        frames_count.lost += if config.expect_echo {
            frames_count.lost_mid_call += o.skipped;
            o.sent.saturating_sub(o.received)
        } else {
            o.skipped
        };
        if let Some(h) = &o.latency {
            let _ = latency.add(h);
        }
        if let Some(h) = &o.gaps {
            let _ = gaps.add(h);
        }
        gaps_over += o.gaps_over_25ms;
        late_max = late_max.max(o.late_max_us);
        if let Some(code) = o.close_code {
            *close_codes.entry(code).or_default() += 1;
        }
        if let Some(e) = &o.error {
            errors.calls += 1;
            if errors.first.len() < 5 && !errors.first.contains(e) {
                errors.first.push(e.clone());
            }
        }
    }
    let window_sent = sent_end - sent_start;
    let usage = |pid, before: Option<ProcSample>, start, end| match (before, start, end) {
        (Some(b), Some(s), Some(e)) => Some(ProcessUsage::between(
            pid,
            b,
            s,
            e,
            window_secs,
            window_sent,
            connected,
        )),
        _ => None,
    };
    let gateway = config
        .gateway_pid
        .and_then(|pid| usage(pid, gateway_before, gateway_start, gateway_end));
    let generator = usage(me, me_before, me_start, me_end).unwrap_or(ProcessUsage {
        pid: me,
        cpu_secs: 0.0,
        cores: 0.0,
        micros_per_frame: 0.0,
        rss_kib: 0,
        rss_before_kib: 0,
        rss_per_call_kib: 0.0,
    });
    let sent_per_sec = window_sent as f64 / window_secs;
    Ok(BenchReport {
        url: config.url.clone(),
        mode: config.mode,
        calls: config.calls,
        connected,
        rate_hz: config.rate_hz,
        unmixed: config.unmixed,
        window_secs,
        frames: frames_count,
        rate: Rates {
            sent_per_sec,
            received_per_sec: (received_end - received_start) as f64 / window_secs,
            sent_per_gateway_core_sec: gateway
                .as_ref()
                .filter(|g| g.cores > 0.0)
                .map(|g| sent_per_sec / g.cores),
        },
        latency_us: Percentiles::of(&latency),
        outbound_gap_us: Percentiles::of(&gaps),
        outbound_gaps_over_25ms: gaps_over,
        generator_late_max_us: late_max,
        gateway,
        generator,
        close_codes,
        errors,
        rss,
    })
}

/// `url` with `callId=<call_id>` added to its query.
pub(crate) fn call_url(url: &str, call_id: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}callId={call_id}")
}

async fn call(
    index: usize,
    start_at: Instant,
    config: Arc<BenchConfig>,
    frames: Arc<FrameSet>,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) -> CallOutcome {
    let sending = Sending(Arc::clone(&shared));
    tokio::time::sleep_until(start_at).await;
    let url = call_url(&config.url, &format!("bench-{index}"));
    let socket = match connect_async_with_config(url.as_str(), None, true).await {
        Ok((socket, _)) => socket,
        Err(e) => {
            return CallOutcome {
                error: Some(format!("connect: {e}")),
                ..CallOutcome::default()
            };
        }
    };
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let state = Arc::new(CallState {
        sent_at: (0..STAMPS).map(|_| AtomicU64::new(0)).collect(),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        echoed: Notify::new(),
    });
    let (mut sink, stream) = socket.split();
    let reader = tokio::spawn(read(
        stream,
        Arc::clone(&state),
        Arc::clone(&shared),
        config.mode,
        config.unmixed == 0,
    ));
    let mut late_max_us = 0;
    let mut error = None;
    if let Err(e) = sink.send(Message::Text(frames.metadata.clone())).await {
        error = Some(format!("send: {e}"));
    } else {
        let sent = match config.mode {
            Mode::Realtime => send_realtime(&mut sink, &frames, &state, &shared, &mut phase).await,
            Mode::Max => {
                let window = config.expect_echo.then_some(config.max_in_flight.max(1));
                send_max(&mut sink, &frames, &state, &shared, &mut phase, window).await
            }
        };
        match sent {
            Ok(late) => late_max_us = late,
            Err(e) => error = Some(format!("send: {e}")),
        }
    }
    drop(sending);
    // Keep reading the echoes until the run closes, then close.
    while *phase.borrow() != Phase::Close {
        if phase.changed().await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
    let mut outcome = match tokio::time::timeout(Duration::from_secs(5), reader).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => CallOutcome {
            error: Some(format!("reader failed: {e}")),
            ..CallOutcome::default()
        },
        Err(_) => CallOutcome {
            error: Some("the gateway did not close the socket within 5 s".to_owned()),
            ..CallOutcome::default()
        },
    };
    outcome.connected = true;
    outcome.sent = state.sent.load(Ordering::Relaxed);
    outcome.late_max_us = late_max_us;
    if error.is_some() {
        outcome.error = error;
    }
    outcome
}

/// Sends one message, stamping its send time.
async fn send_one(
    sink: &mut Sink,
    message: &tokio_tungstenite::tungstenite::Utf8Bytes,
    stamp: usize,
    state: &CallState,
    shared: &Shared,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    state.sent_at[stamp].store(shared.nanos(Instant::now()), Ordering::Relaxed);
    sink.send(Message::Text(message.clone())).await?;
    state.sent.fetch_add(1, Ordering::Relaxed);
    shared.sent.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Every 20 ms, one frame per source, until the phase leaves `Send`; the worst lateness of
/// the clock, in microseconds.
async fn send_realtime(
    sink: &mut Sink,
    frames: &FrameSet,
    state: &CallState,
    shared: &Shared,
    phase: &mut watch::Receiver<Phase>,
) -> Result<u64, tokio_tungstenite::tungstenite::Error> {
    let mut clock = tokio::time::interval(Duration::from_millis(20));
    // Behind schedule, catch up: the platform's frames average 20 ms whatever happens.
    clock.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let (mut seq, mut late_max) = (0usize, 0u64);
    loop {
        let tick = tokio::select! {
            biased;
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() != Phase::Send {
                    return Ok(late_max);
                }
                continue;
            }
            tick = clock.tick() => tick,
        };
        let late = Instant::now().saturating_duration_since(tick);
        late_max = late_max.max(u64::try_from(late.as_micros()).unwrap_or(u64::MAX));
        for source in &frames.audio {
            let stamp = seq % STAMPS;
            send_one(sink, &source[stamp], stamp, state, shared).await?;
            seq += 1;
        }
    }
}

/// As fast as the socket takes them, with at most `window` unanswered frames when echoed.
async fn send_max(
    sink: &mut Sink,
    frames: &FrameSet,
    state: &CallState,
    shared: &Shared,
    phase: &mut watch::Receiver<Phase>,
    window: Option<u64>,
) -> Result<u64, tokio_tungstenite::tungstenite::Error> {
    let mut seq = 0usize;
    while *phase.borrow() == Phase::Send {
        if let Some(window) = window {
            loop {
                let echoed = state.echoed.notified();
                let in_flight = state.sent.load(Ordering::Relaxed)
                    - state
                        .received
                        .load(Ordering::Relaxed)
                        .min(state.sent.load(Ordering::Relaxed));
                if in_flight < window || *phase.borrow() != Phase::Send {
                    break;
                }
                tokio::select! {
                    () = echoed => {}
                    _ = phase.changed() => {}
                    // Echoes lost by the gateway must not stall the call for good.
                    () = tokio::time::sleep(Duration::from_millis(100)) => break,
                }
            }
            if *phase.borrow() != Phase::Send {
                break;
            }
        }
        let source = &frames.audio[seq % frames.audio.len()];
        let stamp = seq % STAMPS;
        send_one(sink, &source[stamp], stamp, state, shared).await?;
        seq += 1;
    }
    Ok(0)
}

/// Reads everything the gateway sends: times echoed frames, counts the rest.
async fn read(
    mut stream: Source,
    state: Arc<CallState>,
    shared: Arc<Shared>,
    mode: Mode,
    mixed: bool,
) -> CallOutcome {
    let mut outcome = CallOutcome::default();
    let mut latency = histogram();
    let mut gaps = histogram();
    let mut expected: u8 = 0;
    let mut last_arrival: Option<Instant> = None;
    let mut pool = bytes::BytesMut::new();
    while let Some(message) = stream.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(frame)) => {
                outcome.close_code = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => continue,
            Err(e) => {
                outcome.error = Some(format!("read: {e}"));
                break;
            }
        };
        let now = Instant::now();
        let data = match parse_outbound(&text) {
            Ok(OutboundMessage::AudioData { data_base64 }) => data_base64,
            Ok(OutboundMessage::StopAudio) => {
                outcome.stop_audio += 1;
                continue;
            }
            Err(_) => continue,
        };
        let Some(stamp) = read_stamp(&data, &mut pool) else {
            outcome.unstamped += 1;
            continue;
        };
        outcome.received += 1;
        state.received.fetch_add(1, Ordering::Relaxed);
        shared.received.fetch_add(1, Ordering::Relaxed);
        state.echoed.notify_one();
        match stamp.wrapping_sub(expected) {
            0 => expected = stamp.wrapping_add(1),
            ahead @ 1..128 => {
                outcome.skipped += u64::from(ahead);
                expected = stamp.wrapping_add(1);
            }
            _ => outcome.duplicated += 1,
        }
        if shared.measuring.load(Ordering::Relaxed) {
            let sent = state.sent_at[usize::from(stamp)].load(Ordering::Relaxed);
            let micros = shared.nanos(now).saturating_sub(sent) / 1_000;
            let _ = latency.record(micros.max(1));
            if mode == Mode::Realtime && mixed {
                if let Some(last) = last_arrival {
                    let gap =
                        u64::try_from(now.duration_since(last).as_micros()).unwrap_or(u64::MAX);
                    let _ = gaps.record(gap.max(1));
                    outcome.gaps_over_25ms += u64::from(gap > 25_000);
                }
            }
        }
        last_arrival = Some(now);
    }
    outcome.latency = Some(latency);
    outcome.gaps = Some(gaps);
    outcome
}

/// The progress bar (hidden unless asked for).
struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    fn new(config: &BenchConfig) -> Self {
        let bar = if config.progress {
            indicatif::ProgressBar::new_spinner()
        } else {
            indicatif::ProgressBar::hidden()
        };
        Progress { bar }
    }

    /// Updates the bar every 250 ms until `until`.
    async fn follow(&self, shared: &Shared, config: &BenchConfig, until: Instant, what: &str) {
        let mut last = (Instant::now(), shared.sent.load(Ordering::Relaxed));
        loop {
            let now = Instant::now();
            if now >= until {
                return;
            }
            tokio::time::sleep((until - now).min(Duration::from_millis(250))).await;
            let (now, sent) = (Instant::now(), shared.sent.load(Ordering::Relaxed));
            let rate = (sent - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
            last = (now, sent);
            let received = shared.received.load(Ordering::Relaxed);
            self.bar.set_message(format!(
                "{what}: {}/{} calls, {sent} frames sent, {received} echoed, {rate:.0}/s",
                shared.connected.load(Ordering::Relaxed),
                config.calls,
            ));
            self.bar.tick();
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_urls_keep_the_query() {
        assert_eq!(call_url("ws://h/ws", "bench-3"), "ws://h/ws?callId=bench-3");
        assert_eq!(
            call_url("ws://h/ws?x=1", "bench-0"),
            "ws://h/ws?x=1&callId=bench-0"
        );
    }

    #[test]
    fn settings_are_checked() {
        let mut config = BenchConfig::new("ws://127.0.0.1:1/ws");
        assert!(config.validate().is_ok());
        config.rate_hz = 8_000;
        assert!(config.validate().is_err());
        config.rate_hz = 16_000;
        config.calls = 0;
        assert!(config.validate().is_err());
        let config = BenchConfig::new("http://x");
        assert!(config.validate().is_err());
        let mut config = BenchConfig::new("ws://127.0.0.1:1/ws");
        config.rss_every = Some(Duration::from_millis(10));
        assert!(config.validate().is_err());
        config.rss_every = None;
        config.rss_flat_within = f64::NAN;
        assert!(config.validate().is_err());
    }
}
