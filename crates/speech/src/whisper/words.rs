//! Word timings of a final: CTranslate2 aligns a decoded text to the audio through the
//! cross-attention heads that follow time (`alignment_heads` in the model's config.json,
//! dynamic time warping over their attention), one encoder frame (20 ms) per step. The
//! tokens are then merged into words much as faster-whisper's `find_alignment` and
//! `add_word_timestamps` do: a token that begins with a space starts a word, punctuation joins
//! its neighbour, and a word lasts until the next one starts (trimmed where it would swallow
//! a pause).
//!
//! One difference: a token's time is not where the path reaches its row, but the middle of
//! the previous token's stretch of the path. The attention row of a token is the decoder
//! deciding to write it, which it does once the token has been heard: the stretch of frames
//! a row takes is centred on the token's end, not its start (Hugging Face's Whisper pipeline
//! reads these times as token ends too, transformers#36632). Taken as starts, the jumps came
//! out 120 ms late (median error, on the LibriVox clips against PocketSphinx's forced
//! alignment, `tests/word_times.rs`; faster-whisper's are as late); the middles, 60 ms, late
//! and early alike. And the path begins at the first frame, so the first word would start
//! with the utterance, pre-roll and all: it starts where the voice does instead (50 ms).

use crate::RecognizedWord;

use super::tokens::ByteDecoder;

/// Seconds per encoder frame: the alignment's time step.
const SECS_PER_FRAME: f64 = 0.02;
/// The median filter over the attention weights (faster-whisper's width).
pub(super) const MEDIAN_FILTER_WIDTH: i64 = 7;
/// Punctuation that belongs to the word after it.
const PREPENDED: &str = "\"'“¿([{-";
/// Punctuation that belongs to the word before it.
const APPENDED: &str = "\"'.。,，!！?？:：”)]}、";
/// Longest typical word, in seconds: a word lasts at most twice the median, and the median is
/// taken as at most this.
const MAX_MEDIAN_WORD_SECS: f64 = 0.7;

/// One word being assembled: its text and where it starts and ends.
#[derive(Debug)]
struct Timed {
    text: String,
    start: f64,
    end: f64,
}

/// The words of a decoded text, timed by CTranslate2's alignment of its tokens.
///
/// `pieces` are the text tokens as the vocabulary writes them (byte-level BPE, no special
/// tokens); `path` is the alignment: `(token, encoder frame)` pairs in order, where token
/// `pieces.len()` is the end of text. Times are seconds from the start of the utterance, in
/// order, inside `speech` (the first word starts no earlier than the voice: the path begins
/// at the first frame whatever is there; nothing ends after the utterance). A path that does
/// not cover every token gives no words.
pub(super) fn timed_words(
    decoder: &ByteDecoder,
    pieces: &[String],
    path: impl IntoIterator<Item = (i64, i64)>,
    speech: std::ops::Range<f64>,
) -> Vec<RecognizedWord> {
    let Some(starts) = token_starts(pieces.len(), path) else {
        return Vec::new();
    };
    let mut words = group(decoder, pieces, &starts);
    merge_punctuation(&mut words);
    words.retain(|w| !w.text.trim().is_empty());
    let mut words = join_continuations(words);
    trim_long_words(&mut words);
    if let Some(first) = words.first_mut() {
        first.start = first.start.max(speech.start.min(first.end));
    }
    let secs = speech.end;
    let mut last_end = 0.0_f64;
    words
        .into_iter()
        .map(|w| {
            let start = w.start.clamp(last_end, secs.max(last_end));
            let end = w.end.clamp(start, secs.max(start));
            last_end = end;
            RecognizedWord {
                text: w.text.trim().to_owned(),
                start_secs: start,
                end_secs: end,
            }
        })
        .collect()
}

/// When each of `tokens` tokens (and the end of text after them) starts, in seconds: the
/// middle of the previous token's stretch of the path (see the module's docs); the first
/// where the path begins. `None` if the path skips a token.
fn token_starts(tokens: usize, path: impl IntoIterator<Item = (i64, i64)>) -> Option<Vec<f64>> {
    // Where the path reaches each token's row.
    let mut jumps = Vec::with_capacity(tokens + 1);
    for (token, frame) in path {
        let token = usize::try_from(token).ok()?;
        if token == jumps.len() {
            jumps.push(frame.max(0) as f64 * SECS_PER_FRAME);
        } else if token + 1 != jumps.len() {
            return None;
        }
    }
    if jumps.len() != tokens + 1 {
        return None;
    }
    let first = jumps.first().copied();
    Some(
        first
            .into_iter()
            .chain(jumps.windows(2).map(|w| (w[0] + w[1]) / 2.0))
            .collect(),
    )
}

