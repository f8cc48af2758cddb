//! transcript.jsonl (every result, intermediate and final) and transcript.vtt (finals, WebVTT),
//! plus dtmf.jsonl.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use mediagate_protocol::{ResultStatus, Timestamp, TranscriptionData};
use serde::Serialize;

use super::folder::CallFolder;

/// 100 ns ticks per second, the unit of transcription offsets.
const TICKS_PER_SEC: i64 = 10_000_000;

/// The two transcript files of a call.
pub(crate) struct TranscriptFiles {
    jsonl: BufWriter<File>,
    vtt: BufWriter<File>,
    cues: u64,
    pub(crate) files: [String; 2],
}

#[derive(Serialize)]
struct TranscriptLine<'a> {
    /// Who produced the text: `acs` for the platform's transcription stream.
    source: &'static str,
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
    pub(crate) fn create(folder: &CallFolder) -> io::Result<Self> {
        let jsonl_name = folder.claim_file("transcript", "jsonl");
        let vtt_name = folder.claim_file("transcript", "vtt");
        let jsonl = BufWriter::new(File::create(folder.dir().join(&jsonl_name))?);
        let mut vtt = BufWriter::new(File::create(folder.dir().join(&vtt_name))?);
        vtt.write_all(b"WEBVTT\n")?;
        Ok(TranscriptFiles {
            jsonl,
            vtt,
            cues: 0,
            files: [jsonl_name, vtt_name],
        })
    }

    pub(crate) fn write(
        &mut self,
        data: &TranscriptionData,
        received_at: Timestamp,
    ) -> io::Result<()> {
        let end_ticks = data.offset_ticks.saturating_add(data.duration_ticks);
        let line = TranscriptLine {
            source: "acs",
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
        serde_json::to_writer(&mut self.jsonl, &line).map_err(io::Error::other)?;
        self.jsonl.write_all(b"\n")?;
        if data.result_status == ResultStatus::Final && !data.text.trim().is_empty() {
            self.cues += 1;
            let end_ticks = end_ticks.max(data.offset_ticks.saturating_add(1));
            write!(
                self.vtt,
                "\n{}\n{} --> {}\n",
                self.cues,
                vtt_time(data.offset_ticks),
                vtt_time(end_ticks)
            )?;
            if let Some(who) = &data.participant_raw_id {
                write!(self.vtt, "<v {}>", escape_vtt(who))?;
            }
            writeln!(self.vtt, "{}", escape_vtt(data.text.trim()))?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.jsonl.flush()?;
        self.vtt.flush()
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

/// dtmf.jsonl.
pub(crate) struct DtmfLog {
    file: BufWriter<File>,
    pub(crate) name: String,
}

#[derive(Serialize)]
struct DtmfLine<'a> {
    tone: &'a str,
    received_at: Timestamp,
    /// Position on the call's audio timeline (ms since its first frame), when audio has arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    call_offset_ms: Option<i64>,
}

impl DtmfLog {
    pub(crate) fn create(folder: &CallFolder) -> io::Result<Self> {
        let name = folder.claim_file("dtmf", "jsonl");
        let file = BufWriter::new(File::create(folder.dir().join(&name))?);
        Ok(DtmfLog { file, name })
    }

    pub(crate) fn write(
        &mut self,
        tone: &str,
        received_at: Timestamp,
        call_offset_ms: Option<i64>,
    ) -> io::Result<()> {
        let line = DtmfLine {
            tone,
            received_at,
            call_offset_ms,
        };
        serde_json::to_writer(&mut self.file, &line).map_err(io::Error::other)?;
        self.file.write_all(b"\n")
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
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
