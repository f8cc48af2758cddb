//! The transports live now, as the admin API sees and steers them: what each is, its
//! processors' counters, and the handles to end it and to play into it. Each connection
//! registers its transport once the call has opened and takes it out first thing when it ends;
//! the socket task never waits on this table (one short lock at each end).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use mediagate_audio::{AudioFormat, AudioFrame, Timestamp};
use mediagate_pipeline::{ConsumerProbe, Event, Playback, Transcript};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::session::TransportKind;

/// Every live transport, by connection id, and the calls that ended last.
#[derive(Default)]
pub(crate) struct LiveTransports {
    by_connection: Mutex<BTreeMap<u64, Arc<LiveTransport>>>,
    ended: Mutex<VecDeque<EndedCall>>,
}

/// A call whose last transport has ended.
#[derive(Debug, Clone)]
pub(crate) struct EndedCall {
    pub(crate) call_id: Arc<str>,
    pub(crate) ended_at: Timestamp,
}

/// Ended calls remembered (newest first), for the dashboard's list.
const MAX_ENDED: usize = 100;

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
    /// Its sources (`mixed`, or each participant) with their latest level, from the events it
    /// carries.
    pub(crate) sources: Mutex<BTreeMap<String, Option<Level>>>,
    /// Its inbound audio for listeners (`GET /calls/{id}/listen`): made by the first listener,
    /// so a call nobody listens to holds no ring; dropped with the transport, which ends the
    /// listeners' streams.
    pub(crate) tap: OnceLock<broadcast::Sender<Tapped>>,
    /// Listeners now: what the socket task reads per frame (one atomic load, no lock).
    pub(crate) listeners: AtomicUsize,
    /// The call's last final transcripts, oldest first, for a watcher who arrives late: one
    /// list for all the call's transports (shared when a transport joins), so it outlives a
    /// transcription transport that ends before the call.
    pub(crate) transcript: Arc<Mutex<VecDeque<Arc<Transcript>>>>,
}

/// Final transcripts kept per call.
pub(crate) const RECENT_FINALS: usize = 50;

/// A frame of the call's audio as listeners get it: shared by refcount, with when it arrived.
#[derive(Debug, Clone)]
pub(crate) struct Tapped {
    pub(crate) arrived: Instant,
    pub(crate) frame: AudioFrame,
}

/// Frames a listener may fall behind by before it is cut off (a second of 20 ms frames, per
/// participant of an unmixed call at most a fifth of that).
pub(crate) const TAP_FRAMES: usize = 50;

/// A source's latest reading (`level_meter`'s `level` event).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Level {
    pub(crate) rms_dbfs: f64,
    pub(crate) peak_dbfs: f64,
}

/// Sources listed per transport at most: participants are bounded by
/// `limits.max_participants_per_call`, but a processor may emit `level` events for any name.
const MAX_SOURCES: usize = 64;

impl LiveTransport {
    /// Hands `frame` to the listeners, if any: a refcount, never a wait.
    pub(crate) fn tap(&self, frame: &AudioFrame) {
        if self.listeners.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(tap) = self.tap.get() {
            let _ = tap.send(Tapped {
                arrived: Instant::now(),
                frame: frame.clone(),
            });
        }
    }

    /// A new listener of the transport's audio, counted until the guard drops; `None` when
    /// `max` listen already (checked and taken in one step, so concurrent requests cannot pass
    /// it together).
    pub(crate) fn listen(
        self: &Arc<Self>,
        max: usize,
    ) -> Option<(broadcast::Receiver<Tapped>, ListenerGuard)> {
        self.listeners
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        let guard = ListenerGuard(Arc::downgrade(self));
        let tap = self
            .tap
            .get_or_init(|| broadcast::channel(TAP_FRAMES).0)
            .subscribe();
        Some((tap, guard))
    }

    /// Notes what `event` says about the call's sources: a participant joined, a level read.
    pub(crate) fn observe(&self, event: &Event) {
        let (name, level) = match event {
            Event::Transcript(t) if t.is_final() => {
                let mut recent = self.transcript.lock().unwrap_or_else(|p| p.into_inner());
                if recent.len() == RECENT_FINALS {
                    recent.pop_front();
                }
                recent.push_back(Arc::clone(t));
                return;
            }
            Event::ParticipantJoined(id) => (id.to_string(), None),
            Event::Custom(custom) if &*custom.kind == mediagate_processors::LEVEL => {
                let data = &custom.data;
                let (Some(rms_dbfs), Some(peak_dbfs)) =
                    (data["rms_dbfs"].as_f64(), data["peak_dbfs"].as_f64())
                else {
                    return;
                };
                let name = data["source"].as_str().unwrap_or("mixed").to_owned();
                (
                    name,
                    Some(Level {
                        rms_dbfs,
                        peak_dbfs,
                    }),
                )
            }
            _ => return,
        };
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&name) {
            return;
        }
        let entry = sources.entry(name).or_default();
        if level.is_some() {
            *entry = level;
        }
    }

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
    pub(crate) fn register(self: &Arc<Self>, mut transport: LiveTransport) -> Registered {
        let mut live = self.lock();
        if let Some(sibling) = live.values().find(|t| t.call_id == transport.call_id) {
            transport.transcript = Arc::clone(&sibling.transcript);
        }
        let transport = Arc::new(transport);
        live.insert(transport.connection, Arc::clone(&transport));
        drop(live);
        Registered {
            table: Arc::clone(self),
            transport,
        }
    }

    /// Every live transport, by connection id.
    pub(crate) fn all(&self) -> Vec<Arc<LiveTransport>> {
        self.lock().values().cloned().collect()
    }

    /// The calls that ended last, newest first.
    pub(crate) fn ended(&self) -> Vec<EndedCall> {
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
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

/// A listener's place in [`LiveTransport::listeners`]. It does not keep the transport: when
/// the call ends, its ring goes with it and the listener's stream ends.
pub(crate) struct ListenerGuard(Weak<LiveTransport>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        if let Some(transport) = self.0.upgrade() {
            transport.listeners.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A transport's place in [`LiveTransports`]: dropping it takes the transport out.
pub(crate) struct Registered {
    table: Arc<LiveTransports>,
    transport: Arc<LiveTransport>,
}

impl Registered {
    /// The transport listed.
    pub(crate) fn transport(&self) -> &LiveTransport {
        &self.transport
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let call_id = &self.transport.call_id;
        let call_ended = {
            let mut live = self.table.lock();
            live.remove(&self.transport.connection);
            !live.values().any(|t| t.call_id == *call_id)
        };
        self.transport.playback().take();
        if call_ended {
            let mut ended = self.table.ended.lock().unwrap_or_else(|p| p.into_inner());
            ended.retain(|e| e.call_id != *call_id);
            ended.push_front(EndedCall {
                call_id: Arc::clone(call_id),
                ended_at: Timestamp::now(),
            });
            ended.truncate(MAX_ENDED);
        }
    }
}