/// Tokens grouped into words: a token that begins with a space (`Ġ`), or is punctuation,
/// starts one. Each word runs from its first token's start to the next word's.
fn group(decoder: &ByteDecoder, pieces: &[String], starts: &[f64]) -> Vec<Timed> {
    let mut bounds: Vec<usize> = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let punctuation = {
            let text = decoder.decode(std::slice::from_ref(piece));
            let text = text.trim();
            !text.is_empty() && text.chars().all(|c| c.is_ascii_punctuation())
        };
        if i == 0 || piece.starts_with('Ġ') || punctuation {
            bounds.push(i);
        }
    }
    bounds.push(pieces.len());
    bounds
        .windows(2)
        .map(|w| Timed {
            text: decoder.decode(&pieces[w[0]..w[1]]),
            start: starts[w[0]],
            end: starts[w[1]],
        })
        .collect()
}

/// Opening punctuation joins the word after it, closing punctuation the word before: the word
/// keeps its own times (faster-whisper's `merge_punctuations`).
fn merge_punctuation(words: &mut [Timed]) {
    // Opening marks, from the end, so that a run of them all reach the word.
    if let Some(mut j) = words.len().checked_sub(1) {
        for i in (0..j).rev() {
            let text = words[i].text.trim();
            if words[i].text.starts_with(' ') && !text.is_empty() && PREPENDED.contains(text) {
                let moved = std::mem::take(&mut words[i].text);
                words[j].text.insert_str(0, &moved);
            } else {
                j = i;
            }
        }
    }
    // Closing marks, from the start (an emptied word takes nothing and is passed over).
    let mut i = 0;
    for j in 1..words.len() {
        if !words[i].text.ends_with(' ') && APPENDED.contains(words[j].text.as_str()) {
            let moved = std::mem::take(&mut words[j].text);
            words[i].text.push_str(&moved);
        } else {
            i = j;
        }
    }
}

/// A word that does not begin with a space continues the one before (`cold` `-hearted`).
fn join_continuations(words: Vec<Timed>) -> Vec<Timed> {
    let mut joined: Vec<Timed> = Vec::with_capacity(words.len());
    for word in words {
        match joined.last_mut() {
            Some(last) if !word.text.starts_with(' ') => {
                last.text.push_str(&word.text);
                last.end = word.end;
            }
            _ => joined.push(word),
        }
    }
    joined
}

