//! The conversation's state machine: what the bridge does about each happening of the call and
//! each event of the service, as [`Command`]s for the socket task ([`super::io`]) to carry out.
//! No sockets, no tasks, no clock: every decision about answers, barge-ins and turns is made,
//! and unit-tested, here.
//!
//! It is driven as quinn-proto drives a connection: [`Bridge::handle`] an input, then
//! [`Bridge::poll`] the commands it produced, in order, until there are none. One command asks
//! for an answer: after [`Command::StopAudio`] the driver cuts the call's outbound audio and
//! hands what it cut back as [`Input::AudioStopped`], before any other input.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mediagate_pipeline::BargeIn;
use mediagate_protocol::decode_pcm;

#[cfg(doc)]
use mediagate_pipeline::Event;

use super::SERVICE_FORMAT;
use super::events::{AudioDelta, ClientEvent, ServiceEvent, append_audio};
use super::settings::TurnDetection;

/// The bridge's own barge-ins remembered until their [`Event::BargeIn`] comes back.
const OWN_CUTS: usize = 8;

/// What happens to the bridge: the call's side, and the service's.
#[derive(Debug)]
pub(super) enum Input<'a> {
    /// The caller's audio to send up: PCM16 LE mono at 24 kHz, `frames` 20 ms frames of it.
    CallerAudio {
        /// The frames, one after the other.
        pcm: &'a [u8],
        /// How many.
        frames: u64,
    },
    /// [`TurnDetection::GatewayVad`]: the caller started talking ([`Event::Speech`]).
    /// Ignored with the service's turn detection.
    CallerStarted,
    /// [`TurnDetection::GatewayVad`]: the caller stopped talking. Ignored with the service's
    /// turn detection.
    CallerStopped,
    /// The call's outbound audio was cut ([`Event::BargeIn`]): by another processor (`vad`),
    /// which the bridge must follow, or by the bridge itself, coming back.
    Cut(BargeIn),
    /// What the [`Command::StopAudio`] just carried out cut.
    AudioStopped(BargeIn),
    /// An event from the service.
    Service(ServiceEvent<'a>),
}

/// What the bridge asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Command {
    /// Send a control message to the service. Never dropped.
    Send(ClientEvent),
    /// Send the caller's audio: one `input_audio_buffer.append` of `frames` frames. Dropped
    /// (and counted in `frames_dropped`) when the socket is behind.
    SendAudio {
        /// The append, ready to send.
        message: String,
        /// How many 20 ms frames it holds.
        frames: u64,
    },
    /// Play answer audio into the call: PCM16 LE mono at 24 kHz.
    Play(Bytes),
    /// The answer's audio stream is complete: flush what the converters hold.
    EndStream,
    /// Barge-in: cut the call's outbound audio and send StopAudio; then hand what was cut
    /// back as [`Input::AudioStopped`].
    StopAudio,
    /// Count something in the report.
    Count(Tally),
    /// Count, remember and log an error.
    Error {
        /// What failed.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

/// The report's counters the bridge decides about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tally {
    /// An answer's audio delta of `samples` (24 kHz) arrived.
    AudioDelta {
        /// Its length.
        samples: u64,
    },
    /// A delta of a cut answer arrived after the barge-in, and was not played.
    DeltaAfterBargeIn,
    /// An answer ended (`response.done`).
    Response,
    /// An answer was cut.
    BargeIn,
}

/// The answer being played (or last played): what a barge-in must cut and truncate.
#[derive(Debug)]
struct Answer {
    response_id: Option<String>,
    item_id: Option<String>,
    /// Samples of `item_id` received so far.
    samples: u64,
    /// The service is still sending it.
    streaming: bool,
}

impl Answer {
    fn new(response_id: Option<String>) -> Self {
        Answer {
            response_id,
            item_id: None,
            samples: 0,
            streaming: true,
        }
    }
}

/// A [`Command::StopAudio`] waiting for its [`Input::AudioStopped`].
#[derive(Debug)]
struct Stopping {
    /// The answer being cut.
    answer: Answer,
    /// What an earlier cut (another processor's) already dropped of it.
    cut_before_ms: u64,
}

