//! `mediagate verify DIR`: the data dir checked against its manifests and its hash chain.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use serde_json::Value;

pub use super::chain::ChainFault;
use super::chain::{self, CallState};
use super::manifest::{MANIFEST_FILE, Manifest, hash_file, list_files};
use super::sha256_hex;

/// What [`verify_dir`] tolerates.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Calls still recording or finishing (`live`, or a processor `working`) are listed as notes,
    /// not problems: for checking a running gateway's data dir. Without it they are problems,
    /// since a stopped gateway leaves none (after `mediagate repair`).
    pub allow_live: bool,
}

/// What [`verify_dir`] found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Everything that does not hold; any makes `mediagate verify` exit 1.
    pub problems: Vec<Problem>,
    /// What is listed but tolerated (a leftover folder of a deletion, live calls with
    /// [`VerifyOptions::allow_live`]).
    pub notes: Vec<Problem>,
    /// Call folders found.
    pub calls: usize,
    /// Sealed calls whose manifest, files and chain entry all hold.
    pub sealed_intact: usize,
    /// Day files in the chain.
    pub chain_days: usize,
    /// Entries in the chain.
    pub chain_entries: usize,
    /// SHA-256 of the chain's last line: keep it elsewhere to detect a cut tail.
    pub chain_head: Option<String>,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A chain line does not hold.
    Chain {
        /// The day file's name (`2025-03-01.jsonl`).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        fault: ChainFault,
    },
    /// A file of a sealed call differs from its manifest.
    File {
        /// The call folder.
        call: String,
        /// The file, relative to the call folder.
        path: String,
        /// How it differs.
        fault: FileFault,
    },
    /// A sealed call's manifest does not hold.
    Manifest {
        /// The call folder.
        call: String,
        /// What is wrong.
        fault: ManifestFault,
    },
    /// The chain says the call was sealed, and no `deleted` entry followed, but its folder is gone.
    MissingCall {
        /// The call folder's name.
        call: String,
        /// The chain entry that sealed it (`2025-03-01.jsonl:4`).
        sealed_at: String,
    },
    /// A call folder without a manifest.
    Unsealed {
        /// The call folder.
        call: String,
        /// What session.json says of it.
        state: Unsealed,
    },
    /// A folder the chain says retention deleted is still there (the gateway stopped between
    /// the `deleted` entry and the removal; the next retention pass removes it).
    Leftover {
        /// The call folder.
        call: String,
        /// The `deleted` entry.
        deleted_at: String,
    },
}

/// How a file differs from the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileFault {
    /// Listed, but gone.
    Missing,
    /// Its size differs.
    Size {
        /// What the manifest says.
        sealed: u64,
        /// What is on disk.
        now: u64,
    },
    /// Same size, other content.
    Content,
    /// On disk, but not in the manifest (added after sealing).
    Unlisted,
    /// It could not be read.
    Unreadable(String),
}

/// How a manifest does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestFault {
    /// It cannot be read or parsed.
    Unreadable(String),
    /// It names another call.
    OtherCall(String),
    /// No chain entry seals it: edited, or written by a gateway that stopped before its chain
    /// entry (`mediagate repair` seals such a call again).
    NotInChain,
    /// The chain sealed the call with another manifest: this one was replaced.
    NotTheSealed {
        /// The chain entry (`2025-03-01.jsonl:4`).
        sealed_at: String,
    },
    /// The chain sealed the call, but its manifest.json is gone.
    Missing {
        /// The chain entry.
        sealed_at: String,
    },
}

/// What an unsealed call folder's session.json says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsealed {
    /// `live`: still recording, or the gateway was killed.
    Live,
    /// Ended, but a processor still works (or worked when the gateway was killed).
    Finishing,
    /// Ended (or `interrupted`), every file final, and no manifest: the gateway stopped before
    /// sealing it.
    NotSealed,
    /// No readable session.json.
    NoSession,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Chain { file, line, fault } => write!(f, "chain {file}:{line}: {fault}"),
            Problem::File { call, path, fault } => write!(f, "call {call}: {path}: {fault}"),
            Problem::Manifest { call, fault } => write!(f, "call {call}: manifest.json: {fault}"),
            Problem::MissingCall { call, sealed_at } => write!(
                f,
                "call {call}: missing: sealed at {sealed_at}, but its folder is gone and no \
                 `deleted` entry says retention removed it"
            ),
            Problem::Unsealed { call, state } => write!(f, "call {call}: unsealed: {state}"),
            Problem::Leftover { call, deleted_at } => write!(
                f,
                "call {call}: deleted by retention at {deleted_at} but still present (the \
                 gateway stopped before removing it; its next retention pass does)"
            ),
        }
    }
}

