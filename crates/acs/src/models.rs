//! The requests and responses of the Call Automation REST API, field for field as the
//! reference (API 2025-03-30) names them. Optional fields are left out of a request when
//! `None`; unknown fields of a response are ignored, and unknown enum values read as `Unknown`.

// The fields are the reference's, spelled as it spells them in camelCase; it documents them.
#![allow(missing_docs)]

use serde::{Deserialize, Serialize};

/// Who someone is: a phone number, an ACS user, a Teams user or app. `rawId` alone is enough
/// to name a participant; the constructors fill in `kind` and the typed field as ACS does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommunicationIdentifier {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<IdentifierKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub communication_user: Option<CommunicationUser>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<PhoneNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub microsoft_teams_user: Option<MicrosoftTeamsUser>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub microsoft_teams_app: Option<MicrosoftTeamsApp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teams_extension_user: Option<TeamsExtensionUser>,
}

impl CommunicationIdentifier {
    /// A phone number in E.164 (`+14255550123`); its raw id is `4:+14255550123`.
    pub fn phone(number: &str) -> Self {
        CommunicationIdentifier {
            kind: Some(IdentifierKind::PhoneNumber),
            raw_id: Some(format!("4:{number}")),
            phone_number: Some(PhoneNumber {
                value: number.to_owned(),
                ..PhoneNumber::default()
            }),
            ..Self::default()
        }
    }

    /// An ACS user (`8:acs:…`), whose id is also its raw id.
    pub fn user(id: &str) -> Self {
        CommunicationIdentifier {
            kind: Some(IdentifierKind::CommunicationUser),
            raw_id: Some(id.to_owned()),
            communication_user: Some(CommunicationUser { id: id.to_owned() }),
            ..Self::default()
        }
    }

    /// From a raw id: `4:` is a phone number, `8:acs:` (and the other `8:` prefixes of ACS
    /// identities) a user; anything else is sent as a raw id only.
    pub fn from_raw_id(raw: &str) -> Self {
        if let Some(number) = raw.strip_prefix("4:") {
            Self::phone(number)
        } else if raw.starts_with("8:acs:")
            || raw.starts_with("8:spool:")
            || raw.starts_with("8:dod-acs:")
            || raw.starts_with("8:gcch-acs:")
        {
            Self::user(raw)
        } else {
            CommunicationIdentifier {
                raw_id: Some(raw.to_owned()),
                ..Self::default()
            }
        }
    }

    /// The raw id, or one made from the typed field.
    pub fn raw(&self) -> Option<String> {
        if let Some(raw) = &self.raw_id {
            return Some(raw.clone());
        }
        if let Some(phone) = &self.phone_number {
            return Some(format!("4:{}", phone.value));
        }
        self.communication_user.as_ref().map(|u| u.id.clone())
    }

    /// The phone number, when this is one.
    pub fn phone_number(&self) -> Option<&str> {
        match (&self.phone_number, &self.raw_id) {
            (Some(phone), _) => Some(&phone.value),
            (None, Some(raw)) => raw.strip_prefix("4:"),
            _ => None,
        }
    }
}

/// `kind` of an identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IdentifierKind {
    CommunicationUser,
    PhoneNumber,
    MicrosoftTeamsUser,
    MicrosoftTeamsApp,
    TeamsExtensionUser,
    #[serde(other)]
    Unknown,
}

/// An ACS user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunicationUser {
    pub id: String,
}

/// A phone number (`value` in E.164).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneNumber {
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_anonymous: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asserted_id: Option<String>,
}

/// A Teams user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MicrosoftTeamsUser {
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_anonymous: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
}

/// A Teams app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MicrosoftTeamsApp {
    pub app_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
}

/// A Teams Phone extension user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamsExtensionUser {
    pub user_id: String,
    pub tenant_id: String,
    pub resource_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
}

/// Who answered: the ACS user the call is answered as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunicationUserIdentifier {
    pub id: String,
}

/// Azure AI services for play with text and recognition of speech.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallIntelligenceOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cognitive_services_endpoint: Option<String>,
}

