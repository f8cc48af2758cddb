//! The gateway's metrics: Prometheus counters and gauges (OpenMetrics text at `GET /metrics`),
//! cheap atomics on the hot path, also read by `/healthz`.
//!
//! Per-processor figures (frames, drops, errors, callback time, inbox high water) are live: the
//! processors count in their own atomics, and a scrape adds up those of running calls and the
//! totals of ended ones. Nothing is added to the hot path for them.

mod exposition;
mod histograms;
mod process;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use mediagate_pipeline::{
    ConsumerCounters, ConsumerProbe, ConsumerReport, HistogramCounts, PacerReport,
};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use serde::Serialize;

pub(crate) use exposition::Exposition;

/// One label: the processor's name, or the bad message's class.
type Label = [(&'static str, String); 1];

/// One label with a value from a closed set (a transport's kind).
type Static = [(&'static str, &'static str); 1];

/// Upper bounds of `mediagate_listen_latency_seconds`: half a millisecond to a second.
const LISTEN_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
];

/// Upper bounds of the transport-duration histogram, in seconds: a second to four hours.
const DURATION_BUCKETS: [f64; 14] = [
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

/// Why a connection or an upgrade was turned away before a call began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `limits.max_connections` open already (503).
    MaxConnections,
    /// The address opens connections faster than its rate (429).
    RateLimited,
    /// `limits.max_calls` live already (503).
    MaxCalls,
    /// Free disk below `recording.min_free_bytes` (503).
    LowDisk,
    /// The gateway is shutting down (503).
    Draining,
    /// The request's headers did not arrive within `limits.header_read_timeout_secs`.
    HeaderTimeout,
}

impl Refusal {
    const ALL: [Refusal; 6] = [
        Refusal::MaxConnections,
        Refusal::RateLimited,
        Refusal::MaxCalls,
        Refusal::LowDisk,
        Refusal::Draining,
        Refusal::HeaderTimeout,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::RateLimited => "rate_limited",
            Refusal::MaxCalls => "max_calls",
            Refusal::LowDisk => "low_disk",
            Refusal::Draining => "draining",
            Refusal::HeaderTimeout => "header_timeout",
        }
    }
}

/// Why the admin API turned a request away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminRefusal {
    /// No bearer token (401).
    Missing,
    /// A token that is not the admin token (401).
    Invalid,
    /// No token is configured and the client is not on loopback (403).
    NotLoopback,
    /// A guest link that is not one of ours (tampered, or signed with another key) (401).
    GuestInvalid,
    /// A guest link past its expiry (401).
    GuestExpired,
    /// A revoked guest link (401).
    GuestRevoked,
    /// A guest link used for another call (401).
    GuestWrongCall,
    /// A watch-only guest link asked to listen (403).
    GuestScope,
    /// A browser request from a page of another origin (403).
    CrossOrigin,
}

impl AdminRefusal {
    const ALL: [AdminRefusal; 9] = [
        AdminRefusal::CrossOrigin,
        AdminRefusal::Missing,
        AdminRefusal::Invalid,
        AdminRefusal::NotLoopback,
        AdminRefusal::GuestInvalid,
        AdminRefusal::GuestExpired,
        AdminRefusal::GuestRevoked,
        AdminRefusal::GuestWrongCall,
        AdminRefusal::GuestScope,
    ];

    fn as_str(self) -> &'static str {
        match self {
            AdminRefusal::Missing => "missing",
            AdminRefusal::Invalid => "invalid",
            AdminRefusal::NotLoopback => "not_loopback",
            AdminRefusal::GuestInvalid => "guest_invalid",
            AdminRefusal::GuestExpired => "guest_expired",
            AdminRefusal::GuestRevoked => "guest_revoked",
            AdminRefusal::GuestWrongCall => "guest_wrong_call",
            AdminRefusal::GuestScope => "guest_scope",
            AdminRefusal::CrossOrigin => "cross_origin",
        }
    }
}

