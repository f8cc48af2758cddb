//! End to end: the emulator against a recording WebSocket server on 127.0.0.1.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use mediagate_emulator::{
    EmulateConfig, EmulatorError, EndMode, GatewayClose, Pacing, SilencePolicy, run,
};
use mediagate_protocol::{
    AudioData, InboundMessage, OutboundDialect, ResultStatus, Timestamp, parse_inbound,
    stop_audio_json, write_outbound_audio,
};
use support::{Behaviour, TestGateway, tone, write_wav};

const START_MICROS: i64 = 1_790_000_000_000_000;

fn start_time() -> Timestamp {
    Timestamp::from_unix_micros(START_MICROS)
}

fn parse(text: &str) -> InboundMessage<'_> {
    parse_inbound(text).unwrap_or_else(|e| panic!("unparseable {text}: {e}"))
}

fn audio(text: &str) -> Option<AudioData<'_>> {
    match parse(text) {
        InboundMessage::AudioData(frame) => Some(frame),
        _ => None,
    }
}

/// The frame's tick on the shared timeline.
fn tick(frame: &AudioData<'_>) -> i64 {
    let ts = frame.timestamp.expect("timestamp");
    ts.micros_since(start_time()) / 20_000
}

/// `samples` padded with silence to whole 20 ms frames of `per_frame` samples, as the
/// emulator sends them (ACS sends whole frames only).
fn padded(samples: &[i16], per_frame: usize) -> Vec<i16> {
    let mut padded = samples.to_vec();
    padded.resize(samples.len().div_ceil(per_frame) * per_frame, 0);
    padded
}

fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

#[tokio::test]
async fn mixed_stream_reproduces_the_wav_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let samples = tone(8_000 + 123, 3);
    let wav = write_wav(dir.path(), "clip.wav", 16_000, &samples);
    let mut gateway = TestGateway::start(Behaviour::default()).await;
    let url = format!("{}/ws/calls?callId=abc", gateway.base_url);
    let config = EmulateConfig::new(&url)
        .with_wav(&wav)
        .with_pacing(Pacing::Fast)
        .with_start_time(start_time());

    let report = run(config).await.unwrap();
    let connection = gateway.next_connection().await;

    assert_eq!(connection.path_and_query, "/ws/calls?callId=abc");
    assert_eq!(connection.client_close, Some(1000));
    let InboundMessage::AudioMetadata(metadata) = parse(&connection.messages[0]) else {
        panic!("AudioMetadata first, got {}", connection.messages[0]);
    };
    assert_eq!(metadata.sample_rate_hz, 16_000);
    assert_eq!(metadata.channels, 1);
    assert_eq!(metadata.frame_bytes_hint, Some(640));
    assert!(metadata.subscription_id.is_some_and(|id| !id.is_empty()));

    let mut pool = BytesMut::new();
    let mut received = Vec::new();
    for (i, text) in connection.messages[1..].iter().enumerate() {
        let frame = audio(text).expect("only AudioData after the metadata");
        assert_eq!(frame.participant_raw_id, None);
        assert!(!frame.silent);
        assert_eq!(tick(&frame), i as i64);
        received.extend_from_slice(&frame.decode_pcm(2, &mut pool).unwrap());
    }
    // The last frame (123 samples) is padded to a whole one.
    assert_eq!(received, pcm_bytes(&padded(&samples, 320)));
    assert_eq!(connection.messages.len(), 1 + 26);
    assert_eq!(report.frames_sent, 26);
    assert_eq!(report.audio_bytes_sent, 26 * 640);
    assert_eq!(report.frames_skipped_silent, 0);
    assert!(!report.stopped_early);
    assert_eq!(report.gateway_close.map(|c| c.code), Some(1000));
}

#[tokio::test]
async fn two_wavs_at_24k_are_mixed_with_saturation() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_wav(dir.path(), "a.wav", 24_000, &[30_000; 960]);
    let b = write_wav(dir.path(), "b.wav", 24_000, &[10_000; 480]);
    let mut gateway = TestGateway::start(Behaviour::default()).await;
    let config = EmulateConfig::new(&gateway.base_url)
        .with_wav(a)
        .with_wav(b)
        .with_pacing(Pacing::Fast);

    let report = run(config).await.unwrap();
    let connection = gateway.next_connection().await;

    let InboundMessage::AudioMetadata(metadata) = parse(&connection.messages[0]) else {
        panic!("AudioMetadata first");
    };
    assert_eq!(metadata.sample_rate_hz, 24_000);
    assert_eq!(metadata.frame_bytes_hint, Some(960));
    let mut pool = BytesMut::new();
    let frames: Vec<Vec<u8>> = connection.messages[1..]
        .iter()
        .map(|t| audio(t).unwrap().decode_pcm(2, &mut pool).unwrap().to_vec())
        .collect();
    assert_eq!(
        frames,
        [pcm_bytes(&[i16::MAX; 480]), pcm_bytes(&[30_000; 480])]
    );
    assert_eq!(report.frames_sent, 2);
}

