//! The reference: the barest echo server that speaks the protocol. It finds the `data` field of
//! each text message by substring, re-wraps it as an outbound AudioData and sends it back; no
//! JSON parser, no decode, no pipeline. What it costs is the floor any gateway pays for reading
//! and writing one WebSocket message per frame; `mediagate bench --reference-echo` measures it
//! the same way as a real gateway, so the two figures compare.
//!
//! With `drop_every: Some(n)` it drops every n-th audio frame: a deliberately lossy gateway, to
//! check that the bench reports loss.

use std::future::Future;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// Serves echo connections on `listener` until `shutdown` completes.
pub async fn serve_reference_echo(
    listener: TcpListener,
    drop_every: Option<u64>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(echo(stream, drop_every));
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
        }
    }
}

async fn echo(stream: TcpStream, drop_every: Option<u64>) {
    let _ = stream.set_nodelay(true);
    let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let mut frames = 0u64;
    while let Some(Ok(message)) = socket.next().await {
        // On a close frame, keep polling: that sends the reply, then the stream ends.
        let Message::Text(text) = message else {
            continue;
        };
        let Some(data) = data_field(&text) else {
            continue;
        };
        frames += 1;
        if drop_every.is_some_and(|n| n > 0 && frames.is_multiple_of(n)) {
            continue;
        }
        let reply = format!(r#"{{"kind":"AudioData","audioData":{{"data":"{data}"}}}}"#);
        if socket.send(Message::text(reply)).await.is_err() {
            break;
        }
    }
}

/// The value of the first `"data":"…"` in `text`, by substring.
fn data_field(text: &str) -> Option<&str> {
    const KEY: &str = r#""data":""#;
    let start = text.find(KEY)? + KEY.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_data_field_only() {
        assert_eq!(
            data_field(
                r#"{"kind":"AudioData","audioData":{"timestamp":"t","data":"QUJD","silent":false}}"#
            ),
            Some("QUJD")
        );
        assert_eq!(
            data_field(r#"{"kind":"AudioMetadata","audioMetadata":{"sampleRate":16000}}"#),
            None
        );
    }
}
