//! Speech-to-text accuracy and cost: every engine this build has, on the spoken clips of
//! samples/speech (espeak-ng) and the read speech of samples/speech/librivox (human), with
//! their reference text, through the same transcriber a live call uses. Prints, per engine, the word error rate (normalized: case, punctuation,
//! numbers) and the real-time factor: wall seconds of decoding and CPU seconds of the whole
//! process, per second of audio.
//!
//! `cargo bench --bench speech` (add `--features pocketsphinx` for that engine; set
//! `MEDIAGATE_WYOMING_URI=tcp://host:port` to include a Wyoming server, whose CPU is not
//! counted: it is another process). Figures go in BENCHMARKS.md.

#![allow(missing_docs, clippy::unwrap_used)] // bench harness: a panic here is a broken bench

use std::path::{Path, PathBuf};
use std::time::Instant;

use mediagate::speech::wer::Score;

/// The process's CPU time so far (user + system), from /proc (Linux), in seconds.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the name; 100 Hz.
    (ticks(11) + ticks(12)) / 100.0
}

/// The clips under samples/`corpus` and what they say.
fn clips(corpus: &str) -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(corpus);
    std::fs::read_to_string(dir.join("references.txt"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(name, text)| (dir.join(format!("{name}.wav")), text.to_owned()))
        .collect()
}

struct Row {
    label: String,
    score: Score,
    audio_secs: f64,
    wall_secs: f64,
    cpu_secs: f64,
}

async fn run(engine: &str, label: &str, corpus: &str, settings: serde_json::Value) -> Row {
    let mut row = Row {
        label: format!("{label} | {corpus}"),
        score: Score::default(),
        audio_secs: 0.0,
        wall_secs: 0.0,
        cpu_secs: 0.0,
    };
    // Load once before measuring: models are shared by every call of a process.
    let name = engine.to_owned();
    let warm = settings.clone();
    tokio::task::spawn_blocking(move || {
        mediagate::speech::build_transcriber(&name, &warm, Some(&mediagate::model_installer()))
    })
    .await
    .unwrap()
    .unwrap();
    for (path, reference) in clips(corpus) {
        let name = engine.to_owned();
        let settings = settings.clone();
        let transcriber = tokio::task::spawn_blocking(move || {
            mediagate::speech::build_transcriber(
                &name,
                &settings,
                Some(&mediagate::model_installer()),
            )
        })
        .await
        .unwrap()
        .unwrap();
        let (cpu, wall) = (cpu_secs(), Instant::now());
        let result = mediagate::speech::transcribe_wav(&path, transcriber)
            .await
            .unwrap();
        row.wall_secs += wall.elapsed().as_secs_f64();
        row.cpu_secs += cpu_secs() - cpu;
        row.audio_secs += result.audio_secs;
        let heard = result.lines().collect::<Vec<_>>().join(" ");
        let score = Score::of(&reference, &heard);
        eprintln!(
            "  {label} {}: {} errors / {} words: {heard:?}",
            path.file_stem().unwrap().to_string_lossy(),
            score.errors,
            score.words
        );
        row.score += score;
    }
    row
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks engines by label.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let finals_only = serde_json::json!({"utterances": {"partial_interval_ms": 0}});
    let mut plans: Vec<(&str, &str, serde_json::Value)> = Vec::new();
    if mediagate::speech::engines().contains(&"whisper") {
        plans.push(("whisper", "whisper (finals only)", finals_only.clone()));
        plans.push((
            "whisper",
            "whisper (live: partials every 1 s)",
            serde_json::Value::Null,
        ));
    }
    if mediagate::speech::engines().contains(&"pocketsphinx") {
        plans.push(("pocketsphinx", "pocketsphinx", serde_json::Value::Null));
    }
    let wyoming = std::env::var("MEDIAGATE_WYOMING_URI").ok();
    if let Some(uri) = &wyoming {
        plans.push(("wyoming", "wyoming", serde_json::json!({ "uri": uri })));
    }
    let mut rows = Vec::new();
    for (engine, label, settings) in plans {
        if filter.as_deref().is_some_and(|f| !label.contains(f)) {
            continue;
        }
        for corpus in ["speech", "speech/librivox"] {
            rows.push(run(engine, label, corpus, settings.clone()).await);
        }
    }
    println!(
        "\n| engine | clips | WER | errors / words | audio | real-time factor (wall) | CPU s per audio s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {:.1}% | {} / {} | {:.1} s | {:.3} | {:.3} |",
            row.label,
            row.score.wer() * 100.0,
            row.score.errors,
            row.score.words,
            row.audio_secs,
            row.wall_secs / row.audio_secs,
            row.cpu_secs / row.audio_secs,
        );
    }
}
