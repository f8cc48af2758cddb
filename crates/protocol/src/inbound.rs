//! Platform → gateway: the media transport (AudioMetadata, AudioData, DtmfData) and the
//! transcription transport (TranscriptionMetadata, TranscriptionData).

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde::Serialize;

use crate::wire::{self, AnyValue, CowStr};
use crate::{MAX_CHANNELS, ProtocolError, Timestamp, pcm};
/// Most words one `TranscriptionData` may carry; a result with more is
/// [`ProtocolError::InvalidField`] (`words`). Bounds what one message can expand to in memory
/// (a 1 MiB message of `{}` words would otherwise become ~350k [`Word`]s); the words past the
/// cap are checked as JSON and counted, never built.
pub const MAX_WORDS_PER_RESULT: usize = 1_000;

/// One message from the platform, on either transport. Audio payloads borrow the message text.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundMessage<'a> {
    /// Format of the audio that follows (first message of a media transport).
    AudioMetadata(AudioMetadata),
    /// One 20 ms frame of audio, mixed or for one participant.
    AudioData(AudioData<'a>),
    /// A DTMF tone the caller pressed.
    DtmfData(DtmfData),
    /// First message of a transcription transport.
    TranscriptionMetadata(TranscriptionMetadata),
    /// A recognition result, intermediate or final.
    TranscriptionData(TranscriptionData),
}

impl InboundMessage<'_> {
    /// The canonical `kind` of this message.
    pub fn kind(&self) -> &'static str {
        match self {
            InboundMessage::AudioMetadata(_) => "AudioMetadata",
            InboundMessage::AudioData(_) => "AudioData",
            InboundMessage::DtmfData(_) => "DtmfData",
            InboundMessage::TranscriptionMetadata(_) => "TranscriptionMetadata",
            InboundMessage::TranscriptionData(_) => "TranscriptionData",
        }
    }

    /// Serializes the message as the platform sends it (camelCase keys, as in the vectors).
    pub fn to_json(&self) -> String {
        let result = match self {
            InboundMessage::AudioMetadata(m) => envelope_json("AudioMetadata", "audioMetadata", m),
            InboundMessage::AudioData(m) => envelope_json("AudioData", "audioData", m),
            InboundMessage::DtmfData(m) => envelope_json("DtmfData", "dtmfData", m),
            InboundMessage::TranscriptionMetadata(m) => {
                envelope_json("TranscriptionMetadata", "transcriptionMetadata", m)
            }
            InboundMessage::TranscriptionData(m) => {
                envelope_json("TranscriptionData", "transcriptionData", m)
            }
        };
        // Every payload type here serializes infallibly (strings, numbers, bools, vecs).
        result.unwrap_or_default()
    }
}

fn envelope_json<T: Serialize>(kind: &str, key: &str, payload: &T) -> serde_json::Result<String> {
    use serde::ser::SerializeMap;
    struct Env<'a, T> {
        kind: &'a str,
        key: &'a str,
        payload: &'a T,
    }
    impl<T: Serialize> Serialize for Env<'_, T> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(2))?;
            map.serialize_entry("kind", self.kind)?;
            map.serialize_entry(self.key, self.payload)?;
            map.end()
        }
    }
    serde_json::to_string(&Env { kind, key, payload })
}

/// `AudioMetadata`: the format of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioMetadata {
    /// The media streaming subscription this socket serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// Always `PCM` today.
    pub encoding: String,
    /// 16000 or 24000 from ACS.
    #[serde(rename = "sampleRate")]
    pub sample_rate_hz: u32,
    /// 1 from ACS.
    pub channels: u16,
    /// Bytes of PCM in one 20 ms frame, as announced; a hint only (the decoded size is the truth).
    #[serde(rename = "length", skip_serializing_if = "Option::is_none")]
    pub frame_bytes_hint: Option<u32>,
}

/// `AudioData`: one frame of audio. The base64 payload is borrowed from the message text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioData<'a> {
    /// Capture time of the frame's first sample, if the platform sent a valid one. A timestamp
    /// that is present but not an RFC 3339 date-time (or not a string) is `None` here, and
    /// [`AudioData::invalid_timestamp`] says so: the frame's audio is kept either way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// `true` when the message had a `timestamp` (not `null`) that could not be parsed as an
    /// RFC 3339 date-time; then [`AudioData::timestamp`] is `None`. `false` when the timestamp
    /// was valid or absent. For the caller to count; never serialized.
    #[serde(skip)]
    pub invalid_timestamp: bool,
    /// The participant, for unmixed audio (`8:acs:…`, `4:+1425…`); `None` for mixed audio.
    #[serde(rename = "participantRawID", skip_serializing_if = "Option::is_none")]
    pub participant_raw_id: Option<Cow<'a, str>>,
    /// Base64 PCM16 LE, still encoded: see [`AudioData::decode_pcm`].
    #[serde(rename = "data")]
    pub data_base64: Cow<'a, str>,
    /// The platform's flag for a frame with no speech in it.
    pub silent: bool,
}

