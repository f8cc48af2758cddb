//! The `transcript` processor: transcript.jsonl (every result, partial and final, from every
//! source) and transcript.vtt (finals, WebVTT), on the call's timeline in milliseconds.
//!
//! A final with word times becomes as many cues as it has sentences, also broken at pauses
//! and kept short enough to read ([`cues`]); one without is one cue.

use std::io::{self, Write};

use mediagate_audio::Timestamp;
use mediagate_pipeline::{
    Context, Event, Input, Processor, ProcessorError, Transcript, TranscriptStatus, TranscriptWord,
};
use serde::{Deserialize, Serialize};

use super::lines::RecordFile;
use super::{Errors, Folder};
use crate::BuildError;

/// How the `transcript` processor writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscriptSettings {
    /// Also write transcript.vtt (final results as WebVTT cues).
    pub vtt: bool,
}

impl Default for TranscriptSettings {
    fn default() -> Self {
        TranscriptSettings { vtt: true }
    }
}

/// Writes every transcription result of the call (the platform's, and any engine's) to
/// transcript.jsonl, and final ones to transcript.vtt. Files are created with the first result.
pub struct TranscriptWriter {
    settings: TranscriptSettings,
    files: Option<TranscriptFiles>,
    errors: Errors,
    results: u64,
}

impl TranscriptWriter {
    /// A writer with these settings.
    pub fn new(settings: TranscriptSettings) -> Self {
        TranscriptWriter {
            settings,
            files: None,
            errors: Errors::default(),
            results: 0,
        }
    }

    /// Builds it from its config table.
    pub fn from_settings(settings: &serde_json::Value) -> Result<Self, BuildError> {
        Ok(Self::new(crate::settings::parse("transcript", settings)?))
    }

    fn write(&mut self, transcript: &Transcript, ctx: &mut Context) -> io::Result<()> {
        if ctx.call().folder.is_none() {
            return Ok(());
        }
        let files = match &mut self.files {
            Some(files) => files,
            None => self
                .files
                .insert(TranscriptFiles::create(ctx, self.settings.vtt)?),
        };
        files.write(transcript)
    }
}

impl Processor for TranscriptWriter {
    fn input(&self) -> Input {
        // It records the engines' transcripts: its end waits for theirs, so the last
        // utterance is in the file.
        Input {
            after_emitters: true,
            ..super::event_log_input()
        }
    }

    fn on_event(&mut self, event: &Event, ctx: &mut Context) -> Result<(), ProcessorError> {
        let Event::Transcript(t) = event else {
            return Ok(());
        };
        self.results += 1;
        self.write(t, ctx).map_err(|e| self.errors.skip(&e))
    }

    fn flush(&mut self, _ctx: &mut Context) -> Result<(), ProcessorError> {
        match &mut self.files {
            Some(files) => files.flush().map_err(|e| self.errors.skip(&e)),
            None => Ok(()),
        }
    }

    fn finish(&mut self, ctx: &mut Context) -> Result<(), ProcessorError> {
        self.flush(ctx)
    }

    fn report(&self) -> Option<serde_json::Value> {
        let mut report = serde_json::json!({ "results": self.results });
        self.errors.add_to(&mut report);
        // A failed write (a full disk): what each file lost.
        if let Some(files) = &self.files {
            files.jsonl.add_to(&mut report, "");
            if let Some(vtt) = &files.vtt {
                vtt.add_to(&mut report, "vtt_");
            }
        }
        Some(report)
    }
}

/// The transcript files of a call. Each keeps whole records only: on a full disk it is cut
/// back to its last complete line (or cue) and stops.
struct TranscriptFiles {
    jsonl: RecordFile,
    vtt: Option<RecordFile>,
    cues: u64,
    /// The record being made, reused.
    record: Vec<u8>,
}

/// One line of `transcript.jsonl`: the pipeline's [`Transcript`], times in ms on the call's
/// timeline.
#[derive(Serialize)]
struct TranscriptLine<'a> {
    /// Who produced the text: `acs` for the platform's transcription stream, else the engine.
    source: &'a str,
    status: TranscriptStatus,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    speaker: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confidence: Option<f64>,
    start_ms: u64,
    end_ms: u64,
    words: Vec<WordLine<'a>>,
    received_at: Timestamp,
}

/// A word of a [`TranscriptLine`].
#[derive(Serialize)]
struct WordLine<'a> {
    text: &'a str,
    start_ms: u64,
    end_ms: u64,
}

