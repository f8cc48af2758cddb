//! What an emulation did: what it sent, what the gateway sent back, and how the gateway closed.

use std::fmt;
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
        Ok(())
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
