//! The Realtime API's events, both ways: what the bridge sends (typed, serialized once each) and
//! what it reads of the service's (parsed borrowing the message, so an answer's base64 audio
//! is decoded straight from the socket's text, never copied into a `String` first).
//!
//! Only the subset the bridge uses: see the [module docs](super) for what each one is for.

use std::borrow::Cow;

use mediagate_protocol::encode_pcm;
use serde::{Deserialize, Serialize};

use super::SERVICE_FORMAT;
use super::settings::{Api, RealtimeSettings, TurnDetection};

/// A client event other than audio: the conversation's control messages. Never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub(super) enum ClientEvent {
    /// `input_audio_buffer.commit`: the caller's turn is over; what was appended becomes their
    /// message ([`TurnDetection::GatewayVad`]).
    #[serde(rename = "input_audio_buffer.commit")]
    CommitAudio,
    /// `response.create`: answer now ([`TurnDetection::GatewayVad`]).
    #[serde(rename = "response.create")]
    CreateResponse,
    /// `response.cancel`: stop the answer being generated ([`TurnDetection::GatewayVad`]).
    #[serde(rename = "response.cancel")]
    CancelResponse,
    /// `conversation.item.truncate`: the caller heard only `audio_end_ms` of the answer's
    /// audio, so the model's memory of the conversation ends there too.
    #[serde(rename = "conversation.item.truncate")]
    TruncateItem {
        /// The answer's item.
        item_id: String,
        /// Its audio content part: always the first.
        content_index: u32,
        /// How much of its audio was heard.
        audio_end_ms: u64,
    },
}

impl ClientEvent {
    /// Whether it must reach the service after the audio appended before it (a commit takes
    /// the input buffer as it is then). The others may overtake queued audio.
    pub(super) fn follows_audio(&self) -> bool {
        matches!(self, ClientEvent::CommitAudio)
    }

    /// The event as the socket's text.
    pub(super) fn to_json(&self) -> String {
        to_json(self)
    }
}

/// Serializes a client event. Our own types, all strings and numbers: this cannot fail; if it
/// ever did, the empty message would be refused by the service (an `error` event) rather
/// than panic the call.
fn to_json(event: &impl Serialize) -> String {
    serde_json::to_string(event).unwrap_or_default()
}

/// `input_audio_buffer.append` with `pcm` (PCM16 LE mono at 24 kHz), base64-encoded straight
/// into the message.
pub(super) fn append_audio(pcm: &[u8]) -> String {
    const HEAD: &str = r#"{"type":"input_audio_buffer.append","audio":""#;
    const TAIL: &str = "\"}";
    let mut text = String::with_capacity(HEAD.len() + pcm.len().div_ceil(3) * 4 + TAIL.len());
    text.push_str(HEAD);
    encode_pcm(pcm, &mut text);
    text.push_str(TAIL);
    text
}

/// `session.update`: the one every conversation opens with.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename = "session.update")]
pub(super) struct SessionUpdate<'a> {
    session: Session<'a>,
}

/// The session, in the shape the service speaks ([`Api`]).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Session<'a> {
    Ga(GaSession<'a>),
    Beta(BetaSession<'a>),
}

/// The GA shape: `{"type": "realtime", "audio": {"input": …, "output": …}}`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename = "realtime")]
struct GaSession<'a> {
    output_modalities: [&'static str; 1],
    audio: GaAudio<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct GaAudio<'a> {
    input: GaInput,
    output: GaOutput<'a>,
}

#[derive(Debug, Serialize)]
struct GaInput {
    format: PcmFormat,
    /// `null` turns the service's detection off: it must be sent, not left out.
    turn_detection: Option<ServiceTurnDetection>,
}

#[derive(Debug, Serialize)]
struct GaOutput<'a> {
    format: PcmFormat,
    #[serde(skip_serializing_if = "Option::is_none")]
    voice: Option<&'a str>,
}

/// `{"type": "audio/pcm", "rate": 24000}`.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "type", rename = "audio/pcm")]
struct PcmFormat {
    rate: u32,
}

