//! One call's socket to the service: connecting within the deadline with messages capped, the
//! writer task, and the socket task that feeds the [`Bridge`] what happens and carries out its
//! [`Command`]s on the call's [`Playback`] and the socket.
//!
//! The writer has two queues. The caller's audio may be dropped when the service reads slowly
//! (counted in `frames_dropped`): the conversation goes on without it. Control messages may
//! not: a lost `response.create` leaves the caller unanswered, a lost `truncate` leaves the
//! model remembering words the caller never heard. They have their own small queue, which the
//! writer serves first; only `input_audio_buffer.commit` (and what follows it) waits for the
//! audio queued before it, which it commits. A service that leaves even that queue full has
//! read nothing for many turns: the conversation ends (`last_error` says why), rather than go
//! on with the two sides disagreeing.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, StreamExt};
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
/// Appends waiting for the socket's writer (up to 12.8 s of audio).
const AUDIO_OUT_QUEUE: usize = 64;
/// Control messages waiting for the socket's writer: a handful per turn, sent ahead of the
/// audio. Full only when the service has read nothing for many turns.
const CONTROL_OUT_QUEUE: usize = 32;
/// Longest wait for the closing handshake at the end of the call; then the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most bytes waiting in the socket's write buffer when the service reads slowly; the queue
/// before it ([`AUDIO_OUT_QUEUE`] appends) is bounded too, and audio that finds both full is
/// dropped.
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
    let (outbox, queues) = Outbox::new();
    let writer = tokio::spawn(write_messages(sink, queues, Arc::clone(&counters)));
    let mut conversation = Conversation {
        bridge: Bridge::new(config.turn_detection),
        playback,
        outbox,
        stalled: false,
        counters: Arc::clone(&counters),
        batch: Vec::new(),
    };
    conversation.send_control(config.session_update.clone(), false);
    while !conversation.stalled {
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
            message = stream.next() => if !conversation.on_socket(message) {
                break;
            },
            frame = audio.recv() => match frame {
                Some(frame) => conversation.send_audio(frame, &mut audio),
                None => break,
            },
        }
    }
    drop(conversation);
    close(writer, stream).await;
}

/// The writer sends what is queued and a close frame; the service's close ends the `stream`.
/// A service that reads nothing more, or never closes, gets [`CLOSE_TIMEOUT`]: then the writer
/// is stopped and the socket dropped, so nothing of the call outlives it for long.
async fn close<S>(writer: tokio::task::JoinHandle<()>, mut stream: S)
where
    S: futures_util::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
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

/// The writer's queues, as the socket task fills them.
struct Outbox {
    control: mpsc::Sender<Control>,
    audio: mpsc::Sender<Message>,
    /// Appends queued so far.
    audio_queued: u64,
}

/// The writer's queues, as it takes from them: control first, unless it waits for audio.
struct Queues {
    control: mpsc::Receiver<Control>,
    audio: mpsc::Receiver<Message>,
    /// Appends taken so far.
    audio_written: u64,
    /// The next control message, if it waits for appends queued before it.
    held: Option<Control>,
    control_open: bool,
    audio_open: bool,
}

/// A control message, and how many appends must be written before it.
#[derive(Debug)]
struct Control {
    message: Message,
    after_audio: u64,
}

/// The control queue is full: the service has read nothing for many turns.
#[derive(Debug)]
struct ControlQueueFull;

impl Outbox {
    fn new() -> (Outbox, Queues) {
        let (control, control_rx) = mpsc::channel(CONTROL_OUT_QUEUE);
        let (audio, audio_rx) = mpsc::channel(AUDIO_OUT_QUEUE);
        let outbox = Outbox {
            control,
            audio,
            audio_queued: 0,
        };
        let queues = Queues {
            control: control_rx,
            audio: audio_rx,
            audio_written: 0,
            held: None,
            control_open: true,
            audio_open: true,
        };
        (outbox, queues)
    }

    /// Queues an append; `false` when the writer is behind (or gone): then it is dropped.
    fn audio(&mut self, text: String) -> bool {
        let queued = self.audio.try_send(Message::text(text)).is_ok();
        self.audio_queued += u64::from(queued);
        queued
    }

