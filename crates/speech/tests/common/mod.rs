//! What the speech tests share: the committed recordings of read speech.

#![allow(dead_code)] // each test file uses what it needs
#![allow(clippy::unwrap_used)] // a panic in a test helper is a failed assertion

use std::path::{Path, PathBuf};

/// samples/speech, where the committed clips are.
pub(crate) fn speech_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/speech")
}

/// The recordings of read speech (samples/speech/librivox) and what they say, from their
/// references.txt.
pub(crate) fn references() -> Vec<(String, String)> {
    std::fs::read_to_string(speech_dir().join("librivox/references.txt"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(name, text)| (name.to_owned(), text.to_owned()))
        .collect()
}
