//! `mediagate repair DIR`: makes the files of calls cut short by `kill -9` (or a crash, or a
//! power cut) valid again. A killed gateway leaves WAVs whose headers count only the audio of
//! their last checkpoint, a `session.json` that still says `live`, and perhaps a
//! `.session.json.tmp`. For each call folder this rewrites every WAV's RIFF and data sizes from
//! the file's length (cut to whole sample frames), marks a `live` session `interrupted` with a
//! note of what was repaired, and removes the leftover temporary file.
//! It also removes the disk reserve a live call keeps for its last session.json, and seals
//! every call the chain has no entry for once its files are final (manifest.json and a
//! `sealed` entry marked `"by": "repair"`): so after a crash, `mediagate verify` passes again.
//! A sealed call's files are evidence and are left as they are (`verify` reports any change).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use mediagate_processors::record::RepairOutcome;

use mediagate_protocol::Timestamp;
use serde_json::{Value, json};

use crate::compliance::chain::{self, Chain};
use crate::compliance::manifest::{self, MANIFEST_FILE};
use crate::session::CallStatus;

/// What [`repair_dir`] did, file by file.
#[derive(Debug, Default)]
pub struct RepairReport {
    /// The call folders looked at.
    pub calls: usize,
    /// Every file changed, in the order repaired.
    pub repaired: Vec<Repaired>,
    /// Files that could not be repaired, with the reason.
    pub failed: Vec<(PathBuf, io::Error)>,
}

/// One file [`repair_dir`] changed.
#[derive(Debug)]
pub struct Repaired {
    /// The file.
    pub path: PathBuf,
    /// What was done to it.
    pub action: RepairAction,
}

/// What was done to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairAction {
    /// A WAV's sizes were rewritten from its length.
    Wav(WavRepair),
    /// A `session.json` that said `live` now says `interrupted`.
    MarkedInterrupted,
    /// A `.session.json.tmp` left by an unfinished write was removed.
    RemovedTemporary,
    /// There was no `session.json`, only a complete `.session.json.tmp`: it became the
    /// `session.json` (and was then marked if it said `live`).
    PromotedTemporary,
    /// The disk reserve of a call that never ended was removed.
    RemovedReserve,
    /// A call whose files are final but which the hash chain does not name (the gateway
    /// stopped before sealing it) was sealed: its manifest.json written and a `sealed` entry
    /// appended.
    Sealed,
}

/// How a WAV was repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavRepair {
    /// Bytes of audio in the data chunk now.
    pub data_bytes: u64,
    /// What the data chunk's size said before.
    pub header_said: u64,
    /// Bytes of a torn last sample frame cut from the end of the file.
    pub truncated_bytes: u64,
}

impl std::fmt::Display for Repaired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        match &self.action {
            RepairAction::Wav(wav) => {
                write!(
                    f,
                    "{path}: WAV sizes rewritten: {} bytes of audio (the header said {})",
                    wav.data_bytes, wav.header_said
                )?;
                if wav.truncated_bytes > 0 {
                    write!(f, ", {} bytes of a torn frame cut", wav.truncated_bytes)?;
                }
                Ok(())
            }
            RepairAction::MarkedInterrupted => write!(f, "{path}: marked interrupted"),
            RepairAction::RemovedTemporary | RepairAction::RemovedReserve => {
                write!(f, "{path}: removed")
            }
            RepairAction::PromotedTemporary => {
                write!(f, "{path}: restored from .session.json.tmp")
            }
            RepairAction::Sealed => write!(f, "{path}: sealed (manifest.json and a chain entry)"),
        }
    }
}

