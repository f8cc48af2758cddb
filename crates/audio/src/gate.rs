//! An energy gate: whether a stream carries sound above a level, decided per 20 ms window with
//! an attack and a hangover, configured in dBFS and milliseconds.

use thiserror::Error;

use crate::{AudioFormat, FRAME_DURATION_MS};

/// What an [`EnergyGate`] listens for, in the units users think in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateSettings {
    /// A window whose RMS is above this, in dBFS (0 is full scale), is loud. At most 0.
    pub threshold_dbfs: f64,
    /// Attack: loud windows for this long, in a row, open the gate. Rounded up to whole 20 ms
    /// windows; at least one.
    pub start_ms: u32,
    /// Hangover: quiet windows for this long, in a row, close it. Rounded up to whole 20 ms
    /// windows; at least one.
    pub stop_ms: u32,
}

/// Settings an [`EnergyGate`] cannot work with.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum GateSettingsError {
    /// The threshold is above full scale, or not a number.
    #[error("threshold_dbfs must be at most 0, not {0}")]
    Threshold(f64),
}

/// The gate opened or closed, and where the sound began or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateChange {
    /// Sound started: the gate opened. `at_sample` is where the first of the loud windows
    /// that opened it began.
    Started {
        /// Samples per channel since the stream began (the first sample pushed is 0).
        at_sample: u64,
    },
    /// Sound stopped: the gate closed. `at_sample` is where the first of the quiet windows
    /// that closed it began.
    Stopped {
        /// Samples per channel since the stream began.
        at_sample: u64,
    },
}

/// What the gate made of one finished window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateWindow {
    /// The window's RMS was above the threshold (and it was not flagged silent).
    pub loud: bool,
    /// The gate is open after this window.
    pub open: bool,
    /// The gate opened or closed with this window.
    pub change: Option<GateChange>,
    /// Samples per channel since the stream began, up to the end of this window.
    pub end_sample: u64,
}

/// An energy gate on one PCM16 stream: the stream is cut into 20 ms windows, a window is loud
/// when its RMS (over all channels' samples) is above `threshold_dbfs`, and the gate opens after
/// `start_ms` of loud windows in a row and closes after `stop_ms` of quiet windows in a row
/// (hysteresis, so a short click does not open it and a pause between words does not close it).
///
/// One gate per stream (per source of a call), fed in order. No allocation; a few operations per
/// sample. It is what `vad` and the transcribers' utterance cutter both listen with.
///
/// ```
/// use mediagate_audio::{AudioFormat, EnergyGate, GateChange, GateSettings};
///
/// let settings = GateSettings { threshold_dbfs: -35.0, start_ms: 60, stop_ms: 300 };
/// let mut gate = EnergyGate::new(AudioFormat::mono(16_000), settings)?;
/// let loud: Vec<u8> = (0..16_000i32)
///     .flat_map(|i| (if i % 2 == 0 { 8_000i16 } else { -8_000 }).to_le_bytes())
///     .collect();
/// let mut changes = Vec::new();
/// gate.push(&loud, false, |window| changes.extend(window.change));
/// assert_eq!(changes, [GateChange::Started { at_sample: 0 }]);
/// assert!(gate.is_open());
/// # Ok::<(), mediagate_audio::GateSettingsError>(())
/// ```
#[derive(Debug, Clone)]
pub struct EnergyGate {
    /// Mean square (full scale = 1.0) above which a window is loud.
    threshold: f64,
    /// Loud windows in a row that open the gate.
    start_windows: u32,
    /// Quiet windows in a row that close it.
    stop_windows: u32,
    /// Interleaved samples per window.
    window: usize,
    /// Channels per sample frame.
    channels: u64,
    /// Sum of squares of the current window.
    energy: f64,
    /// Interleaved samples in the current window.
    filled: usize,
    /// Part of the current window was flagged silent by its sender.
    silent: bool,
    open: bool,
    /// Windows in a row on the other side of the threshold from `open`.
    run: u32,
    /// Interleaved samples of finished windows.
    done: u64,
}

