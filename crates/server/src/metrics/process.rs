//! The process's own figures, under the names every Prometheus client library uses
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, …), read
//! from `/proc/self` at each scrape. Elsewhere than Linux the collector reports nothing.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Reads `/proc/self` when scraped.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

/// One reading of the process.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ProcessStats {
    pub(crate) cpu_seconds: f64,
    pub(crate) resident_bytes: u64,
    pub(crate) virtual_bytes: u64,
    pub(crate) threads: u64,
    pub(crate) open_fds: u64,
    pub(crate) max_fds: u64,
    pub(crate) start_time_seconds: f64,
}

impl ProcessStats {
    /// This process, now; `None` where `/proc` cannot be read.
    pub(crate) fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as u64;
        let mut stats = parse_stat(&stat, ticks, page)?;
        let booted: f64 = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        stats.start_time_seconds += booted;
        stats.open_fds = open_fds;
        stats.max_fds = parse_max_open_files(&limits).unwrap_or(0);
        Some(stats)
    }
}

/// The fields of `/proc/<pid>/stat` we use (man 5 proc): CPU time, threads, start time (since
/// boot), virtual and resident size. The command name may hold spaces and parentheses: the
/// fields start after its last `)`.
fn parse_stat(stat: &str, ticks_per_second: f64, page_bytes: u64) -> Option<ProcessStats> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name, field 3 (state) is the first.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let (utime, stime) = (field(14)?, field(15)?);
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / ticks_per_second,
        threads: field(20)?,
        start_time_seconds: field(22)? as f64 / ticks_per_second,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)?.saturating_mul(page_bytes),
        ..ProcessStats::default()
    })
}

/// The soft limit on open files from `/proc/<pid>/limits` (0 when unlimited).
fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .strip_prefix("Max open files")?
        .split_whitespace()
        .next()?;
    Some(soft.parse().unwrap_or(0))
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(stats) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent.",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?)?;
        let gauges: [(&str, &str, Option<Unit>, f64); 6] = [
            (
                "process_resident_memory",
                "Resident memory size.",
                Some(Unit::Bytes),
                stats.resident_bytes as f64,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size.",
                Some(Unit::Bytes),
                stats.virtual_bytes as f64,
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch.",
                Some(Unit::Seconds),
                stats.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Open file descriptors.",
                None,
                stats.open_fds as f64,
            ),
            (
                "process_max_fds",
                "The soft limit on open file descriptors.",
                None,
                stats.max_fds as f64,
            ),
            ("process_threads", "OS threads.", None, stats.threads as f64),
        ];
        for (name, help, unit, value) in gauges {
            ConstGauge::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_cpu_threads_start_and_sizes() {
        // A real line (man 5 proc's order), with a command name that has spaces and a ')'.
        let stat = "4242 (media gate) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 150 0 0 20 0 \
                    17 0 98765 2147483648 5000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 \
                    0 17 1 0 0 0 0 0";
        let stats = parse_stat(stat, 100.0, 4096).unwrap();
        assert_eq!(
            stats,
            ProcessStats {
                cpu_seconds: 4.0,
                threads: 17,
                start_time_seconds: 987.65,
                virtual_bytes: 2_147_483_648,
                resident_bytes: 5000 * 4096,
                ..ProcessStats::default()
            }
        );
        assert_eq!(parse_stat("4242 (truncated", 100.0, 4096), None);
    }

    #[test]
    fn the_soft_open_files_limit_is_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            20000                40000                files\n";
        assert_eq!(parse_max_open_files(limits), Some(20_000));
        assert_eq!(
            parse_max_open_files("Max open files unlimited unlimited files"),
            Some(0)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_as_alive() {
        let stats = ProcessStats::read().unwrap();
        assert!(stats.resident_bytes > 1 << 20, "{stats:?}");
        assert!(stats.virtual_bytes >= stats.resident_bytes, "{stats:?}");
        assert!(stats.threads >= 1 && stats.open_fds >= 3, "{stats:?}");
        assert!(stats.max_fds >= stats.open_fds, "{stats:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            stats.start_time_seconds <= now + 1.0 && stats.start_time_seconds > now - 86_400.0,
            "{stats:?}"
        );
    }
}
