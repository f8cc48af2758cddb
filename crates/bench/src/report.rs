//! What a bench run measured: counts, rates, latency and jitter percentiles, what the gateway
//! and the generator cost. Serializes to JSON (`--json`); displays as a table.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::Mode;
use crate::procstat::ProcessUsage;
use crate::rss::RssReport;

/// The whole report of one run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The gateway's URL.
    pub url: String,
    /// `realtime` or `max`.
    pub mode: Mode,
    /// Calls asked for.
    pub calls: usize,
    /// Calls that connected.
    pub connected: usize,
    /// Sample rate of the load.
    pub rate_hz: u32,
    /// Participants per call (0: mixed audio).
    pub unmixed: usize,
    /// Length of the measured window (after ramp and warm-up), seconds.
    pub window_secs: f64,
    /// Counts over the whole run.
    pub frames: FrameCounts,
    /// Frames per second in the measured window.
    pub rate: Rates,
    /// Echo round trip (send of a frame to arrival of its echo), microseconds, in the window.
    pub latency_us: Option<Percentiles>,
    /// Time between consecutive echoed frames of a call (real time, mixed audio only),
    /// microseconds, in the window.
    pub outbound_gap_us: Option<Percentiles>,
    /// Echoed frames that came more than 25 ms after the previous one, in the window.
    pub outbound_gaps_over_25ms: u64,
    /// How late the generator's own 20 ms clock ran at worst (real time only), microseconds:
    /// large values mean the generator, not the gateway, was the bottleneck.
    pub generator_late_max_us: u64,
    /// The gateway's CPU and memory, when it runs on this machine and its pid is known.
    pub gateway: Option<ProcessUsage>,
    /// The generator's own CPU and memory.
    pub generator: ProcessUsage,
    /// Close codes the gateway sent, by code.
    pub close_codes: BTreeMap<u16, usize>,
    /// Calls that ended in an error (connect failed, socket error), with the first few errors.
    pub errors: ErrorSummary,
    /// Resident memory sampled through the run, and the gateway's trend after the warm-up.
    pub rss: RssReport,
}

/// Frames over the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FrameCounts {
    /// AudioData messages sent.
    pub sent: u64,
    /// Stamped frames echoed back.
    pub received: u64,
    /// Sent and never echoed (`sent - received`, when echo is expected), or skipped in the
    /// echoed sequence.
    pub lost: u64,
    /// Of `lost`, when echo is expected: the frames missing between two echoes, dropped
    /// mid-call. The rest were not echoed before the close.
    pub lost_mid_call: u64,
    /// Echoed more than once, or out of order.
    pub duplicated: u64,
    /// Outbound AudioData without a stamp (audio the gateway made itself).
    pub unstamped: u64,
    /// StopAudio messages received.
    pub stop_audio: u64,
}

/// Frame rates in the measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Frames sent per second.
    pub sent_per_sec: f64,
    /// Frames echoed per second.
    pub received_per_sec: f64,
    /// Frames sent per second per core the gateway used (when its CPU is known).
    pub sent_per_gateway_core_sec: Option<f64>,
}

/// Percentiles of a distribution, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// `None` for an empty histogram.
    pub(crate) fn of(h: &Histogram<u32>) -> Option<Percentiles> {
        (!h.is_empty()).then(|| Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        })
    }
}

/// Calls that failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErrorSummary {
    /// How many calls ended in an error.
    pub calls: usize,
    /// The first few distinct errors.
    pub first: Vec<String>,
}

impl BenchReport {
    /// Whether the run held: every call connected, no frame lost or duplicated, no error.
    pub fn clean(&self) -> bool {
        self.connected == self.calls
            && self.frames.lost == 0
            && self.frames.duplicated == 0
            && self.errors.calls == 0
    }

    /// Whether the gateway's resident memory stayed flat after the warm-up (`None`: not
    /// measured, or too few samples).
    pub fn rss_flat(&self) -> Option<bool> {
        self.rss.trend.map(|t| t.flat)
    }
}

