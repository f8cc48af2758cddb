//! The end-to-end tests: real gateways (in this process, or `mediagate serve` as a child)
//! driven through real sockets, and what they wrote checked byte for byte. Each module is one
//! subject; `tests/auth.rs` is a binary of its own because it captures every log line of its
//! process.
//!
//! One binary rather than one per file: each test binary links the whole tree, and cargo runs
//! test binaries one after another, so the tests that spend their time waiting on real-time
//! audio could not overlap. Here they share one harness (and `.cargo/config.toml` gives it more
//! threads than cores, for the same reason). A new file under `tests/` is a module of this
//! binary: add it below (`autotests = false` in Cargo.toml).

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod common;

mod admin;
mod bad_input;
mod bench;
mod bench_speech;
mod call_automation;
mod compliance;
mod control_plane;
mod dashboard;
mod emulator_control;
mod hostile;
mod level_meter;
mod metrics;
mod pipeline;
mod playback;
mod realtime;
mod recording;
mod repair;
mod say;
mod soak;
mod speech;
mod speech_scale;
mod stress;
mod tls;
mod wyoming;
