//! The connection's logic, sans-IO: WebSocket messages and `now` in, actions out.
//!
//! In the spirit of quinn-proto, [`Machine`] has no socket, no runtime, no clock and no files. The
//! socket task (the driver, [`super::driver`]) feeds it each [`Input`] with the time it happened,
//! executes the [`Action`]s it queues, and wakes it at [`Machine::poll_timeout`]. Every decision
//! about a connection lives here: the accepted formats, the call's identity and keys, the
//! bad-message budgets, the first-message and idle deadlines, format changes, the participant
//! limit, which log lines are worth writing, and which close code ends it. The same inputs at
//! the same times always give the same actions, so tests and the fuzzer drive it directly.
//!
//! The hot path (one AudioData) decodes into the machine's pool and queues one
//! [`Action::PushFrame`]: no allocation per frame, no boxing, actions returned by value through
//! a reused queue.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mediagate_audio::{AudioFormat, AudioFrame, AudioSource};
use mediagate_protocol::{
    AudioData, AudioMetadata, InboundMessage, ProtocolError, Timestamp, TranscriptionMetadata,
    parse_inbound,
};

use super::ConnectionInfo;
pub(crate) use super::actions::{Action, CallEvent, CallOpening, End, Input, LogLine, ReadError};
use super::close_code;
use super::format::{self, Unsupported};
use super::identity;
use super::text::{Escaped, MAX_CLIENT_TEXT_BYTES, bounded, truncated};
use crate::Config;
use crate::session::{EndReason, FormatReport, TransportKind, TransportReport, count_transcript};

/// AudioMetadata may change the stream's format this many times (each change starts new files).
pub(crate) const MAX_FORMAT_CHANGES: u32 = 4;

/// Most actions one input can queue (a first frame: open, join, log twice, push). The driver
/// drains the queue after every input, so it never holds more.
pub(crate) const MAX_PENDING_ACTIONS: usize = 8;

/// The limits a connection is held to, from `[limits]` and `[audio]`.
#[derive(Debug, Clone)]
pub(crate) struct MachineConfig {
    /// `limits.max_message_bytes` (the transport enforces it; the machine names it in reasons).
    pub(crate) max_message_bytes: usize,
    pub(crate) max_consecutive_bad_messages: u32,
    pub(crate) max_bad_messages: u64,
    pub(crate) first_message_timeout: Duration,
    /// `None`: never closed for being idle.
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_participants_per_call: usize,
    /// The format before any AudioMetadata or `sampleRate` query parameter.
    pub(crate) default_format: AudioFormat,
}

impl MachineConfig {
    /// The limits of `config`.
    pub(crate) fn from_config(config: &Config) -> Self {
        MachineConfig {
            max_message_bytes: config.limits.max_message_bytes,
            max_consecutive_bad_messages: config.limits.max_consecutive_bad_messages,
            max_bad_messages: config.limits.max_bad_messages,
            first_message_timeout: config.first_message_timeout(),
            idle_timeout: config.idle_timeout(),
            max_participants_per_call: config.limits.max_participants_per_call,
            default_format: AudioFormat::new(config.audio.default_sample_rate_hz, 1)
                .unwrap_or(AudioFormat::mono(16_000)),
        }
    }
}

/// What the machine owns, for the memory bound the fuzzer checks.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footprint {
    /// Bytes reserved by the decode pool.
    pub(crate) pool_capacity: usize,
    /// Participants interned.
    pub(crate) participants: usize,
    /// Bytes of client text kept (participant ids and report strings).
    pub(crate) client_text_bytes: usize,
    /// Actions waiting for the driver.
    pub(crate) pending_actions: usize,
}

/// One connection's state. See the module docs.
pub(crate) struct Machine {
    config: MachineConfig,
    info: ConnectionInfo,
    /// When the connection was accepted (wall clock): names a call that has no id of its own.
    connected_at: Timestamp,
    /// Format of the audio (AudioMetadata, else the `sampleRate` query, else the default).
    format: AudioFormat,
    format_announced: bool,
    /// Times AudioMetadata changed the format: capped at [`MAX_FORMAT_CHANGES`].
    format_changes: u32,
    /// Scratch buffer the audio is decoded into; frames are split off it (see `decode_pcm`).
    pool: BytesMut,
    /// Participant ids seen (bounded), interned so a frame's source is a refcount.
    participants: Vec<AudioSource>,
    report: TransportReport,
    call_opened: bool,
    bad: BadInput,
    /// When the last valid message arrived (the connection's start until then).
    last_valid: Instant,
    seen_valid: bool,
    ended: bool,
    actions: VecDeque<Action>,
}

