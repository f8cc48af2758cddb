//! One WebSocket from the platform: read messages, parse them, hand frames and events to the
//! call's pipeline, enforce the limits, and end the call in a fixed order whatever ended it.
//!
//! [`serve_socket`] is generic over a `Stream + Sink` of axum messages, so tests can drive it with
//! channels as well as with real sockets.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Message;
use bytes::BytesMut;
use futures_util::{Sink, Stream, StreamExt};
use mediagate_audio::{AudioFormat, AudioFrame, AudioSource};
use mediagate_pipeline::{Dtmf, Event, Outgoing, Transcript};
use mediagate_protocol::{InboundMessage, ProtocolError, Timestamp, parse_inbound};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::AppState;
use crate::media::{CallPipeline, PipelineTarget};
use crate::registry::CallSlot;
use crate::session::{
    EndReason, EndReport, FormatReport, Identity, TransportKind, TransportReport, count_transcript,
};
use crate::writer::SocketWriter;

/// AudioMetadata may change the stream's format this many times (each change starts new files).
const MAX_FORMAT_CHANGES: u32 = 4;

/// WebSocket close codes the gateway sends (RFC 6455 §7.4.1).
pub(crate) mod close_code {
    /// The server is going away (shutdown).
    pub(crate) const GOING_AWAY: u16 = 1001;
    /// The peer broke the WebSocket protocol itself.
    pub(crate) const PROTOCOL_ERROR: u16 = 1002;
    /// Data of a type the endpoint cannot accept (binary garbage, unknown kinds).
    pub(crate) const UNSUPPORTED_DATA: u16 = 1003;
    /// Data inconsistent with the message type (malformed JSON, bad payloads).
    pub(crate) const INVALID_PAYLOAD: u16 = 1007;
    /// A policy was violated (idle, too many bad messages).
    pub(crate) const POLICY: u16 = 1008;
    /// A message too big to process.
    pub(crate) const TOO_BIG: u16 = 1009;
}

/// What the HTTP upgrade told us about a connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionInfo {
    pub(crate) id: u64,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) path: String,
    pub(crate) query: BTreeMap<String, String>,
}

impl ConnectionInfo {
    /// A query parameter by name, case-insensitively.
    fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// Serves one upgraded socket until it ends, then finalizes its recording.
pub(crate) async fn serve_socket<S>(socket: S, app: Arc<AppState>, info: ConnectionInfo)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Unpin + Send + 'static,
{
    let span = tracing::info_span!(
        "conn",
        conn = info.id,
        path = %info.path,
        call_id = tracing::field::Empty
    );
    async move {
        app.metrics.connection_opened();
        let (sink, stream) = socket.split();
        let writer = SocketWriter::spawn(sink, app.config.outbound.dialect);
        let mut session = Session::new(Arc::clone(&app), info, writer.outgoing());
        let end = session.run(stream, &writer).await;
        session.finish(end, writer).await;
        app.metrics.connection_closed();
    }
    .instrument(span)
    .await
}

/// Per-connection state. Owned by the connection's task alone.
struct Session {
    app: Arc<AppState>,
    info: ConnectionInfo,
    /// Format of the audio (from AudioMetadata, else the configured default).
    format: AudioFormat,
    format_announced: bool,
    /// Times AudioMetadata changed the format (each change starts new files): capped.
    format_changes: u32,
    /// Scratch buffer the audio is decoded into; frames are split off it (see `decode_pcm`).
    pool: BytesMut,
    /// Participant ids seen, interned so a frame's source is a refcount, not an allocation.
    participants: Vec<AudioSource>,
    report: TransportReport,
    call: Option<OpenCall>,
    /// The call's processors (none configured: `None`, and frames are only counted).
    pipeline: Option<CallPipeline>,
    /// Where the processors' outbound audio goes: the socket writer.
    outgoing: mpsc::Sender<Outgoing>,
    /// Opening the call folder failed once: do not retry on every frame.
    call_failed: bool,
    bad: BadInput,
    /// When the last valid message arrived (the connection's start until then).
    last_valid: Instant,
    seen_valid: bool,
}

struct OpenCall {
    /// The call's folder and this transport's place in it; `None` with recording off.
    slot: Option<CallSlot>,
}

/// Why the read loop stopped.
struct End {
    reason: EndReason,
    code: Option<u16>,
    detail: String,
}

/// Whether to keep reading after a message.
enum Flow {
    Continue,
    Close { code: u16, reason: String },
}

impl Session {
    fn new(app: Arc<AppState>, info: ConnectionInfo, outgoing: mpsc::Sender<Outgoing>) -> Self {
        // Before any AudioMetadata: a `sampleRate` query parameter, else the configured default.
        let format = info
            .query_param("sampleRate")
            .and_then(|rate| rate.parse().ok())
            .and_then(|rate| AudioFormat::new(rate, 1).ok())
            .or_else(|| AudioFormat::new(app.config.audio.default_sample_rate_hz, 1).ok())
            .unwrap_or(AudioFormat::mono(16_000));
        let report = TransportReport::new(
            TransportKind::Media,
            info.id,
            info.remote_addr.map(|a| a.to_string()),
            info.path.clone(),
            info.query.clone(),
            Timestamp::now(),
        );
        Session {
            app,
            info,
            format,
            format_announced: false,
            format_changes: 0,
            pool: BytesMut::new(),
            participants: Vec::new(),
            report,
            call: None,
            pipeline: None,
            outgoing,
            call_failed: false,
            bad: BadInput::default(),
            last_valid: Instant::now(),
            seen_valid: false,
        }
    }

