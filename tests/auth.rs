//! Authentication of the upgrade, end to end through real sockets: tokens signed with an RSA key
//! generated at test time (the `openssl` CLI), the OpenID configuration and JWKS served by a
//! tiny HTTP server in the test, and a real gateway that must answer 401 (and create nothing)
//! for every bad credential.

#![allow(clippy::unwrap_used)] // a panic in a test helper is a failed assertion

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::TestGateway;
use futures_util::SinkExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mediagate::server::{AuthConfig, AuthMode, Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const AUDIENCE: &str = "0d0f3c5e-1111-2222-3333-444455556666";
const ISSUER: &str = "https://acscallautomation.communication.azure.com";

fn vector(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/protocol/tests/vectors");
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// An RSA key pair made by the `openssl` CLI.
struct TestKey {
    /// PKCS#1 DER, to sign with.
    der: Vec<u8>,
    /// The public key as PEM (the HS256 confusion attack uses it as an HMAC secret).
    public_pem: Vec<u8>,
    /// The modulus, base64url.
    n: String,
}

impl TestKey {
    fn generate() -> TestKey {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("key.pem");
        let pem = pem.to_str().unwrap();
        let der = dir.path().join("key.der");
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().unwrap();
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
            out.stdout
        };
        run(&["genrsa", "-out", pem, "2048"]);
        let der_path = der.to_str().unwrap();
        run(&[
            "rsa",
            "-in",
            pem,
            "-outform",
            "DER",
            "-traditional",
            "-out",
            der_path,
        ]);
        let public_pem = run(&["rsa", "-in", pem, "-pubout"]);
        let modulus = String::from_utf8(run(&["rsa", "-in", pem, "-noout", "-modulus"])).unwrap();
        let hex = modulus.trim().trim_start_matches("Modulus=");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        TestKey {
            der: std::fs::read(der).unwrap(),
            public_pem,
            n: URL_SAFE_NO_PAD.encode(bytes),
        }
    }

    fn jwk(&self, kid: &str) -> serde_json::Value {
        serde_json::json!({"kty": "RSA", "use": "sig", "kid": kid, "n": self.n, "e": "AQAB"})
    }

    fn sign(&self, kid: &str, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(&self.der)).unwrap()
    }
}

