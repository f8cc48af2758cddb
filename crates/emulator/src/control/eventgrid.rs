//! What Event Grid sends the application's webhook: the subscription handshake, and the
//! `Microsoft.Communication.IncomingCall` event, in the Event Grid schema or as CloudEvents 1.0.
//!
//! - Event Grid schema: a JSON array of `{id, topic, subject, data, eventType, eventTime,
//!   metadataVersion, dataVersion}`, with `aeg-event-type: Notification` (or
//!   `SubscriptionValidation` for the handshake, whose reply must be 200
//!   `{"validationResponse": <the code>}`).
//! - CloudEvents: `content-type: application/cloudevents-batch+json`, an array of `{id, source,
//!   type, specversion, time, subject, data}`; the handshake is an OPTIONS request with
//!   `WebHook-Request-Origin: eventgrid.azure.net`, answered with `WebHook-Allowed-Origin`.

use hyper::header::{CONTENT_TYPE, HeaderName};
use serde_json::{Value, json};

use super::client::Reply;
use super::events::identifier;
use super::fake::IncomingCall;
use super::scripted::EventSchema;

/// The topic (Event Grid) or source (CloudEvents) of every event: a made-up resource.
pub(crate) const TOPIC: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/mediagate/providers/Microsoft.Communication/communicationServices/mediagate-emulator";
/// Who asks for the CloudEvents handshake.
const ORIGIN: &str = "eventgrid.azure.net";

/// A request to the webhook: its headers and body.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    pub(crate) headers: Vec<(HeaderName, String)>,
    pub(crate) body: Value,
}

fn header(name: &'static str, value: &str) -> (HeaderName, String) {
    (HeaderName::from_static(name), value.to_owned())
}

/// The headers Event Grid sends with a delivery of `event_type` (`Notification`…).
fn event_grid_headers(event_type: &str) -> Vec<(HeaderName, String)> {
    vec![
        (CONTENT_TYPE, "application/json; charset=utf-8".to_owned()),
        header("aeg-event-type", event_type),
        header("aeg-subscription-name", "MEDIAGATE-EMULATOR"),
        header("aeg-delivery-count", "0"),
        header("aeg-data-version", "1.0"),
        header("aeg-metadata-version", "1"),
    ]
}

/// The IncomingCall event for `call`.
pub(crate) fn incoming_call(
    schema: EventSchema,
    call: &IncomingCall,
    caller_display_name: &str,
    id: &str,
    time: &str,
) -> Envelope {
    let subject = format!("/caller/{}/recipient/{}", call.from, call.to);
    let data = json!({
        "to": identifier(&call.to),
        "from": identifier(&call.from),
        "serverCallId": call.server_call_id,
        "callerDisplayName": caller_display_name,
        "incomingCallContext": call.context,
        "correlationId": call.correlation_id,
    });
    let event_type = "Microsoft.Communication.IncomingCall";
    match schema {
        EventSchema::EventGrid => Envelope {
            headers: event_grid_headers("Notification"),
            body: json!([{
                "id": id,
                "topic": TOPIC,
                "subject": subject,
                "data": data,
                "eventType": event_type,
                "eventTime": time,
                "metadataVersion": "1",
                "dataVersion": "1.0",
            }]),
        },
        EventSchema::CloudEvents => {
            let mut headers = event_grid_headers("Notification");
            headers[0].1 = "application/cloudevents-batch+json; charset=utf-8".to_owned();
            Envelope {
                headers,
                body: json!([{
                    "id": id,
                    "source": TOPIC,
                    "type": event_type,
                    "specversion": "1.0",
                    "time": time,
                    "subject": subject,
                    "data": data,
                }]),
            }
        }
    }
}

/// The Event Grid schema's handshake: a SubscriptionValidationEvent carrying `code`.
pub(crate) fn validation_event(code: &str, validation_url: &str, id: &str, time: &str) -> Envelope {
    Envelope {
        headers: event_grid_headers("SubscriptionValidation"),
        body: json!([{
            "id": id,
            "topic": TOPIC,
            "subject": "",
            "data": {"validationCode": code, "validationUrl": validation_url},
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": time,
            "metadataVersion": "1",
            "dataVersion": "1",
        }]),
    }
}

/// The CloudEvents handshake's request headers.
pub(crate) fn options_headers() -> Vec<(HeaderName, String)> {
    vec![
        header("webhook-request-origin", ORIGIN),
        header("webhook-request-rate", "120"),
    ]
}

