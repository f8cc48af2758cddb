//! One HTTP request to the fake: the published signing keys (no authentication, as ACS's), or a
//! Call Automation method: authenticated, matched to the reference, validated, throttled when
//! scripted, replayed when repeated, applied to the state, and recorded.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;

use super::driver;
use super::fake::{RecordedRequest, Shared, lock};
use super::reference::Operation;
use super::signing::openid_configuration;
use super::state::{Effect, Reply, State, error, execute};
use super::validate::validate;
use super::verify::{Credentials, authenticate, parse_http_date};

/// The largest request body read.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How many requests are kept for [`super::ControlPlane::requests`].
const MAX_RECORDED: usize = 10_000;

/// Where the OpenID configuration is served: ACS's path (under `/calling`) and the bare one.
pub(crate) const OPENID_PATHS: [&str; 2] = [
    "/calling/.well-known/acsopenidconfiguration",
    "/.well-known/acsopenidconfiguration",
];
/// Where the key set is served (the configuration's `jwks_uri`).
pub(crate) const JWKS_PATH: &str = "/calling/keys";

/// A path's parameters by name.
type Params = Vec<(String, String)>;

/// Answers one request.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    if parts.method == Method::GET {
        if let Some(document) = published(shared, parts.uri.path()) {
            return respond(200, &document, None);
        }
    }
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            let (status, body) = error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLarge",
                "the body is larger than 1 MiB",
                None,
            );
            return respond(status, &body, None);
        }
    };
    let mut record = record_of(&parts, &body);
    let (status, reply, retry_after) = match admit(shared, &parts, &body, &mut record) {
        Err((status, reply)) => (status, reply, None),
        Ok((operation, params)) => apply(shared, &operation, &params, &record),
    };
    record.status = status;
    if status >= 400 {
        record.error = reply["error"]["message"].as_str().map(str::to_owned);
    }
    {
        let mut state = lock(shared);
        if state.requests.len() < MAX_RECORDED {
            state.requests.push(record);
        }
    }
    respond(status, &reply, retry_after.as_deref())
}

/// The OpenID configuration or the key set, when `path` names one.
fn published(shared: &Shared, path: &str) -> Option<Value> {
    if OPENID_PATHS.contains(&path) {
        Some(openid_configuration(&shared.issuer, &shared.endpoint))
    } else if path == JWKS_PATH {
        Some(shared.signer.jwks())
    } else {
        None
    }
}

fn respond(status: u16, body: &Value, retry_after: Option<&str>) -> Response<Full<Bytes>> {
    let bytes = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(retry_after) = retry_after {
        response = response.header("retry-after", retry_after);
    }
    response
        .body(Full::new(bytes))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// The request as it will be recorded (operation and status filled in later).
fn record_of(parts: &Parts, body: &Bytes) -> RecordedRequest {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        operation: None,
        repeatable: false,
        api_version: parts.uri.query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "api-version")
                .map(|(_, v)| v.into_owned())
        }),
        repeatability: header("repeatability-request-id").zip(header("repeatability-first-sent")),
        body: if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).unwrap_or(Value::Null)
        },
        status: 0,
        error: None,
    }
}

