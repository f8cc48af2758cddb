//! One call of the speech load: a WebSocket that sends AudioMetadata, then its stretch of the
//! tape at the platform's pace (a frame every 20 ms, catching up in a burst when late), then
//! hangs up with a close frame. What the gateway sends back is read and dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mediagate_protocol::Timestamp;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::connect_async_with_config;
use tokio_tungstenite::tungstenite::Message;

use super::clips::{CallPlan, Tape};

/// How long a hung-up call waits for the gateway's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Calls connected and calls hung up so far, for the progress line.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connected: AtomicUsize,
    pub(crate) hung_up: AtomicUsize,
}

/// What one call did.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallOutcome {
    /// The socket opened.
    pub(crate) connected: bool,
    /// Wall time its first frame was sent.
    pub(crate) first_frame_at: Option<Timestamp>,
    /// Frames sent.
    pub(crate) frames_sent: usize,
    /// How late its 20 ms clock ran at worst, µs.
    pub(crate) late_max_us: u64,
    /// The gateway's close code.
    pub(crate) close_code: Option<u16>,
    /// What went wrong.
    pub(crate) error: Option<String>,
}

/// Plays `plan` of `tape` as call `url`, from `start_at`.
pub(crate) async fn call(
    url: String,
    start_at: Instant,
    tape: Arc<Tape>,
    plan: CallPlan,
    counters: Arc<Counters>,
) -> CallOutcome {
    tokio::time::sleep_until(start_at).await;
    let mut outcome = CallOutcome::default();
    let socket = match connect_async_with_config(url.as_str(), None, true).await {
        Ok((socket, _)) => socket,
        Err(e) => {
            outcome.error = Some(format!("connect: {e}"));
            counters.hung_up.fetch_add(1, Ordering::Relaxed);
            return outcome;
        }
    };
    outcome.connected = true;
    counters.connected.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    // The gateway sends nothing a recording pipeline cares about; read until it closes.
    let mut reader = tokio::spawn(async move {
        while let Some(message) = stream.next().await {
            match message {
                Ok(Message::Close(frame)) => return Ok(frame.map(|f| u16::from(f.code))),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok(None)
    });
    let frames = tape
        .frames
        .get(plan.first_frame..plan.first_frame + plan.frames)
        .unwrap_or_default();
    let sent = async {
        sink.send(Message::Text(tape.metadata.clone())).await?;
        let mut clock = tokio::time::interval(Duration::from_millis(20));
        // Behind schedule, catch up: the platform's frames average 20 ms whatever happens.
        clock.set_missed_tick_behavior(MissedTickBehavior::Burst);
        for frame in frames {
            let tick = clock.tick().await;
            let late = Instant::now().saturating_duration_since(tick);
            outcome.late_max_us = outcome
                .late_max_us
                .max(u64::try_from(late.as_micros()).unwrap_or(u64::MAX));
            if outcome.first_frame_at.is_none() {
                outcome.first_frame_at = Some(Timestamp::now());
            }
            sink.send(Message::Text(frame.clone())).await?;
            outcome.frames_sent += 1;
        }
        sink.close().await
    }
    .await;
    if let Err(e) = sent {
        outcome.error = Some(format!("send: {e}"));
    }
    counters.hung_up.fetch_add(1, Ordering::Relaxed);
    let closed = tokio::time::timeout(CLOSE_WAIT, &mut reader).await;
    reader.abort();
    match closed {
        Ok(Ok(Ok(code))) => outcome.close_code = code,
        Ok(Ok(Err(e))) => {
            outcome.error.get_or_insert(e);
        }
        Ok(Err(e)) => {
            outcome.error.get_or_insert(format!("reader failed: {e}"));
        }
        Err(_) => {
            outcome.error.get_or_insert(format!(
                "the gateway did not close the socket within {} s",
                CLOSE_WAIT.as_secs()
            ));
        }
    }
    outcome
}

/// The progress line (hidden unless asked for).
pub(crate) struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    pub(crate) fn new(visible: bool) -> Self {
        let bar = if visible {
            indicatif::ProgressBar::new_spinner()
        } else {
            indicatif::ProgressBar::hidden()
        };
        Progress { bar }
    }

    /// Waits for a call's task, saying every half second how many calls stream.
    pub(crate) async fn wait(
        &self,
        mut task: tokio::task::JoinHandle<CallOutcome>,
        counters: &Counters,
        calls: usize,
    ) -> CallOutcome {
        loop {
            match tokio::time::timeout(Duration::from_millis(500), &mut task).await {
                Ok(done) => {
                    return done.unwrap_or_else(|e| CallOutcome {
                        error: Some(format!("call task failed: {e}")),
                        ..CallOutcome::default()
                    });
                }
                Err(_) => {
                    let connected = counters.connected.load(Ordering::Relaxed);
                    let hung_up = counters.hung_up.load(Ordering::Relaxed);
                    self.say(&format!(
                        "streaming speech: {connected}/{calls} calls connected, {hung_up} hung up"
                    ));
                }
            }
        }
    }

    /// Shows `what`.
    pub(crate) fn say(&self, what: &str) {
        self.bar.set_message(what.to_owned());
        self.bar.tick();
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
