//! What an emulation did: what it sent, what the gateway sent back, and how the gateway closed.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// The outcome of one [`crate::run`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EmulateReport {
    /// AudioData messages sent (one per frame, per participant when unmixed).
    pub frames_sent: u64,
    /// All-zero unmixed frames not sent ([`crate::SilencePolicy::Skip`]).
    pub frames_skipped_silent: u64,
    /// PCM bytes carried by the frames sent (decoded size, not base64).
    pub audio_bytes_sent: u64,
    /// DtmfData messages sent.
    pub dtmf_sent: u64,
    /// TranscriptionData messages sent.
    pub transcripts_sent: u64,
    /// From the first tick of the clock until both transports had sent their last message
    /// (the closing handshake is not counted).
    #[serde(rename = "elapsed_secs", serialize_with = "seconds")]
    pub elapsed: Duration,
    /// What the gateway sent on the media transport.
    pub messages_received_from_gateway: GatewayMessages,
    /// The close frame the gateway sent on the media transport, if it sent one (its reply to the
    /// emulator's own close included).
    pub gateway_close: Option<GatewayClose>,
    /// The close frame the gateway sent on the transcription transport, if one was opened.
    pub transcription_close: Option<GatewayClose>,
    /// The gateway closed a transport before the emulator had sent everything.
    pub stopped_early: bool,
    /// What the gateway played back on the media transport, and when.
    pub outbound: OutboundStats,
}

/// What the gateway played back on the media transport (bidirectional streaming), and when.
///
/// Times are taken by the emulator's reader as each message comes off the socket, on the same
/// monotonic clock as the inbound sends.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OutboundStats {
    /// PCM16 samples carried by the outbound AudioData messages (all of them, recorded or not).
    pub samples: u64,
    /// [`OutboundStats::samples`] as time at the stream's sample rate.
    #[serde(rename = "duration_secs", serialize_with = "seconds")]
    pub duration: Duration,
    /// Outbound AudioData messages whose payload did not decode (bad base64, odd byte count):
    /// timed, but neither counted in `samples` nor recorded.
    pub undecodable_frames: u64,
    /// The WAV file the samples were written to ([`crate::EmulateConfig::record_outbound`]).
    #[serde(serialize_with = "lossy_path")]
    pub recording: Option<PathBuf>,
    /// Samples left out of the recording because it reached its 30-minute cap.
    pub samples_not_recorded: u64,
    /// Echo round trip: the arrival of outbound AudioData `j` minus the send of inbound AudioData
    /// `j` (every AudioData sent, in order, across participants when unmixed), for every `j` that
    /// has both. Meaningful for a gateway that echoes each frame back; `None` when nothing matched.
    /// With [`crate::Pacing::Fast`] a send is stamped when the frame is queued, so batching
    /// (32 frames per flush) is part of the round trip.
    pub round_trip: Option<DurationStats>,
    /// Gaps between the arrivals of consecutive outbound AudioData messages (20 ms plus jitter for
    /// paced playback); `None` with fewer than two.
    pub pacing: Option<PacingStats>,
    /// Outbound AudioData messages past the timing cap (a few hours of 20 ms frames), in neither
    /// `round_trip` nor `pacing`.
    pub untimed_frames: u64,
    /// Each StopAudio, in arrival order (the first 10 000).
    pub stop_audio: Vec<StopAudioEvent>,
}

/// The spread of a set of durations, in microseconds (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DurationStats {
    /// How many durations.
    pub count: u64,
    /// The shortest.
    pub min_us: u64,
    /// The median.
    pub p50_us: u64,
    /// The 90th percentile.
    pub p90_us: u64,
    /// The 99th percentile.
    pub p99_us: u64,
    /// The longest.
    pub max_us: u64,
}

/// How evenly the gateway paced its outbound audio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PacingStats {
    /// The gaps between consecutive outbound AudioData arrivals.
    pub gaps: DurationStats,
    /// Gaps longer than 25 ms (20 ms frames arriving late enough to be heard as a glitch).
    pub gaps_over_25ms: u64,
}

/// One StopAudio the gateway sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StopAudioEvent {
    /// When it arrived, from the start of the stream (the emulator's first tick).
    #[serde(rename = "at_secs", serialize_with = "seconds")]
    pub at: Duration,
    /// Outbound samples that had arrived before it: where in the playback it cut in.
    pub sample_index: u64,
}

