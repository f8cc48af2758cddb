//! A call's identity: the name of its folder and every key another transport of the same call
//! may know it by.

use std::collections::BTreeSet;

use mediagate_protocol::Timestamp;

use super::ConnectionInfo;
use super::text::bounded;
use crate::session::{Identity, TransportReport};

/// The call's identity and every key another transport of the same call may know it by.
pub(crate) fn of_call(
    info: &ConnectionInfo,
    report: &TransportReport,
    connected_at: Timestamp,
) -> (Identity, BTreeSet<String>) {
    let query_connection = info.query_param("callConnectionId").map(bounded);
    let query_call = info.query_param("callId").map(bounded);
    let keys: BTreeSet<String> = [
        query_connection.clone(),
        query_call.clone(),
        report.call_connection_id.clone(),
    ]
    .into_iter()
    .flatten()
    .collect();
    // An id in the transportUrl comes first: the application puts the same one on the media
    // and the transcription URL, so both transports name the folder alike whichever connects
    // first. The in-band callConnectionId (transcription only) comes next.
    let identity = if let Some(value) = query_connection {
        Identity {
            source: "query:callConnectionId",
            value,
        }
    } else if let Some(value) = query_call {
        Identity {
            source: "query:callId",
            value,
        }
    } else if let Some(value) = report.call_connection_id.clone() {
        Identity {
            source: "callConnectionId",
            value,
        }
    } else if let Some(value) = report.subscription_id.clone() {
        Identity {
            source: "subscriptionId",
            value,
        }
    } else {
        let at = connected_at.unix_micros() / 1_000;
        Identity {
            source: "generated",
            value: format!("call-{at}-{}", info.id),
        }
    };
    (identity, keys)
}