impl GateSettings {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), GateSettingsError> {
        if !(self.threshold_dbfs.is_finite() && self.threshold_dbfs <= 0.0) {
            return Err(GateSettingsError::Threshold(self.threshold_dbfs));
        }
        Ok(())
    }
}

/// Whole 20 ms windows in `ms`, rounded up, at least one.
pub const fn windows_in_ms(ms: u32) -> u32 {
    let windows = ms.div_ceil(FRAME_DURATION_MS);
    if windows == 0 { 1 } else { windows }
}

impl EnergyGate {
    /// A closed gate for a stream in `format`.
    pub fn new(format: AudioFormat, settings: GateSettings) -> Result<Self, GateSettingsError> {
        settings.validate()?;
        let channels = usize::from(format.channels());
        Ok(EnergyGate {
            // rms > 10^(dB/20)  ⇔  mean square > 10^(dB/10)
            threshold: 10f64.powf(settings.threshold_dbfs / 10.0),
            start_windows: windows_in_ms(settings.start_ms),
            stop_windows: windows_in_ms(settings.stop_ms),
            window: (format.frame_samples() * channels).max(1),
            channels: channels as u64,
            energy: 0.0,
            filled: 0,
            silent: false,
            open: false,
            run: 0,
            done: 0,
        })
    }

    /// Feeds PCM16 LE samples (interleaved; a trailing odd byte is ignored) and calls
    /// `on_window` for every window they finish. `silent`: the sender flagged these samples as
    /// silence; every window they touch counts as quiet, however loud.
    pub fn push(&mut self, pcm: &[u8], silent: bool, mut on_window: impl FnMut(GateWindow)) {
        self.silent |= silent;
        for bytes in pcm.chunks_exact(2) {
            if let Some(window) = self.push_sample(i16::from_le_bytes([bytes[0], bytes[1]])) {
                // The next window starts in these samples, unless they ended with this one.
                self.silent = silent;
                on_window(window);
            }
        }
        if self.filled == 0 {
            self.silent = false;
        }
    }

    /// Feeds one sample; the verdict on its window when it finishes one.
    pub fn push_sample(&mut self, sample: i16) -> Option<GateWindow> {
        let s = f64::from(sample) / 32_768.0;
        self.energy += s * s;
        self.filled += 1;
        if self.filled < self.window {
            return None;
        }
        let loud = !self.silent && self.energy / self.window as f64 > self.threshold;
        self.energy = 0.0;
        self.filled = 0;
        self.silent = false;
        self.done += self.window as u64;
        Some(self.decide(loud))
    }

    /// The hysteresis, once per window.
    fn decide(&mut self, loud: bool) -> GateWindow {
        self.run = if loud != self.open { self.run + 1 } else { 0 };
        let needed = if self.open {
            self.stop_windows
        } else {
            self.start_windows
        };
        let end_sample = self.done / self.channels;
        let mut change = None;
        if self.run >= needed {
            let at_sample = end_sample.saturating_sub(u64::from(self.run) * self.window_samples());
            self.open = loud;
            self.run = 0;
            change = Some(if loud {
                GateChange::Started { at_sample }
            } else {
                GateChange::Stopped { at_sample }
            });
        }
        GateWindow {
            loud,
            open: self.open,
            change,
            end_sample,
        }
    }

    /// Whether the gate is open: sound is going on.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Samples per channel in one window (320 at 16 kHz).
    pub fn window_samples(&self) -> u64 {
        self.window as u64 / self.channels
    }

    /// Loud windows in a row that open the gate (`start_ms` in windows).
    pub fn start_windows(&self) -> u32 {
        self.start_windows
    }

