//! The `pocketsphinx` engine through the same path as a call (`build_transcriber` and
//! `transcribe_wav`), scored by word error rate on the recordings of read speech in
//! samples/speech/librivox. (On the espeak-ng clips of samples/speech its acoustic model,
//! trained on human voices, does far worse, about 80%: `cargo bench --bench speech` reports
//! it.) Needs Debian's `libpocketsphinx-dev` and `pocketsphinx-en-us`.

#![cfg(feature = "pocketsphinx")]
#![allow(clippy::unwrap_used)] // a panic in a test helper is a failed assertion

mod common;

use std::path::{Path, PathBuf};

use common::{references, speech_dir};
use mediagate_speech::wer::Score;
use mediagate_speech::{FileTranscript, build_transcriber, transcribe_wav};
use serde_json::json;

/// Corpus WER the engine must stay under on human read speech.
const MAX_WER: f64 = 0.45;

async fn transcribe(path: &Path) -> FileTranscript {
    let transcriber = build_transcriber("pocketsphinx", &json!({}), None).unwrap();
    transcribe_wav(path, transcriber).await.unwrap()
}

/// The transcriber's own report (counters, compute time) among a file's reports.
fn report(transcript: &FileTranscript) -> &serde_json::Value {
    transcript
        .reports
        .iter()
        .find(|r| r.name == "pocketsphinx")
        .and_then(|r| r.report.as_ref())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_speech_is_transcribed_within_the_error_budget() {
    let mut corpus = Score::default();
    let (mut audio_secs, mut compute_secs) = (0.0, 0.0);
    let mut first_compute_secs = None;
    for (name, reference) in references() {
        let path = speech_dir().join(format!("librivox/{name}.wav"));
        let transcript = transcribe(&path).await;
        let heard = transcript.lines().collect::<Vec<_>>().join(" ");
        let score = Score::of(&reference, &heard);
        println!(
            "{name}: {} errors in {} words: {heard:?} (said {reference:?})",
            score.errors, score.words
        );
        corpus += score;
        let report = report(&transcript);
        let compute = report["compute_secs"].as_f64().unwrap();
        first_compute_secs.get_or_insert(compute);
        compute_secs += compute;
        audio_secs += report["audio_secs"].as_f64().unwrap();
        for word in transcript.finals.iter().flat_map(|t| &t.words) {
            assert!(word.duration_ms > 0, "{word:?}");
        }
        if !heard.is_empty() {
            let confidence = transcript.finals[0].confidence.unwrap();
            assert!((0.0..=1.0).contains(&confidence), "{confidence}");
        }
    }
    let first = first_compute_secs.unwrap_or_default();
    println!(
        "pocketsphinx: corpus WER {:.1}% ({} errors in {} words); real-time factor {:.3} \
         ({compute_secs:.2} s for {audio_secs:.2} s of utterances; {first:.2} s of it the first \
         clip, which loads the decoder)",
        corpus.wer() * 100.0,
        corpus.errors,
        corpus.words,
        compute_secs / audio_secs,
    );
    assert!(
        corpus.wer() < MAX_WER,
        "corpus WER {:.1}% is not under {:.0}%",
        corpus.wer() * 100.0,
        MAX_WER * 100.0
    );
}

/// Two clips with a second of silence before, between and after them: a short call.
fn call_of_two_clips(dir: &Path) -> PathBuf {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let path = dir.join("call.wav");
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    let silence = [0i16; 16_000];
    let mut write = |samples: &[i16]| {
        samples
            .iter()
            .for_each(|&s| writer.write_sample(s).unwrap())
    };
    for name in ["harvard-01", "support-01"] {
        write(&silence);
        let clip = hound::WavReader::open(speech_dir().join(format!("{name}.wav"))).unwrap();
        assert_eq!(clip.spec().sample_rate, 16_000, "{name}");
        let samples: Vec<i16> = clip.into_samples().map(Result::unwrap).collect();
        write(&samples);
    }
    write(&silence);
    writer.finalize().unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_gives_one_final_per_sentence_with_words_on_its_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let transcript = transcribe(&call_of_two_clips(dir.path())).await;
    assert_eq!(
        report(&transcript)["finals"],
        2,
        "{:?}",
        report(&transcript)
    );
    let first = transcript.finals[0].start_ms as f64 / 1e3;
    assert!((0.6..=1.1).contains(&first), "first utterance at {first} s");
    for t in &transcript.finals {
        assert_eq!(&*t.source, "pocketsphinx");
        let (start, end) = (t.start_ms, t.end_ms());
        assert!(!t.words.is_empty(), "{t:?}");
        for word in &t.words {
            assert!(
                word.start_ms >= start && word.start_ms + word.duration_ms <= end,
                "{word:?} outside the utterance {start}..{end}"
            );
        }
    }
}

#[test]
fn missing_models_are_a_build_error_naming_the_path_and_the_packages() {
    let error = build_transcriber(
        "pocketsphinx",
        &json!({"dict": "/nonexistent/words.dict"}),
        None,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains("/nonexistent/words.dict"), "{error}");
    assert!(
        error.contains("apt-get install libpocketsphinx-dev pocketsphinx-en-us"),
        "{error}"
    );
}
