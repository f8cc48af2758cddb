//! The pipeline's contract: fan-out shares samples by refcount, a slow processor only ever
//! hurts itself (and says so), and events arrive in order.

#![allow(clippy::unwrap_used)] // a panic in a test helper is a failed assertion

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mediagate_audio::{AudioFormat, AudioFrame, AudioSource};
use mediagate_pipeline::{
    CallInfo, Context, Dtmf, Event, Execution, Input, Outgoing, OverflowPolicy, Pipeline,
    Processor, ProcessorError,
};
use tokio::sync::mpsc;

const FORMAT: AudioFormat = AudioFormat::mono(16_000);

fn call() -> Arc<CallInfo> {
    Arc::new(CallInfo::new("c", "/ws", FORMAT))
}

fn frame(i: u16) -> AudioFrame {
    AudioFrame {
        pcm: Bytes::from(vec![(i % 256) as u8; FORMAT.frame_bytes()]),
        format: FORMAT,
        timestamp: None,
        position: None,
        source: AudioSource::Mixed,
        silent: false,
    }
}

/// Feeds frames `0..n` the way the server does: from a task on a runtime worker (the socket
/// task), yielding between frames as a socket read would. (Pushing from the test's own
/// `block_on` thread, which is not a worker, starves the consumers and tests nothing real.)
async fn feed(mut pipeline: Pipeline, n: u16) -> Pipeline {
    tokio::spawn(async move {
        for i in 0..n {
            pipeline.push_frame(&frame(i)).await;
            tokio::task::yield_now().await;
        }
        pipeline
    })
    .await
    .unwrap()
}

/// Remembers where every frame's samples live, and every event.
#[derive(Clone, Default)]
struct Spy {
    pointers: Arc<Mutex<Vec<usize>>>,
    events: Arc<Mutex<Vec<Event>>>,
    input: Option<Input>,
    delay: Duration,
}

impl Spy {
    /// A consumer that takes `delay_ms` per frame on a blocking thread, with a small inbox.
    fn slow(delay_ms: u64, queue: usize, overflow: OverflowPolicy) -> Self {
        Spy {
            delay: Duration::from_millis(delay_ms),
            input: Some(Input {
                queue,
                overflow,
                execution: Execution::Blocking,
                ..Input::default()
            }),
            ..Spy::default()
        }
    }
}

fn two_spies(first: (&str, Spy), second: (&str, Spy)) -> Pipeline {
    let processors: Vec<(String, Box<dyn Processor>)> = vec![
        (first.0.into(), Box::new(first.1)),
        (second.0.into(), Box::new(second.1)),
    ];
    Pipeline::start(call(), processors, None, None)
}

impl Processor for Spy {
    fn input(&self) -> Input {
        self.input.clone().unwrap_or_default()
    }
    fn on_frame(&mut self, frame: &AudioFrame, _ctx: &mut Context) -> Result<(), ProcessorError> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay); // a slow consumer (runs on a blocking thread)
        }
        self.pointers
            .lock()
            .unwrap()
            .push(frame.pcm.as_ptr() as usize);
        Ok(())
    }
    fn on_event(&mut self, event: &Event, _ctx: &mut Context) -> Result<(), ProcessorError> {
        self.events.lock().unwrap().push(event.clone());
        Ok(())
    }
}

