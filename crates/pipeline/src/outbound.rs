//! Audio into the call: a bounded queue of samples in the call's format, and a pacer that sends
//! it as exactly-20 ms frames on one steady clock per call.
//!
//! The lessons this follows: pace on one clock, not per-chunk sleeps (gaps); buffer bursty
//! producers in the queue, not in sleeps; every frame exactly 20 ms, the last one padded with
//! silence (providers reject odd sizes); barge-in flushes the queue *and* sends StopAudio, at
//! once; what was played and what was cut are accounted, not guessed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mediagate_audio::{AudioFormat, FRAME_DURATION_MICROS};
use tokio::sync::{Notify, mpsc};

/// What the pacer (or an unpaced sender such as `echo`) hands to the socket writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// One frame of PCM16 LE in the call's format.
    Audio(Bytes),
    /// Tell the platform to drop the audio it still has queued.
    StopAudio,
}

/// The queue is full: the audio was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbound queue full: {queued_ms} ms queued, at most {max_ms} ms")]
pub struct QueueFull {
    /// Audio already queued.
    pub queued_ms: u64,
    /// The queue's bound.
    pub max_ms: u64,
}

/// What a barge-in cut, for the event bots need (lesson: "played" is not "sent").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct BargeIn {
    /// Audio sent into the call before the cut (we pace in real time, so sent ≈ played).
    pub played_ms: u64,
    /// Queued audio dropped by the cut.
    pub cut_ms: u64,
}

/// How the pacer kept time, for session reports: each frame's send against its tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct PacerReport {
    /// Frames the pacer sent.
    pub frames: u64,
    /// Frames sent more than 5 ms after their tick.
    pub late_frames: u64,
    /// The latest any frame left after its tick.
    pub max_late_micros: u64,
    /// How late each frame left after its tick, in microseconds, by the buckets of
    /// [`crate::PACING_LAG_MICROS`] (for the metrics; not in session.json).
    #[serde(skip)]
    pub lag_micros: crate::HistogramCounts,
}

struct PacerStats {
    frames: std::sync::atomic::AtomicU64,
    late_frames: std::sync::atomic::AtomicU64,
    max_late_micros: std::sync::atomic::AtomicU64,
    lag: crate::histogram::AtomicHistogram,
}

impl Default for PacerStats {
    fn default() -> Self {
        PacerStats {
            frames: Default::default(),
            late_frames: Default::default(),
            max_late_micros: Default::default(),
            lag: crate::histogram::AtomicHistogram::new(&crate::PACING_LAG_MICROS),
        }
    }
}

struct State {
    samples: VecDeque<i16>,
    max_samples: usize,
    played_samples: u64,
}

/// A call's outbound audio queue. Cheap to clone; every clone is the same queue.
#[derive(Clone)]
pub struct OutboundQueue {
    format: AudioFormat,
    state: Arc<Mutex<State>>,
    /// Wakes the pacer when audio arrives.
    filled: Arc<Notify>,
    /// Wakes `wait_for_playout` callers when the queue runs dry.
    drained: Arc<Notify>,
    /// Where StopAudio goes, straight past the queued frames.
    to_socket: mpsc::Sender<Outgoing>,
    /// How the pacer kept time.
    pacing: Arc<PacerStats>,
}

impl OutboundQueue {
    /// A queue of at most `max` audio in `format`, whose frames go to `to_socket`.
    pub fn new(format: AudioFormat, max: Duration, to_socket: mpsc::Sender<Outgoing>) -> Self {
        let max_samples = usize::try_from(
            format.samples_for_micros(i64::try_from(max.as_micros()).unwrap_or(i64::MAX)),
        )
        .unwrap_or(usize::MAX)
        .max(format.frame_samples());
        OutboundQueue {
            format,
            state: Arc::new(Mutex::new(State {
                samples: VecDeque::new(),
                max_samples,
                played_samples: 0,
            })),
            filled: Arc::new(Notify::new()),
            drained: Arc::new(Notify::new()),
            to_socket,
            pacing: Arc::new(PacerStats::default()),
        }
    }

