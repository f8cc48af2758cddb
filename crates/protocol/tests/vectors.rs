//! Conformance: every vector of the protocol parses to the values it shows, or fails with the
//! error class it was written to provoke. The vectors are copied from `shared/protocol/vectors`
//! into `tests/vectors`; when the shared folder sits beside the repo, the copy is checked against it.

#![allow(clippy::unwrap_used)] // a panic in a test helper is a failed assertion

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use mediagate_protocol::{
    ErrorClass, InboundMessage, OutboundDialect, OutboundMessage, ResultStatus, Timestamp,
    decode_pcm, parse_inbound, parse_outbound, stop_audio_json, write_outbound_audio,
};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(vectors_dir().join(name)).unwrap()
}

/// The 20 ms 16 kHz test frame (a 440 Hz sine) the audio vectors carry.
fn sine_frame_b64() -> String {
    let v: serde_json::Value =
        serde_json::from_str(&read("media-03-audio-data-mixed.json")).unwrap();
    v["audioData"]["data"].as_str().unwrap().to_owned()
}

fn inbound_error(name: &str) -> ErrorClass {
    let text = read(name);
    match parse_inbound(&text) {
        Err(e) => e.class(),
        Ok(InboundMessage::AudioData(frame)) => {
            let mut pool = BytesMut::new();
            frame.decode_pcm(2, &mut pool).unwrap_err().class()
        }
        Ok(other) => panic!("{name} parsed as {other:?}"),
    }
}

fn ts(text: &str) -> Option<Timestamp> {
    Some(Timestamp::parse_rfc3339(text).unwrap())
}

fn audio(name: &str) -> (mediagate_protocol::AudioData<'static>, Vec<u8>) {
    let text: &'static str = Box::leak(read(name).into_boxed_str());
    let InboundMessage::AudioData(frame) = parse_inbound(text).unwrap() else {
        panic!("{name} is not AudioData");
    };
    let mut pool = BytesMut::new();
    let pcm = frame.decode_pcm(2, &mut pool).unwrap().to_vec();
    (frame, pcm)
}

const ACS_USER: &str =
    "8:acs:3d20e1de-0f28-41c5-84b0-447b1f6b3a2e_00000023-a1b2-c3d4-e5f6-0123456789ab";

#[test]
fn every_vector_has_a_test() {
    let tested: BTreeSet<&str> = [
        "bad-01-not-json.txt",
        "bad-02-unknown-kind.json",
        "bad-03-bad-base64.json",
        "bad-04-odd-byte-count.json",
        "bad-05-missing-data.json",
        "bad-06-metadata-bad-rate.json",
        "bad-07-truncated.json",
        "bad-08-wrong-types.json",
        "media-01-audio-metadata-16k.json",
        "media-02-audio-metadata-24k.json",
        "media-03-audio-data-mixed.json",
        "media-04-audio-data-unmixed.json",
        "media-05-audio-data-unmixed-pstn.json",
        "media-06-audio-data-silent.json",
        "media-07-audio-data-24k.json",
        "media-08-dtmf.json",
        "media-09-audio-data-compact.json",
        "outbound-01-audio-pascal.json",
        "outbound-02-stop-pascal.json",
        "outbound-03-audio-js-sdk.json",
        "outbound-04-stop-js-sdk.json",
        "transcription-01-metadata.json",
        "transcription-02-intermediate.json",
        "transcription-03-final.json",
    ]
    .into_iter()
    .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(vectors_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let on_disk: BTreeSet<&str> = on_disk.iter().map(String::as_str).collect();
    assert_eq!(
        on_disk, tested,
        "a vector was added or removed: give it a test"
    );
}

#[test]
fn the_repo_copy_matches_shared_when_present() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/protocol/vectors");
    let Ok(entries) = std::fs::read_dir(&shared) else {
        eprintln!(
            "SKIP: {} not present; the repo copy is tested alone",
            shared.display()
        );
        return;
    };
    let mut count = 0;
    for entry in entries {
        let entry = entry.unwrap();
        let ours = std::fs::read(vectors_dir().join(entry.file_name()))
            .unwrap_or_else(|_| panic!("{:?} missing from tests/vectors", entry.file_name()));
        assert_eq!(
            ours,
            std::fs::read(entry.path()).unwrap(),
            "{:?} differs",
            entry.file_name()
        );
        count += 1;
    }
    assert_eq!(count, std::fs::read_dir(vectors_dir()).unwrap().count());
}

#[test]
fn media_01_02_audio_metadata() {
    for (name, rate, length) in [
        ("media-01-audio-metadata-16k.json", 16_000, 640),
        ("media-02-audio-metadata-24k.json", 24_000, 960),
    ] {
        let InboundMessage::AudioMetadata(m) = parse_inbound(&read(name)).unwrap() else {
            panic!("{name}");
        };
        assert_eq!(
            m.subscription_id.as_deref(),
            Some("89e8cb59-b991-48b0-b154-1db84f16a077")
        );
        assert_eq!(m.encoding, "PCM");
        assert_eq!(m.sample_rate_hz, rate);
        assert_eq!(m.channels, 1);
        assert_eq!(m.frame_bytes_hint, Some(length));
    }
}

