//! The dashboard the admin listener serves at `/`: plain HTML, JS and CSS embedded in the
//! binary (no build step), which reads the admin API itself; and the call folders, read-only,
//! under `/files/`.
//!
//! A browser opened at `/?token=<admin token>` is given a session cookie (`HttpOnly`,
//! `SameSite=Strict`, 12 hours) and sent to `/` without the token in its address; without a
//! token or a session, `/` asks for one. With no token configured (loopback only), the page
//! opens as it is.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::Failure;
use crate::AppState;
use crate::metrics::AdminRefusal;

const INDEX: &str = include_str!("dashboard/index.html");
const LOGIN: &str = include_str!("dashboard/login.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");
const WORKLET: &str = include_str!("dashboard/listen-worklet.js");

/// The session cookie's name.
pub(super) const COOKIE: &str = "mediagate_admin";
/// How long a session lasts.
const SESSION_LIFE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; a new one past this replaces the oldest.
const MAX_SESSIONS: usize = 1024;

/// What the pages may load: only themselves, and the admin API beside them.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self'; media-src 'self' blob:; \
    worker-src 'self' blob:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The browsers let in, by session id.
#[derive(Default)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session: 32 random bytes, hex.
    fn open(&self) -> Option<String> {
        let id = super::random_hex(32)?;
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, expires| *expires > now);
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), now + SESSION_LIFE);
        Some(id)
    }

    /// Whether the request's cookie names a live session.
    pub(super) fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(id) = cookie(headers, COOKIE) else {
            return false;
        };
        let now = Instant::now();
        let sessions = self.lock();
        // A lookup by the id itself: its time does not depend on how much of a guess matched.
        sessions.get(id).is_some_and(|expires| *expires > now)
    }
}

/// The value of cookie `name`.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn page(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// The dashboard reduced to one call for a guest: it reads `base` (the call's guest routes),
/// with no controls, and listens only when `listen` is `"1"`.
pub(super) fn guest_page(base: &str, listen: &str) -> Response {
    let body = INDEX.replacen(
        "<body>",
        &format!(
            "<body data-guest=\"{}\" data-listen=\"{listen}\">",
            escape(base)
        ),
        1,
    );
    let mut response = page("");
    *response.body_mut() = Body::from(body);
    response
}

/// `/`: the dashboard for a browser with a session (or when no token is configured); with
/// `?token=`, a session, then `/` again; else the page that asks for the token.
pub(super) async fn index(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if state.config.admin.token.is_none() {
        return page(INDEX);
    }
    match token_in(uri.query().unwrap_or("")) {
        Some(offered) => sign_in(&state, &offered),
        None if state.sessions.admits(&headers) => page(INDEX),
        None => page(LOGIN),
    }
}

/// `POST /`: the sign-in form (the token in the body, so it stays out of the address bar, the
/// history and proxies' logs), from the dashboard's own origin only.
pub(super) async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if super::cross_origin(&headers) {
        state.metrics.admin_refused(AdminRefusal::CrossOrigin);
        return Failure::new(StatusCode::FORBIDDEN, "a sign-in from another origin")
            .into_response();
    }
    if state.config.admin.token.is_none() {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    }
    let offered = std::str::from_utf8(&body).ok().and_then(token_in);
    sign_in(&state, offered.as_deref().unwrap_or(""))
}

/// The `token` of a query string or form body.
fn token_in(form: &str) -> Option<String> {
    super::form_value(form, "token")
}

/// A session and `/` for the admin token; the sign-in page again (401) for anything else.
fn sign_in(state: &AppState, offered: &str) -> Response {
    let valid = state.config.admin.token.as_ref().is_some_and(|token| {
        super::constant_time_eq(offered.trim().as_bytes(), token.0.trim().as_bytes())
    });
    if !valid {
        state.metrics.admin_refused(AdminRefusal::Invalid);
        let mut response = page(LOGIN);
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    }
    let Some(id) = state.sessions.open() else {
        return Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no randomness for a session",
        )
        .into_response();
    };
    // Over TLS, the cookie is never sent in the clear.
    let secure = if state.config.admin.tls.is_some() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_LIFE.as_secs()
    );
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The dashboard's script (nothing secret in it: it is served without a session).
pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The listener's jitter buffer (an AudioWorklet module).
pub(super) async fn worklet() -> Response {
    asset("text/javascript; charset=utf-8", WORKLET)
}