impl TranscriptFiles {
    fn create(folder: &mut dyn Folder, vtt: bool) -> io::Result<Self> {
        let (jsonl, _) = folder.create("transcript", "jsonl")?;
        let vtt = if vtt {
            let (file, _) = folder.create("transcript", "vtt")?;
            let mut vtt = RecordFile::new(file);
            vtt.append(b"WEBVTT\n")?;
            Some(vtt)
        } else {
            None
        };
        Ok(TranscriptFiles {
            jsonl: RecordFile::new(jsonl),
            vtt,
            cues: 0,
            record: Vec::new(),
        })
    }

    fn write(&mut self, t: &Transcript) -> io::Result<()> {
        let line = TranscriptLine {
            source: &t.source,
            status: t.status,
            text: &t.text,
            speaker: t.speaker.as_deref(),
            confidence: t.confidence,
            start_ms: t.start_ms,
            end_ms: t.end_ms(),
            words: t
                .words
                .iter()
                .map(|w| WordLine {
                    text: &w.text,
                    start_ms: w.start_ms,
                    end_ms: w.start_ms.saturating_add(w.duration_ms),
                })
                .collect(),
            received_at: t.received_at,
        };
        let record = &mut self.record;
        record.clear();
        serde_json::to_writer(&mut *record, &line).map_err(io::Error::other)?;
        record.push(b'\n');
        // Both files are written even if one fails: each stops on its own.
        let jsonl = self.jsonl.append(record);
        let Some(vtt) = &mut self.vtt else {
            return jsonl;
        };
        if t.is_final() && !t.text.trim().is_empty() {
            for cue in cues(&t.text, t.start_ms, t.end_ms(), &t.words) {
                self.cues += 1;
                let end_ms = cue.end_ms.max(cue.start_ms.saturating_add(1));
                record.clear();
                write!(
                    record,
                    "\n{}\n{} --> {}\n",
                    self.cues,
                    vtt_time(cue.start_ms),
                    vtt_time(end_ms)
                )?;
                if let Some(who) = &t.speaker {
                    write!(record, "<v {}>", escape_vtt(who))?;
                }
                writeln!(record, "{}", escape_vtt(&cue.text))?;
                vtt.append(record)?;
            }
        }
        jsonl
    }

    fn flush(&mut self) -> io::Result<()> {
        let jsonl = self.jsonl.flush();
        match &mut self.vtt {
            Some(vtt) => jsonl.and(vtt.flush()),
            None => jsonl,
        }
    }
}

/// A silence between two words longer than this ends a cue.
const CUE_PAUSE_MS: u64 = 500;
/// A cue lasts at most this long, unless one word alone is longer.
const MAX_CUE_MS: u64 = 7_000;
/// A cue holds at most this many characters, unless one word alone has more.
const MAX_CUE_CHARS: usize = 80;

/// One WebVTT cue: text and when it is on screen, in ms on the call's timeline.
#[derive(Debug, PartialEq)]
struct Cue {
    start_ms: u64,
    end_ms: u64,
    text: String,
}

/// The cues of a final result: `text` from `start_ms` to `end_ms`, with its `words`.
///
/// When the words are the text's own (as many as its space-separated pieces: Whisper's and
/// PocketSphinx's are), the text is cut after each sentence (`.`, `?`, `!`), at each pause of
/// more than [`CUE_PAUSE_MS`], and wherever a cue would last more than [`MAX_CUE_MS`] or hold
/// more than [`MAX_CUE_CHARS`] characters; each cue spans its words. Otherwise (no words, or
/// the platform's lexical words under a display text that differs) the whole result is one
/// cue.
fn cues(text: &str, start_ms: u64, end_ms: u64, words: &[TranscriptWord]) -> Vec<Cue> {
    let pieces: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || pieces.len() != words.len() {
        return vec![Cue {
            start_ms,
            end_ms,
            text: text.trim().to_owned(),
        }];
    }
    let word_end = |w: &TranscriptWord| w.start_ms.saturating_add(w.duration_ms);
    let mut cues = Vec::new();
    let mut first = 0;
    for i in 0..words.len() {
        let next = i + 1;
        let ends = next == words.len() || {
            let chars = pieces[first..=next]
                .iter()
                .map(|p| p.chars().count() + 1)
                .sum::<usize>();
            ends_sentence(pieces[i])
                || words[next].start_ms.saturating_sub(word_end(&words[i])) > CUE_PAUSE_MS
                || word_end(&words[next]).saturating_sub(words[first].start_ms) > MAX_CUE_MS
                || chars - 1 > MAX_CUE_CHARS
        };
        if ends {
            cues.push(Cue {
                start_ms: words[first].start_ms,
                end_ms: word_end(&words[i]),
                text: pieces[first..next].join(" "),
            });
            first = next;
        }
    }
    cues
}

/// Whether `word` ends a sentence: `.`, `?` or `!`, maybe inside closing quotes or brackets.
fn ends_sentence(word: &str) -> bool {
    word.trim_end_matches(['"', '\'', '”', '’', ')', ']'])
        .ends_with(['.', '?', '!'])
}