/// The samples, four to a line, and the trend.
fn write_rss(f: &mut fmt::Formatter<'_>, rss: &RssReport) -> fmt::Result {
    let kib = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    writeln!(
        f,
        "rss (KiB)    every {:.1} s, gateway / generator:",
        rss.every_secs
    )?;
    for row in rss.samples.chunks(4) {
        write!(f, "            ")?;
        for s in row {
            write!(
                f,
                " {:>7.1} s {:>8} / {:<8}",
                s.elapsed_secs,
                kib(s.gateway_kib),
                kib(s.generator_kib)
            )?;
        }
        writeln!(f)?;
    }
    match &rss.trend {
        Some(t) => writeln!(
            f,
            "rss trend    after {:.1} s: {} samples, {}–{} KiB, spread {:.1}%, first to last \
             {:+.1}% ({:+.0} KiB/min): {} within {:.0}%",
            t.warmup_secs,
            t.samples,
            t.min_kib,
            t.max_kib,
            t.spread * 100.0,
            t.growth * 100.0,
            t.kib_per_min,
            if t.flat { "flat" } else { "NOT flat" },
            t.tolerance * 100.0
        ),
        None => writeln!(
            f,
            "rss trend    not measured (no gateway pid, or under two samples after the warm-up)"
        ),
    }
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self;
        let mode = match r.mode {
            Mode::Realtime => "realtime",
            Mode::Max => "max",
        };
        let audio = if r.unmixed == 0 {
            "mixed".to_owned()
        } else {
            format!("{} participants", r.unmixed)
        };
        writeln!(f, "gateway      {}", r.url)?;
        writeln!(
            f,
            "load         {mode}, {} calls ({} connected), {} Hz {audio}, {:.1} s measured",
            r.calls, r.connected, r.rate_hz, r.window_secs
        )?;
        let c = &r.frames;
        writeln!(
            f,
            "frames       sent {}  received {}  lost {} ({} mid-call)  duplicated {}  unstamped {}",
            c.sent, c.received, c.lost, c.lost_mid_call, c.duplicated, c.unstamped
        )?;
        write!(
            f,
            "rate         {:.0} frames/s sent, {:.0} echoed",
            r.rate.sent_per_sec, r.rate.received_per_sec
        )?;
        match r.rate.sent_per_gateway_core_sec {
            Some(per_core) => writeln!(f, ", {per_core:.0} per gateway core")?,
            None => writeln!(f)?,
        }
        if let Some(l) = &r.latency_us {
            writeln!(
                f,
                "round trip   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} frames)",
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.p999),
                ms(l.max),
                l.count
            )?;
        }
        if let Some(g) = &r.outbound_gap_us {
            writeln!(
                f,
                "echo gaps    p50 {}  p99 {}  max {}  over 25 ms: {}",
                ms(g.p50),
                ms(g.p99),
                ms(g.max),
                r.outbound_gaps_over_25ms
            )?;
        }
        for (name, usage) in [
            ("gateway", r.gateway.as_ref()),
            ("generator", Some(&r.generator)),
        ] {
            let Some(u) = usage else {
                writeln!(
                    f,
                    "{name:<12} CPU not measured (pass --gateway-pid for a local one)"
                )?;
                continue;
            };
            writeln!(
                f,
                "{name:<12} {:.2} cores, {:.1} µs CPU per frame, RSS {} KiB ({:.0} KiB per call), pid {}",
                u.cores, u.micros_per_frame, u.rss_kib, u.rss_per_call_kib, u.pid
            )?;
        }
        if r.mode == Mode::Realtime {
            writeln!(
                f,
                "generator    its 20 ms clock ran at most {} late",
                ms(r.generator_late_max_us)
            )?;
        }
        write_rss(f, &r.rss)?;
        if !r.close_codes.is_empty() {
            writeln!(f, "closes       {:?}", r.close_codes)?;
        }
        if r.errors.calls > 0 {
            writeln!(
                f,
                "errors       {} calls: {:?}",
                r.errors.calls, r.errors.first
            )?;
        }
        write!(
            f,
            "verdict      {}",
            if r.clean() {
                "clean: no loss, no error"
            } else {
                "NOT CLEAN: see lost/duplicated/errors above"
            }
        )
    }
}
