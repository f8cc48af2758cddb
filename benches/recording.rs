//! Criterion bench of WAV writing per frame: what the `wav` recorder costs on its blocking
//! thread. Run with `cargo bench --bench recording`; figures go in the README's performance
//! table. Files go to a temporary directory on the machine's disk (through the page cache).

#![allow(missing_docs, clippy::unwrap_used)] // bench harness: a panic here is a broken bench

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mediagate::audio::{AudioFormat, AudioSource};
use mediagate::processors::record::{AudioTracks, Dir};

/// Frames per measured batch: 20 s of audio, in fresh files each time.
const FRAMES: u64 = 1_000;
/// The recorder makes the files valid after each batch it is handed (~10 frames in real time).
const FRAMES_PER_CHECKPOINT: u64 = 10;

struct Call {
    _dir: tempfile::TempDir,
    folder: Dir,
    tracks: AudioTracks,
}

fn fresh_call(format: AudioFormat) -> Call {
    let dir = tempfile::tempdir().unwrap();
    Call {
        folder: Dir::new(dir.path()),
        _dir: dir,
        tracks: AudioTracks::new(format),
    }
}

fn write_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("wav");
    group.throughput(Throughput::Elements(FRAMES));
    group.sample_size(30);
    for (name, rate, sources) in [
        ("16k_mixed", 16_000, 1usize),
        ("24k_mixed", 24_000, 1),
        ("16k_4_participants", 16_000, 4),
    ] {
        let format = AudioFormat::mono(rate);
        let pcm: Vec<u8> = (0..format.frame_bytes())
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let who: Vec<AudioSource> = if sources == 1 {
            vec![AudioSource::Mixed]
        } else {
            (0..sources)
                .map(|i| AudioSource::Participant(format!("8:acs:participant-{i}").into()))
                .collect()
        };
        group.bench_function(format!("write_frame/{name}"), |b| {
            b.iter_batched_ref(
                || fresh_call(format),
                |call| {
                    for i in 0..FRAMES {
                        // Each participant in turn, 20 ms apart on the call's timeline.
                        let source = &who[i as usize % who.len()];
                        let round = i / who.len() as u64;
                        let at = std::time::Duration::from_millis(round * 20);
                        call.tracks
                            .write_frame(&mut call.folder, source, Some(at), black_box(&pcm))
                            .unwrap();
                        if i % FRAMES_PER_CHECKPOINT == FRAMES_PER_CHECKPOINT - 1 {
                            call.tracks.checkpoint().unwrap();
                        }
                    }
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, write_frames);
criterion_main!(benches);