/// Messages the gateway sent back (bidirectional streaming), by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GatewayMessages {
    /// Outbound AudioData (audio to play into the call).
    pub audio_data: u64,
    /// StopAudio (barge-in).
    pub stop_audio: u64,
    /// Text or binary messages that are not a valid outbound message.
    pub unparseable: u64,
}

/// A close frame the gateway sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayClose {
    /// The close code (1005 when the frame carried none).
    pub code: u16,
    /// The reason text (often empty).
    pub reason: String,
}

impl EmulateReport {
    /// Frames sent per second of [`EmulateReport::elapsed`] (0 when nothing was timed).
    pub fn frames_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.frames_sent as f64 / secs
        } else {
            0.0
        }
    }

    /// The report as pretty-printed JSON.
    pub fn to_json_pretty(&self) -> String {
        // Plain numbers, strings and options: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl fmt::Display for EmulateReport {
    /// A short human summary, a few lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sent {} frames ({} bytes of PCM) in {:.3} s ({:.1} frames/s)",
            self.frames_sent,
            self.audio_bytes_sent,
            self.elapsed.as_secs_f64(),
            self.frames_per_second()
        )?;
        writeln!(
            f,
            "skipped {} silent frames; sent {} DTMF tones, {} transcripts",
            self.frames_skipped_silent, self.dtmf_sent, self.transcripts_sent
        )?;
        let m = &self.messages_received_from_gateway;
        write!(
            f,
            "received {} AudioData, {} StopAudio, {} unparseable",
            m.audio_data, m.stop_audio, m.unparseable
        )?;
        if let Some(close) = &self.gateway_close {
            write!(f, "\ngateway closed the media socket: {close}")?;
        }
        if let Some(close) = &self.transcription_close {
            write!(f, "\ngateway closed the transcription socket: {close}")?;
        }
        if self.stopped_early {
            write!(f, "\nthe gateway closed before everything was sent")?;
        }
        if m.audio_data > 0 || !self.outbound.stop_audio.is_empty() {
            write!(f, "\n{}", self.outbound)?;
        }
        Ok(())
    }
}

/// How many StopAudio times the human summary lists.
const STOP_AUDIO_SHOWN: usize = 5;

impl fmt::Display for OutboundStats {
    /// A few lines: playback volume, round trip, pacing, StopAudio times.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "outbound audio: {} samples ({:.3} s)",
            self.samples,
            self.duration.as_secs_f64()
        )?;
        if let Some(path) = &self.recording {
            write!(f, ", recorded to {}", path.display())?;
            if self.samples_not_recorded > 0 {
                write!(
                    f,
                    " ({} samples past the cap left out)",
                    self.samples_not_recorded
                )?;
            }
        }
        if self.undecodable_frames > 0 {
            write!(f, "; {} undecodable frames", self.undecodable_frames)?;
        }
        if let Some(rtt) = &self.round_trip {
            write!(f, "\necho round trip: {rtt}")?;
        }
        if let Some(pacing) = &self.pacing {
            write!(
                f,
                "\noutbound gaps: {}; {} over 25 ms",
                pacing.gaps, pacing.gaps_over_25ms
            )?;
        }
        if !self.stop_audio.is_empty() {
            write!(f, "\nStopAudio at")?;
            for (i, stop) in self.stop_audio.iter().take(STOP_AUDIO_SHOWN).enumerate() {
                let sep = if i == 0 { " " } else { ", " };
                write!(
                    f,
                    "{sep}{:.3} s (sample {})",
                    stop.at.as_secs_f64(),
                    stop.sample_index
                )?;
            }
            if self.stop_audio.len() > STOP_AUDIO_SHOWN {
                write!(f, " and {} more", self.stop_audio.len() - STOP_AUDIO_SHOWN)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for DurationStats {
    /// `n=… min … p50 … p90 … p99 … max …`, in milliseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        write!(
            f,
            "n={} min {:.2} ms, p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
            self.count,
            ms(self.min_us),
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.max_us)
        )
    }
}

impl fmt::Display for GatewayClose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} ({})", self.code, self.reason)
        }
    }
}

fn seconds<S: Serializer>(elapsed: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(elapsed.as_secs_f64())
}

/// A path as a string, lossily: serialization must not fail on a non-UTF-8 name.
fn lossy_path<S: Serializer>(path: &Option<PathBuf>, serializer: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => serializer.serialize_str(&path.to_string_lossy()),
        None => serializer.serialize_none(),
    }
}
