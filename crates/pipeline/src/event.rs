//! What happens in a call besides audio: one typed enum, fanned out to every consumer like
//! frames (cloning an event clones reference counts, not payloads).

use std::mem::size_of;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mediagate_audio::Timestamp;
use mediagate_audio::{AudioFormat, AudioSource};

use crate::BargeIn;

/// Who the call is, as consumers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// The call's id (its folder name).
    pub call_id: Arc<str>,
    /// The WebSocket path the platform connected to (`/ws/bot`…): routes pick pipelines by it.
    pub path: Arc<str>,
    /// The call's audio format (inbound frames, and what outbound audio is converted to).
    pub format: AudioFormat,
    /// The call's folder, where processors keep files (see [`crate::Context::create_file`]);
    /// `None` when the gateway keeps no files (`recording.enabled = false`).
    pub folder: Option<PathBuf>,
}

impl CallInfo {
    /// A call with no folder.
    pub fn new(call_id: &str, path: &str, format: AudioFormat) -> Self {
        CallInfo {
            call_id: call_id.into(),
            path: path.into(),
            format,
            folder: None,
        }
    }

    /// The same call, keeping its files in `folder`.
    #[must_use]
    pub fn with_folder(mut self, folder: impl Into<PathBuf>) -> Self {
        self.folder = Some(folder.into());
        self
    }
}

/// A key the caller pressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtmf {
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub tone: Arc<str>,
    /// When the gateway received it (wall clock).
    pub received_at: Timestamp,
    /// Where the call's audio was when it arrived: the end of the latest frame, from the first
    /// frame's timestamp (`None` before any timestamped audio). This places the tone on the
    /// recording's timeline.
    pub call_offset: Option<Duration>,
}

impl Dtmf {
    /// A tone received now, with no place on the audio timeline.
    pub fn new(tone: &str) -> Self {
        Dtmf {
            tone: tone.into(),
            received_at: Timestamp::now(),
            call_offset: None,
        }
    }
}

/// Whether a transcript is still being revised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TranscriptStatus {
    /// The utterance so far, while it goes on; a later result replaces it.
    Partial,
    /// The utterance's result, kept.
    Final,
}

/// One word of a transcript, on the call's timeline.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TranscriptWord {
    /// The word.
    pub text: String,
    /// Where it starts, in ms on the call's timeline.
    pub start_ms: u64,
    /// How long it lasts, in ms.
    pub duration_ms: u64,
}

/// What was said, by whom and when: a transcription result from the platform (`acs`,
/// converted at the edge) or from one of the gateway's engines.
///
/// Times are in milliseconds on the call's timeline: from the start of its audio (the first
/// frame's position, see [`crate::Pipeline::position`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// `acs`, or the engine's name.
    pub source: Arc<str>,
    /// Partial or final.
    pub status: TranscriptStatus,
    /// The text; may be empty (noise).
    pub text: String,
    /// Where the utterance starts, in ms on the call's timeline.
    pub start_ms: u64,
    /// How long it lasts, in ms.
    pub duration_ms: u64,
    /// Word timings, when the source gives them.
    pub words: Vec<TranscriptWord>,
    /// 0..1, when the source gives one.
    pub confidence: Option<f64>,
    /// Who spoke (a participant's raw id), when known.
    pub speaker: Option<Arc<str>>,
    /// When the gateway received or made it (wall clock).
    pub received_at: Timestamp,
}

impl Transcript {
    /// Where the utterance ends, in ms on the call's timeline.
    pub fn end_ms(&self) -> u64 {
        self.start_ms.saturating_add(self.duration_ms)
    }

    /// Whether it is a final result.
    pub fn is_final(&self) -> bool {
        self.status == TranscriptStatus::Final
    }
}

/// An event a processor defines: a kind and JSON data.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomEvent {
    /// What it is (`level`, `bot.state`…): processors match on it.
    pub kind: Arc<str>,
    /// Its data.
    pub data: serde_json::Value,
}

impl CustomEvent {
    /// An event of `kind` holding `data`.
    pub fn new(kind: &str, data: serde_json::Value) -> Self {
        CustomEvent {
            kind: kind.into(),
            data,
        }
    }
}

/// Bytes a JSON value holds, roughly (its strings, and a word per value).
fn json_cost(value: &serde_json::Value) -> usize {
    size_of::<serde_json::Value>()
        + match value {
            serde_json::Value::String(s) => s.len(),
            serde_json::Value::Array(items) => items.iter().map(json_cost).sum(),
            serde_json::Value::Object(map) => map.iter().map(|(k, v)| k.len() + json_cost(v)).sum(),
            _ => 0,
        }
}

