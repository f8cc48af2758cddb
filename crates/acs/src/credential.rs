//! Who the client is: a resource's access key (from its connection string) or a Microsoft Entra
//! bearer token.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use url::Url;

use crate::Error;

/// A resource's `endpoint=https://…/;accesskey=…`, as the Azure portal shows it and Microsoft's
/// samples read it from `ACS_CONNECTION_STRING`.
#[derive(Clone)]
pub struct ConnectionString {
    /// The resource's endpoint. `https`, or `http` on a loopback host (a local fake).
    pub endpoint: Url,
    /// The access key, decoded from base64.
    pub access_key: Arc<[u8]>,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("endpoint", &self.endpoint.as_str())
            .field("access_key", &"<redacted>")
            .finish()
    }
}

impl std::str::FromStr for ConnectionString {
    type Err = Error;

    /// Parses `endpoint=…;accesskey=…` (keys in any case, in any order, a trailing `;`
    /// allowed).
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Config(format!("the connection string {why}"));
        let (mut endpoint, mut key) = (None, None);
        for part in s.trim().split(';').filter(|p| !p.trim().is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| bad("is not `endpoint=…;accesskey=…`"))?;
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value.trim()),
                "accesskey" => key = Some(value.trim()),
                _ => {}
            }
        }
        let endpoint = endpoint.ok_or_else(|| bad("has no `endpoint`"))?;
        let key = key.ok_or_else(|| bad("has no `accesskey`"))?;
        let endpoint = Url::parse(endpoint).map_err(|e| bad(&format!("endpoint: {e}")))?;
        check_endpoint(&endpoint)?;
        let access_key = STANDARD
            .decode(key)
            .map_err(|_| bad("access key is not base64"))?;
        if access_key.is_empty() {
            return Err(bad("access key is empty"));
        }
        Ok(ConnectionString {
            endpoint,
            access_key: access_key.into(),
        })
    }
}

/// An endpoint must be `https://`, or `http://` on a loopback address (a local fake): an access
/// key or a token never crosses a network in the clear.
pub(crate) fn check_endpoint(endpoint: &Url) -> Result<(), Error> {
    let bad = |why: String| Err(Error::Config(format!("endpoint {endpoint}: {why}")));
    match endpoint.scheme() {
        "https" => {}
        "http" if is_loopback(endpoint) => {}
        "http" => return bad("plain http is allowed on a loopback address only".to_owned()),
        other => return bad(format!("unsupported scheme `{other}`")),
    }
    if endpoint.host().is_none() {
        return bad("no host".to_owned());
    }
    Ok(())
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// How requests are authenticated.
#[derive(Clone, Debug)]
pub enum Credential {
    /// HMAC-SHA256 request signing with the resource's access key.
    AccessKey(Arc<[u8]>),
    /// `Authorization: Bearer` with a Microsoft Entra token for
    /// `https://communication.azure.com/.default`.
    Entra(Arc<TokenSource>),
}

/// Where an Entra token comes from. The token is cached until five minutes before its `exp`
/// (or for five minutes when it has none), then read again.
#[derive(Debug)]
pub struct TokenSource {
    from: TokenFrom,
    cached: std::sync::Mutex<Option<(String, Instant)>>,
    /// Held while a token is read, so concurrent requests wait for one read, not one each.
    refreshing: tokio::sync::Mutex<()>,
}

/// A token file, or a command that prints one.
#[derive(Debug, Clone)]
pub enum TokenFrom {
    /// A file holding the token (surrounding whitespace ignored), kept fresh by something
    /// else (a workload identity sidecar, a cron job).
    File(PathBuf),
    /// A command run with no shell, whose standard output is the token, e.g.
    /// `["az", "account", "get-access-token", "--resource", "https://communication.azure.com",
    /// "--query", "accessToken", "-o", "tsv"]`.
    Command(Vec<String>),
}

/// How long a command may take to print a token.
const TOKEN_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// A token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(5 * 60);
/// The longest token read.
const MAX_TOKEN_BYTES: usize = 64 * 1024;

impl TokenSource {
    /// A source that reads tokens `from`.
    pub fn new(from: TokenFrom) -> TokenSource {
        TokenSource {
            from,
            cached: std::sync::Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// A valid token: the cached one, or a fresh one.
    pub(crate) async fn token(&self) -> Result<String, Error> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let _refreshing = self.refreshing.lock().await;
        // Another request may have read one meanwhile.
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let raw = match &self.from {
            TokenFrom::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| Error::Token(format!("{}: {e}", path.display())))?,
            TokenFrom::Command(argv) => run_token_command(argv).await?,
        };
        if raw.len() > MAX_TOKEN_BYTES {
            return Err(Error::Token("the token is longer than 64 KiB".to_owned()));
        }
        let token = String::from_utf8(raw)
            .map_err(|_| Error::Token("the token is not UTF-8".to_owned()))?
            .trim()
            .to_owned();
        if token.is_empty() || token.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(Error::Token(
                "the token is empty or not one printable word".to_owned(),
            ));
        }
        let until = Instant::now() + lifetime(&token);
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some((token.clone(), until));
        Ok(token)
    }
}

