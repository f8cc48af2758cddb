//! WAV tracks on the call's timeline: one file for mixed audio or one per participant, each
//! frame written where the pipeline placed it ([`AudioFrame::position`]), gaps filled with
//! silence so every track of a call lines up.
//!
//! [`AudioFrame::position`]: mediagate_audio::AudioFrame::position

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hound::{SampleFormat, WavSpec, WavWriter};
use mediagate_audio::{AudioFormat, AudioSource};
use serde::Serialize;

use super::Folder;
use super::repair::repair_file;
use mediagate_pipeline::sanitize_file_stem;

/// What one track ended up holding; goes into session.json.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackSummary {
    /// `mixed`, or the participant's raw id.
    pub source: String,
    /// File name inside the call folder.
    pub file: String,
    /// Files this track continued in after `file` reached the WAV size limit (4 GiB).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub continued_in: Vec<String>,
    /// Frames received for this track.
    pub frames: u64,
    /// Samples in the finished file(s) (per channel), including filled silence.
    pub samples: u64,
    /// Seconds of audio in the file(s).
    pub duration_secs: f64,
    /// Silence written before the participant's first frame, to place it on the call timeline.
    pub leading_silence_samples: u64,
    /// Gaps in the timestamps that were filled with silence.
    pub gaps_filled: u64,
    /// Samples of silence written for those gaps.
    pub gap_samples: u64,
    /// Silence appended at the end so all tracks of the call have the same length.
    pub trailing_silence_samples: u64,
    /// Samples handed to the file that a failed write (a full disk) kept off it: they are not
    /// in `samples`.
    #[serde(skip_serializing_if = "is_zero")]
    pub lost_samples: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Largest WAV data chunk written before a track continues in a new file: hound (and the
/// RIFF format) count sizes in 32 bits.
const MAX_WAV_DATA_BYTES: u64 = 4_000_000_000;

type Writer = WavWriter<BufWriter<DiskFile>>;

struct Track {
    source: AudioSource,
    stem: String,
    writer: Writer,
    /// The current file again (a duplicate handle), to make its header true after a failed
    /// write, whatever state the writer was left in.
    handle: File,
    /// The test disk budget its files share ([`AudioTracks::with_disk_budget`]).
    budget: Option<Arc<AtomicU64>>,
    /// Bytes in the current file's data chunk.
    file_bytes: u64,
    summary: TrackSummary,
}

/// The WAV files of one call's audio in one format: one per source (mixed, or each
/// participant), all on the call's timeline. Blocking I/O: use it on a blocking thread.
pub struct AudioTracks {
    format: AudioFormat,
    /// The call-timeline position of these tracks' first placed frame: their zero. (A `wav`
    /// that changes format mid-call starts new tracks there, not with the call so far as
    /// silence.)
    origin: Option<Duration>,
    max_file_bytes: u64,
    tracks: Vec<Track>,
    /// Tracks closed by [`AudioTracks::stop`] (or a failed write), in order.
    sealed: Vec<TrackSummary>,
    /// Recording stopped: frames are no longer written.
    stopped: bool,
    /// Bytes the files may still grow by (tests: a disk that fills up); `None`: the disk's.
    budget: Option<Arc<AtomicU64>>,
    /// Most sources recorded; frames of any other are counted in `untracked_frames`.
    max_tracks: usize,
    untracked_frames: u64,
}

const SILENCE_CHUNK: [i16; 1024] = [0; 1024];

/// How many sources are recorded, unless [`AudioTracks::with_max_tracks`] says otherwise.
pub const DEFAULT_MAX_TRACKS: usize = 64;

impl AudioTracks {
    /// Tracks of `format` audio.
    pub fn new(format: AudioFormat) -> Self {
        AudioTracks {
            format,
            origin: None,
            max_file_bytes: MAX_WAV_DATA_BYTES,
            tracks: Vec::new(),
            sealed: Vec::new(),
            stopped: false,
            budget: None,
            max_tracks: DEFAULT_MAX_TRACKS,
            untracked_frames: 0,
        }
    }

    /// The same tracks, recording at most `max_tracks` sources (at least 1): frames of any
    /// source beyond them are counted ([`AudioTracks::untracked_frames`]) and not recorded.
    #[must_use]
    pub fn with_max_tracks(mut self, max_tracks: usize) -> Self {
        self.max_tracks = max_tracks.max(1);
        self
    }

    /// Frames not recorded because their source came after [`AudioTracks::with_max_tracks`]
    /// others.
    pub fn untracked_frames(&self) -> u64 {
        self.untracked_frames
    }

    /// The format every track holds.
    pub fn format(&self) -> AudioFormat {
        self.format
    }

    /// Appends one frame of `pcm` (a whole number of samples in `self.format`), first filling
    /// its track with silence up to `position`, where the frame starts on the call's timeline
    /// (`None`: right after the track's previous frame), counted from the first placed frame
    /// of these tracks. Filling up to a position is always
    /// done: the call's timeline bounds it (a clock anomaly is caught there, see
    /// [`mediagate_audio::CallTimeline`]), so a participant who joins late or is silent for
    /// long still lines up with the others, and no track is longer than the call's timeline.
    pub fn write_frame(
        &mut self,
        folder: &mut dyn Folder,
        source: &AudioSource,
        position: Option<Duration>,
        pcm: &[u8],
    ) -> io::Result<()> {
        if self.stopped {
            return Ok(());
        }
        let result = self.write_at(folder, source, position, pcm);
        if result.is_err() {
            // A failed write (a full disk): keep what is on disk valid, write nothing more.
            self.stop();
        }
        result
    }

    /// Whether recording stopped ([`AudioTracks::stop`], or a failed write): frames are then
    /// no longer written, and the caller counts them as lost.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Stops recording: every file is closed with a header that matches the data on disk (cut
    /// to the last whole sample frame, should a write have been torn), and frames written from
    /// now on are ignored. Used when a write fails (a full disk) and when free disk space falls
    /// below the recorder's floor. Never fails: what could not be kept is counted in each
    /// track's `lost_samples`.
    pub fn stop(&mut self) {
        self.stopped = true;
        let rate = f64::from(self.format.sample_rate_hz());
        let bytes_per_sample = self.format.bytes_per_sample() as u64;
        for track in self.tracks.drain(..) {
            self.sealed.push(seal(track, bytes_per_sample, rate));
        }
    }

    fn write_at(
        &mut self,
        folder: &mut dyn Folder,
        source: &AudioSource,
        position: Option<Duration>,
        pcm: &[u8],
    ) -> io::Result<()> {
        let index = match self.tracks.iter().position(|t| &t.source == source) {
            Some(i) => i,
            None if self.tracks.len() >= self.max_tracks => {
                // Each track may be as long as the call: their number bounds the disk a call
                // can fill, so sources past it are counted, not recorded.
                self.untracked_frames += 1;
                return Ok(());
            }
            None => {
                let track = open_track(folder, self.format, source, self.budget.as_ref())?;
                self.tracks.push(track);
                self.tracks.len() - 1
            }
        };
        let format = self.format;
        let track = &mut self.tracks[index];
        if let Some(position) = position {
            let origin = *self.origin.get_or_insert(position);
            let position = position.saturating_sub(origin);
            let expected = u64::try_from(format.samples_for_micros(micros(position))).unwrap_or(0);
            let missing = expected.saturating_sub(track.summary.samples);
            if missing >= format.frame_samples() as u64 {
                write_silence(folder, track, format, self.max_file_bytes, missing)?;
                if track.summary.frames == 0 {
                    track.summary.leading_silence_samples += missing;
                } else {
                    track.summary.gaps_filled += 1;
                    track.summary.gap_samples += missing;
                }
            }
        }
        write_pcm(folder, track, format, self.max_file_bytes, pcm)?;
        track.summary.frames += 1;
        Ok(())
    }

    /// Makes every file valid up to what has been written (headers updated, buffers flushed), so
    /// that even a killed process leaves playable files.
    /// A failure stops recording ([`AudioTracks::stop`]).
    pub fn checkpoint(&mut self) -> io::Result<()> {
        let result = self
            .tracks
            .iter_mut()
            .try_for_each(|track| track.writer.flush().map_err(hound_to_io));
        if result.is_err() {
            self.stop();
        }
        result
    }

    /// Pads every track to the longest, finalizes the headers and returns what each holds
    /// (tracks closed by [`AudioTracks::stop`] first). A track whose padding or header cannot
    /// be written is closed as [`AudioTracks::stop`] does, with a header true to its data.
    pub fn finish(mut self, folder: &mut dyn Folder) -> (Vec<TrackSummary>, Vec<io::Error>) {
        let longest = self
            .tracks
            .iter()
            .map(|t| t.summary.samples)
            .max()
            .unwrap_or(0);
        let mut summaries = std::mem::take(&mut self.sealed);
        let mut errors = Vec::new();
        let rate = f64::from(self.format.sample_rate_hz());
        let bytes_per_sample = self.format.bytes_per_sample() as u64;
        for mut track in std::mem::take(&mut self.tracks) {
            let pad = longest - track.summary.samples;
            if pad > 0 {
                match write_silence(folder, &mut track, self.format, self.max_file_bytes, pad) {
                    Ok(()) => track.summary.trailing_silence_samples = pad,
                    Err(e) => {
                        errors.push(e);
                        summaries.push(seal(track, bytes_per_sample, rate));
                        continue;
                    }
                }
            }
            if let Err(e) = track.writer.flush() {
                errors.push(hound_to_io(e));
                summaries.push(seal(track, bytes_per_sample, rate));
                continue;
            }
            track.summary.duration_secs = track.summary.samples as f64 / rate;
            // Flushed above: finalizing rewrites the same header, and cannot lose data.
            if let Err(e) = track.writer.finalize() {
                errors.push(hound_to_io(e));
            }
            summaries.push(track.summary);
        }
        (summaries, errors)
    }

    /// The same tracks on a disk that has only `bytes` left for them (every file's growth
    /// counts; rewriting a header does not).
    #[cfg(test)]
    fn with_disk_budget(mut self, bytes: u64) -> Self {
        self.budget = Some(Arc::new(AtomicU64::new(bytes)));
        self
    }

    #[cfg(test)]
    fn with_max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes;
        self
    }
}

