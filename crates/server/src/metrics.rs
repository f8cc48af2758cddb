//! The gateway's metrics: Prometheus counters and gauges (OpenMetrics text at `GET /metrics`),
//! cheap atomics on the hot path, also read by `/healthz`.
//!
//! Per-processor figures (frames, drops, errors, callback time, inbox high water) are added when
//! each call ends, from the same reports `session.json` gets.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// One label: the processor's name, or the bad message's class.
type Label = [(&'static str, String); 1];

/// Gateway-wide metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    connections_total: Counter,
    connections_active: Gauge,
    frames_received: Counter,
    bad_messages: Family<Label, Counter>,
    policy_closes: Counter,
    processor_frames: Family<Label, Counter>,
    processor_dropped: Family<Label, Counter>,
    processor_errors: Family<Label, Counter>,
    processor_busy_micros: Family<Label, Counter>,
    processor_high_water: Family<Label, Gauge>,
    playback_frames: Counter,
    playback_late_frames: Counter,
}

/// A snapshot of the gateway-wide counters, for `/healthz`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MetricsSnapshot {
    /// WebSockets accepted since start.
    pub connections_total: u64,
    /// WebSockets open now.
    pub connections_active: u64,
    /// Audio frames received since start.
    pub frames_received: u64,
    /// Messages skipped as bad since start.
    pub bad_messages: u64,
    /// Connections the gateway closed for breaking a limit.
    pub policy_closes: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mediagate");
        let metrics = Metrics {
            registry: Registry::default(),
            connections_total: Counter::default(),
            connections_active: Gauge::default(),
            frames_received: Counter::default(),
            bad_messages: Family::default(),
            policy_closes: Counter::default(),
            processor_frames: Family::default(),
            processor_dropped: Family::default(),
            processor_errors: Family::default(),
            processor_busy_micros: Family::default(),
            processor_high_water: Family::default(),
            playback_frames: Counter::default(),
            playback_late_frames: Counter::default(),
        };
        let m = &metrics;
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
            "frames_received",
            "Audio frames received",
            m.frames_received.clone(),
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
            "processor_frames",
            "Frames processed, by processor (at call end)",
            m.processor_frames.clone(),
        );
        registry.register(
            "processor_dropped",
            "Items dropped from a full inbox, by processor",
            m.processor_dropped.clone(),
        );
        registry.register(
            "processor_errors",
            "Callbacks that failed, by processor",
            m.processor_errors.clone(),
        );
        registry.register(
            "processor_busy_microseconds",
            "Time in callbacks, by processor",
            m.processor_busy_micros.clone(),
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
        Metrics {
            registry,
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

    pub(crate) fn frame_received(&self) {
        self.frames_received.inc();
    }

    pub(crate) fn bad_message(&self, class: &'static str) {
        self.bad_messages
            .get_or_create(&[("class", class.to_owned())])
            .inc();
    }

    pub(crate) fn policy_close(&self) {
        self.policy_closes.inc();
    }

    /// Adds one call's processor reports and playback timing.
    pub(crate) fn call_ended(
        &self,
        processors: &[mediagate_pipeline::ConsumerReport],
        pacing: Option<&mediagate_pipeline::PacerReport>,
    ) {
        for report in processors {
            let label = [("processor", report.name.clone())];
            self.processor_frames
                .get_or_create(&label)
                .inc_by(report.frames);
            self.processor_dropped
                .get_or_create(&label)
                .inc_by(report.dropped);
            self.processor_errors
                .get_or_create(&label)
                .inc_by(report.errors);
            self.processor_busy_micros
                .get_or_create(&label)
                .inc_by(report.busy_micros);
            let high_water = i64::try_from(report.queue_high_water).unwrap_or(i64::MAX);
            let gauge = self.processor_high_water.get_or_create(&label);
            if high_water > gauge.get() {
                gauge.set(high_water);
            }
        }
        if let Some(pacing) = pacing {
            self.playback_frames.inc_by(pacing.frames);
            self.playback_late_frames.inc_by(pacing.late_frames);
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
            bad_messages: bad,
            policy_closes: self.policy_closes.get(),
        }
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
