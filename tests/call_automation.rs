//! The gateway as the Call Automation application (`[acs]`): Event Grid's webhook, the answer
//! policy and callbacks, against the emulator's fake of ACS, through real sockets and HTTP.

use std::path::Path;
use std::time::{Duration, Instant};

use mediagate::emulator::control::{ControlPlane, ControlPlaneOptions, RecordedRequest};
use mediagate::server::{AnswerRule, RuleAction};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::TestGateway;

const KEY: &[u8] = b"the resource's access key, 32+ bytes";
/// The Event Grid webhook's secret.
pub(crate) const SECRET: &str = "event-grid-secret-0123456789";

/// A free loopback port (bound, then let go) for a gateway whose public URL must be known
/// before it binds.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A gateway running `rules` against `fake`, its secrets in files under its data dir.
pub(crate) async fn acs_gateway(
    fake: &ControlPlane,
    rules: Vec<AnswerRule>,
    adjust: impl FnOnce(&mut mediagate::server::Config),
) -> TestGateway {
    let secrets = tempfile::tempdir().unwrap().keep();
    std::fs::write(secrets.join("cs"), fake.connection_string()).unwrap();
    std::fs::write(secrets.join("secret"), SECRET).unwrap();
    let port = free_port();
    let endpoint = fake.endpoint();
    TestGateway::start_with(move |config| {
        config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let acs = &mut config.acs;
        acs.enabled = true;
        acs.public_url = format!("http://127.0.0.1:{port}");
        acs.connection_string_file = Some(secrets.join("cs"));
        acs.events_secret_file = Some(secrets.join("secret"));
        acs.audience = Some("00000000-0000-0000-0000-00000000acs1".to_owned());
        acs.openid_config_url = format!("{endpoint}.well-known/acsopenidconfiguration");
        acs.answer = rules;
        adjust(config);
    })
    .await
}

/// A raw HTTP/1.1 request to the gateway: the status line's code, the headers and the body.
pub(crate) async fn http(
    gateway: &TestGateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    http_to(gateway.addr, method, path, headers, body).await
}

/// [`http`] to any address.
pub(crate) async fn http_to(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).unwrap_or("0").parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

/// `Microsoft.Communication.IncomingCall` in Event Grid's schema, as ACS publishes it.
pub(crate) fn incoming_call_event(from: &str, to: &str, context: &str, correlation: &str) -> Value {
    let identifier = |raw: &str| match raw.strip_prefix("4:") {
        Some(number) => {
            json!({"kind": "phoneNumber", "rawId": raw, "phoneNumber": {"value": number}})
        }
        None => {
            json!({"kind": "communicationUser", "rawId": raw, "communicationUser": {"id": raw}})
        }
    };
    json!([{
        "id": format!("event-{correlation}"),
        "topic": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Communication/CommunicationServices/acs",
        "subject": format!("/caller/{from}/recipient/{to}"),
        "eventType": "Microsoft.Communication.IncomingCall",
        "eventTime": "2026-12-02T00:00:00Z",
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "data": {
            "to": identifier(to),
            "from": identifier(from),
            "serverCallId": format!("server-{correlation}"),
            "callerDisplayName": "",
            "incomingCallContext": context,
            "correlationId": correlation,
        }
    }])
}

