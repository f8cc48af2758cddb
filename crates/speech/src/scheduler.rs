//! One engine shared by every call: a bounded queue of utterances in three lanes, served by a
//! fixed set of worker threads that batch what the engine can batch.
//!
//! - **Lanes.** Live finals first, then finals of calls transcribed after hang-up, then
//!   partials. A partial that waited longer than [`SchedulerSettings::partial_max_age`] is
//!   stale (its utterance has grown since) and is dropped unrun: under load, partials go first
//!   and finals keep their latency.
//! - **A worker for finals.** With two workers or more, partials run on all but one, so a final
//!   never waits behind a wall of partials for longer than the one batch in hand.
//! - **Batches.** A worker takes the oldest job of its lane and up to
//!   [`SchedulerSettings::max_batch`]` - 1` more of the same lane and [`BatchEngine::batch_key`]
//!   (for Whisper, the encoder window), and runs them as one engine call.
//! - **Each job has its own answer.** A job carries the channel its call waits on, and the
//!   engine returns one result per utterance in order: results never cross between calls.
//!
//! Callers block (they are the transcribers' blocking threads): [`Scheduler::recognize`] returns
//! when the utterance's result is ready, or at once when the queue is full.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::metrics::EngineMetrics;
use crate::{Pass, Pending, Recognition, SpeechError};

/// An engine that can transcribe several utterances in one call.
pub trait BatchEngine: Send + Sync + 'static {
    /// Utterances whose keys are equal may share a batch (for Whisper: the same encoder
    /// window). `samples` is the utterance's length at 16 kHz.
    fn batch_key(&self, samples: usize) -> usize;

    /// Transcribes `utterances` (16 kHz mono, in [-1, 1]), all of one key and one pass: one
    /// result per utterance, in order.
    fn recognize_batch(
        &self,
        utterances: &[&[f32]],
        pass: Pass,
    ) -> Vec<Result<Recognition, SpeechError>>;
}

/// How a [`Scheduler`] runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerSettings {
    /// Worker threads, each running one batch at a time (for Whisper, one per replica).
    pub workers: usize,
    /// Most utterances in one batch.
    pub max_batch: usize,
    /// A partial that waited longer than this is dropped unrun.
    pub partial_max_age: Duration,
    /// Most utterances waiting, all lanes together; beyond it a request fails at once.
    pub max_queued: usize,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            workers: 1,
            max_batch: 4,
            partial_max_age: Duration::from_millis(500),
            max_queued: 1_024,
        }
    }
}

/// Where a job waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Final = 0,
    AfterCall = 1,
    Partial = 2,
}

impl Lane {
    fn of(pass: Pass) -> Lane {
        match pass {
            Pass::Final => Lane::Final,
            Pass::AfterCall => Lane::AfterCall,
            Pass::Partial => Lane::Partial,
        }
    }

    /// The pass this lane's jobs are decoded as.
    fn pass(self) -> Pass {
        match self {
            Lane::Final => Pass::Final,
            Lane::AfterCall => Pass::AfterCall,
            Lane::Partial => Pass::Partial,
        }
    }
}

/// One utterance waiting for a worker.
struct Job {
    samples: Vec<f32>,
    key: usize,
    queued: Instant,
    reply: SyncSender<Result<Recognition, SpeechError>>,
    /// Set when the caller no longer wants the result: the job is dropped unrun.
    given_up: Arc<AtomicBool>,
}

impl Job {
    fn given_up(&self) -> bool {
        self.given_up.load(Ordering::Acquire)
    }
}

/// The queue, under one lock (never held while an engine runs).
#[derive(Default)]
struct Queue {
    lanes: [VecDeque<Job>; 3],
    /// Workers running a batch of partials now.
    partial_batches: usize,
    closed: bool,
}

impl Queue {
    fn len(&self) -> usize {
        self.lanes.iter().map(VecDeque::len).sum()
    }
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a job arrives, a partial batch ends, or the scheduler closes.
    wake: Condvar,
    engine: Arc<dyn BatchEngine>,
    settings: SchedulerSettings,
    metrics: EngineMetrics,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A worker never panics while holding the lock (the engine runs outside it); if one
        // did, the queue is still consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Workers that may run partials at once: all but one, so one is left for finals.
    fn partial_workers(&self) -> usize {
        self.settings.workers.saturating_sub(1).max(1)
    }
}

