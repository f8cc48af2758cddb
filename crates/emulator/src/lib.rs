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
//! It speaks `ws://` and `wss://` (rustls, trusting the web's roots and
//! [`EmulateConfig::trusted_roots`]), and builds on `mediagate-protocol` for the wire format.
//!
//! [`control`] goes further: a fake of Call Automation's REST API that places calls through the
//! application's Event Grid webhook and, once one is answered, plays ACS's whole side of it:
//! the signed WebSocket upgrades, the streams above, and the callbacks.
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

use mediagate_audio::AudioFormat;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

pub use config::{EmulateConfig, EndMode, Pacing, SilencePolicy};
pub use connection::pem_certificates;
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
    run_with(config, RunControl::default()).await
}

/// How the control plane steers a run, beyond its configuration.
#[derive(Debug, Default)]
pub(crate) struct RunControl {
    /// When it becomes `true` (or its sender is dropped), every transport stops sending, sends
    /// its close frame (1000) and ends: the call was hung up.
    pub(crate) stop: Option<watch::Receiver<bool>>,
    /// Told once every transport of the run is open, before anything is sent on them.
    pub(crate) opened: Option<oneshot::Sender<()>>,
    /// Every transport stays open after its last message until `stop` (or the gateway closes
    /// it), as the platform's do for the length of the call.
    pub(crate) hold_open: bool,
    /// The call the transcript belongs to, written into its TranscriptionMetadata over what the
    /// script says.
    pub(crate) transcript_identity: Option<TranscriptIdentity>,
}

/// Who a transcript is of, as ACS writes it in TranscriptionMetadata.
#[derive(Debug, Clone, Default)]
pub(crate) struct TranscriptIdentity {
    pub(crate) call_connection_id: String,
    pub(crate) correlation_id: String,
    /// The locale asked for, when one was.
    pub(crate) locale: Option<String>,
}

/// How long "until stopped" is: longer than any call.
const HOLD_OPEN: Duration = Duration::from_secs(24 * 60 * 60);

/// [`run`], steered by `control`.
pub(crate) async fn run_with(
    config: EmulateConfig,
    mut control: RunControl,
) -> Result<EmulateReport, EmulatorError> {
    let urls = [config.url.clone(), config.transcription_url().to_owned()];
    let headers = config.upgrade_headers.clone();
    let tls = connection::tls_connector(&config.trusted_roots)?;
    let (pacing, end) = (config.pacing, config.end);
    let (linger, transcript_linger) = if control.hold_open {
        (HOLD_OPEN, HOLD_OPEN)
    } else {
        (config.linger, Duration::ZERO)
    };
    let identity = control.transcript_identity.take();
    let prepared = tokio::task::spawn_blocking(move || prepare(&config, identity.as_ref()))
        .await
        .map_err(|e| EmulatorError::Task(e.to_string()))??;
    let format = prepared
        .media
        .as_ref()
        .map_or(AudioFormat::mono(16_000), |plan| plan.format);
    let (media_conn, transcription_conn) =
        open_transports(&prepared, &urls, &headers, &tls, format).await?;
    if let Some(opened) = control.opened.take() {
        // A control plane that stopped listening has nothing to be told.
        let _ = opened.send(());
    }

    let start = Instant::now();
    let stop = control.stop.take();
    let phase = |end, linger| Phase {
        start,
        end,
        linger,
        stop: stop.clone(),
    };
    let Prepared {
        media: media_plan,
        transcript: transcript_plan,
        recorder,
    } = prepared;
    let media = async {
        match (media_conn, media_plan) {
            (Some(conn), Some(plan)) => stream_media(conn, plan, pacing, phase(end, linger))
                .await
                .map(Some),
            _ => Ok(None),
        }
    };
    let transcripts = async {
        match (transcription_conn, transcript_plan) {
            (Some(conn), Some(plan)) => {
                let phase = phase(EndMode::Close, transcript_linger);
                stream_transcripts(conn, plan, pacing, phase)
                    .await
                    .map(Some)
            }
            _ => Ok(None),
        }
    };
    let (media, transcripts) = tokio::try_join!(media, transcripts)?;
    let (report, samples) = report(media, transcripts, start, format, recorder.as_ref());
    if let (Some(recorder), Some(samples)) = (recorder, samples) {
        tokio::task::spawn_blocking(move || recorder.finish(&samples))
            .await
            .map_err(|e| EmulatorError::Task(e.to_string()))??;
    }
    tracing::debug!(
        url = urls[0],
        frames_sent = report.frames_sent,
        "emulation done"
    );
    Ok(report)
}

