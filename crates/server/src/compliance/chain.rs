//! The hash chain: `<data_dir>/.chain/YYYY-MM-DD.jsonl`, one file per UTC day, one JSON entry
//! per line. A day file opens with an `opened` entry that carries the hash of the previous day
//! file's last entry; every later line carries the hash of the entry before it (`prev`: the
//! SHA-256 of that line's bytes with its newline, `sed -n Np FILE | sha256sum`).
//!
//! A crash during an append can leave a torn last line (no newline). The writer then starts
//! its entry on a new line and links it to the last whole entry, so the chain goes on around
//! the torn fragment; `mediagate verify` reports the fragment, which may be removed once its
//! loss is understood.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mediagate_protocol::Timestamp;
use serde::{Deserialize, Serialize};

use super::sha256_hex;

/// The chain's folder under the data dir (hidden: it is not a call).
pub(crate) const CHAIN_DIR: &str = ".chain";

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EntryKind {
    /// A day file's first line: links the day to the previous day file's last entry.
    Opened,
    /// A call's folder was sealed: `manifest_sha256` is the hash of its manifest.json.
    Sealed,
    /// Retention removed a call's folder (this entry is written before the folder is removed).
    Deleted,
}

/// One line of a day file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    /// 0 for `opened`, then 1, 2… within the day file.
    pub(crate) seq: u64,
    /// When it was appended (RFC 3339, UTC).
    pub(crate) time: String,
    pub(crate) kind: EntryKind,
    /// The call folder's name (`sealed`, `deleted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) call: Option<String>,
    /// SHA-256 of the call's manifest.json bytes (`sealed`; `deleted` when it had one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) manifest_sha256: Option<String>,
    /// `repair` when `mediagate repair` sealed the call rather than the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) by: Option<String>,
    /// `opened`: the previous day file's day, `null` for the first day file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) prev_day: Option<String>,
    /// SHA-256 of the previous entry's line (with its newline); `null` only on the very first.
    pub(crate) prev: Option<String>,
}

/// What to append.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Record<'a> {
    /// A call sealed; `by_repair` when `mediagate repair` sealed it.
    Sealed {
        call: &'a str,
        manifest_sha256: &'a str,
        by_repair: bool,
    },
    /// A call about to be removed by retention, with its manifest's hash if it had one.
    Deleted {
        call: &'a str,
        manifest_sha256: Option<&'a str>,
    },
}

/// The UTC day of `at`, `YYYY-MM-DD`.
pub(crate) fn day_of(at: Timestamp) -> String {
    let nanos = i128::from(at.unix_micros()) * 1_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(at) => format!(
            "{:04}-{:02}-{:02}",
            at.year(),
            u8::from(at.month()),
            at.day()
        ),
        Err(_) => "1970-01-01".to_owned(),
    }
}

/// The day of a day file's name (`2025-03-01.jsonl`), if it is one.
pub(crate) fn day_of_file(name: &str) -> Option<&str> {
    let day = name.strip_suffix(".jsonl")?;
    let bytes = day.as_bytes();
    let shaped = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    shaped.then_some(day)
}

/// One line of a day file as read.
#[derive(Debug)]
pub(crate) struct Line {
    /// 1-based line number.
    pub(crate) number: usize,
    /// SHA-256 of its bytes and its newline (what the next entry's `prev` must say).
    pub(crate) hash: String,
    /// The entry, or why the line is not one.
    pub(crate) entry: Result<Entry, String>,
}

/// A day file as read: its lines, and whether the last one lacks its newline (torn).
#[derive(Debug)]
pub(crate) struct DayFile {
    pub(crate) lines: Vec<Line>,
    pub(crate) torn: bool,
}

