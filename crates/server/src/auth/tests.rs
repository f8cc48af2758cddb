#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::jwt::{Fetch, JwtValidator, KeySet, parse_jwks};
use super::*;

/// An RSA key made with the `openssl` CLI: its PKCS#1 DER (to sign) and its public JWK parts.
struct TestKey {
    der: Vec<u8>,
    n: String,
}

impl TestKey {
    fn generate() -> TestKey {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("key.pem");
        let der = dir.path().join("key.der");
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().unwrap();
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
            out.stdout
        };
        run(&["genrsa", "-out", pem.to_str().unwrap(), "2048"]);
        run(&[
            "rsa",
            "-in",
            pem.to_str().unwrap(),
            "-outform",
            "DER",
            "-traditional",
            "-out",
            der.to_str().unwrap(),
        ]);
        let modulus = run(&["rsa", "-in", pem.to_str().unwrap(), "-noout", "-modulus"]);
        let hex = String::from_utf8(modulus).unwrap();
        let hex = hex.trim().trim_start_matches("Modulus=");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        TestKey {
            der: std::fs::read(der).unwrap(),
            n: URL_SAFE_NO_PAD.encode(bytes),
        }
    }

    fn jwk(&self, kid: &str) -> serde_json::Value {
        serde_json::json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": self.n, "e": "AQAB"})
    }

    fn sign(&self, kid: &str, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(&self.der)).unwrap()
    }
}

fn keys() -> &'static (TestKey, TestKey) {
    static KEYS: OnceLock<(TestKey, TestKey)> = OnceLock::new();
    KEYS.get_or_init(|| (TestKey::generate(), TestKey::generate()))
}

const AUDIENCE: &str = "0d0f3c5e-aaaa-bbbb-cccc-123456789abc";
const ISSUER: &str = "https://acscallautomation.communication.azure.com";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> serde_json::Value {
    serde_json::json!({"aud": AUDIENCE, "iss": ISSUER, "nbf": now() - 10, "exp": now() + 300})
}

fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut claims = claims();
    claims[key] = value;
    claims
}

/// A key source serving whatever `jwks` holds at the time, counting fetches (`None`: fails).
struct FakeSource {
    jwks: Mutex<Option<serde_json::Value>>,
    fetches: AtomicUsize,
}

impl FakeSource {
    fn new(kids: &[(&str, &TestKey)]) -> Arc<FakeSource> {
        let source = Arc::new(FakeSource {
            jwks: Mutex::new(None),
            fetches: AtomicUsize::new(0),
        });
        source.serve(kids);
        source
    }

    fn serve(&self, kids: &[(&str, &TestKey)]) {
        let keys: Vec<_> = kids.iter().map(|(kid, key)| key.jwk(kid)).collect();
        *self.jwks.lock().unwrap() = Some(serde_json::json!({ "keys": keys }));
    }

    fn fail(&self) {
        *self.jwks.lock().unwrap() = None;
    }

    fn fetch(self: &Arc<Self>) -> Fetch {
        let source = Arc::clone(self);
        Arc::new(move || {
            source.fetches.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            let jwks = source.jwks.lock().unwrap().clone().ok_or("unreachable")?;
            Ok(KeySet {
                issuer: ISSUER.to_owned(),
                keys: parse_jwks(&jwks.to_string())?,
            })
        })
    }
}

async fn validator(source: &Arc<FakeSource>) -> JwtValidator {
    let validator = JwtValidator::new(AUDIENCE.to_owned(), None, 60, source.fetch());
    validator.load().await.unwrap();
    validator
}

#[tokio::test]
async fn a_valid_token_is_accepted_and_each_fault_has_its_reason() {
    let (key, other) = keys();
    let source = FakeSource::new(&[("k1", key)]);
    let v = validator(&source).await;
    assert_eq!(v.validate(&key.sign("k1", &claims())).await, Ok(()));
    let cases = [
        (with("exp", (now() - 120).into()), Refusal::Expired),
        (with("nbf", (now() + 120).into()), Refusal::NotYetValid),
        (with("aud", "someone-else".into()), Refusal::Audience),
        (with("iss", "https://evil.example".into()), Refusal::Issuer),
    ];
    for (claims, reason) in cases {
        assert_eq!(
            v.validate(&key.sign("k1", &claims)).await,
            Err(reason),
            "{claims}"
        );
    }
    // Within the skew: still fine.
    let late = with("exp", (now() - 30).into());
    assert_eq!(v.validate(&key.sign("k1", &late)).await, Ok(()));
    // Signed by another key under our kid.
    assert_eq!(
        v.validate(&other.sign("k1", &claims())).await,
        Err(Refusal::Signature)
    );
    let no_exp = {
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        c
    };
    assert_eq!(
        v.validate(&key.sign("k1", &no_exp)).await,
        Err(Refusal::Malformed)
    );
    for junk in ["", "abc", "a.b", "a.b.c", "a.b.c.d", "!!.e30.x"] {
        assert_eq!(v.validate(junk).await, Err(Refusal::Malformed), "{junk:?}");
    }
    assert_eq!(
        source.fetches.load(Ordering::SeqCst),
        1,
        "no refetch for these"
    );
}

