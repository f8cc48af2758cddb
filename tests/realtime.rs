//! The `realtime` voice-bot bridge through a real gateway, against a fake Realtime service on
//! 127.0.0.1 that speaks the documented event subset: it hears the call's audio, finds the end of
//! each utterance by energy, answers with a known clip, and reports the caller's speech
//! (`speech_started`) as the real service's voice activity detection does.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{TestGateway, processor, read_wav, sample, write_wav};
use futures_util::{SinkExt, StreamExt};
use mediagate::emulator::{EmulateConfig, EmulateReport, Pacing};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

/// The service's rate.
const RATE: usize = 24_000;
/// Its analysis window: 20 ms.
const WINDOW: usize = RATE / 50;
/// Answer audio per delta: 100 ms, sent every 50 ms (twice real time, as the real service
/// sends faster than it plays).
const CHUNK: usize = RATE / 10;
const CHUNK_EVERY: Duration = Duration::from_millis(50);

/// `secs` of a sine at `hz`, 24 kHz, amplitude 8000.
fn tone(hz: f64, secs: f64) -> Vec<i16> {
    let n = (secs * RATE as f64) as usize;
    (0..n)
        .map(|i| {
            (8_000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / RATE as f64).sin()) as i16
        })
        .collect()
}

fn crossings(samples: &[i16]) -> usize {
    samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count()
}

/// What the fake service saw of its one conversation.
#[derive(Debug, Default)]
struct Heard {
    /// The handshake's path and query, and its `authorization` header.
    uri: String,
    authorization: Option<String>,
    /// The `session` of the `session.update`.
    session: Option<Value>,
    /// Samples received in `input_audio_buffer.append`.
    appended_samples: usize,
    /// Utterances it found (server VAD) or was asked to answer (`response.create`).
    utterances: usize,
    truncates: Vec<Value>,
    /// The types of every other client event, in order.
    events: Vec<String>,
    /// The bridge closed with a close frame.
    closed: bool,
}

/// Energy-based voice activity: speech starts after 3 loud windows and ends after 600 ms quiet.
#[derive(Default)]
struct Vad {
    window: Vec<i16>,
    speaking: bool,
    run: u32,
}

#[derive(Debug, PartialEq)]
enum Voice {
    Started,
    Stopped,
}

impl Vad {
    fn push(&mut self, sample: i16) -> Option<Voice> {
        self.window.push(sample);
        if self.window.len() < WINDOW {
            return None;
        }
        let energy = self
            .window
            .drain(..)
            .map(|s| (f64::from(s) / 32_768.0).powi(2))
            .sum::<f64>()
            / WINDOW as f64;
        let loud = 10.0 * energy.max(1e-12).log10() > -40.0;
        self.run = if loud != self.speaking {
            self.run + 1
        } else {
            0
        };
        let needed = if self.speaking { 30 } else { 3 };
        if self.run < needed {
            return None;
        }
        self.run = 0;
        self.speaking = !self.speaking;
        Some(if self.speaking {
            Voice::Started
        } else {
            Voice::Stopped
        })
    }
}

/// An answer being sent.
struct Answer {
    response: String,
    item: String,
    clip: Vec<i16>,
    sent: usize,
}

type Socket = WebSocketStream<tokio::net::TcpStream>;

async fn send(ws: &mut Socket, event: Value) {
    ws.send(Message::text(event.to_string())).await.unwrap();
}

impl Answer {
    /// Sends the next delta; `false` when all of it was sent.
    async fn send_chunk(&mut self, ws: &mut Socket) -> bool {
        if self.sent >= self.clip.len() {
            return false;
        }
        let end = (self.sent + CHUNK).min(self.clip.len());
        let pcm: Vec<u8> = self.clip[self.sent..end]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        self.sent = end;
        let mut delta = String::new();
        mediagate::protocol::encode_pcm(&pcm, &mut delta);
        let event = json!({
            "type": "response.output_audio.delta",
            "response_id": self.response,
            "item_id": self.item,
            "output_index": 0,
            "content_index": 0,
            "delta": delta,
        });
        send(ws, event).await;
        true
    }

