//! What the gateway wrote for each call: its session.json (has the call ended, is a processor
//! still working, was it transcribed live) and its transcript.jsonl (the engine's partials and
//! finals). Read from the call folders under the gateway's recordings dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mediagate_protocol::Timestamp;
use serde::Deserialize;
use tokio::time::Instant;

use super::read_bounded;

/// The largest session.json read.
const MAX_SESSION_BYTES: u64 = 4 << 20;
/// The largest transcript.jsonl read.
const MAX_TRANSCRIPT_BYTES: u64 = 64 << 20;
/// How often session.json files are read while waiting.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// What a call's session.json says.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SessionState {
    /// `status` is no longer `live`.
    pub(crate) ended: bool,
    /// Some processor is still `"working": true`.
    pub(crate) working: bool,
    /// No processor's report says `"live": false` (a missing field counts as live).
    pub(crate) live: bool,
    /// The first `not_live_reason` of a processor not live.
    pub(crate) not_live_reason: Option<String>,
    /// Its `after_call`, when it said.
    pub(crate) after_call: Option<bool>,
    /// The transcript files the call's processors made (`transcript*.jsonl`).
    pub(crate) transcripts: Vec<String>,
    /// `compute_secs` summed over the processors that report one (the speech engine's).
    pub(crate) engine_compute_secs: f64,
}

impl SessionState {
    /// Reads the facts the bench needs from a session.json.
    pub(crate) fn of(session: &serde_json::Value) -> SessionState {
        let mut state = SessionState {
            ended: session["status"].as_str().is_some_and(|s| s != "live"),
            live: true,
            ..SessionState::default()
        };
        let transports = session["transports"].as_array().into_iter().flatten();
        for transport in transports {
            for file in transport["files"].as_array().into_iter().flatten() {
                if let Some(name) = file.as_str() {
                    if name.starts_with("transcript") && name.ends_with(".jsonl") {
                        state.transcripts.push(name.to_owned());
                    }
                }
            }
            for processor in transport["processors"].as_array().into_iter().flatten() {
                state.working |= processor["working"] == true;
                let report = &processor["report"];
                if report["live"] == false {
                    state.live = false;
                    if state.not_live_reason.is_none() {
                        state.not_live_reason = report["not_live_reason"].as_str().map(Into::into);
                    }
                    state.after_call = state.after_call.or(report["after_call"].as_bool());
                }
                state.engine_compute_secs += report["compute_secs"].as_f64().unwrap_or(0.0);
            }
        }
        state
    }

    /// The call has ended and every processor has finished: its files are complete.
    pub(crate) fn finished(&self) -> bool {
        self.ended && !self.working
    }
}

/// Reads a call folder's session.json; `None` when it is not there (yet) or not whole.
/// **Blocking**.
fn read_session(folder: &Path) -> Option<SessionState> {
    let text = read_bounded(&folder.join("session.json"), MAX_SESSION_BYTES).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(SessionState::of(&json))
}

/// Reads the session.json of every folder until each says the call is finished, or until
/// `limit` has passed: the last state of each (`None`: never read), and how long it took.
pub(crate) async fn wait_until_finished(
    folders: Vec<PathBuf>,
    limit: Duration,
) -> (Vec<Option<SessionState>>, Duration) {
    let started = Instant::now();
    let deadline = started + limit;
    let mut states: Vec<Option<SessionState>> = vec![None; folders.len()];
    let folders = std::sync::Arc::new(folders);
    loop {
        let pending: Vec<usize> = (0..states.len())
            .filter(|&i| !states[i].as_ref().is_some_and(SessionState::finished))
            .collect();
        if pending.is_empty() {
            break;
        }
        let read = {
            let folders = std::sync::Arc::clone(&folders);
            let pending = pending.clone();
            tokio::task::spawn_blocking(move || {
                pending
                    .iter()
                    .map(|&i| read_session(&folders[i]))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default()
        };
        for (i, state) in pending.into_iter().zip(read) {
            if state.is_some() {
                states[i] = state;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL_EVERY.min(deadline - Instant::now())).await;
    }
    (states, started.elapsed())
}

/// One line of transcript.jsonl, as the bench reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct TranscriptLine {
    /// `acs` for the platform's transcription, else the engine.
    pub(crate) source: String,
    /// `partial` or `final`.
    pub(crate) status: String,
    /// The text.
    #[serde(default)]
    pub(crate) text: String,
    /// Where the utterance starts on the call's timeline.
    pub(crate) start_ms: u64,
    /// Where it ends.
    pub(crate) end_ms: u64,
    /// When the engine produced it (wall clock, RFC 3339).
    #[serde(default, deserialize_with = "timestamp")]
    pub(crate) received_at: Option<Timestamp>,
}

impl TranscriptLine {
    /// From a speech engine (not the platform's transcription).
    pub(crate) fn by_engine(&self) -> bool {
        self.source != "acs"
    }

    /// A final result.
    pub(crate) fn is_final(&self) -> bool {
        self.status == "final"
    }
}

fn timestamp<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    Ok(text.and_then(|t| Timestamp::parse_rfc3339(&t).ok()))
}

/// The lines of a transcript.jsonl (lines that do not parse are skipped) and how many were
/// skipped.
pub(crate) fn parse_transcript(text: &str) -> (Vec<TranscriptLine>, usize) {
    let (mut lines, mut bad) = (Vec::new(), 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(parsed) => lines.push(parsed),
            Err(_) => bad += 1,
        }
    }
    (lines, bad)
}