impl DayFile {
    /// Splits `bytes` into lines and parses each.
    pub(crate) fn parse(bytes: &[u8]) -> DayFile {
        let torn = !bytes.is_empty() && !bytes.ends_with(b"\n");
        let mut lines = Vec::new();
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        if !bytes.is_empty() {
            for (i, text) in body.split(|b| *b == b'\n').enumerate() {
                let mut with_newline = text.to_vec();
                with_newline.push(b'\n');
                lines.push(Line {
                    number: i + 1,
                    hash: sha256_hex(&with_newline),
                    entry: serde_json::from_slice(text).map_err(|e| e.to_string()),
                });
            }
        }
        DayFile { lines, torn }
    }

    /// The last line that is an entry.
    pub(crate) fn last_entry(&self) -> Option<(&Line, &Entry)> {
        self.lines
            .iter()
            .rev()
            .find_map(|line| line.entry.as_ref().ok().map(|entry| (line, entry)))
    }
}

/// The day files under `chain_dir`, sorted by day (oldest first); none when it does not exist.
pub(crate) fn day_files(chain_dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let entries = match fs::read_dir(chain_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut days = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(day) = name.to_str().and_then(day_of_file) {
            days.push((day.to_owned(), entry.path()));
        }
    }
    days.sort();
    Ok(days)
}

/// Where the next entry goes.
#[derive(Debug)]
struct Head {
    day: String,
    /// Whether the day file has its `opened` entry.
    opened: bool,
    next_seq: u64,
    /// The hash the next entry's `prev` carries (for `opened`: the previous day's last line).
    prev: Option<String>,
    /// For a day not yet opened: the previous day file's day.
    prev_day: Option<String>,
    /// The file ends in a torn line: the next write starts with a newline.
    torn: bool,
}

/// The one writer of a data dir's chain. Appends are serialized by a mutex held only around
/// the synchronous append (never across an `.await`); each append is synced before it returns.
#[derive(Debug)]
pub(crate) struct Chain {
    dir: PathBuf,
    /// Read from disk at the first append of a day (and after a failed append).
    head: Mutex<Option<Head>>,
}

impl Chain {
    /// The chain of `data_dir` (nothing is read or written until the first append).
    pub(crate) fn new(data_dir: &Path) -> Self {
        Chain {
            dir: data_dir.join(CHAIN_DIR),
            head: Mutex::new(None),
        }
    }

    /// Appends `record` as of `now`, and syncs it. Blocking: call it from a blocking thread.
    pub(crate) fn append(&self, record: Record<'_>, now: Timestamp) -> io::Result<()> {
        let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.append_locked(&mut head, record, now);
        if result.is_err() {
            // What is on disk is read again: a torn write is then found and stepped over.
            *head = None;
        }
        result
    }

