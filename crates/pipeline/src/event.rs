//! What happens in a call besides audio: one typed enum, fanned out to every consumer like
//! frames (cloning an event clones reference counts, not payloads).

use std::sync::Arc;

use mediagate_audio::{AudioFormat, AudioSource};
use mediagate_protocol::TranscriptionData;

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
}

/// A transcription result, from the platform (`acs`) or from one of the gateway's engines.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// `acs`, or the engine's name.
    pub source: Arc<str>,
    /// The result.
    pub data: TranscriptionData,
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
    Dtmf(Arc<str>),
    /// A transcription result.
    Transcript(Arc<Transcript>),
    /// Voice activity started (`true`) or stopped (`false`) on a source.
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
