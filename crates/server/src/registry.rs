//! Live calls by folder: the transports of one call (media and transcription sockets) join the
//! same folder when they share an identity; a reused identity never overwrites a finished call.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mediagate_protocol::Timestamp;

use mediagate_pipeline::sanitize_file_stem;

use crate::session::{
    CallFolder, CallReport, CallStatus, Identity, TransportKind, TransportReport,
};

/// The calls with at least one connected transport.
#[derive(Debug)]
pub(crate) struct CallRegistry {
    data_dir: PathBuf,
    live: Mutex<HashMap<String, LiveCall>>,
    /// `live.len()`, readable without the lock (for `/healthz`).
    live_count: AtomicUsize,
}

#[derive(Debug)]
struct LiveCall {
    folder: Arc<CallFolder>,
    /// Every id this call is known by (its identity, query `callId`, `callConnectionId`).
    keys: BTreeSet<String>,
    transports: Vec<TransportKind>,
}

/// A transport's place in a call: the folder and its own entry in session.json.
#[derive(Debug, Clone)]
pub(crate) struct CallSlot {
    pub(crate) folder: Arc<CallFolder>,
    pub(crate) transport_index: usize,
    pub(crate) kind: TransportKind,
}

impl CallRegistry {
    pub(crate) fn new(data_dir: PathBuf) -> Self {
        CallRegistry {
            data_dir,
            live: Mutex::new(HashMap::new()),
            live_count: AtomicUsize::new(0),
        }
    }

    /// Number of calls with a connected transport.
    pub(crate) fn live_calls(&self) -> usize {
        self.live_count.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LiveCall>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the live call that shares one of `keys` and lacks a transport of this kind, or
    /// creates a new call folder named from `identity`. Blocking (creates a directory under the
    /// registry lock, so two calls never pick the same name; only other call openings wait).
    pub(crate) fn open(
        &self,
        identity: Identity,
        keys: BTreeSet<String>,
        report: TransportReport,
        now: Timestamp,
    ) -> io::Result<CallSlot> {
        let kind = report.kind;
        let mut live = self.lock();
        let joinable = live
            .values_mut()
            .find(|call| !call.transports.contains(&kind) && !call.keys.is_disjoint(&keys));
        if let Some(call) = joinable {
            call.transports.push(kind);
            call.keys.extend(keys);
            let mut call_report = call.folder.report.lock().unwrap_or_else(|p| p.into_inner());
            call_report.transports.push(report);
            let transport_index = call_report.transports.len() - 1;
            return Ok(CallSlot {
                folder: Arc::clone(&call.folder),
                transport_index,
                kind,
            });
        }
        let stem = sanitize_file_stem(&identity.value);
        let mut name = stem.clone();
        let mut n = 2;
        // Never reuse a folder: a reconnect or a reused id must not overwrite a finished call.
        loop {
            let dir = self.data_dir.join(&name);
            if !live.contains_key(&name) {
                match std::fs::create_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            name = format!("{stem}-{n}");
            n += 1;
        }
        let call_report = CallReport {
            call_id: name.clone(),
            identity,
            status: CallStatus::Live,
            started_at: now,
            ended_at: None,
            transports: vec![report],
        };
        let folder = Arc::new(CallFolder::new(
            name.clone(),
            self.data_dir.join(&name),
            call_report,
        ));
        live.insert(
            name,
            LiveCall {
                folder: Arc::clone(&folder),
                keys,
                transports: vec![kind],
            },
        );
        self.live_count.store(live.len(), Ordering::Relaxed);
        Ok(CallSlot {
            folder,
            transport_index: 0,
            kind,
        })
    }

    /// Takes a transport out of its call; when it was the last, the call has ended.
    pub(crate) fn close(&self, slot: &CallSlot, now: Timestamp) {
        let mut live = self.lock();
        let name = slot.folder.name().to_owned();
        let ended = match live.get_mut(&name) {
            Some(call) => {
                if let Some(i) = call.transports.iter().position(|k| *k == slot.kind) {
                    call.transports.remove(i);
                }
                call.transports.is_empty()
            }
            None => true,
        };
        if ended {
            live.remove(&name);
            self.live_count.store(live.len(), Ordering::Relaxed);
            let mut report = slot.folder.report.lock().unwrap_or_else(|p| p.into_inner());
            report.status = CallStatus::Ended;
            report.ended_at = Some(now);
        }
    }
}