#[tokio::test]
async fn other_algorithms_are_refused_before_any_key_is_fetched() {
    let (key, _) = keys();
    let source = FakeSource::new(&[("k1", key)]);
    let v = validator(&source).await;
    let encode = |json: serde_json::Value| URL_SAFE_NO_PAD.encode(json.to_string());
    let none = format!(
        "{}.{}.",
        encode(serde_json::json!({"alg": "none", "kid": "k9"})),
        encode(claims())
    );
    assert_eq!(v.validate(&none).await, Err(Refusal::Algorithm));
    // HS256 "signed" with the public key as the HMAC secret: the classic confusion attack.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k9".into());
    let hs = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(key.n.as_bytes()),
    )
    .unwrap();
    assert_eq!(v.validate(&hs).await, Err(Refusal::Algorithm));
    assert_eq!(
        source.fetches.load(Ordering::SeqCst),
        1,
        "unknown kid k9 not fetched"
    );
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_a_minute_and_waiters_share_it() {
    let (key, other) = keys();
    let source = FakeSource::new(&[("k1", key)]);
    let v = Arc::new(validator(&source).await);
    // Rotation: the new key is published; many requests with it arrive together.
    source.serve(&[("k1", key), ("k2", other)]);
    let token = other.sign("k2", &claims());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let v = Arc::clone(&v);
            let token = token.clone();
            tokio::spawn(async move { v.validate(&token).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(()));
    }
    assert_eq!(
        source.fetches.load(Ordering::SeqCst),
        2,
        "one shared refetch"
    );
    // Another unknown kid within the minute: refused without fetching.
    let token = other.sign("k3", &claims());
    assert_eq!(v.validate(&token).await, Err(Refusal::UnknownKey));
    assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_refetch_refuses_and_keeps_the_known_keys() {
    let (key, other) = keys();
    let source = FakeSource::new(&[("k1", key)]);
    let v = validator(&source)
        .await
        .with_refetch_interval(Duration::ZERO);
    source.fail();
    assert_eq!(
        v.validate(&other.sign("k2", &claims())).await,
        Err(Refusal::UnknownKey)
    );
    assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
    assert_eq!(v.validate(&key.sign("k1", &claims())).await, Ok(()));
    // The keys come back: the next unknown kid finds its key.
    source.serve(&[("k1", key), ("k2", other)]);
    assert_eq!(v.validate(&other.sign("k2", &claims())).await, Ok(()));
}

#[tokio::test]
async fn keys_that_failed_to_load_at_start_up_are_fetched_on_the_first_token() {
    let (key, _) = keys();
    let source = FakeSource::new(&[("k1", key)]);
    source.fail();
    let v = JwtValidator::new(AUDIENCE.to_owned(), None, 60, source.fetch());
    assert!(v.load().await.is_err());
    source.serve(&[("k1", key)]);
    assert_eq!(v.validate(&key.sign("k1", &claims())).await, Ok(()));
}

#[test]
fn jwks_parsing_keeps_rs256_signing_keys_only() {
    let (key, _) = keys();
    let mut enc = key.jwk("enc");
    enc["use"] = "enc".into();
    let mut es = key.jwk("es");
    es["alg"] = "ES256".into();
    let mut no_kid = key.jwk("x");
    no_kid.as_object_mut().unwrap().remove("kid");
    let jwks =
        serde_json::json!({"keys": [enc, es, no_kid, key.jwk("good"), {"kty": "EC", "kid": "ec"}]});
    let keys = parse_jwks(&jwks.to_string()).unwrap();
    assert_eq!(keys.keys().collect::<Vec<_>>(), ["good"]);
    assert!(parse_jwks(r#"{"keys": []}"#).is_err());
    assert!(parse_jwks("not json").is_err());
}

fn secret_config(dir: &tempfile::TempDir, secret: &str) -> AuthConfig {
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    AuthConfig {
        mode: AuthMode::Secret,
        secret_file: Some(path),
        ..AuthConfig::default()
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:8080".parse().unwrap()
}

fn bearer_headers(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value.parse().unwrap());
    headers
}

#[tokio::test]
async fn secret_mode_takes_a_bearer_header_or_a_token_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-s3cr3t-s3cr3t";
    let auth = Authenticator::start(&secret_config(&dir, secret), loopback())
        .await
        .unwrap();
    let none = HeaderMap::new();
    let ok = bearer_headers(&format!("Bearer {secret}"));
    assert_eq!(auth.admit(&ok, None).await, Ok(()));
    assert_eq!(
        auth.admit(&none, Some("callId=x&token=s3cr3t-s3cr3t-s3cr3t"))
            .await,
        Ok(())
    );
    assert_eq!(
        auth.admit(&none, Some("callId=x")).await,
        Err(Refusal::Missing)
    );
    assert_eq!(auth.admit(&none, None).await, Err(Refusal::Missing));
    assert_eq!(
        auth.admit(&none, Some("token=wrong")).await,
        Err(Refusal::Secret)
    );
    let wrong = bearer_headers("Bearer s3cr3t-s3cr3t-s3cr3T");
    assert_eq!(auth.admit(&wrong, None).await, Err(Refusal::Secret));
    // ACS puts its own JWT in the header of every upgrade: the secret it was given in the
    // transport URL's query admits it; the header alone does not.
    let acs = bearer_headers("Bearer eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln");
    assert_eq!(
        auth.admit(&acs, Some("callId=x&token=s3cr3t-s3cr3t-s3cr3t"))
            .await,
        Ok(())
    );
    assert_eq!(
        auth.admit(&acs, Some("callId=x")).await,
        Err(Refusal::Secret)
    );
    assert_eq!(
        auth.admit(&wrong, Some("token=wrong")).await,
        Err(Refusal::Secret)
    );
    assert_eq!(
        auth.admit(&bearer_headers("Basic abc"), None).await,
        Err(Refusal::Malformed)
    );
    assert!(!format!("{auth:?}").contains(secret));
    // A call's own token (what the control plane gives ACS) opens that call only.
    let token = super::call_token(secret.as_bytes(), "call-a");
    assert_eq!(token.len(), 64);
    assert_eq!(
        auth.admit(&acs, Some(&format!("callId=call-a&token={token}")))
            .await,
        Ok(())
    );
    assert_eq!(
        auth.admit(&none, Some(&format!("callId=call-b&token={token}")))
            .await,
        Err(Refusal::Secret)
    );
    assert_eq!(
        auth.admit(&none, Some(&format!("token={token}"))).await,
        Err(Refusal::Secret)
    );

    let mut query: BTreeMap<String, String> = [("callId", "x"), ("Token", secret)]
        .map(|(k, v)| (k.into(), v.into()))
        .into();
    auth.remove_credentials(&mut query);
    assert_eq!(query.keys().collect::<Vec<_>>(), ["callId"]);
}

#[tokio::test]
async fn a_short_or_missing_secret_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let err = Authenticator::start(&secret_config(&dir, "short"), loopback())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("auth.secret_file") && err.contains("16"),
        "{err}"
    );
    assert!(
        !err.contains("short\n") && !err.contains("`short`"),
        "{err}"
    );
    let config = AuthConfig {
        mode: AuthMode::Secret,
        secret_env: "MEDIAGATE_TEST_SURELY_UNSET_SECRET".into(),
        ..AuthConfig::default()
    };
    let err = Authenticator::start(&config, loopback()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("MEDIAGATE_TEST_SURELY_UNSET_SECRET"),
        "{err}"
    );
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail API returns its own (large) error type
fn the_secret_is_read_from_its_environment_variable() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("MEDIAGATE_AUTH_SECRET", "from-the-environment-0123");
        let config = AuthConfig {
            mode: AuthMode::Secret,
            ..AuthConfig::default()
        };
        let secret = SharedSecret::load(&config).map_err(|e| e.to_string())?;
        assert!(secret.matches(b"from-the-environment-0123"));
        // And the variable is not taken for a config key.
        crate::Config::load(None, &crate::CliOverrides::default()).map_err(|e| e.to_string())?;
        Ok(())
    });
}