/// Authenticates the request and finds its method; refuses a body the reference does not
/// allow. Fills the record's operation.
fn admit(
    shared: &Shared,
    parts: &Parts,
    body: &Bytes,
    record: &mut RecordedRequest,
) -> Result<(Operation, Params), Reply> {
    let (method, path) = (parts.method.as_str(), parts.uri.path());
    let path_and_query = parts.uri.path_and_query().map_or(path, |pq| pq.as_str());
    let credentials = Credentials {
        access_key: &shared.options.access_key,
        bearer: shared.options.bearer_token.as_deref(),
    };
    let now = time::OffsetDateTime::now_utc();
    authenticate(
        &credentials,
        method,
        path_and_query,
        &parts.headers,
        body,
        now,
    )
    .map_err(|why| {
        let message = format!("Denied by the resource provider: {why}");
        error(StatusCode::UNAUTHORIZED, "Denied", &message, None)
    })?;
    check_api_version(record.api_version.as_deref())?;
    let Some((operation, params)) = shared
        .operations
        .iter()
        .find_map(|o| o.matches(method, path).map(|p| (o, p)))
    else {
        let message = format!("No Call Automation method is {method} {path}");
        return Err(error(StatusCode::NOT_FOUND, "NotFound", &message, None));
    };
    record.operation = Some(operation.name.clone());
    record.repeatable = operation.repeatable;
    let bad = |message: &str, target: Option<&str>| {
        error(StatusCode::BAD_REQUEST, "BadRequest", message, target)
    };
    if !body.is_empty() && record.body.is_null() {
        return Err(bad("The request body is not JSON", None));
    }
    validate(operation, &record.body)
        .map_err(|invalid| bad(&invalid.message, Some(&invalid.target)))?;
    if let Some((id, first_sent)) = &record.repeatability {
        if parse_http_date(first_sent).is_none() || id.len() != 36 {
            return Err(bad(
                "Repeatability-Request-ID must be a UUID and Repeatability-First-Sent an RFC 1123 date",
                Some("Repeatability-Request-ID"),
            ));
        }
    }
    Ok((operation.clone(), params))
}

fn check_api_version(version: Option<&str>) -> Result<(), Reply> {
    let Some(version) = version else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter is required",
            None,
        ));
    };
    if !valid_api_version(version) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            &format!("The api-version `{version}` is invalid"),
            None,
        ));
    }
    Ok(())
}

/// `api-version` as Azure spells versions: `YYYY-MM-DD`, maybe `-preview`.
fn valid_api_version(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

/// Applies an admitted request: throttled as scripted, replayed when repeated, else executed
/// (and its effect passed on to the call's driver, under the same lock, so a call hears of its
/// methods in the order they were applied).
fn apply(
    shared: &Arc<Shared>,
    operation: &Operation,
    params: &[(String, String)],
    record: &RecordedRequest,
) -> (u16, Value, Option<String>) {
    let mut state = lock(shared);
    if let Some((status, retry_after)) = throttled(&mut state) {
        let code = if status == 429 {
            "TooManyRequests"
        } else {
            "ServiceUnavailable"
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let (status, reply) = error(status, code, "Try again later", None);
        return (status, reply, retry_after);
    }
    let repeated = record.repeatability.as_ref().map(|(id, _)| id);
    if let Some((status, reply)) = repeated.and_then(|id| state.replies.get(id).cloned()) {
        return (status, reply, None);
    }
    let ((status, reply), effect) = execute(&mut state, operation, params, &record.body);
    if let Some(id) = repeated {
        if (200..300).contains(&status) {
            state.replies.insert(id.clone(), (status, reply.clone()));
        }
    }
    dispatch(shared, &mut state, effect);
    (status, reply, None)
}

fn throttled(state: &mut State) -> Option<(u16, Option<String>)> {
    match &mut state.throttle {
        Some((status, retry_after, count)) if *count > 0 => {
            *count -= 1;
            Some((*status, retry_after.clone()))
        }
        _ => None,
    }
}

/// Starts the driver of an answered call, or passes a method on to its driver.
fn dispatch(shared: &Arc<Shared>, state: &mut State, effect: Effect) {
    match effect {
        Effect::None => {}
        Effect::Answered(call) => {
            let (inbox, calls) = tokio::sync::mpsc::channel(driver::INBOX_CAPACITY);
            state
                .drivers
                .insert(call.ids.call_connection_id.clone(), inbox.clone());
            tokio::spawn(driver::drive(shared.clone(), call, calls, inbox));
        }
        Effect::Method { call_id, input } => {
            if let Some(inbox) = state.drivers.get(&call_id) {
                if inbox.try_send(input).is_err() {
                    tracing::warn!(call = %call_id, "call's inbox full or closed: a method's callbacks are dropped");
                }
            }
        }
    }
}
