//! `vad`: energy-based voice activity detection, per source, with barge-in.

use std::collections::HashMap;

use mediagate_audio::{AudioFrame, AudioSource};
use mediagate_pipeline::{Context, Event, Execution, Input, Processor, ProcessorError};
use serde::Deserialize;

use crate::BuildError;
use crate::settings::{invalid, parse};

/// The registry name.
const NAME: &str = "vad";

/// `[processor.vad]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VadSettings {
    /// A 20 ms window louder than this (RMS, dBFS) counts as voice. Default -35.
    pub threshold_dbfs: f64,
    /// Consecutive loud windows before speech starts. Default 3 (60 ms).
    pub start_frames: u32,
    /// Consecutive quiet windows before speech stops. Default 15 (300 ms).
    pub stop_frames: u32,
    /// When speech starts while outbound audio is queued, cut it ([`Context::stop_audio`]).
    /// Default true.
    pub barge_in: bool,
}

impl Default for VadSettings {
    fn default() -> Self {
        VadSettings {
            threshold_dbfs: -35.0,
            start_frames: 3,
            stop_frames: 15,
            barge_in: true,
        }
    }
}

/// One source's detector: the window being filled and the hysteresis counters.
#[derive(Debug, Default, Clone)]
struct Detector {
    /// Sum of squared samples in the current window (full scale = 1.0).
    energy: f64,
    /// Samples in the current window.
    samples: usize,
    /// The platform flagged part of the window as silence.
    silent: bool,
    speaking: bool,
    /// Consecutive windows on the other side of the threshold from `speaking`.
    run: u32,
}

/// Energy-based voice activity detector. For every source (the mixed stream, or each
/// participant of an unmixed one), the RMS of each 20 ms window in dBFS, with hysteresis:
/// speech starts after `start_frames` consecutive windows above `threshold_dbfs` and stops after
/// `stop_frames` consecutive windows at or below it. Emits [`Event::Speech`] on every change;
/// with `barge_in`, the start of speech while outbound audio is queued cuts it
/// ([`Context::stop_audio`], which emits [`Event::BargeIn`]).
///
/// Runs inline at the call's own rate: a few operations per sample.
#[derive(Debug, Clone)]
pub struct Vad {
    settings: VadSettings,
    /// Mean square above which a window is voice (`threshold_dbfs` converted once).
    threshold: f64,
    sources: HashMap<AudioSource, Detector>,
}

impl Vad {
    /// A detector; fails on settings out of range.
    pub fn new(settings: VadSettings) -> Result<Self, BuildError> {
        if !(settings.threshold_dbfs.is_finite() && settings.threshold_dbfs <= 0.0) {
            return Err(invalid(NAME, "threshold_dbfs must be at most 0"));
        }
        if settings.start_frames == 0 || settings.stop_frames == 0 {
            return Err(invalid(
                NAME,
                "start_frames and stop_frames must be at least 1",
            ));
        }
        Ok(Vad {
            // rms > 10^(dB/20)  ⇔  mean square > 10^(dB/10)
            threshold: 10f64.powf(settings.threshold_dbfs / 10.0),
            settings,
            sources: HashMap::new(),
        })
    }

    /// Builds from the config's settings (`null`: all defaults): the registry's constructor.
    pub fn from_settings(value: &serde_json::Value) -> Result<Self, BuildError> {
        Vad::new(parse(NAME, value)?)
    }

    /// Whether `source` is speaking now.
    pub fn is_speaking(&self, source: &AudioSource) -> bool {
        self.sources.get(source).is_some_and(|d| d.speaking)
    }

    /// One finished window of `source`: run the hysteresis, tell the call about changes.
    fn window(&mut self, source: &AudioSource, loud: bool, ctx: &mut Context) {
        let Some(detector) = self.sources.get_mut(source) else {
            return;
        };
        if loud != detector.speaking {
            detector.run += 1;
        } else {
            detector.run = 0;
        }
        let needed = if detector.speaking {
            self.settings.stop_frames
        } else {
            self.settings.start_frames
        };
        if detector.run < needed {
            return;
        }
        detector.speaking = loud;
        detector.run = 0;
        ctx.emit(Event::Speech {
            source: source.clone(),
            active: loud,
        });
        if loud && self.settings.barge_in && !ctx.queued_playback().is_zero() {
            ctx.stop_audio();
        }
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
        let window = frame.format.frame_samples() * usize::from(frame.format.channels());
        if !self.sources.contains_key(&frame.source) {
            self.sources
                .insert(frame.source.clone(), Detector::default());
        }
        let mut finished = Vec::new();
        if let Some(detector) = self.sources.get_mut(&frame.source) {
            detector.silent |= frame.silent;
            for bytes in frame.pcm.chunks_exact(2) {
                let s = f64::from(i16::from_le_bytes([bytes[0], bytes[1]])) / 32_768.0;
                detector.energy += s * s;
                detector.samples += 1;
                if detector.samples == window {
                    let mean_square = detector.energy / window as f64;
                    finished.push(!detector.silent && mean_square > self.threshold);
                    detector.energy = 0.0;
                    detector.samples = 0;
                    detector.silent = frame.silent;
                }
            }
        }
        for loud in finished {
            self.window(&frame.source, loud, ctx);
        }
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
        assert!((vad.threshold - 10f64.powf(-3.5)).abs() < 1e-12);
        for bad in [
            serde_json::json!({"start_frames": 0}),
            serde_json::json!({"threshold_dbfs": 3}),
            serde_json::json!({"threshold": -30}),
        ] {
            assert!(
                matches!(Vad::from_settings(&bad), Err(BuildError::Settings { .. })),
                "{bad}"
            );
        }
    }
}
