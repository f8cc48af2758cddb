//! The emulator's fake of ACS playing its side of whole calls, through real sockets: a tiny
//! stand-in for the gateway (an HTTP receiver for the Event Grid webhook and the callbacks, a
//! WebSocket server for the media and transcription transports) checks the subscription
//! handshake, the IncomingCall event, the signed upgrades (verified with `jsonwebtoken` against
//! the key set the fake publishes), the audio byte for byte, and the callbacks in order; the
//! application's side is `mediagate-acs`, the gateway's own client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mediagate::emulator::control::{
    CallerHangUp, ControlPlane, ControlPlaneOptions, EventSchema, ScriptedCall,
};
use mediagate::emulator::{EmulatorError, Pacing};
use mediagate_acs::models::*;
use mediagate_acs::{CallAutomationClient, ClientOptions, ConnectionString};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

const KEY: &[u8] = b"the resource's access key, 32+ bytes";
const CALLER: &str = "4:+14255550100";
const CALLEE: &str = "4:+14255550199";
const WAIT: Duration = Duration::from_secs(15);

/// An HTTP request the stand-in received.
#[derive(Debug)]
struct HttpRequest {
    method: String,
    /// Path and query.
    target: String,
    /// Lowercased names.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl HttpRequest {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// How the stand-in answers the Event Grid handshakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handshake {
    Correct,
    Wrong,
}

/// What happened on a WebSocket.
#[derive(Debug)]
enum Socket {
    Opened {
        target: String,
        authorization: Option<String>,
    },
    Closed {
        target: String,
        messages: Vec<String>,
        close_code: Option<u16>,
    },
}

/// The gateway's stand-in.
struct Gateway {
    http: SocketAddr,
    ws: SocketAddr,
    requests: mpsc::Receiver<HttpRequest>,
    sockets: mpsc::Receiver<Socket>,
}

impl Gateway {
    async fn start(handshake: Handshake) -> Gateway {
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (http_addr, ws_addr) = (http.local_addr().unwrap(), ws.local_addr().unwrap());
        let (request_tx, requests) = mpsc::channel(256);
        let (socket_tx, sockets) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok((stream, _)) = http.accept().await {
                tokio::spawn(serve_http(stream, handshake, request_tx.clone()));
            }
        });
        tokio::spawn(async move {
            while let Ok((stream, _)) = ws.accept().await {
                tokio::spawn(serve_ws(stream, socket_tx.clone()));
            }
        });
        Gateway {
            http: http_addr,
            ws: ws_addr,
            requests,
            sockets,
        }
    }

    fn webhook(&self) -> String {
        format!("http://{}/acs/events?secret=s3cr3t-in-the-query", self.http)
    }

    async fn next_request(&mut self) -> HttpRequest {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("no request in time")
            .unwrap()
    }

    async fn next_socket(&mut self) -> Socket {
        tokio::time::timeout(WAIT, self.sockets.recv())
            .await
            .expect("no socket event in time")
            .unwrap()
    }

    /// The next callbacks until one of type `last` (short names), in order.
    async fn callbacks_until(&mut self, last: &str) -> Vec<HttpRequest> {
        let mut callbacks = Vec::new();
        loop {
            let request = self.next_request().await;
            let done = kind(&request) == last;
            callbacks.push(request);
            if done {
                return callbacks;
            }
        }
    }

    /// [`Self::callbacks_until`], by kind.
    async fn kinds_until(&mut self, last: &str) -> Vec<String> {
        self.callbacks_until(last).await.iter().map(kind).collect()
    }
}

/// Media streaming of mixed audio over a WebSocket to `transport_url`, the rest the service's
/// defaults: what a test's answer changes, it sets over this.
fn websocket_audio(transport_url: String) -> MediaStreamingOptions {
    MediaStreamingOptions {
        transport_url,
        transport_type: StreamingTransportType::Websocket,
        content_type: MediaStreamingContentType::Audio,
        audio_channel_type: AudioChannelType::Mixed,
        start_media_streaming: None,
        enable_bidirectional: None,
        audio_format: None,
    }
}

