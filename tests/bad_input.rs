//! A gateway survives anything a client throws at it: every bad vector, oversize and binary
//! messages, floods, silence and abrupt disconnects. Files stay valid and other calls unharmed.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{TestGateway, assert_wav_header_consistent, emulate, read_wav, sample};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Client {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

fn vector(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/protocol/tests/vectors");
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// Reads until the gateway closes; returns its close code.
async fn close_code(client: &mut Client) -> Option<u16> {
    let wait = async {
        while let Some(message) = client.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("gateway never closed")
}

const BAD_VECTORS: [&str; 8] = [
    "bad-01-not-json.txt",
    "bad-02-unknown-kind.json",
    "bad-03-bad-base64.json",
    "bad-04-odd-byte-count.json",
    "bad-05-missing-data.json",
    "bad-06-metadata-bad-rate.json",
    "bad-07-truncated.json",
    "bad-08-wrong-types.json",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_skipped_then_oversize_closes_with_1009() {
    let gateway = TestGateway::start_with(|c| c.limits.max_message_bytes = 64 * 1024).await;
    let mut client = connect(&gateway.url("/ws?callId=hostile")).await;
    let frame = vector("media-03-audio-data-mixed.json");
    client
        .send(Message::text(vector("media-01-audio-metadata-16k.json")))
        .await
        .unwrap();
    client.send(Message::text(frame.clone())).await.unwrap();
    for name in BAD_VECTORS {
        client.send(Message::text(vector(name))).await.unwrap();
    }
    // A binary frame holding JSON is a message like any other; binary garbage is bad.
    client
        .send(Message::binary(frame.clone().into_bytes()))
        .await
        .unwrap();
    client
        .send(Message::binary(vec![0xff, 0xfe, 0x00, 0x01]))
        .await
        .unwrap();
    // Audio before metadata is handled elsewhere; here, a frame after the bad ones still counts.
    client
        .send(Message::text(vector("media-09-audio-data-compact.json")))
        .await
        .unwrap();
    client
        .send(Message::text("x".repeat(65 * 1024)))
        .await
        .unwrap();
    assert_eq!(close_code(&mut client).await, Some(1009));

    let session = gateway.ended_session("hostile").await;
    let transport = &session["transports"][0];
    assert_eq!(transport["end"]["reason"], "policy_close");
    assert_eq!(transport["end"]["code"], 1009);
    assert_eq!(transport["frames_received"], 3);
    let bad = &transport["bad_messages"];
    assert_eq!(bad["total"], 9);
    for class in [
        "not_json",
        "unknown_kind",
        "invalid_base64",
        "partial_sample",
        "missing_field",
        "invalid_field",
        "truncated",
        "malformed",
        "binary_not_text",
    ] {
        assert_eq!(bad["by_class"][class], 1, "{class}: {bad}");
    }
    // mixed.wav holds exactly the three good frames (the 09 frame names a participant: own track).
    let dir = gateway.call_dir("hostile");
    assert_wav_header_consistent(&dir.join("mixed.wav"));
    assert_eq!(read_wav(&dir.join("mixed.wav")).0.len() % 320, 0);

    // The gateway is unharmed: a new call still records correctly.
    mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=after")).with_wav(sample("hello-16k.wav")),
    )
    .await
    .unwrap();
    gateway.ended_session("after").await;
    assert!(
        read_wav(&gateway.call_dir("after").join("mixed.wav")).0
            == read_wav(&sample("hello-16k.wav")).0
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abrupt_disconnect_leaves_valid_wav_and_says_so() {
    let gateway = TestGateway::start().await;
    let mut client = connect(&gateway.url("/ws?callId=dropped")).await;
    client
        .send(Message::text(vector("media-01-audio-metadata-16k.json")))
        .await
        .unwrap();
    let frame = vector("media-03-audio-data-mixed.json");
    for _ in 0..100 {
        client.send(Message::text(frame.clone())).await.unwrap();
    }
    client.flush().await.unwrap();
    // Drop the TCP stream mid-call: no close frame.
    let tcp = client.into_inner();
    drop(tcp);

    let session = gateway.ended_session("dropped").await;
    let transport = &session["transports"][0];
    assert_eq!(transport["end"]["reason"], "abrupt_disconnect");
    assert_eq!(transport["frames_received"], 100);
    let path = gateway.call_dir("dropped").join("mixed.wav");
    assert_wav_header_consistent(&path);
    let (samples, rate) = read_wav(&path);
    assert_eq!(rate, 16_000);
    assert_eq!(samples.len(), 100 * 320);

    mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=next")).with_wav(sample("bob-16k.wav")),
    )
    .await
    .unwrap();
    gateway.ended_session("next").await;
    assert!(
        read_wav(&gateway.call_dir("next").join("mixed.wav")).0
            == read_wav(&sample("bob-16k.wav")).0
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_close_with_the_fitting_code() {
    let gateway = TestGateway::start_with(|c| c.limits.max_consecutive_bad_messages = 20).await;
    // Not JSON, over and over: invalid payload.
    let mut client = connect(&gateway.url("/ws?callId=flood-json")).await;
    client
        .send(Message::text(vector("media-01-audio-metadata-16k.json")))
        .await
        .unwrap();
    for _ in 0..25 {
        if client.send(Message::text("{not json")).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut client).await, Some(1007));
    // Unknown kinds, over and over: unsupported data.
    let mut client = connect(&gateway.url("/ws?callId=flood-kind")).await;
    client
        .send(Message::text(vector("media-01-audio-metadata-16k.json")))
        .await
        .unwrap();
    for _ in 0..25 {
        if client
            .send(Message::text(vector("bad-02-unknown-kind.json")))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(close_code(&mut client).await, Some(1003));
    let session = gateway.ended_session("flood-kind").await;
    assert_eq!(session["transports"][0]["end"]["code"], 1003);
    assert_eq!(
        session["transports"][0]["bad_messages"]["by_class"]["unknown_kind"],
        20
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_with_1008() {
    let gateway = TestGateway::start_with(|c| {
        c.limits.first_message_timeout_secs = 1;
        c.limits.idle_timeout_secs = 1;
    })
    .await;
    let mut never_speaks = connect(&gateway.url("/ws")).await;
    assert_eq!(close_code(&mut never_speaks).await, Some(1008));
    let mut goes_quiet = connect(&gateway.url("/ws?callId=quiet")).await;
    goes_quiet
        .send(Message::text(vector("media-01-audio-metadata-16k.json")))
        .await
        .unwrap();
    goes_quiet
        .send(Message::text(vector("media-03-audio-data-mixed.json")))
        .await
        .unwrap();
    assert_eq!(close_code(&mut goes_quiet).await, Some(1008));
    let session = gateway.ended_session("quiet").await;
    assert_eq!(session["transports"][0]["end"]["reason"], "policy_close");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_before_metadata_uses_the_default_format_and_is_flagged() {
    let gateway = TestGateway::start().await;
    let mut client = connect(&gateway.url("/ws?callId=early")).await;
    for _ in 0..10 {
        client
            .send(Message::text(vector("media-03-audio-data-mixed.json")))
            .await
            .unwrap();
    }
    client.close(None).await.unwrap();
    let session = gateway.ended_session("early").await;
    assert_eq!(session["transports"][0]["frames_before_metadata"], 10);
    assert_eq!(session["transports"][0]["format"]["sample_rate_hz"], 16_000);
    let (samples, rate) = read_wav(&gateway.call_dir("early").join("mixed.wav"));
    assert_eq!((samples.len(), rate), (3_200, 16_000));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_live_calls_with_1001_and_finalizes_them() {
    let gateway = TestGateway::start().await;
    let mut client = connect(&gateway.url("/ws?callId=live")).await;
    client
        .send(Message::text(vector("media-01-audio-metadata-16k.json")))
        .await
        .unwrap();
    for _ in 0..50 {
        client
            .send(Message::text(vector("media-03-audio-data-mixed.json")))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let code = tokio::spawn(async move { close_code(&mut client).await });
    // Let the gateway read the frames, then shut it down under the live call.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let data_dir = gateway.stop().await;
    assert_eq!(code.await.unwrap(), Some(1001));
    let dir = data_dir.path().join("live");
    let session: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("session.json")).unwrap()).unwrap();
    assert_eq!(session["status"], "ended");
    assert_eq!(session["transports"][0]["end"]["reason"], "server_shutdown");
    assert_wav_header_consistent(&dir.join("mixed.wav"));
    assert_eq!(read_wav(&dir.join("mixed.wav")).0.len(), 50 * 320);
}

fn unmixed_frame(participant: &str, ms: u64) -> String {
    let ts = format!("2026-11-24T19:16:{:02}.{:03}Z", 12 + ms / 1000, ms % 1000);
    let v: serde_json::Value =
        serde_json::from_str(&vector("media-03-audio-data-mixed.json")).unwrap();
    serde_json::json!({"kind": "AudioData", "audioData": {
        "timestamp": ts, "participantRawID": participant,
        "data": v["audioData"]["data"], "silent": false}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_past_the_limit_are_counted_not_recorded() {
    let gateway = TestGateway::start_with(|c| c.limits.max_participants_per_call = 2).await;
    let mut client = connect(&gateway.url("/ws?callId=crowd&apiKey=s3cret&sig=abc")).await;
    client
        .send(Message::text(vector("media-01-audio-metadata-16k.json")))
        .await
        .unwrap();
    for i in 0..10 {
        for who in ["8:acs:a", "8:acs:b", "8:acs:c", "8:acs:d"] {
            client
                .send(Message::text(unmixed_frame(who, i * 20)))
                .await
                .unwrap();
        }
    }
    client.close(None).await.unwrap();
    let session = gateway.ended_session("crowd").await;
    let transport = &session["transports"][0];
    assert_eq!(
        transport["participants"],
        serde_json::json!(["8:acs:a", "8:acs:b"])
    );
    assert_eq!(transport["frames_over_participant_limit"], 20);
    assert_eq!(transport["frames_received"], 20);
    let files: Vec<_> = std::fs::read_dir(gateway.call_dir("crowd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".wav"))
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    // Secrets in the transportUrl never reach the disk.
    assert_eq!(transport["query"]["apiKey"], "<redacted>");
    assert_eq!(transport["query"]["sig"], "<redacted>");
    assert_eq!(transport["query"]["callId"], "crowd");
    let text = std::fs::read_to_string(gateway.call_dir("crowd").join("session.json")).unwrap();
    assert!(!text.contains("s3cret"));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let gateway = TestGateway::start().await;
    let mut client = connect(&gateway.url("/ws?callId=utf8")).await;
    client
        .send(Message::text(vector("media-01-audio-metadata-16k.json")))
        .await
        .unwrap();
    let frame = Frame::message(vec![0xff, 0xfe, 0xfd], OpCode::Data(Data::Text), true);
    client.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(close_code(&mut client).await, Some(1007));
    let session = gateway.ended_session("utf8").await;
    assert_eq!(session["transports"][0]["end"]["code"], 1007);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_rate_in_the_url_sets_the_format_before_metadata() {
    let gateway = TestGateway::start().await;
    let mut client = connect(&gateway.url("/ws?callId=rate24&sampleRate=24000")).await;
    for _ in 0..5 {
        client
            .send(Message::text(vector("media-07-audio-data-24k.json")))
            .await
            .unwrap();
    }
    client.close(None).await.unwrap();
    let session = gateway.ended_session("rate24").await;
    assert_eq!(session["transports"][0]["format"]["sample_rate_hz"], 24_000);
    let (samples, rate) = read_wav(&gateway.call_dir("rate24").join("mixed.wav"));
    assert_eq!((samples.len(), rate), (5 * 480, 24_000));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_recording_off_nothing_is_written() {
    let gateway = TestGateway::start_with(|c| c.recording.enabled = false).await;
    let report = mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=ghost")).with_wav(sample("bob-16k.wav")),
    )
    .await
    .unwrap();
    assert!(
        report.frames_sent > 100 && !report.stopped_early,
        "{report:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let entries = std::fs::read_dir(gateway.data_dir.path()).unwrap().count();
    assert_eq!(entries, 0);
    gateway.stop().await;
}