    async fn done(&self, ws: &mut Socket, status: &str) {
        if status == "completed" {
            let event = json!({
                "type": "response.output_audio.done",
                "response_id": self.response,
                "item_id": self.item,
            });
            send(ws, event).await;
        }
        let response = json!({ "id": self.response, "status": status });
        send(ws, json!({ "type": "response.done", "response": response })).await;
    }
}

/// A fake Realtime service for one conversation, answering the utterances with `answers` in
/// order; with `reports_speech`, its VAD also says when the caller starts talking, and cancels
/// the answer being sent (as the real one's `interrupt_response` does). Returns its URL and what
/// it will have heard once the bridge closes.
#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
async fn fake_service(answers: Vec<Vec<i16>>, reports_speech: bool) -> (String, JoinHandle<Heard>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/realtime", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut fake = Fake {
            answers: answers.into_iter(),
            reports_speech,
            server_vad: true,
            vad: Vad::default(),
            sending: None,
            pool: bytes::BytesMut::new(),
            heard: Heard::default(),
        };
        let heard = &mut fake.heard;
        let handshake = |request: &Request, response: Response| {
            heard.uri = request.uri().to_string();
            heard.authorization = request
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok::<_, ErrorResponse>(response)
        };
        let mut ws = tokio_tungstenite::accept_hdr_async(stream, handshake)
            .await
            .unwrap();
        fake.converse(&mut ws).await;
        fake.heard
    });
    (url, task)
}

/// The fake service's side of a conversation.
struct Fake {
    answers: std::vec::IntoIter<Vec<i16>>,
    reports_speech: bool,
    /// The session asked for the service's turn detection.
    server_vad: bool,
    vad: Vad,
    sending: Option<Answer>,
    pool: bytes::BytesMut,
    heard: Heard,
}

impl Fake {
    /// Until the bridge closes: its events in, answers out, one delta per tick.
    async fn converse(&mut self, ws: &mut Socket) {
        let mut tick = tokio::time::interval(CHUNK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let event: Value = serde_json::from_str(&text).unwrap();
                        if self.on_event(ws, event).await {
                            // An answer starts: its first delta goes at once.
                            tick.reset_immediately();
                        }
                    }
                    Some(Ok(Message::Close(_))) => self.heard.closed = true,
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                },
                _ = tick.tick(), if self.sending.is_some() => {
                    if let Some(mut answer) = self.sending.take() {
                        if answer.send_chunk(ws).await {
                            self.sending = Some(answer);
                        } else {
                            answer.done(ws, "completed").await;
                        }
                    }
                }
            }
        }
    }

    /// One client event; `true` when an answer started.
    async fn on_event(&mut self, ws: &mut Socket, event: Value) -> bool {
        let kind = event["type"].as_str().unwrap().to_owned();
        match kind.as_str() {
            "session.update" => {
                let session = event["session"].clone();
                self.server_vad = !session["audio"]["input"]["turn_detection"].is_null();
                send(ws, json!({ "type": "session.updated", "session": session })).await;
                self.heard.session = Some(event["session"].clone());
            }
            "input_audio_buffer.append" => {
                let audio = event["audio"].as_str().unwrap();
                let pcm = mediagate::protocol::decode_pcm(audio, 2, &mut self.pool).unwrap();
                self.heard.appended_samples += pcm.len() / 2;
                if self.server_vad {
                    return self.listen(ws, &pcm).await;
                }
            }
            "response.create" => return self.start_answer(ws).await,
            "response.cancel" => {
                if let Some(cut) = self.sending.take() {
                    cut.done(ws, "cancelled").await;
                }
                self.heard.events.push(kind);
            }
            "conversation.item.truncate" => self.heard.truncates.push(event),
            _ => self.heard.events.push(kind),
        }
        false
    }

    /// Server VAD on the caller's audio; `true` when an answer started.
    async fn listen(&mut self, ws: &mut Socket, pcm: &[u8]) -> bool {
        let mut started = false;
        for sample in pcm
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
        {
            match self.vad.push(sample) {
                Some(Voice::Started) if self.reports_speech => {
                    let event = json!({ "type": "input_audio_buffer.speech_started" });
                    send(ws, event).await;
                    // The answer is interrupted: what was in flight still arrives.
                    if let Some(mut cut) = self.sending.take() {
                        cut.send_chunk(ws).await;
                        cut.send_chunk(ws).await;
                        cut.done(ws, "cancelled").await;
                    }
                }
                Some(Voice::Stopped) => {
                    let event = json!({ "type": "input_audio_buffer.speech_stopped" });
                    send(ws, event).await;
                    started |= self.start_answer(ws).await;
                }
                _ => {}
            }
        }
        started
    }

    /// Answers the next utterance, if there is an answer left for it.
    async fn start_answer(&mut self, ws: &mut Socket) -> bool {
        self.heard.utterances += 1;
        let n = self.heard.utterances;
        let Some(clip) = self.answers.next() else {
            return false;
        };
        let answer = Answer {
            response: format!("resp_{n}"),
            item: format!("item_{n}"),
            clip,
            sent: 0,
        };
        let response = json!({ "id": answer.response, "status": "in_progress" });
        send(
            ws,
            json!({ "type": "response.created", "response": response }),
        )
        .await;
        self.sending = Some(answer);
        true
    }
}

