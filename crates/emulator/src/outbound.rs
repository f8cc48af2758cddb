//! What the gateway plays back: the reader task's capture of outbound audio (decoded samples,
//! arrival times, StopAudio events), the statistics built from it once the call is over, and the
//! WAV recording.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use mediagate_audio::AudioFormat;
use mediagate_protocol::decode_pcm;
use tokio::time::{Duration, Instant};

use crate::{DurationStats, EmulatorError, OutboundStats, PacingStats, StopAudioEvent};

/// Most outbound audio a recording keeps.
const MAX_RECORDED_SECONDS: u64 = 30 * 60;
/// Most outbound AudioData arrivals kept for timing: 30 minutes of 10 ms frames.
const MAX_TIMED_FRAMES: usize = 180_000;
/// Most StopAudio events kept.
const MAX_STOP_EVENTS: usize = 10_000;
/// A gap between outbound frames longer than this is counted as late.
const LATE_GAP: Duration = Duration::from_millis(25);
/// PCM16 mono.
const BYTES_PER_SAMPLE: usize = 2;

/// What the reader task keeps of the gateway's outbound messages. Bounded: samples up to the
/// recording cap, arrival times up to [`MAX_TIMED_FRAMES`], StopAudio up to [`MAX_STOP_EVENTS`];
/// past those only counters move.
#[derive(Debug, Default)]
pub(crate) struct OutboundCapture {
    /// Samples to keep for the recording; `None` when not recording.
    record_limit: Option<usize>,
    /// Decode scratch space, reused for every frame.
    pool: BytesMut,
    /// Recorded samples, in arrival order.
    pub(crate) samples: Vec<i16>,
    /// Samples decoded, recorded or not.
    pub(crate) samples_total: u64,
    /// Samples past the recording cap.
    pub(crate) samples_not_recorded: u64,
    /// AudioData whose payload did not decode.
    pub(crate) undecodable: u64,
    /// Arrival of each AudioData, in order.
    pub(crate) arrivals: Vec<Instant>,
    /// AudioData past the timing cap.
    pub(crate) untimed: u64,
    /// Each StopAudio: its arrival and `samples_total` at that moment.
    pub(crate) stops: Vec<(Instant, u64)>,
}

impl OutboundCapture {
    /// A capture that records up to 30 minutes of samples at `format` when `record` is set, and
    /// only times and counts otherwise.
    pub(crate) fn new(format: AudioFormat, record: bool) -> Self {
        let limit = u64::from(format.sample_rate_hz()) * MAX_RECORDED_SECONDS;
        OutboundCapture {
            record_limit: record.then(|| usize::try_from(limit).unwrap_or(usize::MAX)),
            ..OutboundCapture::default()
        }
    }

    /// An outbound AudioData arrived at `at`.
    pub(crate) fn audio(&mut self, data_base64: &str, at: Instant) {
        if self.arrivals.len() < MAX_TIMED_FRAMES {
            self.arrivals.push(at);
        } else {
            self.untimed += 1;
        }
        let Ok(pcm) = decode_pcm(data_base64, BYTES_PER_SAMPLE, &mut self.pool) else {
            self.undecodable += 1;
            return;
        };
        let count = pcm.len() / BYTES_PER_SAMPLE;
        self.samples_total += count as u64;
        if let Some(limit) = self.record_limit {
            let keep = count.min(limit.saturating_sub(self.samples.len()));
            self.samples.extend(
                pcm.chunks_exact(BYTES_PER_SAMPLE)
                    .take(keep)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            );
            self.samples_not_recorded += (count - keep) as u64;
        }
    }

    /// A StopAudio arrived at `at`.
    pub(crate) fn stop_audio(&mut self, at: Instant) {
        if self.stops.len() < MAX_STOP_EVENTS {
            self.stops.push((at, self.samples_total));
        }
    }

    /// The report's view of the capture: `sent` holds the send instant of every inbound AudioData,
    /// in order; `start` is the stream's first tick. The samples stay in the capture.
    pub(crate) fn stats(
        &self,
        sent: &[Instant],
        start: Instant,
        format: AudioFormat,
        recording: Option<PathBuf>,
    ) -> OutboundStats {
        let mut round_trips: Vec<u64> = self
            .arrivals
            .iter()
            .zip(sent)
            .map(|(arrived, sent)| micros(arrived.saturating_duration_since(*sent)))
            .collect();
        let mut gaps: Vec<u64> = self
            .arrivals
            .windows(2)
            .map(|w| micros(w[1].saturating_duration_since(w[0])))
            .collect();
        let late = micros(LATE_GAP);
        let gaps_over_25ms = gaps.iter().filter(|&&g| g > late).count() as u64;
        let duration_micros = format.micros_for_samples(self.samples_total);
        OutboundStats {
            samples: self.samples_total,
            duration: Duration::from_micros(u64::try_from(duration_micros).unwrap_or(0)),
            undecodable_frames: self.undecodable,
            recording,
            samples_not_recorded: self.samples_not_recorded,
            round_trip: DurationStats::of(&mut round_trips),
            pacing: DurationStats::of(&mut gaps).map(|gaps| PacingStats {
                gaps,
                gaps_over_25ms,
            }),
            untimed_frames: self.untimed,
            stop_audio: self
                .stops
                .iter()
                .map(|&(at, sample_index)| StopAudioEvent {
                    at: at.saturating_duration_since(start),
                    sample_index,
                })
                .collect(),
        }
    }
}

