//! A real `mediagate serve` process on an ephemeral loopback port, for the tests that must see
//! what a deployment sees: its memory, its exit code, how it answers signals.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A running `mediagate serve`, killed when dropped.
pub struct ServeProcess {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
    /// Every line it logged (JSON), for assertions on what it said.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl ServeProcess {
    /// Starts `mediagate serve` with a config of `toml` below the test's own lines (listen on
    /// an ephemeral loopback port, a fresh data dir, the recorders only, no drain wait).
    pub async fn start(toml: &str) -> Self {
        Self::start_with_env(toml, &[]).await
    }

    /// [`ServeProcess::start`] with extra environment variables.
    pub async fn start_with_env(toml: &str, env: &[(&str, &str)]) -> Self {
        Self::start_prepared(toml, env, |_| {}).await
    }

    /// [`ServeProcess::start_with_env`], after `prepare` has been given the calls folder (to
    /// mount a small file system there, say).
    pub async fn start_prepared(
        toml: &str,
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path),
    ) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let config = data_dir.path().join("mediagate.toml");
        let calls = data_dir.path().join("calls");
        std::fs::create_dir_all(&calls).unwrap();
        prepare(&calls);
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nadmin.listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n{toml}\n",
                calls.display().to_string()
            ),
        )
        .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_mediagate"));
        command
            .args(["--log-format", "json", "--log", "info", "serve", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let lines = Arc::clone(&log);
        tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Some(addr) = listening_addr(&line) {
                    if let Some(tx) = addr_tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(60), addr_rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!(
                "mediagate serve did not start; its log:\n{}",
                log.lock().unwrap().join("\n")
            ),
        };
        ServeProcess {
            child,
            addr,
            data_dir,
            log,
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    /// The folder calls are recorded under.
    pub fn calls_dir(&self) -> PathBuf {
        self.data_dir.path().join("calls")
    }

    pub fn call_dir(&self, call_id: &str) -> PathBuf {
        self.calls_dir().join(call_id)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the gateway has exited")
    }

    /// Resident memory of the process, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib * 1024
    }

    /// `GET /healthz` over a fresh connection: the status code and how long it took.
    pub async fn healthz(&self) -> (u16, Duration) {
        let started = Instant::now();
        let status = tokio::time::timeout(Duration::from_secs(5), http_get(self.addr, "/healthz"))
            .await
            .map(|r| r.map(|(status, _)| status).unwrap_or(0))
            .unwrap_or(0);
        (status, started.elapsed())
    }

    /// Waits until `/healthz` says `calls` calls are live, at most `limit` (a loaded machine
    /// connects emulated calls more slowly than a fixed sleep assumes).
    pub async fn wait_live_calls(&self, calls: u64, limit: Duration) {
        let started = Instant::now();
        loop {
            let live = match http_get(self.addr, "/healthz").await {
                Ok((_, body)) => serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["live_calls"].as_u64())
                    .unwrap_or(0),
                Err(_) => 0,
            };
            if live >= calls {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "{live} of {calls} calls live after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit, at most `limit`: its exit code, or `None` on a time-out.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .map(|r| r.unwrap())
    }

    /// The log lines so far that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }
}

/// The address in the gateway's "listening" log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &json["fields"];
    if !fields["message"].as_str()?.starts_with("listening") {
        return None;
    }
    fields["addr"].as_str()?.parse().ok()
}

/// A plain HTTP/1.1 GET: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Bytes of every file under `dir`, recursively.
pub fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                bytes_under(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}
