//! Recording a call to files, as processors: [`Wav`] (`wav`), [`TranscriptWriter`]
//! (`transcript`) and [`DtmfWriter`] (`dtmf`). Each writes into the call's folder on blocking
//! threads, in batches, and loses nothing: its inbox makes the socket wait rather than drop
//! (`OverflowPolicy::Wait`), so a slow disk slows the call's socket, which TCP passes back to
//! the platform.
//!
//! [`AudioTracks`] is the WAV writer itself, usable on its own (a [`Dir`] stands in for a
//! call's folder).
//!
//! On a failing disk every recorder stops writing and leaves its files valid (a WAV's header
//! rewritten from the data on disk, a log cut back to its last whole line), and its report says
//! what was lost. [`free_bytes`] measures a folder's disk for `wav`'s `min_free_bytes` floor;
//! [`repair_wav`] makes a WAV left by a killed process valid again.

mod disk;
mod dtmf;
mod lines;
mod repair;
mod tracks;
mod transcript;
mod wav;

use std::fs::File;
use std::io;
use std::path::PathBuf;

use mediagate_pipeline::{Context, ProcessorError};

pub use disk::free_bytes;
pub use dtmf::DtmfWriter;
pub use repair::{RepairOutcome, repair_wav};
pub use tracks::{AudioTracks, DEFAULT_MAX_TRACKS, TrackSummary};
pub use transcript::{TranscriptSettings, TranscriptWriter};
pub use wav::{STOPPED_DISK_FLOOR, Wav, WavSettings};

/// Where a recorder creates its files: the call's folder (a processor's [`Context`]), or any
/// directory ([`Dir`]).
pub trait Folder {
    /// Creates `stem.ext`, or `stem-2.ext`… if taken; returns the file and its name.
    fn create(&mut self, stem: &str, ext: &str) -> io::Result<(File, String)>;
}

impl Folder for Context {
    fn create(&mut self, stem: &str, ext: &str) -> io::Result<(File, String)> {
        self.create_file(stem, ext)
    }
}

/// A plain directory as a [`Folder`].
#[derive(Debug, Clone)]
pub struct Dir {
    path: PathBuf,
}

impl Dir {
    /// Files go into `path`, which must exist.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Dir { path: path.into() }
    }
}

impl Folder for Dir {
    fn create(&mut self, stem: &str, ext: &str) -> io::Result<(File, String)> {
        mediagate_pipeline::create_unique(&self.path, stem, ext)
    }
}

/// What the event-only recorders (`transcript`, `dtmf`) take: events, never frames; lossless;
/// written on a blocking thread in batches of up to 200 ms.
fn event_log_input() -> mediagate_pipeline::Input {
    mediagate_pipeline::Input {
        frames: false,
        queue: 1024,
        overflow: mediagate_pipeline::OverflowPolicy::Wait,
        execution: mediagate_pipeline::Execution::Blocking,
        gather_ms: 200,
        ..mediagate_pipeline::Input::default()
    }
}

/// At most this many distinct errors are kept for a recorder's report.
const MAX_ERRORS_KEPT: usize = 10;

/// A recorder's I/O errors: all counted, the first distinct few kept for session.json.
#[derive(Debug, Default)]
struct Errors {
    kept: Vec<String>,
    total: u64,
}

impl Errors {
    /// Notes `error` and turns it into a skipped item (the pipeline counts and logs those).
    fn skip(&mut self, error: &io::Error) -> ProcessorError {
        let text = error.to_string();
        self.total += 1;
        if self.kept.len() < MAX_ERRORS_KEPT && !self.kept.contains(&text) {
            self.kept.push(text.clone());
        }
        ProcessorError::Skip(text)
    }

    /// Adds `errors` (and `error_count`) to a report, when there were any.
    fn add_to(&self, report: &mut serde_json::Value) {
        if self.total > 0 {
            report["errors"] = serde_json::json!(self.kept);
            report["error_count"] = serde_json::json!(self.total);
        }
    }
}
