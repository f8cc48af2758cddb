use super::*;

fn press(spec: &str) -> DtmfEvent {
    spec.parse().unwrap()
}

fn facts(media: Option<bool>, transcription: Option<bool>, hang_up: CallerHangUp) -> CallFacts {
    CallFacts {
        caller: "4:+14255550100".into(),
        participants: vec!["4:+14255550100".into(), "4:+14255550199".into()],
        dtmf: vec![press("5@3s"), press("1@1s"), press("#@3.5s")],
        audio: Duration::from_secs(10),
        hang_up,
        operation_context: Some("answer".into()),
        media,
        transcription,
    }
}

/// The kinds of the callbacks among `actions`, and the other actions by name.
fn summary(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Callback { event, .. } => event.kind.to_owned(),
            Action::Start(t) => format!("start {t:?}"),
            Action::Stop(t) => format!("stop {t:?}"),
            Action::Schedule { at, timer } => match timer {
                Timer::Callback { event, .. } => format!("{} at {at:?}", event.kind),
                Timer::CallerHangsUp => format!("hang up at {at:?}"),
            },
            Action::Cancel(tag) => format!("cancel {tag:?}"),
            Action::CancelAll => "cancel all".into(),
            Action::End => "end".into(),
        })
        .collect()
}

fn method(name: &str, body: Value) -> Input {
    Input::Method {
        name: name.into(),
        body,
    }
}

const S: Duration = Duration::from_secs(1);

#[test]
fn the_caller_hangs_up_when_the_audio_ends_and_the_streams_close_first() {
    let (mut call, actions) =
        CallModel::connect(facts(Some(true), Some(true), CallerHangUp::AfterAudio));
    assert_eq!(
        summary(&actions),
        [
            "CallConnected",
            "ParticipantsUpdated",
            "start Media",
            "start Transcription"
        ]
    );
    let Action::Callback { event, .. } = &actions[0] else {
        panic!()
    };
    assert_eq!(event.operation_context.as_deref(), Some("answer"));
    let opened = call.handle(Input::Stream(Transport::Media, StreamNews::Opened), S);
    assert_eq!(summary(&opened), ["MediaStreamingStarted"]);
    let opened = call.handle(
        Input::Stream(Transport::Transcription, StreamNews::Opened),
        S,
    );
    assert_eq!(summary(&opened), ["TranscriptionStarted"]);
    let ended = call.handle(Input::Stream(Transport::Media, StreamNews::Ended), 10 * S);
    assert_eq!(
        summary(&ended),
        ["MediaStreamingStopped", "cancel all", "stop Transcription"]
    );
    assert!(!call.is_ended());
    // Methods after the caller hung up do nothing.
    assert!(
        call.handle(method("CallMedia_Play", json!({})), 10 * S)
            .is_empty()
    );
    let ended = call.handle(
        Input::Stream(Transport::Transcription, StreamNews::Ended),
        10 * S,
    );
    assert_eq!(
        summary(&ended),
        ["TranscriptionStopped", "CallDisconnected", "end"]
    );
    assert!(call.is_ended());
}

#[test]
fn hang_up_stops_both_streams_and_disconnects_after_them() {
    let (mut call, _) = CallModel::connect(facts(Some(true), Some(true), CallerHangUp::Never));
    call.handle(Input::Stream(Transport::Media, StreamNews::Opened), S);
    let actions = call.handle(method("CallConnection_HangupCall", Value::Null), 2 * S);
    assert_eq!(
        summary(&actions),
        ["cancel all", "stop Media", "stop Transcription"]
    );
    // The transcription transport opens after all: it is closing, so no Started.
    let late = call.handle(
        Input::Stream(Transport::Transcription, StreamNews::Opened),
        2 * S,
    );
    assert!(late.is_empty());
    let a = call.handle(
        Input::Stream(Transport::Transcription, StreamNews::Ended),
        2 * S,
    );
    assert!(a.is_empty(), "{:?}", summary(&a));
    let b = call.handle(Input::Stream(Transport::Media, StreamNews::Ended), 2 * S);
    assert_eq!(
        summary(&b),
        ["MediaStreamingStopped", "CallDisconnected", "end"]
    );
}

