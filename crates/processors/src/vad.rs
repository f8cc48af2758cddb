//! `vad`: energy-based voice activity detection, per source, with barge-in.

use std::collections::HashMap;

use mediagate_audio::{
    AudioFrame, AudioSource, EnergyGate, FRAME_DURATION_MS, GateChange, GateSettings,
};
use mediagate_pipeline::{Context, Event, Execution, Input, Processor, ProcessorError};
use serde::Deserialize;

use crate::BuildError;
use crate::settings::{invalid, parse};

/// The registry name.
const NAME: &str = "vad";

/// `[processor.vad]` settings.
///
/// In TOML, `start_frames` and `stop_frames` (counts of 20 ms windows, the old spelling) are
/// still accepted for `start_ms` and `stop_ms`: deprecated, converted to ms (× 20). Giving
/// both spellings of one setting is an error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "VadToml")]
pub struct VadSettings {
    /// A 20 ms window louder than this (RMS, dBFS) counts as voice. Default -35.
    pub threshold_dbfs: f64,
    /// Voice for this long, in a row, starts speech (rounded up to 20 ms windows). Default 60.
    pub start_ms: u32,
    /// Quiet for this long, in a row, stops it (rounded up to 20 ms windows). Default 300.
    pub stop_ms: u32,
    /// When speech starts while outbound audio is queued, cut it ([`Context::stop_audio`]).
    /// Default true.
    pub barge_in: bool,
}

impl Default for VadSettings {
    fn default() -> Self {
        VadSettings {
            threshold_dbfs: -35.0,
            start_ms: 60,
            stop_ms: 300,
            barge_in: true,
        }
    }
}

/// The settings as written, old spellings included.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct VadToml {
    threshold_dbfs: Option<f64>,
    start_ms: Option<u32>,
    stop_ms: Option<u32>,
    /// Deprecated: `start_ms` in 20 ms windows.
    start_frames: Option<u32>,
    /// Deprecated: `stop_ms` in 20 ms windows.
    stop_frames: Option<u32>,
    barge_in: Option<bool>,
}

impl TryFrom<VadToml> for VadSettings {
    type Error = String;

    fn try_from(toml: VadToml) -> Result<Self, String> {
        let defaults = VadSettings::default();
        let ms = |ms: Option<u32>, frames: Option<u32>, names: (&str, &str), default: u32| match (
            ms, frames,
        ) {
            (Some(_), Some(_)) => Err(format!(
                "`{}` and `{}` (its deprecated spelling) are both set: keep `{}`",
                names.0, names.1, names.0
            )),
            (None, Some(0)) => Err(format!("`{}` must be at least 1", names.1)),
            (None, Some(frames)) => Ok(frames.saturating_mul(FRAME_DURATION_MS)),
            (Some(ms), None) => Ok(ms),
            (None, None) => Ok(default),
        };
        Ok(VadSettings {
            threshold_dbfs: toml.threshold_dbfs.unwrap_or(defaults.threshold_dbfs),
            start_ms: ms(
                toml.start_ms,
                toml.start_frames,
                ("start_ms", "start_frames"),
                defaults.start_ms,
            )?,
            stop_ms: ms(
                toml.stop_ms,
                toml.stop_frames,
                ("stop_ms", "stop_frames"),
                defaults.stop_ms,
            )?,
            barge_in: toml.barge_in.unwrap_or(defaults.barge_in),
        })
    }
}

/// Energy-based voice activity detector. For every source (the mixed stream, or each
/// participant of an unmixed one), an [`EnergyGate`]: the RMS of each 20 ms window in dBFS,
/// with hysteresis: speech starts after `start_ms` of windows above `threshold_dbfs` and stops
/// after `stop_ms` of windows at or below it (a window the platform flagged silent is quiet).
/// Emits [`Event::Speech`] on every change; with `barge_in`, the start of speech while
/// outbound audio is queued cuts it ([`Context::stop_audio`], which emits [`Event::BargeIn`]).
///
/// Runs inline at the call's own rate: a few operations per sample.
#[derive(Debug, Clone)]
pub struct Vad {
    settings: VadSettings,
    /// The gate's settings, checked.
    gate: GateSettings,
    sources: HashMap<AudioSource, EnergyGate>,
}

impl Vad {
    /// A detector; fails on settings out of range.
    pub fn new(settings: VadSettings) -> Result<Self, BuildError> {
        let gate = GateSettings {
            threshold_dbfs: settings.threshold_dbfs,
            start_ms: settings.start_ms,
            stop_ms: settings.stop_ms,
        };
        gate.validate().map_err(|e| invalid(NAME, e.to_string()))?;
        if settings.start_ms < FRAME_DURATION_MS || settings.stop_ms < FRAME_DURATION_MS {
            return Err(invalid(
                NAME,
                "start_ms and stop_ms must be at least 20 (one window)",
            ));
        }
        Ok(Vad {
            settings,
            gate,
            sources: HashMap::new(),
        })
    }

    /// Builds from the config's settings (`null`: all defaults): the registry's constructor.
    pub fn from_settings(value: &serde_json::Value) -> Result<Self, BuildError> {
        Vad::new(parse(NAME, value)?)
    }

    /// Whether `source` is speaking now.
    pub fn is_speaking(&self, source: &AudioSource) -> bool {
        self.sources.get(source).is_some_and(EnergyGate::is_open)
    }
}

impl Processor for Vad {
    fn input(&self) -> Input {
        Input {
            sample_rate_hz: None,
            execution: Execution::Inline,
            ..Input::default()
        }
    }

    fn on_frame(&mut self, frame: &AudioFrame, ctx: &mut Context) -> Result<(), ProcessorError> {
        if !self.sources.contains_key(&frame.source) {
            let gate = EnergyGate::new(frame.format, self.gate)
                .map_err(|e| ProcessorError::Skip(e.to_string()))?;
            self.sources.insert(frame.source.clone(), gate);
        }
        let Some(gate) = self.sources.get_mut(&frame.source) else {
            return Ok(());
        };
        let barge_in = self.settings.barge_in;
        gate.push(&frame.pcm, frame.silent, |window| {
            let Some(change) = window.change else {
                return;
            };
            let active = matches!(change, GateChange::Started { .. });
            ctx.emit(Event::Speech {
                source: frame.source.clone(),
                active,
            });
            if active && barge_in && !ctx.queued_playback().is_zero() {
                ctx.stop_audio();
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn settings_default_and_are_checked() {
        let vad = Vad::from_settings(&serde_json::Value::Null).unwrap();
        assert_eq!(vad.settings, VadSettings::default());
        for bad in [
            serde_json::json!({"start_frames": 0}),
            serde_json::json!({"stop_ms": 10}),
            serde_json::json!({"stop_ms": 600, "stop_frames": 30}),
            serde_json::json!({"threshold_dbfs": 3}),
            serde_json::json!({"threshold": -30}),
        ] {
            assert!(
                matches!(Vad::from_settings(&bad), Err(BuildError::Settings { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn frame_counts_are_still_read_as_milliseconds() {
        let vad =
            Vad::from_settings(&serde_json::json!({"start_frames": 2, "stop_frames": 30})).unwrap();
        assert_eq!((vad.settings.start_ms, vad.settings.stop_ms), (40, 600));
        let vad = Vad::from_settings(&serde_json::json!({"start_ms": 100})).unwrap();
        assert_eq!((vad.settings.start_ms, vad.settings.stop_ms), (100, 300));
    }
}
