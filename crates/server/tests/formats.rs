//! Through real sockets on 127.0.0.1: the gateway accepts only the formats the platform can send,
//! closes on anything else with a code and a reason that say what was wrong, and skips DTMF
//! tones that are not one key of the keypad.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mediagate_server::{Config, Server};
use tokio_tungstenite::tungstenite::Message;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const FRAME: &str = include_str!("../../protocol/tests/vectors/media-03-audio-data-mixed.json");

struct Gateway {
    addr: std::net::SocketAddr,
    data_dir: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), mediagate_server::ServerError>>,
}

async fn start() -> Gateway {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().to_owned(),
        ..Config::default()
    };
    config.admin.listen = config.listen;
    config.pipeline.processors = vec!["wav".to_owned(), "dtmf".to_owned()];
    let server = Server::bind(config, mediagate_processors::builtins())
        .await
        .unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    Gateway {
        addr,
        data_dir,
        stop,
        task,
    }
}

impl Gateway {
    async fn connect(&self, path: &str) -> Client {
        let url = format!("ws://{}{path}", self.addr);
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    async fn ended_session(&self, call: &str) -> serde_json::Value {
        let path = self.data_dir.path().join(call).join("session.json");
        for _ in 0..200 {
            if let Ok(text) = tokio::fs::read_to_string(&path).await {
                let json: serde_json::Value = serde_json::from_str(&text).unwrap();
                if json["status"] == "ended" {
                    return json;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("call {call} did not end");
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Reads until the gateway closes; returns its close code and reason.
async fn close_frame(client: &mut Client) -> (u16, String) {
    let wait = async {
        while let Some(message) = client.next().await {
            if let Ok(Message::Close(Some(frame))) = message {
                return (u16::from(frame.code), frame.reason.to_string());
            }
        }
        panic!("closed without a close frame");
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("gateway never closed")
}

fn metadata(rate: u32, channels: u16) -> String {
    serde_json::json!({"kind": "AudioMetadata", "audioMetadata": {
        "subscriptionId": "sub", "encoding": "PCM", "sampleRate": rate, "channels": channels}})
    .to_string()
}

fn dtmf(tone: &str) -> String {
    serde_json::json!({"kind": "DtmfData", "dtmfData": {"data": tone}}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_sample_rate_closes_with_1007_and_a_reason() {
    let gateway = start().await;
    // Declared up front: closed before any call is opened, so nothing is written.
    let mut client = gateway.connect("/ws?callId=huge").await;
    client
        .send(Message::text(metadata(384_000, 1)))
        .await
        .unwrap();
    let (code, reason) = close_frame(&mut client).await;
    assert_eq!(code, 1007);
    assert_eq!(
        reason,
        "unsupported sample rate 384000 Hz: expected one of 8000, 16000, 24000, 32000, 44100, 48000"
    );
    // In the URL: closed at once.
    let mut client = gateway.connect("/ws?callId=url&sampleRate=96000").await;
    let (code, reason) = close_frame(&mut client).await;
    assert_eq!(code, 1007);
    assert!(
        reason.starts_with("unsupported sample rate 96000 Hz"),
        "{reason}"
    );
    // Stereo: unsupported data.
    let mut client = gateway.connect("/ws?callId=stereo").await;
    client
        .send(Message::text(metadata(16_000, 2)))
        .await
        .unwrap();
    let (code, reason) = close_frame(&mut client).await;
    assert_eq!(code, 1003);
    assert!(reason.contains("channel count 2"), "{reason}");
    // Mid-call: the call ends, its audio kept, and session.json says why.
    let mut client = gateway.connect("/ws?callId=midway").await;
    client
        .send(Message::text(metadata(16_000, 1)))
        .await
        .unwrap();
    for _ in 0..3 {
        client.send(Message::text(FRAME)).await.unwrap();
    }
    client
        .send(Message::text(metadata(11_025, 1)))
        .await
        .unwrap();
    assert_eq!(close_frame(&mut client).await.0, 1007);
    let session = gateway.ended_session("midway").await;
    let transport = &session["transports"][0];
    assert_eq!(transport["end"]["reason"], "policy_close");
    assert_eq!(transport["end"]["code"], 1007);
    assert!(
        transport["end"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("unsupported sample rate 11025 Hz"),
        "{transport}"
    );
    assert_eq!(transport["frames_received"], 3);
    let wav = std::fs::metadata(gateway.data_dir.path().join("midway/mixed.wav")).unwrap();
    assert_eq!(wav.len(), 44 + 3 * 640);
    assert!(!gateway.data_dir.path().join("huge").exists());
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dtmf_tone_must_be_one_key_of_the_keypad() {
    let gateway = start().await;
    let mut client = gateway.connect("/ws?callId=keys").await;
    client
        .send(Message::text(metadata(16_000, 1)))
        .await
        .unwrap();
    for tone in ["5", "55", "E", "#", &"9".repeat(100_000), "A\nforged"] {
        client.send(Message::text(dtmf(tone))).await.unwrap();
    }
    client.send(Message::text(FRAME)).await.unwrap();
    client.close(None).await.unwrap();
    let session = gateway.ended_session("keys").await;
    let transport = &session["transports"][0];
    assert_eq!(transport["end"]["reason"], "client_close");
    assert_eq!(transport["dtmf_tones"], 2);
    assert_eq!(transport["bad_messages"]["by_class"]["invalid_field"], 4);
    gateway.stop().await;
}
