//! Loading WAV files into tracks of samples, checked against what ACS streams, and mixing them.
//!
//! Everything here is blocking file I/O or pure computation: call it from a blocking task.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use mediagate_audio::wav::{self, WavError};
use mediagate_audio::{AudioFormat, StreamResampler};

use crate::EmulatorError;

/// One WAV file's samples.
#[derive(Debug, Clone)]
pub(crate) struct Track {
    /// PCM16 mono samples at the set's rate.
    pub(crate) samples: Vec<i16>,
}

/// The tracks of one emulation, all in one format.
#[derive(Debug, Clone)]
pub(crate) struct TrackSet {
    /// Mono PCM16 at 16 or 24 kHz.
    pub(crate) format: AudioFormat,
    /// In the order the files were given.
    pub(crate) tracks: Vec<Track>,
}

impl TrackSet {
    /// Reads and checks every file: 16-bit integer PCM, mono. Without `stream_rate_hz` every file
    /// must be at 16000 or 24000 Hz, one rate for all; with it, each file at another rate is
    /// resampled to it (which must be 16000 or 24000 Hz).
    pub(crate) fn load(
        paths: &[PathBuf],
        stream_rate_hz: Option<u32>,
    ) -> Result<Self, EmulatorError> {
        if let Some(rate) = stream_rate_hz.filter(|r| !ACS_RATES_HZ.contains(r)) {
            return Err(EmulatorError::UnsupportedStreamRate {
                sample_rate_hz: rate,
            });
        }
        let mut format: Option<(AudioFormat, &Path)> = None;
        let mut tracks = Vec::with_capacity(paths.len());
        for path in paths {
            let (mut track_format, mut track) = load_wav(path)?;
            if let Some(rate) = stream_rate_hz {
                track = resample(path, track_format, rate, track)?;
                track_format = AudioFormat::mono(rate);
            } else if !ACS_RATES_HZ.contains(&track_format.sample_rate_hz()) {
                return Err(EmulatorError::UnsupportedRate {
                    path: path.clone(),
                    sample_rate_hz: track_format.sample_rate_hz(),
                });
            }
            match format {
                None => format = Some((track_format, path)),
                Some((first, first_path)) if first != track_format => {
                    return Err(EmulatorError::MixedRates {
                        path: path.clone(),
                        sample_rate_hz: track_format.sample_rate_hz(),
                        first_path: first_path.to_path_buf(),
                        first_rate_hz: first.sample_rate_hz(),
                    });
                }
                Some(_) => {}
            }
            tracks.push(track);
        }
        let (format, _) = format.ok_or(EmulatorError::NoTracks)?;
        Ok(TrackSet { format, tracks })
    }

    /// All tracks summed into one (saturating at the i16 range), as long as the longest track.
    /// A single track is borrowed, not copied.
    pub(crate) fn mixed(&self) -> Cow<'_, [i16]> {
        match self.tracks.as_slice() {
            [only] => Cow::Borrowed(&only.samples),
            tracks => Cow::Owned(mix(tracks.iter().map(|t| t.samples.as_slice()))),
        }
    }
}

/// The rates ACS streams.
const ACS_RATES_HZ: [u32; 2] = [16_000, 24_000];

/// The largest WAV file read as a track: 1 GiB (about 9 hours of 16 kHz PCM16 mono).
const MAX_FILE_BYTES: u64 = 1 << 30;

