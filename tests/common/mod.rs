//! Shared helpers of the end-to-end tests: a real gateway on 127.0.0.1 with an ephemeral port and
//! a temporary data dir, and readers for what it wrote.

#![allow(dead_code, unreachable_pub, missing_docs)] // each test binary uses a different subset
#![allow(clippy::unwrap_used)] // a panic in a test helper is a failed assertion

pub mod process;
pub mod venv;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mediagate::server::{Config, Server};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestGateway {
    pub addr: SocketAddr,
    /// The admin API's address (`None` when a test disabled it).
    pub admin: Option<SocketAddr>,
    pub data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), mediagate::server::ServerError>>>,
}

impl TestGateway {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_registry(adjust, mediagate::registry()).await
    }

    /// With the processors of `registry` (a test's own, registered beside the built-ins).
    pub async fn start_with_registry(
        adjust: impl FnOnce(&mut Config),
        registry: mediagate::server::Registry,
    ) -> Self {
        let (data_dir, config) = test_config(adjust);
        let server = Server::bind(config, registry).await.unwrap();
        let addr = server.local_addr();
        let admin = server.admin_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        TestGateway {
            addr,
            admin,
            data_dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Like [`TestGateway::start_with`], but the gateway runs on a runtime of its own (its own
    /// threads), as in production where the load generator is another process: a test that
    /// runs hundreds of emulated calls must not measure the gateway's tasks queued behind them.
    pub async fn start_isolated(adjust: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        let (data_dir, config) = test_config(adjust);
        let (stop, stopped) = oneshot::channel::<()>();
        let (bound, addr) = oneshot::channel();
        let (done, finished) = oneshot::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let result = runtime.block_on(async move {
                let server = Server::bind(config, mediagate::registry()).await?;
                let _ = bound.send((server.local_addr(), server.admin_addr()));
                server
                    .run_until(async {
                        let _ = stopped.await;
                    })
                    .await
            });
            let _ = done.send(result);
        });
        let (addr, admin) = addr.await.unwrap();
        let task = tokio::spawn(async move { finished.await.unwrap() });
        TestGateway {
            addr,
            admin,
            data_dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    pub fn call_dir(&self, call_id: &str) -> PathBuf {
        self.data_dir.path().join(call_id)
    }

    /// Waits until the call's session.json says it has ended and no processor is still
    /// working, and returns it.
    pub async fn ended_session(&self, call_id: &str) -> serde_json::Value {
        self.ended_session_within(call_id, Duration::from_secs(10))
            .await
    }

    /// [`TestGateway::ended_session`] for a call whose processors take a while to finish (a
    /// speech engine catching up with audio sent faster than real time).
    pub async fn ended_session_within(&self, call_id: &str, limit: Duration) -> serde_json::Value {
        let path = self.call_dir(call_id).join("session.json");
        for _ in 0..limit.as_millis() / 50 {
            if let Ok(text) = tokio::fs::read_to_string(&path).await {
                let json: serde_json::Value = serde_json::from_str(&text).unwrap();
                if json["status"] == "ended" && !still_working(&json) {
                    return json;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let last = std::fs::read_to_string(&path).unwrap_or_else(|e| e.to_string());
        let listing: Vec<_> = std::fs::read_dir(self.data_dir.path())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        panic!(
            "call {call_id} did not end within {limit:?}; folders {listing:?}; session.json: {last}"
        );
    }

    /// Polls the call's session.json every 10 ms until `done` says yes, for at most `limit`:
    /// the JSON that satisfied it, or `None`.
    pub async fn session_when(
        &self,
        call_id: &str,
        limit: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let path = self.call_dir(call_id).join("session.json");
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Ok(text) = tokio::fs::read_to_string(&path).await {
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
                    if done(&json) {
                        return Some(json);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Stops the gateway (drain deadline 0: live calls are closed with 1001), waits for it, and
    /// hands back the data dir so its files can still be read.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        self.data_dir
    }
}

/// A config on an ephemeral loopback port, a fresh data dir, no drain wait; then `adjust`.
fn test_config(adjust: impl FnOnce(&mut Config)) -> (tempfile::TempDir, Config) {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().to_owned(),
        ..Config::default()
    };
    config.admin.listen = config.listen;
    config.shutdown.drain_timeout_secs = 0;
    // Calls are recorded without the default speech engine, which would put a Whisper decode
    // on every test call: tests/speech.rs runs the real default pipeline.
    config.pipeline.processors = ["wav", "transcript", "dtmf"].map(String::from).to_vec();
    adjust(&mut config);
    (data_dir, config)
}

pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(name)
}

/// Samples and rate of a PCM16 mono WAV, read with hound (which checks the header sizes).
pub fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let reader = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("{} is not a valid WAV: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.bits_per_sample),
        (1, 16),
        "{}",
        path.display()
    );
    let samples = reader
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{} has unreadable samples: {e}", path.display()));
    (samples, spec.sample_rate)
}

/// Checks the RIFF and data chunk sizes in the header against the file's length.
pub fn assert_wav_header_consistent(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[0..4], b"RIFF", "{}", path.display());
    let riff = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    assert_eq!(riff + 8, bytes.len(), "RIFF size of {}", path.display());
    let data_at = bytes.windows(4).position(|w| w == b"data").unwrap();
    let data = u32::from_le_bytes(bytes[data_at + 4..data_at + 8].try_into().unwrap()) as usize;
    assert_eq!(
        data_at + 8 + data,
        bytes.len(),
        "data size of {}",
        path.display()
    );
}

/// Writes a PCM16 mono WAV.
pub fn write_wav(path: &Path, rate: u32, samples: &[i16]) {
    let clip =
        mediagate::audio::Clip::from_samples(mediagate::audio::AudioFormat::mono(rate), samples);
    mediagate::audio::wav::write(path, &clip).unwrap();
}

pub fn emulate(url: String) -> mediagate::emulator::EmulateConfig {
    mediagate::emulator::EmulateConfig::new(url).with_pacing(mediagate::emulator::Pacing::Fast)
}

/// The entry of processor `name` in a transport's report.
pub fn processor<'a>(transport: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    transport["processors"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no processor {name} in {transport}"))
}

/// The processor names of a transport's report, in order.
pub fn processor_names(transport: &serde_json::Value) -> Vec<String> {
    transport["processors"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a processor of any transport is listed as still working.
pub fn still_working(session: &serde_json::Value) -> bool {
    session["transports"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["processors"].as_array().into_iter().flatten())
        .any(|p| p["working"] == true)
}