    /// Quiet windows in a row that close the gate (`stop_ms` in windows).
    pub fn stop_windows(&self) -> u32 {
        self.stop_windows
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    const SETTINGS: GateSettings = GateSettings {
        threshold_dbfs: -35.0,
        start_ms: 60,
        stop_ms: 300,
    };

    /// `windows` 20 ms windows at 16 kHz of a square wave at `level` (RMS = level).
    fn pcm(level: i16, windows: usize) -> Vec<u8> {
        (0..windows * 320)
            .flat_map(|i| (if i % 2 == 0 { level } else { -level }).to_le_bytes())
            .collect()
    }

    fn run(gate: &mut EnergyGate, pcm: &[u8], silent: bool) -> Vec<GateChange> {
        let mut changes = Vec::new();
        gate.push(pcm, silent, |w| changes.extend(w.change));
        changes
    }

    fn gate() -> EnergyGate {
        EnergyGate::new(AudioFormat::mono(16_000), SETTINGS).unwrap()
    }

    #[test]
    fn opens_after_the_attack_and_closes_after_the_hangover() {
        let mut gate = gate();
        assert_eq!((gate.start_windows(), gate.stop_windows()), (3, 15));
        assert!(run(&mut gate, &pcm(0, 10), false).is_empty());
        // Two loud windows are not enough; the third opens it.
        assert!(run(&mut gate, &pcm(8_000, 2), false).is_empty());
        assert_eq!(
            run(&mut gate, &pcm(8_000, 1), false),
            [GateChange::Started { at_sample: 3_200 }]
        );
        assert!(gate.is_open());
        // A pause shorter than the hangover keeps it open.
        assert!(run(&mut gate, &pcm(0, 14), false).is_empty());
        assert!(run(&mut gate, &pcm(8_000, 1), false).is_empty());
        assert_eq!(
            run(&mut gate, &pcm(0, 15), false),
            [GateChange::Stopped {
                at_sample: (10 + 3 + 14 + 1) * 320
            }]
        );
        assert!(!gate.is_open());
    }

    #[test]
    fn the_threshold_is_rms_in_dbfs() {
        // -35 dBFS is an RMS of 0.01778 of full scale: 582.7 in PCM16.
        let mut gate = gate();
        assert!(run(&mut gate, &pcm(580, 10), false).is_empty());
        assert_eq!(run(&mut gate, &pcm(586, 3), false).len(), 1);
    }

    #[test]
    fn a_click_does_not_open_it_and_windows_split_anywhere() {
        let mut gate = gate();
        let mut bytes = pcm(0, 4);
        bytes.extend(pcm(20_000, 2));
        bytes.extend(pcm(0, 4));
        assert!(run(&mut gate, &bytes, false).is_empty());
        // The same audio in odd chunks gives the same verdicts as in whole windows.
        let loud = pcm(8_000, 5);
        let (mut whole, mut split) = (gate.clone(), gate.clone());
        let mut a = Vec::new();
        whole.push(&loud, false, |w| a.push(w));
        let mut b = Vec::new();
        for chunk in loud.chunks(222) {
            split.push(chunk, false, |w| b.push(w));
        }
        assert_eq!(a, b);
        assert_eq!(a.len(), 5);
    }

    #[test]
    fn silent_flagged_audio_is_quiet_however_loud() {
        let mut gate = gate();
        assert!(run(&mut gate, &pcm(8_000, 10), true).is_empty());
        assert!(!gate.is_open());
        assert_eq!(run(&mut gate, &pcm(8_000, 3), false).len(), 1);
    }

    #[test]
    fn stereo_windows_span_both_channels() {
        let mut gate = EnergyGate::new(AudioFormat::new(16_000, 2).unwrap(), SETTINGS).unwrap();
        assert_eq!(gate.window_samples(), 320);
        let mut windows = Vec::new();
        gate.push(&pcm(8_000, 6), false, |w| windows.push(w));
        assert_eq!(windows.len(), 3);
        assert_eq!(windows[2].end_sample, 960);
        assert_eq!(
            windows[2].change,
            Some(GateChange::Started { at_sample: 0 })
        );
    }

    #[test]
    fn settings_round_up_to_windows_and_refuse_a_positive_threshold() {
        assert_eq!(
            (windows_in_ms(0), windows_in_ms(21), windows_in_ms(600)),
            (1, 2, 30)
        );
        let bad = GateSettings {
            threshold_dbfs: 3.0,
            ..SETTINGS
        };
        assert_eq!(bad.validate(), Err(GateSettingsError::Threshold(3.0)));
        assert!(EnergyGate::new(AudioFormat::mono(16_000), bad).is_err());
        let nan = GateSettings {
            threshold_dbfs: f64::NAN,
            ..SETTINGS
        };
        assert!(nan.validate().is_err());
    }
}
