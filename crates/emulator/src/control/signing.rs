//! The fake's signing key and what it publishes: ACS signs each callback and each WebSocket
//! upgrade with an RS256 JWT, and publishes its keys as an OpenID configuration whose `jwks_uri`
//! names a JWKS. The fake does the same with one RSA-2048 key.
//!
//! The key (`signing-key.pk8.der`, PKCS#8 DER, made with `openssl genpkey -algorithm RSA
//! -pkeyopt rsa_keygen_bits:2048`) is public: it is in the source tree, so a token it signs
//! proves nothing outside a test. A gateway must trust it only when pointed at a local fake.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents};
use serde_json::{Value, json};

/// The fake's private key. Public knowledge: never trust it outside a local test.
const SIGNING_KEY_PKCS8: &[u8] = include_bytes!("signing-key.pk8.der");

/// How long a token is valid, as ACS's are (about five minutes).
pub(crate) const TOKEN_LIFETIME_SECS: u64 = 300;

/// Signs the fake's tokens and describes its key.
pub(crate) struct Signer {
    key: RsaKeyPair,
    /// The key's RFC 7638 thumbprint, its `kid`.
    kid: String,
    /// The modulus, base64url without padding.
    n: String,
    /// The public exponent, base64url without padding.
    e: String,
    rng: SystemRandom,
}

/// The claims of every token the fake signs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claims<'a> {
    /// `iss`: the issuer the OpenID configuration names.
    pub(crate) issuer: &'a str,
    /// `aud`: the ACS resource's immutable id.
    pub(crate) audience: &'a str,
    /// `iat` and `nbf`, seconds since the Unix epoch; `exp` is five minutes later.
    pub(crate) now_unix: u64,
}

impl Signer {
    /// The built-in key.
    pub(crate) fn builtin() -> Result<Signer, String> {
        Signer::from_pkcs8(SIGNING_KEY_PKCS8)
    }

    /// A key from its PKCS#8 DER.
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Signer, String> {
        let key =
            RsaKeyPair::from_pkcs8(der).map_err(|e| format!("the signing key is refused: {e}"))?;
        let public: RsaPublicKeyComponents<Vec<u8>> = key.public().into();
        let n = URL_SAFE_NO_PAD.encode(&public.n);
        let e = URL_SAFE_NO_PAD.encode(&public.e);
        // RFC 7638: the SHA-256 of the required members, in lexicographic order, no spaces.
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            canonical.as_bytes(),
        ));
        Ok(Signer {
            key,
            kid,
            n,
            e,
            rng: SystemRandom::new(),
        })
    }

    /// The key's id, as tokens name it in their header.
    #[cfg(test)]
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWKS that `jwks_uri` serves: this one key.
    pub(crate) fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": self.n,
            "e": self.e,
        }]})
    }

    /// A signed RS256 token with `iss`, `aud`, `iat`, `nbf` and `exp`.
    pub(crate) fn token(&self, claims: Claims<'_>) -> Result<String, String> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let body = json!({
            "iss": claims.issuer,
            "aud": claims.audience,
            "iat": claims.now_unix,
            "nbf": claims.now_unix,
            "exp": claims.now_unix + TOKEN_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(body.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "RSA signing failed".to_owned())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The OpenID configuration: the issuer tokens name, and where the keys are.
pub(crate) fn openid_configuration(issuer: &str, endpoint: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{endpoint}calling/keys"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_against_the_published_key_and_carry_the_claims() {
        let signer = Signer::builtin().unwrap();
        let jwks = signer.jwks();
        let key = &jwks["keys"][0];
        assert_eq!(key["kid"], signer.kid());
        assert_eq!(key["e"], "AQAB");
        let token = signer
            .token(Claims {
                issuer: "http://127.0.0.1:1",
                audience: "resource",
                now_unix: 1_000,
            })
            .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let n = URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), 256, "RSA-2048");
        let e = URL_SAFE_NO_PAD.decode(key["e"].as_str().unwrap()).unwrap();
        let public = ring::signature::RsaPublicKeyComponents { n: &n, e: &e };
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        public
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                signed.as_bytes(),
                &signature,
            )
            .unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            json!({"iss": "http://127.0.0.1:1", "aud": "resource", "iat": 1000, "nbf": 1000, "exp": 1300})
        );
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], signer.kid());
    }
}