#[tokio::test]
async fn fan_out_shares_the_samples_never_copies_them() {
    let spies: Vec<Spy> = (0..4).map(|_| Spy::default()).collect();
    let processors = spies
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("spy{i}"), Box::new(s.clone()) as Box<dyn Processor>))
        .collect();
    let mut pipeline = Pipeline::start(call(), processors, None, None);
    let frames: Vec<AudioFrame> = (0..50).map(frame).collect();
    for f in &frames {
        pipeline.push_frame(f).await;
    }
    let reports = pipeline.finish().await;
    let expected: Vec<usize> = frames.iter().map(|f| f.pcm.as_ptr() as usize).collect();
    for (spy, report) in spies.iter().zip(&reports) {
        assert_eq!(*spy.pointers.lock().unwrap(), expected, "{}", report.name);
        assert_eq!((report.counters.frames, report.counters.dropped), (50, 0));
        let events = spy.events.lock().unwrap();
        assert!(matches!(events.first(), Some(Event::CallStarted(_))));
        assert!(matches!(events.last(), Some(Event::CallEnded)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_processor_drops_and_counts_while_the_others_get_everything() {
    let pipeline = two_spies(
        ("fast", Spy::default()),
        ("slow", Spy::slow(2, 8, OverflowPolicy::DropOldest)),
    );
    // 300 frames as fast as a socket task could read them: pushing never waits for anyone.
    let reports = feed(pipeline, 300).await.finish().await;
    let (fast_report, slow_report) = (&reports[0], &reports[1]);
    assert_eq!(fast_report.counters.frames, 300);
    assert_eq!(fast_report.counters.dropped, 0);
    assert!(slow_report.counters.dropped > 0, "{slow_report:?}");
    // Every frame is either processed or counted as dropped (events share the inbox).
    assert!(
        slow_report.counters.frames + slow_report.counters.dropped >= 300,
        "{slow_report:?}"
    );
    assert!(slow_report.counters.queue_high_water <= 8);
    assert!(slow_report.counters.max_callback_micros >= 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_detach_policy_a_laggard_is_cut_off_and_the_others_are_told() {
    let watcher = Spy::default();
    let pipeline = two_spies(
        ("watcher", watcher.clone()),
        ("laggard", Spy::slow(5, 4, OverflowPolicy::Detach)),
    );
    let reports = feed(pipeline, 100).await.finish().await;
    assert!(
        reports[1].detached && reports[1].counters.frames < 100,
        "{:?}",
        reports[1]
    );
    assert_eq!(reports[0].counters.frames, 100);
    let events = watcher.events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ConsumerDetached(name) if &**name == "laggard"))
    );
}

/// Sends every frame straight back and announces itself once.
struct Echo {
    announced: bool,
}

impl Processor for Echo {
    fn on_frame(&mut self, frame: &AudioFrame, ctx: &mut Context) -> Result<(), ProcessorError> {
        if !self.announced {
            self.announced = true;
            ctx.emit(Event::Dtmf(Arc::new(Dtmf::new("echo-ready"))));
        }
        ctx.send_now(frame)
            .map_err(|e| ProcessorError::Fatal(e.to_string()))
    }
}

#[tokio::test]
async fn send_now_reaches_the_socket_in_order_and_emitted_events_reach_everyone() {
    let (to_socket, mut socket) = mpsc::channel(64);
    let spy = Spy::default();
    let mut pipeline = Pipeline::start(
        call(),
        vec![
            ("echo".into(), Box::new(Echo { announced: false })),
            ("spy".into(), Box::new(spy.clone())),
        ],
        None,
        Some(to_socket),
    );
    let frames: Vec<AudioFrame> = (0..20).map(frame).collect();
    for f in &frames {
        pipeline.push_frame(f).await;
        tokio::task::yield_now().await;
    }
    pipeline.finish().await;
    for f in &frames {
        assert_eq!(socket.recv().await, Some(Outgoing::Audio(f.pcm.clone())));
    }
    let events = spy.events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Dtmf(d) if &*d.tone == "echo-ready")),
        "{events:?}"
    );
}

#[tokio::test]
async fn unpaced_frames_that_find_the_socket_full_are_counted_as_dropped() {
    // A socket writer with room for 4 frames, that does not read.
    let (to_socket, mut socket) = mpsc::channel(4);
    let mut pipeline = Pipeline::start(
        call(),
        vec![("echo".into(), Box::new(Echo { announced: true }))],
        None,
        Some(to_socket),
    );
    for f in &(0..10).map(frame).collect::<Vec<_>>() {
        pipeline.push_frame(f).await;
    }
    let reports = pipeline.finish().await;
    assert_eq!(reports[0].counters.frames, 10);
    assert_eq!(reports[0].counters.dropped, 6);
    let mut queued = 0;
    while let Ok(Outgoing::Audio(_)) = socket.try_recv() {
        queued += 1;
    }
    assert_eq!(queued, 4);
}

/// Records every frame it gets: where the samples live, how many, and in what format.
#[derive(Clone, Default)]
struct RateSpy {
    rate_hz: Option<u32>,
    frames: Arc<Mutex<Vec<AudioFrame>>>,
}

