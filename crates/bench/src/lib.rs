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

mod chart;
mod frames;
mod load;
mod procstat;
mod reference;
mod report;
mod rss;

use std::path::PathBuf;

pub use chart::sweep_svg;
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
    /// Not one call connected.
    #[error("no call could connect to {url}: {reason}")]
    NoConnection {
        /// The gateway.
        url: String,
        /// The first call's error.
        reason: String,
    },
}
