//! One HTTP/1.1 request over a fresh TCP (and TLS) connection, with deadlines and a bounded
//! response. The control plane sends a handful of requests per call, so connections are not
//! pooled.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use url::Url;

use crate::Error;

/// The largest response body read.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// How long a TCP connect (with the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A response: its status, `Retry-After` and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) retry_after: Option<String>,
    pub(crate) body: Bytes,
}

/// Connects to endpoints: plain TCP for `http`, rustls with the web's roots (and any extra
/// ones) for `https`.
#[derive(Clone)]
pub(crate) struct Transport {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport")
    }
}

impl Transport {
    /// A transport trusting the web PKI's roots and `extra_roots`.
    pub(crate) fn new(extra_roots: &[CertificateDer<'static>]) -> Result<Transport, Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for root in extra_roots {
            roots
                .add(root.clone())
                .map_err(|e| Error::Config(format!("a trusted root certificate: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Transport {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// Sends one request to `url` and reads the whole response, within `timeout`.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response, Error> {
        tokio::time::timeout(timeout, self.exchange(method, url, headers, body))
            .await
            .map_err(|_| {
                Error::Transport(format!("no response from {} in {timeout:?}", host_of(url)))
            })?
    }

    async fn exchange(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Response, Error> {
        let host = url
            .host_str()
            .ok_or_else(|| Error::Config(format!("{url}: no host")))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| Error::Config(format!("{url}: no port")))?;
        let transport = |e: std::io::Error| Error::Transport(format!("{}: {e}", host_of(url)));
        let connect = async {
            // An IPv6 literal comes bracketed from the URL.
            let tcp =
                TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
                    .await
                    .map_err(transport)?;
            let _ = tcp.set_nodelay(true);
            Ok::<_, Error>(tcp)
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| Error::Transport(format!("{}: connect timed out", host_of(url))))??;
        let request = build_request(method, url, headers, body)?;
        if url.scheme() == "https" {
            let name = ServerName::try_from(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            )
            .map_err(|e| Error::Config(format!("{url}: {e}")))?;
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(name, tcp))
                .await
                .map_err(|_| {
                    Error::Transport(format!("{}: TLS handshake timed out", host_of(url)))
                })?
                .map_err(transport)?;
            round_trip(TokioIo::new(tls), request).await
        } else {
            round_trip(TokioIo::new(tcp), request).await
        }
    }
}

fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => url.to_string(),
    }
}

/// `Host` as sent (and signed): the port only when it is not the scheme's.
pub(crate) fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// The request line's target: the path and the query.
pub(crate) fn path_and_query(url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

fn build_request(
    method: Method,
    url: &Url,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<Request<Full<Bytes>>, Error> {
    let mut request = Request::builder()
        .method(method)
        .uri(path_and_query(url))
        .header(hyper::header::HOST, host_header(url))
        .header(hyper::header::CONTENT_LENGTH, body.len());
    if !body.is_empty() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request
        .body(Full::new(body))
        .map_err(|e| Error::Config(format!("request to {url}: {e}")))
}

async fn round_trip<I>(io: I, request: Request<Full<Bytes>>) -> Result<Response, Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Error::Transport(format!("HTTP handshake: {e}")))?;
    // The connection's task ends when the response is read and `sender` dropped.
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Error::Transport(format!("request: {e}")))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| Error::Transport(format!("response body: {e}")))?
            .to_bytes();
        Ok(Response {
            status,
            retry_after,
            body,
        })
    }
    .await;
    drop(sender);
    driver.abort();
    result
}
