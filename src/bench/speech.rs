//! `mediagate bench --speech`: the command-line front of `mediagate_bench::speech`. With
//! `--self` it starts this binary's `serve` as a child process on a free port, with a speech
//! pipeline (`wav,transcript,whisper` unless `--pipeline` says otherwise), a recordings dir it
//! chooses (or `--recordings`) and, with `--config FILE`, that file's settings (an engine's
//! `[pipeline.settings.*]`, say).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use mediagate_bench::speech::{CallSearch, SpeechBounds, SpeechConfig, SpeechReport};

use super::{BenchArgs, Target, free_port, parse_percent, parse_span};
use crate::emulate::parse_time;

/// The pipeline of a `--self` gateway under `--speech` when `--pipeline` is not given.
const DEFAULT_PIPELINE: [&str; 3] = ["wav", "transcript", "whisper"];
/// How long a `--self` gateway may take to listen.
const READY_WITHIN: Duration = Duration::from_secs(300);

/// The arguments only `--speech` takes.
#[derive(clap::Args, Debug)]
pub(crate) struct SpeechArgs {
    /// Bench the speech pipeline: real-time calls of real speech (WAV clips with reference
    /// text), scored by finals latency, word error rate, partial rate, CPU and calls
    /// transcribed live. `--calls` defaults to 2, `--pipeline` to wav,transcript,whisper.
    #[arg(
        long,
        conflicts_with_all = ["reference_echo", "wav", "unmixed", "no_echo", "mode", "fail_if_rss_grows"]
    )]
    pub(crate) speech: bool,
    /// The gateway's recordings dir (its data_dir), where the calls' folders appear: needed
    /// with --url; with --self, keep the recordings there (else a temporary dir).
    #[arg(long, value_name = "DIR", requires = "speech")]
    recordings: Option<PathBuf>,
    /// The speech clips: folders (every WAV in them) or WAV files, each described by the
    /// references.txt of its folder (`name<TAB>text`) [default: samples/speech and
    /// samples/speech/librivox].
    #[arg(long, value_name = "DIR_OR_WAV", num_args = 1.., requires = "speech")]
    clips: Vec<PathBuf>,
    /// With --self: a config file for the gateway (engine settings...); its pipeline and
    /// limits are replaced by the bench's.
    #[arg(long, value_name = "FILE", requires = "speech")]
    config: Option<PathBuf>,
    /// --find-max: a run holds while its p95 finals latency is at most this.
    #[arg(long, default_value = "1.5s", value_parser = parse_time)]
    p95_bound: Duration,
    /// --find-max: a run holds while its word error rate is at most this.
    #[arg(long, value_name = "PERCENT", default_value = "10%", value_parser = parse_percent)]
    max_wer: f64,
    /// --find-max: never more calls than this.
    #[arg(long, default_value_t = 256)]
    max_calls: usize,
    /// Silence after each clip.
    #[arg(long, default_value = "1.5s", value_parser = parse_time)]
    clip_gap: Duration,
    /// After the last hang-up, wait at most this long for the calls' transcripts.
    #[arg(long, default_value = "120s", value_parser = parse_span)]
    transcript_wait: Duration,
}