#[tokio::test]
async fn unmixed_silent_gap_sends_nothing_and_the_timeline_advances() {
    let dir = tempfile::tempdir().unwrap();
    // Speaker A: 0.5 s of speech, 2 s of digital silence, 0.5 s of speech. B talks for 3 s.
    let a = [tone(8_000, 2), vec![0; 32_000], tone(8_000, 2)].concat();
    let a = write_wav(dir.path(), "a.wav", 16_000, &a);
    let b = write_wav(dir.path(), "b.wav", 16_000, &tone(48_000, 5));
    let mut gateway = TestGateway::start(Behaviour::default()).await;
    let config = EmulateConfig::new(&gateway.base_url)
        .with_wav(&a)
        .with_wav(&b)
        .with_unmixed(true)
        .with_participant_id("4:+14255550123")
        .with_pacing(Pacing::Fast)
        .with_start_time(start_time());

    let report = run(config).await.unwrap();
    let connection = gateway.next_connection().await;

    let mut ticks_a = Vec::new();
    let mut ticks_b = Vec::new();
    for text in &connection.messages[1..] {
        let frame = audio(text).unwrap();
        assert!(!frame.silent);
        match frame.participant_raw_id.as_deref() {
            Some("4:+14255550123") => ticks_a.push(tick(&frame)),
            Some("8:acs:emulated-participant-2") => ticks_b.push(tick(&frame)),
            other => panic!("unexpected participant {other:?}"),
        }
    }
    let expected_a: Vec<i64> = (0..25).chain(125..150).collect();
    assert_eq!(ticks_a, expected_a);
    assert_eq!(ticks_b, (0..150).collect::<Vec<i64>>());
    assert_eq!(report.frames_sent, 200);
    assert_eq!(report.frames_skipped_silent, 100);
}

#[tokio::test]
async fn send_silence_sends_flagged_zero_frames_when_unmixed() {
    let dir = tempfile::tempdir().unwrap();
    let a = [tone(320, 2), vec![0; 640]].concat();
    let a = write_wav(dir.path(), "a.wav", 16_000, &a);
    let mut gateway = TestGateway::start(Behaviour::default()).await;
    let config = EmulateConfig::new(&gateway.base_url)
        .with_wav(&a)
        .with_unmixed(true)
        .with_silence(SilencePolicy::Send)
        .with_pacing(Pacing::Fast);

    let report = run(config).await.unwrap();
    let connection = gateway.next_connection().await;

    let silent: Vec<bool> = connection.messages[1..]
        .iter()
        .map(|t| audio(t).unwrap().silent)
        .collect();
    assert_eq!(silent, [false, true, true]);
    assert_eq!(report.frames_skipped_silent, 0);
}

#[tokio::test]
async fn dtmf_arrives_at_its_tick_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let wav = write_wav(dir.path(), "clip.wav", 16_000, &tone(3_200, 1));
    let mut gateway = TestGateway::start(Behaviour::default()).await;
    let config = EmulateConfig::new(&gateway.base_url)
        .with_wav(&wav)
        .with_dtmf("5@100ms".parse().unwrap())
        .with_dtmf("#@0.04s".parse().unwrap())
        .with_dtmf("9@1".parse().unwrap())
        .with_pacing(Pacing::Fast);

    let report = run(config).await.unwrap();
    let connection = gateway.next_connection().await;

    let kinds: Vec<String> = connection.messages[1..]
        .iter()
        .map(|t| match parse(t) {
            InboundMessage::DtmfData(d) => d.tone,
            other => other.kind().to_owned(),
        })
        .collect();
    let mut expected = vec!["AudioData".to_owned(); 10];
    expected.insert(3, "#".to_owned());
    expected.insert(7, "5".to_owned());
    expected.push("9".to_owned());
    assert_eq!(kinds, expected);
    assert_eq!(report.dtmf_sent, 3);
}

