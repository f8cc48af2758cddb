//! `level_meter`: every `interval_ms` of a source's audio (the mixed stream, or each
//! participant), a `level` event with its RMS and peak in dBFS, for the other processors of
//! the call (a bot that waits for quiet) and for whoever watches the call (the admin API's
//! `GET /calls` and `/events`, the dashboard's meters).

use std::collections::HashMap;

use mediagate_pipeline::{
    AudioFrame, AudioSource, BuildError, Context, CustomEvent, Event, Input, Processor,
    ProcessorError,
};
use serde::Deserialize;

use crate::settings::{invalid, parse};

/// Its name in a pipeline.
const NAME: &str = "level_meter";

/// The kind of the events it emits.
pub const LEVEL: &str = "level";

/// The level reported for digital silence: -100 dBFS.
pub const FLOOR_DBFS: f64 = -100.0;

/// `[pipeline.settings.level_meter]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LevelMeterSettings {
    /// How much audio each reading covers, in ms: 20 to 10000. Default 100.
    pub interval_ms: u32,
}

impl Default for LevelMeterSettings {
    fn default() -> Self {
        LevelMeterSettings { interval_ms: 100 }
    }
}

/// One source's window being measured.
#[derive(Debug, Clone, Default)]
struct Window {
    samples: u64,
    sum_squares: f64,
    peak: u16,
}

/// Measures each source's level over windows of `interval_ms` and emits one event per window.
/// A new call's meter is a clone of the one built at start-up (its windows empty).
#[derive(Debug, Clone)]
pub struct LevelMeter {
    interval_ms: u32,
    windows: HashMap<AudioSource, Window>,
    readings: u64,
}

impl LevelMeter {
    /// A meter with checked settings.
    pub fn new(settings: LevelMeterSettings) -> Self {
        LevelMeter {
            interval_ms: settings.interval_ms,
            windows: HashMap::new(),
            readings: 0,
        }
    }
}

/// `value` (0..=1 of full scale) in dBFS, at least [`FLOOR_DBFS`].
fn dbfs(value: f64) -> f64 {
    if value <= 0.0 {
        FLOOR_DBFS
    } else {
        (20.0 * value.log10()).max(FLOOR_DBFS)
    }
}

impl Processor for LevelMeter {
    fn input(&self) -> Input {
        // A few operations per sample: inline, on the call's own rate. It emits events others
        // want: at the call's end, what it still emits reaches those that wait for emitters.
        Input {
            emits: true,
            ..Input::default()
        }
    }

    fn on_frame(&mut self, frame: &AudioFrame, ctx: &mut Context) -> Result<(), ProcessorError> {
        let per_window =
            u64::from(frame.format.sample_rate_hz()) * u64::from(self.interval_ms) / 1_000;
        let window = self.windows.entry(frame.source.clone()).or_default();
        for bytes in frame.pcm.chunks_exact(2) {
            let sample = i16::from_le_bytes([bytes[0], bytes[1]]);
            window.samples += 1;
            window.sum_squares += f64::from(sample) * f64::from(sample);
            window.peak = window.peak.max(sample.unsigned_abs());
            if window.samples == per_window {
                let rms = (window.sum_squares / window.samples as f64).sqrt() / 32_768.0;
                let source = match &frame.source {
                    AudioSource::Mixed => None,
                    AudioSource::Participant(id) => Some(id.to_string()),
                };
                ctx.emit(Event::Custom(std::sync::Arc::new(CustomEvent::new(
                    LEVEL,
                    serde_json::json!({
                        "source": source,
                        "rms_dbfs": dbfs(rms),
                        "peak_dbfs": dbfs(f64::from(window.peak) / 32_768.0),
                    }),
                ))));
                self.readings += 1;
                *window = Window::default();
            }
        }
        Ok(())
    }

    fn report(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "readings": self.readings }))
    }
}

impl LevelMeter {
    /// The meter `[pipeline.settings.level_meter]` describes.
    pub fn from_settings(settings: &serde_json::Value) -> Result<Self, BuildError> {
        let checked: LevelMeterSettings = parse(NAME, settings)?;
        if !(20..=10_000).contains(&checked.interval_ms) {
            return Err(invalid(NAME, "interval_ms must be 20 to 10000"));
        }
        Ok(LevelMeter::new(checked))
    }
}