impl AudioData<'_> {
    /// Decodes the payload into `pool` (see [`pcm::decode_pcm`]).
    pub fn decode_pcm(
        &self,
        bytes_per_sample: usize,
        pool: &mut BytesMut,
    ) -> Result<Bytes, ProtocolError> {
        pcm::decode_pcm(&self.data_base64, bytes_per_sample, pool)
    }
}

/// `DtmfData`: one key press.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DtmfData {
    /// The tone: `0`–`9`, `*`, `#`, `A`–`D` (kept as sent).
    #[serde(rename = "data")]
    pub tone: String,
}

/// `TranscriptionMetadata`: who this transcription stream belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptionMetadata {
    /// The transcription subscription.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// Recognition locale, e.g. `en-us`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// The call connection: the best identity of the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_connection_id: Option<String>,
    /// Correlation id across the platform's logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Custom speech model endpoint, when one is used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech_recognition_model_endpoint_id: Option<String>,
}

/// Whether a recognition result may still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ResultStatus {
    /// A partial hypothesis; a later result replaces it.
    Intermediate,
    /// The settled text of an utterance.
    Final,
}

/// `TranscriptionData`: one recognition result.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptionData {
    /// Recognized text.
    pub text: String,
    /// `display` from ACS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// 0..1, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Start of the utterance, in 100 ns ticks from the start of transcription.
    #[serde(rename = "offset")]
    pub offset_ticks: i64,
    /// Length of the utterance, in 100 ns ticks.
    #[serde(rename = "duration")]
    pub duration_ticks: i64,
    /// Word timings.
    pub words: Vec<Word>,
    /// The speaker, when known.
    #[serde(rename = "participantRawID", skip_serializing_if = "Option::is_none")]
    pub participant_raw_id: Option<String>,
    /// Intermediate or final.
    pub result_status: ResultStatus,
}

/// One recognized word with its timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Word {
    /// The word.
    pub text: String,
    /// Start, in 100 ns ticks from the start of transcription.
    #[serde(rename = "offset")]
    pub offset_ticks: i64,
    /// Length, in 100 ns ticks.
    #[serde(rename = "duration")]
    pub duration_ticks: i64,
}

/// Parses one message from the platform (either transport).
pub fn parse_inbound(text: &str) -> Result<InboundMessage<'_>, ProtocolError> {
    let env = wire::parse_envelope(text)?;
    let kind = match env.kind {
        Some(CowStr(kind)) => kind,
        None => return Err(ProtocolError::MissingField("kind")),
    };
    let is = |name: &str| kind.eq_ignore_ascii_case(name);
    if is("AudioData") {
        let payload = env
            .audio_data
            .ok_or(ProtocolError::MissingField("audioData"))?;
        audio_data(payload).map(InboundMessage::AudioData)
    } else if is("AudioMetadata") {
        let payload = env
            .audio_metadata
            .ok_or(ProtocolError::MissingField("audioMetadata"))?;
        audio_metadata(payload).map(InboundMessage::AudioMetadata)
    } else if is("DtmfData") {
        let payload = env
            .dtmf_data
            .ok_or(ProtocolError::MissingField("dtmfData"))?;
        let tone = payload
            .data
            .map(CowStr::into_owned)
            .filter(|t| !t.is_empty())
            .ok_or(ProtocolError::MissingField("data"))?;
        Ok(InboundMessage::DtmfData(DtmfData { tone }))
    } else if is("TranscriptionMetadata") {
        let payload = env
            .transcription_metadata
            .ok_or(ProtocolError::MissingField("transcriptionMetadata"))?;
        Ok(InboundMessage::TranscriptionMetadata(
            TranscriptionMetadata {
                subscription_id: payload.subscription_id.map(CowStr::into_owned),
                locale: payload.locale.map(CowStr::into_owned),
                call_connection_id: payload.call_connection_id.map(CowStr::into_owned),
                correlation_id: payload.correlation_id.map(CowStr::into_owned),
                speech_recognition_model_endpoint_id: payload
                    .speech_recognition_model_endpoint_id
                    .map(CowStr::into_owned),
            },
        ))
    } else if is("TranscriptionData") {
        let payload = env
            .transcription_data
            .ok_or(ProtocolError::MissingField("transcriptionData"))?;
        transcription_data(payload).map(InboundMessage::TranscriptionData)
    } else {
        Err(ProtocolError::UnknownKind(kind.into_owned()))
    }
}