impl Machine {
    /// A new connection, accepted at `now` (monotonic) and `connected_at` (wall clock). A
    /// `sampleRate` query parameter the gateway does not accept queues the close at once.
    pub(crate) fn new(
        config: MachineConfig,
        info: ConnectionInfo,
        report: TransportReport,
        connected_at: Timestamp,
        now: Instant,
    ) -> Self {
        let mut machine = Machine {
            format: config.default_format,
            config,
            connected_at,
            format_announced: false,
            format_changes: 0,
            pool: BytesMut::new(),
            participants: Vec::new(),
            report,
            call_opened: false,
            bad: BadInput::default(),
            last_valid: now,
            seen_valid: false,
            ended: false,
            actions: VecDeque::with_capacity(MAX_PENDING_ACTIONS),
            info,
        };
        if let Some(rate) = machine.info.query_param("sampleRate") {
            match format::from_query(rate) {
                Ok(format) => machine.format = format,
                Err(unsupported) => machine.close_unsupported(unsupported),
            }
        }
        machine
    }

    /// The next action to execute, in order.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to feed [`Input::Timeout`] (`None`: no deadline, or the connection is over).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        if self.seen_valid {
            self.config.idle_timeout.map(|t| self.last_valid + t)
        } else {
            Some(self.last_valid + self.config.first_message_timeout)
        }
    }

    /// Whether [`Action::End`] has been queued (then inputs are ignored).
    #[cfg(test)]
    pub(crate) fn is_ended(&self) -> bool {
        self.ended
    }

    /// What session.json says about this transport so far.
    pub(crate) fn report(&self) -> &TransportReport {
        &self.report
    }

    /// The report, to finish once the connection is over.
    pub(crate) fn into_report(self) -> TransportReport {
        self.report
    }

    /// Whether a call began on this socket (its first audio, metadata or transcription
    /// message came); its report's `kind` is known only then.
    pub(crate) fn call_opened(&self) -> bool {
        self.call_opened
    }

    /// The stream's current format.
    #[cfg(test)]
    pub(crate) fn format(&self) -> AudioFormat {
        self.format
    }

    /// What the machine holds now.
    #[cfg(test)]
    pub(crate) fn footprint(&self) -> Footprint {
        let report_text = [
            &self.report.subscription_id,
            &self.report.locale,
            &self.report.call_connection_id,
            &self.report.correlation_id,
        ]
        .into_iter()
        .flatten()
        .map(String::len)
        .sum::<usize>();
        Footprint {
            pool_capacity: self.pool.capacity(),
            participants: self.participants.len(),
            client_text_bytes: report_text
                + self
                    .report
                    .participants
                    .iter()
                    .map(String::len)
                    .sum::<usize>()
                + self
                    .participants
                    .iter()
                    .map(|p| match p {
                        AudioSource::Participant(id) => id.len(),
                        AudioSource::Mixed => 0,
                    })
                    .sum::<usize>(),
            pending_actions: self.actions.len(),
        }
    }

    /// The most the machine may hold (checked by the fuzzer): a pool of a few seconds of the
    /// richest accepted format, and bounded strings.
    #[cfg(test)]
    pub(crate) fn footprint_bound(&self) -> Footprint {
        // The operator's `audio.default_sample_rate_hz` is trusted config, not client input.
        let richest = format::max_frame_bytes(AudioFormat::mono(48_000))
            .max(format::max_frame_bytes(self.config.default_format));
        Footprint {
            pool_capacity: 4 * richest + 2 * mediagate_protocol::POOL_BLOCK_BYTES,
            participants: self.config.max_participants_per_call,
            client_text_bytes: (2 * self.config.max_participants_per_call + 4)
                * MAX_CLIENT_TEXT_BYTES,
            pending_actions: MAX_PENDING_ACTIONS,
        }
    }

    /// Feeds one input that happened at `now`; then drain [`Machine::poll_action`].
    pub(crate) fn handle(&mut self, input: Input<'_>, now: Instant) {
        if self.ended {
            return;
        }
        match input {
            Input::Text(text) => self.on_text(text, now),
            Input::Binary(data) => match std::str::from_utf8(data) {
                Ok(text) => self.on_text(text, now),
                Err(_) => self.on_bad(
                    "binary_not_text",
                    &"binary frame is not UTF-8 JSON",
                    true,
                    now,
                ),
            },
            Input::Ping => {}
            Input::Close(frame) => {
                let (code, detail) = match frame {
                    Some((code, reason)) => (Some(code), bounded(reason)),
                    None => (None, String::new()),
                };
                // The close reply is queued when the frame is read; flushing sends it, so the
                // peer sees a clean closing handshake.
                self.actions.push_back(Action::FlushCloseReply);
                self.end(EndReason::ClientClose, code, detail);
            }
            Input::ReadError(kind, detail) => self.on_read_error(kind, detail),
            Input::Disconnected => self.end(
                EndReason::AbruptDisconnect,
                None,
                "connection ended without a close frame".to_owned(),
            ),
            Input::Timeout => self.on_timeout(now),
            Input::Shutdown => self.close_for(
                EndReason::ServerShutdown,
                close_code::GOING_AWAY,
                "server shutting down",
            ),
            Input::Hangup => self.close_for(
                EndReason::Operator,
                close_code::NORMAL,
                "ended by the operator",
            ),
        }
    }

    /// Closes with `code` and `reason`, and ends for `why`.
    fn close_for(&mut self, why: EndReason, code: u16, reason: &str) {
        self.actions.push_back(Action::Close {
            code,
            reason: reason.to_owned(),
        });
        self.end(why, Some(code), reason.to_owned());
    }

    fn on_read_error(&mut self, kind: ReadError, detail: &str) {
        match kind {
            ReadError::TooBig => self.close(
                close_code::TOO_BIG,
                format!(
                    "message larger than {} bytes",
                    self.config.max_message_bytes
                ),
            ),
            ReadError::NotUtf8 => {
                self.close(
                    close_code::INVALID_PAYLOAD,
                    "text frame is not UTF-8".to_owned(),
                );
            }
            ReadError::Protocol => self.close(
                close_code::PROTOCOL_ERROR,
                format!("WebSocket protocol error: {}", Escaped(detail)),
            ),
            ReadError::Other => self.end(
                EndReason::AbruptDisconnect,
                None,
                format!("connection failed: {}", Escaped(detail)),
            ),
        }
    }

    /// Closes with 1008 once the deadline has passed (a timer that fires early does nothing).
    fn on_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_none_or(|at| now < at) {
            return;
        }
        let reason = if self.seen_valid {
            "no valid message for too long".to_owned()
        } else {
            format!(
                "no valid message within {}s of connecting",
                self.config.first_message_timeout.as_secs()
            )
        };
        self.close(close_code::POLICY, reason);
    }

    fn on_text(&mut self, text: &str, now: Instant) {
        self.report.messages_received += 1;
        let message = match parse_inbound(text) {
            Ok(message) => message,
            // Only PCM is defined; another encoding is a stream the gateway cannot record.
            Err(ProtocolError::InvalidField {
                field: "encoding", ..
            }) => return self.close_unsupported(format::unsupported_encoding()),
            Err(e) => return self.on_protocol_error(&e, now),
        };
        let result = match message {
            InboundMessage::AudioData(frame) => self.on_audio(&frame),
            InboundMessage::AudioMetadata(meta) => match self.on_audio_metadata(&meta) {
                Ok(result) => result,
                Err(unsupported) => return self.close_unsupported(unsupported),
            },
            InboundMessage::DtmfData(dtmf) => self.on_dtmf(&dtmf.tone),
            InboundMessage::TranscriptionMetadata(meta) => {
                self.on_transcription_metadata(&meta);
                Ok(())
            }
            InboundMessage::TranscriptionData(data) => {
                self.ensure_call(TransportKind::Transcription);
                count_transcript(&mut self.report, data.result_status);
                self.actions
                    .push_back(Action::PushEvent(CallEvent::Transcript(data)));
                Ok(())
            }
        };
        match result {
            Ok(()) => {
                self.bad.consecutive = 0;
                self.last_valid = now;
                self.seen_valid = true;
            }
            Err(e) => self.on_protocol_error(&e, now),
        }
    }

    /// A format change, or the unsupported format that closes the connection.
    fn on_audio_metadata(
        &mut self,
        meta: &AudioMetadata,
    ) -> Result<Result<(), ProtocolError>, Unsupported> {
        let format = format::accepted(meta.sample_rate_hz, meta.channels)?;
        self.report.subscription_id = meta.subscription_id.as_deref().map(bounded);
        if format != self.format && self.format_changes >= MAX_FORMAT_CHANGES {
            return Ok(Err(ProtocolError::InvalidField {
                field: "sampleRate",
                reason: format!("more than {MAX_FORMAT_CHANGES} format changes in one stream"),
            }));
        }
        if format != self.format && (self.format_announced || self.report.frames_received > 0) {
            self.format_changes += 1;
        }
        self.format = format;
        self.format_announced = true;
        self.report.format = Some(format_report(format));
        self.ensure_call(TransportKind::Media);
        Ok(Ok(()))
    }

    /// The hot path: decode once into the pool, queue the refcounted bytes for the pipeline.
    fn on_audio(&mut self, frame: &AudioData<'_>) -> Result<(), ProtocolError> {
        let max_bytes = format::max_frame_bytes(self.format);
        // Checked before decoding too, so an oversize payload costs no decode work.
        if base64_decoded_max(frame.data_base64.len()) > max_bytes + 2 {
            return Err(too_long(self.format));
        }
        let pcm = frame.decode_pcm(self.format.bytes_per_sample(), &mut self.pool)?;
        if pcm.len() > max_bytes {
            return Err(too_long(self.format));
        }
        if !self.format_announced {
            if self.report.frames_before_metadata == 0 {
                self.log(LogLine::AudioBeforeMetadata {
                    sample_rate_hz: self.format.sample_rate_hz(),
                });
                self.report.format = Some(format_report(self.format));
            }
            self.report.frames_before_metadata += 1;
        }
        self.ensure_call(TransportKind::Media);
        let source = match frame.participant_raw_id.as_deref() {
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
                self.log(LogLine::InvalidTimestamp);
            }
            self.report.invalid_timestamps += 1;
        }
        if frame.silent {
            self.report.silent_frames += 1;
        }
        self.actions.push_back(Action::PushFrame(AudioFrame {
            pcm,
            format: self.format,
            timestamp: frame.timestamp,
            position: None,
            source,
            silent: frame.silent,
        }));
        Ok(())
    }

    /// The interned source for `id` (bounded), or `None` past the participant limit.
    fn participant(&mut self, id: &str) -> Option<AudioSource> {
        let id = truncated(id, MAX_CLIENT_TEXT_BYTES);
        let known = self.participants.iter().find(|p| match p {
            AudioSource::Participant(known) => &**known == id,
            AudioSource::Mixed => false,
        });
        if let Some(source) = known {
            return Some(source.clone());
        }
        if self.participants.len() >= self.config.max_participants_per_call {
            if self.report.frames_over_participant_limit == 0 {
                self.log(LogLine::ParticipantLimit {
                    limit: self.config.max_participants_per_call,
                });
            }
            return None;
        }
        let id: Arc<str> = Arc::from(id);
        self.participants
            .push(AudioSource::Participant(Arc::clone(&id)));
        self.report.participants.push(id.to_string());
        self.actions
            .push_back(Action::PushEvent(CallEvent::ParticipantJoined(Arc::clone(
                &id,
            ))));
        Some(AudioSource::Participant(id))
    }

    /// ACS sends one key per message: exactly one of `0-9 A-D * #`.
    fn on_dtmf(&mut self, tone: &str) -> Result<(), ProtocolError> {
        let mut chars = tone.chars();
        let key = match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_digit() || matches!(c, 'A'..='D' | '*' | '#') => c,
            _ => {
                return Err(ProtocolError::InvalidField {
                    field: "data",
                    reason: format!(
                        "DTMF tone `{}` is not one of 0-9, A-D, *, #",
                        Escaped(truncated(tone, 16))
                    ),
                });
            }
        };
        self.ensure_call(TransportKind::Media);
        self.report.dtmf_tones += 1;
        self.actions
            .push_back(Action::PushEvent(CallEvent::Dtmf(key)));
        Ok(())
    }

    fn on_transcription_metadata(&mut self, meta: &TranscriptionMetadata) {
        self.report.subscription_id = meta.subscription_id.as_deref().map(bounded);
        self.report.locale = meta.locale.as_deref().map(bounded);
        self.report.call_connection_id = meta.call_connection_id.as_deref().map(bounded);
        self.report.correlation_id = meta.correlation_id.as_deref().map(bounded);
        self.ensure_call(TransportKind::Transcription);
    }

    /// Queues the call's opening on the first message that needs one.
    fn ensure_call(&mut self, kind: TransportKind) {
        if self.call_opened {
            return;
        }
        self.call_opened = true;
        self.report.kind = kind;
        let (identity, keys) = identity::of_call(&self.info, &self.report, self.connected_at);
        self.actions.push_back(Action::OpenCall(CallOpening {
            kind,
            identity,
            keys,
            format: self.format,
        }));
    }

    fn on_protocol_error(&mut self, error: &ProtocolError, now: Instant) {
        let unsupported = matches!(error, ProtocolError::UnknownKind(_));
        self.on_bad(error.class().as_str(), error, unsupported, now);
    }

    /// Counts and (rate-limited) logs a bad message; closes when the peer is abusive.
    fn on_bad(
        &mut self,
        class: &'static str,
        error: &dyn fmt::Display,
        unsupported: bool,
        now: Instant,
    ) {
        self.report.bad_messages.count(class);
        self.actions.push_back(Action::BadMessage(class));
        self.bad.consecutive += 1;
        if let Some(suppressed) = self.bad.should_log(now) {
            let error = Escaped(&error.to_string()).to_string();
            self.log(LogLine::BadMessage {
                class,
                error,
                suppressed,
            });
        }
        if self.bad.consecutive >= self.config.max_consecutive_bad_messages {
            let code = if unsupported {
                close_code::UNSUPPORTED_DATA
            } else {
                close_code::INVALID_PAYLOAD
            };
            let reason = format!(
                "{} bad messages in a row (last: {class})",
                self.bad.consecutive
            );
            return self.close(code, reason);
        }
        if self.report.bad_messages.total >= self.config.max_bad_messages {
            let reason = format!("{} bad messages", self.report.bad_messages.total);
            self.close(close_code::POLICY, reason);
        }
    }

    fn close_unsupported(&mut self, unsupported: Unsupported) {
        self.close(unsupported.code, unsupported.reason);
    }

    /// Closes for breaking a limit: log, close frame, end.
    fn close(&mut self, code: u16, reason: String) {
        self.log(LogLine::Closing {
            code,
            reason: reason.clone(),
        });
        self.actions.push_back(Action::Close {
            code,
            reason: reason.clone(),
        });
        self.end(EndReason::PolicyClose, Some(code), reason);
    }

    fn end(&mut self, reason: EndReason, code: Option<u16>, detail: String) {
        self.ended = true;
        self.actions.push_back(Action::End(End {
            reason,
            code,
            detail,
        }));
    }

    fn log(&mut self, line: LogLine) {
        self.actions.push_back(Action::Log(line));
    }
}

/// The most bytes `len` characters of base64 can decode to.
fn base64_decoded_max(len: usize) -> usize {
    len.div_ceil(4) * 3
}

fn too_long(format: AudioFormat) -> ProtocolError {
    ProtocolError::InvalidField {
        field: "data",
        reason: format!(
            "more than {} ms of audio at {} Hz in one message",
            format::MAX_FRAME_DURATION.as_millis(),
            format.sample_rate_hz()
        ),
    }
}

/// Bad-message bookkeeping for the abuse limits and the rate-limited log.
#[derive(Debug, Default)]
pub(crate) struct BadInput {
    consecutive: u32,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl BadInput {
    const LOG_EVERY: Duration = Duration::from_secs(10);

    /// `Some(n)` when this one should be logged (`n` were suppressed since the last log line).
    fn should_log(&mut self, now: Instant) -> Option<u64> {
        match self.last_logged {
            Some(at) if now.saturating_duration_since(at) < Self::LOG_EVERY => {
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

pub(crate) fn format_report(format: AudioFormat) -> FormatReport {
    FormatReport {
        sample_rate_hz: format.sample_rate_hz(),
        channels: format.channels(),
    }
}
