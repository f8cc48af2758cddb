//! One call's conversation with the service: the socket (connected within its deadline,
//! messages capped), the task that carries audio both ways, and the state of the answer being
//! played, cut and truncated.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use mediagate_pipeline::processor::Playback;
use mediagate_pipeline::{BargeIn, PlayError};
use mediagate_protocol::decode_pcm;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[cfg(doc)]
use mediagate_pipeline::Event;

use super::events::{AudioDelta, ClientEvent, ServiceEvent, append_audio};
use super::settings::{Endpoint, TurnDetection};
use super::{
    BridgeConfig, CLOSE_TIMEOUT, Counters, FRAMES_PER_APPEND, MAX_MESSAGE_BYTES,
    MAX_WRITE_BUFFER_BYTES, OUT_QUEUE, OWN_CUTS, SERVICE_FORMAT, Turn,
};

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
    let mut bridge = Bridge {
        playback,
        out,
        counters: Arc::clone(&counters),
        turn_detection: config.turn_detection,
        answer: None,
        interrupted: None,
        own_cuts: Vec::new(),
        pool: BytesMut::new(),
        batch: Vec::new(),
    };
    bridge.send(config.session_update.clone());
    loop {
        tokio::select! {
            biased;
            turn = turns.recv() => match turn {
                Some(Turn::CallerStarted) => bridge.barge_in(),
                Some(Turn::CallerStopped) => bridge.end_turn(),
                Some(Turn::Cut(cut)) => bridge.cut_elsewhere(cut),
                // The call ended: what is queued still goes up.
                None => {
                    while let Ok(frame) = audio.try_recv() {
                        bridge.send_audio(frame, &mut audio);
                    }
                    break;
                }
            },
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => bridge.on_service_event(&text),
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
                Some(frame) => bridge.send_audio(frame, &mut audio),
                None => break,
            },
        }
    }
    // The writer sends what is queued and a close frame; the service's close ends the stream.
    // A service that reads nothing more, or never closes, gets CLOSE_TIMEOUT: then the writer
    // is stopped and the socket dropped, so nothing of the call outlives it for long.
    drop(bridge);
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

/// The answer being played (or last played): what a barge-in must cut and truncate.
#[derive(Debug)]
struct Answer {
    response_id: Option<String>,
    item_id: Option<String>,
    /// Samples of `item_id` received so far.
    samples: u64,
    /// The service is still sending it.
    streaming: bool,
}

/// The socket task's state: the call's playback and the conversation's.
struct Bridge {
    playback: Playback,
    out: mpsc::Sender<Message>,
    counters: Arc<Counters>,
    turn_detection: TurnDetection,
    answer: Option<Answer>,
    /// After a barge-in: the cut response (its id, if known), whose late deltas are dropped
    /// until another response starts.
    interrupted: Option<Option<String>>,
    /// The bridge's own barge-ins whose [`Event::BargeIn`] has not come back yet.
    own_cuts: Vec<BargeIn>,
    /// Decoded deltas.
    pool: BytesMut,
    /// Caller audio of one append.
    batch: Vec<u8>,
}

impl Bridge {
    /// Queues a message for the writer; `false` when the writer is behind (or gone).
    fn send(&self, text: String) -> bool {
        self.out.try_send(Message::text(text)).is_ok()
    }

    /// `frame` and whatever else is waiting (up to 200 ms) in one append.
    fn send_audio(&mut self, frame: Bytes, audio: &mut mpsc::Receiver<Bytes>) {
        self.batch.clear();
        self.batch.extend_from_slice(&frame);
        let mut frames = 1;
        while frames < FRAMES_PER_APPEND {
            let Ok(frame) = audio.try_recv() else { break };
            self.batch.extend_from_slice(&frame);
            frames += 1;
        }
        let counter = if self.send(append_audio(&self.batch)) {
            &self.counters.frames_sent
        } else {
            &self.counters.frames_dropped
        };
        Counters::add(counter, frames);
    }

    fn on_service_event(&mut self, text: &str) {
        let event = match ServiceEvent::parse(text) {
            Ok(event) => event,
            Err(e) => {
                self.counters.error("unreadable event", e);
                return;
            }
        };
        match event {
            ServiceEvent::AudioDelta(delta) => self.audio_delta(delta),
            ServiceEvent::AudioDone => self.end_stream(),
            ServiceEvent::ResponseCreated { response_id } => {
                self.interrupted = None;
                self.answer = Some(Answer {
                    response_id,
                    item_id: None,
                    samples: 0,
                    streaming: true,
                });
            }
            ServiceEvent::ResponseDone { status } => {
                self.end_stream();
                Counters::add(&self.counters.responses, 1);
                if let Some(answer) = &mut self.answer {
                    answer.streaming = false;
                }
                tracing::debug!(status = status.as_deref().unwrap_or("?"), "response done");
            }
            ServiceEvent::SpeechStarted if self.turn_detection != TurnDetection::GatewayVad => {
                self.barge_in();
            }
            ServiceEvent::Error { message } => self.counters.error("error event", message),
            ServiceEvent::SpeechStarted | ServiceEvent::Other => {}
        }
    }

