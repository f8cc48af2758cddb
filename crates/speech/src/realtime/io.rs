//! One call's socket to the service: connecting within the deadline with messages capped, the
//! writer task, and the socket task that feeds the [`Bridge`] what happens and carries out its
//! [`Command`]s on the call's [`Playback`] and the socket.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use mediagate_pipeline::PlayError;
use mediagate_pipeline::processor::Playback;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::bridge::{Bridge, Command, Input, Tally};
use super::events::ServiceEvent;
use super::settings::Endpoint;
use super::{BridgeConfig, Counters, MAX_MESSAGE_BYTES, SERVICE_FORMAT, Turn};

/// Most frames in one `input_audio_buffer.append` (200 ms) when the socket fell behind.
const FRAMES_PER_APPEND: u64 = 10;
/// Messages waiting for the socket's writer.
const OUT_QUEUE: usize = 64;
/// Longest wait for the closing handshake at the end of the call; then the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most bytes waiting in the socket's write buffer when the service reads slowly; the queue
/// before it ([`OUT_QUEUE`] messages) is bounded too, and what finds both full is dropped.
const MAX_WRITE_BUFFER_BYTES: usize = 4 * 1024 * 1024;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens the conversation's socket: TCP, TLS and WebSocket handshakes within `timeout`
/// (tungstenite caps the handshake's response at 64 KiB), messages from the service capped at
/// [`MAX_MESSAGE_BYTES`].
async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Socket, String> {
    let request = endpoint.request().map_err(|e| e.to_string())?;
    if endpoint.tls {
        // As the server does for its own TLS: ring, unless the process chose a provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES);
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no WebSocket handshake within {} s",
            timeout.as_secs_f64()
        )),
    }
}

/// One call's conversation: connects, then carries audio both ways until the call ends (the
/// processor drops its senders) or the service goes away.
pub(super) async fn run(
    config: Arc<BridgeConfig>,
    playback: Playback,
    mut audio: mpsc::Receiver<Bytes>,
    mut turns: mpsc::Receiver<Turn>,
    counters: Arc<Counters>,
) {
    let socket = match connect(&config.endpoint, config.connect_timeout).await {
        Ok(socket) => socket,
        Err(e) => {
            counters.error("cannot connect", e);
            return;
        }
    };
    counters.connected.store(true, Relaxed);
    tracing::info!("connected to the realtime service");
    let (sink, mut stream) = socket.split();
    let (out, out_rx) = mpsc::channel(OUT_QUEUE);
    let writer = tokio::spawn(write_messages(sink, out_rx, Arc::clone(&counters)));
    let mut conversation = Conversation {
        bridge: Bridge::new(config.turn_detection),
        playback,
        out,
        counters: Arc::clone(&counters),
        batch: Vec::new(),
    };
    conversation.send(config.session_update.clone());
    loop {
        tokio::select! {
            biased;
            turn = turns.recv() => match turn {
                Some(Turn::CallerStarted) => conversation.step(Input::CallerStarted),
                Some(Turn::CallerStopped) => conversation.step(Input::CallerStopped),
                Some(Turn::Cut(cut)) => conversation.step(Input::Cut(cut)),
                // The call ended: what is queued still goes up.
                None => {
                    while let Ok(frame) = audio.try_recv() {
                        conversation.send_audio(frame, &mut audio);
                    }
                    break;
                }
            },
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => conversation.on_service_message(&text),
                Some(Ok(Message::Close(frame))) => {
                    counters.closed_by_service.store(true, Relaxed);
                    let why = frame.map(|f| format!("{} {}", f.code, f.reason));
                    counters.error("closed by the service", why.unwrap_or_default());
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    counters.error("connection lost", e);
                    break;
                }
                None => {
                    counters.closed_by_service.store(true, Relaxed);
                    counters.error("connection lost", "the service went away");
                    break;
                }
            },
            frame = audio.recv() => match frame {
                Some(frame) => conversation.send_audio(frame, &mut audio),
                None => break,
            },
        }
    }
    // The writer sends what is queued and a close frame; the service's close ends the stream.
    // A service that reads nothing more, or never closes, gets CLOSE_TIMEOUT: then the writer
    // is stopped and the socket dropped, so nothing of the call outlives it for long.
    drop(conversation);
    let abort = writer.abort_handle();
    let closing = async {
        let _ = writer.await;
        while let Some(Ok(_)) = stream.next().await {}
    };
    if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
        abort.abort();
        tracing::debug!("the realtime service did not close in time");
    }
}

/// Sends the queued messages, then closes the socket.
async fn write_messages(
    mut sink: SplitSink<Socket, Message>,
    mut out: mpsc::Receiver<Message>,
    counters: Arc<Counters>,
) {
    while let Some(message) = out.recv().await {
        let sent = if out.is_empty() {
            sink.send(message).await
        } else {
            sink.feed(message).await
        };
        if let Err(e) = sent {
            if !matches!(
                e,
                tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed
            ) {
                counters.error("cannot send", e);
            }
            return;
        }
    }
    let _ = sink.close().await;
}

