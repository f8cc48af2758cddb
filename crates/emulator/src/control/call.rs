//! One call as ACS plays it, without I/O or a clock of its own: the methods the application
//! applies and the news of the streams go in, with the call's time; the callbacks to send, the
//! streams to start or stop and the timers to set come out ([`CallModel::handle`]). The driver
//! ([`super::driver`]) does the I/O.
//!
//! Time is the call's: zero when it connected, which is when the media stream starts, and what
//! the script's times (key presses, hang-up) count from.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::events::{
    CallbackEvent, identifier, media_streaming_update, participant, raw_id_of, results, tone_name,
    transcription_update,
};
use super::scripted::CallerHangUp;
use crate::DtmfEvent;
use timing::{RecognizeParams, Recognized, play_length, recognize_dtmf};

/// How long one DTMF tone sent by `sendDtmfTones` takes.
const SEND_TONE: Duration = Duration::from_millis(100);

/// A WebSocket transport of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Media,
    Transcription,
}

/// What happened to a transport the model asked to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamNews {
    /// The WebSocket upgrade succeeded.
    Opened,
    /// It could not be opened: why.
    Failed(String),
    /// It was open and is closed now (stopped, done, or closed by the gateway).
    Ended,
}

/// An operation that ends with a callback, which a timer stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Tag {
    Play(u64),
    Recognize(u64),
    ContinuousDtmf,
    SendDtmf(u64),
    CallerHangUp,
}

/// Something that happens later.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Timer {
    /// Send `event`; with `completes`, the operation `tag` is done.
    Callback {
        tag: Tag,
        event: CallbackEvent,
        uri: Option<String>,
        completes: bool,
    },
    /// The caller hangs up.
    CallerHangsUp,
}

impl Timer {
    pub(crate) fn tag(&self) -> Tag {
        match self {
            Timer::Callback { tag, .. } => *tag,
            Timer::CallerHangsUp => Tag::CallerHangUp,
        }
    }
}

/// What goes into the model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Input {
    /// A method the fake accepted for this call: its reference name and body.
    Method { name: String, body: Value },
    /// News of a transport.
    Stream(Transport, StreamNews),
    /// A timer came due.
    Due(Timer),
}

/// What comes out of it, to be done in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Post a callback: to `uri` when the operation named one, else to the call's.
    Callback {
        event: CallbackEvent,
        uri: Option<String>,
    },
    /// Open a transport and stream into it.
    Start(Transport),
    /// Close a transport (it reports [`StreamNews::Ended`]).
    Stop(Transport),
    /// Set a timer for call time `at`.
    Schedule { at: Duration, timer: Timer },
    /// Drop the timers of an operation.
    Cancel(Tag),
    /// Drop every timer.
    CancelAll,
    /// The call is over: CallDisconnected was the last callback.
    End,
}

/// What a call is made of.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallFacts {
    /// The caller's raw id.
    pub(crate) caller: String,
    /// Everyone on the call at the start, the caller first.
    pub(crate) participants: Vec<String>,
    /// The caller's key presses, in time order.
    pub(crate) dtmf: Vec<DtmfEvent>,
    /// How long the caller's audio lasts.
    pub(crate) audio: Duration,
    pub(crate) hang_up: CallerHangUp,
    /// The answer's `operationContext`.
    pub(crate) operation_context: Option<String>,
    /// The answer configured media streaming, and whether it starts now.
    pub(crate) media: Option<bool>,
    /// The answer configured transcription, and whether it starts now.
    pub(crate) transcription: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum StreamState {
    #[default]
    Idle,
    Opening,
    Open,
    Stopping,
}

/// One transport, as the model sees it.
#[derive(Debug, Clone, Default)]
struct Slot {
    /// The answer configured it (it may be started).
    configured: bool,
    state: StreamState,
    /// Its Started event was sent (so its end gets a Stopped).
    announced: bool,
    /// The `operationContext` of the request that started or stopped it last.
    context: Option<String>,
}

