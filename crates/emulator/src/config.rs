//! What to emulate: the tracks, the pacing, the extras (DTMF, transcripts) and how to end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mediagate_protocol::Timestamp;

use crate::DtmfEvent;

/// One emulated call: which gateway, which audio, and how to send it.
///
/// Build one with [`EmulateConfig::new`] and the `with_*` methods, or set the public fields.
#[derive(Debug, Clone)]
pub struct EmulateConfig {
    /// The gateway's WebSocket URL (`ws://host:port/path?query`), used as given for the media
    /// transport, and for the transcription transport unless [`EmulateConfig::transcription_url`]
    /// names another.
    pub url: String,
    /// The transcription transport's URL, used as given; `None` uses [`EmulateConfig::url`]
    /// (ACS takes one `transportUrl` per transport, which may differ).
    pub transcription_url: Option<String>,
    /// Open the media transport (the default). Without it only the transcript is played, as ACS
    /// does for a call transcribed without media streaming; no WAV is needed then.
    pub media: bool,
    /// Root certificates (DER) trusted for `wss://` URLs besides the web PKI's: a gateway's own
    /// certificate, or its private CA's.
    pub trusted_roots: Vec<Vec<u8>>,
    /// Extra headers sent on both WebSocket upgrade requests, e.g. the `Authorization: Bearer
    /// <JWT>` that ACS signs its upgrades with.
    pub upgrade_headers: Vec<(String, String)>,
    /// Stream at this rate (16000 or 24000 Hz), resampling the WAVs that differ (each one on its
    /// own, so tracks of different rates may be mixed); `None` streams at the WAVs' own rate,
    /// which must then be one of those two and the same for all.
    pub sample_rate_hz: Option<u32>,
    /// The WAV files to stream: PCM16 mono at 16000 or 24000 Hz, all at the same rate.
    pub wavs: Vec<PathBuf>,
    /// One participant per WAV (unmixed audio) instead of one mixed stream.
    pub unmixed: bool,
    /// Real time or as fast as the socket accepts.
    pub pacing: Pacing,
    /// DTMF tones to send on the media transport.
    pub dtmf: Vec<DtmfEvent>,
    /// A transcript script (JSON) to play on a second, transcription, transport.
    pub transcript: Option<PathBuf>,
    /// Participant raw ids for unmixed tracks, in WAV order; missing ones default to
    /// `8:acs:emulated-participant-<n>` (n from 1).
    pub participant_ids: Vec<String>,
    /// What to do with all-zero frames of unmixed tracks (mixed audio always sends them).
    pub silence: SilencePolicy,
    /// How the media transport ends.
    pub end: EndMode,
    /// Capture time of the first frame; `None` means the wall clock at start.
    pub start_time: Option<Timestamp>,
    /// Write what the gateway plays back (every outbound AudioData's PCM, in arrival order) to
    /// this WAV file: mono PCM16 at the stream's rate, at most 30 minutes of it. The file is
    /// created before connecting (so a bad path fails early) and filled at the end of the run.
    pub record_outbound: Option<PathBuf>,
    /// How long the media transport stays open after its last inbound message, to capture
    /// playback that outlasts the inbound stream (a prompt). A gateway close ends it early.
    pub linger: Duration,
}

/// How fast frames go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pacing {
    /// One 20 ms tick per frame on a steady clock, as ACS sends.
    #[default]
    Realtime,
    /// As fast as the socket accepts (load tests, quick end-to-end tests).
    Fast,
}

/// What an unmixed track does with a 20 ms frame whose samples are all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SilencePolicy {
    /// Send it, flagged `silent: true`.
    Send,
    /// Send nothing, as ACS does for a participant who is not speaking.
    #[default]
    Skip,
}

/// How the emulator leaves the media transport once everything is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndMode {
    /// Send a close frame (1000) and wait up to 5 s for the gateway's.
    #[default]
    Close,
    /// Drop the TCP connection without a close frame, as a crashed platform would.
    Abrupt,
}

