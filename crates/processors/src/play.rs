//! `play`: a WAV file into the call, at call start and/or on a DTMF key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mediagate_audio::{Clip, wav};
use mediagate_pipeline::{Context, Event, Input, PlayError, Processor, ProcessorError};
use serde::Deserialize;

use crate::BuildError;
use crate::settings::{invalid, parse};

/// The registry name.
const NAME: &str = "play";

/// `[processor.play]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlaySettings {
    /// The WAV file (mono; 8-, 16-, 24- or 32-bit integer or 32-bit float samples; at most
    /// 64 MiB). Required.
    pub file: Option<PathBuf>,
    /// Play it when the call starts. Default true.
    pub at_start: bool,
    /// Play it when the caller presses this key (`"1"`, `"#"`…). Default: never.
    pub on_dtmf: Option<String>,
}

impl Default for PlaySettings {
    fn default() -> Self {
        PlaySettings {
            file: None,
            at_start: true,
            on_dtmf: None,
        }
    }
}

/// The largest WAV file `play` reads: 64 MiB (35 minutes of 16 kHz PCM16 mono). Prompts are
/// seconds long; a larger file is refused at start-up, not read.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Reads and decodes a WAV file for playing: mono, converted to PCM16; the error says what is
/// wrong with which file.
pub fn load_clip(path: &Path) -> Result<Clip, String> {
    let fail = |reason: &dyn std::fmt::Display| format!("{}: {reason}", path.display());
    let clip = wav::read(path, MAX_FILE_BYTES, wav::Accept::AnyToPcm16).map_err(|e| fail(&e))?;
    if clip.format.channels() != 1 {
        return Err(fail(&format_args!(
            "{} channels; only mono WAV files are played",
            clip.format.channels()
        )));
    }
    Ok(clip)
}

/// A clip shared by every call of a route, with its renderings at the call rates it was
/// played at: each rate is resampled once (on the first call at that rate), not per
/// playback. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SharedClip {
    clip: Clip,
    rendered: Renderings,
}

/// (call rate, the clip's mono samples at that rate), at most [`MAX_RENDERINGS`], shared by
/// the clones of a [`SharedClip`].
type Renderings = Arc<Mutex<Vec<(u32, Arc<[i16]>)>>>;

/// Call rates a [`SharedClip`] keeps a rendering for (the gateway accepts six).
const MAX_RENDERINGS: usize = 8;

impl SharedClip {
    /// A clip, not rendered yet.
    pub fn new(clip: Clip) -> Self {
        SharedClip {
            clip,
            rendered: Arc::default(),
        }
    }

    /// The clip in its own format.
    pub fn clip(&self) -> &Clip {
        &self.clip
    }

    /// Queues the clip, whole, at the call's rate ([`Context::play_clip`]'s result, made once
    /// per rate and shared).
    pub fn play(&self, ctx: &mut Context) -> Result<(), PlayError> {
        if self.clip.format.channels() != 1 {
            return ctx.play_clip(&self.clip);
        }
        let rate = ctx.call().format.sample_rate_hz();
        let known = self
            .rendered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(r, _)| *r == rate)
            .map(|(_, samples)| Arc::clone(samples));
        let samples = match known {
            Some(samples) => samples,
            None => {
                // Made outside the lock: another call at another rate need not wait.
                let samples: Arc<[i16]> = self.clip.at_rate(rate)?.samples().collect();
                let mut rendered = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
                if rendered.len() < MAX_RENDERINGS && !rendered.iter().any(|(r, _)| *r == rate) {
                    rendered.push((rate, Arc::clone(&samples)));
                }
                samples
            }
        };
        ctx.play(&samples)
    }
}

/// Plays a WAV file into the call, resampled to the call's rate ([`Context::play_clip`]): so a 24 kHz
/// prompt plays correctly into a 16 kHz call, whole.
///
/// The file is read and decoded once, when the route's factory is built at start-up (a
/// factory clones this processor per call), and resampled once per call rate
/// ([`SharedClip`]): the samples are shared by reference count, never read or resampled per
/// call or per playback. Receives frames but ignores them.
#[derive(Debug, Clone)]
pub struct Play {
    clip: SharedClip,
    at_start: bool,
    on_dtmf: Option<String>,
    /// A full queue or a call without outbound audio was reported once already.
    warned: bool,
}

impl Play {
    /// Loads the file; fails naming it if it cannot be read or is not mono audio.
    pub fn new(settings: PlaySettings) -> Result<Self, BuildError> {
        let file = settings
            .file
            .ok_or_else(|| invalid(NAME, "`file` is required"))?;
        let clip = load_clip(&file).map_err(|reason| invalid(NAME, reason))?;
        Ok(Play::with_clip(clip, settings.at_start, settings.on_dtmf))
    }

    /// Plays an already decoded clip (share one across calls by cloning it).
    pub fn with_clip(clip: Clip, at_start: bool, on_dtmf: Option<String>) -> Self {
        Play {
            clip: SharedClip::new(clip),
            at_start,
            on_dtmf,
            warned: false,
        }
    }

    /// Builds from the config's settings: the registry's constructor.
    pub fn from_settings(value: &serde_json::Value) -> Result<Self, BuildError> {
        Play::new(parse(NAME, value)?)
    }

    fn play(&mut self, ctx: &mut Context) -> Result<(), ProcessorError> {
        let played = self.clip.play(ctx);
        crate::settings::skip_unplayable(played, &mut self.warned, ctx, "playback")
    }
}

impl Processor for Play {
    fn input(&self) -> Input {
        Input::events_only()
    }

    fn on_event(&mut self, event: &Event, ctx: &mut Context) -> Result<(), ProcessorError> {
        match event {
            Event::CallStarted(_) if self.at_start => self.play(ctx),
            Event::Dtmf(dtmf) if self.on_dtmf.as_deref() == Some(&*dtmf.tone) => self.play(ctx),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn write(path: &Path, spec: hound::WavSpec, samples: &[i32]) {
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            match spec.bits_per_sample {
                16 => w.write_sample(s as i16).unwrap(),
                _ => w.write_sample(s).unwrap(),
            }
        }
        w.finalize().unwrap();
    }

    fn spec(channels: u16, bits: u16) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: 8_000,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        }
    }

    #[test]
    fn missing_file_and_stereo_files_are_refused_by_name() {
        let err = Play::from_settings(&serde_json::Value::Null).unwrap_err();
        assert!(err.to_string().contains("`file` is required"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stereo.wav");
        write(&path, spec(2, 16), &[1, 2, 3, 4]);
        let err = Play::from_settings(&serde_json::json!({ "file": path })).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("stereo.wav") && text.contains("mono"),
            "{text}"
        );

        let err =
            Play::from_settings(&serde_json::json!({ "file": "/nonexistent.wav" })).unwrap_err();
        assert!(err.to_string().contains("/nonexistent.wav"), "{err}");
    }

    #[test]
    fn samples_become_pcm16() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        write(&path, spec(1, 24), &[0x12_3456, -0x40_0000, 5]);
        let clip = load_clip(&path).unwrap();
        assert_eq!(clip.format, mediagate_audio::AudioFormat::mono(8_000));
        assert_eq!(clip.samples().collect::<Vec<_>>(), [0x1234, -0x4000, 0]);

        write(&path, spec(1, 8), &[64, -128]);
        let clip = load_clip(&path).unwrap();
        assert_eq!(&clip.pcm[..], &[0, 64, 0, 128]); // 0x4000, -0x8000
    }
}