/// Gateway-wide metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    connections_refused: Family<Label, Counter>,
    tls_handshake_failures: Family<Label, Counter>,
    connections_total: Counter,
    connections_active: Gauge,
    frames_received: Counter,
    audio_received_bytes: Counter,
    sent: Sent,
    transports: Family<Static, Counter>,
    closes: Family<Label, Counter>,
    transport_duration: Family<Static, Histogram, fn() -> Histogram>,
    bad_messages: Family<Label, Counter>,
    policy_closes: Counter,
    /// Panics caught, by where (`connection`: a call's socket task).
    panics: Family<[(&'static str, &'static str); 1], Counter>,
    processor_frames: Family<Label, Counter>,
    processor_dropped: Family<Label, Counter>,
    processor_events_dropped: Family<Label, Counter>,
    processor_panics: Family<Label, Counter>,
    processor_stopped: Family<Label, Counter>,
    processor_errors: Family<Label, Counter>,
    processor_busy: Family<Label, Counter<f64, AtomicU64>>,
    processor_high_water: Family<Label, Gauge>,
    playback_frames: Counter,
    playback_late_frames: Counter,
    auth_refused: Family<Label, Counter>,
    admin_refused: Family<Label, Counter>,
    acs_refused: Family<Label, Counter>,
    acs_calls: Family<Label, Counter>,
    event_streams: Gauge,
    event_streams_cut: Counter,
    listeners: Gauge,
    listeners_cut: Counter,
    listen_latency: Histogram,
    /// Shared with the histograms' collector ([`histograms::Histograms`]).
    processors: Arc<Mutex<ProcessorTotals>>,
}

/// What the socket writers wrote (each writer holds a clone: the counters are shared).
#[derive(Debug, Clone, Default)]
pub(crate) struct Sent {
    pub(crate) frames: Counter,
    pub(crate) bytes: Counter,
    pub(crate) stops: Counter,
}

/// Where the per-processor counters come from.
#[derive(Debug, Default)]
struct ProcessorTotals {
    /// Running pipelines' live counters, by connection id.
    live: HashMap<u64, Vec<ConsumerProbe>>,
    /// What ended pipelines did, by processor name.
    ended: HashMap<String, ConsumerCounters>,
    /// The totals the Prometheus counters show, by processor name (as of the last scrape).
    published: HashMap<String, ConsumerCounters>,
    /// How late the pacer sent each frame, over the ended calls.
    pacing_lag: HistogramCounts,
}

impl ProcessorTotals {
    /// Ended plus live, by processor name.
    fn totals(&self) -> HashMap<String, ConsumerCounters> {
        let mut totals = self.ended.clone();
        for probe in self.live.values().flatten() {
            add(
                totals.entry(probe.name().to_string()).or_default(),
                &probe.counters(),
            );
        }
        totals
    }
}

/// Adds `b`'s counts into `a` (the high-water mark is a maximum).
fn add(a: &mut ConsumerCounters, b: &ConsumerCounters) {
    a.frames += b.frames;
    a.events += b.events;
    a.dropped += b.dropped;
    a.events_dropped += b.events_dropped;
    a.panics += b.panics;
    a.errors += b.errors;
    a.busy_micros += b.busy_micros;
    a.queue_high_water = a.queue_high_water.max(b.queue_high_water);
    a.max_callback_micros = a.max_callback_micros.max(b.max_callback_micros);
    a.callback_nanos.add(&b.callback_nanos);
}

impl Metrics {
    /// Lets `add` register more series (the processors' own, `Registry::register_metrics`),
    /// under the `mediagate_` prefix.
    pub(crate) fn extend(&mut self, add: impl FnOnce(&mut Registry)) {
        add(self.registry.sub_registry_with_prefix(PREFIX));
    }
}

/// The prefix of the gateway's own series (the process collector's are `process_*`, as in
/// every Prometheus client).
const PREFIX: &str = "mediagate";