/// One call's state.
#[derive(Debug)]
pub(crate) struct CallModel {
    facts: CallFacts,
    media: Slot,
    transcription: Slot,
    /// Operations under way, with their `operationContext`.
    pending: BTreeMap<Tag, Option<String>>,
    next_operation: u64,
    /// When the play queue is free again.
    plays_free_at: Duration,
    /// The last ContinuousDtmfRecognitionToneReceived's `sequenceId`.
    tone_sequence: u64,
    /// The last ParticipantsUpdated's `sequenceNumber`.
    roster_sequence: u64,
    roster: Vec<String>,
    ending: bool,
    ended: bool,
}

fn context_of(body: &Value) -> Option<String> {
    body["operationContext"].as_str().map(str::to_owned)
}

fn uri_of(body: &Value) -> Option<String> {
    body["operationCallbackUri"].as_str().map(str::to_owned)
}

impl CallModel {
    /// A call that has just connected, and what happens at once.
    pub(crate) fn connect(mut facts: CallFacts) -> (CallModel, Vec<Action>) {
        facts.dtmf.sort_by_key(|e| e.at);
        let mut model = CallModel {
            media: Slot {
                configured: facts.media.is_some(),
                context: facts.operation_context.clone(),
                ..Slot::default()
            },
            transcription: Slot {
                configured: facts.transcription.is_some(),
                context: facts.operation_context.clone(),
                ..Slot::default()
            },
            pending: BTreeMap::new(),
            next_operation: 0,
            plays_free_at: Duration::ZERO,
            tone_sequence: 0,
            roster_sequence: 0,
            roster: facts.participants.clone(),
            ending: false,
            ended: false,
            facts,
        };
        let mut actions = vec![callback(CallbackEvent::new(
            "CallConnected",
            model.facts.operation_context.clone(),
            results::CONNECTED,
        ))];
        actions.push(model.participants_updated());
        if model.facts.media == Some(true) {
            actions.extend(model.start(Transport::Media, None));
        }
        if model.facts.transcription == Some(true) {
            actions.extend(model.start(Transport::Transcription, None));
        }
        match model.facts.hang_up {
            CallerHangUp::After(at) => actions.push(hang_up_at(at)),
            CallerHangUp::AfterAudio if model.media.state == StreamState::Idle => {
                actions.push(hang_up_at(model.facts.audio));
            }
            CallerHangUp::AfterAudio | CallerHangUp::Never => {}
        }
        (model, actions)
    }

    /// Whether the call is over.
    pub(crate) fn is_ended(&self) -> bool {
        self.ended
    }

    /// Applies `input`, which happened at call time `now`.
    pub(crate) fn handle(&mut self, input: Input, now: Duration) -> Vec<Action> {
        if self.ended {
            return Vec::new();
        }
        match input {
            Input::Method { name, body } if !self.ending => self.method(&name, &body, now),
            Input::Method { .. } => Vec::new(),
            Input::Stream(transport, news) => self.stream(transport, news, now),
            Input::Due(Timer::CallerHangsUp) => self.begin_ending(),
            Input::Due(Timer::Callback {
                tag,
                event,
                uri,
                completes,
            }) => {
                if completes {
                    self.pending.remove(&tag);
                }
                vec![Action::Callback { event, uri }]
            }
        }
    }

    fn method(&mut self, name: &str, body: &Value, now: Duration) -> Vec<Action> {
        let context = context_of(body);
        match name {
            "CallConnection_HangupCall" | "CallConnection_TerminateCall" => self.begin_ending(),
            "CallConnection_TransferToParticipant" => {
                let transferee = identifier(&self.facts.caller);
                let event =
                    CallbackEvent::new("CallTransferAccepted", context, results::TRANSFER_ACCEPTED)
                        .with("transferTarget", body["targetParticipant"].clone())
                        .with("transferee", transferee);
                let mut actions = vec![Action::Callback {
                    event,
                    uri: uri_of(body),
                }];
                actions.extend(self.begin_ending());
                actions
            }
            "CallMedia_Play" => self.play(body, now),
            "CallMedia_Recognize" => self.recognize(body, now),
            "CallMedia_CancelAllMediaOperations" => self.cancel_media_operations(body),
            "CallMedia_StartContinuousDtmfRecognition" => self.start_continuous_dtmf(body, now),
            "CallMedia_StopContinuousDtmfRecognition" => self.stop_continuous_dtmf(body),
            "CallMedia_SendDtmfTones" => self.send_dtmf(body, now),
            "CallConnection_AddParticipant" | "CallConnection_RemoveParticipant" => {
                self.change_roster(name, body)
            }
            "CallRecording_StartRecording" => {
                let event = CallbackEvent::new("RecordingStateChanged", None, results::OK)
                    .with("recordingId", body["recordingId"].clone())
                    .with("state", Value::from("active"))
                    .with("recordingKind", Value::from("azureCommunicationServices"))
                    .with("startDateTime", body["startDateTime"].clone());
                // To `recordingStateCallbackUri`, else the call's own.
                let uri = body["recordingStateCallbackUri"]
                    .as_str()
                    .map(str::to_owned);
                vec![Action::Callback { event, uri }]
            }
            "CallMedia_StartMediaStreaming" => self.start(Transport::Media, context),
            "CallMedia_StopMediaStreaming" => self.stop(Transport::Media, context),
            "CallMedia_StartTranscription" => self.start(Transport::Transcription, context),
            "CallMedia_StopTranscription" => self.stop(Transport::Transcription, context),
            _ => Vec::new(),
        }
    }