    async fn run<S>(&mut self, mut socket: S, writer: &SocketWriter) -> End
    where
        S: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        let shutdown = self.app.shutdown.clone();
        let first_timeout = self.app.config.first_message_timeout();
        let idle_timeout = self.app.config.idle_timeout();
        loop {
            let deadline = if self.seen_valid {
                idle_timeout.map(|t| self.last_valid + t)
            } else {
                Some(self.last_valid + first_timeout)
            };
            let idle = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let flow = tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    writer.close(close_code::GOING_AWAY, "server shutting down").await;
                    return End {
                        reason: EndReason::ServerShutdown,
                        code: Some(close_code::GOING_AWAY),
                        detail: "server shutting down".to_owned(),
                    };
                }
                () = idle => Flow::Close {
                    code: close_code::POLICY,
                    reason: if self.seen_valid {
                        "no valid message for too long".to_owned()
                    } else {
                        format!("no valid message within {}s of connecting", first_timeout.as_secs())
                    },
                },
                message = socket.next() => match message {
                    None => {
                        return End {
                            reason: EndReason::AbruptDisconnect,
                            code: None,
                            detail: "connection ended without a close frame".to_owned(),
                        };
                    }
                    Some(Err(e)) => match read_error_kind(&e) {
                        ReadError::TooBig => Flow::Close {
                            code: close_code::TOO_BIG,
                            reason: format!(
                                "message larger than {} bytes",
                                self.app.config.limits.max_message_bytes
                            ),
                        },
                        ReadError::NotUtf8 => Flow::Close {
                            code: close_code::INVALID_PAYLOAD,
                            reason: "text frame is not UTF-8".to_owned(),
                        },
                        ReadError::Protocol => Flow::Close {
                            code: close_code::PROTOCOL_ERROR,
                            reason: format!("WebSocket protocol error: {e}"),
                        },
                        ReadError::Other => {
                            return End {
                                reason: EndReason::AbruptDisconnect,
                                code: None,
                                detail: format!("connection failed: {e}"),
                            };
                        }
                    },
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
                    Some(Ok(Message::Binary(data))) => match std::str::from_utf8(&data) {
                        Ok(text) => self.on_text(text).await,
                        Err(_) => self.on_bad("binary_not_text", &"binary frame is not UTF-8 JSON", true),
                    },
                    Some(Ok(Message::Close(frame))) => {
                        let (code, detail) = match frame {
                            Some(f) => (Some(f.code), f.reason.to_string()),
                            None => (None, String::new()),
                        };
                        // The close reply is queued when the frame is read; flushing sends it, so
                        // the peer sees a clean closing handshake.
                        writer.flush().await;
                        return End { reason: EndReason::ClientClose, code, detail };
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Flow::Continue,
                },
            };
            if let Flow::Close { code, reason } = flow {
                tracing::warn!(code, %reason, "closing connection");
                self.app.metrics.policy_close();
                writer.close(code, &reason).await;
                return End {
                    reason: EndReason::PolicyClose,
                    code: Some(code),
                    detail: reason,
                };
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        self.report.messages_received += 1;
        let message = match parse_inbound(text) {
            Ok(m) => m,
            Err(e) => return self.on_protocol_error(&e),
        };
        let result = match message {
            InboundMessage::AudioData(frame) => self.on_audio(frame).await,
            InboundMessage::AudioMetadata(meta) => {
                self.report.subscription_id = meta.subscription_id.clone();
                match AudioFormat::new(meta.sample_rate_hz, meta.channels) {
                    Ok(format)
                        if format != self.format && self.format_changes >= MAX_FORMAT_CHANGES =>
                    {
                        Err(ProtocolError::InvalidField {
                            field: "sampleRate",
                            reason: format!(
                                "more than {MAX_FORMAT_CHANGES} format changes in one stream"
                            ),
                        })
                    }
                    Ok(format) => {
                        if format != self.format
                            && (self.format_announced || self.report.frames_received > 0)
                        {
                            self.format_changes += 1;
                        }
                        self.format = format;
                        self.format_announced = true;
                        self.report.format = Some(format_report(format));
                        self.ensure_call(TransportKind::Media).await;
                        Ok(())
                    }
                    Err(e) => Err(ProtocolError::InvalidField {
                        field: "sampleRate",
                        reason: e.to_string(),
                    }),
                }
            }
            InboundMessage::DtmfData(dtmf) => {
                self.ensure_call(TransportKind::Media).await;
                self.report.dtmf_tones += 1;
                if let Some(call) = &mut self.pipeline {
                    let call_offset = call.pipeline.position();
                    call.pipeline.push_event(Event::Dtmf(Arc::new(Dtmf {
                        call_offset,
                        ..Dtmf::new(&dtmf.tone)
                    })));
                }
                Ok(())
            }
            InboundMessage::TranscriptionMetadata(meta) => {
                self.report.subscription_id = meta.subscription_id.clone();
                self.report.locale = meta.locale.clone();
                self.report.call_connection_id = meta.call_connection_id.clone();
                self.report.correlation_id = meta.correlation_id.clone();
                self.ensure_call(TransportKind::Transcription).await;
                Ok(())
            }
            InboundMessage::TranscriptionData(data) => {
                self.ensure_call(TransportKind::Transcription).await;
                count_transcript(&mut self.report, data.result_status);
                if let Some(call) = &mut self.pipeline {
                    call.pipeline
                        .push_event(Event::Transcript(Arc::new(Transcript {
                            source: Arc::from("acs"),
                            data,
                            received_at: Timestamp::now(),
                        })));
                }
                Ok(())
            }
        };
        match result {
            Ok(()) => {
                self.bad.consecutive = 0;
                self.last_valid = Instant::now();
                self.seen_valid = true;
                Flow::Continue
            }
            Err(e) => self.on_protocol_error(&e),
        }
    }

