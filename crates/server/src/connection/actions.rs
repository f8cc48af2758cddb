//! What goes in and out of the connection [`super::machine::Machine`]: the [`Input`]s the driver
//! feeds it and the [`Action`]s it queues for the driver, by value.

use std::collections::BTreeSet;
use std::sync::Arc;

use mediagate_audio::{AudioFormat, AudioFrame};
use mediagate_protocol::TranscriptionData;

use crate::session::{EndReason, Identity, TransportKind};

/// Something that happened to the connection.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a> {
    /// A text message (or a binary one that held UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// A ping or pong (the transport answers pings itself): not a valid message.
    Ping,
    /// The peer's close frame: its code and reason, if it gave them.
    Close(Option<(u16, &'a str)>),
    /// Reading failed; `detail` says how (the transport's words, not the peer's).
    ReadError(ReadError, &'a str),
    /// The stream ended without a close frame.
    Disconnected,
    /// The deadline from [`super::machine::Machine::poll_timeout`] passed (a timer may fire early or late: the
    /// machine checks `now`).
    Timeout,
    /// The gateway is shutting down: close now.
    Shutdown,
}

/// How a read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// Larger than `limits.max_message_bytes`.
    TooBig,
    /// A text frame that is not UTF-8.
    NotUtf8,
    /// The peer broke the WebSocket protocol.
    Protocol,
    /// The connection failed (reset, I/O error): the peer is gone.
    Other,
}

/// What the driver must do, in order.
#[derive(Debug)]
pub(crate) enum Action {
    /// Open the call (join a live one by its keys, or make its folder) and start its pipeline,
    /// before anything is pushed to it. Queued once per connection.
    OpenCall(CallOpening),
    /// Hand a frame to the call's pipeline (counted as received even when there is none).
    PushFrame(AudioFrame),
    /// Hand an event to the call's pipeline.
    PushEvent(CallEvent),
    /// A bad message of this class was skipped (for the metrics).
    BadMessage(&'static str),
    /// Write a log line (already rate-limited; client text in it already escaped and bounded).
    Log(LogLine),
    /// The peer closed: flush, so the close reply the transport queued goes out.
    FlushCloseReply,
    /// Send a close frame with this code and reason.
    Close { code: u16, reason: String },
    /// The connection is over; nothing follows.
    End(End),
}

/// What the driver needs to open the call.
#[derive(Debug, Clone)]
pub(crate) struct CallOpening {
    pub(crate) kind: TransportKind,
    pub(crate) identity: Identity,
    /// Every id another transport of the same call may know it by.
    pub(crate) keys: BTreeSet<String>,
    /// The stream's format when the call opens.
    pub(crate) format: AudioFormat,
}

/// An event for the call's pipeline; the driver stamps it with the wall clock and the pipeline's
/// position.
#[derive(Debug)]
pub(crate) enum CallEvent {
    /// A new participant's first frame (its id bounded to [`super::text::MAX_CLIENT_TEXT_BYTES`]).
    ParticipantJoined(Arc<str>),
    /// A DTMF tone, one of `0-9 A-D * #`.
    Dtmf(char),
    /// A transcription result from the platform.
    Transcript(TranscriptionData),
}

/// A log line the machine decided to write.
#[derive(Debug)]
pub(crate) enum LogLine {
    /// A bad message (first, then at most one per 10 s).
    BadMessage {
        class: &'static str,
        /// The error, escaped and bounded.
        error: String,
        /// Bad messages not logged since the last line.
        suppressed: u64,
    },
    /// Audio arrived before any AudioMetadata (once).
    AudioBeforeMetadata { sample_rate_hz: u32 },
    /// A frame's timestamp was not RFC 3339 (once).
    InvalidTimestamp,
    /// The participant limit was reached (once).
    ParticipantLimit { limit: usize },
    /// The machine is closing the connection.
    Closing { code: u16, reason: String },
}

/// Why the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct End {
    pub(crate) reason: EndReason,
    /// The close code, sent by the peer or by us.
    pub(crate) code: Option<u16>,
    pub(crate) detail: String,
}
