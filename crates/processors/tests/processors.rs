//! The built-in processors driven through a real pipeline, outbound queue and pacer, in
//! virtual time.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mediagate_audio::{AudioFormat, AudioFrame, AudioSource};
use mediagate_pipeline::{
    CallInfo, Context, Dtmf, Event, OutboundQueue, Outgoing, Pipeline, Processor, ProcessorError,
};
use mediagate_processors::{Play, PlaySettings, Tone, ToneSettings, Vad, VadSettings};
use tokio::sync::mpsc;

/// The processor `name` with `settings`, as a call gets it: from its route's factory.
fn built(
    name: &str,
    settings: &serde_json::Value,
) -> Result<Box<dyn Processor>, mediagate_processors::BuildError> {
    let factory = mediagate_processors::builtins().factory(name, settings)?;
    Ok(factory.make(&CallInfo::new("c", "/ws", AudioFormat::mono(16_000))))
}

fn call(format: AudioFormat) -> Arc<CallInfo> {
    Arc::new(CallInfo::new("c", "/ws", format))
}

/// A bidirectional call: the pipeline, the queue its pacer drains, and the socket side.
struct Harness {
    pipeline: Pipeline,
    outbound: OutboundQueue,
    socket: mpsc::Receiver<Outgoing>,
}

fn start(format: AudioFormat, processors: Vec<(&str, Box<dyn Processor>)>) -> Harness {
    let (to_socket, socket) = mpsc::channel(4_096);
    let outbound = OutboundQueue::new(format, Duration::from_secs(60), to_socket.clone());
    tokio::spawn(outbound.clone().run_pacer());
    let processors = processors
        .into_iter()
        .map(|(name, p)| (name.to_owned(), p))
        .collect();
    let pipeline = Pipeline::start(
        call(format),
        processors,
        Some(outbound.clone()),
        Some(to_socket),
    );
    Harness {
        pipeline,
        outbound,
        socket,
    }
}

impl Harness {
    /// Ends the call, lets the pacer play out what was queued, and returns what reached the
    /// socket.
    async fn finish(mut self) -> Vec<Outgoing> {
        self.pipeline.finish().await;
        self.outbound.wait_for_playout().await;
        let mut out = Vec::new();
        while let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(200), self.socket.recv()).await
        {
            out.push(m);
        }
        out
    }
}

/// Feeds frames the way the server does: from a spawned task, yielding between frames.
async fn feed(mut pipeline: Pipeline, frames: Vec<AudioFrame>) -> Pipeline {
    tokio::spawn(async move {
        for frame in &frames {
            pipeline.push_frame(frame).await;
            tokio::task::yield_now().await;
        }
        pipeline
    })
    .await
    .unwrap()
}

