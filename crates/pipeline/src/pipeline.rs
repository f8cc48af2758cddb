//! One call's pipeline: fans each frame and event out to every processor's inbox (a refcount
//! clone, never a copy of the samples), runs each processor in its own task, and reports what
//! each one received, dropped and cost.
//!
//! A processor that asks for another sample rate gets the frame resampled: each (source, rate)
//! variant is computed once per frame, however many processors want it, by one
//! [`StreamResampler`] per (source, rate) kept for the call's whole life, and shared by refcount.

use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mediagate_audio::{
    AudioFormat, AudioFrame, AudioSource, CallTimeline, StreamResampler, TimelineReport,
    TimelineSettings,
};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::event::{CallInfo, Event};
use crate::histogram::{self, AtomicHistogram, CALLBACK_NANOS, HistogramCounts};
use crate::outbound::{OutboundQueue, Outgoing};
use crate::processor::{Context, Emitter, Execution, Input, Playback, Processor, ProcessorError};
use crate::queue::{Inbox, InboxStats, Outbox, Pushed, byte_bounded_inbox};

/// What a processor's inbox carries.
#[derive(Debug, Clone)]
enum Item {
    Frame(AudioFrame),
    Event(Event),
}

impl Item {
    /// Bytes it holds, for the inbox's byte budget: a frame's samples, an event's real size.
    fn cost(&self) -> usize {
        match self {
            Item::Frame(frame) => frame.pcm.len(),
            Item::Event(event) => event.cost_bytes(),
        }
    }
}

/// Allocation unit of the resampling pool: some fifty resampled frames share one block, split
/// off as refcounted `Bytes` (as the socket's decode pool does).
const POOL_BLOCK_BYTES: usize = 32 * 1024;

/// Events the processors of one call may have emitted and the socket task not yet forwarded:
/// past this, an emitted event is dropped and counted (`emits_dropped`). The socket task
/// forwards them at once ([`Pipeline::next_emitted`]), so only a flood fills it.
pub const EVENT_QUEUE: usize = 256;

/// Processing counters of one processor, shared with its task. Only the processor's callbacks
/// (in its task, or in the socket task for a direct one) write the per-callback counters, so
/// those are counted without a locked read-modify-write.
#[derive(Debug)]
struct WorkStats {
    frames: AtomicU64,
    events: AtomicU64,
    errors: AtomicU64,
    /// Each callback's time, in nanoseconds (its sum is the time busy).
    callbacks: AtomicHistogram,
    max_nanos: AtomicU64,
    /// Callbacks that panicked.
    panics: AtomicU64,
    /// Events it emitted that found the call's event queue full.
    emits_dropped: Arc<AtomicU64>,
    /// Frames it sent unpaced that found the socket writer full (`Context::send_now`).
    unpaced_dropped: Arc<AtomicU64>,
    /// The first panic's message (touched only when a callback panics).
    panicked: Mutex<Option<String>>,
}

impl Default for WorkStats {
    fn default() -> Self {
        WorkStats {
            frames: AtomicU64::default(),
            events: AtomicU64::default(),
            errors: AtomicU64::default(),
            callbacks: AtomicHistogram::new(&CALLBACK_NANOS),
            max_nanos: AtomicU64::default(),
            panics: AtomicU64::default(),
            emits_dropped: Arc::default(),
            unpaced_dropped: Arc::default(),
            panicked: Mutex::default(),
        }
    }
}

impl WorkStats {
    /// Counts a panic and keeps the first one's message.
    fn panicked(&self, name: &str, callback: &str, message: String) {
        self.panics.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(processor = name, callback, panic = %message, "processor panicked; detached");
        let mut first = self.panicked.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(message);
    }
}

/// Longest panic message kept for a report (it may quote outside input).
const MAX_PANIC_MESSAGE: usize = 500;

/// Runs `f`, catching a panic: a processor's bug ends that processor, never the socket task
/// that called it (a [`Execution::Direct`] one) or the process. What `f` touches is not used
/// again after a panic but to finish and report, each guarded the same way.
fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(&*payload))
}