impl Processor for RateSpy {
    fn input(&self) -> Input {
        Input {
            sample_rate_hz: self.rate_hz,
            queue: 1024,
            ..Input::default()
        }
    }
    fn on_frame(&mut self, frame: &AudioFrame, _ctx: &mut Context) -> Result<(), ProcessorError> {
        self.frames.lock().unwrap().push(frame.clone());
        Ok(())
    }
}

/// 20 ms frames of a continuous 1 kHz sine at 16 kHz.
fn sine_frames(n: usize) -> Vec<AudioFrame> {
    let samples = FORMAT.frame_samples();
    (0..n)
        .map(|f| {
            let pcm: Vec<u8> = (0..samples)
                .flat_map(|i| {
                    let t = (f * samples + i) as f64 / 16_000.0;
                    let v = (8_000.0 * (2.0 * std::f64::consts::PI * 1_000.0 * t).sin()) as i16;
                    v.to_le_bytes()
                })
                .collect();
            AudioFrame {
                pcm: Bytes::from(pcm),
                format: FORMAT,
                timestamp: None,
                position: None,
                source: AudioSource::Mixed,
                silent: f % 7 == 3,
            }
        })
        .collect()
}

#[tokio::test]
async fn other_rates_are_resampled_once_per_rate_and_shared() {
    let spies = [
        RateSpy {
            rate_hz: Some(24_000),
            ..RateSpy::default()
        },
        RateSpy {
            rate_hz: Some(24_000),
            ..RateSpy::default()
        },
        RateSpy {
            rate_hz: Some(8_000),
            ..RateSpy::default()
        },
        RateSpy::default(),
        RateSpy {
            rate_hz: Some(16_000), // the call's own rate, asked for explicitly
            ..RateSpy::default()
        },
    ];
    let processors = spies
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("spy{i}"), Box::new(s.clone()) as Box<dyn Processor>))
        .collect();
    let mut pipeline = Pipeline::start(call(), processors, None, None);
    const N: usize = 50;
    let frames = sine_frames(N);
    for f in &frames {
        pipeline.push_frame(f).await;
    }
    let reports = pipeline.finish().await;
    assert!(
        reports
            .iter()
            .all(|r| r.counters.frames == N as u64 && r.counters.dropped == 0)
    );

    let got: Vec<Vec<AudioFrame>> = spies
        .iter()
        .map(|s| s.frames.lock().unwrap().clone())
        .collect();
    let total = |frames: &[AudioFrame]| frames.iter().map(AudioFrame::samples).sum::<usize>();
    // Fixed in, fixed out: one 20 ms frame out per 20 ms frame in.
    assert_eq!(total(&got[0]), N * 480);
    assert_eq!(total(&got[1]), N * 480);
    assert_eq!(total(&got[2]), N * 160);
    for (i, f) in frames.iter().enumerate() {
        let (a, b, low) = (&got[0][i], &got[1][i], &got[2][i]);
        // One variant per rate, shared by refcount by every processor that asked for it.
        assert_eq!(a.pcm.as_ptr(), b.pcm.as_ptr(), "frame {i}");
        assert_eq!(a.format, AudioFormat::mono(24_000));
        assert_eq!(low.format, AudioFormat::mono(8_000));
        for v in [a, low] {
            assert_eq!(v.source, f.source);
            assert_eq!(v.timestamp, f.timestamp);
            assert_eq!(v.silent, f.silent);
        }
        // The call's own rate: the original samples, never copied.
        assert_eq!(got[3][i].pcm.as_ptr(), f.pcm.as_ptr());
        assert_eq!(got[4][i].pcm.as_ptr(), f.pcm.as_ptr());
    }

    // One resampler for the whole stream: past the start-up delay the 24 kHz output is the
    // same continuous 1 kHz sine (no clicks at frame edges), at the input's level.
    let pcm: Vec<i16> = got[0]
        .iter()
        .flat_map(|f| {
            f.pcm
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
        })
        .collect();
    let delay = 240;
    let steady = &pcm[delay + 480..];
    let peak = steady.iter().map(|v| v.unsigned_abs()).max().unwrap();
    assert!((7_800..=8_200).contains(&peak), "peak {peak}");
    let max_step = steady
        .windows(2)
        .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
        .max()
        .unwrap();
    // 1 kHz at 24 kHz, amplitude 8000: the steepest step is 8000·2π/24 ≈ 2094.
    assert!(max_step < 2_200, "discontinuity of {max_step}");
}