/// Closes `track` whatever state a failed write left it in: the writer is finalized if it can
/// be, then the file's header is rewritten from the data actually on disk (cut to a whole
/// sample frame). Returns what the file holds; what did not reach it is in `lost_samples`.
fn seal(track: Track, bytes_per_sample: u64, rate: f64) -> TrackSummary {
    let Track {
        writer,
        mut handle,
        file_bytes,
        mut summary,
        ..
    } = track;
    // On a full disk this fails; the repair below makes the header true either way.
    let _ = writer.finalize();
    let on_disk = match repair_file(&mut handle) {
        Ok(outcome) => outcome.data_bytes(),
        Err(e) => {
            tracing::error!(file = %summary.file, error = %e, "cannot make the WAV valid");
            0
        }
    };
    let before = summary.samples - file_bytes / bytes_per_sample;
    summary.samples = before + on_disk / bytes_per_sample;
    summary.lost_samples += file_bytes.saturating_sub(on_disk) / bytes_per_sample;
    summary.duration_secs = summary.samples as f64 / rate;
    summary
}

fn open_track(
    folder: &mut dyn Folder,
    format: AudioFormat,
    source: &AudioSource,
    budget: Option<&Arc<AtomicU64>>,
) -> io::Result<Track> {
    let (stem, label) = match source {
        AudioSource::Mixed => ("mixed".to_owned(), "mixed".to_owned()),
        AudioSource::Participant(id) => (sanitize_file_stem(id), id.to_string()),
    };
    let (writer, handle, file) = create_wav(folder, &stem, format, budget)?;
    Ok(Track {
        source: source.clone(),
        stem,
        writer,
        handle,
        budget: budget.cloned(),
        file_bytes: 0,
        summary: TrackSummary {
            source: label,
            file,
            continued_in: Vec::new(),
            frames: 0,
            samples: 0,
            duration_secs: 0.0,
            leading_silence_samples: 0,
            gaps_filled: 0,
            gap_samples: 0,
            trailing_silence_samples: 0,
            lost_samples: 0,
        },
    })
}