/// A panic's message, truncated to [`MAX_PANIC_MESSAGE`] bytes.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "a panic with no message"
    };
    let mut end = text.len().min(MAX_PANIC_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

struct Consumer {
    probe: ConsumerProbe,
    input: Input,
    /// Index in [`Resampling::stages`] of the rate it asked for; `None`: the call's own rate.
    stage: Option<usize>,
    /// A task-run processor's inbox, while it is attached.
    inbox: Option<Inbox<Item>>,
    /// A task-run processor's task.
    task: Option<JoinHandle<Finished>>,
    /// A direct processor, while it is attached ([`Execution::Direct`]).
    direct: Option<Box<Direct>>,
    /// What a direct processor left when it finished (or failed).
    finished: Option<Finished>,
}

/// A processor run in the socket's task, inside the pipeline's pushes.
struct Direct {
    processor: Box<dyn Processor>,
    ctx: Context,
}

impl Consumer {
    /// Still receiving.
    fn attached(&self) -> bool {
        self.inbox.is_some() || self.direct.is_some()
    }

    /// Hands `item` to a direct processor; false if it failed fatally (then it is finished
    /// and detached).
    fn run_direct(&mut self, item: &Item) -> bool {
        let Some(direct) = &mut self.direct else {
            return true;
        };
        let name = &self.probe.name;
        let fatal = apply_one(
            name,
            &mut *direct.processor,
            &mut direct.ctx,
            item,
            &self.probe.work,
        ) || flush(
            name,
            &mut *direct.processor,
            &mut direct.ctx,
            &self.probe.work,
        );
        if fatal {
            self.finish_direct();
        }
        !fatal
    }

    /// Finishes a direct processor (once).
    fn finish_direct(&mut self) {
        if let Some(direct) = self.direct.take() {
            let Direct { processor, ctx } = *direct;
            self.finished = Some(finish_processor(
                &self.probe.name,
                processor,
                ctx,
                &self.probe.work,
            ));
        }
    }
}

/// What a processor's task leaves behind.
#[derive(Default)]
struct Finished {
    files: Vec<String>,
    report: Option<serde_json::Value>,
}

/// A live view of one processor's counters, readable while the call runs (for metrics).
#[derive(Debug, Clone)]
pub struct ConsumerProbe {
    name: Arc<str>,
    queue: Arc<InboxStats>,
    work: Arc<WorkStats>,
}

/// One processor's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConsumerCounters {
    /// Frames processed.
    pub frames: u64,
    /// Events processed.
    pub events: u64,
    /// Items dropped because the inbox was full, and frames sent unpaced (`echo`) that found
    /// the socket writer full.
    pub dropped: u64,
    /// Events dropped from a lossless ([`crate::OverflowPolicy::Wait`]) inbox so that no audio
    /// ever was: the oldest queued event, or the incoming one, past twice the inbox's bounds.
    pub events_dropped: u64,
    /// Most items ever waiting in the inbox.
    pub queue_high_water: u64,
    /// Callbacks that returned an error.
    pub errors: u64,
    /// Time spent in callbacks.
    pub busy_micros: u64,
    /// The slowest single callback.
    pub max_callback_micros: u64,
    /// Callbacks that panicked (the first one detaches the processor).
    pub panics: u64,
    /// Events it emitted that were dropped because the call's event queue was full
    /// ([`EVENT_QUEUE`]).
    pub emits_dropped: u64,
    /// Each callback's time, in nanoseconds, by the buckets of [`CALLBACK_NANOS`] (for the
    /// metrics; not in session.json).
    #[serde(skip)]
    pub callback_nanos: HistogramCounts,
}

impl ConsumerProbe {
    /// A report of the processor while it still works: its counters now, `working`.
    pub fn working_report(&self) -> ConsumerReport {
        ConsumerReport {
            name: self.name.to_string(),
            counters: self.counters(),
            detached: false,
            working: true,
            panicked: None,
            files: Vec::new(),
            report: None,
        }
    }

    /// The processor's name in the pipeline.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Its counters now.
    pub fn counters(&self) -> ConsumerCounters {
        let (work, queue) = (&self.work, &self.queue);
        ConsumerCounters {
            frames: work.frames.load(Ordering::Relaxed),
            events: work.events.load(Ordering::Relaxed),
            dropped: queue.dropped.load(Ordering::Relaxed)
                + work.unpaced_dropped.load(Ordering::Relaxed),
            events_dropped: queue.events_dropped.load(Ordering::Relaxed),
            queue_high_water: queue.high_water.load(Ordering::Relaxed),
            errors: work.errors.load(Ordering::Relaxed),
            busy_micros: work.callbacks.sum() / 1_000,
            max_callback_micros: work.max_nanos.load(Ordering::Relaxed) / 1_000,
            panics: work.panics.load(Ordering::Relaxed),
            emits_dropped: work.emits_dropped.load(Ordering::Relaxed),
            callback_nanos: work.callbacks.counts(),
        }
    }
}