    /// The hot path: decode once into the pool, hand the refcounted bytes to the pipeline.
    async fn on_audio(
        &mut self,
        frame: mediagate_protocol::AudioData<'_>,
    ) -> Result<(), ProtocolError> {
        let pcm = frame.decode_pcm(self.format.bytes_per_sample(), &mut self.pool)?;
        if !self.format_announced {
            if self.report.frames_before_metadata == 0 {
                tracing::warn!(
                    sample_rate_hz = self.format.sample_rate_hz(),
                    "audio before AudioMetadata: assuming the default format"
                );
                self.report.format = Some(format_report(self.format));
            }
            self.report.frames_before_metadata += 1;
        }
        let source = match &frame.participant_raw_id {
            None => AudioSource::Mixed,
            Some(id) => match self.participant(id) {
                Some(source) => source,
                None => {
                    // Over the per-call participant limit: this frame is not recorded.
                    self.report.frames_over_participant_limit += 1;
                    return Ok(());
                }
            },
        };
        self.report.audio_channel_type = Some(match source {
            AudioSource::Mixed => "mixed",
            AudioSource::Participant(_) => "unmixed",
        });
        self.report.frames_received += 1;
        self.report.audio_bytes += pcm.len() as u64;
        if frame.invalid_timestamp {
            if self.report.invalid_timestamps == 0 {
                tracing::warn!("a frame's timestamp is not RFC 3339: recorded in arrival order");
            }
            self.report.invalid_timestamps += 1;
        }
        if frame.silent {
            self.report.silent_frames += 1;
        }
        self.app.metrics.frame_received();
        self.ensure_call(TransportKind::Media).await;
        if let Some(call) = &mut self.pipeline {
            let frame = AudioFrame {
                pcm,
                format: self.format,
                timestamp: frame.timestamp,
                source,
                silent: frame.silent,
            };
            call.pipeline.push_frame(&frame).await;
        }
        Ok(())
    }

