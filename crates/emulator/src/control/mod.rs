//! `mediagate emulate --control-plane`: a local fake of ACS Call Automation, as faithful as its
//! reference allows. It serves the REST API and plays ACS's side of the calls it places.
//!
//! - Every request's authentication is checked ([`verify`]): HMAC-SHA256 with the resource's
//!   access key, or a configured Entra bearer token.
//! - Every body is validated against the published reference ([`reference`], [`validate`]):
//!   an unknown field, a value of the wrong type or enum, or a missing required field gets a
//!   400 with the service's error shape, `{"error": {"code", "message", "target"}}`.
//! - `api-version` is required; `Repeatability-Request-ID` replays the first response of a
//!   request sent again, so a retried request takes effect once.
//! - Calls have state ([`state`]): an incoming call's context is answered, rejected or
//!   redirected once; mid-call methods need a live call. Successes answer with the
//!   reference's status.
//! - Throttling can be scripted ([`ControlPlane::throttle`]) to test clients' retries.
//! - It signs as ACS does ([`signing`]): an RSA key (public, in the source tree: a test key
//!   only) whose OpenID configuration (`GET /calling/.well-known/acsopenidconfiguration`, also
//!   `/.well-known/acsopenidconfiguration`) and JWKS (`GET /calling/keys`) need no
//!   authentication; every callback and WebSocket upgrade carries `Authorization: Bearer
//!   <RS256 JWT>` with `iss`, `aud` (the resource id), `iat`, `nbf` and `exp` (5 minutes).
//! - It places calls through Event Grid ([`ControlPlane::place_call`], [`eventgrid`]): the
//!   IncomingCall event posted to the webhook, after the subscription handshake
//!   ([`ControlPlane::validate_subscription`]).
//! - It plays the calls it placed once they are answered ([`call`], [`driver`]): the script
//!   ([`ScriptedCall`]) streamed into the answer's `transportUrl`s with the emulator's own
//!   machinery (mixed or unmixed, 16 or 24 kHz, the transcript on its own transport), and the
//!   callbacks ([`events`]) posted in order to the `callbackUri`: CallConnected,
//!   ParticipantsUpdated, MediaStreaming/Transcription Started, Stopped or Failed, Play…,
//!   Recognize… (from the scripted key presses), continuous DTMF tones, CallTransferAccepted,
//!   participants added and removed, and CallDisconnected when the application or the caller
//!   hangs up.
//!
//! It serves `http://` or, given a certificate, `https://` (the official SDKs insist on it);
//! it posts to `http://` or `https://` URLs, and streams to `ws://` or `wss://` ones, as ACS
//! does (trusting the web's roots and [`ControlPlaneOptions::trusted_roots`]).

mod call;
mod client;
mod driver;
mod eventgrid;
mod events;
mod fake;
pub(crate) mod reference;
mod routes;
mod scripted;
mod signing;
mod state;
mod validate;
mod verify;

pub use fake::{
    CallStreams, ControlPlane, ControlPlaneOptions, DeliveredCallback, FakeCall, IncomingCall,
    RecordedRequest, decode_access_key, generate_access_key,
};
pub use scripted::{CallerHangUp, EventSchema, ScriptedCall};