#[tokio::test]
async fn transcript_script_plays_on_a_second_socket() {
    let dir = tempfile::tempdir().unwrap();
    let wav = write_wav(dir.path(), "clip.wav", 16_000, &tone(1_600, 1));
    let script = dir.path().join("script.json");
    std::fs::write(
        &script,
        r#"{"locale":"en-US","callConnectionId":"call-7","correlationId":"corr-7","results":[
            {"at":0.05,"participant":"8:acs:alice","text":"hello","status":"Intermediate",
             "offset":1.0,"duration":0.25},
            {"at":0.1,"participant":"8:acs:alice","text":"hello world","status":"Final",
             "confidence":0.9,"offset":1.0,"duration":0.5,
             "words":[{"text":"hello","offset":1.0,"duration":0.2},
                      {"text":"world","offset":1.25,"duration":0.25}]}]}"#,
    )
    .unwrap();
    let mut gateway = TestGateway::start(Behaviour::default()).await;
    let config = EmulateConfig::new(&gateway.base_url)
        .with_wav(&wav)
        .with_transcript(&script)
        .with_pacing(Pacing::Fast);

    let report = run(config).await.unwrap();
    let first = gateway.next_connection().await;
    let second = gateway.next_connection().await;
    let (media, transcription) = if first.messages[0].contains("AudioMetadata") {
        (first, second)
    } else {
        (second, first)
    };

    let InboundMessage::AudioMetadata(audio_meta) = parse(&media.messages[0]) else {
        panic!("AudioMetadata first on the media socket");
    };
    let InboundMessage::TranscriptionMetadata(meta) = parse(&transcription.messages[0]) else {
        panic!(
            "TranscriptionMetadata first, got {}",
            transcription.messages[0]
        );
    };
    assert_eq!(meta.locale.as_deref(), Some("en-US"));
    assert_eq!(meta.call_connection_id.as_deref(), Some("call-7"));
    assert_eq!(meta.correlation_id.as_deref(), Some("corr-7"));
    assert!(meta.subscription_id.is_some());
    assert_ne!(meta.subscription_id, audio_meta.subscription_id);
    assert_eq!(transcription.client_close, Some(1000));

    let results: Vec<_> = transcription.messages[1..]
        .iter()
        .map(|t| match parse(t) {
            InboundMessage::TranscriptionData(d) => d,
            other => panic!("TranscriptionData expected, got {}", other.kind()),
        })
        .collect();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].result_status, ResultStatus::Intermediate);
    assert_eq!(results[0].duration_ticks, 2_500_000);
    let last = &results[1];
    assert_eq!(last.text, "hello world");
    assert_eq!(last.result_status, ResultStatus::Final);
    assert_eq!(last.confidence, Some(0.9));
    assert_eq!(last.offset_ticks, 10_000_000);
    assert_eq!(last.duration_ticks, 5_000_000);
    assert_eq!(last.participant_raw_id.as_deref(), Some("8:acs:alice"));
    let words: Vec<_> = last
        .words
        .iter()
        .map(|w| (w.text.as_str(), w.offset_ticks, w.duration_ticks))
        .collect();
    assert_eq!(
        words,
        [
            ("hello", 10_000_000, 2_000_000),
            ("world", 12_500_000, 2_500_000)
        ]
    );
    assert_eq!(report.transcripts_sent, 2);
    assert_eq!(report.frames_sent, 5);
}

#[tokio::test]
async fn gateway_close_1008_is_reported_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let wav = write_wav(dir.path(), "clip.wav", 16_000, &tone(32_000, 1));
    let mut gateway = TestGateway::start(Behaviour {
        close_after_first: Some((1008, "not allowed")),
        ..Behaviour::default()
    })
    .await;
    // Real time: the close arrives long before the 2 s clip is through.
    let config = EmulateConfig::new(&gateway.base_url).with_wav(&wav);

    let report = run(config).await.unwrap();
    let _ = gateway.next_connection().await;

    assert_eq!(
        report.gateway_close,
        Some(GatewayClose {
            code: 1008,
            reason: "not allowed".to_owned()
        })
    );
    assert!(report.stopped_early);
    assert!(report.frames_sent < 100, "{}", report.frames_sent);
}