impl TokenSource {
    /// The cached token, while it is fresh.
    fn fresh(&self) -> Option<String> {
        let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        cached
            .as_ref()
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(token, _)| token.clone())
    }
}

async fn run_token_command(argv: &[String]) -> Result<Vec<u8>, Error> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::Token("the token command is empty".to_owned()))?;
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TOKEN_COMMAND_TIMEOUT, output)
        .await
        .map_err(|_| Error::Token(format!("`{program}` took longer than 30 s")))?
        .map_err(|e| Error::Token(format!("`{program}`: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr: String = stderr.chars().take(300).collect();
        return Err(Error::Token(format!(
            "`{program}` failed ({}): {}",
            output.status,
            stderr.trim()
        )));
    }
    Ok(output.stdout)
}

/// How long to keep a token: until [`TOKEN_MARGIN`] before the `exp` of its (unverified) JWT
/// payload (or half its remaining life, if shorter); the margin alone when it has none.
fn lifetime(token: &str) -> Duration {
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<u64>,
    }
    let exp = token
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|json| serde_json::from_slice::<Claims>(&json).ok())
        .and_then(|claims| claims.exp);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    match exp {
        // Renewed five minutes before it expires, or halfway through a shorter life.
        Some(exp) => {
            let left = Duration::from_secs(exp.saturating_sub(now));
            left.saturating_sub(TOKEN_MARGIN.min(left / 2))
        }
        None => TOKEN_MARGIN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_parse_as_the_portal_shows_them() {
        let cs: ConnectionString =
            "endpoint=https://contoso.communication.azure.com/;accesskey=c2VjcmV0"
                .parse()
                .unwrap();
        assert_eq!(
            cs.endpoint.as_str(),
            "https://contoso.communication.azure.com/"
        );
        assert_eq!(&*cs.access_key, b"secret");
        let cs: ConnectionString = "AccessKey=c2VjcmV0; Endpoint=http://127.0.0.1:9/;"
            .parse()
            .unwrap();
        assert_eq!(cs.endpoint.port(), Some(9));
        assert!(!format!("{cs:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn bad_connection_strings_say_why() {
        for (s, why) in [
            ("endpoint=https://a/", "no `accesskey`"),
            ("accesskey=c2VjcmV0", "no `endpoint`"),
            (
                "endpoint=http://example.com/;accesskey=c2VjcmV0",
                "loopback",
            ),
            ("endpoint=ftp://127.0.0.1/;accesskey=c2VjcmV0", "scheme"),
            ("endpoint=https://a/;accesskey=***", "base64"),
            ("nonsense", "endpoint=…"),
        ] {
            let e = s.parse::<ConnectionString>().unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn a_token_is_kept_until_shortly_before_it_expires() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{}}}"#, now + 3600));
        let kept = lifetime(&format!("e30.{payload}.sig"));
        assert!(kept > Duration::from_secs(3200) && kept <= Duration::from_secs(3300));
        assert_eq!(lifetime("opaque"), TOKEN_MARGIN);
        // Four minutes left: kept for two, not read again on every request.
        let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{}}}"#, now + 240));
        let kept = lifetime(&format!("e30.{payload}.sig"));
        assert!(kept >= Duration::from_secs(115) && kept <= Duration::from_secs(120));
    }

    #[tokio::test]
    async fn tokens_come_from_a_command_or_a_file() {
        let source = TokenSource::new(TokenFrom::Command(vec![
            "echo".to_owned(),
            "tok.en".to_owned(),
        ]));
        assert_eq!(source.token().await.unwrap(), "tok.en");
        let failing = TokenSource::new(TokenFrom::Command(vec!["false".to_owned()]));
        assert!(
            failing
                .token()
                .await
                .unwrap_err()
                .to_string()
                .contains("failed")
        );
        let dir = std::env::temp_dir().join(format!("mediagate-acs-token-{}", std::process::id()));
        std::fs::write(&dir, " abc \n").unwrap();
        let file = TokenSource::new(TokenFrom::File(dir.clone()));
        assert_eq!(file.token().await.unwrap(), "abc");
        let _ = std::fs::remove_file(dir);
    }
}