/// `HH:MM:SS.mmm` from milliseconds.
fn vtt_time(ms: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        (ms / 60_000) % 60,
        (ms / 1_000) % 60,
        ms % 1_000
    )
}

/// Escapes what WebVTT cue text reserves (`&`, `<`, `>`; this also rules out `-->`), and folds
/// line breaks, which would end the cue.
fn escape_vtt(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtt_times_and_escapes() {
        assert_eq!(vtt_time(4_987), "00:00:04.987");
        assert_eq!(vtt_time(3_600_001), "01:00:00.001");
        assert_eq!(vtt_time(0), "00:00:00.000");
        assert_eq!(escape_vtt("a <b> & c\n-->"), "a &lt;b&gt; &amp; c --&gt;");
    }

    /// Words of `text`, one after another from `start_ms`, each `ms` long, with `gaps` (word
    /// index, ms of silence before it).
    fn timed(text: &str, start_ms: u64, ms: u64, gaps: &[(usize, u64)]) -> Vec<TranscriptWord> {
        let mut at = start_ms;
        text.split_whitespace()
            .enumerate()
            .map(|(i, w)| {
                at += gaps
                    .iter()
                    .filter(|(g, _)| *g == i)
                    .map(|(_, s)| s)
                    .sum::<u64>();
                let word = TranscriptWord {
                    text: w.to_owned(),
                    start_ms: at,
                    duration_ms: ms,
                };
                at += ms;
                word
            })
            .collect()
    }

    fn summary(cues: &[Cue]) -> Vec<(u64, u64, &str)> {
        cues.iter()
            .map(|c| (c.start_ms, c.end_ms, c.text.as_str()))
            .collect()
    }

    #[test]
    fn cues_break_at_sentence_ends_with_their_words_times() {
        let text = "Hello there. How are you? Fine!";
        let words = timed(text, 1_000, 200, &[]);
        assert_eq!(
            summary(&cues(text, 900, 3_000, &words)),
            [
                (1_000, 1_400, "Hello there."),
                (1_400, 2_000, "How are you?"),
                (2_000, 2_200, "Fine!")
            ]
        );
        // Closing quotes after the mark end a sentence too.
        let text = "He said \"go.\" Then left";
        let words = timed(text, 0, 100, &[]);
        assert_eq!(cues(text, 0, 500, &words).len(), 2);
    }

    #[test]
    fn cues_break_at_pauses() {
        let text = "one two three four";
        // 600 ms of silence before "three"; 400 ms before "four" is not a pause.
        let words = timed(text, 0, 300, &[(2, 600), (3, 400)]);
        assert_eq!(
            summary(&cues(text, 0, 3_000, &words)),
            [(0, 600, "one two"), (1_200, 2_200, "three four")]
        );
    }

    #[test]
    fn long_cues_are_cut_by_time_and_by_length() {
        // 20 words of 500 ms: at most 7 s (14 words) a cue.
        let text = vec!["word"; 20].join(" ");
        let words = timed(&text, 0, 500, &[]);
        let by_time = cues(&text, 0, 10_000, &words);
        assert_eq!(by_time.len(), 2, "{by_time:?}");
        assert!(by_time.iter().all(|c| c.end_ms - c.start_ms <= 7_000));
        assert_eq!(
            by_time
                .iter()
                .map(|c| c.text.split(' ').count())
                .sum::<usize>(),
            20
        );
        // 30 words of 100 ms (3 s), 9 characters each with the space: at most 80 a cue.
        let text = vec!["abcdefgh"; 30].join(" ");
        let words = timed(&text, 0, 100, &[]);
        let by_length = cues(&text, 0, 3_000, &words);
        assert!(
            by_length.iter().all(|c| c.text.len() <= 80),
            "{by_length:?}"
        );
        assert_eq!(by_length[0].text.len(), 80);
        assert_eq!(by_length.len(), 4);
        // A single word longer than a cue still gets one.
        let long = "x".repeat(100);
        let words = timed(&long, 0, 8_000, &[]);
        assert_eq!(
            summary(&cues(&long, 0, 8_000, &words)),
            [(0, 8_000, long.as_str())]
        );
    }

    #[test]
    fn without_matching_words_a_final_is_one_cue() {
        let text = "Hello, thank you. Goodbye.";
        assert_eq!(
            summary(&cues(text, 200, 1_700, &[])),
            [(200, 1_700, "Hello, thank you. Goodbye.")]
        );
        // The platform's lexical words under a display text: not the text's own.
        let words = timed("hello", 200, 300, &[]);
        assert_eq!(
            summary(&cues(text, 200, 1_700, &words)),
            [(200, 1_700, "Hello, thank you. Goodbye.")]
        );
    }
}
