//! The free-disk floor (`recording.min_free_bytes`): the data dir's free space, read once a
//! second off the async threads, so an upgrade can be refused without a syscall of its own.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often free space is read.
const EVERY: Duration = Duration::from_secs(1);

/// The data dir's free bytes as last read (`u64::MAX` until the first read, or when it fails:
/// the floor never refuses calls on a reading it does not have).
#[derive(Debug)]
pub(crate) struct DiskWatch {
    free_bytes: AtomicU64,
}

impl DiskWatch {
    pub(crate) fn new() -> Self {
        DiskWatch {
            free_bytes: AtomicU64::new(u64::MAX),
        }
    }

    /// Free bytes at the last reading.
    pub(crate) fn free_bytes(&self) -> u64 {
        self.free_bytes.load(Ordering::Relaxed)
    }

    /// Reads `dir`'s free space every second until `stop`.
    pub(crate) async fn run(self: Arc<Self>, dir: PathBuf, stop: CancellationToken) {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let path = dir.clone();
            let read = tokio::task::spawn_blocking(move || {
                mediagate_processors::record::free_bytes(&path)
            })
            .await;
            let free = match read {
                Ok(Ok(free)) => free,
                _ => u64::MAX,
            };
            self.free_bytes.store(free, Ordering::Relaxed);
        }
    }
}
