//! The sample through a real gateway: the emulator streams a recording into a call, and a
//! WebSocket server of the test's own receives the same samples, byte for byte.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::Path;

use futures_util::StreamExt;
use mediagate::emulator::{EmulateConfig, Pacing};
use mediagate::testing::Gateway;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calls_audio_arrives_at_the_other_socket_byte_for_byte() {
    // The other end: accepts one connection and keeps what it is sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("ws://{}", listener.local_addr().unwrap());
    let received = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut header = None;
        let mut pcm = Vec::new();
        while let Some(Ok(message)) = socket.next().await {
            match message {
                Message::Text(text) => header = Some(text.to_string()),
                Message::Binary(bytes) => pcm.extend_from_slice(&bytes),
                Message::Close(_) => break,
                _ => {}
            }
        }
        (header, pcm)
    });

    let mut registry = mediagate::registry();
    forward_audio::register(&mut registry);
    let gateway = Gateway::start(registry, |config| {
        config.pipeline.processors = vec!["forward".to_owned()];
        config
            .pipeline
            .settings
            .insert("forward".to_owned(), serde_json::json!({ "url": target }));
    })
    .await;
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hello-16k.wav");
    mediagate::emulator::run(
        EmulateConfig::new(gateway.url("/ws?callId=forwarded"))
            .with_pacing(Pacing::Fast)
            .with_wav(&clip),
    )
    .await
    .unwrap();
    let (header, pcm) = tokio::time::timeout(std::time::Duration::from_secs(10), received)
        .await
        .unwrap()
        .unwrap();
    gateway.stop().await;

    let header: serde_json::Value = serde_json::from_str(&header.unwrap()).unwrap();
    assert_eq!(header["call_id"], "forwarded");
    assert_eq!(header["sample_rate_hz"], 16_000);
    let samples: Vec<i16> = hound::WavReader::open(&clip)
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect();
    let sent: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    assert!(
        pcm == sent,
        "{} bytes forwarded, {} sent",
        pcm.len(),
        sent.len()
    );
}
