//! Process-wide counters: cheap atomics on the hot path, read by `/healthz`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Gateway-wide counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    connections_total: AtomicU64,
    connections_active: AtomicU64,
    frames_received: AtomicU64,
    bad_messages: AtomicU64,
    policy_closes: AtomicU64,
}

/// A snapshot of [`Metrics`].
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

impl Metrics {
    pub(crate) fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        self.connections_active.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_active.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn frame_received(&self) {
        self.frames_received.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bad_message(&self) {
        self.bad_messages.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn policy_close(&self) {
        self.policy_closes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            connections_total: self.connections_total.load(Ordering::Relaxed),
            connections_active: self.connections_active.load(Ordering::Relaxed),
            frames_received: self.frames_received.load(Ordering::Relaxed),
            bad_messages: self.bad_messages.load(Ordering::Relaxed),
            policy_closes: self.policy_closes.load(Ordering::Relaxed),
        }
    }
}
