//! Where the signing keys come from: the OpenID configuration over HTTPS (plain http for a
//! loopback host only), or a local JWKS file. Blocking, bounded in time and size.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::jwt::{Fetch, KeySet, parse_jwks};

/// Largest OpenID configuration, JWKS or secret file read.
pub(super) const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;

/// Longest one request may take; a fetch is two (the configuration, then the key set).
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// Refuses URLs a key set must not come from: anything but https, except http to a loopback
/// host.
pub(super) fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        _ => Err(format!(
            "{url:?} must be https:// (plain http only for a loopback host)"
        )),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Fetches `url` (an OpenID configuration), then the JWKS its `jwks_uri` names.
pub(super) fn from_openid_config(url: &str) -> Result<Fetch, String> {
    check_url(url)?;
    let https = url.starts_with("https://");
    let agent = agent(https);
    let url = url.to_owned();
    Ok(Arc::new(move || fetch_openid(&agent, &url)))
}

/// Reads `path` (a JWKS) each time; the issuer is the configured one.
pub(super) fn from_file(path: PathBuf, issuer: String) -> Fetch {
    Arc::new(move || {
        let bytes = read_capped(&path)?;
        let text = String::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
        Ok(KeySet {
            issuer: issuer.clone(),
            keys: parse_jwks(&text)?,
        })
    })
}

/// Reads a small file whole, refusing one over [`MAX_DOCUMENT_BYTES`].
pub(super) fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(format!("larger than {MAX_DOCUMENT_BYTES} bytes"));
    }
    Ok(bytes)
}

fn fetch_openid(agent: &ureq::Agent, url: &str) -> Result<KeySet, String> {
    #[derive(Deserialize)]
    struct OpenIdConfig {
        issuer: String,
        jwks_uri: String,
    }
    let config: OpenIdConfig = serde_json::from_str(&get(agent, url)?)
        .map_err(|e| format!("{url}: not an OpenID configuration: {e}"))?;
    check_url(&config.jwks_uri).map_err(|e| format!("{url}: jwks_uri {e}"))?;
    let keys = parse_jwks(&get(agent, &config.jwks_uri)?)
        .map_err(|e| format!("{}: {e}", config.jwks_uri))?;
    Ok(KeySet {
        issuer: config.issuer,
        keys,
    })
}

fn get(agent: &ureq::Agent, url: &str) -> Result<String, String> {
    agent
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(|e| format!("{url}: {e}"))?
        .body_mut()
        .with_config()
        .limit(MAX_DOCUMENT_BYTES)
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))
}

/// An HTTP client with an overall deadline that trusts the system's certificates when it has
/// them (else the bundled web PKI roots). Over https, redirects stay on https; over loopback
/// http, none are followed.
fn agent(https: bool) -> ureq::Agent {
    let roots = system_root_certs();
    ureq::Agent::config_builder()
        .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
        .https_only(https)
        .max_redirects(if https { 3 } else { 0 })
        .timeout_global(Some(REQUEST_DEADLINE))
        .build()
        .new_agent()
}

/// The certificates an HTTPS client of mediagate trusts: the system's bundle when it has one
/// (`SSL_CERT_FILE`, else the usual Debian, Red Hat and BSD paths), else the bundled web PKI
/// roots. Used by the OpenID key fetch, and by the `mediagate` binary's model installer.
pub fn system_root_certs() -> ureq::tls::RootCerts {
    use ureq::tls::{PemItem, RootCerts};
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
        .find_map(|path| std::fs::read(path).ok());
    bundle
        .map(|pem| {
            ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(cert)) => Some(cert.to_owned()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .filter(|certs| !certs.is_empty())
        .map_or(RootCerts::WebPki, |certs| RootCerts::new_with_certs(&certs))
}
