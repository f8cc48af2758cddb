//! A short soak of the real binary: `mediagate bench --self` holds 300 real-time calls through
//! the recorders for 60 s, loses no frame, and its resident memory stays flat (within 10%)
//! after the warm-up.
//!
//! Ignored by default (a minute and a half of two busy cores); CI runs it on purpose:
//! `cargo test --locked --test e2e -- --ignored soak`. The long soak (15 min to an hour, release
//! build) is in BENCHMARKS.md.

use std::process::Command;

/// The flat bound of this 60 s run: the gateway's RSS samples after the warm-up (from 13 s on:
/// the 5 s ramp, the 2 s warm-up and a tenth of the window) may spread by this much.
///
/// 10%, not the long soak's 5%: in 60 s the dev build is still settling. Measured on the
/// 2-core VM (2026-12-01, dev profile): spreads of 2.5%, 3.6% and 4.4% with the machine
/// nearly to itself; 10.8% and 10.9% while a release build of CTranslate2 took both cores (starved of
/// CPU, the gateway's queues and blocking pool grow, and the allocator keeps what they took:
/// BENCHMARKS.md, "Soak"). A leak of 10 bytes per frame (300 calls × 50 frames/s, about
/// 8.6 MiB a minute) still fails it. A failure on a busy machine is worth a rerun before it is
/// taken for a leak; the long soak (`--duration 1h`) is the real test.
const FLAT_WITHIN_PERCENT: f64 = 10.0;

#[test]
#[ignore = "a 60 s soak at 300 calls; CI runs it with --ignored"]
fn three_hundred_recorded_calls_for_a_minute_lose_nothing_and_keep_memory_flat() {
    let output = Command::new(env!("CARGO_BIN_EXE_mediagate"))
        .args([
            "bench",
            "--self",
            // Echo, for loss and latency; the default recorders, for what a call really keeps.
            // No speech engine: 300 calls of Whisper is not what two shared cores can hold.
            "--pipeline",
            "echo,wav,transcript,dtmf",
            "--calls",
            "300",
            "--duration",
            "60s",
            "--rss-every",
            "5s",
            "--rss-flat-within",
            &format!("{FLAT_WITHIN_PERCENT}%"),
            "--json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}");
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let report = &reports[0];
    let shown = serde_json::to_string_pretty(report).unwrap();
    assert_eq!(report["connected"], 300, "{shown}");
    assert!(
        report["frames"]["sent"].as_u64().unwrap() >= 300 * 50 * 60,
        "{shown}"
    );
    assert_eq!(report["frames"]["lost"], 0, "{shown}");
    assert_eq!(report["frames"]["duplicated"], 0, "{shown}");
    assert_eq!(report["errors"]["calls"], 0, "{shown}");

    let rss = &report["rss"];
    let samples = rss["samples"].as_array().unwrap();
    assert!(samples.len() >= 10, "{shown}");
    assert!(
        samples.iter().all(|s| s["gateway_kib"].as_u64() > Some(0)),
        "{shown}"
    );
    let trend = &rss["trend"];
    eprintln!("soak: gateway RSS after the warm-up: {trend}");
    assert!(trend["samples"].as_u64().unwrap() >= 10, "{shown}");
    let spread = trend["spread"].as_f64().unwrap();
    assert!(
        spread <= FLAT_WITHIN_PERCENT / 100.0 && trend["flat"] == true,
        "the gateway's RSS spread {:.1}% after the warm-up: {shown}",
        spread * 100.0
    );
}
