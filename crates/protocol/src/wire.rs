//! What is literally on the wire: a JSON object with a `kind` and one payload object, keys in any
//! case and any order. These types only borrow and check JSON types; [`crate::inbound`] and
//! [`crate::outbound`] turn them into the typed messages and enforce the protocol's rules.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::inbound::MAX_WORDS_PER_RESULT;

/// A string borrowed from the message text when it has no escapes, owned otherwise.
/// (`Option<Cow<str>>` through serde's own impl always allocates; this never does when it can borrow.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CowStr<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CowStrVisitor<'a>(PhantomData<&'a ()>);
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
        deserializer.deserialize_str(CowStrVisitor(PhantomData))
    }
}

impl CowStr<'_> {
    pub(crate) fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

/// Declares a wire struct whose fields are all `Option<T>`, and a [`Deserialize`] impl for it that
/// matches keys the way the protocol's tolerance rules ask: each field against one or more names,
/// ASCII-case-insensitively; `null` is the same as absent; unknown keys are skipped; a repeated key
/// (in any casing) overwrites the earlier one. Keys are read as [`CowStr`], so matching them
/// allocates nothing, and `'a`-borrowing fields borrow the message text.
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        struct $name:ident<'a>, expecting $expecting:literal {
            $( $(#[$field_meta:meta])* $field:ident: Option<$ty:ty> = [$($key:literal),+ $(,)?], )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub(crate) struct $name<'a> {
            $( $(#[$field_meta])* pub(crate) $field: Option<$ty>, )*
        }

        impl<'de: 'a, 'a> Deserialize<'de> for $name<'a> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct FieldsVisitor<'a>(PhantomData<&'a str>);
                impl<'de: 'a, 'a> Visitor<'de> for FieldsVisitor<'a> {
                    type Value = $name<'a>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                        let mut out = $name::default();
                        while let Some(CowStr(key)) = map.next_key::<CowStr<'de>>()? {
                            $(
                                if [$($key),+].iter().any(|name| key.eq_ignore_ascii_case(name)) {
                                    out.$field = map.next_value::<Option<$ty>>()?;
                                    continue;
                                }
                            )*
                            map.next_value::<IgnoredAny>()?;
                        }
                        Ok(out)
                    }
                }
                deserializer.deserialize_map(FieldsVisitor(PhantomData))
            }
        }
    };
}

wire_struct! {
    /// Every payload key of every message, on both sides of the media and transcription transports.
    struct Envelope<'a>, expecting "a JSON object with a `kind`" {
        kind: Option<CowStr<'a>> = ["kind"],
        audio_metadata: Option<AudioMetadataWire<'a>> = ["audioMetadata"],
        audio_data: Option<AudioDataWire<'a>> = ["audioData"],
        dtmf_data: Option<DtmfDataWire<'a>> = ["dtmfData"],
        transcription_metadata: Option<TranscriptionMetadataWire<'a>> = ["transcriptionMetadata"],
        transcription_data: Option<TranscriptionDataWire<'a>> = ["transcriptionData"],
        /// `StopAudio: {}` is the whole payload; present-and-not-null is all that matters.
        stop_audio: Option<IgnoredAny> = ["stopAudio"],
    }
}

/// Parses `text` as an envelope, mapping serde's errors onto [`crate::ProtocolError`].
pub(crate) fn parse_envelope(text: &str) -> Result<Envelope<'_>, crate::ProtocolError> {
    serde_json::from_str(text).map_err(|e| crate::ProtocolError::from_json(&e))
}

// Payload objects. Everything is optional here and checked later, so a missing field is a typed
// error rather than a serde message.

wire_struct! {
    /// The `audioMetadata` payload.
    struct AudioMetadataWire<'a>, expecting "an audioMetadata object" {
        subscription_id: Option<CowStr<'a>> = ["subscriptionId"],
        encoding: Option<CowStr<'a>> = ["encoding"],
        sample_rate: Option<i64> = ["sampleRate"],
        channels: Option<i64> = ["channels"],
        /// A hint only: any JSON value is accepted here, and judged later.
        length: Option<AnyValue<'a>> = ["length"],
    }
}