/// Waits for the fake to have seen a request of `operation`.
pub(crate) async fn request_of(fake: &ControlPlane, operation: &str) -> RecordedRequest {
    let started = Instant::now();
    loop {
        if let Some(r) = fake
            .requests()
            .into_iter()
            .find(|r| r.operation.as_deref() == Some(operation))
        {
            return r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no {operation} request: {:#?}",
            fake.requests()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The lines of a call's events.jsonl, parsed.
pub(crate) fn events_of(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn event_grid_is_answered_only_with_the_secret_in_either_schema() {
    let fake = ControlPlane::start(ControlPlaneOptions::local(KEY))
        .await
        .unwrap();
    let gateway = acs_gateway(&fake, vec![], |_| {}).await;
    let validation = json!([{
        "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
        "topic": "/subscriptions/0000",
        "subject": "",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6", "validationUrl": "https://rp-eastus2.eventgrid.azure.net/validate"},
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2026-12-02T00:00:00Z",
        "metadataVersion": "1",
        "dataVersion": "1"
    }])
    .to_string();
    let headers = [("aeg-event-type", "SubscriptionValidation")];
    let (status, _, body) = http(
        &gateway,
        "POST",
        &format!("/acs/events?secret={SECRET}"),
        &headers,
        &validation,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})
    );
    for path in ["/acs/events", "/acs/events?secret=wrong-secret-0123456789"] {
        let (status, _, _) = http(&gateway, "POST", path, &headers, &validation).await;
        assert_eq!(status, 401, "{path}");
    }
    // CloudEvents' handshake.
    let origin = [("WebHook-Request-Origin", "eventgrid.azure.net")];
    let (status, head, _) = http(
        &gateway,
        "OPTIONS",
        &format!("/acs/events?secret={SECRET}"),
        &origin,
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("webhook-allowed-origin: eventgrid.azure.net"),
        "{head}"
    );
    let (status, _, _) = http(&gateway, "OPTIONS", "/acs/events", &origin, "").await;
    assert_eq!(status, 401);
    // Garbage is refused, not answered.
    let (status, _, _) = http(
        &gateway,
        "POST",
        &format!("/acs/events?secret={SECRET}"),
        &[],
        "{not json",
    )
    .await;
    assert_eq!(status, 400);
    assert!(fake.requests().is_empty());
    // A body is not read before its sender is authenticated: a stranger announcing 2 MB and
    // sending none is answered at once.
    let started = Instant::now();
    let status = http_head_only(&gateway, "/acs/events", 2_000_000).await;
    assert_eq!(status, 401);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Without [acs], the routes do not exist.
    let plain = TestGateway::start().await;
    let path = format!("/acs/events?secret={SECRET}");
    let (status, _, _) = http(&plain, "POST", &path, &[], &validation).await;
    assert_eq!(status, 404);
}

/// The status of a request whose head announces `length` bytes of body, none of which is sent.
async fn http_head_only(gateway: &TestGateway, path: &str, length: usize) -> u16 {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
        gateway.addr
    );
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut response))
        .await
        .expect("no answer before the body")
        .unwrap();
    let response = String::from_utf8_lossy(&response[..n]).into_owned();
    response
        .split(' ')
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0)
}

#[tokio::test]
async fn the_policy_rejects_and_redirects_by_rule_and_each_call_keeps_its_folder() {
    let fake = ControlPlane::start(ControlPlaneOptions::local(KEY))
        .await
        .unwrap();
    let rules = vec![
        AnswerRule {
            name: "premium-rate".into(),
            from: Some("+1900*".into()),
            action: RuleAction::Reject,
            reject_reason: "busy".into(),
            ..AnswerRule::default()
        },
        AnswerRule {
            name: "after-hours".into(),
            to: Some("+14255550199".into()),
            action: RuleAction::Redirect,
            redirect_to: Some("+14255550123".into()),
            ..AnswerRule::default()
        },
    ];
    let gateway = acs_gateway(&fake, rules, |_| {}).await;
    let path = format!("/acs/events?secret={SECRET}");
    let send = |from: &'static str, to: &'static str, correlation: &'static str| {
        let incoming = fake.incoming_call(from, to);
        incoming_call_event(from, to, &incoming.context, correlation).to_string()
    };
    let rejected = send(
        "4:+19005550100",
        "4:+14255550199",
        "11111111-aaaa-4bbb-8ccc-000000000001",
    );
    let (status, _, _) = http(&gateway, "POST", &path, &[], &rejected).await;
    assert_eq!(status, 200);
    // Event Grid delivers at least once: the same event again is not acted on twice.
    let (status, _, _) = http(&gateway, "POST", &path, &[], &rejected).await;
    assert_eq!(status, 200);
    let reject = request_of(&fake, "RejectCall").await;
    assert_eq!((reject.status, reject.error.as_deref()), (204, None));
    assert_eq!(reject.body["callRejectReason"], "busy");

    let redirected = send(
        "4:+14255550100",
        "4:+14255550199",
        "11111111-aaaa-4bbb-8ccc-000000000002",
    );
    http(&gateway, "POST", &path, &[], &redirected).await;
    let redirect = request_of(&fake, "RedirectCall").await;
    assert_eq!(redirect.status, 204, "{:?}", redirect.error);
    assert_eq!(redirect.body["target"]["rawId"], "4:+14255550123");
    assert_eq!(
        redirect.body["target"]["phoneNumber"]["value"],
        "+14255550123"
    );

    // Matching no rule, a call is left to ring.
    let unmatched = send(
        "4:+14255550100",
        "4:+14255550777",
        "11111111-aaaa-4bbb-8ccc-000000000003",
    );
    http(&gateway, "POST", &path, &[], &unmatched).await;

    let dir = gateway.call_dir("11111111-aaaa-4bbb-8ccc-000000000001");
    let session = gateway
        .ended_session("11111111-aaaa-4bbb-8ccc-000000000001")
        .await;
    assert_eq!(session["control"]["action"], "rejected", "{session}");
    assert_eq!(session["control"]["rule"], "premium-rate");
    assert_eq!(session["control"]["from"], "4:+19005550100");
    assert_eq!(session["identity"]["source"], "acs:correlationId");
    let events = events_of(&dir);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["Microsoft.Communication.IncomingCall", "mediagate.Decision"]
    );
    assert_eq!(events[1]["data"]["action"], "reject");
    let session = gateway
        .ended_session("11111111-aaaa-4bbb-8ccc-000000000002")
        .await;
    assert_eq!(session["control"]["action"], "redirected");
    assert!(
        !gateway
            .call_dir("11111111-aaaa-4bbb-8ccc-000000000003")
            .exists()
    );
    let requests = fake.requests();
    assert_eq!(
        requests.len(),
        2,
        "one request per decided call: {requests:#?}"
    );
    assert!(requests.iter().all(|r| r.error.is_none()));
}