#[tokio::test]
async fn each_source_has_its_own_resampler_and_an_impossible_rate_is_skipped() {
    let wide = RateSpy {
        rate_hz: Some(24_000),
        ..RateSpy::default()
    };
    let impossible = RateSpy {
        rate_hz: Some(0),
        ..RateSpy::default()
    };
    let native = RateSpy::default();
    let mut pipeline = Pipeline::start(
        call(),
        vec![
            ("wide".into(), Box::new(wide.clone())),
            ("impossible".into(), Box::new(impossible.clone())),
            ("native".into(), Box::new(native.clone())),
        ],
        None,
        None,
    );
    let alice = AudioSource::Participant("8:acs:alice".into());
    let bob = AudioSource::Participant("8:acs:bob".into());
    for (i, mut f) in sine_frames(20).into_iter().enumerate() {
        f.source = if i % 2 == 0 {
            alice.clone()
        } else {
            bob.clone()
        };
        pipeline.push_frame(&f).await;
    }
    let reports = pipeline.finish().await;
    assert_eq!(
        (
            reports[0].counters.frames,
            reports[1].counters.frames,
            reports[2].counters.frames
        ),
        (20, 0, 20)
    );
    let wide = wide.frames.lock().unwrap();
    for (i, f) in wide.iter().enumerate() {
        assert_eq!(f.samples(), 480);
        assert_eq!(
            f.source,
            if i % 2 == 0 {
                alice.clone()
            } else {
                bob.clone()
            }
        );
    }
    // Each participant's stream starts with its own resampler's start-up silence (10 ms).
    for first in &wide[..2] {
        assert!(
            first.pcm[..200].iter().all(|&b| b == 0),
            "{:?}",
            &first.pcm[..16]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_laggard_detached_by_events_is_announced_too() {
    let watcher = Spy::default();
    let pipeline = two_spies(
        ("watcher", watcher.clone()),
        ("laggard", Spy::slow(5, 4, OverflowPolicy::Detach)),
    );
    let reports = tokio::spawn(async move {
        let mut pipeline = pipeline;
        // A frame keeps the laggard busy on its blocking thread while key presses pile up.
        pipeline.push_frame(&frame(0)).await;
        for _ in 0..20 {
            pipeline.push_event(Event::Dtmf(Arc::new(Dtmf::new("5"))));
        }
        pipeline.finish().await
    })
    .await
    .unwrap();
    assert!(reports[1].detached, "{:?}", reports[1]);
    let events = watcher.events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ConsumerDetached(name) if &**name == "laggard")),
        "{events:?}"
    );
}

/// A direct processor that fails fatally on its `fail_at`-th frame, and reports what it saw.
struct Brittle {
    frames: u64,
    fail_at: u64,
    finished: bool,
}

impl Processor for Brittle {
    fn input(&self) -> Input {
        Input {
            execution: Execution::Direct,
            ..Input::default()
        }
    }
    fn on_frame(&mut self, _frame: &AudioFrame, _ctx: &mut Context) -> Result<(), ProcessorError> {
        self.frames += 1;
        if self.frames == self.fail_at {
            return Err(ProcessorError::Fatal("broken on purpose".into()));
        }
        Ok(())
    }
    fn finish(&mut self, _ctx: &mut Context) -> Result<(), ProcessorError> {
        self.finished = true;
        Ok(())
    }
    fn report(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "frames": self.frames, "finished": self.finished }))
    }
}