#[test]
fn mode_none_on_a_public_address_is_refused_unless_opted_out() {
    let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let err = AuthConfig::default()
        .validate(public)
        .unwrap_err()
        .to_string();
    for needle in [
        "auth.mode",
        "0.0.0.0:8080",
        "mode = \"acs\"",
        "mode = \"secret\"",
        "allow_unauthenticated_public = true",
    ] {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
    AuthConfig::default().validate(loopback()).unwrap();
    AuthConfig::default()
        .validate("[::1]:8080".parse().unwrap())
        .unwrap();
    let opted_out = AuthConfig {
        allow_unauthenticated_public: true,
        ..AuthConfig::default()
    };
    opted_out.validate(public).unwrap();
}

#[test]
fn acs_mode_needs_an_audience_an_issuer_with_a_file_and_https() {
    let acs = AuthConfig {
        mode: AuthMode::Acs,
        ..AuthConfig::default()
    };
    let err = acs.validate(loopback()).unwrap_err().to_string();
    assert!(err.contains("auth.audience"), "{err}");
    let acs = AuthConfig {
        audience: Some(AUDIENCE.into()),
        ..acs
    };
    acs.validate("0.0.0.0:443".parse().unwrap()).unwrap();
    let file = AuthConfig {
        jwks_file: Some("/etc/mediagate/jwks.json".into()),
        ..acs.clone()
    };
    let err = file.validate(loopback()).unwrap_err().to_string();
    assert!(err.contains("auth.issuer"), "{err}");
    for (url, ok) in [
        ("http://example.com/openid", false),
        ("ftp://example.com/openid", false),
        ("http://127.0.0.1:9/openid", true),
        ("http://localhost:9/openid", true),
        ("http://[::1]:9/openid", true),
        ("https://example.com/openid", true),
    ] {
        let config = AuthConfig {
            openid_config_url: url.into(),
            ..acs.clone()
        };
        let result = config.validate(loopback());
        assert_eq!(result.is_ok(), ok, "{url}: {result:?}");
        if let Err(e) = result {
            assert!(e.to_string().contains("auth.openid_config_url"), "{e}");
        }
    }
}

#[tokio::test]
async fn a_jwks_file_replaces_the_fetch() {
    let (key, _) = keys();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(
        &path,
        serde_json::json!({"keys": [key.jwk("f1")]}).to_string(),
    )
    .unwrap();
    let config = AuthConfig {
        mode: AuthMode::Acs,
        audience: Some(AUDIENCE.into()),
        issuer: Some(ISSUER.into()),
        jwks_file: Some(path.clone()),
        ..AuthConfig::default()
    };
    let auth = Authenticator::start(&config, loopback()).await.unwrap();
    let ok = bearer_headers(&format!("Bearer {}", key.sign("f1", &claims())));
    assert_eq!(auth.admit(&ok, None).await, Ok(()));
    assert_eq!(
        auth.admit(&HeaderMap::new(), None).await,
        Err(Refusal::Missing)
    );
    // An unusable file stops start-up.
    std::fs::write(&path, "{}").unwrap();
    let err = Authenticator::start(&config, loopback()).await.unwrap_err();
    assert!(matches!(err, AuthError::JwksFile { .. }), "{err}");
}

#[test]
fn refusals_are_logged_once_per_peer_per_minute_in_bounded_memory() {
    let mut log = RefusalLog::default();
    let t0 = Instant::now();
    let peer: IpAddr = "203.0.113.7".parse().unwrap();
    let at = |secs| t0 + Duration::from_secs(secs);
    assert_eq!(log.decide(peer, t0), LogDecision::Peer);
    assert_eq!(log.decide(peer, at(59)), LogDecision::Quiet);
    assert_eq!(log.decide(peer, at(61)), LogDecision::Peer);
    // A flood of distinct addresses: the map stays bounded, and says so once a minute.
    let mut decisions = HashMap::new();
    for i in 0..(LOG_MAX_PEERS as u32 * 3) {
        let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        *decisions.entry(log.decide(ip, at(62))).or_insert(0) += 1;
    }
    assert!(log.last.len() <= LOG_MAX_PEERS);
    assert_eq!(decisions[&LogDecision::Peer], LOG_MAX_PEERS - 1);
    assert_eq!(decisions[&LogDecision::Flood], 1);
    // A minute later, old entries make room again.
    let late: IpAddr = "198.51.100.1".parse().unwrap();
    assert_eq!(log.decide(late, at(200)), LogDecision::Peer);
    assert!(log.last.len() <= LOG_MAX_PEERS);
}
