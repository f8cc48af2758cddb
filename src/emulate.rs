//! `mediagate emulate`: the command-line front of `mediagate-emulator` (plays the ACS side).
//!
//! Two modes: by default it streams WAV files into a gateway's WebSocket as ACS would; with
//! `--control-plane` it runs the fake of Call Automation's REST API until Ctrl-C, places scripted
//! calls through the gateway's Event Grid webhook, and plays ACS's side of each call the gateway
//! answers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use mediagate_emulator::control::{
    CallerHangUp, ControlPlane, ControlPlaneOptions, EventSchema, FakeCall, ScriptedCall,
};
use mediagate_emulator::{DtmfEvent, EmulateConfig, EndMode, Pacing, SilencePolicy};

/// Arguments of `mediagate emulate`.
#[derive(clap::Args, Debug)]
pub(crate) struct EmulateArgs {
    /// Run the fake of ACS Call Automation (REST API, signing keys, Event Grid, callbacks)
    /// until Ctrl-C instead of streaming into a gateway directly. Prints its connection string
    /// (`endpoint=…;accesskey=…`) on stdout.
    #[arg(long)]
    control_plane: bool,
    /// Gateway WebSocket URL (ws:// or wss://); path and query are sent as given.
    #[arg(
        long,
        default_value = "ws://127.0.0.1:8080/ws",
        conflicts_with = "control_plane"
    )]
    url: String,
    /// WAV file to stream (PCM16 mono, 16000 or 24000 Hz; with --control-plane any rate, one
    /// per participant); repeat for several tracks.
    #[arg(
        long = "wav",
        value_name = "PATH",
        required_unless_present = "control_plane"
    )]
    wavs: Vec<PathBuf>,
    /// One participant per WAV (unmixed audio) instead of one mixed stream (with
    /// --control-plane the answer's audioChannelType decides).
    #[arg(long, conflicts_with = "control_plane")]
    unmixed: bool,
    /// Send as fast as the socket accepts instead of in real time.
    #[arg(long)]
    fast: bool,
    /// DTMF tone as TONE@TIME (`1@2.5s`, `#@1500ms`, `5@3`); repeatable.
    #[arg(long = "dtmf", value_name = "SPEC")]
    dtmf: Vec<DtmfEvent>,
    /// Transcript script (JSON) to play on a second, transcription, socket.
    #[arg(long, value_name = "PATH")]
    transcript: Option<PathBuf>,
    /// Participant raw id of the next unmixed track; repeatable [default: 8:acs:emulated-participant-N;
    /// with --control-plane the caller for the first].
    #[arg(long = "participant", value_name = "ID")]
    participants: Vec<String>,
    /// Send all-zero frames even when unmixed (ACS sends nothing for a silent participant).
    #[arg(long, conflicts_with = "control_plane")]
    send_silence: bool,
    /// End by dropping the connection without a close frame.
    #[arg(long, conflicts_with = "control_plane")]
    abrupt: bool,
    /// Record the audio the gateway plays back (outbound AudioData) to this WAV file.
    #[arg(long, value_name = "FILE.wav", conflicts_with = "control_plane")]
    record_outbound: Option<PathBuf>,
    /// Keep the media socket open this long after the last inbound frame (`2s`, `500ms`), to
    /// capture playback that outlasts the inbound audio.
    #[arg(long, value_name = "TIME", default_value = "0", value_parser = parse_time, conflicts_with = "control_plane")]
    linger: Duration,
    /// Print the report as JSON instead of a human summary.
    #[arg(long, conflicts_with = "control_plane")]
    json: bool,
    /// Trust the certificates in this PEM file (a gateway's own, or its CA's) for wss://, and
    /// with --control-plane for https:// webhooks and callbacks too, besides the web's roots.
    #[arg(long, value_name = "FILE.pem")]
    trust: Option<PathBuf>,
    /// Boxed: the subcommand enum stays small.
    #[command(flatten)]
    control: Box<ControlPlaneArgs>,
}

