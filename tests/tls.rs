//! TLS end to end through real sockets: a gateway serving wss:// with a certificate generated at
//! test time records a call streamed over a rustls client, and refuses plain ws://.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{TestGateway, assert_wav_header_consistent, read_wav};
use futures_util::SinkExt;
use mediagate::server::TlsConfig;
use rustls::pki_types::ServerName;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn vector(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/protocol/tests/vectors");
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// A self-signed certificate for localhost / 127.0.0.1, written as PEM files to a temp dir.
pub(crate) struct SelfSigned {
    dir: tempfile::TempDir,
    pub(crate) cert_der: rustls::pki_types::CertificateDer<'static>,
}

impl SelfSigned {
    pub(crate) fn generate() -> Self {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), signing_key.serialize_pem()).unwrap();
        SelfSigned {
            dir,
            cert_der: cert.der().clone(),
        }
    }

    pub(crate) fn tls_config(&self) -> TlsConfig {
        TlsConfig {
            cert: self.dir.path().join("cert.pem"),
            key: self.dir.path().join("key.pem"),
        }
    }

    /// A client that trusts this certificate only.
    fn connector(&self) -> tokio_rustls::TlsConnector {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone()).unwrap();
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_call_is_recorded_and_plain_ws_is_refused() {
    let cert = SelfSigned::generate();
    let gateway = TestGateway::start_with(|c| c.tls = Some(cert.tls_config())).await;
    let port = gateway.addr.port();

    // TCP to 127.0.0.1, TLS for "localhost" (verified against the generated cert), then WebSocket.
    let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let tls = cert
        .connector()
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let url = format!("wss://localhost:{port}/ws?callId=tls-call");
    let (mut client, response) = tokio_tungstenite::client_async(url.as_str(), tls)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);

    client
        .send(Message::text(vector("media-01-audio-metadata-16k.json")))
        .await
        .unwrap();
    let frame = vector("media-03-audio-data-mixed.json");
    for _ in 0..50 {
        client.send(Message::text(frame.clone())).await.unwrap();
    }
    client
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await
        .unwrap();

    let session = gateway.ended_session("tls-call").await;
    let transport = &session["transports"][0];
    assert_eq!(transport["end"]["reason"], "client_close", "{session}");
    assert_eq!(transport["end"]["code"], 1000, "{session}");
    assert_eq!(transport["frames_received"], 50, "{session}");
    assert_eq!(transport["bad_messages"]["total"], 0, "{session}");
    let path = gateway.call_dir("tls-call").join("mixed.wav");
    assert_wav_header_consistent(&path);
    let (samples, rate) = read_wav(&path);
    assert_eq!((samples.len(), rate), (50 * 320, 16_000));

    // Plain ws:// to the TLS port: the TLS handshake fails, so no WebSocket and no call.
    let plain = format!("ws://127.0.0.1:{port}/ws?callId=plain-call");
    let attempt = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(plain.as_str()),
    )
    .await
    .expect("plain ws:// to the TLS port neither failed nor succeeded within 10 s");
    assert!(
        attempt.is_err(),
        "plain ws:// to the TLS port was accepted: {:?}",
        attempt.map(|(_, response)| response)
    );
    assert!(!gateway.call_dir("plain-call").exists());

    gateway.stop().await;
}

/// `mediagate emulate` streams to `wss://` as ACS does: trusting the gateway's certificate
/// with `--trust`, and refusing it (no call) without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_streams_over_wss_to_a_gateway_it_trusts_only() {
    let cert = SelfSigned::generate();
    let gateway = TestGateway::start_with(|c| c.tls = Some(cert.tls_config())).await;
    let port = gateway.addr.port();
    let emulate = |call: &str, trust: bool| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mediagate"));
        command.args([
            "emulate",
            "--url",
            &format!("wss://localhost:{port}/ws?callId={call}"),
            "--wav",
            common::sample("alice-16k.wav").to_str().unwrap(),
            "--fast",
        ]);
        if trust {
            command.arg("--trust").arg(cert.dir.path().join("cert.pem"));
        }
        command.output()
    };
    let untrusted = emulate("untrusted", false).await.unwrap();
    assert!(!untrusted.status.success());
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(
        stderr.contains("cannot connect") && stderr.contains("certificate"),
        "{stderr}"
    );
    assert!(!gateway.call_dir("untrusted").exists());

    let trusted = emulate("trusted", true).await.unwrap();
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    gateway.ended_session("trusted").await;
    let recorded = read_wav(&gateway.call_dir("trusted").join("mixed.wav")).0;
    assert_eq!(recorded, read_wav(&common::sample("alice-16k.wav")).0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_serves_https_and_refuses_plain_http() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cert = SelfSigned::generate();
    let token = "an-admin-token-over-tls-0123456789";
    let tls_config = cert.tls_config();
    let gateway = TestGateway::start_with(move |c| {
        c.admin.tls = Some(tls_config);
        c.admin.token = Some(mediagate::server::AdminToken(token.to_owned()));
    })
    .await;
    let admin = gateway.admin.unwrap();
    let tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    let mut tls = cert
        .connector()
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let request = format!(
        "GET /calls HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\n\
         connection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ = tls.read_to_string(&mut response).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("[]"), "{response}");

    // Plain HTTP to it: no answer but a failed handshake.
    let mut plain = tokio::net::TcpStream::connect(admin).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "plain HTTP was answered"
    );
    gateway.stop().await;
}
