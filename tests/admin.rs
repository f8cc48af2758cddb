//! The admin API through real sockets: its token, the live calls it lists, audio it plays into
//! a call (heard by the emulator sample for sample), barge-in, ending a call, draining the node,
//! `/metrics` moved to it, and its OpenAPI document checked by the real
//! `openapi-spec-validator` (PyPI, in a virtualenv made on first use).

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestGateway, emulate, sample};
use mediagate::emulator::Pacing;
use mediagate::server::{AdminToken, Config, MetricsListener, Server};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "an-admin-token-for-the-tests-0123456789";

/// The validator's PyPI package, pinned.
const VALIDATOR: &str = "openapi-spec-validator==0.9.0";

/// A response: its status, its head (lowercase), its body.
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One HTTP/1.1 request to `addr`, with the admin token when `token` is given.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    // JSON bodies say so (a WAV or nothing says nothing).
    let kind = if body.starts_with(b"{") {
        "content-type: application/json\r\n"
    } else {
        ""
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\n{auth}{kind}content-length: {}\r\n\
         connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("no response within 10 s")
        .unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    let mut body = response[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Reply { status, head, body }
}

/// The body of a chunked response.
fn dechunk(mut chunked: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = chunked.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&chunked[..line_end]).unwrap(), 16).unwrap();
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        body.extend_from_slice(&chunked[start..start + size]);
        chunked = &chunked[start + size + 2..];
    }
}

async fn gateway(adjust: impl FnOnce(&mut Config) + Send + 'static) -> (TestGateway, SocketAddr) {
    let gateway = TestGateway::start_isolated(|config| {
        config.admin.token = Some(AdminToken(TOKEN.to_owned()));
        adjust(config);
    })
    .await;
    let admin = gateway.admin.expect("the admin API is on by default");
    (gateway, admin)
}

/// A 16 kHz mono WAV of `samples`.
fn wav_of(samples: &[i16]) -> Vec<u8> {
    let mut wav = Vec::new();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::new(std::io::Cursor::new(&mut wav), spec).unwrap();
    for &s in samples {
        writer.write_sample(s).unwrap();
    }
    writer.finalize().unwrap();
    wav
}

