//! Structure-aware fuzzing of the connection [`Machine`] on stable Rust, with proptest.
//!
//! Each case is a sequence of steps: valid messages (built with the protocol crate's types and
//! [`InboundMessage::to_json`]), the same messages mutated (cut, a byte flipped, a key
//! renamed, a value swapped for a hostile one), hostile messages (impossible and unsupported
//! formats, oversize and odd payloads, long and control-character strings, unknown kinds,
//! binary garbage), transport events (pings, read errors, close frames), random clock
//! advances and timers fired at the deadline the machine asked for. The case ends with a
//! disconnect or a shutdown.
//!
//! Invariants, checked after every step:
//! - no panic;
//! - bounded memory: [`Machine::footprint`] stays within [`Machine::footprint_bound`] (decode
//!   pool, participants, client text, pending actions);
//! - exactly one [`Action::End`], last, and nothing after it; a close the gateway decides
//!   (policy, shutdown) carries a code and sends a close frame with it first; only the peer's own
//!   close or an abrupt disconnect may end without one;
//! - no frame lost before a close: every valid mixed AudioData handled before the end produces
//!   exactly one [`Action::PushFrame`] with its samples, before the next input is handled (so in
//!   order); nothing is pushed after the end;
//! - the call is opened at most once, before anything is pushed to it.
//!
//! `cargo test -p mediagate-server machine_fuzz` runs 10^4 cases (the normal run). For 10^6:
//! `PROPTEST_CASES=1000000 cargo test --release -p mediagate-server machine_fuzz_many -- --ignored`.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::borrow::Cow;
use std::time::{Duration, Instant};

use mediagate_protocol::{
    AudioData, AudioMetadata, DtmfData, InboundMessage, ResultStatus, Timestamp, TranscriptionData,
    TranscriptionMetadata, Word, encode_pcm,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

use super::machine::{Action, Input, Machine, ReadError};
use super::tests::{config, machine_with};
use crate::session::EndReason;

/// One step of a case.
#[derive(Debug, Clone)]
enum Step {
    /// A message known valid; `frame` holds its PCM when it is a mixed AudioData that must
    /// reach the pipeline.
    Text {
        text: String,
        frame: Option<Vec<u8>>,
    },
    /// Anything else in a text message (mutated, hostile).
    Hostile(String),
    Binary(Vec<u8>),
    Ping,
    Advance(Duration),
    /// Fire the timer at the deadline the machine asked for.
    FireTimer,
    ReadError(ReadError),
    Close(Option<(u16, String)>),
}

/// How a case ends, if no step ended it.
#[derive(Debug, Clone, Copy)]
enum Finale {
    Disconnect,
    Shutdown,
    Hangup,
}

fn participant() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        1 => prop::sample::select(vec!["8:acs:a", "8:acs:b", "4:+14255550123"])
            .prop_map(|p| Some(p.to_owned())),
    ]
}

/// PCM that is valid in every accepted format: whole samples, at most 1 s at 8 kHz.
fn pcm() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => Just(vec![1u8; 640]),
        2 => (0usize..=8_000).prop_map(|samples| (0..samples * 2).map(|i| i as u8).collect()),
        1 => Just(Vec::new()),
    ]
}

fn audio_data(pcm: &[u8], participant: Option<String>, silent: bool, ts: i64) -> String {
    let mut data = String::new();
    encode_pcm(pcm, &mut data);
    InboundMessage::AudioData(AudioData {
        timestamp: Some(Timestamp::from_unix_micros(ts)),
        invalid_timestamp: false,
        participant_raw_id: participant.map(Cow::Owned),
        data_base64: Cow::Owned(data),
        silent,
    })
    .to_json()
}

fn metadata(rate: u32, channels: u16, encoding: &str) -> String {
    InboundMessage::AudioMetadata(AudioMetadata {
        subscription_id: Some("sub-1".to_owned()),
        encoding: encoding.to_owned(),
        sample_rate_hz: rate,
        channels,
        frame_bytes_hint: Some(640),
    })
    .to_json()
}

