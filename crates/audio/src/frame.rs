//! One frame of audio on its way through the gateway.

use std::sync::Arc;

use crate::{AudioFormat, Timestamp};
use bytes::Bytes;

/// Whose audio a frame carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AudioSource {
    /// All participants mixed into one stream.
    Mixed,
    /// One participant of an unmixed stream, by raw id (`8:acs:…`, `4:+1425…`).
    Participant(Arc<str>),
}

/// PCM samples plus what is needed to place them: format, capture time, source.
///
/// Cloning a frame clones two reference counts, never the samples.
#[derive(Debug, Clone)]
pub struct AudioFrame {
    /// PCM16 LE samples, interleaved if multi-channel.
    pub pcm: Bytes,
    /// Format of `pcm`.
    pub format: AudioFormat,
    /// Capture time of the first sample, as the platform stamped it.
    pub timestamp: Option<Timestamp>,
    /// Where the frame starts on the call's timeline ([`crate::CallTimeline`]), stamped by the
    /// pipeline from `timestamp`: the one account of the call's time every consumer uses.
    /// `None` for a frame without a timestamp (placed after the previous one).
    pub position: Option<std::time::Duration>,
    /// Mixed, or which participant.
    pub source: AudioSource,
    /// The platform flagged this frame as silence.
    pub silent: bool,
}

impl AudioFrame {
    /// How long the frame plays.
    pub fn duration(&self) -> std::time::Duration {
        let micros = self.format.micros_for_samples(self.samples() as u64);
        std::time::Duration::from_micros(micros.unsigned_abs())
    }

    /// Samples per channel in this frame.
    pub fn samples(&self) -> usize {
        self.pcm.len() / self.format.bytes_per_sample()
    }
}
