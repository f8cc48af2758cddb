//! The pipeline's contract: fan-out shares samples by refcount, a slow processor only ever
//! hurts itself (and says so), and events arrive in order.

#![allow(clippy::unwrap_used)] // a panic in a test helper is a failed assertion

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mediagate_audio::{AudioFormat, AudioFrame, AudioSource};
use mediagate_pipeline::{
    CallInfo, Context, Event, Execution, Input, Outgoing, OverflowPolicy, Pipeline, Processor,
    ProcessorError,
};
use tokio::sync::mpsc;

const FORMAT: AudioFormat = AudioFormat::mono(16_000);

fn call() -> Arc<CallInfo> {
    Arc::new(CallInfo {
        call_id: "c".into(),
        path: "/ws".into(),
        format: FORMAT,
    })
}

fn frame(i: u16) -> AudioFrame {
    AudioFrame {
        pcm: Bytes::from(vec![(i % 256) as u8; FORMAT.frame_bytes()]),
        format: FORMAT,
        timestamp: None,
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
        assert_eq!((report.frames, report.dropped), (50, 0));
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
    assert_eq!(fast_report.frames, 300);
    assert_eq!(fast_report.dropped, 0);
    assert!(slow_report.dropped > 0, "{slow_report:?}");
    // Every frame is either processed or counted as dropped (events share the inbox).
    assert!(
        slow_report.frames + slow_report.dropped >= 300,
        "{slow_report:?}"
    );
    assert!(slow_report.queue_high_water <= 8);
    assert!(slow_report.max_callback_micros >= 2_000);
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
        reports[1].detached && reports[1].frames < 100,
        "{:?}",
        reports[1]
    );
    assert_eq!(reports[0].frames, 100);
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
            ctx.emit(Event::Dtmf("echo-ready".into()));
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
            .any(|e| matches!(e, Event::Dtmf(t) if &**t == "echo-ready")),
        "{events:?}"
    );
}
