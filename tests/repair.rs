//! `kill -9` mid-call, then `mediagate repair`: the real `mediagate serve` process is killed
//! while the emulator streams a call into it, and the repair command makes what it left valid
//! (and sealed: `mediagate verify` passes after it).

use crate::common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{read_wav, sample, write_wav};
use mediagate::emulator::{EmulateConfig, Pacing};

const BINARY: &str = env!("CARGO_BIN_EXE_mediagate");

/// A free port on 127.0.0.1 (the gateway binds it itself).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Kills the child on drop, so a failed assertion leaves no gateway behind.
struct Gateway(std::process::Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_call_then_repair_leaves_valid_files_with_the_audio_sent() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // The recorders only: no speech engine to load.
    let config = dir.path().join("mediagate.toml");
    std::fs::write(
        &config,
        "[pipeline]\nprocessors = [\"wav\", \"transcript\", \"dtmf\"]\n",
    )
    .unwrap();
    // 12 s of speech, streamed in real time; the gateway dies a third of the way in.
    let mut audio = Vec::new();
    for name in ["alice-16k.wav", "bob-16k.wav", "carol-16k.wav"] {
        audio.extend(read_wav(&sample(name)).0);
    }
    audio.truncate(audio.len() / 320 * 320);
    let wav = dir.path().join("call.wav");
    write_wav(&wav, 16_000, &audio);

    let addr = free_addr();
    let mut gateway = Gateway(
        Command::new(BINARY)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .env("MEDIAGATE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the gateway did not start"
        );
        assert!(
            gateway.0.try_wait().unwrap().is_none(),
            "the gateway exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let streaming = Instant::now();
    let emulator = tokio::spawn(mediagate::emulator::run(
        EmulateConfig::new(format!("ws://{addr}/ws?callId=killed"))
            .with_pacing(Pacing::Realtime)
            .with_wav(&wav),
    ));
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    let killed_after = streaming.elapsed();
    gateway.0.kill().unwrap(); // SIGKILL
    gateway.0.wait().unwrap();
    // The emulator sees the socket drop; whatever it says, it stops.
    let _ = tokio::time::timeout(Duration::from_secs(10), emulator)
        .await
        .expect("the emulator did not stop");

    let call = data_dir.join("killed");
    let before: serde_json::Value =
        serde_json::from_slice(&std::fs::read(call.join("session.json")).unwrap()).unwrap();
    assert_eq!(before["status"], "live", "{before}");
    // Before the repair, verify says the call is unsealed and what to do.
    let unrepaired = Command::new(BINARY)
        .arg("verify")
        .arg(&data_dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&unrepaired.stdout);
    assert_eq!(unrepaired.status.code(), Some(1), "{said}");
    assert!(said.contains("call killed: unsealed: live"), "{said}");
    assert!(said.contains("run `mediagate repair`"), "{said}");

    let repair = Command::new(BINARY)
        .arg("repair")
        .arg(&data_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&repair.stdout);
    let stderr = String::from_utf8_lossy(&repair.stderr);
    assert!(repair.status.success(), "{stdout}\n{stderr}");
    eprintln!("mediagate repair, {killed_after:?} into the call:\n{stdout}");
    assert!(
        stdout.contains("session.json: marked interrupted"),
        "{stdout}"
    );
    // The killed call never got its seal from the gateway: repair gives it one, and the data
    // dir then verifies.
    assert!(
        stdout.contains("manifest.json: sealed (manifest.json and a chain entry)"),
        "{stdout}"
    );
    let verify = Command::new(BINARY)
        .arg("verify")
        .arg(&data_dir)
        .output()
        .unwrap();
    let verified = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{verified}");
    assert!(
        verified.starts_with("OK: 1 call folder(s), 1 sealed and intact"),
        "{verified}"
    );

    let after: serde_json::Value =
        serde_json::from_slice(&std::fs::read(call.join("session.json")).unwrap()).unwrap();
    assert_eq!(after["status"], "interrupted", "{after}");
    assert!(after["repair"]["note"].is_string(), "{after}");
    assert_eq!(after["call_id"], before["call_id"]);
    assert!(!call.join(".session.json.tmp").exists());

    // Every WAV opens with hound (which checks the sizes), and the call's track is a
    // byte-exact prefix of what was sent, holding at least what was sent up to 1.5 s before
    // the kill (the recorder writes once a second).
    let mut wavs = 0;
    for entry in std::fs::read_dir(&call).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wav") {
            common::assert_wav_header_consistent(&path);
            read_wav(&path);
            wavs += 1;
        }
    }
    assert!(wavs >= 1);
    let (recorded, rate) = read_wav(&call.join("mixed.wav"));
    assert_eq!(rate, 16_000);
    assert!(
        recorded[..] == audio[..recorded.len()],
        "not a prefix of the audio sent"
    );
    let at_least = (killed_after.as_secs_f64() - 1.5) * 16_000.0;
    assert!(
        recorded.len() as f64 >= at_least,
        "{} samples recorded, {at_least} sent 1.5 s before the kill",
        recorded.len()
    );

    // Run again: nothing left to do.
    let again = Command::new(BINARY)
        .arg("repair")
        .arg(&call)
        .output()
        .unwrap();
    assert!(again.status.success());
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout.contains("0 file(s) repaired in 1 call folder(s)"),
        "{stdout}"
    );
}

#[test]
fn repair_fails_when_a_file_cannot_be_repaired() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mixed.wav"), b"not a wav").unwrap();
    let output = Command::new(BINARY)
        .arg("repair")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot repair"), "{stderr}");
    assert!(stderr.contains("mixed.wav"), "{stderr}");
}
