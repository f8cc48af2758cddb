//! What the user scripts besides audio: DTMF specs (`TONE@TIME`) and the transcript script (JSON).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use mediagate_protocol::{ResultStatus, TranscriptionData, TranscriptionMetadata, Word};
use serde::Deserialize;

use crate::EmulatorError;

/// 100 ns ticks per second, the unit of transcription offsets and durations on the wire.
const TICKS_PER_SECOND: f64 = 10_000_000.0;
/// Longest time a script or spec may name (a day): beyond it a number is a typo, not a call.
const MAX_SECONDS: f64 = 86_400.0;

/// A DTMF tone sent on the media transport at a time from the start of the stream.
///
/// Parses from `TONE@TIME`: a tone `0`–`9`, `*`, `#` or `A`–`D`, and a time in seconds (`2`,
/// `2.5s`) or milliseconds (`1500ms`).
///
/// ```
/// use std::time::Duration;
/// use mediagate_emulator::DtmfEvent;
///
/// let event: DtmfEvent = "#@1500ms".parse()?;
/// assert_eq!(event.tone, "#");
/// assert_eq!(event.at, Duration::from_millis(1500));
/// # Ok::<(), mediagate_emulator::EmulatorError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfEvent {
    /// The tone, as sent in `dtmfData.data`.
    pub tone: String,
    /// When it is sent, from the start of the stream.
    pub at: Duration,
}

impl FromStr for DtmfEvent {
    type Err = EmulatorError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| EmulatorError::BadDtmfSpec {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let (tone, time) = spec.trim().split_once('@').ok_or_else(|| bad("no `@`"))?;
        let mut chars = tone.chars();
        let tone = match (chars.next(), chars.next()) {
            (Some(c @ ('0'..='9' | '*' | '#' | 'A'..='D')), None) => c,
            (Some(c @ 'a'..='d'), None) => c.to_ascii_uppercase(),
            _ => return Err(bad("the tone must be one of 0-9, *, #, A-D")),
        };
        let at = parse_duration(time)
            .ok_or_else(|| bad("the time must be a non-negative number of seconds or `ms`"))?;
        Ok(DtmfEvent {
            tone: tone.to_string(),
            at,
        })
    }
}

