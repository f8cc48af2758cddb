//! The dashboard in a real browser: Debian's chromium, headless, driven by Playwright (PyPI, in
//! a virtualenv made on first use; it drives the system's chromium, it downloads none) through
//! `tests/browser/dashboard.py`, against a gateway with an emulated call. The page must ask for
//! the token, refuse a wrong one, keep the right one in a session cookie only, list the call,
//! show its transcript and a moving level meter, play a WAV the emulator then hears sample for
//! sample, end the call, and link its files.

use crate::common;

use std::time::Duration;

use common::{TestGateway, emulate, sample};
use mediagate::emulator::Pacing;
use mediagate::server::AdminToken;
use serde_json::Value;

const TOKEN: &str = "a-dashboard-token-0123456789abcdef";
const GUEST_KEY: &str = "a-dashboard-guest-key-0123456789abcdef";

/// The driver's PyPI package, pinned.
const PLAYWRIGHT: &str = "playwright==1.65.2";

/// The browser Playwright drives.
const CHROMIUM: &str = "/usr/bin/chromium";

/// A guest link to `elsewhere` that lived one second, a second ago: its path.
async fn expired_link(admin: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for _ in 0..100 {
        let body = r#"{"call_id":"elsewhere","ttl_secs":1}"#;
        let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
        let request = format!(
            "POST /guest-links HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        if response.starts_with("HTTP/1.1 201") {
            let json = response.split_once("\r\n\r\n").unwrap().1;
            let link: Value = serde_json::from_str(json).unwrap();
            tokio::time::sleep(Duration::from_millis(2100)).await;
            return link["url"].as_str().unwrap().to_owned();
        }
        // The call is not live yet.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no guest link issued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_sees_hears_into_and_ends_a_call_from_the_dashboard() {
    assert!(
        std::path::Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: apt-get install chromium (or run .ci/run)"
    );
    let venv =
        tokio::task::spawn_blocking(|| common::venv::with_package("browser-venv", PLAYWRIGHT))
            .await
            .unwrap();
    let gateway = TestGateway::start_isolated(|config| {
        config.admin.token = Some(AdminToken(TOKEN.to_owned()));
        config.admin.guest_key = Some(AdminToken(GUEST_KEY.to_owned()));
        config.pipeline.processors = ["wav", "transcript", "dtmf", "level_meter"]
            .map(String::from)
            .to_vec();
    })
    .await;
    let admin = gateway.admin.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let heard = scratch.path().join("heard.wav");
    // A call long enough for the whole visit: the recording five times over.
    let (hello, rate) = common::read_wav(&sample("hello-16k.wav"));
    let speech: Vec<i16> = hello
        .iter()
        .copied()
        .cycle()
        .take(hello.len() * 5)
        .collect();
    let long = scratch.path().join("long.wav");
    common::write_wav(&long, rate, &speech);
    // Another call at the same time, which a guest link to the first must not show.
    let other = tokio::spawn(mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=elsewhere"))
            .with_wav(&long)
            .with_transcript(sample("transcript-script.json"))
            .with_pacing(Pacing::Realtime),
    ));
    // A guest link that has expired by the time the browser opens it.
    let expired = expired_link(admin).await;
    let call = tokio::spawn(mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=supervised"))
            .with_wav(&long)
            .with_transcript(sample("transcript-script.json"))
            .with_pacing(Pacing::Realtime)
            .with_record_outbound(&heard),
    ));
    let prompt = sample("alice-16k.wav");
    let settings = serde_json::json!({
        "admin": format!("http://{admin}"),
        "token": TOKEN,
        "call": "supervised",
        "other_call": "elsewhere",
        "wav": prompt,
        "final": "Hello, thank you for calling.",
        "expired_link": expired,
        "screenshot": std::env::var("MEDIAGATE_DASHBOARD_SCREENSHOT").ok(),
    });
    let mut driver = tokio::process::Command::new(venv.join("bin/python"));
    driver
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/dashboard.py"
        ))
        .arg(settings.to_string())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), driver.output())
        .await
        .expect("the browser did not finish within 120 s")
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser driver failed:\n{said}"
    );
    let seen: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));

    // Let in by the token once, kept in by a cookie scripts cannot read.
    assert_eq!(seen["without_token"]["status"], 200);
    assert_eq!(seen["without_token"]["asks_for_token"], true);
    assert_eq!(seen["wrong_token_status"], 401);
    assert_eq!(seen["with_token"]["status"], 200);
    assert_eq!(seen["with_token"]["url"], format!("http://{admin}/"));
    let cookies = seen["cookies"].as_array().unwrap();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert_eq!(cookies[0]["httpOnly"], true);
    assert_eq!(cookies[0]["sameSite"], "Strict");

    // The call, its transcript as it came, its level moving with the speech.
    assert_eq!(seen["call_listed"], true);
    let lines: Vec<&str> = seen["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        lines.contains(&"Hello, thank you for calling."),
        "{lines:?}"
    );
    // The other call's finals, partly from before the page opened: each once.
    let others: Vec<&str> = seen["other_transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<&&str> = others.iter().collect();
    assert!(
        !others.is_empty() && unique.len() == others.len(),
        "{others:?}"
    );
    let levels: Vec<f64> = seen["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_f64().unwrap())
        .collect();
    let (low, high) = levels
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &l| (lo.min(l), hi.max(l)));
    assert!(
        high > -40.0 && high - low > 3.0,
        "the meter did not move: {levels:?}"
    );
    let widths = seen["meter_widths"].as_array().unwrap();
    assert!(
        widths
            .iter()
            .any(|w| w.as_str().is_some_and(|w| !w.is_empty() && w != "0%")),
        "the bar never grew: {widths:?}"
    );

    // Listened to: the call's audio reached the page and played at the call's loudness (the
    // analyser's 2048-sample window against the loudest such stretch of what was sent).
    let listening = &seen["listening"];
    assert!(listening["frames"].as_u64().unwrap() > 50, "{listening}");
    let loudest_sent = speech
        .chunks(2048)
        .map(|w| {
            let sum: f64 = w.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
            20.0 * ((sum / w.len() as f64).sqrt() / 32_768.0).log10()
        })
        .fold(f64::MIN, f64::max);
    let loudest_played = listening["max_rms_dbfs"].as_f64().unwrap();
    eprintln!("listening: {listening}; loudest sent {loudest_sent:.1} dBFS");
    assert!(
        (loudest_played - loudest_sent).abs() < 6.0,
        "played at {loudest_played:.1} dBFS at most, sent at {loudest_sent:.1}: {listening}"
    );

    // Played from the page, heard by the caller.
    assert!(
        seen["play_status"]
            .as_str()
            .unwrap()
            .contains("playing alice-16k.wav"),
        "{seen}"
    );
    let report = call.await.unwrap().unwrap();
    let close = report.gateway_close.expect("the gateway closed the call");
    assert_eq!(
        (close.code, close.reason.as_str()),
        (1000, "ended by the operator")
    );
    let (played, _) = common::read_wav(&prompt);
    let (heard, _) = common::read_wav(&heard);
    assert!(heard.len() >= 16_000, "{} samples heard", heard.len());
    let n = heard.len().min(played.len());
    assert!(
        heard[..n] == played[..n],
        "what was heard is not the WAV played"
    );

    // The guest link: that call only, its transcript, Listen and nothing else; no session.
    let guest = &seen["guest"];
    assert_eq!(guest["status"], 200, "{guest}");
    assert_eq!(guest["cards"], serde_json::json!(["supervised"]), "{guest}");
    assert_eq!(guest["other_call_shown"], 0);
    assert!(
        !guest["transcript"].as_array().unwrap().is_empty(),
        "{guest}"
    );
    assert_eq!(
        guest["visible_buttons"],
        serde_json::json!(["Listen"]),
        "{guest}"
    );
    assert_eq!(guest["cookies"], serde_json::json!([]));
    assert_eq!(seen["expired_status"], 401);
    other.abort();

    // Ended, and its files one click away.
    assert_eq!(seen["card_gone"], true);
    assert_eq!(seen["ended_link"], "/files/supervised/");
    assert_eq!(seen["files"]["status"], 200);
    let names: Vec<&str> = seen["files"]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for name in ["mixed.wav", "session.json", "transcript.jsonl"] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    assert_eq!(seen["page_errors"], serde_json::json!([]));
    gateway.stop().await;
}
