//! The platform side of the ACS Call Automation media streaming protocol, for testing gateways.
//!
//! The emulator connects to a gateway as a WebSocket client and streams WAV files into it exactly
//! as ACS would: AudioMetadata first, then one AudioData per 20 ms, mixed into one stream or
//! unmixed (one participant per file, nothing sent while a participant is silent), plus DTMF tones
//! and, on a second transport, a scripted transcript. Every message is encoded before the clock
//! starts, so the emulator is never the bottleneck; pacing is real time or as fast as the socket
//! accepts. While it streams it reads what the gateway sends back (outbound audio, StopAudio, the
//! close frame) and reports it in an [`EmulateReport`]: outbound audio is timed (echo round trip,
//! pacing gaps, StopAudio times, see [`OutboundStats`]) and can be recorded to a WAV file
//! ([`EmulateConfig::record_outbound`]); the media transport can stay open after the last inbound
//! frame ([`EmulateConfig::linger`]) to capture playback that outlasts the inbound stream.
//!
//! It speaks `ws://` only (no TLS) and builds on `mediagate-protocol` for the wire format.
//!
//! ```no_run
//! use mediagate_emulator::{EmulateConfig, Pacing};
//!
//! # async fn demo() -> Result<(), mediagate_emulator::EmulatorError> {
//! let config = EmulateConfig::new("ws://127.0.0.1:8080/ws/calls?callId=demo")
//!     .with_wav("caller.wav")
//!     .with_dtmf("5@2s".parse()?)
//!     .with_pacing(Pacing::Fast);
//! let report = mediagate_emulator::run(config).await?;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

mod config;
mod connection;
pub mod control;
mod error;
mod media;
mod outbound;
mod report;
mod script;
mod track;
mod transcription;

use std::time::Duration;

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

pub use config::{EmulateConfig, EndMode, Pacing, SilencePolicy};
pub use error::EmulatorError;
pub use report::{
    DurationStats, EmulateReport, GatewayClose, GatewayMessages, OutboundStats, PacingStats,
    StopAudioEvent,
};
pub use script::{DtmfEvent, parse_duration};

use connection::{Connection, ReaderOutcome, SendEnd};
use futures_util::SinkExt;
use media::{MediaCounts, MediaPlan, PlanOptions};
use outbound::{OutboundCapture, Recorder};
use script::TranscriptScript;
use track::TrackSet;
use transcription::TranscriptPlan;

