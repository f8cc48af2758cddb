//! The client: every request signed (or carrying a bearer token), every mutating one made
//! repeatable, and retried with back-off on 429 and 5xx, honouring `Retry-After`.

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use url::Url;

use crate::Error;
use crate::credential::{ConnectionString, Credential, check_endpoint};
use crate::http::{Transport, host_header, path_and_query};
use crate::models::*;
use crate::sign::{http_date, parse_http_date, sign};

/// The `api-version` sent unless configured otherwise: the newest the official SDKs send
/// (Microsoft's Python SDK 1.6.0).
pub const DEFAULT_API_VERSION: &str = "2026-03-12";

/// When and how often a failed request is tried again.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub max_attempts: u32,
    /// The wait before the second try; doubled for each next one (with ±20% jitter), unless
    /// the service says `Retry-After`.
    pub base_delay: Duration,
    /// The longest wait between tries. A `Retry-After` longer than this ends the retries: the
    /// request fails rather than go out before the service said it may.
    pub max_delay: Duration,
    /// How long one try may take, connect to last byte.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
        }
    }
}

/// What a client is built from.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The resource's endpoint (`https://<name>.communication.azure.com/`).
    pub endpoint: Url,
    /// How requests are authenticated.
    pub credential: Credential,
    /// `api-version` of every request.
    pub api_version: String,
    /// Retries.
    pub retry: RetryPolicy,
    /// Roots trusted besides the web PKI's (a local fake's certificate).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl ClientOptions {
    /// Options for a connection string's endpoint and key, with the defaults.
    pub fn from_connection_string(cs: &ConnectionString) -> ClientOptions {
        ClientOptions {
            endpoint: cs.endpoint.clone(),
            credential: Credential::AccessKey(cs.access_key.clone()),
            api_version: DEFAULT_API_VERSION.to_owned(),
            retry: RetryPolicy::default(),
            extra_roots: Vec::new(),
        }
    }
}

/// A Call Automation REST client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CallAutomationClient {
    options: std::sync::Arc<ClientOptions>,
    transport: Transport,
}