/// What one processor did in a call, for session reports and metrics.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConsumerReport {
    /// The processor's name in the pipeline.
    pub name: String,
    /// Its counters at the end of the call (flat in session.json).
    #[serde(flatten)]
    pub counters: ConsumerCounters,
    /// It fell behind under the detach policy, or failed fatally (or panicked), and stopped
    /// receiving.
    pub detached: bool,
    /// It had not finished when this report was taken (a speech engine still transcribing
    /// after the call ended): the counters are a snapshot, and a later report replaces this.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub working: bool,
    /// The message of its first panic, if a callback panicked (it was then detached; its
    /// `finish` and `report` were still attempted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panicked: Option<String>,
    /// Files it made in the call's folder ([`Context::create_file`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// What it says it did ([`Processor::report`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
}

/// A call's processors, fed from the socket task.
pub struct Pipeline {
    call: Arc<CallInfo>,
    consumers: Vec<Consumer>,
    events_rx: mpsc::Receiver<Event>,
    resampling: Resampling,
    /// The call's one timeline: every timestamped frame is stamped with its place on it.
    timeline: CallTimeline,
    /// The paced queue and the event queue, for players from outside ([`Pipeline::playback`]).
    outbound: Option<OutboundQueue>,
    events_tx: mpsc::Sender<Event>,
}

/// The resampler stage of the fan-out: one entry per distinct rate some processor asked for.
struct Resampling {
    /// One per distinct requested rate, fixed at [`Pipeline::start`].
    stages: Vec<RateStage>,
    /// This frame's variant per stage (parallel to `stages`); `None`: not wanted, no resampler,
    /// or no output yet.
    /// Kept between frames so the fan-out allocates nothing.
    variants: Vec<Option<AudioFrame>>,
    /// Where resampled samples are written, then split off as `Bytes` (like the decode pool).
    pool: BytesMut,
}

/// Everything needed to serve one target rate.
struct RateStage {
    rate_hz: u32,
    /// One resampler per source, built on that source's first frame and kept for the call's
    /// whole life (filter state across frames and pauses). `None`: it could not be built.
    per_source: HashMap<AudioSource, Option<StreamResampler>>,
}

impl Resampling {
    /// Distinct rates asked for, in order of first appearance; sets each consumer's stage.
    fn plan(consumers: &mut [Consumer]) -> Self {
        let mut stages: Vec<RateStage> = Vec::new();
        for consumer in consumers.iter_mut().filter(|c| c.input.frames) {
            consumer.stage = consumer.input.sample_rate_hz.map(|rate_hz| {
                stages
                    .iter()
                    .position(|s| s.rate_hz == rate_hz)
                    .unwrap_or_else(|| {
                        stages.push(RateStage {
                            rate_hz,
                            per_source: HashMap::new(),
                        });
                        stages.len() - 1
                    })
            });
        }
        Resampling {
            variants: Vec::with_capacity(stages.len()),
            stages,
            pool: BytesMut::new(),
        }
    }

    /// Computes `frame`'s variant for every stage that a live consumer wants.
    fn prepare(&mut self, frame: &AudioFrame, consumers: &[Consumer]) {
        self.variants.clear();
        for (index, stage) in self.stages.iter_mut().enumerate() {
            let wanted = stage.rate_hz != frame.format.sample_rate_hz()
                && consumers
                    .iter()
                    .any(|c| c.stage == Some(index) && c.attached());
            let variant = if wanted {
                stage.resample(frame, &mut self.pool)
            } else {
                None
            };
            self.variants.push(variant);
        }
    }
}

