//! `say`: spoken prompts, text to speech with [espeak-ng](https://github.com/espeak-ng/espeak-ng)
//! into the call: a greeting when the call starts, a prompt per DTMF key, cut when the caller
//! speaks over it.
//!
//! # What it needs
//!
//! The `espeak-ng` program (Debian and Ubuntu: `apt-get install espeak-ng`). It runs once per
//! prompt and process, when the gateway starts: every prompt is synthesized then (a missing
//! program or an unknown voice stops start-up with an error saying so), kept in memory, and
//! shared by every call; a call only resamples it to its own rate (espeak-ng speaks at
//! 22,050 Hz) and plays it through the call's paced outbound queue. The call must be
//! bidirectional (`enableBidirectional`), or there is nowhere to play (warned once per call).
//!
//! # Configuration
//!
//! ```toml
//! [pipeline]
//! processors = ["wav", "transcript", "dtmf", "vad", "say"]
//!
//! [pipeline.settings.say]
//! greeting = "Welcome to Contoso. Press one for sales, two for support."
//! voice = "en-us"    # default; `espeak-ng --voices` lists them (`de`, `fr`, `en+f3`...)
//! speed_wpm = 160    # default; words per minute, 80..=450
//! barge_in = true    # default; caller speech (from `vad`) or a key press cuts a prompt
//! # espeak_ng = "/usr/local/bin/espeak-ng"   # default: `espeak-ng` on PATH
//!
//! [pipeline.settings.say.on_dtmf]
//! "1" = "Connecting you to sales."
//! "2" = "Connecting you to support."
//! ```
//!
//! At least one of `greeting` and `on_dtmf` is required. Keys are `0`-`9`, `*`, `#` and
//! `A`-`D`; texts are plain text (no SSML), at most 4,096 bytes each. Prompts play one after
//! the other, after any audio already queued by other processors.
//!
//! # Barge-in
//!
//! `say` does not listen to the audio itself: the `vad` processor does, and must be in the
//! same pipeline (anywhere in the list: events reach every processor). Note that `vad` cuts
//! *all* queued outbound audio when speech starts, prompts included, unless its own
//! `barge_in` is off. So:
//!
//! - defaults (`vad` and `say` both `barge_in = true`): caller speech cuts a prompt (and any
//!   other outbound audio) with StopAudio;
//! - `[pipeline.settings.vad] barge_in = false`: `say` decides; caller speech cuts a prompt
//!   while one is playing, and nothing else;
//! - both off: prompts always play to the end.
//!
//! With `barge_in`, a key that has a prompt also cuts the prompt playing before its own
//! starts, as phone menus do.
//!
//! A call's `session.json` lists under `processors[].report` what `say` did: `prompts`
//! (queued), `barge_ins` (prompts it cut itself; cuts by `vad` are not counted) and `skipped`
//! (no outbound audio, or the outbound queue full).
//!
//! # From code
//!
//! A processor of your own (a bot) can speak any text with [`Voice::synthesize`] (or the
//! shorthand [`synthesize`]) and play the [`Clip`] it returns with
//! [`Context::play_clip`](mediagate_pipeline::Context::play_clip) (from a callback), or from a task holding a
//! [`Playback`](mediagate_pipeline::processor::Playback) with `play_audio(&clip.pcm,
//! clip.format)` then `end_stream()`. Synthesis **blocks** for a process
//! run (tens of milliseconds per sentence): call it from an
//! [`Execution::Blocking`](mediagate_pipeline::Execution::Blocking) processor or in
//! `tokio::task::spawn_blocking`, never on an async thread.
//!
//! ```no_run
//! use mediagate_speech::say::Voice;
//!
//! let clip = Voice::new("en-us", 160).synthesize("Your order has shipped.")?;
//! assert!(clip.duration().as_secs_f64() > 0.5);
//! # Ok::<(), mediagate_speech::say::SayError>(())
//! ```

mod espeak;

use std::collections::BTreeMap;
use std::path::PathBuf;

use mediagate_pipeline::{Context, Event, Input, Processor, ProcessorError};
use mediagate_pipeline::{Prototype, Registry};
use mediagate_processors::settings::{invalid, parse, skip_unplayable};
use mediagate_processors::{BuildError, SharedClip};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use espeak::{
    DEFAULT_PROGRAM, DEFAULT_SPEED_WPM, DEFAULT_VOICE, MAX_TEXT_BYTES, SPEED_WPM_RANGE, SayError,
    Voice, synthesize,
};

/// The registry name.
const NAME: &str = "say";
/// The DTMF keys a prompt can be bound to.
const KEYS: &str = "0123456789*#ABCD";

/// Adds `say` to `registry`, and gives the gateway espeak-ng's default voice
/// ([`Registry::set_speaker`]: the admin API speaks text into calls with it).
pub(crate) fn register(registry: &mut Registry) {
    registry.set_speaker(std::sync::Arc::new(|text: &str| {
        Voice::new(DEFAULT_VOICE, DEFAULT_SPEED_WPM)
            .synthesize(text)
            .map_err(|e| e.to_string())
    }));
    // Every prompt is synthesized here, once per route; each call's `say` shares the clips.
    registry.register(NAME, |settings| {
        Ok(Prototype(Say::from_settings(settings.value())?))
    });
}

