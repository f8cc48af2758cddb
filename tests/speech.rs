//! The embedded speech engine end to end: the emulator streams the spoken clips of
//! samples/speech (espeak-ng) as one call into a gateway on its default pipeline, and the words come back in
//! transcript.jsonl and transcript.vtt; `mediagate transcribe`'s path scores every committed
//! clip.

#![cfg(feature = "whisper")]

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;
use common::{TestGateway, emulate, read_wav, sample, write_wav};
use mediagate::audio::{AudioFormat, StreamResampler};
use mediagate::speech::wer::Score;

/// The spoken clips and what they say, from samples/speech/references.txt.
fn references() -> Vec<(String, String)> {
    std::fs::read_to_string(sample("speech/references.txt"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(name, text)| (name.to_owned(), text.to_owned()))
        .collect()
}

/// Every committed clip, in order, with a second of silence before each and after the last,
/// resampled to 24 kHz as an ACS call sends it: a 50 s call, and what it says.
fn spoken_call(dir: &Path) -> (PathBuf, Vec<String>) {
    let silence = vec![0u8; 2 * 16_000];
    let mut pcm = Vec::new();
    let mut said = Vec::new();
    for (name, text) in references() {
        let (samples, rate) = read_wav(&sample(&format!("speech/{name}.wav")));
        assert_eq!(rate, 16_000);
        pcm.extend_from_slice(&silence);
        pcm.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
        said.push(text);
    }
    pcm.extend_from_slice(&silence);
    let mut resampler = StreamResampler::new(AudioFormat::mono(16_000), 24_000).unwrap();
    let mut out = BytesMut::new();
    resampler.process(&pcm, &mut out);
    resampler.flush(&mut out);
    let mut samples: Vec<i16> = out
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    // Whole 20 ms frames (480 samples), as ACS sends them and the emulator pads them: the
    // recording is then the file, sample for sample.
    samples.resize(samples.len().div_ceil(480) * 480, 0);
    let path = dir.join("call-24k.wav");
    write_wav(&path, 24_000, &samples);
    (path, said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_the_default_pipeline_is_transcribed_by_the_embedded_engine() {
    let gateway = TestGateway::start_with(|config| {
        config.pipeline = mediagate::default_config().pipeline;
    })
    .await;
    let scratch = tempfile::tempdir().unwrap();
    let (clip, said) = spoken_call(scratch.path());
    mediagate::emulator::run(emulate(gateway.url("/ws?callId=spoken")).with_wav(&clip))
        .await
        .unwrap();
    let hung_up = std::time::Instant::now();
    // The emulator sends faster than real time: Whisper has most of the call still to
    // transcribe. The call is over for everything else within a second: session.json says
    // `ended`, lists whisper as still working (and transcript, which records it), and the
    // recording is final, bit for bit what was sent.
    let early = gateway
        .session_when("spoken", Duration::from_secs(1), |s| {
            s["status"] == "ended"
                && common::processor(&s["transports"][0], "wav")["working"].is_null()
        })
        .await
        .expect("session.json did not say ended, with wav finished, within 1 s of hang-up");
    let early_at = hung_up.elapsed();
    let transport = &early["transports"][0];
    assert_eq!(
        common::processor(transport, "whisper")["working"],
        true,
        "{early}"
    );
    assert_eq!(
        common::processor(transport, "transcript")["working"],
        true,
        "{early}"
    );
    let (recorded, rate) = read_wav(&gateway.call_dir("spoken").join("mixed.wav"));
    let (sent, _) = read_wav(&clip);
    assert_eq!(rate, 24_000);
    assert!(recorded == sent, "the recording is not what was sent");
    common::assert_wav_header_consistent(&gateway.call_dir("spoken").join("mixed.wav"));
    eprintln!("ended with whisper working {early_at:?} after hang-up");
    // Then Whisper catches up, and session.json is written again, complete.
    let session = gateway
        .ended_session_within("spoken", Duration::from_secs(180))
        .await;
    let transport = &session["transports"][0];
    let whisper = common::processor(transport, "whisper");
    assert_eq!(whisper["detached"], false, "{whisper}");
    assert_eq!(whisper["report"]["finals"], said.len(), "{whisper}");

    let call = gateway.call_dir("spoken");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(call.join("transcript.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let finals: Vec<&serde_json::Value> = lines.iter().filter(|l| l["status"] == "final").collect();
    assert_eq!(finals.len(), said.len(), "{lines:?}");
    assert!(lines.iter().all(|l| l["source"] == "whisper"), "{lines:?}");
    // On the call's timeline: the first sentence starts after 1 s of silence (less the
    // pre-roll), each ends before the next one starts.
    let secs = |l: &serde_json::Value, key: &str| l[key].as_u64().unwrap() as f64 / 1e3;
    let first = secs(finals[0], "start_ms");
    assert!((0.6..=1.1).contains(&first), "first utterance at {first} s");
    for pair in finals.windows(2) {
        assert!(
            secs(pair[0], "end_ms") <= secs(pair[1], "start_ms"),
            "{pair:?}"
        );
    }

    let heard: Vec<&str> = finals.iter().map(|l| l["text"].as_str().unwrap()).collect();
    let score = Score::of(&said.join(" "), &heard.join(" "));
    assert!(
        score.wer() < 0.15,
        "WER {:.1}% ({} errors in {} words): heard {heard:?}",
        score.wer() * 100.0,
        score.errors,
        score.words
    );

    // The same words in the WebVTT file, in cues cut at sentences and pauses.
    let vtt = std::fs::read_to_string(call.join("transcript.vtt")).unwrap();
    let blocks: Vec<&str> = vtt.split("\n\n").skip(1).collect();
    assert!(blocks.len() >= heard.len(), "{vtt}");
    let cued: Vec<&str> = blocks.iter().filter_map(|b| b.lines().nth(2)).collect();
    assert_eq!(cued.join(" "), heard.join(" "), "{vtt}");
    // Each final carries its words, on the call's timeline inside the utterance.
    for last in &finals {
        let words = last["words"].as_array().unwrap();
        assert!(!words.is_empty(), "{last}");
        for w in words {
            assert!(secs(last, "start_ms") <= secs(w, "start_ms"), "{last}");
            assert!(secs(w, "end_ms") <= secs(last, "end_ms"), "{last}");
        }
    }
}

/// Corpus WER of the embedded engine on the clips of `dir` (under samples/speech, with their
/// references.txt), and what it heard.
async fn whisper_score(dir: &str) -> (Score, Vec<String>) {
    let mut total = Score::default();
    let mut heard = Vec::new();
    let listed = std::fs::read_to_string(sample(&format!("{dir}/references.txt"))).unwrap();
    for (name, text) in listed.lines().filter_map(|l| l.split_once('\t')) {
        let transcriber = tokio::task::spawn_blocking(|| {
            mediagate::speech::build_transcriber(
                "whisper",
                &serde_json::Value::Null,
                Some(&mediagate::model_installer()),
            )
        })
        .await
        .unwrap()
        .unwrap();
        let path = sample(&format!("{dir}/{name}.wav"));
        let result = mediagate::speech::transcribe_wav(&path, transcriber)
            .await
            .unwrap();
        let hypothesis = result.lines().collect::<Vec<_>>().join(" ");
        total += Score::of(text, &hypothesis);
        heard.push(format!("{name}: {hypothesis}"));
    }
    (total, heard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spoken_clips_score_under_fifteen_percent_word_error_rate() {
    let (score, heard) = whisper_score("speech").await;
    assert!(score.words > 80, "{score:?}");
    assert!(
        score.wer() < 0.15,
        "WER {:.1}%: {heard:#?}",
        score.wer() * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_speech_scores_under_fifteen_percent_word_error_rate() {
    let (score, heard) = whisper_score("speech/librivox").await;
    assert!(score.words > 60, "{score:?}");
    assert!(
        score.wer() < 0.15,
        "WER {:.1}%: {heard:#?}",
        score.wer() * 100.0
    );
}
