//! The tolerance rules beyond the vectors: payload keys in any casing, repeated keys, hints that
//! never reject a message (`timestamp`, `length`), and the bound on what one result may expand to.

#![allow(clippy::unwrap_used)] // a panic in a test helper is a failed assertion

use std::borrow::Cow;

use bytes::BytesMut;
use mediagate_protocol::{
    AudioData, AudioMetadata, InboundMessage, MAX_WORDS_PER_RESULT, OutboundMessage, ProtocolError,
    ResultStatus, Timestamp, TranscriptionData, parse_inbound, parse_outbound,
};

/// Four samples: 0, 1, 2, 3 (PCM16 LE).
const PCM_B64: &str = "AAABAAIAAwA=";

fn audio(text: &str) -> AudioData<'_> {
    match parse_inbound(text).unwrap() {
        InboundMessage::AudioData(frame) => frame,
        other => panic!("not AudioData: {other:?}"),
    }
}

fn metadata(text: &str) -> AudioMetadata {
    match parse_inbound(text).unwrap() {
        InboundMessage::AudioMetadata(m) => m,
        other => panic!("not AudioMetadata: {other:?}"),
    }
}

fn transcription(text: &str) -> Result<TranscriptionData, ProtocolError> {
    match parse_inbound(text)? {
        InboundMessage::TranscriptionData(d) => Ok(d),
        other => panic!("not TranscriptionData: {other:?}"),
    }
}

fn pcm(frame: &AudioData<'_>) -> Vec<u8> {
    let mut pool = BytesMut::new();
    frame.decode_pcm(2, &mut pool).unwrap().to_vec()
}

#[test]
fn all_caps_payload_keys_parse() {
    let m = metadata(
        r#"{"KIND":"AUDIOMETADATA","AUDIOMETADATA":{"SUBSCRIPTIONID":"s","ENCODING":"PCM",
            "SAMPLERATE":24000,"CHANNELS":1,"LENGTH":960}}"#,
    );
    assert_eq!(m.subscription_id.as_deref(), Some("s"));
    assert_eq!(m.encoding, "PCM");
    assert_eq!((m.sample_rate_hz, m.channels), (24_000, 1));
    assert_eq!(m.frame_bytes_hint, Some(960));

    let text = format!(
        r#"{{"KIND":"AUDIODATA","AUDIODATA":{{"TIMESTAMP":"2026-11-24T19:16:12.925Z",
            "DATA":"{PCM_B64}","SILENT":true,"PARTICIPANTRAWID":"4:+1"}}}}"#
    );
    let frame = audio(&text);
    assert!(frame.silent);
    assert_eq!(frame.participant_raw_id.as_deref(), Some("4:+1"));
    assert_eq!(
        frame.timestamp,
        Some(Timestamp::parse_rfc3339("2026-11-24T19:16:12.925Z").unwrap())
    );
    assert!(!frame.invalid_timestamp);
    assert_eq!(pcm(&frame), [0, 0, 1, 0, 2, 0, 3, 0]);

    let InboundMessage::DtmfData(d) =
        parse_inbound(r##"{"KIND":"DTMFDATA","DTMFDATA":{"DATA":"#"}}"##).unwrap()
    else {
        panic!();
    };
    assert_eq!(d.tone, "#");

    let InboundMessage::TranscriptionMetadata(m) = parse_inbound(
        r#"{"KIND":"TRANSCRIPTIONMETADATA","TRANSCRIPTIONMETADATA":{"SUBSCRIPTIONID":"s",
            "LOCALE":"en-us","CALLCONNECTIONID":"c","CORRELATIONID":"r",
            "SPEECHRECOGNITIONMODELENDPOINTID":"e"}}"#,
    )
    .unwrap() else {
        panic!();
    };
    assert_eq!(m.subscription_id.as_deref(), Some("s"));
    assert_eq!(m.locale.as_deref(), Some("en-us"));
    assert_eq!(m.call_connection_id.as_deref(), Some("c"));
    assert_eq!(m.correlation_id.as_deref(), Some("r"));
    assert_eq!(m.speech_recognition_model_endpoint_id.as_deref(), Some("e"));

    let d = transcription(
        r#"{"KIND":"TRANSCRIPTIONDATA","TRANSCRIPTIONDATA":{"TEXT":"hi there","FORMAT":"display",
            "CONFIDENCE":0.5,"OFFSET":10,"DURATION":20,"PARTICIPANTRAWID":"4:+1",
            "RESULTSTATUS":"FINAL","WORDS":[{"TEXT":"hi","OFFSET":10,"DURATION":5},
            {"TEXT":"there","OFFSET":15,"DURATION":15}]}}"#,
    )
    .unwrap();
    assert_eq!(d.text, "hi there");
    assert_eq!(d.format.as_deref(), Some("display"));
    assert_eq!(d.confidence, Some(0.5));
    assert_eq!((d.offset_ticks, d.duration_ticks), (10, 20));
    assert_eq!(d.participant_raw_id.as_deref(), Some("4:+1"));
    assert_eq!(d.result_status, ResultStatus::Final);
    assert_eq!(d.words.len(), 2);
    assert_eq!(d.words[1].text, "there");
    assert_eq!(
        (d.words[1].offset_ticks, d.words[1].duration_ticks),
        (15, 15)
    );

    let outbound = format!(r#"{{"KIND":"AUDIODATA","AUDIODATA":{{"DATA":"{PCM_B64}"}}}}"#);
    assert_eq!(
        parse_outbound(&outbound).unwrap(),
        OutboundMessage::AudioData {
            data_base64: Cow::Borrowed(PCM_B64)
        }
    );
}

