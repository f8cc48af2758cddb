//! Resident memory over a run (a soak): the gateway's and the generator's RSS sampled at a
//! fixed interval by a task of its own, and whether the gateway's stays flat after a warm-up.
//!
//! The sampler reads `/proc` once per process per sample, on a blocking thread, so the calls'
//! tasks never wait on it. The trend ignores the samples taken before the calls connected and
//! settled (the ramp, the warm-up and the first tenth of the measured window: buffers, pools
//! and allocator arenas fill there), then compares the rest.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};

use crate::procstat;

/// Runs of at least this long sample once a minute by default.
const LONG_RUN: Duration = Duration::from_secs(600);

/// The sampling interval when none is given: once a minute for a run of ten minutes or more,
/// else a tenth of the measured window (at least a second), so every run has about ten samples
/// in its window.
pub fn default_rss_every(duration: Duration) -> Duration {
    if duration >= LONG_RUN {
        Duration::from_secs(60)
    } else {
        (duration / 10).max(Duration::from_secs(1))
    }
}

/// One reading of resident memory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RssSample {
    /// Since the run started (the first call's connect), seconds.
    pub elapsed_secs: f64,
    /// The gateway's resident memory, KiB (`None`: its pid is unknown or it could not be read).
    pub gateway_kib: Option<u64>,
    /// The generator's own resident memory, KiB.
    pub generator_kib: Option<u64>,
}

/// The gateway's resident memory after the warm-up: how much it moved, and whether that is
/// within the tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RssTrend {
    /// Samples taken before this point of the run (seconds since its start) are not counted:
    /// the ramp, the warm-up and the first tenth of the measured window.
    pub warmup_secs: f64,
    /// Samples counted.
    pub samples: usize,
    /// Lowest gateway RSS after the warm-up, KiB.
    pub min_kib: u64,
    /// Highest, KiB.
    pub max_kib: u64,
    /// The first counted sample, KiB.
    pub first_kib: u64,
    /// The last counted sample (the end of the measured window), KiB.
    pub last_kib: u64,
    /// `(max - min) / min`: how far apart the counted samples are, as a fraction.
    pub spread: f64,
    /// `(last - first) / first`, as a fraction (negative when it shrank).
    pub growth: f64,
    /// `(last - first)` per minute between those two samples, KiB.
    pub kib_per_min: f64,
    /// The tolerance asked for, as a fraction (`0.05` for 5%).
    pub tolerance: f64,
    /// `spread <= tolerance`: the gateway's memory stayed flat.
    pub flat: bool,
}

impl RssTrend {
    /// The trend of `samples` after `warmup_ms`, or `None` with fewer than two gateway samples
    /// there (nothing to compare).
    pub fn of(samples: &[RssSample], warmup_secs: f64, tolerance: f64) -> Option<RssTrend> {
        let counted: Vec<(f64, u64)> = samples
            .iter()
            .filter(|s| s.elapsed_secs >= warmup_secs)
            .filter_map(|s| Some((s.elapsed_secs, s.gateway_kib?)))
            .collect();
        let (&(first_secs, first_kib), &(last_secs, last_kib)) =
            (counted.first()?, counted.last()?);
        if counted.len() < 2 {
            return None;
        }
        let min_kib = counted.iter().map(|&(_, k)| k).min()?;
        let max_kib = counted.iter().map(|&(_, k)| k).max()?;
        let spread = (max_kib - min_kib) as f64 / min_kib.max(1) as f64;
        let change = last_kib as f64 - first_kib as f64;
        let minutes = (last_secs - first_secs) / 60.0;
        Some(RssTrend {
            warmup_secs,
            samples: counted.len(),
            min_kib,
            max_kib,
            first_kib,
            last_kib,
            spread,
            growth: change / first_kib.max(1) as f64,
            kib_per_min: if minutes > 0.0 { change / minutes } else { 0.0 },
            tolerance,
            flat: spread <= tolerance,
        })
    }
}

/// Resident memory over the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RssReport {
    /// The sampling interval, seconds.
    pub every_secs: f64,
    /// Every sample, oldest first: one when the run starts, one per interval, one at the end of
    /// the measured window.
    pub samples: Vec<RssSample>,
    /// The gateway's trend after the warm-up (`None`: its memory is unknown or too few samples
    /// came after the warm-up).
    pub trend: Option<RssTrend>,
}

/// The sampling task of one run; [`RssSampler::finish`] takes a last sample and returns them all.
pub(crate) struct RssSampler {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<RssSample>>,
    every: Duration,
}