/// Waits until call `call_id` is listed; its view.
async fn listed(admin: SocketAddr, call_id: &str) -> Value {
    let started = Instant::now();
    loop {
        let reply = http(admin, "GET", "/calls", Some(TOKEN), b"").await;
        assert_eq!(reply.status, 200);
        let calls = reply.json();
        if let Some(call) = calls
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["call_id"] == call_id)
        {
            return call.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{call_id} not listed: {calls}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn value_of(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lists_plays_into_barges_in_on_and_ends_a_live_call() {
    let (gateway, admin) = gateway(|_| {}).await;
    let scratch = tempfile::tempdir().unwrap();
    let heard = scratch.path().join("heard.wav");
    let call = tokio::spawn(mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=watched"))
            .with_wav(sample("hello-16k.wav"))
            .with_pacing(Pacing::Realtime)
            .with_record_outbound(&heard),
    ));

    // Strangers get nothing but health.
    assert_eq!(http(admin, "GET", "/healthz", None, b"").await.status, 200);
    assert_eq!(http(admin, "GET", "/readyz", None, b"").await.status, 200);
    let missing = http(admin, "GET", "/calls", None, b"").await;
    assert_eq!(missing.status, 401);
    assert!(
        missing.head.contains("www-authenticate: bearer"),
        "{}",
        missing.head
    );
    assert!(missing.json()["error"].as_str().unwrap().contains("Bearer"));
    let forged = http(admin, "POST", "/drain", Some("not-the-token"), b"").await;
    assert_eq!(forged.status, 401);
    assert_eq!(
        http(admin, "GET", "/readyz", None, b"").await.status,
        200,
        "not drained"
    );

    // The call, its transport and its processors.
    let view = listed(admin, "watched").await;
    let transport = &view["transports"][0];
    assert_eq!(transport["kind"], "media");
    assert_eq!(transport["path"], "/ws");
    assert_eq!(transport["sample_rate_hz"], 16_000);
    assert_eq!(transport["bidirectional"], true);
    let names: Vec<&str> = transport["processors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["wav", "transcript", "dtmf"]);
    let one = http(admin, "GET", "/calls/watched", Some(TOKEN), b"").await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["call_id"], "watched");
    let nobody = http(admin, "GET", "/calls/nobody", Some(TOKEN), b"").await;
    assert_eq!(nobody.status, 404);
    assert!(nobody.json()["error"].as_str().unwrap().contains("nobody"));

    // Not a WAV: refused, and nothing is played.
    let junk = http(
        admin,
        "POST",
        "/calls/watched/play",
        Some(TOKEN),
        b"RIFFjunk",
    )
    .await;
    assert_eq!(junk.status, 415, "{}", String::from_utf8_lossy(&junk.body));
    // Two seconds of a known signal, played; cut after half a second.
    let clip: Vec<i16> = (0..32_000)
        .map(|i| ((i * 37) % 20_000 - 10_000) as i16)
        .collect();
    let played = http(
        admin,
        "POST",
        "/calls/watched/play",
        Some(TOKEN),
        &wav_of(&clip),
    )
    .await;
    assert_eq!(
        played.status,
        200,
        "{}",
        String::from_utf8_lossy(&played.body)
    );
    assert_eq!(played.json()["clip_ms"], 2_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let queued = listed(admin, "watched").await["transports"][0]["queued_playback_ms"]
        .as_u64()
        .unwrap();
    assert!(queued > 0 && queued < 2_000, "{queued} ms queued");
    let stopped = http(admin, "POST", "/calls/watched/stop-audio", Some(TOKEN), b"").await;
    assert_eq!(stopped.status, 200);
    let cut = stopped.json()["cut_ms"].as_u64().unwrap();
    assert!(cut > 0 && cut < 2_000, "{cut} ms cut");

    // Ended by the operator: 1000, in session.json too.
    let hung_up = http(admin, "POST", "/calls/watched/hangup", Some(TOKEN), b"").await;
    assert_eq!(hung_up.status, 202);
    assert_eq!(hung_up.json()["transports"], 1);
    let report = call.await.unwrap().unwrap();
    let close = report.gateway_close.expect("the gateway closed the call");
    assert_eq!(
        (close.code, close.reason.as_str()),
        (1000, "ended by the operator")
    );
    assert!(
        report.stopped_early,
        "the call was ended before its audio was all sent"
    );
    assert_eq!(report.messages_received_from_gateway.stop_audio, 1);
    let session = gateway.ended_session("watched").await;
    assert_eq!(session["transports"][0]["end"]["reason"], "operator");
    assert_eq!(session["transports"][0]["end"]["code"], 1000);
    let gone = http(admin, "POST", "/calls/watched/stop-audio", Some(TOKEN), b"").await;
    assert_eq!(gone.status, 404);

    // Ended: listed, with its folder read-only, and nothing outside it.
    let ended = http(admin, "GET", "/ended-calls", Some(TOKEN), b"")
        .await
        .json();
    assert_eq!(ended[0]["call_id"], "watched", "{ended}");
    assert_eq!(ended[0]["files"], "/files/watched/");
    let folder = http(admin, "GET", "/files/watched/", Some(TOKEN), b"").await;
    assert_eq!(folder.status, 200);
    assert!(String::from_utf8_lossy(&folder.body).contains("href=\"mixed.wav\""));
    let wav = http(admin, "GET", "/files/watched/mixed.wav", Some(TOKEN), b"").await;
    assert_eq!(wav.status, 200);
    assert!(wav.head.contains("content-type: audio/wav"));
    let on_disk = std::fs::read(gateway.call_dir("watched").join("mixed.wav")).unwrap();
    assert!(wav.body == on_disk, "the file served is not the file");
    assert_eq!(
        http(admin, "GET", "/files/watched/mixed.wav", None, b"")
            .await
            .status,
        401
    );
    for path in [
        "/files/watched/..%2Fwatched%2Fmixed.wav",
        "/files/..%2F..%2Fetc/passwd",
        "/files/watched/.hidden",
        "/files/watched/nothing.wav",
        "/files/%2E%2E/",
    ] {
        let reply = http(admin, "GET", path, Some(TOKEN), b"").await;
        assert_eq!(reply.status, 404, "{path}");
    }

    // What was heard is the clip's beginning, sample for sample, up to the cut.
    let (heard, rate) = common::read_wav(&heard);
    assert_eq!(rate, 16_000);
    assert!(
        heard.len() >= 8_000 && heard.len() < clip.len(),
        "{} samples heard",
        heard.len()
    );
    assert!(
        heard == clip[..heard.len()],
        "the played audio changed on its way"
    );

    let metrics = http(gateway.addr, "GET", "/metrics", None, b"").await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert_eq!(
        value_of(&text, "mediagate_admin_refused_total{reason=\"missing\"}"),
        2.0,
        "the two requests without a token"
    );
    assert_eq!(
        value_of(&text, "mediagate_admin_refused_total{reason=\"invalid\"}"),
        1.0
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_refuses_new_calls_and_says_it_is_not_ready() {
    let (gateway, admin) = gateway(|_| {}).await;
    let drained = http(admin, "POST", "/drain", Some(TOKEN), b"").await;
    assert_eq!(drained.status, 202);
    assert_eq!(drained.json()["live_calls"], 0);
    assert_eq!(http(admin, "GET", "/readyz", None, b"").await.status, 503);
    let health = http(admin, "GET", "/healthz", None, b"").await;
    assert_eq!(health.status, 200, "alive while draining");
    assert_eq!(health.json()["status"], "draining");
    // The main listener has stopped accepting: no new call can begin.
    let started = Instant::now();
    loop {
        match tokio_tungstenite::connect_async(gateway.url("/ws?callId=late")).await {
            Err(_) => break,
            Ok(_) => assert!(
                started.elapsed() < Duration::from_secs(3),
                "a call began on a drained node"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The admin API stays, to watch the drain.
    assert_eq!(
        http(admin, "GET", "/calls", Some(TOKEN), b"").await.json(),
        serde_json::json!([])
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_to_the_admin_listener_behind_its_token() {
    let (gateway, admin) = gateway(|config| config.metrics.listen = MetricsListener::Admin).await;
    assert_eq!(
        http(gateway.addr, "GET", "/metrics", None, b"")
            .await
            .status,
        404
    );
    assert_eq!(http(admin, "GET", "/metrics", None, b"").await.status, 401);
    let metrics = http(admin, "GET", "/metrics", Some(TOKEN), b"").await;
    assert_eq!(metrics.status, 200);
    assert!(
        String::from_utf8(metrics.body)
            .unwrap()
            .contains("\n# TYPE mediagate_connections_total counter\n")
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_admin_listener_needs_a_token() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().to_owned(),
        ..Config::default()
    };
    config.admin.listen = "0.0.0.0:0".parse().unwrap();
    let Err(err) = Server::bind(config.clone(), mediagate::registry()).await else {
        panic!("a public admin API started without a token");
    };
    let err = err.to_string();
    assert!(
        err.contains("admin.token") && err.contains("not a loopback address"),
        "{err}"
    );
    config.admin.token = Some(AdminToken("short".to_owned()));
    let Err(err) = Server::bind(config.clone(), mediagate::registry()).await else {
        panic!("a short admin token was taken");
    };
    assert!(err.to_string().contains("shorter than 16 bytes"), "{err}");
    config.admin.token = Some(AdminToken(TOKEN.to_owned()));
    let server = Server::bind(config.clone(), mediagate::registry())
        .await
        .unwrap();
    assert!(server.admin_addr().unwrap().ip().is_unspecified());
    drop(server);
    // TLS on the admin listener: a missing certificate stops start-up, naming it.
    config.admin.tls = Some(mediagate::server::TlsConfig {
        cert: "/nonexistent/admin.pem".into(),
        key: "/nonexistent/admin.key".into(),
    });
    let Err(err) = Server::bind(config, mediagate::registry()).await else {
        panic!("started without its certificate");
    };
    assert!(err.to_string().contains("/nonexistent/admin.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_passes_a_real_validator() {
    let (gateway, admin) = gateway(|_| {}).await;
    let reply = http(admin, "GET", "/openapi.json", Some(TOKEN), b"").await;
    assert_eq!(reply.status, 200);
    assert!(reply.head.contains("content-type: application/json"));
    let document = reply.json();
    for path in ["/calls", "/calls/{call_id}/play", "/drain", "/readyz"] {
        assert!(document["paths"][path].is_object(), "{path} missing");
    }
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("openapi.json");
    std::fs::write(&file, &reply.body).unwrap();
    let venv =
        tokio::task::spawn_blocking(|| common::venv::with_package("openapi-venv", VALIDATOR))
            .await
            .unwrap();
    validate(&venv.join("bin/openapi-spec-validator"), &file);
    // And it can fail: a document with a broken reference does not pass.
    let mut broken = document.clone();
    broken["paths"]["/calls"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
        serde_json::json!({ "$ref": "#/components/schemas/Nothing" });
    std::fs::write(&file, broken.to_string()).unwrap();
    let output = std::process::Command::new(venv.join("bin/openapi-spec-validator"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success(), "a broken document passed");
    gateway.stop().await;
}

/// Runs the validator on `file`; panics with what it said unless it passed.
fn validate(validator: &Path, file: &Path) {
    let output = std::process::Command::new(validator)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", validator.display()));
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "openapi-spec-validator: {said}");
    assert!(said.contains("OK"), "{said}");
}

/// A `GET /events` stream on a socket of its own, read as it comes.
pub(crate) struct EventStream {
    stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl EventStream {
    /// Subscribes at `path` (a guest's events), without the admin token.
    pub(crate) async fn open_at(admin: SocketAddr, path: &str) -> Self {
        let stream = tokio::net::TcpStream::connect(admin).await.unwrap();
        Self::subscribe(stream, path, None).await
    }

    /// Subscribes (to `query`'s events), with a receive buffer of `receive_buffer` bytes when
    /// given (a slow reader's), and waits until the subscription is live.
    async fn open(admin: SocketAddr, query: &str, receive_buffer: Option<u32>) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(bytes) = receive_buffer {
            socket.set_recv_buffer_size(bytes).unwrap();
        }
        let stream = socket.connect(admin).await.unwrap();
        Self::subscribe(stream, &format!("/events{query}"), Some(TOKEN)).await
    }

    async fn subscribe(mut stream: tokio::net::TcpStream, path: &str, token: Option<&str>) -> Self {
        let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let host = stream.peer_addr().unwrap();
        let head =
            format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n{auth}connection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut events = EventStream {
            stream,
            buffer: Vec::new(),
        };
        let head = events.until(b"\r\n\r\n").await.expect("no response head");
        let head = String::from_utf8_lossy(&head).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        let first = events.until(b"\n\n").await.expect("no first event");
        assert!(
            String::from_utf8_lossy(&first).contains(": subscribed"),
            "{}",
            String::from_utf8_lossy(&first)
        );
        events
    }

    /// The bytes up to and including `end`; `None` when the stream ended first.
    async fn until(&mut self, end: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = self.buffer.windows(end.len()).position(|w| w == end) {
                return Some(self.buffer.drain(..at + end.len()).collect());
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("the event stream was silent for 10 s")
                .unwrap();
            if n == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next event's kind and data (chunk framing and keep-alive comments skipped); `None`
    /// when the stream ended.
    pub(crate) async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            let block = self.until(b"\n\n").await?;
            let text = String::from_utf8_lossy(&block);
            let mut kind = None;
            let mut data = None;
            for line in text.lines() {
                if let Some(k) = line.strip_prefix("event: ") {
                    kind = Some(k.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(d).unwrap());
                }
            }
            if let (Some(kind), Some(data)) = (kind, data) {
                return Some((kind, data));
            }
        }
    }
}

/// A transcription script of `n` results, all due at once.
fn transcript_script(dir: &Path, n: usize) -> std::path::PathBuf {
    let results: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "at": 0.1,
                "text": format!("result number {i} of the flood"),
                "status": if i % 2 == 0 { "Intermediate" } else { "Final" },
                "offset": 0.0,
                "duration": 0.5,
            })
        })
        .collect();
    let path = dir.join("script.json");
    let script = serde_json::json!({ "locale": "en-US", "results": results });
    std::fs::write(&path, script.to_string()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_follows_one_call_from_start_to_end() {
    let (gateway, admin) = gateway(|_| {}).await;
    let scratch = tempfile::tempdir().unwrap();
    let mut events = EventStream::open(admin, "?call=evented", None).await;
    let other = tokio::spawn(mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=other")).with_wav(sample("alice-16k.wav")),
    ));
    let report = mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=evented"))
            .with_wav(sample("hello-16k.wav"))
            .with_dtmf("5@0.5".parse().unwrap())
            .with_transcript(transcript_script(scratch.path(), 2)),
    )
    .await
    .unwrap();
    assert!(!report.stopped_early);
    other.await.unwrap().unwrap();
    let mut seen = Vec::new();
    let mut ended = 0;
    while ended < 2 {
        let (kind, data) = events.next().await.expect("the stream ended");
        assert_eq!(
            data["call_id"], "evented",
            "another call's event: {kind} {data}"
        );
        ended += usize::from(kind == "call_ended");
        seen.push((kind, data));
    }
    let kinds: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"call_started"), "{kinds:?}");
    for kind in ["dtmf", "transcript", "call_ended"] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    let dtmf = &seen.iter().find(|(k, _)| k == "dtmf").unwrap().1;
    assert_eq!(dtmf["tone"], "5");
    let texts: Vec<(&str, &str)> = seen
        .iter()
        .filter(|(k, _)| k == "transcript")
        .map(|(_, d)| (d["status"].as_str().unwrap(), d["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        texts,
        [
            ("partial", "result number 0 of the flood"),
            ("final", "result number 1 of the flood")
        ]
    );
    let ends: Vec<&Value> = seen
        .iter()
        .filter(|(k, _)| k == "call_ended")
        .map(|(_, d)| d)
        .collect();
    assert!(
        ends.iter()
            .all(|d| d["reason"] == "client_close" && d["code"] == 1000),
        "{ends:?}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_stops_reading_is_cut_off_while_the_call_goes_on_bit_exact() {
    let (gateway, admin) = gateway(|_| {}).await;
    let scratch = tempfile::tempdir().unwrap();
    let mut slow = EventStream::open(admin, "", Some(4096)).await;
    // Far more events than the ring and the socket's buffers hold, while nobody reads them.
    let report = mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=flooded"))
            .with_wav(sample("hello-16k.wav"))
            .with_transcript(transcript_script(scratch.path(), 30_000)),
    )
    .await
    .unwrap();
    assert!(!report.stopped_early);
    gateway.ended_session("flooded").await;
    let (sent, _) = common::read_wav(&sample("hello-16k.wav"));
    let (recorded, _) = common::read_wav(&gateway.call_dir("flooded").join("mixed.wav"));
    assert!(recorded == sent, "the recording is not the audio sent");
    // The transcript writer is not held up by the watcher either (read once it has finished:
    // it may still be writing when the call has ended).
    let started = Instant::now();
    let writer = loop {
        let session = gateway.ended_session("flooded").await;
        let writer = session["transports"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["processors"].as_array().unwrap().clone())
            .find(|p| p["name"] == "transcript" && p["report"]["results"].as_u64() > Some(0));
        if let Some(writer) = writer.filter(|w| w["working"] != true) {
            break writer;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{session}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A burst this size can overflow the writer's bounded inbox; what did not fit is counted.
    let results = writer["report"]["results"].as_u64().unwrap();
    let dropped = writer["events_dropped"].as_u64().unwrap();
    assert_eq!(results + dropped, 30_000, "{writer}");
    let lines = std::fs::read_to_string(gateway.call_dir("flooded").join("transcript.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines as u64, results);

    // Reading again: what was buffered, then `lagged`, then the end of the stream.
    let mut last = None;
    while let Some((kind, data)) = slow.next().await {
        last = Some((kind, data));
    }
    let (kind, data) = last.expect("no event at all");
    assert_eq!(kind, "lagged");
    assert!(data["missed"].as_u64().unwrap() > 0);
    let metrics = http(gateway.addr, "GET", "/metrics", None, b"").await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert_eq!(
        value_of(&text, "mediagate_admin_event_streams_cut_total"),
        1.0
    );
    assert_eq!(value_of(&text, "mediagate_admin_event_streams"), 0.0);
    gateway.stop().await;
}

/// A listener of `call_id` on the admin listener, authenticated by the token.
async fn listener(
    admin: SocketAddr,
    call_id: &str,
    stream: tokio::net::TcpStream,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{admin}/calls/{call_id}/listen")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (socket, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_hears_the_call_as_it_arrives_sample_for_sample() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let (gateway, admin) = gateway(|_| {}).await;
    let call = tokio::spawn(mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=heard"))
            .with_wav(sample("hello-16k.wav"))
            .with_pacing(Pacing::Realtime),
    ));
    listed(admin, "heard").await;
    let tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    let mut socket = listener(admin, "heard", tcp).await;
    let Some(Ok(Message::Text(hello))) = socket.next().await else {
        panic!("no first message");
    };
    let hello: Value = serde_json::from_str(&hello).unwrap();
    assert_eq!(hello["sample_rate_hz"], 16_000);
    assert_eq!(hello["source"], "mixed");
    let (mut heard, mut messages) = (Vec::new(), 0);
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Binary(pcm)))) => {
                messages += 1;
                heard.extend(
                    pcm.chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]])),
                );
            }
            Ok(Some(Ok(Message::Close(frame)))) => break frame.unwrap(),
            other => panic!("unexpected: {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1000);
    assert_eq!(close.reason.as_str(), "call ended");
    call.await.unwrap().unwrap();
    // From the moment it joined to the end: the call's audio, every sample as it was sent.
    let (sent, _) = common::read_wav(&sample("hello-16k.wav"));
    assert!(
        heard.len() > sent.len() / 2,
        "{} of {} samples heard",
        heard.len(),
        sent.len()
    );
    assert!(
        sent.ends_with(&heard),
        "what was heard is not the call's audio"
    );
    let metrics = http(gateway.addr, "GET", "/metrics", None, b"").await;
    let text = String::from_utf8(metrics.body).unwrap();
    let frames = value_of(&text, "mediagate_listen_latency_seconds_count");
    assert_eq!(frames, f64::from(messages));
    assert_eq!(value_of(&text, "mediagate_listeners"), 0.0);
    gateway.stop().await;
}

/// An ACS AudioData message of mixed audio at `ms` into the call.
fn audio_data(samples: &[i16], ms: u64) -> String {
    use base64::Engine;
    let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let timestamp = format!(
        "2026-12-01T10:{:02}:{:02}.{:03}Z",
        ms / 60_000,
        ms / 1000 % 60,
        ms % 1000
    );
    serde_json::json!({ "kind": "AudioData", "audioData": {
        "timestamp": timestamp,
        "data": base64::engine::general_purpose::STANDARD.encode(pcm),
        "silent": false,
    }})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_stops_reading_is_cut_off_and_the_call_goes_on_bit_exact() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let (gateway, admin) = gateway(|_| {}).await;
    let (mut call, _) = tokio_tungstenite::connect_async(gateway.url("/ws?callId=busy"))
        .await
        .unwrap();
    let metadata = serde_json::json!({ "kind": "AudioMetadata", "audioMetadata": {
        "subscriptionId": "s", "encoding": "PCM", "sampleRate": 16000, "channels": 1,
        "length": 640 }});
    call.send(Message::text(metadata.to_string()))
        .await
        .unwrap();
    // The first frame opens the call; then a listener that never reads, on a small buffer.
    let frame = |i: usize| -> Vec<i16> {
        (0..320)
            .map(|j| (((i * 320 + j) * 7) % 20_000) as i16 - 10_000)
            .collect()
    };
    call.send(Message::text(audio_data(&frame(0), 0)))
        .await
        .unwrap();
    listed(admin, "busy").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let tcp = socket.connect(admin).await.unwrap();
    let _slow = listener(admin, "busy", tcp).await;
    // Ten minutes of audio, as fast as the gateway takes it.
    const FRAMES: usize = 30_000;
    for i in 1..FRAMES {
        call.feed(Message::text(audio_data(&frame(i), i as u64 * 20)))
            .await
            .unwrap();
    }
    call.close(None).await.unwrap();
    gateway.ended_session("busy").await;
    let (recorded, _) = common::read_wav(&gateway.call_dir("busy").join("mixed.wav"));
    assert_eq!(recorded.len(), FRAMES * 320);
    assert!(
        (0..FRAMES).all(|i| recorded[i * 320..(i + 1) * 320] == frame(i)[..]),
        "the recording is not the audio sent"
    );
    let metrics = http(gateway.addr, "GET", "/metrics", None, b"").await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert_eq!(
        value_of(&text, "mediagate_listeners_cut_total"),
        1.0,
        "{text}"
    );
    gateway.stop().await;
}

const GUEST_KEY: &str = "a-guest-link-signing-key-0123456789abcdef";

/// Issues a guest link (admin): its id and token.
async fn guest_link(
    admin: SocketAddr,
    call_id: &str,
    scope: &str,
    ttl_secs: u64,
) -> (String, String) {
    let request = serde_json::json!({ "call_id": call_id, "scope": scope, "ttl_secs": ttl_secs });
    let reply = http(
        admin,
        "POST",
        "/guest-links",
        Some(TOKEN),
        request.to_string().as_bytes(),
    )
    .await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let link = reply.json();
    let token = link["token"].as_str().unwrap().to_owned();
    assert_eq!(link["url"], format!("/guest/{token}"));
    (link["id"].as_str().unwrap().to_owned(), token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_link_shows_one_call_until_it_expires_or_is_revoked() {
    use futures_util::StreamExt;
    let (gateway, admin) = gateway(|config| {
        config.admin.guest_key = Some(AdminToken(GUEST_KEY.to_owned()));
    })
    .await;
    let scratch = tempfile::tempdir().unwrap();
    let mut calls = Vec::new();
    for id in ["shown", "hidden"] {
        calls.push(tokio::spawn(mediagate::emulator::run(
            emulate(gateway.url(&format!("/ws?callId={id}")))
                .with_wav(sample("hello-16k.wav"))
                .with_dtmf("7@1.5".parse().unwrap())
                .with_transcript(transcript_script(scratch.path(), 4))
                .with_pacing(Pacing::Realtime),
        )));
    }
    listed(admin, "shown").await;
    listed(admin, "hidden").await;

    // Only the admin issues links, only for live calls, only for a day at most.
    let request = br#"{"call_id":"shown"}"#;
    assert_eq!(
        http(admin, "POST", "/guest-links", None, request)
            .await
            .status,
        401
    );
    let nobody = http(
        admin,
        "POST",
        "/guest-links",
        Some(TOKEN),
        br#"{"call_id":"nobody"}"#,
    )
    .await;
    assert_eq!(nobody.status, 404);
    let long = br#"{"call_id":"shown","ttl_secs":100000}"#;
    assert_eq!(
        http(admin, "POST", "/guest-links", Some(TOKEN), long)
            .await
            .status,
        422
    );

    let (_, watch) = guest_link(admin, "shown", "watch", 2).await;
    let (listen_id, listen) = guest_link(admin, "shown", "watch+listen", 600).await;

    // The page and the call it names; never another call.
    let page = http(admin, "GET", &format!("/guest/{watch}"), None, b"").await;
    assert_eq!(page.status, 200);
    let body = String::from_utf8_lossy(&page.body);
    assert!(
        body.contains(&format!("data-guest=\"/guest/{watch}/calls/shown\"")),
        "{body}"
    );
    assert!(body.contains("data-listen=\"0\""));
    let view = http(
        admin,
        "GET",
        &format!("/guest/{watch}/calls/shown"),
        None,
        b"",
    )
    .await;
    assert_eq!(view.status, 200);
    assert_eq!(view.json()["call_id"], "shown");
    assert!(
        view.json().get("transports").is_none(),
        "a guest sees no internals"
    );
    let other = http(
        admin,
        "GET",
        &format!("/guest/{watch}/calls/hidden"),
        None,
        b"",
    )
    .await;
    assert_eq!(other.status, 401);
    // Its token opens nothing of the admin API.
    assert_eq!(
        http(admin, "GET", "/calls", Some(&watch), b"").await.status,
        401
    );
    // Tampered: the same signature over another call.
    let parts: Vec<&str> = listen.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["call"] = "hidden".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    let tampered = http(
        admin,
        "GET",
        &format!("/guest/{forged}/calls/hidden"),
        None,
        b"",
    )
    .await;
    assert_eq!(tampered.status, 401);

    // Watching: only its call's events.
    let mut events =
        EventStream::open_at(admin, &format!("/guest/{listen}/calls/shown/events")).await;
    let mut kinds = Vec::new();
    while !kinds.contains(&"dtmf".to_owned()) {
        let (kind, data) = events.next().await.expect("the guest's stream ended");
        assert_eq!(data["call_id"], "shown", "{kind} {data}");
        kinds.push(kind);
    }
    // Listening: only with a link that says so.
    let watch_only = format!("ws://{admin}/guest/{watch}/calls/shown/listen");
    assert!(tokio_tungstenite::connect_async(watch_only).await.is_err());
    let (mut ears, _) =
        tokio_tungstenite::connect_async(format!("ws://{admin}/guest/{listen}/calls/shown/listen"))
            .await
            .unwrap();
    assert!(matches!(
        ears.next().await,
        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_)))
    ));

    // Revoked: refused at once, and what it holds open ends within a couple of seconds.
    let revoked = http(
        admin,
        "DELETE",
        &format!("/guest-links/{listen_id}"),
        Some(TOKEN),
        b"",
    )
    .await;
    assert_eq!(revoked.status, 204);
    let refused = http(
        admin,
        "GET",
        &format!("/guest/{listen}/calls/shown"),
        None,
        b"",
    )
    .await;
    assert_eq!(refused.status, 401);
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), ears.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("the listener was not closed: {other:?}"),
        }
    };
    assert_eq!(u16::from(close.unwrap().code), 1008);
    while events.next().await.is_some() {}

    // Expired: the two-second link.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = http(admin, "GET", &format!("/guest/{watch}"), None, b"").await;
    assert_eq!(expired.status, 401);
    assert!(
        expired.json()["error"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    for call in calls {
        call.await.unwrap().unwrap();
    }
    let metrics = http(gateway.addr, "GET", "/metrics", None, b"").await;
    let text = String::from_utf8(metrics.body).unwrap();
    for (reason, at_least) in [
        ("guest_wrong_call", 1.0),
        ("guest_invalid", 1.0),
        ("invalid", 1.0),
        ("guest_scope", 1.0),
        ("guest_revoked", 1.0),
        ("guest_expired", 1.0),
    ] {
        let n = value_of(
            &text,
            &format!("mediagate_admin_refused_total{{reason=\"{reason}\"}}"),
        );
        assert!(n >= at_least, "{reason}: {n}");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clips_play_by_name_and_text_is_spoken() {
    let clips = tempfile::tempdir().unwrap();
    let beep: Vec<i16> = (0..8_000)
        .map(|i| ((i * 91) % 16_000 - 8_000) as i16)
        .collect();
    std::fs::write(clips.path().join("beep.wav"), wav_of(&beep)).unwrap();
    std::fs::write(clips.path().join("notes.txt"), "not a clip").unwrap();
    let dir = clips.path().to_owned();
    let (gateway, admin) = gateway(move |config| config.admin.clips_dir = Some(dir)).await;
    let listing = http(admin, "GET", "/clips", Some(TOKEN), b"").await;
    assert_eq!(listing.json(), serde_json::json!(["beep"]));
    let scratch = tempfile::tempdir().unwrap();
    let heard = scratch.path().join("heard.wav");
    let call = tokio::spawn(mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=prompted"))
            .with_wav(sample("hello-16k.wav"))
            .with_pacing(Pacing::Realtime)
            .with_record_outbound(&heard),
    ));
    listed(admin, "prompted").await;
    let play = |body: &'static str| {
        http(
            admin,
            "POST",
            "/calls/prompted/play",
            Some(TOKEN),
            body.as_bytes(),
        )
    };
    let played = play(r#"{"clip":"beep"}"#).await;
    assert_eq!(
        played.status,
        200,
        "{}",
        String::from_utf8_lossy(&played.body)
    );
    assert_eq!(played.json()["clip_ms"], 500);
    for (body, status) in [
        (r#"{"clip":"../beep"}"#, 404),
        (r#"{"clip":"notes"}"#, 404),
        (r#"{}"#, 422),
        (r#"{"clip":"beep","text":"hi"}"#, 422),
        (r#"{"volume":11}"#, 422),
        (r#"{"text":"   "}"#, 422),
    ] {
        let reply = play(body).await;
        assert_eq!(
            reply.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    let spoken = play(r#"{"text":"Your call is being monitored."}"#).await;
    assert_eq!(
        spoken.status,
        200,
        "{}",
        String::from_utf8_lossy(&spoken.body)
    );
    let spoken_ms = spoken.json()["clip_ms"].as_u64().unwrap();
    assert!(
        (800..5_000).contains(&spoken_ms),
        "{spoken_ms} ms of speech"
    );
    call.await.unwrap().unwrap();
    // The clip first, sample for sample; then the speech.
    let (heard, _) = common::read_wav(&heard);
    assert!(heard.len() >= beep.len(), "{} samples heard", heard.len());
    assert!(
        heard[..beep.len()] == beep[..],
        "the clip changed on its way"
    );
    let speech = &heard[beep.len()..];
    assert!(
        speech.iter().any(|&s| s.unsigned_abs() > 1_000),
        "no speech heard"
    );
    gateway.stop().await;
}

/// One raw HTTP/1.1 request (its head lines given whole); the status.
async fn raw_status(addr: SocketAddr, head: &str, body: &[u8]) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{head}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response[9..12]).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_pages_of_other_origins_and_rebound_names_get_nothing() {
    // Without a token (loopback only): a page's script on another origin, or a DNS name
    // rebound to 127.0.0.1, is refused; the operator's own requests are served.
    let open = TestGateway::start_isolated(|_| {}).await;
    let admin = open.admin.unwrap();
    assert_eq!(
        raw_status(admin, "GET /calls HTTP/1.1\r\nhost: 127.0.0.1", b"").await,
        200
    );
    assert_eq!(
        raw_status(admin, "GET /calls HTTP/1.1\r\nhost: localhost:9090", b"").await,
        200
    );
    assert_eq!(
        raw_status(
            admin,
            "GET /calls HTTP/1.1\r\nhost: rebound.example:9090",
            b""
        )
        .await,
        403
    );
    let evil = "POST /drain HTTP/1.1\r\nhost: 127.0.0.1:9090\r\norigin: https://evil.example";
    assert_eq!(raw_status(admin, evil, b"").await, 403);
    assert_eq!(
        raw_status(admin, "GET /readyz HTTP/1.1\r\nhost: 127.0.0.1", b"").await,
        200
    );
    open.stop().await;

    // With a token: another origin is refused even with a valid session or token, and the
    // sign-in form works from the dashboard's own origin only.
    let (gateway, admin) = gateway(|_| {}).await;
    let host = format!("127.0.0.1:{}", admin.port());
    let forged = format!(
        "POST /drain HTTP/1.1\r\nhost: {host}\r\norigin: http://localhost:{}\r\n\
         authorization: Bearer {TOKEN}",
        admin.port()
    );
    assert_eq!(raw_status(admin, &forged, b"").await, 403);
    let form = format!("token={TOKEN}");
    let cross = format!(
        "POST / HTTP/1.1\r\nhost: {host}\r\norigin: https://evil.example\r\n\
         content-type: application/x-www-form-urlencoded"
    );
    assert_eq!(raw_status(admin, &cross, form.as_bytes()).await, 403);
    let own = format!(
        "POST / HTTP/1.1\r\nhost: {host}\r\norigin: http://{host}\r\n\
         content-type: application/x-www-form-urlencoded"
    );
    assert_eq!(raw_status(admin, &own, form.as_bytes()).await, 303);
    assert_eq!(raw_status(admin, &own, b"token=wrong").await, 401);
    assert_eq!(
        http(admin, "GET", "/readyz", None, b"").await.status,
        200,
        "not drained"
    );
    let metrics = http(gateway.addr, "GET", "/metrics", None, b"").await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert_eq!(
        value_of(
            &text,
            "mediagate_admin_refused_total{reason=\"cross_origin\"}"
        ),
        2.0
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_holds_few_streams_and_they_end_with_the_call() {
    let (gateway, admin) = gateway(|config| {
        config.admin.guest_key = Some(AdminToken(GUEST_KEY.to_owned()));
    })
    .await;
    let call = tokio::spawn(mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=brief"))
            .with_wav(sample("alice-16k.wav"))
            .with_pacing(Pacing::Realtime),
    ));
    listed(admin, "brief").await;
    let (_, token) = guest_link(admin, "brief", "watch", 600).await;
    let path = format!("/guest/{token}/calls/brief/events");
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(EventStream::open_at(admin, &path).await);
    }
    // A fifth: refused while four are open.
    assert_eq!(http(admin, "GET", &path, None, b"").await.status, 429);
    call.await.unwrap().unwrap();
    // The call ended: each stream says so, then ends.
    for mut stream in streams {
        let mut last = None;
        while let Some((kind, _)) = stream.next().await {
            last = Some(kind);
        }
        assert_eq!(last.as_deref(), Some("call_ended"));
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_guest_link_stays_revoked_after_a_restart() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().to_owned(),
        ..Config::default()
    };
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.token = Some(AdminToken(TOKEN.to_owned()));
    config.admin.guest_key = Some(AdminToken(GUEST_KEY.to_owned()));
    config.pipeline.processors = vec!["wav".to_owned()];
    let run = |config: Config| async move {
        let server = Server::bind(config, mediagate::registry()).await.unwrap();
        let (addr, admin) = (server.local_addr(), server.admin_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        (addr, admin, stop, task)
    };

    let (addr, admin, stop, task) = run(config.clone()).await;
    let call = tokio::spawn(mediagate::emulator::run(
        emulate(format!("ws://{addr}/ws?callId=kept"))
            .with_wav(sample("alice-16k.wav"))
            .with_pacing(Pacing::Realtime),
    ));
    listed(admin, "kept").await;
    let (id, token) = guest_link(admin, "kept", "watch", 600).await;
    let (_, other) = guest_link(admin, "kept", "watch", 600).await;
    let bad = http(admin, "DELETE", "/guest-links/..%2Fx", Some(TOKEN), b"").await;
    assert_eq!(bad.status, 404);
    let revoked = http(
        admin,
        "DELETE",
        &format!("/guest-links/{id}"),
        Some(TOKEN),
        b"",
    )
    .await;
    assert_eq!(revoked.status, 204);
    call.await.unwrap().unwrap();
    let _ = stop.send(());
    task.await.unwrap().unwrap();

    // The same data dir, a new process: the revoked link is still refused, the other is not.
    let (_, admin, stop, task) = run(config).await;
    let page = http(admin, "GET", &format!("/guest/{token}"), None, b"").await;
    assert_eq!(page.status, 401);
    assert!(page.json()["error"].as_str().unwrap().contains("revoked"));
    let kept = http(admin, "GET", &format!("/guest/{other}"), None, b"").await;
    assert_eq!(kept.status, 200);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