/// The beta shape: `{"input_audio_format": "pcm16", "output_audio_format": "pcm16", …}`.
#[derive(Debug, Serialize)]
struct BetaSession<'a> {
    modalities: [&'static str; 2],
    input_audio_format: &'static str,
    output_audio_format: &'static str,
    /// `null` turns the service's detection off: it must be sent, not left out.
    turn_detection: Option<ServiceTurnDetection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    voice: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<&'a str>,
}

/// The service's own turn detection, answering and interrupting by itself.
#[derive(Debug, Clone, Copy, Serialize)]
struct ServiceTurnDetection {
    #[serde(rename = "type")]
    kind: &'static str,
    create_response: bool,
    interrupt_response: bool,
}

impl<'a> SessionUpdate<'a> {
    /// 24 kHz PCM16 both ways, and what `settings` ask for.
    pub(super) fn new(settings: &'a RealtimeSettings) -> Self {
        let turn_detection = match settings.turn_detection {
            TurnDetection::ServerVad => Some("server_vad"),
            TurnDetection::SemanticVad => Some("semantic_vad"),
            TurnDetection::GatewayVad => None,
        }
        .map(|kind| ServiceTurnDetection {
            kind,
            create_response: true,
            interrupt_response: true,
        });
        let instructions = settings.instructions.as_deref();
        let voice = settings.voice.as_deref();
        let session = match settings.api {
            Api::Ga => {
                let format = PcmFormat {
                    rate: SERVICE_FORMAT.sample_rate_hz(),
                };
                Session::Ga(GaSession {
                    output_modalities: ["audio"],
                    audio: GaAudio {
                        input: GaInput {
                            format,
                            turn_detection,
                        },
                        output: GaOutput { format, voice },
                    },
                    instructions,
                })
            }
            Api::Beta => Session::Beta(BetaSession {
                modalities: ["audio", "text"],
                input_audio_format: "pcm16",
                output_audio_format: "pcm16",
                turn_detection,
                voice,
                instructions,
            }),
        };
        SessionUpdate { session }
    }

    /// The event as the socket's text.
    pub(super) fn to_json(&self) -> String {
        to_json(self)
    }
}

/// A service event the bridge acts on; the others are [`ServiceEvent::Other`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ServiceEvent<'a> {
    /// `response.output_audio.delta` (GA) or `response.audio.delta` (beta): answer audio.
    AudioDelta(AudioDelta<'a>),
    /// `response.output_audio.done` or `response.audio.done`: the answer's audio is complete.
    AudioDone,
    /// `response.created`: an answer starts.
    ResponseCreated {
        /// Its id.
        response_id: Option<String>,
    },
    /// `response.done`: the answer is over (`completed`, `cancelled`…).
    ResponseDone {
        /// How it ended.
        status: Option<String>,
    },
    /// `input_audio_buffer.speech_started`: the service heard the caller start talking.
    SpeechStarted,
    /// `error`.
    Error {
        /// What the service said (`(no message)` if nothing).
        message: String,
    },
    /// Anything else: ignored.
    Other,
}

/// One chunk of an answer's audio.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct AudioDelta<'a> {
    /// The answer it belongs to.
    pub(super) response_id: Option<String>,
    /// The answer's item (what `conversation.item.truncate` names).
    pub(super) item_id: Option<String>,
    /// Base64 PCM16 LE mono at 24 kHz, borrowed from the message unless it has escapes;
    /// empty when absent.
    pub(super) delta: Cow<'a, str>,
}

impl<'a> ServiceEvent<'a> {
    /// Reads a service event from the socket's `text`; unknown fields are skipped.
    pub(super) fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        let raw: RawEvent<'a> = serde_json::from_str(text)?;
        Ok(match &*raw.kind {
            "response.output_audio.delta" | "response.audio.delta" => {
                ServiceEvent::AudioDelta(AudioDelta {
                    response_id: raw.response_id,
                    item_id: raw.item_id,
                    delta: raw.delta,
                })
            }
            "response.output_audio.done" | "response.audio.done" => ServiceEvent::AudioDone,
            "response.created" => ServiceEvent::ResponseCreated {
                response_id: raw.response.and_then(|r| r.id),
            },
            "response.done" => ServiceEvent::ResponseDone {
                status: raw.response.and_then(|r| r.status),
            },
            "input_audio_buffer.speech_started" => ServiceEvent::SpeechStarted,
            "error" => {
                let error = raw.error.unwrap_or_default();
                let message = error["message"].as_str().unwrap_or("(no message)");
                ServiceEvent::Error {
                    message: message.to_owned(),
                }
            }
            _ => ServiceEvent::Other,
        })
    }
}

