//! HMAC-SHA256 request signing, as Azure Communication Services documents it: the SHA-256 of
//! the body in `x-ms-content-sha256`, the time in `x-ms-date`, and over
//! `VERB\npath?query\ndate;host;content-hash` an HMAC keyed with the access key, sent as
//! `Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=…`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

/// The headers a signature covers, in the order they are signed.
pub const SIGNED_HEADERS: &str = "x-ms-date;host;x-ms-content-sha256";

/// RFC 1123 dates (`Tue, 01 Dec 2026 09:30:00 GMT`): `x-ms-date`, `Repeatability-First-Sent`
/// and `Retry-After`.
const RFC1123: &[FormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// `at` as an RFC 1123 date, in UTC.
pub fn http_date(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(RFC1123)
        .unwrap_or_default()
}

/// An RFC 1123 date (a `Retry-After` or `x-ms-date`).
pub fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    time::PrimitiveDateTime::parse(s.trim(), RFC1123)
        .ok()
        .map(|at| at.assume_utc())
}

/// The three headers of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// `x-ms-date`.
    pub date: String,
    /// `x-ms-content-sha256`: base64 of the body's SHA-256.
    pub content_sha256: String,
    /// `Authorization`.
    pub authorization: String,
}

/// Signs a request: `method` in capitals, `path_and_query` as sent on the request line, `host`
/// as sent in `Host` (with the port when it is not the scheme's).
pub fn sign(
    key: &[u8],
    method: &str,
    path_and_query: &str,
    host: &str,
    body: &[u8],
    at: OffsetDateTime,
) -> Signature {
    let date = http_date(at);
    let content_sha256 = STANDARD.encode(ring::digest::digest(&ring::digest::SHA256, body));
    let to_sign = format!("{method}\n{path_and_query}\n{date};{host};{content_sha256}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let signature = STANDARD.encode(ring::hmac::sign(&key, to_sign.as_bytes()));
    Signature {
        authorization: format!("HMAC-SHA256 SignedHeaders={SIGNED_HEADERS}&Signature={signature}"),
        date,
        content_sha256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc_1123_in_gmt() {
        let at = time::macros::datetime!(2026-12-01 09:05:03 +01:00);
        assert_eq!(http_date(at), "Tue, 01 Dec 2026 08:05:03 GMT");
        assert_eq!(
            parse_http_date("Tue, 01 Dec 2026 08:05:03 GMT"),
            Some(time::macros::datetime!(2026-12-01 08:05:03 UTC))
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn the_signature_covers_method_path_date_host_and_body() {
        // An HMAC-SHA256 over the documented string, computed independently with Python's hmac
        // module: hmac.new(b"key", b"POST\n/calling/callConnections:answer?api-version=
        // 2026-03-12\nTue, 01 Dec 2026 08:05:03 GMT;example.com;<sha>", sha256).
        let at = time::macros::datetime!(2026-12-01 08:05:03 UTC);
        let s = sign(
            b"key",
            "POST",
            "/calling/callConnections:answer?api-version=2026-03-12",
            "example.com",
            b"{}",
            at,
        );
        assert_eq!(s.date, "Tue, 01 Dec 2026 08:05:03 GMT");
        assert_eq!(
            s.content_sha256,
            "RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o="
        );
        assert_eq!(
            s.authorization,
            "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256\
             &Signature=SPxn5W107qQsLhouPcRiqAJq2uBOHDAHzKR4BTPyqF0="
        );
        let other = sign(b"key", "POST", "/calling/other", "example.com", b"{}", at);
        assert_ne!(other.authorization, s.authorization);
    }
}