    fn append_locked(
        &self,
        head: &mut Option<Head>,
        record: Record<'_>,
        now: Timestamp,
    ) -> io::Result<()> {
        let day = day_of(now);
        let current = match head.take() {
            Some(current) if current.day == day => current,
            _ => self.load(&day)?,
        };
        let time = now.to_string();
        let mut text = Vec::new();
        if current.torn {
            text.push(b'\n');
        }
        let (mut seq, mut prev) = (current.next_seq, current.prev.clone());
        if !current.opened {
            let opened = Entry {
                seq: 0,
                time: time.clone(),
                kind: EntryKind::Opened,
                call: None,
                manifest_sha256: None,
                by: None,
                prev_day: current.prev_day.clone(),
                prev,
            };
            let line = to_line(&opened)?;
            prev = Some(sha256_hex(&line));
            seq = 1;
            text.extend_from_slice(&line);
        }
        let entry = match record {
            Record::Sealed {
                call,
                manifest_sha256,
                by_repair,
            } => Entry {
                seq,
                time,
                kind: EntryKind::Sealed,
                call: Some(call.to_owned()),
                manifest_sha256: Some(manifest_sha256.to_owned()),
                by: by_repair.then(|| "repair".to_owned()),
                prev_day: None,
                prev,
            },
            Record::Deleted {
                call,
                manifest_sha256,
            } => Entry {
                seq,
                time,
                kind: EntryKind::Deleted,
                call: Some(call.to_owned()),
                manifest_sha256: manifest_sha256.map(str::to_owned),
                by: None,
                prev_day: None,
                prev,
            },
        };
        let line = to_line(&entry)?;
        let hash = sha256_hex(&line);
        text.extend_from_slice(&line);
        fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("{day}.jsonl"));
        let created = !path.exists();
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        file.write_all(&text)?;
        file.sync_data()?;
        if created {
            super::sync_dir(&self.dir)?;
        }
        *head = Some(Head {
            day,
            opened: true,
            next_seq: seq + 1,
            prev: Some(hash),
            prev_day: None,
            torn: false,
        });
        Ok(())
    }

    /// Where `day`'s next entry goes, from its file, or from the previous day file's last
    /// entry when the day has none yet.
    fn load(&self, day: &str) -> io::Result<Head> {
        let path = self.dir.join(format!("{day}.jsonl"));
        let torn = match fs::read(&path) {
            Ok(bytes) => {
                let file = DayFile::parse(&bytes);
                if let Some((line, entry)) = file.last_entry() {
                    return Ok(Head {
                        day: day.to_owned(),
                        opened: true,
                        next_seq: entry.seq + 1,
                        prev: Some(line.hash.clone()),
                        prev_day: None,
                        torn: file.torn,
                    });
                }
                // No entry at all (junk only): the day is opened anew after it.
                file.torn
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        let previous = day_files(&self.dir)?
            .into_iter()
            .rfind(|(other, _)| other.as_str() < day);
        let (prev_day, prev) = match previous {
            Some((other, path)) => {
                let file = DayFile::parse(&fs::read(path)?);
                (
                    Some(other),
                    file.last_entry().map(|(line, _)| line.hash.clone()),
                )
            }
            None => (None, None),
        };
        Ok(Head {
            day: day.to_owned(),
            opened: false,
            next_seq: 0,
            prev,
            prev_day,
            torn,
        })
    }
}

/// `entry` as one line with its newline.
fn to_line(entry: &Entry) -> io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

/// What the chain says of one call, as of its last entry naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallState {
    /// Sealed with this manifest hash, at `at` (`2025-03-01.jsonl:4`).
    Sealed { manifest_sha256: String, at: String },
    /// Removed by retention, at `at`.
    Deleted {
        manifest_sha256: Option<String>,
        at: String,
    },
}

/// Why a chain line does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainFault {
    /// The line is not an entry (a torn fragment of a crashed append, or an edit).
    NotAnEntry(String),
    /// The file's last line has no newline: an append was cut short by a crash.
    Torn,
    /// `seq` is not the previous entry's plus one.
    Sequence {
        /// What it should be.
        expected: u64,
        /// What it is.
        found: u64,
    },
    /// `prev` is not the hash of the previous entry's line: a line was edited, removed,
    /// inserted or reordered.
    BrokenLink,
    /// The day file does not open with an `opened` entry.
    NotOpened,
    /// An `opened` entry that is not the first line.
    OpenedInside,
    /// The `opened` entry names another previous day than the day file before it: a day file
    /// was removed or added.
    DayLink {
        /// The day file before this one.
        expected: Option<String>,
        /// What the `opened` entry says.
        found: Option<String>,
    },
    /// The entry's time is not in the file's day.
    WrongDay,
    /// A `sealed` or `deleted` entry without a call, or a `sealed` one without its hash.
    Incomplete,
}

/// The chain of a data dir, checked link by link.
#[derive(Debug, Default)]
pub(crate) struct Audit {
    /// Every fault: day file name, line number, what.
    pub(crate) faults: Vec<(String, usize, ChainFault)>,
    /// What the chain says of each call it names.
    pub(crate) calls: BTreeMap<String, CallState>,
    pub(crate) days: usize,
    pub(crate) entries: usize,
    /// Hash of the last entry's line: what to keep elsewhere to detect a cut tail.
    pub(crate) head: Option<String>,
}

