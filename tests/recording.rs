//! End to end through real sockets: the emulator streams calls into a real gateway, and what the
//! gateway wrote is checked sample for sample.

use crate::common;

use std::time::Duration;

use common::{
    TestGateway, assert_wav_header_consistent, emulate, processor, read_wav, sample, write_wav,
};
use mediagate::emulator::{DtmfEvent, SilencePolicy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoken_clip_is_recorded_byte_identical() {
    let gateway = TestGateway::start().await;
    for (clip, call) in [("hello-16k.wav", "clip16"), ("hello-24k.wav", "clip24")] {
        let report = mediagate::emulator::run(
            emulate(gateway.url(&format!("/ws/acs?callId={call}"))).with_wav(sample(clip)),
        )
        .await
        .unwrap();
        let session = gateway.ended_session(call).await;
        let (sent, rate) = read_wav(&sample(clip));
        let path = gateway.call_dir(call).join("mixed.wav");
        assert_wav_header_consistent(&path);
        let (recorded, recorded_rate) = read_wav(&path);
        assert_eq!(recorded_rate, rate);
        assert_eq!(recorded.len(), sent.len(), "{clip}: sample count");
        assert!(
            recorded == sent,
            "{clip}: recorded samples differ from the clip"
        );

        let transport = &session["transports"][0];
        assert_eq!(transport["kind"], "media");
        assert_eq!(transport["end"]["reason"], "client_close");
        assert_eq!(transport["end"]["code"], 1000);
        assert_eq!(transport["format"]["sample_rate_hz"], rate);
        assert_eq!(transport["audio_channel_type"], "mixed");
        assert_eq!(transport["frames_received"], report.frames_sent);
        assert_eq!(processor(transport, "wav")["report"]["gaps_filled"], 0);
        assert_eq!(transport["bad_messages"]["total"], 0);
        assert_eq!(transport["path"], "/ws/acs");
        assert_eq!(session["identity"]["source"], "query:callId");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmixed_participants_line_up_when_one_falls_silent() {
    let gateway = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Carol speaks, goes silent for exactly 2 s (digital silence: ACS sends nothing), speaks again.
    let (carol, rate) = read_wav(&sample("carol-16k.wav"));
    let split = 16_000; // 1 s in, on a frame boundary
    let mut carol_with_gap = carol[..split].to_vec();
    carol_with_gap.extend(std::iter::repeat_n(0i16, 2 * 16_000));
    carol_with_gap.extend_from_slice(&carol[split..]);
    let carol_path = dir.path().join("carol-gap.wav");
    write_wav(&carol_path, rate, &carol_with_gap);

    let ids = ["8:acs:alice", "8:acs:bob", "4:+14255550123"];
    let report = mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=three"))
            .with_unmixed(true)
            .with_wav(sample("alice-16k.wav"))
            .with_wav(sample("bob-16k.wav"))
            .with_wav(&carol_path)
            .with_participant_id(ids[0])
            .with_participant_id(ids[1])
            .with_participant_id(ids[2]),
    )
    .await
    .unwrap();
    assert!(
        report.frames_skipped_silent >= 100,
        "the 2 s gap was not skipped: {report:?}"
    );
    let session = gateway.ended_session("three").await;
    let transport = &session["transports"][0];
    assert_eq!(transport["audio_channel_type"], "unmixed");
    assert_eq!(transport["participants"], serde_json::json!(ids));
    assert!(
        processor(transport, "wav")["report"]["gaps_filled"]
            .as_u64()
            .unwrap()
            >= 1
    );

    let files = ["8_acs_alice.wav", "8_acs_bob.wav", "4__14255550123.wav"];
    let tracks: Vec<Vec<i16>> = files
        .iter()
        .map(|f| {
            let path = gateway.call_dir("three").join(f);
            assert_wav_header_consistent(&path);
            read_wav(&path).0
        })
        .collect();
    let longest = tracks.iter().map(Vec::len).max().unwrap();
    assert!(
        tracks.iter().all(|t| t.len() == longest),
        "tracks differ in length"
    );
    // Every source sits at sample 0 of its track, and Carol's gap is silence in the right place:
    // her whole track equals her source, padded at the end.
    for (track, source) in tracks.iter().zip([
        read_wav(&sample("alice-16k.wav")).0,
        read_wav(&sample("bob-16k.wav")).0,
        carol_with_gap,
    ]) {
        // The emulator also drops all-zero frames at a source's end (nothing to send), and the
        // gateway pads every track to the longest: the source, then silence, either way.
        let n = track.len().min(source.len());
        assert!(
            track[..n] == source[..n],
            "a track is not aligned with its source"
        );
        assert!(track[n..].iter().chain(&source[n..]).all(|&s| s == 0));
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_are_all_recorded() {
    let gateway = TestGateway::start().await;
    let clip = read_wav(&sample("alice-16k.wav")).0;
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let config = emulate(gateway.url(&format!("/ws?callId=load-{i}")))
                .with_wav(sample("alice-16k.wav"));
            tokio::spawn(mediagate::emulator::run(config))
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    for i in 0..50 {
        let call = format!("load-{i}");
        let session = gateway.ended_session(&call).await;
        assert_eq!(
            session["transports"][0]["end"]["reason"], "client_close",
            "{call}"
        );
        let path = gateway.call_dir(&call).join("mixed.wav");
        assert_wav_header_consistent(&path);
        assert!(read_wav(&path).0 == clip, "{call}: recording differs");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcripts_and_dtmf_land_in_the_call_folder() {
    let gateway = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.json");
    std::fs::write(
        &script,
        serde_json::json!({
            "locale": "en-US",
            "callConnectionId": "conn-42",
            "results": [
                {"at": 0.5, "participant": "8:acs:alice", "text": "hello thank", "status": "Intermediate",
                 "offset": 0.2, "duration": 0.6},
                {"at": 1.0, "participant": "8:acs:alice", "text": "Hello, thank you <for> calling.",
                 "status": "Final", "confidence": 0.91, "offset": 0.2, "duration": 1.5,
                 "words": [{"text": "hello", "offset": 0.2, "duration": 0.3}]},
                {"at": 2.0, "text": "Second line.", "status": "Final", "offset": 62.0, "duration": 1.25}
            ]
        })
        .to_string(),
    )
    .unwrap();
    mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=talk"))
            .with_wav(sample("hello-16k.wav"))
            .with_transcript(&script)
            .with_dtmf("5@1.0s".parse::<DtmfEvent>().unwrap())
            .with_dtmf("#@2s".parse::<DtmfEvent>().unwrap()),
    )
    .await
    .unwrap();
    // Both transports (same callId) share one folder; the call ends when both have.
    let session = gateway.ended_session("talk").await;
    let kinds: Vec<_> = session["transports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].clone())
        .collect();
    assert!(
        kinds.contains(&"media".into()) && kinds.contains(&"transcription".into()),
        "{kinds:?}"
    );
    let transcription = session["transports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "transcription")
        .unwrap();
    assert_eq!(transcription["call_connection_id"], "conn-42");
    assert_eq!(transcription["transcripts_final"], 2);
    assert_eq!(transcription["transcripts_intermediate"], 1);

    let call = gateway.call_dir("talk");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(call.join("transcript.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["status"], "partial");
    assert_eq!(lines[1]["status"], "final");
    assert_eq!(lines[1]["source"], "acs");
    assert_eq!(lines[1]["speaker"], "8:acs:alice");
    // ACS's 100 ns ticks, in ms on the call's timeline.
    assert_eq!(lines[1]["start_ms"], 200);
    assert_eq!(lines[1]["end_ms"], 1_700);
    assert_eq!(lines[1]["words"][0]["text"], "hello");
    assert_eq!(lines[1]["words"][0]["start_ms"], 200);
    assert_eq!(lines[1]["words"][0]["end_ms"], 500);

    let vtt = std::fs::read_to_string(call.join("transcript.vtt")).unwrap();
    assert_eq!(
        vtt,
        "WEBVTT\n\n1\n00:00:00.200 --> 00:00:01.700\n<v 8:acs:alice>Hello, thank you &lt;for&gt; calling.\n\
         \n2\n00:01:02.000 --> 00:01:03.250\nSecond line.\n"
    );

    let dtmf: Vec<serde_json::Value> = std::fs::read_to_string(call.join("dtmf.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tones: Vec<_> = dtmf.iter().map(|d| d["tone"].as_str().unwrap()).collect();
    assert_eq!(tones, ["5", "#"]);
    // Placed on the audio timeline: 1.0 s and 2.0 s in (±1 frame).
    let at = |i: usize| dtmf[i]["call_offset_ms"].as_i64().unwrap();
    assert!(
        (at(0) - 1_000).abs() <= 20 && (at(1) - 2_000).abs() <= 20,
        "{dtmf:?}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_policy_send_records_every_frame() {
    // With silence sent as frames (as ACS does for mixed audio), nothing needs filling.
    let gateway = TestGateway::start().await;
    let report = mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=sendall"))
            .with_unmixed(true)
            .with_silence(SilencePolicy::Send)
            .with_wav(sample("bob-16k.wav")),
    )
    .await
    .unwrap();
    assert_eq!(report.frames_skipped_silent, 0);
    let session = gateway.ended_session("sendall").await;
    assert_eq!(
        session["transports"][0]["frames_received"],
        report.frames_sent
    );
    assert_eq!(
        processor(&session["transports"][0], "wav")["report"]["gaps_filled"],
        0
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_can_be_archived_at_another_rate() {
    let gateway = TestGateway::start_with(|c| {
        c.pipeline.settings.insert(
            "wav".to_owned(),
            serde_json::json!({ "sample_rate_hz": 8_000 }),
        );
    })
    .await;
    let report = mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=archive")).with_wav(sample("hello-24k.wav")),
    )
    .await
    .unwrap();
    let session = gateway.ended_session("archive").await;
    let (sent, _) = read_wav(&sample("hello-24k.wav"));
    let path = gateway.call_dir("archive").join("mixed.wav");
    assert_wav_header_consistent(&path);
    let (archived, rate) = read_wav(&path);
    assert_eq!(rate, 8_000);
    // A third of the samples, less the resampler's delay (at most one 20 ms frame of 8 kHz).
    let expected = sent.len() / 3;
    assert!(
        archived.len() <= expected && expected - archived.len() <= 160,
        "{} samples at 8 kHz from {} at 24 kHz",
        archived.len(),
        sent.len()
    );
    // Speech, not silence: the level survives the resampling.
    let energy = |s: &[i16]| s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64;
    let ratio = energy(&archived) / energy(&sent);
    assert!((0.5..1.5).contains(&ratio), "energy ratio {ratio}");
    let wav = processor(&session["transports"][0], "wav");
    // The resampler's first frame fills its delay line: one frame fewer comes out.
    let frames = wav["frames"].as_u64().unwrap();
    assert!(frames + 1 >= report.frames_sent && frames <= report.frames_sent);
    assert_eq!(wav["report"]["tracks"][0]["samples"], archived.len());
    gateway.stop().await;
}
