//! What the fake tells the application: Call Automation's callback events, as CloudEvents, with
//! the field names of Microsoft's SDK models (`azure-communication-callautomation`'s
//! `_generated/models`): `callConnectionId`, `serverCallId`, `correlationId`,
//! `operationContext`, `resultInformation {code, subCode, message}` and each event's own fields.
//!
//! Result codes are those ACS documents where it does (recognize: 8531 max digits, 8514 stop
//! tone, 8532 inter-digit timeout, 8510 initial silence, 8508 canceled); elsewhere `200`/`0`.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

/// The identity of a call, in every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallIds {
    pub(crate) call_connection_id: String,
    pub(crate) server_call_id: String,
    pub(crate) correlation_id: String,
}

/// `resultInformation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResultInfo {
    pub(crate) code: u16,
    pub(crate) sub_code: u32,
    pub(crate) message: Cow<'static, str>,
}

impl ResultInfo {
    pub(crate) const fn new(code: u16, sub_code: u32, message: &'static str) -> Self {
        ResultInfo {
            code,
            sub_code,
            message: Cow::Borrowed(message),
        }
    }

    /// The same code with a message of its own.
    pub(crate) fn with_message(mut self, message: String) -> Self {
        self.message = Cow::Owned(message);
        self
    }
}

/// One callback event, before its envelope: its type (without `Microsoft.Communication.`),
/// the operation's context, its result and its own fields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CallbackEvent {
    /// `CallConnected`, `RecognizeCompleted`…
    pub(crate) kind: &'static str,
    /// The request's `operationContext`, echoed.
    pub(crate) operation_context: Option<String>,
    pub(crate) result: ResultInfo,
    /// The event's own fields (`dtmfResult`, `mediaStreamingUpdate`…).
    pub(crate) fields: Map<String, Value>,
}

impl CallbackEvent {
    /// An event with no fields of its own.
    pub(crate) fn new(
        kind: &'static str,
        operation_context: Option<String>,
        result: ResultInfo,
    ) -> Self {
        CallbackEvent {
            kind,
            operation_context,
            result,
            fields: Map::new(),
        }
    }

    /// Adds a field of the event's own.
    pub(crate) fn with(mut self, name: &str, value: Value) -> Self {
        self.fields.insert(name.to_owned(), value);
        self
    }

    /// The full type, `Microsoft.Communication.<kind>`.
    pub(crate) fn event_type(&self) -> String {
        format!("Microsoft.Communication.{}", self.kind)
    }

    /// The event as one CloudEvent, as ACS posts it (in an array of one).
    pub(crate) fn cloud_event(&self, ids: &CallIds, id: &str, time: &str) -> Value {
        let mut data = Map::new();
        data.insert("callConnectionId".into(), json!(ids.call_connection_id));
        data.insert("serverCallId".into(), json!(ids.server_call_id));
        data.insert("correlationId".into(), json!(ids.correlation_id));
        if let Some(context) = &self.operation_context {
            data.insert("operationContext".into(), json!(context));
        }
        data.insert(
            "resultInformation".into(),
            json!({
                "code": self.result.code,
                "subCode": self.result.sub_code,
                "message": &*self.result.message,
            }),
        );
        data.extend(self.fields.clone());
        let source = format!("calling/callConnections/{}", ids.call_connection_id);
        json!({
            "id": id,
            "source": source,
            "type": self.event_type(),
            "data": data,
            "time": time,
            "specversion": "1.0",
            "datacontenttype": "application/json",
            "subject": source,
        })
    }
}

/// An identifier as the REST API and events write it, from a raw id: `4:` phone numbers,
/// `8:acs:` (and the other `8:…acs:`, `8:spool:`) users, `8:orgid:` Teams users, others
/// `unknown`.
pub(crate) fn identifier(raw_id: &str) -> Value {
    if let Some(number) = raw_id.strip_prefix("4:") {
        let number = if number.starts_with('+') {
            number.to_owned()
        } else {
            format!("+{number}")
        };
        return json!({"kind": "phoneNumber", "rawId": raw_id, "phoneNumber": {"value": number}});
    }
    let user = ["8:acs:", "8:spool:", "8:dod-acs:", "8:gcch-acs:"]
        .iter()
        .any(|p| raw_id.starts_with(p));
    if user {
        return json!({"kind": "communicationUser", "rawId": raw_id, "communicationUser": {"id": raw_id}});
    }
    if let Some(user_id) = raw_id.strip_prefix("8:orgid:") {
        return json!({
            "kind": "microsoftTeamsUser",
            "rawId": raw_id,
            "microsoftTeamsUser": {"userId": user_id, "isAnonymous": false, "cloud": "public"},
        });
    }
    json!({"kind": "unknown", "rawId": raw_id})
}

/// The raw id of an identifier in a request body (`rawId`, or built from its kind's value).
pub(crate) fn raw_id_of(identifier: &Value) -> Option<String> {
    if let Some(raw) = identifier["rawId"].as_str() {
        return Some(raw.to_owned());
    }
    if let Some(number) = identifier["phoneNumber"]["value"].as_str() {
        return Some(format!("4:{number}"));
    }
    identifier["communicationUser"]["id"]
        .as_str()
        .map(str::to_owned)
}

