//! The `wyoming` engine against a real Wyoming ASR server: `wyoming-faster-whisper` (PyPI),
//! run from the virtualenv `.ci/run` makes, on the Whisper model `mediagate models install`
//! puts in the cache (no download at run time). A call streamed by the emulator comes back
//! as the server's words in transcript.jsonl.
//!
//! Where the virtualenv is missing (no Python) and `MEDIAGATE_WYOMING_VENV` is not set, the
//! test says so on stderr and passes: it cannot run here, and nothing else can stand in for
//! the real server. `.ci/run` sets the variable, so CI never skips it.

#![allow(clippy::unwrap_used)] // a panic in a test helper is a failed assertion

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{TestGateway, emulate, sample};
use mediagate::speech::wer::Score;

/// The server's executable: in `MEDIAGATE_WYOMING_VENV` (set by `.ci/run`: then it must be
/// there), else in the default virtualenv if it exists.
fn server_program() -> Option<PathBuf> {
    if let Some(venv) = std::env::var_os("MEDIAGATE_WYOMING_VENV") {
        let program = PathBuf::from(venv).join("bin/wyoming-faster-whisper");
        assert!(
            program.is_file(),
            "MEDIAGATE_WYOMING_VENV has no {}",
            program.display()
        );
        return Some(program);
    }
    let home = PathBuf::from(std::env::var_os("HOME")?);
    let program = home.join(".cache/mediagate/wyoming-venv/bin/wyoming-faster-whisper");
    program.is_file().then_some(program)
}

/// A free TCP port on 127.0.0.1 (the server binds it itself).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_transcribed_by_a_real_wyoming_server() {
    let Some(program) = server_program() else {
        eprintln!(
            "SKIPPED a_call_is_transcribed_by_a_real_wyoming_server: no wyoming-faster-whisper \
             (needs Python; make it with `python3 -m venv ~/.cache/mediagate/wyoming-venv && \
             ~/.cache/mediagate/wyoming-venv/bin/pip install wyoming-faster-whisper==3.8.1`, \
             or run .ci/run)"
        );
        return;
    };
    let model = tokio::task::spawn_blocking(|| mediagate::models::install(false))
        .await
        .unwrap()
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let port = free_port();
    let uri = format!("tcp://127.0.0.1:{port}");
    let mut server = tokio::process::Command::new(&program)
        .arg("--uri")
        .arg(&uri)
        .arg("--model")
        .arg(&model)
        .arg("--data-dir")
        .arg(scratch.path())
        .args(["--language", "en", "--local-files-only", "--device", "cpu"])
        .args(["--compute-type", "int8", "--cpu-threads", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // It listens once the model is loaded.
    let mut ready = false;
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
        if let Some(status) = server.try_wait().unwrap() {
            let output = server.wait_with_output().await.unwrap();
            panic!(
                "wyoming-faster-whisper exited with {status}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "wyoming-faster-whisper did not listen within 120 s");

    let gateway = TestGateway::start_with(move |config| {
        config.pipeline.processors = ["transcript", "wyoming"].map(String::from).to_vec();
        config
            .pipeline
            .settings
            .insert("wyoming".into(), serde_json::json!({ "uri": uri }));
    })
    .await;
    let clip = "support-02";
    mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=wyoming")).with_wav(sample(&format!("speech/{clip}.wav"))),
    )
    .await
    .unwrap();
    let session = gateway
        .ended_session_within("wyoming", Duration::from_secs(60))
        .await;
    let wyoming = common::processor(&session["transports"][0], "wyoming");
    assert_eq!(wyoming["report"]["errors"], 0, "{wyoming}");

    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(gateway.call_dir("wyoming").join("transcript.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(lines.len(), 1, "one utterance, one final result: {lines:?}");
    assert_eq!(lines[0]["source"], "wyoming");
    assert_eq!(lines[0]["status"], "final");
    let reference = std::fs::read_to_string(sample("speech/references.txt"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{clip}\t")).map(str::to_owned))
        .unwrap();
    let heard = lines[0]["text"].as_str().unwrap();
    let score = Score::of(&reference, heard);
    assert!(
        score.wer() < 0.15,
        "heard {heard:?} for {reference:?}: {score:?}"
    );
    server.kill().await.unwrap();
}