/// A snapshot of the gateway-wide counters, for `/healthz`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MetricsSnapshot {
    /// WebSockets accepted since start.
    pub connections_total: u64,
    /// WebSockets open now.
    pub connections_active: u64,
    /// Audio frames received since start.
    pub frames_received: u64,
    /// Audio frames written to WebSockets since start.
    pub frames_sent: u64,
    /// Messages skipped as bad since start.
    pub bad_messages: u64,
    /// Connections the gateway closed for breaking a limit.
    pub policy_closes: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix(PREFIX);
        let metrics = Metrics {
            registry: Registry::default(),
            connections_refused: Family::default(),
            tls_handshake_failures: Family::default(),
            connections_total: Counter::default(),
            connections_active: Gauge::default(),
            frames_received: Counter::default(),
            audio_received_bytes: Counter::default(),
            sent: Sent::default(),
            transports: Family::default(),
            closes: Family::default(),
            transport_duration: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
            bad_messages: Family::default(),
            policy_closes: Counter::default(),
            panics: Family::default(),
            processor_frames: Family::default(),
            processor_dropped: Family::default(),
            processor_events_dropped: Family::default(),
            processor_panics: Family::default(),
            processor_stopped: Family::default(),
            processor_errors: Family::default(),
            processor_busy: Family::default(),
            processor_high_water: Family::default(),
            playback_frames: Counter::default(),
            playback_late_frames: Counter::default(),
            auth_refused: Family::default(),
            admin_refused: Family::default(),
            acs_refused: Family::default(),
            acs_calls: Family::default(),
            event_streams: Gauge::default(),
            event_streams_cut: Counter::default(),
            listeners: Gauge::default(),
            listeners_cut: Counter::default(),
            listen_latency: Histogram::new(LISTEN_BUCKETS),
            processors: Arc::default(),
        };
        let m = &metrics;
        // Closed sets of reasons have their series from the start, at 0: an alert on a rate
        // sees a refusal from the first, and a dashboard sees there was none.
        for refusal in Refusal::ALL {
            let _ = m
                .connections_refused
                .get_or_create(&[("reason", refusal.as_str().to_owned())]);
        }
        for refusal in crate::auth::Refusal::ALL {
            let _ = m
                .auth_refused
                .get_or_create(&[("reason", refusal.as_str().to_owned())]);
        }
        for refusal in AdminRefusal::ALL {
            let _ = m
                .admin_refused
                .get_or_create(&[("reason", refusal.as_str().to_owned())]);
        }
        registry.register(
            "connections",
            "WebSockets accepted",
            m.connections_total.clone(),
        );
        registry.register(
            "connections_active",
            "WebSockets open now",
            m.connections_active.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections and upgrades turned away before a call began, by reason",
            m.connections_refused.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out, by reason",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "frames_received",
            "Audio frames received",
            m.frames_received.clone(),
        );
        registry.register_with_unit(
            "audio_received",
            "Audio received, decoded PCM",
            Unit::Bytes,
            m.audio_received_bytes.clone(),
        );
        registry.register(
            "frames_sent",
            "Audio frames written to WebSockets: played, echoed or sent unpaced",
            m.sent.frames.clone(),
        );
        registry.register_with_unit(
            "audio_sent",
            "Audio written to WebSockets, PCM before encoding",
            Unit::Bytes,
            m.sent.bytes.clone(),
        );
        registry.register(
            "stop_audio_sent",
            "StopAudio messages written to WebSockets (barge-in)",
            m.sent.stops.clone(),
        );
        registry.register(
            "transports",
            "Transports (WebSockets that began a call) ended, by kind: media or transcription",
            m.transports.clone(),
        );
        registry.register(
            "closes",
            "WebSockets ended, by close code (none: the connection dropped without one)",
            m.closes.clone(),
        );
        registry.register_with_unit(
            "transport_duration",
            "How long transports lasted, from the upgrade to the end, by kind",
            Unit::Seconds,
            m.transport_duration.clone(),
        );
        registry.register(
            "bad_messages",
            "Messages skipped as bad, by class",
            m.bad_messages.clone(),
        );
        registry.register(
            "policy_closes",
            "Connections closed for breaking a limit",
            m.policy_closes.clone(),
        );
        registry.register(
            "panics",
            "Panics caught and contained (the call ended, the process went on), by where",
            m.panics.clone(),
        );
        registry.register(
            "processor_frames",
            "Frames processed, by processor",
            m.processor_frames.clone(),
        );
        registry.register(
            "processor_dropped",
            "Items dropped from a full inbox (or, for echo, a full socket writer), by processor",
            m.processor_dropped.clone(),
        );
        registry.register(
            "processor_events_dropped",
            "Events dropped from a full lossless inbox (audio never is), by processor",
            m.processor_events_dropped.clone(),
        );
        registry.register(
            "processor_panics",
            "Processors that panicked and were detached, by processor",
            m.processor_panics.clone(),
        );
        registry.register(
            "processor_stopped",
            "Calls whose processor stopped writing early (a failed write, the free-disk floor), \
             by processor",
            m.processor_stopped.clone(),
        );
        registry.register(
            "processor_errors",
            "Callbacks that failed, by processor",
            m.processor_errors.clone(),
        );
        registry.register_with_unit(
            "processor_busy",
            "Time in callbacks, by processor",
            Unit::Seconds,
            m.processor_busy.clone(),
        );
        registry.register(
            "processor_queue_high_water",
            "Most items ever waiting in one call's inbox, by processor",
            m.processor_high_water.clone(),
        );
        registry.register(
            "playback_frames",
            "Outbound frames sent by the pacer",
            m.playback_frames.clone(),
        );
        registry.register(
            "playback_late_frames",
            "Outbound frames sent over 5 ms after their tick",
            m.playback_late_frames.clone(),
        );
        registry.register(
            "listeners",
            "Supervisors listening to calls now (GET /calls/{id}/listen)",
            m.listeners.clone(),
        );
        registry.register(
            "listeners_cut",
            "Listeners closed because they fell behind the call",
            m.listeners_cut.clone(),
        );
        registry.register_with_unit(
            "listen_latency",
            "From a frame's arrival to its write to a listener",
            Unit::Seconds,
            m.listen_latency.clone(),
        );
        registry.register(
            "admin_event_streams",
            "Admin API event streams (GET /events) open now",
            m.event_streams.clone(),
        );
        registry.register(
            "admin_event_streams_cut",
            "Admin API event streams ended because their reader fell behind",
            m.event_streams_cut.clone(),
        );
        registry.register(
            "admin_refused",
            "Admin API and guest link requests refused, by reason",
            m.admin_refused.clone(),
        );
        registry.register(
            "acs_refused",
            "Event Grid deliveries and ACS callbacks refused or skipped, by reason",
            m.acs_refused.clone(),
        );
        registry.register(
            "acs_calls",
            "Incoming calls decided by the control plane, by action",
            m.acs_calls.clone(),
        );
        registry.register(
            "auth_refused",
            "WebSocket upgrades refused as not authenticated, by reason",
            m.auth_refused.clone(),
        );
        registry.register_collector(Box::new(histograms::Histograms::new(Arc::clone(
            &m.processors,
        ))));
        Metrics {
            registry: root,
            ..metrics
        }
    }
}