/// Media streaming to a WebSocket: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaStreamingOptions {
    pub transport_url: String,
    pub transport_type: StreamingTransportType,
    pub content_type: MediaStreamingContentType,
    pub audio_channel_type: AudioChannelType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_media_streaming: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_bidirectional: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_format: Option<AudioFormat>,
}

/// Real-time transcription to a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptionOptions {
    pub transport_url: String,
    pub transport_type: StreamingTransportType,
    pub locale: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech_recognition_model_endpoint_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_transcription: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_intermediate_results: Option<bool>,
}

/// `transportType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamingTransportType {
    Websocket,
}

/// `contentType` of media streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MediaStreamingContentType {
    Audio,
}

/// `audioChannelType`: one mixed stream, or one per participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AudioChannelType {
    Mixed,
    Unmixed,
}

/// `audioFormat`: PCM16 mono at 16 or 24 kHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AudioFormat {
    #[serde(rename = "pcm16KMono")]
    Pcm16KMono,
    #[serde(rename = "pcm24KMono")]
    Pcm24KMono,
}

/// `POST /calling/callConnections:answer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnswerCallRequest {
    pub incoming_call_context: String,
    pub callback_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_intelligence_options: Option<CallIntelligenceOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<CommunicationUserIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_streaming_options: Option<MediaStreamingOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcription_options: Option<TranscriptionOptions>,
}

/// `POST /calling/callConnections` (an outbound call).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCallRequest {
    pub targets: Vec<CommunicationIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_caller_id_number: Option<PhoneNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<CommunicationUserIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
    pub callback_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_intelligence_options: Option<CallIntelligenceOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_streaming_options: Option<MediaStreamingOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcription_options: Option<TranscriptionOptions>,
}

/// `POST /calling/callConnections:redirect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedirectCallRequest {
    pub incoming_call_context: String,
    pub target: CommunicationIdentifier,
}

/// `POST /calling/callConnections:reject`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectCallRequest {
    pub incoming_call_context: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_reject_reason: Option<CallRejectReason>,
}

/// `callRejectReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CallRejectReason {
    None,
    Busy,
    Forbidden,
}

/// A call to connect to: a group call, a server call or a room.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallLocator {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `POST /calling/callConnections:connect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectRequest {
    pub call_locator: CallLocator,
    pub callback_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_intelligence_options: Option<CallIntelligenceOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_streaming_options: Option<MediaStreamingOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcription_options: Option<TranscriptionOptions>,
}

/// A call's state, as answer, create, connect and get return it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallConnectionProperties {
    #[serde(default)]
    pub call_connection_id: String,
    pub server_call_id: Option<String>,
    #[serde(default)]
    pub targets: Vec<CommunicationIdentifier>,
    pub call_connection_state: Option<CallConnectionState>,
    pub callback_uri: Option<String>,
    pub source_caller_id_number: Option<PhoneNumber>,
    pub source_display_name: Option<String>,
    pub source: Option<CommunicationIdentifier>,
    pub correlation_id: Option<String>,
    pub answered_by: Option<CommunicationUserIdentifier>,
    pub media_streaming_subscription: Option<Subscription>,
    pub transcription_subscription: Option<Subscription>,
    pub answered_for: Option<PhoneNumber>,
}

/// `callConnectionState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CallConnectionState {
    Connecting,
    Connected,
    Transferring,
    TransferAccepted,
    Disconnecting,
    Disconnected,
    #[serde(other)]
    Unknown,
}

/// A media streaming or transcription subscription of a call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: Option<String>,
    /// `disabled`, `inactive` or `active`.
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed_content_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed_result_types: Option<Vec<String>>,
}

/// `POST …:transferToParticipant`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferToParticipantRequest {
    pub target_participant: CommunicationIdentifier,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transferee: Option<CommunicationIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_callback_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_calling_context: Option<CustomCallingContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_caller_id_number: Option<PhoneNumber>,
}

/// SIP and VoIP headers passed along with a transfer or an added participant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomCallingContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voip_headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_headers: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The 202 of transfer, remove and send DTMF: the operation context echoed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationAccepted {
    pub operation_context: Option<String>,
}