/// A callback's event type, without `Microsoft.Communication.`.
fn kind(request: &HttpRequest) -> String {
    let body = request.json();
    body[0]["type"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("Microsoft.Communication.")
        .to_owned()
}

async fn serve_http(mut stream: TcpStream, handshake: Handshake, tx: mpsc::Sender<HttpRequest>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let (mut extra, mut body) = (String::new(), String::new());
    if request.method == "OPTIONS" && handshake == Handshake::Correct {
        extra = "WebHook-Allowed-Origin: eventgrid.azure.net\r\n".to_owned();
    }
    if request.header("aeg-event-type") == "SubscriptionValidation" {
        let code = request.json()[0]["data"]["validationCode"].clone();
        let echoed = if handshake == Handshake::Correct {
            code
        } else {
            json!("not-the-code")
        };
        body = json!({ "validationResponse": echoed }).to_string();
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    // Recorded before it is answered: the next request cannot be recorded first.
    let _ = tx.send(request).await;
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Option<HttpRequest> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, target) = (
        request_line.next()?.to_owned(),
        request_line.next()?.to_owned(),
    );
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(HttpRequest {
        method,
        target,
        headers,
        body,
    })
}

#[allow(
    clippy::result_large_err,
    reason = "tungstenite's handshake callback returns its own (large) error response"
)]
async fn serve_ws(stream: TcpStream, tx: mpsc::Sender<Socket>) {
    let mut seen = None;
    let callback = |request: &Request, response: Response| {
        let authorization = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        seen = Some((request.uri().to_string(), authorization));
        Ok(response)
    };
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (target, authorization) = seen.unwrap();
    let _ = tx
        .send(Socket::Opened {
            target: target.clone(),
            authorization,
        })
        .await;
    let (mut messages, mut close_code) = (Vec::new(), None);
    while let Some(Ok(message)) = socket.next().await {
        match message {
            Message::Text(text) => messages.push(text.as_str().to_owned()),
            Message::Close(frame) => close_code = frame.map(|f| u16::from(f.code)),
            _ => {}
        }
    }
    let _ = tx
        .send(Socket::Closed {
            target,
            messages,
            close_code,
        })
        .await;
}

/// A sine of `hz` at 16 kHz, `frames` 20 ms frames long.
fn tone(hz: f32, frames: usize) -> Vec<i16> {
    (0..frames * 320)
        .map(|i| ((i as f32 * hz * std::f32::consts::TAU / 16_000.0).sin() * 9_000.0) as i16 + 1)
        .collect()
}

fn write_wav(dir: &Path, name: &str, samples: &[i16]) -> PathBuf {
    let path = dir.join(name);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    for &s in samples {
        writer.write_sample(s).unwrap();
    }
    writer.finalize().unwrap();
    path
}

async fn fake(webhook: String, schema: EventSchema) -> ControlPlane {
    ControlPlane::start(ControlPlaneOptions {
        webhook: Some(webhook),
        event_schema: schema,
        ..ControlPlaneOptions::local(KEY)
    })
    .await
    .unwrap()
}

fn client(fake: &ControlPlane) -> CallAutomationClient {
    let cs: ConnectionString = fake.connection_string().parse().unwrap();
    CallAutomationClient::new(ClientOptions::from_connection_string(&cs)).unwrap()
}

/// A plain GET of the fake's published documents (they need no authentication).
async fn get(url: &str) -> Value {
    let url = url::Url::parse(url).unwrap();
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut stream = TcpStream::connect(&host).await.unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        url.path()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

/// Checks a token the way the gateway does (crates/server/src/auth/jwt.rs): RS256 with a key
/// of the JWKS the OpenID configuration names, the issuer it names, the resource's audience.
struct TokenChecker {
    keys: HashMap<String, DecodingKey>,
    issuer: String,
    audience: String,
}

impl TokenChecker {
    async fn of(fake: &ControlPlane) -> TokenChecker {
        let openid = get(&fake.openid_configuration_url()).await;
        assert_eq!(
            openid,
            get(&format!(
                "{}.well-known/acsopenidconfiguration",
                fake.endpoint()
            ))
            .await
        );
        let jwks = get(openid["jwks_uri"].as_str().unwrap()).await;
        let mut keys = HashMap::new();
        for key in jwks["keys"].as_array().unwrap() {
            assert_eq!(
                (
                    key["kty"].as_str(),
                    key["alg"].as_str(),
                    key["use"].as_str()
                ),
                (Some("RSA"), Some("RS256"), Some("sig"))
            );
            let decoding = DecodingKey::from_rsa_components(
                key["n"].as_str().unwrap(),
                key["e"].as_str().unwrap(),
            )
            .unwrap();
            keys.insert(key["kid"].as_str().unwrap().to_owned(), decoding);
        }
        TokenChecker {
            keys,
            issuer: openid["issuer"].as_str().unwrap().to_owned(),
            audience: fake.resource_id().to_owned(),
        }
    }

    /// The claims of `Bearer <token>`, verified.
    fn check(&self, authorization: &str) -> Value {
        let token = authorization
            .strip_prefix("Bearer ")
            .expect("a bearer token");
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        let key = &self.keys[header.kid.as_deref().unwrap()];
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[&self.issuer]);
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "aud", "iss", "nbf", "iat"]);
        let claims = jsonwebtoken::decode::<Value>(token, key, &validation)
            .unwrap()
            .claims;
        let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert_eq!(lifetime, 300);
        claims
    }
}