/// The shared queue and its workers. Dropping it finishes the queued work, then stops them.
pub struct Scheduler {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Scheduler {
    /// Starts `settings.workers` threads serving `engine`, counting in `metrics`.
    pub fn start(
        engine: Arc<dyn BatchEngine>,
        settings: SchedulerSettings,
        metrics: EngineMetrics,
    ) -> Result<Self, SpeechError> {
        let settings = SchedulerSettings {
            workers: settings.workers.max(1),
            max_batch: settings.max_batch.max(1),
            ..settings
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            engine,
            settings,
            metrics,
        });
        let mut workers = Vec::new();
        for i in 0..shared.settings.workers {
            let shared = Arc::clone(&shared);
            let worker = std::thread::Builder::new()
                .name(format!("speech-{i}"))
                .spawn(move || work(&shared))
                .map_err(|e| SpeechError::Setup(format!("cannot start a speech worker: {e}")))?;
            workers.push(worker);
        }
        Ok(Scheduler { shared, workers })
    }

    /// Transcribes `samples` in `pass`'s lane, blocking until the result. A partial dropped
    /// as stale, or any request that finds the queue full, is [`SpeechError::Busy`].
    pub fn recognize(&self, samples: &[f32], pass: Pass) -> Result<Recognition, SpeechError> {
        self.submit(samples, pass)?.wait()
    }

