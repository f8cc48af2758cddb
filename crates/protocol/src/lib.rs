//! The wire protocol of ACS Call Automation media streaming and transcription, sans-IO.
//!
//! This crate turns the text of one WebSocket message into a typed message and back. It has no
//! sockets, no runtime and no clock of its own: the server and the emulator drive it, tests and
//! fuzzers can call it directly.
//!
//! - [`parse_inbound`]: platform → gateway (AudioMetadata, AudioData, DtmfData,
//!   TranscriptionMetadata, TranscriptionData). The audio payload is borrowed from the message
//!   text, and decoded once, straight into a caller's buffer, by [`AudioData::decode_pcm`].
//! - [`write_outbound_audio`], [`stop_audio_json`], [`OutboundMessage::to_json`]:
//!   gateway → platform, in the PascalCase spelling by default ([`OutboundDialect`]).
//! - [`parse_outbound`] and [`InboundMessage::to_json`]: the other direction of each, for the
//!   emulator that plays the platform.
//!
//! Keys (of the envelope and of every payload) and `kind` values are matched case-insensitively,
//! unknown properties are ignored, `null` means absent, a repeated key overwrites the earlier one.
//! Hints never reject a message: a bad `timestamp` leaves the frame without one (and flagged, see
//! [`AudioData::invalid_timestamp`]), a bad `length` is dropped. Every failure is a
//! [`ProtocolError`] with a [`ErrorClass`].
//!
//! ```
//! use bytes::BytesMut;
//! use mediagate_protocol::{InboundMessage, parse_inbound};
//!
//! let text = r#"{"kind":"AudioData","audioData":{"timestamp":"2026-11-24T19:16:12.925Z",
//!               "data":"AAABAA==","silent":false}}"#;
//! let InboundMessage::AudioData(frame) = parse_inbound(text)? else { unreachable!() };
//! let mut pool = BytesMut::new();
//! let pcm = frame.decode_pcm(2, &mut pool)?;
//! assert_eq!(&pcm[..], &[0, 0, 1, 0]);
//! # Ok::<(), mediagate_protocol::ProtocolError>(())
//! ```

mod error;
mod inbound;
mod outbound;
mod pcm;
mod wire;

pub use error::{ErrorClass, ProtocolError};
pub use inbound::{
    AudioData, AudioMetadata, DtmfData, InboundMessage, MAX_WORDS_PER_RESULT, ResultStatus,
    TranscriptionData, TranscriptionMetadata, Word, parse_inbound,
};
/// Capture timestamps and the format limits are the audio domain's; re-exported so users of
/// this crate need not name `mediagate-audio`. The parser itself accepts any positive rate in
/// AudioMetadata: which rates are supported is the consumer's policy (the gateway closes the
/// socket with 1007 for one it does not take).
pub use mediagate_audio::{MAX_CHANNELS, MAX_SAMPLE_RATE_HZ, Timestamp};
pub use outbound::{
    OutboundDialect, OutboundMessage, parse_outbound, stop_audio_json, write_outbound_audio,
};
pub use pcm::{POOL_BLOCK_BYTES, decode_pcm, encode_pcm};
