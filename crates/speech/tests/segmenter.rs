//! How a transcriber cuts a call into utterances: where each starts and how long it is, driven
//! through a real pipeline with a recognizer that only counts.

#![allow(clippy::unwrap_used)] // a panic in a test helper is a failed assertion

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use mediagate_audio::{AudioFormat, AudioFrame, AudioSource, Timestamp};
use mediagate_pipeline::{
    CallInfo, Context, Event, Input, Pipeline, Processor, ProcessorError, Transcript,
};
use mediagate_speech::{
    Pass, Recognition, Recognizer, SpeechError, Transcriber, TranscriberSettings,
};

const CALL: AudioFormat = AudioFormat::mono(16_000);

/// Says how many samples it was given.
struct Counting;

impl Recognizer for Counting {
    fn recognize(&mut self, samples: &[f32], _pass: Pass) -> Result<Recognition, SpeechError> {
        Ok(Recognition {
            text: format!("{} samples", samples.len()),
            confidence: None,
            words: Vec::new(),
        })
    }
}

/// Keeps the final transcripts.
struct Finals(Arc<Mutex<Vec<(i64, i64, String)>>>);

impl Processor for Finals {
    fn input(&self) -> Input {
        Input {
            frames: false,
            queue: 1_024,
            // It records what the engine says: its end waits for the engine's last words.
            after_emitters: true,
            ..Input::default()
        }
    }

    fn on_event(&mut self, event: &Event, _ctx: &mut Context) -> Result<(), ProcessorError> {
        if let Event::Transcript(t) = event {
            let t: &Transcript = t;
            if t.is_final() {
                self.0.lock().unwrap().push((
                    t.start_ms as i64,
                    t.duration_ms as i64,
                    t.text.clone(),
                ));
            }
        }
        Ok(())
    }
}

/// `ms` of a 300 Hz tone at `amplitude` (0 for silence), at 16 kHz.
fn tone(ms: usize, amplitude: f64) -> Vec<i16> {
    (0..ms * 16)
        .map(|i| (amplitude * (std::f64::consts::TAU * 300.0 * i as f64 / 16_000.0).sin()) as i16)
        .collect()
}

/// The finals (offset ms, duration ms, text) of `samples` through a transcriber.
async fn finals(settings: TranscriberSettings, samples: &[i16]) -> Vec<(i64, i64, String)> {
    let transcriber = Transcriber::new("counting", settings, Box::new(Counting))
        .unwrap()
        .lossless();
    let kept = Arc::new(Mutex::new(Vec::new()));
    let call = Arc::new(CallInfo::new("segmenter", "/ws", CALL));
    let processors: Vec<(String, Box<dyn Processor>)> = vec![
        ("counting".into(), Box::new(transcriber)),
        ("finals".into(), Box::new(Finals(kept.clone()))),
    ];
    let mut pipeline = Pipeline::start(call, processors, None, None);
    let origin = Timestamp::from_unix_micros(1_800_000_000_000_000);
    for (i, chunk) in samples.chunks(320).enumerate() {
        let pcm: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
        let frame = AudioFrame {
            pcm: Bytes::from(pcm),
            format: CALL,
            timestamp: Some(origin.add_micros(i as i64 * 20_000)),
            position: None,
            source: AudioSource::Mixed,
            silent: false,
        };
        pipeline.push_frame(&frame).await;
    }
    pipeline.finish().await;
    kept.lock().unwrap().clone()
}

#[tokio::test]
async fn utterances_start_after_the_attack_with_their_preroll_and_end_after_the_hangover() {
    let mut call = tone(1_000, 0.0);
    call.extend(tone(1_000, 3_000.0)); // about -21 dBFS: voice
    call.extend(tone(300, 0.0)); // a pause shorter than end_silence_ms
    call.extend(tone(500, 3_000.0));
    call.extend(tone(1_000, 0.0));
    call.extend(tone(40, 20_000.0)); // a click: shorter than start_ms
    call.extend(tone(1_000, 0.0));
    call.extend(tone(200, 3_000.0)); // voice shorter than min_utterance_ms with its start
    call.extend(tone(1_000, 100.0)); // quieter than the threshold
    call.extend(tone(700, 3_000.0)); // still going at the end of the call
    let settings = TranscriberSettings {
        partial_interval_ms: 0,
        ..TranscriberSettings::default()
    };
    let finals = finals(settings, &call).await;
    let expected: Vec<(i64, i64, String)> = vec![
        // Voice from 1000 ms with 300 ms of pre-roll; the 300 ms pause does not end it; it
        // ends 600 ms after the voice, keeping 300 ms of the trailing quiet.
        (700, 2_400, "38400 samples".into()),
        // The click never opens the gate; 200 ms of voice is too short to keep; the last
        // utterance, pre-roll included, is cut by the end of the call.
        (5_740, 1_000, "16000 samples".into()),
    ];
    assert_eq!(finals, expected);
}

#[tokio::test]
async fn a_long_utterance_is_cut_at_its_cap_and_the_next_starts_at_once() {
    let mut call = tone(500, 0.0);
    call.extend(tone(2_500, 3_000.0));
    call.extend(tone(1_000, 0.0));
    let settings = TranscriberSettings {
        max_utterance_secs: 1,
        partial_interval_ms: 0,
        ..TranscriberSettings::default()
    };
    let finals = finals(settings, &call).await;
    // From the pre-roll before the voice at 500 ms, one second each; what is left after the
    // last cut is quiet, too little voice to keep.
    let expected: Vec<(i64, i64, String)> = vec![
        (200, 1_000, "16000 samples".into()),
        (1_200, 1_000, "16000 samples".into()),
        (2_200, 1_000, "16000 samples".into()),
    ];
    assert_eq!(finals, expected);
}
