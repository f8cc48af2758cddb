//! Recordings that hold up for compliance: each ended call's folder is sealed with a
//! `manifest.json` (every file's size and SHA-256), each seal and each retention deletion is an
//! entry of a per-day hash chain under `<data_dir>/.chain/`, and [`verify_dir`] (`mediagate
//! verify`) checks the whole data dir against both; [`retention`] deletes calls past
//! `recording.retention_days`, saying so in the chain first.
//!
//! What is detected: a file of a sealed call edited, removed or added; a sealed call's folder
//! removed without a `deleted` entry; a chain line edited, removed, inserted or reordered (each
//! line carries the SHA-256 of the line before it, and each day file's first line that of the
//! previous day's last). What is not: the chain's newest lines removed together with the
//! folders they name. `mediagate verify` prints the chain's head (the hash of its last line) so
//! an operator can keep it elsewhere (a ticket, a log shipper, a notary) and compare later.

pub(crate) mod chain;
pub(crate) mod manifest;
pub(crate) mod retention;
mod verify;

pub use verify::{
    ChainFault, FileFault, ManifestFault, Problem, Unsealed, VerifyOptions, VerifyReport,
    verify_dir,
};

/// Writes `bytes` hex-encoded, lower case (how every hash in the manifest and chain is written).
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// SHA-256 of `bytes`, hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(bytes))
}

/// Writes `bytes` to `path` atomically and durably: a hidden temporary file beside it, synced,
/// renamed over `path`, and the folder synced so the rename survives a power cut. Blocking.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Syncs a folder, so a file created or renamed in it is there after a power cut. Blocking.
pub(crate) fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_of_nothing_is_the_known_digest() {
        assert_eq!(
            super::sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