/// Runs `mediagate bench --speech`.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (target, recordings) = start(&args).await?;
    let base = SpeechConfig {
        url: target.url.clone(),
        recordings,
        calls: args.calls.unwrap_or(2),
        clips: if args.speech.clips.is_empty() {
            default_clips()
        } else {
            args.speech.clips.clone()
        },
        duration: args.duration,
        ramp: args.ramp,
        clip_gap: args.speech.clip_gap,
        rate_hz: args.rate,
        gateway_pid: target.pid,
        transcript_wait: args.speech.transcript_wait,
        progress: !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    eprintln!("bench --speech: {} ({})", target.url, target.what);
    let bounds = SpeechBounds {
        p95: args.speech.p95_bound,
        max_wer: args.speech.max_wer,
    };
    let reports = if args.find_max {
        find_max(&base, &bounds, args.speech.max_calls, args.json).await?
    } else if !args.sweep.is_empty() {
        let mut reports = Vec::new();
        for &calls in &args.sweep {
            reports.push(once(&base, calls, args.json).await?);
        }
        reports
    } else {
        vec![once(&base, base.calls, args.json).await?]
    };
    if reports.len() > 1 && !args.json {
        print_summary(&reports);
    }
    if let Some(path) = &args.chart {
        std::fs::write(
            path,
            mediagate_bench::speech_sweep_svg(&reports, &target.what),
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("bench --speech: chart written to {}", path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(())
}

/// The committed clips: from the working directory when it is a checkout, else from the
/// checkout this binary was built from.
fn default_clips() -> Vec<PathBuf> {
    let here = Path::new("samples/speech");
    let root = if here
        .join(mediagate_bench::speech::REFERENCES_FILE)
        .is_file()
    {
        here.to_owned()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/speech")
    };
    vec![root.clone(), root.join("librivox")]
}

/// One run with `calls` calls; prints its table unless `json`.
async fn once(base: &SpeechConfig, calls: usize, json: bool) -> anyhow::Result<SpeechReport> {
    let config = SpeechConfig {
        calls,
        ..base.clone()
    };
    let report = mediagate_bench::speech::run(config).await?;
    if !json {
        println!("{report}\n");
    }
    Ok(report)
}

/// Doubles the calls from --calls until a run does not hold, then bisects to one call.
async fn find_max(
    base: &SpeechConfig,
    bounds: &SpeechBounds,
    max_calls: usize,
    json: bool,
) -> anyhow::Result<Vec<SpeechReport>> {
    let mut search = CallSearch::new(max_calls);
    let mut reports: Vec<SpeechReport> = Vec::new();
    let mut next = Some(base.calls.max(1));
    while let Some(calls) = next {
        let report = once(base, calls, json).await?;
        let failures = report.failures(bounds);
        if failures.is_empty() {
            eprintln!("find-max: {calls} calls held");
        } else {
            eprintln!(
                "find-max: {calls} calls did not hold: {}",
                failures.join("; ")
            );
        }
        next = search.next(calls, failures.is_empty());
        reports.push(report);
    }
    let best = search
        .held()
        .and_then(|held| reports.iter().find(|r| r.calls == held));
    match best {
        Some(r) => eprintln!(
            "find-max: held {} real-time calls of speech (p95 finals latency {} ≤ {:.2} s, WER \
             {:.1}% ≤ {:.1}%, all live){}",
            r.calls,
            r.finals_latency
                .map_or("-".to_owned(), |l| format!("{:.2} s", l.p95_ms / 1e3)),
            bounds.p95.as_secs_f64(),
            r.wer.rate * 100.0,
            bounds.max_wer * 100.0,
            search
                .failed()
                .map(|f| format!("; {f} did not"))
                .unwrap_or_default()
        ),
        None => eprintln!(
            "find-max: not even {} call(s) held",
            search.failed().unwrap_or(base.calls)
        ),
    }
    Ok(reports)
}

fn print_summary(reports: &[SpeechReport]) {
    println!("calls  p50 s  p95 s  p99 s  max s   WER %  partials/s  gateway cores  live");
    for r in reports {
        let l = r.finals_latency.as_ref();
        let s = |pick: fn(&mediagate_bench::speech::FinalsLatency) -> f64| {
            l.map_or("-".to_owned(), |l| format!("{:.2}", pick(l) / 1e3))
        };
        println!(
            "{:>5}  {:>5}  {:>5}  {:>5}  {:>5}  {:>6.1}  {:>10.2}  {:>13}  {}/{}",
            r.calls,
            s(|l| l.p50_ms),
            s(|l| l.p95_ms),
            s(|l| l.p99_ms),
            s(|l| l.max_ms),
            r.wer.rate * 100.0,
            r.partials_per_speech_sec,
            r.gateway
                .map_or("-".to_owned(), |g| format!("{:.2}", g.streaming_cores)),
            r.live.live,
            r.calls
        );
    }
}

/// The gateway under test and its recordings dir: at --url (with --recordings), or this
/// binary's `serve` started with a speech pipeline.
async fn start(args: &BenchArgs) -> anyhow::Result<(Target, PathBuf)> {
    if let Some(url) = &args.url {
        let Some(recordings) = args.speech.recordings.clone() else {
            bail!("--speech --url needs --recordings DIR: the gateway's data_dir on this machine");
        };
        let target = Target {
            url: url.clone(),
            pid: args.gateway_pid,
            what: "gateway at a URL".to_owned(),
            child: None,
            scratch: None,
        };
        return Ok((target, recordings));
    }
    if !args.self_gateway {
        bail!("say what to bench: --url URL --recordings DIR, or --self");
    }
    let scratch =
        std::env::temp_dir().join(format!("mediagate-bench-speech-{}", std::process::id()));
    let recordings = args
        .speech
        .recordings
        .clone()
        .unwrap_or_else(|| scratch.join("data"));
    std::fs::create_dir_all(&recordings)
        .with_context(|| format!("cannot create {}", recordings.display()))?;
    let pipeline: Vec<String> = if args.pipeline.is_empty() {
        DEFAULT_PIPELINE.map(String::from).to_vec()
    } else {
        args.pipeline.clone()
    };
    let addr = format!("127.0.0.1:{}", free_port()?);
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut command = Command::new(&exe);
    command.args(["--log", "warn", "serve", "--listen", &addr, "--data-dir"]);
    command.arg(&recordings);
    if let Some(config) = &args.speech.config {
        command.arg("--config").arg(config);
    }
    for (key, value) in self_env(&pipeline) {
        command.env(key, value);
    }
    let what = format!("mediagate, pipeline {}", pipeline.join(","));
    // Kept when the user named the recordings dir.
    let scratch = args.speech.recordings.is_none().then_some(scratch);
    // A speech engine loads its model before the gateway listens (installing it first, when
    // missing and allowed).
    let target = Target::spawn(command, &addr, what, scratch, READY_WITHIN).await?;
    Ok((target, recordings))
}

/// The settings the bench gives its `--self` gateway over any `--config` file, as
/// environment variables: its pipeline, and its limits lifted (every call comes from
/// 127.0.0.1 at once).
fn self_env(pipeline: &[String]) -> Vec<(&'static str, String)> {
    let names: Vec<String> = pipeline.iter().map(|n| format!("{:?}", n.trim())).collect();
    vec![
        (
            "MEDIAGATE_PIPELINE__PROCESSORS",
            format!("[{}]", names.join(", ")),
        ),
        ("MEDIAGATE_LIMITS__MAX_CALLS", "1000000".to_owned()),
        // No admin listener: the bench needs none, and another gateway may hold its port.
        ("MEDIAGATE_ADMIN__ENABLED", "false".to_owned()),
        ("MEDIAGATE_LIMITS__MAX_CONNECTIONS", "1000000".to_owned()),
        (
            "MEDIAGATE_LIMITS__NEW_CONNECTIONS_PER_IP_PER_SEC",
            "0.0".to_owned(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_gateway_gets_its_pipeline_as_a_toml_array() {
        let env = self_env(&["wav".to_owned(), " pocketsphinx".to_owned()]);
        assert_eq!(
            env[0],
            (
                "MEDIAGATE_PIPELINE__PROCESSORS",
                r#"["wav", "pocketsphinx"]"#.to_owned()
            )
        );
    }

    #[test]
    fn the_default_clips_are_the_committed_ones() {
        let clips = default_clips();
        assert!(
            clips.iter().all(|c| c.join("references.txt").is_file()),
            "{clips:?}"
        );
    }
}
