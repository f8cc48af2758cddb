//! The audio formats the gateway accepts: what the platform can send, nothing else.
//!
//! ACS sends PCM16 mono at 16 or 24 kHz; 8, 32, 44.1 and 48 kHz mono are accepted too, for other
//! dialects. Anything else, declared in AudioMetadata or in the `sampleRate` query parameter,
//! closes the socket (1007 for a rate, 1003 for an encoding or a channel count) with a reason
//! saying what was wrong: a stream in a format nobody can record is not worth keeping open.

use std::time::Duration;

use mediagate_audio::AudioFormat;

use super::close_code;

/// Sample rates accepted, in Hz.
pub(crate) const ACCEPTED_SAMPLE_RATES_HZ: [u32; 6] =
    [8_000, 16_000, 24_000, 32_000, 44_100, 48_000];

/// Most audio one AudioData may carry; a longer payload is a bad message. Bounds the work one
/// frame can make downstream (resampling, mixing, silence fill) whatever the declared format.
pub(crate) const MAX_FRAME_DURATION: Duration = Duration::from_secs(1);

/// A format the gateway does not take, with the close code and the reason to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unsupported {
    pub(crate) code: u16,
    pub(crate) reason: String,
}

/// The accepted rates, for a close reason: `8000, 16000, …`.
fn accepted_list() -> String {
    let mut list = String::new();
    for (i, rate) in ACCEPTED_SAMPLE_RATES_HZ.iter().enumerate() {
        if i > 0 {
            list.push_str(", ");
        }
        list.push_str(&rate.to_string());
    }
    list
}

/// The format for `sample_rate_hz` and `channels`, if the gateway accepts it.
pub(crate) fn accepted(sample_rate_hz: u32, channels: u16) -> Result<AudioFormat, Unsupported> {
    if channels != 1 {
        return Err(Unsupported {
            code: close_code::UNSUPPORTED_DATA,
            reason: format!("unsupported channel count {channels}: expected 1 (mono)"),
        });
    }
    if !ACCEPTED_SAMPLE_RATES_HZ.contains(&sample_rate_hz) {
        return Err(unsupported_rate(&sample_rate_hz.to_string()));
    }
    AudioFormat::new(sample_rate_hz, 1).map_err(|_| unsupported_rate(&sample_rate_hz.to_string()))
}

/// The format a `sampleRate` query value names, if accepted (`shown` is the value as sent).
pub(crate) fn from_query(value: &str) -> Result<AudioFormat, Unsupported> {
    match value.trim().parse::<u32>() {
        Ok(rate) => accepted(rate, 1),
        Err(_) => Err(unsupported_rate(&format!(
            "`{}`",
            super::text::Escaped(super::text::truncated(value, 32))
        ))),
    }
}

fn unsupported_rate(shown: &str) -> Unsupported {
    Unsupported {
        code: close_code::INVALID_PAYLOAD,
        reason: format!(
            "unsupported sample rate {shown} Hz: expected one of {}",
            accepted_list()
        ),
    }
}

/// An encoding the gateway does not take (only PCM16 is).
pub(crate) fn unsupported_encoding() -> Unsupported {
    Unsupported {
        code: close_code::UNSUPPORTED_DATA,
        reason: "unsupported encoding: expected PCM (16-bit little-endian)".to_owned(),
    }
}

/// Most PCM bytes one AudioData may carry in `format` ([`MAX_FRAME_DURATION`] of audio).
pub(crate) fn max_frame_bytes(format: AudioFormat) -> usize {
    let per_second = format.sample_rate_hz() as usize * format.bytes_per_sample();
    per_second * MAX_FRAME_DURATION.as_millis() as usize / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_formats_are_accepted() {
        for rate in ACCEPTED_SAMPLE_RATES_HZ {
            assert_eq!(accepted(rate, 1), Ok(AudioFormat::mono(rate)));
            assert_eq!(from_query(&rate.to_string()), Ok(AudioFormat::mono(rate)));
        }
    }

    #[test]
    fn other_formats_are_refused_with_a_reason() {
        let err = accepted(384_000, 1).unwrap_err();
        assert_eq!(err.code, close_code::INVALID_PAYLOAD);
        assert_eq!(
            err.reason,
            "unsupported sample rate 384000 Hz: expected one of 8000, 16000, 24000, 32000, 44100, 48000"
        );
        assert_eq!(
            accepted(16_000, 2).unwrap_err().code,
            close_code::UNSUPPORTED_DATA
        );
        let err = from_query("lots\n").unwrap_err();
        assert_eq!(err.code, close_code::INVALID_PAYLOAD);
        assert!(err.reason.contains("`lots\\n`"), "{}", err.reason);
        assert_eq!(max_frame_bytes(AudioFormat::mono(48_000)), 96_000);
    }
}