#[tokio::test]
async fn direct_processors_run_in_the_pushing_task_in_order() {
    let spy = Spy {
        input: Some(Input {
            execution: Execution::Direct,
            ..Input::default()
        }),
        ..Spy::default()
    };
    let watcher = Spy::default();
    let processors: Vec<(String, Box<dyn Processor>)> = vec![
        ("direct".into(), Box::new(spy.clone())),
        (
            "brittle".into(),
            Box::new(Brittle {
                frames: 0,
                fail_at: 3,
                finished: false,
            }),
        ),
        ("watcher".into(), Box::new(watcher.clone())),
    ];
    let mut pipeline = Pipeline::start(call(), processors, None, None);
    let frames: Vec<AudioFrame> = (0..10).map(frame).collect();
    for f in &frames {
        pipeline.push_frame(f).await;
        // Direct: already seen when the push returns, with no task to wake.
    }
    assert_eq!(spy.pointers.lock().unwrap().len(), 10);
    let expected: Vec<usize> = frames.iter().map(|f| f.pcm.as_ptr() as usize).collect();
    assert_eq!(*spy.pointers.lock().unwrap(), expected);
    let reports = pipeline.finish().await;
    let brittle = &reports[1];
    assert!(brittle.detached);
    assert_eq!(brittle.counters.frames, 3);
    assert_eq!(brittle.counters.errors, 1);
    // Detached for failing, it still finished, and said so.
    assert_eq!(
        brittle.report,
        Some(serde_json::json!({ "frames": 3, "finished": true }))
    );
    assert!(
        watcher
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::ConsumerDetached(n) if &**n == "brittle"))
    );
    assert_eq!(reports[0].counters.frames, 10);
    assert!(!reports[0].detached);
}

/// Where [`Panicky`] panics.
#[derive(Clone, Copy, Debug, PartialEq)]
enum PanicAt {
    Frame,
    Event,
    Finish,
}

/// A processor with a bug: it panics in one callback (on its third frame, or on its first
/// DTMF tone, or in `finish`), and reports what it saw.
struct Panicky {
    at: PanicAt,
    execution: Execution,
    frames: u64,
    finished: bool,
}