impl RateStage {
    /// `frame` at this stage's rate; `None` if no resampler can be built for it.
    fn resample(&mut self, frame: &AudioFrame, pool: &mut BytesMut) -> Option<AudioFrame> {
        let slot = match self.per_source.get_mut(&frame.source) {
            Some(slot) => slot,
            None => self
                .per_source
                .entry(frame.source.clone())
                .or_insert_with(|| build(frame.format, self.rate_hz)),
        };
        // The call's format is fixed once AudioMetadata arrived; a frame in another format
        // (audio before the metadata) needs a resampler of its own.
        if slot
            .as_ref()
            .is_some_and(|r| r.input_format() != frame.format)
        {
            *slot = build(frame.format, self.rate_hz);
        }
        let resampler = slot.as_mut()?;
        let to = resampler.output_format();
        // Room for this frame's output plus one block the resampler may have held back; the
        // pool grows by whole blocks, shared by the frames split off it.
        let needed = (frame.pcm.len() * to.sample_rate_hz() as usize)
            .div_ceil(frame.format.sample_rate_hz() as usize)
            + resampler.output_block_samples() * to.bytes_per_sample();
        pool.clear();
        if pool.capacity() < needed {
            pool.reserve(needed.max(POOL_BLOCK_BYTES));
        }
        resampler.process(&frame.pcm, pool);
        if pool.is_empty() {
            // Still filling a block longer than a frame (unusual rate pairs): nothing to send.
            return None;
        }
        Some(AudioFrame {
            pcm: pool.split().freeze(),
            format: to,
            timestamp: frame.timestamp,
            position: frame.position,
            source: frame.source.clone(),
            silent: frame.silent,
        })
    }
}

/// A resampler from `from` to `rate_hz`, or `None` (logged) if the pair is impossible.
fn build(from: AudioFormat, rate_hz: u32) -> Option<StreamResampler> {
    match StreamResampler::new(from, rate_hz) {
        Ok(resampler) => Some(resampler),
        Err(e) => {
            tracing::error!(
                from_hz = from.sample_rate_hz(),
                to_hz = rate_hz,
                error = %e,
                "cannot resample: processors asking for this rate get no frames"
            );
            None
        }
    }
}

impl Pipeline {
    /// Starts a task per processor and sends each [`Event::CallStarted`].
    ///
    /// `outbound` and `to_socket` exist when the call is bidirectional: the paced queue and the
    /// unpaced path to the socket writer.
    pub fn start(
        call: Arc<CallInfo>,
        processors: Vec<(String, Box<dyn Processor>)>,
        outbound: Option<OutboundQueue>,
        to_socket: Option<mpsc::Sender<Outgoing>>,
    ) -> Self {
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let consumers = processors
            .into_iter()
            .map(|(name, processor)| {
                let name: Arc<str> = name.into();
                let input = processor.input();
                let work = Arc::new(WorkStats::default());
                let ctx = Context::new(
                    Arc::clone(&call),
                    outbound.clone(),
                    to_socket.clone(),
                    Emitter::new(events_tx.clone(), Arc::clone(&work.emits_dropped)),
                    Arc::clone(&work.unpaced_dropped),
                );
                if input.execution == Execution::Direct {
                    return Consumer {
                        probe: ConsumerProbe {
                            name,
                            queue: Arc::new(InboxStats::default()),
                            work,
                        },
                        stage: None,
                        inbox: None,
                        task: None,
                        direct: Some(Box::new(Direct { processor, ctx })),
                        finished: None,
                        input,
                    };
                }
                let (tx, rx) =
                    byte_bounded_inbox(input.queue, input.queue_bytes, Item::cost, input.overflow);
                let task = tokio::spawn(run(
                    Arc::clone(&name),
                    processor,
                    rx,
                    ctx,
                    Arc::clone(&work),
                    input.clone(),
                ));
                Consumer {
                    probe: ConsumerProbe {
                        name,
                        queue: tx.stats(),
                        work,
                    },
                    stage: None,
                    inbox: Some(tx),
                    task: Some(task),
                    direct: None,
                    finished: None,
                    input,
                }
            })
            .collect::<Vec<_>>();
        let mut consumers = consumers;
        let resampling = Resampling::plan(&mut consumers);
        let mut pipeline = Pipeline {
            call: Arc::clone(&call),
            consumers,
            events_rx,
            resampling,
            timeline: CallTimeline::new(TimelineSettings::default()),
            outbound,
            events_tx,
        };
        pipeline.push_event(Event::CallStarted(call));
        pipeline
    }