wire_struct! {
    /// The `audioData` payload, inbound and outbound.
    struct AudioDataWire<'a>, expecting "an audioData object" {
        /// Any JSON value: a bad timestamp must not cost the frame its audio.
        timestamp: Option<AnyValue<'a>> = ["timestamp"],
        data: Option<CowStr<'a>> = ["data"],
        silent: Option<bool> = ["silent", "isSilent"],
        participant_raw_id: Option<CowStr<'a>> = ["participantRawID"],
    }
}

wire_struct! {
    /// The `dtmfData` payload.
    struct DtmfDataWire<'a>, expecting "a dtmfData object" {
        data: Option<CowStr<'a>> = ["data"],
    }
}

wire_struct! {
    /// The `transcriptionMetadata` payload.
    struct TranscriptionMetadataWire<'a>, expecting "a transcriptionMetadata object" {
        subscription_id: Option<CowStr<'a>> = ["subscriptionId"],
        locale: Option<CowStr<'a>> = ["locale"],
        call_connection_id: Option<CowStr<'a>> = ["callConnectionId"],
        correlation_id: Option<CowStr<'a>> = ["correlationId"],
        speech_recognition_model_endpoint_id: Option<CowStr<'a>> =
            ["speechRecognitionModelEndpointId"],
    }
}

wire_struct! {
    /// The `transcriptionData` payload.
    struct TranscriptionDataWire<'a>, expecting "a transcriptionData object" {
        text: Option<CowStr<'a>> = ["text"],
        format: Option<CowStr<'a>> = ["format"],
        confidence: Option<f64> = ["confidence"],
        offset: Option<i64> = ["offset"],
        duration: Option<i64> = ["duration"],
        words: Option<WordsWire<'a>> = ["words"],
        participant_raw_id: Option<CowStr<'a>> = ["participantRawID"],
        result_status: Option<CowStr<'a>> = ["resultStatus"],
    }
}

wire_struct! {
    /// One entry of `words`.
    struct WordWire<'a>, expecting "a word object" {
        text: Option<CowStr<'a>> = ["text"],
        offset: Option<i64> = ["offset"],
        duration: Option<i64> = ["duration"],
    }
}

/// The `words` array, built only up to [`MAX_WORDS_PER_RESULT`]: the rest is checked as JSON and
/// counted, never materialized, so a message full of `{}` cannot expand into a huge `Vec`.
#[derive(Debug, Default)]
pub(crate) struct WordsWire<'a> {
    /// The first [`MAX_WORDS_PER_RESULT`] words at most.
    pub(crate) words: Vec<WordWire<'a>>,
    /// How many words the array held in all (more than `words.len()` when it was over the cap).
    pub(crate) total: usize,
}

impl<'de: 'a, 'a> Deserialize<'de> for WordsWire<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WordsVisitor<'a>(PhantomData<&'a str>);
        impl<'de: 'a, 'a> Visitor<'de> for WordsVisitor<'a> {
            type Value = WordsWire<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of words")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = WordsWire::default();
                while out.words.len() < MAX_WORDS_PER_RESULT {
                    match seq.next_element::<WordWire<'a>>()? {
                        Some(word) => out.words.push(word),
                        None => break,
                    }
                }
                out.total = out.words.len();
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    out.total += 1;
                }
                Ok(out)
            }
        }
        deserializer.deserialize_seq(WordsVisitor(PhantomData))
    }
}

/// Any JSON value, for a field that must not reject its message whatever it holds: a string
/// (borrowed when it can be), a non-negative integer, or something else (checked as JSON, then
/// dropped: negative and fractional numbers, booleans, arrays, objects).
#[derive(Debug)]
pub(crate) enum AnyValue<'a> {
    Str(CowStr<'a>),
    U64(u64),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for AnyValue<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AnyVisitor<'a>(PhantomData<&'a str>);
        impl<'de: 'a, 'a> Visitor<'de> for AnyVisitor<'a> {
            type Value = AnyValue<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(AnyValue::Str(CowStr(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(AnyValue::Str(CowStr(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(AnyValue::Str(CowStr(Cow::Owned(v))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(AnyValue::U64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(u64::try_from(v).map_or(AnyValue::Other, AnyValue::U64))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(AnyValue::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(AnyValue::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(AnyValue::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(AnyValue::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyValue::Other)
            }
        }
        deserializer.deserialize_any(AnyVisitor(PhantomData))
    }
}
