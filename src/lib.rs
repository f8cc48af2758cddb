//! mediagate: a real-time media streaming and transcription gateway for Azure Communication
//! Services (ACS) Call Automation.
//!
//! This facade re-exports the workspace's crates so a library user needs one dependency:
//!
//! - [`protocol`]: the wire protocol, sans-IO (parse and serialize every message).
//! - [`audio`]: PCM formats, frames and resampling.
//! - [`pipeline`]: the extension API ([`pipeline::Processor`], [`pipeline::Factory`], the
//!   [`pipeline::Registry`] of factories by name), per-call fan-out, outbound playback.
//! - [`processors`]: the built-in processors (echo, play, tone, vad, and the recorders).
//! - [`speech`]: speech engines (Whisper, PocketSphinx, Wyoming), `say` and `realtime`.
//! - [`server`]: the WebSocket gateway that records every call ([`server::Server`]).
//! - [`emulator`]: the platform side, streaming WAV files into a gateway as ACS would.
//! - [`models`]: the speech model installer (`mediagate models install`).
//!
//! This crate composes them: [`registry`] is every processor the `mediagate` binary can name,
//! and [`default_config`] its defaults (the recorders, and the embedded speech engine when
//! the build has one). Run a gateway from your own `main`, with your processors beside ours:
//!
//! ```no_run
//! # async fn run() -> Result<(), mediagate::server::ServerError> {
//! let mut registry = mediagate::registry();
//! // registry.register("my_processor", |settings| …);
//! let server = mediagate::server::Server::bind(mediagate::default_config(), registry).await?;
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

pub mod models;
pub mod testing;

use std::sync::Arc;

use mediagate_pipeline::Registry;
use mediagate_server::Config;

/// Every processor the `mediagate` binary can name: the built-ins, and the speech engines of
/// this build with `say` and `realtime`. A missing default Whisper model is installed by
/// [`models::install`] (when its settings allow downloads).
pub fn registry() -> Registry {
    let mut registry = mediagate_processors::builtins();
    mediagate_speech::register(&mut registry, Some(model_installer()));
    registry
}

/// [`models::install`], as the speech engines take it.
pub fn model_installer() -> mediagate_speech::ModelInstaller {
    Arc::new(|| models::install(false).map_err(|e| e.to_string()))
}

/// The binary's defaults: the gateway's, with the embedded speech engine (when this build has
/// one) after the recorders of the default pipeline, so every call is transcribed.
pub fn default_config() -> Config {
    let mut config = Config::default();
    config
        .pipeline
        .processors
        .extend(mediagate_speech::default_engine().map(String::from));
    config
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use mediagate_server::CliOverrides;

    #[test]
    fn the_sample_config_documents_the_defaults() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/mediagate.toml");
        let mut config =
            Config::load_over(default_config(), Some(&sample), &CliOverrides::default()).unwrap();
        if mediagate_speech::default_engine().is_none() {
            // A build without the embedded engine: the sample documents the default build.
            config.pipeline.processors.retain(|p| p != "whisper");
        }
        assert_eq!(config, default_config());
    }

    #[test]
    fn the_call_automation_sample_loads_with_its_rules_in_order() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/call-automation.toml");
        let config =
            Config::load_over(default_config(), Some(&sample), &CliOverrides::default()).unwrap();
        let acs = &config.acs;
        assert!(acs.enabled);
        let names: Vec<&str> = acs.answer.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["premium-rate", "after-hours", "front-desk", "everyone-else"]
        );
        let desk = &acs.answer[2];
        assert_eq!(desk.channels, mediagate_server::Channels::Unmixed);
        let attendant = desk.attendant.as_ref().unwrap();
        assert_eq!(attendant.menu["1"], "+14255550123");
        assert!(acs.answer[3].attendant.is_none());
    }

    #[test]
    fn the_registry_builds_every_default_processor() {
        let registry = registry();
        for name in default_config().pipeline.processors {
            assert!(registry.contains(&name), "{name}");
        }
    }
}