/// A call's transcript lines and how many lines did not parse, or why it could not be read.
pub(crate) type Transcript = Result<(Vec<TranscriptLine>, usize), String>;

/// Reads the transcript files `names` of a call folder, in order. **Blocking**.
pub(crate) fn read_transcripts(folder: &Path, names: &[String]) -> Transcript {
    let names: Vec<&str> = if names.is_empty() {
        vec!["transcript.jsonl"]
    } else {
        names.iter().map(String::as_str).collect()
    };
    let (mut all, mut bad) = (Vec::new(), 0);
    for name in names {
        let path = folder.join(name);
        let text = match read_bounded(&path, MAX_TRANSCRIPT_BYTES) {
            Ok(text) => text,
            // Made at the first transcript: none, no file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let (lines, skipped) = parse_transcript(&text);
        all.extend(lines);
        bad += skipped;
    }
    Ok((all, bad))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use serde_json::json;

    use super::*;

    #[test]
    fn a_session_says_ended_working_and_live() {
        let session = json!({
            "status": "ended",
            "transports": [{
                "files": ["mixed.wav", "transcript.jsonl"],
                "processors": [
                    {"name": "wav"},
                    {"name": "whisper", "working": true, "report": {"compute_secs": 1.5}},
                ]
            }]
        });
        let state = SessionState::of(&session);
        assert!(state.ended && state.working && state.live && !state.finished());
        assert_eq!(state.transcripts, ["transcript.jsonl"]);
        assert_eq!(state.engine_compute_secs, 1.5);

        let session = json!({
            "status": "ended",
            "transports": [{
                "files": [],
                "processors": [{"name": "whisper", "report": {
                    "live": false, "not_live_reason": "capacity", "after_call": true
                }}]
            }]
        });
        let state = SessionState::of(&session);
        assert!(state.finished() && !state.live);
        assert_eq!(state.not_live_reason.as_deref(), Some("capacity"));
        assert_eq!(state.after_call, Some(true));
        assert!(!SessionState::of(&json!({"status": "live"})).ended);
    }

    #[test]
    fn transcript_lines_parse_and_bad_ones_are_counted() {
        let text = concat!(
            r#"{"source":"whisper","status":"partial","text":"the birch","start_ms":480,"end_ms":1500,"words":[],"received_at":"2026-12-01T10:00:01.620Z"}"#,
            "\n",
            r#"{"source":"acs","status":"final","text":"x","start_ms":0,"end_ms":10,"words":[],"received_at":"2026-12-01T10:00:01.000Z"}"#,
            "\n{cut short\n\n",
            r#"{"source":"whisper","status":"final","text":"The birch canoe.","confidence":0.9,"start_ms":480,"end_ms":3100,"words":[],"received_at":"2026-12-01T10:00:03.900Z"}"#,
        );
        let (lines, bad) = parse_transcript(text);
        assert_eq!((lines.len(), bad), (3, 1));
        assert!(!lines[0].is_final() && lines[0].by_engine());
        assert!(!lines[1].by_engine());
        assert!(lines[2].is_final());
        assert_eq!(lines[2].end_ms, 3_100);
        assert_eq!(
            lines[2].received_at.unwrap().to_string(),
            "2026-12-01T10:00:03.900Z"
        );
    }

    #[tokio::test]
    async fn waiting_stops_at_the_limit_when_a_call_never_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("done");
        let stuck = dir.path().join("stuck");
        std::fs::create_dir_all(&done).unwrap();
        std::fs::create_dir_all(&stuck).unwrap();
        std::fs::write(done.join("session.json"), r#"{"status":"ended"}"#).unwrap();
        std::fs::write(stuck.join("session.json"), r#"{"status":"live"}"#).unwrap();
        let (states, waited) = wait_until_finished(
            vec![done, stuck, dir.path().join("missing")],
            Duration::from_millis(300),
        )
        .await;
        assert!(states[0].as_ref().unwrap().finished());
        assert!(!states[1].as_ref().unwrap().finished());
        assert!(states[2].is_none());
        assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(2));
    }
}
