//! The HTTP side: `POST /acs/events` (Event Grid) and `POST /acs/callbacks/{call}` (ACS's
//! mid-call events).

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use mediagate_acs::models::CommunicationIdentifier;
use serde_json::{Value, json};

use super::{ControlPlane, Incoming, decide, on_callback};
use crate::AppState;

/// The largest delivery read (Event Grid batches are at most 1 MB).
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The largest callback read (ACS's are a few KiB).
const MAX_CALLBACK_BYTES: usize = 256 * 1024;
/// How long a request's body may take to arrive, once its sender is authenticated.
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);
/// Events handled from one delivery at most.
const MAX_EVENTS: usize = 64;

fn plane(state: &AppState) -> Option<Arc<ControlPlane>> {
    state.acs.clone()
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, Json(json!({ "error": why }))).into_response()
}

/// The body, read only now (its sender is authenticated), at most `limit` bytes, within
/// [`BODY_DEADLINE`]: a slow or endless body costs its connection, nothing more.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    match tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is too large",
        )),
        Err(_) => Err(refuse(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time",
        )),
    }
}

/// Whether the URL's query has `name` equal to `expected`, compared in constant time.
fn query_has(uri: &Uri, name: &str, expected: &[u8]) -> bool {
    let offered = uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    });
    offered.is_some_and(|offered| {
        use subtle::ConstantTimeEq;
        offered.as_bytes().ct_eq(expected).into()
    })
}

/// Whether the delivery carries Event Grid's secret (`?secret=`).
fn authorized(plane: &ControlPlane, uri: &Uri) -> bool {
    match &plane.events_secret {
        Some(expected) => query_has(uri, "secret", expected),
        None => true,
    }
}

/// Event Grid's deliveries: the handshake of either schema, and incoming calls.
pub(crate) async fn events(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
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
    let body = match read_body(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
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
                // Event Grid delivers at least once: the same event, by its id. (Not by
                // correlation id: a call's other legs share it.)
                let key = incoming.event_id.clone();
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
            .filter(|id| !id.is_empty() && id.len() <= 128)?
            .to_owned(),
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

/// ACS's mid-call events for one call: ACS's token, then the call's own key in the URL
/// (`?k=`, given to ACS in the answer's callbackUri), then the body.
pub(crate) async fn callbacks(
    State(state): State<Arc<AppState>>,
    Path(call_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(plane) = plane(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Err(refusal) = plane.verifier.verify(&headers).await {
        state.metrics.acs_refused(refusal.as_str());
        tracing::debug!(reason = refusal.as_str(), "callback refused");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // A token is ACS's for the whole resource: the URL's key says it is this call's.
    let call = plane
        .call(&call_id)
        .filter(|call| query_has(&uri, "k", call.key.as_bytes()));
    let Some(call) = call else {
        state.metrics.acs_refused("callback_key");
        return refuse(StatusCode::NOT_FOUND, "no such call");
    };
    let body = match read_body(body, MAX_CALLBACK_BYTES).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
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
    for event in events.into_iter().take(MAX_EVENTS) {
        // Every mid-call event names its call connection; once the answer has said which,
        // another's is refused.
        let Some(of) = event["data"]["callConnectionId"].as_str() else {
            state.metrics.acs_refused("bad_event");
            continue;
        };
        if call
            .call_connection_id()
            .is_some_and(|expected| expected != of)
        {
            tracing::warn!(call = %call_id, "a callback names another call connection: ignored");
            state.metrics.acs_refused("other_call");
            continue;
        }
        on_callback(&state, &call, event).await;
    }
    StatusCode::OK.into_response()
}
