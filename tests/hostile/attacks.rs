//! Hostile clients: each attack of issue 11 against a real gateway process.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::common::process::bytes_under;

/// Resident memory may grow this much while an attack runs (allocator slack, the attacker's
/// own buffers, the victim's call).
const RSS_GROWTH_BOUND: u64 = 48 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_sample_rates_are_refused_and_memory_stays_flat() {
    // The attack found: a rate far outside what ACS sends, and a resampling consumer (here wav
    // archiving at 8 kHz), grew the process by ~100 MB/s.
    let gateway = ServeProcess::start(&format!(
        "{RECORDERS}[routes.\"/ws/attack\"]\nprocessors = [\"wav\"]\n\
         [routes.\"/ws/attack\".settings.wav]\nsample_rate_hz = 8000\n"
    ))
    .await;
    let victim = Victim::start(&gateway, "victim");
    victim.wait_live(&gateway).await;
    let rss_before = gateway.rss_bytes();

    for rate in [384_000u64, 1_000_000, 7, 96_000, 22_050] {
        let mut attacker = connect(&gateway.url(&format!("/ws/attack?callId=rate-{rate}"))).await;
        send_many(&mut attacker, &metadata(rate), 1).await;
        let frame = audio("2026-11-24T19:16:12.000Z", None, 15_360);
        send_many(&mut attacker, &frame, 200).await;
        let (code, reason) = closed_with(&mut attacker).await.expect("a close frame");
        assert_eq!(code, 1007, "rate {rate}: {reason}");
        assert!(reason.contains("sample rate"), "rate {rate}: {reason}");
    }
    // The same through the query string, before any metadata.
    let mut attacker = connect(&gateway.url("/ws/attack?callId=q&sampleRate=192000")).await;
    send_many(
        &mut attacker,
        &audio("2026-11-24T19:16:12.000Z", None, 640),
        50,
    )
    .await;
    let (code, reason) = closed_with(&mut attacker).await.expect("a close frame");
    assert_eq!(code, 1007, "{reason}");

    let grown = gateway.rss_bytes().saturating_sub(rss_before);
    assert!(grown < RSS_GROWTH_BOUND, "RSS grew by {grown} bytes");
    victim.assert_unharmed(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_apart_timestamps_write_no_more_silence_than_real_time() {
    // The attack found: far-apart timestamps on a few participants' frames wrote minutes of
    // silence per participant: 5 KB in, 74 MB on disk.
    let gateway = ServeProcess::start(RECORDERS).await;
    let victim = Victim::start(&gateway, "victim");
    let started = Instant::now();
    let mut attacker = connect(&gateway.url("/ws?callId=far")).await;
    send_many(&mut attacker, &metadata(16_000), 1).await;
    let participants = 8;
    for hour in 0..6 {
        for p in 0..participants {
            let at = format!("2026-11-24T{:02}:{:02}:00.000Z", 1 + hour * 3, p * 7);
            let frame = audio(&at, Some(&format!("p{p}")), 640);
            send_many(&mut attacker, &frame, 1).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    attacker.close(None).await.unwrap();
    let session = wait_ended(&gateway, "far").await;
    let elapsed = started.elapsed().as_secs_f64();
    // Each track: at most the real time the call lasted plus a few seconds of slack, at 16 kHz
    // PCM16 (32,000 bytes a second), plus headers and the small logs.
    let bound = participants as f64 * (elapsed + 5.0) * 32_000.0 + 64.0 * 1024.0;
    let written = bytes_under(&gateway.call_dir("far")) as f64;
    assert!(
        written <= bound,
        "{written} bytes on disk for a {elapsed:.1} s call (bound {bound}); {session}"
    );
    victim.assert_unharmed(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_dtmf_tones_are_bad_messages_and_cost_nothing() {
    let gateway = ServeProcess::start(RECORDERS).await;
    let victim = Victim::start(&gateway, "victim");
    victim.wait_live(&gateway).await;
    let rss_before = gateway.rss_bytes();
    let mut attacker = connect(&gateway.url("/ws?callId=dtmf")).await;
    send_many(&mut attacker, &metadata(16_000), 1).await;
    let tone = "7".repeat(900 * 1024);
    let message = serde_json::json!({ "kind": "DtmfData", "dtmfData": { "data": tone } });
    send_many(&mut attacker, &message.to_string(), 100).await;
    let (code, reason) = closed_with(&mut attacker).await.expect("a close frame");
    assert_eq!(code, 1007, "{reason}");
    let grown = gateway.rss_bytes().saturating_sub(rss_before);
    assert!(grown < RSS_GROWTH_BOUND, "RSS grew by {grown} bytes");
    let session = wait_ended(&gateway, "dtmf").await;
    assert_eq!(session["transports"][0]["dtmf_tones"], 0, "{session}");
    let logged = std::fs::metadata(gateway.call_dir("dtmf").join("dtmf.jsonl"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(logged < 4096, "dtmf.jsonl holds {logged} bytes");
    victim.assert_unharmed(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_answered_503_and_idle_ones_are_dropped() {
    let gateway = ServeProcess::start(&format!(
        "{RECORDERS}[limits]\nmax_connections = 16\nheader_read_timeout_secs = 2\n"
    ))
    .await;
    let victim = Victim::start(&gateway, "victim");
    victim.wait_live(&gateway).await;
    // 40 connections that never send a byte: the first ones hold every place, the rest are
    // answered 503 at once.
    let mut opened = Vec::new();
    for _ in 0..40 {
        opened.push(TcpStream::connect(gateway.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    let mut refused = 0;
    for tcp in opened {
        let mut head = [0u8; 12];
        match tcp.try_read(&mut head) {
            Ok(n) if n > 0 => {
                assert!(head.starts_with(b"HTTP/1.1 503"), "{:?}", &head[..n]);
                refused += 1;
            }
            Ok(_) => panic!("a connection was closed without an answer"),
            Err(_) => held.push(tcp),
        }
    }
    assert!(refused >= 24, "only {refused} of 40 refused");
    assert!(held.len() <= 16, "{} connections held", held.len());
    // The idle ones are dropped once their headers are overdue.
    let started = Instant::now();
    for mut tcp in held {
        let mut buf = [0u8; 64];
        let ended = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
        assert!(
            ended.is_ok(),
            "an idle connection was kept {:?}",
            started.elapsed()
        );
    }
    // And the gateway takes calls again.
    let mut call = connect(&gateway.url("/ws?callId=after-flood")).await;
    send_many(&mut call, &metadata(16_000), 1).await;
    call.close(None).await.unwrap();
    wait_ended(&gateway, "after-flood").await;
    victim.assert_unharmed(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_opening_connections_too_fast_gets_429() {
    let gateway = ServeProcess::start(&format!(
        "{RECORDERS}[limits]\nnew_connections_per_ip_per_sec = 2.0\nnew_connections_burst_per_ip = 5\n"
    ))
    .await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let (status, _) = common::process::http_get(gateway.addr, "/healthz")
            .await
            .unwrap();
        statuses.push(status);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!((5..=7).contains(&ok), "{statuses:?}");
    assert_eq!(ok + limited, 20, "{statuses:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = common::process::http_get(gateway.addr, "/healthz")
        .await
        .unwrap();
    assert_eq!(status, 200, "the rate refills");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_is_dropped_after_the_header_deadline() {
    let gateway = ServeProcess::start(&format!(
        "{RECORDERS}[limits]\nheader_read_timeout_secs = 1\n"
    ))
    .await;
    let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
    tcp.write_all(b"GET /ws?callId=slow HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "a half-sent request was kept open");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(folders(&gateway).is_empty(), "{:?}", folders(&gateway));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_calls_new_calls_get_503_but_a_calls_second_transport_joins() {
    let gateway = ServeProcess::start(&format!("{RECORDERS}[limits]\nmax_calls = 1\n")).await;
    let victim = Victim::start(&gateway, "victim");
    victim.wait_live(&gateway).await;
    let refused = tokio_tungstenite::connect_async(gateway.url("/ws?callId=another")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("expected 503, got {other:?}"),
    }
    // The victim's transcription transport names the live call: it joins.
    let mut second = connect(&gateway.url("/ws/transcription?callId=victim")).await;
    let metadata = serde_json::json!({
        "kind": "TranscriptionMetadata",
        "transcriptionMetadata": {
            "subscriptionId": "s", "locale": "en-US", "callConnectionId": "victim",
            "correlationId": "c"
        }
    });
    send_many(&mut second, &metadata.to_string(), 1).await;
    second.close(None).await.unwrap();
    victim.assert_unharmed(&gateway).await;
    let session = wait_ended(&gateway, "victim").await;
    assert_eq!(
        session["transports"].as_array().unwrap().len(),
        2,
        "{session}"
    );
    assert!(!folders(&gateway).iter().any(|f| f.starts_with("another")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_reach_a_live_call() {
    // The attack found: anyone who knew a live call's id joined it and wrote a forged
    // transcript into its folder.
    let secret = "a-long-enough-shared-secret-for-the-test";
    let gateway = ServeProcess::start_with_env(
        &format!("{RECORDERS}[auth]\nmode = \"secret\"\n"),
        &[("MEDIAGATE_AUTH_SECRET", secret)],
    )
    .await;
    let victim = Victim::start_with_query(&gateway, "victim", &format!("&token={secret}"));
    victim.wait_live(&gateway).await;
    for query in [
        "",
        "&token=wrong-but-just-as-long-as-the-real-one",
        "&token=",
    ] {
        let url = gateway.url(&format!("/ws/transcription?callId=victim{query}"));
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "{query}");
                assert!(response.body().as_ref().is_none_or(|b| b.is_empty()));
            }
            other => panic!("{query}: expected 401, got {other:?}"),
        }
    }
    victim.assert_unharmed(&gateway).await;
    assert_eq!(folders(&gateway), ["victim"]);
    let session = wait_ended(&gateway, "victim").await;
    assert_eq!(
        session["transports"].as_array().unwrap().len(),
        1,
        "{session}"
    );
    let text = std::fs::read_to_string(gateway.call_dir("victim").join("session.json")).unwrap();
    assert!(!text.contains(secret), "the secret reached session.json");
    assert!(
        gateway.log_lines_with(secret).is_empty(),
        "the secret reached the log"
    );
}
