//! Shared helpers for the emulator's end-to-end tests: a recording gateway on 127.0.0.1 and WAV
//! writers.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic here is a failed test"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
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
    let mut socket = tokio_tungstenite::accept_hdr_async(stream, record_path)
        .await
        .ok()?;
    let mut connection = Connection {
        path_and_query,
        messages: Vec::new(),
        client_close: None,
    };
    while let Some(Ok(message)) = socket.next().await {
        match message {
            Message::Text(text) => connection.messages.push(text.as_str().to_owned()),
            Message::Binary(bytes) => {
                connection
                    .messages
                    .push(String::from_utf8_lossy(&bytes).into_owned());
            }
            Message::Close(frame) => {
                connection.client_close = Some(frame.map_or(1005, |f| f.code.into()));
            }
            _ => {}
        }
        if connection.messages.len() == 1 && connection.client_close.is_none() {
            for reply in &behaviour.replies {
                let _ = socket.send(Message::text(reply.as_str())).await;
            }
            if let Some((code, reason)) = behaviour.close_after_first {
                let frame = CloseFrame {
                    code: code.into(),
                    reason: reason.into(),
                };
                let _ = socket.close(Some(frame)).await;
            }
        }
    }
    Some(connection)
}

/// Writes a 16-bit mono WAV.
pub(crate) fn write_wav(dir: &Path, name: &str, sample_rate: u32, samples: &[i16]) -> PathBuf {
    let path = dir.join(name);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    for &s in samples {
        writer.write_sample(s).unwrap();
    }
    writer.finalize().unwrap();
    path
}

/// `len` samples of a non-zero sawtooth, distinct per `seed`.
pub(crate) fn tone(len: usize, seed: i16) -> Vec<i16> {
    (0..len)
        .map(|i| ((i % 200) as i16 - 100).wrapping_mul(seed) | 1)
        .collect()
}
