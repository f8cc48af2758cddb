//! A WAV file through the same path as a live call: 20 ms frames into a pipeline with one
//! transcriber, its results collected (`mediagate transcribe`, the accuracy bench).

use std::path::Path;
use std::sync::{Arc, Mutex};

use mediagate_audio::Timestamp;
use mediagate_audio::{AudioFrame, AudioSource, wav};
use mediagate_pipeline::{
    CallInfo, ConsumerReport, Context, Event, Input, Pipeline, Processor, ProcessorError,
    Transcript,
};

use crate::Transcriber;

/// The largest file transcribed: 1 GiB (about 9 hours of 16 kHz PCM16 mono); a larger one is
/// refused, not read.
const MAX_FILE_BYTES: u64 = 1 << 30;

/// Reading the file failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Not a WAV we can read, or not one we take.
    #[error("{path}: {reason}")]
    Wav {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// What a file produced.
#[derive(Debug)]
pub struct FileTranscript {
    /// Final results, in order.
    pub finals: Vec<Arc<Transcript>>,
    /// The transcriber's report (counters, real-time factor) and the collector's.
    pub reports: Vec<ConsumerReport>,
    /// Seconds of audio in the file.
    pub audio_secs: f64,
}

impl FileTranscript {
    /// The final texts, one per utterance.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.finals.iter().map(|t| t.text.as_str())
    }
}

/// Collects final transcripts.
struct Collector(Arc<Mutex<Vec<Arc<Transcript>>>>);

impl Processor for Collector {
    fn input(&self) -> Input {
        Input {
            frames: false,
            queue: 4_096,
            overflow: mediagate_pipeline::OverflowPolicy::Wait,
            // The file's last utterance comes while the engine finishes.
            after_emitters: true,
            ..Input::default()
        }
    }

    fn on_event(&mut self, event: &Event, _ctx: &mut Context) -> Result<(), ProcessorError> {
        if let Event::Transcript(t) = event
            && t.is_final()
        {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(t.clone());
        }
        Ok(())
    }
}

/// Streams the mono 16-bit WAV at `path` (8–48 kHz) through `transcriber` as fast as it
/// takes it, losing nothing, and returns its final results.
pub async fn transcribe_wav(
    path: &Path,
    transcriber: Transcriber,
) -> Result<FileTranscript, FileError> {
    let wav_error = |reason: String| FileError::Wav {
        path: path.display().to_string(),
        reason,
    };
    let owned = path.to_owned();
    let clip =
        tokio::task::spawn_blocking(move || wav::read(&owned, MAX_FILE_BYTES, wav::Accept::Pcm16))
            .await
            .map_err(|e| wav_error(e.to_string()))?
            .map_err(|e| match e {
                e @ wav::WavError::NotPcm16 { .. } => {
                    wav_error(format!("{e} (sox in.wav -c 1 -b 16 out.wav)"))
                }
                e => wav_error(e.to_string()),
            })?;
    let format = clip.format;
    if format.channels() != 1 {
        return Err(wav_error(format!(
            "{} channels: mono 16-bit PCM only (sox in.wav -c 1 -b 16 out.wav)",
            format.channels()
        )));
    }
    let call = Arc::new(CallInfo::new("transcribe", "/transcribe", format));
    let finals = Arc::new(Mutex::new(Vec::new()));
    let pipeline_processors: Vec<(String, Box<dyn Processor>)> = vec![
        (
            transcriber.name().to_owned(),
            Box::new(transcriber.lossless()),
        ),
        ("collector".into(), Box::new(Collector(finals.clone()))),
    ];
    let mut pipeline = Pipeline::start(call, pipeline_processors, None, None);
    let origin = Timestamp::now();
    let frame_bytes = format.frame_bytes();
    for (i, start) in (0..clip.pcm.len()).step_by(frame_bytes).enumerate() {
        let end = (start + frame_bytes).min(clip.pcm.len());
        let frame = AudioFrame {
            pcm: clip.pcm.slice(start..end),
            format,
            timestamp: Some(origin.add_micros(i as i64 * 20_000)),
            position: None,
            source: AudioSource::Mixed,
            silent: false,
        };
        pipeline.push_frame(&frame).await;
    }
    let reports = pipeline.finish().await;
    let finals = std::mem::take(&mut *finals.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(FileTranscript {
        finals,
        reports,
        audio_secs: clip.duration().as_secs_f64(),
    })
}