    /// A player of the call's outbound audio for someone outside the pipeline (the operator,
    /// through the admin API): it queues and barges in like a processor's
    /// [`Context::playback`], and its barge-in reaches every processor as
    /// [`Event::BargeIn`]. `None` when the call has no outbound audio.
    pub fn playback(&self) -> Option<Playback> {
        let queue = self.outbound.clone()?;
        let events = Emitter::new(self.events_tx.clone(), Arc::new(AtomicU64::new(0)));
        Some(Playback::new(Arc::clone(&self.call), queue, events))
    }

    /// Live views of every processor's counters, for metrics while the call runs.
    pub fn probes(&self) -> Vec<ConsumerProbe> {
        self.consumers.iter().map(|c| c.probe.clone()).collect()
    }

    /// The call's timeline with these bounds instead of the defaults; before the first frame.
    #[must_use]
    pub fn with_timeline(mut self, settings: TimelineSettings) -> Self {
        self.timeline = CallTimeline::new(settings);
        self
    }

    /// Where the call's audio is: the end of the furthest frame placed on the call's timeline
    /// so far. `None` before any timestamped frame. Events stamped with this (a DTMF tone)
    /// line up with the recording.
    pub fn position(&self) -> Option<Duration> {
        self.timeline.head()
    }

    /// The clock anomalies the call's timeline caught so far.
    pub fn timeline_report(&self) -> TimelineReport {
        self.timeline.report()
    }

    /// The call.
    pub fn call(&self) -> &Arc<CallInfo> {
        &self.call
    }

    /// Names and inputs of the processors, in pipeline order.
    pub fn inputs(&self) -> impl Iterator<Item = (&str, &Input)> {
        self.consumers.iter().map(|c| (&*c.probe.name, &c.input))
    }

    /// Hands `frame` to every processor, at the rate it asked for: each variant at another rate
    /// is resampled once and shared by every processor that wants it. Waits only for processors
    /// whose policy is [`crate::OverflowPolicy::Wait`], and only while their inbox is full.
    ///
    /// A timestamped frame is first stamped with its place on the call's timeline
    /// ([`AudioFrame::position`]); a frame that already has one keeps it.
    pub async fn push_frame(&mut self, frame: &AudioFrame) {
        self.forward_emitted();
        let stamped;
        let frame = match frame.timestamp {
            Some(at) if frame.position.is_none() => {
                let position = self.timeline.place(at, frame.duration(), Instant::now());
                stamped = AudioFrame {
                    position: Some(position),
                    ..frame.clone()
                };
                &stamped
            }
            _ => frame,
        };
        if !self.resampling.stages.is_empty() {
            self.resampling.prepare(frame, &self.consumers);
        }
        let mut detached = Vec::new();
        for consumer in &mut self.consumers {
            if !consumer.input.frames || !consumer.attached() {
                continue;
            }
            let item = match consumer.stage {
                Some(stage)
                    if consumer.input.sample_rate_hz != Some(frame.format.sample_rate_hz()) =>
                {
                    match &self.resampling.variants[stage] {
                        Some(variant) => variant.clone(),
                        None => continue, // no resampler (logged), or no output yet
                    }
                }
                _ => frame.clone(),
            };
            let item = Item::Frame(item);
            let kept = match &consumer.inbox {
                Some(inbox) => !matches!(
                    inbox.push_or_wait(item).await,
                    Pushed::Detached | Pushed::Closed
                ),
                None => consumer.run_direct(&item),
            };
            if !kept {
                detached.push(Arc::clone(&consumer.probe.name));
                consumer.inbox = None;
            }
        }
        announce_detached(&mut self.consumers, detached);
    }

    /// Hands `event` to every processor. Never waits.
    pub fn push_event(&mut self, event: Event) {
        fan_out(&mut self.consumers, event);
    }

    /// The next event a processor emitted ([`Context::emit`]), to hand to every processor with
    /// [`Pipeline::push_event`]. The socket task waits on this beside the socket, so an event
    /// reaches the others within one scheduling hop whether or not audio is flowing (a
    /// transcription transport, the silences of an unmixed call). Never ready when none can
    /// come.
    pub async fn next_emitted(&mut self) -> Event {
        match self.events_rx.recv().await {
            Some(event) => event,
            None => std::future::pending().await,
        }
    }

