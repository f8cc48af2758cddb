//! Gateway → platform (bidirectional media streaming): audio to play into the call, and
//! StopAudio to drop what the platform still has queued.

use std::borrow::Cow;

use serde::Deserialize;

use crate::wire::{self, CowStr};
use crate::{ProtocolError, pcm};

/// How outbound messages are spelled. ACS accepts both; PascalCase is what the ACS documentation
/// and the .NET SDK send, camelCase is what the JS SDK's helpers produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboundDialect {
    /// `{"Kind":"AudioData","AudioData":{"Data":…},"StopAudio":null}` (the default).
    #[default]
    #[serde(alias = "PascalCase", alias = "pascal_case")]
    Pascal,
    /// `{"kind":"audioData","audioData":{"data":…,"isSilent":false},"stopAudio":null}`.
    #[serde(alias = "camelCase", alias = "camel_case")]
    Camel,
}

/// One message to the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundMessage<'a> {
    /// Audio to play, base64 PCM16 LE in the call's own format.
    AudioData {
        /// Still-encoded payload (borrowed when parsed).
        data_base64: Cow<'a, str>,
    },
    /// Drop all queued outbound audio (barge-in).
    StopAudio,
}

impl OutboundMessage<'_> {
    /// Serializes the message in `dialect`.
    pub fn to_json(&self, dialect: OutboundDialect) -> String {
        match self {
            OutboundMessage::AudioData { data_base64 } => {
                let mut out = String::with_capacity(data_base64.len() + 96);
                write_audio_prefix(dialect, &mut out);
                out.push_str(data_base64);
                write_audio_suffix(dialect, &mut out);
                out
            }
            OutboundMessage::StopAudio => stop_audio_json(dialect).to_owned(),
        }
    }
}

/// Writes an outbound AudioData message for raw `pcm` into `out`, base64-encoding in place (no
/// intermediate string). `out` is cleared first so a caller can reuse one buffer per call.
pub fn write_outbound_audio(pcm_bytes: &[u8], dialect: OutboundDialect, out: &mut String) {
    out.clear();
    out.reserve(pcm_bytes.len().div_ceil(3) * 4 + 96);
    write_audio_prefix(dialect, out);
    pcm::encode_pcm(pcm_bytes, out);
    write_audio_suffix(dialect, out);
}

/// The StopAudio message in `dialect`.
pub const fn stop_audio_json(dialect: OutboundDialect) -> &'static str {
    match dialect {
        OutboundDialect::Pascal => r#"{"Kind":"StopAudio","AudioData":null,"StopAudio":{}}"#,
        OutboundDialect::Camel => r#"{"kind":"stopAudio","audioData":null,"stopAudio":{}}"#,
    }
}

fn write_audio_prefix(dialect: OutboundDialect, out: &mut String) {
    out.push_str(match dialect {
        OutboundDialect::Pascal => r#"{"Kind":"AudioData","AudioData":{"Data":""#,
        OutboundDialect::Camel => r#"{"kind":"audioData","audioData":{"data":""#,
    });
}

fn write_audio_suffix(dialect: OutboundDialect, out: &mut String) {
    out.push_str(match dialect {
        OutboundDialect::Pascal => r#""},"StopAudio":null}"#,
        OutboundDialect::Camel => r#"","isSilent":false},"stopAudio":null}"#,
    });
}

/// Parses a message the gateway sends (either dialect): what the emulator, playing the platform,
/// receives.
pub fn parse_outbound(text: &str) -> Result<OutboundMessage<'_>, ProtocolError> {
    let env = wire::parse_envelope(text)?;
    let kind = match env.kind {
        Some(CowStr(kind)) => kind,
        None => return Err(ProtocolError::MissingField("kind")),
    };
    if kind.eq_ignore_ascii_case("AudioData") {
        let payload = env
            .audio_data
            .ok_or(ProtocolError::MissingField("audioData"))?;
        let data_base64 = payload.data.ok_or(ProtocolError::MissingField("data"))?.0;
        Ok(OutboundMessage::AudioData { data_base64 })
    } else if kind.eq_ignore_ascii_case("StopAudio") {
        Ok(OutboundMessage::StopAudio)
    } else {
        Err(ProtocolError::UnknownKind(kind.into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_round_trip() {
        for dialect in [OutboundDialect::Pascal, OutboundDialect::Camel] {
            let mut text = String::new();
            write_outbound_audio(&[0, 1, 2, 3], dialect, &mut text);
            let parsed = parse_outbound(&text).unwrap();
            assert_eq!(
                parsed,
                OutboundMessage::AudioData {
                    data_base64: Cow::Borrowed("AAECAw==")
                }
            );
            assert_eq!(
                parse_outbound(stop_audio_json(dialect)).unwrap(),
                OutboundMessage::StopAudio
            );
            assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
        }
    }
}
