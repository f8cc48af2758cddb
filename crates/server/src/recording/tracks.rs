//! WAV tracks on one call timeline: one file for mixed audio or one per participant, gaps in a
//! participant's timestamps filled with silence so every track of a call lines up.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use hound::{SampleFormat, WavSpec, WavWriter};
use mediagate_audio::{AudioFormat, AudioSource};
use mediagate_protocol::Timestamp;
use serde::Serialize;

use super::folder::CallFolder;

/// What one track ended up holding; goes into session.json.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TrackSummary {
    /// `mixed`, or the participant's raw id.
    pub(crate) source: String,
    /// File name inside the call folder.
    pub(crate) file: String,
    /// Frames received for this track.
    pub(crate) frames: u64,
    /// Samples in the finished file (per channel), including filled silence.
    pub(crate) samples: u64,
    /// Seconds of audio in the file.
    pub(crate) duration_secs: f64,
    /// Silence written before the participant's first frame, to place it on the call timeline.
    pub(crate) leading_silence_samples: u64,
    /// Gaps in the timestamps that were filled with silence, and how many samples they took.
    pub(crate) gaps_filled: u64,
    /// Samples of silence written for those gaps.
    pub(crate) gap_samples: u64,
    /// Silence appended at the end so all tracks of the call have the same length.
    pub(crate) trailing_silence_samples: u64,
    /// Timestamp jumps too large to be real gaps: counted, not filled.
    pub(crate) timestamp_anomalies: u64,
}

struct Track {
    source: AudioSource,
    writer: WavWriter<BufWriter<File>>,
    summary: TrackSummary,
    /// Microseconds added to this track's timestamps after anomalies re-anchored it.
    offset_micros: i64,
}

/// The WAV files of one call.
pub(crate) struct AudioTracks {
    format: AudioFormat,
    /// Timeline zero: the timestamp of the call's first frame.
    origin: Option<Timestamp>,
    max_gap_samples: u64,
    tracks: Vec<Track>,
}

const SILENCE_CHUNK: [i16; 1024] = [0; 1024];

impl AudioTracks {
    pub(crate) fn new(format: AudioFormat, max_gap_secs: u64) -> Self {
        AudioTracks {
            format,
            origin: None,
            max_gap_samples: max_gap_secs.saturating_mul(u64::from(format.sample_rate_hz())),
            tracks: Vec::new(),
        }
    }

    pub(crate) fn format(&self) -> AudioFormat {
        self.format
    }

    /// Appends one frame of `pcm` (a whole number of samples in `self.format`).
    pub(crate) fn write_frame(
        &mut self,
        folder: &CallFolder,
        source: &AudioSource,
        timestamp: Option<Timestamp>,
        pcm: &[u8],
    ) -> io::Result<()> {
        let index = match self.tracks.iter().position(|t| &t.source == source) {
            Some(i) => i,
            None => {
                let track = open_track(folder, self.format, source)?;
                self.tracks.push(track);
                self.tracks.len() - 1
            }
        };
        let format = self.format;
        let frame_samples = format.frame_samples() as u64;
        let max_gap = self.max_gap_samples;
        let track = &mut self.tracks[index];
        if let Some(ts) = timestamp {
            let origin = *self.origin.get_or_insert(ts);
            let position = format.samples_for_micros(ts.micros_since(origin) + track.offset_micros);
            let expected = u64::try_from(position).unwrap_or(0);
            let written = track.summary.samples;
            let missing = expected.saturating_sub(written);
            if missing > max_gap {
                // A clock jump, not a pause: re-anchor this track instead of writing hours of zeros.
                track.summary.timestamp_anomalies += 1;
                track.offset_micros -= format.micros_for_samples(missing);
            } else if missing >= frame_samples {
                write_silence(&mut track.writer, format, missing)?;
                if track.summary.frames == 0 {
                    track.summary.leading_silence_samples += missing;
                } else {
                    track.summary.gaps_filled += 1;
                    track.summary.gap_samples += missing;
                }
                track.summary.samples += missing;
            }
        }
        write_pcm(&mut track.writer, pcm)?;
        track.summary.frames += 1;
        track.summary.samples += (pcm.len() / format.bytes_per_sample()) as u64;
        Ok(())
    }

    /// Makes every file valid up to what has been written (headers updated, buffers flushed), so
    /// that even a killed process leaves playable files.
    pub(crate) fn checkpoint(&mut self) -> io::Result<()> {
        for track in &mut self.tracks {
            track.writer.flush().map_err(hound_to_io)?;
        }
        Ok(())
    }

