//! Criterion benches of the per-frame hot path: parse an AudioData message and decode its PCM.
//! Run with `cargo bench --bench hot_path`; figures go in the README's performance table.

#![allow(missing_docs, clippy::unwrap_used)] // bench harness: a panic here is a broken bench

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mediagate::protocol::{InboundMessage, decode_pcm, encode_pcm, parse_inbound};
use std::hint::black_box;

/// One 20 ms AudioData message as ACS sends it, for a `frame_bytes` payload.
fn audio_message(frame_bytes: usize, participant: bool) -> String {
    let pcm: Vec<u8> = (0..frame_bytes).map(|i| (i * 7 % 251) as u8).collect();
    let mut data = String::new();
    encode_pcm(&pcm, &mut data);
    let who = if participant {
        r#","participantRawID":"8:acs:3d20e1de-0f28-41c5-84b0-447b1f6b3a2e_00000023-a1b2-c3d4""#
    } else {
        ""
    };
    format!(
        r#"{{"kind":"AudioData","audioData":{{"timestamp":"2026-11-24T19:16:12.925Z"{who},"data":"{data}","silent":false}}}}"#
    )
}

fn parse_and_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Elements(1));
    for (name, bytes, participant) in [
        ("16k_mixed", 640, false),
        ("16k_unmixed", 640, true),
        ("24k_mixed", 960, false),
    ] {
        let text = audio_message(bytes, participant);
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| black_box(parse_inbound(black_box(&text)).unwrap()));
        });
        let mut pool = BytesMut::new();
        group.bench_function(format!("parse_decode/{name}"), |b| {
            b.iter(|| {
                let InboundMessage::AudioData(frame) = parse_inbound(black_box(&text)).unwrap()
                else {
                    unreachable!()
                };
                black_box(frame.decode_pcm(2, &mut pool).unwrap())
            });
        });
        let data = {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["audioData"]["data"].as_str().unwrap().to_owned()
        };
        group.bench_function(format!("decode_only/{name}"), |b| {
            b.iter(|| black_box(decode_pcm(black_box(&data), 2, &mut pool).unwrap()));
        });
    }
    group.finish();
}

criterion_group!(benches, parse_and_decode);
criterion_main!(benches);
