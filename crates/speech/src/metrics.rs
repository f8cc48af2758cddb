//! What the speech engines tell operators (Prometheus, through the gateway's `/metrics`):
//! how late finals are, how deep and slow the shared queue is, what was dropped, and which
//! calls were not transcribed live.
//!
//! One [`SpeechMetrics`] serves every engine of a process, labelled by engine; each engine
//! keeps an [`EngineMetrics`] of handles to its own series, so counting takes no lock.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Pass;

type One = [(&'static str, String); 1];
type Two = [(&'static str, String); 2];
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds: 10 ms to about 40 s.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 13))
}

/// Counts: 1 to 512.
fn counts() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

/// The speech metrics of a process, every engine's.
#[derive(Debug, Clone)]
pub struct SpeechMetrics {
    final_latency: Histograms<One>,
    queue_wait: Histograms<Two>,
    queue_depth: Histograms<One>,
    batch_size: Histograms<One>,
    partials_dropped: Family<One, Counter>,
    rejected: Family<Two, Counter>,
    calls_live: Family<One, Gauge>,
    calls_not_live: Family<Two, Counter>,
}

impl Default for SpeechMetrics {
    fn default() -> Self {
        SpeechMetrics {
            final_latency: Family::new_with_constructor(seconds),
            queue_wait: Family::new_with_constructor(seconds),
            queue_depth: Family::new_with_constructor(counts),
            batch_size: Family::new_with_constructor(counts),
            partials_dropped: Family::default(),
            rejected: Family::default(),
            calls_live: Family::default(),
            calls_not_live: Family::default(),
        }
    }
}

impl SpeechMetrics {
    /// Handles to engine `name`'s series.
    pub fn engine(&self, name: &str) -> EngineMetrics {
        let engine: One = [("engine", name.to_owned())];
        // Each handle is cloned out in a statement of its own: `get_or_create` holds the
        // family's lock until its guard drops, and a second call on the same family while it
        // is held would wait for ever.
        let wait = |lane: &str| -> Histogram {
            let lane: Two = [("engine", name.to_owned()), ("lane", lane.to_owned())];
            self.queue_wait.get_or_create(&lane).clone()
        };
        let (wait_final, wait_after_call, wait_partial) =
            (wait("final"), wait("after_call"), wait("partial"));
        let final_latency = self.final_latency.get_or_create(&engine).clone();
        let queue_depth = self.queue_depth.get_or_create(&engine).clone();
        let batch_size = self.batch_size.get_or_create(&engine).clone();
        let partials_dropped = self.partials_dropped.get_or_create(&engine).clone();
        let calls_live = self.calls_live.get_or_create(&engine).clone();
        EngineMetrics {
            name: name.to_owned(),
            final_latency,
            wait_final,
            wait_after_call,
            wait_partial,
            queue_depth,
            batch_size,
            partials_dropped,
            calls_live,
            family: self.clone(),
        }
    }

    /// Adds the series to `registry` (the gateway's, prefixed `mediagate_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "speech_final_latency_seconds",
            "Time from the end of an utterance (its cut) to its final result, by engine",
            self.final_latency.clone(),
        );
        registry.register(
            "speech_queue_wait_seconds",
            "Time utterances waited for the shared engine, by engine and lane",
            self.queue_wait.clone(),
        );
        registry.register(
            "speech_queue_depth",
            "Utterances already waiting when one more was queued, by engine",
            self.queue_depth.clone(),
        );
        registry.register(
            "speech_batch_size",
            "Utterances per engine batch, by engine",
            self.batch_size.clone(),
        );
        registry.register(
            "speech_partials_dropped",
            "Partial results dropped unrun because they waited too long (load), by engine",
            self.partials_dropped.clone(),
        );
        registry.register(
            "speech_rejected",
            "Utterances refused because the engine's queue was full, by engine and pass",
            self.rejected.clone(),
        );
        registry.register(
            "speech_calls_live",
            "Calls transcribed live now, by engine",
            self.calls_live.clone(),
        );
        registry.register(
            "speech_calls_not_live",
            "Calls not transcribed live, by engine and reason",
            self.calls_not_live.clone(),
        );
    }
}

/// One engine's series.
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    name: String,
    final_latency: Histogram,
    wait_final: Histogram,
    wait_after_call: Histogram,
    wait_partial: Histogram,
    queue_depth: Histogram,
    batch_size: Histogram,
    partials_dropped: Counter,
    calls_live: Gauge,
    family: SpeechMetrics,
}

impl EngineMetrics {
    /// Series of their own, registered nowhere (a file's transcription, a test).
    pub fn detached() -> Self {
        SpeechMetrics::default().engine("detached")
    }

    /// A final result came `took` after its utterance was cut.
    pub fn final_latency(&self, took: Duration) {
        self.final_latency.observe(took.as_secs_f64());
    }

    /// An utterance of `pass` waited `waited` for a worker.
    pub(crate) fn waited(&self, pass: Pass, waited: Duration) {
        let histogram = match pass {
            Pass::Final => &self.wait_final,
            Pass::AfterCall => &self.wait_after_call,
            Pass::Partial => &self.wait_partial,
        };
        histogram.observe(waited.as_secs_f64());
    }

    /// An utterance was queued behind `depth` others.
    pub(crate) fn queue_depth(&self, depth: usize) {
        self.queue_depth.observe(depth as f64);
    }

    /// A batch of `size` utterances ran.
    pub(crate) fn batch(&self, size: usize) {
        self.batch_size.observe(size as f64);
    }

    /// A stale partial was dropped.
    pub(crate) fn partial_dropped(&self) {
        self.partials_dropped.inc();
    }

    /// An utterance of `pass` found the queue full.
    pub(crate) fn rejected(&self, pass: Pass) {
        let pass = match pass {
            Pass::Final => "final",
            Pass::AfterCall => "after_call",
            Pass::Partial => "partial",
        };
        self.family
            .rejected
            .get_or_create(&[("engine", self.name.clone()), ("pass", pass.to_owned())])
            .inc();
    }

    /// A call is transcribed live from now on; `false`: no longer.
    pub(crate) fn live_call(&self, started: bool) {
        if started {
            self.calls_live.inc();
        } else {
            self.calls_live.dec();
        }
    }

    /// A call was not transcribed live, for `reason`.
    pub(crate) fn not_live(&self, reason: &str) {
        self.family
            .calls_not_live
            .get_or_create(&[("engine", self.name.clone()), ("reason", reason.to_owned())])
            .inc();
    }
}