/// Opens the transports the plans need (media at `urls[0]`, transcription at `urls[1]`),
/// concurrently, each upgrade with `headers`.
async fn open_transports(
    prepared: &Prepared,
    urls: &[String; 2],
    headers: &[(String, String)],
    tls: &tokio_tungstenite::Connector,
    format: AudioFormat,
) -> Result<(Option<Connection>, Option<Connection>), EmulatorError> {
    let open = async |url: &str, wanted: bool, capture| match wanted {
        true => Connection::open(url, headers, tls, capture).await.map(Some),
        false => Ok(None),
    };
    let media_capture = OutboundCapture::new(format, prepared.recorder.is_some());
    tokio::try_join!(
        open(&urls[0], prepared.media.is_some(), media_capture),
        open(
            &urls[1],
            prepared.transcript.is_some(),
            OutboundCapture::new(format, false)
        ),
    )
}

/// The report of a run, and the outbound samples to record.
fn report(
    media: Option<TransportOutcome<MediaCounts>>,
    transcripts: Option<TransportOutcome<u64>>,
    start: Instant,
    format: AudioFormat,
    recorder: Option<&Recorder>,
) -> (EmulateReport, Option<Vec<i16>>) {
    let mut report = EmulateReport::default();
    let mut sending_ended = start;
    let mut samples = None;
    if let Some(media) = media {
        sending_ended = media.sending_ended;
        let capture = media.reader.capture;
        report = EmulateReport {
            frames_sent: media.counts.frames_sent,
            frames_skipped_silent: media.counts.frames_skipped_silent,
            audio_bytes_sent: media.counts.audio_bytes_sent,
            dtmf_sent: media.counts.dtmf_sent,
            messages_received_from_gateway: media.reader.messages,
            gateway_close: media.reader.close,
            stopped_early: media.stopped_early,
            outbound: capture.stats(
                &media.counts.sent_at,
                start,
                format,
                recorder.map(|r| r.path().to_owned()),
            ),
            ..EmulateReport::default()
        };
        samples = Some(capture.samples);
    }
    if let Some(t) = transcripts {
        report.transcripts_sent = t.counts;
        report.transcription_close = t.reader.close;
        report.stopped_early |= t.stopped_early;
        sending_ended = sending_ended.max(t.sending_ended);
    }
    report.elapsed = sending_ended.saturating_duration_since(start);
    (report, samples)
}

/// Everything read and encoded before connecting.
struct Prepared {
    /// `None` when the media transport is off.
    media: Option<MediaPlan>,
    transcript: Option<TranscriptPlan>,
    /// The (created, still empty) recording of the gateway's playback.
    recorder: Option<Recorder>,
}

