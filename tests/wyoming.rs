//! The `wyoming` engine against a real Wyoming ASR server: `wyoming-faster-whisper` (PyPI),
//! run from the virtualenv `.ci/run` makes, on the Whisper model `mediagate models install`
//! puts in the cache (no download at run time). A call streamed by the emulator comes back
//! as the server's words in transcript.jsonl; with two servers, a call outlives one of them
//! being killed.
//!
//! The server comes from `MEDIAGATE_WYOMING_VENV` when it is set, else from
//! `~/.cache/mediagate/wyoming-venv`, which the first test to need it makes (Python's `venv`
//! and pip, from PyPI; about a minute once). Without Python the tests fail, saying what to
//! install: nothing else can stand in for the real server.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{TestGateway, emulate, sample};
use mediagate::speech::wer::Score;
use tokio::io::AsyncBufReadExt;
use tokio::process::Child;

/// The server's PyPI package, pinned.
const SERVER_PACKAGE: &str = "wyoming-faster-whisper==3.8.1";

/// The server's executable: in `MEDIAGATE_WYOMING_VENV` (then it must be there), else in the
/// default virtualenv, made on first use.
async fn server_program() -> PathBuf {
    if let Some(venv) = std::env::var_os("MEDIAGATE_WYOMING_VENV") {
        let program = PathBuf::from(venv).join("bin/wyoming-faster-whisper");
        assert!(
            program.is_file(),
            "MEDIAGATE_WYOMING_VENV has no {}",
            program.display()
        );
        return program;
    }
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    tokio::task::spawn_blocking(|| {
        PROGRAM
            .get_or_init(|| {
                common::venv::with_package("wyoming-venv", SERVER_PACKAGE)
                    .join("bin/wyoming-faster-whisper")
            })
            .clone()
    })
    .await
    .unwrap()
}

/// The server's executable and the model it runs.
async fn server_and_model() -> (PathBuf, PathBuf) {
    let program = server_program().await;
    let model = tokio::task::spawn_blocking(|| mediagate::models::install(false))
        .await
        .unwrap()
        .unwrap();
    (program, model)
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
    let (program, model) = server_and_model().await;
    let scratch = tempfile::tempdir().unwrap();
    let mut server = Server::start(&program, &model, scratch.path(), 2).await;
    let gateway = gateway_with(serde_json::json!({ "uri": server.uri })).await;
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
    server.child.kill().await.unwrap();
}

/// A gateway whose calls are transcribed by `wyoming` with these settings.
async fn gateway_with(wyoming: serde_json::Value) -> TestGateway {
    TestGateway::start_with(move |config| {
        config.pipeline.processors = ["transcript", "wyoming"].map(String::from).to_vec();
        config.pipeline.settings.insert("wyoming".into(), wyoming);
    })
    .await
}

