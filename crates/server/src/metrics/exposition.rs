//! The two text formats `/metrics` speaks. prometheus-client writes OpenMetrics 1.0, which
//! Prometheus asks for first. Everything else that reads the endpoint (curl, `promtool check
//! metrics`, older scrapers) gets the Prometheus text format 0.0.4, where a counter's HELP and
//! TYPE lines carry its samples' `_total` name: read as 0.0.4, OpenMetrics' lines would name a
//! metric that has no samples, and every counter would lack its help text.

/// A text format of the exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exposition {
    /// OpenMetrics 1.0.0.
    OpenMetrics,
    /// The Prometheus text format, version 0.0.4.
    Prometheus,
}

impl Exposition {
    /// OpenMetrics when the `Accept` header names it with a quality above zero (Prometheus's
    /// scrapes do), else the Prometheus text format.
    pub(crate) fn negotiate(accept: Option<&str>) -> Self {
        let asks_for_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or_default();
                let refused = parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if asks_for_openmetrics {
            Exposition::OpenMetrics
        } else {
            Exposition::Prometheus
        }
    }

    /// The response's content type.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Exposition::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Rewrites OpenMetrics text as prometheus-client writes it into the Prometheus text format:
/// a counter family's HELP and TYPE name `<family>_total`, an info family becomes the gauge
/// `<family>_info`, `unknown` becomes `untyped`, and the UNIT and EOF lines go. Samples are
/// the same in both.
pub(crate) fn to_prometheus_text(openmetrics: &str) -> String {
    let mut text = String::with_capacity(openmetrics.len());
    // Each family's TYPE line comes after its HELP line: look ahead for it.
    let mut lines = openmetrics.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(comment) = line.strip_prefix("# ") else {
            text.push_str(line);
            text.push('\n');
            continue;
        };
        let (keyword, rest) = comment.split_once(' ').unwrap_or((comment, ""));
        let (family, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        match keyword {
            "HELP" => {
                let kind = lines
                    .peek()
                    .and_then(|next| next.strip_prefix("# TYPE "))
                    .and_then(|next| next.split_once(' '))
                    .filter(|(name, _)| *name == family)
                    .map_or("", |(_, kind)| kind);
                let (name, _) = renamed(family, kind);
                text.push_str(&format!("# HELP {name} {tail}\n"));
            }
            "TYPE" => {
                let (name, kind) = renamed(family, tail);
                text.push_str(&format!("# TYPE {name} {kind}\n"));
            }
            // UNIT and EOF have no counterpart; nothing else is written by the encoder.
            _ => {}
        }
    }
    text
}

/// The 0.0.4 name and type of an OpenMetrics family.
fn renamed(family: &str, kind: &str) -> (String, &'static str) {
    match kind {
        "counter" => (format!("{family}_total"), "counter"),
        "info" => (format!("{family}_info"), "gauge"),
        "gauge" => (family.to_owned(), "gauge"),
        "histogram" => (family.to_owned(), "histogram"),
        "summary" => (family.to_owned(), "summary"),
        _ => (family.to_owned(), "untyped"),
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::metrics::info::Info;
    use prometheus_client::registry::{Registry, Unit};

    use super::*;

    #[test]
    fn prometheus_asks_for_openmetrics_and_the_rest_get_text() {
        // What Prometheus 2.42 sends.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
            version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(
            Exposition::negotiate(Some(prometheus)),
            Exposition::OpenMetrics
        );
        for other in [
            None,
            Some("*/*"),
            Some("text/plain"),
            Some("application/openmetrics-text;q=0, text/plain"),
            Some(""),
        ] {
            assert_eq!(
                Exposition::negotiate(other),
                Exposition::Prometheus,
                "{other:?}"
            );
        }
    }

    #[test]
    fn counters_and_infos_are_named_as_their_samples_and_units_go() {
        let mut registry = Registry::with_prefix("x");
        let counter: Family<[(&str, &str); 1], Counter> = Family::default();
        counter.get_or_create(&[("kind", "a")]).inc_by(3);
        registry.register("frames", "Frames seen", counter);
        let seconds: Counter<f64, std::sync::atomic::AtomicU64> = Counter::default();
        seconds.inc_by(1.5);
        registry.register_with_unit("busy", "Time busy", Unit::Seconds, seconds);
        let gauge: Gauge = Gauge::default();
        gauge.set(-2);
        registry.register("open", "Open now", gauge);
        let histogram = Histogram::new([0.5, 1.0]);
        histogram.observe(0.7);
        registry.register("wait_seconds", "Waits", histogram);
        registry.register("build", "The build", Info::new([("version", "1")]));
        let mut openmetrics = String::new();
        prometheus_client::encoding::text::encode(&mut openmetrics, &registry).unwrap();

        let text = to_prometheus_text(&openmetrics);
        let expected = "\
# HELP x_frames_total Frames seen.
# TYPE x_frames_total counter
x_frames_total{kind=\"a\"} 3
# HELP x_busy_seconds_total Time busy.
# TYPE x_busy_seconds_total counter
x_busy_seconds_total 1.5
# HELP x_open Open now.
# TYPE x_open gauge
x_open -2
# HELP x_wait_seconds Waits.
# TYPE x_wait_seconds histogram
x_wait_seconds_sum 0.7
x_wait_seconds_count 1
x_wait_seconds_bucket{le=\"0.5\"} 0
x_wait_seconds_bucket{le=\"1.0\"} 1
x_wait_seconds_bucket{le=\"+Inf\"} 1
# HELP x_build_info The build.
# TYPE x_build_info gauge
x_build_info{version=\"1\"} 1
";
        assert_eq!(text, expected, "from:\n{openmetrics}");
    }
}
