//! The socket's write half, as its own task: outbound audio from the pipeline (paced frames,
//! echo, StopAudio) serialized in the configured dialect, and the control messages of the
//! connection (flush, close). Writes are fed without flushing while more are waiting and flushed
//! when the queue runs dry, so a burst costs one write syscall, not one per frame.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt};
use mediagate_pipeline::Outgoing;
use mediagate_protocol::{OutboundDialect, stop_audio_json, write_outbound_audio};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::metrics::Sent;

/// Outgoing messages that may wait for the socket (~5 s of 20 ms frames).
const OUTGOING_QUEUE: usize = 256;

enum Control {
    Flush,
    Close { code: u16, reason: String },
}

/// Handle on a connection's writer task.
pub(crate) struct SocketWriter {
    control: mpsc::Sender<Control>,
    outgoing: mpsc::Sender<Outgoing>,
    task: JoinHandle<()>,
}

impl SocketWriter {
    /// Starts the writer task over `sink`.
    /// What it writes is counted in `sent`.
    pub(crate) fn spawn<K>(sink: K, dialect: OutboundDialect, sent: Sent) -> Self
    where
        K: Sink<Message> + Unpin + Send + 'static,
    {
        let (control, control_rx) = mpsc::channel(4);
        let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
        let task = tokio::spawn(write_loop(sink, control_rx, outgoing_rx, dialect, sent));
        SocketWriter {
            control,
            outgoing,
            task,
        }
    }

    /// Where the pipeline sends audio and StopAudio.
    pub(crate) fn outgoing(&self) -> mpsc::Sender<Outgoing> {
        self.outgoing.clone()
    }

    /// Asks for a flush (sends the close reply tungstenite queued when a close frame was read).
    pub(crate) async fn flush(&self) {
        let _ = self.control.send(Control::Flush).await;
    }

    /// Sends a close frame after what is already queued; the writer stops after it.
    pub(crate) async fn close(&self, code: u16, reason: &str) {
        // A close reason is at most 123 bytes; cut on a char boundary.
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let close = Control::Close {
            code,
            reason: reason[..end].to_owned(),
        };
        let _ = self.control.send(close).await;
    }

    /// Lets the writer send what is queued and stop (after a close, it has already stopped).
    pub(crate) async fn finish(self) {
        drop(self.control);
        drop(self.outgoing);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(2), &mut task)
            .await
            .is_err()
        {
            // The peer is not reading: give up on it.
            task.abort();
        }
    }
}

async fn write_loop<K>(
    mut sink: K,
    control: mpsc::Receiver<Control>,
    outgoing: mpsc::Receiver<Outgoing>,
    dialect: OutboundDialect,
    sent: Sent,
) where
    K: Sink<Message> + Unpin,
{
    let mut tally = Tally::default();
    write(&mut sink, control, outgoing, dialect, &mut tally, &sent).await;
    tally.publish(&sent);
}

/// Writes until the connection is done or the socket fails; `tally` counts what was written,
/// published to `sent` every [`PUBLISH_EVERY`] frames.
async fn write<K>(
    sink: &mut K,
    mut control: mpsc::Receiver<Control>,
    mut outgoing: mpsc::Receiver<Outgoing>,
    dialect: OutboundDialect,
    tally: &mut Tally,
    sent: &Sent,
) where
    K: Sink<Message> + Unpin,
{
    let mut text = String::new();
    loop {
        tokio::select! {
            biased;
            cmd = control.recv() => match cmd {
                Some(Control::Flush) => {
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
                Some(Control::Close { code, reason }) => {
                    let frame = CloseFrame { code, reason: reason.into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return;
                }
                None => {
                    // The connection is done: send what is still queued, then stop.
                    while let Ok(out) = outgoing.try_recv() {
                        if sink.feed(message(out, dialect, &mut text, tally)).await.is_err() {
                            return;
                        }
                    }
                    let _ = sink.flush().await;
                    return;
                }
            },
            Some(out) = outgoing.recv() => {
                if sink.feed(message(out, dialect, &mut text, tally)).await.is_err() {
                    return;
                }
                if outgoing.is_empty() && sink.flush().await.is_err() {
                    return;
                }
                if tally.frames >= PUBLISH_EVERY {
                    tally.publish(sent);
                }
            }
        }
    }
}

/// Frames a writer counts before it adds them to the shared counters (and at its end).
const PUBLISH_EVERY: u64 = 50;

/// What a writer wrote since it last added to the shared counters: they are added to once a
/// second of frames, and when it stops, not per frame, so busy writers do not contend on them.
#[derive(Default)]
struct Tally {
    frames: u64,
    bytes: u64,
    stops: u64,
}

impl Tally {
    fn publish(&mut self, sent: &Sent) {
        let Tally {
            frames,
            bytes,
            stops,
        } = std::mem::take(self);
        if frames > 0 {
            sent.frames.inc_by(frames);
            sent.bytes.inc_by(bytes);
        }
        if stops > 0 {
            sent.stops.inc_by(stops);
        }
    }
}

fn message(
    out: Outgoing,
    dialect: OutboundDialect,
    text: &mut String,
    tally: &mut Tally,
) -> Message {
    match out {
        Outgoing::Audio(pcm) => {
            tally.frames += 1;
            tally.bytes += pcm.len() as u64;
            write_outbound_audio(&pcm, dialect, text);
            Message::Text(std::mem::take(text).into())
        }
        Outgoing::StopAudio => {
            tally.stops += 1;
            Message::Text(stop_audio_json(dialect).into())
        }
    }
}