    /// Delivers events the processors emitted since the last call: at most a queue's worth,
    /// so a processor that emits in answer to every event cannot keep the socket task here.
    fn forward_emitted(&mut self) {
        for _ in 0..EVENT_QUEUE {
            let Ok(event) = self.events_rx.try_recv() else {
                return;
            };
            self.push_event(event);
        }
    }

    /// Ends the call: every processor gets [`Event::CallEnded`] at once and finishes on its
    /// own, except those that record what emitters say ([`Input::after_emitters`]), whose
    /// `CallEnded` waits until every emitter ([`Input::emits`]) has finished and its last
    /// events were delivered. [`Ending::next`] reports each processor as it finishes.
    pub fn end(mut self) -> Ending {
        self.forward_emitted();
        let emitters = self
            .consumers
            .iter()
            .filter(|c| c.input.emits && c.attached())
            .count();
        let names = self.consumers.iter().map(|c| c.probe.clone()).collect();
        let (waiting, now): (Vec<_>, Vec<_>) = std::mem::take(&mut self.consumers)
            .into_iter()
            .enumerate()
            .partition(|(_, c)| emitters > 0 && c.input.after_emitters && c.attached());
        let (waiting_at, waiting) = waiting.into_iter().unzip();
        let mut ending = Ending {
            probes: names,
            waiting,
            waiting_at,
            finishing: JoinSet::new(),
            tasks: HashMap::new(),
            emitters_left: 0,
            events_rx: self.events_rx,
        };
        ending.start(now);
        ending
    }

    /// Ends the call ([`Pipeline::end`]) and waits for every processor to finish: their
    /// reports, in pipeline order.
    pub async fn finish(self) -> Vec<ConsumerReport> {
        let mut ending = self.end();
        let mut reports: Vec<Option<ConsumerReport>> = vec![None; ending.probes.len()];
        while let Some((at, report)) = ending.next().await {
            reports[at] = Some(report);
        }
        reports.into_iter().flatten().collect()
    }
}

/// Hands `event` to every attached consumer; those it finds fallen behind are detached, and
/// the others told. (Each announcement can detach at most the remaining consumers, so this
/// ends.)
fn fan_out(consumers: &mut [Consumer], event: Event) {
    let mut detached = Vec::new();
    for consumer in consumers.iter_mut() {
        if !consumer.attached() {
            continue;
        }
        let item = Item::Event(event.clone());
        let kept = match &consumer.inbox {
            Some(inbox) => !matches!(inbox.push(item), Pushed::Detached | Pushed::Closed),
            None => consumer.run_direct(&item),
        };
        if !kept {
            detached.push(Arc::clone(&consumer.probe.name));
            consumer.inbox = None;
        }
    }
    announce_detached(consumers, detached);
}

/// Logs the processors that fell behind (a frame or an event found their inbox full) and
/// tells the others.
fn announce_detached(consumers: &mut [Consumer], names: Vec<Arc<str>>) {
    for name in names {
        tracing::warn!(processor = &*name, "processor fell behind and was detached");
        fan_out(consumers, Event::ConsumerDetached(name));
    }
}

/// A call whose transports have ended, while its processors finish: each at its own pace,
/// reported as it finishes ([`Ending::next`]).
pub struct Ending {
    /// Every processor's probe, in pipeline order.
    probes: Vec<ConsumerProbe>,
    /// Processors waiting for the emitters before their `CallEnded` (inboxes still open).
    waiting: Vec<Consumer>,
    /// Their positions in the pipeline (parallel to `waiting`).
    waiting_at: Vec<usize>,
    /// Processors that got `CallEnded` and are finishing.
    finishing: JoinSet<(usize, bool, ConsumerReport)>,
    /// Each finishing task's position, for one that fails.
    tasks: HashMap<tokio::task::Id, (usize, bool)>,
    /// Emitters not finished yet.
    emitters_left: usize,
    events_rx: mpsc::Receiver<Event>,
}

impl Ending {
    /// Sends `CallEnded` to `consumers` and lets each finish in a task of its own.
    fn start(&mut self, consumers: Vec<(usize, Consumer)>) {
        let (positions, mut consumers): (Vec<usize>, Vec<Consumer>) = consumers.into_iter().unzip();
        fan_out(&mut consumers, Event::CallEnded);
        for (at, consumer) in positions.into_iter().zip(consumers) {
            let emitter = consumer.input.emits;
            self.emitters_left += usize::from(emitter);
            let handle = self
                .finishing
                .spawn(async move { (at, emitter, consumer.finish().await) });
            self.tasks.insert(handle.id(), (at, emitter));
        }
    }