fn transcription(text: String, words: usize) -> String {
    InboundMessage::TranscriptionData(TranscriptionData {
        text,
        format: Some("display".to_owned()),
        confidence: Some(0.9),
        offset_ticks: 0,
        duration_ticks: 10_000,
        words: (0..words)
            .map(|i| Word {
                text: format!("w{i}"),
                offset_ticks: i as i64,
                duration_ticks: 1,
            })
            .collect(),
        participant_raw_id: None,
        result_status: ResultStatus::Final,
    })
    .to_json()
}

/// Valid messages: the mixed frames among them must all reach the pipeline.
fn valid() -> impl Strategy<Value = Step> {
    let rates = prop::sample::select(vec![8_000u32, 16_000, 24_000, 32_000, 44_100, 48_000]);
    prop_oneof![
        8 => (pcm(), participant(), any::<bool>(), 0i64..1_000_000_000).prop_map(
            |(pcm, who, silent, ts)| {
                let text = audio_data(&pcm, who.clone(), silent, ts);
                Step::Text { text, frame: who.is_none().then_some(pcm) }
            }
        ),
        2 => rates.prop_map(|rate| Step::Text { text: metadata(rate, 1, "PCM"), frame: None }),
        1 => prop::sample::select(vec!["0", "5", "9", "A", "D", "*", "#"]).prop_map(|tone| {
            let text = InboundMessage::DtmfData(DtmfData { tone: tone.to_owned() }).to_json();
            Step::Text { text, frame: None }
        }),
        1 => Just(Step::Text {
            text: InboundMessage::TranscriptionMetadata(TranscriptionMetadata {
                call_connection_id: Some("conn-1".to_owned()),
                locale: Some("en-US".to_owned()),
                ..TranscriptionMetadata::default()
            })
            .to_json(),
            frame: None,
        }),
        1 => ("[a-z ]{0,40}", 0usize..5).prop_map(|(text, words)| Step::Text {
            text: transcription(text, words),
            frame: None,
        }),
    ]
}

/// Strings a hostile peer puts where ids and kinds go.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("line\nINFO forged\r\n\u{1b}[31m".to_owned()),
        (1usize..5_000).prop_map(|n| "x".repeat(n)),
        (1usize..300).prop_map(|n| "é".repeat(n)),
        any::<String>(),
    ]
}

/// Messages that are wrong on purpose.
fn hostile() -> impl Strategy<Value = Step> {
    prop_oneof![
        // Formats: impossible (parse errors), unsupported (closes), other encodings.
        2 => (any::<u32>(), 0u16..12).prop_map(|(rate, ch)| Step::Hostile(metadata(rate, ch, "PCM"))),
        1 => prop::sample::select(vec![384_000u32, 22_050, 11_025, 96_000, 1])
            .prop_map(|rate| Step::Hostile(metadata(rate, 1, "PCM"))),
        1 => hostile_string().prop_map(|enc| Step::Hostile(metadata(16_000, 1, &enc))),
        1 => any::<i64>().prop_map(|rate| Step::Hostile(format!(
            r#"{{"kind":"AudioMetadata","audioMetadata":{{"sampleRate":{rate},"channels":1}}}}"#
        ))),
        // Payloads: odd sizes, over a second, not base64.
        1 => (0usize..120_000).prop_map(|n| Step::Hostile(audio_data(&vec![7u8; n], None, false, 0))),
        1 => hostile_string().prop_map(|data| Step::Hostile(format!(
            r#"{{"kind":"AudioData","audioData":{{"data":{}}}}}"#,
            serde_json::Value::String(data)
        ))),
        // Strings that reach reports and logs.
        2 => hostile_string().prop_map(|who| Step::Hostile(audio_data(&[0, 0], Some(who), false, 0))),
        1 => hostile_string().prop_map(|tone| Step::Hostile(
            InboundMessage::DtmfData(DtmfData { tone }).to_json()
        )),
        1 => hostile_string().prop_map(|s| Step::Hostile(InboundMessage::TranscriptionMetadata(
            TranscriptionMetadata {
                subscription_id: Some(s.clone()),
                locale: Some(s.clone()),
                call_connection_id: Some(s.clone()),
                correlation_id: Some(s),
                speech_recognition_model_endpoint_id: None,
            }).to_json())),
        1 => hostile_string().prop_map(|kind| Step::Hostile(
            serde_json::json!({"kind": kind, "audioData": {"data": "AAAA"}}).to_string()
        )),
        1 => (0usize..3_000).prop_map(|n| Step::Hostile(transcription(String::new(), n))),
        1 => any::<String>().prop_map(Step::Hostile),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Step::Binary),
    ]
}