impl EmulateConfig {
    /// A configuration for `url` with no tracks yet, mixed audio at the WAVs' rate, real-time
    /// pacing, no DTMF, no transcript, default participant ids, silent unmixed frames skipped, no
    /// extra upgrade headers, no recording of the gateway's playback, no linger and a normal
    /// close.
    pub fn new(url: impl Into<String>) -> Self {
        EmulateConfig {
            url: url.into(),
            transcription_url: None,
            media: true,
            trusted_roots: Vec::new(),
            upgrade_headers: Vec::new(),
            sample_rate_hz: None,
            wavs: Vec::new(),
            unmixed: false,
            pacing: Pacing::default(),
            dtmf: Vec::new(),
            transcript: None,
            participant_ids: Vec::new(),
            silence: SilencePolicy::default(),
            end: EndMode::default(),
            start_time: None,
            record_outbound: None,
            linger: Duration::ZERO,
        }
    }

    /// Trusts `roots` (DER root certificates) for `wss://` URLs, besides the web PKI's.
    pub fn with_trusted_roots(mut self, roots: &[Vec<u8>]) -> Self {
        self.trusted_roots.extend_from_slice(roots);
        self
    }

    /// Adds a WAV file (a track).
    pub fn with_wav(mut self, path: impl Into<PathBuf>) -> Self {
        self.wavs.push(path.into());
        self
    }

    /// Streams one participant per WAV instead of a mix.
    pub fn with_unmixed(mut self, unmixed: bool) -> Self {
        self.unmixed = unmixed;
        self
    }

    /// Sets the pacing.
    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// Adds a DTMF tone.
    pub fn with_dtmf(mut self, event: DtmfEvent) -> Self {
        self.dtmf.push(event);
        self
    }

    /// Plays a transcript script on a transcription transport.
    pub fn with_transcript(mut self, path: impl Into<PathBuf>) -> Self {
        self.transcript = Some(path.into());
        self
    }

    /// Adds the participant id of the next unmixed track.
    pub fn with_participant_id(mut self, id: impl Into<String>) -> Self {
        self.participant_ids.push(id.into());
        self
    }

    /// Sets the silence policy for unmixed tracks.
    pub fn with_silence(mut self, silence: SilencePolicy) -> Self {
        self.silence = silence;
        self
    }

    /// Sets how the media transport ends.
    pub fn with_end(mut self, end: EndMode) -> Self {
        self.end = end;
        self
    }

    /// Fixes the capture time of the first frame.
    pub fn with_start_time(mut self, start_time: Timestamp) -> Self {
        self.start_time = Some(start_time);
        self
    }

    /// Records the gateway's playback to a WAV file.
    pub fn with_record_outbound(mut self, path: impl Into<PathBuf>) -> Self {
        self.record_outbound = Some(path.into());
        self
    }

    /// Keeps the media transport open this long after the last inbound message.
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Opens the transcription transport at `url` instead of [`EmulateConfig::url`].
    pub fn with_transcription_url(mut self, url: impl Into<String>) -> Self {
        self.transcription_url = Some(url.into());
        self
    }

    /// Opens the media transport or not (transcript only).
    pub fn with_media(mut self, media: bool) -> Self {
        self.media = media;
        self
    }

    /// Adds a header to both upgrade requests.
    pub fn with_upgrade_header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.upgrade_headers.push((name.into(), value.into()));
        self
    }

    /// Streams at `sample_rate_hz` (16000 or 24000), resampling the WAVs that differ.
    pub fn with_sample_rate_hz(mut self, sample_rate_hz: u32) -> Self {
        self.sample_rate_hz = Some(sample_rate_hz);
        self
    }

    /// The transcription transport's URL.
    pub fn transcription_url(&self) -> &str {
        self.transcription_url.as_deref().unwrap_or(&self.url)
    }
}

/// The participant id of unmixed track `index` (0-based) when none was given.
pub(crate) fn default_participant_id(index: usize) -> String {
    format!("8:acs:emulated-participant-{}", index + 1)
}

/// A subscription id unique to this process and run, shaped like a UUID (time, pid, counter).
pub(crate) fn fresh_subscription_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Keep the low 64 bits of the time: they change every nanosecond and wrap every 584 years.
    let time = nanos as u64;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:08x}{:04x}",
        time >> 32,
        (time >> 16) & 0xffff,
        time & 0xffff,
        count & 0xffff,
        std::process::id(),
        (count >> 16) & 0xffff,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_ids_are_unique_and_uuid_shaped() {
        let a = fresh_subscription_id();
        let b = fresh_subscription_id();
        assert_ne!(a, b);
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
    }
}
