//! One WebSocket connection to the gateway: the sending half for a transport, a reader task that
//! reads everything the gateway sends back, and the two ways of ending (close frame or drop).

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, Stream, StreamExt};
use mediagate_protocol::{OutboundMessage, parse_outbound};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{
    Connector, MaybeTlsStream, WebSocketStream, connect_async_tls_with_config,
};

use crate::outbound::OutboundCapture;
use crate::{EmulatorError, EndMode, GatewayClose, GatewayMessages};

/// How long to wait for the gateway's close frame (and the end of the TCP stream) after ours.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// How long to wait, after a failed send, for the reader to tell whether the gateway closed.
const ERROR_WAIT: Duration = Duration::from_secs(1);

/// The sending half of a connection.
pub(crate) type WsSink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// The TLS client the emulator connects with (`wss://` here, `https://` for the control
/// plane's deliveries): the web PKI's roots and `extra_roots` (DER), as ACS trusts a public CA
/// and a test trusts its own certificate.
pub(crate) fn tls_client(extra_roots: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for root in extra_roots {
        roots
            .add(rustls::pki_types::CertificateDer::from(root.clone()))
            .map_err(|e| format!("a trusted root certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificates (DER) of a PEM file, to trust: a gateway's own, or its CA's.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, rustls::pki_types::pem::Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .map(|cert| cert.map(|c| c.to_vec()))
        .collect()
}

/// [`tls_client`] for WebSockets (`ws://` URLs ignore it).
pub(crate) fn tls_connector(extra_roots: &[Vec<u8>]) -> Result<Connector, EmulatorError> {
    tls_client(extra_roots)
        .map(Connector::Rustls)
        .map_err(|reason| EmulatorError::TrustedRoot { reason })
}

/// How a transport's send phase ended, when the socket itself did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendEnd {
    /// Everything planned was sent.
    Completed,
    /// The gateway closed (or dropped) the connection first.
    GatewayClosed,
    /// The run was stopped (the call hung up) before everything was sent.
    Stopped,
}

/// What the reader task saw.
#[derive(Debug, Default)]
pub(crate) struct ReaderOutcome {
    /// Messages by kind.
    pub(crate) messages: GatewayMessages,
    /// The gateway's first close frame.
    pub(crate) close: Option<GatewayClose>,
    /// The read error that ended the connection, if one did.
    pub(crate) error: Option<tungstenite::Error>,
    /// Outbound audio and StopAudio, timed (and recorded when asked).
    pub(crate) capture: OutboundCapture,
}

/// An open connection. The caller sends through `sink`, watching `gateway_closed` to stop early.
pub(crate) struct Connection {
    /// Messages to the gateway.
    pub(crate) sink: WsSink,
    /// Becomes `true` when the gateway sends a close frame or the connection ends.
    pub(crate) gateway_closed: watch::Receiver<bool>,
    /// For errors.
    url: String,
    /// Asks the reader to stop (dropping its half of the socket).
    stop_reader: Option<oneshot::Sender<()>>,
    /// The reader task.
    reader: JoinHandle<ReaderOutcome>,
}

impl Connection {
    /// Connects to `url` (path and query kept as given; `wss://` through `tls`), with `headers`
    /// added to the upgrade request, and starts the reader task, which fills `capture` with
    /// what the gateway plays back.
    pub(crate) async fn open(
        url: &str,
        headers: &[(String, String)],
        tls: &Connector,
        capture: OutboundCapture,
    ) -> Result<Self, EmulatorError> {
        let connect_error = |source| EmulatorError::Connect {
            url: url.to_owned(),
            source: Box::new(source),
        };
        let mut request = url.into_client_request().map_err(connect_error)?;
        for (name, value) in headers {
            let bad = || EmulatorError::BadHeader { name: name.clone() };
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            let value = HeaderValue::from_str(value).map_err(|_| bad())?;
            request.headers_mut().append(name, value);
        }
        // No Nagle: a 20 ms frame goes out when it is sent, as the platform's do.
        let (socket, _response) =
            connect_async_tls_with_config(request, None, true, Some(tls.clone()))
                .await
                .map_err(connect_error)?;
        tracing::debug!(url, "connected");
        let (sink, stream) = socket.split();
        let (closed_tx, gateway_closed) = watch::channel(false);
        let (stop_tx, stop_rx) = oneshot::channel();
        let reader = tokio::spawn(read_gateway(stream, stop_rx, closed_tx, capture));
        Ok(Connection {
            sink,
            gateway_closed,
            url: url.to_owned(),
            stop_reader: Some(stop_tx),
            reader,
        })
    }

    /// Ends the connection after a send phase and collects what the reader saw.
    ///
    /// A send phase cut short is an error only if the gateway sent no close frame: a gateway that
    /// closes properly gets a report, one that vanishes gets [`EmulatorError::ConnectionLost`] (or
    /// the send error).
    pub(crate) async fn conclude(
        mut self,
        sent: Result<SendEnd, tungstenite::Error>,
        end: EndMode,
    ) -> Result<ReaderOutcome, EmulatorError> {
        let outcome = match (&sent, end) {
            (Ok(SendEnd::Completed | SendEnd::Stopped), EndMode::Close) => {
                if !*self.gateway_closed.borrow() {
                    let frame = CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    };
                    if let Err(error) = self.sink.send(Message::Close(Some(frame))).await {
                        // The connection is already gone; the reader reports how.
                        tracing::debug!(url = self.url, %error, "close frame not sent");
                    }
                }
                self.wait_for_reader(CLOSE_WAIT).await
            }
            (Ok(SendEnd::Completed | SendEnd::Stopped), EndMode::Abrupt) => {
                self.wait_for_reader(Duration::ZERO).await
            }
            (Ok(SendEnd::GatewayClosed), _) => self.wait_for_reader(CLOSE_WAIT).await,
            (Err(_), _) => self.wait_for_reader(ERROR_WAIT).await,
        };
        // Both halves are gone now: the TCP connection is closed.
        drop(self.sink);
        if outcome.close.is_some() {
            return Ok(outcome);
        }
        match sent {
            Ok(SendEnd::Completed | SendEnd::Stopped) => Ok(outcome),
            Ok(SendEnd::GatewayClosed) => Err(EmulatorError::ConnectionLost {
                url: self.url,
                detail: outcome
                    .error
                    .map_or_else(|| "end of stream".to_owned(), |e| e.to_string()),
            }),
            Err(source) => Err(EmulatorError::Socket {
                url: self.url,
                source: Box::new(source),
            }),
        }
    }

    /// Waits up to `limit` for the reader to see the end of the connection, then stops it.
    async fn wait_for_reader(&mut self, limit: Duration) -> ReaderOutcome {
        if !limit.is_zero() {
            if let Ok(joined) = tokio::time::timeout(limit, &mut self.reader).await {
                return joined.unwrap_or_default();
            }
        }
        if let Some(stop) = self.stop_reader.take() {
            // The reader may have ended already; then there is no one to tell.
            let _ = stop.send(());
        }
        (&mut self.reader).await.unwrap_or_default()
    }
}

/// Reads until the connection ends or `stop` fires: counts outbound messages, times (and decodes
/// into `capture`) outbound audio and StopAudio, keeps the first close frame, and raises
/// `gateway_closed` when the gateway closes or the connection ends.
///
/// After a close frame it goes on reading, so that the closing handshake completes.
pub(crate) async fn read_gateway<S>(
    mut stream: S,
    mut stop: oneshot::Receiver<()>,
    gateway_closed: watch::Sender<bool>,
    capture: OutboundCapture,
) -> ReaderOutcome
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let mut outcome = ReaderOutcome {
        capture,
        ..ReaderOutcome::default()
    };
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut stop => return outcome,
            next = stream.next() => next,
        };
        let arrived = Instant::now();
        match next {
            Some(Ok(Message::Text(text))) => outcome.outbound(text.as_str(), arrived),
            Some(Ok(Message::Binary(bytes))) => match std::str::from_utf8(&bytes) {
                Ok(text) => outcome.outbound(text, arrived),
                Err(_) => outcome.messages.unparseable += 1,
            },
            Some(Ok(Message::Close(frame))) => {
                if outcome.close.is_none() {
                    outcome.close = Some(frame.map_or(
                        GatewayClose {
                            code: CloseCode::Status.into(),
                            reason: String::new(),
                        },
                        |f| GatewayClose {
                            code: f.code.into(),
                            reason: f.reason.as_str().to_owned(),
                        },
                    ));
                }
                gateway_closed.send_replace(true);
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Err(error)) => {
                outcome.error = Some(error);
                break;
            }
            None => break,
        }
    }
    gateway_closed.send_replace(true);
    outcome
}

