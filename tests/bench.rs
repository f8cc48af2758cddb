//! `mediagate bench` against real sockets: its counts must be right against our gateway, and a
//! deliberately lossy gateway (the reference echo dropping every tenth frame) must be reported
//! as lossy. Small and short (20 calls, 2 s): it checks the bench, not the machine.

use crate::common;

use std::time::Duration;

use common::TestGateway;
use mediagate::bench::{BenchConfig, BenchReport, Mode};

fn small(url: String) -> BenchConfig {
    BenchConfig {
        calls: 20,
        duration: Duration::from_secs(2),
        ramp: Duration::from_millis(500),
        warmup: Duration::from_millis(500),
        gateway_pid: Some(std::process::id()),
        ..BenchConfig::new(url)
    }
}

fn assert_ordered(report: &BenchReport) {
    let l = report.latency_us.unwrap();
    assert!(l.count > 0);
    assert!(
        0 < l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
        "{l:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_counts_every_frame_of_an_echoing_gateway() {
    let gateway =
        TestGateway::start_with(|c| c.pipeline.processors = vec!["echo".to_owned()]).await;
    let report = mediagate::bench::run(small(gateway.url("/ws")))
        .await
        .unwrap();
    assert_eq!(report.connected, 20, "{report}");
    // 20 calls for about 3 s of 20 ms frames, whatever the ramp offsets.
    assert!(report.frames.sent >= 20 * 100, "{report}");
    assert_eq!(report.frames.received, report.frames.sent, "{report}");
    assert_eq!(report.frames.lost, 0);
    assert_eq!(report.frames.duplicated, 0);
    assert_eq!(report.errors.calls, 0, "{report}");
    assert!(report.clean());
    assert_ordered(&report);
    // Real time, mixed: the echoes come back 20 ms apart on average.
    let gaps = report.outbound_gap_us.unwrap();
    assert!((15_000..=25_000).contains(&gaps.p50), "{gaps:?}");
    // The frame rate is what 20 calls at 50 frames/s make (within the ramp's slack).
    assert!(
        (900.0..=1_100.0).contains(&report.rate.sent_per_sec),
        "{report}"
    );
    assert!(report.gateway.is_some() && report.generator.rss_kib > 0);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["frames"]["lost"], 0);
    assert_eq!(json["mode"], "realtime");
    // Every call ended with our gateway's session.json like any other call.
    gateway.ended_session("bench-19").await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_drops_every_tenth_frame_is_reported_lossy() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mediagate::bench::serve_reference_echo(
        listener,
        Some(10),
        async {
            let _ = stopped.await;
        },
    ));
    let mut config = small(format!("ws://{addr}/ws"));
    config.mode = Mode::Realtime;
    let report = mediagate::bench::run(config).await.unwrap();
    let lost = report.frames.lost;
    assert!(!report.clean(), "{report}");
    // Each call loses every tenth of its frames: a tenth of all, give or take one per call.
    let expected = report.frames.sent / 10;
    assert!(
        lost + 20 >= expected && lost <= expected + 20,
        "lost {lost}, expected about {expected}: {report}"
    );
    assert_eq!(report.frames.received + lost, report.frames.sent);
    // Dropped between two echoes: all of them mid-call, but a call's last frame or so.
    let mid_call = report.frames.lost_mid_call;
    assert!(
        mid_call <= lost && mid_call + 20 >= lost,
        "lost {lost}, {mid_call} mid-call: {report}"
    );
    assert_ordered(&report);
    let _ = stop.send(());
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_mode_keeps_a_bounded_window_and_loses_nothing() {
    let gateway =
        TestGateway::start_with(|c| c.pipeline.processors = vec!["echo".to_owned()]).await;
    let mut config = small(gateway.url("/ws"));
    config.mode = Mode::Max;
    config.calls = 4;
    config.duration = Duration::from_secs(1);
    let report = mediagate::bench::run(config).await.unwrap();
    assert!(report.clean(), "{report}");
    // Far more than real time (4 calls would be 200 frames/s).
    assert!(report.rate.sent_per_sec > 2_000.0, "{report}");
    assert_ordered(&report);
    gateway.stop().await;
}

#[tokio::test]
async fn a_gateway_that_is_not_there_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut config = small(format!("ws://{addr}/ws"));
    config.calls = 2;
    config.ramp = Duration::ZERO;
    let err = mediagate::bench::run(config).await.unwrap_err();
    assert!(err.to_string().contains("no call could connect"), "{err}");
}
