//! `mediagate bench`: the command-line front of `mediagate-bench`. It benches a gateway at a
//! URL, or starts one itself (`--self`, this binary's `serve` with a chosen pipeline; or
//! `--reference-echo`, the bare echo server) as a child process on a free port, so that its CPU
//! and memory are measured apart from the generator's. `--speech` benches a speech pipeline
//! instead ([`speech`]).

mod speech;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::emulate::parse_time;
use anyhow::{Context as _, bail};
use mediagate_bench::{BenchConfig, BenchReport, Mode};

/// Arguments of `mediagate bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// A running gateway to bench (its pipeline must echo, else pass --no-echo).
    #[arg(long, conflicts_with_all = ["self_gateway", "reference_echo"])]
    url: Option<String>,
    /// Start this mediagate as a child process on a free local port and bench it.
    #[arg(long = "self")]
    self_gateway: bool,
    /// With --self: its pipeline, comma-separated (`echo`, `echo,wav`, `echo,wav,vad`...)
    /// [default: echo; with --speech wav,transcript,whisper].
    #[arg(long, value_delimiter = ',')]
    pipeline: Vec<String>,
    /// Bench the bare reference echo server instead (a child process): the floor to compare with.
    #[arg(long, conflicts_with = "self_gateway")]
    reference_echo: bool,
    /// Pid of the gateway behind --url when it runs on this machine: its CPU and memory are read
    /// from /proc.
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// Concurrent calls [default: 100; with --speech 2].
    #[arg(long)]
    calls: Option<usize>,
    /// Measured time, after the ramp and the warm-up (`30s`, `15m`, `1h`); with --speech, how
    /// long each call plays (whole clips, at least this long).
    #[arg(long, default_value = "30s", value_parser = parse_span)]
    duration: Duration,
    /// Calls connect spread over this long.
    #[arg(long, default_value = "5s", value_parser = parse_time)]
    ramp: Duration,
    /// Load before the measured window, not counted.
    #[arg(long, default_value = "2s", value_parser = parse_time)]
    warmup: Duration,
    /// Sample rate of the audio: 16000 or 24000.
    #[arg(long, default_value_t = 16_000)]
    rate: u32,
    /// Participants per call (unmixed audio); 0 sends mixed audio.
    #[arg(long, default_value_t = 0)]
    unmixed: usize,
    /// `realtime` (a frame per 20 ms per call, as ACS sends) or `max` (as fast as it takes them).
    #[arg(long, default_value = "realtime")]
    mode: Mode,
    /// Audio to send (mono PCM16 at --rate) instead of a 440 Hz tone.
    #[arg(long)]
    wav: Option<PathBuf>,
    /// The gateway does not echo: only sending is measured (no loss or latency figures).
    #[arg(long)]
    no_echo: bool,
    /// With --reference-echo: drop every Nth frame (a deliberately lossy gateway).
    #[arg(long, hide = true)]
    reference_drop_every: Option<u64>,
    /// Print the report(s) as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Run these loads (calls) one after the other, e.g. `100,500,1000`.
    #[arg(long, value_delimiter = ',', conflicts_with = "find_max")]
    sweep: Vec<usize>,
    /// With --sweep or --find-max: write an SVG chart of latency and CPU against calls.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// Raise the number of real-time calls from --calls until p99 passes --p99-bound or a
    /// frame is lost; report the highest load held.
    #[arg(long)]
    find_max: bool,
    /// The latency bound of --find-max.
    #[arg(long, default_value = "20ms", value_parser = parse_time)]
    p99_bound: Duration,
    /// Sample the gateway's and the generator's resident memory this often (default: every
    /// minute when --duration is 10 minutes or more, else a tenth of --duration).
    #[arg(long, value_name = "TIME", value_parser = parse_span)]
    rss_every: Option<Duration>,
    /// The gateway's memory is flat when, after the warm-up (the ramp, --warmup and the first
    /// tenth of --duration), its samples are within this spread: (max - min) / min.
    #[arg(long, value_name = "PERCENT", default_value = "5%", value_parser = parse_percent)]
    rss_flat_within: f64,
    /// Exit non-zero when the gateway's memory was not flat (or could not be measured): a soak
    /// test, `--duration 1h --fail-if-rss-grows`.
    #[arg(long)]
    fail_if_rss_grows: bool,
    #[command(flatten)]
    speech: speech::SpeechArgs,
}