    /// Queues `samples` in `pass`'s lane and returns at once: the result comes through the
    /// [`Pending`] (dropping it gives the job up). A full queue is [`SpeechError::Busy`].
    pub fn submit(&self, samples: &[f32], pass: Pass) -> Result<Pending, SpeechError> {
        let (reply, answer) = sync_channel(1);
        let given_up = Arc::new(AtomicBool::new(false));
        // The copy is made before the lock: workers and other calls do not wait for it.
        let job = Job {
            samples: samples.to_vec(),
            key: self.shared.engine.batch_key(samples.len()),
            queued: Instant::now(),
            reply,
            given_up: Arc::clone(&given_up),
        };
        {
            let mut queue = self.shared.lock();
            let depth = queue.len();
            if depth >= self.shared.settings.max_queued {
                self.shared.metrics.rejected(pass);
                return Err(SpeechError::Busy);
            }
            self.shared.metrics.queue_depth(depth);
            queue.lanes[Lane::of(pass) as usize].push_back(job);
        }
        self.shared.wake.notify_one();
        Ok(Pending::new(answer, given_up))
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// What a worker takes next: a lane and its jobs.
fn next_batch(shared: &Shared, queue: &mut Queue) -> Option<(Lane, Vec<Job>)> {
    // Jobs given up, and stale partials, are dropped before anything is picked.
    for jobs in &mut queue.lanes {
        jobs.retain(|job| !job.given_up());
    }
    let now = Instant::now();
    let max_age = shared.settings.partial_max_age;
    let partials = &mut queue.lanes[Lane::Partial as usize];
    while partials
        .front()
        .is_some_and(|job| now.duration_since(job.queued) > max_age)
    {
        if let Some(job) = partials.pop_front() {
            shared.metrics.partial_dropped();
            let _ = job.reply.try_send(Err(SpeechError::Busy));
        }
    }
    let lane = [Lane::Final, Lane::AfterCall, Lane::Partial]
        .into_iter()
        .find(|&lane| {
            !queue.lanes[lane as usize].is_empty()
                && (lane != Lane::Partial || queue.partial_batches < shared.partial_workers())
        })?;
    let jobs = &mut queue.lanes[lane as usize];
    let first = jobs.pop_front()?;
    let key = first.key;
    let mut batch = vec![first];
    let mut i = 0;
    while batch.len() < shared.settings.max_batch && i < jobs.len() {
        if jobs[i].key == key {
            if let Some(job) = jobs.remove(i) {
                batch.push(job);
            }
        } else {
            i += 1;
        }
    }
    if lane == Lane::Partial {
        queue.partial_batches += 1;
    }
    Some((lane, batch))
}

/// A worker: takes batches until the scheduler closes and its queue is empty.
fn work(shared: &Shared) {
    loop {
        let (lane, batch) = {
            let mut queue = shared.lock();
            loop {
                if let Some(next) = next_batch(shared, &mut queue) {
                    break next;
                }
                if queue.closed && queue.len() == 0 {
                    return;
                }
                queue = shared
                    .wake
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let pass = lane.pass();
        let started = Instant::now();
        for job in &batch {
            shared
                .metrics
                .waited(pass, started.duration_since(job.queued));
        }
        shared.metrics.batch(batch.len());
        let utterances: Vec<&[f32]> = batch.iter().map(|job| job.samples.as_slice()).collect();
        // An engine that panics fails this batch only; the worker goes on.
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            shared.engine.recognize_batch(&utterances, pass)
        }))
        .unwrap_or_default();
        let mut results = results.into_iter();
        for job in batch {
            let result = results.next().unwrap_or_else(|| {
                Err(SpeechError::Utterance(
                    "the speech engine returned no result".into(),
                ))
            });
            let _ = job.reply.try_send(result);
        }
        if lane == Lane::Partial {
            shared.lock().partial_batches -= 1;
            shared.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Echoes each utterance's first sample and length as its text, after `delay`, and
    /// records the batches it was given.
    struct Fake {
        delay: Duration,
        batches: Mutex<Vec<(Pass, Vec<usize>)>>,
        running: AtomicUsize,
        most_running: AtomicUsize,
    }

    impl Fake {
        fn new(delay: Duration) -> Arc<Self> {
            Arc::new(Fake {
                delay,
                batches: Mutex::new(Vec::new()),
                running: AtomicUsize::new(0),
                most_running: AtomicUsize::new(0),
            })
        }
    }

    impl BatchEngine for Fake {
        fn batch_key(&self, samples: usize) -> usize {
            samples / 1_000
        }

        fn recognize_batch(
            &self,
            utterances: &[&[f32]],
            pass: Pass,
        ) -> Vec<Result<Recognition, SpeechError>> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_running.fetch_max(now, Ordering::SeqCst);
            self.batches
                .lock()
                .unwrap()
                .push((pass, utterances.iter().map(|u| u.len()).collect()));
            std::thread::sleep(self.delay);
            self.running.fetch_sub(1, Ordering::SeqCst);
            utterances
                .iter()
                .map(|u| {
                    Ok(Recognition {
                        text: format!("{} {}", u[0], u.len()),
                        ..Recognition::default()
                    })
                })
                .collect()
        }
    }

    fn scheduler(engine: &Arc<Fake>, settings: SchedulerSettings) -> Arc<Scheduler> {
        Arc::new(
            Scheduler::start(
                Arc::clone(engine) as Arc<dyn BatchEngine>,
                settings,
                EngineMetrics::detached(),
            )
            .unwrap(),
        )
    }

    /// A scheduler of `workers` workers, batches of `max_batch`, partials stale after `age`.
    fn with(engine: &Arc<Fake>, workers: usize, max_batch: usize, age: Duration) -> Arc<Scheduler> {
        scheduler(
            engine,
            SchedulerSettings {
                workers,
                max_batch,
                partial_max_age: age,
                ..SchedulerSettings::default()
            },
        )
    }

    /// A caller on a thread of its own: `len` samples of `value`, in `pass`'s lane.
    fn ask(
        scheduler: &Arc<Scheduler>,
        value: f32,
        len: usize,
        pass: Pass,
    ) -> std::thread::JoinHandle<Result<Recognition, SpeechError>> {
        let scheduler = Arc::clone(scheduler);
        std::thread::spawn(move || scheduler.recognize(&vec![value; len], pass))
    }

    #[test]
    fn concurrent_callers_get_their_own_results_in_shared_batches() {
        let engine = Fake::new(Duration::from_millis(30));
        let scheduler = with(&engine, 1, 4, Duration::from_millis(500));
        let callers: Vec<_> = (0..12)
            .map(|i| {
                let scheduler = Arc::clone(&scheduler);
                std::thread::spawn(move || {
                    let samples = vec![i as f32; 500 + i];
                    let result = scheduler.recognize(&samples, Pass::Final).unwrap();
                    assert_eq!(result.text, format!("{i} {}", 500 + i));
                })
            })
            .collect();
        for caller in callers {
            caller.join().unwrap();
        }
        let batches = engine.batches.lock().unwrap();
        assert_eq!(batches.iter().map(|(_, b)| b.len()).sum::<usize>(), 12);
        assert!(batches.iter().all(|(_, b)| b.len() <= 4));
        assert!(
            batches.iter().any(|(_, b)| b.len() > 1),
            "12 callers on one busy worker were never batched: {batches:?}"
        );
    }

    #[test]
    fn utterances_of_different_keys_never_share_a_batch() {
        let engine = Fake::new(Duration::from_millis(20));
        let scheduler = scheduler(&engine, SchedulerSettings::default());
        let callers: Vec<_> = (0..8)
            .map(|i| {
                ask(
                    &scheduler,
                    1.0,
                    if i % 2 == 0 { 500 } else { 2_500 },
                    Pass::Final,
                )
            })
            .collect();
        for caller in callers {
            caller.join().unwrap().unwrap();
        }
        for (_, batch) in engine.batches.lock().unwrap().iter() {
            assert!(
                batch.iter().all(|&n| n / 1_000 == batch[0] / 1_000),
                "{batch:?}"
            );
        }
    }

    #[test]
    fn stale_partials_are_dropped_and_finals_still_run() {
        let engine = Fake::new(Duration::from_millis(100));
        let scheduler = with(&engine, 1, 1, Duration::from_millis(50));
        // A final keeps the only worker busy for 100 ms; the partials queued behind it are
        // stale by then.
        let busy = ask(&scheduler, 1.0, 10, Pass::Final);
        std::thread::sleep(Duration::from_millis(20));
        let partials: Vec<_> = (0..3)
            .map(|_| ask(&scheduler, 2.0, 10, Pass::Partial))
            .collect();
        assert!(busy.join().unwrap().is_ok());
        for partial in partials {
            assert!(matches!(partial.join().unwrap(), Err(SpeechError::Busy)));
        }
        assert_eq!(engine.batches.lock().unwrap().len(), 1);
    }

    #[test]
    fn finals_go_before_after_call_work_and_partials() {
        let engine = Fake::new(Duration::from_millis(60));
        let scheduler = with(&engine, 1, 1, Duration::from_secs(10));
        let blocker = ask(&scheduler, 0.0, 10, Pass::Final);
        std::thread::sleep(Duration::from_millis(20));
        let mut waiting = Vec::new();
        for pass in [Pass::Partial, Pass::AfterCall, Pass::Final] {
            waiting.push(ask(&scheduler, 0.0, 10, pass));
            std::thread::sleep(Duration::from_millis(5));
        }
        blocker.join().unwrap().unwrap();
        for w in waiting {
            w.join().unwrap().unwrap();
        }
        let order: Vec<Pass> = engine.batches.lock().unwrap().iter().map(|b| b.0).collect();
        assert_eq!(
            order,
            [Pass::Final, Pass::Final, Pass::AfterCall, Pass::Partial]
        );
    }

    #[test]
    fn partials_leave_one_worker_for_finals() {
        let engine = Fake::new(Duration::from_millis(80));
        let scheduler = with(&engine, 2, 1, Duration::from_secs(10));
        let partials: Vec<_> = (0..4)
            .map(|_| ask(&scheduler, 0.0, 10, Pass::Partial))
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        let began = Instant::now();
        scheduler.recognize(&[0.0; 10], Pass::Final).unwrap();
        // The final ran on the worker partials may not take, at once (80 ms), not after the
        // partials queued before it (4 × 80 ms on one worker).
        assert!(
            began.elapsed() < Duration::from_millis(240),
            "{:?}",
            began.elapsed()
        );
        for p in partials {
            p.join().unwrap().unwrap();
        }
        assert_eq!(engine.most_running.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_job_given_up_before_it_starts_never_runs() {
        let engine = Fake::new(Duration::from_millis(60));
        let scheduler = with(&engine, 1, 1, Duration::from_secs(10));
        let busy = scheduler.submit(&[1.0; 10], Pass::Final).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        let abandoned = scheduler.submit(&[2.0; 10], Pass::Partial).unwrap();
        let kept = scheduler.submit(&[3.0; 20], Pass::Partial).unwrap();
        drop(abandoned);
        let began = Instant::now();
        let result = loop {
            if let Some(result) = kept.try_result() {
                break result;
            }
            assert!(began.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(result.unwrap().text, "3 20");
        assert_eq!(busy.try_result().unwrap().unwrap().text, "1 10");
        let batches = engine.batches.lock().unwrap();
        assert_eq!(batches.len(), 2, "{batches:?}");
    }

    #[test]
    fn a_full_queue_answers_busy_at_once() {
        let engine = Fake::new(Duration::from_millis(200));
        let scheduler = scheduler(
            &engine,
            SchedulerSettings {
                workers: 1,
                max_batch: 1,
                max_queued: 1,
                ..SchedulerSettings::default()
            },
        );
        let running = ask(&scheduler, 0.0, 10, Pass::Final);
        std::thread::sleep(Duration::from_millis(30));
        let queued = ask(&scheduler, 0.0, 10, Pass::Final);
        std::thread::sleep(Duration::from_millis(30));
        let began = Instant::now();
        assert!(matches!(
            scheduler.recognize(&[0.0; 10], Pass::Final),
            Err(SpeechError::Busy)
        ));
        assert!(began.elapsed() < Duration::from_millis(50));
        running.join().unwrap().unwrap();
        queued.join().unwrap().unwrap();
    }

    #[test]
    fn dropping_the_scheduler_finishes_what_is_queued() {
        let engine = Fake::new(Duration::from_millis(20));
        let scheduler = scheduler(&engine, SchedulerSettings::default());
        let callers: Vec<_> = (0..3)
            .map(|_| ask(&scheduler, 0.0, 10, Pass::Final))
            .collect();
        drop(scheduler);
        for caller in callers {
            assert!(caller.join().unwrap().is_ok());
        }
    }
}
