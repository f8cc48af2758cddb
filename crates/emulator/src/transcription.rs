//! The transcription transport: TranscriptionMetadata, then each scripted TranscriptionData at its
//! time (or at once, in order, with fast pacing).

use futures_util::{Sink, SinkExt};
use mediagate_protocol::InboundMessage;
use tokio::sync::watch;
use tokio::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use crate::Pacing;
use crate::connection::SendEnd;
use crate::script::TranscriptScript;

/// Everything the transcription transport will send, encoded before the clock starts.
#[derive(Debug)]
pub(crate) struct TranscriptPlan {
    /// TranscriptionMetadata, sent first.
    pub(crate) metadata: Utf8Bytes,
    /// TranscriptionData messages with their times from the start of the stream, in order.
    pub(crate) results: Vec<(Duration, Utf8Bytes)>,
}

impl TranscriptPlan {
    /// Encodes a script under a fresh subscription id.
    pub(crate) fn build(script: TranscriptScript, subscription_id: String) -> Self {
        let mut metadata = script.metadata;
        metadata.subscription_id = Some(subscription_id);
        let results = script
            .results
            .into_iter()
            .map(|(at, data)| (at, InboundMessage::TranscriptionData(data).to_json().into()))
            .collect();
        TranscriptPlan {
            metadata: InboundMessage::TranscriptionMetadata(metadata)
                .to_json()
                .into(),
            results,
        }
    }
}

/// Sends the results (the metadata is sent by the caller), each at `start + at` or at once with
/// fast pacing; stops when `gateway_closed` rises. Counts what was sent in `sent`.
pub(crate) async fn send_results<S>(
    sink: &mut S,
    results: Vec<(Duration, Utf8Bytes)>,
    pacing: Pacing,
    start: Instant,
    mut gateway_closed: watch::Receiver<bool>,
    sent: &mut u64,
) -> Result<SendEnd, tungstenite::Error>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    for (at, message) in results {
        if pacing == Pacing::Realtime {
            tokio::select! {
                biased;
                _ = gateway_closed.wait_for(|closed| *closed) => return Ok(SendEnd::GatewayClosed),
                () = tokio::time::sleep_until(start + at) => {}
            }
        } else if *gateway_closed.borrow() {
            return Ok(SendEnd::GatewayClosed);
        }
        sink.feed(Message::Text(message)).await?;
        *sent += 1;
        if pacing == Pacing::Realtime {
            sink.flush().await?;
        }
    }
    sink.flush().await?;
    Ok(SendEnd::Completed)
}
