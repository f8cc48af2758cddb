//! A call's folder under the data dir: its name and its session.json.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::report::{CallReport, CallStatus};
use crate::compliance::chain::Chain;

/// A file of this many bytes is kept in every live call's folder and given up when the disk is
/// full, so the call's last session.json can still be written (it is a few KiB), then removed
/// when the call ends.
const RESERVE_BYTES: usize = 64 * 1024;
/// The reserve's name (hidden; `mediagate repair` removes one left by a crash).
pub(crate) const RESERVE_FILE: &str = ".reserve";

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
    /// Serializes writes of session.json (and the seal); holds the number of the snapshot on
    /// disk, so an older snapshot that lost the race never overwrites a newer one.
    written: Mutex<Written>,
    /// Where the seal is recorded.
    chain: Arc<Chain>,
}

/// What is on disk.
#[derive(Debug, Default)]
struct Written {
    /// The number of the snapshot in session.json.
    snapshot: u64,
    /// The folder has its manifest: its files, session.json among them, are not written again.
    sealed: bool,
}

impl CallFolder {
    pub(crate) fn new(name: String, dir: PathBuf, report: CallReport, chain: Arc<Chain>) -> Self {
        CallFolder {
            name,
            dir,
            report: Mutex::new(report),
            snapshots: AtomicU64::new(0),
            written: Mutex::new(Written::default()),
            chain,
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

    /// Keeps [`RESERVE_BYTES`] of the disk for this call's last session.json. Blocking.
    pub(crate) fn reserve_space(&self) -> io::Result<()> {
        std::fs::write(self.dir.join(RESERVE_FILE), vec![0u8; RESERVE_BYTES])
    }

    /// Writes session.json atomically (temporary file, then rename). On a full disk, the
    /// folder's reserve is given up and the write tried once more. Once the call has ended and
    /// no processor works (every file final, this the last session.json), the reserve is
    /// removed and the folder sealed: its manifest.json, and its entry in the hash chain.
    /// Blocking (the seal hashes every file): call it from a blocking thread.
    pub(crate) fn write_report(&self) -> io::Result<()> {
        let (number, json, ended) = {
            let report = self.report.lock().unwrap_or_else(|p| p.into_inner());
            let number = self.snapshots.fetch_add(1, Ordering::Relaxed) + 1;
            let json = serde_json::to_vec_pretty(&*report).map_err(io::Error::other)?;
            // The reserve stays while a processor still works: its report is still to come.
            let working = report
                .transports
                .iter()
                .any(|t| t.processors.iter().any(|p| p.working));
            (number, json, report.status != CallStatus::Live && !working)
        };
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if written.snapshot > number {
            return Ok(()); // a newer snapshot is already on disk
        }
        if written.sealed {
            // Every snapshot taken once the call has ended says the same: the sealed one stands.
            tracing::debug!(call = %self.name, "session.json not written again after the seal");
            return Ok(());
        }
        let reserve = self.dir.join(RESERVE_FILE);
        let result = match self.write_json(&json) {
            Err(e) if e.kind() == io::ErrorKind::StorageFull && reserve.exists() => {
                tracing::warn!(call = %self.name, "disk full: the call's reserve is given up for its session.json");
                std::fs::remove_file(&reserve)?;
                self.write_json(&json)
            }
            result => result,
        };
        result?;
        written.snapshot = number;
        if ended {
            match std::fs::remove_file(&reserve) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            written.sealed = true;
            if let Err(e) =
                crate::compliance::manifest::seal(&self.dir, &self.name, &self.chain, false)
            {
                // `mediagate verify` reports the call unsealed; `mediagate repair` seals it.
                tracing::error!(call = %self.name, error = %e, "cannot seal the call folder");
            }
        }
        Ok(())
    }

    /// session.json from `json`, through a temporary file and a rename.
    fn write_json(&self, json: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(".session.json.tmp");
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(json)?;
            file.write_all(b"\n")?;
            file.sync_data()
        })();
        if let Err(e) = written {
            // A torn temporary file only takes space.
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, self.dir.join("session.json"))
    }
}
