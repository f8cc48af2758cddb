//! Loading WAV files into tracks of samples, checked against what ACS streams, and mixing them.
//!
//! Everything here is blocking file I/O or pure computation: call it from a blocking task.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use mediagate_audio::AudioFormat;
use mediagate_audio::wav::{self, WavError};

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
    /// Reads and checks every file: 16-bit integer PCM, mono, 16000 or 24000 Hz, one rate for all.
    pub(crate) fn load(paths: &[PathBuf]) -> Result<Self, EmulatorError> {
        let mut format: Option<(AudioFormat, &Path)> = None;
        let mut tracks = Vec::with_capacity(paths.len());
        for path in paths {
            let (track_format, track) = load_wav(path)?;
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

/// The largest WAV file read as a track: 1 GiB (about 9 hours of 16 kHz PCM16 mono).
const MAX_FILE_BYTES: u64 = 1 << 30;

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
    let format = match clip.format.sample_rate_hz() {
        16_000 | 24_000 => clip.format,
        other => {
            return Err(EmulatorError::UnsupportedRate {
                path: path.to_path_buf(),
                sample_rate_hz: other,
            });
        }
    };
    let samples = clip.samples().collect();
    Ok((format, Track { samples }))
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
        let set = TrackSet::load(&[path]).unwrap();
        assert_eq!(set.format, AudioFormat::mono(24_000));
        assert!(matches!(set.mixed(), Cow::Borrowed(&[1, -2, 3])));
    }

    #[test]
    fn stereo_float_and_odd_rates_are_rejected_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let stereo = dir.path().join("stereo.wav");
        write_wav(&stereo, pcm16(16_000, 2), &[1, 2]);
        let err = TrackSet::load(std::slice::from_ref(&stereo)).unwrap_err();
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
        let err = TrackSet::load(std::slice::from_ref(&float)).unwrap_err();
        assert!(matches!(err, EmulatorError::NotPcm16 { .. }));
        assert!(err.to_string().contains("float.wav"), "{err}");
        assert!(err.to_string().contains("32-bit float"), "{err}");

        let cd = dir.path().join("cd.wav");
        write_wav(&cd, pcm16(44_100, 1), &[1]);
        let err = TrackSet::load(std::slice::from_ref(&cd)).unwrap_err();
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
        let err = TrackSet::load(&[a.clone(), b]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("a16.wav") && text.contains("b24.wav"),
            "{text}"
        );

        let missing = dir.path().join("missing.wav");
        let err = TrackSet::load(&[a, missing]).unwrap_err();
        assert!(matches!(err, EmulatorError::WavRead { .. }));
        assert!(err.to_string().contains("missing.wav"));
        assert!(matches!(TrackSet::load(&[]), Err(EmulatorError::NoTracks)));
    }
}