/// One call's conversation with the service: see the [module docs](self).
#[derive(Debug)]
pub(super) struct Bridge {
    turn_detection: TurnDetection,
    answer: Option<Answer>,
    /// After a barge-in: the cut response (its id, if known), whose late deltas are dropped
    /// until another response starts.
    interrupted: Option<Option<String>>,
    /// The bridge's own barge-ins whose [`Event::BargeIn`] has not come back yet (at most
    /// [`OWN_CUTS`]).
    own_cuts: VecDeque<BargeIn>,
    stopping: Option<Stopping>,
    /// Decoded deltas.
    pool: BytesMut,
    /// What the driver has still to do, in order.
    commands: VecDeque<Command>,
}

impl Bridge {
    /// A conversation whose turns `turn_detection` decides.
    pub(super) fn new(turn_detection: TurnDetection) -> Self {
        Bridge {
            turn_detection,
            answer: None,
            interrupted: None,
            own_cuts: VecDeque::with_capacity(OWN_CUTS),
            stopping: None,
            pool: BytesMut::new(),
            commands: VecDeque::new(),
        }
    }

    /// Takes in `input`; `queued` is the call's outbound audio queued and not yet played
    /// (every processor's): whether an answer is still audible.
    pub(super) fn handle(&mut self, input: Input<'_>, queued: Duration) {
        debug_assert!(
            self.stopping.is_none() || matches!(input, Input::AudioStopped(_)),
            "a StopAudio's outcome must come before any other input"
        );
        let gateway_vad = self.turn_detection == TurnDetection::GatewayVad;
        match input {
            Input::CallerAudio { pcm, frames } => self.commands.push_back(Command::SendAudio {
                message: append_audio(pcm),
                frames,
            }),
            Input::CallerStarted if gateway_vad => self.barge_in(queued),
            Input::CallerStopped if gateway_vad => self.end_turn(),
            Input::CallerStarted | Input::CallerStopped => {}
            Input::Cut(cut) => self.cut_elsewhere(cut, queued),
            Input::AudioStopped(cut) => self.audio_stopped(cut),
            Input::Service(event) => self.on_service_event(event, queued),
        }
    }

