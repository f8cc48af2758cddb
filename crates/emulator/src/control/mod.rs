//! `mediagate emulate --control-plane`: a local fake of ACS Call Automation's REST API, as
//! faithful as its reference allows.
//!
//! - Every request's authentication is checked ([`verify`]): HMAC-SHA256 with the resource's
//!   access key, or a configured Entra bearer token.
//! - Every body is validated against the published reference ([`reference`], [`validate`]):
//!   an unknown field, a value of the wrong type or enum, or a missing required field gets a
//!   400 with the service's error shape, `{"error": {"code", "message", "target"}}`.
//! - `api-version` is required; `Repeatability-Request-ID` replays the first response of a
//!   request sent again, so a retried request takes effect once.
//! - Calls have state: an incoming call's context is answered, rejected or redirected once;
//!   mid-call methods need a live call. Successes answer with the reference's status.
//! - Throttling can be scripted ([`ControlPlane::throttle`]) to test clients' retries.
//!
//! It serves `http://` or, given a certificate, `https://` (the official SDKs insist on it).

mod fake;
pub(crate) mod reference;
mod validate;
mod verify;

pub use fake::{ControlPlane, ControlPlaneOptions, FakeCall, IncomingCall, RecordedRequest};
