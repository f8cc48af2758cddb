//! `tone`: a sine beep into the call, on DTMF and/or when the call starts.

use mediagate_audio::AudioFormat;
use mediagate_pipeline::{Context, Event, Input, Processor, ProcessorError};
use serde::Deserialize;

use crate::BuildError;
use crate::settings::{invalid, parse};

/// The registry name.
const NAME: &str = "tone";

/// Longest beep accepted: a minute.
const MAX_DURATION_MS: u32 = 60_000;

/// Fade in and out over this long (or a quarter of the beep, if shorter), so the beep does not
/// click.
const FADE_MS: u64 = 5;

/// `[processor.tone]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToneSettings {
    /// Pitch, in Hz (below half the call's sample rate). Default 1000.
    pub frequency_hz: f64,
    /// Length of one beep, in ms (1..=60000). Default 200.
    pub duration_ms: u32,
    /// Peak level, 0..=1 of full scale. Default 0.3.
    pub amplitude: f64,
    /// Beep on every DTMF key. Default true.
    pub on_dtmf: bool,
    /// Beep when the call starts. Default false.
    pub at_start: bool,
}

impl Default for ToneSettings {
    fn default() -> Self {
        ToneSettings {
            frequency_hz: 1_000.0,
            duration_ms: 200,
            amplitude: 0.3,
            on_dtmf: true,
            at_start: false,
        }
    }
}

/// Plays a sine beep into the call ([`Context::play`], paced, in the call's format): on every
/// DTMF key and/or at call start. Receives frames but ignores them.
#[derive(Debug, Clone)]
pub struct Tone {
    settings: ToneSettings,
    /// The beep, generated on first use for the call's format.
    beep: Option<(AudioFormat, Vec<i16>)>,
    /// A full queue or a call without outbound audio was reported once already.
    warned: bool,
}

impl Tone {
    /// A tone player; fails on settings out of range.
    pub fn new(settings: ToneSettings) -> Result<Self, BuildError> {
        if !(settings.frequency_hz.is_finite() && settings.frequency_hz > 0.0) {
            return Err(invalid(NAME, "frequency_hz must be positive"));
        }
        if !(0.0..=1.0).contains(&settings.amplitude) {
            return Err(invalid(NAME, "amplitude must be within 0..=1"));
        }
        if settings.duration_ms == 0 || settings.duration_ms > MAX_DURATION_MS {
            return Err(invalid(
                NAME,
                format!("duration_ms must be within 1..={MAX_DURATION_MS}"),
            ));
        }
        Ok(Tone {
            settings,
            beep: None,
            warned: false,
        })
    }

    /// Builds from the config's settings (`null`: all defaults): the registry's constructor.
    pub fn from_settings(value: &serde_json::Value) -> Result<Self, BuildError> {
        Tone::new(parse(NAME, value)?)
    }

    /// The beep's samples in `format` (mono), `duration × rate` long.
    fn samples(&self, format: AudioFormat) -> Vec<i16> {
        let rate = u64::from(format.sample_rate_hz());
        let n = u64::from(self.settings.duration_ms) * rate / 1_000;
        let fade = (FADE_MS * rate / 1_000).min(n / 4).max(1);
        let step = std::f64::consts::TAU * self.settings.frequency_hz / rate as f64;
        let peak = self.settings.amplitude * f64::from(i16::MAX);
        (0..n)
            .map(|i| {
                let edge = i.min(n - 1 - i);
                let gain = (edge as f64 / fade as f64).min(1.0);
                // |value| <= 32767: the cast cannot saturate.
                (peak * gain * (step * i as f64).sin()).round() as i16
            })
            .collect()
    }

    fn beep(&mut self, ctx: &mut Context) -> Result<(), ProcessorError> {
        let format = ctx.call().format;
        if 2.0 * self.settings.frequency_hz >= f64::from(format.sample_rate_hz()) {
            return Err(ProcessorError::Skip(format!(
                "{} Hz is above the call's Nyquist frequency ({} Hz)",
                self.settings.frequency_hz,
                format.sample_rate_hz() / 2
            )));
        }
        let samples = match &self.beep {
            Some((made_for, samples)) if *made_for == format => samples,
            _ => &self.beep.insert((format, self.samples(format))).1,
        };
        let played = ctx.play(samples);
        crate::settings::skip_unplayable(played, &mut self.warned, ctx, "tone")
    }
}

impl Processor for Tone {
    fn input(&self) -> Input {
        Input::events_only()
    }

    fn on_event(&mut self, event: &Event, ctx: &mut Context) -> Result<(), ProcessorError> {
        match event {
            Event::CallStarted(_) if self.settings.at_start => self.beep(ctx),
            Event::Dtmf(_) if self.settings.on_dtmf => self.beep(ctx),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn settings_default_and_are_checked() {
        let tone = Tone::from_settings(&serde_json::Value::Null).unwrap();
        assert_eq!(tone.settings, ToneSettings::default());
        let tone = Tone::from_settings(&serde_json::json!({"frequency_hz": 440, "at_start": true}))
            .unwrap();
        assert_eq!(tone.settings.frequency_hz, 440.0);
        assert!(tone.settings.at_start);
        for bad in [
            serde_json::json!({"amplitude": 1.5}),
            serde_json::json!({"frequency_hz": 0}),
            serde_json::json!({"duration_ms": 0}),
            serde_json::json!({"volume": 1}),
        ] {
            assert!(
                matches!(Tone::from_settings(&bad), Err(BuildError::Settings { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_beep_is_duration_times_rate_long_and_peaks_at_the_amplitude() {
        let tone = Tone::new(ToneSettings {
            amplitude: 0.5,
            ..ToneSettings::default()
        })
        .unwrap();
        let samples = tone.samples(AudioFormat::mono(8_000));
        assert_eq!(samples.len(), 1_600);
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((16_380..=16_384).contains(&peak), "{peak}");
    }
}
