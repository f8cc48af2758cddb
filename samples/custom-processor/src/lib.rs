//! `pin_check`: the caller keys a PIN and `#` on the phone; the call answers with a rising
//! two-tone chime when it is right and a low buzz when it is not. A custom processor written
//! against mediagate's extension API alone (`mediagate-pipeline`), in well under 100 lines.

use mediagate_pipeline::{CallInfo, Context, Event, Input, Processor, ProcessorError, Registry};
use serde::Deserialize;

/// Settings, from `[pipeline.settings.pin_check]` in mediagate.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinCheckSettings {
    /// The digits to expect before `#`.
    pub pin: String,
}

/// Collects DTMF digits until `#`, then answers.
pub struct PinCheck {
    pin: String,
    keyed: String,
}

impl PinCheck {
    /// A fresh check of `pin`, for one call.
    pub fn new(pin: &str) -> Self {
        PinCheck {
            pin: pin.to_owned(),
            keyed: String::new(),
        }
    }
}

impl Processor for PinCheck {
    fn input(&self) -> Input {
        // Keys only: no audio enters its inbox.
        Input::events_only()
    }

    fn on_event(&mut self, event: &Event, ctx: &mut Context) -> Result<(), ProcessorError> {
        let Event::Dtmf(dtmf) = event else {
            return Ok(());
        };
        if &*dtmf.tone != "#" {
            self.keyed.push_str(&dtmf.tone);
            return Ok(());
        }
        let rate = ctx.call().format.sample_rate_hz();
        let answer = if std::mem::take(&mut self.keyed) == self.pin {
            [
                tone_samples(660.0, 150, rate),
                tone_samples(880.0, 250, rate),
            ]
            .concat()
        } else {
            tone_samples(220.0, 400, rate)
        };
        ctx.play(&answer)
            .map_err(|e| ProcessorError::Skip(e.to_string()))
    }
}

/// A sine at `hz` for `ms` milliseconds, at a third of full scale.
fn tone_samples(hz: f64, ms: u32, rate: u32) -> Vec<i16> {
    let n = (rate * ms / 1000) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (10_000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
        })
        .collect()
}

/// Adds `pin_check` to a registry, so `processors = ["pin_check"]` builds it. The settings
/// are checked once per route, at start-up; each call gets a fresh `PinCheck`.
pub fn register(registry: &mut Registry) {
    registry.register("pin_check", |settings| {
        let PinCheckSettings { pin } = settings.parse()?;
        if pin.is_empty() || !pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(settings.invalid("pin must be digits"));
        }
        Ok(move |_: &CallInfo| Box::new(PinCheck::new(&pin)) as Box<dyn Processor>)
    });
}