impl fmt::Display for ChainFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainFault::NotAnEntry(error) => write!(
                f,
                "not an entry ({error}): an edit, or the fragment of an append a crash cut \
                 short (the chain links around it)"
            ),
            ChainFault::Torn => f.write_str(
                "torn last line (no newline): an append was cut short by a crash; the next \
                 append starts a new line",
            ),
            ChainFault::Sequence { expected, found } => {
                write!(
                    f,
                    "seq is {found}, expected {expected}: an entry is missing or moved"
                )
            }
            ChainFault::BrokenLink => f.write_str(
                "prev is not the hash of the entry before: a line was edited, removed, \
                 inserted or reordered",
            ),
            ChainFault::NotOpened => f.write_str("the day file does not begin with `opened`"),
            ChainFault::OpenedInside => f.write_str("`opened` entry inside a day file"),
            ChainFault::DayLink { expected, found } => write!(
                f,
                "opened after day {}, but the day file before is {}: a day file was removed \
                 or added",
                found.as_deref().unwrap_or("none"),
                expected.as_deref().unwrap_or("none")
            ),
            ChainFault::WrongDay => f.write_str("its time is not in the file's day"),
            ChainFault::Incomplete => f.write_str("entry without its call or manifest hash"),
        }
    }
}

impl fmt::Display for FileFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileFault::Missing => f.write_str("listed in the manifest but missing"),
            FileFault::Size { sealed, now } => {
                write!(
                    f,
                    "size changed since sealing: {sealed} bytes sealed, {now} now"
                )
            }
            FileFault::Content => f.write_str("content changed since sealing (SHA-256 differs)"),
            FileFault::Unlisted => f.write_str("added after sealing (not in the manifest)"),
            FileFault::Unreadable(error) => write!(f, "cannot be read: {error}"),
        }
    }
}

impl fmt::Display for ManifestFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestFault::Unreadable(error) => write!(f, "unreadable: {error}"),
            ManifestFault::OtherCall(other) => write!(f, "names another call ({other})"),
            ManifestFault::NotInChain => f.write_str(
                "no chain entry seals it: edited, or the gateway stopped between the manifest \
                 and its chain entry (then `mediagate repair` seals the call again)",
            ),
            ManifestFault::NotTheSealed { sealed_at } => {
                write!(
                    f,
                    "not the manifest sealed at {sealed_at}: replaced after sealing"
                )
            }
            ManifestFault::Missing { sealed_at } => {
                write!(f, "missing, though the call was sealed at {sealed_at}")
            }
        }
    }
}

impl fmt::Display for Unsealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unsealed::Live => {
                "live: still recording, or the gateway was killed (stop it and run `mediagate \
                 repair`, which marks the call interrupted and seals it)"
            }
            Unsealed::Finishing => {
                "a processor is still working, or was when the gateway was killed (stop it and \
                 run `mediagate repair`, which marks the call interrupted and seals it)"
            }
            Unsealed::NotSealed => {
                "ended, but the gateway stopped before sealing it (run `mediagate repair`, which \
                 seals it)"
            }
            Unsealed::NoSession => "no session.json (run `mediagate repair`)",
        })
    }
}

impl VerifyReport {
    /// The summary line `mediagate verify` ends with.
    pub fn summary(&self) -> String {
        let unsealed = self
            .problems
            .iter()
            .chain(&self.notes)
            .filter(|p| matches!(p, Problem::Unsealed { .. }))
            .count();
        format!(
            "{}: {} call folder(s), {} sealed and intact, {} unsealed, {} problem(s); chain: {} \
             day file(s), {} entries, head {}",
            if self.problems.is_empty() {
                "OK"
            } else {
                "FAILED"
            },
            self.calls,
            self.sealed_intact,
            unsealed,
            self.problems.len(),
            self.chain_days,
            self.chain_entries,
            self.chain_head.as_deref().unwrap_or("none"),
        )
    }
}

/// Checks the data dir `data_dir`: every chain day file's links, every call folder's manifest
/// against its files and against the chain, every call folder that has ended is sealed, and
/// every call the chain sealed is present unless it says retention deleted it. Fails only when
/// the data dir or the chain cannot be listed or read; everything else is a [`Problem`].
/// Blocking.
pub fn verify_dir(data_dir: &Path, options: &VerifyOptions) -> io::Result<VerifyReport> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", data_dir.display()));
    let audit = chain::audit(data_dir).map_err(context)?;
    let mut report = VerifyReport {
        chain_days: audit.days,
        chain_entries: audit.entries,
        chain_head: audit.head.clone(),
        ..VerifyReport::default()
    };
    for (file, line, fault) in &audit.faults {
        report.problems.push(Problem::Chain {
            file: file.clone(),
            line: *line,
            fault: fault.clone(),
        });
    }
    let mut present = BTreeSet::new();
    for entry in fs::read_dir(data_dir).map_err(context)? {
        let entry = entry.map_err(context)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type().map_err(context)?.is_dir() {
            continue;
        }
        // A folder the chain names is checked whatever it holds (emptied, say).
        let named = audit.calls.contains_key(&name);
        if named || crate::repair::is_call_folder(&entry.path()).unwrap_or(true) {
            present.insert(name);
        }
    }
    for call in &present {
        report.calls += 1;
        verify_call(data_dir, call, audit.calls.get(call), options, &mut report);
    }
    for (call, state) in &audit.calls {
        if let CallState::Sealed { at, .. } = state {
            if !present.contains(call) {
                report.problems.push(Problem::MissingCall {
                    call: call.clone(),
                    sealed_at: at.clone(),
                });
            }
        }
    }
    Ok(report)
}