fn audio_metadata(w: wire::AudioMetadataWire<'_>) -> Result<AudioMetadata, ProtocolError> {
    let sample_rate = w
        .sample_rate
        .ok_or(ProtocolError::MissingField("sampleRate"))?;
    // Any positive rate is a well-formed message: which rates a consumer supports is its policy
    // (the gateway closes the socket for one it does not), not the wire format's. Zero, negative
    // and out-of-range numbers are malformed.
    let sample_rate_hz = u32::try_from(sample_rate)
        .ok()
        .filter(|hz| *hz >= 1)
        .ok_or_else(|| ProtocolError::InvalidField {
            field: "sampleRate",
            reason: format!("{sample_rate} Hz is not a possible sample rate"),
        })?;
    let channels = w.channels.unwrap_or(1);
    let channels = u16::try_from(channels)
        .ok()
        .filter(|c| (1..=MAX_CHANNELS).contains(c))
        .ok_or_else(|| ProtocolError::InvalidField {
            field: "channels",
            reason: format!("{channels} channels is not a possible layout"),
        })?;
    let encoding = w
        .encoding
        .map_or_else(|| "PCM".to_owned(), CowStr::into_owned);
    if !encoding.eq_ignore_ascii_case("PCM") {
        return Err(ProtocolError::InvalidField {
            field: "encoding",
            reason: format!("`{encoding}` is not supported (only PCM16)"),
        });
    }
    // A hint only: anything but a byte count that fits a u32 (negative, 960.0, "640", …) is
    // dropped rather than costing the stream its metadata.
    let frame_bytes_hint = match w.length {
        Some(AnyValue::U64(len)) => u32::try_from(len).ok(),
        _ => None,
    };
    Ok(AudioMetadata {
        subscription_id: w.subscription_id.map(CowStr::into_owned),
        encoding,
        sample_rate_hz,
        channels,
        frame_bytes_hint,
    })
}

fn audio_data(w: wire::AudioDataWire<'_>) -> Result<AudioData<'_>, ProtocolError> {
    let data_base64 = w.data.ok_or(ProtocolError::MissingField("data"))?.0;
    // A bad timestamp costs the frame its place on the timeline, not its audio.
    let (timestamp, invalid_timestamp) = match w.timestamp {
        None => (None, false),
        Some(AnyValue::Str(CowStr(text))) => match Timestamp::parse_rfc3339(&text) {
            Ok(at) => (Some(at), false),
            Err(_) => (None, true),
        },
        Some(_) => (None, true),
    };
    Ok(AudioData {
        timestamp,
        invalid_timestamp,
        participant_raw_id: w.participant_raw_id.map(|p| p.0),
        data_base64,
        silent: w.silent.unwrap_or(false),
    })
}

fn transcription_data(
    w: wire::TranscriptionDataWire<'_>,
) -> Result<TranscriptionData, ProtocolError> {
    let text = w
        .text
        .ok_or(ProtocolError::MissingField("text"))?
        .into_owned();
    let status = w
        .result_status
        .ok_or(ProtocolError::MissingField("resultStatus"))?
        .0;
    let result_status = if status.eq_ignore_ascii_case("Final") {
        ResultStatus::Final
    } else if status.eq_ignore_ascii_case("Intermediate") {
        ResultStatus::Intermediate
    } else {
        return Err(ProtocolError::InvalidField {
            field: "resultStatus",
            reason: format!("`{status}` is neither Intermediate nor Final"),
        });
    };
    let words = w.words.unwrap_or_default();
    if words.total > MAX_WORDS_PER_RESULT {
        return Err(ProtocolError::InvalidField {
            field: "words",
            reason: format!(
                "{} words is more than the {MAX_WORDS_PER_RESULT} one result may carry",
                words.total
            ),
        });
    }
    let words = words
        .words
        .into_iter()
        .map(|word| Word {
            text: word.text.map(CowStr::into_owned).unwrap_or_default(),
            offset_ticks: word.offset.unwrap_or(0),
            duration_ticks: word.duration.unwrap_or(0),
        })
        .collect();
    Ok(TranscriptionData {
        text,
        format: w.format.map(CowStr::into_owned),
        confidence: w.confidence,
        offset_ticks: w.offset.unwrap_or(0),
        duration_ticks: w.duration.unwrap_or(0),
        words,
        participant_raw_id: w.participant_raw_id.map(CowStr::into_owned),
        result_status,
    })
}
