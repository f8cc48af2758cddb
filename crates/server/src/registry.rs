//! Live calls by folder: the transports of one call (media and transcription sockets) join the
//! same folder when they share an identity; a reused identity never overwrites a finished call.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mediagate_protocol::Timestamp;

use mediagate_pipeline::sanitize_file_stem;

use crate::compliance::chain::Chain;
use crate::session::{
    CallFolder, CallReport, CallStatus, Identity, TransportKind, TransportReport,
};

/// The calls with at least one connected transport.
#[derive(Debug)]
pub(crate) struct CallRegistry {
    data_dir: PathBuf,
    /// Most calls live at once (`limits.max_calls`).
    max_calls: usize,
    live: Mutex<Live>,
    /// `live.len()`, readable without the lock (for `/healthz`).
    live_count: AtomicUsize,
    /// The data dir's hash chain, handed to each call folder to seal it when it ends.
    chain: Arc<Chain>,
}

/// The live calls by folder name, and an index of every key they are known by, so a
/// transport finds its call in O(1) however many calls are live.
#[derive(Debug, Default)]
struct Live {
    calls: HashMap<String, LiveCall>,
    /// Key → the folder name of the newest live call known by it.
    by_key: HashMap<String, String>,
    /// The last suffix a collision fell back to, so each one is new (see `CallRegistry::open`).
    last_unique_suffix: u64,
}

#[derive(Debug)]
struct LiveCall {
    folder: Arc<CallFolder>,
    /// Every id this call is known by (its identity, query `callId`, `callConnectionId`).
    keys: BTreeSet<String>,
    transports: Vec<TransportKind>,
    /// Held open by the control plane (answered, not yet disconnected): the call does not end
    /// when its last transport does, so callbacks after the sockets close still belong to it.
    held: bool,
}

/// A transport's place in a call: the folder and its own entry in session.json.
#[derive(Debug, Clone)]
pub(crate) struct CallSlot {
    pub(crate) folder: Arc<CallFolder>,
    pub(crate) transport_index: usize,
    pub(crate) kind: TransportKind,
}

/// `limits.max_calls` calls are live: a new one cannot start (carried in an `io::Error`; see
/// [`is_full`]).
#[derive(Debug, thiserror::Error)]
#[error("{0} calls are live, the most limits.max_calls allows")]
pub(crate) struct CallsFull(usize);

/// Whether `error` says the registry is full.
pub(crate) fn is_full(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<CallsFull>().is_some())
}

/// Folder names tried as `stem-2`… before falling back to a unique suffix.
const NUMBERED_NAMES: u64 = 8;

impl CallRegistry {
    pub(crate) fn new(data_dir: PathBuf, max_calls: usize, chain: Arc<Chain>) -> Self {
        CallRegistry {
            data_dir,
            max_calls,
            live: Mutex::new(Live::default()),
            live_count: AtomicUsize::new(0),
            chain,
        }
    }

    /// Whether the folder `name` belongs to a live call (retention never touches it).
    pub(crate) fn holds(&self, name: &str) -> bool {
        self.lock().calls.contains_key(name)
    }

    /// Number of calls with a connected transport.
    pub(crate) fn live_calls(&self) -> usize {
        self.live_count.load(Ordering::Relaxed)
    }