    /// Queues a control message: ahead of the queued audio, unless it `follows_audio`.
    fn control(&mut self, text: String, follows_audio: bool) -> Result<(), ControlQueueFull> {
        let control = Control {
            message: Message::text(text),
            after_audio: if follows_audio { self.audio_queued } else { 0 },
        };
        match self.control.try_send(control) {
            Ok(()) => Ok(()),
            // The writer is gone: the socket task is about to hear why.
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(ControlQueueFull),
        }
    }
}

impl Queues {
    /// The next message to write; `None` once both queues are closed and empty.
    async fn next(&mut self) -> Option<Message> {
        loop {
            match self.held.take() {
                Some(control) if control.after_audio <= self.audio_written || !self.audio_open => {
                    return Some(control.message);
                }
                waiting => self.held = waiting,
            }
            tokio::select! {
                biased;
                control = self.control.recv(), if self.control_open && self.held.is_none() => {
                    match control {
                        Some(control) => self.held = Some(control),
                        None => self.control_open = false,
                    }
                }
                audio = self.audio.recv(), if self.audio_open => match audio {
                    Some(message) => {
                        self.audio_written += 1;
                        return Some(message);
                    }
                    None => self.audio_open = false,
                },
                else => return None,
            }
        }
    }

    /// Whether another message is waiting already (then the last one need not be flushed).
    fn has_more(&self) -> bool {
        self.held.is_some() || !self.control.is_empty() || !self.audio.is_empty()
    }
}

