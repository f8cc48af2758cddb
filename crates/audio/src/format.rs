//! Sample formats and the frame arithmetic that follows from them.

use thiserror::Error;

/// Every frame on the wire is 20 ms of audio.
pub const FRAME_DURATION_MS: u32 = 20;
/// [`FRAME_DURATION_MS`] in microseconds.
pub const FRAME_DURATION_MICROS: i64 = FRAME_DURATION_MS as i64 * 1_000;
/// Highest sample rate an [`AudioFormat`] may have.
pub const MAX_SAMPLE_RATE_HZ: u32 = 384_000;
/// Most channels an [`AudioFormat`] may have (ACS sends mono).
pub const MAX_CHANNELS: u16 = 8;

/// A PCM16 little-endian format: sample rate and channel count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioFormat {
    sample_rate_hz: u32,
    channels: u16,
}

/// A format that cannot be carried, or a conversion between formats that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Sample rate outside 1 Hz..=[`MAX_SAMPLE_RATE_HZ`].
    #[error("sample rate {0} Hz is not supported")]
    SampleRate(u32),
    /// Channel count outside 1..=[`MAX_CHANNELS`].
    #[error("{0} channels is not supported")]
    Channels(u16),
    /// The resampler refused this pair of rates.
    #[error("cannot resample {from_hz} Hz to {to_hz} Hz: {reason}")]
    Resampler {
        /// Input rate.
        from_hz: u32,
        /// Output rate.
        to_hz: u32,
        /// What the resampler said.
        reason: String,
    },
}

impl AudioFormat {
    /// Mono PCM16 at `sample_rate_hz` (what ACS sends). Panics on a zero rate, so only use it
    /// with constants; outside input goes through [`AudioFormat::new`].
    pub const fn mono(sample_rate_hz: u32) -> Self {
        assert!(sample_rate_hz > 0, "sample rate must be positive");
        AudioFormat {
            sample_rate_hz,
            channels: 1,
        }
    }

    /// Checks and builds a format.
    pub fn new(sample_rate_hz: u32, channels: u16) -> Result<Self, FormatError> {
        if sample_rate_hz == 0 || sample_rate_hz > MAX_SAMPLE_RATE_HZ {
            return Err(FormatError::SampleRate(sample_rate_hz));
        }
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(FormatError::Channels(channels));
        }
        Ok(AudioFormat {
            sample_rate_hz,
            channels,
        })
    }

    /// Samples per second per channel.
    pub const fn sample_rate_hz(self) -> u32 {
        self.sample_rate_hz
    }

    /// Interleaved channels.
    pub const fn channels(self) -> u16 {
        self.channels
    }

    /// Bytes of one sample across all channels (2 for mono PCM16).
    pub const fn bytes_per_sample(self) -> usize {
        2 * self.channels as usize
    }

    /// Samples (per channel) in one 20 ms frame: 320 at 16 kHz, 480 at 24 kHz.
    pub const fn frame_samples(self) -> usize {
        (self.sample_rate_hz as usize * FRAME_DURATION_MS as usize) / 1_000
    }

    /// Bytes in one 20 ms frame: 640 at 16 kHz mono, 960 at 24 kHz mono.
    pub const fn frame_bytes(self) -> usize {
        self.frame_samples() * self.bytes_per_sample()
    }

    /// Samples (per channel) in `micros` microseconds, rounded to the nearest sample (half away
    /// from zero). Computed in 128 bits and clamped, so any timestamp difference is safe.
    pub const fn samples_for_micros(self, micros: i64) -> i64 {
        let scaled = micros as i128 * self.sample_rate_hz as i128;
        let rounded = (scaled + (micros.signum() as i128) * 500_000) / 1_000_000;
        if rounded > i64::MAX as i128 {
            i64::MAX
        } else if rounded < i64::MIN as i128 {
            i64::MIN
        } else {
            rounded as i64
        }
    }

    /// Microseconds spanned by `samples` samples (per channel).
    pub const fn micros_for_samples(self, samples: u64) -> i64 {
        ((samples as u128 * 1_000_000) / self.sample_rate_hz as u128) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acs_frame_sizes() {
        assert_eq!(AudioFormat::mono(16_000).frame_bytes(), 640);
        assert_eq!(AudioFormat::mono(24_000).frame_bytes(), 960);
        assert_eq!(AudioFormat::mono(24_000).frame_samples(), 480);
    }

    #[test]
    fn micros_and_samples_convert_both_ways() {
        let f = AudioFormat::mono(16_000);
        assert_eq!(f.samples_for_micros(20_000), 320);
        assert_eq!(f.samples_for_micros(-20_000), -320);
        assert_eq!(f.micros_for_samples(320), 20_000);
    }

    #[test]
    fn extreme_durations_clamp_instead_of_overflowing() {
        let f = AudioFormat::new(384_000, 8).unwrap();
        let reference = (i64::MAX as i128 * 384_000 + 500_000) / 1_000_000;
        assert_eq!(i128::from(f.samples_for_micros(i64::MAX)), reference);
        assert!(f.samples_for_micros(i64::MIN) < 0);
        // A year-9999 timestamp against a 2026 origin: large, finite, no panic.
        let micros = 250_000_000_000_000_000i64;
        assert_eq!(
            AudioFormat::mono(16_000).samples_for_micros(micros),
            micros / 1_000_000 * 16_000
        );
    }

    #[test]
    fn rejects_impossible_formats() {
        assert_eq!(AudioFormat::new(0, 1), Err(FormatError::SampleRate(0)));
        assert_eq!(AudioFormat::new(16_000, 0), Err(FormatError::Channels(0)));
        assert!(AudioFormat::new(48_000, 2).is_ok());
    }
}