/// Checks one call folder into `report`.
fn verify_call(
    data_dir: &Path,
    call: &str,
    state: Option<&CallState>,
    options: &VerifyOptions,
    report: &mut VerifyReport,
) {
    let dir = data_dir.join(call);
    let manifest_bytes = match fs::read(dir.join(MANIFEST_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            unsealed(call, &dir, state, options, report);
            return;
        }
        Err(e) => {
            let fault = ManifestFault::Unreadable(e.to_string());
            report.problems.push(Problem::Manifest {
                call: call.to_owned(),
                fault,
            });
            return;
        }
    };
    let hash = sha256_hex(&manifest_bytes);
    let manifest_fault = match state {
        Some(CallState::Sealed {
            manifest_sha256, ..
        }) if *manifest_sha256 == hash => None,
        Some(CallState::Sealed { at, .. }) => Some(ManifestFault::NotTheSealed {
            sealed_at: at.clone(),
        }),
        Some(CallState::Deleted {
            manifest_sha256: Some(deleted),
            at,
        }) if *deleted == hash => {
            report.notes.push(Problem::Leftover {
                call: call.to_owned(),
                deleted_at: at.clone(),
            });
            None
        }
        Some(CallState::Deleted { .. }) | None => Some(ManifestFault::NotInChain),
    };
    let before = report.problems.len();
    if let Some(fault) = manifest_fault {
        report.problems.push(Problem::Manifest {
            call: call.to_owned(),
            fault,
        });
    }
    let manifest: Manifest = match serde_json::from_slice(&manifest_bytes) {
        Ok(manifest) => manifest,
        Err(e) => {
            report.problems.push(Problem::Manifest {
                call: call.to_owned(),
                fault: ManifestFault::Unreadable(e.to_string()),
            });
            return;
        }
    };
    if manifest.call_id != call {
        report.problems.push(Problem::Manifest {
            call: call.to_owned(),
            fault: ManifestFault::OtherCall(manifest.call_id.clone()),
        });
    }
    verify_files(call, &dir, &manifest, report);
    if report.problems.len() == before {
        report.sealed_intact += 1;
    }
}

/// Checks a sealed call's files against its manifest into `report`.
fn verify_files(call: &str, dir: &Path, manifest: &Manifest, report: &mut VerifyReport) {
    let file_problem = |path: &str, fault| Problem::File {
        call: call.to_owned(),
        path: path.to_owned(),
        fault,
    };
    let on_disk = match list_files(dir) {
        Ok(files) => files,
        Err(e) => {
            report
                .problems
                .push(file_problem(".", FileFault::Unreadable(e.to_string())));
            return;
        }
    };
    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    for (path, _) in &on_disk {
        if !listed.contains(path.as_str()) {
            report
                .problems
                .push(file_problem(path, FileFault::Unlisted));
        }
    }
    for file in &manifest.files {
        // A path that leaves the folder is not read: the manifest was edited.
        let safe = !file
            .path
            .split('/')
            .any(|part| part == ".." || part.is_empty());
        let fault = if !safe {
            Some(FileFault::Unreadable(
                "path leaves the call folder".to_owned(),
            ))
        } else {
            match hash_file(&dir.join(&file.path)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Some(FileFault::Missing),
                Err(e) => Some(FileFault::Unreadable(e.to_string())),
                Ok((bytes, _)) if bytes != file.bytes => Some(FileFault::Size {
                    sealed: file.bytes,
                    now: bytes,
                }),
                Ok((_, sha256)) if sha256 != file.sha256 => Some(FileFault::Content),
                Ok(_) => None,
            }
        };
        if let Some(fault) = fault {
            report.problems.push(file_problem(&file.path, fault));
        }
    }
}

/// A call folder without a manifest, into `report`.
fn unsealed(
    call: &str,
    dir: &Path,
    state: Option<&CallState>,
    options: &VerifyOptions,
    report: &mut VerifyReport,
) {
    match state {
        Some(CallState::Sealed { at, .. }) => {
            report.problems.push(Problem::Manifest {
                call: call.to_owned(),
                fault: ManifestFault::Missing {
                    sealed_at: at.clone(),
                },
            });
            return;
        }
        Some(CallState::Deleted { at, .. }) => {
            report.notes.push(Problem::Leftover {
                call: call.to_owned(),
                deleted_at: at.clone(),
            });
            return;
        }
        None => {}
    }
    let session: Option<Value> = fs::read(dir.join("session.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let state = match &session {
        None => Unsealed::NoSession,
        Some(session) if session["status"] == "live" => Unsealed::Live,
        Some(session) if crate::repair::still_working(session) => Unsealed::Finishing,
        Some(_) => Unsealed::NotSealed,
    };
    let tolerated = options.allow_live && matches!(state, Unsealed::Live | Unsealed::Finishing);
    let problem = Problem::Unsealed {
        call: call.to_owned(),
        state,
    };
    if tolerated {
        report.notes.push(problem);
    } else {
        report.problems.push(problem);
    }
}