    fn slot(&mut self, transport: Transport) -> &mut Slot {
        match transport {
            Transport::Media => &mut self.media,
            Transport::Transcription => &mut self.transcription,
        }
    }

    fn start(&mut self, transport: Transport, context: Option<String>) -> Vec<Action> {
        let slot = self.slot(transport);
        if !slot.configured || slot.state != StreamState::Idle {
            return Vec::new();
        }
        slot.state = StreamState::Opening;
        if context.is_some() {
            slot.context = context;
        }
        vec![Action::Start(transport)]
    }

    fn stop(&mut self, transport: Transport, context: Option<String>) -> Vec<Action> {
        let slot = self.slot(transport);
        if !matches!(slot.state, StreamState::Opening | StreamState::Open) {
            return Vec::new();
        }
        slot.state = StreamState::Stopping;
        if context.is_some() {
            slot.context = context;
        }
        vec![Action::Stop(transport)]
    }

    fn stream(&mut self, transport: Transport, news: StreamNews, now: Duration) -> Vec<Action> {
        let ending = self.ending;
        let slot = self.slot(transport);
        let context = slot.context.clone();
        let mut actions = Vec::new();
        match news {
            StreamNews::Opened => {
                if slot.state == StreamState::Opening {
                    slot.state = StreamState::Open;
                    slot.announced = true;
                    actions.push(callback(stream_event(transport, "Started", context)));
                }
            }
            StreamNews::Failed(why) => {
                slot.state = StreamState::Idle;
                if !ending {
                    let result = results::STREAM_FAILED.with_message(why);
                    let mut event = stream_event(transport, "Failed", context);
                    event.result = result;
                    actions.push(callback(event));
                    if transport == Transport::Media
                        && self.facts.hang_up == CallerHangUp::AfterAudio
                    {
                        actions.push(hang_up_at(self.facts.audio.max(now)));
                    }
                }
            }
            StreamNews::Ended => {
                slot.state = StreamState::Idle;
                if std::mem::take(&mut slot.announced) {
                    actions.push(callback(stream_event(transport, "Stopped", context)));
                }
                if transport == Transport::Media
                    && !ending
                    && self.facts.hang_up == CallerHangUp::AfterAudio
                {
                    // The audio is over: the caller hangs up.
                    actions.extend(self.begin_ending());
                }
            }
        }
        actions.extend(self.finish_if_done());
        actions
    }

    /// The call ends: timers dropped, transports closed, then CallDisconnected once they are.
    fn begin_ending(&mut self) -> Vec<Action> {
        if self.ending {
            return Vec::new();
        }
        self.ending = true;
        self.pending.clear();
        let mut actions = vec![Action::CancelAll];
        for transport in [Transport::Media, Transport::Transcription] {
            actions.extend(self.stop(transport, None));
        }
        actions.extend(self.finish_if_done());
        actions
    }

    fn finish_if_done(&mut self) -> Vec<Action> {
        let idle =
            self.media.state == StreamState::Idle && self.transcription.state == StreamState::Idle;
        if !self.ending || self.ended || !idle {
            return Vec::new();
        }
        self.ended = true;
        vec![
            callback(CallbackEvent::new(
                "CallDisconnected",
                None,
                results::DISCONNECTED,
            )),
            Action::End,
        ]
    }