/// Arguments of the hidden `mediagate reference-echo`.
#[derive(clap::Args, Debug)]
pub(crate) struct ReferenceEchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// Drop every Nth audio frame (a deliberately lossy gateway).
    #[arg(long)]
    drop_every: Option<u64>,
}

/// Serves the reference echo until Ctrl-C or SIGTERM.
pub(crate) async fn reference_echo(args: ReferenceEchoArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(addr = %args.listen, "reference echo listening");
    mediagate_bench::serve_reference_echo(
        listener,
        args.drop_every,
        mediagate_server::shutdown_signal(),
    )
    .await;
    Ok(())
}

/// Runs `mediagate bench`.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.speech.speech {
        return speech::run(args).await;
    }
    let target = Target::start(&args).await?;
    let base = BenchConfig {
        url: target.url.clone(),
        calls: args.calls.unwrap_or(100),
        duration: args.duration,
        ramp: args.ramp,
        warmup: args.warmup,
        rate_hz: args.rate,
        unmixed: args.unmixed,
        mode: args.mode,
        wav: args.wav.clone(),
        expect_echo: !args.no_echo,
        gateway_pid: target.pid,
        // Memory per call is counted from the gateway's idle size, however many runs follow.
        gateway_idle_rss_kib: target
            .pid
            .and_then(|pid| mediagate_bench::sample(pid).ok())
            .map(|s| s.rss_kib),
        progress: !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        max_in_flight: 64,
        rss_every: args.rss_every,
        rss_flat_within: args.rss_flat_within,
    };
    eprintln!("bench: {} ({})", target.url, target.what);
    let reports = if args.find_max {
        find_max(&base, args.p99_bound, args.json).await?
    } else if !args.sweep.is_empty() {
        let mut reports = Vec::new();
        for &calls in &args.sweep {
            let report = once(&base, calls, args.json).await?;
            reports.push(report);
        }
        if !args.json {
            print_summary(&reports);
        }
        reports
    } else {
        vec![once(&base, base.calls, args.json).await?]
    };
    if let Some(path) = &args.chart {
        std::fs::write(path, mediagate_bench::sweep_svg(&reports, &target.what))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("bench: chart written to {}", path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    drop(target);
    if args.fail_if_rss_grows {
        check_rss_flat(&reports, args.rss_flat_within)?;
    }
    Ok(())
}

/// `--fail-if-rss-grows`: an error unless every run's gateway memory was flat.
fn check_rss_flat(reports: &[BenchReport], within: f64) -> anyhow::Result<()> {
    for r in reports {
        match &r.rss.trend {
            Some(t) if t.flat => {}
            Some(t) => bail!(
                "the gateway's resident memory was not flat within {:.1}% after the warm-up \
                 ({} calls): {}–{} KiB, spread {:.1}%, {:+.0} KiB/min",
                within * 100.0,
                r.calls,
                t.min_kib,
                t.max_kib,
                t.spread * 100.0,
                t.kib_per_min
            ),
            None => bail!(
                "--fail-if-rss-grows: the gateway's memory trend was not measured ({} calls): \
                 pass --gateway-pid for a gateway at a URL, and sample at least twice after the \
                 warm-up (--rss-every)",
                r.calls
            ),
        }
    }
    Ok(())
}

/// A time: `parse_time`'s forms (`2s`, `1.5`, `500ms`) or minutes and hours (`15m`, `1h`).
fn parse_span(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let scaled = |number: &str, scale: f64| {
        number
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .and_then(|n| Duration::try_from_secs_f64(n * scale).ok())
            .ok_or_else(|| format!("`{text}` is not a time: use `30s`, `500ms`, `15m` or `1h`"))
    };
    if let Some(h) = t.strip_suffix('h') {
        scaled(h, 3600.0)
    } else if let Some(m) = t.strip_suffix("min").or_else(|| t.strip_suffix('m')) {
        scaled(m, 60.0)
    } else {
        parse_time(t)
    }
}

/// A percentage, `5%` or `5`, as a fraction (`0.05`).
fn parse_percent(text: &str) -> Result<f64, String> {
    text.trim()
        .trim_end_matches('%')
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|p| p.is_finite() && *p >= 0.0)
        .map(|p| p / 100.0)
        .ok_or_else(|| format!("`{text}` is not a percentage: use `5%`"))
}

