//! `manifest.json`: what a sealed call folder holds, file by file, with each file's size and
//! SHA-256; written once the call has ended and every file is final.

use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use mediagate_protocol::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::chain::{Chain, Record};
use super::{hex, sha256_hex, write_atomic};

/// The manifest's name in a call folder.
pub(crate) const MANIFEST_FILE: &str = "manifest.json";

/// Folders deeper than this in a call folder are not listed (the recorders write none at all).
const MAX_DEPTH: usize = 8;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    /// The folder's name.
    pub(crate) call_id: String,
    /// When it was sealed (RFC 3339, UTC).
    pub(crate) sealed_at: String,
    /// Every file of the folder but the manifest and hidden files, sorted by path.
    pub(crate) files: Vec<ManifestFile>,
}

/// One file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManifestFile {
    /// Relative to the call folder, `/`-separated.
    pub(crate) path: String,
    pub(crate) bytes: u64,
    /// SHA-256 of the content, hex.
    pub(crate) sha256: String,
}

/// The files a manifest covers: every regular file under `dir`, recursively, but
/// `manifest.json` itself and hidden names (`.reserve`, `.session.json.tmp`, temporary files);
/// links are not followed. Sorted by relative path. Blocking.
pub(crate) fn list_files(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    // Folders still to list, with their relative path and depth.
    let mut pending = vec![(String::new(), dir.to_owned(), 0)];
    while let Some((prefix, folder, depth)) = pending.pop() {
        for entry in fs::read_dir(&folder)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || (depth == 0 && name == MANIFEST_FILE) {
                continue;
            }
            let relative = format!("{prefix}{name}");
            let kind = entry.file_type()?;
            if kind.is_file() {
                files.push((relative, entry.path()));
            } else if kind.is_dir() {
                if depth + 1 >= MAX_DEPTH {
                    return Err(io::Error::other(format!(
                        "{relative}: folders nested deeper than {MAX_DEPTH}"
                    )));
                }
                pending.push((format!("{relative}/"), entry.path(), depth + 1));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Size and SHA-256 (hex) of the file at `path`, read in 64 KiB blocks. Blocking.
pub(crate) fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex(&hasher.finalize())))
}

/// Hashes every file of the call folder `dir`, writes its manifest.json atomically (temporary
/// file, sync, rename, folder sync) and returns the SHA-256 of the manifest's bytes. Blocking.
pub(crate) fn write_manifest(dir: &Path, call_id: &str, now: Timestamp) -> io::Result<String> {
    let mut files = Vec::new();
    for (path, full) in list_files(dir)? {
        let (bytes, sha256) = hash_file(&full)?;
        files.push(ManifestFile {
            path,
            bytes,
            sha256,
        });
    }
    let manifest = Manifest {
        call_id: call_id.to_owned(),
        sealed_at: now.to_string(),
        files,
    };
    let mut text = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
    text.push(b'\n');
    write_atomic(&dir.join(MANIFEST_FILE), &text)?;
    Ok(sha256_hex(&text))
}

/// Seals the call folder `dir`: its manifest, then the chain's `sealed` entry. A crash between
/// the two leaves a manifest the chain does not name: `mediagate verify` reports it and
/// `mediagate repair` seals the call again. Blocking.
pub(crate) fn seal(dir: &Path, call_id: &str, chain: &Chain, by_repair: bool) -> io::Result<()> {
    let manifest_sha256 = write_manifest(dir, call_id, Timestamp::now())?;
    chain.append(
        Record::Sealed {
            call: call_id,
            manifest_sha256: &manifest_sha256,
            by_repair,
        },
        Timestamp::now(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    #[test]
    fn the_manifest_lists_every_file_but_itself_and_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("mixed.wav"), b"RIFF").unwrap();
        fs::write(dir.path().join("session.json"), b"{}").unwrap();
        fs::write(dir.path().join(".reserve"), b"0000").unwrap();
        fs::create_dir_all(dir.path().join("extra/.hidden")).unwrap();
        fs::write(dir.path().join("extra/notes.txt"), b"").unwrap();
        fs::write(dir.path().join("extra/.hidden/x"), b"x").unwrap();
        let hash = write_manifest(dir.path(), "c", Timestamp::from_unix_micros(0)).unwrap();
        let bytes = fs::read(dir.path().join(MANIFEST_FILE)).unwrap();
        assert_eq!(hash, sha256_hex(&bytes));
        let manifest: Manifest = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(manifest.sealed_at, "1970-01-01T00:00:00.000Z");
        let paths: Vec<_> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["extra/notes.txt", "mixed.wav", "session.json"]);
        assert_eq!(manifest.files[1].bytes, 4);
        assert_eq!(manifest.files[1].sha256, sha256_hex(b"RIFF"));
        // Sealing again lists the same files: the manifest is not one of them.
        write_manifest(dir.path(), "c", Timestamp::from_unix_micros(0)).unwrap();
        assert_eq!(fs::read(dir.path().join(MANIFEST_FILE)).unwrap(), bytes);
        assert!(!dir.path().join(".manifest.json.tmp").exists());
    }
}
