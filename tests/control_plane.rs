//! The Call Automation client (`mediagate-acs`) against the emulator's fake of the REST API
//! (`mediagate emulate --control-plane`), through real sockets: every method signed, valid
//! against the published reference, and retried safely; and the fake itself checked against
//! Microsoft's own Python SDK, so the fake's verifier and validator are the service's, not
//! ours.

use std::time::{Duration, Instant};

use mediagate::emulator::control::{ControlPlane, ControlPlaneOptions, RecordedRequest};
use mediagate_acs::models::*;
use mediagate_acs::{
    CallAutomationClient, ClientOptions, ConnectionString, Credential, TokenFrom, TokenSource,
};
use serde_json::json;

use crate::common::venv;

const KEY: &[u8] = b"the resource's access key, 32+ bytes";

async fn fake() -> ControlPlane {
    ControlPlane::start(ControlPlaneOptions::local(KEY))
        .await
        .unwrap()
}

fn client(fake: &ControlPlane) -> CallAutomationClient {
    let cs: ConnectionString = fake.connection_string().parse().unwrap();
    let mut options = ClientOptions::from_connection_string(&cs);
    options.retry.base_delay = Duration::from_millis(50);
    CallAutomationClient::new(options).unwrap()
}

fn streaming(url: &str) -> MediaStreamingOptions {
    MediaStreamingOptions {
        transport_url: url.to_owned(),
        transport_type: StreamingTransportType::Websocket,
        content_type: MediaStreamingContentType::Audio,
        audio_channel_type: AudioChannelType::Unmixed,
        start_media_streaming: Some(true),
        enable_bidirectional: Some(true),
        audio_format: Some(AudioFormat::Pcm24KMono),
    }
}

fn transcription(url: &str) -> TranscriptionOptions {
    TranscriptionOptions {
        transport_url: url.to_owned(),
        transport_type: StreamingTransportType::Websocket,
        locale: "en-US".to_owned(),
        speech_recognition_model_endpoint_id: None,
        start_transcription: Some(true),
        enable_intermediate_results: Some(true),
    }
}

/// Every request was authenticated, valid and answered with success.
fn assert_all_accepted(requests: &[RecordedRequest]) {
    for r in requests {
        assert!(
            r.status < 400 && r.error.is_none(),
            "{} {} ({:?}) got {}: {:?}\n{}",
            r.method,
            r.path,
            r.operation,
            r.status,
            r.error,
            r.body
        );
    }
}

