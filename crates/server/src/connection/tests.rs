//! The machine's decisions, input by input, and the driver's panic containment.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mediagate_audio::{AudioFormat, AudioSource};
use mediagate_protocol::Timestamp;

use super::ConnectionInfo;
use super::close_code;
use super::machine::{Action, CallEvent, End, Input, LogLine, Machine, MachineConfig, ReadError};
use crate::session::{EndReason, TransportKind, TransportReport};

pub(super) const METADATA_16K: &str =
    include_str!("../../../protocol/tests/vectors/media-01-audio-metadata-16k.json");
pub(super) const FRAME_MIXED: &str =
    include_str!("../../../protocol/tests/vectors/media-03-audio-data-mixed.json");
const FRAME_UNMIXED: &str =
    include_str!("../../../protocol/tests/vectors/media-04-audio-data-unmixed.json");
const DTMF: &str = include_str!("../../../protocol/tests/vectors/media-08-dtmf.json");
const TRANSCRIPTION_METADATA: &str =
    include_str!("../../../protocol/tests/vectors/transcription-01-metadata.json");
const BAD_RATE: &str =
    include_str!("../../../protocol/tests/vectors/bad-06-metadata-bad-rate.json");

pub(super) fn config() -> MachineConfig {
    MachineConfig {
        max_message_bytes: 1024 * 1024,
        max_consecutive_bad_messages: 5,
        max_bad_messages: 20,
        first_message_timeout: Duration::from_secs(10),
        idle_timeout: Some(Duration::from_secs(30)),
        max_participants_per_call: 2,
        default_format: AudioFormat::mono(16_000),
    }
}

pub(super) fn machine_with(config: MachineConfig, query: &[(&str, &str)], now: Instant) -> Machine {
    let query: BTreeMap<String, String> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let info = ConnectionInfo {
        id: 7,
        remote_addr: None,
        path: "/ws".to_owned(),
        query: query.clone(),
    };
    let connected_at = Timestamp::from_unix_micros(1_700_000_000_000_000);
    let report = TransportReport::new(
        TransportKind::Media,
        info.id,
        None,
        info.path.clone(),
        query,
        connected_at,
    );
    Machine::new(config, info, report, connected_at, now)
}

fn machine(query: &[(&str, &str)]) -> (Machine, Instant) {
    let now = Instant::now();
    (machine_with(config(), query, now), now)
}

fn drain(machine: &mut Machine) -> Vec<Action> {
    std::iter::from_fn(|| machine.poll_action()).collect()
}

fn feed(machine: &mut Machine, text: &str, now: Instant) -> Vec<Action> {
    machine.handle(Input::Text(text), now);
    drain(machine)
}

fn end_of(actions: &[Action]) -> Option<&End> {
    actions.iter().find_map(|a| match a {
        Action::End(end) => Some(end),
        _ => None,
    })
}

fn metadata(rate: i64, channels: i64, encoding: &str) -> String {
    serde_json::json!({"kind": "AudioMetadata", "audioMetadata": {
        "subscriptionId": "sub", "encoding": encoding, "sampleRate": rate, "channels": channels}})
    .to_string()
}

fn dtmf(tone: &str) -> String {
    serde_json::json!({"kind": "DtmfData", "dtmfData": {"data": tone}}).to_string()
}