/// A new WAV file `stem.wav` (or `stem-N.wav`) in the folder, a second handle on it, and its
/// name.
fn create_wav(
    folder: &mut dyn Folder,
    stem: &str,
    format: AudioFormat,
    budget: Option<&Arc<AtomicU64>>,
) -> io::Result<(Writer, File, String)> {
    let spec = WavSpec {
        channels: format.channels(),
        sample_rate: format.sample_rate_hz(),
        bits_per_sample: 16,
        sample_format: SampleFormat::Int,
    };
    let (file, name) = folder.create(stem, "wav")?;
    let handle = file.try_clone()?;
    let file = DiskFile {
        file,
        position: 0,
        len: 0,
        budget: budget.cloned(),
    };
    let writer =
        WavWriter::new(BufWriter::with_capacity(64 * 1024, file), spec).map_err(hound_to_io)?;
    Ok((writer, handle, name))
}

/// A WAV file being written. It only passes writes through, but for a test's disk budget:
/// growth past it fails as a full disk does (a write that fits in part is torn there).
struct DiskFile {
    file: File,
    position: u64,
    len: u64,
    budget: Option<Arc<AtomicU64>>,
}

impl Write for DiskFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut allowed = buf.len();
        if let Some(budget) = &self.budget {
            let room = self.len.saturating_sub(self.position) + budget.load(Ordering::Relaxed);
            allowed = allowed.min(usize::try_from(room).unwrap_or(usize::MAX));
            if allowed == 0 && !buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "No space left on device (test budget)",
                ));
            }
        }
        let written = self.file.write(&buf[..allowed])?;
        let end = self.position + written as u64;
        if let Some(budget) = &self.budget {
            let grown = end.saturating_sub(self.len);
            budget.fetch_sub(grown.min(budget.load(Ordering::Relaxed)), Ordering::Relaxed);
        }
        self.position = end;
        self.len = self.len.max(end);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for DiskFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.position = self.file.seek(to)?;
        Ok(self.position)
    }
}

