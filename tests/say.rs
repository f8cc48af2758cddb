//! `say` through a real gateway: prompts spoken by espeak-ng reach the platform (the emulator,
//! which records what the gateway plays), on call start and on a key, and caller speech cuts
//! them. Needs `espeak-ng` (`apt-get install espeak-ng`).

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::{TestGateway, processor, read_wav, sample, write_wav};
use mediagate::audio::Clip;
use mediagate::emulator::{DtmfEvent, EmulateConfig, EmulateReport, Pacing};
use mediagate::speech::say::synthesize;

/// The call's rate (the emulator streams the WAVs it is given at their rate).
const CALL_RATE_HZ: u32 = 16_000;

const GREETING: &str = "Welcome to the media gateway. How can I help you today?";

const LONG_GREETING: &str = "Welcome to the media gateway. This greeting is long on purpose: \
                             it goes on and on, so that the caller has plenty of time to speak \
                             over it and cut it short, which is exactly what happens next.";

/// What the platform heard from the gateway in one call.
struct Heard {
    /// The gateway's playback as recorded by the emulator: mono PCM16 at [`CALL_RATE_HZ`], every
    /// outbound frame in arrival order (no gaps filled).
    samples: Vec<i16>,
    /// The WAV those samples were read from (lives as long as `_dir`).
    path: PathBuf,
    /// The emulator's account of the call (StopAudio times and positions, pacing).
    report: EmulateReport,
    /// The call's session.json, once the call has ended.
    session: serde_json::Value,
    _dir: tempfile::TempDir,
}

/// Starts a gateway whose pipeline is `vad` then `say` with these settings, streams `caller`
/// (16 kHz mono samples) into a bidirectional call with `dtmf` keys, keeps the call open
/// `linger` after the caller's audio so prompts can play out, and returns what the platform
/// heard. `Pacing::Realtime` when timing matters (barge-in), else as fast as the socket goes.
async fn call_with_say(
    call_id: &str,
    vad: serde_json::Value,
    say: serde_json::Value,
    caller: &[i16],
    dtmf: &[&str],
    pacing: Pacing,
    linger: Duration,
) -> Heard {
    let dir = tempfile::tempdir().unwrap();
    let caller_path = dir.path().join("caller.wav");
    write_wav(&caller_path, CALL_RATE_HZ, caller);
    let gateway = TestGateway::start_with(move |c| {
        c.pipeline.processors = vec!["vad".to_owned(), "say".to_owned()];
        c.pipeline.settings.insert("vad".to_owned(), vad);
        c.pipeline.settings.insert("say".to_owned(), say);
    })
    .await;
    let path = dir.path().join("heard.wav");
    let mut emulate = EmulateConfig::new(gateway.url(&format!("/ws?callId={call_id}")))
        .with_pacing(pacing)
        .with_wav(&caller_path)
        .with_record_outbound(&path)
        .with_linger(linger);
    for key in dtmf {
        emulate = emulate.with_dtmf(key.parse::<DtmfEvent>().unwrap());
    }
    let report = mediagate::emulator::run(emulate).await.unwrap();
    let session = gateway.ended_session(call_id).await;
    gateway.stop().await;
    let (samples, rate) = read_wav(&path);
    assert_eq!(rate, CALL_RATE_HZ);
    Heard {
        samples,
        path,
        report,
        session,
        _dir: dir,
    }
}

/// `text` as espeak-ng speaks it with `say`'s defaults (synthesized off the async threads).
async fn spoken(text: &str) -> Clip {
    let text = text.to_owned();
    tokio::task::spawn_blocking(move || synthesize(&text, "en-us", 160))
        .await
        .unwrap()
        .unwrap()
}

/// `clip` as a 16 kHz call hears it: whole, at the call's rate, in whole 20 ms frames, the
/// last one zero-padded.
fn at_call_rate(clip: &Clip) -> Vec<i16> {
    let mut samples: Vec<i16> = clip.at_rate(CALL_RATE_HZ).unwrap().samples().collect();
    samples.resize(samples.len().div_ceil(320) * 320, 0);
    samples
}

/// Seconds of 16 kHz silence.
fn silence(secs: f64) -> Vec<i16> {
    vec![0; (f64::from(CALL_RATE_HZ) * secs) as usize]
}