#[test]
fn a_stream_that_cannot_open_fails_and_the_caller_hangs_up_after_the_audio() {
    let (mut call, _) = CallModel::connect(facts(Some(true), None, CallerHangUp::AfterAudio));
    let actions = call.handle(
        Input::Stream(Transport::Media, StreamNews::Failed("refused".into())),
        S,
    );
    assert_eq!(
        summary(&actions),
        ["MediaStreamingFailed", "hang up at 10s"]
    );
    let Action::Callback { event, .. } = &actions[0] else {
        panic!()
    };
    assert_eq!(event.result.message, "refused");
    assert_eq!(
        event.fields["mediaStreamingUpdate"]["mediaStreamingStatus"],
        "mediaStreamingFailed"
    );
    let end = call.handle(Input::Due(Timer::CallerHangsUp), 10 * S);
    assert_eq!(summary(&end), ["cancel all", "CallDisconnected", "end"]);
}

#[test]
fn without_media_the_caller_hangs_up_at_the_length_of_the_audio_or_as_scripted() {
    let (_, actions) = CallModel::connect(facts(Some(false), None, CallerHangUp::AfterAudio));
    assert_eq!(
        summary(&actions),
        ["CallConnected", "ParticipantsUpdated", "hang up at 10s"]
    );
    let (_, actions) = CallModel::connect(facts(None, None, CallerHangUp::After(3 * S)));
    assert_eq!(actions.len(), 3);
    assert_eq!(summary(&actions)[2], "hang up at 3s");
    // Media streaming started later by the application.
    let (mut call, _) = CallModel::connect(facts(Some(false), None, CallerHangUp::Never));
    let actions = call.handle(
        method(
            "CallMedia_StartMediaStreaming",
            json!({"operationContext": "later"}),
        ),
        S,
    );
    assert_eq!(summary(&actions), ["start Media"]);
    let started = call.handle(Input::Stream(Transport::Media, StreamNews::Opened), S);
    let Action::Callback { event, .. } = &started[0] else {
        panic!()
    };
    assert_eq!(event.operation_context.as_deref(), Some("later"));
}

#[test]
fn recognize_collects_the_presses_after_it_starts() {
    let (mut call, _) = CallModel::connect(facts(None, None, CallerHangUp::Never));
    let body = json!({
        "recognizeInputType": "dtmf",
        "operationContext": "menu",
        "recognizeOptions": {"targetParticipant": {}, "dtmfOptions": {"maxTonesToCollect": 2}},
    });
    let actions = call.handle(method("CallMedia_Recognize", body), 2 * S);
    assert_eq!(summary(&actions), ["RecognizeCompleted at 3.5s"]);
    let Action::Schedule { timer, .. } = &actions[0] else {
        panic!()
    };
    let Timer::Callback { event, .. } = timer else {
        panic!()
    };
    assert_eq!(
        event.fields["dtmfResult"]["tones"],
        json!(["five", "pound"])
    );
    assert_eq!(event.fields["recognitionType"], "dtmf");
    assert_eq!(event.result.sub_code, 8531);
    assert_eq!(event.operation_context.as_deref(), Some("menu"));
}

#[test]
fn recognition_ends_on_max_tones_a_stop_tone_a_gap_or_silence() {
    let presses = [press("1@1s"), press("2@1.5s"), press("#@2s"), press("9@9s")];
    let params = |max, stop: &[&str], silence| RecognizeParams {
        max_tones: max,
        stop_tones: stop.iter().map(|s| s.to_string()).collect(),
        initial_silence: Duration::from_secs(silence),
        inter_tone: 2 * S,
        prompt: Duration::ZERO,
    };
    let ms = Duration::from_millis;
    assert_eq!(
        recognize_dtmf(&presses, Duration::ZERO, &params(2, &[], 5)),
        (
            ms(1500),
            Recognized::Tones(vec!["one", "two"], results::MAX_DIGITS)
        )
    );
    assert_eq!(
        recognize_dtmf(&presses, Duration::ZERO, &params(9, &["pound"], 5)),
        (
            2 * S,
            Recognized::Tones(vec!["one", "two"], results::STOP_TONE)
        )
    );
    assert_eq!(
        recognize_dtmf(&presses, Duration::ZERO, &params(9, &[], 5)),
        (
            4 * S,
            Recognized::Tones(vec!["one", "two", "pound"], results::INTER_DIGIT_TIMEOUT)
        )
    );
    // Started after the presses: silence until 3 s + 5 s; the 9 at 9 s is too late.
    assert_eq!(
        recognize_dtmf(&presses, 3 * S, &params(1, &[], 5)),
        (8 * S, Recognized::Silence)
    );
    assert_eq!(
        recognize_dtmf(&presses, 3 * S, &params(1, &[], 6)).1,
        Recognized::Tones(vec!["nine"], results::MAX_DIGITS)
    );
}

