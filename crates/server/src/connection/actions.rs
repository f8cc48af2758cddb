//! What goes in and out of the connection [`super::machine::Machine`]: the [`Input`]s the driver
//! feeds it and the [`Action`]s it queues for the driver, by value.

use std::collections::BTreeSet;
use std::sync::Arc;

use mediagate_audio::{AudioFormat, AudioFrame};
use mediagate_pipeline::{Transcript, TranscriptStatus, TranscriptWord};
use mediagate_protocol::{ResultStatus, Timestamp, TranscriptionData};

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
    /// The operator ended this transport (the admin API): close now, normally.
    Hangup,
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

/// The platform's transcription result as the pipeline's [`Transcript`]: ACS's 100 ns ticks
/// become milliseconds (a negative offset, 0), its participant the speaker, and
/// `Intermediate` a partial. The edge where the wire type ends.
pub(crate) fn transcript_from_acs(data: TranscriptionData, received_at: Timestamp) -> Transcript {
    let ms = |ticks: i64| u64::try_from(ticks / 10_000).unwrap_or(0);
    Transcript {
        source: Arc::from("acs"),
        status: match data.result_status {
            ResultStatus::Final => TranscriptStatus::Final,
            ResultStatus::Intermediate => TranscriptStatus::Partial,
        },
        text: data.text,
        start_ms: ms(data.offset_ticks),
        duration_ms: ms(data.duration_ticks),
        words: data
            .words
            .into_iter()
            .map(|w| TranscriptWord {
                text: w.text,
                start_ms: ms(w.offset_ticks),
                duration_ms: ms(w.duration_ticks),
            })
            .collect(),
        confidence: data.confidence,
        speaker: data.participant_raw_id.map(Arc::from),
        received_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagate_protocol::Word;

    #[test]
    fn acs_ticks_become_milliseconds_on_the_call_timeline() {
        let data = TranscriptionData {
            text: "Hello there.".to_owned(),
            format: Some("display".to_owned()),
            confidence: Some(0.9),
            offset_ticks: 2_000_000,
            duration_ticks: 15_000_000,
            words: vec![Word {
                text: "hello".to_owned(),
                offset_ticks: -5,
                duration_ticks: 3_000_000,
            }],
            participant_raw_id: Some("8:acs:alice".to_owned()),
            result_status: ResultStatus::Intermediate,
        };
        let t = transcript_from_acs(data, Timestamp::from_unix_micros(0));
        assert_eq!((t.start_ms, t.duration_ms, t.end_ms()), (200, 1_500, 1_700));
        assert_eq!(t.status, TranscriptStatus::Partial);
        assert_eq!(t.words[0].start_ms, 0);
        assert_eq!(t.words[0].duration_ms, 300);
        assert_eq!(t.speaker.as_deref(), Some("8:acs:alice"));
        assert_eq!(&*t.source, "acs");
    }
}