#[tokio::test]
async fn outbound_messages_from_the_gateway_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let wav = write_wav(dir.path(), "clip.wav", 16_000, &tone(1_600, 1));
    let mut outbound_audio = String::new();
    write_outbound_audio(&[0, 1, 2, 3], OutboundDialect::Pascal, &mut outbound_audio);
    let mut gateway = TestGateway::start(Behaviour {
        replies: vec![
            outbound_audio.clone(),
            outbound_audio,
            stop_audio_json(OutboundDialect::Camel).to_owned(),
            "{not json".to_owned(),
        ],
        ..Behaviour::default()
    })
    .await;
    let config = EmulateConfig::new(&gateway.base_url)
        .with_wav(&wav)
        .with_pacing(Pacing::Fast);

    let report = run(config).await.unwrap();
    let _ = gateway.next_connection().await;

    let received = report.messages_received_from_gateway;
    assert_eq!(
        (
            received.audio_data,
            received.stop_audio,
            received.unparseable
        ),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn echoed_audio_is_recorded_sample_for_sample_and_timed() {
    let dir = tempfile::tempdir().unwrap();
    // 51 frames, the last one partial (padded to 20 ms when sent).
    let samples = tone(16_000 + 100, 7);
    let wav = write_wav(dir.path(), "in.wav", 16_000, &samples);
    let recording = dir.path().join("out.wav");
    let mut gateway = TestGateway::start(Behaviour {
        echo: true,
        stop_audio_after: Some(10),
        ..Behaviour::default()
    })
    .await;
    let config = EmulateConfig::new(&gateway.base_url)
        .with_wav(&wav)
        .with_pacing(Pacing::Fast)
        .with_record_outbound(&recording);

    let report = run(config).await.unwrap();
    let _ = gateway.next_connection().await;

    let mut reader = hound::WavReader::open(&recording).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 16_000, 16)
    );
    let recorded: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(recorded, padded(&samples, 320));

    let outbound = &report.outbound;
    assert_eq!(report.messages_received_from_gateway.audio_data, 51);
    assert_eq!(outbound.samples, 51 * 320);
    assert_eq!(outbound.duration, Duration::from_millis(1_020));
    assert_eq!(outbound.recording.as_deref(), Some(recording.as_path()));
    assert_eq!(
        (outbound.samples_not_recorded, outbound.undecodable_frames),
        (0, 0)
    );
    let rtt = outbound.round_trip.expect("round-trip stats");
    assert_eq!(rtt.count, 51);
    assert_eq!(rtt.count, report.frames_sent);
    assert!(rtt.min_us > 0, "{rtt:?}");
    assert!(
        rtt.min_us <= rtt.p50_us
            && rtt.p50_us <= rtt.p90_us
            && rtt.p90_us <= rtt.p99_us
            && rtt.p99_us <= rtt.max_us,
        "{rtt:?}"
    );
    assert_eq!(outbound.pacing.map(|p| p.gaps.count), Some(50));
    assert_eq!(report.messages_received_from_gateway.stop_audio, 1);
    assert_eq!(outbound.stop_audio.len(), 1);
    assert_eq!(outbound.stop_audio[0].sample_index, 10 * 320);
    assert!(outbound.stop_audio[0].at > Duration::ZERO);

    let json: serde_json::Value = serde_json::from_str(&report.to_json_pretty()).unwrap();
    assert_eq!(json["outbound"]["round_trip"]["count"], 51);
    assert_eq!(json["outbound"]["stop_audio"][0]["sample_index"], 3200);
    assert_eq!(json["outbound"]["samples"], 16_320);
    let summary = report.to_string();
    assert!(summary.contains("echo round trip: n=51"), "{summary}");
    assert!(summary.contains("(sample 3200)"), "{summary}");
}