/// One run with `calls` calls; prints its table unless `json`.
async fn once(base: &BenchConfig, calls: usize, json: bool) -> anyhow::Result<BenchReport> {
    let config = BenchConfig {
        calls,
        ..base.clone()
    };
    let report = mediagate_bench::run(config).await?;
    if !json {
        println!("{report}\n");
    }
    Ok(report)
}

/// Whether a run held: clean, and p99 under `bound`.
fn held(report: &BenchReport, bound: Duration) -> bool {
    let bound_us = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
    report.clean()
        && report
            .latency_us
            .as_ref()
            .is_some_and(|l| l.p99 <= bound_us)
}

/// Grows the load by half until a run fails (or halves it until one holds), then bisects
/// between the highest load held and the lowest that failed, to within 5%.
async fn find_max(
    base: &BenchConfig,
    bound: Duration,
    json: bool,
) -> anyhow::Result<Vec<BenchReport>> {
    if base.mode != Mode::Realtime || !base.expect_echo {
        bail!("--find-max needs --mode realtime and an echoing gateway");
    }
    let mut reports = Vec::new();
    let (mut good, mut bad): (Option<usize>, Option<usize>) = (None, None);
    let mut calls = base.calls.max(1);
    loop {
        let report = once(base, calls, json).await?;
        let ok = held(&report, bound);
        eprintln!(
            "find-max: {calls} calls {}",
            if ok { "held" } else { "did not hold" }
        );
        reports.push(report);
        if ok {
            good = good.max(Some(calls));
        } else {
            bad = Some(bad.map_or(calls, |b| b.min(calls)));
        }
        calls = match (good, bad) {
            (Some(g), None) => g + g.div_ceil(2),
            (None, Some(b)) if b > 1 => b / 2,
            (None, Some(_)) => break,
            (Some(g), Some(b)) if b - g > g.div_ceil(20).max(1) => g + (b - g) / 2,
            _ => break,
        };
    }
    match good {
        Some(g) => eprintln!(
            "find-max: held {g} real-time calls (p99 ≤ {} ms, no loss){}",
            bound.as_millis(),
            bad.map(|b| format!("; {b} did not")).unwrap_or_default()
        ),
        None => eprintln!("find-max: even {} calls did not hold", base.calls),
    }
    Ok(reports)
}

fn print_summary(reports: &[BenchReport]) {
    println!("calls  frames/s  lost  p50 ms  p99 ms  max ms  gateway cores  µs/frame  KiB/call");
    for r in reports {
        let l = r.latency_us.as_ref();
        let ms = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{:.2}", v as f64 / 1e3));
        let g = r.gateway.as_ref();
        println!(
            "{:>5}  {:>8.0}  {:>4}  {:>6}  {:>6}  {:>6}  {:>13}  {:>8}  {:>8}",
            r.calls,
            r.rate.sent_per_sec,
            r.frames.lost,
            ms(l.map(|l| l.p50)),
            ms(l.map(|l| l.p99)),
            ms(l.map(|l| l.max)),
            g.map_or("-".to_owned(), |g| format!("{:.2}", g.cores)),
            g.map_or("-".to_owned(), |g| format!("{:.1}", g.micros_per_frame)),
            g.map_or("-".to_owned(), |g| format!("{:.0}", g.rss_per_call_kib)),
        );
    }
}

/// The gateway under test, and the child process when this command started it.
struct Target {
    url: String,
    pid: Option<u32>,
    what: String,
    child: Option<Child>,
    scratch: Option<PathBuf>,
}

