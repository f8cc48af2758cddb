//! Stress, run on purpose, not in CI (timing on a shared 2-core machine is for measuring, not
//! for gating): `cargo test --release --test e2e -- --ignored --nocapture --test-threads 1
//! stress`. Calls at once on the real-time clock, each streaming in while the gateway plays
//! audio back, with no outbound gap over 25 ms in any call. Kept out of the default run because
//! it loads both cores for several seconds.

use crate::common;

use std::time::Duration;

use common::{TestGateway, sample};
use mediagate::emulator::{DtmfEvent, EmulateConfig, Pacing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stress: run on purpose with --ignored, in release"]
async fn stress_50_calls_stream_in_and_play_back_at_once() {
    stress(50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "marginal on the 2-core dev VM: passed 14 of 16 quiet runs (2026-11-25, with \
            TCP_NODELAY). A miss is a few gaps of 25-30 ms while the gateway's own pacer stays \
            within 5-7 ms of its clock: the 200 emulated calls and the gateway share the two cores"]
async fn stress_200_calls_stream_in_and_play_back_at_once() {
    stress(200).await;
}

async fn stress(calls: usize) {
    let gateway = TestGateway::start_isolated(move |c| {
        // Every call comes from 127.0.0.1 at once: no per-address rate for a load test.
        c.limits.new_connections_per_ip_per_sec = 0.0;
        c.pipeline.processors.push("tone".to_owned());
        c.pipeline.settings.insert(
            "tone".to_owned(),
            // Triggered 1 s in, once all calls are up: the test measures steady-state playback,
            // not every emulator loading and connecting at once.
            serde_json::json!({"at_start": false, "on_dtmf": true, "duration_ms": 2000}),
        );
    })
    .await;
    let tasks: Vec<_> = (0..calls)
        .map(|i| {
            let config = EmulateConfig::new(gateway.url(&format!("/ws?callId=stress-{i}")))
                .with_pacing(Pacing::Realtime)
                .with_wav(sample("carol-16k.wav"))
                .with_dtmf(
                    format!("5@{}ms", 1_000 + (i % 50) * 10)
                        .parse::<DtmfEvent>()
                        .unwrap(),
                )
                .with_linger(Duration::from_millis(200));
            tokio::spawn(mediagate::emulator::run(config))
        })
        .collect();
    let (mut gaps, mut late_gaps, mut late_calls, mut worst_gap_us) = (0u64, 0u64, 0u64, 0u64);
    let mut call_p99s = Vec::with_capacity(calls);
    for task in tasks {
        let report = task.await.unwrap().unwrap();
        assert!(!report.stopped_early, "{report:?}");
        let pacing = report
            .outbound
            .pacing
            .as_ref()
            .expect("no playback arrived");
        // 2 s of tone = 100 frames, 99 gaps between them: every frame arrived.
        assert!(pacing.gaps.count >= 99, "{:?}", report.outbound);
        gaps += pacing.gaps.count;
        late_gaps += pacing.gaps_over_25ms;
        late_calls += u64::from(pacing.gaps_over_25ms > 0);
        worst_gap_us = worst_gap_us.max(pacing.gaps.max_us);
        call_p99s.push(pacing.gaps.p99_us);
    }
    call_p99s.sort_unstable();
    eprintln!(
        "stress: {calls} calls, {gaps} outbound gaps, {late_gaps} over 25 ms in {late_calls} calls, \
         worst {worst_gap_us} us, median per-call p99 {} us",
        call_p99s[calls / 2]
    );
    // Inbound kept arriving on time while playback ran: every frame of every call recorded.
    let frames_per_call = (hound::WavReader::open(sample("carol-16k.wav"))
        .unwrap()
        .duration() as u64)
        .div_ceil(320);
    // The gateway's own view: how late its pacer sent frames (against each 20 ms tick).
    let (mut late_frames, mut worst_late_us) = (0u64, 0u64);
    for i in 0..calls {
        let session = gateway.ended_session(&format!("stress-{i}")).await;
        let transport = &session["transports"][0];
        assert_eq!(transport["frames_received"], frames_per_call);
        for processor in transport["processors"].as_array().unwrap() {
            assert_eq!(processor["dropped"], 0, "{processor}");
        }
        late_frames += transport["playback_pacing"]["late_frames"]
            .as_u64()
            .unwrap();
        worst_late_us = worst_late_us.max(
            transport["playback_pacing"]["max_late_micros"]
                .as_u64()
                .unwrap(),
        );
    }
    eprintln!(
        "stress: gateway pacer: {late_frames} frames sent over 5 ms late, worst {worst_late_us} us"
    );
    assert_eq!(
        late_calls, 0,
        "{late_calls} calls had an outbound gap over 25 ms (worst {worst_gap_us} us)"
    );
    gateway.stop().await;
}
