//! `/metrics` as Prometheus and its tools read it: OpenMetrics for a scrape that asks for it
//! (Prometheus does), the Prometheus text format for everything else, and that text clean under
//! the real `promtool check metrics` (Debian's `prometheus` package) once a call, a bad message
//! and the speech engine have filled the families. The sample scrape config and alert rules
//! (`samples/prometheus`) pass `promtool check` and their own `promtool test rules`.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::{TestGateway, emulate, sample};
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// The `Accept` header of Prometheus 2.42's scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// GET /metrics with `accept`: the content type and the body.
async fn scrape(gateway: &TestGateway, accept: Option<&str>) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let accept = accept.map_or(String::new(), |a| format!("accept: {a}\r\n"));
    let request =
        format!("GET /metrics HTTP/1.1\r\nhost: test\r\n{accept}connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap()
        .to_owned();
    (content_type, body.to_owned())
}

/// The sample lines (not the comments), sorted; not the process's, which move on their own.
fn samples(text: &str) -> Vec<&str> {
    let mut samples: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("process_"))
        .collect();
    samples.sort_unstable();
    samples
}

/// `promtool check metrics` on `text`: its exit status and everything it printed.
async fn promtool_check(text: &str) -> (std::process::ExitStatus, String) {
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool: {e}; install Debian's `prometheus` package (or run .ci/run)")
        });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("promtool did not finish within 30 s")
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status, printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_gets_openmetrics_and_promtool_finds_the_text_format_clean() {
    // The default pipeline, the recorders and Whisper (whose families are the speech
    // engine's), and a tone at call start, so that the pacer plays audio.
    let gateway = TestGateway::start_isolated(|config| {
        config.pipeline = mediagate::default_config().pipeline;
        config.pipeline.processors.push("tone".to_owned());
        config.pipeline.settings.insert(
            "tone".to_owned(),
            serde_json::json!({ "at_start": true, "duration_ms": 1000 }),
        );
    })
    .await;
    let started = std::time::Instant::now();
    let report = mediagate::emulator::run(
        emulate(gateway.url("/ws?callId=metered"))
            .with_wav(sample("hello-16k.wav"))
            .with_pacing(mediagate::emulator::Pacing::Realtime),
    )
    .await
    .unwrap();
    let (mut bad, _) = tokio_tungstenite::connect_async(gateway.url("/ws?callId=bad"))
        .await
        .unwrap();
    bad.send(Message::text("not json")).await.unwrap();
    bad.close(None).await.unwrap();
    gateway.ended_session("metered").await;
    // From the first connect to session.json saying ended: the transport lasted less.
    let call_took = started.elapsed().as_secs_f64();
    // The bad socket opens no call folder: its count and its end are the signs it was read.
    for _ in 0..100 {
        let (_, text) = scrape(&gateway, None).await;
        if text.contains("class=\"not_json\"} 1")
            && text.contains("\nmediagate_connections_active 0\n")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (kind, openmetrics) = scrape(&gateway, Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(
        kind,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(openmetrics.trim_end().ends_with("# EOF"), "{openmetrics}");
    let (kind, text) = scrape(&gateway, None).await;
    assert_eq!(kind, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        samples(&text) == samples(&openmetrics),
        "not the same samples:\n{text}\n{openmetrics}"
    );

    // Each counter's HELP and TYPE name its samples; times are in seconds.
    for counter in [
        "mediagate_frames_received_total",
        "mediagate_bad_messages_total",
        "mediagate_processor_busy_seconds_total",
    ] {
        assert!(text.contains(&format!("\n# HELP {counter} ")), "{text}");
        assert!(
            text.contains(&format!("\n# TYPE {counter} counter\n")),
            "{text}"
        );
    }
    let busy = text
        .lines()
        .find_map(|l| l.strip_prefix("mediagate_processor_busy_seconds_total{processor=\"wav\"} "))
        .unwrap_or_else(|| panic!("no busy time for wav in\n{text}"));
    let busy: f64 = busy.parse().unwrap();
    assert!(busy > 0.0 && busy < 5.0, "wav's callbacks took {busy} s");
    assert!(
        text.contains("mediagate_bad_messages_total{class=\"not_json\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("mediagate_speech_final_latency_seconds_count{engine=\"whisper\"}"),
        "{text}"
    );

    // The call: one media transport, closed normally, its audio counted in bytes.
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(value("mediagate_transports_total{kind=\"media\"}"), 1.0);
    assert_eq!(
        value("mediagate_transport_duration_seconds_count{kind=\"media\"}"),
        1.0
    );
    let lasted = value("mediagate_transport_duration_seconds_sum{kind=\"media\"}");
    assert!(
        lasted > 0.0 && lasted <= call_took,
        "the call took {call_took} s here to end, {lasted} s by the metrics"
    );
    let closes: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("mediagate_closes_total"))
        .collect();
    assert_eq!(closes.len(), 2, "{closes:?}");
    assert_eq!(
        value("mediagate_closes_total{code=\"1000\"}"),
        1.0,
        "the call"
    );
    let (sent, _) = common::read_wav(&sample("hello-16k.wav"));
    assert_eq!(
        value("mediagate_audio_received_bytes_total"),
        (sent.len() * 2) as f64
    );
    assert_eq!(
        value("mediagate_frames_received_total"),
        report.frames_sent as f64
    );
    // Each callback timed: as many as wav had frames and events, adding up to its busy time.
    let callbacks = value("mediagate_processor_callback_duration_seconds_count{processor=\"wav\"}");
    assert!(
        callbacks >= report.frames_sent as f64,
        "{callbacks} callbacks"
    );
    let timed = value("mediagate_processor_callback_duration_seconds_sum{processor=\"wav\"}");
    assert!(
        (timed - busy).abs() < 1e-3,
        "{timed} s against {busy} s busy"
    );
    // Every frame of the tone the pacer sent was timed against its tick.
    let played = value("mediagate_playback_frames_total");
    assert!(played > 0.0);
    assert_eq!(value("mediagate_playback_lag_seconds_count"), played);
    // What went back to the emulator, counted as it saw it.
    let back = report.messages_received_from_gateway.audio_data;
    assert!(back > 0);
    assert_eq!(value("mediagate_frames_sent_total"), back as f64);
    assert_eq!(
        value("mediagate_audio_sent_bytes_total"),
        (report.outbound.samples * 2) as f64
    );
    assert_eq!(
        value("mediagate_stop_audio_sent_total"),
        report.messages_received_from_gateway.stop_audio as f64
    );

    // The process, as every Prometheus client reports it.
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_cpu_seconds_total") > 0.0);
    assert!(value("process_open_fds") >= 3.0);
    assert!(value("process_threads") >= 2.0);

    let (status, printed) = promtool_check(&text).await;
    assert!(
        status.success() && printed.trim().is_empty(),
        "promtool check metrics: {status}\n{printed}\non:\n{text}"
    );

    // The sample alert rules watch series the gateway has.
    let rules = std::fs::read_to_string(sample("prometheus/alerts.yml")).unwrap();
    let expressions: String = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let watched = series_named_in(&expressions);
    assert!(watched.len() >= 4, "{watched:?}");
    for name in watched {
        assert!(
            text.contains(&name),
            "alerts.yml watches {name}, which /metrics lacks"
        );
    }
    gateway.stop().await;
}

/// The `mediagate_*` series an expression file names.
fn series_named_in(text: &str) -> std::collections::BTreeSet<String> {
    text.match_indices("mediagate_")
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// Runs promtool with `args`; panics with what it said unless it succeeded.
fn promtool(args: &[&std::ffi::OsStr]) -> String {
    let output = std::process::Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool: {e}; install Debian's `prometheus` package (or run .ci/run)")
        });
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "promtool {args:?}: {said}");
    said
}

#[test]
fn the_sample_scrape_config_and_alert_rules_pass_promtool() {
    let dir = sample("prometheus");
    let rules = dir.join("alerts.yml");
    let said = promtool(&["check".as_ref(), "rules".as_ref(), rules.as_os_str()]);
    assert!(said.contains("SUCCESS: 4 rules found"), "{said}");
    // Each alert fires on the series that should fire it, and not on the others.
    let tests = dir.join("alerts.test.yml");
    let said = promtool(&["test".as_ref(), "rules".as_ref(), tests.as_os_str()]);
    assert!(said.contains("SUCCESS"), "{said}");
    // The scrape config, with its token file where this machine has one.
    let scratch = tempfile::tempdir().unwrap();
    let token = scratch.path().join("token");
    std::fs::write(&token, "a-token-for-promtool-0123456789").unwrap();
    let config = std::fs::read_to_string(dir.join("prometheus.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/mediagate-admin-token",
            token.to_str().unwrap(),
        );
    assert!(config.contains(token.to_str().unwrap()));
    std::fs::write(scratch.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(&rules, scratch.path().join("alerts.yml")).unwrap();
    let said = promtool(&[
        "check".as_ref(),
        "config".as_ref(),
        scratch.path().join("prometheus.yml").as_os_str(),
    ]);
    assert!(said.contains("SUCCESS: 1 rule files found"), "{said}");
}
