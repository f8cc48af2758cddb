//! A call's transcript scored against what it said: how long after the end of each utterance
//! its final came, and the word error rate of its finals against the references of the clips
//! it played. Pure arithmetic, no I/O.

use mediagate_protocol::Timestamp;
use mediagate_speech::wer::Score;

use super::clips::{ClipSpan, SpeechClip};
use super::results::TranscriptLine;

/// Where a final's utterance ends, for its latency: its `end_ms`, but never later than the end
/// of the clip it overlaps (the last such clip, should it span two), so that trailing silence
/// the engine's cutter kept does not flatter the figure. A final over no clip (noise in a gap)
/// keeps its `end_ms`.
pub(crate) fn utterance_end_ms(spans: &[ClipSpan], start_ms: u64, end_ms: u64) -> u64 {
    spans
        .iter()
        .rev()
        .find(|s| s.start_ms <= end_ms && s.end_ms > start_ms)
        .map_or(end_ms, |s| end_ms.min(s.end_ms))
}

/// The latency of a final, in µs: from the wall time the end of its utterance was sent (the
/// call's first frame was sent at `first_frame_at`, and the call plays in real time) to
/// `received_at`, when the engine produced it. Negative only if clocks disagree.
pub(crate) fn final_latency_us(
    first_frame_at: Timestamp,
    utterance_end_ms: u64,
    received_at: Timestamp,
) -> i64 {
    let utterance_end_us = i64::try_from(utterance_end_ms)
        .unwrap_or(i64::MAX / 1_000)
        .saturating_mul(1_000);
    received_at
        .micros_since(first_frame_at)
        .saturating_sub(utterance_end_us)
}

/// One call's transcript, scored.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CallScore {
    /// Each final's latency, µs (finals with a `received_at` only), in transcript order.
    pub(crate) latencies_us: Vec<i64>,
    /// Finals from the engine.
    pub(crate) finals: u64,
    /// Of those, finals with no text.
    pub(crate) empty_finals: u64,
    /// Partials from the engine.
    pub(crate) partials: u64,
    /// The finals' text against the references of the clips played.
    pub(crate) wer: Score,
    /// The finals' text, in timeline order.
    pub(crate) heard: String,
}

/// Scores the engine's lines of a call that played `spans` of `clips`, its first frame sent
/// at `first_frame_at` (`None`: no latency).
pub(crate) fn score_call(
    lines: &[TranscriptLine],
    spans: &[ClipSpan],
    clips: &[SpeechClip],
    first_frame_at: Option<Timestamp>,
) -> CallScore {
    let mut score = CallScore::default();
    let mut finals: Vec<&TranscriptLine> = Vec::new();
    for line in lines.iter().filter(|l| l.by_engine()) {
        if !line.is_final() {
            score.partials += 1;
            continue;
        }
        score.finals += 1;
        if line.text.trim().is_empty() {
            score.empty_finals += 1;
        }
        if let (Some(first), Some(received)) = (first_frame_at, line.received_at) {
            let end = utterance_end_ms(spans, line.start_ms, line.end_ms);
            score
                .latencies_us
                .push(final_latency_us(first, end, received));
        }
        finals.push(line);
    }
    finals.sort_by_key(|l| l.start_ms);
    score.heard = finals
        .iter()
        .map(|l| l.text.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let said: Vec<&str> = spans
        .iter()
        .map(|s| clips[s.clip].reference.as_str())
        .collect();
    score.wer = Score::of(&said.join(" "), &score.heard);
    score
}

#[cfg(test)]
mod tests {
    use mediagate_audio::{AudioFormat, Clip};

    use super::*;

    const fn span(clip: usize, start_ms: u64, end_ms: u64) -> ClipSpan {
        ClipSpan {
            clip,
            start_ms,
            end_ms,
        }
    }

    #[test]
    fn the_utterance_ends_at_the_final_or_the_clip_whichever_is_first() {
        let spans = [span(0, 0, 3_000), span(1, 4_500, 8_000)];
        // The cutter kept 600 ms of trailing silence: the clip's end counts.
        assert_eq!(utterance_end_ms(&spans, 100, 3_600), 3_000);
        // The final ends inside its clip (an utterance cut at a pause): its own end counts.
        assert_eq!(utterance_end_ms(&spans, 4_400, 6_000), 6_000);
        // Pre-roll before the clip, end after it.
        assert_eq!(utterance_end_ms(&spans, 4_300, 8_700), 8_000);
        // Spanning both clips: the last one's end.
        assert_eq!(utterance_end_ms(&spans, 0, 9_000), 8_000);
        // Noise in the gap: its own end.
        assert_eq!(utterance_end_ms(&spans, 3_200, 3_900), 3_900);
        assert_eq!(utterance_end_ms(&[], 10, 20), 20);
    }

    #[test]
    fn latency_counts_from_the_sent_end_of_the_utterance() {
        let first = Timestamp::from_unix_micros(1_000_000_000_000);
        // Utterance end 3 s into the call, final 3.75 s after the first frame: 750 ms.
        let received = first.add_micros(3_750_000);
        assert_eq!(final_latency_us(first, 3_000, received), 750_000);
        // Clocks a little off: negative, not wrapped.
        assert_eq!(final_latency_us(first, 4_000, received), -250_000);
    }

    fn line(status: &str, text: &str, start_ms: u64, end_ms: u64, at_ms: i64) -> TranscriptLine {
        TranscriptLine {
            source: "pocketsphinx".into(),
            status: status.into(),
            text: text.into(),
            start_ms,
            end_ms,
            received_at: Some(Timestamp::from_unix_micros(
                1_000_000_000_000 + at_ms * 1_000,
            )),
        }
    }

    fn clip(reference: &str) -> SpeechClip {
        SpeechClip {
            name: reference.into(),
            reference: reference.into(),
            audio: Clip::from_samples(AudioFormat::mono(16_000), &[0; 320]),
        }
    }

    #[test]
    fn a_call_is_scored_on_its_engine_finals_in_timeline_order() {
        let clips = [clip("the birch canoe"), clip("glue the sheet")];
        let spans = [span(1, 0, 2_000), span(0, 3_500, 5_000)];
        let mut acs = line("final", "ignored words", 0, 100, 50);
        acs.source = "acs".into();
        let lines = [
            line("partial", "glue", 300, 1_000, 1_100),
            // Finals out of order in the file: scored in timeline order.
            line("final", "the birch canoes", 3_400, 5_400, 5_900),
            line("final", "Glue the sheet.", 200, 2_300, 2_500),
            line("final", "", 2_600, 2_800, 3_000),
            acs,
        ];
        let first = Some(Timestamp::from_unix_micros(1_000_000_000_000));
        let score = score_call(&lines, &spans, &clips, first);
        assert_eq!(
            (score.finals, score.empty_finals, score.partials),
            (3, 1, 1)
        );
        assert_eq!(score.heard, "Glue the sheet. the birch canoes");
        // "canoes" for "canoe": one error in six words.
        assert_eq!((score.wer.errors, score.wer.words), (1, 6));
        // 5.9 s - 5.0 s (clip end, not 5.4), 2.5 - 2.0, 3.0 - 2.8 (noise in the gap).
        assert_eq!(score.latencies_us, [900_000, 500_000, 200_000]);
        // Without the first frame's time: WER, no latency.
        let score = score_call(&lines, &spans, &clips, None);
        assert!(score.latencies_us.is_empty() && score.wer.words == 6);
    }
}