/// The socket task's state: the conversation's [`Bridge`], and what carries out its commands.
struct Conversation {
    bridge: Bridge,
    playback: Playback,
    out: mpsc::Sender<Message>,
    counters: Arc<Counters>,
    /// Caller audio of one append.
    batch: Vec<u8>,
}

impl Conversation {
    /// Hands `input` to the bridge, then does what it asks.
    fn step(&mut self, input: Input<'_>) {
        self.bridge.handle(input, self.playback.queued());
        while let Some(command) = self.bridge.poll() {
            self.execute(command);
        }
    }

    fn execute(&mut self, command: Command) {
        match command {
            Command::Send(event) => {
                self.send(event.to_json());
            }
            Command::SendAudio { message, frames } => {
                let counter = if self.send(message) {
                    &self.counters.frames_sent
                } else {
                    &self.counters.frames_dropped
                };
                Counters::add(counter, frames);
            }
            Command::Play(pcm) => {
                let played = self.playback.play_audio(&pcm, SERVICE_FORMAT);
                self.played(played);
            }
            Command::EndStream => {
                let played = self.playback.end_stream();
                self.played(played);
            }
            Command::StopAudio => {
                let cut = self.playback.stop_audio();
                // Before anything else: the bridge is waiting for it.
                self.bridge
                    .handle(Input::AudioStopped(cut), self.playback.queued());
            }
            Command::Count(tally) => self.count(tally),
            Command::Error { what, detail } => self.counters.error(what, detail),
        }
    }

    fn count(&self, tally: Tally) {
        let counters = &self.counters;
        match tally {
            Tally::AudioDelta { samples } => {
                Counters::add(&counters.audio_deltas, 1);
                Counters::add(&counters.samples_received, samples);
            }
            Tally::DeltaAfterBargeIn => Counters::add(&counters.deltas_after_barge_in, 1),
            Tally::Response => Counters::add(&counters.responses, 1),
            Tally::BargeIn => Counters::add(&counters.barge_ins, 1),
        }
    }

    /// Queues a message for the writer; `false` when the writer is behind (or gone).
    fn send(&self, text: String) -> bool {
        self.out.try_send(Message::text(text)).is_ok()
    }

    /// `frame` and whatever else is waiting (up to 200 ms) in one append.
    fn send_audio(&mut self, frame: Bytes, audio: &mut mpsc::Receiver<Bytes>) {
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        batch.extend_from_slice(&frame);
        let mut frames = 1;
        while frames < FRAMES_PER_APPEND {
            let Ok(frame) = audio.try_recv() else { break };
            batch.extend_from_slice(&frame);
            frames += 1;
        }
        self.step(Input::CallerAudio {
            pcm: &batch,
            frames,
        });
        self.batch = batch;
    }

    fn on_service_message(&mut self, text: &str) {
        match ServiceEvent::parse(text) {
            Ok(event) => self.step(Input::Service(event)),
            Err(e) => self.counters.error("unreadable event", e),
        }
    }

    fn played(&self, result: Result<(), PlayError>) {
        match result {
            Ok(()) => {}
            Err(PlayError::Full(_)) => {
                if self.counters.deltas_not_queued.fetch_add(1, Relaxed) == 0 {
                    tracing::warn!("outbound queue full: the bot's audio is dropped");
                }
            }
            Err(e) => self.counters.error("cannot play", e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use serde_json::json;

    use super::super::settings::tests::settings;
    use super::*;

    /// An endpoint on a loopback listener, and the listener.
    async fn local_endpoint() -> (Endpoint, tokio::net::TcpListener) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/v1/realtime", listener.local_addr().unwrap());
        let endpoint = Endpoint::new(&settings(json!({ "url": url })), None).unwrap();
        (endpoint, listener)
    }

    #[tokio::test]
    async fn a_service_that_never_completes_the_handshake_fails_at_the_deadline() {
        let (endpoint, listener) = local_endpoint().await;
        let silent = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
        });
        let started = std::time::Instant::now();
        let err = connect(&endpoint, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(err, "no WebSocket handshake within 0.3 s");
        assert!(started.elapsed() < Duration::from_secs(2));
        silent.abort();
    }

    #[tokio::test]
    async fn a_message_over_the_cap_is_refused_unread() {
        let (endpoint, listener) = local_endpoint().await;
        let service = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            // Stuck once the bridge stops reading: aborted below.
            let _ = ws
                .send(Message::text("x".repeat(MAX_MESSAGE_BYTES + 1)))
                .await;
        });
        let mut socket = connect(&endpoint, Duration::from_secs(5)).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
        let err = next.unwrap().unwrap().unwrap_err();
        assert!(matches!(err, tungstenite::Error::Capacity(_)), "{err}");
        drop(socket);
        service.abort();
    }
}
