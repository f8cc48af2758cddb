//! ACS's upgrade tokens: RS256 JWTs checked against a cached key set, refetched (at most once a
//! minute, one fetch shared by every waiting request) when a token names an unknown key.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{AuthConfig, AuthError, Refusal, fetch};

/// Longest token considered (ACS's are about 1.5 KB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Fewest seconds between two refetches caused by unknown keys.
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// Signing keys by `kid`, and the issuer their tokens must name.
#[derive(Clone)]
pub(super) struct KeySet {
    /// The OpenID configuration's `issuer` (or the configured one).
    pub(super) issuer: String,
    /// RS256 verification keys by `kid`.
    pub(super) keys: HashMap<String, DecodingKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("issuer", &self.issuer)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Gets a fresh key set; blocking (it may do network or file I/O), so run off the async threads.
pub(super) type Fetch = Arc<dyn Fn() -> Result<KeySet, String> + Send + Sync>;

/// Validates tokens against the keys `fetch` gets.
pub(super) struct JwtValidator {
    audience: String,
    /// Overrides the fetched issuer.
    issuer: Option<String>,
    skew_secs: u64,
    fetch: Fetch,
    /// The keys in use; read per token, replaced whole after a fetch. Never held across .await.
    keys: RwLock<Option<Arc<KeySet>>>,
    /// When an unknown key last caused a refetch. Held (it is an async mutex) for the length
    /// of a refetch, so concurrent requests wait for that one instead of fetching again.
    refetched: tokio::sync::Mutex<Option<Instant>>,
    refetch_interval: Duration,
}

impl fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtValidator")
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("skew_secs", &self.skew_secs)
            .finish_non_exhaustive()
    }
}

/// The JOSE header fields looked at before any key is.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

impl JwtValidator {
    /// From `[auth]` (already validated): a file or the OpenID configuration as key source.
    pub(super) fn from_config(config: &AuthConfig) -> Result<JwtValidator, AuthError> {
        let fetch: Fetch = match (&config.jwks_file, &config.issuer) {
            (Some(path), Some(issuer)) => fetch::from_file(path.clone(), issuer.clone()),
            _ => fetch::from_openid_config(&config.openid_config_url).map_err(|reason| {
                crate::config::ConfigError::Invalid {
                    key: "auth.openid_config_url",
                    reason,
                }
            })?,
        };
        Ok(JwtValidator::new(
            config.audience.clone().unwrap_or_default(),
            config.issuer.clone(),
            config.clock_skew_secs,
            fetch,
        ))
    }

    pub(super) fn new(
        audience: String,
        issuer: Option<String>,
        skew_secs: u64,
        fetch: Fetch,
    ) -> JwtValidator {
        JwtValidator {
            audience,
            issuer,
            skew_secs,
            fetch,
            keys: RwLock::new(None),
            refetched: tokio::sync::Mutex::new(None),
            refetch_interval: REFETCH_INTERVAL,
        }
    }

    /// Fetches the keys now (start-up). Does not count as a refetch.
    pub(super) async fn load(&self) -> Result<(), String> {
        let keys = self.fetch_now().await?;
        tracing::info!(issuer = %keys.issuer, keys = keys.keys.len(), "token signing keys loaded");
        self.store(keys);
        Ok(())
    }

