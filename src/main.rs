//! The `mediagate` command: `serve` runs the gateway, `emulate` plays the platform against one,
//! `bench` loads a gateway with many calls and measures it, `transcribe` runs speech-to-text on
//! a file, `models` installs speech models, `repair` makes the files of a killed gateway's
//! calls valid again, `verify` checks a data dir against its manifests and hash chain.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use mediagate_server::{CliOverrides, Config, Server, TlsConfig};

mod bench;
mod emulate;
mod transcribe;

#[derive(Parser)]
#[command(name = "mediagate", version, about, long_about = None)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax): `info`, `debug`, `mediagate_server=debug`...
    #[arg(long, global = true, env = "MEDIAGATE_LOG", default_value = "info")]
    log: String,
    /// Log line format.
    #[arg(long, global = true, env = "MEDIAGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: accept ACS media and transcription WebSockets and record every call.
    Serve(ServeArgs),
    /// Play the platform: stream WAV files into a gateway as ACS would.
    Emulate(emulate::EmulateArgs),
    /// Benchmark a gateway (this one with --self, any other with --url): calls held, frames
    /// per second, echo latency, CPU and memory.
    Bench(Box<bench::BenchArgs>),
    /// Transcribe a WAV file through the same speech path as a live call: one line per
    /// utterance on stdout.
    Transcribe(transcribe::TranscribeArgs),
    /// Speech models: `install` fetches the default Whisper model.
    #[command(subcommand)]
    Models(transcribe::ModelsCommand),
    /// Make the files of calls cut short by `kill -9` or a crash valid again: WAV headers
    /// rewritten from their audio, session.json marked `interrupted`. Prints a line per file
    /// repaired; fails if any could not be. Run it with the gateway stopped.
    Repair(RepairArgs),
    /// Check a data dir for compliance: every sealed call's files against its manifest.json,
    /// every manifest against the hash chain, the chain's links, that every ended call is
    /// sealed and every sealed call present (unless retention deleted it). Prints a line per
    /// problem and a summary; exits 1 on any problem.
    Verify(VerifyArgs),
    /// The bare reference echo server that `bench --reference-echo` compares with.
    #[command(hide = true)]
    ReferenceEcho(bench::ReferenceEchoArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML config file (every key optional; see samples/mediagate.toml).
    #[arg(long, env = "MEDIAGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080; any other needs `[auth]`].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Folder for per-call recordings [default: ./data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// PEM certificate chain: serve wss:// (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RepairArgs {
    /// The data dir (every call folder in it), or one call folder.
    dir: PathBuf,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The data dir.
    dir: PathBuf,
    /// Calls still recording (or finishing) are listed but not counted as problems: for the
    /// data dir of a running gateway.
    #[arg(long)]
    allow_live: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain: what a user needs, not a backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Threads for blocking work (file I/O, speech engines); see `run`.
const MAX_BLOCKING_THREADS: usize = 32;

fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging(&cli.log, cli.log_format)?;
    // The offline commands: no runtime, only files.
    match &cli.command {
        Command::Repair(args) => return repair(args),
        Command::Verify(args) => return verify(args),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // File writes and speech engines run on blocking threads. tokio's default allows 512:
        // a stall of the disk or the CPU then grows the pool by dozens of threads, each
        // keeping its stack and a malloc arena, and since work keeps arriving none idles long
        // enough to exit (a soak saw +28 MB never given back). A bounded pool makes the
        // backlog wait in the queue instead (at most one batch per processor per call).
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Emulate(args) => runtime.block_on(emulate::run(args)),
        Command::Bench(args) => runtime.block_on(bench::run(*args)),
        Command::Transcribe(args) => runtime.block_on(transcribe::transcribe(args)),
        Command::Models(command) => runtime.block_on(transcribe::models(command)),
        Command::ReferenceEcho(args) => runtime.block_on(bench::reference_echo(args)),
        Command::Repair(args) => repair(&args),
        Command::Verify(args) => verify(&args),
    }
}

/// `mediagate repair DIR`: a line per file repaired on stdout, one per failure on stderr.
fn repair(args: &RepairArgs) -> anyhow::Result<()> {
    let report = mediagate_server::repair_dir(&args.dir)?;
    for repaired in &report.repaired {
        println!("{repaired}");
    }
    for (path, error) in &report.failed {
        eprintln!("cannot repair {}: {error}", path.display());
    }
    if !report.failed.is_empty() {
        anyhow::bail!(
            "{} file(s) could not be repaired ({} repaired, {} call folder(s))",
            report.failed.len(),
            report.repaired.len(),
            report.calls
        );
    }
    println!(
        "{} file(s) repaired in {} call folder(s)",
        report.repaired.len(),
        report.calls
    );
    Ok(())
}

/// `mediagate verify DIR`: a line per problem and per note on stdout, then the summary; an
/// error (exit code 1) on any problem.
fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let options = mediagate_server::VerifyOptions {
        allow_live: args.allow_live,
    };
    let report = mediagate_server::verify_dir(&args.dir, &options)?;
    for problem in &report.problems {
        println!("{problem}");
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    println!("{}", report.summary());
    if !report.problems.is_empty() {
        anyhow::bail!(
            "{} problem(s) in {}",
            report.problems.len(),
            args.dir.display()
        );
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = CliOverrides {
        listen: args.listen,
        data_dir: args.data_dir,
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig { cert, key }),
            _ => None,
        },
    };
    let config = Config::load_over(
        mediagate::default_config(),
        args.config.as_deref(),
        &overrides,
    )?;
    tracing::info!(data_dir = %config.data_dir.display(), "recording calls");
    let server = Server::bind(config, mediagate::registry()).await?;
    // SIGTERM or Ctrl-C drains; a second one closes every call at once. An error (exit code 1)
    // when some call's files could not be finalized.
    server.run_until_signalled().await?;
    Ok(())
}

fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log filter `{filter}`"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
