//! A client for the Azure Communication Services Call Automation REST API: the methods a
//! gateway answering, routing and streaming calls uses, typed field for field as the reference
//! names them ([`models`]).
//!
//! - Authentication: HMAC-SHA256 signing with the resource's access key ([`sign`], from
//!   `ACS_CONNECTION_STRING`), or a Microsoft Entra bearer token from a file or a command
//!   ([`TokenSource`]).
//! - Every `POST` carries `Repeatability-Request-ID` and `Repeatability-First-Sent`, the same
//!   on every try, so a retried request takes effect once.
//! - 429 and passing 5xx are retried with exponential back-off and jitter, or after the
//!   service's `Retry-After` ([`RetryPolicy`]).
//! - `http://` endpoints are refused except on loopback (a local fake such as
//!   `mediagate emulate --control-plane`).

mod client;
mod credential;
mod http;
pub mod models;
pub mod sign;

pub use client::{CallAutomationClient, ClientOptions, DEFAULT_API_VERSION, RetryPolicy};
pub use credential::{ConnectionString, Credential, TokenFrom, TokenSource};
pub use rustls_pki_types::CertificateDer;

/// What can go wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration: endpoint, connection string, version, certificates.
    #[error("Call Automation client: {0}")]
    Config(String),
    /// No Entra token could be read.
    #[error("Entra token: {0}")]
    Token(String),
    /// No response: connect, TLS, timeout, a broken connection (after the retries).
    #[error("Call Automation request: {0}")]
    Transport(String),
    /// The service answered with an error status (after the retries, for 429 and 5xx).
    #[error("Call Automation answered {status} {code}: {message} (after {attempts} tries)")]
    Status {
        /// The HTTP status.
        status: u16,
        /// `error.code` of the body, when it had one.
        code: String,
        /// `error.message` of the body, or the body itself.
        message: String,
        /// How many tries were made.
        attempts: u32,
    },
    /// A body that could not be encoded or decoded.
    #[error("Call Automation body: {0}")]
    Decode(String),
}

impl Error {
    fn from_response(status: u16, body: &[u8], attempts: u32) -> Error {
        let (code, message) = match serde_json::from_slice::<models::ErrorResponse>(body) {
            Ok(e) => (e.error.code, e.error.message),
            Err(_) => (
                String::new(),
                String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            ),
        };
        Error::Status {
            status,
            code,
            message,
            attempts,
        }
    }

    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}
