//! The `dtmf` processor: dtmf.jsonl, one line per key the caller pressed, placed on the call's
//! audio timeline.

use std::io;

use mediagate_pipeline::{Context, Dtmf, Event, Input, Processor, ProcessorError};
use mediagate_protocol::Timestamp;
use serde::Serialize;

use super::lines::RecordFile;
use super::{Errors, Folder};
use crate::BuildError;

/// Writes every DTMF tone of the call to dtmf.jsonl (created with the first tone). On a full
/// disk the file is cut back to its last whole line and the writer stops; the report says
/// what was lost.
#[derive(Default)]
pub struct DtmfWriter {
    file: Option<RecordFile>,
    errors: Errors,
    tones: u64,
    /// The line being made, reused.
    line: Vec<u8>,
}

#[derive(Serialize)]
struct DtmfLine<'a> {
    tone: &'a str,
    received_at: Timestamp,
    /// Position on the call's audio timeline (ms since its first frame), when audio has arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    call_offset_ms: Option<u64>,
}

impl DtmfWriter {
    /// Builds it from its config table (it has no settings).
    pub fn from_settings(settings: &serde_json::Value) -> Result<Self, BuildError> {
        mediagate_pipeline::Settings::new("dtmf", settings).none()?;
        Ok(DtmfWriter::default())
    }

    fn write(&mut self, dtmf: &Dtmf, folder: &mut Context) -> io::Result<()> {
        if folder.call().folder.is_none() {
            return Ok(());
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let (file, _) = Folder::create(folder, "dtmf", "jsonl")?;
                self.file.insert(RecordFile::new(file))
            }
        };
        let line = DtmfLine {
            tone: &dtmf.tone,
            received_at: dtmf.received_at,
            call_offset_ms: dtmf
                .call_offset
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        self.line.clear();
        serde_json::to_writer(&mut self.line, &line).map_err(io::Error::other)?;
        self.line.push(b'\n');
        file.append(&self.line)
    }
}

impl Processor for DtmfWriter {
    fn input(&self) -> Input {
        super::event_log_input()
    }

    fn on_event(&mut self, event: &Event, ctx: &mut Context) -> Result<(), ProcessorError> {
        let Event::Dtmf(dtmf) = event else {
            return Ok(());
        };
        self.tones += 1;
        self.write(dtmf, ctx).map_err(|e| self.errors.skip(&e))
    }

    fn flush(&mut self, _ctx: &mut Context) -> Result<(), ProcessorError> {
        match &mut self.file {
            Some(file) => file.flush().map_err(|e| self.errors.skip(&e)),
            None => Ok(()),
        }
    }

    fn finish(&mut self, ctx: &mut Context) -> Result<(), ProcessorError> {
        self.flush(ctx)
    }

    fn report(&self) -> Option<serde_json::Value> {
        let mut report = serde_json::json!({ "tones": self.tones });
        self.errors.add_to(&mut report);
        if let Some(file) = &self.file {
            file.add_to(&mut report, "");
        }
        Some(report)
    }
}