/// Parses a time as the command line writes it: seconds (`2.5s`, or a bare `2.5`) or
/// milliseconds (`1500ms`), non-negative and at most a day. `None` when it is not one.
///
/// ```
/// use std::time::Duration;
///
/// assert_eq!(mediagate_emulator::parse_duration("2s"), Some(Duration::from_secs(2)));
/// assert_eq!(mediagate_emulator::parse_duration("250ms"), Some(Duration::from_millis(250)));
/// assert_eq!(mediagate_emulator::parse_duration("-1"), None);
/// ```
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|s| (0.0..=MAX_SECONDS).contains(s))
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// A transcript script, validated: the transcription transport's metadata and its results, each
/// with the time it is sent.
#[derive(Debug, Clone)]
pub(crate) struct TranscriptScript {
    /// The first message of the transport (without its subscription id).
    pub(crate) metadata: TranscriptionMetadata,
    /// Results in sending order (stable-sorted by time).
    pub(crate) results: Vec<(Duration, TranscriptionData)>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScriptFile {
    locale: String,
    #[serde(default)]
    call_connection_id: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    speech_recognition_model_endpoint_id: Option<String>,
    results: Vec<ScriptResult>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptResult {
    at: f64,
    #[serde(default)]
    participant: Option<String>,
    text: String,
    status: ScriptStatus,
    #[serde(default)]
    confidence: Option<f64>,
    offset: f64,
    duration: f64,
    #[serde(default)]
    words: Vec<ScriptWord>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptWord {
    text: String,
    offset: f64,
    duration: f64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
enum ScriptStatus {
    Final,
    Intermediate,
}

impl TranscriptScript {
    /// Reads and validates a script file (blocking I/O).
    pub(crate) fn load(path: &Path) -> Result<Self, EmulatorError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| EmulatorError::TranscriptRead {
                path: path.to_path_buf(),
                source,
            })?;
        Self::parse(&text).map_err(|reason| EmulatorError::BadTranscript {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses and validates a script's text; the error says what is wrong and where.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let file: ScriptFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut results = file
            .results
            .into_iter()
            .enumerate()
            .map(|(i, r)| result(i, r))
            .collect::<Result<Vec<_>, String>>()?;
        results.sort_by_key(|(at, _)| *at);
        Ok(TranscriptScript {
            metadata: TranscriptionMetadata {
                subscription_id: None,
                locale: Some(file.locale),
                call_connection_id: file.call_connection_id,
                correlation_id: file.correlation_id,
                speech_recognition_model_endpoint_id: file.speech_recognition_model_endpoint_id,
            },
            results,
        })
    }
}

fn result(index: usize, r: ScriptResult) -> Result<(Duration, TranscriptionData), String> {
    let field = |name: &str| format!("results[{index}].{name}");
    let at = seconds(&field("at"), r.at)?;
    let at = Duration::try_from_secs_f64(at).map_err(|e| format!("{}: {e}", field("at")))?;
    if let Some(c) = r.confidence {
        if !(0.0..=1.0).contains(&c) {
            return Err(format!("{}: {c} is not within 0..1", field("confidence")));
        }
    }
    let words = r
        .words
        .into_iter()
        .enumerate()
        .map(|(w, word)| {
            let field = |name: &str| format!("results[{index}].words[{w}].{name}");
            Ok(Word {
                text: word.text,
                offset_ticks: ticks(&field("offset"), word.offset)?,
                duration_ticks: ticks(&field("duration"), word.duration)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let data = TranscriptionData {
        text: r.text,
        format: Some("display".to_owned()),
        confidence: r.confidence,
        offset_ticks: ticks(&field("offset"), r.offset)?,
        duration_ticks: ticks(&field("duration"), r.duration)?,
        words,
        participant_raw_id: r.participant,
        result_status: match r.status {
            ScriptStatus::Final => ResultStatus::Final,
            ScriptStatus::Intermediate => ResultStatus::Intermediate,
        },
    };
    Ok((at, data))
}

/// Checks a time in seconds: finite, non-negative, at most a day.
fn seconds(field: &str, value: f64) -> Result<f64, String> {
    if (0.0..=MAX_SECONDS).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{field}: {value} is not a number of seconds between 0 and {MAX_SECONDS}"
        ))
    }
}

/// Seconds to 100 ns ticks, rounded to the nearest tick.
fn ticks(field: &str, value: f64) -> Result<i64, String> {
    // In range by the check above: at most 8.64e11 ticks, far inside i64.
    seconds(field, value).map(|s| (s * TICKS_PER_SECOND).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_specs_accept_tones_and_time_units() {
        let parse = |s: &str| s.parse::<DtmfEvent>().unwrap();
        assert_eq!(parse("1@2.0s").at, Duration::from_secs(2));
        assert_eq!(parse("#@1500ms").at, Duration::from_millis(1500));
        assert_eq!(parse("5@3").at, Duration::from_secs(3));
        assert_eq!(parse("*@0").tone, "*");
        assert_eq!(parse("d@0.25s").tone, "D");
        assert_eq!(parse("A@10ms").at, Duration::from_millis(10));
    }

    #[test]
    fn dtmf_specs_reject_bad_tones_and_times() {
        for spec in [
            "", "5", "@1s", "E@1s", "12@1s", "5@", "5@-1s", "5@abc", "5@1h", "5@NaN", "5@inf",
            "5@1e9",
        ] {
            let err = spec.parse::<DtmfEvent>().unwrap_err();
            assert!(
                matches!(&err, EmulatorError::BadDtmfSpec { spec: s, .. } if s == spec),
                "{spec}: {err}"
            );
        }
    }

    #[test]
    fn script_converts_seconds_to_ticks_and_sorts_by_time() {
        let script = TranscriptScript::parse(
            r#"{"locale":"en-US","callConnectionId":"call-1","results":[
                {"at":2.0,"text":"second","status":"Final","offset":1.5,"duration":0.25,
                 "words":[{"text":"second","offset":1.5,"duration":0.25}]},
                {"at":1.0,"participant":"8:acs:x","text":"first","status":"Intermediate",
                 "confidence":0.5,"offset":0.0,"duration":0.5}]}"#,
        )
        .unwrap();
        assert_eq!(script.metadata.locale.as_deref(), Some("en-US"));
        assert_eq!(
            script.metadata.call_connection_id.as_deref(),
            Some("call-1")
        );
        let [(at1, first), (at2, second)] = script.results.as_slice() else {
            panic!("two results expected");
        };
        assert_eq!(
            (*at1, *at2),
            (Duration::from_secs(1), Duration::from_secs(2))
        );
        assert_eq!(first.text, "first");
        assert_eq!(first.result_status, ResultStatus::Intermediate);
        assert_eq!(first.participant_raw_id.as_deref(), Some("8:acs:x"));
        assert_eq!(second.offset_ticks, 15_000_000);
        assert_eq!(second.duration_ticks, 2_500_000);
        assert_eq!(second.words[0].offset_ticks, 15_000_000);
    }

    #[test]
    fn script_errors_say_what_is_wrong() {
        let cases = [
            (r#"{"results":[]}"#, "locale"),
            (
                r#"{"locale":"en-US","results":[{"at":-1,"text":"x","status":"Final","offset":0,"duration":0}]}"#,
                "results[0].at",
            ),
            (
                r#"{"locale":"en-US","results":[{"at":1,"text":"x","status":"Done","offset":0,"duration":0}]}"#,
                "Done",
            ),
            (
                r#"{"locale":"en-US","results":[{"at":1,"text":"x","status":"Final","offest":0,"duration":0}]}"#,
                "offest",
            ),
            (
                r#"{"locale":"en-US","results":[{"at":1,"text":"x","status":"Final","offset":0,"duration":0,"confidence":2}]}"#,
                "results[0].confidence",
            ),
        ];
        for (text, expected) in cases {
            let err = TranscriptScript::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
