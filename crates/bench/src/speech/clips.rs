//! What the calls say: WAV clips with their reference text, laid end to end (each followed by
//! a gap of silence) on one tape of 20 ms AudioData messages, encoded once before the clock
//! starts. Every call plays a stretch of the tape that starts at a clip, so calls say the same
//! clips in different orders, and knows where each clip starts and ends on its own timeline.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use mediagate_audio::{AudioFormat, Clip, FRAME_DURATION_MS, wav};
use mediagate_protocol::{AudioData, AudioMetadata, InboundMessage, Timestamp, encode_pcm};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::read_bounded;
use crate::BenchError;

/// The file of a folder of clips that says what each one says: `name<TAB>text` per line.
pub const REFERENCES_FILE: &str = "references.txt";

/// The largest clip read: 64 MiB (about 35 minutes at 16 kHz).
const MAX_CLIP_BYTES: u64 = 64 << 20;
/// The largest references.txt read.
const MAX_REFERENCES_BYTES: u64 = 4 << 20;
/// Frame length in ms, as a u64 for timeline arithmetic.
const FRAME_MS: u64 = FRAME_DURATION_MS as u64;

/// A clip of speech and what it says.
#[derive(Debug, Clone)]
pub struct SpeechClip {
    /// Its name: the file stem, as references.txt names it.
    pub name: String,
    /// What it says.
    pub reference: String,
    /// Its audio, mono PCM16 at the rate of the run.
    pub audio: Clip,
}

impl SpeechClip {
    /// How long it plays, in ms (rounded down).
    pub fn duration_ms(&self) -> u64 {
        u64::try_from(self.audio.duration().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whole 20 ms frames it fills (the last one padded with silence).
    fn frames(&self) -> u64 {
        let per_frame = self.audio.format.frame_samples().max(1);
        self.audio.sample_count().div_ceil(per_frame) as u64
    }
}

/// Reads the clips of `paths` at `rate_hz`: each path is a folder (every `*.wav` in it, by
/// name) or a WAV file; each clip's text comes from the references.txt of its folder. Mono
/// WAVs of any rate are resampled. **Blocking** file I/O.
pub fn load_clips(paths: &[PathBuf], rate_hz: u32) -> Result<Vec<SpeechClip>, BenchError> {
    let mut clips = Vec::new();
    for path in paths {
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| clips_error(path, e.to_string()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")))
                .collect();
            files.sort();
            files
        } else {
            vec![path.clone()]
        };
        for file in files {
            clips.push(load_clip(&file, rate_hz)?);
        }
    }
    if clips.is_empty() {
        return Err(BenchError::Config(
            "no speech clip found (--clips: folders of WAV files with a references.txt, or WAV files)"
                .to_owned(),
        ));
    }
    Ok(clips)
}

fn clips_error(path: &Path, reason: String) -> BenchError {
    BenchError::Clips {
        path: path.to_owned(),
        reason,
    }
}

fn load_clip(path: &Path, rate_hz: u32) -> Result<SpeechClip, BenchError> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let folder = path.parent().unwrap_or(Path::new("."));
    let references = folder.join(REFERENCES_FILE);
    let text = read_bounded(&references, MAX_REFERENCES_BYTES)
        .map_err(|e| clips_error(&references, format!("{e} (it says what {name} says)")))?;
    let reference = reference_of(&text, &name)
        .ok_or_else(|| clips_error(&references, format!("no line for `{name}`")))?;
    let clip = wav::read(path, MAX_CLIP_BYTES, wav::Accept::AnyToPcm16)
        .map_err(|e| clips_error(path, e.to_string()))?;
    if clip.format.channels() != 1 {
        return Err(clips_error(path, "not mono".to_owned()));
    }
    let audio = clip
        .at_rate(rate_hz)
        .map_err(|e| clips_error(path, e.to_string()))?;
    if audio.is_empty() {
        return Err(clips_error(path, "no audio".to_owned()));
    }
    Ok(SpeechClip {
        name,
        reference: reference.to_owned(),
        audio,
    })
}

/// The text of `name` in a references.txt (`name<TAB>text` lines).
fn reference_of<'t>(references: &'t str, name: &str) -> Option<&'t str> {
    references
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, text)| text.trim())
}

/// Where one clip plays on a call's timeline (ms from the call's first frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClipSpan {
    /// Index of the clip in the run's clips.
    pub clip: usize,
    /// Its first sample.
    pub start_ms: u64,
    /// Its end (its last sample's end; the gap of silence after it is not included).
    pub end_ms: u64,
}

/// What one call plays: a stretch of the tape, in frames, and the clips in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallPlan {
    /// The tape's frame the call starts with.
    pub(crate) first_frame: usize,
    /// Frames it sends.
    pub(crate) frames: usize,
    /// The clips it plays, in order, on its timeline.
    pub(crate) spans: Vec<ClipSpan>,
}