/// Something that happened in a call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The pipeline started; always the first event a consumer sees.
    CallStarted(Arc<CallInfo>),
    /// A participant's first frame arrived (unmixed audio).
    ParticipantJoined(Arc<str>),
    /// The caller pressed a key.
    Dtmf(Arc<Dtmf>),
    /// A transcription result.
    Transcript(Arc<Transcript>),
    /// Voice activity started (`true`) or stopped (`false`) on a source. A source still
    /// speaking when the call ends gets no `false`: [`Event::CallEnded`] ends everything.
    Speech {
        /// Whose speech.
        source: AudioSource,
        /// Started or stopped.
        active: bool,
    },
    /// Outbound audio was cut by a barge-in.
    BargeIn(BargeIn),
    /// A consumer fell too far behind under [`crate::OverflowPolicy::Detach`] and gets nothing more.
    ConsumerDetached(Arc<str>),
    /// An event of a processor's own kind (a level meter's reading, a bot's state), for the
    /// processors that know it.
    Custom(Arc<CustomEvent>),
    /// The call is over; always the last event.
    CallEnded,
}

/// What one heap allocation behind an `Arc` costs besides its contents (the two counts).
const ARC_OVERHEAD: usize = 2 * size_of::<usize>();

impl Event {
    /// Bytes the event holds: its own size plus everything it points to (strings, word lists),
    /// so an inbox's byte budget ([`crate::Input::queue_bytes`]) bounds a flood of large events
    /// (a 1 MiB DTMF "tone", a transcript of a million words) as it bounds audio. Payloads
    /// shared by refcount are counted in full in every inbox: the bound is what matters, and it
    /// errs on the safe side.
    pub fn cost_bytes(&self) -> usize {
        let payload = match self {
            Event::CallStarted(call) => {
                ARC_OVERHEAD
                    + size_of::<CallInfo>()
                    + call.call_id.len()
                    + call.path.len()
                    + call.folder.as_ref().map_or(0, |f| f.as_os_str().len())
            }
            Event::ParticipantJoined(id) | Event::ConsumerDetached(id) => ARC_OVERHEAD + id.len(),
            Event::Dtmf(dtmf) => ARC_OVERHEAD + size_of::<Dtmf>() + dtmf.tone.len(),
            Event::Transcript(t) => {
                ARC_OVERHEAD
                    + size_of::<Transcript>()
                    + t.source.len()
                    + t.text.len()
                    + t.speaker.as_ref().map_or(0, |s| ARC_OVERHEAD + s.len())
                    + t.words
                        .iter()
                        .map(|w| size_of::<TranscriptWord>() + w.text.len())
                        .sum::<usize>()
            }
            Event::Speech { source, .. } => match source {
                AudioSource::Mixed => 0,
                AudioSource::Participant(id) => ARC_OVERHEAD + id.len(),
            },
            Event::Custom(custom) => {
                ARC_OVERHEAD
                    + size_of::<CustomEvent>()
                    + custom.kind.len()
                    + json_cost(&custom.data)
            }
            Event::BargeIn(_) | Event::CallEnded => 0,
        };
        size_of::<Event>() + payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_costs_what_it_holds() {
        let small = Event::Dtmf(Arc::new(Dtmf::new("5")));
        let huge = Event::Dtmf(Arc::new(Dtmf::new(&"5".repeat(1 << 20))));
        assert!(small.cost_bytes() < 256, "{}", small.cost_bytes());
        assert_eq!(huge.cost_bytes(), small.cost_bytes() + (1 << 20) - 1);
        let id: Arc<str> = "8:acs:x".repeat(1_000).into();
        assert!(Event::ParticipantJoined(Arc::clone(&id)).cost_bytes() > 7_000);
        assert!(Event::ConsumerDetached(Arc::clone(&id)).cost_bytes() > 7_000);
        let speech = Event::Speech {
            source: AudioSource::Participant(id),
            active: true,
        };
        assert!(speech.cost_bytes() > 7_000);
        let word = TranscriptWord {
            text: "w".repeat(100),
            start_ms: 0,
            duration_ms: 0,
        };
        let transcript = Event::Transcript(Arc::new(Transcript {
            source: "acs".into(),
            status: TranscriptStatus::Final,
            text: "t".repeat(5_000),
            start_ms: 0,
            duration_ms: 0,
            words: vec![word; 1_000],
            confidence: None,
            speaker: Some("p".repeat(300).into()),
            received_at: Timestamp::now(),
        }));
        assert!(transcript.cost_bytes() > 5_000 + 1_000 * 100 + 300);
        let call = CallInfo::new(&"c".repeat(2_000), "/ws", AudioFormat::mono(16_000));
        assert!(Event::CallStarted(Arc::new(call)).cost_bytes() > 2_000);
        assert_eq!(Event::CallEnded.cost_bytes(), size_of::<Event>());
        let custom = CustomEvent::new("level", serde_json::json!({"notes": ["n".repeat(4_000)]}));
        assert!(Event::Custom(Arc::new(custom)).cost_bytes() > 4_000);
    }
}
