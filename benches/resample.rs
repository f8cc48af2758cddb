//! Criterion benches of per-stream resampling: one 20 ms frame through a `StreamResampler` per
//! iteration, as the gateway does it for every frame of a call that needs another rate.
//! Run with `cargo bench --bench resample`.

#![allow(missing_docs, clippy::unwrap_used)] // bench harness: a panic here is a broken bench

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mediagate::audio::{AudioFormat, StreamResampler};
use std::hint::black_box;

/// One 20 ms frame of a 1 kHz tone at half full scale, PCM16 LE.
fn tone_frame(format: AudioFormat) -> Vec<u8> {
    let rate = f64::from(format.sample_rate_hz());
    (0..format.frame_samples())
        .map(|k| (16_383.0 * (std::f64::consts::TAU * 1_000.0 * k as f64 / rate).sin()) as i16)
        .flat_map(i16::to_le_bytes)
        .collect()
}

fn resample_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample_frame");
    group.throughput(Throughput::Elements(1));
    for (name, from_hz, to_hz) in [
        ("16k_to_24k", 16_000, 24_000),
        ("24k_to_16k", 24_000, 16_000),
        ("16k_passthrough", 16_000, 16_000),
    ] {
        let from = AudioFormat::mono(from_hz);
        let frame = tone_frame(from);
        let mut resampler = StreamResampler::new(from, to_hz).unwrap();
        // Reused, as a caller would: clearing keeps the capacity, so no iteration allocates.
        let mut out = BytesMut::with_capacity(4 * AudioFormat::mono(to_hz).frame_bytes());
        group.bench_function(name, |b| {
            b.iter(|| {
                resampler.process(black_box(&frame), &mut out);
                black_box(&out);
                out.clear();
            });
        });
    }
    group.finish();
}

criterion_group!(benches, resample_frame);
criterion_main!(benches);