#[test]
fn plays_queue_and_cancel_all_cancels_what_is_under_way() {
    let (mut call, _) = CallModel::connect(facts(None, None, CallerHangUp::Never));
    let file = json!({"playSources": [{"kind": "file", "file": {"uri": "https://x/a.wav"}}], "operationContext": "a"});
    let text = json!({"playSources": [{"kind": "text", "text": {"text": "0123456789"}}], "operationContext": "b"});
    let first = call.handle(method("CallMedia_Play", file), S);
    assert_eq!(summary(&first), ["PlayStarted", "PlayCompleted at 2s"]);
    let second = call.handle(method("CallMedia_Play", text), S);
    assert_eq!(
        summary(&second),
        ["PlayStarted at 2s", "PlayCompleted at 2.65s"]
    );
    let Action::Schedule { timer, .. } = first[1].clone() else {
        panic!()
    };
    let done = call.handle(Input::Due(timer), 2 * S);
    assert_eq!(summary(&done), ["PlayCompleted"]);
    let canceled = call.handle(
        method("CallMedia_CancelAllMediaOperations", json!({})),
        2 * S,
    );
    assert_eq!(summary(&canceled), ["cancel Play(2)", "PlayCanceled"]);
    let Action::Callback { event, .. } = &canceled[1] else {
        panic!()
    };
    assert_eq!(event.operation_context.as_deref(), Some("b"));
}

#[test]
fn continuous_dtmf_reports_each_later_press_until_stopped() {
    let (mut call, _) = CallModel::connect(facts(None, None, CallerHangUp::Never));
    let actions = call.handle(
        method("CallMedia_StartContinuousDtmfRecognition", json!({})),
        2 * S,
    );
    assert_eq!(
        summary(&actions),
        [
            "ContinuousDtmfRecognitionToneReceived at 3s",
            "ContinuousDtmfRecognitionToneReceived at 3.5s"
        ]
    );
    let Action::Schedule {
        timer: Timer::Callback { event, .. },
        ..
    } = &actions[1]
    else {
        panic!()
    };
    assert_eq!(event.fields["tone"], "pound");
    assert_eq!(event.fields["sequenceId"], 2);
    let stopped = call.handle(
        method("CallMedia_StopContinuousDtmfRecognition", json!({})),
        3 * S,
    );
    assert_eq!(
        summary(&stopped),
        ["cancel ContinuousDtmf", "ContinuousDtmfRecognitionStopped"]
    );
}

#[test]
fn a_transfer_is_accepted_then_the_call_disconnects() {
    let (mut call, _) = CallModel::connect(facts(None, None, CallerHangUp::Never));
    let target = json!({"kind": "phoneNumber", "rawId": "4:+14255550123", "phoneNumber": {"value": "+14255550123"}});
    let actions = call.handle(
        method(
            "CallConnection_TransferToParticipant",
            json!({"targetParticipant": target, "operationContext": "to sales"}),
        ),
        S,
    );
    assert_eq!(
        summary(&actions),
        [
            "CallTransferAccepted",
            "cancel all",
            "CallDisconnected",
            "end"
        ]
    );
    let Action::Callback { event, .. } = &actions[0] else {
        panic!()
    };
    assert_eq!(event.fields["transferTarget"], target);
    assert_eq!(event.fields["transferee"]["rawId"], "4:+14255550100");
    assert_eq!(event.operation_context.as_deref(), Some("to sales"));
}

#[test]
fn participants_come_and_go() {
    let (mut call, _) = CallModel::connect(facts(None, None, CallerHangUp::Never));
    let agent = json!({"kind": "communicationUser", "rawId": "8:acs:agent", "communicationUser": {"id": "8:acs:agent"}});
    let added = call.handle(
        method(
            "CallConnection_AddParticipant",
            json!({"participantToAdd": agent}),
        ),
        S,
    );
    assert_eq!(
        summary(&added),
        ["AddParticipantSucceeded", "ParticipantsUpdated"]
    );
    let Action::Callback { event, .. } = &added[1] else {
        panic!()
    };
    assert_eq!(event.fields["participants"].as_array().unwrap().len(), 3);
    assert_eq!(event.fields["sequenceNumber"], 2);
    let removed = call.handle(
        method(
            "CallConnection_RemoveParticipant",
            json!({"participantToRemove": agent}),
        ),
        S,
    );
    let Action::Callback { event, .. } = &removed[1] else {
        panic!()
    };
    assert_eq!(event.fields["participants"].as_array().unwrap().len(), 2);
}
