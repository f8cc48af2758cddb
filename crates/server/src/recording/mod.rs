//! Recording a call to files: WAV tracks, transcripts, DTMF, session.json.
//!
//! The socket task never touches the disk. It sends [`RecordCmd`]s over a bounded queue to the
//! call's writer task, which batches them and applies each batch on a blocking thread
//! (`spawn_blocking`), moving the [`CallRecorder`] in and out. Every batch ends with a checkpoint
//! that makes the WAV headers valid, so even a killed process leaves playable files.

mod folder;
mod report;
mod tracks;
mod transcript;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mediagate_audio::{AudioFormat, AudioSource};
use mediagate_protocol::{ResultStatus, Timestamp, TranscriptionData};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

pub(crate) use folder::CallFolder;
pub(crate) use report::{
    CallReport, CallStatus, EndReason, EndReport, FormatReport, Identity, TransportKind,
    TransportReport,
};
pub(crate) use tracks::{TrackSummary, sanitize_file_stem};

use tracks::AudioTracks;
use transcript::{DtmfLog, TranscriptFiles};

/// One thing to record, in arrival order.
#[derive(Debug)]
pub(crate) enum RecordCmd {
    /// One frame; `pcm` is a whole number of samples in `format`.
    Audio {
        format: AudioFormat,
        source: AudioSource,
        timestamp: Option<Timestamp>,
        pcm: Bytes,
    },
    /// A DTMF tone.
    Dtmf {
        tone: String,
        received_at: Timestamp,
    },
    /// A transcription result.
    Transcript {
        data: Box<TranscriptionData>,
        received_at: Timestamp,
    },
}

/// What a transport's recording produced.
#[derive(Debug, Default)]
pub(crate) struct RecordingSummary {
    pub(crate) tracks: Vec<TrackSummary>,
    pub(crate) files: Vec<String>,
    pub(crate) errors: Vec<String>,
}

/// At most this many distinct recording errors are kept for session.json.
const MAX_ERRORS_KEPT: usize = 10;

/// The files one transport writes. Lives on blocking threads only.
pub(crate) struct CallRecorder {
    folder: Arc<CallFolder>,
    max_gap_secs: u64,
    audio: Option<AudioTracks>,
    /// Tracks finished early because the format changed mid-stream.
    finished_tracks: Vec<TrackSummary>,
    transcript: Option<TranscriptFiles>,
    dtmf: Option<DtmfLog>,
    first_audio_at: Option<Timestamp>,
    last_audio_end: Option<Timestamp>,
    summary: RecordingSummary,
}

impl CallRecorder {
    pub(crate) fn new(folder: Arc<CallFolder>, max_gap_secs: u64) -> Self {
        CallRecorder {
            folder,
            max_gap_secs,
            audio: None,
            finished_tracks: Vec::new(),
            transcript: None,
            dtmf: None,
            first_audio_at: None,
            last_audio_end: None,
            summary: RecordingSummary::default(),
        }
    }

    fn apply(&mut self, cmd: RecordCmd) {
        let result = match cmd {
            RecordCmd::Audio {
                format,
                source,
                timestamp,
                pcm,
            } => self.write_audio(format, &source, timestamp, &pcm),
            RecordCmd::Dtmf { tone, received_at } => self.write_dtmf(&tone, received_at),
            RecordCmd::Transcript { data, received_at } => {
                self.write_transcript(&data, received_at)
            }
        };
        if let Err(e) = result {
            self.note_error(e);
        }
    }

    fn write_audio(
        &mut self,
        format: AudioFormat,
        source: &AudioSource,
        timestamp: Option<Timestamp>,
        pcm: &[u8],
    ) -> std::io::Result<()> {
        if self.audio.as_ref().is_some_and(|a| a.format() != format) {
            // A WAV cannot change rate mid-file: finish these tracks; new ones (`-2`…) start now.
            if let Some(old) = self.audio.take() {
                self.finish_tracks(old);
            }
        }
        if let Some(ts) = timestamp {
            self.first_audio_at.get_or_insert(ts);
            let frame_micros =
                format.micros_for_samples((pcm.len() / format.bytes_per_sample()) as u64);
            let end = ts.add_micros(frame_micros);
            if self.last_audio_end.is_none_or(|last| end > last) {
                self.last_audio_end = Some(end);
            }
        }
        let max_gap_secs = self.max_gap_secs;
        let audio = self
            .audio
            .get_or_insert_with(|| AudioTracks::new(format, max_gap_secs));
        audio.write_frame(&self.folder, source, timestamp, pcm)
    }