/// A caller: `parts` of silence (`None`, seconds) and sample WAVs, one after the other.
fn caller(dir: &Path, parts: &[(Option<&str>, f64)]) -> std::path::PathBuf {
    let mut samples = Vec::new();
    for (wav, secs) in parts {
        match wav {
            Some(name) => samples.extend(read_wav(&sample(name)).0),
            None => samples.extend(std::iter::repeat_n(0i16, (secs * 16_000.0) as usize)),
        }
    }
    // Whole 20 ms frames, so every frame the emulator sends comes out of the resampler.
    samples.resize(samples.len().next_multiple_of(320), 0);
    let path = dir.join("caller.wav");
    write_wav(&path, 16_000, &samples);
    path
}

/// A gateway whose calls run `processors`, with `realtime` pointed at `url`; the key variable is
/// one no environment sets (a loopback service needs none).
async fn gateway(processors: &[&str], realtime: Value) -> TestGateway {
    let processors: Vec<String> = processors.iter().map(|&p| p.to_owned()).collect();
    TestGateway::start_with(move |c| {
        c.pipeline.processors = processors;
        let mut settings = json!({ "api_key_env": "MEDIAGATE_TEST_NO_SUCH_KEY" });
        settings
            .as_object_mut()
            .unwrap()
            .extend(realtime.as_object().unwrap().clone());
        c.pipeline.settings.insert("realtime".to_owned(), settings);
    })
    .await
}

async fn call(
    gateway: &TestGateway,
    id: &str,
    wav: &Path,
    heard: &Path,
    linger_ms: u64,
) -> EmulateReport {
    mediagate::emulator::run(
        EmulateConfig::new(gateway.url(&format!("/ws?callId={id}")))
            .with_pacing(Pacing::Realtime)
            .with_wav(wav)
            .with_record_outbound(heard)
            .with_linger(Duration::from_millis(linger_ms)),
    )
    .await
    .unwrap()
}

