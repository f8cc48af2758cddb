//! The HTTP side: `POST /acs/events` (Event Grid) and `POST /acs/callbacks/{call}` (ACS's
//! mid-call events).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use mediagate_acs::models::CommunicationIdentifier;
use serde_json::{Value, json};

use super::{ControlPlane, Incoming, decide, on_callback};
use crate::AppState;

/// The largest delivery read (Event Grid batches are at most 1 MB).
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Events handled from one delivery at most.
const MAX_EVENTS: usize = 256;

fn plane(state: &AppState) -> Option<Arc<ControlPlane>> {
    state.acs.clone()
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, Json(json!({ "error": why }))).into_response()
}

/// Whether the delivery carries Event Grid's secret (`?secret=`), compared in constant time.
fn authorized(plane: &ControlPlane, uri: &Uri) -> bool {
    let Some(expected) = &plane.events_secret else {
        return true;
    };
    let offered = uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "secret")
            .map(|(_, v)| v.into_owned())
    });
    offered.is_some_and(|offered| {
        use subtle::ConstantTimeEq;
        offered.as_bytes().ct_eq(expected).into()
    })
}

/// Event Grid's deliveries: the handshake of either schema, and incoming calls.
pub(crate) async fn events(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(plane) = plane(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !authorized(&plane, &uri) {
        state.metrics.acs_refused("events_secret");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the delivery does not carry the webhook's secret",
        );
    }
    // CloudEvents' abuse protection: an OPTIONS with the origin to allow.
    if method == Method::OPTIONS {
        let Some(origin) = headers.get("webhook-request-origin").cloned() else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        let mut response = StatusCode::OK.into_response();
        response
            .headers_mut()
            .insert("webhook-allowed-origin", origin);
        response
            .headers_mut()
            .insert("webhook-allowed-rate", HeaderValue::from_static("120"));
        return response;
    }
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    if body.len() > MAX_BODY_BYTES {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "deliveries are at most 1 MiB",
        );
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "the delivery is not JSON");
    };
    // An array (Event Grid, or a CloudEvents batch) or one CloudEvent.
    let events: Vec<Value> = match parsed {
        Value::Array(events) => events,
        event @ Value::Object(_) => vec![event],
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "the delivery is neither an event nor an array of them",
            );
        }
    };
    if events.len() > MAX_EVENTS {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too many events in one delivery",
        );
    }
    for event in events {
        // Event Grid's schema says `eventType`, CloudEvents' says `type`.
        let kind = event["eventType"]
            .as_str()
            .or_else(|| event["type"].as_str())
            .unwrap_or_default();
        match kind {
            "Microsoft.EventGrid.SubscriptionValidationEvent" => {
                let Some(code) = event["data"]["validationCode"].as_str() else {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        "a validation event without validationCode",
                    );
                };
                tracing::info!("Event Grid subscription validated");
                return Json(json!({ "validationResponse": code })).into_response();
            }
            "Microsoft.Communication.IncomingCall" => {
                let Some(incoming) = incoming(&event) else {
                    state.metrics.acs_refused("bad_event");
                    continue;
                };
                let key = incoming
                    .correlation_id
                    .clone()
                    .unwrap_or_else(|| incoming.context.clone());
                if !plane.first_sighting(&key) {
                    continue; // a redelivery
                }
                let Ok(permit) = Arc::clone(&plane.pending).try_acquire_owned() else {
                    state.metrics.acs_refused("busy");
                    tracing::warn!(
                        "[acs] max_pending incoming calls are being decided: one is left to ring"
                    );
                    continue;
                };
                if state.draining.is_cancelled() {
                    continue;
                }
                let (app, plane) = (Arc::clone(&state), Arc::clone(&plane));
                tokio::spawn(async move {
                    decide(app, plane, incoming).await;
                    drop(permit);
                });
            }
            _ => {}
        }
    }
    StatusCode::OK.into_response()
}

/// An `IncomingCall` event's data, when it has what a decision needs.
fn incoming(event: &Value) -> Option<Incoming> {
    let data = &event["data"];
    let identifier = |v: &Value| serde_json::from_value::<CommunicationIdentifier>(v.clone()).ok();
    let text = |v: &Value| {
        v.as_str()
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .map(str::to_owned)
    };
    Some(Incoming {
        event_id: event["id"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(128)
            .collect(),
        from: identifier(&data["from"])?,
        to: identifier(&data["to"])?,
        context: data["incomingCallContext"]
            .as_str()
            .filter(|c| !c.is_empty() && c.len() <= 64 * 1024)?
            .to_owned(),
        correlation_id: text(&data["correlationId"]),
        server_call_id: data["serverCallId"]
            .as_str()
            .map(|s| s.chars().take(1024).collect()),
        data: data.clone(),
    })
}

/// ACS's mid-call events for one call.
pub(crate) async fn callbacks(
    State(state): State<Arc<AppState>>,
    Path(call_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(plane) = plane(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Err(refusal) = plane.verifier.verify(&headers).await {
        state.metrics.acs_refused(refusal.as_str());
        tracing::debug!(reason = refusal.as_str(), "callback refused");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(call) = plane.call(&call_id) else {
        return refuse(StatusCode::NOT_FOUND, "no such call");
    };
    if body.len() > MAX_BODY_BYTES {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "callbacks are at most 1 MiB");
    }
    let events: Vec<Value> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(events)) => events,
        Ok(event @ Value::Object(_)) => vec![event],
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "a callback is a CloudEvent or an array of them",
            );
        }
    };
    let expected = call.call_connection_id();
    for event in events.iter().take(MAX_EVENTS) {
        // An event of another call (a signed token is ACS's, but the URL is ours to check).
        let of = event["data"]["callConnectionId"].as_str();
        if let (Some(expected), Some(of)) = (&expected, of) {
            if expected != of {
                tracing::warn!(call = %call_id, "a callback names another call connection: ignored");
                continue;
            }
        }
        on_callback(&state, &plane, &call, event).await;
    }
    StatusCode::OK.into_response()
}
