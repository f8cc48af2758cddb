//! `level_meter` through a real gateway: the emulator streams a recording, and another
//! processor of the call receives one `level` event per 100 ms, each the level of that stretch
//! of the recording.

use std::sync::{Arc, Mutex};

use mediagate::emulator::{EmulateConfig, Pacing};
use mediagate::pipeline::{CallInfo, Context, Event, Input, Processor, ProcessorError};
use mediagate::testing::Gateway;

/// Keeps every `level` event it receives.
struct Listener(Arc<Mutex<Vec<serde_json::Value>>>);

impl Processor for Listener {
    fn input(&self) -> Input {
        // It records what an emitter says: the call's last readings come as it ends.
        Input {
            after_emitters: true,
            ..Input::events_only()
        }
    }

    fn on_event(&mut self, event: &Event, _ctx: &mut Context) -> Result<(), ProcessorError> {
        if let Event::Custom(custom) = event {
            if &*custom.kind == mediagate::processors::LEVEL {
                self.0.lock().unwrap().push(custom.data.clone());
            }
        }
        Ok(())
    }
}

/// RMS of `samples` in dBFS, as the meter computes it.
fn rms_dbfs(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (sum / samples.len() as f64).sqrt() / 32_768.0;
    if rms <= 0.0 {
        mediagate::processors::FLOOR_DBFS
    } else {
        (20.0 * rms.log10()).max(mediagate::processors::FLOOR_DBFS)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_100_ms_of_the_call_is_measured_and_heard_by_the_others() {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let mut registry = mediagate::registry();
    let kept = Arc::clone(&heard);
    registry.register("listener", move |_| {
        let kept = Arc::clone(&kept);
        Ok(move |_: &CallInfo| Box::new(Listener(Arc::clone(&kept))) as Box<dyn Processor>)
    });
    let gateway = Gateway::start(registry, |config| {
        config.pipeline.processors = vec!["level_meter".to_owned(), "listener".to_owned()];
    })
    .await;
    let clip = crate::common::sample("hello-16k.wav");
    mediagate::emulator::run(
        EmulateConfig::new(gateway.url("/ws?callId=meter"))
            .with_pacing(Pacing::Fast)
            .with_wav(&clip),
    )
    .await
    .unwrap();
    gateway.stop().await;

    let samples: Vec<i16> = hound::WavReader::open(&clip)
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect();
    let heard = heard.lock().unwrap();
    // One reading per whole 100 ms of what was sent.
    assert_eq!(heard.len(), samples.len() / 1_600, "{heard:?}");
    let mut loud = 0;
    for (i, level) in heard.iter().enumerate() {
        let expected = rms_dbfs(&samples[i * 1_600..(i + 1) * 1_600]);
        let got = level["rms_dbfs"].as_f64().unwrap();
        assert!(
            (got - expected).abs() < 1e-9,
            "window {i}: {got} != {expected}"
        );
        assert!(level["source"].is_null(), "{level}");
        loud += usize::from(got > -40.0);
    }
    assert!(loud >= 3, "the recording holds speech: {heard:?}");
}