/// Lays out the calls: call `i` starts at clip `i mod n` and plays clips in order (wrapping)
/// until it has played at least `min_ms`, each clip followed by `gap_ms` of silence. Returns
/// the plans and how many slots (clip + gap) the tape needs. `clip_frames` and `clip_ms` give
/// each clip's length in whole frames and in ms.
pub(crate) fn plan_calls(
    clip_frames: &[u64],
    clip_ms: &[u64],
    gap_ms: u64,
    min_ms: u64,
    calls: usize,
) -> (Vec<CallPlan>, usize) {
    let n = clip_frames.len();
    if n == 0 {
        return (Vec::new(), 0);
    }
    let gap_frames = gap_ms.div_ceil(FRAME_MS);
    let slot_frames = |slot: usize| clip_frames[slot % n] + gap_frames;
    let mut slot_start = vec![0u64];
    let mut start_of = |slot: usize| {
        while slot_start.len() <= slot {
            let last = slot_start.len() - 1;
            let next = slot_start[last] + slot_frames(last);
            slot_start.push(next);
        }
        slot_start[slot]
    };
    let (mut plans, mut slots) = (Vec::with_capacity(calls), 0);
    for call in 0..calls {
        let first = call % n;
        let origin = start_of(first);
        let mut spans = Vec::new();
        let mut slot = first;
        loop {
            let start_ms = (start_of(slot) - origin) * FRAME_MS;
            spans.push(ClipSpan {
                clip: slot % n,
                start_ms,
                end_ms: start_ms + clip_ms[slot % n],
            });
            slot += 1;
            if (start_of(slot) - origin) * FRAME_MS >= min_ms {
                break;
            }
        }
        slots = slots.max(slot);
        plans.push(CallPlan {
            first_frame: usize::try_from(origin).unwrap_or(usize::MAX),
            frames: usize::try_from(start_of(slot) - origin).unwrap_or(usize::MAX),
            spans,
        });
    }
    (plans, slots)
}

/// Every message the calls send, encoded once.
#[derive(Debug)]
pub(crate) struct Tape {
    /// The AudioMetadata message.
    pub(crate) metadata: Utf8Bytes,
    /// The AudioData messages, one per 20 ms, their timestamps 20 ms apart.
    pub(crate) frames: Vec<Utf8Bytes>,
}

impl Tape {
    /// `slots` slots of clips (slot `j` plays clip `j mod n`, then `gap_ms` of silence), at
    /// `rate_hz`, stamped from `start`. CPU-bound: run it on a blocking thread.
    pub(crate) fn encode(
        clips: &[SpeechClip],
        slots: usize,
        gap_ms: u64,
        rate_hz: u32,
        start: Timestamp,
    ) -> Tape {
        let format = AudioFormat::mono(rate_hz);
        let frame_bytes = format.frame_bytes();
        let gap_frames = gap_ms.div_ceil(FRAME_MS) as usize;
        let total: usize = (0..slots)
            .map(|j| clips[j % clips.len()].frames() as usize + gap_frames)
            .sum();
        let mut frames = Vec::with_capacity(total);
        let mut pcm = vec![0u8; frame_bytes];
        let mut data = String::with_capacity(frame_bytes.div_ceil(3) * 4);
        let mut encode = |pcm: &[u8], frames: &mut Vec<Utf8Bytes>| {
            let index = i64::try_from(frames.len()).unwrap_or(i64::MAX);
            data.clear();
            encode_pcm(pcm, &mut data);
            let message = InboundMessage::AudioData(AudioData {
                timestamp: Some(start.add_micros(index.saturating_mul(FRAME_MS as i64 * 1_000))),
                invalid_timestamp: false,
                participant_raw_id: None,
                data_base64: Cow::Borrowed(&data),
                silent: pcm.iter().all(|&b| b == 0),
            });
            frames.push(Utf8Bytes::from(message.to_json()));
        };
        for slot in 0..slots {
            let clip = &clips[slot % clips.len()].audio;
            for chunk in clip.pcm.chunks(frame_bytes) {
                pcm.fill(0);
                pcm[..chunk.len()].copy_from_slice(chunk);
                encode(&pcm, &mut frames);
            }
            pcm.fill(0);
            for _ in 0..gap_frames {
                encode(&pcm, &mut frames);
            }
        }
        let metadata = InboundMessage::AudioMetadata(AudioMetadata {
            subscription_id: Some("mediagate-bench-speech".to_owned()),
            encoding: "PCM".to_owned(),
            sample_rate_hz: rate_hz,
            channels: 1,
            frame_bytes_hint: u32::try_from(frame_bytes).ok(),
        })
        .to_json();
        Tape {
            metadata: Utf8Bytes::from(metadata),
            frames,
        }
    }
}