/// `[pipeline.settings.say]`: what to say, when, and in which voice.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SaySettings {
    /// Said when the call starts. Default: nothing.
    pub greeting: Option<String>,
    /// Said when the caller presses a key: key (`"1"`, `"#"`…) → text. Default: none.
    pub on_dtmf: BTreeMap<String, String>,
    /// The espeak-ng voice. Default `en-us`.
    pub voice: String,
    /// Words per minute, 80..=450. Default 160.
    pub speed_wpm: u32,
    /// Caller speech (an [`Event::Speech`] from `vad`) or a key with a prompt cuts the prompt
    /// playing. Default true.
    pub barge_in: bool,
    /// The espeak-ng program: a path, or a name on `PATH`. Default `espeak-ng`.
    pub espeak_ng: PathBuf,
}

impl Default for SaySettings {
    fn default() -> Self {
        SaySettings {
            greeting: None,
            on_dtmf: BTreeMap::new(),
            voice: DEFAULT_VOICE.to_owned(),
            speed_wpm: DEFAULT_SPEED_WPM,
            barge_in: true,
            espeak_ng: PathBuf::from(DEFAULT_PROGRAM),
        }
    }
}

/// What `say` did in a call (its `report` in session.json).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
struct Counters {
    /// Prompts queued for playing.
    prompts: u64,
    /// Prompts `say` cut (caller speech or a key); cuts by `vad` are `vad`'s.
    barge_ins: u64,
    /// Prompts that could not be queued (no outbound audio, a full queue).
    skipped: u64,
}

/// Speaks configured prompts into the call: a greeting at call start, a text per DTMF key,
/// with barge-in on caller speech. See the [module documentation](self).
///
/// Every prompt is synthesized when the route's factory is built, once (each call's `say` is
/// a clone sharing the audio, and runs nothing). Events only, inline: each callback queues
/// or cuts audio and returns.
#[derive(Debug, Clone)]
pub struct Say {
    greeting: Option<SharedClip>,
    /// Keys in upper case.
    on_dtmf: BTreeMap<String, SharedClip>,
    barge_in: bool,
    /// When the last prompt queued will have left the queue, unless cut.
    prompt_ends: Option<Instant>,
    counters: Counters,
    /// A prompt that could not be queued was reported already.
    warned: bool,
}

impl Say {
    /// Checks the settings and synthesizes every prompt. **Blocking** (espeak-ng runs once per
    /// prompt): the registry does it once per route, and each call clones the result. Fails
    /// naming the prompt, or saying how to install espeak-ng.
    pub fn new(settings: SaySettings) -> Result<Self, BuildError> {
        let voice = Voice {
            name: settings.voice,
            speed_wpm: settings.speed_wpm,
            program: settings.espeak_ng,
        };
        voice.check().map_err(|reason| invalid(NAME, reason))?;
        if settings.greeting.is_none() && settings.on_dtmf.is_empty() {
            return Err(invalid(
                NAME,
                "nothing to say: set `greeting` and/or `on_dtmf`",
            ));
        }
        // Everything is checked before anything runs.
        let mut prompts = Vec::new();
        if let Some(text) = &settings.greeting {
            prompts.push(("greeting".to_owned(), None, text));
        }
        for (key, text) in &settings.on_dtmf {
            let upper = key.to_ascii_uppercase();
            if upper.len() != 1 || !KEYS.contains(&*upper) {
                return Err(invalid(
                    NAME,
                    format!("on_dtmf: `{key}` is not a key (0-9, *, #, A-D)"),
                ));
            }
            if prompts
                .iter()
                .any(|(_, k, _)| k.as_deref() == Some(&*upper))
            {
                return Err(invalid(NAME, format!("on_dtmf: key `{upper}` given twice")));
            }
            prompts.push((format!("on_dtmf.\"{key}\""), Some(upper), text));
        }
        for (what, _, text) in &prompts {
            espeak::check_text(text)
                .map_err(|reason| invalid(NAME, format!("{what}: {reason}")))?;
        }
        let mut greeting = None;
        let mut on_dtmf = BTreeMap::new();
        for (what, key, text) in prompts {
            let clip = voice.synthesize(text).map_err(|e| match e {
                SayError::NotInstalled { .. } => invalid(NAME, e.to_string()),
                e => invalid(NAME, format!("{what}: {e}")),
            })?;
            match key {
                Some(key) => {
                    on_dtmf.insert(key, SharedClip::new(clip));
                }
                None => greeting = Some(SharedClip::new(clip)),
            }
        }
        Ok(Say {
            greeting,
            on_dtmf,
            barge_in: settings.barge_in,
            prompt_ends: None,
            counters: Counters::default(),
            warned: false,
        })
    }

