//! Speech models on disk: where they live. Installing them (`mediagate models install`, and
//! Whisper's `download = true`) is the `mediagate` binary's: see [`crate::ModelInstaller`].

use std::path::{Path, PathBuf};

/// The default model's name: its directory under [`models_dir`].
pub const DEFAULT_MODEL: &str = "whisper-tiny.en";

/// What a CTranslate2 Whisper directory must hold.
pub const MODEL_FILES: [&str; 3] = ["model.bin", "config.json", "vocabulary.txt"];

/// Where models live: `MEDIAGATE_MODELS_DIR`, else `$XDG_CACHE_HOME/mediagate/models`, else
/// `~/.cache/mediagate/models`.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MEDIAGATE_MODELS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("mediagate").join("models")
}

/// Where the default model is (or will be) installed.
pub fn default_model_dir() -> PathBuf {
    models_dir().join(DEFAULT_MODEL)
}

/// Whether `dir` holds a CTranslate2 Whisper model.
pub fn is_model_dir(dir: &Path) -> bool {
    MODEL_FILES.iter().all(|f| dir.join(f).is_file())
}
