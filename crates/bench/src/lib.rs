//! `mediagate bench`: a load generator and benchmark for any gateway that speaks the ACS media
//! streaming protocol, and the bare reference echo server its figures are compared with.
//!
//! [`run`] opens N calls against a gateway, each streaming stamped 20 ms AudioData frames in
//! real time or as fast as the gateway takes them, and times every frame the gateway echoes back
//! (its pipeline runs `echo`). It reports counts (sent, echoed, lost, duplicated), frame rates,
//! round-trip and pacing percentiles (HdrHistogram), and the CPU and memory of the gateway (read
//! from `/proc` when it runs on this machine) and of the generator itself, so a reader can see
//! which side was the bottleneck.
//!
//! A task of its own samples both processes' resident memory through the run (once a minute on
//! long runs), and the report says whether the gateway's stayed flat after the warm-up: run long,
//! it is a soak test for leaks.
//!
//! Every message is encoded before the clock starts, as one of 256 stamped variants shared by
//! all calls (a refcount per send, no allocation or encoding per frame).
//!
//! [`speech`] (`mediagate bench --speech`) loads a gateway's speech pipeline instead: real-time
//! calls of real speech, scored from the transcripts the gateway wrote (finals latency after
//! each utterance, word error rate, partial rate, CPU, calls transcribed live).

mod chart;
mod frames;
mod load;
mod procstat;
mod reference;
mod report;
mod rss;
pub mod speech;

use std::path::PathBuf;

pub use chart::{speech_sweep_svg, sweep_svg};
pub use frames::STAMPS;
pub use load::{BenchConfig, Mode, run};
pub use procstat::{ProcSample, ProcessUsage, sample};
pub use reference::serve_reference_echo;
pub use report::{BenchReport, ErrorSummary, FrameCounts, Percentiles, Rates};
pub use rss::{RssReport, RssSample, RssTrend, default_rss_every};

/// A run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The settings cannot work.
    #[error("invalid bench settings: {0}")]
    Config(String),
    /// The audio file cannot be used.
    #[error("cannot use {path}: {reason}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Speech clips or their references cannot be used.
    #[error("cannot use speech clips at {path}: {reason}")]
    Clips {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Not one call connected.
    #[error("no call could connect to {url}: {reason}")]
    NoConnection {
        /// The gateway.
        url: String,
        /// The first call's error.
        reason: String,
    },
}

impl BenchError {
    /// [`BenchError::NoConnection`] to `url`, with the first call's error if any.
    pub(crate) fn no_connection(url: &str, first_error: Option<String>) -> Self {
        BenchError::NoConnection {
            url: url.to_owned(),
            reason: first_error.unwrap_or_else(|| "unknown".to_owned()),
        }
    }
}
