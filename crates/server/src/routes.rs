//! HTTP routes of the main listener: the WebSocket endpoint under `/ws`, `/healthz`, `/readyz`
//! and (unless `[metrics] listen = "admin"`) `/metrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Serialize;

use crate::AppState;
use crate::config::{LowDiskPolicy, MetricsListener};
use crate::connection::text::truncated;
use crate::connection::{ConnectionInfo, serve_socket};
use crate::listener::ConnectionPermit;
use crate::metrics::Refusal;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/ws", any(websocket))
        .route("/ws/{*rest}", any(websocket));
    // The control plane's webhooks exist only when it runs.
    let router = match state.acs {
        Some(_) => router
            .route("/acs/events", any(crate::acs::events))
            .route("/acs/callbacks/{call}", post(crate::acs::callbacks)),
        None => router,
    };
    let router = match state.config.metrics.listen {
        MetricsListener::Main => router.route("/metrics", get(metrics)),
        MetricsListener::Admin => router,
    };
    router.with_state(state)
}

async fn websocket(
    State(state): State<Arc<AppState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    permit: Option<Extension<ConnectionPermit>>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if state.draining.is_cancelled() {
        state.metrics.connection_refused(Refusal::Draining);
        return refused(StatusCode::SERVICE_UNAVAILABLE);
    }
    // Before anything is allocated for the call, and before a stranger learns anything.
    if let Some(refused) = crate::auth::refuse(&state, &headers, &uri, remote).await {
        return refused;
    }
    let mut query = parse_query(uri.query(), &state.config.redaction.shown_query_keys);
    state.auth.remove_credentials(&mut query);
    if state.live_calls() >= state.config.limits.max_calls && !joins_live_call(&state, &query) {
        state.metrics.connection_refused(Refusal::MaxCalls);
        return refused(StatusCode::SERVICE_UNAVAILABLE);
    }
    // Below the free-disk floor a new call is refused, or let in to be recorded without audio
    // (its recorder stops at once, and says so).
    if state.config.recording.on_low_disk == LowDiskPolicy::Refuse
        && state.low_on_disk()
        && !joins_live_call(&state, &query)
    {
        state.metrics.connection_refused(Refusal::LowDisk);
        return refused(StatusCode::SERVICE_UNAVAILABLE);
    }
    let info = ConnectionInfo {
        id: state.next_connection_id.fetch_add(1, Ordering::Relaxed),
        remote_addr: Some(remote),
        path: uri.path().to_owned(),
        query,
    };
    let max = state.config.limits.max_message_bytes;
    // Tracked from the upgrade request on, not from when the upgraded task first runs, so a
    // shutdown can never miss a connection that is about to start.
    let token = state.tracker.token();
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(max)
        .max_frame_size(max)
        .on_failed_upgrade(|e| tracing::warn!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            serve_socket(socket, state, info).await;
            drop(token);
            // The socket's place among `limits.max_connections` is given back last.
            drop(permit);
        })
}

/// A refusal before the upgrade: a status and nothing else.
fn refused(status: StatusCode) -> Response {
    (status, [(axum::http::header::RETRY_AFTER, "1")]).into_response()
}

/// Whether a query names a call that is live now (by `callId` or `callConnectionId`): its
/// second transport may join it even when `limits.max_calls` are live.
fn joins_live_call(state: &AppState, query: &BTreeMap<String, String>) -> bool {
    query.iter().any(|(key, value)| {
        (key.eq_ignore_ascii_case("callId") || key.eq_ignore_ascii_case("callConnectionId"))
            && state.registry.knows(value)
    })
}

