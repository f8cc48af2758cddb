//! The `wav` processor: the call's audio as WAV files, one per source, on one timeline.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mediagate_audio::{AudioFormat, AudioFrame, StreamResampler};
use mediagate_pipeline::{
    Context, Event, Execution, Input, OverflowPolicy, Processor, ProcessorError,
};
use serde::{Deserialize, Serialize};

use super::{AudioTracks, Errors, TrackSummary};
use crate::BuildError;
use crate::settings::invalid;

/// How the `wav` processor records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WavSettings {
    /// Record at this rate (8000 for a telephony archive…), resampled by the pipeline; unset:
    /// the call's own rate, bit-exact.
    pub sample_rate_hz: Option<u32>,
    /// Moved: the call's one timeline is the gateway's, `[timeline] max_gap_secs`. Setting it
    /// here is refused with an error saying so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_gap_fill_secs: Option<u64>,
    /// Moved: `[timeline] max_ahead_secs`. Setting it here is refused with an error saying so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ahead_secs: Option<u64>,
    /// Most sources recorded in a call (participants of unmixed audio): each track may be as
    /// long as the call, so this bounds what one call can write. Frames of further sources are
    /// counted (`untracked_frames`) and not recorded.
    pub max_tracks: usize,
    /// Frames that may wait for the disk before the socket waits (256: ~5 s of audio).
    pub queue: usize,
    /// ...or bytes, whichever comes first.
    pub queue_bytes: usize,
    /// Frames gather this long (or until half the queue is full) before one write on a
    /// blocking thread; the WAV headers are made valid after each write, so a killed process
    /// leaves files complete up to at most this long before it died.
    pub batch_ms: u64,
    /// Stop recording (files finalized, the report saying why) when the free space on the
    /// call folder's disk falls below this many bytes; checked at most once a second, after a
    /// write. `0`: no floor. The gateway passes its `recording.min_free_bytes` here.
    pub min_free_bytes: u64,
}

impl Default for WavSettings {
    fn default() -> Self {
        WavSettings {
            sample_rate_hz: None,
            max_gap_fill_secs: None,
            max_ahead_secs: None,
            max_tracks: super::DEFAULT_MAX_TRACKS,
            queue: 256,
            queue_bytes: 4 * 1024 * 1024,
            batch_ms: 1_000,
            min_free_bytes: 0,
        }
    }
}

/// Records every frame: `mixed.wav`, or one WAV per participant (named after its raw id), all
/// the same length and aligned on the call's timeline (gaps and late joiners padded with
/// silence). WAV headers are made valid after every batch, so even a killed process leaves
/// playable files. A format change mid-call finishes the files and starts new ones (`-2`…).
///
/// A failed write (a full disk), or free space below `min_free_bytes`, stops the recording:
/// the files are closed valid, later frames are counted as lost, and the report says why
/// (`stopped`) and what was lost (`lost_frames`, `lost_bytes`, each track's `lost_samples`).
pub struct Wav {
    settings: WavSettings,
    audio: Option<AudioTracks>,
    finished: Vec<TrackSummary>,
    errors: Errors,
    /// The call keeps no files: frames are let through.
    disabled: bool,
    /// The call's folder, whose disk the free-space floor watches.
    folder: Option<PathBuf>,
    /// When free space was last checked.
    disk_checked: Option<Instant>,
    /// Why recording stopped before the call ended (a failed write, the disk floor).
    stopped: Option<String>,
    /// Frames received and not recorded: the one whose write failed, and every one after.
    lost_frames: u64,
    /// Their bytes.
    lost_bytes: u64,
    /// Frames of sources past `max_tracks`, in tracks already finished (format changes).
    untracked_frames: u64,
}

/// Free disk space is checked at most this often.
const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The reason given when the free-space floor stops a recording.
pub const STOPPED_DISK_FLOOR: &str = "free disk below min_free_bytes";

impl Wav {
    /// A recorder with these settings.
    pub fn new(settings: WavSettings) -> Result<Self, BuildError> {
        Ok(Wav::fresh(Wav::check(settings)?))
    }

    /// The settings, if they are valid (checked once per route: it builds resamplers).
    pub(crate) fn check(settings: WavSettings) -> Result<WavSettings, BuildError> {
        if let Some(rate) = settings.sample_rate_hz {
            if !(8_000..=48_000).contains(&rate) {
                return Err(invalid(
                    "wav",
                    format!("sample_rate_hz = {rate}: record at 8000 to 48000 Hz"),
                ));
            }
            // Check that the rate can be reached from the ACS rates.
            for from in [16_000, 24_000] {
                StreamResampler::new(AudioFormat::mono(from), rate)
                    .map_err(|e| invalid("wav", format!("sample_rate_hz = {rate}: {e}")))?;
            }
        }
        if settings.queue == 0 {
            return Err(invalid("wav", "queue must be at least 1"));
        }
        if settings.queue_bytes < 4096 {
            return Err(invalid("wav", "queue_bytes must be at least 4096"));
        }
        if settings.max_tracks == 0 {
            return Err(invalid("wav", "max_tracks must be at least 1"));
        }
        if settings.max_gap_fill_secs.is_some() {
            return Err(invalid(
                "wav",
                "max_gap_fill_secs moved to [timeline] max_gap_secs: the call's timeline is one for every processor",
            ));
        }
        if settings.max_ahead_secs.is_some() {
            return Err(invalid(
                "wav",
                "max_ahead_secs moved to [timeline] max_ahead_secs: the call's timeline is one for every processor",
            ));
        }
        if settings.batch_ms > 60_000 {
            return Err(invalid("wav", "batch_ms is at most 60000"));
        }
        Ok(settings)
    }

