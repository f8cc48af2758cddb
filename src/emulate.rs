//! `mediagate emulate`: the command-line front of `mediagate-emulator` (plays the ACS side).

use std::path::PathBuf;
use std::time::Duration;

use mediagate_emulator::{DtmfEvent, EmulateConfig, EndMode, Pacing, SilencePolicy};

/// Arguments of `mediagate emulate`.
#[derive(clap::Args, Debug)]
pub(crate) struct EmulateArgs {
    /// Gateway WebSocket URL; path and query are sent as given (ws:// only).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// WAV file to stream (PCM16 mono, 16000 or 24000 Hz); repeat for several tracks.
    #[arg(long = "wav", value_name = "PATH", required = true)]
    wavs: Vec<PathBuf>,
    /// One participant per WAV (unmixed audio) instead of one mixed stream.
    #[arg(long)]
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
    /// Participant raw id of the next unmixed track; repeatable [default: 8:acs:emulated-participant-N].
    #[arg(long = "participant", value_name = "ID")]
    participants: Vec<String>,
    /// Send all-zero frames even when unmixed (ACS sends nothing for a silent participant).
    #[arg(long)]
    send_silence: bool,
    /// End by dropping the connection without a close frame.
    #[arg(long)]
    abrupt: bool,
    /// Record the audio the gateway plays back (outbound AudioData) to this WAV file.
    #[arg(long, value_name = "FILE.wav")]
    record_outbound: Option<PathBuf>,
    /// Keep the media socket open this long after the last inbound frame (`2s`, `500ms`), to
    /// capture playback that outlasts the inbound audio.
    #[arg(long, value_name = "TIME", default_value = "0", value_parser = parse_time)]
    linger: Duration,
    /// Print the report as JSON instead of a human summary.
    #[arg(long)]
    json: bool,
}

impl EmulateArgs {
    fn into_config(self) -> EmulateConfig {
        EmulateConfig {
            url: self.url,
            wavs: self.wavs,
            unmixed: self.unmixed,
            pacing: if self.fast {
                Pacing::Fast
            } else {
                Pacing::Realtime
            },
            dtmf: self.dtmf,
            transcript: self.transcript,
            participant_ids: self.participants,
            silence: if self.send_silence {
                SilencePolicy::Send
            } else {
                SilencePolicy::Skip
            },
            end: if self.abrupt {
                EndMode::Abrupt
            } else {
                EndMode::Close
            },
            start_time: None,
            record_outbound: self.record_outbound,
            linger: self.linger,
        }
    }
}

/// A time on the command line (`--linger`, `--duration`...): seconds or milliseconds, as DTMF
/// times are written.
pub(crate) fn parse_time(text: &str) -> Result<Duration, String> {
    mediagate_emulator::parse_duration(text)
        .ok_or_else(|| format!("`{text}` is not a time: use seconds (`2s`, `1.5`) or `ms`"))
}

/// Runs the emulation and prints its report.
pub(crate) async fn run(args: EmulateArgs) -> anyhow::Result<()> {
    let json = args.json;
    let config = args.into_config();
    // The error names the file or URL at fault already.
    let report = mediagate_emulator::run(config).await?;
    if json {
        println!("{}", report.to_json_pretty());
    } else {
        println!("{report}");
    }
    Ok(())
}
