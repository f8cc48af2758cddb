//! session.json: what happened on a call, written when it starts and again when each of its
//! transports ends.

use std::collections::BTreeMap;

use mediagate_protocol::Timestamp;
use serde::Serialize;

/// The whole file.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CallReport {
    /// The folder name.
    pub(crate) call_id: String,
    /// Where the call id came from.
    pub(crate) identity: Identity,
    /// `live` while any transport is connected, then `ended`; `interrupted` once `mediagate
    /// repair` has found it `live` after the gateway was killed.
    pub(crate) status: CallStatus,
    pub(crate) started_at: Timestamp,
    pub(crate) ended_at: Option<Timestamp>,
    /// One entry per WebSocket of this call (media, transcription), in connection order.
    pub(crate) transports: Vec<TransportReport>,
    /// What the control plane did with the call (answered through ACS Call Automation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) control: Option<Box<crate::acs::ControlReport>>,
}

/// How the call was named.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Identity {
    /// `callConnectionId`, `query:callId`, `query:callConnectionId`, `subscriptionId`, or `generated`.
    pub(crate) source: &'static str,
    pub(crate) value: String,
}

/// Whether any transport of the call is still connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CallStatus {
    Live,
    Ended,
    /// The gateway stopped without finalizing the call (killed, crashed); written by
    /// [`repair_dir`](crate::repair_dir), never by a running gateway.
    Interrupted,
}

/// Which transport a socket turned out to be, from its first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TransportKind {
    Media,
    Transcription,
}

impl TransportKind {
    /// Its name in session.json and in the metrics' labels.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TransportKind::Media => "media",
            TransportKind::Transcription => "transcription",
        }
    }
}

/// How a transport ended.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EndReport {
    pub(crate) reason: EndReason,
    /// The WebSocket close code, sent by the peer or by us.
    pub(crate) code: Option<u16>,
    pub(crate) detail: String,
}

/// The closed set of ways a transport ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EndReason {
    /// The platform sent a close frame.
    ClientClose,
    /// The connection dropped without a close frame.
    AbruptDisconnect,
    /// The gateway was shutting down.
    ServerShutdown,
    /// The operator ended it (`POST /calls/{id}/hangup` on the admin API).
    Operator,
    /// The gateway closed it for breaking a limit (bad input, size, idle, unsupported format).
    PolicyClose,
    /// The gateway failed (a panic in the call's task); `detail` holds the panic message.
    InternalError,
}

/// Audio format as reported.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct FormatReport {
    pub(crate) sample_rate_hz: u32,
    pub(crate) channels: u16,
}

/// Counts of bad messages.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct BadMessages {
    pub(crate) total: u64,
    pub(crate) by_class: BTreeMap<&'static str, u64>,
}

impl BadMessages {
    pub(crate) fn count(&mut self, class: &'static str) {
        self.total += 1;
        *self.by_class.entry(class).or_default() += 1;
    }
}

/// One transport (one WebSocket) of a call.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TransportReport {
    pub(crate) kind: TransportKind,
    pub(crate) connection_id: u64,
    pub(crate) remote_addr: Option<String>,
    pub(crate) path: String,
    pub(crate) query: BTreeMap<String, String>,
    pub(crate) connected_at: Timestamp,
    pub(crate) ended_at: Option<Timestamp>,
    pub(crate) end: Option<EndReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subscription_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) format: Option<FormatReport>,
    /// `mixed` or `unmixed`, from what arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) audio_channel_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) call_connection_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) correlation_id: Option<String>,
    pub(crate) messages_received: u64,
    pub(crate) frames_received: u64,
    pub(crate) audio_bytes: u64,
    pub(crate) silent_frames: u64,
    /// Frames that arrived before any AudioMetadata (recorded with the default format).
    pub(crate) frames_before_metadata: u64,
    /// Frames of participants beyond `limits.max_participants_per_call` (not recorded).
    pub(crate) frames_over_participant_limit: u64,
    /// Frames whose timestamp was not RFC 3339 (recorded in arrival order, not placed).
    pub(crate) invalid_timestamps: u64,
    pub(crate) dtmf_tones: u64,
    pub(crate) transcripts_intermediate: u64,
    pub(crate) transcripts_final: u64,
    pub(crate) bad_messages: BadMessages,
    /// Participant raw ids seen, in order of first frame.
    pub(crate) participants: Vec<String>,
    /// What each processor of the call did (frames, drops, time, files, its own report).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) processors: Vec<mediagate_pipeline::ConsumerReport>,
    /// How the gateway's pacer kept time for played audio (frames sent, how many late, worst).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) playback_pacing: Option<mediagate_pipeline::PacerReport>,
    /// Clock anomalies the call's timeline caught (timestamp jumps not honoured), when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) timeline: Option<mediagate_audio::TimelineReport>,
    /// Every file the processors made in the call folder, in processor order.
    pub(crate) files: Vec<String>,
}

impl TransportReport {
    pub(crate) fn new(
        kind: TransportKind,
        connection_id: u64,
        remote_addr: Option<String>,
        path: String,
        query: BTreeMap<String, String>,
        connected_at: Timestamp,
    ) -> Self {
        TransportReport {
            kind,
            connection_id,
            remote_addr,
            path,
            query,
            connected_at,
            ended_at: None,
            end: None,
            subscription_id: None,
            format: None,
            audio_channel_type: None,
            locale: None,
            call_connection_id: None,
            correlation_id: None,
            messages_received: 0,
            frames_received: 0,
            audio_bytes: 0,
            silent_frames: 0,
            frames_before_metadata: 0,
            frames_over_participant_limit: 0,
            invalid_timestamps: 0,
            dtmf_tones: 0,
            transcripts_intermediate: 0,
            transcripts_final: 0,
            bad_messages: BadMessages::default(),
            participants: Vec::new(),
            processors: Vec::new(),
            playback_pacing: None,
            timeline: None,
            files: Vec::new(),
        }
    }
}