async fn heard_by(service: JoinHandle<Heard>) -> Heard {
    tokio::time::timeout(Duration::from_secs(10), service)
        .await
        .expect("the bridge did not close its socket")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_hears_the_caller_at_24k_and_its_answer_plays_into_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let answer = tone(440.0, 1.0);
    let (url, service) = fake_service(vec![answer], true).await;
    let gateway = gateway(
        &["realtime"],
        json!({ "url": url, "instructions": "Answer with a tone." }),
    )
    .await;
    let wav = caller(
        dir.path(),
        &[(None, 0.4), (Some("hello-16k.wav"), 0.0), (None, 1.6)],
    );
    let recorded = dir.path().join("heard.wav");
    let report = call(&gateway, "answered", &wav, &recorded, 1_500).await;
    let heard = heard_by(service).await;

    // The handshake and the session: 24 kHz PCM both ways, the service's VAD, no key.
    assert_eq!(heard.uri, "/v1/realtime?model=gpt-realtime");
    assert_eq!(heard.authorization, None);
    let session = heard.session.as_ref().unwrap();
    assert_eq!(session["type"], "realtime");
    assert_eq!(session["instructions"], "Answer with a tone.");
    let pcm24 = json!({ "type": "audio/pcm", "rate": 24_000 });
    assert_eq!(session["audio"]["input"]["format"], pcm24);
    assert_eq!(session["audio"]["output"]["format"], pcm24);
    assert_eq!(
        session["audio"]["input"]["turn_detection"]["type"],
        "server_vad"
    );
    // Every frame of the call went up, as one 20 ms frame at 24 kHz each.
    assert_eq!(heard.appended_samples, report.frames_sent as usize * 480);
    assert_eq!(heard.utterances, 1);
    assert!(heard.truncates.is_empty(), "{:?}", heard.truncates);
    assert!(heard.closed, "the bridge closed without a close frame");

    // The answer came back into the call: 1 s of 440 Hz at the call's 16 kHz, nothing cut.
    assert!(
        report.outbound.stop_audio.is_empty(),
        "{:?}",
        report.outbound.stop_audio
    );
    let (played, rate) = read_wav(&recorded);
    assert_eq!(rate, 16_000);
    assert!(
        (16_000..=16_640).contains(&played.len()),
        "{} samples",
        played.len()
    );
    let middle = crossings(&played[4_000..12_000]);
    assert!(
        (436..=444).contains(&middle),
        "{middle} zero crossings in 0.5 s"
    );
    let peak = played[4_000..12_000]
        .iter()
        .map(|s| s.unsigned_abs())
        .max()
        .unwrap();
    assert!((7_800..=8_200).contains(&peak), "peak {peak}");

    let session = gateway.ended_session("answered").await;
    let realtime = processor(&session["transports"][0], "realtime");
    assert_eq!(realtime["frames"], report.frames_sent);
    let bridge = &realtime["report"];
    assert_eq!(bridge["connected"], true, "{bridge}");
    assert_eq!(bridge["frames_sent"], report.frames_sent, "{bridge}");
    assert_eq!(bridge["responses"], 1, "{bridge}");
    assert_eq!(bridge["audio_deltas"], 10, "{bridge}");
    assert_eq!(bridge["audio_received_secs"], 1.0, "{bridge}");
    assert_eq!(bridge["barge_ins"], 0, "{bridge}");
    assert_eq!(bridge["frames_dropped"], 0, "{bridge}");
    assert_eq!(bridge["errors"], 0, "{bridge}");
    gateway.stop().await;
}

/// A caller who says `first`, waits 1.8 s (the bot answers) and talks again.
fn two_utterances(dir: &Path, first: &str) -> std::path::PathBuf {
    caller(
        dir,
        &[
            (None, 0.4),
            (Some(first), 0.0),
            (None, 1.8),
            (Some("carol-16k.wav"), 0.0),
            (None, 1.4),
        ],
    )
}

/// Two answers for [`two_utterances`]: 5 s of 440 Hz (cut by the second utterance), then
/// 0.6 s of 880 Hz.
fn long_then_short() -> Vec<Vec<i16>> {
    vec![tone(440.0, 5.0), tone(880.0, 0.6)]
}