/// Every field the bridge reads of any event; the rest is skipped unread.
#[derive(Debug, Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    delta: Cow<'a, str>,
    #[serde(default)]
    response_id: Option<String>,
    #[serde(default)]
    item_id: Option<String>,
    #[serde(default)]
    response: Option<ResponseInfo>,
    /// Kept loose: whatever its shape, an `error` event is counted.
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// `response` of `response.created` and `response.done`.
#[derive(Debug, Deserialize)]
struct ResponseInfo {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use serde_json::{Value, json};

    use super::super::settings::tests::settings;
    use super::*;

    fn value(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn control_messages_have_the_documented_shapes() {
        let commit = value(&ClientEvent::CommitAudio.to_json());
        assert_eq!(commit, json!({ "type": "input_audio_buffer.commit" }));
        let create = value(&ClientEvent::CreateResponse.to_json());
        assert_eq!(create, json!({ "type": "response.create" }));
        let cancel = value(&ClientEvent::CancelResponse.to_json());
        assert_eq!(cancel, json!({ "type": "response.cancel" }));
        let truncate = ClientEvent::TruncateItem {
            item_id: "item_1".into(),
            content_index: 0,
            audio_end_ms: 1_234,
        };
        assert_eq!(
            value(&truncate.to_json()),
            json!({
                "type": "conversation.item.truncate",
                "item_id": "item_1",
                "content_index": 0,
                "audio_end_ms": 1_234,
            })
        );
        // Only a commit must wait for the audio before it.
        assert!(ClientEvent::CommitAudio.follows_audio());
        assert!(!ClientEvent::CreateResponse.follows_audio());
        assert!(!ClientEvent::CancelResponse.follows_audio());
        assert!(!truncate.follows_audio());
    }

    #[test]
    fn an_append_carries_the_pcm_in_base64() {
        let pcm = [0x00, 0x01, 0x02, 0x03, 0xff];
        let append = value(&append_audio(&pcm));
        assert_eq!(append["type"], "input_audio_buffer.append");
        let mut pool = bytes::BytesMut::new();
        let audio = append["audio"].as_str().unwrap();
        let decoded = mediagate_protocol::decode_pcm(audio, 1, &mut pool).unwrap();
        assert_eq!(&decoded[..], &pcm);
        assert_eq!(append.as_object().unwrap().len(), 2);
    }

    #[test]
    fn the_session_update_asks_for_24k_pcm_in_either_shape() {
        let ga = settings(json!({ "instructions": "Be brief.", "voice": "marin" }));
        let ga = value(&SessionUpdate::new(&ga).to_json());
        assert_eq!(ga["type"], "session.update");
        let session = &ga["session"];
        assert_eq!(session["type"], "realtime");
        assert_eq!(session["output_modalities"], json!(["audio"]));
        assert_eq!(session["instructions"], "Be brief.");
        let pcm = json!({ "type": "audio/pcm", "rate": 24_000 });
        assert_eq!(session["audio"]["input"]["format"], pcm);
        assert_eq!(session["audio"]["output"]["format"], pcm);
        assert_eq!(session["audio"]["output"]["voice"], "marin");
        assert_eq!(
            session["audio"]["input"]["turn_detection"],
            json!({ "type": "server_vad", "create_response": true, "interrupt_response": true })
        );

        let semantic = settings(json!({ "turn_detection": "semantic_vad" }));
        let semantic = value(&SessionUpdate::new(&semantic).to_json());
        let session = &semantic["session"];
        assert_eq!(
            session["audio"]["input"]["turn_detection"]["type"],
            "semantic_vad"
        );
        assert!(session.get("instructions").is_none());
        assert!(session["audio"]["output"].get("voice").is_none());

        let beta = settings(json!({
            "api": "beta",
            "voice": "alloy",
            "turn_detection": "gateway_vad",
        }));
        let beta = value(&SessionUpdate::new(&beta).to_json());
        assert_eq!(beta["type"], "session.update");
        let session = &beta["session"];
        assert_eq!(session["modalities"], json!(["audio", "text"]));
        assert_eq!(session["input_audio_format"], "pcm16");
        assert_eq!(session["output_audio_format"], "pcm16");
        assert_eq!(session["voice"], "alloy");
        // Sent as null (the service's detection off), not left out.
        assert_eq!(session.get("turn_detection"), Some(&Value::Null));
        assert!(session.get("instructions").is_none());
        assert!(session.get("type").is_none());
    }

    #[test]
    fn an_audio_delta_borrows_its_base64_and_ignores_other_fields() {
        for kind in ["response.output_audio.delta", "response.audio.delta"] {
            let text = format!(
                r#"{{"type":"{kind}","event_id":"e","response_id":"r","item_id":"i",
                "output_index":0,"content_index":0,"delta":"AAEC"}}"#
            );
            let ServiceEvent::AudioDelta(delta) = ServiceEvent::parse(&text).unwrap() else {
                panic!("{text}");
            };
            assert!(matches!(delta.delta, Cow::Borrowed("AAEC")));
            assert_eq!(delta.response_id.as_deref(), Some("r"));
            assert_eq!(delta.item_id.as_deref(), Some("i"));
        }
        // An escape in the base64 (allowed by JSON) costs a copy, not an error.
        let escaped = r#"{"type":"response.audio.delta","delta":"AA\/C"}"#;
        let ServiceEvent::AudioDelta(delta) = ServiceEvent::parse(escaped).unwrap() else {
            panic!("{escaped}");
        };
        assert_eq!(delta.delta, "AA/C");
        assert_eq!(delta.response_id, None);
    }

    #[test]
    fn the_ends_of_an_answer_are_read_in_either_shape() {
        for kind in ["response.output_audio.done", "response.audio.done"] {
            let text = format!(r#"{{"type":"{kind}","response_id":"r","item_id":"i"}}"#);
            assert_eq!(ServiceEvent::parse(&text).unwrap(), ServiceEvent::AudioDone);
        }
        let created = r#"{"type":"response.created","response":{"id":"r","status":"in_progress"}}"#;
        assert_eq!(
            ServiceEvent::parse(created).unwrap(),
            ServiceEvent::ResponseCreated {
                response_id: Some("r".into())
            }
        );
        let done =
            r#"{"type":"response.done","response":{"id":"r","status":"cancelled","output":[]}}"#;
        assert_eq!(
            ServiceEvent::parse(done).unwrap(),
            ServiceEvent::ResponseDone {
                status: Some("cancelled".into())
            }
        );
        let bare = r#"{"type":"response.done"}"#;
        assert_eq!(
            ServiceEvent::parse(bare).unwrap(),
            ServiceEvent::ResponseDone { status: None }
        );
    }

    #[test]
    fn speech_errors_and_the_rest_are_told_apart() {
        let started = r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":1000}"#;
        assert_eq!(
            ServiceEvent::parse(started).unwrap(),
            ServiceEvent::SpeechStarted
        );
        let error = r#"{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}"#;
        assert_eq!(
            ServiceEvent::parse(error).unwrap(),
            ServiceEvent::Error {
                message: "bad".into()
            }
        );
        for silent in [r#"{"type":"error"}"#, r#"{"type":"error","error":"x"}"#] {
            assert_eq!(
                ServiceEvent::parse(silent).unwrap(),
                ServiceEvent::Error {
                    message: "(no message)".into()
                }
            );
        }
        for other in [
            r#"{"type":"session.updated","session":{}}"#,
            r#"{"type":"input_audio_buffer.speech_stopped"}"#,
            r#"{"type":"response.output_audio_transcript.delta","delta":"Hi"}"#,
        ] {
            assert_eq!(ServiceEvent::parse(other).unwrap(), ServiceEvent::Other);
        }
        for unreadable in ["", "[]", r#"{"delta":"AAEC"}"#, r#"{"type":1}"#] {
            assert!(ServiceEvent::parse(unreadable).is_err(), "{unreadable}");
        }
    }
}