    /// Accepts a valid RS256 token for our audience and issuer, signed by a known key.
    pub(super) async fn validate(&self, token: &str) -> Result<(), Refusal> {
        let kid = checked_header(token)?;
        let keys = match self.current().filter(|k| k.keys.contains_key(&kid)) {
            Some(keys) => keys,
            None => self.refetch_for(&kid).await?,
        };
        let key = keys.keys.get(&kid).ok_or(Refusal::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = self.skew_secs;
        validation.validate_nbf = true;
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[self.issuer.as_deref().unwrap_or(&keys.issuer)]);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        jsonwebtoken::decode::<serde_json::Value>(token, key, &validation)
            .map(drop)
            .map_err(|e| refusal_of(e.kind()))
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn store(&self, keys: KeySet) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(keys));
    }

    async fn fetch_now(&self) -> Result<KeySet, String> {
        let fetch = Arc::clone(&self.fetch);
        match tokio::task::spawn_blocking(move || fetch()).await {
            Ok(result) => result,
            Err(e) => Err(format!("key fetch task failed: {e}")),
        }
    }

    /// The key set after a refetch for `kid`, if one is allowed now and finds it.
    async fn refetch_for(&self, kid: &str) -> Result<Arc<KeySet>, Refusal> {
        let mut refetched = self.refetched.lock().await;
        // Another request may have refetched while this one waited.
        if let Some(keys) = self.current().filter(|k| k.keys.contains_key(kid)) {
            return Ok(keys);
        }
        let now = Instant::now();
        if refetched.is_some_and(|at| now.saturating_duration_since(at) < self.refetch_interval) {
            return Err(Refusal::UnknownKey);
        }
        *refetched = Some(now);
        match self.fetch_now().await {
            Ok(keys) => {
                tracing::info!(
                    issuer = %keys.issuer,
                    keys = keys.keys.len(),
                    "token signing keys refetched (a token named an unknown key)"
                );
                self.store(keys);
            }
            Err(reason) => {
                tracing::warn!(%reason, "token signing keys could not be refetched");
                return Err(Refusal::UnknownKey);
            }
        }
        self.current()
            .filter(|k| k.keys.contains_key(kid))
            .ok_or(Refusal::UnknownKey)
    }

    #[cfg(test)]
    pub(super) fn with_refetch_interval(mut self, interval: Duration) -> JwtValidator {
        self.refetch_interval = interval;
        self
    }
}

/// The token's `kid`, once its header says RS256: anything else is refused before any key is
/// looked up or fetched.
fn checked_header(token: &str) -> Result<String, Refusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Refusal::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed);
    };
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| Refusal::Malformed)?;
    let header: RawHeader = serde_json::from_slice(&header).map_err(|_| Refusal::Malformed)?;
    if header.alg != "RS256" {
        return Err(Refusal::Algorithm);
    }
    header.kid.ok_or(Refusal::UnknownKey)
}

fn refusal_of(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::ExpiredSignature => Refusal::Expired,
        ErrorKind::ImmatureSignature => Refusal::NotYetValid,
        ErrorKind::InvalidAudience => Refusal::Audience,
        ErrorKind::InvalidIssuer => Refusal::Issuer,
        ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => Refusal::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Refusal::Algorithm,
        _ => Refusal::Malformed,
    }
}

/// RS256 verification keys by `kid`, from a JWKS document. Keys for encryption, of another type
/// or algorithm, or without a `kid` are skipped.
pub(super) fn parse_jwks(text: &str) -> Result<HashMap<String, DecodingKey>, String> {
    #[derive(Deserialize)]
    struct Jwks {
        keys: Vec<Jwk>,
    }
    #[derive(Deserialize)]
    struct Jwk {
        kty: String,
        kid: Option<String>,
        #[serde(rename = "use")]
        usage: Option<String>,
        alg: Option<String>,
        n: Option<String>,
        e: Option<String>,
    }
    let jwks: Jwks = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in jwks.keys {
        let usable = jwk.kty == "RSA"
            && jwk.usage.as_deref().is_none_or(|u| u == "sig")
            && jwk.alg.as_deref().is_none_or(|a| a == "RS256");
        let (true, Some(kid), Some(n), Some(e)) = (usable, jwk.kid, jwk.n, jwk.e) else {
            continue;
        };
        match DecodingKey::from_rsa_components(&n, &e) {
            Ok(key) => {
                keys.insert(kid, key);
            }
            Err(e) => tracing::debug!(%kid, error = %e, "JWKS key skipped"),
        }
    }
    if keys.is_empty() {
        return Err("no RS256 signing key with a kid".to_owned());
    }
    Ok(keys)
}
