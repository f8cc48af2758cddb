//! PCM audio as mediagate carries it: formats, frames and frame arithmetic, and streaming
//! sample-rate conversion ([`StreamResampler`]), the capture [`Timestamp`] frames carry, and
//! whole clips of audio ([`Clip`]) read from WAV files by the one WAV reader ([`wav`]), and the
//! one energy gate ([`EnergyGate`]) that tells when a stream carries sound.
//!
//! A frame's samples live in a [`bytes::Bytes`] (PCM16 little-endian, interleaved when there is
//! more than one channel): decoded once from the wire, then shared by reference count with every
//! consumer. This crate knows nothing of sockets or tasks.
//!
//! ```
//! use mediagate_audio::AudioFormat;
//!
//! let format = AudioFormat::mono(16_000);
//! assert_eq!(format.frame_bytes(), 640); // 20 ms of PCM16 at 16 kHz
//! assert_eq!(format.samples_for_micros(1_000_000), 16_000);
//! ```

mod clip;
mod format;
mod frame;
mod gate;
mod resample;
mod timeline;
mod timestamp;
pub mod wav;

pub use clip::Clip;
pub use format::{
    AudioFormat, FRAME_DURATION_MICROS, FRAME_DURATION_MS, FormatError, MAX_CHANNELS,
    MAX_SAMPLE_RATE_HZ,
};
pub use frame::{AudioFrame, AudioSource};
pub use gate::{
    EnergyGate, GateChange, GateSettings, GateSettingsError, GateWindow, windows_in_ms,
};
pub use resample::StreamResampler;
pub use timeline::{CallTimeline, TimelineReport, TimelineSettings};
pub use timestamp::{ParseTimestampError, Timestamp};