/// Something to play: a file (a WAV at a URL ACS can fetch), text or SSML (spoken by Azure AI
/// speech).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaySource {
    pub kind: PlaySourceKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub play_source_cache_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<TextSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssml: Option<SsmlSource>,
}

impl PlaySource {
    /// A WAV file at `uri`.
    pub fn file(uri: &str) -> Self {
        PlaySource {
            kind: PlaySourceKind::File,
            play_source_cache_id: None,
            file: Some(FileSource {
                uri: uri.to_owned(),
            }),
            text: None,
            ssml: None,
        }
    }

    /// `text`, spoken in `voice_name` (an Azure neural voice) when given.
    pub fn text(text: &str, voice_name: Option<&str>) -> Self {
        PlaySource {
            kind: PlaySourceKind::Text,
            play_source_cache_id: None,
            file: None,
            text: Some(TextSource {
                text: text.to_owned(),
                voice_name: voice_name.map(str::to_owned),
                ..TextSource::default()
            }),
            ssml: None,
        }
    }
}

/// `kind` of a play source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PlaySourceKind {
    File,
    Text,
    Ssml,
}

/// A file to play.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSource {
    pub uri: String,
}

/// Text to speak.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TextSource {
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_locale: Option<String>,
    /// `male` or `female`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_voice_endpoint_id: Option<String>,
}

/// SSML to speak.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SsmlSource {
    pub ssml_text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_voice_endpoint_id: Option<String>,
}

/// `POST …:play`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayRequest {
    pub play_sources: Vec<PlaySource>,
    /// Who hears it; everyone when empty.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub play_to: Vec<CommunicationIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupt_call_media_operation: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub play_options: Option<PlayOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_callback_uri: Option<String>,
}

/// `playOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayOptions {
    #[serde(rename = "loop")]
    pub looped: bool,
}

/// `POST …:recognize`: DTMF (the gateway's use), speech or choices, after an optional prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecognizeRequest {
    pub recognize_input_type: RecognizeInputType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub play_prompt: Option<PlaySource>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub play_prompts: Vec<PlaySource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupt_call_media_operation: Option<bool>,
    pub recognize_options: RecognizeOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_callback_uri: Option<String>,
}

/// `recognizeInputType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RecognizeInputType {
    Dtmf,
    Speech,
    SpeechOrDtmf,
    Choices,
}

/// `recognizeOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecognizeOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupt_prompt: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_silence_timeout_in_seconds: Option<u32>,
    pub target_participant: CommunicationIdentifier,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech_language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech_recognition_model_endpoint_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtmf_options: Option<DtmfOptions>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub choices: Vec<Choice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech_options: Option<SpeechOptions>,
}

/// `dtmfOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DtmfOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inter_tone_timeout_in_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tones_to_collect: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub stop_tones: Vec<DtmfTone>,
}

/// A recognition choice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Choice {
    pub label: String,
    pub phrases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tone: Option<DtmfTone>,
}

/// `speechOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpeechOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_silence_timeout_in_ms: Option<u32>,
}

/// A DTMF tone, by name as the REST API spells it (`one`, `pound`, `asterisk`…).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DtmfTone {
    Zero,
    One,
    Two,
    Three,
    Four,
    Five,
    Six,
    Seven,
    Eight,
    Nine,
    A,
    B,
    C,
    D,
    Pound,
    Asterisk,
}

/// Each key and its tone.
const KEYS: [(char, DtmfTone); 16] = [
    ('0', DtmfTone::Zero),
    ('1', DtmfTone::One),
    ('2', DtmfTone::Two),
    ('3', DtmfTone::Three),
    ('4', DtmfTone::Four),
    ('5', DtmfTone::Five),
    ('6', DtmfTone::Six),
    ('7', DtmfTone::Seven),
    ('8', DtmfTone::Eight),
    ('9', DtmfTone::Nine),
    ('A', DtmfTone::A),
    ('B', DtmfTone::B),
    ('C', DtmfTone::C),
    ('D', DtmfTone::D),
    ('#', DtmfTone::Pound),
    ('*', DtmfTone::Asterisk),
];