    /// Builds from the config's settings: the registry's constructor.
    pub fn from_settings(value: &serde_json::Value) -> Result<Self, BuildError> {
        Say::new(parse(NAME, value)?)
    }

    /// Whether a prompt of ours is still queued: the queue holds audio and our last prompt's
    /// end has not gone out yet.
    fn prompt_playing(&self, ctx: &Context) -> bool {
        self.prompt_ends.is_some_and(|end| Instant::now() < end) && !ctx.queued_playback().is_zero()
    }

    /// Cuts the prompt playing, if any.
    fn cut(&mut self, ctx: &mut Context) {
        if self.prompt_playing(ctx) && ctx.stop_audio().is_some() {
            self.counters.barge_ins += 1;
            self.prompt_ends = None;
        }
    }

    fn play_greeting(&mut self, ctx: &mut Context) -> Result<(), ProcessorError> {
        let Some(clip) = self.greeting.clone() else {
            return Ok(());
        };
        self.play(&clip, ctx)
    }

    fn play(&mut self, clip: &SharedClip, ctx: &mut Context) -> Result<(), ProcessorError> {
        let played = clip.play(ctx);
        if played.is_ok() {
            self.counters.prompts += 1;
            // Our audio is the last queued: it has gone out when the queue has.
            self.prompt_ends = Some(Instant::now() + ctx.queued_playback());
        } else {
            self.counters.skipped += 1;
        }
        skip_unplayable(played, &mut self.warned, ctx, "prompt")
    }
}

impl Processor for Say {
    fn input(&self) -> Input {
        Input::events_only()
    }

    fn on_event(&mut self, event: &Event, ctx: &mut Context) -> Result<(), ProcessorError> {
        match event {
            Event::CallStarted(_) => self.play_greeting(ctx),
            Event::Dtmf(dtmf) => {
                let Some(clip) = self.on_dtmf.get(&dtmf.tone.to_ascii_uppercase()).cloned() else {
                    return Ok(());
                };
                if self.barge_in {
                    self.cut(ctx);
                }
                self.play(&clip, ctx)
            }
            Event::Speech { active: true, .. } if self.barge_in => {
                self.cut(ctx);
                Ok(())
            }
            Event::BargeIn(_) if ctx.queued_playback().is_zero() => {
                // Someone cut the call's audio, ours with it.
                self.prompt_ends = None;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn report(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self.counters).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    fn build(settings: serde_json::Value) -> Result<Say, BuildError> {
        Say::from_settings(&settings)
    }

    fn reason(settings: serde_json::Value) -> String {
        match build(settings.clone()) {
            Err(BuildError::Settings { name, reason }) => {
                assert_eq!(name, "say");
                reason
            }
            other => panic!("{settings} built: {other:?}"),
        }
    }

    #[test]
    fn settings_default_to_an_american_voice_that_barges_in() {
        let settings: SaySettings = parse(NAME, &serde_json::json!({ "greeting": "Hi" })).unwrap();
        assert_eq!(settings.voice, "en-us");
        assert_eq!(settings.speed_wpm, 160);
        assert!(settings.barge_in);
        assert_eq!(settings.espeak_ng, PathBuf::from("espeak-ng"));
        assert!(settings.on_dtmf.is_empty());
    }

    #[test]
    fn bad_settings_are_refused_before_anything_runs() {
        // A missing program would fail differently: none of these gets that far.
        let never = "/nonexistent/espeak-ng";
        let too_long = "x".repeat(MAX_TEXT_BYTES + 1);
        for (settings, expected) in [
            (serde_json::Value::Null, "nothing to say"),
            (
                serde_json::json!({ "greting": "Hi" }),
                "unknown field `greting`",
            ),
            (
                serde_json::json!({ "greeting": "  ", "espeak_ng": never }),
                "greeting: the text to say is empty",
            ),
            (
                serde_json::json!({ "greeting": "Hi", "speed_wpm": 1000 }),
                "speed_wpm 1000",
            ),
            (
                serde_json::json!({ "greeting": "Hi", "voice": "-v" }),
                "voice `-v`",
            ),
            (
                serde_json::json!({ "on_dtmf": { "one": "Sales." }, "espeak_ng": never }),
                "`one` is not a key",
            ),
            (
                serde_json::json!({ "on_dtmf": { "a": "A.", "A": "A." } }),
                "given twice",
            ),
            (serde_json::json!({ "on_dtmf": { "1": 1 } }), "invalid type"),
            (
                serde_json::json!({ "greeting": too_long, "espeak_ng": never }),
                "at most 4096",
            ),
        ] {
            let reason = reason(settings.clone());
            assert!(reason.contains(expected), "{settings}: {reason}");
        }
    }

    #[test]
    fn a_missing_espeak_ng_stops_start_up_saying_how_to_install_it() {
        let reason = reason(serde_json::json!({
            "greeting": "Hello.",
            "espeak_ng": "/nonexistent/espeak-ng",
        }));
        assert!(
            reason.contains("apt-get install espeak-ng") && reason.contains("/nonexistent"),
            "{reason}"
        );
    }
}