    /// Every emitter has finished: what they emitted last reaches the waiting processors,
    /// then their `CallEnded`.
    fn release_waiting(&mut self) {
        while let Ok(event) = self.events_rx.try_recv() {
            fan_out(&mut self.waiting, event);
        }
        let waiting = std::mem::take(&mut self.waiting);
        let at = std::mem::take(&mut self.waiting_at);
        self.start(at.into_iter().zip(waiting).collect());
    }

    /// Sends `CallEnded` now to the processors that wait for the emitters, with what the
    /// emitters said so far, without waiting for them to finish (the gateway is stopping: the
    /// transcript writer finalizes its files with what it has).
    pub fn release_now(&mut self) {
        if !self.waiting.is_empty() {
            self.release_waiting();
        }
    }

    /// The next processor to finish, with its position in the pipeline; `None` when all have.
    pub async fn next(&mut self) -> Option<(usize, ConsumerReport)> {
        loop {
            if self.finishing.is_empty() {
                if self.waiting.is_empty() {
                    return None;
                }
                self.release_waiting();
                continue;
            }
            let forwarding = !self.waiting.is_empty();
            tokio::select! {
                Some(event) = self.events_rx.recv(), if forwarding => {
                    fan_out(&mut self.waiting, event);
                }
                joined = self.finishing.join_next_with_id() => {
                    let (at, emitter, report) = match joined {
                        Some(Ok((_, outcome))) => outcome,
                        Some(Err(e)) => {
                            let Some(&(at, emitter)) = self.tasks.get(&e.id()) else {
                                continue;
                            };
                            tracing::error!(error = %e, "a processor's finishing task failed");
                            let mut report = self.probes[at].working_report();
                            report.working = false;
                            report.detached = true;
                            (at, emitter, report)
                        }
                        None => continue,
                    };
                    self.tasks.retain(|_, (running, _)| *running != at);
                    if emitter {
                        self.emitters_left -= 1;
                        if self.emitters_left == 0 && !self.waiting.is_empty() {
                            self.release_waiting();
                        }
                    }
                    return Some((at, report));
                }
            }
        }
    }

    /// A report of the processor at `at` while it still works: its counters so far,
    /// `working: true` ([`ConsumerProbe::working_report`]).
    pub fn working_report(&self, at: usize) -> Option<ConsumerReport> {
        self.probes.get(at).map(ConsumerProbe::working_report)
    }

    /// How many processors the call has.
    pub fn len(&self) -> usize {
        self.probes.len()
    }

    /// Whether the call has no processor.
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }
}

impl Consumer {
    /// Closes the inbox, lets the processor finish, and reports.
    async fn finish(mut self) -> ConsumerReport {
        let detached = !self.attached();
        drop(self.inbox.take());
        self.finish_direct();
        let name = &self.probe.name;
        let finished = match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| {
                tracing::error!(processor = &**name, error = %e, "processor task failed");
                Finished::default()
            }),
            None => self.finished.take().unwrap_or_default(),
        };
        ConsumerReport {
            name: name.to_string(),
            counters: self.probe.counters(),
            detached,
            working: false,
            panicked: self
                .probe
                .work
                .panicked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            files: finished.files,
            report: finished.report,
        }
    }
}