/// A word much longer than the others swallowed a pause: a first word starts at most twice
/// the median word length before it ends (the silence before speech), any other ends at most
/// that long after it starts (the pause after it).
fn trim_long_words(words: &mut [Timed]) {
    let mut durations: Vec<f64> = words
        .iter()
        .map(|w| w.end - w.start)
        .filter(|d| *d > 0.0)
        .collect();
    if durations.is_empty() {
        return;
    }
    durations.sort_by(f64::total_cmp);
    let median = durations[durations.len() / 2].min(MAX_MEDIAN_WORD_SECS);
    let longest = 2.0 * median;
    for (i, word) in words.iter_mut().enumerate() {
        if word.end - word.start > longest {
            if i == 0 {
                word.start = word.end - longest;
            } else {
                word.end = word.start + longest;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(tokens: &[&str]) -> Vec<String> {
        tokens.iter().map(|t| (*t).to_owned()).collect()
    }

    /// A path that starts token `i` at frame `frames[i]` (the last is the end of text).
    fn path(frames: &[i64]) -> Vec<(i64, i64)> {
        let mut path = Vec::new();
        for (token, pair) in frames.windows(2).enumerate() {
            for frame in pair[0]..pair[1].max(pair[0] + 1) {
                path.push((token as i64, frame));
            }
        }
        path.push((frames.len() as i64 - 1, *frames.last().unwrap_or(&0)));
        path
    }

    fn texts_and_times(words: &[RecognizedWord]) -> Vec<(&str, f64, f64)> {
        words
            .iter()
            .map(|w| {
                let round = |s: f64| (s * 1000.0).round() / 1000.0;
                (w.text.as_str(), round(w.start_secs), round(w.end_secs))
            })
            .collect()
    }

    #[test]
    fn tokens_merge_into_words_with_their_punctuation() {
        let d = ByteDecoder::new();
        // " Hello, wonder ful world." — "ful" continues a word, "," and "." close one.
        let tokens = pieces(&["ĠHello", ",", "Ġwonder", "ful", "Ġworld", "."]);
        let words = timed_words(&d, &tokens, path(&[10, 30, 35, 50, 60, 80, 85]), 0.0..5.0);
        // Each token from the middle of the previous token's stretch of the path.
        assert_eq!(
            texts_and_times(&words),
            [
                ("Hello,", 0.2, 0.4),
                ("wonderful", 0.65, 1.1),
                ("world.", 1.1, 1.4)
            ]
        );
    }

    #[test]
    fn opening_marks_join_the_next_word() {
        let d = ByteDecoder::new();
        let tokens = pieces(&["ĠHe", "Ġsaid", "Ġ\"", "yes", "\"", "."]);
        let words = timed_words(&d, &tokens, path(&[0, 10, 20, 30, 35, 45, 50]), 0.0..5.0);
        let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, ["He", "said", "\"yes\"."]);
        // A word after a mark without a space joins the one before.
        let tokens = pieces(&["Ġcold", "-", "he", "arted", "Ġman"]);
        let words = timed_words(&d, &tokens, path(&[0, 10, 12, 15, 20, 30]), 0.0..1.0);
        let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, ["cold-hearted", "man"]);
        assert_eq!(words[0].start_secs, 0.0);
    }

    #[test]
    fn pauses_are_not_swallowed_by_words() {
        let d = ByteDecoder::new();
        // "one two three four five": 2.5 s of path on "one" and on "two", then half a second
        // each.
        let tokens = pieces(&["Ġone", "Ġtwo", "Ġthree", "Ġfour", "Ġfive"]);
        let words = timed_words(&d, &tokens, path(&[0, 125, 250, 275, 300, 325]), 0.0..7.0);
        // No word lasts more than twice the median (at most 0.7 s): the rest is silence.
        for w in &words {
            assert!(w.end_secs - w.start_secs <= 1.4 + 1e-9, "{w:?}");
        }
        assert!(words[2].start_secs - words[1].end_secs >= 1.0, "{words:?}");
        // A long first word loses its start, the silence before the speech.
        let tokens = pieces(&["Ġone", "Ġtwo", "Ġthree", "Ġfour"]);
        let words = timed_words(&d, &tokens, path(&[0, 150, 175, 200, 225]), 0.0..5.0);
        let (start, end) = (words[0].start_secs, words[0].end_secs);
        assert!(start > 0.0 && end - start <= 1.4 + 1e-9, "{words:?}");
    }

    #[test]
    fn times_stay_inside_the_utterance_and_in_order() {
        let d = ByteDecoder::new();
        let tokens = pieces(&["Ġa", "Ġb", "Ġc"]);
        // The path runs past the utterance's 1 s (into the window's padding).
        let words = timed_words(&d, &tokens, path(&[20, 40, 70, 90]), 0.0..1.0);
        let mut last = 0.0;
        for w in &words {
            assert!(last <= w.start_secs && w.start_secs <= w.end_secs && w.end_secs <= 1.0);
            last = w.end_secs;
        }
        assert_eq!(words.len(), 3);
    }

    #[test]
    fn the_first_word_starts_with_the_voice() {
        let d = ByteDecoder::new();
        let tokens = pieces(&["Ġone", "Ġtwo"]);
        // The path starts "one" at the first frame; the voice begins at 0.3 s.
        let words = timed_words(&d, &tokens, path(&[0, 40, 60]), 0.3..2.0);
        assert_eq!(
            texts_and_times(&words),
            [("one", 0.3, 0.4), ("two", 0.4, 1.0)]
        );
        // A voice that begins after the word's end makes it start at its end, no later.
        let words = timed_words(&d, &tokens, path(&[0, 40, 60]), 0.7..2.0);
        assert_eq!(
            texts_and_times(&words),
            [("one", 0.4, 0.4), ("two", 0.4, 1.0)]
        );
    }

    #[test]
    fn a_path_that_skips_a_token_gives_no_words() {
        let d = ByteDecoder::new();
        let tokens = pieces(&["Ġa", "Ġb", "Ġc"]);
        assert!(timed_words(&d, &tokens, [(0, 0), (2, 5), (3, 9)], 0.0..1.0).is_empty());
        assert!(timed_words(&d, &tokens, [(0, 0), (1, 5)], 0.0..1.0).is_empty());
        assert!(timed_words(&d, &[], [(0, 3)], 0.0..1.0).is_empty());
    }
}
