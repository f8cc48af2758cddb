//! `forward`: a call's audio, as it arrives, to another WebSocket (a speech service, an
//! archive, a monitor): first a text message saying what follows
//! (`{"call_id": …, "sample_rate_hz": …, "channels": 1}`), then each frame's PCM16 LE samples
//! as one binary message. Written against mediagate's extension API alone.
//!
//! Nothing in the call waits for the other end: the processor hands frames to a task of its
//! own through a bounded queue, and a frame that finds the queue full (the other end is slow
//! or gone) is dropped and counted in the report.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::SinkExt;
use mediagate_pipeline::{
    AudioFrame, CallInfo, Context, Event, Input, Processor, ProcessorError, Registry,
};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// `[pipeline.settings.forward]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSettings {
    /// Where to: `ws://` or `wss://`. Required.
    pub url: String,
    /// Frames that may wait for the socket (20 ms each): 1 to 3000. Default 250 (5 s).
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_queue() -> usize {
    250
}

/// What the forwarding task counts.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// Forwards one call's frames to `url`.
pub struct Forward {
    settings: ForwardSettings,
    frames: Option<mpsc::Sender<Bytes>>,
    counters: Arc<Counters>,
}

impl Forward {
    /// A forwarder with checked settings; it connects when the call starts.
    pub fn new(settings: ForwardSettings) -> Self {
        Forward {
            settings,
            frames: None,
            counters: Arc::default(),
        }
    }
}

/// Connects, says what follows, then sends every frame it is handed until the call ends.
async fn run(
    url: String,
    header: String,
    mut frames: mpsc::Receiver<Bytes>,
    counters: Arc<Counters>,
) {
    let mut socket = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok((socket, _)) => socket,
        Err(e) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%url, error = %e, "forward: cannot connect; the call's audio is not forwarded");
            return;
        }
    };
    if socket.send(Message::text(header)).await.is_err() {
        counters.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    while let Some(pcm) = frames.recv().await {
        if socket.send(Message::binary(pcm)).await.is_err() {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        counters.sent.fetch_add(1, Ordering::Relaxed);
    }
    let _ = socket.close(None).await;
}

impl Processor for Forward {
    fn input(&self) -> Input {
        // Cheap and never waiting: a try_send per frame.
        Input::default()
    }

    fn on_event(&mut self, event: &Event, ctx: &mut Context) -> Result<(), ProcessorError> {
        match event {
            Event::CallStarted(call) => {
                let (tx, rx) = mpsc::channel(self.settings.queue);
                let header = serde_json::json!({
                    "call_id": &*call.call_id,
                    "sample_rate_hz": ctx.call().format.sample_rate_hz(),
                    "channels": 1,
                })
                .to_string();
                tokio::spawn(run(
                    self.settings.url.clone(),
                    header,
                    rx,
                    Arc::clone(&self.counters),
                ));
                self.frames = Some(tx);
            }
            // Dropping the sender ends the task once it has sent what is queued.
            Event::CallEnded => self.frames = None,
            _ => {}
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: &AudioFrame, _ctx: &mut Context) -> Result<(), ProcessorError> {
        if let Some(frames) = &self.frames {
            // A refcount clone of the samples, never a copy.
            if frames.try_send(frame.pcm.clone()).is_err() {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn report(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "frames_sent": self.counters.sent.load(Ordering::Relaxed),
            "frames_dropped": self.counters.dropped.load(Ordering::Relaxed),
            "failed": self.counters.failed.load(Ordering::Relaxed) > 0,
        }))
    }
}

/// Adds `forward` to a registry.
pub fn register(registry: &mut Registry) {
    registry.register("forward", |settings| {
        let checked: ForwardSettings = settings.parse()?;
        if !(checked.url.starts_with("ws://") || checked.url.starts_with("wss://")) {
            return Err(settings.invalid("url must be ws:// or wss://"));
        }
        if !(1..=3_000).contains(&checked.queue) {
            return Err(settings.invalid("queue must be 1 to 3000"));
        }
        Ok(move |_: &CallInfo| Box::new(Forward::new(checked.clone())) as Box<dyn Processor>)
    });
}
