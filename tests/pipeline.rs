//! The pipeline through a real gateway: processors named in the config run on every call, and
//! what they play back reaches the platform (here the emulator, which records and times it).

use crate::common;

use std::time::Duration;

use common::{TestGateway, emulate, processor, processor_names, read_wav, sample};
use mediagate::emulator::{EmulateConfig, Pacing};

/// The default pipeline (the recorders) plus `echo`.
async fn echo_gateway() -> TestGateway {
    TestGateway::start_with(|c| c.pipeline.processors.push("echo".to_owned())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_returns_every_frame_in_order_at_any_rate() {
    let gateway = echo_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let recorded = dir.path().join("outbound.wav");
    let report = mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=echo-fast"))
            .with_wav(sample("hello-16k.wav"))
            .with_record_outbound(&recorded)
            .with_linger(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    let (sent, _) = read_wav(&sample("hello-16k.wav"));
    let (echoed, rate) = read_wav(&recorded);
    assert_eq!(rate, 16_000);
    assert_eq!(echoed.len(), sent.len(), "samples lost or duplicated");
    assert!(echoed == sent, "echoed audio differs from what was sent");
    let round_trip = report.outbound.round_trip.as_ref().unwrap();
    assert_eq!(round_trip.count, report.frames_sent);
    assert!(round_trip.min_us > 0 && round_trip.min_us <= round_trip.max_us);

    let session = gateway.ended_session("echo-fast").await;
    let transport = &session["transports"][0];
    assert_eq!(
        processor_names(transport),
        ["wav", "transcript", "dtmf", "echo"]
    );
    let echo = processor(transport, "echo");
    assert_eq!(echo["frames"], report.frames_sent);
    assert_eq!(echo["dropped"], 0);
    // The recorder is a processor like echo, and sees the same frames.
    let wav = processor(transport, "wav");
    assert_eq!(wav["frames"], report.frames_sent);
    assert_eq!(wav["files"], serde_json::json!(["mixed.wav"]));
    assert_eq!(wav["report"]["tracks"][0]["frames"], report.frames_sent);
    assert_eq!(transport["files"], serde_json::json!(["mixed.wav"]));
    assert!(read_wav(&gateway.call_dir("echo-fast").join("mixed.wav")).0 == sent);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_in_real_time_comes_back_paced_at_20ms() {
    let gateway = echo_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let recorded = dir.path().join("outbound.wav");
    let report = mediagate::emulator::run(
        EmulateConfig::new(gateway.url("/ws?callId=echo-rt"))
            .with_pacing(Pacing::Realtime)
            .with_wav(sample("carol-16k.wav"))
            .with_record_outbound(&recorded)
            .with_linger(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    assert!(read_wav(&recorded).0 == read_wav(&sample("carol-16k.wav")).0);
    let pacing = report.outbound.pacing.as_ref().unwrap();
    // Echo's pacing is the caller's: 20 ms ± 2 ms at the median. The tail (gaps over 25 ms) is
    // load-dependent on a shared 2-core machine: it is measured by the stress tests, run on
    // purpose (tests/stress.rs), not gated here.
    assert!(
        (18_000..=22_000).contains(&pacing.gaps.p50_us),
        "median gap {} us",
        pacing.gaps.p50_us
    );
    assert_eq!(
        pacing.gaps.count + 1,
        report.frames_sent,
        "one gap between each two frames"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn an_unknown_processor_is_refused_at_start_up_naming_the_key() {
    let config = mediagate::server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: tempfile::tempdir().unwrap().path().to_owned(),
        pipeline: mediagate::server::PipelineConfig {
            processors: vec!["ecoh".to_owned()],
            ..Default::default()
        },
        ..Default::default()
    };
    let Err(err) = mediagate::server::Server::bind(config, mediagate::registry()).await else {
        panic!("a gateway started with an unknown processor");
    };
    let text = err.to_string();
    assert!(
        text.contains("`pipeline`") && text.contains("unknown processor `ecoh`"),
        "{text}"
    );
    assert!(text.contains("known: dtmf, echo"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_give_calls_on_different_paths_different_pipelines() {
    let gateway = TestGateway::start_with(|c| {
        c.routes.insert(
            "/ws/bot".to_owned(),
            mediagate::server::PipelineConfig {
                processors: vec!["echo".to_owned()],
                ..Default::default()
            },
        );
    })
    .await;
    let run = |path: &str| {
        mediagate::emulator::run(
            emulate(gateway.url(path))
                .with_wav(sample("bob-16k.wav"))
                .with_linger(Duration::from_millis(300)),
        )
    };
    let bot = run("/ws/bot/sales?callId=bot").await.unwrap();
    let plain = run("/ws/support?callId=plain").await.unwrap();
    assert_eq!(
        bot.messages_received_from_gateway.audio_data,
        bot.frames_sent
    );
    assert_eq!(plain.messages_received_from_gateway.audio_data, 0);
    let session = gateway.ended_session("bot").await;
    assert_eq!(processor_names(&session["transports"][0]), ["echo"]);
    assert!(
        session["transports"][0]["files"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let session = gateway.ended_session("plain").await;
    assert_eq!(
        processor_names(&session["transports"][0]),
        ["wav", "transcript", "dtmf"]
    );
    gateway.stop().await;
}

/// Takes 30 ms per frame on a blocking thread: far slower than real time.
struct Sluggish;

impl mediagate::pipeline::Processor for Sluggish {
    fn input(&self) -> mediagate::pipeline::Input {
        mediagate::pipeline::Input {
            queue: 8,
            overflow: mediagate::pipeline::OverflowPolicy::DropOldest,
            execution: mediagate::pipeline::Execution::Blocking,
            ..Default::default()
        }
    }

    fn on_frame(
        &mut self,
        _frame: &mediagate::audio::AudioFrame,
        _ctx: &mut mediagate::pipeline::Context,
    ) -> Result<(), mediagate::pipeline::ProcessorError> {
        std::thread::sleep(Duration::from_millis(30));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_processor_costs_the_socket_echo_and_recording_nothing() {
    let mut registry = mediagate::registry();
    registry.register("sluggish", |_| {
        Ok(|_: &mediagate::pipeline::CallInfo| {
            Box::new(Sluggish) as Box<dyn mediagate::pipeline::Processor>
        })
    });
    let gateway = TestGateway::start_with_registry(
        |c| {
            c.pipeline.processors.push("sluggish".to_owned());
            c.pipeline.processors.push("echo".to_owned());
        },
        registry,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let recorded = dir.path().join("outbound.wav");
    let report = mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=slow"))
            .with_wav(sample("hello-16k.wav"))
            .with_record_outbound(&recorded)
            .with_linger(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let sent = read_wav(&sample("hello-16k.wav")).0;
    // The socket kept reading at full speed: echo returned every frame, recording got every frame.
    assert!(
        read_wav(&recorded).0 == sent,
        "echo lost audio behind the slow processor"
    );
    let session = gateway.ended_session("slow").await;
    let transport = &session["transports"][0];
    assert_eq!(transport["frames_received"], report.frames_sent);
    assert!(read_wav(&gateway.call_dir("slow").join("mixed.wav")).0 == sent);
    // The slow one fell behind, and said so.
    let slow = processor(transport, "sluggish");
    let echo = processor(transport, "echo");
    assert_eq!(processor(transport, "wav")["dropped"], 0);
    assert!(slow["dropped"].as_u64().unwrap() > 100, "{slow}");
    assert!(slow["queue_high_water"].as_u64().unwrap() <= 8, "{slow}");
    assert_eq!(echo["dropped"], 0);
    assert_eq!(echo["frames"], report.frames_sent);
    gateway.stop().await;
}

/// `GET path` over a plain TCP connection; the response body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_processors_and_bad_messages() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let gateway = echo_gateway().await;
    let report = mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=metered")).with_wav(sample("bob-16k.wav")),
    )
    .await
    .unwrap();
    gateway.ended_session("metered").await;
    let (mut bad, _) = tokio_tungstenite::connect_async(gateway.url("/ws?callId=bad"))
        .await
        .unwrap();
    bad.send(Message::text("not json")).await.unwrap();
    bad.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let text = http_get(gateway.addr, "/metrics").await;
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .to_owned()
    };
    let frames = report.frames_sent;
    assert_eq!(
        line("mediagate_processor_frames_total{processor=\"echo\"}"),
        format!("mediagate_processor_frames_total{{processor=\"echo\"}} {frames}")
    );
    assert!(line("mediagate_processor_dropped_total{processor=\"echo\"}").ends_with(" 0"));
    assert!(line("mediagate_bad_messages_total{class=\"not_json\"}").ends_with(" 1"));
    assert!(line("mediagate_connections_total").ends_with(" 2"));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_metrics_are_live_while_the_call_runs() {
    let gateway = echo_gateway().await;
    let call = tokio::spawn(mediagate::emulator::run(
        EmulateConfig::new(gateway.url("/ws?callId=live-metrics"))
            .with_pacing(Pacing::Realtime)
            .with_wav(sample("carol-16k.wav")),
    ));
    let frames = |text: &str, processor: &str| -> u64 {
        let prefix = format!("mediagate_processor_frames_total{{processor=\"{processor}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |n| n.parse().unwrap())
    };
    // Mid-call, the counters move (real-time pacing: 50 frames a second).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let early = http_get(gateway.addr, "/metrics").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = http_get(gateway.addr, "/metrics").await;
    assert!(!call.is_finished(), "the clip ended before the scrapes");
    let (echo_early, echo_later) = (frames(&early, "echo"), frames(&later, "echo"));
    assert!(echo_early >= 10, "no live count mid-call:\n{early}");
    assert!(echo_later >= echo_early + 10, "{echo_early} → {echo_later}");
    // At the end the live count becomes the call's final count, not double it.
    let report = call.await.unwrap().unwrap();
    gateway.ended_session("live-metrics").await;
    let end = http_get(gateway.addr, "/metrics").await;
    assert_eq!(frames(&end, "echo"), report.frames_sent);
    assert_eq!(frames(&end, "wav"), report.frames_sent);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_processor_settings_are_refused_at_start_up() {
    let mut config = mediagate::server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: tempfile::tempdir().unwrap().path().to_owned(),
        ..Default::default()
    };
    config
        .pipeline
        .settings
        .insert("wav".to_owned(), serde_json::json!({ "sample_rate_hz": 7 }));
    let Err(err) = mediagate::server::Server::bind(config, mediagate::registry()).await else {
        panic!("a gateway started with an impossible recording rate");
    };
    let text = err.to_string();
    assert!(text.contains("`wav`") && text.contains('7'), "{text}");
}

/// A stand-in speech engine: when the call starts it "works" for a while on a blocking
/// thread, then emits a final transcript, noting when.
struct LateEngine {
    emitted: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl mediagate::pipeline::Processor for LateEngine {
    fn input(&self) -> mediagate::pipeline::Input {
        mediagate::pipeline::Input {
            frames: false,
            execution: mediagate::pipeline::Execution::Blocking,
            emits: true,
            ..Default::default()
        }
    }

    fn on_event(
        &mut self,
        event: &mediagate::pipeline::Event,
        ctx: &mut mediagate::pipeline::Context,
    ) -> Result<(), mediagate::pipeline::ProcessorError> {
        if matches!(event, mediagate::pipeline::Event::CallStarted(_)) {
            std::thread::sleep(Duration::from_millis(300));
            *self.emitted.lock().unwrap() = Some(std::time::Instant::now());
            ctx.emit(mediagate::pipeline::Event::Transcript(std::sync::Arc::new(
                mediagate::pipeline::Transcript {
                    source: "late".into(),
                    status: mediagate::pipeline::TranscriptStatus::Final,
                    text: "heard at once".to_owned(),
                    start_ms: 0,
                    duration_ms: 0,
                    words: Vec::new(),
                    confidence: None,
                    speaker: None,
                    received_at: mediagate::protocol::Timestamp::now(),
                },
            )));
        }
        Ok(())
    }
}

/// Notes when the engine's transcript reached it, and whether the call had ended by then.
struct Listener {
    heard: std::sync::Arc<std::sync::Mutex<Option<(std::time::Instant, bool)>>>,
    ended: bool,
}

impl mediagate::pipeline::Processor for Listener {
    fn input(&self) -> mediagate::pipeline::Input {
        mediagate::pipeline::Input {
            frames: false,
            ..Default::default()
        }
    }

    fn on_event(
        &mut self,
        event: &mediagate::pipeline::Event,
        _ctx: &mut mediagate::pipeline::Context,
    ) -> Result<(), mediagate::pipeline::ProcessorError> {
        match event {
            mediagate::pipeline::Event::Transcript(t) if &*t.source == "late" => {
                *self.heard.lock().unwrap() = Some((std::time::Instant::now(), self.ended));
            }
            mediagate::pipeline::Event::CallEnded => self.ended = true,
            _ => {}
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emitted_transcript_reaches_the_others_at_once_on_a_transcription_transport() {
    use futures_util::SinkExt;
    let emitted = std::sync::Arc::new(std::sync::Mutex::new(None));
    let heard = std::sync::Arc::new(std::sync::Mutex::new(None));
    let mut registry = mediagate::registry();
    let (e, h) = (emitted.clone(), heard.clone());
    registry.register("late_engine", move |_| {
        let e = e.clone();
        Ok(move |_: &mediagate::pipeline::CallInfo| {
            Box::new(LateEngine { emitted: e.clone() }) as Box<dyn mediagate::pipeline::Processor>
        })
    });
    registry.register("listener", move |_| {
        let h = h.clone();
        Ok(move |_: &mediagate::pipeline::CallInfo| {
            Box::new(Listener {
                heard: h.clone(),
                ended: false,
            }) as Box<dyn mediagate::pipeline::Processor>
        })
    });
    let gateway = TestGateway::start_with_registry(
        |c| c.pipeline.processors = vec!["late_engine".to_owned(), "listener".to_owned()],
        registry,
    )
    .await;
    // A transcription transport that says who it is, then nothing for 1.5 s: no audio, no
    // results from the platform.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(gateway.url("/ws?callId=quiet-transcription"))
            .await
            .unwrap();
    let metadata = serde_json::json!({
        "kind": "TranscriptionMetadata",
        "transcriptionMetadata": {"locale": "en-us", "callConnectionId": "quiet"}
    })
    .to_string();
    socket
        .send(tokio_tungstenite::tungstenite::Message::text(metadata))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    socket.close(None).await.unwrap();
    gateway.ended_session("quiet-transcription").await;
    let emitted = emitted.lock().unwrap().expect("the engine never emitted");
    let (heard_at, after_end) = heard.lock().unwrap().expect("the listener never heard it");
    assert!(!after_end, "the transcript waited for the call's end");
    let latency = heard_at.duration_since(emitted);
    assert!(
        latency < Duration::from_millis(50),
        "the transcript took {latency:?} to reach another processor"
    );
}