/// Whether the reply to the SubscriptionValidationEvent validates the subscription: 200 and
/// `{"validationResponse": code}`.
pub(crate) fn check_validation_reply(reply: &Reply, code: &str) -> Result<(), String> {
    if reply.status != 200 {
        return Err(format!("the webhook answered {}, not 200", reply.status));
    }
    let body: Value = serde_json::from_slice(&reply.body)
        .map_err(|_| "the reply is not JSON (expected {\"validationResponse\": …})".to_owned())?;
    match body["validationResponse"].as_str() {
        Some(echoed) if echoed == code => Ok(()),
        Some(other) => Err(format!(
            "validationResponse is `{other}`, not the code sent (`{code}`)"
        )),
        None => Err(format!("the reply has no validationResponse: {body}")),
    }
}

/// Whether the reply to the OPTIONS handshake allows Event Grid to deliver: a 2xx with
/// `WebHook-Allowed-Origin: eventgrid.azure.net` (or `*`).
pub(crate) fn check_options_reply(reply: &Reply) -> Result<(), String> {
    if !(200..300).contains(&reply.status) {
        return Err(format!(
            "the webhook answered OPTIONS with {}, not 200",
            reply.status
        ));
    }
    match reply
        .headers
        .get("webhook-allowed-origin")
        .and_then(|v| v.to_str().ok())
    {
        Some(origin) if origin == ORIGIN || origin == "*" => Ok(()),
        Some(other) => Err(format!(
            "WebHook-Allowed-Origin is `{other}`, not `{ORIGIN}`"
        )),
        None => Err("the reply has no WebHook-Allowed-Origin header".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str, header: Option<&str>) -> Reply {
        let mut headers = hyper::HeaderMap::new();
        if let Some(value) = header {
            headers.insert("webhook-allowed-origin", value.parse().unwrap());
        }
        Reply {
            status,
            headers,
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn handshake_replies_are_checked_and_faults_named() {
        assert!(
            check_validation_reply(&reply(200, r#"{"validationResponse":"c"}"#, None), "c").is_ok()
        );
        for (status, body, fault) in [
            (200, r#"{"validationResponse":"x"}"#, "not the code"),
            (200, r#"{}"#, "no validationResponse"),
            (200, "ok", "not JSON"),
            (401, "", "401"),
        ] {
            let e = check_validation_reply(&reply(status, body, None), "c").unwrap_err();
            assert!(e.contains(fault), "{e}");
        }
        assert!(check_options_reply(&reply(200, "", Some("eventgrid.azure.net"))).is_ok());
        assert!(check_options_reply(&reply(200, "", Some("*"))).is_ok());
        assert!(
            check_options_reply(&reply(200, "", None))
                .unwrap_err()
                .contains("no WebHook")
        );
        assert!(
            check_options_reply(&reply(405, "", None))
                .unwrap_err()
                .contains("405")
        );
    }

    #[test]
    fn incoming_call_events_have_each_schemas_shape() {
        let call = IncomingCall {
            context: "ctx".into(),
            server_call_id: "server".into(),
            correlation_id: "corr".into(),
            from: "4:+14255550100".into(),
            to: "8:acs:app".into(),
        };
        let grid = incoming_call(EventSchema::EventGrid, &call, "Alice", "e1", "t");
        let event = &grid.body[0];
        assert_eq!(event["eventType"], "Microsoft.Communication.IncomingCall");
        assert_eq!(
            event["subject"],
            "/caller/4:+14255550100/recipient/8:acs:app"
        );
        assert_eq!(
            event["data"]["from"]["phoneNumber"]["value"],
            "+14255550100"
        );
        assert_eq!(event["data"]["to"]["communicationUser"]["id"], "8:acs:app");
        assert_eq!(event["data"]["incomingCallContext"], "ctx");
        assert_eq!(event["data"]["callerDisplayName"], "Alice");
        assert!(
            grid.headers
                .iter()
                .any(|(n, v)| n == "aeg-event-type" && v == "Notification")
        );
        let cloud = incoming_call(EventSchema::CloudEvents, &call, "", "e1", "t");
        assert_eq!(cloud.body[0]["specversion"], "1.0");
        assert_eq!(
            cloud.body[0]["type"],
            "Microsoft.Communication.IncomingCall"
        );
        assert!(
            cloud.headers[0]
                .1
                .starts_with("application/cloudevents-batch+json")
        );
    }
}
