//! Authentication of the WebSocket upgrade: who may open a call, checked before the upgrade is
//! accepted and before anything is allocated for the call.
//!
//! Three modes (`[auth] mode`):
//! - `acs`: the JWT ACS signs every upgrade with (`Authorization: Bearer …`), RS256 only,
//!   validated against the keys and issuer of ACS's OpenID configuration ([`jwt`], [`fetch`]).
//! - `secret`: a shared secret, as `Authorization: Bearer <secret>` or a `token` query parameter,
//!   compared in constant time. For platforms other than ACS, and for tests.
//! - `none`: anyone. Only on a loopback address, unless the operator opts out knowingly.
//!
//! A refused upgrade gets a bare 401 (no detail for the client), is counted by reason in
//! `mediagate_auth_refused_total`, and is logged at most once per peer IP per minute.

mod fetch;

pub use fetch::system_root_certs;
mod jwt;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::AppState;
use crate::config::ConfigError;

/// ACS's OpenID configuration: the issuer of its upgrade tokens and where its keys are.
pub(crate) const ACS_OPENID_CONFIG_URL: &str =
    "https://acscallautomation.communication.azure.com/calling/.well-known/acsopenidconfiguration";

/// The environment variable the shared secret is read from by default.
pub(crate) const DEFAULT_SECRET_ENV: &str = "MEDIAGATE_AUTH_SECRET";

/// The shortest shared secret accepted, in bytes.
pub(crate) const MIN_SECRET_BYTES: usize = 16;

/// The query parameter that may carry the shared secret in `secret` mode.
const TOKEN_QUERY_KEY: &str = "token";

/// Who may open a WebSocket: `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `acs`, `secret` or `none` (the default, allowed on a loopback `listen` only).
    pub mode: AuthMode,
    /// `acs`: the OpenID configuration whose `issuer` and `jwks_uri` tokens are checked against.
    /// HTTPS (plain http only for a loopback host).
    pub openid_config_url: String,
    /// `acs`: the expected `aud`, the ACS resource's immutable id. Required in that mode.
    pub audience: Option<String>,
    /// `acs`: a local JWKS file used instead of fetching the OpenID configuration (hosts without
    /// egress); `issuer` is then required. Reread when a token names an unknown key.
    pub jwks_file: Option<PathBuf>,
    /// `acs`: the expected `iss`. Required with `jwks_file`; otherwise taken from the OpenID
    /// configuration unless given here.
    pub issuer: Option<String>,
    /// `acs`: seconds of clock difference tolerated on `exp` and `nbf`.
    pub clock_skew_secs: u64,
    /// `secret`: the environment variable holding the secret (when `secret_file` is not set).
    pub secret_env: String,
    /// `secret`: a file holding the secret (surrounding whitespace ignored); wins over
    /// `secret_env`.
    pub secret_file: Option<PathBuf>,
    /// Lets `mode = "none"` listen on a non-loopback address: anyone who reaches the port can
    /// open calls. For a gateway behind something that authenticates for it.
    pub allow_unauthenticated_public: bool,
}

/// How upgrades are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// ACS's signed JWT.
    Acs,
    /// A shared secret.
    Secret,
    /// No authentication.
    None,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::None,
            openid_config_url: ACS_OPENID_CONFIG_URL.to_owned(),
            audience: None,
            jwks_file: None,
            issuer: None,
            clock_skew_secs: 60,
            secret_env: DEFAULT_SECRET_ENV.to_owned(),
            secret_file: None,
            allow_unauthenticated_public: false,
        }
    }
}