/// A valid message, changed: cut short, a character replaced, a key renamed.
fn mutated() -> impl Strategy<Value = Step> {
    (valid(), any::<prop::sample::Index>(), any::<char>(), 0u8..4).prop_map(|(step, at, c, how)| {
        let Step::Text { text, .. } = step else {
            return step;
        };
        let mut chars: Vec<char> = text.chars().collect();
        let i = at.index(chars.len().max(1)).min(chars.len());
        match how {
            0 => chars.truncate(i),
            1 if i < chars.len() => chars[i] = c,
            2 => chars.insert(i, c),
            _ => {
                let renamed = text.replacen("\"data\"", "\"dota\"", 1);
                return Step::Hostile(renamed);
            }
        }
        Step::Hostile(chars.into_iter().collect())
    })
}

fn transport() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(Step::Ping),
        4 => (0u64..15_000).prop_map(|ms| Step::Advance(Duration::from_millis(ms))),
        2 => Just(Step::FireTimer),
        1 => prop::sample::select(vec![
            ReadError::TooBig,
            ReadError::NotUtf8,
            ReadError::Protocol,
            ReadError::Other,
        ])
        .prop_map(Step::ReadError),
        1 => proptest::option::of((1000u16..5000, hostile_string()))
            .prop_map(Step::Close),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => valid(),
        3 => mutated(),
        3 => hostile(),
        1 => transport(),
    ]
}