#[test]
fn media_03_mixed_audio_borrows_its_payload() {
    let text = read("media-03-audio-data-mixed.json");
    let InboundMessage::AudioData(frame) = parse_inbound(&text).unwrap() else {
        panic!();
    };
    assert!(
        matches!(frame.data_base64, Cow::Borrowed(_)),
        "payload must not be copied"
    );
    let range = text.as_ptr() as usize..text.as_ptr() as usize + text.len();
    assert!(range.contains(&(frame.data_base64.as_ptr() as usize)));
    assert_eq!(frame.timestamp, ts("2026-11-24T19:16:12.925Z"));
    assert_eq!(frame.participant_raw_id, None);
    assert!(!frame.silent);
    let mut pool = BytesMut::new();
    let pcm = frame.decode_pcm(2, &mut pool).unwrap();
    assert_eq!(pcm.len(), 640);
    // The payload is 20 ms of a 440 Hz sine at amplitude 8000: starts at 0, peaks at ±8000,
    // and crosses zero 2 × 440 × 0.02 ≈ 17.6 times.
    let samples: Vec<i16> = pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(samples[0], 0);
    assert_eq!(samples[1], 1375);
    assert_eq!(*samples.iter().max().unwrap(), 8000);
    assert!(*samples.iter().min().unwrap() <= -7990);
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    assert!((17..=18).contains(&crossings), "{crossings} zero crossings");
}

#[test]
fn media_04_05_unmixed_audio_names_the_participant() {
    let (frame, pcm) = audio("media-04-audio-data-unmixed.json");
    assert_eq!(frame.participant_raw_id.as_deref(), Some(ACS_USER));
    assert_eq!(frame.timestamp, ts("2026-11-24T19:16:12.945Z"));
    assert_eq!(pcm.len(), 640);
    let (frame, pcm) = audio("media-05-audio-data-unmixed-pstn.json");
    assert_eq!(frame.participant_raw_id.as_deref(), Some("4:+14255550123"));
    assert_eq!(pcm.len(), 640);
}

#[test]
fn media_06_silent_frame() {
    let (frame, pcm) = audio("media-06-audio-data-silent.json");
    assert!(frame.silent);
    assert_eq!(frame.timestamp, ts("2026-11-24T19:16:12.965Z"));
    assert_eq!(pcm.len(), 640);
    assert!(pcm.iter().all(|&b| b == 0));
}

#[test]
fn media_07_24k_frame_is_960_bytes() {
    let (frame, pcm) = audio("media-07-audio-data-24k.json");
    assert_eq!(frame.timestamp, ts("2026-11-24T19:16:12.985Z"));
    assert_eq!(pcm.len(), 960);
}

#[test]
fn media_08_dtmf() {
    let InboundMessage::DtmfData(d) = parse_inbound(&read("media-08-dtmf.json")).unwrap() else {
        panic!();
    };
    assert_eq!(d.tone, "5");
}

#[test]
fn media_09_compact_with_kind_last() {
    let (frame, pcm) = audio("media-09-audio-data-compact.json");
    assert_eq!(frame.timestamp, ts("2026-11-24T19:16:13.005Z"));
    assert_eq!(frame.participant_raw_id.as_deref(), Some(ACS_USER));
    assert!(!frame.silent);
    assert_eq!(frame.data_base64, sine_frame_b64());
    assert_eq!(pcm.len(), 640);
}

#[test]
fn transcription_01_metadata() {
    let text = read("transcription-01-metadata.json");
    let InboundMessage::TranscriptionMetadata(m) = parse_inbound(&text).unwrap() else {
        panic!();
    };
    assert_eq!(
        m.subscription_id.as_deref(),
        Some("863b5e55-de0d-4fc3-8b9b-4adc2d1a5d35")
    );
    assert_eq!(m.locale.as_deref(), Some("en-us"));
    assert_eq!(
        m.call_connection_id.as_deref(),
        Some("65c57654-f12c-4975-92a4-21668e61dd98")
    );
    assert_eq!(
        m.correlation_id.as_deref(),
        Some("3f1c5a5e-7a10-4b0e-9d5a-0c6f1f2f4a11")
    );
    assert_eq!(m.speech_recognition_model_endpoint_id, None);
}

#[test]
fn transcription_02_03_results() {
    let text = read("transcription-02-intermediate.json");
    let InboundMessage::TranscriptionData(d) = parse_inbound(&text).unwrap() else {
        panic!();
    };
    assert_eq!(d.text, "testing trans");
    assert_eq!(d.result_status, ResultStatus::Intermediate);
    assert_eq!(d.confidence, Some(0.0));
    assert_eq!((d.offset_ticks, d.duration_ticks), (49_876_484, 8_500_000));
    assert_eq!(d.words.len(), 2);
    assert_eq!(d.words[1].text, "trans");
    assert_eq!(
        (d.words[1].offset_ticks, d.words[1].duration_ticks),
        (53_876_484, 4_500_000)
    );
    assert_eq!(d.participant_raw_id.as_deref(), Some(ACS_USER));

    let text = read("transcription-03-final.json");
    let InboundMessage::TranscriptionData(d) = parse_inbound(&text).unwrap() else {
        panic!();
    };
    assert_eq!(d.text, "Testing transcription.");
    assert_eq!(d.format.as_deref(), Some("display"));
    assert_eq!(d.result_status, ResultStatus::Final);
    assert!((d.confidence.unwrap() - 0.695_223_331_451_416).abs() < 1e-12);
    assert_eq!(d.duration_ticks, 13_600_000);
    assert_eq!(d.words[1].text, "transcription");
    assert_eq!(d.words[1].duration_ticks, 9_600_000);
}