impl AuthConfig {
    /// Checks the keys against each other and against the `listen` address (no I/O).
    pub fn validate(&self, listen: SocketAddr) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        match self.mode {
            AuthMode::None => {
                if !listen.ip().is_loopback() && !self.allow_unauthenticated_public {
                    return invalid(
                        "auth.mode",
                        format!(
                            "is \"none\" but `listen` = {listen} is not a loopback address: anyone \
                             who reaches it could open calls. Configure [auth]: mode = \"acs\" \
                             with audience = \"<your ACS resource's immutable id>\" (ACS signs \
                             every upgrade), or mode = \"secret\" with the secret in the \
                             {DEFAULT_SECRET_ENV} environment variable (or secret_file). Or opt \
                             out knowingly: [auth] allow_unauthenticated_public = true"
                        ),
                    );
                }
            }
            AuthMode::Acs => {
                if self.audience.as_deref().is_none_or(|a| a.trim().is_empty()) {
                    return invalid(
                        "auth.audience",
                        "is required with mode = \"acs\": the immutable resource id of your \
                         ACS resource (Azure portal, the resource's Properties)"
                            .to_owned(),
                    );
                }
                if self.jwks_file.is_some() && self.issuer.is_none() {
                    return invalid(
                        "auth.issuer",
                        "is required with `auth.jwks_file`: the `issuer` of the OpenID \
                         configuration the keys come from"
                            .to_owned(),
                    );
                }
                if self.jwks_file.is_none() {
                    if let Err(reason) = fetch::check_url(&self.openid_config_url) {
                        return invalid("auth.openid_config_url", reason);
                    }
                }
                if self.clock_skew_secs > 600 {
                    return invalid(
                        "auth.clock_skew_secs",
                        "must be at most 600 (ACS tokens live about 5 minutes)".to_owned(),
                    );
                }
            }
            AuthMode::Secret => {
                if self.secret_file.is_none() && self.secret_env.trim().is_empty() {
                    return invalid(
                        "auth.secret_env",
                        "must name an environment variable (or set auth.secret_file)".to_owned(),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Why authentication could not be set up at start-up.
#[derive(Debug, Error)]
pub enum AuthError {
    /// The `[auth]` keys cannot work together, or with `listen`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The shared secret is missing, unreadable or too short.
    #[error("invalid configuration: `{key}`: {reason}")]
    Secret {
        /// `auth.secret_file` or `auth.secret_env`.
        key: &'static str,
        /// What is wrong (never the secret itself).
        reason: String,
    },
    /// `auth.jwks_file` cannot be read or holds no usable RS256 key.
    #[error("invalid configuration: `auth.jwks_file` {path}: {reason}")]
    JwksFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Why an upgrade was refused: the `reason` label of `mediagate_auth_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No credential at all.
    Missing,
    /// Not a bearer credential, or not a well-formed JWT.
    Malformed,
    /// `exp` has passed (beyond the skew).
    Expired,
    /// `nbf` is still to come (beyond the skew).
    NotYetValid,
    /// `aud` is not ours.
    Audience,
    /// `iss` is not the expected issuer.
    Issuer,
    /// The RS256 signature does not verify.
    Signature,
    /// The token names a key the key set does not have, even after a refetch.
    UnknownKey,
    /// Anything but RS256 (`none`, HS256, …).
    Algorithm,
    /// `secret` mode: a credential that is not the secret.
    Secret,
}

impl Refusal {
    /// Every reason, so each has its series from the start.
    pub(crate) const ALL: [Refusal; 10] = [
        Refusal::Missing,
        Refusal::Malformed,
        Refusal::Expired,
        Refusal::NotYetValid,
        Refusal::Audience,
        Refusal::Issuer,
        Refusal::Signature,
        Refusal::UnknownKey,
        Refusal::Algorithm,
        Refusal::Secret,
    ];

    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::Audience => "audience",
            Refusal::Issuer => "issuer",
            Refusal::Signature => "signature",
            Refusal::UnknownKey => "unknown_key",
            Refusal::Algorithm => "algorithm",
            Refusal::Secret => "secret",
        }
    }
}

/// The shared secret. Never printed: its `Debug` says only that it is there.
struct SharedSecret(Vec<u8>);

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

/// `[auth] mode = "secret"`: the secret, from which the control plane derives each call's
/// token for the transport URLs it gives ACS ([`call_token`]); `None` in the other modes.
pub(crate) fn url_secret(config: &AuthConfig) -> Result<Option<Vec<u8>>, AuthError> {
    if config.mode != AuthMode::Secret {
        return Ok(None);
    }
    Ok(Some(SharedSecret::load(config)?.0))
}

/// A token that admits the upgrades of call `call_id` only (with `callId=<call_id>` in the
/// query): hex HMAC-SHA256 of the call id under the secret. What the control plane puts in the
/// transport URLs it gives ACS, so a URL that leaks (a proxy's log) opens no other call.
pub(crate) fn call_token(secret: &[u8], call_id: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, format!("mediagate-call:{call_id}").as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl SharedSecret {
    /// Reads the secret from `secret_file`, else from the variable `secret_env`.
    fn load(config: &AuthConfig) -> Result<SharedSecret, AuthError> {
        let (key, value) = match &config.secret_file {
            Some(path) => ("auth.secret_file", read_secret_file(path)?),
            None => {
                let name = config.secret_env.as_str();
                let value = std::env::var_os(name).ok_or_else(|| AuthError::Secret {
                    key: "auth.secret_env",
                    reason: format!(
                        "mode = \"secret\" but the environment variable {name} is not set"
                    ),
                })?;
                let value = value.into_string().map_err(|_| AuthError::Secret {
                    key: "auth.secret_env",
                    reason: format!("the environment variable {name} is not UTF-8"),
                })?;
                ("auth.secret_env", value.trim().to_owned())
            }
        };
        if value.len() < MIN_SECRET_BYTES {
            return Err(AuthError::Secret {
                key,
                reason: format!(
                    "the secret is {} bytes; at least {MIN_SECRET_BYTES} are required \
                     (e.g. `openssl rand -hex 32`)",
                    value.len()
                ),
            });
        }
        Ok(SharedSecret(value.into_bytes()))
    }

    /// Constant time in the content (a length mismatch returns early: the length is no secret
    /// worth the cost of hiding).
    fn matches(&self, offered: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_slice().ct_eq(offered).into()
    }
}

fn read_secret_file(path: &Path) -> Result<String, AuthError> {
    let failed = |reason: String| AuthError::Secret {
        key: "auth.secret_file",
        reason: format!("{}: {reason}", path.display()),
    };
    let bytes = fetch::read_capped(path).map_err(failed)?;
    let text = String::from_utf8(bytes).map_err(|_| failed("not UTF-8".to_owned()))?;
    Ok(text.trim().to_owned())
}

/// What an upgrade is checked against.
#[derive(Debug)]
enum Check {
    None,
    Secret(SharedSecret),
    Acs(jwt::JwtValidator),
}

/// Decides, per upgrade request, whether it may proceed.
#[derive(Debug)]
pub(crate) struct Authenticator {
    check: Check,
    /// Which peers were logged lately, so a flood logs a line per peer per minute at most.
    log: Mutex<RefusalLog>,
}

impl Authenticator {
    /// Validates the config against `listen`, loads the secret or the keys. In `acs` mode the
    /// keys are fetched once now; a failed fetch is logged and retried lazily, on the first
    /// token that needs them, rather than refusing to start: the identity provider being
    /// briefly unreachable should not keep the gateway down (and tokens are refused meanwhile,
    /// so nothing is let in).
    pub(crate) async fn start(
        config: &AuthConfig,
        listen: SocketAddr,
    ) -> Result<Authenticator, AuthError> {
        config.validate(listen)?;
        let check = match config.mode {
            AuthMode::None => {
                if !listen.ip().is_loopback() {
                    tracing::warn!(
                        %listen,
                        "[auth] mode = \"none\" on a non-loopback address \
                         (allow_unauthenticated_public): anyone who reaches it can open calls"
                    );
                }
                Check::None
            }
            AuthMode::Secret => Check::Secret(SharedSecret::load(config)?),
            AuthMode::Acs => {
                let validator = jwt::JwtValidator::from_config(config)?;
                if let Err(reason) = validator.load().await {
                    if let Some(path) = &config.jwks_file {
                        return Err(AuthError::JwksFile {
                            path: path.clone(),
                            reason,
                        });
                    }
                    tracing::warn!(
                        %reason,
                        "cannot fetch the OpenID configuration and keys: tokens are refused \
                         until a later fetch succeeds"
                    );
                }
                Check::Acs(validator)
            }
        };
        tracing::info!(mode = ?config.mode, "upgrade authentication");
        Ok(Authenticator {
            check,
            log: Mutex::new(RefusalLog::default()),
        })
    }

    /// Whether the request with these headers and query may upgrade.
    pub(crate) async fn admit(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<(), Refusal> {
        match &self.check {
            Check::None => Ok(()),
            Check::Secret(secret) => {
                // Either may carry it: ACS puts its own JWT in `Authorization` on every
                // upgrade, so a secret given to it can only travel in the URL's query.
                let header = bearer(headers)?.map(|value| value.as_bytes().to_vec());
                let token = query_token(query);
                if header.is_none() && token.is_none() {
                    return Err(Refusal::Missing);
                }
                // Or, in the query, the token of the call it names ([`call_token`]).
                let call = query.and_then(|q| {
                    form_urlencoded::parse(q.as_bytes())
                        .find(|(key, _)| key == "callId")
                        .map(|(_, value)| value.into_owned())
                });
                let for_call = |offered: &Vec<u8>| {
                    call.as_deref().is_some_and(|call| {
                        use subtle::ConstantTimeEq;
                        call_token(&secret.0, call).as_bytes().ct_eq(offered).into()
                    })
                };
                if [&header, &token]
                    .into_iter()
                    .flatten()
                    .any(|offered| secret.matches(offered))
                    || token.as_ref().is_some_and(for_call)
                {
                    Ok(())
                } else {
                    Err(Refusal::Secret)
                }
            }
            Check::Acs(validator) => match bearer(headers)? {
                None => Err(Refusal::Missing),
                Some(token) => validator.validate(token).await,
            },
        }
    }

    /// Takes the credential out of the query a call keeps (and session.json shows): in `secret`
    /// mode, the `token` parameter.
    pub(crate) fn remove_credentials(&self, query: &mut BTreeMap<String, String>) {
        if matches!(self.check, Check::Secret(_)) {
            query.retain(|key, _| !key.eq_ignore_ascii_case(TOKEN_QUERY_KEY));
        }
    }

    /// Whether a refusal from `ip` should be logged now.
    fn log_decision(&self, ip: IpAddr, now: Instant) -> LogDecision {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .decide(ip, now)
    }
}

/// The upgrade check, for the `/ws` handler: `None` lets the request through; `Some` is the
/// 401 to answer with (counted and, once per peer per minute, logged).
pub(crate) async fn refuse(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    peer: SocketAddr,
) -> Option<Response> {
    let refusal = state.auth.admit(headers, uri.query()).await.err()?;
    state.metrics.auth_refused(refusal.as_str());
    match state.auth.log_decision(peer.ip(), Instant::now()) {
        LogDecision::Peer => tracing::warn!(
            peer = %peer.ip(),
            reason = refusal.as_str(),
            "upgrade refused: not authenticated (this peer's next refusals are not logged for a \
             minute)"
        ),
        LogDecision::Flood => tracing::warn!(
            peer = %peer.ip(),
            reason = refusal.as_str(),
            "upgrade refused: not authenticated; refusals from over {LOG_MAX_PEERS} peers this \
             minute: the next are only counted (mediagate_auth_refused_total)"
        ),
        LogDecision::Quiet => {}
    }
    Some(unauthorized())
}

/// 401 with an empty body: the client learns nothing about why.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
    )
        .into_response()
}

/// The `Authorization: Bearer` credential: `Ok(None)` without the header, `Malformed` with one
/// that is not a single bearer value.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Refusal> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::Malformed);
    }
    let value = value.to_str().map_err(|_| Refusal::Malformed)?;
    let (scheme, credential) = value.split_once(' ').ok_or(Refusal::Malformed)?;
    let credential = credential.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || credential.is_empty() {
        return Err(Refusal::Malformed);
    }
    Ok(Some(credential))
}

/// The `token` query parameter, percent-decoded.
fn query_token(query: Option<&str>) -> Option<Vec<u8>> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key.eq_ignore_ascii_case(TOKEN_QUERY_KEY))
        .map(|(_, value)| value.into_owned().into_bytes())
}

/// How often one peer's refusals are logged.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Most peers remembered; past that (a flood from many addresses), one line per minute says so.
const LOG_MAX_PEERS: usize = 4096;

/// Whether to log a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LogDecision {
    /// The first from this peer in a minute.
    Peer,
    /// Too many peers to remember: the first such refusal in a minute.
    Flood,
    /// Logged lately: only counted.
    Quiet,
}

/// When each peer's refusal was last logged, bounded.
#[derive(Debug, Default)]
struct RefusalLog {
    last: HashMap<IpAddr, Instant>,
    /// When the "too many peers" line was last logged.
    overflow: Option<Instant>,
}

impl RefusalLog {
    fn decide(&mut self, ip: IpAddr, now: Instant) -> LogDecision {
        let recent = |at: &Instant| now.saturating_duration_since(*at) < LOG_INTERVAL;
        if let Some(at) = self.last.get_mut(&ip) {
            if recent(at) {
                return LogDecision::Quiet;
            }
            *at = now;
            return LogDecision::Peer;
        }
        if self.last.len() >= LOG_MAX_PEERS {
            self.last.retain(|_, at| recent(at));
        }
        if self.last.len() >= LOG_MAX_PEERS {
            if self.overflow.as_ref().is_some_and(recent) {
                return LogDecision::Quiet;
            }
            self.overflow = Some(now);
            return LogDecision::Flood;
        }
        self.last.insert(ip, now);
        LogDecision::Peer
    }
}

#[cfg(test)]
mod tests;

/// Checks the JWT ACS signs its mid-call callbacks with (`Authorization: Bearer …`): the
/// upgrade tokens' validator, with `[acs]`'s audience and key source.
#[derive(Debug)]
pub(crate) struct CallbackVerifier(jwt::JwtValidator);

impl CallbackVerifier {
    /// From `[acs]`: keys fetched now (a failed fetch is logged and retried on the first
    /// callback, as for upgrades).
    pub(crate) async fn start(acs: &crate::acs::AcsConfig) -> Result<CallbackVerifier, AuthError> {
        let config = AuthConfig {
            mode: AuthMode::Acs,
            openid_config_url: acs.openid_config_url.clone(),
            audience: acs.audience.clone(),
            jwks_file: acs.jwks_file.clone(),
            issuer: acs.issuer.clone(),
            ..AuthConfig::default()
        };
        let validator = jwt::JwtValidator::from_config(&config)?;
        if let Err(reason) = validator.load().await {
            if let Some(path) = &config.jwks_file {
                return Err(AuthError::JwksFile {
                    path: path.clone(),
                    reason,
                });
            }
            tracing::warn!(%reason, "cannot fetch ACS's keys for callbacks yet: callbacks are refused until a fetch succeeds");
        }
        Ok(CallbackVerifier(validator))
    }

    /// Whether a callback with these headers comes from ACS.
    pub(crate) async fn verify(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        match bearer(headers)? {
            None => Err(Refusal::Missing),
            Some(token) => self.0.validate(token).await,
        }
    }
}