/// Repairs `path`: one call folder (it holds a `session.json`, a `.session.json.tmp`, a
/// `manifest.json` or a WAV), or a data dir, whose subfolders are call folders (others are
/// skipped) and whose calls are then sealed if the chain does not name them yet (one call
/// folder given alone is not sealed: the chain belongs to its data dir). Files that are
/// already valid are left untouched. Fails only when `path` cannot be listed; a file that
/// cannot be repaired is listed in [`RepairReport::failed`] and the others are still repaired.
///
/// Run it while no gateway writes to `path`: a call still in progress says `live` too, and its
/// WAVs are being written.
pub fn repair_dir(path: &Path) -> io::Result<RepairReport> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let mut report = RepairReport::default();
    if is_call_folder(path).map_err(context)? {
        // The chain belongs to the data dir: one folder is repaired, not sealed.
        repair_call(path, &mut report);
        return Ok(report);
    }
    let folders = {
        let mut folders = Vec::new();
        for entry in fs::read_dir(path).map_err(context)? {
            let entry = entry.map_err(context)?;
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            // An unreadable folder is tried, so that its failure is reported.
            if !hidden
                && entry.file_type().map_err(context)?.is_dir()
                && is_call_folder(&entry.path()).unwrap_or(true)
            {
                folders.push(entry.path());
            }
        }
        folders.sort();
        folders
    };
    for folder in &folders {
        repair_call(folder, &mut report);
    }
    seal_unsealed(path, &folders, &mut report);
    Ok(report)
}

/// Seals each of `folders` whose call is final (session.json neither `live` nor with a
/// processor working: after the repair, any) and that the chain of `data_dir` does not name.
fn seal_unsealed(data_dir: &Path, folders: &[PathBuf], report: &mut RepairReport) {
    let named = match chain::audit(data_dir) {
        Ok(audit) => audit.calls,
        Err(e) => {
            report.failed.push((data_dir.join(chain::CHAIN_DIR), e));
            return;
        }
    };
    let chain = Chain::new(data_dir);
    for folder in folders {
        let Some(call) = folder.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if named.contains_key(&call) {
            continue;
        }
        let session: Option<Value> = fs::read(folder.join(SESSION))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let live = serde_json::to_value(CallStatus::Live).ok();
        let is_final = session
            .as_ref()
            .is_some_and(|s| s.get("status") != live.as_ref() && !still_working(s));
        if !is_final {
            continue;
        }
        match manifest::seal(folder, &call, &chain, true) {
            Ok(()) => report.repaired.push(Repaired {
                path: folder.join(MANIFEST_FILE),
                action: RepairAction::Sealed,
            }),
            Err(e) => report.failed.push((folder.clone(), e)),
        }
    }
}

