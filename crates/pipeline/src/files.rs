//! Files in a call's folder: safe names from untrusted ids, and names that never collide.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// The longest stem [`sanitize_file_stem`] returns.
const MAX_STEM_CHARS: usize = 96;

/// Tries of `stem-N.ext` before [`create_unique`] gives up.
const MAX_SUFFIX: u32 = 10_000;

/// A file name stem made from an id that comes from outside (a participant's raw id, a call
/// id): ASCII letters, digits, `-`, `_` and `.` are kept, everything else becomes `_`; at most
/// 96 characters, never empty, never hidden (no leading `.`), so never `..`.
pub fn sanitize_file_stem(raw: &str) -> String {
    let mut stem: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_STEM_CHARS)
        .collect();
    while stem.starts_with('.') {
        stem.replace_range(0..1, "_");
    }
    if stem.is_empty() {
        stem.push_str("unnamed");
    }
    stem
}

/// Creates `stem.ext` in `dir`, or `stem-2.ext`, `stem-3.ext`… if that exists: never opens a
/// file another writer (another processor, another transport of the call, another process)
/// already created, because creation is exclusive (`O_EXCL`). `stem` is sanitized first.
/// Returns the file, opened for writing, and its name. Blocking.
pub fn create_unique(dir: &Path, stem: &str, ext: &str) -> io::Result<(File, String)> {
    let stem = sanitize_file_stem(stem);
    let ext = sanitize_file_stem(ext);
    for n in 1..=MAX_SUFFIX {
        let name = if n == 1 {
            format!("{stem}.{ext}")
        } else {
            format!("{stem}-{n}.{ext}")
        };
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join(&name))
        {
            Ok(file) => return Ok((file, name)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{MAX_SUFFIX} files named {stem}-N.{ext} exist already"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_safe() {
        assert_eq!(sanitize_file_stem("8:acs:abc-1_2"), "8_acs_abc-1_2");
        assert_eq!(sanitize_file_stem("4:+14255550123"), "4__14255550123");
        assert_eq!(sanitize_file_stem("../../etc/passwd"), "_._.._etc_passwd");
        assert_eq!(sanitize_file_stem(""), "unnamed");
        assert_eq!(sanitize_file_stem(&"x".repeat(500)).len(), 96);
    }

    #[test]
    fn names_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..3)
            .map(|_| create_unique(dir.path(), "mixed", "wav").unwrap().1)
            .collect();
        assert_eq!(names, ["mixed.wav", "mixed-2.wav", "mixed-3.wav"]);
        let (_, name) = create_unique(dir.path(), "../up", "wav").unwrap();
        assert_eq!(name, "_._up.wav");
        assert!(dir.path().join("_._up.wav").exists());
    }
}