    /// Pads every track to the longest, finalizes the headers and returns what each holds.
    pub(crate) fn finish(self) -> (Vec<TrackSummary>, Vec<io::Error>) {
        let longest = self
            .tracks
            .iter()
            .map(|t| t.summary.samples)
            .max()
            .unwrap_or(0);
        let mut summaries = Vec::with_capacity(self.tracks.len());
        let mut errors = Vec::new();
        let rate = f64::from(self.format.sample_rate_hz());
        for mut track in self.tracks {
            let pad = longest - track.summary.samples;
            if pad > 0 {
                match write_silence(&mut track.writer, self.format, pad) {
                    Ok(()) => {
                        track.summary.trailing_silence_samples = pad;
                        track.summary.samples += pad;
                    }
                    Err(e) => errors.push(e),
                }
            }
            if let Err(e) = track.writer.finalize() {
                errors.push(hound_to_io(e));
            }
            track.summary.duration_secs = track.summary.samples as f64 / rate;
            summaries.push(track.summary);
        }
        (summaries, errors)
    }
}

fn open_track(folder: &CallFolder, format: AudioFormat, source: &AudioSource) -> io::Result<Track> {
    let (stem, label) = match source {
        AudioSource::Mixed => ("mixed".to_owned(), "mixed".to_owned()),
        AudioSource::Participant(id) => (sanitize_file_stem(id), id.to_string()),
    };
    let file = folder.claim_file(&stem, "wav");
    let writer = create_wav(&folder.dir().join(&file), format)?;
    Ok(Track {
        source: source.clone(),
        writer,
        summary: TrackSummary {
            source: label,
            file,
            frames: 0,
            samples: 0,
            duration_secs: 0.0,
            leading_silence_samples: 0,
            gaps_filled: 0,
            gap_samples: 0,
            trailing_silence_samples: 0,
            timestamp_anomalies: 0,
        },
        offset_micros: 0,
    })
}

fn create_wav(path: &Path, format: AudioFormat) -> io::Result<WavWriter<BufWriter<File>>> {
    let spec = WavSpec {
        channels: format.channels(),
        sample_rate: format.sample_rate_hz(),
        bits_per_sample: 16,
        sample_format: SampleFormat::Int,
    };
    let file = BufWriter::with_capacity(64 * 1024, File::create(path)?);
    WavWriter::new(file, spec).map_err(hound_to_io)
}

fn write_pcm(writer: &mut WavWriter<BufWriter<File>>, pcm: &[u8]) -> io::Result<()> {
    let samples = pcm.len() / 2;
    let Ok(count) = u32::try_from(samples) else {
        return Err(io::Error::other("frame too large for one WAV write"));
    };
    let mut out = writer.get_i16_writer(count);
    for pair in pcm.chunks_exact(2) {
        out.write_sample(i16::from_le_bytes([pair[0], pair[1]]));
    }
    out.flush().map_err(hound_to_io)
}

fn write_silence(
    writer: &mut WavWriter<BufWriter<File>>,
    format: AudioFormat,
    samples: u64,
) -> io::Result<()> {
    let mut left = samples * u64::from(format.channels());
    while left > 0 {
        let n = left.min(SILENCE_CHUNK.len() as u64) as u32;
        let mut out = writer.get_i16_writer(n);
        for &s in &SILENCE_CHUNK[..n as usize] {
            out.write_sample(s);
        }
        out.flush().map_err(hound_to_io)?;
        left -= u64::from(n);
    }
    Ok(())
}

fn hound_to_io(err: hound::Error) -> io::Error {
    match err {
        hound::Error::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// A file-system-safe stem for a participant id: `8:acs:abc` → `8_acs_abc`, at most 96 chars.
pub(crate) fn sanitize_file_stem(raw: &str) -> String {
    let mut stem: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(96)
        .collect();
    // No hidden files, no `..`, never empty.
    while stem.starts_with('.') {
        stem.replace_range(0..1, "_");
    }
    if stem.is_empty() {
        stem.push_str("unnamed");
    }
    stem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_participant_ids() {
        assert_eq!(sanitize_file_stem("8:acs:abc-1_2"), "8_acs_abc-1_2");
        assert_eq!(sanitize_file_stem("4:+14255550123"), "4__14255550123");
        assert_eq!(sanitize_file_stem("../../etc/passwd"), "_._.._etc_passwd");
        assert_eq!(sanitize_file_stem(""), "unnamed");
        assert_eq!(sanitize_file_stem(&"x".repeat(500)).len(), 96);
    }
}
