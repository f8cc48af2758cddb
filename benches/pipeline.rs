//! Criterion benches of the fan-out, on the producer (socket task) side: the time `push_frame`
//! takes per frame, with 1, 4 and 16 no-op processors, with resampling to another rate, and the
//! whole in-process path of one inbound frame (parse, decode, fan out to `echo`).
//! Run with `cargo bench --bench pipeline`; figures go in the README's performance table.
//!
//! Each measurement pushes a batch of frames from a task on a multi-thread runtime (as the
//! socket task does), then, outside the measured time, waits for the processors to drain, so no
//! inbox ever fills and nothing is dropped.

#![allow(missing_docs, clippy::unwrap_used)] // bench harness: a panic here is a broken bench

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mediagate::audio::{AudioFormat, AudioFrame, AudioSource};
use mediagate::protocol::{InboundMessage, encode_pcm, parse_inbound};
use mediagate_pipeline::{CallInfo, Context, Input, Outgoing, Pipeline, Processor, ProcessorError};
use mediagate_processors::Echo;
use std::hint::black_box;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const FORMAT: AudioFormat = AudioFormat::mono(16_000);
/// Frames pushed between two drains: well under every inbox's capacity.
const BATCH: u64 = 256;
const QUEUE: usize = 1024;

fn call() -> Arc<CallInfo> {
    Arc::new(CallInfo::new("bench", "/ws", FORMAT))
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// 20 ms of a 1 kHz sine at 16 kHz, as PCM16 LE.
fn sine_pcm() -> Vec<u8> {
    (0..FORMAT.frame_samples())
        .flat_map(|i| {
            let t = i as f64 / 16_000.0;
            ((8_000.0 * (2.0 * std::f64::consts::PI * 1_000.0 * t).sin()) as i16).to_le_bytes()
        })
        .collect()
}

fn frame() -> AudioFrame {
    AudioFrame {
        pcm: Bytes::from(sine_pcm()),
        format: FORMAT,
        timestamp: None,
        position: None,
        source: AudioSource::Mixed,
        silent: false,
    }
}

/// Does nothing but count the frames it got.
struct NoOp {
    rate_hz: Option<u32>,
    seen: Arc<AtomicU64>,
}

impl Processor for NoOp {
    fn input(&self) -> Input {
        Input {
            sample_rate_hz: self.rate_hz,
            queue: QUEUE,
            ..Input::default()
        }
    }
    fn on_frame(&mut self, frame: &AudioFrame, _ctx: &mut Context) -> Result<(), ProcessorError> {
        black_box(frame);
        self.seen.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Waits (unmeasured) until `seen` reaches `target`.
async fn drained(seen: &AtomicU64, target: u64) {
    while seen.load(Ordering::Relaxed) < target {
        tokio::task::yield_now().await;
    }
}

/// What each measured step feeds the pipeline.
enum Feed {
    /// The same decoded frame, every time.
    Frame(AudioFrame),
    /// An AudioData message, parsed and decoded into `pool` every time, as the socket task does.
    Message { text: Arc<str>, pool: BytesMut },
}

impl Feed {
    async fn push(&mut self, pipeline: &mut Pipeline) {
        match self {
            Feed::Frame(frame) => pipeline.push_frame(frame).await,
            Feed::Message { text, pool } => {
                let InboundMessage::AudioData(data) = parse_inbound(text).unwrap() else {
                    unreachable!()
                };
                let frame = AudioFrame {
                    pcm: data.decode_pcm(FORMAT.bytes_per_sample(), pool).unwrap(),
                    format: FORMAT,
                    timestamp: data.timestamp,
                    position: None,
                    source: match &data.participant_raw_id {
                        None => AudioSource::Mixed,
                        Some(id) => AudioSource::Participant((&**id).into()),
                    },
                    silent: data.silent,
                };
                pipeline.push_frame(&frame).await;
            }
        }
    }
}

/// Time of `iters` pushes from a task on a runtime worker, draining every [`BATCH`] frames
/// outside the measurement. `seen` counts what the consumers got; each pushed frame raises it
/// by `per_frame`.
fn measure(
    rt: &Runtime,
    iters: u64,
    setup: impl FnOnce() -> (Pipeline, Arc<AtomicU64>, u64, Feed) + Send + 'static,
) -> Duration {
    rt.block_on(async move {
        tokio::spawn(async move {
            let (mut pipeline, seen, per_frame, mut feed) = setup();
            let mut elapsed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = BATCH.min(iters - done);
                let started = Instant::now();
                for _ in 0..n {
                    feed.push(&mut pipeline).await;
                }
                elapsed += started.elapsed();
                done += n;
                drained(&seen, done * per_frame).await;
            }
            pipeline.finish().await;
            elapsed
        })
        .await
        .unwrap()
    })
}

/// A pipeline of `n` no-op processors at `rate_hz`, and their shared counter.
fn no_ops(n: usize, rate_hz: Option<u32>) -> (Pipeline, Arc<AtomicU64>) {
    let seen = Arc::new(AtomicU64::new(0));
    let processors = (0..n)
        .map(|i| {
            let p = NoOp {
                rate_hz,
                seen: Arc::clone(&seen),
            };
            (format!("noop{i}"), Box::new(p) as Box<dyn Processor>)
        })
        .collect();
    (Pipeline::start(call(), processors, None, None), seen)
}

fn fan_out(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(1));
    for (name, n, rate_hz) in [
        ("16k_to_1", 1, None),
        ("16k_to_4", 4, None),
        ("16k_to_16", 16, None),
        ("16k_to_1_at_24k", 1, Some(24_000)),
        ("16k_to_4_at_24k", 4, Some(24_000)),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                measure(&rt, iters, move || {
                    let (pipeline, seen) = no_ops(n, rate_hz);
                    (pipeline, seen, n as u64, Feed::Frame(frame()))
                })
            });
        });
    }
    group.finish();
}

/// One 20 ms AudioData message as ACS sends it.
fn audio_message() -> String {
    let mut data = String::new();
    encode_pcm(&sine_pcm(), &mut data);
    format!(
        r#"{{"kind":"AudioData","audioData":{{"timestamp":"2026-11-24T19:16:12.925Z","data":"{data}","silent":false}}}}"#
    )
}

fn full_path(c: &mut Criterion) {
    let rt = runtime();
    let text: Arc<str> = audio_message().into();
    let mut group = c.benchmark_group("inbound");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_decode_fanout_echo", |b| {
        b.iter_custom(|iters| {
            let text = Arc::clone(&text);
            measure(&rt, iters, move || {
                let (to_socket, mut socket) = mpsc::channel::<Outgoing>(QUEUE);
                let seen = Arc::new(AtomicU64::new(0));
                let counter = Arc::clone(&seen);
                // The socket writer: takes what echo sends back.
                tokio::spawn(async move {
                    while let Some(out) = socket.recv().await {
                        black_box(out);
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                });
                let pipeline = Pipeline::start(
                    call(),
                    vec![("echo".into(), Box::new(Echo))],
                    None,
                    Some(to_socket),
                );
                let feed = Feed::Message {
                    text,
                    pool: BytesMut::new(),
                };
                (pipeline, seen, 1, feed)
            })
        });
    });
    group.finish();
}

criterion_group!(benches, fan_out, full_path);
criterion_main!(benches);
