//! Guest links: a short-lived signed token that lets one person watch one call (its transcript
//! and levels), and listen to it if the link says so, and nothing else.
//!
//! `POST /guest-links` (admin) signs an HS256 JWT with `[admin] guest_key`: its id (`jti`), the
//! call, the scope (`watch` or `watch+listen`), and its expiry. `/guest/<token>` serves the
//! dashboard reduced to that call, which reads only `/guest/<token>/calls/<call>` and its
//! `/events` and `/listen`. Every request checks the signature, the expiry, the call and the
//! revocations (`DELETE /guest-links/{id}`); a stream that outlives its token's expiry or
//! revocation ends then. Anything else is 401.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Failure, calls_of};
use crate::AppState;
use crate::listener::ConnectionPermit;
use crate::metrics::AdminRefusal;

/// The audience of guest tokens: no other token of the gateway passes as one.
const AUDIENCE: &str = "mediagate-guest";
/// The longest a link may live.
const MAX_TTL_SECS: u64 = 24 * 3600;
/// Revocations kept at once (each until its token would have expired anyway).
const MAX_REVOKED: usize = 4096;
/// Streams (events, listening) one link may hold open at once.
const MAX_STREAMS_PER_LINK: usize = 4;

/// What a guest may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) enum Scope {
    /// The call's transcript and levels.
    #[serde(rename = "watch")]
    Watch,
    /// Those, and its audio.
    #[serde(rename = "watch+listen")]
    WatchListen,
}

/// A guest token's claims.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    jti: String,
    call: String,
    scope: Scope,
    aud: String,
    exp: u64,
    iat: u64,
}

/// `POST /guest-links`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewGuestLink {
    /// The live call it shows.
    call_id: String,
    /// `watch` (the default) or `watch+listen`.
    #[serde(default = "watch")]
    scope: Scope,
    /// How long it works, in seconds (default 3600, at most 86400).
    #[serde(default = "an_hour")]
    ttl_secs: u64,
}

fn watch() -> Scope {
    Scope::Watch
}

fn an_hour() -> u64 {
    3600
}

/// A link issued.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GuestLink {
    /// Its id, to revoke it.
    id: String,
    /// The path to give the guest (on this admin listener).
    url: String,
    /// The token itself.
    token: String,
    /// When it stops working (seconds since the Unix epoch).
    expires_at: u64,
}

/// The guest keys and revocations.
pub(crate) struct Guests {
    key: Option<(EncodingKey, DecodingKey)>,
    /// Revoked ids, with when their tokens expire.
    revoked: Mutex<HashMap<String, u64>>,
    /// Streams open, by link id.
    streams: Mutex<HashMap<String, usize>>,
    /// Where the revocations are kept across restarts.
    file: PathBuf,
}

/// The revocations' file in the data dir (hidden: `/files` never serves it).
pub(crate) const REVOCATIONS_FILE: &str = ".guest-revocations.json";

/// Whether `id` can be a link's id (32 hex digits as issued; a little slack).
fn plain_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Guests {
    /// Guests of `key`, with the revocations kept in `file` (`saved`: its contents at start-up,
    /// if any; the expired ones are forgotten).
    pub(crate) fn new(key: Option<&str>, file: PathBuf, saved: Option<&[u8]>) -> Self {
        let now = now_secs();
        let mut revoked: HashMap<String, u64> = saved
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
            .unwrap_or_default();
        revoked.retain(|id, until| *until > now && plain_id(id));
        if revoked.len() > MAX_REVOKED {
            revoked = revoked.into_iter().take(MAX_REVOKED).collect();
        }
        Guests {
            key: key.map(|k| {
                (
                    EncodingKey::from_secret(k.trim().as_bytes()),
                    DecodingKey::from_secret(k.trim().as_bytes()),
                )
            }),
            revoked: Mutex::new(revoked),
            streams: Mutex::default(),
            file,
        }
    }

    /// Writes the revocations to their file (a new file renamed over the old: never half
    /// written). Blocking.
    fn save(&self, revoked: &HashMap<String, u64>) -> std::io::Result<()> {
        let json = serde_json::to_vec(revoked).map_err(std::io::Error::other)?;
        let temporary = self.file.with_extension("json.tmp");
        std::fs::write(&temporary, json)?;
        std::fs::rename(&temporary, &self.file)
    }

    fn revoked(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.revoked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The claims of a valid, unrevoked token; else why not.
    fn check(&self, token: &str) -> Result<Claims, AdminRefusal> {
        let Some((_, key)) = &self.key else {
            return Err(AdminRefusal::GuestInvalid);
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AdminRefusal::GuestExpired,
                _ => AdminRefusal::GuestInvalid,
            })?
            .claims;
        if self.revoked().contains_key(&claims.jti) {
            return Err(AdminRefusal::GuestRevoked);
        }
        Ok(claims)
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Issues a guest link to one live call.
#[utoipa::path(post, path = "/guest-links", tag = "guests",
    request_body = NewGuestLink,
    responses(
        (status = 201, description = "Issued", body = GuestLink),
        (status = 404, description = "No such live call", body = super::ApiError),
        (status = 409, description = "No `[admin] guest_key` is configured", body = super::ApiError),
        (status = 422, description = "A bad scope or lifetime", body = super::ApiError),
    ))]