impl Target {
    async fn start(args: &BenchArgs) -> anyhow::Result<Target> {
        if let Some(url) = &args.url {
            return Ok(Target {
                url: url.clone(),
                pid: args.gateway_pid,
                what: "gateway at a URL".to_owned(),
                child: None,
                scratch: None,
            });
        }
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let (command, what, scratch) = if args.reference_echo {
            let mut command = Command::new(&exe);
            command.args(["--log", "warn", "reference-echo", "--listen", &addr]);
            if let Some(n) = args.reference_drop_every {
                command.args(["--drop-every", &n.to_string()]);
            }
            (command, "reference echo server".to_owned(), None)
        } else if args.self_gateway {
            let scratch =
                std::env::temp_dir().join(format!("mediagate-bench-{}", std::process::id()));
            std::fs::create_dir_all(&scratch)
                .with_context(|| format!("cannot create {}", scratch.display()))?;
            let config = scratch.join("mediagate.toml");
            let pipeline = if args.pipeline.is_empty() {
                vec!["echo".to_owned()]
            } else {
                args.pipeline.clone()
            };
            std::fs::write(
                &config,
                self_config(&addr, &scratch.join("data"), &pipeline),
            )
            .with_context(|| format!("cannot write {}", config.display()))?;
            let mut command = Command::new(&exe);
            command
                .args(["--log", "warn", "serve", "--config"])
                .arg(&config);
            let what = format!("mediagate, pipeline {}", pipeline.join(","));
            (command, what, Some(scratch))
        } else {
            bail!("say what to bench: --url URL, --self, or --reference-echo");
        };
        Target::spawn(command, &addr, what, scratch, Duration::from_secs(10)).await
    }

    /// Starts `command` (this executable, told to listen on `addr`) and waits until it does,
    /// for at most `ready_within`.
    async fn spawn(
        mut command: Command,
        addr: &str,
        what: String,
        scratch: Option<PathBuf>,
        ready_within: Duration,
    ) -> anyhow::Result<Target> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {:?}", command.get_program()))?;
        let mut target = Target {
            url: format!("ws://{addr}/ws"),
            pid: Some(child.id()),
            what,
            child: Some(child),
            scratch,
        };
        target.wait_ready(addr, ready_within).await?;
        Ok(target)
    }

    /// Waits until the child accepts connections (or has died).
    async fn wait_ready(&mut self, addr: &str, within: Duration) -> anyhow::Result<()> {
        for _ in 0..within.as_millis().div_ceil(50) {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            if let Some(child) = &mut self.child {
                if let Some(status) = child.try_wait()? {
                    bail!("the gateway exited before it listened ({status})");
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "the gateway did not listen on {addr} within {} s",
            within.as_secs()
        )
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A port nobody listens on now (the child binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free local port")?;
    Ok(listener.local_addr()?.port())
}

/// The config of a gateway started by `--self`. Its limits are lifted: every call of a load
/// test comes from 127.0.0.1 at once (no per-address rate), and a sweep or `--find-max` goes
/// past the default `max_calls` and `max_connections` (the file descriptors are the limit).
fn self_config(addr: &str, data_dir: &Path, pipeline: &[String]) -> String {
    let names: Vec<String> = pipeline.iter().map(|n| format!("{:?}", n.trim())).collect();
    format!(
        "listen = {addr:?}\ndata_dir = {:?}\n\n[pipeline]\nprocessors = [{}]\n\n\
         [limits]\nmax_calls = 1000000\nmax_connections = 1000000\n\
         new_connections_per_ip_per_sec = 0.0\n\n[admin]\nenabled = false\n",
        data_dir.display().to_string(),
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_take_seconds_minutes_and_hours() {
        assert_eq!(parse_span("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_span("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_span("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_span("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_span("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_span("soon").is_err());
        assert!(parse_span("-1h").is_err());
    }

    #[test]
    fn percentages_are_fractions() {
        assert_eq!(parse_percent("5%"), Ok(0.05));
        assert_eq!(parse_percent("10"), Ok(0.1));
        assert!(parse_percent("five").is_err());
        assert!(parse_percent("-1%").is_err());
    }
}