impl DurationStats {
    /// The spread of `values` (microseconds; sorted in place); `None` when there are none.
    pub(crate) fn of(values: &mut [u64]) -> Option<Self> {
        values.sort_unstable();
        let (&min_us, &max_us) = (values.first()?, values.last()?);
        let rank = |p: usize| {
            // Nearest rank: the smallest value with at least p% of the values at or below it.
            let index = (values.len() * p).div_ceil(100).saturating_sub(1);
            values[index.min(values.len() - 1)]
        };
        Some(DurationStats {
            count: values.len() as u64,
            min_us,
            p50_us: rank(50),
            p90_us: rank(90),
            p99_us: rank(99),
            max_us,
        })
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The WAV file the gateway's playback goes to, created before the call (blocking).
pub(crate) struct Recorder {
    path: PathBuf,
    writer: hound::WavWriter<BufWriter<File>>,
}

impl Recorder {
    /// Creates `path` (mono PCM16 at `format`'s rate), so that a bad path fails before connecting.
    pub(crate) fn create(path: &Path, format: AudioFormat) -> Result<Self, EmulatorError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: format.sample_rate_hz(),
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer =
            hound::WavWriter::create(path, spec).map_err(|source| EmulatorError::WavWrite {
                path: path.to_owned(),
                source,
            })?;
        Ok(Recorder {
            path: path.to_owned(),
            writer,
        })
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `samples` and finalizes the file (blocking).
    pub(crate) fn finish(mut self, samples: &[i16]) -> Result<(), EmulatorError> {
        let result = samples
            .iter()
            .try_for_each(|&s| self.writer.write_sample(s))
            .and_then(|()| self.writer.finalize());
        result.map_err(|source| EmulatorError::WavWrite {
            path: self.path,
            source,
        })
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagate_protocol::encode_pcm;

    fn base64(samples: &[i16]) -> String {
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut out = String::new();
        encode_pcm(&bytes, &mut out);
        out
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut values: Vec<u64> = (1..=100).rev().collect();
        let stats = DurationStats::of(&mut values).unwrap();
        assert_eq!(
            stats,
            DurationStats {
                count: 100,
                min_us: 1,
                p50_us: 50,
                p90_us: 90,
                p99_us: 99,
                max_us: 100
            }
        );
        let one = DurationStats::of(&mut [7]).unwrap();
        assert_eq!(
            (one.min_us, one.p50_us, one.p99_us, one.max_us),
            (7, 7, 7, 7)
        );
        assert_eq!(DurationStats::of(&mut []), None);
    }

    #[test]
    fn capture_records_up_to_the_cap_and_indexes_stops() {
        let mut capture = OutboundCapture::new(AudioFormat::mono(16_000), true);
        capture.record_limit = Some(5);
        let t0 = Instant::now();
        capture.audio(&base64(&[1, 2, 3]), t0);
        capture.stop_audio(t0 + Duration::from_millis(10));
        capture.audio("not base64!", t0 + Duration::from_millis(20));
        capture.audio(&base64(&[4, 5, 6]), t0 + Duration::from_millis(50));
        assert_eq!(capture.samples, [1, 2, 3, 4, 5]);
        assert_eq!(capture.samples_not_recorded, 1);

        let sent = [t0 - Duration::from_millis(1), t0];
        let stats = capture.stats(&sent, t0, AudioFormat::mono(16_000), None);
        assert_eq!(stats.samples, 6);
        assert_eq!(stats.undecodable_frames, 1);
        let rtt = stats.round_trip.unwrap();
        assert_eq!((rtt.count, rtt.min_us, rtt.max_us), (2, 1_000, 20_000));
        let pacing = stats.pacing.unwrap();
        assert_eq!((pacing.gaps.count, pacing.gaps.max_us), (2, 30_000));
        assert_eq!(pacing.gaps_over_25ms, 1);
        assert_eq!(
            stats.stop_audio,
            [StopAudioEvent {
                at: Duration::from_millis(10),
                sample_index: 3
            }]
        );
    }

    #[test]
    fn without_recording_only_counts() {
        let mut capture = OutboundCapture::new(AudioFormat::mono(24_000), false);
        capture.audio(&base64(&[1; 480]), Instant::now());
        assert!(capture.samples.is_empty());
        assert_eq!(
            (capture.samples_total, capture.samples_not_recorded),
            (480, 0)
        );
        let stats = capture.stats(&[], Instant::now(), AudioFormat::mono(24_000), None);
        assert_eq!(stats.duration, Duration::from_millis(20));
        assert_eq!((stats.round_trip, stats.pacing), (None, None));
    }
}