/// Reads and checks every day file of `data_dir`'s chain. Blocking.
pub(crate) fn audit(data_dir: &Path) -> io::Result<Audit> {
    let mut audit = Audit::default();
    // The previous day file's day and last entry hash.
    let mut before: Option<(String, Option<String>)> = None;
    for (day, path) in day_files(&data_dir.join(CHAIN_DIR))? {
        let file = DayFile::parse(&fs::read(&path)?);
        let name = format!("{day}.jsonl");
        audit_day(&day, &name, &file, before.as_ref(), &mut audit);
        let last = file.last_entry().map(|(line, _)| line.hash.clone());
        if last.is_some() {
            audit.head.clone_from(&last);
        }
        audit.days += 1;
        before = Some((day, last));
    }
    Ok(audit)
}

/// Checks one day file's lines into `audit`.
fn audit_day(
    day: &str,
    name: &str,
    file: &DayFile,
    before: Option<&(String, Option<String>)>,
    audit: &mut Audit,
) {
    let fault = |line: usize, fault: ChainFault| (name.to_owned(), line, fault);
    let mut faults = Vec::new();
    // The previous entry's seq and line hash, once there is one.
    let mut previous: Option<(u64, String)> = None;
    for line in &file.lines {
        let entry = match &line.entry {
            Ok(entry) => entry,
            Err(error) => {
                let torn = file.torn && line.number == file.lines.len();
                faults.push(fault(
                    line.number,
                    if torn {
                        ChainFault::Torn
                    } else {
                        ChainFault::NotAnEntry(error.clone())
                    },
                ));
                continue;
            }
        };
        audit.entries += 1;
        if !entry.time.starts_with(day) {
            faults.push(fault(line.number, ChainFault::WrongDay));
        }
        match (&previous, entry.kind) {
            (None, EntryKind::Opened) => {
                let (expected_day, expected_prev) = match before {
                    Some((d, h)) => (Some(d.clone()), h.clone()),
                    None => (None, None),
                };
                if entry.prev_day != expected_day {
                    faults.push(fault(
                        line.number,
                        ChainFault::DayLink {
                            expected: expected_day,
                            found: entry.prev_day.clone(),
                        },
                    ));
                } else if entry.prev != expected_prev {
                    faults.push(fault(line.number, ChainFault::BrokenLink));
                }
                if entry.seq != 0 {
                    faults.push(fault(
                        line.number,
                        ChainFault::Sequence {
                            expected: 0,
                            found: entry.seq,
                        },
                    ));
                }
            }
            (None, _) => faults.push(fault(line.number, ChainFault::NotOpened)),
            (Some(_), EntryKind::Opened) => {
                faults.push(fault(line.number, ChainFault::OpenedInside));
            }
            (Some((seq, hash)), _) => {
                if entry.prev.as_deref() != Some(hash.as_str()) {
                    faults.push(fault(line.number, ChainFault::BrokenLink));
                }
                if entry.seq != seq + 1 {
                    faults.push(fault(
                        line.number,
                        ChainFault::Sequence {
                            expected: seq + 1,
                            found: entry.seq,
                        },
                    ));
                }
            }
        }
        previous = Some((entry.seq, line.hash.clone()));
        let at = format!("{name}:{}", line.number);
        match (entry.kind, &entry.call, &entry.manifest_sha256) {
            (EntryKind::Opened, _, _) => {}
            (EntryKind::Sealed, Some(call), Some(hash)) => {
                audit.calls.insert(
                    call.clone(),
                    CallState::Sealed {
                        manifest_sha256: hash.clone(),
                        at,
                    },
                );
            }
            (EntryKind::Deleted, Some(call), hash) => {
                audit.calls.insert(
                    call.clone(),
                    CallState::Deleted {
                        manifest_sha256: hash.clone(),
                        at,
                    },
                );
            }
            _ => faults.push(fault(line.number, ChainFault::Incomplete)),
        }
    }
    audit.faults.extend(faults);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    const DAY_US: i64 = 86_400 * 1_000_000;
    /// 2025-03-01T00:00:00Z.
    const MARCH_1: i64 = 1_740_787_200 * 1_000_000;

    fn at(micros: i64) -> Timestamp {
        Timestamp::from_unix_micros(micros)
    }

    fn sealed(call: &str) -> Record<'_> {
        Record::Sealed {
            call,
            manifest_sha256: "ab",
            by_repair: false,
        }
    }

    fn day_path(data: &Path, day: &str) -> PathBuf {
        data.join(CHAIN_DIR).join(format!("{day}.jsonl"))
    }

    fn faults(data: &Path) -> Vec<(String, usize, ChainFault)> {
        audit(data).unwrap().faults
    }

    #[test]
    fn days_and_their_files() {
        assert_eq!(day_of(at(MARCH_1)), "2025-03-01");
        assert_eq!(day_of(at(MARCH_1 - 1)), "2025-02-28");
        assert_eq!(day_of_file("2025-03-01.jsonl"), Some("2025-03-01"));
        for name in [
            "2025-03-01.json",
            "2025-3-01.jsonl",
            "x025-03-01.jsonl",
            ".tmp",
        ] {
            assert_eq!(day_of_file(name), None, "{name}");
        }
    }

    #[test]
    fn a_chain_over_three_days_links_each_day_to_the_last() {
        let data = tempfile::tempdir().unwrap();
        let chain = Chain::new(data.path());
        chain.append(sealed("a"), at(MARCH_1 + 5)).unwrap();
        chain.append(sealed("b"), at(MARCH_1 + 6)).unwrap();
        // March 2 has nothing: March 3 links to March 1.
        chain
            .append(
                Record::Deleted {
                    call: "a",
                    manifest_sha256: Some("ab"),
                },
                at(MARCH_1 + 2 * DAY_US),
            )
            .unwrap();
        let audit = audit(data.path()).unwrap();
        assert!(audit.faults.is_empty(), "{:?}", audit.faults);
        assert_eq!((audit.days, audit.entries), (2, 5));
        assert!(matches!(audit.calls["a"], CallState::Deleted { .. }));
        assert!(matches!(audit.calls["b"], CallState::Sealed { .. }));
        let third = fs::read_to_string(day_path(data.path(), "2025-03-03")).unwrap();
        let opened: Entry = serde_json::from_str(third.lines().next().unwrap()).unwrap();
        assert_eq!(opened.prev_day.as_deref(), Some("2025-03-01"));
        let first = fs::read(day_path(data.path(), "2025-03-01")).unwrap();
        let last_line = first.split_inclusive(|b| *b == b'\n').next_back().unwrap();
        assert_eq!(opened.prev, Some(sha256_hex(last_line)));
        // A new writer (a restart) goes on from what is on disk.
        Chain::new(data.path())
            .append(sealed("c"), at(MARCH_1 + 2 * DAY_US + 1))
            .unwrap();
        assert!(faults(data.path()).is_empty());
    }

    #[test]
    fn an_edited_removed_or_reordered_line_is_found() {
        let data = tempfile::tempdir().unwrap();
        let chain = Chain::new(data.path());
        for call in ["a", "b", "c"] {
            chain.append(sealed(call), at(MARCH_1)).unwrap();
        }
        let path = day_path(data.path(), "2025-03-01");
        let original = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = original.lines().collect();
        let write = |lines: &[&str]| fs::write(&path, lines.join("\n") + "\n").unwrap();

        write(&[
            lines[0],
            &lines[1].replace("\"a\"", "\"x\""),
            lines[2],
            lines[3],
        ]);
        assert_eq!(
            faults(data.path()),
            [("2025-03-01.jsonl".into(), 3, ChainFault::BrokenLink)]
        );

        write(&[lines[0], lines[1], lines[3]]);
        let found = faults(data.path());
        assert!(
            found.contains(&("2025-03-01.jsonl".into(), 3, ChainFault::BrokenLink)),
            "{found:?}"
        );
        assert!(found.iter().any(|f| matches!(
            f.2,
            ChainFault::Sequence {
                expected: 2,
                found: 3
            }
        )));

        write(&[lines[0], lines[2], lines[1], lines[3]]);
        assert_eq!(faults(data.path()).len(), 6, "{:?}", faults(data.path()));

        write(&[lines[1], lines[2], lines[3]]);
        assert_eq!(faults(data.path())[0].2, ChainFault::NotOpened);
    }

    #[test]
    fn a_removed_day_file_breaks_the_next_days_link() {
        let data = tempfile::tempdir().unwrap();
        let chain = Chain::new(data.path());
        for day in 0..3 {
            chain
                .append(sealed("a"), at(MARCH_1 + day * DAY_US))
                .unwrap();
        }
        fs::remove_file(day_path(data.path(), "2025-03-02")).unwrap();
        let found = faults(data.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0],
            (
                "2025-03-03.jsonl".into(),
                1,
                ChainFault::DayLink {
                    expected: Some("2025-03-01".into()),
                    found: Some("2025-03-02".into()),
                }
            )
        );
    }

    #[test]
    fn a_torn_last_line_is_reported_and_the_writer_goes_on_around_it() {
        let data = tempfile::tempdir().unwrap();
        Chain::new(data.path())
            .append(sealed("a"), at(MARCH_1))
            .unwrap();
        let path = day_path(data.path(), "2025-03-01");
        // A crash mid-append: half a line, no newline.
        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"seq\":2,\"time\":\"2025-03-01T00:")
            .unwrap();
        drop(file);
        assert_eq!(
            faults(data.path()),
            [("2025-03-01.jsonl".into(), 3, ChainFault::Torn)]
        );

        // The restarted writer starts a new line and links to the last whole entry.
        Chain::new(data.path())
            .append(sealed("b"), at(MARCH_1 + 1))
            .unwrap();
        let found = faults(data.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            matches!(&found[0], (_, 3, ChainFault::NotAnEntry(_))),
            "{found:?}"
        );
        let audit = audit(data.path()).unwrap();
        assert!(matches!(audit.calls["b"], CallState::Sealed { .. }));
        // Removing the fragment leaves a whole chain.
        let text = fs::read_to_string(&path).unwrap();
        let kept: Vec<&str> = text.lines().filter(|l| !l.ends_with("T00:")).collect();
        fs::write(&path, kept.join("\n") + "\n").unwrap();
        assert!(faults(data.path()).is_empty());
    }

    #[test]
    fn a_day_file_with_no_entry_is_opened_anew_after_the_junk() {
        let data = tempfile::tempdir().unwrap();
        let chain = Chain::new(data.path());
        chain.append(sealed("a"), at(MARCH_1)).unwrap();
        let path = day_path(data.path(), "2025-03-01");
        fs::write(&path, "not json\n").unwrap();
        Chain::new(data.path())
            .append(sealed("b"), at(MARCH_1 + 1))
            .unwrap();
        let found = faults(data.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(matches!(&found[0], (_, 1, ChainFault::NotAnEntry(_))));
    }

    #[test]
    fn entries_without_their_fields_are_incomplete() {
        let data = tempfile::tempdir().unwrap();
        Chain::new(data.path())
            .append(sealed("a"), at(MARCH_1))
            .unwrap();
        let path = day_path(data.path(), "2025-03-01");
        let text = fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap();
        let line = format!(
            "{{\"seq\":2,\"time\":\"2025-03-01T00:00:00.000Z\",\"kind\":\"sealed\",\"prev\":\"{}\"}}\n",
            sha256_hex(format!("{last}\n").as_bytes())
        );
        fs::write(&path, text + &line).unwrap();
        assert_eq!(
            faults(data.path()),
            [("2025-03-01.jsonl".into(), 3, ChainFault::Incomplete)]
        );
    }
}