/// A fake that places calls into `gateway`'s webhook, and a gateway that trusts the fake's
/// signatures (callbacks and upgrades: `[auth] mode = "acs"`).
async fn loop_pair(
    rules: Vec<AnswerRule>,
    adjust: impl FnOnce(&mut mediagate::server::Config),
) -> (ControlPlane, TestGateway) {
    loop_pair_with(
        rules,
        adjust,
        mediagate::registry(),
        Default::default(),
        None,
    )
    .await
}

/// [`loop_pair`] with the gateway's processors from `registry`, and Event Grid's `schema`;
/// with `tls`, the gateway serves `https://` and `wss://` only, as ACS requires of a real
/// deployment, and the fake trusts its certificate.
async fn loop_pair_with(
    rules: Vec<AnswerRule>,
    adjust: impl FnOnce(&mut mediagate::server::Config),
    registry: mediagate::server::Registry,
    schema: mediagate::emulator::control::EventSchema,
    tls: Option<&crate::tls::SelfSigned>,
) -> (ControlPlane, TestGateway) {
    let port = free_port();
    let base = match tls {
        Some(_) => format!("https://localhost:{port}"),
        None => format!("http://127.0.0.1:{port}"),
    };
    let fake = ControlPlane::start(ControlPlaneOptions {
        webhook: Some(format!("{base}/acs/events?secret={SECRET}")),
        event_schema: schema,
        trusted_roots: tls.map(|c| vec![c.cert_der.to_vec()]).unwrap_or_default(),
        ..ControlPlaneOptions::local(KEY)
    })
    .await
    .unwrap();
    let openid = fake.openid_configuration_url();
    let audience = fake.resource_id().to_owned();
    let secrets = tempfile::tempdir().unwrap().keep();
    std::fs::write(secrets.join("cs"), fake.connection_string()).unwrap();
    std::fs::write(secrets.join("secret"), SECRET).unwrap();
    let tls = tls.map(crate::tls::SelfSigned::tls_config);
    let gateway = TestGateway::start_with_registry(
        move |config| {
            config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            config.tls = tls;
            config.auth.mode = mediagate::server::AuthMode::Acs;
            config.auth.openid_config_url = openid.clone();
            config.auth.audience = Some(audience.clone());
            let acs = &mut config.acs;
            acs.enabled = true;
            acs.public_url = base;
            acs.connection_string_file = Some(secrets.join("cs"));
            acs.events_secret_file = Some(secrets.join("secret"));
            acs.audience = Some(audience);
            acs.openid_config_url = openid;
            acs.answer = rules;
            adjust(config);
        },
        registry,
    )
    .await;
    (fake, gateway)
}

