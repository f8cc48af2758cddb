//! Retention (`recording.retention_days`): call folders whose call ended longer ago than that
//! are deleted, each after a `deleted` entry in the hash chain, by a background task that
//! passes once at start and then every hour (every quarter of the retention when shorter).

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mediagate_protocol::Timestamp;
use serde_json::Value;

use super::chain::{Chain, Record};
use super::manifest::MANIFEST_FILE;
use crate::AppState;

/// Most call folders one pass deletes; when it reaches it, the next pass comes at once (after
/// [`CATCH_UP`]), so a backlog is worked off in bounded steps.
pub(crate) const MAX_DELETIONS_PER_PASS: usize = 256;
/// The pause between passes while a backlog is worked off.
const CATCH_UP: Duration = Duration::from_secs(1);
/// The longest pause between passes.
const MAX_INTERVAL: Duration = Duration::from_secs(3_600);
/// The shortest.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// What one pass did.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    /// The folders deleted.
    pub(crate) deleted: Vec<String>,
    /// It stopped at [`MAX_DELETIONS_PER_PASS`]: more may be due.
    pub(crate) more: bool,
}

/// The pause between passes for a retention of `keep`.
pub(crate) fn interval(keep: Duration) -> Duration {
    (keep / 4).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Deletes, every [`interval`], the calls that ended longer than `keep` ago, until the
/// gateway drains.
pub(crate) async fn run(app: Arc<AppState>, keep: Duration) {
    let data_dir = app.config.data_dir.clone();
    let stop = app.draining.clone();
    loop {
        let (dir, registry, chain) = (
            data_dir.clone(),
            Arc::clone(&app.registry),
            Arc::clone(&app.chain),
        );
        let pass = tokio::task::spawn_blocking(move || {
            let now = Timestamp::now();
            sweep(
                &dir,
                keep,
                now,
                &chain,
                |name| registry.holds(name),
                MAX_DELETIONS_PER_PASS,
            )
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
        let pause = match pass {
            Ok(pass) => {
                if !pass.deleted.is_empty() {
                    tracing::info!(
                        calls = pass.deleted.len(),
                        more = pass.more,
                        "retention: call folders deleted"
                    );
                }
                if pass.more { CATCH_UP } else { interval(keep) }
            }
            Err(e) => {
                tracing::error!(error = %e, "retention pass failed");
                interval(keep)
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One pass over `data_dir`: deletes up to `max` call folders whose call ended more than `keep`
/// before `now`, each after a `deleted` entry in `chain`. Never one that `live` names, one whose
/// session.json says `live`, or one with a processor still working. Blocking.
pub(crate) fn sweep(
    data_dir: &Path,
    keep: Duration,
    now: Timestamp,
    chain: &Chain,
    live: impl Fn(&str) -> bool,
    max: usize,
) -> io::Result<Pass> {
    let keep_micros = i64::try_from(keep.as_micros()).unwrap_or(i64::MAX);
    let cutoff = now.add_micros(keep_micros.saturating_neg());
    let mut pass = Pass::default();
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type()?.is_dir() || live(&name) {
            continue;
        }
        // The folder changes with each session.json write and with the seal, so a folder
        // changed after the cutoff holds a call that ended after it: skipped unread.
        if entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|m| micros(m) > cutoff)
        {
            continue;
        }
        let dir = entry.path();
        if !expired(&dir, cutoff) {
            continue;
        }
        if pass.deleted.len() >= max {
            pass.more = true;
            break;
        }
        let manifest_sha256 = match fs::read(dir.join(MANIFEST_FILE)) {
            Ok(bytes) => Some(super::sha256_hex(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        // The entry first: a crash before the removal leaves a folder the chain says is
        // deleted (verify notes it; the next pass removes it), never a silent gap.
        chain.append(
            Record::Deleted {
                call: &name,
                manifest_sha256: manifest_sha256.as_deref(),
            },
            Timestamp::now(),
        )?;
        fs::remove_dir_all(&dir)?;
        pass.deleted.push(name);
    }
    Ok(pass)
}

/// Whether the call in `dir` ended before `cutoff` and is final: its session.json says
/// `ended` or `interrupted`, no processor is still working, and its `ended_at` (else, for an
/// interrupted call without one, session.json's modification time) is before the cutoff.
fn expired(dir: &Path, cutoff: Timestamp) -> bool {
    let path = dir.join("session.json");
    let Some(session) = fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
    else {
        return false;
    };
    let final_status = session["status"] == "ended" || session["status"] == "interrupted";
    if !final_status || crate::repair::still_working(&session) {
        return false;
    }
    let ended = match session["ended_at"].as_str() {
        Some(text) => Timestamp::parse_rfc3339(text).ok(),
        None => fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .map(micros),
    };
    ended.is_some_and(|ended| ended < cutoff)
}

fn micros(at: SystemTime) -> Timestamp {
    let micros = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    Timestamp::from_unix_micros(micros)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;
    use crate::compliance::chain::{CallState, audit};

    fn call(data: &Path, name: &str, status: &str, ended_at: &str, working: bool) {
        let dir = data.join(name);
        fs::create_dir_all(&dir).unwrap();
        let session = serde_json::json!({
            "call_id": name,
            "status": status,
            "ended_at": ended_at,
            "transports": [{"processors": [{"name": "whisper", "working": working}]}],
        });
        fs::write(dir.join("session.json"), session.to_string()).unwrap();
        fs::write(dir.join("mixed.wav"), b"RIFF").unwrap();
    }

    #[test]
    fn only_final_calls_past_the_retention_are_deleted_each_after_its_entry() {
        let data = tempfile::tempdir().unwrap();
        let old = "2020-01-01T00:00:00.000Z";
        call(data.path(), "old", "ended", old, false);
        call(
            data.path(),
            "recent",
            "ended",
            "2099-12-31T12:00:00.000Z",
            false,
        );
        call(data.path(), "live", "live", old, false);
        call(data.path(), "another", "ended", old, false);
        call(data.path(), "registered", "ended", old, false);
        call(data.path(), "killed", "interrupted", old, false);
        call(data.path(), "finishing", "ended", old, true);
        fs::create_dir_all(data.path().join("lost+found")).unwrap();
        let chain = Chain::new(data.path());
        crate::compliance::manifest::seal(&data.path().join("old"), "old", &chain, false).unwrap();
        // Far ahead, so the folders made now are older than the cutoff.
        let now = Timestamp::parse_rfc3339("2100-01-01T00:00:00Z").unwrap();
        let keep = Duration::from_secs(86_400);
        let pass = sweep(data.path(), keep, now, &chain, |n| n == "registered", 1).unwrap();
        assert_eq!(pass.deleted.len(), 1);
        assert!(pass.more, "one per pass here: more are due");
        let pass2 = sweep(data.path(), keep, now, &chain, |n| n == "registered", 10).unwrap();
        let mut deleted = [pass.deleted, pass2.deleted].concat();
        deleted.sort();
        assert_eq!(deleted, ["another", "killed", "old"]);
        for kept in ["recent", "live", "registered", "finishing", "lost+found"] {
            assert!(data.path().join(kept).exists(), "{kept}");
        }
        let audit = audit(data.path()).unwrap();
        assert!(audit.faults.is_empty(), "{:?}", audit.faults);
        match &audit.calls["old"] {
            CallState::Deleted {
                manifest_sha256: Some(_),
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            audit.calls["killed"],
            CallState::Deleted {
                manifest_sha256: None,
                ..
            }
        ));
    }

    #[test]
    fn the_pause_between_passes() {
        assert_eq!(interval(Duration::from_secs(30 * 86_400)), MAX_INTERVAL);
        assert_eq!(interval(Duration::from_secs(8)), Duration::from_secs(2));
        assert_eq!(interval(Duration::from_millis(100)), MIN_INTERVAL);
    }
}