/// Room for `bytes` more in the track's current file, or a fresh `-partN` file to continue in.
fn make_room(
    folder: &mut dyn Folder,
    track: &mut Track,
    format: AudioFormat,
    max_file_bytes: u64,
    bytes: u64,
) -> io::Result<()> {
    if track.file_bytes + bytes <= max_file_bytes || track.file_bytes == 0 {
        return Ok(());
    }
    let part = track.summary.continued_in.len() + 2;
    let (next, handle, file) = create_wav(
        folder,
        &format!("{}-part{part}", track.stem),
        format,
        track.budget.as_ref(),
    )?;
    let full = std::mem::replace(&mut track.writer, next);
    let mut full_handle = std::mem::replace(&mut track.handle, handle);
    if let Err(e) = full.finalize() {
        // Its header must still match its data.
        let _ = repair_file(&mut full_handle);
        return Err(hound_to_io(e));
    }
    track.summary.continued_in.push(file);
    track.file_bytes = 0;
    Ok(())
}

fn write_pcm(
    folder: &mut dyn Folder,
    track: &mut Track,
    format: AudioFormat,
    max_file_bytes: u64,
    pcm: &[u8],
) -> io::Result<()> {
    make_room(folder, track, format, max_file_bytes, pcm.len() as u64)?;
    let Ok(count) = u32::try_from(pcm.len() / 2) else {
        return Err(io::Error::other("frame too large for one WAV write"));
    };
    let mut out = track.writer.get_i16_writer(count);
    for pair in pcm.chunks_exact(2) {
        out.write_sample(i16::from_le_bytes([pair[0], pair[1]]));
    }
    out.flush().map_err(hound_to_io)?;
    track.file_bytes += pcm.len() as u64;
    track.summary.samples += (pcm.len() / format.bytes_per_sample()) as u64;
    Ok(())
}

fn write_silence(
    folder: &mut dyn Folder,
    track: &mut Track,
    format: AudioFormat,
    max_file_bytes: u64,
    samples: u64,
) -> io::Result<()> {
    let channels = u64::from(format.channels());
    let chunk_samples = SILENCE_CHUNK.len() as u64 / channels;
    let mut left = samples;
    while left > 0 {
        let n = left.min(chunk_samples);
        let values = (n * channels) as usize;
        make_room(folder, track, format, max_file_bytes, values as u64 * 2)?;
        let mut out = track.writer.get_i16_writer(values as u32);
        for &s in &SILENCE_CHUNK[..values] {
            out.write_sample(s);
        }
        out.flush().map_err(hound_to_io)?;
        track.file_bytes += values as u64 * 2;
        track.summary.samples += n;
        left -= n;
    }
    Ok(())
}