#[test]
fn mixed_case_payload_keys_parse() {
    let m = metadata(
        r#"{"kind":"AudioMetadata","audioMetadata":{"subscriptionID":"s","sampleRATE":16000,
            "Channels":1,"lEnGtH":640}}"#,
    );
    assert_eq!(m.subscription_id.as_deref(), Some("s"));
    assert_eq!(m.sample_rate_hz, 16_000);
    assert_eq!(m.frame_bytes_hint, Some(640));

    for key in [
        "participantRawId",
        "ParticipantRawId",
        "participantrawid",
        "pArTiCiPaNtRaWiD",
    ] {
        let text = format!(
            r#"{{"kind":"AudioData","audioData":{{"Data":"{PCM_B64}","IsSilent":true,"{key}":"8:acs:x"}}}}"#
        );
        let frame = audio(&text);
        assert_eq!(
            frame.participant_raw_id.as_deref(),
            Some("8:acs:x"),
            "{key}"
        );
        assert!(frame.silent, "{key}");
        // Matching a key in any casing still borrows the payload from the message text.
        assert!(matches!(frame.data_base64, Cow::Borrowed(_)), "{key}");
    }

    let d = transcription(
        r#"{"kind":"TranscriptionData","transcriptionData":{"Text":"x","resultstatus":"intermediate",
            "Words":[{"tExT":"x","Offset":1}]}}"#,
    )
    .unwrap();
    assert_eq!(d.result_status, ResultStatus::Intermediate);
    assert_eq!(
        (d.words[0].text.as_str(), d.words[0].offset_ticks),
        ("x", 1)
    );
}

#[test]
fn a_repeated_key_takes_the_last_value() {
    let text = r#"{"kind":"AudioData","audioData":{"data":"AAAA","Data":"AAEA","DATA":"AQACAA==",
                  "silent":true,"isSilent":false,"participantRawID":"a","PARTICIPANTRAWID":"b"}}"#;
    let frame = audio(text);
    assert_eq!(frame.data_base64, "AQACAA==");
    assert!(!frame.silent);
    assert_eq!(frame.participant_raw_id.as_deref(), Some("b"));

    let m = metadata(
        r#"{"kind":"AudioMetadata","audioMetadata":{"sampleRate":8000,"SampleRate":24000,
            "length":1,"Length":960}}"#,
    );
    assert_eq!((m.sample_rate_hz, m.frame_bytes_hint), (24_000, Some(960)));

    // Last wins, `null` included: a later `null` erases an earlier value.
    let erased = r#"{"kind":"AudioData","audioData":{"data":"AAAA","Data":null}}"#;
    assert_eq!(
        parse_inbound(erased).unwrap_err(),
        ProtocolError::MissingField("data")
    );

    let d = transcription(
        r#"{"kind":"TranscriptionData","transcriptionData":{"text":"a","Text":"b",
            "resultStatus":"Final","words":[{"text":"a"}],"WORDS":[]}}"#,
    )
    .unwrap();
    assert_eq!(d.text, "b");
    assert!(d.words.is_empty());
}