impl RssSampler {
    /// Starts sampling `gateway` (when known) and this process every `every` from `epoch` (the
    /// first sample is taken at once).
    pub(crate) fn start(epoch: Instant, every: Duration, gateway: Option<u32>) -> RssSampler {
        let (stop, mut stopped) = oneshot::channel();
        let every = every.max(Duration::from_millis(100));
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut clock = tokio::time::interval_at(epoch, every);
            // A late tick (a loaded machine) is taken once, not caught up with a burst.
            clock.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = clock.tick() => samples.push(read(epoch, gateway).await),
                }
            }
            samples.push(read(epoch, gateway).await);
            samples
        });
        RssSampler { stop, task, every }
    }

    /// Stops sampling after one last sample; the samples and the trend after `warmup`.
    pub(crate) async fn finish(self, warmup: Duration, tolerance: f64) -> RssReport {
        let _ = self.stop.send(());
        let samples = self.task.await.unwrap_or_default();
        RssReport {
            every_secs: self.every.as_secs_f64(),
            trend: RssTrend::of(&samples, warmup.as_secs_f64(), tolerance),
            samples,
        }
    }
}

/// One sample, read on a blocking thread (`/proc` is a file system).
async fn read(epoch: Instant, gateway: Option<u32>) -> RssSample {
    // Milliseconds are enough, and read better in JSON.
    let elapsed_secs = (Instant::now().duration_since(epoch).as_secs_f64() * 1e3).round() / 1e3;
    let me = std::process::id();
    let (gateway_kib, generator_kib) = tokio::task::spawn_blocking(move || {
        let rss = |pid| procstat::sample(pid).ok().map(|s| s.rss_kib);
        (gateway.and_then(rss), rss(me))
    })
    .await
    .unwrap_or((None, None));
    RssSample {
        elapsed_secs,
        gateway_kib,
        generator_kib,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(elapsed_s: u64, gateway_kib: u64) -> RssSample {
        RssSample {
            elapsed_secs: elapsed_s as f64,
            gateway_kib: Some(gateway_kib),
            generator_kib: Some(1),
        }
    }

    #[test]
    fn the_default_interval_is_a_minute_for_long_runs_and_a_tenth_otherwise() {
        assert_eq!(
            default_rss_every(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            default_rss_every(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            default_rss_every(Duration::from_secs(60)),
            Duration::from_secs(6)
        );
        assert_eq!(
            default_rss_every(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_flat_gateway_is_flat_after_its_warm_up() {
        // Grows from 10 MiB to 50 MiB while calls connect, then stays within 2%.
        let samples = [
            at(0, 10_000),
            at(5, 40_000),
            at(10, 50_000),
            at(15, 50_500),
            at(20, 51_000),
            at(25, 50_200),
        ];
        let trend = RssTrend::of(&samples, 10.0, 0.05).unwrap();
        assert_eq!(trend.samples, 4);
        assert_eq!((trend.min_kib, trend.max_kib), (50_000, 51_000));
        assert!((trend.spread - 0.02).abs() < 1e-9, "{trend:?}");
        assert!((trend.growth - 0.004).abs() < 1e-9, "{trend:?}");
        // +200 KiB over 15 s.
        assert!((trend.kib_per_min - 800.0).abs() < 1e-6, "{trend:?}");
        assert!(trend.flat);
    }

    #[test]
    fn a_leak_is_not_flat() {
        let samples: Vec<RssSample> = (0..10).map(|i| at(i * 60, 50_000 + i * 1_000)).collect();
        let trend = RssTrend::of(&samples, 60.0, 0.05).unwrap();
        assert!(!trend.flat, "{trend:?}");
        assert!(
            trend.growth > 0.15 && trend.kib_per_min > 999.0,
            "{trend:?}"
        );
    }

    #[test]
    fn too_few_samples_or_no_gateway_give_no_trend() {
        assert_eq!(RssTrend::of(&[at(0, 1), at(5, 2)], 5.0, 0.05), None);
        let blind = [RssSample {
            gateway_kib: None,
            ..at(10, 0)
        }; 3];
        assert_eq!(RssTrend::of(&blind, 0.0, 0.05), None);
    }

    #[tokio::test]
    async fn the_sampler_reads_this_process_until_finished() {
        let me = std::process::id();
        let sampler = RssSampler::start(Instant::now(), Duration::from_millis(100), Some(me));
        tokio::time::sleep(Duration::from_millis(350)).await;
        let report = sampler.finish(Duration::ZERO, 0.5).await;
        assert!(report.samples.len() >= 4, "{report:?}");
        assert!(
            report
                .samples
                .iter()
                .all(|s| s.gateway_kib > Some(0) && s.generator_kib > Some(0))
        );
        assert!(
            report
                .samples
                .windows(2)
                .all(|w| w[0].elapsed_secs <= w[1].elapsed_secs)
        );
        assert!(report.trend.is_some());
    }
}