    /// The interned source for `id`, or `None` past `limits.max_participants_per_call`.
    fn participant(&mut self, id: &str) -> Option<AudioSource> {
        let known = self.participants.iter().find(|p| match p {
            AudioSource::Participant(known) => &**known == id,
            AudioSource::Mixed => false,
        });
        if let Some(source) = known {
            return Some(source.clone());
        }
        if self.participants.len() >= self.app.config.limits.max_participants_per_call {
            if self.report.frames_over_participant_limit == 0 {
                tracing::warn!(
                    limit = self.app.config.limits.max_participants_per_call,
                    "participant limit reached; frames of new participants are not recorded"
                );
            }
            return None;
        }
        let source = AudioSource::Participant(Arc::from(id));
        self.participants.push(source.clone());
        self.report.participants.push(id.to_owned());
        if let Some(call) = &mut self.pipeline {
            call.pipeline
                .push_event(Event::ParticipantJoined(Arc::from(id)));
        }
        Some(source)
    }

    /// Opens the call folder on the first message that needs one (once: a failure is not
    /// retried on every frame). With recording off, nothing is opened and the call is only counted.
    async fn ensure_call(&mut self, kind: TransportKind) {
        if self.call.is_some() || self.call_failed {
            return;
        }
        self.report.kind = kind;
        let (identity, keys) = self.identity();
        if !self.app.config.recording.enabled {
            tracing::Span::current().record("call_id", identity.value.as_str());
            self.start_pipeline(kind, &identity.value, None);
            self.call = Some(OpenCall { slot: None });
            return;
        }
        let registry = Arc::clone(&self.app.registry);
        let report = self.report.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let slot = registry.open(identity, keys, report, Timestamp::now())?;
            if let Err(e) = slot.folder.write_report() {
                registry.close(&slot, Timestamp::now());
                return Err(e);
            }
            Ok(slot)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let slot = match opened {
            Ok(slot) => slot,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the call folder; this call is not recorded");
                self.call_failed = true;
                return;
            }
        };
        tracing::Span::current().record("call_id", slot.folder.name());
        tracing::info!(folder = %slot.folder.dir().display(), transport = ?kind, "call started");
        let call_id = slot.folder.name().to_owned();
        let folder = slot.folder.dir().to_owned();
        self.call = Some(OpenCall { slot: Some(slot) });
        self.start_pipeline(kind, &call_id, Some(folder));
    }

    /// Starts the configured processors: with outbound audio for a media transport, events
    /// only (transcripts) for a transcription transport.
    fn start_pipeline(&mut self, kind: TransportKind, call_id: &str, folder: Option<PathBuf>) {
        if self.pipeline.is_some() {
            return;
        }
        self.pipeline = CallPipeline::start(
            &self.app,
            PipelineTarget {
                call_id,
                path: &self.info.path,
                connection_id: self.info.id,
                format: self.format,
                folder,
                to_socket: (kind == TransportKind::Media).then(|| self.outgoing.clone()),
            },
        );
    }

    /// The call's identity and every key another transport of the same call may know it by.
    fn identity(&self) -> (Identity, BTreeSet<String>) {
        let mut keys = BTreeSet::new();
        let query_connection = self.info.query_param("callConnectionId");
        let query_call = self.info.query_param("callId");
        for key in [
            query_connection,
            query_call,
            self.report.call_connection_id.as_deref(),
        ]
        .into_iter()
        .flatten()
        {
            keys.insert(key.to_owned());
        }
        // An id in the transportUrl comes first: the application puts the same one on the media
        // and the transcription URL, so both transports name the folder alike whichever connects
        // first. The in-band callConnectionId (transcription only) comes next.
        let identity = if let Some(id) = query_connection {
            Identity {
                source: "query:callConnectionId",
                value: id.to_owned(),
            }
        } else if let Some(id) = query_call {
            Identity {
                source: "query:callId",
                value: id.to_owned(),
            }
        } else if let Some(id) = &self.report.call_connection_id {
            Identity {
                source: "callConnectionId",
                value: id.clone(),
            }
        } else if let Some(id) = &self.report.subscription_id {
            Identity {
                source: "subscriptionId",
                value: id.clone(),
            }
        } else {
            let at = Timestamp::now().unix_micros() / 1_000;
            Identity {
                source: "generated",
                value: format!("call-{at}-{}", self.info.id),
            }
        };
        (identity, keys)
    }