impl DtmfTone {
    /// The tone of a key: `0`–`9`, `A`–`D`, `#`, `*`.
    pub fn from_key(key: char) -> Option<DtmfTone> {
        let key = key.to_ascii_uppercase();
        KEYS.iter().find(|(k, _)| *k == key).map(|(_, tone)| *tone)
    }

    /// The key of the tone.
    pub fn key(self) -> char {
        KEYS.iter()
            .find(|(_, tone)| *tone == self)
            .map_or('?', |(key, _)| *key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_tones_go_both_ways_as_the_api_spells_them() {
        for (key, tone) in KEYS {
            assert_eq!(DtmfTone::from_key(key), Some(tone));
            assert_eq!(tone.key(), key);
        }
        assert_eq!(DtmfTone::from_key('a'), Some(DtmfTone::A));
        assert_eq!(DtmfTone::from_key('x'), None);
        assert_eq!(serde_json::to_value(DtmfTone::Pound).unwrap(), "pound");
        assert_eq!(
            serde_json::from_value::<DtmfTone>("asterisk".into()).unwrap(),
            DtmfTone::Asterisk
        );
    }
}

/// `POST …:startContinuousDtmfRecognition` and `…:stopContinuousDtmfRecognition`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContinuousDtmfRecognitionRequest {
    pub target_participant: CommunicationIdentifier,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_callback_uri: Option<String>,
}

/// `POST …:sendDtmfTones`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendDtmfTonesRequest {
    pub tones: Vec<DtmfTone>,
    pub target_participant: CommunicationIdentifier,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_callback_uri: Option<String>,
}

/// `POST …:hold`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldRequest {
    pub target_participant: CommunicationIdentifier,
    /// Music on hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub play_source_info: Option<PlaySource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_callback_uri: Option<String>,
}

/// `POST …:unhold`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnholdRequest {
    pub target_participant: CommunicationIdentifier,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST …:startTranscription` and `…:updateTranscription`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptionRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech_recognition_model_endpoint_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST …:stopTranscription`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopTranscriptionRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST …:startMediaStreaming` and `…:stopMediaStreaming`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaStreamingRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_callback_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// A participant of a call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallParticipant {
    pub identifier: CommunicationIdentifier,
    pub is_muted: Option<bool>,
    pub is_on_hold: Option<bool>,
}

/// `GET …/participants`: a page of participants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantsPage {
    #[serde(default)]
    pub value: Vec<CallParticipant>,
    pub next_link: Option<String>,
}

/// `POST …/participants:add`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddParticipantRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_caller_id_number: Option<PhoneNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_display_name: Option<String>,
    pub participant_to_add: CommunicationIdentifier,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invitation_timeout_in_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_callback_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_calling_context: Option<CustomCallingContext>,
}

/// The 202 of add participant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddParticipantResponse {
    pub participant: Option<CallParticipant>,
    pub operation_context: Option<String>,
    pub invitation_id: Option<String>,
}

/// `POST …/participants:cancelAddParticipant`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelAddParticipantRequest {
    pub invitation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_callback_uri: Option<String>,
}

/// The 202 of cancel add participant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelAddParticipantResponse {
    pub invitation_id: Option<String>,
    pub operation_context: Option<String>,
}

/// `POST …/participants:remove`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveParticipantRequest {
    pub participant_to_remove: CommunicationIdentifier,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_callback_uri: Option<String>,
}

/// `POST …/participants:mute`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MuteParticipantsRequest {
    pub target_participants: Vec<CommunicationIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST /calling/recordings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartCallRecordingRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_locator: Option<CallLocator>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_connection_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_state_callback_uri: Option<String>,
    /// `audio` or `audioVideo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_content_type: Option<String>,
    /// `mixed` or `unmixed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_channel_type: Option<String>,
    /// `wav`, `mp3` or `mp4`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_format_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_on_start: Option<bool>,
}

/// A recording's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingStateResponse {
    #[serde(default)]
    pub recording_id: String,
    /// `active` or `inactive`.
    pub recording_state: Option<String>,
    pub recording_kind: Option<String>,
}

/// The error body of every method.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

/// `error` of an error body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}