pub(super) async fn issue(
    State(state): State<Arc<AppState>>,
    Json(request): Json<NewGuestLink>,
) -> Result<(StatusCode, Json<GuestLink>), Failure> {
    let Some((key, _)) = &state.guests.key else {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            "guest links need `[admin] guest_key` (or MEDIAGATE_ADMIN__GUEST_KEY)",
        ));
    };
    if !(1..=MAX_TTL_SECS).contains(&request.ttl_secs) {
        return Err(Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("ttl_secs must be 1 to {MAX_TTL_SECS}"),
        ));
    }
    if state.live.of_call(&request.call_id).is_empty() {
        return Err(Failure::no_call(&request.call_id));
    }
    let id = super::random_hex(16)
        .ok_or_else(|| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "no randomness"))?;
    let iat = now_secs();
    let claims = Claims {
        jti: id.clone(),
        call: request.call_id.clone(),
        scope: request.scope,
        aud: AUDIENCE.to_owned(),
        exp: iat + request.ttl_secs,
        iat,
    };
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    tracing::info!(call_id = %request.call_id, link = %id, scope = ?request.scope, ttl_secs = request.ttl_secs, "guest link issued");
    Ok((
        StatusCode::CREATED,
        Json(GuestLink {
            id,
            url: format!("/guest/{token}"),
            token,
            expires_at: claims.exp,
        }),
    ))
}

/// Revokes a guest link: its page, streams and listening end within a second, and it stays
/// revoked across restarts (kept in the data dir until it would have expired).
#[utoipa::path(delete, path = "/guest-links/{id}", tag = "guests",
    params(("id" = String, Path, description = "The link's id")),
    responses(
        (status = 204, description = "Revoked, and saved in the data dir: it stays revoked across restarts"),
        (status = 404, description = "Not a link's id", body = super::ApiError),
        (status = 500, description = "Revoked, but not saved: until the gateway restarts", body = super::ApiError),
        (status = 503, description = "Too many links revoked and not expired yet", body = super::ApiError),
    ))]
pub(super) async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, Failure> {
    if !plain_id(&id) {
        return Err(Failure::new(StatusCode::NOT_FOUND, "not a guest link's id"));
    }
    let now = now_secs();
    let snapshot = {
        let mut revoked = state.guests.revoked();
        revoked.retain(|_, expires| *expires > now);
        if revoked.len() >= MAX_REVOKED && !revoked.contains_key(&id) {
            return Err(Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_REVOKED} links are revoked and not expired yet"),
            ));
        }
        // Kept for the longest any token lives: its own expiry is not known here.
        revoked.insert(id.clone(), now + MAX_TTL_SECS);
        revoked.clone()
    };
    tracing::info!(link = %id, "guest link revoked");
    let saver = Arc::clone(&state);
    let saved = tokio::task::spawn_blocking(move || saver.guests.save(&snapshot))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match saved {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(e) => {
            tracing::error!(error = %e, "cannot save the guest-link revocations");
            Err(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("revoked until the gateway restarts: cannot save it ({e})"),
            ))
        }
    }
}

/// Checks `token` for `call` (when given); the claims, or the refusal (counted).
fn admit(state: &AppState, token: &str, call: Option<&str>) -> Result<Claims, Failure> {
    let refused = |refusal: AdminRefusal| {
        state.metrics.admin_refused(refusal);
        let message = match refusal {
            AdminRefusal::GuestExpired => "this guest link has expired",
            AdminRefusal::GuestRevoked => "this guest link was revoked",
            AdminRefusal::GuestWrongCall => "this guest link is for another call",
            _ => "this guest link is not valid",
        };
        Failure::new(StatusCode::UNAUTHORIZED, message)
    };
    let claims = state.guests.check(token).map_err(refused)?;
    if call.is_some_and(|call| call != claims.call) {
        return Err(refused(AdminRefusal::GuestWrongCall));
    }
    Ok(claims)
}