/// What the caller of [`two_utterances`] heard: the first answer up to the (first) StopAudio,
/// well before its end; after the last StopAudio only the second answer (the cut answer's late
/// deltas were not played), and between the two StopAudios at most the frames on their way.
/// Returns where the first cut came, in samples.
fn assert_cut_then_second_answer(report: &EmulateReport, recorded: &Path) -> usize {
    let stops = &report.outbound.stop_audio;
    assert!(!stops.is_empty(), "no StopAudio: {:?}", report.outbound);
    let cut_at = stops[0].sample_index as usize;
    let last_cut = stops[stops.len() - 1].sample_index as usize;
    assert!(last_cut - cut_at <= 2 * 320, "{stops:?}");
    assert!(
        (8_000..48_000).contains(&cut_at),
        "cut after {cut_at} samples"
    );
    let (played, _) = read_wav(recorded);
    let tail = &played[cut_at - 8_000..cut_at];
    assert!(
        (436..=444).contains(&crossings(tail)),
        "{} crossings",
        crossings(tail)
    );
    // After the cut: at most the frame already on its way, then 0.6 s of 880 Hz.
    let after = &played[last_cut..];
    assert!(
        (9_600..=9_600 + 3 * 320).contains(&after.len()),
        "{} samples after the cut",
        after.len()
    );
    let steady = &after[1_600..8_000];
    assert!(
        (696..=712).contains(&crossings(steady)),
        "{} crossings in 0.4 s",
        crossings(steady)
    );
    cut_at
}