/// A running `wyoming-faster-whisper`, and the transcripts it logged (one line each).
struct Server {
    child: Child,
    uri: String,
    transcripts: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `program` on a free port with the model in `model`, its scratch files in
    /// `data_dir`, and waits until it listens (it loads the model first).
    async fn start(program: &Path, model: &Path, data_dir: &Path, threads: u32) -> Server {
        let port = free_port();
        let uri = format!("tcp://127.0.0.1:{port}");
        let mut child = tokio::process::Command::new(program)
            .arg("--uri")
            .arg(&uri)
            .arg("--model")
            .arg(model)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--language", "en", "--local-files-only", "--device", "cpu"])
            .args([
                "--compute-type",
                "int8",
                "--cpu-threads",
                &threads.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Its log, read as it comes (a full pipe would stop it): each transcript is an INFO
        // line of the handler's.
        let transcripts = Arc::new(Mutex::new(Vec::new()));
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let (transcripts, log) = (Arc::clone(&transcripts), Arc::clone(&log));
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(text) =
                        line.strip_prefix("INFO:wyoming_faster_whisper.dispatch_handler:")
                    {
                        transcripts.lock().unwrap().push(text.to_owned());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        for _ in 0..600 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Server {
                    child,
                    uri,
                    transcripts,
                };
            }
            if let Some(status) = child.try_wait().unwrap() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "wyoming-faster-whisper exited with {status}: {}",
                    log.lock().unwrap().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("wyoming-faster-whisper did not listen within 120 s");
    }

    /// How many transcripts it has sent.
    fn transcribed(&self) -> usize {
        self.transcripts.lock().unwrap().len()
    }
}

/// The final results in a call's transcript.jsonl so far.
fn finals(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["status"] == "final")
        .collect()
}

/// One clip in a call made of several: its reference text and where it is, in ms of audio.
struct Clip {
    reference: String,
    start_ms: u64,
    end_ms: u64,
}

/// The clips of committed speech in `dir` (with its references.txt), one after another with
/// `gap_ms` of silence between (and before and after), in one 16 kHz WAV at `path`.
fn clips_in_a_row(dir: &str, gap_ms: u64, path: &Path) -> Vec<Clip> {
    let references = std::fs::read_to_string(sample(&format!("{dir}/references.txt"))).unwrap();
    let silence = vec![0i16; (gap_ms * 16) as usize];
    let mut audio = silence.clone();
    let mut clips = Vec::new();
    for (name, reference) in references.lines().filter_map(|l| l.split_once('\t')) {
        let (samples, rate) = common::read_wav(&sample(&format!("{dir}/{name}.wav")));
        assert_eq!(rate, 16_000, "{name}");
        let start_ms = audio.len() as u64 / 16;
        audio.extend(samples);
        clips.push(Clip {
            reference: reference.to_owned(),
            start_ms,
            end_ms: audio.len() as u64 / 16,
        });
        audio.extend(&silence);
    }
    common::write_wav(path, 16_000, &audio);
    clips
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_outlives_one_of_two_wyoming_servers() {
    let (program, model) = server_and_model().await;
    let scratch = tempfile::tempdir().unwrap();
    let dirs = ["a", "b"].map(|dir| scratch.path().join(dir));
    for dir in &dirs {
        std::fs::create_dir(dir).unwrap();
    }
    // One thread each: the two share this machine's cores.
    let (mut a, b) = tokio::join!(
        Server::start(&program, &model, &dirs[0], 1),
        Server::start(&program, &model, &dirs[1], 1),
    );
    let gateway = gateway_with(serde_json::json!({ "uris": [a.uri, b.uri] })).await;
    // Read speech (LibriVox): five sentences, 25 s, 1.5 s apart.
    let wav = scratch.path().join("call.wav");
    let clips = clips_in_a_row("speech/librivox", 1_500, &wav);
    let call = tokio::spawn(mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=two-servers"))
            .with_pacing(mediagate::emulator::Pacing::Realtime)
            .with_wav(&wav),
    ));
    let started = Instant::now();
    let transcript = gateway.call_dir("two-servers").join("transcript.jsonl");

    // The first final comes while the call goes on: then server a is killed.
    let mut seen = Vec::new();
    while finals(&transcript).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no final within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen.push(started.elapsed());
    a.child.kill().await.unwrap();
    let killed = started.elapsed();

    // Every later final is noted when it shows up, until the call ends.
    while !call.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the call did not end within 120 s"
        );
        let count = finals(&transcript).len();
        seen.resize(count.max(seen.len()), started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    call.await.unwrap().unwrap();
    let session = gateway
        .ended_session_within("two-servers", Duration::from_secs(60))
        .await;
    let wyoming = common::processor(&session["transports"][0], "wyoming");
    assert_eq!(wyoming["report"]["errors"], 0, "{wyoming}");

    // Each clip's words, in the finals that fall within it (a pause may have cut it in two).
    let lines = finals(&transcript);
    let mut all = Score::default();
    let mut utterances = 0;
    for clip in &clips {
        let within: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| {
                let middle = (l["start_ms"].as_u64().unwrap() + l["end_ms"].as_u64().unwrap()) / 2;
                (clip.start_ms..clip.end_ms).contains(&middle)
            })
            .collect();
        utterances += within.len();
        let heard: Vec<&str> = within.iter().map(|l| l["text"].as_str().unwrap()).collect();
        let heard = heard.join(" ");
        eprintln!("heard {heard:?} for {:?}", clip.reference);
        assert!(
            within.iter().all(|l| l["source"] == "wyoming"),
            "{within:?}"
        );
        assert!(
            !heard.trim().is_empty(),
            "no final for {:?}: {lines:?}",
            clip.reference
        );
        all += Score::of(&clip.reference, &heard);
    }
    assert_eq!(
        utterances,
        lines.len(),
        "finals outside the clips: {lines:?}"
    );
    // The utterances went in turn, a first; once a was gone, the ones it would have had
    // (refused) went on to b: none was lost, none was transcribed twice.
    let (by_a, by_b) = (a.transcribed(), b.transcribed());
    eprintln!(
        "a transcribed {by_a} (killed at {killed:?}), b {by_b}; finals seen at {seen:?}, the \
         call over at {:?}; WER {:.1}%",
        started.elapsed(),
        all.wer() * 100.0
    );
    // How long after each clip's end its final showed up (at most 20 ms late).
    if utterances == clips.len() {
        let lags: Vec<Duration> = clips
            .iter()
            .zip(&seen)
            .map(|(clip, seen)| seen.saturating_sub(Duration::from_millis(clip.end_ms)))
            .collect();
        eprintln!("finals after the end of each clip's speech: {lags:?}");
    }
    // tiny.en's own WER on these clips is some 4% (README).
    assert!(all.wer() < 0.15, "{all:?}");
    assert!(by_a >= 1, "the first utterance went to a");
    assert_eq!(by_a + by_b, utterances, "one transcript per utterance");
    assert!(by_b > utterances / 2, "b took a's share after it went away");
}
