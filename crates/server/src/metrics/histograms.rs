//! The histograms the pipeline counts in its own atomics ([`mediagate_pipeline::histogram`]):
//! each processor's callback time, and how late the pacer sent each frame. A scrape encodes
//! the totals [`super::Metrics::encode`] has just published, as Prometheus histograms.

use std::sync::{Arc, Mutex};

use mediagate_pipeline::{CALLBACK_NANOS, HISTOGRAM_BUCKETS, HistogramCounts, PACING_LAG_MICROS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::ProcessorTotals;

/// Encodes the pipeline's histograms at each scrape.
#[derive(Debug)]
pub(super) struct Histograms {
    totals: Arc<Mutex<ProcessorTotals>>,
}

impl Histograms {
    pub(super) fn new(totals: Arc<Mutex<ProcessorTotals>>) -> Self {
        Histograms { totals }
    }
}

impl Collector for Histograms {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (mut callbacks, pacing) = {
            let totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
            let callbacks: Vec<(String, HistogramCounts)> = totals
                .published
                .iter()
                .map(|(name, counters)| (name.clone(), counters.callback_nanos))
                .collect();
            (callbacks, totals.pacing_lag)
        };
        callbacks.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut family = encoder.encode_descriptor(
            "processor_callback_duration",
            "Time in each callback, by processor.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (name, counts) in &callbacks {
            let labels = [("processor", name.as_str())];
            encode(family.encode_family(&labels)?, counts, &CALLBACK_NANOS, 1e9)?;
        }
        encode(
            encoder.encode_descriptor(
                "playback_lag",
                "How late the pacer sent each outbound frame after its tick, over ended calls.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?,
            &pacing,
            &PACING_LAG_MICROS,
            1e6,
        )
    }
}

/// Encodes `counts`, whose `bounds` are in units of `per_second`, in seconds.
fn encode(
    mut encoder: MetricEncoder<'_>,
    counts: &HistogramCounts,
    bounds: &[u64; HISTOGRAM_BUCKETS],
    per_second: f64,
) -> Result<(), std::fmt::Error> {
    let buckets: Vec<(f64, u64)> = bounds
        .iter()
        .zip(counts.counts)
        .map(|(&bound, count)| {
            let upper = if bound == u64::MAX {
                f64::INFINITY
            } else {
                bound as f64 / per_second
            };
            (upper, count)
        })
        .collect();
    encoder.encode_histogram::<NoLabelSet>(
        counts.sum as f64 / per_second,
        counts.count(),
        &buckets,
        None,
    )
}