/// A processor's task: drain the inbox, run the callbacks (inline, or in batches on a blocking
/// thread), then `finish`; leaves its files and report.
async fn run(
    name: Arc<str>,
    processor: Box<dyn Processor>,
    mut outbox: Outbox<Item>,
    ctx: Context,
    work: Arc<WorkStats>,
    input: Input,
) -> Finished {
    let mut state = Some((processor, ctx));
    let mut batch = Vec::new();
    let gather = match input.execution {
        Execution::Inline | Execution::Direct => Duration::ZERO,
        Execution::Blocking => input.gather(),
    };
    while outbox.recv_gathered(&mut batch, gather).await {
        let Some((processor, ctx)) = state.take() else {
            break;
        };
        let items = std::mem::take(&mut batch);
        let (job_name, job_work) = (Arc::clone(&name), Arc::clone(&work));
        let job = move || {
            let (mut processor, mut ctx, mut items) = (processor, ctx, items);
            let fatal = apply(&job_name, &mut *processor, &mut ctx, &mut items, &job_work);
            (processor, ctx, items, fatal)
        };
        let outcome = match input.execution {
            Execution::Inline | Execution::Direct => Ok(job()),
            Execution::Blocking => tokio::task::spawn_blocking(job).await,
        };
        match outcome {
            Ok((processor, ctx, items, failed)) => {
                batch = items;
                state = Some((processor, ctx));
                if failed {
                    // Detached: the pipeline sees a closed inbox and says so.
                    outbox.close();
                    break;
                }
            }
            Err(e) => {
                tracing::error!(processor = &*name, error = %e, "processor panicked");
                return Finished::default();
            }
        }
    }
    let Some((processor, ctx)) = state else {
        return Finished::default();
    };
    // A processor detached for failing still finalizes what it wrote.
    let end = move || finish_processor(&name, processor, ctx, &work);
    match input.execution {
        Execution::Inline | Execution::Direct => end(),
        Execution::Blocking => tokio::task::spawn_blocking(end).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "processor panicked while finishing");
            Finished::default()
        }),
    }
}

/// Runs `finish` and collects what the processor leaves. Each of `finish`, `report` and the
/// processor's drop is guarded: a panic there is counted and loses only that step.
fn finish_processor(
    name: &str,
    mut processor: Box<dyn Processor>,
    mut ctx: Context,
    work: &WorkStats,
) -> Finished {
    match guarded(|| processor.finish(&mut ctx)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(processor = name, error = %e, "processor failed to finish"),
        Err(message) => work.panicked(name, "finish", message),
    }
    let report = guarded(|| processor.report()).unwrap_or_else(|message| {
        work.panicked(name, "report", message);
        None
    });
    if let Err(message) = guarded(move || drop(processor)) {
        work.panicked(name, "drop", message);
    }
    Finished {
        files: std::mem::take(&mut ctx.files),
        report,
    }
}

/// Runs the callbacks for `items`, then `flush`; true if the processor failed fatally.
fn apply(
    name: &str,
    processor: &mut dyn Processor,
    ctx: &mut Context,
    items: &mut Vec<Item>,
    work: &WorkStats,
) -> bool {
    for item in items.drain(..) {
        if apply_one(name, processor, ctx, &item, work) {
            return true;
        }
    }
    flush(name, processor, ctx, work)
}

/// Runs the callback for one item, timed and counted; true if it failed fatally.
fn apply_one(
    name: &str,
    processor: &mut dyn Processor,
    ctx: &mut Context,
    item: &Item,
    work: &WorkStats,
) -> bool {
    let started = Instant::now();
    let result = guarded(|| match item {
        Item::Frame(frame) => {
            histogram::add(&work.frames, 1);
            processor.on_frame(frame, ctx)
        }
        Item::Event(event) => {
            histogram::add(&work.events, 1);
            processor.on_event(event, ctx)
        }
    });
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    work.callbacks.observe(nanos);
    histogram::raise(&work.max_nanos, nanos);
    let result = match result {
        Ok(result) => result,
        Err(message) => {
            let callback = match item {
                Item::Frame(_) => "on_frame",
                Item::Event(_) => "on_event",
            };
            work.panicked(name, callback, message);
            return true;
        }
    };
    match result {
        Ok(()) => false,
        Err(ProcessorError::Skip(reason)) => {
            if work.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(processor = name, %reason, "processor skipped an item");
            }
            false
        }
        Err(ProcessorError::Fatal(reason)) => {
            work.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(processor = name, %reason, "processor failed; detached");
            true
        }
    }
}

/// `flush`, counted; true if it failed fatally.
fn flush(name: &str, processor: &mut dyn Processor, ctx: &mut Context, work: &WorkStats) -> bool {
    match guarded(|| processor.flush(ctx)) {
        Err(message) => {
            work.panicked(name, "flush", message);
            true
        }
        Ok(Ok(())) => false,
        Ok(Err(e)) => {
            work.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(processor = name, error = %e, "processor failed to flush");
            matches!(e, ProcessorError::Fatal(_))
        }
    }
}
