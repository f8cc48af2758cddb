//! `say` driven through a real pipeline, outbound queue and pacer, in virtual time, with the
//! real espeak-ng (`apt-get install espeak-ng`).

#![allow(clippy::unwrap_used)] // a panic in a test helper is a failed assertion

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mediagate_audio::{AudioFormat, AudioFrame, AudioSource, Clip};
use mediagate_pipeline::{
    CallInfo, Dtmf, Event, OutboundQueue, Outgoing, Pipeline, Processor, Registry,
};
use mediagate_processors::{BuildError, Vad, VadSettings};
use mediagate_speech::say::{Say, SayError, Voice, synthesize};
use tokio::sync::mpsc;

const CALL: AudioFormat = AudioFormat::mono(16_000);

/// A bidirectional call: the pipeline, the queue its pacer drains, and the socket side.
struct Call {
    pipeline: Pipeline,
    outbound: OutboundQueue,
    socket: mpsc::Receiver<Outgoing>,
}

impl Call {
    fn start(processors: Vec<(&str, Box<dyn Processor>)>) -> Call {
        let (to_socket, socket) = mpsc::channel(8_192);
        let outbound = OutboundQueue::new(CALL, Duration::from_secs(60), to_socket.clone());
        tokio::spawn(outbound.clone().run_pacer());
        let processors = processors
            .into_iter()
            .map(|(name, p)| (name.to_owned(), p))
            .collect();
        let pipeline = Pipeline::start(
            Arc::new(CallInfo::new("c", "/ws", CALL)),
            processors,
            Some(outbound.clone()),
            Some(to_socket),
        );
        Call {
            pipeline,
            outbound,
            socket,
        }
    }