    fn write_dtmf(&mut self, tone: &str, received_at: Timestamp) -> std::io::Result<()> {
        let offset_ms = match (self.first_audio_at, self.last_audio_end) {
            (Some(first), Some(end)) => Some(end.micros_since(first) / 1_000),
            _ => None,
        };
        if self.dtmf.is_none() {
            let log = DtmfLog::create(&self.folder)?;
            self.summary.files.push(log.name.clone());
            self.dtmf = Some(log);
        }
        match &mut self.dtmf {
            Some(log) => log.write(tone, received_at, offset_ms),
            None => Ok(()),
        }
    }

    fn write_transcript(
        &mut self,
        data: &TranscriptionData,
        received_at: Timestamp,
    ) -> std::io::Result<()> {
        if self.transcript.is_none() {
            let files = TranscriptFiles::create(&self.folder)?;
            self.summary.files.extend(files.files.iter().cloned());
            self.transcript = Some(files);
        }
        match &mut self.transcript {
            Some(files) => files.write(data, received_at),
            None => Ok(()),
        }
    }

    /// Makes everything written so far durable and valid.
    fn checkpoint(&mut self) {
        let mut errors = Vec::new();
        if let Some(audio) = &mut self.audio {
            errors.extend(audio.checkpoint().err());
        }
        if let Some(t) = &mut self.transcript {
            errors.extend(t.flush().err());
        }
        if let Some(d) = &mut self.dtmf {
            errors.extend(d.flush().err());
        }
        for e in errors {
            self.note_error(e);
        }
    }

    fn finish_tracks(&mut self, audio: AudioTracks) {
        let (tracks, errors) = audio.finish(&self.folder);
        for e in errors {
            self.note_error(e);
        }
        self.finished_tracks.extend(tracks);
    }

    /// Finalizes every file and returns what was written.
    fn finish(mut self) -> RecordingSummary {
        self.checkpoint();
        if let Some(audio) = self.audio.take() {
            self.finish_tracks(audio);
        }
        let mut summary = std::mem::take(&mut self.summary);
        let tracks = std::mem::take(&mut self.finished_tracks);
        summary
            .files
            .splice(0..0, tracks.iter().map(|t| t.file.clone()));
        summary.tracks = tracks;
        summary
    }

    fn note_error(&mut self, error: std::io::Error) {
        let text = error.to_string();
        if self.summary.errors.is_empty() {
            tracing::error!(call_id = self.folder.name(), error = %text, "recording failed");
        }
        if self.summary.errors.len() < MAX_ERRORS_KEPT && !self.summary.errors.contains(&text) {
            self.summary.errors.push(text);
        }
    }
}

/// Commands gathered before one trip to a blocking thread.
const BATCH_MAX: usize = 128;
/// How long the writer waits to fill a batch (bounds recording latency, not audio).
const BATCH_WINDOW: Duration = Duration::from_millis(200);

impl RecordCmd {
    /// Bytes this command holds while queued (what the queue's byte budget counts).
    fn queued_bytes(&self) -> usize {
        match self {
            RecordCmd::Audio { pcm, .. } => pcm.len(),
            RecordCmd::Dtmf { tone, .. } => tone.len(),
            RecordCmd::Transcript { data, .. } => {
                data.text.len() + data.words.iter().map(|w| w.text.len() + 32).sum::<usize>()
            }
        }
    }
}

/// A queued command and its share of the queue's byte budget, returned when it is applied.
type Queued = (RecordCmd, OwnedSemaphorePermit);

/// The socket side of a recorder: a queue into its writer task, bounded both in commands and
/// in bytes (so a few huge messages cannot hold more memory than many small frames).
pub(crate) struct RecorderHandle {
    tx: mpsc::Sender<Queued>,
    bytes: Arc<Semaphore>,
    max_bytes: usize,
    /// Wakes the writer before its gathering window ends, when the queue is half full.
    nudge: Arc<Notify>,
    task: JoinHandle<RecordingSummary>,
}

impl RecorderHandle {
    /// Starts the writer task for `recorder`, with a queue of at most `max_commands` commands
    /// holding at most `max_bytes` bytes.
    pub(crate) fn spawn(recorder: CallRecorder, max_commands: usize, max_bytes: usize) -> Self {
        let (tx, rx) = mpsc::channel(max_commands);
        let max_bytes = max_bytes.clamp(1, Semaphore::MAX_PERMITS);
        let bytes = Arc::new(Semaphore::new(max_bytes));
        let nudge = Arc::new(Notify::new());
        let task = tokio::spawn(write_loop(recorder, rx, Arc::clone(&nudge)));
        RecorderHandle {
            tx,
            bytes,
            max_bytes,
            nudge,
            task,
        }
    }