    fn on_protocol_error(&mut self, error: &ProtocolError) -> Flow {
        let unsupported = matches!(error, ProtocolError::UnknownKind(_));
        self.on_bad(error.class().as_str(), error, unsupported)
    }

    /// Counts and (rate-limited) logs a bad message; closes when the peer is abusive.
    fn on_bad(&mut self, class: &'static str, error: &dyn fmt::Display, unsupported: bool) -> Flow {
        self.report.bad_messages.count(class);
        self.app.metrics.bad_message(class);
        self.bad.consecutive += 1;
        if let Some(suppressed) = self.bad.should_log() {
            tracing::warn!(class, error = %error, suppressed, "bad message skipped");
        }
        let limits = &self.app.config.limits;
        if self.bad.consecutive >= limits.max_consecutive_bad_messages {
            let code = if unsupported {
                close_code::UNSUPPORTED_DATA
            } else {
                close_code::INVALID_PAYLOAD
            };
            return Flow::Close {
                code,
                reason: format!(
                    "{} bad messages in a row (last: {class})",
                    self.bad.consecutive
                ),
            };
        }
        if self.report.bad_messages.total >= limits.max_bad_messages {
            return Flow::Close {
                code: close_code::POLICY,
                reason: format!("{} bad messages", self.report.bad_messages.total),
            };
        }
        Flow::Continue
    }

    /// The fixed teardown order: input has stopped; drain and finalize the files; report.
    async fn finish(mut self, end: End, writer: SocketWriter) {
        // Processors first: they see CallEnded, drain, and their last audio still goes out.
        if let Some(call) = self.pipeline.take() {
            (self.report.processors, self.report.playback_pacing) =
                call.finish(&self.app.metrics).await;
            self.report.files = self
                .report
                .processors
                .iter()
                .flat_map(|p| p.files.iter().cloned())
                .collect();
        }
        writer.finish().await;
        let ended_at = Timestamp::now();
        tracing::info!(reason = ?end.reason, code = end.code, detail = %end.detail, "connection ended");
        self.report.ended_at = Some(ended_at);
        self.report.end = Some(EndReport {
            reason: end.reason,
            code: end.code,
            detail: end.detail,
        });
        let Some(slot) = self.call.take().and_then(|call| call.slot) else {
            return;
        };
        let registry = Arc::clone(&self.app.registry);
        let report = self.report;
        let written = tokio::task::spawn_blocking(move || {
            {
                let mut call_report = slot.folder.report.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(entry) = call_report.transports.get_mut(slot.transport_index) {
                    *entry = report;
                }
            }
            registry.close(&slot, ended_at);
            slot.folder.write_report()
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot write session.json");
        }
    }
}

/// Bad-message bookkeeping for the abuse limits and the rate-limited log.
#[derive(Default)]
struct BadInput {
    consecutive: u32,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl BadInput {
    const LOG_EVERY: Duration = Duration::from_secs(10);

    /// `Some(n)` when this one should be logged (`n` were suppressed since the last log line).
    fn should_log(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last_logged {
            Some(at) if now.duration_since(at) < Self::LOG_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last_logged = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

enum ReadError {
    TooBig,
    NotUtf8,
    Protocol,
    Other,
}

fn read_error_kind(error: &axum::Error) -> ReadError {
    use std::error::Error as _;
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::ProtocolError as ProtocolViolation;
    let mut source = error.source();
    while let Some(e) = source {
        match e.downcast_ref::<WsError>() {
            Some(WsError::Capacity(_)) => return ReadError::TooBig,
            Some(WsError::Utf8(_)) => return ReadError::NotUtf8,
            // A peer that vanishes mid-stream is not breaking the protocol: it is gone.
            Some(WsError::Protocol(ProtocolViolation::ResetWithoutClosingHandshake)) => {
                return ReadError::Other;
            }
            Some(WsError::Protocol(_)) => return ReadError::Protocol,
            Some(_) => return ReadError::Other,
            None => {}
        }
        source = e.source();
    }
    ReadError::Other
}

fn format_report(format: AudioFormat) -> FormatReport {
    FormatReport {
        sample_rate_hz: format.sample_rate_hz(),
        channels: format.channels(),
    }
}