#[tokio::test]
async fn the_subscription_handshake_and_the_incoming_call_have_event_grids_shapes() {
    // Event Grid schema.
    let mut gateway = Gateway::start(Handshake::Correct).await;
    let fake = fake(gateway.webhook(), EventSchema::EventGrid).await;
    let code = fake.validate_subscription().await.unwrap();
    let handshake = gateway.next_request().await;
    assert_eq!(handshake.target, "/acs/events?secret=s3cr3t-in-the-query");
    assert_eq!(handshake.header("aeg-event-type"), "SubscriptionValidation");
    let event = &handshake.json()[0];
    assert_eq!(
        event["eventType"],
        "Microsoft.EventGrid.SubscriptionValidationEvent"
    );
    assert_eq!(event["data"]["validationCode"], code.as_str());
    assert!(event["data"]["validationUrl"].is_string());

    let call = ScriptedCall::new(CALLER, "8:acs:the-app").with_caller_display_name("Alice");
    let incoming = fake.place_call(call).await.unwrap();
    let delivery = gateway.next_request().await;
    assert_eq!(delivery.method, "POST");
    assert_eq!(delivery.target, "/acs/events?secret=s3cr3t-in-the-query");
    assert_eq!(delivery.header("aeg-event-type"), "Notification");
    let events = delivery.json();
    assert_eq!(events.as_array().unwrap().len(), 1);
    let event = &events[0];
    for field in [
        "id",
        "topic",
        "subject",
        "eventTime",
        "dataVersion",
        "metadataVersion",
    ] {
        assert!(event[field].is_string(), "{field}: {event}");
    }
    assert_eq!(event["eventType"], "Microsoft.Communication.IncomingCall");
    let data = &event["data"];
    assert_eq!(
        data["from"],
        json!({"kind": "phoneNumber", "rawId": CALLER, "phoneNumber": {"value": "+14255550100"}})
    );
    assert_eq!(data["to"]["communicationUser"]["id"], "8:acs:the-app");
    assert_eq!(data["incomingCallContext"], incoming.context.as_str());
    assert_eq!(data["serverCallId"], incoming.server_call_id.as_str());
    assert_eq!(data["correlationId"], incoming.correlation_id.as_str());
    assert_eq!(data["callerDisplayName"], "Alice");

    // CloudEvents schema.
    let fake = self::fake(gateway.webhook(), EventSchema::CloudEvents).await;
    assert_eq!(
        fake.validate_subscription().await.unwrap(),
        "eventgrid.azure.net"
    );
    let options = gateway.next_request().await;
    assert_eq!(options.method, "OPTIONS");
    assert_eq!(
        options.header("webhook-request-origin"),
        "eventgrid.azure.net"
    );
    fake.place_call(ScriptedCall::new(CALLER, CALLEE))
        .await
        .unwrap();
    let delivery = gateway.next_request().await;
    assert!(
        delivery
            .header("content-type")
            .starts_with("application/cloudevents-batch+json")
    );
    let event = &delivery.json()[0];
    assert_eq!(
        (event["specversion"].as_str(), event["type"].as_str()),
        (Some("1.0"), Some("Microsoft.Communication.IncomingCall"))
    );
    assert!(event["source"].is_string() && event["time"].is_string() && event["id"].is_string());

    // A webhook that gets the handshake wrong is named, and so is what it did wrong.
    let mut wrong = Gateway::start(Handshake::Wrong).await;
    for (schema, fault) in [
        (EventSchema::EventGrid, "not the code"),
        (EventSchema::CloudEvents, "WebHook-Allowed-Origin"),
    ] {
        let fake = self::fake(wrong.webhook(), schema).await;
        let error = fake.validate_subscription().await.unwrap_err();
        assert!(
            matches!(error, EmulatorError::SubscriptionNotValidated { .. }),
            "{error}"
        );
        assert!(error.to_string().contains(fault), "{error}");
        assert!(
            !error.to_string().contains("s3cr3t"),
            "the query stays out of errors: {error}"
        );
        wrong.next_request().await;
    }
    // No webhook at all, or nobody there.
    let unreachable = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let fake = self::fake(
        format!("http://{unreachable}/events"),
        EventSchema::EventGrid,
    )
    .await;
    let error = fake
        .place_call(ScriptedCall::new(CALLER, CALLEE))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("2 attempts"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_call_streams_each_wav_signed_and_calls_back_in_order_to_the_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (tone(440.0, 25), tone(660.0, 15));
    let transcript = dir.path().join("script.json");
    std::fs::write(
        &transcript,
        json!({"locale": "en-GB", "callConnectionId": "from-the-script", "results": [
            {"at": 0.0, "text": "hello", "status": "Final", "offset": 0.0, "duration": 0.4}
        ]})
        .to_string(),
    )
    .unwrap();
    let mut gateway = Gateway::start(Handshake::Correct).await;
    let fake = fake(gateway.webhook(), EventSchema::EventGrid).await;
    let checker = TokenChecker::of(&fake).await;
    let script = ScriptedCall::new(CALLER, CALLEE)
        .with_wav(write_wav(dir.path(), "alice.wav", &alice))
        .with_wav(write_wav(dir.path(), "bob.wav", &bob))
        .with_dtmf("5@2s".parse().unwrap())
        .with_dtmf("9@2.2s".parse().unwrap())
        .with_transcript(&transcript)
        .with_pacing(Pacing::Fast)
        .with_hang_up(CallerHangUp::Never);
    let incoming = fake.place_call(script).await.unwrap();
    gateway.next_request().await;

    let client = client(&fake);
    let callback = format!("http://{}/acs/callbacks/c1?k=1", gateway.http);
    let call = client
        .answer_call(&AnswerCallRequest {
            incoming_call_context: incoming.context.clone(),
            callback_uri: callback.clone(),
            operation_context: Some("answer".to_owned()),
            media_streaming_options: Some(MediaStreamingOptions {
                audio_channel_type: AudioChannelType::Unmixed,
                start_media_streaming: Some(true),
                enable_bidirectional: Some(true),
                audio_format: Some(AudioFormat::Pcm16KMono),
                ..websocket_audio(format!("ws://{}/ws/media?token=t1", gateway.ws))
            }),
            transcription_options: Some(TranscriptionOptions {
                transport_url: format!("ws://{}/ws/transcripts?token=t2", gateway.ws),
                transport_type: StreamingTransportType::Websocket,
                locale: "en-US".to_owned(),
                speech_recognition_model_endpoint_id: None,
                start_transcription: Some(true),
                enable_intermediate_results: Some(false),
            }),
            ..AnswerCallRequest::default()
        })
        .await
        .unwrap();
    let id = call.call_connection_id.clone();
    // Both presses are ahead: the recognition collects them.
    client
        .recognize(
            &id,
            &RecognizeRequest {
                recognize_input_type: RecognizeInputType::Dtmf,
                play_prompt: None,
                play_prompts: vec![],
                interrupt_call_media_operation: None,
                recognize_options: RecognizeOptions {
                    target_participant: CommunicationIdentifier::phone("+14255550100"),
                    initial_silence_timeout_in_seconds: Some(10),
                    dtmf_options: Some(DtmfOptions {
                        max_tones_to_collect: Some(2),
                        ..DtmfOptions::default()
                    }),
                    ..RecognizeOptions::default()
                },
                operation_context: Some("menu".to_owned()),
                operation_callback_uri: None,
            },
        )
        .await
        .unwrap();

    // Both transports open with a signed upgrade, at their own URL, as given.
    let mut opened = HashMap::new();
    for _ in 0..2 {
        let Socket::Opened {
            target,
            authorization,
        } = gateway.next_socket().await
        else {
            panic!("a socket closed before both opened");
        };
        let claims = checker.check(&authorization.expect("an Authorization header"));
        assert_eq!(claims["aud"], fake.resource_id());
        opened.insert(target, ());
    }
    assert!(
        opened.contains_key("/ws/media?token=t1")
            && opened.contains_key("/ws/transcripts?token=t2"),
        "{opened:?}"
    );

    let before_transfer = gateway.callbacks_until("RecognizeCompleted").await;
    let kinds: Vec<String> = before_transfer.iter().map(kind).collect();
    assert_eq!(kinds[..2], ["CallConnected", "ParticipantsUpdated"]);
    let mut started = kinds[2..4].to_vec();
    started.sort();
    assert_eq!(started, ["MediaStreamingStarted", "TranscriptionStarted"]);
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    let recognized = before_transfer[4].json();
    assert_eq!(
        recognized[0]["data"]["dtmfResult"]["tones"],
        json!(["five", "nine"])
    );
    assert_eq!(recognized[0]["data"]["recognitionType"], "dtmf");
    assert_eq!(recognized[0]["data"]["operationContext"], "menu");
    assert_eq!(recognized[0]["data"]["resultInformation"]["subCode"], 8531);
    let connected = before_transfer[0].json();
    assert_eq!(connected[0]["data"]["operationContext"], "answer");
    assert_eq!(
        connected[0]["data"]["serverCallId"],
        incoming.server_call_id.as_str()
    );

    let target = CommunicationIdentifier::phone("+14255550123");
    client
        .transfer(
            &id,
            &TransferToParticipantRequest {
                target_participant: target.clone(),
                operation_context: Some("to sales".to_owned()),
                ..TransferToParticipantRequest::default()
            },
        )
        .await
        .unwrap();
    let after = gateway.callbacks_until("CallDisconnected").await;
    let kinds: Vec<String> = after.iter().map(kind).collect();
    assert_eq!(kinds[0], "CallTransferAccepted");
    let mut stopped = kinds[1..3].to_vec();
    stopped.sort();
    assert_eq!(stopped, ["MediaStreamingStopped", "TranscriptionStopped"]);
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    let accepted = after[0].json();
    assert_eq!(
        accepted[0]["data"]["transferTarget"],
        serde_json::to_value(&target).unwrap()
    );
    assert_eq!(accepted[0]["data"]["transferee"]["rawId"], CALLER);
    assert_eq!(accepted[0]["data"]["operationContext"], "to sales");

    // Every callback: to the call's URI as given, JSON, signed, a CloudEvent of this call.
    for request in before_transfer.iter().chain(&after) {
        assert_eq!(request.method, "POST");
        assert_eq!(request.target, "/acs/callbacks/c1?k=1");
        assert_eq!(request.header("content-type"), "application/json");
        checker.check(request.header("authorization"));
        let event = &request.json()[0];
        assert_eq!(event["source"], format!("calling/callConnections/{id}"));
        assert_eq!(
            (
                event["specversion"].as_str(),
                event["datacontenttype"].as_str()
            ),
            (Some("1.0"), Some("application/json"))
        );
        assert_eq!(event["data"]["callConnectionId"], id.as_str());
        assert_eq!(
            event["data"]["correlationId"],
            incoming.correlation_id.as_str()
        );
        assert!(event["data"]["resultInformation"]["code"].is_u64());
    }

    // The transfer closed both sockets with a normal close; the media carried each WAV.
    let mut closed = HashMap::new();
    for _ in 0..2 {
        let Socket::Closed {
            target,
            messages,
            close_code,
        } = gateway.next_socket().await
        else {
            panic!("opened again");
        };
        assert_eq!(close_code, Some(1000), "{target}");
        closed.insert(target, messages);
    }
    let media = &closed["/ws/media?token=t1"];
    let metadata: Value = serde_json::from_str(&media[0]).unwrap();
    assert_eq!(metadata["audioMetadata"]["sampleRate"], 16_000);
    let mut per_participant: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tones = Vec::new();
    for message in &media[1..] {
        let message: Value = serde_json::from_str(message).unwrap();
        match message["kind"].as_str().unwrap() {
            "AudioData" => {
                let data = &message["audioData"];
                let pcm = STANDARD.decode(data["data"].as_str().unwrap()).unwrap();
                let who = data["participantRawID"].as_str().unwrap().to_owned();
                per_participant.entry(who).or_default().extend(pcm);
            }
            "DtmfData" => tones.push(message["dtmfData"]["data"].as_str().unwrap().to_owned()),
            other => panic!("{other}"),
        }
    }
    let bytes =
        |samples: &[i16]| -> Vec<u8> { samples.iter().flat_map(|s| s.to_le_bytes()).collect() };
    assert_eq!(
        per_participant[CALLER],
        bytes(&alice),
        "the caller's WAV, byte for byte"
    );
    assert_eq!(per_participant["8:acs:emulated-participant-2"], bytes(&bob));
    assert_eq!(tones, ["5", "9"]);
    let transcripts = &closed["/ws/transcripts?token=t2"];
    let metadata: Value = serde_json::from_str(&transcripts[0]).unwrap();
    let metadata = &metadata["transcriptionMetadata"];
    assert_eq!(
        metadata["callConnectionId"],
        id.as_str(),
        "the call's, not the script's"
    );
    assert_eq!(metadata["locale"], "en-US", "the answer's locale");
    assert_eq!(transcripts.len(), 2);

    // The fake recorded every callback's answer, and the streams' reports.
    let ended = fake.wait_for_end(&id, WAIT).await.expect("the call ends");
    assert_eq!(ended.state, "disconnected");
    assert_eq!(ended.callbacks.len(), 9);
    assert!(
        ended
            .callbacks
            .iter()
            .all(|c| c.status == Some(200) && c.attempts == 1)
    );
    let report = fake.call_report(&id).unwrap();
    assert_eq!(report.frames_sent, 40);
    assert_eq!(report.dtmf_sent, 2);
    assert!(matches!(&ended.streams.transcription, Some(Ok(r)) if r.transcripts_sent == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_up_closes_the_socket_and_a_caller_hangs_up_when_the_audio_ends() {
    let dir = tempfile::tempdir().unwrap();
    let wav = write_wav(dir.path(), "caller.wav", &tone(500.0, 10));
    let mut gateway = Gateway::start(Handshake::Correct).await;
    let fake = fake(gateway.webhook(), EventSchema::EventGrid).await;
    let checker = TokenChecker::of(&fake).await;
    let client = client(&fake);
    let callback = format!("http://{}/acs/callbacks/c2", gateway.http);
    let answer = |context: String, url: String, format| AnswerCallRequest {
        incoming_call_context: context,
        callback_uri: callback.clone(),
        media_streaming_options: Some(MediaStreamingOptions {
            audio_format: Some(format),
            ..websocket_audio(url)
        }),
        ..AnswerCallRequest::default()
    };

    // The application hangs up: the socket, held open after the audio, closes.
    let script = ScriptedCall::new(CALLER, CALLEE)
        .with_wav(&wav)
        .with_pacing(Pacing::Fast)
        .with_hang_up(CallerHangUp::Never);
    let incoming = fake.place_call(script.clone()).await.unwrap();
    gateway.next_request().await;
    let url = format!("ws://{}/ws/hold", gateway.ws);
    let call = client
        .answer_call(&answer(incoming.context, url, AudioFormat::Pcm24KMono))
        .await
        .unwrap();
    let Socket::Opened { .. } = gateway.next_socket().await else {
        panic!()
    };
    let started = gateway.callbacks_until("MediaStreamingStarted").await;
    assert_eq!(started.len(), 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        gateway.sockets.try_recv().is_err(),
        "the socket stays open until the hang-up"
    );
    client.hang_up(&call.call_connection_id).await.unwrap();
    let Socket::Closed {
        messages,
        close_code,
        ..
    } = gateway.next_socket().await
    else {
        panic!()
    };
    assert_eq!(close_code, Some(1000));
    let metadata: Value = serde_json::from_str(&messages[0]).unwrap();
    assert_eq!(
        metadata["audioMetadata"]["sampleRate"], 24_000,
        "resampled to the answer's format"
    );
    assert_eq!(
        messages.len(),
        1 + 10,
        "200 ms at 24 kHz is still 10 frames"
    );
    let ended = gateway.callbacks_until("CallDisconnected").await;
    assert_eq!(
        ended.iter().map(kind).collect::<Vec<_>>(),
        ["MediaStreamingStopped", "CallDisconnected"]
    );
    checker.check(ended[1].header("authorization"));

    // The caller hangs up when the audio ends; a transport nobody listens on fails first.
    let script = script.with_hang_up(CallerHangUp::AfterAudio);
    let incoming = fake.place_call(script.clone()).await.unwrap();
    gateway.next_request().await;
    let url = format!("ws://{}/ws/talk", gateway.ws);
    let call = client
        .answer_call(&answer(incoming.context, url, AudioFormat::Pcm16KMono))
        .await
        .unwrap();
    let kinds = gateway.kinds_until("CallDisconnected").await;
    assert_eq!(
        kinds,
        [
            "CallConnected",
            "ParticipantsUpdated",
            "MediaStreamingStarted",
            "MediaStreamingStopped",
            "CallDisconnected"
        ]
    );
    assert!(matches!(gateway.next_socket().await, Socket::Opened { .. }));
    assert!(matches!(
        gateway.next_socket().await,
        Socket::Closed {
            close_code: Some(1000),
            ..
        }
    ));
    let ended = fake
        .wait_for_end(&call.call_connection_id, WAIT)
        .await
        .unwrap();
    assert_eq!(ended.state, "disconnected");
    let after = client.hang_up(&call.call_connection_id).await;
    assert_eq!(
        after.unwrap_err().status(),
        Some(400),
        "a call the caller hung up takes no more methods"
    );

    let unreachable = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let incoming = fake.place_call(script).await.unwrap();
    gateway.next_request().await;
    client
        .answer_call(&answer(
            incoming.context,
            format!("ws://{unreachable}/ws"),
            AudioFormat::Pcm16KMono,
        ))
        .await
        .unwrap();
    let callbacks = gateway.callbacks_until("CallDisconnected").await;
    let kinds: Vec<String> = callbacks.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [
            "CallConnected",
            "ParticipantsUpdated",
            "MediaStreamingFailed",
            "CallDisconnected"
        ]
    );
    let failed = &callbacks[2].json()[0]["data"];
    assert_eq!(
        failed["mediaStreamingUpdate"]["mediaStreamingStatusDetails"],
        "streamConnectionUnsuccessful"
    );
    assert!(
        failed["resultInformation"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{failed}"
    );
}

/// The gateway's own validator (`[auth] mode = "acs"`, keys from the fake's OpenID
/// configuration) takes the fake's upgrades, and refuses those of a fake signing for another
/// resource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_validator_accepts_the_fakes_signed_upgrades() {
    use mediagate::server::{AuthConfig, AuthMode};
    let dir = tempfile::tempdir().unwrap();
    let wav = write_wav(dir.path(), "caller.wav", &tone(500.0, 25));
    let mut webhook = Gateway::start(Handshake::Correct).await;
    let fake = fake(webhook.webhook(), EventSchema::EventGrid).await;
    let auth = AuthConfig {
        mode: AuthMode::Acs,
        audience: Some(fake.resource_id().to_owned()),
        openid_config_url: fake.openid_configuration_url(),
        ..AuthConfig::default()
    };
    let gateway = crate::common::TestGateway::start_with(move |c| c.auth = auth).await;
    let other = ControlPlane::start(ControlPlaneOptions {
        webhook: Some(webhook.webhook()),
        resource_id: "00000000-0000-0000-0000-0000000000ff".to_owned(),
        ..ControlPlaneOptions::local(KEY)
    })
    .await
    .unwrap();
    for (fake, call_id, accepted) in [(&fake, "signed", true), (&other, "foreign", false)] {
        let script = ScriptedCall::new(CALLER, CALLEE)
            .with_wav(&wav)
            .with_pacing(Pacing::Fast);
        let incoming = fake.place_call(script).await.unwrap();
        webhook.next_request().await;
        let call = client(fake)
            .answer_call(&AnswerCallRequest {
                incoming_call_context: incoming.context,
                callback_uri: format!("http://{}/acs/callbacks/{call_id}", webhook.http),
                media_streaming_options: Some(MediaStreamingOptions {
                    start_media_streaming: Some(true),
                    ..websocket_audio(gateway.url(&format!("/ws?callId={call_id}")))
                }),
                ..AnswerCallRequest::default()
            })
            .await
            .unwrap();
        let kinds = webhook.kinds_until("CallDisconnected").await;
        let ended = fake
            .wait_for_end(&call.call_connection_id, WAIT)
            .await
            .unwrap();
        if accepted {
            assert_eq!(
                kinds[2..],
                [
                    "MediaStreamingStarted",
                    "MediaStreamingStopped",
                    "CallDisconnected"
                ]
            );
            let report = fake.call_report(&call.call_connection_id).unwrap();
            assert_eq!(report.frames_sent, 25);
            assert!(
                gateway.call_dir(call_id).is_dir(),
                "the gateway recorded the call"
            );
        } else {
            assert_eq!(kinds[2..], ["MediaStreamingFailed", "CallDisconnected"]);
            let Some(Err(why)) = ended.streams.media else {
                panic!("{:?}", ended.streams)
            };
            assert!(why.contains("401"), "{why}");
            assert!(!gateway.call_dir(call_id).exists());
        }
    }
}

/// `mediagate emulate --control-plane`: the connection string on stdout, the handshake, a call
/// placed, answered and played to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_fake_places_a_call_the_application_can_answer() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let wav = write_wav(dir.path(), "caller.wav", &tone(500.0, 5));
    let mut gateway = Gateway::start(Handshake::Correct).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mediagate"))
        .args([
            "emulate",
            "--control-plane",
            "--listen",
            "127.0.0.1:0",
            "--fast",
        ])
        .args([
            "--webhook",
            &gateway.webhook(),
            "--from",
            "8:acs:the-caller",
        ])
        .arg("--wav")
        .arg(&wav)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let cs: ConnectionString = line.parse().unwrap();
    assert!(line.starts_with("endpoint=http://127.0.0.1:"), "{line}");
    let handshake = gateway.next_request().await;
    assert_eq!(handshake.header("aeg-event-type"), "SubscriptionValidation");
    let incoming = gateway.next_request().await.json();
    let data = &incoming[0]["data"];
    assert_eq!(data["from"]["communicationUser"]["id"], "8:acs:the-caller");
    let client = CallAutomationClient::new(ClientOptions::from_connection_string(&cs)).unwrap();
    client
        .answer_call(&AnswerCallRequest {
            incoming_call_context: data["incomingCallContext"].as_str().unwrap().to_owned(),
            callback_uri: format!("http://{}/acs/callbacks/cli", gateway.http),
            media_streaming_options: Some(MediaStreamingOptions {
                start_media_streaming: Some(true),
                ..websocket_audio(format!("ws://{}/ws/cli", gateway.ws))
            }),
            ..AnswerCallRequest::default()
        })
        .await
        .unwrap();
    let kinds = gateway.kinds_until("CallDisconnected").await;
    assert_eq!(
        kinds[2..],
        [
            "MediaStreamingStarted",
            "MediaStreamingStopped",
            "CallDisconnected"
        ]
    );
    let Socket::Opened { authorization, .. } = gateway.next_socket().await else {
        panic!()
    };
    assert!(authorization.unwrap().starts_with("Bearer "));
    let Socket::Closed { messages, .. } = gateway.next_socket().await else {
        panic!()
    };
    assert_eq!(messages.len(), 1 + 5);
    child.kill().await.unwrap();
}

/// Every callback the fake posts deserializes into the model of its name in Microsoft's Python
/// SDK (`azure-communication-callautomation`), and serializes back to the very same JSON: no
/// field the SDK does not know, none of a wrong type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_callback_is_one_of_microsofts_sdk_event_models_field_for_field() {
    let venv = tokio::task::spawn_blocking(|| {
        crate::common::venv::with_package("acs-venv", "azure-communication-callautomation==1.6.0")
    })
    .await
    .unwrap();
    let mut gateway = Gateway::start(Handshake::Correct).await;
    let fake = fake(gateway.webhook(), EventSchema::EventGrid).await;
    let script = ScriptedCall::new(CALLER, CALLEE)
        .with_dtmf("5@1.5s".parse().unwrap())
        .with_hang_up(CallerHangUp::Never);
    let incoming = fake.place_call(script).await.unwrap();
    gateway.next_request().await;
    let client = client(&fake);
    let call = client
        .answer_call(&AnswerCallRequest {
            incoming_call_context: incoming.context,
            callback_uri: format!("http://{}/acs/callbacks/sdk", gateway.http),
            operation_context: Some("answer".to_owned()),
            media_streaming_options: Some(MediaStreamingOptions {
                start_media_streaming: Some(false),
                ..websocket_audio(format!("ws://{}/ws/sdk", gateway.ws))
            }),
            ..AnswerCallRequest::default()
        })
        .await
        .unwrap();
    let id = call.call_connection_id;
    let caller = CommunicationIdentifier::phone("+14255550100");
    let dtmf = ContinuousDtmfRecognitionRequest {
        target_participant: caller.clone(),
        operation_context: Some("keys".to_owned()),
        ..ContinuousDtmfRecognitionRequest::default()
    };
    client.start_continuous_dtmf(&id, &dtmf).await.unwrap();
    let recognize = |timeout| RecognizeRequest {
        recognize_input_type: RecognizeInputType::Dtmf,
        play_prompt: Some(PlaySource::text("Press a key", None)),
        play_prompts: vec![],
        interrupt_call_media_operation: None,
        recognize_options: RecognizeOptions {
            target_participant: caller.clone(),
            initial_silence_timeout_in_seconds: Some(timeout),
            ..RecognizeOptions::default()
        },
        operation_context: Some("menu".to_owned()),
        operation_callback_uri: None,
    };
    client.recognize(&id, &recognize(5)).await.unwrap();
    gateway.callbacks_until("RecognizeCompleted").await;
    // Nothing pressed after the prompt: a failure.
    client.recognize(&id, &recognize(0)).await.unwrap();
    gateway.callbacks_until("RecognizeFailed").await;
    client
        .play(
            &id,
            &PlayRequest {
                play_sources: vec![PlaySource::file("https://gateway.example/hold.wav")],
                operation_context: Some("hold music".to_owned()),
                ..PlayRequest::default()
            },
        )
        .await
        .unwrap();
    client.cancel_all_media_operations(&id).await.unwrap();
    client.stop_continuous_dtmf(&id, &dtmf).await.unwrap();
    client
        .send_dtmf_tones(
            &id,
            &SendDtmfTonesRequest {
                tones: vec![DtmfTone::One],
                target_participant: caller.clone(),
                operation_context: None,
                operation_callback_uri: None,
            },
        )
        .await
        .unwrap();
    gateway.callbacks_until("SendDtmfTonesCompleted").await;
    let agent = CommunicationIdentifier::user("8:acs:agent");
    client
        .add_participant(
            &id,
            &AddParticipantRequest {
                participant_to_add: agent.clone(),
                ..AddParticipantRequest::default()
            },
        )
        .await
        .unwrap();
    client
        .remove_participant(
            &id,
            &RemoveParticipantRequest {
                participant_to_remove: agent,
                ..RemoveParticipantRequest::default()
            },
        )
        .await
        .unwrap();
    client
        .start_media_streaming(&id, &MediaStreamingRequest::default())
        .await
        .unwrap();
    gateway.callbacks_until("MediaStreamingFailed").await;
    client
        .start_recording(&StartCallRecordingRequest {
            call_connection_id: Some(id.clone()),
            ..StartCallRecordingRequest::default()
        })
        .await
        .unwrap();
    gateway.callbacks_until("RecordingStateChanged").await;
    client.hang_up(&id).await.unwrap();
    gateway.callbacks_until("CallDisconnected").await;

    let ended = fake.wait_for_end(&id, WAIT).await.unwrap();
    let events: Vec<Value> = ended.callbacks.iter().map(|c| c.event.clone()).collect();
    let mut kinds: Vec<&str> = events
        .iter()
        .map(|e| {
            e["type"]
                .as_str()
                .unwrap()
                .trim_start_matches("Microsoft.Communication.")
        })
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "AddParticipantSucceeded",
            "CallConnected",
            "CallDisconnected",
            "ContinuousDtmfRecognitionStopped",
            "ContinuousDtmfRecognitionToneReceived",
            "MediaStreamingFailed",
            "ParticipantsUpdated",
            "PlayCanceled",
            "PlayStarted",
            "RecognizeCompleted",
            "RecognizeFailed",
            "RecordingStateChanged",
            "RemoveParticipantSucceeded",
            "SendDtmfTonesCompleted",
        ]
    );
    let mut python = tokio::process::Command::new(venv.join("bin/python"))
        .args(["-c", SDK_MODELS_CHECK])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = python.stdin.take().unwrap();
    stdin
        .write_all(Value::Array(events).to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), python.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "events the SDK's models do not match:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

const SDK_MODELS_CHECK: &str = r#"
import json, sys
from azure.communication.callautomation._generated import models
faults = []
for event in json.load(sys.stdin):
    kind = event["type"].removeprefix("Microsoft.Communication.")
    model = getattr(models, kind, None)
    if model is None:
        faults.append(f"{kind}: the SDK has no such event")
        continue
    data = event["data"]
    back = model.deserialize(data).serialize(keep_readonly=True)
    if back != data:
        faults.append(f"{kind}:\n  sent {json.dumps(data, sort_keys=True)}\n  read {json.dumps(back, sort_keys=True)}")
print("\n".join(faults))
sys.exit(1 if faults else 0)
"#;