    fn operation(&mut self, tag: fn(u64) -> Tag, context: Option<String>) -> Tag {
        self.next_operation += 1;
        let tag = tag(self.next_operation);
        self.pending.insert(tag, context);
        tag
    }

    fn play(&mut self, body: &Value, now: Duration) -> Vec<Action> {
        let context = context_of(body);
        let sources = body["playSources"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        let looped = body["playOptions"]["loop"].as_bool() == Some(true);
        let tag = self.operation(Tag::Play, context.clone());
        let start = self.plays_free_at.max(now);
        let length = play_length(sources);
        let uri = uri_of(body);
        let started = CallbackEvent::new("PlayStarted", context.clone(), results::STARTED);
        // A play that starts now says so now; one queued behind another, when it starts.
        let mut actions = vec![if start <= now {
            Action::Callback {
                event: started,
                uri: uri.clone(),
            }
        } else {
            schedule(start, tag, started, uri.clone(), false)
        }];
        if looped {
            // A looped play goes on until it is canceled.
            self.plays_free_at = Duration::MAX;
        } else {
            self.plays_free_at = start + length;
            let completed = CallbackEvent::new("PlayCompleted", context, results::OK);
            actions.push(schedule(start + length, tag, completed, uri, true));
        }
        actions
    }

    fn recognize(&mut self, body: &Value, now: Duration) -> Vec<Action> {
        let context = context_of(body);
        let tag = self.operation(Tag::Recognize, context.clone());
        let prompts: Vec<Value> = match body["playPrompts"].as_array() {
            Some(prompts) if !prompts.is_empty() => prompts.clone(),
            _ if body["playPrompt"].is_object() => vec![body["playPrompt"].clone()],
            _ => Vec::new(),
        };
        let params = RecognizeParams::from_body(body, play_length(&prompts));
        let dtmf = matches!(
            body["recognizeInputType"]
                .as_str()
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("dtmf" | "speechordtmf")
        );
        let tones = if dtmf { &self.facts.dtmf[..] } else { &[] };
        let (at, outcome) = recognize_dtmf(tones, now, &params);
        let event = match outcome {
            Recognized::Tones(tones, result) => {
                CallbackEvent::new("RecognizeCompleted", context, result)
                    .with("recognitionType", json!("dtmf"))
                    .with("dtmfResult", json!({ "tones": tones }))
            }
            Recognized::Silence => {
                CallbackEvent::new("RecognizeFailed", context, results::INITIAL_SILENCE)
            }
        };
        vec![schedule(at, tag, event, uri_of(body), true)]
    }

    fn cancel_media_operations(&mut self, body: &Value) -> Vec<Action> {
        let mut actions = Vec::new();
        let canceled: Vec<(Tag, Option<String>)> = self
            .pending
            .iter()
            .filter(|(tag, _)| matches!(tag, Tag::Play(_) | Tag::Recognize(_)))
            .map(|(tag, context)| (*tag, context.clone()))
            .collect();
        for (tag, context) in canceled {
            self.pending.remove(&tag);
            let kind = match tag {
                Tag::Play(_) => "PlayCanceled",
                _ => "RecognizeCanceled",
            };
            actions.push(Action::Cancel(tag));
            actions.push(Action::Callback {
                event: CallbackEvent::new(kind, context, results::CANCELED),
                uri: uri_of(body),
            });
        }
        self.plays_free_at = Duration::ZERO;
        actions
    }

    fn start_continuous_dtmf(&mut self, body: &Value, now: Duration) -> Vec<Action> {
        if self.pending.contains_key(&Tag::ContinuousDtmf) {
            return Vec::new();
        }
        let context = context_of(body);
        self.pending.insert(Tag::ContinuousDtmf, context.clone());
        let uri = uri_of(body);
        let mut actions = Vec::new();
        for press in self.facts.dtmf.iter().filter(|e| e.at >= now) {
            let Some(tone) = tone_name(&press.tone) else {
                continue;
            };
            self.tone_sequence += 1;
            let event = CallbackEvent::new(
                "ContinuousDtmfRecognitionToneReceived",
                context.clone(),
                results::OK,
            )
            .with("tone", json!(tone))
            .with("sequenceId", json!(self.tone_sequence));
            actions.push(schedule(
                press.at,
                Tag::ContinuousDtmf,
                event,
                uri.clone(),
                false,
            ));
        }
        actions
    }

    fn stop_continuous_dtmf(&mut self, body: &Value) -> Vec<Action> {
        if self.pending.remove(&Tag::ContinuousDtmf).is_none() {
            return Vec::new();
        }
        let event = CallbackEvent::new(
            "ContinuousDtmfRecognitionStopped",
            context_of(body),
            results::OK,
        );
        vec![
            Action::Cancel(Tag::ContinuousDtmf),
            Action::Callback {
                event,
                uri: uri_of(body),
            },
        ]
    }

    fn send_dtmf(&mut self, body: &Value, now: Duration) -> Vec<Action> {
        let context = context_of(body);
        let tag = self.operation(Tag::SendDtmf, context.clone());
        let tones = body["tones"].as_array().map_or(0, Vec::len) as u32;
        let event = CallbackEvent::new("SendDtmfTonesCompleted", context, results::OK);
        vec![schedule(
            now + SEND_TONE * tones,
            tag,
            event,
            uri_of(body),
            true,
        )]
    }

    fn change_roster(&mut self, name: &str, body: &Value) -> Vec<Action> {
        let (field, kind) = if name == "CallConnection_AddParticipant" {
            ("participantToAdd", "AddParticipantSucceeded")
        } else {
            ("participantToRemove", "RemoveParticipantSucceeded")
        };
        let Some(raw) = raw_id_of(&body[field]) else {
            return Vec::new();
        };
        if kind == "AddParticipantSucceeded" {
            self.roster.push(raw.clone());
        } else {
            self.roster.retain(|r| *r != raw);
        }
        let event = CallbackEvent::new(kind, context_of(body), results::OK)
            .with("participant", identifier(&raw));
        vec![
            Action::Callback {
                event,
                uri: uri_of(body),
            },
            self.participants_updated(),
        ]
    }

    fn participants_updated(&mut self) -> Action {
        self.roster_sequence += 1;
        let participants: Vec<Value> = self.roster.iter().map(|r| participant(r)).collect();
        callback(
            CallbackEvent::new("ParticipantsUpdated", None, results::OK)
                .with("participants", json!(participants))
                .with("sequenceNumber", json!(self.roster_sequence)),
        )
    }
}

fn callback(event: CallbackEvent) -> Action {
    Action::Callback { event, uri: None }
}

fn hang_up_at(at: Duration) -> Action {
    Action::Schedule {
        at,
        timer: Timer::CallerHangsUp,
    }
}

fn schedule(
    at: Duration,
    tag: Tag,
    event: CallbackEvent,
    uri: Option<String>,
    completes: bool,
) -> Action {
    Action::Schedule {
        at,
        timer: Timer::Callback {
            tag,
            event,
            uri,
            completes,
        },
    }
}

/// MediaStreaming… or Transcription… `Started`, `Stopped` or `Failed`.
fn stream_event(transport: Transport, what: &str, context: Option<String>) -> CallbackEvent {
    let (status, details) = match what {
        "Started" => ("Started", "subscriptionStarted"),
        "Stopped" => ("Stopped", "subscriptionStopped"),
        _ => ("Failed", "streamConnectionUnsuccessful"),
    };
    match transport {
        Transport::Media => {
            let kind = match what {
                "Started" => "MediaStreamingStarted",
                "Stopped" => "MediaStreamingStopped",
                _ => "MediaStreamingFailed",
            };
            let update = media_streaming_update(&format!("mediaStreaming{status}"), details);
            CallbackEvent::new(kind, context, results::OK).with("mediaStreamingUpdate", update)
        }
        Transport::Transcription => {
            let kind = match what {
                "Started" => "TranscriptionStarted",
                "Stopped" => "TranscriptionStopped",
                _ => "TranscriptionFailed",
            };
            let update = transcription_update(&format!("transcription{status}"), details);
            CallbackEvent::new(kind, context, results::OK).with("transcriptionUpdate", update)
        }
    }
}

mod timing;

#[cfg(test)]
mod tests;
