//! A call's folder under the data dir: its name and its session.json.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::report::CallReport;

/// One call's folder. Shared (by `Arc`) between the transports of the same call.
#[derive(Debug)]
pub(crate) struct CallFolder {
    name: String,
    dir: PathBuf,
    /// What session.json says. Locked only for short, synchronous updates; never across an
    /// `.await`, never during file I/O.
    pub(crate) report: Mutex<CallReport>,
    /// Numbers each serialized snapshot of `report`, in the order of the updates.
    snapshots: AtomicU64,
    /// Serializes writes of session.json; holds the number of the snapshot on disk, so an older
    /// snapshot that lost the race never overwrites a newer one.
    written: Mutex<u64>,
}

impl CallFolder {
    pub(crate) fn new(name: String, dir: PathBuf, report: CallReport) -> Self {
        CallFolder {
            name,
            dir,
            report: Mutex::new(report),
            snapshots: AtomicU64::new(0),
            written: Mutex::new(0),
        }
    }

    /// The folder's name (the call id used in logs and paths).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The folder's path.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes session.json atomically (temporary file, then rename). Blocking: call it from a
    /// blocking thread.
    pub(crate) fn write_report(&self) -> io::Result<()> {
        let (number, json) = {
            let report = self.report.lock().unwrap_or_else(|p| p.into_inner());
            let number = self.snapshots.fetch_add(1, Ordering::Relaxed) + 1;
            let json = serde_json::to_vec_pretty(&*report).map_err(io::Error::other)?;
            (number, json)
        };
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if *written > number {
            return Ok(()); // a newer snapshot is already on disk
        }
        let tmp = self.dir.join(".session.json.tmp");
        {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&json)?;
            file.write_all(b"\n")?;
            file.sync_data()?;
        }
        std::fs::rename(&tmp, self.dir.join("session.json"))?;
        *written = number;
        Ok(())
    }
}