/// The REST API's name of a DTMF key (`five`, `pound`…).
pub(crate) fn tone_name(key: &str) -> Option<&'static str> {
    Some(match key {
        "0" => "zero",
        "1" => "one",
        "2" => "two",
        "3" => "three",
        "4" => "four",
        "5" => "five",
        "6" => "six",
        "7" => "seven",
        "8" => "eight",
        "9" => "nine",
        "A" => "a",
        "B" => "b",
        "C" => "c",
        "D" => "d",
        "#" => "pound",
        "*" => "asterisk",
        _ => return None,
    })
}

/// A participant of ParticipantsUpdated and AddParticipantSucceeded.
pub(crate) fn participant(raw_id: &str) -> Value {
    json!({"identifier": identifier(raw_id), "isMuted": false, "isOnHold": false})
}

/// `mediaStreamingUpdate` of the MediaStreaming events.
pub(crate) fn media_streaming_update(status: &str, details: &str) -> Value {
    json!({
        "contentType": "Audio",
        "mediaStreamingStatus": status,
        "mediaStreamingStatusDetails": details,
    })
}

/// `transcriptionUpdate` of the Transcription events.
pub(crate) fn transcription_update(status: &str, details: &str) -> Value {
    json!({
        "transcriptionStatus": status,
        "transcriptionStatusDetails": details,
    })
}

/// Result codes the fake uses.
pub(crate) mod results {
    use super::ResultInfo;

    pub(crate) const CONNECTED: ResultInfo = ResultInfo::new(200, 0, "Call connected.");
    pub(crate) const DISCONNECTED: ResultInfo =
        ResultInfo::new(200, 0, "The conversation has ended.");
    pub(crate) const OK: ResultInfo = ResultInfo::new(200, 0, "Action completed successfully.");
    pub(crate) const STARTED: ResultInfo = ResultInfo::new(200, 0, "Action started.");
    pub(crate) const TRANSFER_ACCEPTED: ResultInfo =
        ResultInfo::new(200, 0, "The transfer operation completed successfully.");
    pub(crate) const STREAM_FAILED: ResultInfo = ResultInfo::new(
        500,
        9999,
        "The WebSocket connection to the transport URL could not be established.",
    );
    pub(crate) const MAX_DIGITS: ResultInfo =
        ResultInfo::new(200, 8531, "Action completed, max digits received.");
    pub(crate) const STOP_TONE: ResultInfo =
        ResultInfo::new(200, 8514, "Action completed as stop tone was detected.");
    pub(crate) const INTER_DIGIT_TIMEOUT: ResultInfo = ResultInfo::new(
        400,
        8532,
        "Action failed, inter-digit silence time out reached.",
    );
    pub(crate) const INITIAL_SILENCE: ResultInfo = ResultInfo::new(
        400,
        8510,
        "Action failed, initial silence time out reached.",
    );
    pub(crate) const CANCELED: ResultInfo =
        ResultInfo::new(400, 8508, "Action failed, the operation was canceled.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_their_raw_ids() {
        assert_eq!(
            identifier("4:+14255550100"),
            json!({"kind": "phoneNumber", "rawId": "4:+14255550100", "phoneNumber": {"value": "+14255550100"}})
        );
        assert_eq!(identifier("8:acs:x")["communicationUser"]["id"], "8:acs:x");
        assert_eq!(identifier("8:orgid:u")["kind"], "microsoftTeamsUser");
        assert_eq!(identifier("28:bot")["kind"], "unknown");
        for raw in ["4:+14255550100", "8:acs:x"] {
            assert_eq!(raw_id_of(&identifier(raw)).as_deref(), Some(raw));
        }
        assert_eq!(
            raw_id_of(&json!({"kind": "phoneNumber", "phoneNumber": {"value": "+1"}})).as_deref(),
            Some("4:+1")
        );
    }

    #[test]
    fn a_cloud_event_carries_the_call_the_context_and_the_fields() {
        let ids = CallIds {
            call_connection_id: "c1".into(),
            server_call_id: "s1".into(),
            correlation_id: "r1".into(),
        };
        let event = CallbackEvent::new(
            "RecognizeCompleted",
            Some("menu".into()),
            results::MAX_DIGITS,
        )
        .with("recognitionType", json!("dtmf"))
        .with("dtmfResult", json!({"tones": ["one"]}));
        let cloud = event.cloud_event(&ids, "e1", "2026-01-01T00:00:00Z");
        assert_eq!(cloud["type"], "Microsoft.Communication.RecognizeCompleted");
        assert_eq!(cloud["source"], "calling/callConnections/c1");
        assert_eq!(cloud["specversion"], "1.0");
        assert_eq!(cloud["data"]["operationContext"], "menu");
        assert_eq!(cloud["data"]["resultInformation"]["subCode"], 8531);
        assert_eq!(cloud["data"]["dtmfResult"]["tones"][0], "one");
        assert_eq!(cloud["data"]["serverCallId"], "s1");
    }
}