impl Metrics {
    pub(crate) fn connection_opened(&self) {
        self.connections_total.inc();
        self.connections_active.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_active.dec();
    }

    pub(crate) fn connection_refused(&self, refusal: Refusal) {
        self.connections_refused
            .get_or_create(&[("reason", refusal.as_str().to_owned())])
            .inc();
    }

    pub(crate) fn tls_handshake_failed(&self, reason: &'static str) {
        self.tls_handshake_failures
            .get_or_create(&[("reason", reason.to_owned())])
            .inc();
    }

    /// WebSockets open now.
    pub(crate) fn websockets_open(&self) -> usize {
        usize::try_from(self.connections_active.get()).unwrap_or(0)
    }

    /// The counters a socket's writer adds to as it writes.
    pub(crate) fn sent(&self) -> Sent {
        self.sent.clone()
    }

    /// `frames` audio frames, `bytes` of PCM in all, were accepted.
    pub(crate) fn frames_received(&self, frames: u64, bytes: u64) {
        self.frames_received.inc_by(frames);
        self.audio_received_bytes.inc_by(bytes);
    }

    /// A WebSocket ended after `seconds`, with the close code sent or received (`None`: the
    /// connection dropped); `kind` is its transport's when a call began on it.
    pub(crate) fn connection_ended(
        &self,
        kind: Option<&'static str>,
        code: Option<u16>,
        seconds: f64,
    ) {
        let code = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
        self.closes.get_or_create(&[("code", code)]).inc();
        if let Some(kind) = kind {
            self.transports.get_or_create(&[("kind", kind)]).inc();
            self.transport_duration
                .get_or_create(&[("kind", kind)])
                .observe(seconds.max(0.0));
        }
    }

