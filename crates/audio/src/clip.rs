//! A clip: a whole piece of audio held in memory (a decoded WAV, a synthesized prompt), and the
//! one way to bring it to a call's rate.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::{AudioFormat, FormatError, StreamResampler};

/// A whole piece of audio in memory: PCM16 LE samples, interleaved when there is more than one
/// channel, in their own format.
///
/// Cheap to clone: the samples are shared by reference count. Read one from a WAV with
/// [`wav::read`](crate::wav::read) or [`wav::parse`](crate::wav::parse); bring it to a call's
/// rate with [`Clip::at_rate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    /// The samples' format.
    pub format: AudioFormat,
    /// PCM16 LE samples, interleaved; a whole number of samples across all channels.
    pub pcm: Bytes,
}

impl Clip {
    /// A clip of `pcm` in `format`; a trailing partial sample, if any, is dropped.
    pub fn new(format: AudioFormat, mut pcm: Bytes) -> Self {
        let whole = pcm.len() / format.bytes_per_sample() * format.bytes_per_sample();
        pcm.truncate(whole);
        Clip { format, pcm }
    }

    /// A clip of `samples` (interleaved when `format` has several channels).
    pub fn from_samples(format: AudioFormat, samples: &[i16]) -> Self {
        let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        Clip::new(format, Bytes::from(pcm))
    }

    /// Samples per channel.
    pub fn sample_count(&self) -> usize {
        self.pcm.len() / self.format.bytes_per_sample()
    }

    /// True when the clip holds no samples.
    pub fn is_empty(&self) -> bool {
        self.pcm.is_empty()
    }

    /// How long the clip plays.
    pub fn duration(&self) -> Duration {
        let micros = self.format.micros_for_samples(self.sample_count() as u64);
        Duration::from_micros(micros.unsigned_abs())
    }

    /// The samples, interleaved.
    pub fn samples(&self) -> impl ExactSizeIterator<Item = i16> + '_ {
        self.pcm
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
    }

    /// This clip at `rate_hz` (same channels), whole: its first sample first, its last sample
    /// last, nothing held back.
    ///
    /// Built on a [`StreamResampler`] made for the clip and flushed at its end, so the tail
    /// that a streaming resampler still holds comes out too; the filter's start-up delay is
    /// dropped, so the clip starts at once. The result has `ceil(samples × ratio)` samples per
    /// channel. At the clip's own rate it is the clip itself (shared, not copied).
    ///
    /// Allocates and resamples the whole clip (about 2.4 µs per 20 ms at the ACS rates): do it
    /// once per rate and keep the result where the clip is played often.
    pub fn at_rate(&self, rate_hz: u32) -> Result<Clip, FormatError> {
        if rate_hz == self.format.sample_rate_hz() {
            return Ok(self.clone());
        }
        let mut resampler = StreamResampler::new(self.format, rate_hz)?;
        let to = resampler.output_format();
        let ratio = resampler.ratio();
        let expected = (self.sample_count() as f64 * ratio).ceil() as usize;
        let delay_bytes = resampler.delay_samples() * to.bytes_per_sample();
        let mut out = BytesMut::with_capacity(delay_bytes + (expected + 1) * to.bytes_per_sample());
        resampler.process(&self.pcm, &mut out);
        resampler.flush(&mut out);
        let pcm = out.split_off(delay_bytes.min(out.len())).freeze();
        Ok(Clip::new(to, pcm))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    fn clip(rate_hz: u32, samples: impl IntoIterator<Item = i16>) -> Clip {
        let pcm: Vec<u8> = samples.into_iter().flat_map(i16::to_le_bytes).collect();
        Clip::new(AudioFormat::mono(rate_hz), Bytes::from(pcm))
    }

    fn tone(rate_hz: u32, hz: f64, samples: usize) -> Clip {
        clip(
            rate_hz,
            (0..samples).map(|i| {
                (8_000.0 * (std::f64::consts::TAU * hz * i as f64 / f64::from(rate_hz)).sin())
                    as i16
            }),
        )
    }

    fn rms(samples: impl Iterator<Item = i16>) -> f64 {
        let (sum, n) = samples.fold((0.0, 0usize), |(sum, n), s| {
            (sum + f64::from(s) * f64::from(s), n + 1)
        });
        (sum / n.max(1) as f64).sqrt()
    }

    #[test]
    fn a_clip_knows_its_length_and_drops_a_partial_sample() {
        let c = Clip::new(
            AudioFormat::mono(16_000),
            Bytes::from_static(&[1, 0, 2, 0, 9]),
        );
        assert_eq!(c.sample_count(), 2);
        assert_eq!(c.samples().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(
            clip(16_000, [0; 8_000]).duration(),
            Duration::from_millis(500)
        );
        assert!(clip(16_000, []).is_empty());
    }

    #[test]
    fn at_its_own_rate_a_clip_is_shared_not_copied() {
        let c = tone(16_000, 440.0, 1_000);
        let same = c.at_rate(16_000).unwrap();
        assert_eq!(same.pcm.as_ptr(), c.pcm.as_ptr());
    }

    #[test]
    fn resampled_clips_are_whole_and_start_at_once() {
        for (from_hz, to_hz, samples) in [
            (22_050, 16_000, 22_050 / 3 + 7),
            (24_000, 16_000, 4_801),
            (16_000, 24_000, 333),
            (16_000, 48_000, 16_000),
        ] {
            let c = tone(from_hz, 300.0, samples);
            let out = c.at_rate(to_hz).unwrap();
            assert_eq!(out.format, AudioFormat::mono(to_hz));
            let expected = (samples as u64 * u64::from(to_hz)).div_ceil(u64::from(from_hz));
            assert_eq!(out.sample_count() as u64, expected, "{from_hz} → {to_hz}");
            // No start-up silence: the tone is there from the first milliseconds.
            let head = out.format.frame_samples() / 4;
            assert!(rms(out.samples().skip(head / 4).take(head)) > 3_000.0);
            // Same level as the original.
            let (a, b) = (rms(c.samples()), rms(out.samples()));
            assert!((a - b).abs() < a * 0.05, "{from_hz} → {to_hz}: {a} vs {b}");
        }
    }

    #[test]
    fn the_tail_of_a_resampled_clip_is_not_lost() {
        // Silence, then 5 ms of tone at the very end: a resampler that is not flushed holds
        // all of it back.
        let tail = 120;
        let c = clip(
            24_000,
            std::iter::repeat_n(0, 4_800)
                .chain(tone(24_000, 500.0, tail).samples().collect::<Vec<_>>()),
        );
        let out = c.at_rate(16_000).unwrap();
        let last: Vec<i16> = out
            .samples()
            .skip(out.sample_count() - tail * 2 / 3)
            .collect();
        assert!(rms(last.into_iter()) > 3_000.0);
    }
}
