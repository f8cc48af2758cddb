//! The one error type of this crate.

use std::path::PathBuf;

use thiserror::Error;
use tokio_tungstenite::tungstenite;

/// Why an emulation could not start or could not deliver its stream.
///
/// Input errors (WAVs, script, DTMF specs) name the file or spec at fault; network errors name the
/// URL. A gateway that closes the socket with a close frame is not an error: the
/// [`crate::EmulateReport`] carries its close code. Underlying causes (I/O, WAV decoding,
/// WebSocket) are the error's [`std::error::Error::source`], not repeated in its message.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// No WAV file was given; the emulator needs at least one track.
    #[error("no WAV file given: the emulator needs at least one track")]
    NoTracks,
    /// A WAV file could not be opened or decoded.
    #[error("cannot read WAV file {}", .path.display())]
    WavRead {
        /// The file.
        path: PathBuf,
        /// What the WAV reader reported.
        #[source]
        source: mediagate_audio::wav::WavError,
    },
    /// The recording of the gateway's playback could not be created or written.
    #[error("cannot write recording {}", .path.display())]
    WavWrite {
        /// The file.
        path: PathBuf,
        /// What `hound` reported.
        #[source]
        source: hound::Error,
    },
    /// A WAV file holds something other than 16-bit integer PCM.
    #[error("{} is {found}, not 16-bit integer PCM", .path.display())]
    NotPcm16 {
        /// The file.
        path: PathBuf,
        /// The sample format it has, e.g. `32-bit float`.
        found: String,
    },
    /// A WAV file has more than one channel.
    #[error("{} has {channels} channels; ACS streams mono audio only", .path.display())]
    NotMono {
        /// The file.
        path: PathBuf,
        /// Its channel count.
        channels: u16,
    },
    /// A WAV file's sample rate is not one ACS streams.
    #[error("{} is sampled at {sample_rate_hz} Hz; ACS streams 16000 or 24000 Hz", .path.display())]
    UnsupportedRate {
        /// The file.
        path: PathBuf,
        /// Its sample rate.
        sample_rate_hz: u32,
    },
    /// The stream rate asked for is not one ACS streams.
    #[error("cannot stream at {sample_rate_hz} Hz; ACS streams 16000 or 24000 Hz")]
    UnsupportedStreamRate {
        /// The rate asked for.
        sample_rate_hz: u32,
    },
    /// A WAV file could not be resampled to the stream's rate.
    #[error("cannot resample {}", .path.display())]
    Resample {
        /// The file.
        path: PathBuf,
        /// What the resampler reported.
        #[source]
        source: mediagate_audio::FormatError,
    },
    /// Two WAV files have different sample rates (one stream has one rate).
    #[error(
        "{} is sampled at {sample_rate_hz} Hz but {} at {first_rate_hz} Hz: all tracks must share one rate",
        .path.display(), .first_path.display()
    )]
    MixedRates {
        /// The file that differs.
        path: PathBuf,
        /// Its sample rate.
        sample_rate_hz: u32,
        /// The first file, which set the stream's rate.
        first_path: PathBuf,
        /// The stream's rate.
        first_rate_hz: u32,
    },
    /// The media transport is off and no transcript was given: nothing to stream.
    #[error("nothing to stream: the media transport is off and no transcript script was given")]
    NothingToStream,
    /// More participant ids than WAV files (one participant per track).
    #[error("{given} participant ids given for {tracks} WAV files (one participant per track)")]
    TooManyParticipants {
        /// Participant ids given.
        given: usize,
        /// WAV files given.
        tracks: usize,
    },
    /// A DTMF spec is not `TONE@TIME`.
    #[error("bad DTMF spec `{spec}`: {reason} (expected TONE@TIME, e.g. `1@2.5s`, `#@1500ms`)")]
    BadDtmfSpec {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The transcript script could not be read.
    #[error("cannot read transcript script {}", .path.display())]
    TranscriptRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The transcript script is not valid.
    #[error("bad transcript script {}: {reason}", .path.display())]
    BadTranscript {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its position or result index.
        reason: String,
    },
    /// An upgrade header is not a valid HTTP header (its value is not repeated: it may be a
    /// secret).
    #[error("upgrade header `{name}` is not a valid HTTP header")]
    BadHeader {
        /// The header's name.
        name: String,
    },
    /// A root certificate given to trust for `wss://` is not one.
    #[error("{reason}")]
    TrustedRoot {
        /// What rustls said, and of what.
        reason: String,
    },
    /// The WebSocket connection could not be opened.
    #[error("cannot connect to {url}")]
    Connect {
        /// The URL.
        url: String,
        /// The WebSocket client's error.
        #[source]
        source: Box<tungstenite::Error>,
    },
    /// The connection failed while the stream was being sent.
    #[error("WebSocket error on {url}")]
    Socket {
        /// The URL.
        url: String,
        /// The WebSocket client's error.
        #[source]
        source: Box<tungstenite::Error>,
    },
    /// The gateway ended the connection mid-stream without a close frame.
    #[error("the gateway at {url} dropped the connection without a close frame ({detail})")]
    ConnectionLost {
        /// The URL.
        url: String,
        /// What the reader saw.
        detail: String,
    },
    /// The control-plane fake has no webhook to deliver Event Grid events to.
    #[error(
        "no webhook configured: Event Grid needs one (ControlPlaneOptions::webhook, --webhook)"
    )]
    NoWebhook,
    /// The webhook did not take an Event Grid delivery.
    #[error("the webhook at {url} did not take the event: {reason}")]
    Webhook {
        /// The webhook's scheme, host and port (its path and query are left out: the query may
        /// carry a secret).
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The webhook did not complete Event Grid's subscription handshake.
    #[error("the webhook at {url} did not validate the Event Grid subscription: {reason}")]
    SubscriptionNotValidated {
        /// The webhook's scheme, host and port.
        url: String,
        /// What was wrong with its answer.
        reason: String,
    },
    /// A background task (file loading) panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}
