//! How long the call's media operations take, and how a recognition ends, from the request and
//! the caller's scripted key presses. Pure functions of their inputs.

use std::time::Duration;

use serde_json::Value;

use super::super::events::{ResultInfo, results, tone_name};
use crate::DtmfEvent;

/// How long the fake takes to play a file: it does not fetch it.
const FILE_PLAY: Duration = Duration::from_secs(1);
/// How long the fake takes to say one character of text (about 15 a second, as a voice does).
const TEXT_PLAY_PER_CHAR: Duration = Duration::from_millis(65);
/// The shortest text prompt.
const MIN_TEXT_PLAY: Duration = Duration::from_millis(500);

/// How long playing `sources` takes, as the fake estimates it (it fetches nothing): a second per
/// file, 65 ms per character of text (at least half a second), SSML by its text outside tags.
pub(crate) fn play_length(sources: &[Value]) -> Duration {
    sources
        .iter()
        .map(|source| {
            let chars = match source["kind"]
                .as_str()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("text") => source["text"]["text"]
                    .as_str()
                    .map_or(0, |t| t.chars().count()),
                Some("ssml") => source["ssml"]["ssmlText"].as_str().map_or(0, text_chars),
                _ => return FILE_PLAY,
            };
            (TEXT_PLAY_PER_CHAR * chars as u32).max(MIN_TEXT_PLAY)
        })
        .sum()
}

/// Characters of SSML outside its tags.
fn text_chars(ssml: &str) -> usize {
    let mut inside = false;
    ssml.chars()
        .filter(|&c| {
            match c {
                '<' => inside = true,
                '>' => {
                    inside = false;
                    return false;
                }
                _ => {}
            }
            !inside
        })
        .count()
}

/// A recognize request's DTMF options, with the service's defaults.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RecognizeParams {
    /// `maxTonesToCollect` (default 1).
    pub(crate) max_tones: usize,
    /// `stopTones`, by their REST names.
    pub(crate) stop_tones: Vec<String>,
    /// `initialSilenceTimeoutInSeconds` (default 5), counted from the end of the prompt.
    pub(crate) initial_silence: Duration,
    /// `interToneTimeoutInSeconds` (default 2).
    pub(crate) inter_tone: Duration,
    /// How long the prompt plays.
    pub(crate) prompt: Duration,
}

impl RecognizeParams {
    pub(crate) fn from_body(body: &Value, prompt: Duration) -> Self {
        let options = &body["recognizeOptions"];
        let dtmf = &options["dtmfOptions"];
        let seconds = |v: &Value, default: u64| Duration::from_secs(v.as_u64().unwrap_or(default));
        RecognizeParams {
            max_tones: dtmf["maxTonesToCollect"].as_u64().unwrap_or(1).max(1) as usize,
            stop_tones: dtmf["stopTones"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|t| t.as_str().map(str::to_ascii_lowercase))
                        .collect()
                })
                .unwrap_or_default(),
            initial_silence: seconds(&options["initialSilenceTimeoutInSeconds"], 5),
            inter_tone: seconds(&dtmf["interToneTimeoutInSeconds"], 2),
            prompt,
        }
    }
}

/// How a recognition ends.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Recognized {
    /// Tones (REST names; the stop tone is not among them) and why collection ended.
    Tones(Vec<&'static str>, ResultInfo),
    /// Nothing was pressed in time.
    Silence,
}

/// When and how a DTMF recognition started at `now` ends, given the caller's key presses: it
/// collects the presses from `now` on, until `max_tones`, a stop tone, or a gap longer than the
/// inter-tone timeout; nothing before the initial silence timeout is a failure.
pub(crate) fn recognize_dtmf(
    presses: &[DtmfEvent],
    now: Duration,
    params: &RecognizeParams,
) -> (Duration, Recognized) {
    let silence_deadline = now + params.prompt + params.initial_silence;
    let mut tones = Vec::new();
    let mut last = None;
    for press in presses.iter().filter(|p| p.at >= now) {
        let deadline = last.map_or(silence_deadline, |l| l + params.inter_tone);
        if press.at > deadline {
            break;
        }
        let Some(tone) = tone_name(&press.tone) else {
            continue;
        };
        if params.stop_tones.iter().any(|s| s == tone) {
            return (press.at, Recognized::Tones(tones, results::STOP_TONE));
        }
        tones.push(tone);
        last = Some(press.at);
        if tones.len() >= params.max_tones {
            return (press.at, Recognized::Tones(tones, results::MAX_DIGITS));
        }
    }
    match last {
        None => (silence_deadline, Recognized::Silence),
        Some(last) => (
            last + params.inter_tone,
            Recognized::Tones(tones, results::INTER_DIGIT_TIMEOUT),
        ),
    }
}