fn samples(out: &[Outgoing]) -> Vec<i16> {
    out.iter()
        .filter_map(|m| match m {
            Outgoing::Audio(pcm) => Some(pcm),
            Outgoing::StopAudio => None,
        })
        .flat_map(|pcm| {
            pcm.chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn sine(rate: u32, hz: f64, amplitude: f64, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (amplitude * 32_767.0 * (std::f64::consts::TAU * hz * t).sin()).round() as i16
        })
        .collect()
}

fn sign_changes(samples: &[i16]) -> usize {
    let signs: Vec<bool> = samples
        .iter()
        .filter(|&&s| s != 0)
        .map(|&s| s > 0)
        .collect();
    signs.windows(2).filter(|w| w[0] != w[1]).count()
}

fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

#[tokio::test(start_paused = true)]
async fn tone_beeps_on_dtmf_for_its_duration_at_its_frequency() {
    let format = AudioFormat::mono(16_000);
    let tone = Tone::new(ToneSettings {
        frequency_hz: 1_000.0,
        duration_ms: 210,
        ..ToneSettings::default()
    })
    .unwrap();
    let mut h = start(format, vec![("tone", Box::new(tone))]);
    h.pipeline.push_event(Event::Dtmf(Arc::new(Dtmf::new("5"))));
    let out = h.finish().await;
    let audio = samples(&out);
    // 210 ms × 16 kHz = 3360 samples, padded to 11 whole 20 ms frames.
    assert_eq!(out.len(), 11);
    assert_eq!(audio.len(), 3_520);
    assert!(audio[3_360..].iter().all(|&s| s == 0));
    // 1 kHz for 210 ms: 420 sign changes (give or take the edges).
    let changes = sign_changes(&audio[..3_360]);
    assert!((418..=421).contains(&changes), "{changes}");
    let peak = audio.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!((9_800..=9_831).contains(&peak), "{peak}"); // 0.3 of full scale
}

#[tokio::test(start_paused = true)]
async fn tone_at_start_and_not_on_dtmf_when_told() {
    let tone = built(
        "tone",
        &serde_json::json!({"at_start": true, "on_dtmf": false, "duration_ms": 100}),
    )
    .unwrap();
    let mut h = start(AudioFormat::mono(8_000), vec![("tone", tone)]);
    h.pipeline.push_event(Event::Dtmf(Arc::new(Dtmf::new("1"))));
    let out = h.finish().await;
    assert_eq!(samples(&out).len(), 800, "one beep, at start only");
}

fn write_wav(path: &std::path::Path, rate: u32, samples: &[i16]) {
    let clip = mediagate_audio::Clip::from_samples(AudioFormat::mono(rate), samples);
    mediagate_audio::wav::write(path, &clip).unwrap();
}

#[tokio::test(start_paused = true)]
async fn play_resamples_a_24_khz_file_into_a_16_khz_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prompt.wav");
    // 0.51 s of 440 Hz at 24 kHz: not a whole number of frames.
    let file = sine(24_000, 440.0, 0.5, 12_240);
    write_wav(&path, 24_000, &file);
    let play = Play::new(PlaySettings {
        file: Some(path),
        ..PlaySettings::default()
    })
    .unwrap();
    let h = start(AudioFormat::mono(16_000), vec![("play", Box::new(play))]);
    let out = h.finish().await;
    let audio = samples(&out);
    assert!(
        out.iter()
            .all(|m| matches!(m, Outgoing::Audio(pcm) if pcm.len() == 640))
    );
    // 0.51 s at 16 kHz = 8160 samples; plus the resampler's 10 ms delay and the clip's padding
    // (to whole frames, plus one frame to push the delay out).
    let expected = 8_160;
    assert!(
        (expected + 160..=expected + 160 + 2 * 320).contains(&audio.len()),
        "{}",
        audio.len()
    );
    // The same tone at the same level: 440 Hz over 7400 samples (0.4625 s) is ~407 sign
    // changes (the edges, with the resampler's start-up, are left out).
    let changes = sign_changes(&audio[400..7_800]);
    assert!((405..=409).contains(&changes), "{changes}");
    let level = rms(&audio[400..7_800]);
    assert!(
        (level - 0.5 * 32_767.0 / 2f64.sqrt()).abs() < 300.0,
        "{level}"
    );
}

#[tokio::test(start_paused = true)]
async fn play_on_dtmf_plays_the_file_once_per_key_press() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("beep.wav");
    write_wav(&path, 16_000, &sine(16_000, 500.0, 0.3, 1_600));
    let play = built(
        "play",
        &serde_json::json!({"file": path, "at_start": false, "on_dtmf": "9"}),
    )
    .unwrap();
    let mut h = start(AudioFormat::mono(16_000), vec![("play", play)]);
    h.pipeline.push_event(Event::Dtmf(Arc::new(Dtmf::new("1"))));
    h.pipeline.push_event(Event::Dtmf(Arc::new(Dtmf::new("9"))));
    let out = h.finish().await;
    // Same rate: no resampler, no delay, exactly the file.
    assert_eq!(samples(&out), sine(16_000, 500.0, 0.3, 1_600));
}

/// Remembers every event.
#[derive(Clone, Default)]
struct Spy(Arc<Mutex<Vec<Event>>>);