    /// Streams `samples` as the platform does: one 20 ms frame every 20 ms.
    async fn stream(&mut self, samples: &[i16]) {
        for chunk in samples.chunks(CALL.frame_samples()) {
            let frame = AudioFrame {
                pcm: Bytes::from(
                    chunk
                        .iter()
                        .flat_map(|s| s.to_le_bytes())
                        .collect::<Vec<_>>(),
                ),
                format: CALL,
                timestamp: None,
                position: None,
                source: AudioSource::Mixed,
                silent: false,
            };
            self.pipeline.push_frame(&frame).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ends the call, lets the pacer play out what is queued, and returns what reached the
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

fn say(settings: serde_json::Value) -> Box<dyn Processor> {
    Box::new(Say::from_settings(&settings).unwrap())
}

fn vad(barge_in: bool) -> Box<dyn Processor> {
    Box::new(
        Vad::new(VadSettings {
            barge_in,
            ..VadSettings::default()
        })
        .unwrap(),
    )
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

/// `clip` as a 16 kHz call hears it: whole, at the call's rate.
fn at_call_rate(clip: &Clip) -> Vec<i16> {
    let at_call_rate = clip.at_rate(CALL.sample_rate_hz()).unwrap();
    at_call_rate.samples().collect()
}

/// A loud 300 Hz tone: speech, as far as `vad` can tell.
fn loud(secs: f64) -> Vec<i16> {
    (0..(16_000.0 * secs) as usize)
        .map(|i| (8_000.0 * (std::f64::consts::TAU * 300.0 * i as f64 / 16_000.0).sin()) as i16)
        .collect()
}

const LONG: &str = "This is a long greeting. It goes on for a while, so that the caller has \
                    plenty of time to interrupt it by speaking over it.";

#[tokio::test(start_paused = true)]
async fn the_greeting_plays_at_call_start_as_espeak_spoke_it() {
    let text = "Welcome to the gateway.";
    let clip = synthesize(text, "en-us", 160).unwrap();
    assert_eq!(clip.format, AudioFormat::mono(22_050));
    assert!(
        (0.8..4.0).contains(&clip.duration().as_secs_f64()),
        "{:?}",
        clip.duration()
    );
    let call = Call::start(vec![("say", say(serde_json::json!({ "greeting": text })))]);
    let out = call.finish().await;
    assert!(!out.contains(&Outgoing::StopAudio));
    let heard = samples(&out);
    let expected = at_call_rate(&clip);
    // Every sample the resampler gave, in whole 20 ms frames (the last one padded).
    assert_eq!(heard.len(), expected.len().div_ceil(320) * 320);
    assert!(heard[..expected.len()] == expected[..], "not the clip");
    assert!(heard[expected.len()..].iter().all(|&s| s == 0));
}

#[tokio::test(start_paused = true)]
async fn a_key_cuts_the_prompt_playing_and_speaks_its_own() {
    let one = "You pressed one.";
    let mut call = Call::start(vec![(
        "say",
        say(serde_json::json!({
            "greeting": LONG,
            "on_dtmf": { "1": one, "2": "You pressed two." },
        })),
    )]);
    call.stream(&vec![0; 16_000]).await;
    call.pipeline
        .push_event(Event::Dtmf(Arc::new(Dtmf::new("1"))));
    call.stream(&vec![0; 320]).await;
    let out = call.finish().await;
    let stop = out.iter().position(|m| *m == Outgoing::StopAudio).unwrap();
    assert_eq!(out.iter().filter(|m| **m == Outgoing::StopAudio).count(), 1);
    // About a second of the greeting, then all of prompt 1.
    let before = samples(&out[..stop]).len();
    assert!(
        (14_000..=18_000).contains(&before),
        "{before} samples before the cut"
    );
    let after = samples(&out[stop + 1..]);
    let expected = at_call_rate(&synthesize(one, "en-us", 160).unwrap());
    assert_eq!(after.len(), expected.len().div_ceil(320) * 320);
    assert!(after[..expected.len()] == expected[..], "not prompt 1");
}

#[tokio::test(start_paused = true)]
async fn caller_speech_cuts_a_prompt_when_say_barges_in() {
    // vad only detects; say decides.
    let mut call = Call::start(vec![
        ("vad", vad(false)),
        ("say", say(serde_json::json!({ "greeting": LONG }))),
    ]);
    call.stream(&vec![0; 16_000]).await;
    call.stream(&loud(0.5)).await;
    let out = call.finish().await;
    let stops = out.iter().filter(|m| **m == Outgoing::StopAudio).count();
    assert_eq!(stops, 1);
    assert_eq!(
        out.last(),
        Some(&Outgoing::StopAudio),
        "nothing after the cut"
    );
    let heard = samples(&out).len();
    // Cut a little after the speech started at 1 s (vad needs 60 ms of it).
    assert!((16_000..=20_000).contains(&heard), "{heard} samples");
}

#[tokio::test(start_paused = true)]
async fn without_barge_in_a_prompt_plays_to_its_end_over_speech() {
    let mut call = Call::start(vec![
        ("vad", vad(false)),
        (
            "say",
            say(serde_json::json!({ "greeting": LONG, "barge_in": false })),
        ),
    ]);
    call.stream(&vec![0; 16_000]).await;
    call.stream(&loud(0.5)).await;
    let out = call.finish().await;
    assert!(!out.contains(&Outgoing::StopAudio));
    let full = at_call_rate(&synthesize(LONG, "en-us", 160).unwrap()).len();
    assert_eq!(samples(&out).len(), full.div_ceil(320) * 320);
}

#[tokio::test(start_paused = true)]
async fn speech_after_the_prompt_ended_cuts_nothing() {
    let mut call = Call::start(vec![
        ("vad", vad(false)),
        ("say", say(serde_json::json!({ "greeting": "Hi." }))),
    ]);
    call.stream(&vec![0; 48_000]).await;
    call.stream(&loud(0.5)).await;
    let out = call.finish().await;
    assert!(!out.contains(&Outgoing::StopAudio));
}

/// An executable shell script `dir/espeak-ng` with this body: a stand-in for espeak-ng.
fn fake_espeak(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let program = dir.join("espeak-ng");
    std::fs::write(&program, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    program
}

/// A stand-in for espeak-ng that counts its runs in `runs` and then runs the real one.
fn counting_espeak(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let runs = dir.join("runs");
    let body = format!("echo run >> '{}'\nexec espeak-ng \"$@\"", runs.display());
    (fake_espeak(dir, &body), runs)
}

#[test]
fn a_program_that_writes_no_wav_is_an_error_not_silence() {
    let dir = tempfile::tempdir().unwrap();
    let program = fake_espeak(dir.path(), "cat > /dev/null\necho 'not a wav'");
    let err = Voice::default()
        .with_program(&program)
        .synthesize("Hello.")
        .unwrap_err();
    assert!(matches!(err, SayError::Output { .. }), "{err}");
    assert!(err.to_string().contains("not a WAV"), "{err}");
    let program = fake_espeak(
        dir.path(),
        "cat > /dev/null\necho 'no such voice' >&2\nexit 3",
    );
    let err = Voice::default()
        .with_program(&program)
        .synthesize("Hello.")
        .unwrap_err();
    assert!(matches!(err, SayError::Failed { .. }), "{err}");
    assert!(err.to_string().contains("no such voice"), "{err}");
}

#[test]
fn prompts_are_synthesized_once_per_route_not_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let (program, runs) = counting_espeak(dir.path());
    let settings = serde_json::json!({
        "greeting": "Hello there.",
        "on_dtmf": { "1": "One.", "#": "Hash." },
        "espeak_ng": program,
    });
    let mut registry = Registry::new();
    mediagate_speech::register(&mut registry, None);
    let say = |settings: &serde_json::Value| vec![("say".to_owned(), settings.clone())];
    // Two routes with the same prompts share one factory: three prompts, three runs.
    let plans = registry
        .plans([("a", say(&settings)), ("b", say(&settings))])
        .unwrap();
    let count = || std::fs::read_to_string(&runs).unwrap().lines().count();
    assert_eq!(count(), 3);
    let call = CallInfo::new("c", "/ws", AudioFormat::mono(16_000));
    for (_, plan) in &plans {
        for _ in 0..5 {
            assert_eq!(plan.processors(&call, |_, _| panic!()).len(), 1);
        }
    }
    assert_eq!(count(), 3, "a call's processor ran espeak-ng again");
    // Another speed is another voice: synthesized anew.
    let mut faster = settings.clone();
    faster["speed_wpm"] = 200.into();
    faster["on_dtmf"] = serde_json::json!({});
    registry.plans([("c", say(&faster))]).unwrap();
    assert_eq!(count(), 4);
}

#[test]
fn an_unknown_voice_fails_with_espeak_ngs_own_words() {
    let err = Voice::new("xx-nosuchvoice", 160)
        .synthesize("Hello.")
        .unwrap_err();
    assert!(matches!(err, SayError::Failed { .. }), "{err}");
    assert!(err.to_string().contains("voice does not exist"), "{err}");
    let Err(BuildError::Settings { reason, .. }) = Say::from_settings(&serde_json::json!({
        "on_dtmf": { "5": "Five." },
        "voice": "xx-nosuchvoice",
    })) else {
        panic!("built with an unknown voice");
    };
    assert!(
        reason.starts_with("on_dtmf.\"5\": ") && reason.contains("voice does not exist"),
        "{reason}"
    );
}

#[test]
fn text_is_spoken_not_parsed_as_options_or_markup() {
    // Starts like an option, holds markup and quotes: all of it is just text.
    let clip = synthesize("-v de --help <speak>'\"; ls", "en-us", 160).unwrap();
    assert!(
        clip.duration() > Duration::from_millis(500),
        "{:?}",
        clip.duration()
    );
    let peak = clip.samples().map(i16::unsigned_abs).max().unwrap();
    assert!(peak > 3_000, "peak {peak}");
}

#[test]
fn say_is_registered_with_the_speech_processors() {
    let mut registry = Registry::new();
    mediagate_speech::register(&mut registry, None);
    assert!(registry.contains("say"));
    let built = registry.factory("say", &serde_json::json!({ "greeting": "Hello." }));
    assert!(built.is_ok());
}