#[test]
fn a_bad_timestamp_keeps_the_audio() {
    for bad in [
        r#""yesterday""#,
        r#""""#,
        r#""2026-11-24 19:16:12""#,
        "1732475772925",
        "true",
        "{}",
        "[]",
    ] {
        let text = format!(
            r#"{{"kind":"AudioData","audioData":{{"timestamp":{bad},"data":"{PCM_B64}"}}}}"#
        );
        let frame = audio(&text);
        assert_eq!(frame.timestamp, None, "{bad}");
        assert!(frame.invalid_timestamp, "{bad}");
        assert_eq!(pcm(&frame), [0, 0, 1, 0, 2, 0, 3, 0], "{bad}");
        // The flag is for the caller, not the wire.
        let json = InboundMessage::AudioData(frame).to_json();
        assert!(!json.contains("nvalid"), "{json}");
        assert!(!json.contains("timestamp"), "{json}");
    }
    for (fine, expected) in [
        (
            r#""2026-11-24T19:16:12.925Z""#,
            Some(Timestamp::parse_rfc3339("2026-11-24T19:16:12.925Z").unwrap()),
        ),
        ("null", None),
    ] {
        let text = format!(
            r#"{{"kind":"AudioData","audioData":{{"timestamp":{fine},"data":"{PCM_B64}"}}}}"#
        );
        let frame = audio(&text);
        assert_eq!(frame.timestamp, expected, "{fine}");
        assert!(!frame.invalid_timestamp, "{fine}");
    }
    let absent = format!(r#"{{"kind":"AudioData","audioData":{{"data":"{PCM_B64}"}}}}"#);
    let frame = audio(&absent);
    assert_eq!((frame.timestamp, frame.invalid_timestamp), (None, false));
}

#[test]
fn an_invalid_length_is_dropped_not_fatal() {
    for bad in [
        "-640",
        "960.0",
        "1e3",
        "4294967296",
        r#""640""#,
        "true",
        "{}",
        "[640]",
        "null",
    ] {
        let text = format!(
            r#"{{"kind":"AudioMetadata","audioMetadata":{{"sampleRate":16000,"length":{bad}}}}}"#
        );
        let m = metadata(&text);
        assert_eq!(m.frame_bytes_hint, None, "{bad}");
        assert_eq!(m.sample_rate_hz, 16_000, "{bad}");
    }
    let m = metadata(r#"{"kind":"AudioMetadata","audioMetadata":{"sampleRate":16000,"length":0}}"#);
    assert_eq!(m.frame_bytes_hint, Some(0));
}

fn words_message(count: usize, word: &str) -> String {
    let words = vec![word; count].join(",");
    format!(
        r#"{{"kind":"TranscriptionData","transcriptionData":{{"text":"x","resultStatus":"Final","words":[{words}]}}}}"#
    )
}

#[test]
fn words_are_capped_per_result() {
    let word = r#"{"text":"w","offset":1,"duration":2}"#;
    let d = transcription(&words_message(MAX_WORDS_PER_RESULT, word)).unwrap();
    assert_eq!(d.words.len(), MAX_WORDS_PER_RESULT);

    let err = transcription(&words_message(MAX_WORDS_PER_RESULT + 1, word)).unwrap_err();
    assert!(
        matches!(err, ProtocolError::InvalidField { field: "words", .. }),
        "{err:?}"
    );

    // 1 MiB of `{}`: rejected as too many words, not expanded into ~350k of them.
    let flood = words_message((1 << 20) / 3, "{}");
    assert!(flood.len() >= 1 << 20);
    let err = transcription(&flood).unwrap_err();
    let ProtocolError::InvalidField { field, reason } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*field, "words");
    assert!(reason.contains(&((1 << 20) / 3).to_string()), "{reason}");

    // Past the cap the words are only checked as JSON: a broken tail is still a broken message.
    let mut truncated = words_message(MAX_WORDS_PER_RESULT + 5, "{}");
    truncated.truncate(truncated.len() - 4);
    assert!(matches!(
        transcription(&truncated),
        Err(ProtocolError::Truncated(_))
    ));
}
