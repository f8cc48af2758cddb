//! Whisper's word times against a reference: the read-speech recordings of
//! samples/speech/librivox go through the `whisper` engine as a call would (`transcribe_wav`),
//! and their known text is aligned to the same audio by PocketSphinx (forced alignment, the
//! acoustic model alone). Words the two agree on are compared by start time. Needs both
//! features, the installed default Whisper model (`mediagate models install`), and Debian's
//! `libpocketsphinx-dev` and `pocketsphinx-en-us`.

#![cfg(all(feature = "whisper", feature = "pocketsphinx"))]
#![allow(clippy::unwrap_used)] // a panic in a test helper is a failed assertion

mod common;

use std::path::PathBuf;

use common::{references, speech_dir};
use mediagate_pocketsphinx::{Config, Decoder};
use mediagate_speech::{build_transcriber, transcribe_wav};
use serde_json::json;

/// The bound on the median error of word start times.
const MAX_MEDIAN_ERROR_SECS: f64 = 0.1;

fn librivox() -> PathBuf {
    speech_dir().join("librivox")
}

/// A word as both sides spell it: lower case, letters, digits and apostrophes only.
fn normalized(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphanumeric() || *c == '\'')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The pairs of indices of `a` and `b` whose words match in a longest common subsequence: the
/// words both sides heard, in order, unmatched ones skipped.
fn matched(a: &[String], b: &[String]) -> Vec<(usize, usize)> {
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut pairs) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            pairs.push((i, j));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    pairs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whisper_word_starts_are_within_a_tenth_of_a_second_of_the_reference() {
    let mut aligner = Decoder::new(&Config::default()).unwrap();
    let (mut errors, mut reference_words) = (Vec::new(), 0);
    for (name, text) in references() {
        let path = librivox().join(format!("{name}.wav"));
        let samples: Vec<i16> = hound::WavReader::open(&path)
            .unwrap()
            .into_samples::<i16>()
            .collect::<Result<_, _>>()
            .unwrap();
        let said: Vec<&str> = text.split_whitespace().collect();
        let reference = aligner.align(&samples, &said).unwrap();
        assert_eq!(reference.words.len(), said.len(), "{name}: {reference:?}");
        reference_words += said.len();

        let transcriber = build_transcriber("whisper", &json!({}), None).unwrap();
        let transcript = transcribe_wav(&path, transcriber).await.unwrap();
        let mut heard = Vec::new();
        for last in &transcript.finals {
            let end_ms = last.start_ms + last.duration_ms;
            assert!(
                !last.words.is_empty(),
                "{name}: a final without words: {last:?}"
            );
            let mut at = last.start_ms;
            for word in &last.words {
                // On the call's timeline, inside the utterance, in order.
                assert!(
                    at <= word.start_ms && word.start_ms + word.duration_ms <= end_ms,
                    "{name}: {word:?} outside {}..{end_ms} or out of order",
                    last.start_ms
                );
                at = word.start_ms + word.duration_ms;
                heard.push((normalized(&word.text), word.start_ms as f64 / 1000.0));
            }
        }

        let expected: Vec<String> = reference
            .words
            .iter()
            .map(|w| normalized(&w.text))
            .collect();
        let got: Vec<String> = heard.iter().map(|(w, _)| w.clone()).collect();
        let pairs = matched(&expected, &got);
        for &(r, h) in &pairs {
            let error = heard[h].1 - reference.words[r].start_secs;
            println!(
                "{name} {:>12}: whisper {:6.2} s, pocketsphinx {:6.2} s, error {:+4.0} ms",
                expected[r],
                heard[h].1,
                reference.words[r].start_secs,
                error * 1000.0
            );
            errors.push(error.abs());
        }
    }
    assert!(
        errors.len() * 10 >= reference_words * 7,
        "only {} of {reference_words} words matched",
        errors.len()
    );
    errors.sort_by(f64::total_cmp);
    let median = errors[errors.len() / 2];
    let p90 = errors[errors.len() * 9 / 10];
    println!(
        "word start error over {} words: median {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        errors.len(),
        median * 1000.0,
        p90 * 1000.0,
        errors.last().unwrap() * 1000.0
    );
    assert!(
        median <= MAX_MEDIAN_ERROR_SECS,
        "median error {:.0} ms",
        median * 1000.0
    );
}