/// The clips laid out for `calls` calls, and their tape.
pub(crate) fn prepare(
    clips: &[SpeechClip],
    gap_ms: u64,
    min_ms: u64,
    calls: usize,
    rate_hz: u32,
) -> (Vec<CallPlan>, Tape) {
    let frames: Vec<u64> = clips.iter().map(SpeechClip::frames).collect();
    let ms: Vec<u64> = clips.iter().map(SpeechClip::duration_ms).collect();
    let (plans, slots) = plan_calls(&frames, &ms, gap_ms, min_ms, calls);
    let tape = Tape::encode(clips, slots, gap_ms, rate_hz, Timestamp::now());
    (plans, tape)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    #[test]
    fn calls_start_at_different_clips_and_play_whole_clips() {
        // Clips of 1 s (50 frames), 2 s (100) and 0.5 s (25 frames, 490 ms), gaps of 1.5 s.
        let frames = [50, 100, 25];
        let ms = [1_000, 2_000, 490];
        let (plans, slots) = plan_calls(&frames, &ms, 1_500, 4_000, 4);
        // Call 0: clip 0 at 0, clip 1 at 2.5 s; 2.5 + 3.5 = 6 s >= 4 s: done.
        assert_eq!(
            plans[0].spans,
            [
                ClipSpan {
                    clip: 0,
                    start_ms: 0,
                    end_ms: 1_000
                },
                ClipSpan {
                    clip: 1,
                    start_ms: 2_500,
                    end_ms: 4_500
                }
            ]
        );
        assert_eq!((plans[0].first_frame, plans[0].frames), (0, 300));
        // Call 1 starts at clip 1 (frame 125): clip 1, then clip 2 at 3.5 s (2 s + 1.5 s).
        assert_eq!(plans[1].first_frame, 125);
        assert_eq!(
            plans[1].spans.iter().map(|s| s.clip).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(plans[1].spans[1].start_ms, 3_500);
        assert_eq!(plans[1].spans[1].end_ms, 3_990);
        assert_eq!(plans[1].frames, 175 + 100);
        // Call 2 starts at clip 2 and wraps to clip 0, 1: 2 s + 2.5 s >= 4 s.
        assert_eq!(
            plans[2].spans.iter().map(|s| s.clip).collect::<Vec<_>>(),
            [2, 0]
        );
        assert_eq!(plans[2].spans[1].start_ms, 2_000);
        // Call 3 is call 0 again.
        assert_eq!(plans[3], plans[0]);
        // The tape holds slots 0..4 (call 2 plays slots 2 and 3).
        assert_eq!(slots, 4);
    }

    #[test]
    fn a_long_call_wraps_around_the_clips() {
        let (plans, slots) = plan_calls(&[50], &[1_000], 1_000, 10_000, 1);
        assert_eq!(plans[0].spans.len(), 5);
        assert_eq!(plans[0].spans[4].start_ms, 8_000);
        assert_eq!(plans[0].frames, 500);
        assert_eq!(slots, 5);
    }

    #[test]
    fn the_tape_is_stamped_20_ms_apart_and_padded_to_whole_frames() {
        let clip = SpeechClip {
            name: "x".into(),
            reference: "x".into(),
            // 1.5 frames of a constant.
            audio: Clip::from_samples(AudioFormat::mono(16_000), &[1000; 480]),
        };
        assert_eq!(clip.frames(), 2);
        assert_eq!(clip.duration_ms(), 30);
        let start = Timestamp::from_unix_micros(1_795_564_800_000_000);
        let tape = Tape::encode(&[clip], 2, 40, 16_000, start);
        // Two slots of 2 frames of speech and 2 of silence.
        assert_eq!(tape.frames.len(), 8);
        let parse = |i: usize| match mediagate_protocol::parse_inbound(&tape.frames[i]) {
            Ok(InboundMessage::AudioData(data)) => {
                let mut pool = bytes::BytesMut::new();
                let pcm = mediagate_protocol::decode_pcm(&data.data_base64, 1, &mut pool)
                    .unwrap()
                    .to_vec();
                (data.timestamp.unwrap(), data.silent, pcm)
            }
            other => panic!("{other:?}"),
        };
        for i in 0..8 {
            let (at, _, pcm) = parse(i);
            assert_eq!(at.micros_since(start), i as i64 * 20_000);
            assert_eq!(pcm.len(), 640);
        }
        let (_, silent, pcm) = parse(1);
        assert!(!silent);
        assert_eq!(&pcm[..4], &1000i16.to_le_bytes().repeat(2)[..]);
        assert!(pcm[320..].iter().all(|&b| b == 0));
        assert!(parse(2).1 && parse(3).1 && !parse(4).1);
    }

    #[test]
    fn references_are_found_by_name() {
        let text = "a\tThe first.\nbb\t  The second. \nbroken line\n";
        assert_eq!(reference_of(text, "a"), Some("The first."));
        assert_eq!(reference_of(text, "bb"), Some("The second."));
        assert_eq!(reference_of(text, "c"), None);
    }

    #[test]
    fn the_committed_clips_load_with_their_references() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/speech");
        let clips = load_clips(
            &[root.join("librivox"), root.join("harvard-01.wav")],
            24_000,
        )
        .unwrap();
        assert_eq!(clips.len(), 6);
        assert_eq!(clips[0].name, "austen-0870");
        assert_eq!(
            clips[5].reference,
            "The birch canoe slid on the smooth planks."
        );
        assert!(
            clips
                .iter()
                .all(|c| c.audio.format == AudioFormat::mono(24_000))
        );
        let missing = load_clips(&[root.join("make.sh")], 16_000).unwrap_err();
        assert!(missing.to_string().contains("make"), "{missing}");
    }
}