/// Two keys, made once per test binary.
fn keys() -> &'static (TestKey, TestKey) {
    static KEYS: OnceLock<(TestKey, TestKey)> = OnceLock::new();
    KEYS.get_or_init(|| (TestKey::generate(), TestKey::generate()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims as ACS sends them: our audience, ACS's issuer, valid for five minutes.
fn claims() -> serde_json::Value {
    serde_json::json!({"aud": AUDIENCE, "iss": ISSUER, "nbf": now() - 5, "iat": now() - 5, "exp": now() + 300})
}

fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut claims = claims();
    claims[key] = value;
    claims
}

/// Serves `/openid` (naming `/jwks`) and `/jwks` over plain HTTP on 127.0.0.1; `/jwks` answers
/// 503 while `failing`. Counts the JWKS requests.
struct KeyServer {
    addr: SocketAddr,
    jwks: Arc<Mutex<Option<String>>>,
    fetches: Arc<AtomicUsize>,
}

impl KeyServer {
    async fn start(keys: &[(&str, &TestKey)]) -> KeyServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let jwks = Arc::new(Mutex::new(None));
        let fetches = Arc::new(AtomicUsize::new(0));
        let server = KeyServer {
            addr,
            jwks: Arc::clone(&jwks),
            fetches: Arc::clone(&fetches),
        };
        server.serve(keys);
        let openid =
            serde_json::json!({"issuer": ISSUER, "jwks_uri": format!("http://{addr}/jwks")})
                .to_string();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let jwks = Arc::clone(&jwks);
                let fetches = Arc::clone(&fetches);
                let openid = openid.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&request);
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let (status, body) = match path.as_str() {
                        "/openid" => ("200 OK", Some(openid)),
                        "/jwks" => {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            let jwks = jwks.lock().unwrap().clone();
                            match jwks {
                                Some(jwks) => ("200 OK", Some(jwks)),
                                None => ("503 Service Unavailable", None),
                            }
                        }
                        _ => ("404 Not Found", None),
                    };
                    let body = body.unwrap_or_default();
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        server
    }

    fn serve(&self, keys: &[(&str, &TestKey)]) {
        let keys: Vec<_> = keys.iter().map(|(kid, key)| key.jwk(kid)).collect();
        *self.jwks.lock().unwrap() = Some(serde_json::json!({ "keys": keys }).to_string());
    }

    fn fail(&self) {
        *self.jwks.lock().unwrap() = None;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn auth(&self) -> AuthConfig {
        AuthConfig {
            mode: AuthMode::Acs,
            audience: Some(AUDIENCE.to_owned()),
            openid_config_url: format!("http://{}/openid", self.addr),
            ..AuthConfig::default()
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/ws?callId=…` with these extra headers: the socket, or the HTTP refusal.
async fn open(
    gateway: &TestGateway,
    path_and_query: &str,
    authorization: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::http::Response<Option<Vec<u8>>>> {
    let mut request = gateway.url(path_and_query).into_client_request().unwrap();
    if let Some(value) = authorization {
        request
            .headers_mut()
            .insert("authorization", value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, response)) => {
            assert_eq!(response.status(), 101);
            Ok(socket)
        }
        Err(WsError::Http(response)) => Err(*response),
        Err(e) => panic!("upgrade failed other than by an HTTP answer: {e}"),
    }
}

/// Streams a short call and closes it; the call must then be recorded.
async fn stream_call(
    gateway: &TestGateway,
    mut socket: Socket,
    call_id: &str,
) -> serde_json::Value {
    socket
        .send(Message::text(vector("media-01-audio-metadata-16k.json")))
        .await
        .unwrap();
    let frame = vector("media-03-audio-data-mixed.json");
    for _ in 0..5 {
        socket.send(Message::text(frame.clone())).await.unwrap();
    }
    socket.close(None).await.unwrap();
    let session = gateway.ended_session(call_id).await;
    assert_eq!(session["transports"][0]["frames_received"], 5, "{session}");
    session
}

/// Asserts the upgrade was refused with a bare 401 and left nothing on disk.
async fn assert_refused(gateway: &TestGateway, call_id: &str, authorization: Option<&str>) {
    let refused = open(gateway, &format!("/ws?callId={call_id}"), authorization)
        .await
        .map(|_| ())
        .expect_err(&format!("{call_id}: upgrade accepted"));
    assert_eq!(refused.status(), 401, "{call_id}");
    assert_eq!(refused.headers()["www-authenticate"], "Bearer", "{call_id}");
    assert!(
        refused.body().as_deref().unwrap_or_default().is_empty(),
        "{call_id}: the body tells the client something: {:?}",
        refused.body()
    );
    assert!(
        !gateway.call_dir(call_id).exists(),
        "{call_id}: folder created"
    );
}

/// `GET /metrics`.
async fn metrics(gateway: &TestGateway) -> String {
    let mut tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    text
}

fn refused_count(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("mediagate_auth_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// The call folders under the data dir (not its hidden hash chain, `.chain`).
fn call_folders(gateway: &TestGateway) -> Vec<String> {
    std::fs::read_dir(gateway.data_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acs_tokens_are_checked_before_the_upgrade() {
    let (key, other) = keys();
    let key_server = KeyServer::start(&[("k1", key)]).await;
    let auth = key_server.auth();
    let gateway = TestGateway::start_with(move |c| c.auth = auth).await;
    assert_eq!(key_server.fetches(), 1, "keys fetched at start-up");

    let bearer = |token: String| format!("Bearer {token}");
    let valid = bearer(key.sign("k1", &claims()));
    let socket = open(&gateway, "/ws?callId=valid", Some(&valid))
        .await
        .unwrap();
    stream_call(&gateway, socket, "valid").await;

    let encode = |json: serde_json::Value| URL_SAFE_NO_PAD.encode(json.to_string());
    let alg_none = format!(
        "{}.{}.",
        encode(serde_json::json!({"alg": "none", "typ": "JWT", "kid": "k1"})),
        encode(claims())
    );
    let hs256_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let secret = EncodingKey::from_secret(&key.public_pem);
        jsonwebtoken::encode(&header, &claims(), &secret).unwrap()
    };
    let cases = [
        (
            "expired",
            Some(bearer(key.sign("k1", &with("exp", (now() - 300).into())))),
        ),
        (
            "not_yet_valid",
            Some(bearer(key.sign("k1", &with("nbf", (now() + 300).into())))),
        ),
        (
            "audience",
            Some(bearer(
                key.sign("k1", &with("aud", "another-resource".into())),
            )),
        ),
        (
            "issuer",
            Some(bearer(
                key.sign("k1", &with("iss", "https://issuer.invalid".into())),
            )),
        ),
        ("signature", Some(bearer(other.sign("k1", &claims())))),
        ("algorithm", Some(bearer(alg_none))),
        ("algorithm", Some(bearer(hs256_with_public_key))),
        ("missing", None),
        ("malformed", Some("Bearer not.a.jwt".to_owned())),
        ("malformed", Some("Basic dXNlcjpwYXNz".to_owned())),
    ];
    for (i, (reason, authorization)) in cases.iter().enumerate() {
        assert_refused(
            &gateway,
            &format!("refused-{i}-{reason}"),
            authorization.as_deref(),
        )
        .await;
    }
    let text = metrics(&gateway).await;
    for (reason, expected) in [
        ("expired", 1),
        ("not_yet_valid", 1),
        ("audience", 1),
        ("issuer", 1),
        ("signature", 1),
        ("algorithm", 2),
        ("missing", 1),
        ("malformed", 2),
    ] {
        assert_eq!(refused_count(&text, reason), expected, "{reason}: {text}");
    }
    assert_eq!(key_server.fetches(), 1, "no refetch for any of these");

    // Key rotation: a token names a key published since start-up; one refetch finds it.
    key_server.serve(&[("k1", key), ("k2", other)]);
    let rotated = bearer(other.sign("k2", &claims()));
    let socket = open(&gateway, "/ws?callId=rotated", Some(&rotated))
        .await
        .unwrap();
    stream_call(&gateway, socket, "rotated").await;
    assert_eq!(key_server.fetches(), 2);

    let mut folders = call_folders(&gateway);
    folders.sort();
    assert_eq!(folders, ["rotated", "valid"]);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_is_refused_when_the_refetch_fails() {
    let (key, other) = keys();
    let key_server = KeyServer::start(&[("k1", key)]).await;
    let auth = key_server.auth();
    let gateway = TestGateway::start_with(move |c| c.auth = auth).await;
    key_server.fail();
    let token = format!("Bearer {}", other.sign("k2", &claims()));
    assert_refused(&gateway, "unknown-kid", Some(&token)).await;
    assert_eq!(key_server.fetches(), 2, "one refetch was tried");
    assert_eq!(refused_count(&metrics(&gateway).await, "unknown_key"), 1);
    // Within the minute, another try does not fetch again.
    assert_refused(&gateway, "unknown-kid-again", Some(&token)).await;
    assert_eq!(key_server.fetches(), 2, "at most one refetch a minute");
    // The keys already known still work.
    let valid = format!("Bearer {}", key.sign("k1", &claims()));
    let socket = open(&gateway, "/ws?callId=known", Some(&valid))
        .await
        .unwrap();
    stream_call(&gateway, socket, "known").await;
    gateway.stop().await;
}

/// Everything the gateway logged, captured for the whole test binary.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&logs);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&writer)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every file under `dir`, read as text.
fn all_text_under(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            text += &all_text_under(&path);
        } else {
            text += &String::from_utf8_lossy(&std::fs::read(&path).unwrap());
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_mode_takes_a_header_or_a_query_and_never_writes_the_secret() {
    let logs = captured_logs();
    const SECRET: &str = "correct-horse-battery-staple-42";
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let gateway = TestGateway::start_with(move |c| {
        c.auth = AuthConfig {
            mode: AuthMode::Secret,
            secret_file: Some(secret_file),
            ..AuthConfig::default()
        };
    })
    .await;

    let header = format!("Bearer {SECRET}");
    let socket = open(&gateway, "/ws?callId=by-header", Some(&header))
        .await
        .unwrap();
    stream_call(&gateway, socket, "by-header").await;
    let by_query = format!("/ws?callId=by-query&token={SECRET}&sampleRate=16000");
    let socket = open(&gateway, &by_query, None).await.unwrap();
    let session = stream_call(&gateway, socket, "by-query").await;
    assert!(
        !session.to_string().contains("token"),
        "the credential is kept in the call's query: {session}"
    );

    assert_refused(
        &gateway,
        "wrong-header",
        Some("Bearer correct-horse-battery-staple-43"),
    )
    .await;
    let refused = open(&gateway, "/ws?callId=wrong-query&token=nope", None)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(refused.status(), 401);
    assert!(!gateway.call_dir("wrong-query").exists());
    assert_refused(&gateway, "no-secret", None).await;
    let text = metrics(&gateway).await;
    assert_eq!(refused_count(&text, "secret"), 2, "{text}");
    assert_eq!(refused_count(&text, "missing"), 1, "{text}");

    let data_dir = gateway.stop().await;
    let written = all_text_under(data_dir.path());
    assert!(written.contains("by-query"), "session files were read");
    assert!(!written.contains(SECRET), "the secret is in the call files");
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logged.contains("upgrade refused"),
        "refusals are logged: {logged}"
    );
    assert!(
        !logged.contains(SECRET),
        "the secret is in the logs: {logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_address_without_auth_refuses_to_start_unless_opted_out() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "0.0.0.0:0".parse().unwrap(),
        data_dir: data_dir.path().to_owned(),
        ..Config::default()
    };
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.pipeline.processors.clear();
    let err = Server::bind(config.clone(), mediagate::registry())
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    for needle in [
        "auth.mode",
        "not a loopback address",
        "mode = \"acs\"",
        "audience",
        "mode = \"secret\"",
        "[auth] allow_unauthenticated_public = true",
    ] {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
    config.auth.allow_unauthenticated_public = true;
    let server = Server::bind(config, mediagate::registry()).await.unwrap();
    assert!(server.local_addr().ip().is_unspecified());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acs_mode_without_an_audience_refuses_to_start() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().to_owned(),
        ..Config::default()
    };
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.pipeline.processors.clear();
    config.auth.mode = AuthMode::Acs;
    let err = Server::bind(config, mediagate::registry())
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("auth.audience"), "{err}");
}
