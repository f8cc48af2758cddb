//! The attacks of issue 11, each against a real `mediagate serve` process through real sockets,
//! with a victim call streaming in real time beside it. Each test asserts the outcome: the
//! attacker refused or closed with the right code, memory and disk within stated bounds,
//! `/healthz` answering within a second throughout, and the victim's recording bit-exact.

use crate::common;

mod attacks;
mod disk;
mod shutdown;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::process::ServeProcess;
use common::{assert_wav_header_consistent, read_wav, sample, write_wav};
use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The recorders only, and a second-by-second disk check: what every hostile test runs.
const RECORDERS: &str = "[pipeline]\nprocessors = [\"wav\", \"transcript\", \"dtmf\"]\n\
    [shutdown]\ndrain_timeout_secs = 0\n[recording]\nmin_free_bytes = 0\n";

async fn connect(url: &str) -> Client {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Reads until the gateway closes: its close code and reason (`None` if the connection just
/// ended).
async fn closed_with(client: &mut Client) -> Option<(u16, String)> {
    let wait = async {
        while let Some(message) = client.next().await {
            match message {
                Ok(Message::Close(frame)) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .expect("the gateway never closed the socket")
}

/// Base64 of `n` zero bytes.
fn zeros_base64(n: usize) -> String {
    let mut text = "AAAA".repeat(n / 3);
    match n % 3 {
        1 => text.push_str("AA=="),
        2 => text.push_str("AAA="),
        _ => {}
    }
    text
}

fn metadata(sample_rate_hz: u64) -> String {
    serde_json::json!({
        "kind": "AudioMetadata",
        "audioMetadata": {
            "subscriptionId": "attacker",
            "encoding": "PCM",
            "sampleRate": sample_rate_hz,
            "channels": 1,
            "length": 640
        }
    })
    .to_string()
}

fn audio(timestamp: &str, participant: Option<&str>, pcm_bytes: usize) -> String {
    let mut data = serde_json::json!({
        "timestamp": timestamp,
        "data": zeros_base64(pcm_bytes),
        "silent": false
    });
    if let Some(id) = participant {
        data["participantRawID"] = id.into();
    }
    serde_json::json!({ "kind": "AudioData", "audioData": data }).to_string()
}

/// A clip of real speech a few seconds long (two of the samples back to back), in `dir`.
fn victim_clip(dir: &Path) -> PathBuf {
    let (mut samples, rate) = read_wav(&sample("hello-16k.wav"));
    let (alice, _) = read_wav(&sample("alice-16k.wav"));
    samples.extend(alice);
    let path = dir.join("victim.wav");
    write_wav(&path, rate, &samples);
    path
}

/// A call streaming real speech in real time while an attack runs, and a watch on `/healthz`.
struct Victim {
    call: JoinHandle<mediagate::emulator::EmulateReport>,
    health: JoinHandle<Duration>,
    stop_health: tokio::sync::watch::Sender<bool>,
    clip: PathBuf,
    call_id: String,
    _dir: tempfile::TempDir,
}

impl Victim {
    fn start(gateway: &ServeProcess, call_id: &str) -> Self {
        Self::start_with_query(gateway, call_id, "")
    }

    fn start_with_query(gateway: &ServeProcess, call_id: &str, query: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clip = victim_clip(dir.path());
        let config = mediagate::emulator::EmulateConfig::new(
            gateway.url(&format!("/ws?callId={call_id}{query}")),
        )
        .with_wav(&clip);
        let call = tokio::spawn(async move { mediagate::emulator::run(config).await.unwrap() });
        let (stop_health, mut stopped) = tokio::sync::watch::channel(false);
        let addr = gateway.addr;
        let health = tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            loop {
                let started = Instant::now();
                let answered = tokio::time::timeout(
                    Duration::from_secs(5),
                    common::process::http_get(addr, "/healthz"),
                )
                .await;
                assert!(
                    matches!(answered, Ok(Ok((200 | 503, _)))),
                    "/healthz did not answer: {answered:?}"
                );
                worst = worst.max(started.elapsed());
                tokio::select! {
                    _ = stopped.changed() => return worst,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        });
        Victim {
            call,
            health,
            stop_health,
            clip,
            call_id: call_id.to_owned(),
            _dir: dir,
        }
    }

    /// Waits until the victim's call is live (its folder has a session.json).
    async fn wait_live(&self, gateway: &ServeProcess) {
        let path = gateway.call_dir(&self.call_id).join("session.json");
        for _ in 0..200 {
            if path.exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the victim's call {} never started", self.call_id);
    }

    /// Waits for the victim's call to end; asserts its recording is the clip, sample for
    /// sample, and that `/healthz` always answered within a second.
    async fn assert_unharmed(self, gateway: &ServeProcess) {
        let report = self.call.await.unwrap();
        let _ = self.stop_health.send(true);
        let worst = self.health.await.unwrap();
        assert!(worst < Duration::from_secs(1), "/healthz took {worst:?}");
        let (sent, _) = read_wav(&self.clip);
        assert_eq!(report.frames_sent as usize, sent.len().div_ceil(320));
        let path = gateway.call_dir(&self.call_id).join("mixed.wav");
        let session = wait_ended(gateway, &self.call_id).await;
        assert_eq!(session["transports"][0]["end"]["code"], 1000, "{session}");
        assert_wav_header_consistent(&path);
        let (recorded, _) = read_wav(&path);
        assert_eq!(recorded.len(), sent.len(), "victim's sample count");
        assert!(
            recorded == sent,
            "the victim's recording differs from what it sent"
        );
    }
}

/// Waits until a call's session.json says it ended.
async fn wait_ended(gateway: &ServeProcess, call_id: &str) -> serde_json::Value {
    let path = gateway.call_dir(call_id).join("session.json");
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            if json["status"] == "ended" {
                return json;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "call {call_id} did not end; session.json: {:?}",
        std::fs::read_to_string(&path)
    );
}

/// Call folders under the gateway's data dir (not its hidden hash chain, `.chain`).
fn folders(gateway: &ServeProcess) -> Vec<String> {
    std::fs::read_dir(gateway.calls_dir())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Sends `message` until the socket is closed or `count` are sent; returns how many went.
async fn send_many(client: &mut Client, message: &str, count: usize) -> usize {
    for sent in 0..count {
        if client
            .send(Message::text(message.to_owned()))
            .await
            .is_err()
        {
            return sent;
        }
    }
    count
}
