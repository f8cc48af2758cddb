//! How much room is left on a recorder's disk.

use std::io;
use std::path::Path;

/// Bytes an unprivileged process may still write on the file system holding `path` (what
/// `df` shows as available: blocks free to non-root users times the fragment size).
#[cfg(unix)]
pub fn free_bytes(path: impl AsRef<Path>) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(path.as_ref())?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Bytes an unprivileged process may still write on the file system holding `path`; not
/// known on this platform.
#[cfg(not(unix))]
pub fn free_bytes(_path: impl AsRef<Path>) -> io::Result<u64> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "free disk space is only known on Unix",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_directory_has_some_room_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(dir.path().join("missing")).is_err());
    }
}