/// The model was told, once, how much of its first answer the caller heard.
fn assert_truncated_where_cut(heard: &Heard, cut_at: usize) {
    assert_eq!(heard.truncates.len(), 1, "{:?}", heard.truncates);
    let truncate = &heard.truncates[0];
    assert_eq!(truncate["item_id"], "item_1");
    assert_eq!(truncate["content_index"], 0);
    let heard_ms = truncate["audio_end_ms"].as_u64().unwrap();
    let played_ms = cut_at as u64 / 16;
    assert!(
        heard_ms.abs_diff(played_ms) <= 100,
        "truncated at {heard_ms} ms, heard {played_ms} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_speech_cuts_the_bots_answer_and_the_conversation_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (url, service) = fake_service(long_then_short(), true).await;
    let gateway = gateway(&["realtime"], json!({ "url": url })).await;
    let wav = two_utterances(dir.path(), "hello-16k.wav");
    let recorded = dir.path().join("heard.wav");
    let report = call(&gateway, "barge", &wav, &recorded, 1_000).await;
    let heard = heard_by(service).await;
    assert_eq!(heard.utterances, 2);
    // One StopAudio: the service's `speech_started`.
    assert_eq!(report.outbound.stop_audio.len(), 1, "{:?}", report.outbound);
    let cut_at = assert_cut_then_second_answer(&report, &recorded);
    assert_truncated_where_cut(&heard, cut_at);
    // The service cancels by itself (server VAD): the bridge does not.
    assert!(heard.events.is_empty(), "{:?}", heard.events);

    let session = gateway.ended_session("barge").await;
    let bridge = &processor(&session["transports"][0], "realtime")["report"];
    assert_eq!(bridge["barge_ins"], 1, "{bridge}");
    assert_eq!(bridge["responses"], 2, "{bridge}");
    // The two deltas the fake sends after `speech_started`, as if in flight.
    assert_eq!(bridge["deltas_after_barge_in"], 2, "{bridge}");
    assert_eq!(bridge["errors"], 0, "{bridge}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barge_in_by_the_vad_processor_also_stops_the_bot() {
    let dir = tempfile::tempdir().unwrap();
    // This service never reports the caller's speech: only `vad` (barge_in on) cuts, and the
    // service goes on sending the cut answer, which must not play on.
    let (url, service) = fake_service(long_then_short(), false).await;
    let gateway = gateway(&["vad", "realtime"], json!({ "url": url })).await;
    let wav = two_utterances(dir.path(), "hello-16k.wav");
    let recorded = dir.path().join("heard.wav");
    let report = call(&gateway, "vadcut", &wav, &recorded, 1_000).await;
    let heard = heard_by(service).await;
    assert_eq!(heard.utterances, 2);
    let cut_at = assert_cut_then_second_answer(&report, &recorded);
    assert_truncated_where_cut(&heard, cut_at);

    let session = gateway.ended_session("vadcut").await;
    let bridge = &processor(&session["transports"][0], "realtime")["report"];
    assert_eq!(bridge["barge_ins"], 1, "{bridge}");
    let late = bridge["deltas_after_barge_in"].as_u64().unwrap();
    assert!(late >= 5, "{bridge}");
    assert_eq!(bridge["errors"], 0, "{bridge}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_service_is_reported_and_the_call_goes_on() {
    // A port nobody listens on any more.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/realtime", listener.local_addr().unwrap());
    drop(listener);
    let gateway = gateway(&["wav", "realtime"], json!({ "url": url })).await;
    // Real time, so the connection has failed long before the call ends.
    let report = mediagate::emulator::run(
        EmulateConfig::new(gateway.url("/ws?callId=nobot")).with_wav(sample("bob-16k.wav")),
    )
    .await
    .unwrap();
    assert!(!report.stopped_early);
    let session = gateway.ended_session("nobot").await;
    let transport = &session["transports"][0];
    let bridge = &processor(transport, "realtime")["report"];
    assert_eq!(bridge["connected"], false, "{bridge}");
    assert_eq!(bridge["errors"], 1, "{bridge}");
    let error = bridge["last_error"].as_str().unwrap();
    assert!(error.starts_with("cannot connect"), "{error}");
    assert_eq!(bridge["frames_sent"], 0, "{bridge}");
    // The recording is whole.
    let recorded = read_wav(&gateway.call_dir("nobot").join("mixed.wav")).0;
    assert!(recorded == read_wav(&sample("bob-16k.wav")).0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_gateway_vad_the_bridge_asks_for_each_answer_and_cancels_a_cut_one() {
    let dir = tempfile::tempdir().unwrap();
    let (url, service) = fake_service(long_then_short(), false).await;
    let gateway = TestGateway::start_with(move |c| {
        c.pipeline.processors = vec!["vad".to_owned(), "realtime".to_owned()];
        // As the module docs say: pauses inside an utterance are up to 340 ms, so it ends
        // after 600 ms; the bridge cuts its answers itself.
        c.pipeline.settings.insert(
            "vad".to_owned(),
            json!({ "stop_frames": 30, "barge_in": false }),
        );
        c.pipeline.settings.insert(
            "realtime".to_owned(),
            json!({
                "url": url, "api_key_env": "MEDIAGATE_TEST_NO_SUCH_KEY",
                "turn_detection": "gateway_vad",
            }),
        );
    })
    .await;
    let wav = two_utterances(dir.path(), "bob-16k.wav");
    let recorded = dir.path().join("heard.wav");
    let report = call(&gateway, "turns", &wav, &recorded, 1_000).await;
    let heard = heard_by(service).await;
    let session = heard.session.as_ref().unwrap();
    assert!(
        session["audio"]["input"]["turn_detection"].is_null(),
        "{session}"
    );
    // Each utterance committed and answered on request; the cut answer cancelled.
    assert_eq!(heard.utterances, 2);
    assert_eq!(
        heard.events,
        [
            "input_audio_buffer.commit",
            "response.cancel",
            "input_audio_buffer.commit"
        ],
        "{heard:?}"
    );
    assert_eq!(report.outbound.stop_audio.len(), 1, "{:?}", report.outbound);
    let cut_at = assert_cut_then_second_answer(&report, &recorded);
    assert_truncated_where_cut(&heard, cut_at);
    gateway.stop().await;
}