/// The fake's call once it is over (its last callback delivered).
async fn ended_call(fake: &ControlPlane) -> mediagate::emulator::control::FakeCall {
    let started = Instant::now();
    loop {
        if let Some(call) = fake.calls().into_iter().find(|c| c.played) {
            return fake
                .wait_for_end(&call.id, Duration::from_secs(60))
                .await
                .expect("the call did not end");
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no call answered: {:#?}",
            fake.requests()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `call` with the committed transcript script, played as fast as the sockets take it, the
/// caller hanging up when the audio ends.
fn fast_and_transcribed(
    call: mediagate::emulator::control::ScriptedCall,
) -> mediagate::emulator::control::ScriptedCall {
    use mediagate::emulator::control::CallerHangUp;
    call.with_transcript(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/transcript-script.json"),
    )
    .with_pacing(mediagate::emulator::Pacing::Fast)
    .with_hang_up(CallerHangUp::AfterAudio)
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["type"]
                .as_str()
                .unwrap()
                .replace("Microsoft.Communication.", "")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_call_is_answered_streamed_unmixed_recorded_transcribed_and_sealed() {
    use mediagate::emulator::control::ScriptedCall;
    let rules = vec![AnswerRule {
        name: "front-desk".into(),
        to: Some("+14255550199".into()),
        channels: mediagate::server::Channels::Unmixed,
        transcription: true,
        ..AnswerRule::default()
    }];
    let (fake, gateway) = loop_pair(rules, |_| {}).await;
    // The subscription's handshake, as Event Grid makes it before the first delivery.
    assert!(!fake.validate_subscription().await.unwrap().is_empty());
    let caller = "4:+14255550100";
    let incoming = fake
        .place_call(fast_and_transcribed(
            ScriptedCall::new(caller, "4:+14255550199")
                .with_wav(crate::common::sample("alice-16k.wav"))
                .with_participant_id(caller)
                .with_wav(crate::common::sample("bob-16k.wav"))
                .with_participant_id("8:acs:agent-7"),
        ))
        .await
        .unwrap();
    let call = ended_call(&fake).await;
    assert_eq!(call.correlation_id, incoming.correlation_id);

    // The answer the gateway sent, as the reference has it.
    let answer = request_of(&fake, "AnswerCall").await;
    assert_eq!((answer.status, answer.error.as_deref()), (200, None));
    let folder_name = incoming.correlation_id.clone();
    let media = &answer.body["mediaStreamingOptions"];
    assert_eq!(
        media["transportUrl"],
        format!("ws://{}/ws?callId={folder_name}", gateway.addr),
        "{answer:?}"
    );
    assert_eq!(
        (
            media["audioChannelType"].as_str(),
            media["audioFormat"].as_str()
        ),
        (Some("unmixed"), Some("pcm16KMono"))
    );
    assert_eq!(answer.body["transcriptionOptions"]["locale"], "en-US");
    // Callbacks to the call's URL, with the call's own key.
    let callback = answer.body["callbackUri"].as_str().unwrap();
    let prefix = format!("http://{}/acs/callbacks/{folder_name}?k=", gateway.addr);
    assert!(callback.starts_with(&prefix), "{callback}");
    assert_eq!(callback.len(), prefix.len() + 32, "{callback}");

    // One folder: both sockets and every callback in it, the call ended by CallDisconnected.
    let session = gateway.ended_session(&folder_name).await;
    assert_eq!(session["identity"]["source"], "acs:correlationId");
    assert_eq!(session["control"]["action"], "answered", "{session}");
    assert_eq!(session["control"]["call_connection_id"], call.id);
    assert!(
        session["control"]["disconnected_at"].is_string(),
        "{session}"
    );
    let transports: Vec<&str> = session["transports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(transports.len(), 2, "{session}");
    assert!(transports.contains(&"media") && transports.contains(&"transcription"));
    let dir = gateway.call_dir(&folder_name);
    // Each participant's audio, sample for sample.
    for (participant, wav) in [(caller, "alice-16k.wav"), ("8:acs:agent-7", "bob-16k.wav")] {
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.ends_with(".wav")
                    && name.contains(&mediagate::pipeline::sanitize_file_stem(participant))
            })
            .unwrap_or_else(|| panic!("no WAV for {participant} in {dir:?}"));
        // Every track is padded to the longest (silence); before that, the source exactly.
        let track = crate::common::read_wav(&file).0;
        let source = crate::common::read_wav(&crate::common::sample(wav)).0;
        let n = track.len().min(source.len());
        assert!(
            n > 16_000 && track[..n] == source[..n],
            "{participant}'s recording is not {wav}"
        );
        assert!(track[n..].iter().chain(&source[n..]).all(|&s| s == 0));
    }
    let transcript = std::fs::read_to_string(dir.join("transcript.jsonl")).unwrap();
    assert!(
        transcript.contains("Please say your account number after the tone."),
        "{transcript}"
    );
    // Every callback the fake delivered was accepted, and each is a line of events.jsonl.
    assert!(
        call.callbacks.iter().all(|c| c.status == Some(200)),
        "{:#?}",
        call.callbacks
    );
    let events = events_of(&dir);
    let kinds = kinds(&events);
    assert_eq!(&kinds[..2], ["IncomingCall", "mediagate.Decision"]);
    assert_eq!(events[0]["data"]["incomingCallContext"], "<redacted>");
    for kind in [
        "CallConnected",
        "MediaStreamingStarted",
        "TranscriptionStarted",
        "CallDisconnected",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    let delivered: Vec<String> = call
        .callbacks
        .iter()
        .map(|c| c.event_type.replace("Microsoft.Communication.", ""))
        .collect();
    assert_eq!(
        kinds[2..],
        delivered[..],
        "events.jsonl is the callbacks, in order"
    );
    // The call is sealed, and the data dir verifies.
    assert!(dir.join("manifest.json").is_file());
    let report =
        mediagate::server::verify_dir(gateway.data_dir.path(), &Default::default()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.sealed_intact, 1);
}

/// As ACS reaches a real deployment: Event Grid and the callbacks over `https://`, both
/// transports over `wss://`, the gateway serving TLS only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_every_leg_of_the_call_is_https_or_wss() {
    use mediagate::emulator::control::ScriptedCall;
    let cert = crate::tls::SelfSigned::generate();
    let rules = vec![AnswerRule {
        transcription: true,
        ..AnswerRule::default()
    }];
    let (fake, gateway) = loop_pair_with(
        rules,
        |_| {},
        mediagate::registry(),
        Default::default(),
        Some(&cert),
    )
    .await;
    assert!(!fake.validate_subscription().await.unwrap().is_empty());
    let incoming = fake
        .place_call(fast_and_transcribed(
            ScriptedCall::new("4:+14255550100", "4:+14255550199")
                .with_wav(crate::common::sample("alice-16k.wav")),
        ))
        .await
        .unwrap();
    let call = ended_call(&fake).await;
    let folder = incoming.correlation_id;
    let answer = request_of(&fake, "AnswerCall").await;
    let port = gateway.addr.port();
    for options in ["mediaStreamingOptions", "transcriptionOptions"] {
        assert_eq!(
            answer.body[options]["transportUrl"],
            format!("wss://localhost:{port}/ws?callId={folder}"),
            "{answer:?}"
        );
    }
    let callback = answer.body["callbackUri"].as_str().unwrap();
    assert!(
        callback.starts_with(&format!(
            "https://localhost:{port}/acs/callbacks/{folder}?k="
        )),
        "{callback}"
    );
    // Both streams played to their end, every callback taken.
    let streams = &call.streams;
    assert!(
        matches!(&streams.media, Some(Ok(r)) if r.frames_sent > 0 && !r.stopped_early),
        "{streams:?}"
    );
    assert!(
        matches!(&streams.transcription, Some(Ok(r)) if r.transcripts_sent > 0),
        "{streams:?}"
    );
    assert!(
        !call.callbacks.is_empty() && call.callbacks.iter().all(|c| c.status == Some(200)),
        "{:#?}",
        call.callbacks
    );
    // What came through TLS is what was sent.
    let session = gateway.ended_session(&folder).await;
    assert_eq!(
        session["transports"].as_array().unwrap().len(),
        2,
        "{session}"
    );
    let dir = gateway.call_dir(&folder);
    let recorded = crate::common::read_wav(&dir.join("mixed.wav")).0;
    let source = crate::common::read_wav(&crate::common::sample("alice-16k.wav")).0;
    assert_eq!(recorded, source);
    let transcript = std::fs::read_to_string(dir.join("transcript.jsonl")).unwrap();
    assert!(
        transcript.contains("Please say your account number after the tone."),
        "{transcript}"
    );
}

fn attendant_rule(mode: mediagate::server::AttendantMode) -> AnswerRule {
    AnswerRule {
        name: "attendant".into(),
        bidirectional: mode == mediagate::server::AttendantMode::Gateway,
        attendant: Some(mediagate::server::AttendantConfig {
            greeting: "Thank you for calling. Press 1 for sales, 2 for support.".into(),
            mode,
            menu: [
                ("1".to_owned(), "+14255550123".to_owned()),
                ("2".to_owned(), "8:acs:support-queue".to_owned()),
            ]
            .into_iter()
            .collect(),
            silence_timeout_secs: 2,
            retries: 0,
            ..Default::default()
        }),
        ..AnswerRule::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attendant_greets_takes_a_key_and_transfers_as_the_reference_says() {
    use mediagate::emulator::control::{CallerHangUp, ScriptedCall};
    let (fake, gateway) = loop_pair(
        vec![attendant_rule(mediagate::server::AttendantMode::Acs)],
        |_| {},
    )
    .await;
    let caller = "4:+14255550100";
    let incoming = fake
        .place_call(
            ScriptedCall::new(caller, "4:+14255550199")
                .with_wav(crate::common::sample("hello-16k.wav"))
                .with_dtmf("2@500ms".parse().unwrap())
                .with_hang_up(CallerHangUp::Never),
        )
        .await
        .unwrap();
    let call = ended_call(&fake).await;
    // The greeting and the key, in one recognize: DTMF, the caller, one tone, the prompt.
    let recognize = request_of(&fake, "CallMedia_Recognize").await;
    assert_eq!((recognize.status, recognize.error.as_deref()), (202, None));
    let body = &recognize.body;
    assert_eq!(body["recognizeInputType"], "dtmf");
    assert_eq!(body["playPrompt"]["kind"], "text");
    assert_eq!(
        body["playPrompt"]["text"]["text"],
        "Thank you for calling. Press 1 for sales, 2 for support."
    );
    assert_eq!(
        body["recognizeOptions"]["targetParticipant"]["rawId"],
        caller
    );
    assert_eq!(
        body["recognizeOptions"]["dtmfOptions"]["maxTonesToCollect"],
        1
    );
    assert_eq!(
        body["recognizeOptions"]["initialSilenceTimeoutInSeconds"],
        2
    );
    // Key 2: the transfer to the support queue, as the reference spells it.
    let transfer = request_of(&fake, "CallConnection_TransferToParticipant").await;
    assert_eq!((transfer.status, transfer.error.as_deref()), (202, None));
    assert_eq!(
        transfer.body["targetParticipant"],
        json!({"kind": "communicationUser", "rawId": "8:acs:support-queue", "communicationUser": {"id": "8:acs:support-queue"}})
    );
    assert!(transfer.repeatability.is_some());
    let session = gateway.ended_session(&incoming.correlation_id).await;
    assert_eq!(session["control"]["key"], "2", "{session}");
    assert_eq!(session["control"]["transferred_to"], "8:acs:support-queue");
    let kinds = kinds(&events_of(&gateway.call_dir(&incoming.correlation_id)));
    let at = |kind: &str| {
        kinds
            .iter()
            .position(|k| k == kind)
            .unwrap_or_else(|| panic!("no {kind} in {kinds:?}"))
    };
    assert!(at("CallConnected") < at("RecognizeCompleted"));
    assert!(at("RecognizeCompleted") < at("mediagate.AttendantTransfer"));
    assert!(at("mediagate.AttendantTransfer") < at("CallTransferAccepted"));
    assert!(at("CallTransferAccepted") < at("CallDisconnected"));
    assert!(call.callbacks.iter().all(|c| c.status == Some(200)));
    // Every request the gateway made passed the fake's validation.
    assert!(
        fake.requests().iter().all(|r| r.error.is_none()),
        "{:#?}",
        fake.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attendant_hangs_up_on_silence() {
    use mediagate::emulator::control::{CallerHangUp, ScriptedCall};
    let (fake, gateway) = loop_pair(
        vec![attendant_rule(mediagate::server::AttendantMode::Acs)],
        |_| {},
    )
    .await;
    let incoming = fake
        .place_call(
            ScriptedCall::new("4:+14255550100", "4:+14255550199")
                .with_wav(crate::common::sample("hello-16k.wav"))
                .with_hang_up(CallerHangUp::Never),
        )
        .await
        .unwrap();
    ended_call(&fake).await;
    let terminate = request_of(&fake, "CallConnection_TerminateCall").await;
    assert_eq!(terminate.status, 204);
    assert!(request_of_none(
        &fake,
        "CallConnection_TransferToParticipant"
    ));
    let kinds = kinds(&events_of(&gateway.call_dir(&incoming.correlation_id)));
    assert!(kinds.iter().any(|k| k == "RecognizeFailed"), "{kinds:?}");
    assert!(
        kinds.iter().any(|k| k == "mediagate.AttendantHangUp"),
        "{kinds:?}"
    );
}

fn request_of_none(fake: &ControlPlane, operation: &str) -> bool {
    fake.requests()
        .iter()
        .all(|r| r.operation.as_deref() != Some(operation))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_without_acs_signature_are_refused_and_change_nothing() {
    use mediagate::emulator::control::{CallerHangUp, ScriptedCall};
    let (fake, gateway) = loop_pair(vec![AnswerRule::default()], |_| {}).await;
    let incoming = fake
        .place_call(
            ScriptedCall::new("4:+14255550100", "4:+14255550199")
                .with_wav(crate::common::sample("hello-16k.wav"))
                .with_hang_up(CallerHangUp::Never),
        )
        .await
        .unwrap();
    let dir = gateway.call_dir(&incoming.correlation_id);
    // Once the call is connected (the fake's own, signed, callbacks accepted)…
    let started = Instant::now();
    while !kinds(&events_of(&dir)).iter().any(|k| k == "CallConnected") {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no CallConnected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // …a stranger's "CallDisconnected" for it: no token, a malformed one, alg none, and one
    // ACS-shaped but signed for another resource (another fake, the same key format).
    let forged = json!([{
        "id": "forged", "source": "calling/callConnections/x", "specversion": "1.0",
        "type": "Microsoft.Communication.CallDisconnected", "data": {}
    }])
    .to_string();
    let none = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(
            format!(
                r#"{{"iss":"{}","aud":"{}","exp":9999999999}}"#,
                fake.issuer(),
                fake.resource_id()
            )
            .as_bytes()
        )
    );
    let other = ControlPlane::start(ControlPlaneOptions {
        resource_id: "11111111-2222-3333-4444-555555555555".to_owned(),
        ..ControlPlaneOptions::local(KEY)
    })
    .await
    .unwrap();
    let foreign = other.token().unwrap();
    let path = format!("/acs/callbacks/{}", incoming.correlation_id);
    // A genuine token of the resource, but not this call's URL key: no such call.
    let genuine = format!("Bearer {}", fake.token().unwrap());
    for key in ["", "?k=0123456789abcdef0123456789abcdef"] {
        let headers = [("Authorization", genuine.as_str())];
        let (status, _, _) =
            http(&gateway, "POST", &format!("{path}{key}"), &headers, &forged).await;
        assert_eq!(status, 404, "{key}");
    }
    for authorization in [
        None,
        Some("Bearer not-a-jwt".to_owned()),
        Some(format!("Bearer {none}")),
        Some(format!("Bearer {foreign}")),
    ] {
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("Authorization", a.as_str()))
            .collect();
        let (status, _, _) = http(&gateway, "POST", &path, &headers, &forged).await;
        assert_eq!(status, 401, "{authorization:?}");
    }
    // (The fake's own callbacks go on arriving meanwhile: only the forged one must be absent.)
    let recorded = events_of(&dir);
    assert!(
        recorded.iter().all(|e| e["id"] != "forged"),
        "a refused callback was recorded"
    );
    assert!(!kinds(&recorded).iter().any(|k| k == "CallDisconnected"));
    let session: Value =
        serde_json::from_slice(&std::fs::read(dir.join("session.json")).unwrap_or_default())
            .unwrap_or_default();
    assert_ne!(session["status"], "ended");
    let metrics = reqwest_metrics(&gateway).await;
    assert!(
        metrics.contains("mediagate_acs_refused_total{reason=\"missing\"} 1"),
        "{metrics}"
    );
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn reqwest_metrics(gateway: &TestGateway) -> String {
    http(gateway, "GET", "/metrics", &[], "").await.2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_attendant_speaks_into_the_call_and_hears_its_dtmf() {
    use mediagate::emulator::control::{CallerHangUp, ScriptedCall};
    let (fake, gateway) = loop_pair(
        vec![attendant_rule(mediagate::server::AttendantMode::Gateway)],
        |_| {},
    )
    .await;
    let incoming = fake
        .place_call(
            ScriptedCall::new("4:+14255550100", "4:+14255550199")
                .with_wav(crate::common::sample("hello-16k.wav"))
                .with_dtmf("1@1500ms".parse().unwrap())
                .with_hang_up(CallerHangUp::Never),
        )
        .await
        .unwrap();
    let call = ended_call(&fake).await;
    // No ACS media operation: the greeting went over the call's own audio, the key came in
    // on its media stream.
    assert!(
        request_of_none(&fake, "CallMedia_Recognize") && request_of_none(&fake, "CallMedia_Play")
    );
    let transfer = request_of(&fake, "CallConnection_TransferToParticipant").await;
    assert_eq!((transfer.status, transfer.error.as_deref()), (202, None));
    assert_eq!(
        transfer.body["targetParticipant"]["phoneNumber"]["value"],
        "+14255550123"
    );
    let media = fake
        .call_report(&call.id)
        .expect("the media stream's report");
    // espeak-ng's greeting: seconds of audio, played in 20 ms frames.
    assert!(media.outbound.samples > 16_000, "{:?}", media.outbound);
    let session = gateway.ended_session(&incoming.correlation_id).await;
    assert_eq!(session["control"]["key"], "1", "{session}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_hang_up_ends_the_call_at_acs_too() {
    use mediagate::emulator::control::{CallerHangUp, ScriptedCall};
    let (fake, gateway) = loop_pair(vec![AnswerRule::default()], |_| {}).await;
    let incoming = fake
        .place_call(
            ScriptedCall::new("4:+14255550100", "4:+14255550199")
                .with_wav(crate::common::sample("hello-16k.wav"))
                .with_hang_up(CallerHangUp::Never),
        )
        .await
        .unwrap();
    let admin = gateway.admin.unwrap();
    let path = format!("/calls/{}/hangup", incoming.correlation_id);
    // The media socket has to be up for the admin API to know the call.
    let started = Instant::now();
    loop {
        let (status, _, _) = http_to(
            admin,
            "GET",
            &format!("/calls/{}", incoming.correlation_id),
            &[],
            "",
        )
        .await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the call never went live"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, body) = http_to(admin, "POST", &path, &[], "").await;
    assert_eq!(status, 202, "{body}");
    let terminate = request_of(&fake, "CallConnection_TerminateCall").await;
    assert_eq!(terminate.status, 204);
    ended_call(&fake).await;
    let session = gateway.ended_session(&incoming.correlation_id).await;
    assert!(
        session["control"]["disconnected_at"].is_string(),
        "{session}"
    );
}

/// Keeps the kinds of the `acs.*` events it is handed.
struct AcsWatcher(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl mediagate::pipeline::Processor for AcsWatcher {
    fn input(&self) -> mediagate::pipeline::Input {
        mediagate::pipeline::Input {
            frames: false,
            ..Default::default()
        }
    }

    fn on_event(
        &mut self,
        event: &mediagate::pipeline::Event,
        _ctx: &mut mediagate::pipeline::Context,
    ) -> Result<(), mediagate::pipeline::ProcessorError> {
        if let mediagate::pipeline::Event::Custom(custom) = event {
            if custom.kind.starts_with("acs.") {
                self.0.lock().unwrap().push(custom.kind.to_string());
            }
        }
        Ok(())
    }
}

/// Mixed 24 kHz, ACS's own recording, a shared secret on the media sockets, CloudEvents from
/// Event Grid; and every callback reaches the call's processors and the admin event stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_reach_processors_and_watchers_with_secret_media_and_cloud_events() {
    use mediagate::emulator::control::{CallerHangUp, EventSchema, ScriptedCall};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut registry = mediagate::registry();
    let kept = seen.clone();
    registry.register("acs_watcher", move |_| {
        let kept = kept.clone();
        Ok(move |_: &mediagate::pipeline::CallInfo| {
            Box::new(AcsWatcher(kept.clone())) as Box<dyn mediagate::pipeline::Processor>
        })
    });
    let rules = vec![AnswerRule {
        sample_rate: 24_000,
        record: true,
        ..AnswerRule::default()
    }];
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), "media-secret-0123456789abcdef").unwrap();
    let secret_path = secret_file.path().to_owned();
    let (fake, gateway) = loop_pair_with(
        rules,
        move |config| {
            config.auth = mediagate::server::AuthConfig {
                mode: mediagate::server::AuthMode::Secret,
                secret_file: Some(secret_path),
                ..Default::default()
            };
            config.pipeline.processors.push("acs_watcher".to_owned());
        },
        registry,
        EventSchema::CloudEvents,
        None,
    )
    .await;
    let mut watcher = crate::admin::EventStream::open_at(gateway.admin.unwrap(), "/events").await;
    let incoming = fake
        .place_call(
            ScriptedCall::new("4:+14255550100", "4:+14255550199")
                .with_wav(crate::common::sample("hello-16k.wav"))
                .with_pacing(mediagate::emulator::Pacing::Fast)
                .with_hang_up(CallerHangUp::After(Duration::from_millis(1500))),
        )
        .await
        .unwrap();
    let call = ended_call(&fake).await;
    let answer = request_of(&fake, "AnswerCall").await;
    let url = answer.body["mediaStreamingOptions"]["transportUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    // The transport URL carries a token for this call, not the secret itself: a leaked URL
    // opens no other call.
    assert!(!url.contains("media-secret"), "{url}");
    let token = url.rsplit_once("&token=").unwrap().1.to_owned();
    assert_eq!(token.len(), 64, "{url}");
    let other = gateway.url(&format!("/ws?callId=another-call&token={token}"));
    match tokio_tungstenite::connect_async(other).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("another call's upgrade with this call's token: {other:?}"),
    }
    assert_eq!(
        answer.body["mediaStreamingOptions"]["audioFormat"],
        "pcm24KMono"
    );
    assert_eq!(
        answer.body["mediaStreamingOptions"]["audioChannelType"],
        "mixed"
    );
    // ACS's own recording, once connected, with its state reported to the call's callbacks.
    let recording = request_of(&fake, "CallRecording_StartRecording").await;
    assert_eq!((recording.status, recording.error.as_deref()), (200, None));
    assert_eq!(recording.body["callConnectionId"], call.id);
    // The media socket was let in with the secret from the query, streamed at 24 kHz, and the
    // secret is not in session.json.
    let session = gateway.ended_session(&incoming.correlation_id).await;
    let media = &session["transports"][0];
    assert_eq!(media["format"]["sample_rate_hz"], 24_000, "{session}");
    assert!(!session.to_string().contains("media-secret"), "{session}");
    // The callbacks reached the processors as acs.<Type>: those before the media socket came
    // (handed over when it started), and those while it was open; and the watchers (`acs`).
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.first().map(String::as_str),
        Some("acs.CallConnected"),
        "{seen:?}"
    );
    for kind in ["acs.MediaStreamingStarted", "acs.RecordingStateChanged"] {
        assert!(seen.iter().any(|k| k == kind), "{kind} not in {seen:?}");
    }
    let mut watched = Vec::new();
    while !watched
        .iter()
        .any(|t: &String| t.ends_with("CallDisconnected"))
    {
        let (kind, data) = watcher.next().await.expect("the event stream ended");
        if kind == "acs" {
            assert_eq!(data["call_id"], incoming.correlation_id.as_str());
            watched.push(data["type"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        watched[0], "Microsoft.Communication.IncomingCall",
        "{watched:?}"
    );
}
