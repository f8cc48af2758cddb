//! A self-contained SVG chart of a sweep: echo latency (p50, p99), or finals latency (p50, p95)
//! for a speech sweep, and gateway CPU against the number of calls. No dependency: a few lines,
//! polylines and labels.

use std::fmt::Write as _;

use crate::BenchReport;
use crate::speech::{FinalsLatency, SpeechReport};

const WIDTH: f64 = 720.0;
const PANEL: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;

/// The chart of `reports` (one point per run, by calls), titled `title`.
pub fn sweep_svg(reports: &[BenchReport], title: &str) -> String {
    let mut points: Vec<&BenchReport> = reports.iter().collect();
    points.sort_by_key(|r| r.calls);
    let max_calls = points.iter().map(|r| r.calls).max().unwrap_or(1).max(1) as f64;
    let ms = |v: Option<u64>| v.map(|v| v as f64 / 1000.0);
    let p50: Vec<(f64, Option<f64>)> = points
        .iter()
        .map(|r| (r.calls as f64, ms(r.latency_us.map(|l| l.p50))))
        .collect();
    let p99: Vec<(f64, Option<f64>)> = points
        .iter()
        .map(|r| (r.calls as f64, ms(r.latency_us.map(|l| l.p99))))
        .collect();
    let cores: Vec<(f64, Option<f64>)> = points
        .iter()
        .map(|r| (r.calls as f64, r.gateway.map(|g| g.cores)))
        .collect();
    two_panels(
        &format!("mediagate bench: {title}"),
        max_calls,
        (
            "echo round trip (ms)",
            &[("p50", "#1f77b4", &p50), ("p99", "#d62728", &p99)],
        ),
        ("gateway CPU (cores)", &[("cores", "#2ca02c", &cores)]),
    )
}

/// The chart of a speech sweep (one point per run, by calls): finals latency after the
/// utterance (p50, p95) and the gateway's cores while streaming, titled `title`.
pub fn speech_sweep_svg(reports: &[SpeechReport], title: &str) -> String {
    let mut points: Vec<&SpeechReport> = reports.iter().collect();
    points.sort_by_key(|r| r.calls);
    let max_calls = points.iter().map(|r| r.calls).max().unwrap_or(1).max(1) as f64;
    let latency = |pick: fn(&FinalsLatency) -> f64| -> Vec<(f64, Option<f64>)> {
        points
            .iter()
            .map(|r| {
                (
                    r.calls as f64,
                    r.finals_latency.as_ref().map(|l| pick(l) / 1e3),
                )
            })
            .collect()
    };
    let (p50, p95) = (latency(|l| l.p50_ms), latency(|l| l.p95_ms));
    let cores: Vec<(f64, Option<f64>)> = points
        .iter()
        .map(|r| (r.calls as f64, r.gateway.map(|g| g.streaming_cores)))
        .collect();
    two_panels(
        &format!("mediagate bench --speech: {title}"),
        max_calls,
        (
            "finals after the end of the utterance (s)",
            &[("p50", "#1f77b4", &p50), ("p95", "#d62728", &p95)],
        ),
        (
            "gateway CPU while streaming (cores)",
            &[("cores", "#2ca02c", &cores)],
        ),
    )
}

type Panel<'a> = (&'a str, &'a [Series<'a>]);

/// An SVG of two panels sharing the calls axis.
fn two_panels(title: &str, max_calls: f64, top: Panel<'_>, bottom: Panel<'_>) -> String {
    let height = 2.0 * PANEL + 110.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="22" font-size="15">{}</text>"#,
        escape(title)
    );
    panel(&mut svg, 40.0, top.0, max_calls, top.1);
    panel(&mut svg, 70.0 + PANEL, bottom.0, max_calls, bottom.1);
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">concurrent calls</text></svg>"#,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        height - 8.0
    );
    svg
}

type Series<'a> = (&'a str, &'a str, &'a [(f64, Option<f64>)]);

fn panel(svg: &mut String, top: f64, label: &str, max_x: f64, series: &[Series<'_>]) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let max_y = series
        .iter()
        .flat_map(|(_, _, s)| s.iter().filter_map(|p| p.1))
        .fold(0.0_f64, f64::max)
        .max(1e-9)
        * 1.1;
    let x = |v: f64| LEFT + v / max_x * plot_w;
    let y = |v: f64| top + PANEL - v / max_y * PANEL;
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#999"/><text x="{LEFT}" y="{}">{}</text>"##,
        top - 4.0,
        escape(label)
    );
    for i in 0..=4 {
        let v = max_y * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end">{v:.2}</text><line x1="{LEFT}" x2="{}" y1="{}" y2="{}" stroke="#eee"/>"##,
            LEFT - 6.0,
            y(v) + 4.0,
            LEFT + plot_w,
            y(v),
            y(v)
        );
        let c = max_x * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{c:.0}</text>"#,
            x(c),
            top + PANEL + 14.0
        );
    }
    for (n, (name, color, points)) in series.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .filter_map(|&(cx, cy)| cy.map(|cy| format!("{:.1},{:.1}", x(cx), y(cy))))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for p in &path {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(svg, r#"<circle cx="{px}" cy="{py}" r="3" fill="{color}"/>"#);
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" fill="{color}">{}</text>"#,
            LEFT + 10.0 + 60.0 * n as f64,
            top + 16.0,
            escape(name)
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