#[test]
fn a_valid_stream_opens_the_call_once_then_pushes_each_frame() {
    let (mut m, now) = machine(&[("callId", "abc")]);
    assert!(drain(&mut m).is_empty());
    let actions = feed(&mut m, METADATA_16K, now);
    let [Action::OpenCall(opening)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(opening.identity.value, "abc");
    assert_eq!(opening.identity.source, "query:callId");
    assert!(opening.keys.contains("abc"));
    assert_eq!(opening.format, AudioFormat::mono(16_000));
    for _ in 0..3 {
        let actions = feed(&mut m, FRAME_MIXED, now);
        let [Action::PushFrame(frame)] = &actions[..] else {
            panic!("{actions:?}")
        };
        assert_eq!(frame.pcm.len(), 640);
        assert_eq!(frame.source, AudioSource::Mixed);
    }
    assert_eq!(m.report().frames_received, 3);
    m.handle(Input::Close(Some((1000, "bye"))), now);
    let actions = drain(&mut m);
    assert!(matches!(actions[0], Action::FlushCloseReply));
    let end = end_of(&actions).unwrap();
    assert_eq!(
        (end.reason, end.code, end.detail.as_str()),
        (EndReason::ClientClose, Some(1000), "bye")
    );
    assert!(m.is_ended());
    assert!(m.poll_timeout().is_none());
    // Nothing after the end.
    assert!(feed(&mut m, FRAME_MIXED, now).is_empty());
}

#[test]
fn a_call_without_an_id_is_named_from_the_connection() {
    let (mut m, now) = machine(&[]);
    let actions = feed(&mut m, FRAME_MIXED, now);
    let Action::OpenCall(opening) = &actions[1] else {
        panic!("{actions:?}")
    };
    assert!(matches!(
        actions[0],
        Action::Log(LogLine::AudioBeforeMetadata { .. })
    ));
    assert_eq!(opening.identity.value, "call-1700000000000-7");
    assert!(matches!(actions[2], Action::PushFrame(_)));
    let (mut m, now) = machine(&[]);
    let actions = feed(&mut m, TRANSCRIPTION_METADATA, now);
    let [Action::OpenCall(opening)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(opening.kind, TransportKind::Transcription);
    assert_eq!(opening.identity.source, "callConnectionId");
}

#[test]
fn an_unsupported_sample_rate_closes_with_1007_and_says_why() {
    let (mut m, now) = machine(&[]);
    let actions = feed(&mut m, &metadata(384_000, 1, "PCM"), now);
    let end = end_of(&actions).unwrap();
    assert_eq!(end.reason, EndReason::PolicyClose);
    assert_eq!(end.code, Some(close_code::INVALID_PAYLOAD));
    assert_eq!(
        end.detail,
        "unsupported sample rate 384000 Hz: expected one of 8000, 16000, 24000, 32000, 44100, 48000"
    );
    assert!(actions.iter().any(|a| matches!(a,
        Action::Close { code, .. } if *code == close_code::INVALID_PAYLOAD)));
    // No call is opened for a stream nobody can record.
    assert!(!actions.iter().any(|a| matches!(a, Action::OpenCall(_))));
}

#[test]
fn stereo_or_another_encoding_closes_with_1003() {
    for text in [metadata(16_000, 2, "PCM"), metadata(16_000, 1, "opus")] {
        let (mut m, now) = machine(&[]);
        let actions = feed(&mut m, &text, now);
        let end = end_of(&actions).unwrap();
        assert_eq!(end.code, Some(close_code::UNSUPPORTED_DATA), "{text}");
        assert!(end.detail.starts_with("unsupported "), "{}", end.detail);
    }
}

#[test]
fn every_platform_rate_is_accepted() {
    for rate in [8_000, 16_000, 24_000, 32_000, 44_100, 48_000] {
        let (mut m, now) = machine(&[]);
        let actions = feed(&mut m, &metadata(rate, 1, "pcm"), now);
        assert!(end_of(&actions).is_none(), "{rate}: {actions:?}");
        assert_eq!(m.format(), AudioFormat::mono(rate as u32));
    }
}

#[test]
fn impossible_metadata_is_a_bad_message_not_a_close() {
    let (mut m, now) = machine(&[]);
    let actions = feed(&mut m, BAD_RATE, now);
    assert!(
        matches!(actions[0], Action::BadMessage("invalid_field")),
        "{actions:?}"
    );
    assert!(end_of(&actions).is_none());
}

#[test]
fn the_sample_rate_query_parameter_is_checked_at_once() {
    let (mut m, now) = machine(&[("sampleRate", "24000")]);
    assert!(drain(&mut m).is_empty());
    assert_eq!(m.format(), AudioFormat::mono(24_000));
    let _ = now;
    for bad in ["384000", "22050", "fast", "-1"] {
        let (mut m, _) = machine(&[("samplerate", bad)]);
        let actions = drain(&mut m);
        let end = end_of(&actions).unwrap();
        assert_eq!(end.code, Some(close_code::INVALID_PAYLOAD), "{bad}");
        assert!(
            end.detail.contains("unsupported sample rate"),
            "{}",
            end.detail
        );
    }
}

#[test]
fn dtmf_tones_are_one_key_of_the_keypad() {
    let (mut m, now) = machine(&[]);
    let actions = feed(&mut m, DTMF, now);
    assert!(matches!(
        actions[..],
        [Action::OpenCall(_), Action::PushEvent(CallEvent::Dtmf('5'))]
    ));
    for key in ["0", "9", "A", "D", "*", "#"] {
        let actions = feed(&mut m, &dtmf(key), now);
        assert!(
            matches!(actions[..], [Action::PushEvent(CallEvent::Dtmf(_))]),
            "{key}"
        );
    }
    for bad in ["55", "E", "a", "5\n", "x".repeat(1 << 20).as_str()] {
        let actions = feed(&mut m, &dtmf(bad), now);
        assert!(
            matches!(actions[0], Action::BadMessage("invalid_field")),
            "{actions:?}"
        );
        assert!(end_of(&actions).is_none());
        feed(&mut m, DTMF, now);
    }
    assert_eq!(m.report().dtmf_tones, 12);
}

#[test]
fn a_frame_longer_than_a_second_is_a_bad_message() {
    let (mut m, now) = machine(&[]);
    feed(&mut m, &metadata(8_000, 1, "PCM"), now);
    let mut data = String::new();
    mediagate_protocol::encode_pcm(&vec![0; 16_000], &mut data);
    let frame = |data: &str| {
        serde_json::json!({"kind": "AudioData", "audioData": {"data": data}}).to_string()
    };
    let actions = feed(&mut m, &frame(&data), now);
    assert!(matches!(actions[..], [Action::PushFrame(_)]), "{actions:?}");
    data.clear();
    mediagate_protocol::encode_pcm(&vec![0; 16_002], &mut data);
    let actions = feed(&mut m, &frame(&data), now);
    assert!(
        matches!(actions[0], Action::BadMessage("invalid_field")),
        "{actions:?}"
    );
    data.clear();
    mediagate_protocol::encode_pcm(&vec![0; 700_000], &mut data);
    feed(&mut m, &frame(&data), now);
    assert!(
        m.footprint().pool_capacity < 64 * 1024,
        "{:?}",
        m.footprint()
    );
}

#[test]
fn client_strings_are_bounded_in_the_report() {
    let (mut m, now) = machine(&[]);
    let long = format!("8:acs:{}\nforged", "x".repeat(10_000));
    let frame = FRAME_UNMIXED.replace(
        "8:acs:3d20e1de-0f28-41c5-84b0-447b1f6b3a2e_00000023-a1b2-c3d4-e5f6-0123456789ab",
        &long.replace('\n', "\\n"),
    );
    assert_ne!(frame, FRAME_UNMIXED, "the vector's participant changed");
    let actions = feed(&mut m, &frame, now);
    let joined = actions.iter().find_map(|a| match a {
        Action::PushEvent(CallEvent::ParticipantJoined(id)) => Some(id.clone()),
        _ => None,
    });
    assert_eq!(joined.unwrap().len(), 256);
    assert_eq!(m.report().participants[0].len(), 256);
    // The same long id again is the same participant.
    let actions = feed(&mut m, &frame, now);
    assert!(matches!(actions[..], [Action::PushFrame(_)]), "{actions:?}");
    let meta = serde_json::json!({"kind": "TranscriptionMetadata", "transcriptionMetadata": {
        "locale": "l".repeat(5000), "correlationId": "c".repeat(5000)}})
    .to_string();
    feed(&mut m, &meta, now);
    assert_eq!(m.report().locale.as_ref().unwrap().len(), 256);
    assert_eq!(m.report().correlation_id.as_ref().unwrap().len(), 256);
}

#[test]
fn unknown_kinds_are_logged_escaped() {
    let (mut m, now) = machine(&[]);
    let text = serde_json::json!({"kind": "Evil\nINFO forged line"}).to_string();
    let actions = feed(&mut m, &text, now);
    let Some(Action::Log(LogLine::BadMessage { error, .. })) = actions.get(1) else {
        panic!("{actions:?}")
    };
    assert!(
        !error.contains('\n') && error.contains("Evil\\nINFO"),
        "{error}"
    );
}

#[test]
fn bad_message_logs_are_rate_limited() {
    let (mut m, now) = machine(&[]);
    let logs = |actions: &[Action]| {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Log(LogLine::BadMessage { suppressed, .. }) => Some(*suppressed),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(logs(&feed(&mut m, "{", now)), [0]);
    feed(&mut m, FRAME_MIXED, now);
    assert!(logs(&feed(&mut m, "{", now + Duration::from_secs(1))).is_empty());
    feed(&mut m, FRAME_MIXED, now);
    assert_eq!(logs(&feed(&mut m, "{", now + Duration::from_secs(11))), [1]);
}

#[test]
fn budgets_close_with_the_fitting_code() {
    let (mut m, now) = machine(&[]);
    let mut last = Vec::new();
    for _ in 0..5 {
        last = feed(&mut m, "not json", now);
    }
    assert_eq!(
        end_of(&last).unwrap().code,
        Some(close_code::INVALID_PAYLOAD)
    );
    let (mut m, now) = machine(&[]);
    for _ in 0..5 {
        last = feed(&mut m, r#"{"kind":"Nope"}"#, now);
    }
    assert_eq!(
        end_of(&last).unwrap().code,
        Some(close_code::UNSUPPORTED_DATA)
    );
    let (mut m, now) = machine(&[]);
    m.handle(Input::Binary(&[0xff, 0xfe]), now);
    assert!(matches!(
        drain(&mut m)[0],
        Action::BadMessage("binary_not_text")
    ));
    let (mut m, now) = machine(&[]);
    for i in 0..20 {
        last = feed(&mut m, "{", now);
        if i % 4 == 3 {
            feed(&mut m, FRAME_MIXED, now);
        }
    }
    assert_eq!(end_of(&last).unwrap().code, Some(close_code::POLICY));
}

#[test]
fn deadlines_close_with_1008_and_early_timers_do_nothing() {
    let (mut m, now) = machine(&[]);
    assert_eq!(m.poll_timeout(), Some(now + Duration::from_secs(10)));
    m.handle(Input::Timeout, now + Duration::from_secs(9));
    assert!(drain(&mut m).is_empty());
    m.handle(Input::Timeout, now + Duration::from_secs(10));
    let actions = drain(&mut m);
    let end = end_of(&actions).unwrap();
    assert_eq!(end.code, Some(close_code::POLICY));
    assert!(end.detail.contains("within 10s"), "{}", end.detail);

    let (mut m, now) = machine(&[]);
    let later = now + Duration::from_secs(5);
    feed(&mut m, METADATA_16K, later);
    assert_eq!(m.poll_timeout(), Some(later + Duration::from_secs(30)));
    // A bad message does not keep the connection alive.
    feed(&mut m, "{", later + Duration::from_secs(20));
    m.handle(Input::Timeout, later + Duration::from_secs(30));
    let actions = drain(&mut m);
    assert_eq!(
        end_of(&actions).unwrap().detail,
        "no valid message for too long"
    );
}

#[test]
fn shutdown_and_read_errors_end_with_their_codes() {
    let cases: [(Input<'_>, Option<u16>, EndReason); 6] = [
        (Input::Shutdown, Some(1001), EndReason::ServerShutdown),
        (Input::Hangup, Some(1000), EndReason::Operator),
        (
            Input::ReadError(ReadError::TooBig, ""),
            Some(1009),
            EndReason::PolicyClose,
        ),
        (
            Input::ReadError(ReadError::NotUtf8, ""),
            Some(1007),
            EndReason::PolicyClose,
        ),
        (
            Input::ReadError(ReadError::Protocol, "x"),
            Some(1002),
            EndReason::PolicyClose,
        ),
        (
            Input::ReadError(ReadError::Other, "reset"),
            None,
            EndReason::AbruptDisconnect,
        ),
    ];
    for (input, code, reason) in cases {
        let (mut m, now) = machine(&[]);
        m.handle(input, now);
        let actions = drain(&mut m);
        let end = end_of(&actions).unwrap();
        assert_eq!((end.code, end.reason), (code, reason), "{input:?}");
        if let Some(code) = code {
            assert!(
                actions
                    .iter()
                    .any(|a| matches!(a, Action::Close { code: c, .. } if *c == code))
            );
        }
    }
    let (mut m, now) = machine(&[]);
    m.handle(Input::Disconnected, now);
    assert_eq!(
        end_of(&drain(&mut m)).unwrap().reason,
        EndReason::AbruptDisconnect
    );
}

#[test]
fn participants_past_the_limit_are_counted_not_pushed() {
    let (mut m, now) = machine(&[]);
    feed(&mut m, METADATA_16K, now);
    let frame = |who: &str| {
        serde_json::json!({"kind": "AudioData", "audioData": {"participantRawID": who,
            "data": "AAABAA=="}})
        .to_string()
    };
    for who in ["a", "b", "c", "a", "c"] {
        feed(&mut m, &frame(who), now);
    }
    assert_eq!(m.report().participants, ["a", "b"]);
    assert_eq!(m.report().frames_over_participant_limit, 2);
    assert_eq!(m.report().frames_received, 3);
}

mod driver {
    //! The socket task through channels: a panic in it still ends the call cleanly.

    use std::pin::Pin;
    use std::task::{Context, Poll};

    use axum::extract::ws::Message;
    use futures_util::{Sink, Stream};
    use tokio::sync::mpsc;

    use super::super::driver::TEST_PANIC_TEXT;
    use super::super::{ConnectionInfo, serve_socket};
    use super::{FRAME_MIXED, METADATA_16K};
    use crate::{Config, Server};

    /// A socket made of two channels.
    struct ChannelSocket {
        incoming: mpsc::UnboundedReceiver<Result<Message, axum::Error>>,
        outgoing: mpsc::UnboundedSender<Message>,
    }

    impl Stream for ChannelSocket {
        type Item = Result<Message, axum::Error>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.incoming.poll_recv(cx)
        }
    }

    impl Sink<Message> for ChannelSocket {
        type Error = axum::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            let _ = self.outgoing.send(item);
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_the_socket_task_ends_the_call_cleanly() {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.path().to_owned(),
            ..Config::default()
        };
        config.admin.listen = config.listen;
        config.pipeline.processors = vec!["wav".to_owned()];
        let server = Server::bind(config, mediagate_processors::builtins())
            .await
            .unwrap();
        let app = std::sync::Arc::clone(&server.state);
        let (to_server, incoming) = mpsc::unbounded_channel();
        let (outgoing, mut from_server) = mpsc::unbounded_channel();
        let info = ConnectionInfo {
            id: 1,
            remote_addr: None,
            path: "/ws".to_owned(),
            query: [("callId".to_owned(), "boom".to_owned())].into(),
        };
        let task = tokio::spawn(serve_socket(
            ChannelSocket { incoming, outgoing },
            std::sync::Arc::clone(&app),
            info,
        ));
        to_server.send(Ok(Message::text(METADATA_16K))).unwrap();
        for _ in 0..5 {
            to_server.send(Ok(Message::text(FRAME_MIXED))).unwrap();
        }
        to_server.send(Ok(Message::text(TEST_PANIC_TEXT))).unwrap();
        // The task itself does not panic: it finishes the call.
        tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        let mut close = None;
        while let Ok(message) = from_server.try_recv() {
            if let Message::Close(frame) = message {
                close = frame.map(|f| f.code);
            }
        }
        assert_eq!(close, Some(1011));
        let dir = data_dir.path().join("boom");
        let text = std::fs::read_to_string(dir.join("session.json")).unwrap();
        let session: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(session["status"], "ended");
        let end = &session["transports"][0]["end"];
        assert_eq!(end["reason"], "internal_error");
        assert_eq!(end["code"], 1011);
        let detail = end["detail"].as_str().unwrap();
        assert!(detail.starts_with("panic: test panic\\nwith"), "{detail}");
        assert_eq!(session["transports"][0]["frames_received"], 5);
        let wav = std::fs::metadata(dir.join("mixed.wav")).unwrap();
        assert_eq!(wav.len(), 44 + 5 * 640);
        assert_eq!(app.registry.live_calls(), 0);
        assert_eq!(app.metrics.panics("connection"), 1);
        assert!(
            app.metrics
                .encode(crate::metrics::Exposition::OpenMetrics)
                .contains("mediagate_panics_total{where=\"connection\"} 1")
        );
        // The gateway goes on: another connection is served.
        let (to_server, incoming) = mpsc::unbounded_channel();
        let (outgoing, _from_server) = mpsc::unbounded_channel();
        let info = ConnectionInfo {
            id: 2,
            remote_addr: None,
            path: "/ws".to_owned(),
            query: [("callId".to_owned(), "after".to_owned())].into(),
        };
        let task = tokio::spawn(serve_socket(
            ChannelSocket { incoming, outgoing },
            app,
            info,
        ));
        to_server.send(Ok(Message::text(METADATA_16K))).unwrap();
        to_server.send(Ok(Message::text(FRAME_MIXED))).unwrap();
        to_server.send(Ok(Message::Close(None))).unwrap();
        task.await.unwrap();
        let text = std::fs::read_to_string(data_dir.path().join("after/session.json")).unwrap();
        assert!(text.contains("\"client_close\""), "{text}");
    }
}

/// What the machine adds per frame to the parse-and-decode it always did: run on purpose,
/// `cargo test --release -p mediagate-server machine_hot_path_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a timing, not a check: run on purpose in release"]
fn machine_hot_path_cost() {
    const FRAMES: u32 = 100_000;
    let mut pool = bytes::BytesMut::new();
    let now = Instant::now();
    let mut m = machine_with(config(), &[("callId", "hot")], now);
    feed(&mut m, METADATA_16K, now);
    let (mut bare, mut machine) = (Duration::MAX, Duration::MAX);
    // Alternate, keep the best of each: the machine is shared and its clock moves.
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..FRAMES {
            let Ok(mediagate_protocol::InboundMessage::AudioData(frame)) =
                mediagate_protocol::parse_inbound(std::hint::black_box(FRAME_UNMIXED))
            else {
                panic!("not a frame")
            };
            std::hint::black_box(frame.decode_pcm(2, &mut pool).unwrap());
        }
        bare = bare.min(start.elapsed() / FRAMES);
        let start = Instant::now();
        for _ in 0..FRAMES {
            m.handle(Input::Text(std::hint::black_box(FRAME_UNMIXED)), now);
            while let Some(action) = m.poll_action() {
                std::hint::black_box(action);
            }
        }
        machine = machine.min(start.elapsed() / FRAMES);
    }
    println!(
        "parse+decode: {bare:?}/frame; machine (parse, decode, rules, actions): {machine:?}/frame"
    );
}