/// Whether a processor of any transport of `session` (session.json) is listed as working.
pub(crate) fn still_working(session: &Value) -> bool {
    session["transports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["processors"].as_array())
        .flatten()
        .any(|p| p["working"] == Value::Bool(true))
}

/// Whether `path` looks like a call folder: it holds a session.json (or its temporary file),
/// a manifest.json or a WAV.
pub(crate) fn is_call_folder(path: &Path) -> io::Result<bool> {
    for entry in fs::read_dir(path)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name == SESSION
            || name == SESSION_TMP
            || name == MANIFEST_FILE
            || is_wav(Path::new(&*name))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

const SESSION: &str = "session.json";
const SESSION_TMP: &str = ".session.json.tmp";

fn is_wav(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("wav"))
}

/// Repairs one call folder into `report`; a sealed one (it has a manifest.json) is left as it
/// is: its files are final, and a change to them is for `mediagate verify` to report.
fn repair_call(dir: &Path, report: &mut RepairReport) {
    report.calls += 1;
    if dir.join(MANIFEST_FILE).exists() {
        return;
    }
    let mut wavs: Vec<PathBuf> = match fs::read_dir(dir) {
        // Regular files only: a symbolic link is not followed.
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .filter(|p| is_wav(p))
            .collect(),
        Err(e) => {
            report.failed.push((dir.to_owned(), e));
            return;
        }
    };
    wavs.sort();
    let mut repaired_wavs = Vec::new();
    for path in wavs {
        match repair_wav(&path) {
            Ok(None) => {}
            Ok(Some(wav)) => {
                repaired_wavs.push((path.clone(), wav));
                report.repaired.push(Repaired {
                    path,
                    action: RepairAction::Wav(wav),
                });
            }
            Err(e) => report.failed.push((path, e)),
        }
    }
    repair_session(dir, &repaired_wavs, report);
}

/// Restores or removes `.session.json.tmp`, and marks a `live` session `interrupted`.
fn repair_session(dir: &Path, wavs: &[(PathBuf, WavRepair)], report: &mut RepairReport) {
    let session = dir.join(SESSION);
    let tmp = dir.join(SESSION_TMP);
    if tmp.exists() {
        // The temporary file is synced before the rename, so a parseable one is whole.
        let whole = fs::read(&tmp)
            .ok()
            .is_some_and(|bytes| serde_json::from_slice::<Value>(&bytes).is_ok());
        let (result, action) = if !session.exists() && whole {
            (fs::rename(&tmp, &session), RepairAction::PromotedTemporary)
        } else {
            (fs::remove_file(&tmp), RepairAction::RemovedTemporary)
        };
        let path = if action == RepairAction::PromotedTemporary {
            session.clone()
        } else {
            tmp.clone()
        };
        match result {
            Ok(()) => report.repaired.push(Repaired { path, action }),
            Err(e) => report.failed.push((tmp, e)),
        }
    }
    let reserve = dir.join(crate::session::RESERVE_FILE);
    if reserve.exists() {
        match fs::remove_file(&reserve) {
            Ok(()) => report.repaired.push(Repaired {
                path: reserve,
                action: RepairAction::RemovedReserve,
            }),
            Err(e) => report.failed.push((reserve, e)),
        }
    }
    if !session.exists() {
        return;
    }
    match mark_interrupted(&session, wavs) {
        Ok(false) => {}
        Ok(true) => report.repaired.push(Repaired {
            path: session,
            action: RepairAction::MarkedInterrupted,
        }),
        Err(e) => report.failed.push((session, e)),
    }
}

/// Rewrites `session.json` with `status: interrupted` and a `repair` note, if it says `live`,
/// or if a processor is still listed as working (the gateway stopped while a speech engine
/// worked through the call's backlog: its transcript is incomplete); atomically: temporary
/// file, then rename. Whether it did.
fn mark_interrupted(session: &Path, wavs: &[(PathBuf, WavRepair)]) -> io::Result<bool> {
    let mut json: Value = serde_json::from_slice(&fs::read(session)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let live = serde_json::to_value(CallStatus::Live).map_err(io::Error::other)?;
    let mut unfinished = false;
    if let Some(transports) = json.get_mut("transports").and_then(Value::as_array_mut) {
        for processor in transports
            .iter_mut()
            .filter_map(|t| t.get_mut("processors").and_then(Value::as_array_mut))
            .flatten()
        {
            if processor.get("working") == Some(&Value::Bool(true)) {
                processor["working"] = Value::Bool(false);
                processor["interrupted"] = Value::Bool(true);
                unfinished = true;
            }
        }
    }
    if json.get("status") != Some(&live) && !unfinished {
        return Ok(false);
    }
    let files: Vec<Value> = wavs
        .iter()
        .map(|(path, wav)| {
            json!({
                "file": path.file_name().map(|n| n.to_string_lossy()),
                "data_bytes": wav.data_bytes,
                "header_said": wav.header_said,
                "truncated_bytes": wav.truncated_bytes,
            })
        })
        .collect();
    json["status"] = serde_json::to_value(CallStatus::Interrupted).map_err(io::Error::other)?;
    json["repair"] = json!({
        "repaired_at": Timestamp::now(),
        "note": "the gateway stopped without finalizing this call (killed, crashed or lost \
                 power); `mediagate repair` rewrote the WAV headers listed here from the audio \
                 on disk. Counters and ended_at are as of the last update before it stopped.",
        "wavs": files,
    });
    let mut text = serde_json::to_vec_pretty(&json).map_err(io::Error::other)?;
    text.push(b'\n');
    let tmp = session.with_file_name(SESSION_TMP);
    {
        let mut file = File::create(&tmp)?;
        file.write_all(&text)?;
        file.sync_data()?;
    }
    fs::rename(&tmp, session)?;
    Ok(true)
}

/// Rewrites the RIFF and data sizes of the WAV at `path` from its length, cut to whole sample
/// frames ([`mediagate_processors::record::repair_wav`]); `None` when they were right already (the
/// file is then not written).
pub fn repair_wav(path: &Path) -> io::Result<Option<WavRepair>> {
    Ok(match mediagate_processors::record::repair_wav(path)? {
        RepairOutcome::Valid { .. } => None,
        RepairOutcome::Repaired {
            data_bytes,
            header_said,
            truncated_bytes,
        } => Some(WavRepair {
            data_bytes,
            header_said,
            truncated_bytes,
        }),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    const RATE: u32 = 16_000;

    /// A WAV as hound writes it, then its header reset to what a killed writer leaves:
    /// sizes of an earlier checkpoint (`said` bytes of audio), plus `torn` stray bytes.
    fn killed_wav(path: &Path, samples: &[i16], said: u32, torn: usize) {
        let clip =
            mediagate_audio::Clip::from_samples(mediagate_audio::AudioFormat::mono(RATE), samples);
        mediagate_audio::wav::write(path, &clip).unwrap();
        let mut bytes = fs::read(path).unwrap();
        let data = bytes.windows(4).position(|w| w == b"data").unwrap();
        bytes[4..8].copy_from_slice(&(said + data as u32).to_le_bytes());
        bytes[data + 4..data + 8].copy_from_slice(&said.to_le_bytes());
        bytes.extend(std::iter::repeat_n(0x55, torn));
        fs::write(path, bytes).unwrap();
    }

    fn samples(n: usize) -> Vec<i16> {
        (0..n).map(|i| (i as i16).wrapping_mul(37)).collect()
    }

    fn read(path: &Path) -> Vec<i16> {
        hound::WavReader::open(path)
            .unwrap()
            .into_samples::<i16>()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_killed_wav_gets_all_its_whole_frames_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mixed.wav");
        let audio = samples(16_000);
        killed_wav(&path, &audio, 0, 1);
        let repair = repair_wav(&path).unwrap().unwrap();
        assert_eq!(
            repair,
            WavRepair {
                data_bytes: 32_000,
                header_said: 0,
                truncated_bytes: 1,
            }
        );
        assert_eq!(read(&path), audio);
        // Valid now: a second run changes nothing.
        assert_eq!(repair_wav(&path).unwrap(), None);
    }

    #[test]
    fn a_header_from_an_earlier_checkpoint_is_brought_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let audio = samples(8_000);
        killed_wav(&path, &audio, 3_200, 0);
        let repair = repair_wav(&path).unwrap().unwrap();
        assert_eq!((repair.data_bytes, repair.header_said), (16_000, 3_200));
        assert_eq!(read(&path), audio);
    }

    #[test]
    fn what_is_not_a_wav_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        fs::write(&path, b"RIFF\0\0\0\0WAVEjunk").unwrap();
        assert!(repair_wav(&path).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"RIFF\0\0\0\0WAVEjunk");
        fs::write(&path, b"hello").unwrap();
        assert!(repair_wav(&path).is_err());
    }

    fn session(dir: &Path, status: &str) {
        let json = json!({ "call_id": "c", "status": status, "transports": [] });
        fs::write(dir.join(SESSION), json.to_string()).unwrap();
    }

    fn status(dir: &Path) -> Value {
        serde_json::from_slice(&fs::read(dir.join(SESSION)).unwrap()).unwrap()
    }

    #[test]
    fn a_data_dir_of_killed_and_ended_calls_is_repaired() {
        let data = tempfile::tempdir().unwrap();
        let killed = data.path().join("killed");
        let ended = data.path().join("ended");
        fs::create_dir_all(&killed).unwrap();
        fs::create_dir_all(&ended).unwrap();
        killed_wav(&killed.join("mixed.wav"), &samples(1_000), 0, 0);
        fs::write(killed.join("notes.txt"), "not audio").unwrap();
        session(&killed, "live");
        fs::write(killed.join(SESSION_TMP), "{\"trunc").unwrap();
        killed_wav(&ended.join("mixed.wav"), &samples(1_000), 2_000, 0);
        session(&ended, "ended");
        fs::write(ended.join("broken.wav"), "nope").unwrap();
        fs::create_dir_all(data.path().join("lost+found")).unwrap();

        let report = repair_dir(data.path()).unwrap();
        assert_eq!(report.calls, 2);
        let actions: Vec<_> = report
            .repaired
            .iter()
            .map(|r| {
                (
                    r.path.strip_prefix(data.path()).unwrap().to_owned(),
                    &r.action,
                )
            })
            .collect();
        assert_eq!(actions.len(), 5, "{actions:?}");
        assert!(matches!(actions[0].1, RepairAction::Wav(w) if w.data_bytes == 2_000));
        assert_eq!(actions[1].0, Path::new("killed/.session.json.tmp"));
        assert_eq!(*actions[1].1, RepairAction::RemovedTemporary);
        assert_eq!(actions[2].0, Path::new("killed/session.json"));
        // Both calls are final now: each is sealed.
        assert_eq!(actions[3].0, Path::new("ended/manifest.json"));
        assert_eq!(*actions[3].1, RepairAction::Sealed);
        assert_eq!(actions[4].0, Path::new("killed/manifest.json"));
        assert_eq!(*actions[4].1, RepairAction::Sealed);
        assert_eq!(report.failed.len(), 1);
        assert!(report.failed[0].0.ends_with("ended/broken.wav"));

        let killed_session = status(&killed);
        assert_eq!(killed_session["status"], "interrupted");
        assert_eq!(killed_session["repair"]["wavs"][0]["file"], "mixed.wav");
        assert_eq!(killed_session["call_id"], "c", "the rest is kept");
        assert_eq!(status(&ended)["status"], "ended");
        assert!(!killed.join(SESSION_TMP).exists());
        assert_eq!(read(&killed.join("mixed.wav")), samples(1_000));
        // A second run finds nothing to do: sealed calls are left as they are.
        let again = repair_dir(data.path()).unwrap();
        assert!(again.repaired.is_empty(), "{:?}", again.repaired);
        assert!(again.failed.is_empty(), "{:?}", again.failed);
        let verified = crate::verify_dir(data.path(), &crate::VerifyOptions::default()).unwrap();
        assert!(verified.problems.is_empty(), "{:?}", verified.problems);
        assert_eq!(verified.sealed_intact, 2);
    }

    #[test]
    fn a_call_ended_while_its_engine_still_worked_is_marked_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let json = json!({
            "call_id": "c",
            "status": "ended",
            "transports": [{"processors": [
                {"name": "wav"},
                {"name": "whisper", "working": true},
            ]}],
        });
        fs::write(dir.path().join("session.json"), json.to_string()).unwrap();
        let report = repair_dir(dir.path()).unwrap();
        assert_eq!(report.repaired.len(), 1, "{:?}", report.repaired);
        let after = status(dir.path());
        assert_eq!(after["status"], "interrupted");
        let whisper = &after["transports"][0]["processors"][1];
        assert_eq!(whisper["working"], false);
        assert_eq!(whisper["interrupted"], true);
        assert!(
            after["transports"][0]["processors"][0]
                .get("interrupted")
                .is_none()
        );
        assert!(repair_dir(dir.path()).unwrap().repaired.is_empty());
    }

    #[test]
    fn one_call_folder_and_a_complete_temporary_session() {
        let dir = tempfile::tempdir().unwrap();
        let json = json!({ "call_id": "c", "status": "live" });
        fs::write(dir.path().join(SESSION_TMP), json.to_string()).unwrap();
        // A link is not followed, whatever it points at.
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("x.wav"), "not a wav").unwrap();
        std::os::unix::fs::symlink(outside.path().join("x.wav"), dir.path().join("x.wav")).unwrap();
        let report = repair_dir(dir.path()).unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert_eq!(report.calls, 1);
        let actions: Vec<_> = report.repaired.iter().map(|r| &r.action).collect();
        assert_eq!(
            actions,
            [
                &RepairAction::PromotedTemporary,
                &RepairAction::MarkedInterrupted
            ]
        );
        assert_eq!(status(dir.path())["status"], "interrupted");
        assert!(!dir.path().join(SESSION_TMP).exists());
    }
}
