//! The `transcript` processor: transcript.jsonl (every result, partial and final, from every
//! source) and transcript.vtt (finals, WebVTT), on the call's timeline in milliseconds.

use std::io::{self, Write};

use mediagate_audio::Timestamp;
use mediagate_pipeline::{
    Context, Event, Input, Processor, ProcessorError, Transcript, TranscriptStatus,
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
            self.cues += 1;
            let end_ms = t.end_ms().max(t.start_ms.saturating_add(1));
            record.clear();
            write!(
                record,
                "\n{}\n{} --> {}\n",
                self.cues,
                vtt_time(t.start_ms),
                vtt_time(end_ms)
            )?;
            if let Some(who) = &t.speaker {
                write!(record, "<v {}>", escape_vtt(who))?;
            }
            writeln!(record, "{}", escape_vtt(t.text.trim()))?;
            vtt.append(record)?;
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
}
