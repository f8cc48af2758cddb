//! Audio into the call through a real gateway: a prompt at another rate, and barge-in.

use crate::common;

use std::time::Duration;

use common::{TestGateway, read_wav, sample, write_wav};
use mediagate::emulator::{EmulateConfig, Pacing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_24k_prompt_plays_into_a_16k_call_at_the_right_duration_with_no_file_io_per_call() {
    let dir = tempfile::tempdir().unwrap();
    // 0.6 s of 440 Hz at 24 kHz.
    let prompt: Vec<i16> = (0..14_400)
        .map(|i| {
            (8_000.0 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 24_000.0).sin()) as i16
        })
        .collect();
    let prompt_path = dir.path().join("prompt-24k.wav");
    write_wav(&prompt_path, 24_000, &prompt);
    let file = prompt_path.to_str().unwrap().to_owned();
    let gateway = TestGateway::start_with(move |c| {
        c.pipeline.processors = vec!["play".to_owned()];
        c.pipeline.settings.insert(
            "play".to_owned(),
            serde_json::json!({ "file": file, "at_start": true }),
        );
    })
    .await;
    // The clip was read and decoded once, when the route's factory was built: a call reads no
    // file, so the prompt plays with its file gone.
    std::fs::remove_file(&prompt_path).unwrap();
    let recorded = dir.path().join("heard.wav");
    mediagate::emulator::run(
        EmulateConfig::new(gateway.url("/ws?callId=prompt"))
            .with_pacing(Pacing::Fast)
            .with_wav(sample("bob-16k.wav"))
            .with_record_outbound(&recorded)
            .with_linger(Duration::from_millis(1_200)),
    )
    .await
    .unwrap();
    let (heard, rate) = read_wav(&recorded);
    assert_eq!(rate, 16_000);
    // 0.6 s at 16 kHz, in whole 20 ms frames, plus at most the resampler's flush frame.
    assert!(
        (9_600..=9_600 + 2 * 320).contains(&heard.len()),
        "{} samples",
        heard.len()
    );
    assert_eq!(heard.len() % 320, 0, "every frame exactly 20 ms");
    // Still a 440 Hz tone at its level: over the steady middle 0.4 s (the resampler's start and
    // the padded tail ring near zero), about 2 × 440 × 0.4 zero crossings.
    let middle = &heard[1_600..8_000];
    let crossings = middle
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    assert!(
        (348..=356).contains(&crossings),
        "{crossings} zero crossings"
    );
    let peak = middle.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!((7_800..=8_200).contains(&peak), "peak {peak}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_speech_barges_in_on_a_prompt() {
    let dir = tempfile::tempdir().unwrap();
    // The caller is quiet for 0.6 s, then speaks.
    let mut caller = vec![0i16; 9_600];
    caller.extend(read_wav(&sample("hello-16k.wav")).0);
    let caller_path = dir.path().join("caller.wav");
    write_wav(&caller_path, 16_000, &caller);
    let prompt = sample("alice-16k.wav"); // 3.9 s
    let file = prompt.to_str().unwrap().to_owned();
    let gateway = TestGateway::start_with(move |c| {
        c.pipeline.processors = vec!["play".to_owned(), "vad".to_owned()];
        c.pipeline
            .settings
            .insert("play".to_owned(), serde_json::json!({ "file": file }));
    })
    .await;
    let recorded = dir.path().join("heard.wav");
    let report = mediagate::emulator::run(
        EmulateConfig::new(gateway.url("/ws?callId=barge"))
            .with_pacing(Pacing::Realtime)
            .with_wav(&caller_path)
            .with_record_outbound(&recorded)
            .with_linger(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let stops = &report.outbound.stop_audio;
    assert_eq!(stops.len(), 1, "{:?}", report.outbound);
    let heard = read_wav(&recorded).0.len() as u64;
    let prompt_len = read_wav(&prompt).0.len() as u64;
    // The prompt was cut well before its end, and nothing but at most the frame already on its
    // way followed the StopAudio.
    assert!(
        heard < prompt_len / 2,
        "{heard} of {prompt_len} samples played"
    );
    assert!(
        heard - stops[0].sample_index <= 320,
        "{heard} heard, stop at {}",
        stops[0].sample_index
    );
    // Speech started after the caller's 0.6 s of quiet: the cut came after that, not before.
    assert!(stops[0].at >= Duration::from_millis(600), "{:?}", stops[0]);
    gateway.stop().await;
}