/// Reads the inputs, encodes every message and creates the recording file (blocking).
fn prepare(
    config: &EmulateConfig,
    identity: Option<&TranscriptIdentity>,
) -> Result<Prepared, EmulatorError> {
    let mut script = config
        .transcript
        .as_deref()
        .map(TranscriptScript::load)
        .transpose()?;
    if let (Some(script), Some(identity)) = (&mut script, identity) {
        let metadata = &mut script.metadata;
        metadata.call_connection_id = Some(identity.call_connection_id.clone());
        metadata.correlation_id = Some(identity.correlation_id.clone());
        if identity.locale.is_some() {
            metadata.locale.clone_from(&identity.locale);
        }
    }
    if !config.media && script.is_none() {
        return Err(EmulatorError::NothingToStream);
    }
    let transcript = script.map(|s| TranscriptPlan::build(s, config::fresh_subscription_id()));
    if !config.media {
        return Ok(Prepared {
            media: None,
            transcript,
            recorder: None,
        });
    }
    let tracks = TrackSet::load(&config.wavs, config.sample_rate_hz)?;
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
    let recorder = config
        .record_outbound
        .as_deref()
        .map(|path| Recorder::create(path, tracks.format))
        .transpose()?;
    Ok(Prepared {
        media: Some(media),
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

/// When a transport's phases run and how it ends.
struct Phase {
    /// The first tick of the clock.
    start: Instant,
    /// How the transport ends once everything is sent.
    end: EndMode,
    /// How long it stays open after its last message.
    linger: Duration,
    /// Ends sending (and lingering) at once when it rises ([`RunControl::stop`]).
    stop: Option<watch::Receiver<bool>>,
}

async fn stream_media(
    conn: Connection,
    plan: MediaPlan,
    pacing: Pacing,
    phase: Phase,
) -> Result<TransportOutcome<MediaCounts>, EmulatorError> {
    let start = phase.start;
    stream(conn, plan.metadata, phase, async |sink, closed, counts| {
        media::send_plan(sink, plan.entries, pacing, start, closed, counts).await
    })
    .await
}

async fn stream_transcripts(
    conn: Connection,
    plan: TranscriptPlan,
    pacing: Pacing,
    phase: Phase,
) -> Result<TransportOutcome<u64>, EmulatorError> {
    let start = phase.start;
    stream(conn, plan.metadata, phase, async |sink, closed, counts| {
        transcription::send_results(sink, plan.results, pacing, start, closed, counts).await
    })
    .await
}

/// One transport's life: its metadata message, then `send` (the plan), then the linger (unless
/// the gateway closes first), then the ending. A stop ends the first two at once.
async fn stream<C: Default>(
    mut conn: Connection,
    metadata: tokio_tungstenite::tungstenite::Utf8Bytes,
    phase: Phase,
    send: impl AsyncFnOnce(
        &mut connection::WsSink,
        tokio::sync::watch::Receiver<bool>,
        &mut C,
    ) -> Result<SendEnd, tokio_tungstenite::tungstenite::Error>,
) -> Result<TransportOutcome<C>, EmulatorError> {
    let mut counts = C::default();
    let closed = conn.gateway_closed.clone();
    let mut stop = phase.stop;
    let sent = match conn.sink.send(Message::Text(metadata)).await {
        // Dropping `send` at a stop is safe: a message is either wholly queued or not at all.
        Ok(()) => tokio::select! {
            sent = send(&mut conn.sink, closed, &mut counts) => sent,
            () = stopped(&mut stop) => Ok(SendEnd::Stopped),
        },
        Err(e) => Err(e),
    };
    let sending_ended = Instant::now();
    if matches!(sent, Ok(SendEnd::Completed)) && !phase.linger.is_zero() {
        // The reader goes on capturing; a gateway that closes (or vanishes) ends the wait.
        let mut closed = conn.gateway_closed.clone();
        tokio::select! {
            _ = tokio::time::timeout(phase.linger, closed.wait_for(|closed| *closed)) => {}
            () = stopped(&mut stop) => {}
        }
    }
    let stopped_early = !matches!(sent, Ok(SendEnd::Completed));
    let reader = conn.conclude(sent, phase.end).await?;
    Ok(TransportOutcome {
        counts,
        sending_ended,
        stopped_early,
        reader,
    })
}

/// Resolves when `stop` rises or its sender is gone; never without one.
async fn stopped(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        Some(stop) => {
            // An error means the sender is gone: whoever could stop the run has, by leaving.
            let _ = stop.wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
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
