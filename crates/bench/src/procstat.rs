//! What a local process costs, from `/proc` (Linux): CPU time and resident memory.

use std::io;

use serde::Serialize;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux ABI in use).
const TICKS_PER_SEC: u64 = 100;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// User + system CPU time so far, in microseconds (10 ms resolution).
    pub cpu_micros: u64,
    /// Resident memory now, KiB.
    pub rss_kib: u64,
}

/// Reads process `pid`.
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse(&stat, &status).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot read /proc/{pid}"),
        )
    })
}

fn parse(stat: &str, status: &str) -> Option<ProcSample> {
    // The command name may hold spaces and parentheses: fields start after the last `)`.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // After `)`: state is field 3 of the whole line, so utime (14) and stime (15) are at 11, 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(ProcSample {
        cpu_micros: (utime + stime) * (1_000_000 / TICKS_PER_SEC),
        rss_kib,
    })
}

/// What a process did over a measured window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProcessUsage {
    /// The process.
    pub pid: u32,
    /// CPU time in the window, seconds.
    pub cpu_secs: f64,
    /// Average cores busy over the window.
    pub cores: f64,
    /// CPU per frame the gateway received in the window, microseconds.
    pub micros_per_frame: f64,
    /// Resident memory at the end of the window (every call connected), KiB.
    pub rss_kib: u64,
    /// Resident memory before the first call connected, KiB.
    pub rss_before_kib: u64,
    /// `(rss - rss_before) / calls`, KiB.
    pub rss_per_call_kib: f64,
}

impl ProcessUsage {
    /// The usage between `start` and `end`, over `window_secs`, with `frames` received and
    /// `calls` connected.
    pub fn between(
        pid: u32,
        before: ProcSample,
        start: ProcSample,
        end: ProcSample,
        window_secs: f64,
        frames: u64,
        calls: usize,
    ) -> Self {
        let cpu_micros = end.cpu_micros.saturating_sub(start.cpu_micros);
        ProcessUsage {
            pid,
            cpu_secs: cpu_micros as f64 / 1e6,
            cores: cpu_micros as f64 / 1e6 / window_secs.max(1e-9),
            micros_per_frame: cpu_micros as f64 / (frames.max(1) as f64),
            rss_kib: end.rss_kib,
            rss_before_kib: before.rss_kib,
            rss_per_call_kib: end.rss_kib.saturating_sub(before.rss_kib) as f64
                / calls.max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat =
            "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 1 1 1";
        let status = "Name:\tx\nVmHWM:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads: 9\n";
        assert_eq!(
            parse(stat, status),
            Some(ProcSample {
                cpu_micros: 3_250_000,
                rss_kib: 5120
            })
        );
        assert_eq!(parse("garbage", status), None);
    }

    #[test]
    fn reads_this_process() {
        let me = sample(std::process::id()).unwrap();
        assert!(me.rss_kib > 0);
    }
}
