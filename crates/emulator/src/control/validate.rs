//! A request body checked against its operation's schema: no field the reference does not
//! list, every value of its type, enums from their known values (compared without case, as
//! the service does), and the fields the service requires present. The first problem is
//! reported with its JSON path, as the service's `error.target` names it.

use serde_json::Value;

use super::reference::{Operation, Schema};

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// `answerCallRequest.mediaStreamingOptions.audioFormat`.
    pub(crate) target: String,
    pub(crate) message: String,
}

/// Known values of the reference's enums, by field name; `kind` depends on its object
/// ([`kind_values`]).
fn enum_values(field: &str) -> Option<&'static [&'static str]> {
    Some(match field {
        "transportType" => &["websocket"],
        "contentType" => &["audio"],
        "audioChannelType" => &["mixed", "unmixed"],
        "audioFormat" => &["pcm16KMono", "pcm24KMono"],
        "callRejectReason" => &["none", "busy", "forbidden"],
        "recognizeInputType" => &["dtmf", "speech", "speechOrDtmf", "choices"],
        "voiceKind" => &["male", "female"],
        "cloud" => &["public", "dod", "gcch"],
        "tone" => DTMF_TONES,
        "recordingContentType" => &["audio", "audioVideo"],
        "recordingChannelType" => &["mixed", "unmixed"],
        "recordingFormatType" => &["wav", "mp3", "mp4"],
        "recordingStorageKind" => &["azureCommunicationServices", "azureBlobStorage"],
        _ => return None,
    })
}

/// DTMF tones as the REST API names them (also the items of `tones` and `stopTones`).
pub(crate) const DTMF_TONES: &[&str] = &[
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "a", "b", "c",
    "d", "pound", "asterisk",
];

/// `kind` of an identifier, a play source or a call locator, told apart by their fields.
fn kind_values(object: &std::collections::BTreeMap<String, Schema>) -> &'static [&'static str] {
    if object.contains_key("rawId") {
        &[
            "unknown",
            "communicationUser",
            "phoneNumber",
            "microsoftTeamsUser",
            "microsoftTeamsApp",
            "teamsExtensionUser",
        ]
    } else if object.contains_key("playSourceCacheId") {
        &["file", "text", "ssml"]
    } else {
        &["groupCallLocator", "serverCallLocator", "roomCallLocator"]
    }
}

/// Fields the service requires, by the name of the object holding them (the body's own name
/// for its top level).
fn required(object: &str) -> &'static [&'static str] {
    match object {
        "createCallRequest" => &["targets", "callbackUri"],
        "answerCallRequest" => &["incomingCallContext", "callbackUri"],
        "redirectCallRequest" => &["incomingCallContext", "target"],
        "rejectCallRequest" => &["incomingCallContext"],
        "connectRequest" => &["callLocator", "callbackUri"],
        "transferToParticipantRequest" => &["targetParticipant"],
        "playRequest" => &["playSources"],
        "recognizeRequest" => &["recognizeInputType", "recognizeOptions"],
        "recognizeOptions" => &["targetParticipant"],
        "continuousDtmfRecognitionRequest" => &["targetParticipant"],
        "sendDtmfTonesRequest" => &["tones", "targetParticipant"],
        "holdRequest" | "unholdRequest" => &["targetParticipant"],
        "addParticipantRequest" => &["participantToAdd"],
        "removeParticipantRequest" => &["participantToRemove"],
        "muteParticipantsRequest" => &["targetParticipants"],
        "cancelAddParticipantRequest" => &["invitationId"],
        "startTranscriptionRequest" | "updateTranscriptionRequest" => &["locale"],
        "mediaStreamingOptions" => &[
            "transportUrl",
            "transportType",
            "contentType",
            "audioChannelType",
        ],
        "transcriptionOptions" => &["transportUrl", "transportType", "locale"],
        "playSources" | "playPrompts" | "playPrompt" | "playSourceInfo" => &["kind"],
        "file" => &["uri"],
        "text" => &["text"],
        "ssml" => &["ssmlText"],
        "phoneNumber" | "sourceCallerIdNumber" | "answeredFor" => &["value"],
        "communicationUser" | "answeredBy" | "source" => &["id"],
        "microsoftTeamsUser" | "teamsExtensionUser" => &["userId"],
        "microsoftTeamsApp" => &["appId"],
        "callLocator" => &["kind"],
        "choices" => &["label", "phrases"],
        _ => &[],
    }
}

/// Checks `body` against `operation`'s body schema.
pub(crate) fn validate(operation: &Operation, body: &Value) -> Result<(), Invalid> {
    match &operation.body {
        Some((name, schema)) => check(name, name, schema, body),
        // A method without a body takes none, or an empty object.
        None => match body {
            Value::Null => Ok(()),
            Value::Object(o) if o.is_empty() => Ok(()),
            _ => Err(Invalid {
                target: String::new(),
                message: format!("{} takes no request body", operation.name),
            }),
        },
    }
}

