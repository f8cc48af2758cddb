//! One WebSocket from the platform: read messages, parse them, hand frames and events to the
//! call's pipeline, enforce the limits, and end the call in a fixed order whatever ended it.
//!
//! The logic is a sans-IO state machine ([`machine::Machine`]: messages and `now` in, actions
//! out), fuzzed on its own; the socket task ([`driver`]) only feeds it and carries out what it
//! says. [`serve_socket`] is generic over a `Stream + Sink` of axum messages, so tests can drive
//! it with channels as well as with real sockets.

mod actions;
mod driver;
mod format;
#[cfg(test)]
mod fuzz;
mod identity;
pub(crate) mod machine;
#[cfg(test)]
mod tests;
pub(crate) mod text;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::extract::ws::Message;
use futures_util::{FutureExt, Sink, Stream, StreamExt};
use tracing::Instrument;

use crate::AppState;
use crate::session::EndReason;
use crate::writer::SocketWriter;
use driver::Driver;
use machine::{End, ReadError};
use text::Escaped;

/// WebSocket close codes the gateway sends (RFC 6455 §7.4.1).
pub(crate) mod close_code {
    /// The transport ended normally (the operator ended it).
    pub(crate) const NORMAL: u16 = 1000;
    /// The server is going away (shutdown).
    pub(crate) const GOING_AWAY: u16 = 1001;
    /// The peer broke the WebSocket protocol itself.
    pub(crate) const PROTOCOL_ERROR: u16 = 1002;
    /// Data of a type the endpoint cannot accept (binary garbage, unknown kinds).
    pub(crate) const UNSUPPORTED_DATA: u16 = 1003;
    /// Data inconsistent with the message type (malformed JSON, bad payloads).
    pub(crate) const INVALID_PAYLOAD: u16 = 1007;
    /// A policy was violated (idle, too many bad messages).
    pub(crate) const POLICY: u16 = 1008;
    /// A message too big to process.
    pub(crate) const TOO_BIG: u16 = 1009;
    /// The gateway failed (a panic in the call's task).
    pub(crate) const INTERNAL_ERROR: u16 = 1011;
    /// The gateway cannot take the call now (`limits.max_calls`); the platform may retry.
    pub(crate) const TRY_AGAIN_LATER: u16 = 1013;
}

/// What the HTTP upgrade told us about a connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionInfo {
    pub(crate) id: u64,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) path: String,
    pub(crate) query: BTreeMap<String, String>,
}

impl ConnectionInfo {
    /// A query parameter by name, case-insensitively (empty values are absent).
    pub(crate) fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// Serves one upgraded socket until it ends, then finalizes its recording. A panic in the read
/// loop ends the call as cleanly as any other end: the pipeline finishes, the files are
/// finalized, the call leaves the registry and session.json says `internal_error`.
pub(crate) async fn serve_socket<S>(socket: S, app: Arc<AppState>, info: ConnectionInfo)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Unpin + Send + 'static,
{
    let span = tracing::info_span!(
        "conn",
        conn = info.id,
        path = %info.path,
        call_id = tracing::field::Empty
    );
    async move {
        app.metrics.connection_opened();
        let (sink, stream) = socket.split();
        let writer = SocketWriter::spawn(sink, app.config.outbound.dialect, app.metrics.sent());
        let mut driver = Driver::new(Arc::clone(&app), info, writer.outgoing());
        let end = match AssertUnwindSafe(driver.run(stream, &writer))
            .catch_unwind()
            .await
        {
            Ok(end) => end,
            Err(panic) => {
                let message = panic_message(&*panic);
                app.metrics.panicked("connection");
                tracing::error!(panic = %Escaped(&message), "the socket task panicked; ending the call");
                writer.close(close_code::INTERNAL_ERROR, "internal error").await;
                End {
                    reason: EndReason::InternalError,
                    code: Some(close_code::INTERNAL_ERROR),
                    detail: format!("panic: {}", Escaped(&message)),
                }
            }
        };
        driver.finish(end, writer).await;
        app.metrics.connection_closed();
    }
    .instrument(span)
    .await
}

/// The message of a caught panic (`&str` or `String` payloads; anything else is unnamed).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// How a read failed, from tungstenite's error under axum's.
fn read_error_kind(error: &axum::Error) -> ReadError {
    use std::error::Error as _;
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::ProtocolError as ProtocolViolation;
    let mut source = error.source();
    while let Some(e) = source {
        match e.downcast_ref::<WsError>() {
            Some(WsError::Capacity(_)) => return ReadError::TooBig,
            Some(WsError::Utf8(_)) => return ReadError::NotUtf8,
            // A peer that vanishes mid-stream is not breaking the protocol: it is gone.
            Some(WsError::Protocol(ProtocolViolation::ResetWithoutClosingHandshake)) => {
                return ReadError::Other;
            }
            Some(WsError::Protocol(_)) => return ReadError::Protocol,
            Some(_) => return ReadError::Other,
            None => {}
        }
        source = e.source();
    }
    ReadError::Other
}
