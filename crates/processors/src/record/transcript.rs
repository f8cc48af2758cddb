//! The `transcript` processor: transcript.jsonl (every result, intermediate and final, from
//! every source) and transcript.vtt (finals, WebVTT).

use std::io::{self, Write};

use mediagate_pipeline::{Context, Event, Input, Processor, ProcessorError};
use mediagate_protocol::{ResultStatus, Timestamp, TranscriptionData};
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

    fn write(
        &mut self,
        source: &str,
        data: &TranscriptionData,
        received_at: Timestamp,
        ctx: &mut Context,
    ) -> io::Result<()> {
        if ctx.call().folder.is_none() {
            return Ok(());
        }
        let files = match &mut self.files {
            Some(files) => files,
            None => self
                .files
                .insert(TranscriptFiles::create(ctx, self.settings.vtt)?),
        };
        files.write(source, data, received_at)
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
        self.write(&t.source, &t.data, t.received_at, ctx)
            .map_err(|e| self.errors.skip(&e))
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

/// 100 ns ticks per second, the unit of transcription offsets.
const TICKS_PER_SEC: i64 = 10_000_000;

/// The transcript files of a call. Each keeps whole records only: on a full disk it is cut
/// back to its last complete line (or cue) and stops.
struct TranscriptFiles {
    jsonl: RecordFile,
    vtt: Option<RecordFile>,
    cues: u64,
    /// The record being made, reused.
    record: Vec<u8>,
}

#[derive(Serialize)]
struct TranscriptLine<'a> {
    /// Who produced the text: `acs` for the platform's transcription stream, else the engine.
    source: &'a str,
    status: &'static str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    participant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confidence: Option<f64>,
    start_secs: f64,
    end_secs: f64,
    offset_ticks: i64,
    duration_ticks: i64,
    words: &'a [mediagate_protocol::Word],
    received_at: Timestamp,
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

    fn write(
        &mut self,
        source: &str,
        data: &TranscriptionData,
        received_at: Timestamp,
    ) -> io::Result<()> {
        let end_ticks = data.offset_ticks.saturating_add(data.duration_ticks);
        let line = TranscriptLine {
            source,
            status: match data.result_status {
                ResultStatus::Final => "final",
                ResultStatus::Intermediate => "intermediate",
            },
            text: &data.text,
            participant: data.participant_raw_id.as_deref(),
            confidence: data.confidence,
            start_secs: data.offset_ticks as f64 / TICKS_PER_SEC as f64,
            end_secs: end_ticks as f64 / TICKS_PER_SEC as f64,
            offset_ticks: data.offset_ticks,
            duration_ticks: data.duration_ticks,
            words: &data.words,
            received_at,
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
        if data.result_status == ResultStatus::Final && !data.text.trim().is_empty() {
            self.cues += 1;
            let end_ticks = end_ticks.max(data.offset_ticks.saturating_add(1));
            record.clear();
            write!(
                record,
                "\n{}\n{} --> {}\n",
                self.cues,
                vtt_time(data.offset_ticks),
                vtt_time(end_ticks)
            )?;
            if let Some(who) = &data.participant_raw_id {
                write!(record, "<v {}>", escape_vtt(who))?;
            }
            writeln!(record, "{}", escape_vtt(data.text.trim()))?;
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

/// `HH:MM:SS.mmm` from 100 ns ticks (negative clamps to zero).
fn vtt_time(ticks: i64) -> String {
    let ms = ticks.max(0) / 10_000;
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
        assert_eq!(vtt_time(49_876_484), "00:00:04.987");
        assert_eq!(vtt_time(36_000_000_000 + 10_000), "01:00:00.001");
        assert_eq!(vtt_time(-5), "00:00:00.000");
        assert_eq!(escape_vtt("a <b> & c\n-->"), "a &lt;b&gt; &amp; c --&gt;");
    }
}