/// `duration` in microseconds, saturating.
fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn hound_to_io(err: hound::Error) -> io::Error {
    match err {
        hound::Error::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Dir;
    use std::path::Path;

    fn folder(dir: &Path) -> Dir {
        Dir::new(dir)
    }

    const FORMAT: AudioFormat = AudioFormat::mono(16_000);

    /// A frame's place on the call's timeline, `ms` in.
    fn at(ms: i64) -> Option<Duration> {
        Some(Duration::from_millis(ms as u64))
    }

    fn frame(value: u8) -> Vec<u8> {
        vec![value; FORMAT.frame_bytes()]
    }

    fn samples(path: &Path) -> Vec<i16> {
        hound::WavReader::open(path)
            .unwrap()
            .into_samples::<i16>()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn a_late_joiner_lines_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut folder = folder(dir.path());
        let mut tracks = AudioTracks::new(FORMAT);
        let (a, b) = (
            AudioSource::Participant("a".into()),
            AudioSource::Participant("b".into()),
        );
        // A speaks for 8 s; B first speaks 6 s in.
        for i in 0..400 {
            tracks
                .write_frame(&mut folder, &a, at(i * 20), &frame(1))
                .unwrap();
            if i >= 300 {
                tracks
                    .write_frame(&mut folder, &b, at(i * 20), &frame(2))
                    .unwrap();
            }
        }
        let (summaries, errors) = tracks.finish(&mut folder);
        assert!(errors.is_empty());
        assert_eq!(summaries[1].leading_silence_samples, 300 * 320);
        let b = samples(&dir.path().join("b.wav"));
        assert_eq!(b.len(), 400 * 320);
        assert!(b[..300 * 320].iter().all(|&s| s == 0));
        assert!(b[300 * 320..].iter().all(|&s| s == 0x0202));
    }

    #[test]
    fn a_track_continues_in_a_new_file_at_the_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut folder = folder(dir.path());
        let mut tracks = AudioTracks::new(FORMAT).with_max_file_bytes(10 * 640);
        for i in 0..25u8 {
            tracks
                .write_frame(
                    &mut folder,
                    &AudioSource::Mixed,
                    at(i64::from(i) * 20),
                    &frame(i),
                )
                .unwrap();
        }
        let (summaries, errors) = tracks.finish(&mut folder);
        assert!(errors.is_empty());
        assert_eq!(
            summaries[0].continued_in,
            ["mixed-part2.wav", "mixed-part3.wav"]
        );
        let mut all = samples(&dir.path().join("mixed.wav"));
        assert_eq!(all.len(), 10 * 320);
        for file in &summaries[0].continued_in {
            all.extend(samples(&dir.path().join(file)));
        }
        let expected: Vec<i16> = (0..25u8)
            .flat_map(|i| std::iter::repeat_n(i16::from_le_bytes([i, i]), 320))
            .collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn a_pause_on_the_timeline_is_filled_and_untimed_frames_follow_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut folder = folder(dir.path());
        let mut tracks = AudioTracks::new(FORMAT);
        // 1 s of audio, 30 s of nothing, 1 s of audio, then a frame with no place: it follows.
        for i in 0..50 {
            tracks
                .write_frame(&mut folder, &AudioSource::Mixed, at(i * 20), &frame(1))
                .unwrap();
        }
        for i in 0..50 {
            tracks
                .write_frame(
                    &mut folder,
                    &AudioSource::Mixed,
                    at(31_000 + i * 20),
                    &frame(1),
                )
                .unwrap();
        }
        tracks
            .write_frame(&mut folder, &AudioSource::Mixed, None, &frame(1))
            .unwrap();
        let (summaries, _) = tracks.finish(&mut folder);
        assert_eq!(summaries[0].gaps_filled, 1);
        assert_eq!(summaries[0].gap_samples, 30 * 16_000);
        assert_eq!(summaries[0].samples, 32 * 16_000 + 320);
        // A frame placed before where its track already is (jitter) is appended, not filled.
        let mut tracks = AudioTracks::new(FORMAT);
        for ms in [0, 20, 10, 30] {
            tracks
                .write_frame(&mut folder, &AudioSource::Mixed, at(ms), &frame(1))
                .unwrap();
        }
        let (summaries, _) = tracks.finish(&mut folder);
        assert_eq!(summaries[0].samples, 4 * 320);
        assert_eq!(summaries[0].gaps_filled, 0);
        // Tracks started mid-call (a `wav` whose format changed) count from their first frame.
        let mut tracks = AudioTracks::new(FORMAT);
        for i in 0..3 {
            tracks
                .write_frame(
                    &mut folder,
                    &AudioSource::Mixed,
                    at(1_800_000 + i * 20),
                    &frame(1),
                )
                .unwrap();
        }
        let (summaries, _) = tracks.finish(&mut folder);
        assert_eq!(summaries[0].samples, 3 * 320);
        assert_eq!(summaries[0].leading_silence_samples, 0);
    }

    /// Frame `i` of a source: every sample says which frame it is and where in it.
    fn numbered(i: usize) -> Vec<u8> {
        (0..320)
            .flat_map(|k| ((i * 320 + k) as i16).to_le_bytes())
            .collect()
    }

    #[test]
    fn a_full_disk_leaves_valid_files_holding_exactly_what_fit() {
        let dir = tempfile::tempdir().unwrap();
        let mut folder = folder(dir.path());
        // Room for the header, 100 frames and 150 samples and a torn byte.
        let budget = 44 + 100 * 640 + 300 + 1;
        let mut tracks = AudioTracks::new(FORMAT).with_disk_budget(budget);
        let mut failed = 0;
        for i in 0..200 {
            let result = tracks.write_frame(
                &mut folder,
                &AudioSource::Mixed,
                at(i as i64 * 20),
                &numbered(i),
            );
            // The recorder makes its files valid every ~10 frames.
            let result = result.and_then(|()| {
                if i % 10 == 9 {
                    tracks.checkpoint()
                } else {
                    Ok(())
                }
            });
            if let Err(e) = result {
                assert_eq!(e.kind(), io::ErrorKind::StorageFull);
                failed += 1;
            }
        }
        // One failure, then it stopped writing (quietly: the caller counts what it hands over).
        assert_eq!(failed, 1);
        assert!(tracks.is_stopped());
        let (summaries, errors) = tracks.finish(&mut folder);
        assert!(errors.is_empty(), "{errors:?}");
        let fit = 100 * 320 + 150;
        assert_eq!(summaries[0].samples, fit as u64);
        assert_eq!(summaries[0].duration_secs, fit as f64 / 16_000.0);
        assert!(summaries[0].lost_samples > 0);
        let got = samples(&dir.path().join("mixed.wav"));
        let expected: Vec<i16> = (0..fit as i16).collect();
        assert_eq!(got, expected);
        let len = std::fs::metadata(dir.path().join("mixed.wav"))
            .unwrap()
            .len();
        assert_eq!(len, 44 + 2 * fit as u64, "the torn byte is cut");
    }

    #[test]
    fn a_full_disk_with_several_tracks_leaves_each_valid() {
        let dir = tempfile::tempdir().unwrap();
        let mut folder = folder(dir.path());
        let mut tracks = AudioTracks::new(FORMAT).with_disk_budget(50_001);
        let who = [
            AudioSource::Participant("a".into()),
            AudioSource::Participant("b".into()),
        ];
        for i in 0..200 {
            let _ = tracks.write_frame(
                &mut folder,
                &who[i % 2],
                at(i as i64 * 10),
                &numbered(i / 2),
            );
            if i % 20 == 19 {
                let _ = tracks.checkpoint();
            }
        }
        assert!(tracks.is_stopped());
        let (summaries, errors) = tracks.finish(&mut folder);
        assert!(errors.is_empty(), "{errors:?}");
        let mut on_disk = 0;
        for s in &summaries {
            let got = samples(&dir.path().join(&s.file));
            assert_eq!(got.len() as u64, s.samples, "{s:?}");
            // What is there is the start of what was sent (after any leading silence).
            let start = s.leading_silence_samples as usize;
            let sent: Vec<i16> = (0..(got.len() - start) as i16).collect();
            assert_eq!(got[start..], sent[..], "{s:?}");
            on_disk += std::fs::metadata(dir.path().join(&s.file)).unwrap().len();
        }
        // Every byte the disk had is used, but for torn samples cut off (at most 1 per file).
        assert!((50_001 - 2..=50_001).contains(&on_disk), "{on_disk}");
    }

    #[test]
    fn sources_past_the_track_limit_are_counted_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut folder = folder(dir.path());
        let mut tracks = AudioTracks::new(FORMAT).with_max_tracks(2);
        for i in 0..10 {
            let who = AudioSource::Participant(format!("p{}", i % 5).into());
            tracks
                .write_frame(&mut folder, &who, at(i * 20), &frame(1))
                .unwrap();
        }
        assert_eq!(tracks.untracked_frames(), 6);
        let (summaries, _) = tracks.finish(&mut folder);
        assert_eq!(summaries.len(), 2);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
