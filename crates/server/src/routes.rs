//! HTTP routes: the WebSocket endpoint under `/ws` and `/healthz`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Serialize;

use crate::AppState;
use crate::connection::{ConnectionInfo, serve_socket};

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/ws", any(websocket))
        .route("/ws/{*rest}", any(websocket))
        .with_state(state)
}

async fn websocket(
    State(state): State<Arc<AppState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if state.draining.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    // Before anything is allocated for the call.
    if let Some(refused) = crate::auth::refuse(&state, &headers, &uri, remote).await {
        return refused;
    }
    let mut query: BTreeMap<String, String> = uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .map(|(k, v)| {
                    let v = if is_secret(&k) {
                        "[redacted]".to_owned()
                    } else {
                        v
                    };
                    (k, v)
                })
                .collect()
        })
        .unwrap_or_default();
    state.auth.remove_credentials(&mut query);
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
        })
}

/// Bytes tungstenite reads per syscall. It zero-fills this much before every read, so its
/// default (128 KiB) cost a 128 KiB memset per ~1.3 KB ACS message and 128 KiB of resident memory
/// per connection; 16 KiB still takes a dozen frames per read when a peer sends in bursts.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Query parameters whose values never reach logs or session.json: applications put API keys
/// and signatures in the `transportUrl`.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "sig",
        "pass",
        "auth",
        "credential",
        "code",
    ]
    .iter()
    .any(|word| key.contains(word))
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    live_calls: usize,
    #[serde(flatten)]
    metrics: crate::MetricsSnapshot,
}

/// Prometheus / OpenMetrics exposition.
async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let draining = state.draining.is_cancelled();
    let health = Health {
        status: if draining { "draining" } else { "ok" },
        version: env!("CARGO_PKG_VERSION"),
        live_calls: state.registry.live_calls(),
        metrics: state.metrics.snapshot(),
    };
    let code = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(health))
}
