//! `mediagate bench --speech` against real gateways: without an engine, the calls are
//! recorded and scored as heard nothing; with the light `pocketsphinx` engine (Debian's
//! libpocketsphinx-dev and pocketsphinx-en-us), `bench --speech --self` measures finals that
//! really came, through a gateway it started itself.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::{TestGateway, sample};
use mediagate::bench::speech::{SpeechConfig, run};

/// Two short clips of read speech, about 3 s each.
fn two_clips() -> Vec<PathBuf> {
    vec![
        sample("speech/librivox/austen-0880.wav"),
        sample("speech/librivox/austen-0930.wav"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_an_engine_are_recorded_and_scored_as_heard_nothing() {
    let gateway = TestGateway::start_with(|c| {
        c.pipeline.processors = ["wav", "transcript"].map(String::from).to_vec();
    })
    .await;
    let config = SpeechConfig {
        calls: 2,
        duration: Duration::from_secs(1),
        ramp: Duration::from_millis(200),
        clip_gap: Duration::from_millis(300),
        transcript_wait: Duration::from_secs(10),
        gateway_pid: Some(std::process::id()),
        ..SpeechConfig::new(gateway.url("/ws"), gateway.call_dir(""), two_clips())
    };
    let started = std::time::Instant::now();
    let report = run(config).await.unwrap();
    // Each call played one clip (about 3 s) and its gap, in real time.
    assert!(started.elapsed() >= Duration::from_secs(3), "{report}");
    assert_eq!((report.connected, report.errors.calls), (2, 0), "{report}");
    assert_eq!(report.unfinished_calls, 0, "{report}");
    assert_eq!(
        report.live.live, 2,
        "no `live` field counts as live: {report}"
    );
    assert_eq!((report.finals, report.partials), (0, 0));
    assert!(report.finals_latency.is_none());
    assert_eq!(report.wer.rate, 1.0, "every word missed: {report}");
    assert!(report.wer.words > 10);
    assert!((5.0..8.0).contains(&report.speech_secs), "{report}");
    // The two calls started at different clips.
    let first: Vec<&str> = report
        .per_call
        .iter()
        .map(|c| c.clips[0].as_str())
        .collect();
    assert_eq!(first, ["austen-0880", "austen-0930"]);
    // Their recordings are whole: what the calls sent, 20 ms frames in real time.
    for call in &report.per_call {
        let (samples, rate) = common::read_wav(&gateway.call_dir(&call.call_id).join("mixed.wav"));
        assert_eq!(rate, 16_000);
        let secs = samples.len() as f64 / 16_000.0;
        assert!(
            (call.speech_secs..call.speech_secs + 0.5).contains(&secs),
            "{secs} s"
        );
    }
    assert!(report.gateway.is_some_and(|g| g.cpu_secs > 0.0), "{report}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["live"]["live"], 2);
    gateway.stop().await;
}

#[tokio::test]
async fn a_gateway_that_is_not_there_is_a_clear_error() {
    // A port just freed: nobody listens there.
    let url = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("ws://{}/ws", listener.local_addr().unwrap())
    };
    let recordings = tempfile::tempdir().unwrap();
    let config = SpeechConfig {
        ramp: Duration::ZERO,
        ..SpeechConfig::new(url, recordings.path(), two_clips())
    };
    let error = run(config).await.unwrap_err().to_string();
    assert!(error.contains("no call could connect"), "{error}");
}

/// `bench --speech --self` with the pocketsphinx engine: 2 calls, each saying both clips.
#[cfg(feature = "pocketsphinx")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_speech_self_measures_real_finals() {
    let clips = two_clips();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_mediagate"))
        .args([
            "--log",
            "warn",
            "bench",
            "--speech",
            "--self",
            "--pipeline",
            "wav,transcript,pocketsphinx",
            "--calls",
            "2",
            "--duration",
            "5s",
            "--ramp",
            "0.5s",
            "--transcript-wait",
            "60s",
            "--json",
            "--clips",
        ])
        .args(&clips)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("bench --speech did not finish within 120 s")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let report = &reports[0];
    eprintln!("{report:#}");
    assert_eq!(report["connected"], 2, "{report}");
    assert_eq!(report["live"]["live"], 2, "{report}");
    assert_eq!(report["unfinished_calls"], 0, "{report}");
    // Each call said both clips: at least one final per clip per call.
    assert!(report["finals"].as_u64().unwrap() >= 4, "{report}");
    let latency = &report["finals_latency"];
    for key in ["p50_ms", "p95_ms", "p99_ms", "max_ms"] {
        let ms = latency[key].as_f64().unwrap();
        assert!(
            ms.is_finite() && ms > 0.0 && ms < 20_000.0,
            "{key} {ms}: {report}"
        );
    }
    let p50 = latency["p50_ms"].as_f64().unwrap();
    assert!(p50 <= latency["p95_ms"].as_f64().unwrap());
    // pocketsphinx on read speech: about 45% overall; loose.
    let wer = report["wer"]["rate"].as_f64().unwrap();
    assert!(report["wer"]["words"].as_u64().unwrap() > 20, "{report}");
    assert!(wer < 0.8, "WER {wer}: {report}");
    for call in report["per_call"].as_array().unwrap() {
        assert_eq!(call["clips"].as_array().unwrap().len(), 2, "{call}");
        assert!(!call["heard"].as_str().unwrap().is_empty(), "{call}");
    }
    assert!(
        report["gateway"]["cpu_secs"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["engine_compute_secs"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}
