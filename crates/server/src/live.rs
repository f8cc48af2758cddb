//! The transports live now, as the admin API sees and steers them: what each is, its
//! processors' counters, and the handles to end it and to play into it. Each connection
//! registers its transport once the call has opened and takes it out first thing when it ends;
//! the socket task never waits on this table (one short lock at each end).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use mediagate_audio::{AudioFormat, Timestamp};
use mediagate_pipeline::{ConsumerProbe, Playback};
use tokio_util::sync::CancellationToken;

use crate::session::TransportKind;

/// Every live transport, by connection id.
#[derive(Default)]
pub(crate) struct LiveTransports {
    by_connection: Mutex<BTreeMap<u64, Arc<LiveTransport>>>,
}

/// One live transport.
pub(crate) struct LiveTransport {
    pub(crate) connection: u64,
    /// The call it belongs to: its folder name, or its identity when nothing is recorded.
    pub(crate) call_id: Arc<str>,
    pub(crate) kind: TransportKind,
    pub(crate) path: String,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) format: AudioFormat,
    pub(crate) started_at: Timestamp,
    /// Cancelled to end the transport (closed 1000, `operator`).
    pub(crate) hangup: CancellationToken,
    /// The call's processors, for their counters.
    pub(crate) probes: Vec<ConsumerProbe>,
    /// The way into the call's outbound audio (bidirectional media only); taken out when the
    /// transport ends, so no handle outlives it.
    pub(crate) playback: Mutex<Option<Playback>>,
}

impl LiveTransport {
    /// The call's player, locked; `None` inside when the call has no outbound audio or the
    /// transport has ended.
    pub(crate) fn playback(&self) -> MutexGuard<'_, Option<Playback>> {
        self.playback.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LiveTransports {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<LiveTransport>>> {
        self.by_connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lists `transport` until the returned guard is dropped.
    pub(crate) fn register(self: &Arc<Self>, transport: LiveTransport) -> Registered {
        let transport = Arc::new(transport);
        self.lock()
            .insert(transport.connection, Arc::clone(&transport));
        Registered {
            table: Arc::clone(self),
            transport,
        }
    }

    /// Every live transport, by connection id.
    pub(crate) fn all(&self) -> Vec<Arc<LiveTransport>> {
        self.lock().values().cloned().collect()
    }

    /// The live transports of call `call_id`.
    pub(crate) fn of_call(&self, call_id: &str) -> Vec<Arc<LiveTransport>> {
        self.lock()
            .values()
            .filter(|t| &*t.call_id == call_id)
            .cloned()
            .collect()
    }
}

/// A transport's place in [`LiveTransports`]: dropping it takes the transport out.
pub(crate) struct Registered {
    table: Arc<LiveTransports>,
    transport: Arc<LiveTransport>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.table.lock().remove(&self.transport.connection);
        self.transport.playback().take();
    }
}