/// Sends the queued messages, control first, then closes the socket. Generic over the sink:
/// the socket's, or a test's.
async fn write_messages<S>(mut sink: S, mut queues: Queues, counters: Arc<Counters>)
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    while let Some(message) = queues.next().await {
        let sent = if queues.has_more() {
            sink.feed(message).await
        } else {
            sink.send(message).await
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
    outbox: Outbox,
    /// A control message found its queue full: the conversation ends.
    stalled: bool,
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
            Command::Send(event) => self.send_control(event.to_json(), event.follows_audio()),
            Command::SendAudio { message, frames } => {
                let counter = if self.outbox.audio(message) {
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

    /// Queues a control message for the writer; if it cannot, the conversation ends.
    fn send_control(&mut self, text: String, follows_audio: bool) {
        if self.outbox.control(text, follows_audio).is_err() && !self.stalled {
            self.stalled = true;
            self.counters.error(
                "control queue full",
                "the service has stopped reading; conversation ended",
            );
        }
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

    /// What the socket's reader got; `false` when the conversation is over.
    fn on_socket(&mut self, message: Option<Result<Message, tungstenite::Error>>) -> bool {
        let counters = &self.counters;
        match message {
            Some(Ok(Message::Text(text))) => match ServiceEvent::parse(&text) {
                Ok(event) => self.step(Input::Service(event)),
                Err(e) => counters.error("unreadable event", e),
            },
            Some(Ok(Message::Close(frame))) => {
                counters.closed_by_service.store(true, Relaxed);
                let why = frame.map(|f| format!("{} {}", f.code, f.reason));
                counters.error("closed by the service", why.unwrap_or_default());
                return false;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                counters.error("connection lost", e);
                return false;
            }
            None => {
                counters.closed_by_service.store(true, Relaxed);
                counters.error("connection lost", "the service went away");
                return false;
            }
        }
        true
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

    use super::super::events::ClientEvent;
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

    /// What a service that read `text` saw: `append <n>` for the test's appends, else the type.
    fn label(text: &str) -> String {
        const APPEND: &str = r#"{"type":"input_audio_buffer.append","audio":""#;
        match text.strip_prefix(APPEND) {
            Some(audio) => format!("append {}", &audio[..8]),
            None => {
                let event: serde_json::Value = serde_json::from_str(text).unwrap();
                event["type"].as_str().unwrap().to_owned()
            }
        }
    }

    #[tokio::test]
    async fn control_messages_overtake_the_audio_of_a_service_that_stopped_reading() {
        let (endpoint, listener) = local_endpoint().await;
        let (read, reading) = tokio::sync::oneshot::channel::<()>();
        let service = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            reading.await.unwrap();
            let mut heard = Vec::new();
            while let Some(Ok(message)) = ws.next().await {
                match message {
                    Message::Text(text) => heard.push(label(&text)),
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            heard
        });
        let (sink, _stream) = connect(&endpoint, Duration::from_secs(5))
            .await
            .unwrap()
            .split();
        let counters = Arc::new(Counters::default());
        let (mut outbox, queues) = Outbox::new();
        let writer = tokio::spawn(write_messages(sink, queues, Arc::clone(&counters)));

        // Appends of 256 KiB until the socket's buffers, the writer's and its queue are full.
        let audio = "A".repeat(256 * 1024);
        let (mut queued, mut refused) = (0u64, 0);
        while refused < 3 {
            let append =
                format!(r#"{{"type":"input_audio_buffer.append","audio":"{queued:08}{audio}"}}"#);
            if outbox.audio(append) {
                queued += 1;
                refused = 0;
            } else {
                refused += 1;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            assert!(queued < 1_000, "the writer never fell behind");
        }
        // A barge-in, then the end of a turn: none of it is refused.
        let truncate = ClientEvent::TruncateItem {
            item_id: "item_1".into(),
            content_index: 0,
            audio_end_ms: 1_000,
        };
        for event in [
            ClientEvent::CancelResponse,
            truncate,
            ClientEvent::CommitAudio,
            ClientEvent::CreateResponse,
        ] {
            outbox
                .control(event.to_json(), event.follows_audio())
                .unwrap();
        }
        assert!(
            !outbox.audio(String::from("{}")),
            "the audio queue has room"
        );
        read.send(()).unwrap();
        drop(outbox);
        let heard = tokio::time::timeout(Duration::from_secs(30), service)
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .unwrap()
            .unwrap();

        // Every append queued arrived, in order; so did every control message.
        let appends: Vec<&String> = heard.iter().filter(|h| h.starts_with("append")).collect();
        let expected: Vec<String> = (0..queued).map(|n| format!("append {n:08}")).collect();
        assert_eq!(appends, expected.iter().collect::<Vec<_>>());
        let at = |kind: &str| heard.iter().position(|h| h == kind).unwrap();
        let cancel = at("response.cancel");
        // The cut went out as soon as the service read again: ahead of the full audio queue.
        let appends_after = heard[cancel..]
            .iter()
            .filter(|h| h.starts_with("append"))
            .count();
        assert!(
            appends_after >= AUDIO_OUT_QUEUE,
            "{appends_after} appends after the cancel"
        );
        assert_eq!(at("conversation.item.truncate"), cancel + 1);
        // The commit waited for the audio it commits; the request for an answer, for it.
        let commit = at("input_audio_buffer.commit");
        assert_eq!(commit, heard.len() - 2);
        assert_eq!(heard[commit + 1], "response.create");
        assert_eq!(counters.errors.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn control_goes_first_but_a_commit_waits_for_the_audio_it_commits() {
        let (mut outbox, mut queues) = Outbox::new();
        assert!(outbox.audio("a1".into()));
        assert!(outbox.audio("a2".into()));
        for event in [
            ClientEvent::CancelResponse,
            ClientEvent::CommitAudio,
            ClientEvent::CreateResponse,
        ] {
            let kind = label(&event.to_json());
            outbox.control(kind, event.follows_audio()).unwrap();
        }
        assert!(outbox.audio("a3".into()));
        drop(outbox);
        let mut written = Vec::new();
        while let Some(message) = queues.next().await {
            written.push(message.into_text().unwrap().to_string());
        }
        assert_eq!(
            written,
            [
                "response.cancel",
                "a1",
                "a2",
                "input_audio_buffer.commit",
                "response.create",
                "a3",
            ]
        );
    }

    #[test]
    fn a_full_control_queue_is_reported_and_audio_is_dropped_when_behind() {
        let (mut outbox, _queues) = Outbox::new();
        for _ in 0..CONTROL_OUT_QUEUE {
            outbox.control(String::new(), false).unwrap();
        }
        assert!(outbox.control(String::new(), true).is_err());
        for _ in 0..AUDIO_OUT_QUEUE {
            assert!(outbox.audio(String::new()));
        }
        assert!(!outbox.audio(String::new()));
        assert_eq!(outbox.audio_queued, AUDIO_OUT_QUEUE as u64);
        // A writer gone is no reason to end the conversation: the socket's end will say why.
        let (mut outbox, queues) = Outbox::new();
        drop(queues);
        assert!(outbox.control(String::new(), false).is_ok());
        assert!(!outbox.audio(String::new()));
    }
}