/// `/guest/<token>`: the dashboard, reduced to the token's call.
pub(super) async fn page(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Response {
    let claims = match admit(&state, &token, None) {
        Ok(claims) => claims,
        Err(refused) => return refused.into_response(),
    };
    // The token is a JWT (base64url and dots), checked above: safe inside an attribute; the
    // call id is escaped.
    let call: String = form_urlencoded::byte_serialize(claims.call.as_bytes()).collect();
    let base = format!("/guest/{token}/calls/{call}");
    let listen = if claims.scope == Scope::WatchListen {
        "1"
    } else {
        "0"
    };
    super::dashboard::guest_page(&base, listen)
}

/// The call, as a guest sees it: its id, duration and sources' levels.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GuestCallView {
    call_id: String,
    duration_secs: f64,
    sources: Vec<super::SourceView>,
    transcript: Vec<super::TranscriptLine>,
}

/// `/guest/<token>/calls/<call>`.
pub(super) async fn call(
    State(state): State<Arc<AppState>>,
    Path((token, call_id)): Path<(String, String)>,
) -> Response {
    if let Err(refused) = admit(&state, &token, Some(&call_id)) {
        return refused.into_response();
    }
    let Some(view) = calls_of(&state.live.of_call(&call_id)).pop() else {
        return Failure::no_call(&call_id).into_response();
    };
    Json(GuestCallView {
        call_id: view.call_id,
        duration_secs: view.duration_secs,
        transcript: view.transcript,
        sources: view
            .transports
            .into_iter()
            .flat_map(|t| t.sources)
            .collect(),
    })
    .into_response()
}

/// `/guest/<token>/calls/<call>/events`: the call's transcript, DTMF, levels and end, until the
/// token expires or is revoked.
pub(super) async fn events(
    State(state): State<Arc<AppState>>,
    Path((token, call_id)): Path<(String, String)>,
) -> Response {
    let claims = match admit(&state, &token, Some(&call_id)) {
        Ok(claims) => claims,
        Err(refused) => return refused.into_response(),
    };
    let Some(until) = Until::new(Arc::clone(&state), claims) else {
        return too_many_streams();
    };
    super::event_stream(state, Some(call_id), Some(GUEST_EVENTS), Some(until)).into_response()
}

/// The kinds of events a guest sees.
const GUEST_EVENTS: &[&str] = &[
    "call_started",
    "call_ended",
    "transcript",
    "dtmf",
    "custom:level",
];

/// `/guest/<token>/calls/<call>/listen`, for a `watch+listen` link.
pub(super) async fn listen(
    State(state): State<Arc<AppState>>,
    Path((token, call_id)): Path<(String, String)>,
    uri: Uri,
    permit: Option<Extension<ConnectionPermit>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let claims = match admit(&state, &token, Some(&call_id)) {
        Ok(claims) => claims,
        Err(refused) => return refused.into_response(),
    };
    if claims.scope != Scope::WatchListen {
        state.metrics.admin_refused(AdminRefusal::GuestScope);
        return Failure::new(
            StatusCode::FORBIDDEN,
            "this guest link does not include listening",
        )
        .into_response();
    }
    let Some(until) = Until::new(Arc::clone(&state), claims) else {
        return too_many_streams();
    };
    match super::listen::upgrade_listener(state, call_id, uri, permit, upgrade, Some(until)).await {
        Ok(response) => response,
        Err(failure) => failure.into_response(),
    }
}

fn too_many_streams() -> Response {
    Failure::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("this guest link holds {MAX_STREAMS_PER_LINK} streams open already"),
    )
    .into_response()
}

/// When a guest's stream must end: its token's expiry, or its revocation.
pub(crate) struct Until {
    state: Arc<AppState>,
    id: String,
    expires: u64,
}

impl Until {
    /// A stream of the link `claims` names; `None` when the link holds
    /// [`MAX_STREAMS_PER_LINK`] already (a guest cannot take the admin listener's connections).
    fn new(state: Arc<AppState>, claims: Claims) -> Option<Self> {
        {
            let mut streams = state
                .guests
                .streams
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let open = streams.entry(claims.jti.clone()).or_default();
            if *open >= MAX_STREAMS_PER_LINK {
                return None;
            }
            *open += 1;
        }
        Some(Until {
            state,
            id: claims.jti,
            expires: claims.exp,
        })
    }

    /// Resolves when the token expires or is revoked (checked each second).
    pub(crate) async fn reached(&self) {
        loop {
            if now_secs() >= self.expires || self.state.guests.revoked().contains_key(&self.id) {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

impl Drop for Until {
    fn drop(&mut self) {
        let mut streams = self
            .state
            .guests
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(open) = streams.get_mut(&self.id) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.id);
            }
        }
    }
}