    pub(crate) fn bad_message(&self, class: &'static str) {
        self.bad_messages
            .get_or_create(&[("class", class.to_owned())])
            .inc();
    }

    pub(crate) fn policy_close(&self) {
        self.policy_closes.inc();
    }

    /// A listener began.
    pub(crate) fn listener_opened(&self) {
        self.listeners.inc();
    }

    /// A listener ended.
    pub(crate) fn listener_closed(&self) {
        self.listeners.dec();
    }

    /// A listener was cut off: it fell behind.
    pub(crate) fn listener_cut(&self) {
        self.listeners_cut.inc();
    }

    /// A frame reached a listener `seconds` after it arrived.
    pub(crate) fn listened(&self, seconds: f64) {
        self.listen_latency.observe(seconds);
    }

    /// An event stream opened.
    pub(crate) fn event_stream_opened(&self) {
        self.event_streams.inc();
    }

    /// An event stream ended.
    pub(crate) fn event_stream_closed(&self) {
        self.event_streams.dec();
    }

    /// An event stream was cut off: its reader fell behind.
    pub(crate) fn event_stream_cut(&self) {
        self.event_streams_cut.inc();
    }

    /// The control plane refused or skipped a delivery or callback (`events_secret`,
    /// `bad_event`, `busy`, or an upgrade token's refusal reason for callbacks).
    pub(crate) fn acs_refused(&self, reason: &'static str) {
        self.acs_refused
            .get_or_create(&[("reason", reason.to_owned())])
            .inc();
    }

    /// The control plane decided an incoming call (`answered`, `rejected`, `redirected`,
    /// `failed`).
    pub(crate) fn acs_call(&self, action: &'static str) {
        self.acs_calls
            .get_or_create(&[("action", action.to_owned())])
            .inc();
    }

    /// The admin API refused a request.
    pub(crate) fn admin_refused(&self, refusal: AdminRefusal) {
        self.admin_refused
            .get_or_create(&[("reason", refusal.as_str().to_owned())])
            .inc();
    }

    /// An upgrade refused by `[auth]`; `reason` is one of a closed set.
    pub(crate) fn auth_refused(&self, reason: &'static str) {
        self.auth_refused
            .get_or_create(&[("reason", reason.to_owned())])
            .inc();
    }

    /// A panic was caught in `place` (`connection`) and its call ended cleanly.
    pub(crate) fn panicked(&self, place: &'static str) {
        self.panics.get_or_create(&[("where", place)]).inc();
    }

    /// Panics caught in `place` so far.
    #[cfg(test)]
    pub(crate) fn panics(&self, place: &'static str) -> u64 {
        self.panics.get_or_create(&[("where", place)]).get()
    }