#[tokio::test]
async fn every_method_the_gateway_uses_is_signed_and_valid_against_the_reference() {
    let fake = fake().await;
    let client = client(&fake);
    let caller = CommunicationIdentifier::phone("+14255550100");
    let incoming = fake.incoming_call("4:+14255550100", "4:+14255550199");

    let call = client
        .answer_call(&AnswerCallRequest {
            incoming_call_context: incoming.context.clone(),
            callback_uri: "https://gateway.example/acs/callbacks/c1".to_owned(),
            operation_context: Some("answer".to_owned()),
            media_streaming_options: Some(streaming("wss://gateway.example/ws/calls/c1")),
            transcription_options: Some(transcription("wss://gateway.example/ws/calls/c1")),
            ..AnswerCallRequest::default()
        })
        .await
        .unwrap();
    let id = call.call_connection_id.clone();
    assert!(!id.is_empty());
    assert_eq!(
        call.call_connection_state,
        Some(CallConnectionState::Connecting)
    );
    assert_eq!(
        call.media_streaming_subscription.unwrap().state.as_deref(),
        Some("active")
    );
    let got = client.get_call(&id).await.unwrap();
    assert_eq!(
        got.callback_uri.as_deref(),
        Some("https://gateway.example/acs/callbacks/c1")
    );

    client
        .play(
            &id,
            &PlayRequest {
                play_sources: vec![PlaySource::file("https://gateway.example/clips/hello.wav")],
                play_to: vec![caller.clone()],
                operation_context: Some("greeting".to_owned()),
                ..PlayRequest::default()
            },
        )
        .await
        .unwrap();
    client
        .recognize(
            &id,
            &RecognizeRequest {
                recognize_input_type: RecognizeInputType::Dtmf,
                play_prompt: Some(PlaySource::text(
                    "Press 1 for sales",
                    Some("en-US-JennyNeural"),
                )),
                play_prompts: vec![],
                interrupt_call_media_operation: Some(true),
                recognize_options: RecognizeOptions {
                    target_participant: caller.clone(),
                    initial_silence_timeout_in_seconds: Some(5),
                    dtmf_options: Some(DtmfOptions {
                        inter_tone_timeout_in_seconds: Some(2),
                        max_tones_to_collect: Some(1),
                        stop_tones: vec![DtmfTone::Pound],
                    }),
                    ..RecognizeOptions::default()
                },
                operation_context: Some("menu".to_owned()),
                operation_callback_uri: None,
            },
        )
        .await
        .unwrap();
    let dtmf = ContinuousDtmfRecognitionRequest {
        target_participant: caller.clone(),
        ..ContinuousDtmfRecognitionRequest::default()
    };
    client.start_continuous_dtmf(&id, &dtmf).await.unwrap();
    client.stop_continuous_dtmf(&id, &dtmf).await.unwrap();
    let sent = client
        .send_dtmf_tones(
            &id,
            &SendDtmfTonesRequest {
                tones: vec![DtmfTone::One, DtmfTone::Asterisk],
                target_participant: caller.clone(),
                operation_context: Some("tones".to_owned()),
                operation_callback_uri: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(sent.operation_context.as_deref(), Some("tones"));
    client
        .hold(
            &id,
            &HoldRequest {
                target_participant: caller.clone(),
                ..HoldRequest::default()
            },
        )
        .await
        .unwrap();
    client
        .unhold(
            &id,
            &UnholdRequest {
                target_participant: caller.clone(),
                operation_context: None,
            },
        )
        .await
        .unwrap();
    let locale = TranscriptionRequest {
        locale: Some("en-US".to_owned()),
        ..TranscriptionRequest::default()
    };
    client.start_transcription(&id, &locale).await.unwrap();
    client.update_transcription(&id, &locale).await.unwrap();
    client
        .stop_transcription(&id, &StopTranscriptionRequest::default())
        .await
        .unwrap();
    client
        .start_media_streaming(&id, &MediaStreamingRequest::default())
        .await
        .unwrap();
    client
        .stop_media_streaming(&id, &MediaStreamingRequest::default())
        .await
        .unwrap();
    client.cancel_all_media_operations(&id).await.unwrap();
    client.participants(&id).await.unwrap();
    client.participant(&id, "4:+14255550100").await.unwrap();
    let agent = CommunicationIdentifier::user("8:acs:agent-1");
    let added = client
        .add_participant(
            &id,
            &AddParticipantRequest {
                participant_to_add: agent.clone(),
                invitation_timeout_in_seconds: Some(30),
                ..AddParticipantRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(added.participant.unwrap().identifier, agent);
    let invitation = added.invitation_id.clone().unwrap();
    let cancelled = client
        .cancel_add_participant(
            &id,
            &CancelAddParticipantRequest {
                invitation_id: invitation.clone(),
                ..CancelAddParticipantRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cancelled.invitation_id, Some(invitation));
    client
        .mute_participants(
            &id,
            &MuteParticipantsRequest {
                target_participants: vec![agent.clone()],
                operation_context: None,
            },
        )
        .await
        .unwrap();
    client
        .remove_participant(
            &id,
            &RemoveParticipantRequest {
                participant_to_remove: agent,
                ..RemoveParticipantRequest::default()
            },
        )
        .await
        .unwrap();
    let recording = client
        .start_recording(&StartCallRecordingRequest {
            call_connection_id: Some(id.clone()),
            recording_content_type: Some("audio".to_owned()),
            recording_channel_type: Some("unmixed".to_owned()),
            recording_format_type: Some("wav".to_owned()),
            ..StartCallRecordingRequest::default()
        })
        .await
        .unwrap();
    client
        .pause_recording(&recording.recording_id)
        .await
        .unwrap();
    assert_eq!(
        client
            .recording(&recording.recording_id)
            .await
            .unwrap()
            .recording_state
            .as_deref(),
        Some("inactive")
    );
    client
        .resume_recording(&recording.recording_id)
        .await
        .unwrap();
    client
        .stop_recording(&recording.recording_id)
        .await
        .unwrap();
    let transferred = client
        .transfer(
            &id,
            &TransferToParticipantRequest {
                target_participant: CommunicationIdentifier::phone("+14255550123"),
                operation_context: Some("to sales".to_owned()),
                ..TransferToParticipantRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(transferred.operation_context.as_deref(), Some("to sales"));
    client.hang_up(&id).await.unwrap();
    // A hung-up call takes no more actions: the fake keeps state as the service does.
    let after = client
        .play(
            &id,
            &PlayRequest {
                play_sources: vec![PlaySource::file("https://x/a.wav")],
                ..PlayRequest::default()
            },
        )
        .await;
    assert_eq!(after.unwrap_err().status(), Some(400));

    let second = fake.incoming_call("4:+14255550101", "4:+14255550199");
    client
        .reject_call(&RejectCallRequest {
            incoming_call_context: second.context.clone(),
            call_reject_reason: Some(CallRejectReason::Busy),
        })
        .await
        .unwrap();
    // A context is used once.
    let again = client
        .redirect_call(&RedirectCallRequest {
            incoming_call_context: second.context,
            target: CommunicationIdentifier::phone("+14255550123"),
        })
        .await;
    assert_eq!(again.unwrap_err().status(), Some(400));
    let third = fake.incoming_call("4:+14255550102", "4:+14255550199");
    client
        .redirect_call(&RedirectCallRequest {
            incoming_call_context: third.context,
            target: CommunicationIdentifier::user("8:acs:queue"),
        })
        .await
        .unwrap();
    let call = client
        .create_call(&CreateCallRequest {
            targets: vec![CommunicationIdentifier::phone("+14255550123")],
            source_caller_id_number: Some(PhoneNumber {
                value: "+14255550199".to_owned(),
                ..PhoneNumber::default()
            }),
            callback_uri: "https://gateway.example/acs/callbacks/c2".to_owned(),
            media_streaming_options: Some(streaming("wss://gateway.example/ws/calls/c2")),
            ..CreateCallRequest::default()
        })
        .await
        .unwrap();
    client.terminate(&call.call_connection_id).await.unwrap();
    let joined = client
        .connect(&ConnectRequest {
            call_locator: CallLocator {
                server_call_id: Some(incoming.server_call_id.clone()),
                kind: Some("serverCallLocator".to_owned()),
                ..CallLocator::default()
            },
            callback_uri: "https://gateway.example/acs/callbacks/c3".to_owned(),
            ..ConnectRequest::default()
        })
        .await
        .unwrap();
    client.hang_up(&joined.call_connection_id).await.unwrap();

    let requests = fake.requests();
    let (refused, accepted): (Vec<_>, Vec<_>) =
        requests.iter().cloned().partition(|r| r.status >= 400);
    assert_all_accepted(&accepted);
    // The two refusals are the fake's call state, not the requests' form.
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused.iter().all(|r| r.status == 400 && r.error.is_some()));
    let mut methods: Vec<&str> = accepted
        .iter()
        .filter_map(|r| r.operation.as_deref())
        .collect();
    methods.sort_unstable();
    methods.dedup();
    // All 33 methods of the reference.
    assert_eq!(methods.len(), 33, "{methods:?}");
    for r in &requests {
        assert_eq!(r.api_version.as_deref(), Some("2026-03-12"));
        // Every POST is repeatable, with a UUID and an RFC 1123 date the fake parsed.
        assert_eq!(
            r.repeatability.is_some(),
            r.method == "POST",
            "{} {}",
            r.method,
            r.path
        );
    }
}

#[tokio::test]
async fn a_deliberately_wrong_field_is_refused_with_the_services_error() {
    let fake = fake().await;
    let client = client(&fake);
    let incoming = fake.incoming_call("4:+14255550100", "4:+14255550199");
    let mut body = json!({
        "incomingCallContext": incoming.context,
        "callbackUri": "https://gateway.example/acs/callbacks/c1",
        "mediaStreamingOptions": {
            "transportUrl": "wss://gateway.example/ws", "transportType": "websocket",
            "contentType": "audio", "audioChannelType": "mixed", "audioFormat": "pcm16KMono"
        }
    });
    // Misspelled, of the wrong type, of an unknown value, missing.
    let cases = [
        (
            "/mediaStreamingOptions/audioChanelType",
            json!("mixed"),
            "answerCallRequest.mediaStreamingOptions.audioChanelType",
        ),
        (
            "/mediaStreamingOptions/startMediaStreaming",
            json!("true"),
            "answerCallRequest.mediaStreamingOptions.startMediaStreaming",
        ),
        (
            "/mediaStreamingOptions/audioFormat",
            json!("pcm48KMono"),
            "answerCallRequest.mediaStreamingOptions.audioFormat",
        ),
    ];
    for (pointer, value, target) in cases {
        let mut wrong = body.clone();
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        wrong.pointer_mut(parent).unwrap()[field] = value;
        let error = client
            .send_json("POST", "calling/callConnections:answer", Some(&wrong))
            .await
            .unwrap_err();
        let mediagate_acs::Error::Status {
            status,
            code,
            message,
            attempts,
        } = &error
        else {
            panic!("{error}");
        };
        assert_eq!(
            (*status, code.as_str(), *attempts),
            (400, "BadRequest", 1),
            "{error}"
        );
        assert!(message.contains(field), "{message}");
        let last = fake.requests().pop().unwrap();
        assert_eq!(last.error.as_deref(), Some(message.as_str()));
        assert!(last.body.pointer(pointer).is_some(), "{target}");
    }
    body["mediaStreamingOptions"]
        .as_object_mut()
        .unwrap()
        .remove("transportUrl");
    let error = client
        .send_json("POST", "calling/callConnections:answer", Some(&body))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("`transportUrl` is required"),
        "{error}"
    );
    // Nothing was answered.
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn a_request_signed_with_another_key_or_token_is_refused_and_not_retried() {
    let fake = fake().await;
    let endpoint = url::Url::parse(&fake.endpoint()).unwrap();
    let mut options = ClientOptions::from_connection_string(&ConnectionString {
        endpoint: endpoint.clone(),
        access_key: b"another key".to_vec().into(),
    });
    options.retry.base_delay = Duration::from_millis(10);
    let forger = CallAutomationClient::new(options.clone()).unwrap();
    let error = forger.get_call("any").await.unwrap_err();
    let mediagate_acs::Error::Status {
        status,
        code,
        attempts,
        ..
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!((*status, code.as_str(), *attempts), (401, "Denied", 1));
    assert!(
        fake.requests()[0]
            .error
            .as_deref()
            .unwrap()
            .contains("signature does not match")
    );

    // An Entra token from a command: accepted when it is the resource's, refused otherwise.
    let fake = ControlPlane::start(ControlPlaneOptions {
        bearer_token: Some("entra.token.for-the-resource".to_owned()),
        ..ControlPlaneOptions::local(KEY)
    })
    .await
    .unwrap();
    let incoming = fake.incoming_call("4:+1", "4:+2");
    for (token, ok) in [
        ("entra.token.for-the-resource", true),
        ("entra.token.for-another", false),
    ] {
        options.endpoint = url::Url::parse(&fake.endpoint()).unwrap();
        options.credential = Credential::Entra(std::sync::Arc::new(TokenSource::new(
            TokenFrom::Command(vec!["echo".to_owned(), token.to_owned()]),
        )));
        let client = CallAutomationClient::new(options.clone()).unwrap();
        let result = client
            .reject_call(&RejectCallRequest {
                incoming_call_context: incoming.context.clone(),
                call_reject_reason: None,
            })
            .await;
        assert_eq!(result.is_ok(), ok, "{result:?}");
        if !ok {
            assert_eq!(result.unwrap_err().status(), Some(401));
        }
    }
}

#[tokio::test]
async fn throttled_requests_wait_for_retry_after_and_take_effect_once() {
    let fake = fake().await;
    let client = client(&fake);
    let incoming = fake.incoming_call("4:+14255550100", "4:+14255550199");
    fake.throttle(429, Some("1"), 1);
    let started = Instant::now();
    let call = client
        .answer_call(&AnswerCallRequest {
            incoming_call_context: incoming.context.clone(),
            callback_uri: "https://gateway.example/acs/callbacks/c1".to_owned(),
            ..AnswerCallRequest::default()
        })
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 not honoured"
    );
    let answers: Vec<_> = fake.requests();
    assert_eq!(
        answers.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 200]
    );
    // The same request, sent again: one id, one first-sent time.
    assert_eq!(answers[0].repeatability, answers[1].repeatability);
    assert_eq!(fake.calls().len(), 1);

    // 503s without Retry-After: exponential back-off, then success on the third try.
    fake.throttle(503, None, 2);
    client.get_call(&call.call_connection_id).await.unwrap();
    assert_eq!(fake.requests().len(), 5);

    // The repeatability id makes a replay harmless: the fake answers the first result again
    // instead of answering the call twice (a context is good for one answer).
    let id = answers[1].repeatability.clone().unwrap();
    let replay = raw_answer_replay(&fake, &incoming.context, &id).await;
    assert_eq!(replay["callConnectionId"], call.call_connection_id.as_str());
    assert_eq!(fake.calls().len(), 1);

    // A Retry-After longer than the client waits ends the tries at once.
    fake.throttle(429, Some("3600"), 1);
    let started = Instant::now();
    let error = client.get_call(&call.call_connection_id).await.unwrap_err();
    assert_eq!(error.status(), Some(429));
    assert!(started.elapsed() < Duration::from_secs(5));
    // And a client error is not retried.
    assert_eq!(
        client.get_call("no-such-call").await.unwrap_err().status(),
        Some(404)
    );
}

/// Sends the answer again with a given repeatability id, signed by hand.
async fn raw_answer_replay(
    fake: &ControlPlane,
    context: &str,
    id: &(String, String),
) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({"incomingCallContext": context, "callbackUri": "https://gateway.example/acs/callbacks/c1"}).to_string();
    let url = url::Url::parse(&fake.endpoint()).unwrap();
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let path = "/calling/callConnections:answer?api-version=2026-03-12";
    let signature = mediagate_acs::sign::sign(
        KEY,
        "POST",
        path,
        &host,
        body.as_bytes(),
        time::OffsetDateTime::now_utc(),
    );
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         x-ms-date: {}\r\nx-ms-content-sha256: {}\r\nAuthorization: {}\r\nRepeatability-Request-ID: {}\r\n\
         Repeatability-First-Sent: {}\r\nConnection: close\r\n\r\n{body}",
        body.len(),
        signature.date,
        signature.content_sha256,
        signature.authorization,
        id.0,
        id.1
    );
    let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

/// Microsoft's Python SDK (`azure-communication-callautomation`, PyPI) drives the fake over
/// HTTPS: its signatures pass the fake's verifier and its bodies the fake's validator, so both
/// are the service's scheme and not merely our client's; and for the same answer, the SDK's body
/// and ours are the same JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsofts_python_sdk_is_accepted_by_the_fake_and_agrees_with_our_client() {
    let venv = tokio::task::spawn_blocking(|| {
        venv::with_package("acs-venv", "azure-communication-callautomation==1.6.0")
    })
    .await
    .unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    let fake = ControlPlane::start(ControlPlaneOptions {
        tls: Some((vec![cert.der().to_vec()], signing_key.serialize_der())),
        ..ControlPlaneOptions::local(KEY)
    })
    .await
    .unwrap();
    let first = fake.incoming_call("4:+14255550100", "4:+14255550199");
    let second = fake.incoming_call("4:+14255550101", "4:+14255550199");
    let script = dir.path().join("sdk.py");
    std::fs::write(&script, PYTHON_SCRIPT).unwrap();
    let output = tokio::process::Command::new(venv.join("bin/python"))
        .arg(&script)
        .args([&fake.connection_string(), &first.context, &second.context])
        .env("REQUESTS_CA_BUNDLE", &ca)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "the SDK script failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let sdk_requests = fake.requests();
    assert_all_accepted(&sdk_requests);
    let operations: Vec<&str> = sdk_requests
        .iter()
        .filter_map(|r| r.operation.as_deref())
        .collect();
    assert_eq!(
        operations,
        [
            "AnswerCall",
            "CallMedia_Play",
            "CallMedia_Recognize",
            "CallConnection_TransferToParticipant",
            "CallConnection_HangupCall",
            "RejectCall"
        ]
    );
    for r in &sdk_requests {
        assert_eq!(
            r.api_version.as_deref(),
            Some(mediagate_acs::DEFAULT_API_VERSION)
        );
    }

    // The same answer from our client, over the same TLS, trusting the same certificate.
    let third = fake.incoming_call("4:+14255550102", "4:+14255550199");
    let cs: ConnectionString = fake.connection_string().parse().unwrap();
    let mut options = ClientOptions::from_connection_string(&cs);
    options.extra_roots = vec![cert.der().clone()];
    let ours = CallAutomationClient::new(options).unwrap();
    ours.answer_call(&AnswerCallRequest {
        incoming_call_context: third.context.clone(),
        callback_uri: "https://gateway.example/acs/callbacks/sdk".to_owned(),
        operation_context: Some("sdk".to_owned()),
        media_streaming_options: Some(streaming("wss://gateway.example/ws/calls/sdk")),
        transcription_options: Some(transcription("wss://gateway.example/ws/calls/sdk")),
        ..AnswerCallRequest::default()
    })
    .await
    .unwrap();
    let requests = fake.requests();
    let ours = requests.last().unwrap();
    let mut sdk = sdk_requests[0].body.clone();
    sdk["incomingCallContext"] = json!(third.context);
    assert_eq!(ours.body, sdk, "our answer differs from the SDK's");
}

const PYTHON_SCRIPT: &str = r#"
import sys
from azure.communication.callautomation import (
    CallAutomationClient, MediaStreamingOptions, TranscriptionOptions, StreamingTransportType,
    MediaStreamingContentType, MediaStreamingAudioChannelType, AudioFormat, FileSource,
    PhoneNumberIdentifier, RecognizeInputType, TextSource, DtmfTone,
)

connection_string, first, second = sys.argv[1:4]
client = CallAutomationClient.from_connection_string(connection_string)
url = "wss://gateway.example/ws/calls/sdk"
result = client.answer_call(
    incoming_call_context=first,
    callback_url="https://gateway.example/acs/callbacks/sdk",
    operation_context="sdk",
    media_streaming=MediaStreamingOptions(
        transport_url=url,
        transport_type=StreamingTransportType.WEBSOCKET,
        content_type=MediaStreamingContentType.AUDIO,
        audio_channel_type=MediaStreamingAudioChannelType.UNMIXED,
        start_media_streaming=True,
        enable_bidirectional=True,
        audio_format=AudioFormat.PCM24_K_MONO,
    ),
    transcription=TranscriptionOptions(
        transport_url=url,
        transport_type=StreamingTransportType.WEBSOCKET,
        locale="en-US",
        start_transcription=True,
        enable_intermediate_results=True,
    ),
)
call = client.get_call_connection(result.call_connection_id)
caller = PhoneNumberIdentifier("+14255550100")
call.play_media(FileSource(url="https://gateway.example/clips/hello.wav"), play_to=[caller], operation_context="greeting")
call.start_recognizing_media(
    input_type=RecognizeInputType.DTMF,
    target_participant=caller,
    play_prompt=TextSource(text="Press 1 for sales", voice_name="en-US-JennyNeural"),
    dtmf_max_tones_to_collect=1,
    dtmf_stop_tones=[DtmfTone.POUND],
    operation_context="menu",
)
call.transfer_call_to_participant(PhoneNumberIdentifier("+14255550123"), operation_context="to sales")
call.hang_up(is_for_everyone=False)
client.reject_call(incoming_call_context=second)
print("ok")
"#;