/// A call connection id or recording id as one path segment.
fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A random UUID (version 4), for `Repeatability-Request-ID`.
fn uuid_v4() -> Result<String, Error> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| Error::Transport("no randomness from the system".to_owned()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// A number in `[0.8, 1.2)`, to spread retries of many calls.
fn jitter() -> f64 {
    let mut b = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    0.8 + 0.4 * f64::from(u16::from_le_bytes(b)) / 65536.0
}

/// How long `Retry-After` (seconds, or an HTTP date) asks to wait.
fn retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

/// Whether a status is worth another try: throttled, or a server error that may pass.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

impl CallAutomationClient {
    /// A client for `options`.
    pub fn new(options: ClientOptions) -> Result<CallAutomationClient, Error> {
        check_endpoint(&options.endpoint)?;
        if options.api_version.is_empty()
            || !options
                .api_version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(Error::Config(format!(
                "api_version `{}` is not a version",
                options.api_version
            )));
        }
        if options.retry.max_attempts == 0 {
            return Err(Error::Config(
                "retry.max_attempts must be at least 1".to_owned(),
            ));
        }
        let transport = Transport::new(&options.extra_roots)?;
        Ok(CallAutomationClient {
            options: std::sync::Arc::new(options),
            transport,
        })
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &Url {
        &self.options.endpoint
    }

    fn url(&self, path: &str) -> Result<Url, Error> {
        // Under the endpoint only: a path that names another host would carry the credential
        // there.
        if path.contains("://") || path.starts_with("//") {
            return Err(Error::Config(format!(
                "`{path}` is not a path under the endpoint"
            )));
        }
        let mut url = self
            .options
            .endpoint
            .join(path.trim_start_matches('/'))
            .map_err(|e| Error::Config(format!("{path}: {e}")))?;
        url.query_pairs_mut()
            .clear()
            .append_pair("api-version", &self.options.api_version);
        Ok(url)
    }

    /// Sends a request, retrying as [`RetryPolicy`] says, and returns the successful
    /// response's body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, Error> {
        let url = self.url(path)?;
        let body = Bytes::from(body.unwrap_or_default());
        let retry = &self.options.retry;
        // One id and first-sent time for every try: the service runs the request once.
        let repeatability = if method == Method::POST {
            Some((uuid_v4()?, http_date(OffsetDateTime::now_utc())))
        } else {
            None
        };
        let mut attempt = 1;
        loop {
            let mut headers: Vec<(&str, String)> = Vec::with_capacity(5);
            if let Some((id, first_sent)) = &repeatability {
                headers.push(("Repeatability-Request-ID", id.clone()));
                headers.push(("Repeatability-First-Sent", first_sent.clone()));
            }
            match &self.options.credential {
                Credential::AccessKey(key) => {
                    let signature = sign(
                        key,
                        method.as_str(),
                        &path_and_query(&url),
                        &host_header(&url),
                        &body,
                        OffsetDateTime::now_utc(),
                    );
                    headers.push(("x-ms-date", signature.date));
                    headers.push(("x-ms-content-sha256", signature.content_sha256));
                    headers.push(("Authorization", signature.authorization));
                }
                Credential::Entra(source) => {
                    headers.push(("Authorization", format!("Bearer {}", source.token().await?)));
                }
            }
            let outcome = self
                .transport
                .send(method.clone(), &url, &headers, body.clone(), retry.timeout)
                .await;
            let delay = match outcome {
                Ok(response) if response.status.is_success() => return Ok(response.body),
                Ok(response) => {
                    let error =
                        Error::from_response(response.status.as_u16(), &response.body, attempt);
                    if !retryable(response.status) || attempt >= retry.max_attempts {
                        return Err(error);
                    }
                    let asked = response
                        .retry_after
                        .as_deref()
                        .and_then(|v| retry_after(v, OffsetDateTime::now_utc()));
                    match asked {
                        Some(asked) if asked > retry.max_delay => return Err(error),
                        Some(asked) => asked,
                        None => self.backoff(attempt),
                    }
                }
                Err(error @ Error::Transport(_)) if attempt < retry.max_attempts => {
                    tracing::debug!(%error, attempt, "Call Automation request failed; retrying");
                    self.backoff(attempt)
                }
                Err(error) => return Err(error),
            };
            tracing::debug!(path, attempt, ?delay, "Call Automation request retried");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let retry = &self.options.retry;
        let exp = retry
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(16));
        exp.mul_f64(jitter()).min(retry.max_delay)
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, Error> {
        let body = serde_json::to_vec(body).map_err(|e| Error::Decode(e.to_string()))?;
        let response = self.send(Method::POST, path, Some(body)).await?;
        decode(&response)
    }

    async fn post_empty<B: Serialize>(&self, path: &str, body: &B) -> Result<(), Error> {
        let body = serde_json::to_vec(body).map_err(|e| Error::Decode(e.to_string()))?;
        self.send(Method::POST, path, Some(body)).await.map(drop)
    }

    async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, Error> {
        decode(&self.send(Method::GET, path, None).await?)
    }

    /// Sends any method of the API: `method` (`GET`, `POST`, `DELETE`), `path` under the
    /// endpoint (`calling/callConnections/{id}:play`, ids already escaped) and a JSON body,
    /// with the same authentication, repeatability and retries as the typed methods. For
    /// methods (or fields) not typed here.
    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, Error> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| Error::Config(format!("`{method}` is not an HTTP method")))?;
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::Decode(e.to_string()))?;
        let response = self.send(method, path, body).await?;
        if response.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        decode(&response)
    }

    fn call(id: &str, action: &str) -> String {
        format!("calling/callConnections/{}{action}", segment(id))
    }

    /// `POST /calling/callConnections`: places an outbound call.
    pub async fn create_call(
        &self,
        request: &CreateCallRequest,
    ) -> Result<CallConnectionProperties, Error> {
        self.post("calling/callConnections", request).await
    }

    /// `POST /calling/callConnections:answer`: answers an incoming call.
    pub async fn answer_call(
        &self,
        request: &AnswerCallRequest,
    ) -> Result<CallConnectionProperties, Error> {
        self.post("calling/callConnections:answer", request).await
    }

    /// `POST /calling/callConnections:redirect`: sends an incoming call elsewhere unanswered.
    pub async fn redirect_call(&self, request: &RedirectCallRequest) -> Result<(), Error> {
        self.post_empty("calling/callConnections:redirect", request)
            .await
    }

    /// `POST /calling/callConnections:reject`: refuses an incoming call.
    pub async fn reject_call(&self, request: &RejectCallRequest) -> Result<(), Error> {
        self.post_empty("calling/callConnections:reject", request)
            .await
    }

    /// `POST /calling/callConnections:connect`: joins a group call, server call or room.
    pub async fn connect(
        &self,
        request: &ConnectRequest,
    ) -> Result<CallConnectionProperties, Error> {
        self.post("calling/callConnections:connect", request).await
    }

    /// `GET /calling/callConnections/{id}`.
    pub async fn get_call(&self, call: &str) -> Result<CallConnectionProperties, Error> {
        self.get(&Self::call(call, "")).await
    }

    /// `DELETE /calling/callConnections/{id}`: leaves the call (which goes on if others
    /// remain).
    pub async fn hang_up(&self, call: &str) -> Result<(), Error> {
        self.send(Method::DELETE, &Self::call(call, ""), None)
            .await
            .map(drop)
    }

    /// `POST …:terminate`: ends the call for everyone.
    pub async fn terminate(&self, call: &str) -> Result<(), Error> {
        self.send(Method::POST, &Self::call(call, ":terminate"), None)
            .await
            .map(drop)
    }

    /// `POST …:transferToParticipant`.
    pub async fn transfer(
        &self,
        call: &str,
        request: &TransferToParticipantRequest,
    ) -> Result<OperationAccepted, Error> {
        self.post(&Self::call(call, ":transferToParticipant"), request)
            .await
    }

    /// `POST …:play`.
    pub async fn play(&self, call: &str, request: &PlayRequest) -> Result<(), Error> {
        self.post_empty(&Self::call(call, ":play"), request).await
    }

    /// `POST …:recognize`.
    pub async fn recognize(&self, call: &str, request: &RecognizeRequest) -> Result<(), Error> {
        self.post_empty(&Self::call(call, ":recognize"), request)
            .await
    }

    /// `POST …:cancelAllMediaOperations`.
    pub async fn cancel_all_media_operations(&self, call: &str) -> Result<(), Error> {
        self.send(
            Method::POST,
            &Self::call(call, ":cancelAllMediaOperations"),
            None,
        )
        .await
        .map(drop)
    }

    /// `POST …:startContinuousDtmfRecognition`.
    pub async fn start_continuous_dtmf(
        &self,
        call: &str,
        request: &ContinuousDtmfRecognitionRequest,
    ) -> Result<(), Error> {
        self.post_empty(
            &Self::call(call, ":startContinuousDtmfRecognition"),
            request,
        )
        .await
    }

    /// `POST …:stopContinuousDtmfRecognition`.
    pub async fn stop_continuous_dtmf(
        &self,
        call: &str,
        request: &ContinuousDtmfRecognitionRequest,
    ) -> Result<(), Error> {
        self.post_empty(&Self::call(call, ":stopContinuousDtmfRecognition"), request)
            .await
    }

    /// `POST …:sendDtmfTones`.
    pub async fn send_dtmf_tones(
        &self,
        call: &str,
        request: &SendDtmfTonesRequest,
    ) -> Result<OperationAccepted, Error> {
        self.post(&Self::call(call, ":sendDtmfTones"), request)
            .await
    }

    /// `POST …:hold`.
    pub async fn hold(&self, call: &str, request: &HoldRequest) -> Result<(), Error> {
        self.post_empty(&Self::call(call, ":hold"), request).await
    }

    /// `POST …:unhold`.
    pub async fn unhold(&self, call: &str, request: &UnholdRequest) -> Result<(), Error> {
        self.post_empty(&Self::call(call, ":unhold"), request).await
    }

    /// `POST …:startTranscription`.
    pub async fn start_transcription(
        &self,
        call: &str,
        request: &TranscriptionRequest,
    ) -> Result<(), Error> {
        self.post_empty(&Self::call(call, ":startTranscription"), request)
            .await
    }

    /// `POST …:updateTranscription` (a new locale or model).
    pub async fn update_transcription(
        &self,
        call: &str,
        request: &TranscriptionRequest,
    ) -> Result<(), Error> {
        self.post_empty(&Self::call(call, ":updateTranscription"), request)
            .await
    }

    /// `POST …:stopTranscription`.
    pub async fn stop_transcription(
        &self,
        call: &str,
        request: &StopTranscriptionRequest,
    ) -> Result<(), Error> {
        self.post_empty(&Self::call(call, ":stopTranscription"), request)
            .await
    }

    /// `POST …:startMediaStreaming`.
    pub async fn start_media_streaming(
        &self,
        call: &str,
        request: &MediaStreamingRequest,
    ) -> Result<(), Error> {
        self.post_empty(&Self::call(call, ":startMediaStreaming"), request)
            .await
    }

    /// `POST …:stopMediaStreaming`.
    pub async fn stop_media_streaming(
        &self,
        call: &str,
        request: &MediaStreamingRequest,
    ) -> Result<(), Error> {
        self.post_empty(&Self::call(call, ":stopMediaStreaming"), request)
            .await
    }

    /// `GET …/participants`: the call's participants (the first page; calls have few).
    pub async fn participants(&self, call: &str) -> Result<ParticipantsPage, Error> {
        self.get(&Self::call(call, "/participants")).await
    }

    /// `GET …/participants/{rawId}`.
    pub async fn participant(&self, call: &str, raw_id: &str) -> Result<CallParticipant, Error> {
        self.get(&format!(
            "{}/{}",
            Self::call(call, "/participants"),
            segment(raw_id)
        ))
        .await
    }

    /// `POST …/participants:add`.
    pub async fn add_participant(
        &self,
        call: &str,
        request: &AddParticipantRequest,
    ) -> Result<AddParticipantResponse, Error> {
        self.post(&Self::call(call, "/participants:add"), request)
            .await
    }

    /// `POST …/participants:remove`.
    pub async fn remove_participant(
        &self,
        call: &str,
        request: &RemoveParticipantRequest,
    ) -> Result<OperationAccepted, Error> {
        self.post(&Self::call(call, "/participants:remove"), request)
            .await
    }

    /// `POST …/participants:mute`.
    pub async fn mute_participants(
        &self,
        call: &str,
        request: &MuteParticipantsRequest,
    ) -> Result<OperationAccepted, Error> {
        self.post(&Self::call(call, "/participants:mute"), request)
            .await
    }

    /// `POST …/participants:cancelAddParticipant`: withdraws an invitation still ringing.
    pub async fn cancel_add_participant(
        &self,
        call: &str,
        request: &CancelAddParticipantRequest,
    ) -> Result<CancelAddParticipantResponse, Error> {
        self.post(
            &Self::call(call, "/participants:cancelAddParticipant"),
            request,
        )
        .await
    }

    /// `POST /calling/recordings`: ACS's own recording of the call.
    pub async fn start_recording(
        &self,
        request: &StartCallRecordingRequest,
    ) -> Result<RecordingStateResponse, Error> {
        self.post("calling/recordings", request).await
    }

    /// `GET /calling/recordings/{id}`.
    pub async fn recording(&self, recording: &str) -> Result<RecordingStateResponse, Error> {
        self.get(&format!("calling/recordings/{}", segment(recording)))
            .await
    }

    /// `DELETE /calling/recordings/{id}`: stops the recording.
    pub async fn stop_recording(&self, recording: &str) -> Result<(), Error> {
        let path = format!("calling/recordings/{}", segment(recording));
        self.send(Method::DELETE, &path, None).await.map(drop)
    }

    /// `POST /calling/recordings/{id}:pause`.
    pub async fn pause_recording(&self, recording: &str) -> Result<(), Error> {
        let path = format!("calling/recordings/{}:pause", segment(recording));
        self.send(Method::POST, &path, None).await.map(drop)
    }

    /// `POST /calling/recordings/{id}:resume`.
    pub async fn resume_recording(&self, recording: &str) -> Result<(), Error> {
        let path = format!("calling/recordings/{}:resume", segment(recording));
        self.send(Method::POST, &path, None).await.map(drop)
    }
}

fn decode<R: DeserializeOwned>(body: &[u8]) -> Result<R, Error> {
    // A 202 or 204 may have no body; the response types are all optional fields then.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| Error::Decode(format!("the response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeatability_ids_are_version_4_uuids() {
        let id = uuid_v4().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(id, uuid_v4().unwrap());
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = time::macros::datetime!(2026-12-01 08:00:00 UTC);
        assert_eq!(retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after("Tue, 01 Dec 2026 08:00:05 GMT", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            retry_after("Tue, 01 Dec 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn ids_are_escaped_as_one_path_segment() {
        assert_eq!(segment("4:+1425/x y"), "4%3A%2B1425%2Fx%20y");
        assert_eq!(segment("abc-DEF_1.2~"), "abc-DEF_1.2~");
    }

    #[test]
    fn only_throttling_and_passing_server_errors_are_retried() {
        for (status, retried) in [
            (429, true),
            (503, true),
            (500, true),
            (400, false),
            (401, false),
            (404, false),
            (501, false),
        ] {
            assert_eq!(
                retryable(StatusCode::from_u16(status).unwrap()),
                retried,
                "{status}"
            );
        }
    }
}