/// Streams the configured call into the gateway and reports what happened.
///
/// Files are read and every message encoded first (on a blocking thread), then the media
/// transport and, with a transcript script, the transcription transport are opened and streamed
/// concurrently. A gateway that closes a socket with a close frame ends that transport early and
/// is reported, not an error. With [`EmulateConfig::record_outbound`] the gateway's playback is
/// written to the WAV file at the end (on a blocking thread).
pub async fn run(config: EmulateConfig) -> Result<EmulateReport, EmulatorError> {
    let url = config.url.clone();
    let (pacing, end, linger) = (config.pacing, config.end, config.linger);
    let Prepared {
        media: media_plan,
        transcript: transcript_plan,
        recorder,
    } = tokio::task::spawn_blocking(move || prepare(&config))
        .await
        .map_err(|e| EmulatorError::Task(e.to_string()))??;
    let format = media_plan.format;
    let media_capture = OutboundCapture::new(format, recorder.is_some());

    let (media_conn, transcription_conn) =
        tokio::try_join!(Connection::open(&url, media_capture), async {
            if transcript_plan.is_some() {
                Connection::open(&url, OutboundCapture::new(format, false))
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        })?;

    let start = Instant::now();
    let media = stream_media(media_conn, media_plan, pacing, start, end, linger);
    let transcripts = async {
        match (transcription_conn, transcript_plan) {
            (Some(conn), Some(plan)) => stream_transcripts(conn, plan, pacing, start)
                .await
                .map(Some),
            _ => Ok(None),
        }
    };
    let (media, transcripts) = tokio::try_join!(media, transcripts)?;

    let mut sending_ended = media.sending_ended;
    let capture = media.reader.capture;
    let outbound = capture.stats(
        &media.counts.sent_at,
        start,
        format,
        recorder.as_ref().map(|r| r.path().to_owned()),
    );
    let mut report = EmulateReport {
        frames_sent: media.counts.frames_sent,
        frames_skipped_silent: media.counts.frames_skipped_silent,
        audio_bytes_sent: media.counts.audio_bytes_sent,
        dtmf_sent: media.counts.dtmf_sent,
        messages_received_from_gateway: media.reader.messages,
        gateway_close: media.reader.close,
        stopped_early: media.stopped_early,
        outbound,
        ..EmulateReport::default()
    };
    if let Some(t) = transcripts {
        report.transcripts_sent = t.counts;
        report.transcription_close = t.reader.close;
        report.stopped_early |= t.stopped_early;
        sending_ended = sending_ended.max(t.sending_ended);
    }
    report.elapsed = sending_ended.saturating_duration_since(start);
    if let Some(recorder) = recorder {
        let samples = capture.samples;
        tokio::task::spawn_blocking(move || recorder.finish(&samples))
            .await
            .map_err(|e| EmulatorError::Task(e.to_string()))??;
    }
    tracing::debug!(url, frames_sent = report.frames_sent, "emulation done");
    Ok(report)
}

/// Everything read and encoded before connecting.
struct Prepared {
    media: MediaPlan,
    transcript: Option<TranscriptPlan>,
    /// The (created, still empty) recording of the gateway's playback.
    recorder: Option<Recorder>,
}

/// Reads the inputs, encodes every message and creates the recording file (blocking).
fn prepare(config: &EmulateConfig) -> Result<Prepared, EmulatorError> {
    let script = config
        .transcript
        .as_deref()
        .map(TranscriptScript::load)
        .transpose()?;
    let tracks = TrackSet::load(&config.wavs)?;
    let track_count = tracks.tracks.len();
    if config.unmixed && config.participant_ids.len() > track_count {
        return Err(EmulatorError::TooManyParticipants {
            given: config.participant_ids.len(),
            tracks: track_count,
        });
    }
    let participant_ids: Vec<String> = (0..track_count)
        .map(|i| {
            config
                .participant_ids
                .get(i)
                .cloned()
                .unwrap_or_else(|| config::default_participant_id(i))
        })
        .collect();
    let media = MediaPlan::build(
        &tracks,
        PlanOptions {
            start_time: config
                .start_time
                .unwrap_or_else(mediagate_protocol::Timestamp::now),
            unmixed: config.unmixed,
            silence: config.silence,
            participant_ids: &participant_ids,
            dtmf: &config.dtmf,
            subscription_id: config::fresh_subscription_id(),
        },
    );
    let transcript = script.map(|s| TranscriptPlan::build(s, config::fresh_subscription_id()));
    let recorder = config
        .record_outbound
        .as_deref()
        .map(|path| Recorder::create(path, tracks.format))
        .transpose()?;
    Ok(Prepared {
        media,
        transcript,
        recorder,
    })
}

/// What one transport did.
struct TransportOutcome<C> {
    /// What it sent.
    counts: C,
    /// When its last message was flushed.
    sending_ended: Instant,
    /// It did not send everything.
    stopped_early: bool,
    /// What the gateway sent on it.
    reader: ReaderOutcome,
}

async fn stream_media(
    conn: Connection,
    plan: MediaPlan,
    pacing: Pacing,
    start: Instant,
    end: EndMode,
    linger: Duration,
) -> Result<TransportOutcome<MediaCounts>, EmulatorError> {
    stream(
        conn,
        plan.metadata,
        end,
        linger,
        async |sink, closed, counts| {
            media::send_plan(sink, plan.entries, pacing, start, closed, counts).await
        },
    )
    .await
}

async fn stream_transcripts(
    conn: Connection,
    plan: TranscriptPlan,
    pacing: Pacing,
    start: Instant,
) -> Result<TransportOutcome<u64>, EmulatorError> {
    stream(
        conn,
        plan.metadata,
        EndMode::Close,
        Duration::ZERO,
        async |sink, closed, counts| {
            transcription::send_results(sink, plan.results, pacing, start, closed, counts).await
        },
    )
    .await
}

/// One transport's life: its metadata message, then `send` (the plan), then `linger` (unless the
/// gateway closes first), then the ending.
async fn stream<C: Default>(
    mut conn: Connection,
    metadata: tokio_tungstenite::tungstenite::Utf8Bytes,
    end: EndMode,
    linger: Duration,
    send: impl AsyncFnOnce(
        &mut connection::WsSink,
        tokio::sync::watch::Receiver<bool>,
        &mut C,
    ) -> Result<SendEnd, tokio_tungstenite::tungstenite::Error>,
) -> Result<TransportOutcome<C>, EmulatorError> {
    let mut counts = C::default();
    let closed = conn.gateway_closed.clone();
    let sent = match conn.sink.send(Message::Text(metadata)).await {
        Ok(()) => send(&mut conn.sink, closed, &mut counts).await,
        Err(e) => Err(e),
    };
    let sending_ended = Instant::now();
    if matches!(sent, Ok(SendEnd::Completed)) && !linger.is_zero() {
        // The reader goes on capturing; a gateway that closes (or vanishes) ends the wait.
        let mut closed = conn.gateway_closed.clone();
        let _ = tokio::time::timeout(linger, closed.wait_for(|closed| *closed)).await;
    }
    let stopped_early = !matches!(sent, Ok(SendEnd::Completed));
    let reader = conn.conclude(sent, end).await?;
    Ok(TransportOutcome {
        counts,
        sending_ended,
        stopped_early,
        reader,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        assert_send(&run(EmulateConfig::new("ws://127.0.0.1:9/")));
    }
}