/// Reads a mono PCM16 WAV file at whatever rate it has.
fn load_wav(path: &Path) -> Result<(AudioFormat, Track), EmulatorError> {
    let clip = wav::read(path, MAX_FILE_BYTES, wav::Accept::Pcm16).map_err(|e| match e {
        WavError::NotPcm16 { found } => EmulatorError::NotPcm16 {
            path: path.to_path_buf(),
            found,
        },
        source => EmulatorError::WavRead {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if clip.format.channels() != 1 {
        return Err(EmulatorError::NotMono {
            path: path.to_path_buf(),
            channels: clip.format.channels(),
        });
    }
    let samples = clip.samples().collect();
    Ok((clip.format, Track { samples }))
}

/// A whole track resampled to `rate_hz`, aligned with the original (the filter's start-up
/// delay dropped) and as long as it in time, rounded up. Same rate: the track as it is.
fn resample(
    path: &Path,
    from: AudioFormat,
    rate_hz: u32,
    track: Track,
) -> Result<Track, EmulatorError> {
    if from.sample_rate_hz() == rate_hz {
        return Ok(track);
    }
    let mut resampler =
        StreamResampler::new(from, rate_hz).map_err(|source| EmulatorError::Resample {
            path: path.to_path_buf(),
            source,
        })?;
    let pcm: Vec<u8> = track.samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut out = BytesMut::new();
    resampler.process(&pcm, &mut out);
    resampler.flush(&mut out);
    let delay = resampler.delay_samples();
    let wanted = (track.samples.len() as u64 * u64::from(rate_hz))
        .div_ceil(u64::from(from.sample_rate_hz())) as usize;
    let samples = out
        .chunks_exact(2)
        .skip(delay)
        .take(wanted)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    Ok(Track { samples })
}

/// Sums tracks sample by sample with saturation; the result is as long as the longest track.
fn mix<'a>(tracks: impl Iterator<Item = &'a [i16]> + Clone) -> Vec<i16> {
    let len = tracks.clone().map(<[i16]>::len).max().unwrap_or(0);
    let mut sum = vec![0_i32; len];
    for track in tracks {
        for (acc, &sample) in sum.iter_mut().zip(track) {
            *acc += i32::from(sample);
        }
    }
    sum.into_iter()
        .map(|s| s.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, spec: hound::WavSpec, samples: &[i16]) {
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            writer.write_sample(s).unwrap();
        }
        writer.finalize().unwrap();
    }

    fn pcm16(sample_rate: u32, channels: u16) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        }
    }

    #[test]
    fn mix_saturates_and_keeps_the_longest_track() {
        let a: &[i16] = &[30_000, -30_000, 1, 7];
        let b: &[i16] = &[10_000, -10_000, 2];
        assert_eq!(mix([a, b].into_iter()), vec![i16::MAX, i16::MIN, 3, 7]);
    }

    #[test]
    fn loads_mono_pcm16_and_borrows_a_single_track() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        write_wav(&path, pcm16(24_000, 1), &[1, -2, 3]);
        let set = TrackSet::load(&[path], None).unwrap();
        assert_eq!(set.format, AudioFormat::mono(24_000));
        assert!(matches!(set.mixed(), Cow::Borrowed(&[1, -2, 3])));
    }

    #[test]
    fn stereo_float_and_odd_rates_are_rejected_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let stereo = dir.path().join("stereo.wav");
        write_wav(&stereo, pcm16(16_000, 2), &[1, 2]);
        let err = TrackSet::load(std::slice::from_ref(&stereo), None).unwrap_err();
        assert!(matches!(err, EmulatorError::NotMono { channels: 2, .. }));
        assert!(err.to_string().contains("stereo.wav"), "{err}");

        let float = dir.path().join("float.wav");
        let spec = hound::WavSpec {
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
            ..pcm16(16_000, 1)
        };
        let mut writer = hound::WavWriter::create(&float, spec).unwrap();
        writer.write_sample(0.5_f32).unwrap();
        writer.finalize().unwrap();
        let err = TrackSet::load(std::slice::from_ref(&float), None).unwrap_err();
        assert!(matches!(err, EmulatorError::NotPcm16 { .. }));
        assert!(err.to_string().contains("float.wav"), "{err}");
        assert!(err.to_string().contains("32-bit float"), "{err}");

        let cd = dir.path().join("cd.wav");
        write_wav(&cd, pcm16(44_100, 1), &[1]);
        let err = TrackSet::load(std::slice::from_ref(&cd), None).unwrap_err();
        assert!(matches!(
            err,
            EmulatorError::UnsupportedRate {
                sample_rate_hz: 44_100,
                ..
            }
        ));
    }

    #[test]
    fn differing_rates_and_missing_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a16.wav");
        let b = dir.path().join("b24.wav");
        write_wav(&a, pcm16(16_000, 1), &[1]);
        write_wav(&b, pcm16(24_000, 1), &[1]);
        let err = TrackSet::load(&[a.clone(), b], None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("a16.wav") && text.contains("b24.wav"),
            "{text}"
        );

        let missing = dir.path().join("missing.wav");
        let err = TrackSet::load(&[a, missing], None).unwrap_err();
        assert!(matches!(err, EmulatorError::WavRead { .. }));
        assert!(err.to_string().contains("missing.wav"));
        assert!(matches!(
            TrackSet::load(&[], None),
            Err(EmulatorError::NoTracks)
        ));
    }

    #[test]
    fn tracks_are_resampled_to_the_stream_rate_and_keep_their_length_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a16.wav");
        let b = dir.path().join("b24.wav");
        // A 500 Hz tone: resampled, it stays a tone of the same level.
        let tone: Vec<i16> = (0..16_000)
            .map(|i| ((i as f32 * 500.0 * std::f32::consts::TAU / 16_000.0).sin() * 8_000.0) as i16)
            .collect();
        write_wav(&a, pcm16(16_000, 1), &tone);
        write_wav(&b, pcm16(24_000, 1), &[7; 2_400]);
        let set = TrackSet::load(&[a.clone(), b.clone()], Some(24_000)).unwrap();
        assert_eq!(set.format, AudioFormat::mono(24_000));
        assert_eq!(set.tracks[0].samples.len(), 24_000);
        assert_eq!(
            set.tracks[1].samples,
            vec![7; 2_400],
            "same rate: untouched"
        );
        let peak = set.tracks[0].samples[100..23_900]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!((7_800..=8_200).contains(&peak), "{peak}");
        // The first zero crossing stays where it was (no start-up delay left in).
        assert!(set.tracks[0].samples[0].abs() < 200);

        let down = TrackSet::load(&[b], Some(16_000)).unwrap();
        assert_eq!(down.tracks[0].samples.len(), 1_600);
        let err = TrackSet::load(&[a], Some(44_100)).unwrap_err();
        assert!(matches!(
            err,
            EmulatorError::UnsupportedStreamRate {
                sample_rate_hz: 44_100
            }
        ));
    }
}