impl Processor for Spy {
    fn on_frame(&mut self, _: &AudioFrame, _: &mut Context) -> Result<(), ProcessorError> {
        Ok(())
    }
    fn on_event(&mut self, event: &Event, _: &mut Context) -> Result<(), ProcessorError> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

/// Queues `seconds` of quiet audio when the call starts: something to barge in on.
struct Prompt(u32);

impl Processor for Prompt {
    fn on_frame(&mut self, _: &AudioFrame, _: &mut Context) -> Result<(), ProcessorError> {
        Ok(())
    }
    fn on_event(&mut self, event: &Event, ctx: &mut Context) -> Result<(), ProcessorError> {
        if let Event::CallStarted(call) = event {
            let n = call.format.sample_rate_hz() * self.0;
            ctx.play(&vec![100; n as usize]).unwrap();
        }
        Ok(())
    }
}

fn frames(format: AudioFormat, source: &AudioSource, samples: &[i16]) -> Vec<AudioFrame> {
    samples
        .chunks(format.frame_samples())
        .map(|chunk| AudioFrame {
            pcm: Bytes::from(
                chunk
                    .iter()
                    .flat_map(|s| s.to_le_bytes())
                    .collect::<Vec<_>>(),
            ),
            format,
            timestamp: None,
            position: None,
            source: source.clone(),
            silent: false,
        })
        .collect()
}

/// 200 ms of silence, 400 ms of a loud 300 Hz tone, 600 ms of silence.
fn utterance(format: AudioFormat) -> Vec<i16> {
    let rate = format.sample_rate_hz() as usize;
    let mut s = vec![0; rate / 5];
    s.extend(sine(format.sample_rate_hz(), 300.0, 0.2, rate * 2 / 5));
    s.extend(vec![0; rate * 3 / 5]);
    s
}

fn speech(events: &[Event]) -> Vec<(AudioSource, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Speech { source, active } => Some((source.clone(), *active)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn vad_reports_speech_starting_and_stopping_per_source() {
    let format = AudioFormat::mono(16_000);
    let spy = Spy::default();
    let vad = Vad::new(VadSettings::default()).unwrap();
    let h = start(
        format,
        vec![("vad", Box::new(vad)), ("spy", Box::new(spy.clone()))],
    );
    let alice = AudioSource::Participant("alice".into());
    let bob = AudioSource::Participant("bob".into());
    // Alice speaks; Bob only listens (quiet noise, under the threshold).
    let mut input = Vec::new();
    let quiet: Vec<i16> = (0..format.sample_rate_hz() * 6 / 5)
        .map(|i| if i % 2 == 0 { 100 } else { -100 })
        .collect();
    for (a, b) in frames(format, &alice, &utterance(format))
        .into_iter()
        .zip(frames(format, &bob, &quiet))
    {
        input.push(a);
        input.push(b);
    }
    let pipeline = feed(h.pipeline, input).await;
    let h = Harness { pipeline, ..h };
    let out = h.finish().await;
    assert!(out.is_empty(), "no barge-in: nothing was playing");
    let events = spy.0.lock().unwrap();
    assert_eq!(speech(&events), [(alice.clone(), true), (alice, false)]);
    assert!(!events.iter().any(|e| matches!(e, Event::BargeIn(_))));
}

#[tokio::test(start_paused = true)]
async fn speech_over_queued_audio_barges_in() {
    let format = AudioFormat::mono(16_000);
    let spy = Spy::default();
    let vad = built("vad", &serde_json::Value::Null).unwrap();
    let h = start(
        format,
        vec![
            ("prompt", Box::new(Prompt(10))),
            ("vad", vad),
            ("spy", Box::new(spy.clone())),
        ],
    );
    let input = frames(format, &AudioSource::Mixed, &utterance(format));
    let pipeline = feed(h.pipeline, input).await;
    let h = Harness { pipeline, ..h };
    let out = h.finish().await;
    let stop = out.iter().position(|m| *m == Outgoing::StopAudio);
    let stop = stop.unwrap_or_else(|| panic!("no StopAudio in {} messages", out.len()));
    assert_eq!(stop + 1, out.len(), "nothing plays after the barge-in");
    assert!(samples(&out).len() < 16_000 * 10, "the prompt was cut");
    let events = spy.0.lock().unwrap();
    let barge_in = events.iter().find_map(|e| match e {
        Event::BargeIn(cut) => Some(*cut),
        _ => None,
    });
    let cut = barge_in.unwrap();
    assert!(cut.cut_ms > 5_000, "{cut:?}");
    assert_eq!(
        speech(&events),
        [(AudioSource::Mixed, true), (AudioSource::Mixed, false)]
    );
}

/// Plays `pcm` at 24 kHz through `Context::play_audio` in chunks of `chunk` bytes.
struct Chunked {
    pcm: Vec<u8>,
    chunk: usize,
}

impl Processor for Chunked {
    fn on_frame(&mut self, _: &AudioFrame, _: &mut Context) -> Result<(), ProcessorError> {
        Ok(())
    }
    fn on_event(&mut self, event: &Event, ctx: &mut Context) -> Result<(), ProcessorError> {
        if let Event::CallStarted(_) = event {
            for chunk in self.pcm.chunks(self.chunk) {
                ctx.play_audio(chunk, AudioFormat::mono(24_000)).unwrap();
            }
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn play_audio_keeps_one_resampler_per_rate_so_chunks_play_seamlessly() {
    // 0.5 s at 24 kHz, a whole number of frames.
    let pcm: Vec<u8> = sine(24_000, 440.0, 0.5, 12_000)
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    let mut outputs = Vec::new();
    for chunk in [pcm.len(), 337, 960] {
        let h = start(
            AudioFormat::mono(16_000),
            vec![(
                "chunked",
                Box::new(Chunked {
                    pcm: pcm.clone(),
                    chunk,
                }),
            )],
        );
        outputs.push(samples(&h.finish().await));
    }
    // One block out per block in; the first 160 samples are the resampler's delay, and the
    // input's last 160 stay inside it until more audio comes.
    assert_eq!(outputs[0].len(), 8_000);
    assert_eq!(outputs[0], outputs[1], "odd chunks, split samples");
    assert_eq!(outputs[0], outputs[2], "20 ms chunks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wav_stops_cleanly_below_the_free_disk_floor() {
    let dir = tempfile::tempdir().unwrap();
    let format = AudioFormat::mono(16_000);
    let wav = mediagate_processors::Wav::new(mediagate_processors::WavSettings {
        // No disk has this much free: the first check stops the recording.
        min_free_bytes: u64::MAX,
        batch_ms: 0,
        ..mediagate_processors::WavSettings::default()
    })
    .unwrap();
    let call = Arc::new(CallInfo::new("c", "/ws", format).with_folder(dir.path()));
    let pipeline = Pipeline::start(call, vec![("wav".to_owned(), Box::new(wav))], None, None);
    let source = AudioSource::Mixed;
    let audio: Vec<i16> = (0..16_000).map(|i| (i % 300) as i16).collect();
    let mut first = frames(format, &source, &audio);
    let later = first.split_off(10);
    // The first write is followed by a check of the floor: recording stops there.
    let pipeline = feed(pipeline, first).await;
    let probe = pipeline.probes().remove(0);
    while probe.counters().frames < 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pipeline = feed(pipeline, later).await;
    let reports = pipeline.finish().await;
    let report = reports[0].report.as_ref().unwrap();
    assert_eq!(
        report["stopped"],
        mediagate_processors::record::STOPPED_DISK_FLOOR
    );
    assert!(!reports[0].detached);
    // What was written before the check is a valid file; the rest is counted as lost.
    let kept = report["tracks"][0]["samples"].as_u64().unwrap();
    let lost = report["lost_frames"].as_u64().unwrap();
    assert_eq!(kept / 320 + lost, 50, "{report}");
    assert!(lost >= 40, "{report}");
    assert_eq!(report["lost_bytes"], lost * 640);
    let reader = hound::WavReader::open(dir.path().join("mixed.wav")).unwrap();
    let got: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
    assert_eq!(got, audio[..kept as usize]);
}
