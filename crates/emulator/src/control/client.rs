//! The fake's HTTP client: Event Grid deliveries and callbacks to the application, one request
//! per fresh TCP (and TLS) connection, each bounded in time and in what is read back.
//!
//! Event Grid and Call Automation retry failed deliveries for hours; a local fake that did so
//! would pile up requests against a gateway that is down. [`HttpClient::deliver`] tries once,
//! and once more after a second when the failure is one the services retry (no answer, a
//! timeout, 408, 429 or a 5xx).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use url::Url;

/// How long one attempt may take, from connecting to the end of the response.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait before the one retry.
pub(crate) const RETRY_DELAY: Duration = Duration::from_secs(1);
/// The largest response body read (the rest is not waited for).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// An answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// What a delivery came to, after its retry if it had one.
#[derive(Debug, Clone)]
pub(crate) struct Delivered {
    /// The last answer, if there was one.
    pub(crate) reply: Option<Reply>,
    /// Why the last attempt got no answer.
    pub(crate) error: Option<String>,
    /// Requests sent: 1 or 2.
    pub(crate) attempts: u32,
}

impl Delivered {
    /// The last answer's status.
    pub(crate) fn status(&self) -> Option<u16> {
        self.reply.as_ref().map(|r| r.status)
    }

    /// Answered with a 2xx.
    pub(crate) fn succeeded(&self) -> bool {
        self.status().is_some_and(|s| (200..300).contains(&s))
    }
}

/// Sends requests over `http://`, or `https://` trusting the web's roots and any extra ones.
#[derive(Clone)]
pub(crate) struct HttpClient {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpClient")
    }
}

impl HttpClient {
    /// A client trusting the web PKI's roots and `extra_roots` (DER).
    pub(crate) fn new(extra_roots: &[Vec<u8>]) -> Result<HttpClient, String> {
        Ok(HttpClient {
            tls: tokio_rustls::TlsConnector::from(crate::connection::tls_client(extra_roots)?),
        })
    }

    /// Sends a request, and once more after [`RETRY_DELAY`] if the first failed in a way the
    /// services retry.
    pub(crate) async fn deliver(
        &self,
        method: Method,
        url: &Url,
        headers: &[(HeaderName, String)],
        body: Bytes,
    ) -> Delivered {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = self.send(method.clone(), url, headers, body.clone()).await;
            let retry = match &result {
                Ok(reply) => matches!(reply.status, 408 | 429 | 500..=599),
                Err(_) => true,
            };
            if !retry || attempts == 2 {
                let (reply, error) = match result {
                    Ok(reply) => (Some(reply), None),
                    Err(error) => (None, Some(error)),
                };
                return Delivered {
                    reply,
                    error,
                    attempts,
                };
            }
            tokio::time::sleep(RETRY_DELAY).await;
        }
    }

    /// One request, answered within [`ATTEMPT_TIMEOUT`]. Errors name the host, never the query
    /// (it may carry a secret).
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: &[(HeaderName, String)],
        body: Bytes,
    ) -> Result<Reply, String> {
        tokio::time::timeout(ATTEMPT_TIMEOUT, self.exchange(method, url, headers, body))
            .await
            .map_err(|_| format!("no answer from {} in {ATTEMPT_TIMEOUT:?}", host_of(url)))?
    }

    async fn exchange(
        &self,
        method: Method,
        url: &Url,
        headers: &[(HeaderName, String)],
        body: Bytes,
    ) -> Result<Reply, String> {
        let host = url.host_str().ok_or("the URL has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("{}: {e}", host_of(url)))?;
        let _ = tcp.set_nodelay(true);
        let request = build_request(method, url, headers, body)?;
        match url.scheme() {
            "https" => {
                let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
                let tls = self
                    .tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("{}: TLS: {e}", host_of(url)))?;
                round_trip(TokioIo::new(tls), request).await
            }
            "http" => round_trip(TokioIo::new(tcp), request).await,
            other => Err(format!("`{other}://` is neither http nor https")),
        }
    }
}

/// `host:port` of a URL, for messages (never its path or query).
pub(crate) fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        _ => "(no host)".to_owned(),
    }
}

fn build_request(
    method: Method,
    url: &Url,
    headers: &[(HeaderName, String)],
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let mut request = Request::builder()
        .method(method)
        .uri(target)
        .header(hyper::header::HOST, host)
        .header(hyper::header::CONTENT_LENGTH, body.len());
    for (name, value) in headers {
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("header `{name}` is not a valid value"))?;
        request = request.header(name, value);
    }
    request
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))
}

async fn round_trip<I>(io: I, request: Request<Full<Bytes>>) -> Result<Reply, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    // The connection's task ends when the response is read and `sender` dropped.
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("response body: {e}"))?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
    .await;
    drop(sender);
    driver.abort();
    result
}