impl ReaderOutcome {
    /// A message from the gateway that arrived at `arrived`: counted by kind, audio and StopAudio
    /// captured.
    fn outbound(&mut self, text: &str, arrived: Instant) {
        match parse_outbound(text) {
            Ok(OutboundMessage::AudioData { data_base64 }) => {
                self.messages.audio_data += 1;
                self.capture.audio(&data_base64, arrived);
            }
            Ok(OutboundMessage::StopAudio) => {
                self.messages.stop_audio += 1;
                self.capture.stop_audio(arrived);
            }
            Err(_) => self.messages.unparseable += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagate_audio::AudioFormat;
    use mediagate_protocol::{OutboundDialect, stop_audio_json, write_outbound_audio};

    #[tokio::test]
    async fn reader_counts_outbound_kinds_and_keeps_the_first_close() {
        let mut audio = String::new();
        write_outbound_audio(&[0, 0, 1, 0], OutboundDialect::Camel, &mut audio);
        let frames: Vec<Result<Message, tungstenite::Error>> = vec![
            Ok(Message::text(audio)),
            Ok(Message::binary(
                stop_audio_json(OutboundDialect::Pascal).as_bytes().to_vec(),
            )),
            Ok(Message::text("not json")),
            Ok(Message::binary(vec![0xff, 0xfe])),
            Ok(Message::Ping(Default::default())),
            Ok(Message::Close(Some(CloseFrame {
                code: CloseCode::Policy,
                reason: "too loud".into(),
            }))),
            Ok(Message::Close(None)),
        ];
        let (_stop_tx, stop_rx) = oneshot::channel();
        let (closed_tx, closed_rx) = watch::channel(false);
        let capture = OutboundCapture::new(AudioFormat::mono(16_000), true);
        let outcome = read_gateway(
            futures_util::stream::iter(frames),
            stop_rx,
            closed_tx,
            capture,
        )
        .await;
        assert_eq!(
            outcome.messages,
            GatewayMessages {
                audio_data: 1,
                stop_audio: 1,
                unparseable: 2
            }
        );
        assert_eq!(
            outcome.close,
            Some(GatewayClose {
                code: 1008,
                reason: "too loud".into()
            })
        );
        assert!(*closed_rx.borrow());
        assert_eq!(outcome.capture.samples, [0, 1]);
        assert_eq!(outcome.capture.arrivals.len(), 1);
        assert_eq!(outcome.capture.stops.len(), 1);
        assert_eq!(outcome.capture.stops[0].1, 2);
    }
}