    /// Whether a live call is known by `key`.
    pub(crate) fn knows(&self, key: &str) -> bool {
        self.lock().by_key.contains_key(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the live call that shares one of `keys` and lacks a transport of this kind, or
    /// creates a new call folder named from `identity` (refused with [`CallsFull`] when
    /// `max_calls` are live). Blocking (creates a directory under the registry lock, so two
    /// calls never pick the same name; only other call openings wait, and each tries at most
    /// ten names).
    pub(crate) fn open(
        &self,
        identity: Identity,
        keys: BTreeSet<String>,
        report: TransportReport,
        now: Timestamp,
    ) -> io::Result<CallSlot> {
        let kind = report.kind;
        let mut guard = self.lock();
        let live = &mut *guard;
        let joinable = keys
            .iter()
            .filter_map(|key| live.by_key.get(key))
            .find(|name| {
                live.calls
                    .get(name.as_str())
                    .is_some_and(|call| !call.transports.contains(&kind))
            })
            .cloned();
        if let Some(name) = joinable {
            for key in &keys {
                live.by_key.insert(key.clone(), name.clone());
            }
            if let Some(call) = live.calls.get_mut(&name) {
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
        }
        if live.calls.len() >= self.max_calls {
            return Err(io::Error::other(CallsFull(live.calls.len())));
        }
        let folder = self.new_call(live, identity, keys, Some(report), now)?;
        Ok(CallSlot {
            folder,
            transport_index: 0,
            kind,
        })
    }

    /// A new live call: its folder (named from `identity`), its report (with `transport`, the
    /// one that opens it; none for a call the control plane holds), its keys. Under the lock.
    fn new_call(
        &self,
        live: &mut Live,
        identity: Identity,
        mut keys: BTreeSet<String>,
        transport: Option<TransportReport>,
        now: Timestamp,
    ) -> io::Result<Arc<CallFolder>> {
        let name = self.create_folder(live, &sanitize_file_stem(&identity.value))?;
        let held = transport.is_none();
        if held {
            // Its sockets name it by its folder (the control plane gives them that name),
            // which may differ from the identity (sanitized, or `-2` when taken).
            keys.insert(name.clone());
        }
        let transports: Vec<TransportKind> = transport.iter().map(|t| t.kind).collect();
        let report = CallReport {
            call_id: name.clone(),
            identity,
            status: CallStatus::Live,
            started_at: now,
            ended_at: None,
            transports: transport.into_iter().collect(),
            control: None,
        };
        let folder = Arc::new(CallFolder::new(
            name.clone(),
            self.data_dir.join(&name),
            report,
            Arc::clone(&self.chain),
        ));
        for key in &keys {
            live.by_key.insert(key.clone(), name.clone());
        }
        live.calls.insert(
            name,
            LiveCall {
                folder: Arc::clone(&folder),
                keys,
                transports,
                held,
            },
        );
        self.live_count.store(live.calls.len(), Ordering::Relaxed);
        Ok(folder)
    }

    /// Creates a new folder named `stem`, else `stem-2` … `stem-9`, else `stem-<unique number>`:
    /// never an existing one (a reconnect or a reused id must not overwrite a finished call),
    /// and at most ten tries however often the id was used (a peer that reuses one id cannot
    /// make each new call probe longer).
    fn create_folder(&self, live: &mut Live, stem: &str) -> io::Result<String> {
        let numbered = (2..2 + NUMBERED_NAMES).map(|n| format!("{stem}-{n}"));
        for name in std::iter::once(stem.to_owned()).chain(numbered) {
            if self.try_create(live, &name)? {
                return Ok(name);
            }
        }
        let micros = u64::try_from(Timestamp::now().unix_micros()).unwrap_or(0);
        live.last_unique_suffix = micros.max(live.last_unique_suffix + 1);
        let name = format!("{stem}-{}", live.last_unique_suffix);
        if self.try_create(live, &name)? {
            return Ok(name);
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("no free folder name for call {stem:?}"),
        ))
    }

    /// Creates `name` under the data dir; `false` when it exists (or a live call has it).
    fn try_create(&self, live: &Live, name: &str) -> io::Result<bool> {
        if live.calls.contains_key(name) {
            return Ok(false);
        }
        match std::fs::create_dir(self.data_dir.join(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Takes a transport out of its call; when it was the last, the call has ended.
    pub(crate) fn close(&self, slot: &CallSlot, now: Timestamp) {
        let mut guard = self.lock();
        let live = &mut *guard;
        let name = slot.folder.name();
        let ended = match live.calls.get_mut(name) {
            Some(call) => {
                if let Some(i) = call.transports.iter().position(|k| *k == slot.kind) {
                    call.transports.remove(i);
                }
                call.transports.is_empty() && !call.held
            }
            None => true,
        };
        if ended {
            Self::end(live, &slot.folder, now);
            self.live_count.store(live.calls.len(), Ordering::Relaxed);
        }
    }

    /// Takes an ended call out of the live table, and says so in its report.
    fn end(live: &mut Live, folder: &CallFolder, now: Timestamp) {
        let name = folder.name();
        if let Some(call) = live.calls.remove(name) {
            for key in &call.keys {
                if live.by_key.get(key).is_some_and(|n| n == name) {
                    live.by_key.remove(key);
                }
            }
        }
        let mut report = folder.report.lock().unwrap_or_else(|p| p.into_inner());
        report.status = CallStatus::Ended;
        report.ended_at = Some(now);
    }

    /// A call the control plane holds before any transport arrives (an incoming call being
    /// answered): its folder, named from `identity`, known by `keys`, so the media and
    /// transcription sockets join it. It ends when [`release`](Self::release)d and its last
    /// transport has closed. Counts towards `max_calls`. Blocking (creates the folder).
    pub(crate) fn reserve(
        &self,
        identity: Identity,
        keys: BTreeSet<String>,
        now: Timestamp,
    ) -> io::Result<Arc<CallFolder>> {
        let mut guard = self.lock();
        let live = &mut *guard;
        if live.calls.len() >= self.max_calls {
            return Err(io::Error::other(CallsFull(live.calls.len())));
        }
        self.new_call(live, identity, keys, None, now)
    }

    /// Makes a live call known by `key` too (its `callConnectionId`, once ACS gives it).
    pub(crate) fn add_key(&self, folder: &CallFolder, key: &str) {
        let mut guard = self.lock();
        let live = &mut *guard;
        if let Some(call) = live.calls.get_mut(folder.name()) {
            call.keys.insert(key.to_owned());
            live.by_key.insert(key.to_owned(), folder.name().to_owned());
        }
    }

    /// How many transports a call has connected now; `None` once it has ended.
    pub(crate) fn transports_of(&self, folder: &CallFolder) -> Option<usize> {
        self.lock()
            .calls
            .get(folder.name())
            .map(|c| c.transports.len())
    }

    /// Lets go of a call [`reserve`](Self::reserve)d: it ends now if no transport is
    /// connected (`true`), else when the last one closes.
    pub(crate) fn release(&self, folder: &CallFolder, now: Timestamp) -> bool {
        let mut guard = self.lock();
        let live = &mut *guard;
        let ended = match live.calls.get_mut(folder.name()) {
            Some(call) => {
                call.held = false;
                call.transports.is_empty()
            }
            None => false,
        };
        if ended {
            Self::end(live, folder, now);
            self.live_count.store(live.calls.len(), Ordering::Relaxed);
        }
        ended
    }
}