    /// The next thing to do, if any.
    pub(super) fn poll(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    fn on_service_event(&mut self, event: ServiceEvent<'_>, queued: Duration) {
        match event {
            ServiceEvent::AudioDelta(delta) => self.audio_delta(delta),
            ServiceEvent::AudioDone => self.commands.push_back(Command::EndStream),
            ServiceEvent::ResponseCreated { response_id } => {
                self.interrupted = None;
                self.answer = Some(Answer::new(response_id));
            }
            ServiceEvent::ResponseDone { status } => {
                self.commands.push_back(Command::EndStream);
                self.commands.push_back(Command::Count(Tally::Response));
                if let Some(answer) = &mut self.answer {
                    answer.streaming = false;
                }
                tracing::debug!(status = status.as_deref().unwrap_or("?"), "response done");
            }
            ServiceEvent::SpeechStarted if self.turn_detection != TurnDetection::GatewayVad => {
                self.barge_in(queued);
            }
            ServiceEvent::Error { message } => self.error("error event", message),
            ServiceEvent::SpeechStarted | ServiceEvent::Other => {}
        }
    }

    fn audio_delta(&mut self, delta: AudioDelta<'_>) {
        if let Some(cut) = &self.interrupted {
            if delta.response_id.is_none() || delta.response_id == *cut {
                self.commands
                    .push_back(Command::Count(Tally::DeltaAfterBargeIn));
                return;
            }
            self.interrupted = None;
        }
        let bytes_per_sample = SERVICE_FORMAT.bytes_per_sample();
        let pcm = match decode_pcm(&delta.delta, bytes_per_sample, &mut self.pool) {
            Ok(pcm) => pcm,
            Err(e) => return self.error("undecodable audio delta", e),
        };
        let samples = (pcm.len() / bytes_per_sample) as u64;
        let answer = self
            .answer
            .get_or_insert_with(|| Answer::new(delta.response_id));
        if answer.item_id != delta.item_id {
            answer.item_id = delta.item_id;
            answer.samples = 0;
        }
        answer.samples += samples;
        self.commands
            .push_back(Command::Count(Tally::AudioDelta { samples }));
        self.commands.push_back(Command::Play(pcm));
    }

    /// The caller started talking: if an answer is audible (or still coming), cut it and tell
    /// the platform (StopAudio).
    fn barge_in(&mut self, queued: Duration) {
        let Some(answer) = self.answer.take() else {
            return;
        };
        if !answer.streaming && queued.is_zero() {
            // Played to the end, or cut by another processor already (its cut is on its way).
            self.answer = Some(answer);
            return;
        }
        self.stop_audio(answer, 0);
    }

    /// Another processor cut the call's outbound audio: what is left of the answer must not
    /// play on. (The bridge's own cuts come back here too, and are skipped.)
    fn cut_elsewhere(&mut self, cut: BargeIn, queued: Duration) {
        if let Some(own) = self.own_cuts.iter().position(|c| *c == cut) {
            self.own_cuts.remove(own);
            return;
        }
        let Some(answer) = self.answer.take() else {
            return;
        };
        if !answer.streaming && cut.cut_ms == 0 {
            self.answer = Some(answer); // Nothing of it was left to cut.
            return;
        }
        if queued.is_zero() {
            self.interrupt(answer, cut.cut_ms);
        } else {
            // What the bridge queued since the cut (before it heard of it) goes too.
            self.stop_audio(answer, cut.cut_ms);
        }
    }

    /// Asks for `answer`'s audio to be cut; [`Bridge::audio_stopped`] goes on.
    fn stop_audio(&mut self, answer: Answer, cut_before_ms: u64) {
        self.stopping = Some(Stopping {
            answer,
            cut_before_ms,
        });
        self.commands.push_back(Command::StopAudio);
    }

    /// The bridge's own cut: remembered until its [`Event::BargeIn`] comes back; then the
    /// answer being cut is interrupted.
    fn audio_stopped(&mut self, cut: BargeIn) {
        if self.own_cuts.len() == OWN_CUTS {
            self.own_cuts.pop_front();
        }
        self.own_cuts.push_back(cut);
        if let Some(Stopping {
            answer,
            cut_before_ms,
        }) = self.stopping.take()
        {
            self.interrupt(answer, cut_before_ms + cut.cut_ms);
        }
    }

    /// `answer` was cut with `cut_ms` of it unplayed: drop the rest of it, and tell the model
    /// how much was heard (and, when the bridge owns the turns, to stop).
    fn interrupt(&mut self, answer: Answer, cut_ms: u64) {
        self.commands.push_back(Command::Count(Tally::BargeIn));
        tracing::debug!(cut_ms, "barge-in");
        if answer.streaming {
            if self.turn_detection == TurnDetection::GatewayVad {
                self.send(ClientEvent::CancelResponse);
            }
            self.interrupted = Some(answer.response_id);
        }
        if let Some(item_id) = answer.item_id {
            let received_ms = answer.samples * 1000 / u64::from(SERVICE_FORMAT.sample_rate_hz());
            self.send(ClientEvent::TruncateItem {
                item_id,
                content_index: 0,
                audio_end_ms: received_ms.saturating_sub(cut_ms),
            });
        }
    }

    /// [`TurnDetection::GatewayVad`]: the caller stopped talking; ask for the answer.
    fn end_turn(&mut self) {
        self.send(ClientEvent::CommitAudio);
        self.send(ClientEvent::CreateResponse);
    }

    fn send(&mut self, event: ClientEvent) {
        self.commands.push_back(Command::Send(event));
    }

    fn error(&mut self, what: &'static str, detail: impl std::fmt::Display) {
        let detail = detail.to_string();
        self.commands.push_back(Command::Error { what, detail });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use std::borrow::Cow;

    use super::*;

    const IDLE: Duration = Duration::ZERO;
    /// 100 ms of answer audio.
    const DELTA_SAMPLES: u64 = 2_400;

    /// Handles `input`, carrying out no StopAudio: the commands it produced.
    fn handle(bridge: &mut Bridge, input: Input<'_>, queued: Duration) -> Vec<Command> {
        bridge.handle(input, queued);
        std::iter::from_fn(|| bridge.poll()).collect()
    }

    fn service(bridge: &mut Bridge, event: ServiceEvent<'_>, queued: Duration) -> Vec<Command> {
        handle(bridge, Input::Service(event), queued)
    }

    /// Handles `input`, which must ask for a StopAudio; carries it out as having cut `cut_ms`:
    /// the commands that follow.
    fn stop(bridge: &mut Bridge, input: Input<'_>, queued: Duration, cut_ms: u64) -> Vec<Command> {
        assert_eq!(handle(bridge, input, queued), [Command::StopAudio]);
        handle(bridge, Input::AudioStopped(own_cut(cut_ms)), IDLE)
    }

    /// What a StopAudio of the bridge's that cut `cut_ms` returns.
    fn own_cut(cut_ms: u64) -> BargeIn {
        cut(10_000 + cut_ms, cut_ms)
    }

    fn cut(played_ms: u64, cut_ms: u64) -> BargeIn {
        BargeIn { played_ms, cut_ms }
    }

    fn created(bridge: &mut Bridge, response: &str) {
        let event = ServiceEvent::ResponseCreated {
            response_id: Some(response.into()),
        };
        assert_eq!(service(bridge, event, IDLE), []);
    }

    /// A delta of 100 ms of `response`'s `item`.
    fn delta_event(response: Option<&str>, item: &str) -> ServiceEvent<'static> {
        let mut base64 = String::new();
        mediagate_protocol::encode_pcm(&[7; 2 * DELTA_SAMPLES as usize], &mut base64);
        ServiceEvent::AudioDelta(AudioDelta {
            response_id: response.map(Into::into),
            item_id: Some(item.into()),
            delta: Cow::Owned(base64),
        })
    }

    /// `n` deltas of `response`'s `item`, each played.
    fn deltas(bridge: &mut Bridge, response: &str, item: &str, n: usize) {
        for _ in 0..n {
            let commands = service(bridge, delta_event(Some(response), item), IDLE);
            assert_played(&commands);
        }
    }

    /// A bridge in the middle of `resp_1`, of which `n` deltas of `item_1` arrived.
    fn answering(turn_detection: TurnDetection, n: usize) -> Bridge {
        let mut bridge = Bridge::new(turn_detection);
        created(&mut bridge, "resp_1");
        deltas(&mut bridge, "resp_1", "item_1", n);
        bridge
    }

    fn assert_played(commands: &[Command]) {
        let [
            Command::Count(Tally::AudioDelta {
                samples: DELTA_SAMPLES,
            }),
            Command::Play(pcm),
        ] = commands
        else {
            panic!("not played: {commands:?}");
        };
        assert_eq!(pcm.len(), 2 * DELTA_SAMPLES as usize);
        assert!(pcm.iter().all(|&b| b == 7));
    }

    /// A late delta of `resp_1` is dropped.
    fn assert_late_delta_dropped(bridge: &mut Bridge, response: Option<&str>) {
        let late = service(bridge, delta_event(response, "item_1"), IDLE);
        assert_eq!(late, [Command::Count(Tally::DeltaAfterBargeIn)]);
    }

    fn truncate(item: &str, audio_end_ms: u64) -> Command {
        Command::Send(ClientEvent::TruncateItem {
            item_id: item.into(),
            content_index: 0,
            audio_end_ms,
        })
    }

    const SPEECH_STARTED: Input<'static> = Input::Service(ServiceEvent::SpeechStarted);
    const BARGE_IN: Command = Command::Count(Tally::BargeIn);
    const CANCEL: Command = Command::Send(ClientEvent::CancelResponse);

    fn done(bridge: &mut Bridge) {
        let event = ServiceEvent::ResponseDone {
            status: Some("completed".into()),
        };
        assert_eq!(
            service(bridge, event, IDLE),
            [Command::EndStream, Command::Count(Tally::Response)]
        );
    }

    #[test]
    fn an_answer_is_played_and_its_stream_ended() {
        let mut bridge = answering(TurnDetection::ServerVad, 10);
        let ended = service(&mut bridge, ServiceEvent::AudioDone, IDLE);
        assert_eq!(ended, [Command::EndStream]);
        done(&mut bridge);
        // Played to the end: the caller talking afterwards cuts nothing.
        assert_eq!(service(&mut bridge, ServiceEvent::SpeechStarted, IDLE), []);
        // Nor does another processor's cut of nothing.
        assert_eq!(
            handle(&mut bridge, Input::Cut(BargeIn::default()), IDLE),
            []
        );
    }

    #[test]
    fn caller_speech_mid_answer_cuts_it_and_truncates_what_was_heard() {
        let mut bridge = answering(TurnDetection::ServerVad, 10); // 1 s received
        let queued = Duration::from_millis(400);
        // 1 000 ms received, 380 ms of it cut: 620 ms heard. The service cancels by itself.
        assert_eq!(
            stop(&mut bridge, SPEECH_STARTED, queued, 380),
            [BARGE_IN, truncate("item_1", 620)]
        );
        // The cut answer's deltas still in flight are dropped, with or without its id.
        assert_late_delta_dropped(&mut bridge, Some("resp_1"));
        assert_late_delta_dropped(&mut bridge, None);
        done(&mut bridge);
        // The bridge's own cut comes back as an Event::BargeIn: nothing more to do.
        assert_eq!(handle(&mut bridge, Input::Cut(own_cut(380)), IDLE), []);
        // The next answer plays.
        created(&mut bridge, "resp_2");
        deltas(&mut bridge, "resp_2", "item_2", 3);
    }

    #[test]
    fn a_delta_of_another_response_ends_the_cut_one() {
        let mut bridge = Bridge::new(TurnDetection::ServerVad);
        // Its response.created missed: the answer starts with its first delta.
        deltas(&mut bridge, "resp_1", "item_1", 2);
        assert_eq!(
            stop(&mut bridge, SPEECH_STARTED, IDLE, 0),
            [BARGE_IN, truncate("item_1", 200)]
        );
        assert_late_delta_dropped(&mut bridge, Some("resp_1"));
        deltas(&mut bridge, "resp_2", "item_2", 1);
    }

    #[test]
    fn with_gateway_vad_the_caller_cuts_the_answer_and_the_bridge_cancels_it() {
        let mut bridge = answering(TurnDetection::GatewayVad, 20); // 2 s received
        // The service's own detection is off: its speech_started means nothing.
        let queued = Duration::from_millis(900);
        assert_eq!(
            service(&mut bridge, ServiceEvent::SpeechStarted, queued),
            []
        );
        assert_eq!(
            stop(&mut bridge, Input::CallerStarted, queued, 900),
            [BARGE_IN, CANCEL, truncate("item_1", 1_100)]
        );
        assert_late_delta_dropped(&mut bridge, Some("resp_1"));
    }

    #[test]
    fn with_gateway_vad_each_utterance_is_committed_and_answered() {
        let mut bridge = Bridge::new(TurnDetection::GatewayVad);
        // Nothing to cut when no answer is playing.
        assert_eq!(handle(&mut bridge, Input::CallerStarted, IDLE), []);
        assert_eq!(
            handle(&mut bridge, Input::CallerStopped, IDLE),
            [
                Command::Send(ClientEvent::CommitAudio),
                Command::Send(ClientEvent::CreateResponse),
            ]
        );
        // A finished answer, played out: the next utterance cuts nothing and cancels nothing.
        created(&mut bridge, "resp_1");
        deltas(&mut bridge, "resp_1", "item_1", 2);
        done(&mut bridge);
        assert_eq!(handle(&mut bridge, Input::CallerStarted, IDLE), []);
        // Still audible: cut, but not cancelled (the service is done with it).
        let queued = Duration::from_millis(60);
        assert_eq!(
            stop(&mut bridge, Input::CallerStarted, queued, 60),
            [BARGE_IN, truncate("item_1", 140)]
        );
    }

    #[test]
    fn with_the_services_turn_detection_the_calls_speech_events_are_ignored() {
        let mut bridge = answering(TurnDetection::SemanticVad, 2);
        let queued = Duration::from_millis(200);
        assert_eq!(handle(&mut bridge, Input::CallerStarted, queued), []);
        assert_eq!(handle(&mut bridge, Input::CallerStopped, queued), []);
    }

    #[test]
    fn a_barge_in_by_another_processor_drops_the_rest_of_the_answer() {
        let mut bridge = answering(TurnDetection::ServerVad, 10);
        // `vad` cut 300 ms of it, and nothing was queued since: no second StopAudio.
        assert_eq!(
            handle(&mut bridge, Input::Cut(cut(700, 300)), IDLE),
            [BARGE_IN, truncate("item_1", 700)]
        );
        assert_late_delta_dropped(&mut bridge, Some("resp_1"));
        // The service's speech_started of the same words: already cut.
        assert_eq!(service(&mut bridge, ServiceEvent::SpeechStarted, IDLE), []);
    }

    #[test]
    fn what_was_queued_after_another_processors_cut_is_cut_too() {
        let mut bridge = answering(TurnDetection::GatewayVad, 10);
        // `vad` cut 300 ms; the bridge queued 200 ms more before it heard of it, which it cuts
        // too: 1 000 - 300 - 200 ms heard.
        let queued = Duration::from_millis(200);
        assert_eq!(
            stop(&mut bridge, Input::Cut(cut(500, 300)), queued, 200),
            [BARGE_IN, CANCEL, truncate("item_1", 500)]
        );
        // Its own cut comes back, and is skipped.
        assert_eq!(handle(&mut bridge, Input::Cut(own_cut(200)), IDLE), []);
    }

    #[test]
    fn an_answer_without_an_item_is_cut_without_a_truncate() {
        let mut bridge = answering(TurnDetection::GatewayVad, 0);
        // Streaming, nothing heard yet: cancelled, nothing to truncate.
        assert_eq!(
            handle(&mut bridge, Input::Cut(BargeIn::default()), IDLE),
            [BARGE_IN, CANCEL]
        );
    }

    #[test]
    fn the_truncate_counts_the_answers_last_item_only() {
        let mut bridge = answering(TurnDetection::ServerVad, 10);
        deltas(&mut bridge, "resp_1", "item_2", 4);
        assert_eq!(
            stop(&mut bridge, SPEECH_STARTED, IDLE, 100),
            [BARGE_IN, truncate("item_2", 300)]
        );
    }

    #[test]
    fn the_bridge_remembers_its_last_own_cuts_only() {
        let mut bridge = Bridge::new(TurnDetection::ServerVad);
        let cuts: Vec<u64> = (1..=OWN_CUTS as u64 + 1).collect();
        for (n, &cut_ms) in cuts.iter().enumerate() {
            created(&mut bridge, &format!("resp_{n}"));
            assert_eq!(stop(&mut bridge, SPEECH_STARTED, IDLE, cut_ms), [BARGE_IN]);
        }
        // The oldest was forgotten: it now reads as another processor's cut.
        created(&mut bridge, "resp_last");
        let oldest = Input::Cut(own_cut(cuts[0]));
        assert_eq!(handle(&mut bridge, oldest, IDLE), [BARGE_IN]);
        created(&mut bridge, "resp_after");
        for &cut_ms in &cuts[1..] {
            assert_eq!(handle(&mut bridge, Input::Cut(own_cut(cut_ms)), IDLE), []);
        }
    }

    #[test]
    fn the_callers_audio_goes_up_as_one_append() {
        let mut bridge = Bridge::new(TurnDetection::ServerVad);
        let pcm = vec![1u8; 3 * 960];
        let input = Input::CallerAudio {
            pcm: &pcm,
            frames: 3,
        };
        let message = append_audio(&pcm);
        assert_eq!(
            handle(&mut bridge, input, IDLE),
            [Command::SendAudio { message, frames: 3 }]
        );
    }

    #[test]
    fn error_events_and_undecodable_deltas_are_reported() {
        let mut bridge = Bridge::new(TurnDetection::ServerVad);
        let error = ServiceEvent::Error {
            message: "rate limited".into(),
        };
        assert_eq!(
            service(&mut bridge, error, IDLE),
            [Command::Error {
                what: "error event",
                detail: "rate limited".into()
            }]
        );
        let broken = ServiceEvent::AudioDelta(AudioDelta {
            response_id: Some("resp_1".into()),
            item_id: Some("item_1".into()),
            delta: Cow::Borrowed("not base64!"),
        });
        let commands = service(&mut bridge, broken, IDLE);
        let [Command::Error { what, .. }] = commands.as_slice() else {
            panic!("{commands:?}");
        };
        assert_eq!(*what, "undecodable audio delta");
        // Other events are ignored.
        assert_eq!(service(&mut bridge, ServiceEvent::Other, IDLE), []);
    }
}