    fn audio_delta(&mut self, event: AudioDelta<'_>) {
        if let Some(cut) = &self.interrupted {
            if event.response_id.is_none() || event.response_id == *cut {
                Counters::add(&self.counters.deltas_after_barge_in, 1);
                return;
            }
            self.interrupted = None;
        }
        let pcm = match decode_pcm(
            &event.delta,
            SERVICE_FORMAT.bytes_per_sample(),
            &mut self.pool,
        ) {
            Ok(pcm) => pcm,
            Err(e) => {
                self.counters.error("undecodable audio delta", e);
                return;
            }
        };
        let samples = (pcm.len() / SERVICE_FORMAT.bytes_per_sample()) as u64;
        Counters::add(&self.counters.audio_deltas, 1);
        Counters::add(&self.counters.samples_received, samples);
        let answer = self.answer.get_or_insert_with(|| Answer {
            response_id: event.response_id.clone(),
            item_id: None,
            samples: 0,
            streaming: true,
        });
        if answer.item_id != event.item_id {
            answer.item_id = event.item_id;
            answer.samples = 0;
        }
        answer.samples += samples;
        let played = self.playback.play_audio(&pcm, SERVICE_FORMAT);
        self.played(played);
    }

    fn end_stream(&mut self) {
        let played = self.playback.end_stream();
        self.played(played);
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

    /// The caller started talking: if an answer is audible (or still coming), cut it and tell
    /// the platform (StopAudio).
    fn barge_in(&mut self) {
        let Some(answer) = self.answer.take() else {
            return;
        };
        if !answer.streaming && self.playback.queued().is_zero() {
            // Played to the end, or cut by another processor already (its cut is on its way).
            self.answer = Some(answer);
            return;
        }
        let cut = self.playback.stop_audio();
        self.remember(cut);
        self.interrupt(answer, cut.cut_ms);
    }

    /// One of the bridge's own cuts, whose [`Event::BargeIn`] will come back.
    fn remember(&mut self, cut: BargeIn) {
        if self.own_cuts.len() == OWN_CUTS {
            self.own_cuts.remove(0);
        }
        self.own_cuts.push(cut);
    }

    /// Another processor cut the call's outbound audio: what is left of the answer must not
    /// play on. (The bridge's own cuts come back here too, and are skipped.)
    fn cut_elsewhere(&mut self, cut: BargeIn) {
        if let Some(own) = self.own_cuts.iter().position(|c| *c == cut) {
            self.own_cuts.remove(own);
            return;
        }
        let Some(answer) = self.answer.take() else {
            return;
        };
        if !answer.streaming && cut.cut_ms == 0 {
            self.answer = Some(answer); // Nothing of it was left to cut.
            return;
        }
        // What the bridge queued since the cut (before it heard of it) goes too.
        let mut cut_ms = cut.cut_ms;
        if !self.playback.queued().is_zero() {
            let again = self.playback.stop_audio();
            self.remember(again);
            cut_ms += again.cut_ms;
        }
        self.interrupt(answer, cut_ms);
    }

    /// `answer` was cut with `cut_ms` of it unplayed: drop the rest of it, and tell the model
    /// how much was heard (and, when the bridge owns the turns, to stop).
    fn interrupt(&mut self, answer: Answer, cut_ms: u64) {
        Counters::add(&self.counters.barge_ins, 1);
        tracing::debug!(cut_ms, "barge-in");
        if answer.streaming {
            if self.turn_detection == TurnDetection::GatewayVad {
                self.send(ClientEvent::CancelResponse.to_json());
            }
            self.interrupted = Some(answer.response_id);
        }
        if let Some(item_id) = answer.item_id {
            let received_ms = answer.samples * 1000 / u64::from(SERVICE_FORMAT.sample_rate_hz());
            let heard_ms = received_ms.saturating_sub(cut_ms);
            let truncate = ClientEvent::TruncateItem {
                item_id,
                content_index: 0,
                audio_end_ms: heard_ms,
            };
            self.send(truncate.to_json());
        }
    }

    /// [`TurnDetection::GatewayVad`]: the caller stopped talking; ask for the answer.
    fn end_turn(&mut self) {
        self.send(ClientEvent::CommitAudio.to_json());
        self.send(ClientEvent::CreateResponse.to_json());
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