/// The arguments of `--control-plane`.
#[derive(clap::Args, Debug)]
struct ControlPlaneArgs {
    /// Where the fake listens (loopback).
    #[arg(long, default_value = "127.0.0.1:8090", requires = "control_plane")]
    listen: SocketAddr,
    /// The resource's access key, base64 as in a connection string [default: a random one].
    #[arg(long, value_name = "BASE64", requires = "control_plane")]
    access_key: Option<String>,
    /// The gateway's Event Grid webhook URL, used as given (query included).
    #[arg(long, value_name = "URL", requires = "control_plane")]
    webhook: Option<String>,
    /// Deliver to the webhook as CloudEvents 1.0 instead of the Event Grid schema.
    #[arg(long, requires = "control_plane")]
    cloud_events: bool,
    /// `aud` of the fake's tokens: the resource's immutable id, as the gateway expects it.
    #[arg(long, value_name = "GUID", default_value = ControlPlaneOptions::DEFAULT_RESOURCE_ID, requires = "control_plane")]
    resource_id: String,
    /// `iss` of the fake's tokens [default: the fake's endpoint, http://<listen>].
    #[arg(long, value_name = "URL", requires = "control_plane")]
    issuer: Option<String>,
    /// The caller's raw id.
    #[arg(
        long,
        value_name = "RAW_ID",
        default_value = "4:+14255550100",
        requires = "control_plane"
    )]
    from: String,
    /// The number (or user) called: the raw id the gateway answers for.
    #[arg(
        long,
        value_name = "RAW_ID",
        default_value = "4:+14255550199",
        requires = "control_plane"
    )]
    to: String,
    /// The caller's display name.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "",
        requires = "control_plane"
    )]
    caller_name: String,
    /// How many calls to place once the webhook validated its subscription (0: only serve).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        requires = "control_plane"
    )]
    calls: u32,
    /// Time between two placed calls.
    #[arg(long, value_name = "TIME", default_value = "1s", value_parser = parse_time, requires = "control_plane")]
    call_interval: Duration,
    /// When the caller hangs up: `audio` (when the audio ends), `never`, or a time from the
    /// answer (`30s`).
    #[arg(long, value_name = "WHEN", default_value = "audio", value_parser = parse_hang_up, requires = "control_plane")]
    hang_up: CallerHangUp,
    /// How long to keep retrying the subscription handshake (the gateway may start later).
    #[arg(long, value_name = "TIME", default_value = "60s", value_parser = parse_time, requires = "control_plane")]
    handshake_timeout: Duration,
}

impl EmulateArgs {
    fn into_config(self) -> EmulateConfig {
        let mut config = EmulateConfig::new(self.url);
        config.wavs = self.wavs;
        config.unmixed = self.unmixed;
        config.pacing = pacing(self.fast);
        config.dtmf = self.dtmf;
        config.transcript = self.transcript;
        config.participant_ids = self.participants;
        config.silence = if self.send_silence {
            SilencePolicy::Send
        } else {
            SilencePolicy::Skip
        };
        config.end = if self.abrupt {
            EndMode::Abrupt
        } else {
            EndMode::Close
        };
        config.record_outbound = self.record_outbound;
        config.linger = self.linger;
        config
    }

    /// The call `--control-plane` places.
    fn scripted_call(&self) -> ScriptedCall {
        let mut call = ScriptedCall::new(&self.control.from, &self.control.to)
            .with_caller_display_name(&self.control.caller_name)
            .with_pacing(pacing(self.fast))
            .with_hang_up(self.control.hang_up);
        call.wavs.clone_from(&self.wavs);
        call.participant_ids.clone_from(&self.participants);
        call.dtmf.clone_from(&self.dtmf);
        call.transcript.clone_from(&self.transcript);
        call
    }
}

fn pacing(fast: bool) -> Pacing {
    if fast { Pacing::Fast } else { Pacing::Realtime }
}

/// A time on the command line (`--linger`, `--duration`...): seconds or milliseconds, as DTMF
/// times are written.
pub(crate) fn parse_time(text: &str) -> Result<Duration, String> {
    mediagate_emulator::parse_duration(text)
        .ok_or_else(|| format!("`{text}` is not a time: use seconds (`2s`, `1.5`) or `ms`"))
}

fn parse_hang_up(text: &str) -> Result<CallerHangUp, String> {
    match text {
        "audio" => Ok(CallerHangUp::AfterAudio),
        "never" => Ok(CallerHangUp::Never),
        time => parse_time(time)
            .map(CallerHangUp::After)
            .map_err(|e| format!("{e}, or `audio`, or `never`")),
    }
}

/// Runs the emulation and prints its report, or runs the control-plane fake.
pub(crate) async fn run(args: EmulateArgs) -> anyhow::Result<()> {
    if args.control_plane {
        return control_plane(args).await;
    }
    let json = args.json;
    let roots = trusted_roots(args.trust.as_deref()).await?;
    let config = args.into_config().with_trusted_roots(&roots);
    // The error names the file or URL at fault already.
    let report = mediagate_emulator::run(config).await?;
    if json {
        println!("{}", report.to_json_pretty());
    } else {
        println!("{report}");
    }
    Ok(())
}

