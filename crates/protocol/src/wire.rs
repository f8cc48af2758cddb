//! What is literally on the wire: a JSON object with a `kind` and one payload object, keys in any
//! case and any order. These types only borrow and check JSON types; [`crate::inbound`] and
//! [`crate::outbound`] turn them into the typed messages and enforce the protocol's rules.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

/// A string borrowed from the message text when it has no escapes, owned otherwise.
/// (`Option<Cow<str>>` through serde's own impl always allocates; this never does when it can borrow.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CowStr<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CowStrVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for CowStrVisitor<'a> {
            type Value = CowStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(CowStrVisitor(std::marker::PhantomData))
    }
}

impl CowStr<'_> {
    pub(crate) fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

/// Every payload key of every message, on both sides of the media and transcription transports.
#[derive(Debug, Default)]
pub(crate) struct Envelope<'a> {
    pub(crate) kind: Option<CowStr<'a>>,
    pub(crate) audio_metadata: Option<AudioMetadataWire<'a>>,
    pub(crate) audio_data: Option<AudioDataWire<'a>>,
    pub(crate) dtmf_data: Option<DtmfDataWire<'a>>,
    pub(crate) transcription_metadata: Option<TranscriptionMetadataWire<'a>>,
    pub(crate) transcription_data: Option<TranscriptionDataWire<'a>>,
    /// `StopAudio: {}` is the whole payload; present-and-not-null is all that matters.
    pub(crate) stop_audio: bool,
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with a `kind`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut env = Envelope::default();
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            let key = key.0;
            let is = |name: &str| key.eq_ignore_ascii_case(name);
            if is("kind") {
                env.kind = map.next_value()?;
            } else if is("audioMetadata") {
                env.audio_metadata = map.next_value()?;
            } else if is("audioData") {
                env.audio_data = map.next_value()?;
            } else if is("dtmfData") {
                env.dtmf_data = map.next_value()?;
            } else if is("transcriptionMetadata") {
                env.transcription_metadata = map.next_value()?;
            } else if is("transcriptionData") {
                env.transcription_data = map.next_value()?;
            } else if is("stopAudio") {
                env.stop_audio = map.next_value::<Option<IgnoredAny>>()?.is_some();
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(env)
    }
}

/// Parses `text` as an envelope, mapping serde's errors onto [`crate::ProtocolError`].
pub(crate) fn parse_envelope(text: &str) -> Result<Envelope<'_>, crate::ProtocolError> {
    serde_json::from_str(text).map_err(|e| crate::ProtocolError::from_json(&e))
}

// Payload objects. camelCase is canonical; the PascalCase spelling (and the id's other casings) are
// aliases, per the protocol's tolerance rules. Everything is optional here and checked later, so
// a missing field is a typed error rather than a serde message.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AudioMetadataWire<'a> {
    #[serde(borrow, default, alias = "SubscriptionId", alias = "subscriptionID")]
    pub(crate) subscription_id: Option<CowStr<'a>>,
    #[serde(borrow, default, alias = "Encoding")]
    pub(crate) encoding: Option<CowStr<'a>>,
    #[serde(default, alias = "SampleRate")]
    pub(crate) sample_rate: Option<i64>,
    #[serde(default, alias = "Channels")]
    pub(crate) channels: Option<i64>,
    #[serde(default, alias = "Length")]
    pub(crate) length: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AudioDataWire<'a> {
    #[serde(borrow, default, alias = "Timestamp")]
    pub(crate) timestamp: Option<CowStr<'a>>,
    #[serde(borrow, default, alias = "Data")]
    pub(crate) data: Option<CowStr<'a>>,
    #[serde(default, alias = "Silent", alias = "isSilent", alias = "IsSilent")]
    pub(crate) silent: Option<bool>,
    #[serde(
        borrow,
        default,
        rename = "participantRawID",
        alias = "ParticipantRawID",
        alias = "participantRawId",
        alias = "ParticipantRawId",
        alias = "participantRawid"
    )]
    pub(crate) participant_raw_id: Option<CowStr<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DtmfDataWire<'a> {
    #[serde(borrow, default, alias = "Data")]
    pub(crate) data: Option<CowStr<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TranscriptionMetadataWire<'a> {
    #[serde(borrow, default, alias = "SubscriptionId", alias = "subscriptionID")]
    pub(crate) subscription_id: Option<CowStr<'a>>,
    #[serde(borrow, default, alias = "Locale")]
    pub(crate) locale: Option<CowStr<'a>>,
    #[serde(
        borrow,
        default,
        alias = "CallConnectionId",
        alias = "callConnectionID"
    )]
    pub(crate) call_connection_id: Option<CowStr<'a>>,
    #[serde(borrow, default, alias = "CorrelationId", alias = "correlationID")]
    pub(crate) correlation_id: Option<CowStr<'a>>,
    #[serde(borrow, default, alias = "SpeechRecognitionModelEndpointId")]
    pub(crate) speech_recognition_model_endpoint_id: Option<CowStr<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TranscriptionDataWire<'a> {
    #[serde(borrow, default, alias = "Text")]
    pub(crate) text: Option<CowStr<'a>>,
    #[serde(borrow, default, alias = "Format")]
    pub(crate) format: Option<CowStr<'a>>,
    #[serde(default, alias = "Confidence")]
    pub(crate) confidence: Option<f64>,
    #[serde(default, alias = "Offset")]
    pub(crate) offset: Option<i64>,
    #[serde(default, alias = "Duration")]
    pub(crate) duration: Option<i64>,
    #[serde(borrow, default, alias = "Words")]
    pub(crate) words: Option<Vec<WordWire<'a>>>,
    #[serde(
        borrow,
        default,
        rename = "participantRawID",
        alias = "ParticipantRawID",
        alias = "participantRawId",
        alias = "ParticipantRawId"
    )]
    pub(crate) participant_raw_id: Option<CowStr<'a>>,
    #[serde(borrow, default, alias = "ResultStatus")]
    pub(crate) result_status: Option<CowStr<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WordWire<'a> {
    #[serde(borrow, default, alias = "Text")]
    pub(crate) text: Option<CowStr<'a>>,
    #[serde(default, alias = "Offset")]
    pub(crate) offset: Option<i64>,
    #[serde(default, alias = "Duration")]
    pub(crate) duration: Option<i64>,
}
