//! Shutdown always finishes: a real process with live calls and a half-sent request exits
//! within its deadline, with every call's files final; a second signal skips the drain.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::*;

/// A clip long enough to still be streaming when the signal comes: `seconds` of a sweep.
fn long_clip(dir: &Path, seconds: usize) -> (PathBuf, Vec<i16>) {
    let rate = 16_000;
    let samples: Vec<i16> = (0..seconds * rate)
        .map(|i| {
            let t = i as f64 / rate as f64;
            (8_000.0 * (2.0 * std::f64::consts::PI * (200.0 + 40.0 * t) * t).sin()) as i16
        })
        .collect();
    let path = dir.join("long.wav");
    write_wav(&path, rate as u32, &samples);
    (path, samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_live_calls_and_a_half_open_request_finishes_in_time() {
    let drain_secs = 1;
    let finalize_secs = 10;
    let mut gateway = ServeProcess::start(&format!(
        "[pipeline]\nprocessors = [\"wav\"]\n[recording]\nmin_free_bytes = 0\n\
         [shutdown]\ndrain_timeout_secs = {drain_secs}\nfinalize_timeout_secs = {finalize_secs}\n\
         [limits]\nheader_read_timeout_secs = 60\n"
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (clip, sent) = long_clip(dir.path(), 30);
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let config = mediagate::emulator::EmulateConfig::new(
                gateway.url(&format!("/ws?callId=live-{i}")),
            )
            .with_wav(&clip);
            tokio::spawn(mediagate::emulator::run(config))
        })
        .collect();
    // A request that never finishes its headers (its deadline is a minute away).
    let mut half_open = TcpStream::connect(gateway.addr).await.unwrap();
    half_open
        .write_all(b"GET /ws HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // Every call live, then a little more than a second of audio each (asserted below).
    gateway.wait_live_calls(20, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signalled = Instant::now();
    gateway.signal("TERM");
    let status = gateway
        .wait_exit(Duration::from_secs(drain_secs + finalize_secs + 5))
        .await
        .expect("the gateway did not exit within its deadline");
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(drain_secs + 3),
        "shutdown took {took:?}"
    );
    for (i, call) in calls.into_iter().enumerate() {
        // Each call was closed by the gateway (1001): the emulator reports how far it got.
        let _ = call.await.unwrap();
        let call_id = format!("live-{i}");
        let text = std::fs::read_to_string(gateway.call_dir(&call_id).join("session.json"))
            .unwrap_or_else(|e| panic!("{call_id}: {e}; folders {:?}", folders(&gateway)));
        let session: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(session["status"], "ended", "{session}");
        assert_eq!(session["transports"][0]["end"]["code"], 1001, "{session}");
        let frames = session["transports"][0]["frames_received"]
            .as_u64()
            .unwrap() as usize;
        let path = gateway.call_dir(&call_id).join("mixed.wav");
        assert_wav_header_consistent(&path);
        let (recorded, _) = read_wav(&path);
        // Every frame the gateway took in is in the file, bit for bit, up to the moment of
        // shutdown (the calls streamed in real time for 1.5 s or more before the signal).
        assert_eq!(recorded.len(), frames * 320, "{call_id}");
        assert!(
            recorded.len() >= 16_000,
            "{call_id}: {} samples",
            recorded.len()
        );
        assert!(
            recorded == sent[..recorded.len()],
            "{call_id}: samples differ"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_skips_the_drain() {
    let mut gateway = ServeProcess::start(
        "[pipeline]\nprocessors = [\"wav\"]\n[recording]\nmin_free_bytes = 0\n\
         [shutdown]\ndrain_timeout_secs = 60\n",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (clip, _) = long_clip(dir.path(), 30);
    let config =
        mediagate::emulator::EmulateConfig::new(gateway.url("/ws?callId=long")).with_wav(&clip);
    let call = tokio::spawn(mediagate::emulator::run(config));
    gateway.wait_live_calls(1, Duration::from_secs(30)).await;
    gateway.signal("TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        gateway.wait_exit(Duration::ZERO).await.is_none(),
        "exited before the drain ended"
    );
    let signalled = Instant::now();
    gateway.signal("INT");
    let status = gateway
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("a second signal did not end the drain");
    assert!(status.success(), "exit status {status}");
    assert!(signalled.elapsed() < Duration::from_secs(3));
    let _ = call.await.unwrap();
    let session = wait_ended(&gateway, "long").await;
    assert_eq!(session["transports"][0]["end"]["reason"], "server_shutdown");
    assert_wav_header_consistent(&gateway.call_dir("long").join("mixed.wav"));
}
