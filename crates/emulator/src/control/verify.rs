//! Checks a request's authentication as the service does, written from Microsoft's documented
//! scheme ("Sign an HTTP request", Azure Communication Services), independently of the
//! gateway's signer: `x-ms-date` within 15 minutes, `x-ms-content-sha256` the base64 SHA-256
//! of the body, and `Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256
//! &Signature=<base64 HMAC-SHA256 of "VERB\npath?query\ndate;host;hash" under the key>`.
//! A configured Entra token is accepted as `Authorization: Bearer`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::HeaderMap;

/// How far `x-ms-date` may be from now.
const MAX_SKEW: time::Duration = time::Duration::minutes(15);

/// Why a request was not authenticated.
pub(crate) type Refusal = String;

/// The credentials a request may carry.
pub(crate) struct Credentials<'a> {
    pub(crate) access_key: &'a [u8],
    pub(crate) bearer: Option<&'a str>,
}

/// Authenticates a request: `method`, `path_and_query` as on the request line, its headers and
/// body.
pub(crate) fn authenticate(
    credentials: &Credentials<'_>,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: time::OffsetDateTime,
) -> Result<(), Refusal> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("no `{name}` header"))
    };
    let authorization = header("authorization")?;
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        return match credentials.bearer {
            Some(expected) if constant_time_eq(token.trim().as_bytes(), expected.as_bytes()) => {
                Ok(())
            }
            _ => Err("the bearer token is not valid".to_owned()),
        };
    }
    let params = authorization
        .strip_prefix("HMAC-SHA256 ")
        .ok_or("the Authorization scheme is neither HMAC-SHA256 nor Bearer")?;
    let (mut signed_headers, mut signature) = (None, None);
    for pair in params.split('&') {
        match pair.split_once('=') {
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            // The signature is base64 and may end in `=`: split at the first `=` only.
            Some(("Signature", v)) => signature = Some(v),
            _ => return Err(format!("unexpected `{pair}` in Authorization")),
        }
    }
    let signed_headers = signed_headers.ok_or("no SignedHeaders")?;
    if !signed_headers.eq_ignore_ascii_case("x-ms-date;host;x-ms-content-sha256") {
        return Err(format!(
            "SignedHeaders is `{signed_headers}`, not x-ms-date;host;x-ms-content-sha256"
        ));
    }
    let signature = STANDARD
        .decode(signature.ok_or("no Signature")?)
        .map_err(|_| "the Signature is not base64".to_owned())?;
    let date = header("x-ms-date")?;
    let sent = parse_http_date(date)
        .ok_or_else(|| format!("x-ms-date `{date}` is not an RFC 1123 date"))?;
    if (now - sent).abs() > MAX_SKEW {
        return Err(format!(
            "x-ms-date `{date}` is more than 15 minutes from now"
        ));
    }
    let content_hash = header("x-ms-content-sha256")?;
    let actual = STANDARD.encode(ring::digest::digest(&ring::digest::SHA256, body));
    if content_hash != actual {
        return Err("x-ms-content-sha256 is not the SHA-256 of the body".to_owned());
    }
    let host = header("host")?;
    let string_to_sign = format!("{method}\n{path_and_query}\n{date};{host};{content_hash}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, credentials.access_key);
    ring::hmac::verify(&key, string_to_sign.as_bytes(), &signature)
        .map_err(|_| "the signature does not match the request".to_owned())
}

/// An RFC 1123 date (`Tue, 01 Dec 2026 08:05:03 GMT`).
pub(crate) fn parse_http_date(s: &str) -> Option<time::OffsetDateTime> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s, format)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request signed by Python's hmac and hashlib from the documented string (see
    /// mediagate-acs's sign tests for the same vector).
    fn signed() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", "example.com".parse().unwrap());
        h.insert(
            "x-ms-date",
            "Tue, 01 Dec 2026 08:05:03 GMT".parse().unwrap(),
        );
        h.insert(
            "x-ms-content-sha256",
            "RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o="
                .parse()
                .unwrap(),
        );
        h.insert(
            "authorization",
            "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=SPxn5W107qQsLhouPcRiqAJq2uBOHDAHzKR4BTPyqF0="
                .parse()
                .unwrap(),
        );
        h
    }

    const PATH: &str = "/calling/callConnections:answer?api-version=2026-03-12";

    fn check(
        headers: &HeaderMap,
        path: &str,
        body: &[u8],
        now: time::OffsetDateTime,
    ) -> Result<(), Refusal> {
        let credentials = Credentials {
            access_key: b"key",
            bearer: Some("entra-token"),
        };
        authenticate(&credentials, "POST", path, headers, body, now)
    }

    #[test]
    fn a_documented_signature_is_accepted_and_any_change_is_not() {
        let now = time::macros::datetime!(2026-12-01 08:10:00 UTC);
        assert_eq!(check(&signed(), PATH, b"{}", now), Ok(()));
        assert!(
            check(&signed(), PATH, b"{ }", now)
                .unwrap_err()
                .contains("SHA-256")
        );
        assert!(
            check(
                &signed(),
                "/calling/callConnections:reject?api-version=2026-03-12",
                b"{}",
                now
            )
            .unwrap_err()
            .contains("does not match")
        );
        let mut other_host = signed();
        other_host.insert("host", "evil.example".parse().unwrap());
        assert!(
            check(&other_host, PATH, b"{}", now)
                .unwrap_err()
                .contains("does not match")
        );
        let late = time::macros::datetime!(2026-12-01 08:30:00 UTC);
        assert!(
            check(&signed(), PATH, b"{}", late)
                .unwrap_err()
                .contains("15 minutes")
        );
        let mut bearer = HeaderMap::new();
        bearer.insert("authorization", "Bearer entra-token".parse().unwrap());
        assert_eq!(check(&bearer, PATH, b"{}", now), Ok(()));
        bearer.insert("authorization", "Bearer other".parse().unwrap());
        assert!(check(&bearer, PATH, b"{}", now).is_err());
        assert!(
            check(&HeaderMap::new(), PATH, b"{}", now)
                .unwrap_err()
                .contains("authorization")
        );
    }
}