fn check(path: &str, name: &str, schema: &Schema, value: &Value) -> Result<(), Invalid> {
    let wrong = |expected: &str| {
        Err(Invalid {
            target: path.to_owned(),
            message: format!("`{path}` must be {expected}, not {}", kind_of(value)),
        })
    };
    match (schema, value) {
        (Schema::String, Value::String(_)) => Ok(()),
        (Schema::String, _) => wrong("a string"),
        (Schema::Boolean, Value::Bool(_)) => Ok(()),
        (Schema::Boolean, _) => wrong("a boolean"),
        (Schema::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(()),
        (Schema::Integer, _) => wrong("an integer"),
        (Schema::AnyObject, Value::Object(_)) => Ok(()),
        (Schema::AnyObject, _) => wrong("an object"),
        (Schema::Enum, Value::String(_)) => Ok(()), // checked with its siblings, see below
        (Schema::Enum, _) => wrong("a string"),
        (Schema::Array(item), Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                check(&item_path, name, item, v)?;
                if matches!(**item, Schema::String) && matches!(name, "tones" | "stopTones") {
                    check_enum(&item_path, v, DTMF_TONES)?;
                }
            }
            Ok(())
        }
        (Schema::Array(_), _) => wrong("an array"),
        (Schema::Object(fields), Value::Object(object)) => {
            for (key, v) in object {
                let field_path = format!("{path}.{key}");
                let Some(field) = fields.get(key) else {
                    return Err(Invalid {
                        target: field_path,
                        message: format!("`{key}` is not a field of `{path}`"),
                    });
                };
                if v.is_null() {
                    continue; // an absent optional value, as serializers write them
                }
                check(&field_path, key, field, v)?;
                if *field == Schema::Enum {
                    let values = match key.as_str() {
                        "kind" => kind_values(fields),
                        _ => enum_values(key).unwrap_or(&[]),
                    };
                    if !values.is_empty() {
                        check_enum(&field_path, v, values)?;
                    }
                }
            }
            for key in required(name) {
                if object.get(*key).is_none_or(Value::is_null) && fields.contains_key(*key) {
                    return Err(Invalid {
                        target: format!("{path}.{key}"),
                        message: format!("`{key}` is required in `{path}`"),
                    });
                }
            }
            Ok(())
        }
        (Schema::Object(_), _) => wrong("an object"),
    }
}

fn check_enum(path: &str, value: &Value, values: &[&str]) -> Result<(), Invalid> {
    let s = value.as_str().unwrap_or_default();
    if values.iter().any(|v| v.eq_ignore_ascii_case(s)) {
        Ok(())
    } else {
        Err(Invalid {
            target: path.to_owned(),
            message: format!("`{path}` is `{s}`, not one of: {}", values.join(", ")),
        })
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::reference::operations;
    use super::*;

    fn answer() -> Operation {
        operations()
            .unwrap()
            .into_iter()
            .find(|o| o.name == "AnswerCall")
            .unwrap()
    }

    fn good() -> Value {
        json!({
            "incomingCallContext": "ctx",
            "callbackUri": "https://gw/acs/callbacks/1",
            "mediaStreamingOptions": {
                "transportUrl": "wss://gw/ws", "transportType": "websocket",
                "contentType": "audio", "audioChannelType": "unmixed",
                "startMediaStreaming": true, "enableBidirectional": true,
                "audioFormat": "Pcm24KMono"
            }
        })
    }

    #[test]
    fn a_faithful_body_passes() {
        assert_eq!(validate(&answer(), &good()), Ok(()));
    }

    #[test]
    fn wrong_bodies_are_refused_with_the_field_named() {
        let cases = [
            (
                "/mediaStreamingOptions/audioFormat",
                json!("pcm16k"),
                "answerCallRequest.mediaStreamingOptions.audioFormat",
            ),
            (
                "/mediaStreamingOptions/enableBidirectional",
                json!("yes"),
                "answerCallRequest.mediaStreamingOptions.enableBidirectional",
            ),
            (
                "/mediaStreamingOptions/transportUrl",
                Value::Null,
                "answerCallRequest.mediaStreamingOptions.transportUrl",
            ),
            ("/callbackUri", Value::Null, "answerCallRequest.callbackUri"),
        ];
        for (pointer, value, target) in cases {
            let mut body = good();
            *body.pointer_mut(pointer).unwrap() = value;
            assert_eq!(
                validate(&answer(), &body).unwrap_err().target,
                target,
                "{pointer}"
            );
        }
        let mut body = good();
        body["mediaStreamingOptions"]["audioChannel"] = json!("mixed");
        let e = validate(&answer(), &body).unwrap_err();
        assert_eq!(
            e.target,
            "answerCallRequest.mediaStreamingOptions.audioChannel"
        );
        assert!(e.message.contains("not a field"));
    }

    #[test]
    fn kinds_are_checked_by_their_object() {
        let play = operations()
            .unwrap()
            .into_iter()
            .find(|o| o.name == "CallMedia_Play")
            .unwrap();
        let ok = json!({"playSources": [{"kind": "file", "file": {"uri": "https://x/a.wav"}}],
                        "playTo": [{"kind": "phoneNumber", "rawId": "4:+1", "phoneNumber": {"value": "+1"}}]});
        assert_eq!(validate(&play, &ok), Ok(()));
        let bad = json!({"playSources": [{"kind": "phoneNumber"}]});
        assert_eq!(
            validate(&play, &bad).unwrap_err().target,
            "playRequest.playSources[0].kind"
        );
        let missing = json!({"playSources": [{"kind": "file", "file": {}}]});
        assert_eq!(
            validate(&play, &missing).unwrap_err().target,
            "playRequest.playSources[0].file.uri"
        );
    }
}
