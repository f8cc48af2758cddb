//! mediagate: a real-time media streaming and transcription gateway for Azure Communication
//! Services (ACS) Call Automation.
//!
//! This facade re-exports the workspace's crates so a library user needs one dependency:
//!
//! - [`protocol`]: the wire protocol, sans-IO (parse and serialize every message).
//! - [`audio`]: PCM formats, frames and resampling.
//! - [`pipeline`]: the [`pipeline::Processor`] API, per-call fan-out, outbound playback.
//! - [`processors`]: built-in processors and the [`processors::Registry`] that builds pipelines by name.
//! - [`server`]: the WebSocket gateway that records every call ([`server::Server`]).
//! - [`emulator`]: the platform side, streaming WAV files into a gateway as ACS would.
//!
//! Run a gateway from your own `main`:
//!
//! ```no_run
//! # async fn run() -> Result<(), mediagate::server::ServerError> {
//! let config = mediagate::server::Config::default();
//! let server = mediagate::server::Server::bind(config).await?;
//! server.run_until(mediagate::server::shutdown_signal()).await
//! # }
//! ```

pub use mediagate_audio as audio;
pub use mediagate_bench as bench;
pub use mediagate_emulator as emulator;
pub use mediagate_pipeline as pipeline;
pub use mediagate_processors as processors;
pub use mediagate_protocol as protocol;
pub use mediagate_server as server;
pub use mediagate_speech as speech;