    /// A recorder with checked settings: no I/O, nothing built until the call's first frame.
    pub(crate) fn fresh(settings: WavSettings) -> Self {
        Wav {
            settings,
            audio: None,
            finished: Vec::new(),
            errors: Errors::default(),
            disabled: false,
            folder: None,
            disk_checked: None,
            stopped: None,
            lost_frames: 0,
            lost_bytes: 0,
            untracked_frames: 0,
        }
    }

    /// Builds it from its config table.
    pub fn from_settings(settings: &serde_json::Value) -> Result<Self, BuildError> {
        Self::new(crate::settings::parse("wav", settings)?)
    }

    fn finish_tracks(&mut self, audio: AudioTracks, ctx: &mut Context) {
        self.untracked_frames += audio.untracked_frames();
        let (tracks, errors) = audio.finish(ctx);
        for e in &errors {
            self.errors.skip(e);
        }
        self.finished.extend(tracks);
    }

    /// A write failed: the tracks already stopped themselves (files valid); nothing more is
    /// written this call.
    fn failed(&mut self, error: &std::io::Error, frame_bytes: usize) -> ProcessorError {
        self.lost_frames += u64::from(frame_bytes > 0);
        self.lost_bytes += frame_bytes as u64;
        if self.stopped.is_none() {
            self.stopped = Some(format!("write failed: {error}"));
        }
        self.errors.skip(error)
    }

    /// Stops recording if the folder's disk has less free space than the floor (checked at
    /// most once a second, here on the blocking thread, never per frame).
    fn check_disk_floor(&mut self) {
        let floor = self.settings.min_free_bytes;
        // Before the first frame there is nothing to stop (the gateway checks the floor
        // itself when a call starts).
        if floor == 0 || self.stopped.is_some() || self.audio.is_none() {
            return;
        }
        let Some(folder) = &self.folder else {
            return;
        };
        let now = Instant::now();
        if self
            .disk_checked
            .is_some_and(|at| now.duration_since(at) < DISK_CHECK_INTERVAL)
        {
            return;
        }
        self.disk_checked = Some(now);
        match super::free_bytes(folder) {
            Ok(free) if free < floor => {
                tracing::warn!(
                    free,
                    floor,
                    "free disk below min_free_bytes: recording stopped"
                );
                if let Some(audio) = &mut self.audio {
                    audio.stop();
                }
                self.stopped = Some(STOPPED_DISK_FLOOR.to_owned());
            }
            Ok(_) => {}
            Err(e) => {
                let _ = self.errors.skip(&e);
            }
        }
    }
}

impl Processor for Wav {
    fn input(&self) -> Input {
        Input {
            sample_rate_hz: self.settings.sample_rate_hz,
            queue: self.settings.queue,
            queue_bytes: self.settings.queue_bytes,
            overflow: OverflowPolicy::Wait,
            execution: Execution::Blocking,
            gather_ms: self.settings.batch_ms,
            ..Input::default()
        }
    }

    fn on_event(&mut self, event: &Event, _ctx: &mut Context) -> Result<(), ProcessorError> {
        if let Event::CallStarted(call) = event {
            self.disabled = call.folder.is_none();
            self.folder.clone_from(&call.folder);
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: &AudioFrame, ctx: &mut Context) -> Result<(), ProcessorError> {
        if self.disabled {
            return Ok(());
        }
        if self.stopped.is_some() {
            self.lost_frames += 1;
            self.lost_bytes += frame.pcm.len() as u64;
            return Ok(());
        }
        if self
            .audio
            .as_ref()
            .is_some_and(|a| a.format() != frame.format)
        {
            // A WAV cannot change rate mid-file: finish these tracks; new ones start now.
            if let Some(old) = self.audio.take() {
                self.finish_tracks(old, ctx);
            }
        }
        let max_tracks = self.settings.max_tracks;
        let audio = self
            .audio
            .get_or_insert_with(|| AudioTracks::new(frame.format).with_max_tracks(max_tracks));
        audio
            .write_frame(ctx, &frame.source, frame.position, &frame.pcm)
            .map_err(|e| self.failed(&e, frame.pcm.len()))
    }

    fn flush(&mut self, _ctx: &mut Context) -> Result<(), ProcessorError> {
        if let Some(audio) = &mut self.audio
            && let Err(e) = audio.checkpoint()
        {
            return Err(self.failed(&e, 0));
        }
        self.check_disk_floor();
        Ok(())
    }

    fn finish(&mut self, ctx: &mut Context) -> Result<(), ProcessorError> {
        if let Some(audio) = self.audio.take() {
            self.finish_tracks(audio, ctx);
        }
        Ok(())
    }

    fn report(&self) -> Option<serde_json::Value> {
        let gaps_filled: u64 = self.finished.iter().map(|t| t.gaps_filled).sum();
        let mut report = serde_json::json!({
            "tracks": self.finished,
            "gaps_filled": gaps_filled,
        });
        if self.untracked_frames > 0 {
            report["untracked_frames"] = serde_json::json!(self.untracked_frames);
        }
        if let Some(reason) = &self.stopped {
            // What the call sent that is not in the files.
            let lost_samples: u64 = self.finished.iter().map(|t| t.lost_samples).sum();
            report["stopped"] = serde_json::json!(reason);
            report["lost_frames"] = serde_json::json!(self.lost_frames);
            report["lost_bytes"] = serde_json::json!(self.lost_bytes);
            report["lost_samples_buffered"] = serde_json::json!(lost_samples);
        }
        self.errors.add_to(&mut report);
        Some(report)
    }
}