impl Processor for Panicky {
    fn input(&self) -> Input {
        Input {
            execution: self.execution,
            ..Input::default()
        }
    }
    fn on_frame(&mut self, _frame: &AudioFrame, _ctx: &mut Context) -> Result<(), ProcessorError> {
        self.frames += 1;
        if self.at == PanicAt::Frame && self.frames == 3 {
            panic!("bug on frame {}", self.frames);
        }
        Ok(())
    }
    fn on_event(&mut self, event: &Event, _ctx: &mut Context) -> Result<(), ProcessorError> {
        if self.at == PanicAt::Event && matches!(event, Event::Dtmf(_)) {
            let tones: Vec<u8> = Vec::new();
            let _ = tones[7]; // an out-of-bounds index: a formatted (String) panic message
        }
        Ok(())
    }
    fn finish(&mut self, _ctx: &mut Context) -> Result<(), ProcessorError> {
        if self.at == PanicAt::Finish {
            panic!("bug in finish");
        }
        self.finished = true;
        Ok(())
    }
    fn report(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "frames": self.frames, "finished": self.finished }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_processor_ends_alone_and_the_call_goes_on() {
    for execution in [Execution::Direct, Execution::Inline, Execution::Blocking] {
        for at in [PanicAt::Frame, PanicAt::Event, PanicAt::Finish] {
            let watcher = Spy::default();
            let processors: Vec<(String, Box<dyn Processor>)> = vec![
                (
                    "panicky".into(),
                    Box::new(Panicky {
                        at,
                        execution,
                        frames: 0,
                        finished: false,
                    }),
                ),
                ("watcher".into(), Box::new(watcher.clone())),
            ];
            // The socket task: it must come out of every push, and finish the call.
            let reports = tokio::spawn(async move {
                let mut pipeline = Pipeline::start(call(), processors, None, None);
                for i in 0..10 {
                    pipeline.push_frame(&frame(i)).await;
                    if i == 5 {
                        pipeline.push_event(Event::Dtmf(Arc::new(Dtmf::new("5"))));
                    }
                    tokio::task::yield_now().await;
                    // Let a task-run processor see its items before the next push.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                pipeline.finish().await
            })
            .await
            .unwrap();
            let case = format!("{execution:?} {at:?}");
            let panicky = &reports[0];
            assert_eq!(panicky.counters.panics, 1, "{case}: {panicky:?}");
            let message = panicky.panicked.as_deref().unwrap_or_default();
            match at {
                PanicAt::Frame => {
                    assert_eq!(message, "bug on frame 3", "{case}");
                    assert_eq!(panicky.counters.frames, 3, "{case}");
                }
                PanicAt::Event => assert!(message.contains("index out of bounds"), "{case}"),
                PanicAt::Finish => assert_eq!(message, "bug in finish", "{case}"),
            }
            // A callback's panic detaches it like a Fatal error; it still finished and reported.
            let detached = at != PanicAt::Finish;
            assert_eq!(panicky.detached, detached, "{case}");
            let report = panicky.report.as_ref().unwrap();
            assert_eq!(report["finished"], at != PanicAt::Finish, "{case}");
            // The others got every frame, and heard of the detachment.
            assert_eq!(reports[1].counters.frames, 10, "{case}");
            assert!(!reports[1].detached, "{case}");
            let told = watcher
                .events
                .lock()
                .unwrap()
                .iter()
                .any(|e| matches!(e, Event::ConsumerDetached(n) if &**n == "panicky"));
            assert_eq!(told, detached, "{case}");
            let json = serde_json::to_value(panicky).unwrap();
            assert_eq!(json["panicked"], message, "{case}");
        }
    }
}

/// A lossless recorder that dies on its first frame.
struct DeadRecorder;

impl Processor for DeadRecorder {
    fn input(&self) -> Input {
        Input {
            queue: 2,
            overflow: OverflowPolicy::Wait,
            execution: Execution::Blocking,
            ..Input::default()
        }
    }
    fn on_frame(&mut self, _frame: &AudioFrame, _ctx: &mut Context) -> Result<(), ProcessorError> {
        panic!("disk controller on fire");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossless_consumer_that_panics_never_blocks_the_socket() {
    let watcher = Spy::default();
    let processors: Vec<(String, Box<dyn Processor>)> = vec![
        ("recorder".into(), Box::new(DeadRecorder)),
        ("watcher".into(), Box::new(watcher.clone())),
    ];
    let pipeline = Pipeline::start(call(), processors, None, None);
    // Far more frames than its inbox holds: the socket goes on once the recorder is gone.
    let pipeline = tokio::time::timeout(Duration::from_secs(10), feed(pipeline, 500))
        .await
        .expect("the socket task was blocked by a dead lossless consumer");
    let reports = pipeline.finish().await;
    assert!(reports[0].detached);
    assert_eq!(reports[0].counters.panics, 1);
    assert_eq!(
        reports[0].panicked.as_deref(),
        Some("disk controller on fire")
    );
    assert_eq!(reports[1].counters.frames, 500);
}

/// Blocked in its first callback until told to go on; counts the tones it sees.
struct Stuck {
    go: std::sync::mpsc::Receiver<()>,
    tones: Arc<Mutex<u64>>,
}

impl Processor for Stuck {
    fn input(&self) -> Input {
        Input {
            frames: false,
            queue: 256,
            queue_bytes: 64 * 1024,
            execution: Execution::Blocking,
            ..Input::default()
        }
    }
    fn on_event(&mut self, event: &Event, _ctx: &mut Context) -> Result<(), ProcessorError> {
        match event {
            Event::CallStarted(_) => {
                let _ = self.go.recv();
            }
            Event::Dtmf(_) => *self.tones.lock().unwrap() += 1,
            _ => {}
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_big_events_is_bounded_by_the_inbox_bytes() {
    let (go, wait) = std::sync::mpsc::channel();
    let tones = Arc::new(Mutex::new(0));
    let processors: Vec<(String, Box<dyn Processor>)> = vec![(
        "stuck".into(),
        Box::new(Stuck {
            go: wait,
            tones: Arc::clone(&tones),
        }),
    )];
    let mut pipeline = Pipeline::start(call(), processors, None, None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // 50 "tones" of 1 MiB each against a 64 KiB inbox: each one evicts the one before.
    let tone = "5".repeat(1 << 20);
    for _ in 0..50 {
        pipeline.push_event(Event::Dtmf(Arc::new(Dtmf::new(&tone))));
    }
    go.send(()).unwrap();
    let reports = pipeline.finish().await;
    let counters = reports[0].counters;
    assert!(counters.dropped >= 49, "{counters:?}");
    assert!(counters.queue_high_water <= 2, "{counters:?}");
    assert_eq!(*tones.lock().unwrap() + counters.dropped, 50);
}