    /// A pipeline started: its processors' counters are read at every scrape from now on.
    pub(crate) fn pipeline_started(&self, connection_id: u64, probes: Vec<ConsumerProbe>) {
        self.lock_processors().live.insert(connection_id, probes);
    }

    /// A pipeline ended: its final counts join the totals, and its playback timing is added.
    pub(crate) fn pipeline_ended(
        &self,
        connection_id: u64,
        reports: &[ConsumerReport],
        pacing: Option<&PacerReport>,
    ) {
        {
            let mut processors = self.lock_processors();
            processors.live.remove(&connection_id);
            for report in reports {
                // A recorder that stopped early (a full disk, the free-disk floor) says why in
                // its report's `stopped`.
                if report
                    .report
                    .as_ref()
                    .is_some_and(|r| r.get("stopped").is_some_and(|s| !s.is_null()))
                {
                    self.processor_stopped
                        .get_or_create(&[("processor", report.name.clone())])
                        .inc();
                }
                add(
                    processors.ended.entry(report.name.clone()).or_default(),
                    &report.counters,
                );
            }
        }
        if let Some(pacing) = pacing {
            self.playback_frames.inc_by(pacing.frames);
            self.playback_late_frames.inc_by(pacing.late_frames);
            self.lock_processors().pacing_lag.add(&pacing.lag_micros);
        }
    }

    fn lock_processors(&self) -> std::sync::MutexGuard<'_, ProcessorTotals> {
        self.processors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the per-processor counters up to ended + live (counters only ever grow: a
    /// pipeline's final counts are at least its live ones, and it moves from live to ended
    /// under the same lock).
    fn publish_processors(&self) {
        let mut processors = self.lock_processors();
        let totals = processors.totals();
        for (name, total) in totals {
            let label = [("processor", name.clone())];
            let shown = processors.published.get(&name).copied().unwrap_or_default();
            self.processor_frames
                .get_or_create(&label)
                .inc_by(total.frames.saturating_sub(shown.frames));
            self.processor_dropped
                .get_or_create(&label)
                .inc_by(total.dropped.saturating_sub(shown.dropped));
            self.processor_events_dropped
                .get_or_create(&label)
                .inc_by(total.events_dropped.saturating_sub(shown.events_dropped));
            self.processor_panics
                .get_or_create(&label)
                .inc_by(total.panics.saturating_sub(shown.panics));
            self.processor_errors
                .get_or_create(&label)
                .inc_by(total.errors.saturating_sub(shown.errors));
            let busy_micros = total.busy_micros.saturating_sub(shown.busy_micros);
            self.processor_busy
                .get_or_create(&label)
                .inc_by(busy_micros as f64 / 1e6);
            let high_water = i64::try_from(total.queue_high_water).unwrap_or(i64::MAX);
            let gauge = self.processor_high_water.get_or_create(&label);
            if high_water > gauge.get() {
                gauge.set(high_water);
            }
            processors.published.insert(name, total);
        }
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let bad = {
            let mut total = 0;
            for class in mediagate_protocol::ErrorClass::ALL {
                total += self
                    .bad_messages
                    .get_or_create(&[("class", class.as_str().to_owned())])
                    .get();
            }
            total
                + self
                    .bad_messages
                    .get_or_create(&[("class", "binary_not_text".to_owned())])
                    .get()
        };
        MetricsSnapshot {
            connections_total: self.connections_total.get(),
            connections_active: u64::try_from(self.connections_active.get()).unwrap_or(0),
            frames_received: self.frames_received.get(),
            frames_sent: self.sent.frames.get(),
            bad_messages: bad,
            policy_closes: self.policy_closes.get(),
        }
    }

    /// The exposition, in `format`.
    pub(crate) fn encode(&self, format: Exposition) -> String {
        self.publish_processors();
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        match format {
            Exposition::OpenMetrics => text,
            Exposition::Prometheus => exposition::to_prometheus_text(&text),
        }
    }
}
