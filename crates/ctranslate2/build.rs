//! Fetches the pinned `ctranslate2` wheel and sets up its shared library for linking (see the
//! crate's documentation). Every failure stops the build with what to do.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The pinned wheel: the library inside is the same for every CPython tag.
const WHEEL: &str = "ctranslate2-4.8.4-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl";
const WHEEL_BYTES: u64 = 42_428_932;
const WHEEL_SHA256: &str = "1037b3f51d18f1546120686670d71fcdaf85a0500fffccc56d8439ded5d284e5";
/// The index page may be at most this large.
const MAX_INDEX_BYTES: u64 = 8 << 20;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MEDIAGATE_CTRANSLATE2_WHEEL");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" {
        fail(&format!(
            "the prebuilt CTranslate2 is for x86_64 Linux (glibc), not {target}: build with \
             `--no-default-features --features whisper,ctranslate2-from-source`"
        ));
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let lib = out.join("lib");
    if let Err(e) = set_up(&lib) {
        fail(&e);
    }
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:root={}", lib.display());
}

fn fail(reason: &str) -> ! {
    eprintln!(
        "mediagate-ctranslate2: {reason}\n(offline: set MEDIAGATE_CTRANSLATE2_WHEEL to a copy of \
         {WHEEL}; or build CTranslate2 from source: --no-default-features --features \
         whisper,ctranslate2-from-source)"
    );
    std::process::exit(1);
}

/// Unpacks the wheel's libraries into `lib`, unless done already.
fn set_up(lib: &Path) -> Result<(), String> {
    let link = lib.join("libctranslate2.so");
    if link.exists() {
        return Ok(());
    }
    let wheel = wheel()?;
    let staging = lib.with_extension("partial");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    let file = fs::File::open(&wheel).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| format!("{WHEEL}: {e}"))?;
    let mut library = None;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| format!("{WHEEL}: {e}"))?;
        let name = entry.name().to_owned();
        let Some(file_name) = name.strip_prefix("ctranslate2.libs/") else {
            continue;
        };
        if file_name.is_empty() || file_name.contains('/') {
            continue;
        }
        let to = staging.join(file_name);
        let mut out = fs::File::create(&to).map_err(|e| format!("{}: {e}", to.display()))?;
        io::copy(&mut entry, &mut out).map_err(|e| format!("{}: {e}", to.display()))?;
        if file_name.starts_with("libctranslate2") {
            library = Some(file_name.to_owned());
        }
    }
    let library = library.ok_or_else(|| format!("{WHEEL} holds no libctranslate2"))?;
    std::os::unix::fs::symlink(&library, staging.join("libctranslate2.so"))
        .map_err(|e| format!("symlink: {e}"))?;
    let _ = fs::remove_dir_all(lib);
    fs::rename(&staging, lib).map_err(|e| format!("{}: {e}", lib.display()))
}

/// The checked wheel on disk: given, cached, or downloaded into the cache.
fn wheel() -> Result<PathBuf, String> {
    if let Some(given) = std::env::var_os("MEDIAGATE_CTRANSLATE2_WHEEL") {
        let given = PathBuf::from(given);
        check(&given)?;
        return Ok(given);
    }
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let cache = PathBuf::from(home).join(".cache/mediagate/wheels");
    let path = cache.join(WHEEL);
    if check(&path).is_ok() {
        return Ok(path);
    }
    fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let partial = cache.join(format!("{WHEEL}.{}.partial", std::process::id()));
    let fetched = download(&partial).and_then(|()| check(&partial));
    if let Err(e) = fetched {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    fs::rename(&partial, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Whether `path` is the pinned wheel: its size and SHA-256.
fn check(path: &Path) -> Result<(), String> {
    let mut file = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let bytes = io::copy(&mut file, &mut hasher).map_err(|e| format!("{}: {e}", path.display()))?;
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if bytes != WHEEL_BYTES || digest != WHEEL_SHA256 {
        return Err(format!(
            "{} is not the pinned {WHEEL} ({bytes} bytes, sha256 {digest})",
            path.display()
        ));
    }
    Ok(())
}

/// The system's CA bundle (a corporate proxy's CA is honoured), else the built-in roots.
fn roots() -> ureq::tls::RootCerts {
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
            ]
            .map(PathBuf::from),
        )
        .find_map(|path| fs::read(path).ok());
    let certs: Vec<_> = bundle
        .iter()
        .flat_map(|pem| ureq::tls::parse_pem(pem))
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert.to_owned()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        ureq::tls::RootCerts::WebPki
    } else {
        ureq::tls::RootCerts::new_with_certs(&certs)
    }
}

/// Downloads the wheel into `to`: its URL from the index's JSON page, HTTPS only.
fn download(to: &Path) -> Result<(), String> {
    let index = std::env::var("MEDIAGATE_PYPI_URL").unwrap_or_else(|_| "https://pypi.org".into());
    let page = format!("{}/simple/ctranslate2/", index.trim_end_matches('/'));
    let agent = ureq::Agent::config_builder()
        .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots()).build())
        .https_only(true)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .new_agent();
    let text = agent
        .get(&page)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .call()
        .and_then(|mut r| {
            r.body_mut()
                .with_config()
                .limit(MAX_INDEX_BYTES)
                .read_to_string()
        })
        .map_err(|e| format!("{page}: {e}"))?;
    let listing: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{page}: not PEP 691 JSON: {e}"))?;
    let href = listing["files"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["filename"] == WHEEL)
        .and_then(|f| f["url"].as_str())
        .ok_or_else(|| format!("{page} lists no {WHEEL}"))?;
    let url = url::Url::parse(&page)
        .and_then(|base| base.join(href))
        .map_err(|e| format!("{href}: {e}"))?;
    let mut response = agent
        .get(url.as_str())
        .call()
        .map_err(|e| format!("{url}: {e}"))?;
    let mut body = response
        .body_mut()
        .with_config()
        .limit(WHEEL_BYTES)
        .reader();
    let mut file = fs::File::create(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = body.read(&mut buffer).map_err(|e| format!("{url}: {e}"))?;
        if n == 0 {
            break;
        }
        file.write_all(&buffer[..n])
            .map_err(|e| format!("{}: {e}", to.display()))?;
    }
    Ok(())
}