    /// Queues `cmd`, waiting while the writer is behind (recording is lossless: a slow disk slows
    /// the socket down rather than dropping audio). False if the writer is gone.
    pub(crate) async fn send(&self, cmd: RecordCmd) -> bool {
        // A command larger than the whole budget waits for an empty queue rather than forever.
        let cost = cmd.queued_bytes().clamp(1, self.max_bytes);
        let Ok(cost) = u32::try_from(cost) else {
            return false;
        };
        let Ok(permit) = Arc::clone(&self.bytes).acquire_many_owned(cost).await else {
            return false;
        };
        if self.tx.send((cmd, permit)).await.is_err() {
            return false;
        }
        if self.tx.capacity() < self.tx.max_capacity() / 2
            || self.bytes.available_permits() < self.max_bytes / 2
        {
            self.nudge.notify_one();
        }
        true
    }

    /// Closes the queue, lets the writer drain it and finalize every file.
    pub(crate) async fn finish(self) -> RecordingSummary {
        drop(self.tx);
        self.nudge.notify_one();
        match self.task.await {
            Ok(summary) => summary,
            Err(e) => RecordingSummary {
                errors: vec![format!("recording task failed: {e}")],
                ..RecordingSummary::default()
            },
        }
    }
}

/// The writer: wakes for the first queued command, lets more gather for up to
/// [`BATCH_WINDOW`] (or until the sender nudges: the queue is half full, or closing), then applies
/// the batch on a blocking thread. In real time that is one wake-up and one blocking trip per
/// ~10 frames of a call, not one per frame.
async fn write_loop(
    mut recorder: CallRecorder,
    mut rx: mpsc::Receiver<Queued>,
    nudge: Arc<Notify>,
) -> RecordingSummary {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    let mut open = true;
    while open {
        if rx.recv_many(&mut batch, BATCH_MAX).await == 0 {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(BATCH_WINDOW) => {}
            () = nudge.notified() => {}
        }
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(queued) => batch.push(queued),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let job = tokio::task::spawn_blocking(move || {
            // Each permit is returned as its command is applied.
            for (cmd, _permit) in batch.drain(..) {
                recorder.apply(cmd);
            }
            recorder.checkpoint();
            (recorder, batch)
        });
        match job.await {
            Ok((r, b)) => {
                recorder = r;
                batch = b;
            }
            Err(e) => {
                return RecordingSummary {
                    errors: vec![format!("recording task failed: {e}")],
                    ..RecordingSummary::default()
                };
            }
        }
    }
    match tokio::task::spawn_blocking(move || recorder.finish()).await {
        Ok(summary) => summary,
        Err(e) => RecordingSummary {
            errors: vec![format!("finalizing recording failed: {e}")],
            ..RecordingSummary::default()
        },
    }
}

/// Counts a transcription result into a transport report.
pub(crate) fn count_transcript(report: &mut TransportReport, status: ResultStatus) {
    match status {
        ResultStatus::Final => report.transcripts_final += 1,
        ResultStatus::Intermediate => report.transcripts_intermediate += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagate_protocol::Word;

    #[tokio::test]
    async fn commands_larger_than_the_byte_budget_still_pass_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let report = CallReport {
            call_id: "q".to_owned(),
            identity: Identity {
                source: "generated",
                value: "q".to_owned(),
            },
            status: CallStatus::Live,
            started_at: Timestamp::from_unix_micros(0),
            ended_at: None,
            transports: Vec::new(),
        };
        let folder = Arc::new(CallFolder::new(
            "q".to_owned(),
            dir.path().to_owned(),
            report,
        ));
        let recorder = RecorderHandle::spawn(CallRecorder::new(folder, 60), 256, 4096);
        for i in 0..20 {
            let data = TranscriptionData {
                text: format!("{i} {}", "x".repeat(6_000)),
                format: None,
                confidence: None,
                offset_ticks: i,
                duration_ticks: 1,
                words: vec![Word {
                    text: "x".to_owned(),
                    offset_ticks: 0,
                    duration_ticks: 1,
                }],
                participant_raw_id: None,
                result_status: ResultStatus::Final,
            };
            let cmd = RecordCmd::Transcript {
                data: Box::new(data),
                received_at: Timestamp::from_unix_micros(0),
            };
            let sent = tokio::time::timeout(Duration::from_secs(5), recorder.send(cmd)).await;
            assert_eq!(sent, Ok(true), "send {i} stalled or failed");
        }
        let summary = recorder.finish().await;
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        let lines = std::fs::read_to_string(dir.path().join("transcript.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 20);
    }
}
