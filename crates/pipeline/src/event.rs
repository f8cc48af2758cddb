//! What happens in a call besides audio: one typed enum, fanned out to every consumer like
//! frames (cloning an event clones reference counts, not payloads).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mediagate_audio::{AudioFormat, AudioSource};
use mediagate_protocol::{Timestamp, TranscriptionData};

use crate::BargeIn;

/// Who the call is, as consumers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// The call's id (its folder name).
    pub call_id: Arc<str>,
    /// The WebSocket path the platform connected to (`/ws/bot`…): routes pick pipelines by it.
    pub path: Arc<str>,
    /// The call's audio format (inbound frames, and what outbound audio is converted to).
    pub format: AudioFormat,
    /// The call's folder, where processors keep files (see [`crate::Context::create_file`]);
    /// `None` when the gateway keeps no files (`recording.enabled = false`).
    pub folder: Option<PathBuf>,
}

impl CallInfo {
    /// A call with no folder.
    pub fn new(call_id: &str, path: &str, format: AudioFormat) -> Self {
        CallInfo {
            call_id: call_id.into(),
            path: path.into(),
            format,
            folder: None,
        }
    }

    /// The same call, keeping its files in `folder`.
    #[must_use]
    pub fn with_folder(mut self, folder: impl Into<PathBuf>) -> Self {
        self.folder = Some(folder.into());
        self
    }
}

/// A key the caller pressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtmf {
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub tone: Arc<str>,
    /// When the gateway received it (wall clock).
    pub received_at: Timestamp,
    /// Where the call's audio was when it arrived: the end of the latest frame, from the first
    /// frame's timestamp (`None` before any timestamped audio). This places the tone on the
    /// recording's timeline.
    pub call_offset: Option<Duration>,
}

impl Dtmf {
    /// A tone received now, with no place on the audio timeline.
    pub fn new(tone: &str) -> Self {
        Dtmf {
            tone: tone.into(),
            received_at: Timestamp::now(),
            call_offset: None,
        }
    }
}

/// A transcription result, from the platform (`acs`) or from one of the gateway's engines.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// `acs`, or the engine's name.
    pub source: Arc<str>,
    /// The result.
    pub data: TranscriptionData,
    /// When the gateway received it (wall clock).
    pub received_at: Timestamp,
}

/// Something that happened in a call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The pipeline started; always the first event a consumer sees.
    CallStarted(Arc<CallInfo>),
    /// A participant's first frame arrived (unmixed audio).
    ParticipantJoined(Arc<str>),
    /// The caller pressed a key.
    Dtmf(Arc<Dtmf>),
    /// A transcription result.
    Transcript(Arc<Transcript>),
    /// Voice activity started (`true`) or stopped (`false`) on a source. A source still
    /// speaking when the call ends gets no `false`: [`Event::CallEnded`] ends everything.
    Speech {
        /// Whose speech.
        source: AudioSource,
        /// Started or stopped.
        active: bool,
    },
    /// Outbound audio was cut by a barge-in.
    BargeIn(BargeIn),
    /// A consumer fell too far behind under [`crate::OverflowPolicy::Detach`] and gets nothing more.
    ConsumerDetached(Arc<str>),
    /// The call is over; always the last event.
    CallEnded,
}