/// The greeting of [`GREETING`] as the platform hears it in a quiet call: for the tests here,
/// and for a speech engine to check that it is intelligible.
async fn greeting_heard_in_a_quiet_call() -> Heard {
    let clip = spoken(GREETING).await;
    call_with_say(
        "say-greeting",
        serde_json::Value::Null,
        serde_json::json!({ "greeting": GREETING }),
        &silence(0.5),
        &[],
        Pacing::Fast,
        clip.duration() + Duration::from_millis(1_500),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_greeting_reaches_the_platform_as_espeak_ng_spoke_it() {
    let heard = greeting_heard_in_a_quiet_call().await;
    let expected = at_call_rate(&spoken(GREETING).await);
    assert!(heard.report.outbound.stop_audio.is_empty());
    assert_eq!(
        heard.samples.len(),
        expected.len(),
        "{} samples heard, {} spoken",
        heard.samples.len(),
        expected.len()
    );
    assert!(
        heard.samples == expected,
        "the audio in {} differs from the clip",
        heard.path.display()
    );
    // Speech, not silence: about -20 dBFS over the clip.
    let rms = (heard
        .samples
        .iter()
        .map(|&s| f64::from(s).powi(2))
        .sum::<f64>()
        / heard.samples.len() as f64)
        .sqrt();
    assert!(rms > 1_000.0, "rms {rms}");
    let say = processor(&heard.session["transports"][0], "say");
    assert_eq!(say["report"]["prompts"], 1, "{say}");
    assert_eq!(say["report"]["skipped"], 0, "{say}");
    #[cfg(feature = "whisper")]
    assert_intelligible(&heard, GREETING).await;
}

/// The embedded engine understands what the platform heard.
#[cfg(feature = "whisper")]
async fn assert_intelligible(heard: &Heard, text: &str) {
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
    let result = mediagate::speech::transcribe_wav(&heard.path, transcriber)
        .await
        .unwrap();
    let recognized = result.lines().collect::<Vec<_>>().join(" ");
    let score = mediagate::speech::wer::Score::of(text, &recognized);
    assert!(
        score.wer() < 0.15,
        "Whisper heard {recognized:?} for {text:?}: {score:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_press_speaks_its_prompt_into_the_call() {
    let two = "You pressed two. Connecting you to support.";
    let clip = spoken(two).await;
    let heard = call_with_say(
        "say-dtmf",
        serde_json::Value::Null,
        serde_json::json!({ "on_dtmf": { "1": "Sales.", "2": two } }),
        &silence(0.5),
        &["2@200ms"],
        Pacing::Fast,
        clip.duration() + Duration::from_millis(1_500),
    )
    .await;
    assert!(heard.report.outbound.stop_audio.is_empty());
    assert!(heard.samples == at_call_rate(&clip), "not prompt 2");
}

/// A caller quiet for a second who then speaks over [`LONG_GREETING`]; `vad_barge_in`: whether
/// `vad` cuts (the default) or leaves it to `say`.
async fn caller_speaks_over_the_greeting(call_id: &str, vad_barge_in: bool) -> Heard {
    let mut caller = silence(1.0);
    caller.extend(
        read_wav(&sample("hello-16k.wav"))
            .0
            .into_iter()
            .take(24_000),
    );
    call_with_say(
        call_id,
        serde_json::json!({ "barge_in": vad_barge_in }),
        serde_json::json!({ "greeting": LONG_GREETING }),
        &caller,
        &[],
        Pacing::Realtime,
        Duration::from_millis(300),
    )
    .await
}

/// The greeting was cut once, after the caller's quiet second and well before its end, and
/// nothing but the frame already on its way followed the StopAudio.
async fn assert_cut_by_speech(heard: &Heard) {
    let stops = &heard.report.outbound.stop_audio;
    assert_eq!(stops.len(), 1, "{:?}", heard.report.outbound);
    assert!(
        (Duration::from_millis(1_000)..Duration::from_millis(2_000)).contains(&stops[0].at),
        "{:?}",
        stops[0]
    );
    let full = at_call_rate(&spoken(LONG_GREETING).await).len();
    let heard_len = heard.samples.len();
    assert!(full > 8 * 16_000, "the greeting is only {full} samples");
    assert!(heard_len < full / 3, "{heard_len} of {full} samples played");
    assert!(
        heard_len as u64 - stops[0].sample_index <= 320,
        "{heard_len} heard, stop at {}",
        stops[0].sample_index
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_speech_cuts_the_greeting_with_vads_barge_in() {
    let heard = caller_speaks_over_the_greeting("say-barge-vad", true).await;
    assert_cut_by_speech(&heard).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_speech_cuts_the_greeting_when_say_alone_barges_in() {
    let heard = caller_speaks_over_the_greeting("say-barge-say", false).await;
    assert_cut_by_speech(&heard).await;
    let say = processor(&heard.session["transports"][0], "say");
    assert_eq!(say["report"]["barge_ins"], 1, "{say}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_espeak_ng_stops_start_up_saying_how_to_install_it() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = mediagate::server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().to_owned(),
        ..mediagate::server::Config::default()
    };
    config.admin.listen = config.listen;
    config.pipeline.processors = vec!["say".to_owned()];
    config.pipeline.settings.insert(
        "say".to_owned(),
        serde_json::json!({ "greeting": "Hello.", "espeak_ng": "/nonexistent/espeak-ng" }),
    );
    let Err(err) = mediagate::server::Server::bind(config, mediagate::registry()).await else {
        panic!("started without espeak-ng");
    };
    let text = err.to_string();
    assert!(
        text.contains("say") && text.contains("apt-get install espeak-ng"),
        "{text}"
    );
}
