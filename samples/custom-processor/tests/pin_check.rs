//! The sample through a real gateway: the emulator keys digits, and the chime (or the buzz) comes
//! back into the call.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::Path;
use std::time::Duration;

use mediagate::emulator::{DtmfEvent, EmulateConfig, Pacing};
use mediagate::testing::Gateway;

/// Keys `digits` (then `#`) during a call and returns the audio the gateway played back.
async fn key_in(digits: &str) -> Vec<i16> {
    let mut registry = mediagate::registry();
    pin_check::register(&mut registry);
    let gateway = Gateway::start(registry, |config| {
        config.pipeline.processors = vec!["pin_check".to_owned()];
        config
            .pipeline
            .settings
            .insert("pin_check".to_owned(), serde_json::json!({ "pin": "1234" }));
    })
    .await;
    let url = gateway.url("/ws?callId=pin");
    let scratch = tempfile::tempdir().unwrap();

    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hello-16k.wav");
    let recorded = scratch.path().join("played.wav");
    let mut emulation = EmulateConfig::new(url)
        .with_pacing(Pacing::Fast)
        .with_wav(clip)
        .with_record_outbound(&recorded)
        .with_linger(Duration::from_millis(900));
    for (i, digit) in digits.chars().chain(['#']).enumerate() {
        let spec = format!("{digit}@{}ms", 100 + 100 * i);
        emulation = emulation.with_dtmf(spec.parse::<DtmfEvent>().unwrap());
    }
    mediagate::emulator::run(emulation).await.unwrap();
    gateway.stop().await;
    let reader = hound::WavReader::open(&recorded).unwrap();
    reader.into_samples::<i16>().map(Result::unwrap).collect()
}

fn zero_crossings(samples: &[i16]) -> usize {
    samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_pin_gets_the_chime() {
    let played = key_in("1234").await;
    // 150 ms at 660 Hz then 250 ms at 880 Hz, in whole 20 ms frames: 400 ms at 16 kHz.
    assert_eq!(played.len(), 6_400);
    let crossings = zero_crossings(&played);
    assert!(
        (620..=660).contains(&crossings),
        "{crossings} zero crossings"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_gets_the_buzz() {
    let played = key_in("9999").await;
    assert_eq!(played.len(), 6_400);
    let crossings = zero_crossings(&played);
    // 400 ms at 220 Hz.
    assert!(
        (170..=182).contains(&crossings),
        "{crossings} zero crossings"
    );
}
