//! Compliance end to end: calls recorded by a real gateway are sealed (manifest.json and the
//! hash chain), `mediagate verify` passes on what it wrote and reports each kind of tampering,
//! and retention deletes ended calls after saying so in the chain.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{TestGateway, emulate, sample};
use mediagate::server::{ChainFault, FileFault, Problem, VerifyOptions, VerifyReport, verify_dir};

const BINARY: &str = env!("CARGO_BIN_EXE_mediagate");

/// Waits (up to 10 s) for the call's manifest.json: the seal follows the last session.json.
async fn sealed(gateway: &TestGateway, call: &str) {
    let manifest = gateway.call_dir(call).join("manifest.json");
    for _ in 0..200 {
        if manifest.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("call {call} was not sealed");
}

fn verify(data: &Path) -> VerifyReport {
    verify_dir(data, &VerifyOptions::default()).unwrap()
}

/// The chain's day files, oldest first.
fn day_files(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join(".chain"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Every chain entry, parsed.
fn entries(data: &Path) -> Vec<serde_json::Value> {
    day_files(data)
        .iter()
        .flat_map(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `mediagate verify DIR`: its exit status and stdout.
fn run_verify(data: &Path) -> (bool, String) {
    let output = Command::new(BINARY)
        .arg("verify")
        .arg(data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.success(), stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sealed_calls_verify_and_each_tampering_is_reported() {
    let gateway = TestGateway::start().await;
    // One call with a transcription transport beside its media: sealed once both have ended.
    let alice = tokio::spawn(mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=alice"))
            .with_wav(sample("alice-16k.wav"))
            .with_transcript(sample("transcript-script.json")),
    ));
    mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=bob")).with_wav(sample("bob-16k.wav")),
    )
    .await
    .unwrap();
    alice.await.unwrap().unwrap();
    for call in ["alice", "bob"] {
        gateway.ended_session(call).await;
        sealed(&gateway, call).await;
    }
    let data_dir = gateway.stop().await;
    let data = data_dir.path();

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("alice/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["call_id"], "alice");
    let paths: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for expected in ["mixed.wav", "session.json", "transcript.jsonl"] {
        assert!(paths.contains(&expected), "{expected} not in {paths:?}");
    }
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with('.') || *p == "manifest.json"),
        "{paths:?}"
    );
    let kinds: Vec<_> = entries(data).iter().map(|e| e["kind"].clone()).collect();
    assert_eq!(kinds, ["opened", "sealed", "sealed"]);

    let report = verify(data);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        (report.calls, report.sealed_intact, report.chain_entries),
        (2, 2, 3)
    );
    let (ok, stdout) = run_verify(data);
    assert!(ok, "{stdout}");
    assert!(
        stdout.starts_with("OK: 2 call folder(s), 2 sealed and intact, 0 unsealed, 0 problem(s)"),
        "{stdout}"
    );

    // One byte of a WAV's audio.
    let wav = data.join("alice/mixed.wav");
    let mut bytes = std::fs::read(&wav).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&wav, &bytes).unwrap();
    let report = verify(data);
    assert_eq!(
        report.problems,
        [Problem::File {
            call: "alice".into(),
            path: "mixed.wav".into(),
            fault: FileFault::Content,
        }]
    );

    // A whole call folder.
    std::fs::remove_dir_all(data.join("bob")).unwrap();
    let report = verify(data);
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    assert!(
        matches!(&report.problems[1], Problem::MissingCall { call, .. } if call == "bob"),
        "{:?}",
        report.problems
    );

    // A chain line: the first seal, its time moved by a millisecond.
    let day = &day_files(data)[0];
    let text = std::fs::read_to_string(day).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].contains("\"kind\":\"sealed\""), "{}", lines[1]);
    let time_at = lines[1].find("Z\"").unwrap() - 1;
    let mut edited = lines[1].to_owned();
    let digit = if &edited[time_at..=time_at] == "1" {
        "2"
    } else {
        "1"
    };
    edited.replace_range(time_at..=time_at, digit);
    std::fs::write(day, format!("{}\n{edited}\n{}\n", lines[0], lines[2])).unwrap();
    let report = verify(data);
    assert!(
        report.problems.iter().any(|p| matches!(
            p,
            Problem::Chain {
                line: 3,
                fault: ChainFault::BrokenLink,
                ..
            }
        )),
        "{:?}",
        report.problems
    );

    // The binary says all three, and fails.
    let (ok, stdout) = run_verify(data);
    assert!(!ok, "{stdout}");
    let name = day.file_name().unwrap().to_string_lossy().into_owned();
    for expected in [
        "call alice: mixed.wav: content changed since sealing".to_owned(),
        "call bob: missing: sealed at".to_owned(),
        format!("chain {name}:3: prev is not the hash of the entry before"),
        "FAILED: 1 call folder(s), 0 sealed and intact, 0 unsealed, 3 problem(s)".to_owned(),
    ] {
        assert!(stdout.contains(&expected), "{expected:?} not in:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_ended_calls_after_a_chain_entry_and_never_a_live_one() {
    // Two seconds: passes every second.
    let gateway = TestGateway::start_with(|config| {
        config.recording.retention_days = Some(2.0 / 86_400.0);
    })
    .await;
    // A call that lasts far longer than the retention (11 s, in real time)...
    let scratch = tempfile::tempdir().unwrap();
    let mut audio = Vec::new();
    for name in ["alice-16k.wav", "bob-16k.wav", "carol-16k.wav"] {
        audio.extend(common::read_wav(&sample(name)).0);
    }
    let long_wav = scratch.path().join("long.wav");
    common::write_wav(&long_wav, 16_000, &audio);
    let long = tokio::spawn(mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=long"))
            .with_wav(&long_wav)
            .with_pacing(mediagate::emulator::Pacing::Realtime),
    ));
    // ...and a short one.
    mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=short")).with_wav(sample("hello-16k.wav")),
    )
    .await
    .unwrap();
    gateway.ended_session("short").await;
    sealed(&gateway, "short").await;
    let short = gateway.call_dir("short");
    let manifest = std::fs::read(short.join("manifest.json")).unwrap();
    let gone_within = |dir: PathBuf| async move {
        for _ in 0..200 {
            if !dir.exists() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    assert!(
        gone_within(short.clone()).await,
        "the short call was not deleted"
    );
    // The long call began before the short one ended, and is still live: kept.
    assert!(!long.is_finished(), "the long call should still stream");
    let session: serde_json::Value = serde_json::from_slice(
        &std::fs::read(gateway.call_dir("long").join("session.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(session["status"], "live");

    long.await.unwrap().unwrap();
    assert!(
        gone_within(gateway.call_dir("long")).await,
        "the long call was not deleted"
    );
    let data_dir = gateway.stop().await;
    let data = data_dir.path();

    let entries = entries(data);
    let of = |call: &str, kind: &str| {
        entries
            .iter()
            .position(|e| e["call"] == call && e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} entry for {call}: {entries:?}"))
    };
    assert!(of("short", "sealed") < of("short", "deleted"));
    assert!(of("long", "sealed") < of("long", "deleted"));
    let sha = {
        use sha2::Digest as _;
        sha2::Sha256::digest(&manifest)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(entries[of("short", "deleted")]["manifest_sha256"], sha);
    let report = verify(data);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.calls, 0);
}