#[tokio::test]
async fn linger_captures_paced_playback_that_outlasts_the_inbound_stream() {
    let dir = tempfile::tempdir().unwrap();
    // Five frames, sent at once; the gateway then plays 50 frames (1 s) on its own clock.
    let wav = write_wav(dir.path(), "clip.wav", 16_000, &tone(1_600, 1));
    let mut gateway = TestGateway::start(Behaviour {
        paced_frames: 50,
        ..Behaviour::default()
    })
    .await;
    let config = EmulateConfig::new(&gateway.base_url)
        .with_wav(&wav)
        .with_pacing(Pacing::Fast)
        .with_linger(Duration::from_millis(1_600));

    let report = run(config).await.unwrap();
    let connection = gateway.next_connection().await;

    assert_eq!(connection.client_close, Some(1000));
    assert_eq!(report.messages_received_from_gateway.audio_data, 50);
    let outbound = &report.outbound;
    assert_eq!(outbound.samples, 50 * 320);
    assert_eq!(outbound.duration, Duration::from_secs(1));
    assert_eq!(outbound.recording, None);
    let pacing = outbound.pacing.expect("pacing stats");
    assert_eq!(pacing.gaps.count, 49);
    assert!(
        (10_000..=40_000).contains(&pacing.gaps.p50_us),
        "{pacing:?}"
    );
    assert!(pacing.gaps_over_25ms < 49, "{pacing:?}");
    assert!(outbound.stop_audio.is_empty());
    // Sending took no time; the linger is not part of it.
    assert!(
        report.elapsed < Duration::from_millis(500),
        "{:?}",
        report.elapsed
    );
    assert!(report.to_string().contains("outbound gaps: n=49"));
}

#[tokio::test]
async fn without_linger_the_playback_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let wav = write_wav(dir.path(), "clip.wav", 16_000, &tone(1_600, 1));
    let mut gateway = TestGateway::start(Behaviour {
        paced_frames: 50,
        ..Behaviour::default()
    })
    .await;
    let config = EmulateConfig::new(&gateway.base_url)
        .with_wav(&wav)
        .with_pacing(Pacing::Fast);

    let report = run(config).await.unwrap();
    let _ = gateway.next_connection().await;

    let received = report.messages_received_from_gateway.audio_data;
    assert!(received < 50, "{received}");
    assert_eq!(report.outbound.samples, received * 320);
}

#[tokio::test]
async fn abrupt_end_drops_the_socket_without_a_close_frame() {
    let dir = tempfile::tempdir().unwrap();
    let wav = write_wav(dir.path(), "clip.wav", 16_000, &tone(1_600, 1));
    let mut gateway = TestGateway::start(Behaviour::default()).await;
    let config = EmulateConfig::new(&gateway.base_url)
        .with_wav(&wav)
        .with_end(EndMode::Abrupt)
        .with_pacing(Pacing::Fast);

    let report = run(config).await.unwrap();
    let connection = gateway.next_connection().await;

    assert_eq!(connection.client_close, None);
    assert_eq!(connection.messages.len(), 1 + 5);
    assert_eq!(report.gateway_close, None);
}

#[tokio::test]
async fn realtime_pacing_spreads_frames_over_the_clip() {
    let dir = tempfile::tempdir().unwrap();
    let wav = write_wav(dir.path(), "clip.wav", 16_000, &tone(3_200, 1));
    let mut gateway = TestGateway::start(Behaviour::default()).await;
    let config = EmulateConfig::new(&gateway.base_url).with_wav(&wav);

    let report = run(config).await.unwrap();
    let connection = gateway.next_connection().await;

    assert_eq!(connection.messages.len(), 1 + 10);
    assert_eq!(report.frames_sent, 10);
    // Frame i goes out at tick i: the last one no earlier than 9 ticks after the first.
    assert!(
        report.elapsed >= Duration::from_millis(9 * 20),
        "{:?}",
        report.elapsed
    );
}

#[tokio::test]
async fn bad_inputs_fail_before_connecting_and_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let stereo = dir.path().join("stereo.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&stereo, spec).unwrap();
    writer.write_sample(1_i16).unwrap();
    writer.write_sample(1_i16).unwrap();
    writer.finalize().unwrap();
    // Nothing listens there: a WAV error must come before any connection attempt.
    let url = "ws://127.0.0.1:9/ws";

    let err = run(EmulateConfig::new(url).with_wav(&stereo))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EmulatorError::NotMono { channels: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("stereo.wav"), "{err}");

    let script = dir.path().join("script.json");
    std::fs::write(&script, r#"{"locale":"en-US","results":[{"at":"soon"}]}"#).unwrap();
    let mono = write_wav(dir.path(), "mono.wav", 16_000, &[1; 10]);
    let err = run(EmulateConfig::new(url)
        .with_wav(&mono)
        .with_transcript(&script))
    .await
    .unwrap_err();
    assert!(matches!(err, EmulatorError::BadTranscript { .. }), "{err}");
    assert!(err.to_string().contains("script.json"), "{err}");

    let err = run(EmulateConfig::new(url).with_wav(&mono))
        .await
        .unwrap_err();
    assert!(matches!(err, EmulatorError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(url), "{err}");
}
