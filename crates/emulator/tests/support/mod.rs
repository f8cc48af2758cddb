//! Shared helpers for the emulator's end-to-end tests: a recording gateway on 127.0.0.1 and WAV
//! writers.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic here is a failed test"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use mediagate_protocol::{
    InboundMessage, OutboundDialect, parse_inbound, stop_audio_json, write_outbound_audio,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// How the test gateway behaves on each connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Behaviour {
    /// Text messages sent right after the first message is received.
    pub(crate) replies: Vec<String>,
    /// A close frame sent right after the first message (and the replies).
    pub(crate) close_after_first: Option<(u16, &'static str)>,
    /// Send every inbound AudioData straight back as an outbound AudioData (PascalCase), as the
    /// gateway's `echo` processor does.
    pub(crate) echo: bool,
    /// Send a StopAudio right after the echo of the n-th AudioData (1-based).
    pub(crate) stop_audio_after: Option<usize>,
    /// After the first message, play this many outbound AudioData frames (20 ms of a ramp each)
    /// on a 20 ms clock of the server's own, until done or the client closes.
    pub(crate) paced_frames: usize,
}

/// What one connection delivered.
#[derive(Debug)]
pub(crate) struct Connection {
    /// Path and query of the upgrade request.
    pub(crate) path_and_query: String,
    /// Text (and UTF-8 binary) messages, in order.
    pub(crate) messages: Vec<String>,
    /// The client's close code, `None` when it dropped without a close frame.
    pub(crate) client_close: Option<u16>,
}

/// A WebSocket server that records every connection.
pub(crate) struct TestGateway {
    /// Base URL, `ws://127.0.0.1:<port>`.
    pub(crate) base_url: String,
    connections: mpsc::Receiver<Connection>,
}

impl TestGateway {
    pub(crate) async fn start(behaviour: Behaviour) -> TestGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("ws://{}", listener.local_addr().unwrap());
        let (tx, connections) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                let behaviour = behaviour.clone();
                tokio::spawn(async move {
                    if let Some(connection) = serve(stream, behaviour).await {
                        let _ = tx.send(connection).await;
                    }
                });
            }
        });
        TestGateway {
            base_url,
            connections,
        }
    }

    /// The next connection to end (waits at most 10 s).
    pub(crate) async fn next_connection(&mut self) -> Connection {
        tokio::time::timeout(Duration::from_secs(10), self.connections.recv())
            .await
            .expect("a connection within 10 s")
            .expect("server running")
    }
}

async fn serve(stream: tokio::net::TcpStream, behaviour: Behaviour) -> Option<Connection> {
    let mut path_and_query = String::new();
    #[allow(
        clippy::result_large_err,
        reason = "the signature is tungstenite's handshake callback"
    )]
    let record_path = |request: &Request, response: Response| {
        path_and_query = request
            .uri()
            .path_and_query()
            .map(ToString::to_string)
            .unwrap_or_default();
        Ok(response)
    };
    let socket = tokio_tungstenite::accept_hdr_async(stream, record_path)
        .await
        .ok()?;
    let mut socket = socket;
    // One queue for what goes out: replies, echoes and paced playback leave in the order they
    // are queued, and everything queued leaves before the next inbound message is read, so a
    // close frame from a fast client never overtakes replies already decided on.
    let (tx, mut queued) = mpsc::unbounded_channel::<Message>();
    let mut out = Some(tx);
    let send = |out: &Option<mpsc::UnboundedSender<Message>>, message: Message| {
        if let Some(out) = out {
            let _ = out.send(message);
        }
    };
    let mut player: Option<tokio::task::JoinHandle<()>> = None;
    let mut connection = Connection {
        path_and_query,
        messages: Vec::new(),
        client_close: None,
    };
    let mut pool = BytesMut::new();
    let mut frames = 0;
    loop {
        let message = tokio::select! {
            biased;
            Some(message) = queued.recv() => {
                if socket.send(message).await.is_err() {
                    break;
                }
                continue;
            }
            message = socket.next() => message,
        };
        let Some(Ok(message)) = message else {
            break;
        };
        match message {
            Message::Text(text) => connection.messages.push(text.as_str().to_owned()),
            Message::Binary(bytes) => {
                connection
                    .messages
                    .push(String::from_utf8_lossy(&bytes).into_owned());
            }
            Message::Close(frame) => {
                connection.client_close = Some(frame.map_or(1005, |f| f.code.into()));
                // A real gateway stops playing when the platform hangs up, and what it queued
                // goes out before its close reply (sent on the next read).
                if let Some(player) = player.take() {
                    player.abort();
                    let _ = player.await;
                }
                out = None;
                while let Ok(message) = queued.try_recv() {
                    if socket.send(message).await.is_err() {
                        break;
                    }
                }
                continue;
            }
            _ => continue,
        }
        if connection.messages.len() == 1 {
            for reply in &behaviour.replies {
                send(&out, Message::text(reply.as_str()));
            }
            if let Some((code, reason)) = behaviour.close_after_first {
                let frame = CloseFrame {
                    code: code.into(),
                    reason: reason.into(),
                };
                send(&out, Message::Close(Some(frame)));
            }
            if let (Some(out), 1..) = (&out, behaviour.paced_frames) {
                player = Some(tokio::spawn(play(behaviour.paced_frames, out.clone())));
            }
        }
        if behaviour.echo {
            let text = connection.messages.last().unwrap();
            if let Ok(InboundMessage::AudioData(frame)) = parse_inbound(text) {
                let pcm = frame.decode_pcm(2, &mut pool).unwrap();
                let mut echo = String::new();
                write_outbound_audio(&pcm, OutboundDialect::Pascal, &mut echo);
                send(&out, Message::text(echo));
                frames += 1;
                if behaviour.stop_audio_after == Some(frames) {
                    let stop = stop_audio_json(OutboundDialect::Pascal);
                    send(&out, Message::text(stop));
                }
            }
        }
    }
    if let Some(player) = player {
        player.abort();
        let _ = player.await;
    }
    Some(connection)
}

/// Plays `frames` outbound AudioData frames of 320 samples, one per 20 ms.
async fn play(frames: usize, out: mpsc::UnboundedSender<Message>) {
    let mut clock = tokio::time::interval(Duration::from_millis(20));
    let mut text = String::new();
    for i in 0..frames {
        clock.tick().await;
        let pcm: Vec<u8> = (0..320_i16)
            .flat_map(|s| (s + i as i16).to_le_bytes())
            .collect();
        write_outbound_audio(&pcm, OutboundDialect::Pascal, &mut text);
        if out.send(Message::text(text.as_str())).is_err() {
            return;
        }
    }
}

/// Writes a 16-bit mono WAV.
pub(crate) fn write_wav(dir: &Path, name: &str, sample_rate: u32, samples: &[i16]) -> PathBuf {
    let path = dir.join(name);
    let clip = mediagate_audio::Clip::from_samples(
        mediagate_audio::AudioFormat::mono(sample_rate),
        samples,
    );
    mediagate_audio::wav::write(&path, &clip).unwrap();
    path
}

/// `len` samples of a non-zero sawtooth, distinct per `seed`.
pub(crate) fn tone(len: usize, seed: i16) -> Vec<i16> {
    (0..len)
        .map(|i| ((i % 200) as i16 - 100).wrapping_mul(seed) | 1)
        .collect()
}