/// Bytes tungstenite reads per syscall. It zero-fills this much before every read, so its
/// default (128 KiB) cost a 128 KiB memset per ~1.3 KB ACS message and 128 KiB of resident memory
/// per connection; 16 KiB still takes a dozen frames per read when a peer sends in bursts.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Query parameters kept per connection (the rest are dropped: they would only fill session.json).
const MAX_QUERY_PARAMS: usize = 32;
/// Longest query value kept, in bytes (longer ones are cut at a character boundary).
const MAX_QUERY_VALUE_BYTES: usize = 256;
/// Query parameters the gateway itself reads: always kept as they are (they name the call).
const FUNCTIONAL_QUERY_KEYS: [&str; 3] = ["callId", "callConnectionId", "sampleRate"];

/// The query string as the connection keeps it: at most [`MAX_QUERY_PARAMS`] parameters, values
/// cut to [`MAX_QUERY_VALUE_BYTES`], and every value whose name is neither read by the gateway
/// nor in `shown` replaced by `<redacted>`: applications put API keys, tokens and signatures in
/// the `transportUrl`, under names nobody can list in advance.
fn parse_query(query: Option<&str>, shown: &[String]) -> BTreeMap<String, String> {
    let Some(query) = query else {
        return BTreeMap::new();
    };
    let allowed = |key: &str| {
        FUNCTIONAL_QUERY_KEYS
            .iter()
            .any(|k| k.eq_ignore_ascii_case(key))
            || shown.iter().any(|k| k.eq_ignore_ascii_case(key))
    };
    form_urlencoded::parse(query.as_bytes())
        .take(MAX_QUERY_PARAMS)
        .map(|(key, value)| {
            let key = truncated(&key, MAX_QUERY_VALUE_BYTES).to_owned();
            let value = if allowed(&key) {
                truncated(&value, MAX_QUERY_VALUE_BYTES).to_owned()
            } else {
                "<redacted>".to_owned()
            };
            (key, value)
        })
        .collect()
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    live_calls: usize,
    #[serde(flatten)]
    metrics: crate::MetricsSnapshot,
}

/// The metrics: OpenMetrics for a scraper that asks for it, else the Prometheus text format.
/// The metrics, in the format the scraper asks for.
pub(crate) async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = crate::metrics::Exposition::negotiate(accept);
    // The process collector reads /proc: off the async threads.
    let encoding = tokio::task::spawn_blocking(move || state.metrics.encode(format));
    let Ok(text) = encoding.await else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded",
        )
            .into_response();
    };
    (
        [(axum::http::header::CONTENT_TYPE, format.content_type())],
        text,
    )
        .into_response()
}

/// Whether the process serves: 200 while it runs, draining or not (a liveness probe must not
/// restart a node that is finishing its calls).
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, description = "The gateway runs; `status` says `ok` or `draining`")))]
pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let draining = state.draining.is_cancelled();
    Json(Health {
        status: if draining { "draining" } else { "ok" },
        version: env!("CARGO_PKG_VERSION"),
        live_calls: state.registry.live_calls(),
        metrics: state.metrics.snapshot(),
    })
}

/// Whether the gateway takes new calls: 503 while it drains (shutdown, or `POST /drain`).
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses(
        (status = 200, description = "New calls are accepted"),
        (status = 503, description = "Draining: live calls go on, new ones are refused"),
    ))]
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.draining.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_query_values_are_shown() {
        let shown = vec!["correlationId".to_owned()];
        let query = parse_query(
            Some("callId=c1&correlationid=x&apiKey=s3cret&weird=v&SAMPLERATE=16000"),
            &shown,
        );
        assert_eq!(query["callId"], "c1");
        assert_eq!(query["correlationid"], "x");
        assert_eq!(query["SAMPLERATE"], "16000");
        assert_eq!(query["apiKey"], "<redacted>");
        assert_eq!(query["weird"], "<redacted>");
    }

    #[test]
    fn queries_are_bounded() {
        let long = "é".repeat(1000);
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        let query = parse_query(Some(&format!("callId={long}&{}", many.join("&"))), &[]);
        assert_eq!(query.len(), MAX_QUERY_PARAMS);
        assert!(query["callId"].len() <= MAX_QUERY_VALUE_BYTES);
        assert!(query["callId"].chars().all(|c| c == 'é'));
    }
}