fn case() -> impl Strategy<Value = (Vec<(&'static str, String)>, Vec<Step>, Finale)> {
    let query = prop_oneof![
        6 => Just(Vec::new()),
        1 => Just(vec![("callId", "call-1".to_owned())]),
        1 => prop::sample::select(vec!["16000", "24000", "48000", "384000", "x", ""])
            .prop_map(|rate| vec![("sampleRate", rate.to_owned())]),
    ];
    let finale = prop_oneof![
        Just(Finale::Disconnect),
        Just(Finale::Shutdown),
        Just(Finale::Hangup)
    ];
    (query, prop::collection::vec(step(), 0..24), finale)
}

/// What the case saw, checked as it goes.
struct Checker {
    /// PCM of the mixed frames pushed by the last input, in order.
    pushed: Vec<Vec<u8>>,
    opened: bool,
    ended: bool,
    last_close: Option<u16>,
}

impl Checker {
    fn drain(&mut self, machine: &mut Machine) {
        let footprint = machine.footprint();
        let bound = machine.footprint_bound();
        assert!(
            footprint.pool_capacity <= bound.pool_capacity,
            "{footprint:?} > {bound:?}"
        );
        assert!(
            footprint.participants <= bound.participants,
            "{footprint:?}"
        );
        assert!(
            footprint.client_text_bytes <= bound.client_text_bytes,
            "{footprint:?}"
        );
        assert!(
            footprint.pending_actions <= bound.pending_actions,
            "{footprint:?}"
        );
        while let Some(action) = machine.poll_action() {
            assert!(!self.ended, "an action after the end: {action:?}");
            match action {
                Action::OpenCall(_) => {
                    assert!(!self.opened, "the call was opened twice");
                    self.opened = true;
                }
                Action::PushFrame(frame) => {
                    assert!(self.opened, "a frame before the call was opened");
                    let mixed = frame.source == mediagate_audio::AudioSource::Mixed;
                    if mixed {
                        self.pushed.push(frame.pcm.to_vec());
                    }
                }
                Action::PushEvent(_) => assert!(self.opened, "an event before the call opened"),
                Action::Close { code, reason } => {
                    assert!((1000..5000).contains(&code));
                    assert!(!reason.contains('\n'), "{reason}");
                    self.last_close = Some(code);
                }
                Action::End(end) => {
                    self.ended = true;
                    match end.reason {
                        EndReason::PolicyClose
                        | EndReason::ServerShutdown
                        | EndReason::Operator => {
                            assert!(end.code.is_some(), "{end:?}");
                            assert_eq!(self.last_close, end.code, "no close frame sent: {end:?}");
                        }
                        EndReason::ClientClose | EndReason::AbruptDisconnect => {}
                        EndReason::InternalError => panic!("the machine never fails: {end:?}"),
                    }
                }
                Action::BadMessage(_) | Action::Log(_) | Action::FlushCloseReply => {}
            }
        }
    }
}

fn run_case(query: &[(&'static str, String)], steps: &[Step], finale: Finale) {
    let start = Instant::now();
    let mut now = start;
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut machine = machine_with(config(), &query, now);
    let mut checker = Checker {
        pushed: Vec::new(),
        opened: false,
        ended: false,
        last_close: None,
    };
    checker.drain(&mut machine);
    for step in steps {
        let ended_before = machine.is_ended();
        match step {
            Step::Text { text, .. } => machine.handle(Input::Text(text), now),
            Step::Hostile(text) => machine.handle(Input::Text(text), now),
            Step::Binary(data) => machine.handle(Input::Binary(data), now),
            Step::Ping => machine.handle(Input::Ping, now),
            Step::Advance(by) => now += *by,
            Step::FireTimer => {
                if let Some(at) = machine.poll_timeout() {
                    now = now.max(at);
                    machine.handle(Input::Timeout, now);
                }
            }
            Step::ReadError(kind) => machine.handle(Input::ReadError(*kind, "io\nerror"), now),
            Step::Close(frame) => {
                let frame = frame
                    .as_ref()
                    .map(|(code, reason)| (*code, reason.as_str()));
                machine.handle(Input::Close(frame), now);
            }
        }
        checker.pushed.clear();
        checker.drain(&mut machine);
        // A valid mixed frame handled before the end comes out at once, whole, in order (one
        // input, one push); nothing comes out after the end.
        match step {
            Step::Text {
                frame: Some(pcm), ..
            } if !ended_before => {
                assert_eq!(checker.pushed.len(), 1, "a valid frame was lost");
                assert_eq!(&checker.pushed[0], pcm, "a frame's samples changed");
            }
            _ if ended_before => assert!(checker.pushed.is_empty()),
            _ => assert!(checker.pushed.len() <= 1),
        }
    }
    let last = match finale {
        Finale::Disconnect => Input::Disconnected,
        Finale::Shutdown => Input::Shutdown,
        Finale::Hangup => Input::Hangup,
    };
    machine.handle(last, now);
    checker.drain(&mut machine);
    assert!(checker.ended, "the connection never ended");
    let report = machine.report();
    assert!(report.bad_messages.by_class.len() <= 9);
}

fn run(cases: u32) {
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    runner
        .run(&case(), |(query, steps, finale)| {
            run_case(&query, &steps, finale);
            Ok(())
        })
        .unwrap();
}

/// The number of cases: `PROPTEST_CASES`, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// 10^4 random connections in every test run, in two halves (each with a seed of its own) so
/// that the harness runs them on two cores.
#[test]
fn machine_fuzz() {
    run(5_000);
}

/// The other half of [`machine_fuzz`].
#[test]
fn machine_fuzz_second_half() {
    run(5_000);
}

/// 10^6 (or `PROPTEST_CASES`) random connections, on purpose:
/// `PROPTEST_CASES=1000000 cargo test --release -p mediagate-server machine_fuzz_many -- --ignored`.
#[test]
#[ignore = "a long run: start it on purpose"]
fn machine_fuzz_many() {
    run(cases(1_000_000));
}