/// The dashboard's style sheet.
pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// A name that may be one path component under the data dir: no separators, no `..`, nothing
/// hidden.
pub(super) fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
}

/// `/files/{call}/`: the call folder's files, as links.
pub(super) async fn folder(
    State(state): State<Arc<AppState>>,
    Path(call): Path<String>,
) -> Result<Response, Failure> {
    if !plain_name(&call) {
        return Err(Failure::new(StatusCode::NOT_FOUND, "no such call folder"));
    }
    let dir = state.config.data_dir.join(&call);
    let names = tokio::task::spawn_blocking(move || list(&dir))
        .await
        .map_err(|_| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "listing failed"))?
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, "no such call folder"))?;
    let mut html = format!(
        "<!doctype html><meta charset=\"utf-8\"><link rel=\"stylesheet\" href=\"/dashboard.css\">\
         <title>{0}</title><main><h2>{0}</h2><ul>",
        escape(&call)
    );
    for (name, bytes) in names {
        let href: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
        html.push_str(&format!(
            "<li><a href=\"{href}\">{}</a> <span class=\"muted\">{bytes} bytes</span></li>",
            escape(&name)
        ));
    }
    html.push_str("</ul></main>");
    let mut response = page("");
    *response.body_mut() = Body::from(html);
    Ok(response)
}

/// The plain files of `dir` with their sizes, by name; `None` when it is not a directory.
fn list(dir: &FsPath) -> Option<Vec<(String, u64)>> {
    let mut names: Vec<(String, u64)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let meta = entry.metadata().ok()?;
            (meta.is_file() && plain_name(&name)).then_some((name, meta.len()))
        })
        .collect();
    names.sort();
    Some(names)
}

/// `/files/{call}/{name}`: one file of a call folder, streamed, read-only.
pub(super) async fn file(
    State(state): State<Arc<AppState>>,
    Path((call, name)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let missing = || Failure::new(StatusCode::NOT_FOUND, "no such file");
    if !plain_name(&call) || !plain_name(&name) {
        return Err(missing());
    }
    let path: PathBuf = state.config.data_dir.join(&call).join(&name);
    let file = tokio::fs::File::open(&path).await.map_err(|_| missing())?;
    let meta = file.metadata().await.map_err(|_| missing())?;
    if !meta.is_file() {
        return Err(missing());
    }
    let content_type = match path.extension().and_then(|e| e.to_str()) {
        Some("wav") => "audio/wav",
        Some("json") => "application/json",
        Some("jsonl") => "application/jsonl",
        Some("vtt") => "text/vtt; charset=utf-8",
        Some("txt" | "log") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_LENGTH, meta.len().to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        body,
    )
        .into_response())
}

/// `text` safe inside HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_reach_the_data_dir() {
        for bad in ["", "..", ".hidden", "a/b", "a\\b", "../etc", "a\0b"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
        for good in ["call-1", "mixed.wav", "session.json", "a..b"] {
            assert!(plain_name(good), "{good:?}");
        }
    }

    #[test]
    fn a_session_is_found_by_its_cookie_only() {
        let sessions = Sessions::default();
        let id = sessions.open().unwrap();
        assert_eq!(id.len(), 64);
        let mut headers = HeaderMap::new();
        assert!(!sessions.admits(&headers));
        headers.insert(
            header::COOKIE,
            format!("x=1; {COOKIE}={id}").parse().unwrap(),
        );
        assert!(sessions.admits(&headers));
        headers.insert(
            header::COOKIE,
            format!("{COOKIE}={}", &id[1..]).parse().unwrap(),
        );
        assert!(!sessions.admits(&headers));
    }
}