#[test]
fn outbound_vectors_parse_in_both_dialects() {
    let sine = sine_frame_b64();
    for name in [
        "outbound-01-audio-pascal.json",
        "outbound-03-audio-js-sdk.json",
    ] {
        let text = read(name);
        match parse_outbound(&text).unwrap() {
            OutboundMessage::AudioData { data_base64 } => assert_eq!(data_base64, sine, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    for name in [
        "outbound-02-stop-pascal.json",
        "outbound-04-stop-js-sdk.json",
    ] {
        assert_eq!(
            parse_outbound(&read(name)).unwrap(),
            OutboundMessage::StopAudio,
            "{name}"
        );
    }
}

#[test]
fn outbound_serialization_matches_the_vectors() {
    let mut pool = BytesMut::new();
    let pcm = decode_pcm(&sine_frame_b64(), 2, &mut pool).unwrap();
    let as_value = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    let mut out = String::new();
    write_outbound_audio(&pcm, OutboundDialect::Pascal, &mut out);
    assert_eq!(
        as_value(&out),
        as_value(&read("outbound-01-audio-pascal.json"))
    );
    assert_eq!(
        as_value(stop_audio_json(OutboundDialect::Pascal)),
        as_value(&read("outbound-02-stop-pascal.json"))
    );
    write_outbound_audio(&pcm, OutboundDialect::Camel, &mut out);
    let mut expected = as_value(&read("outbound-03-audio-js-sdk.json"));
    // The JS SDK writes `stopAudio: {}` beside audio; we write null, which ACS reads as absent.
    expected["stopAudio"] = serde_json::Value::Null;
    assert_eq!(as_value(&out), expected);
    let mut stop = as_value(stop_audio_json(OutboundDialect::Camel));
    stop.as_object_mut().unwrap().remove("audioData");
    assert_eq!(stop, as_value(&read("outbound-04-stop-js-sdk.json")));
}

#[test]
fn bad_vectors_fail_with_their_class() {
    assert_eq!(inbound_error("bad-01-not-json.txt"), ErrorClass::NotJson);
    assert_eq!(
        inbound_error("bad-02-unknown-kind.json"),
        ErrorClass::UnknownKind
    );
    assert_eq!(
        inbound_error("bad-03-bad-base64.json"),
        ErrorClass::InvalidBase64
    );
    assert_eq!(
        inbound_error("bad-04-odd-byte-count.json"),
        ErrorClass::PartialSample
    );
    assert_eq!(
        inbound_error("bad-05-missing-data.json"),
        ErrorClass::MissingField
    );
    assert_eq!(
        inbound_error("bad-06-metadata-bad-rate.json"),
        ErrorClass::InvalidField
    );
    assert_eq!(
        inbound_error("bad-07-truncated.json"),
        ErrorClass::Truncated
    );
    assert_eq!(
        inbound_error("bad-08-wrong-types.json"),
        ErrorClass::Malformed
    );
}

#[test]
fn inbound_messages_round_trip_through_to_json() {
    for name in [
        "media-01-audio-metadata-16k.json",
        "media-04-audio-data-unmixed.json",
        "media-08-dtmf.json",
        "transcription-01-metadata.json",
        "transcription-03-final.json",
    ] {
        let text = read(name);
        let parsed = parse_inbound(&text).unwrap();
        let again = parsed.to_json();
        assert_eq!(parse_inbound(&again).unwrap(), parsed, "{name}");
    }
}

#[test]
fn casing_is_tolerated_in_keys_and_kinds() {
    let sine = sine_frame_b64();
    let pascal = format!(
        r#"{{"Kind":"AUDIODATA","AudioData":{{"Timestamp":"2026-11-24T19:16:12.925Z","Data":"{sine}","Silent":true,"ParticipantRawID":"4:+1"}},"Extra":[1,2]}}"#
    );
    let InboundMessage::AudioData(frame) = parse_inbound(&pascal).unwrap() else {
        panic!();
    };
    assert!(frame.silent);
    assert_eq!(frame.participant_raw_id.as_deref(), Some("4:+1"));
    let nulls = r#"{"kind":"audioMetadata","audioMetadata":{"sampleRate":16000,"channels":null,"subscriptionId":null},"audioData":null}"#;
    let InboundMessage::AudioMetadata(m) = parse_inbound(nulls).unwrap() else {
        panic!();
    };
    assert_eq!((m.channels, m.subscription_id), (1, None));
}
