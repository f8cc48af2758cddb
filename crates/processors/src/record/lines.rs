//! An append-only file of records (JSON lines, WebVTT cues) that stays whole: a failed write
//! (a full disk) cuts it back to the last complete record on disk, and it takes nothing more.

use std::fs::File;
use std::io::{self, BufWriter, Write};

/// What a [`RecordFile`] needs of the file under it: its length on disk, and a way to cut it.
pub(super) trait Truncate: Write {
    /// Bytes in the file.
    fn size(&mut self) -> io::Result<u64>;
    /// Cuts the file to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

impl Truncate for File {
    fn size(&mut self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

/// A file of whole records, buffered. After a failed write or flush it is sealed: cut to the
/// last record wholly on disk, and what is appended later is only counted.
pub(super) struct RecordFile<F: Truncate = File> {
    /// `None` once sealed.
    writer: Option<BufWriter<F>>,
    /// Bytes of complete records handed to the writer.
    written: u64,
    /// Everything before this is on disk (the last successful flush).
    flushed: u64,
    /// Where each record handed over since the last successful flush ends.
    ends: Vec<u64>,
    /// Records (and their bytes) not in the file: torn off at the seal, or appended after.
    lost_records: u64,
    lost_bytes: u64,
    /// Why it was sealed.
    error: Option<String>,
}

impl<F: Truncate> RecordFile<F> {
    pub(super) fn new(file: F) -> Self {
        RecordFile {
            writer: Some(BufWriter::new(file)),
            written: 0,
            flushed: 0,
            ends: Vec::new(),
            lost_records: 0,
            lost_bytes: 0,
            error: None,
        }
    }

    /// Appends one whole record. After a failure the file is sealed, and this (and every
    /// later record) is counted as lost.
    pub(super) fn append(&mut self, record: &[u8]) -> io::Result<()> {
        let len = record.len() as u64;
        let Some(writer) = &mut self.writer else {
            self.lost_records += 1;
            self.lost_bytes += len;
            return Ok(());
        };
        match writer.write_all(record) {
            Ok(()) => {
                self.written += len;
                self.ends.push(self.written);
                Ok(())
            }
            Err(e) => {
                self.lost_records += 1;
                self.lost_bytes += len;
                self.seal(&e);
                Err(e)
            }
        }
    }

    /// Writes what is buffered; a failure seals the file.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        let Some(writer) = &mut self.writer else {
            return Ok(());
        };
        match writer.flush() {
            Ok(()) => {
                self.flushed = self.written;
                self.ends.clear();
                Ok(())
            }
            Err(e) => {
                self.seal(&e);
                Err(e)
            }
        }
    }

    /// Stops writing and cuts the file to the last record wholly on disk.
    fn seal(&mut self, error: &io::Error) {
        self.error = Some(error.to_string());
        let Some(writer) = self.writer.take() else {
            return;
        };
        // Not flushed again: what the buffer holds is lost.
        let (mut file, _unwritten) = writer.into_parts();
        let on_disk = file.size().unwrap_or(self.flushed);
        let keep = self
            .ends
            .iter()
            .rev()
            .copied()
            .find(|&end| end <= on_disk)
            .unwrap_or(self.flushed);
        if on_disk > keep
            && let Err(e) = file.truncate(keep)
        {
            tracing::error!(error = %e, "cannot cut a record file back to its last whole record");
        }
        self.lost_records += self.ends.iter().filter(|&&end| end > keep).count() as u64;
        self.lost_bytes += self.written - keep;
        self.ends = Vec::new();
    }

    /// Adds `stopped` (the error), `lost_records` and `lost_bytes` to a report, if sealed.
    pub(super) fn add_to(&self, report: &mut serde_json::Value, prefix: &str) {
        if let Some(error) = &self.error {
            report[format!("{prefix}stopped")] =
                serde_json::json!(format!("write failed: {error}"));
            report[format!("{prefix}lost_records")] = serde_json::json!(self.lost_records);
            report[format!("{prefix}lost_bytes")] = serde_json::json!(self.lost_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk with `room` bytes: a write past it is torn there, then fails.
    struct SmallDisk {
        data: Vec<u8>,
        room: usize,
    }

    impl Write for SmallDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room - self.data.len());
            if n == 0 && !buf.is_empty() {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Truncate for &mut SmallDisk {
        fn size(&mut self) -> io::Result<u64> {
            Ok(self.data.len() as u64)
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.data.truncate(len as usize);
            Ok(())
        }
    }

    #[test]
    fn a_full_disk_keeps_whole_records_only_and_counts_the_rest() {
        let mut disk = SmallDisk {
            data: Vec::new(),
            room: 1_000,
        };
        let mut file = RecordFile::new(&mut disk);
        let mut failed = 0;
        for i in 0..100 {
            let line = format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(30));
            if file.append(line.as_bytes()).is_err() {
                failed += 1;
            }
            if i % 7 == 6 && file.flush().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 1);
        let mut report = serde_json::json!({});
        file.add_to(&mut report, "");
        let lost = report["lost_records"].as_u64().unwrap();
        drop(file);
        // Whole lines only, each one valid, and all 100 are either there or counted.
        let text = String::from_utf8(disk.data).unwrap();
        assert!(text.ends_with('\n'));
        let kept = text.lines().count() as u64;
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        assert_eq!(kept + lost, 100, "{report}");
        assert!(kept > 0 && text.len() <= 1_000);
        assert_eq!(report["stopped"], "write failed: disk full");
    }
}