    /// The call's format: what [`OutboundQueue::push`] takes.
    pub fn format(&self) -> AudioFormat {
        self.format
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues mono samples in the call's format (resample first if they are not). All or nothing.
    pub fn push(&self, samples: &[i16]) -> Result<(), QueueFull> {
        {
            let mut state = self.lock();
            if state.samples.len() + samples.len() > state.max_samples {
                return Err(QueueFull {
                    queued_ms: self.ms(state.samples.len() as u64),
                    max_ms: self.ms(state.max_samples as u64),
                });
            }
            state.samples.extend(samples);
        }
        self.filled.notify_one();
        Ok(())
    }

    /// How the pacer has kept time so far.
    pub fn pacer_report(&self) -> PacerReport {
        use std::sync::atomic::Ordering::Relaxed;
        PacerReport {
            frames: self.pacing.frames.load(Relaxed),
            late_frames: self.pacing.late_frames.load(Relaxed),
            max_late_micros: self.pacing.max_late_micros.load(Relaxed),
            lag_micros: self.pacing.lag.counts(),
        }
    }

    /// Audio waiting to be sent.
    pub fn queued_duration(&self) -> Duration {
        let queued = self.lock().samples.len() as u64;
        Duration::from_micros(self.format.micros_for_samples(queued).unsigned_abs())
    }

    /// Drops everything queued and returns how much that was; sends nothing (see
    /// [`OutboundQueue::barge_in`] for the platform side).
    pub fn clear(&self) -> BargeIn {
        let (cut, played) = {
            let mut state = self.lock();
            let cut = state.samples.len() as u64;
            state.samples.clear();
            (cut, state.played_samples)
        };
        self.drained.notify_waiters();
        BargeIn {
            played_ms: self.ms(played),
            cut_ms: self.ms(cut),
        }
    }

    /// Barge-in: flush our queue, then tell the platform to drop its own (StopAudio), in that
    /// order, at once. Never waits: if the socket writer is saturated, StopAudio is still queued
    /// ahead of any new audio because ours is now empty.
    pub fn barge_in(&self) -> BargeIn {
        let cut = self.clear();
        if self.to_socket.try_send(Outgoing::StopAudio).is_err() {
            tracing::warn!("socket writer full: StopAudio delayed");
            let to_socket = self.to_socket.clone();
            tokio::spawn(async move {
                let _ = to_socket.send(Outgoing::StopAudio).await;
            });
        }
        cut
    }

    /// Resolves when everything queued so far has been sent (or cleared).
    pub async fn wait_for_playout(&self) {
        loop {
            let drained = self.drained.notified();
            if self.lock().samples.is_empty() {
                return;
            }
            drained.await;
        }
    }

    /// Takes the next frame: exactly 20 ms, the tail padded with silence. `None` when empty.
    /// Frames are split off `pool`, so the pacer allocates once per ~50 frames, not per frame.
    fn next_frame(&self, pool: &mut BytesMut) -> Option<Bytes> {
        let frame_bytes = self.format.frame_bytes();
        let mut state = self.lock();
        if state.samples.is_empty() {
            return None;
        }
        let take = self.format.frame_samples().min(state.samples.len());
        if pool.capacity() < frame_bytes {
            pool.reserve(frame_bytes * 50);
        }
        for s in state.samples.drain(..take) {
            pool.extend_from_slice(&s.to_le_bytes());
        }
        pool.resize(frame_bytes, 0);
        state.played_samples += take as u64;
        let now_empty = state.samples.is_empty();
        drop(state);
        if now_empty {
            self.drained.notify_waiters();
        }
        Some(pool.split_to(frame_bytes).freeze())
    }

    fn count_lateness(&self, tick: tokio::time::Instant) {
        use std::sync::atomic::Ordering::Relaxed;
        let late = u64::try_from(tick.elapsed().as_micros()).unwrap_or(u64::MAX);
        // Only the pacer counts: plain stores, not locked read-modify-writes.
        crate::histogram::add(&self.pacing.frames, 1);
        crate::histogram::raise(&self.pacing.max_late_micros, late);
        self.pacing.lag.observe(late);
        if late > 5_000 {
            self.pacing.late_frames.fetch_add(1, Relaxed);
        }
    }

    fn ms(&self, samples: u64) -> u64 {
        self.format.micros_for_samples(samples).unsigned_abs() / 1_000
    }

    /// Sends queued audio to the socket writer, one frame per 20 ms tick of one steady clock.
    /// Parks when the queue is empty (no idle ticking) and restarts the clock when audio
    /// arrives. Ends when the socket writer is gone. One per queue: it alone writes the
    /// [`PacerReport`]'s counts.
    pub async fn run_pacer(self) {
        let period = Duration::from_micros(FRAME_DURATION_MICROS.unsigned_abs());
        let mut pool = BytesMut::new();
        loop {
            // Idle: wait for audio.
            loop {
                let filled = self.filled.notified();
                if !self.lock().samples.is_empty() {
                    break;
                }
                if self.to_socket.is_closed() {
                    return;
                }
                filled.await;
            }
            // Playing: the first frame goes now, the rest on the clock.
            let mut clock = tokio::time::interval(period);
            clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            loop {
                let tick = clock.tick().await;
                let Some(frame) = self.next_frame(&mut pool) else {
                    break;
                };
                self.count_lateness(tick);
                if self.to_socket.send(Outgoing::Audio(frame)).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: AudioFormat = AudioFormat::mono(16_000);

    fn ramp(n: usize) -> Vec<i16> {
        (0..n).map(|i| (i % 30_000) as i16).collect()
    }

    fn samples_of(frame: &Bytes) -> Vec<i16> {
        frame
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn frames_are_exactly_20ms_on_a_steady_clock_and_the_tail_is_padded() {
        let (tx, mut rx) = mpsc::channel(8);
        let queue = OutboundQueue::new(FORMAT, Duration::from_secs(10), tx);
        // A bursty producer: 1.01 s of audio at once (not a whole number of frames).
        let input = ramp(16_160);
        queue.push(&input).unwrap();
        tokio::spawn(queue.clone().run_pacer());
        let start = tokio::time::Instant::now();
        let mut out = Vec::new();
        for i in 0..51 {
            let Some(Outgoing::Audio(frame)) = rx.recv().await else {
                panic!("expected audio");
            };
            assert_eq!(frame.len(), 640, "every frame exactly 20 ms");
            // Virtual time: frame i leaves exactly i × 20 ms after the first.
            assert_eq!(start.elapsed(), Duration::from_millis(20 * i));
            out.extend(samples_of(&frame));
        }
        assert_eq!(&out[..input.len()], &input[..]);
        assert!(out[input.len()..].iter().all(|&s| s == 0));
        queue.wait_for_playout().await;
        assert_eq!(queue.queued_duration(), Duration::ZERO);
        let report = queue.pacer_report();
        assert_eq!(
            (report.frames, report.late_frames, report.max_late_micros),
            (51, 0, 0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn barge_in_flushes_the_queue_and_sends_stop_audio_within_a_frame() {
        let (tx, mut rx) = mpsc::channel(8);
        let queue = OutboundQueue::new(FORMAT, Duration::from_secs(10), tx);
        queue.push(&ramp(16_000)).unwrap();
        tokio::spawn(queue.clone().run_pacer());
        for _ in 0..5 {
            assert!(matches!(rx.recv().await, Some(Outgoing::Audio(_))));
        }
        let cut = queue.barge_in();
        assert_eq!(cut.played_ms, 100);
        assert_eq!(cut.cut_ms, 900);
        // At most the frame already handed to the writer, then StopAudio, then nothing.
        let mut after = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            after.push(m);
        }
        let stop = after
            .iter()
            .position(|m| *m == Outgoing::StopAudio)
            .unwrap();
        assert!(stop <= 1, "{after:?}");
        assert_eq!(after.len(), stop + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_is_bounded_and_the_pacer_restarts_after_idle() {
        let (tx, mut rx) = mpsc::channel(8);
        let queue = OutboundQueue::new(FORMAT, Duration::from_millis(100), tx);
        assert!(queue.push(&ramp(1_600)).is_ok());
        assert_eq!(
            queue.push(&ramp(1)),
            Err(QueueFull {
                queued_ms: 100,
                max_ms: 100
            })
        );
        tokio::spawn(queue.clone().run_pacer());
        for _ in 0..5 {
            rx.recv().await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(rx.try_recv().is_err(), "an idle pacer sends nothing");
        queue.push(&ramp(320)).unwrap();
        let start = tokio::time::Instant::now();
        assert!(matches!(rx.recv().await, Some(Outgoing::Audio(_))));
        assert!(
            start.elapsed() < Duration::from_millis(1),
            "first frame goes at once"
        );
    }
}