/// `--control-plane`: the fake until Ctrl-C, and the scripted calls placed once the webhook
/// answers the handshake. The connection string goes to stdout, everything else to stderr.
async fn control_plane(args: EmulateArgs) -> anyhow::Result<()> {
    let access_key = match &args.control.access_key {
        Some(key) => mediagate_emulator::control::decode_access_key(key)
            .context("--access-key is not base64")?,
        None => mediagate_emulator::control::generate_access_key(),
    };
    let mut options = ControlPlaneOptions::local(&access_key);
    options.trusted_roots = trusted_roots(args.trust.as_deref()).await?;
    options.listen = args.control.listen;
    options.webhook.clone_from(&args.control.webhook);
    options.resource_id.clone_from(&args.control.resource_id);
    options.issuer.clone_from(&args.control.issuer);
    if args.control.cloud_events {
        options.event_schema = EventSchema::CloudEvents;
    }
    if args.control.calls > 0 && (options.webhook.is_none() || args.wavs.is_empty()) {
        anyhow::bail!("placing calls needs --webhook and at least one --wav (or --calls 0)");
    }
    let fake = ControlPlane::start(options)
        .await
        .with_context(|| format!("cannot listen on {}", args.control.listen))?;
    println!("{}", fake.connection_string());
    eprintln!(
        "Call Automation fake at {}: OpenID configuration {}, tokens for audience {} from issuer {}",
        fake.endpoint(),
        fake.openid_configuration_url(),
        fake.resource_id(),
        fake.issuer()
    );
    let placing = place_calls(&fake, &args);
    let result = tokio::select! {
        result = placing => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    if result.is_ok() {
        eprintln!("serving until Ctrl-C");
        watch_calls(&fake).await;
    }
    result
}

/// The certificates (DER) of `--trust`'s PEM file; none without one.
async fn trusted_roots(path: Option<&std::path::Path>) -> anyhow::Result<Vec<Vec<u8>>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let pem = tokio::fs::read(path)
        .await
        .with_context(|| format!("cannot read --trust {}", path.display()))?;
    let roots = mediagate_emulator::pem_certificates(&pem)
        .with_context(|| format!("--trust {} is not PEM", path.display()))?;
    if roots.is_empty() {
        anyhow::bail!("--trust {} holds no certificate", path.display());
    }
    Ok(roots)
}

/// The handshake (retried until the gateway answers it), then the calls, then their ends.
async fn place_calls(fake: &ControlPlane, args: &EmulateArgs) -> anyhow::Result<()> {
    if args.control.calls == 0 {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + args.control.handshake_timeout;
    loop {
        match fake.validate_subscription().await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("waiting for the webhook: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    eprintln!("the webhook validated its Event Grid subscription");
    for n in 0..args.control.calls {
        if n > 0 {
            tokio::time::sleep(args.control.call_interval).await;
        }
        let incoming = fake.place_call(args.scripted_call()).await?;
        eprintln!(
            "placed call {} of {}: {} -> {} (serverCallId {})",
            n + 1,
            args.control.calls,
            incoming.from,
            incoming.to,
            incoming.server_call_id
        );
    }
    Ok(())
}

/// Prints a summary of each played call as it ends, until Ctrl-C.
async fn watch_calls(fake: &ControlPlane) {
    let mut reported = std::collections::HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return,
        }
        for call in fake.calls() {
            if call.ended && reported.insert(call.id.clone()) {
                eprintln!("{}", summary(&call));
            }
        }
    }
}

fn summary(call: &FakeCall) -> String {
    let delivered = call
        .callbacks
        .iter()
        .filter(|c| c.status.is_some_and(|s| (200..300).contains(&s)))
        .count();
    let kinds: Vec<&str> = call
        .callbacks
        .iter()
        .map(|c| c.event_type.trim_start_matches("Microsoft.Communication."))
        .collect();
    let stream = |s: &Option<Result<mediagate_emulator::EmulateReport, String>>| match s {
        None => "not streamed".to_owned(),
        Some(Ok(report)) => format!(
            "{} frames, {} transcripts, {} outbound frames",
            report.frames_sent,
            report.transcripts_sent,
            report.messages_received_from_gateway.audio_data
        ),
        Some(Err(why)) => format!("failed: {why}"),
    };
    format!(
        "call {} ended: {delivered}/{} callbacks delivered ({}); media: {}; transcription: {}",
        call.id,
        call.callbacks.len(),
        kinds.join(", "),
        stream(&call.streams.media),
        stream(&call.streams.transcription)
    )
}
