//! `prom-metrics-adapter demo`: the quick start. Starts a local Prometheus with generated
//! samples and serves the embedded demo rules from it in standalone mode.

use std::fmt::Write as _;

/// The rules the demo serves.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.yaml");

/// Pods of the demo and their request rates per second.
pub const DEMO_PODS: &[(&str, f64)] = &[("web-1", 2.0), ("web-2", 4.0), ("web-3", 6.0)];

/// An HPA on the demo's `jobs` queue, for `simulate`.
pub const DEMO_HPA: &str = include_str!("../../config/hpa/demo-hpa.yaml");

/// The `jobs` queue's backlog at `t`: 3,000 jobs from 3 to 8 minutes after `from`, else none
/// (a spike for `simulate` to replay).
pub fn jobs_backlog(from: i64, t: i64) -> u32 {
    if (from + 180..from + 480).contains(&t) {
        3000
    } else {
        0
    }
}

/// OpenMetrics samples every 15 s from `from` to `to` (Unix seconds): request counters and
/// in-flight gauges for [`DEMO_PODS`] in namespace `default`, and three queue lengths, one of
/// which (`jobs`) spikes ([`jobs_backlog`]).
pub fn demo_samples(from: i64, to: i64) -> String {
    let mut out = String::new();
    out.push_str("# TYPE flask_http_request counter\n");
    for t in (from..=to).step_by(15) {
        for (pod, rate) in DEMO_PODS {
            let v = (t - from) as f64 * rate;
            let _ = writeln!(
                out,
                "flask_http_request_total{{namespace=\"default\",pod=\"{pod}\",method=\"GET\"}} {v} {t}"
            );
        }
    }
    out.push_str("# TYPE http_requests_in_flight gauge\n");
    for t in (from..=to).step_by(15) {
        for (i, (pod, _)) in DEMO_PODS.iter().enumerate() {
            let _ = writeln!(
                out,
                "http_requests_in_flight{{namespace=\"default\",pod=\"{pod}\"}} {} {t}",
                (i + 1) * 3
            );
        }
    }
    out.push_str("# TYPE queue_length gauge\n");
    for t in (from..=to).step_by(15) {
        for (queue, len) in [
            ("orders", 120),
            ("emails", 7),
            ("jobs", jobs_backlog(from, t)),
        ] {
            let _ = writeln!(
                out,
                "queue_length{{namespace=\"default\",queue=\"{queue}\"}} {len} {t}"
            );
        }
    }
    out.push_str("# EOF\n");
    out
}

/// The `simulate` command that replays the demo's queue spike, for a demo whose samples start at
/// `from` (Unix seconds), against `prometheus_url`: the first 15 minutes, the demo HPA as it is
/// and with a 900 % scale-up policy overlaid.
pub fn simulate_args(prometheus_url: &str, from: i64, plot: &str) -> Vec<String> {
    let time = |t: i64| crate::api::format_timestamp(t as f64);
    [
        "simulate",
        "--config",
        "config/demo.yaml",
        "--hpa",
        "config/hpa/demo-hpa.yaml",
        "--prometheus-url",
        prometheus_url,
        "--from",
        &time(from),
        "--to",
        &time(from + 15 * 60),
        "--what-if",
        r#"behavior.scaleUp.policies=[{"type":"Percent","value":900,"periodSeconds":15}]"#,
        "--plot",
        plot,
    ]
    .map(String::from)
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpa::{ControllerSettings, parse_manifest};

    #[test]
    fn the_demo_hpa_reads_and_its_queue_spikes() {
        let hpa = parse_manifest(DEMO_HPA, &[], &ControllerSettings::default()).unwrap();
        assert_eq!(hpa.metrics[0].label(), "queue_length");
        assert_eq!(jobs_backlog(0, 179), 0);
        assert_eq!(jobs_backlog(0, 180), 3000);
        assert_eq!(jobs_backlog(0, 480), 0);
        let samples = demo_samples(0, 600);
        assert!(samples.contains("queue_length{namespace=\"default\",queue=\"jobs\"} 3000 180"));
        let args = simulate_args("http://p", 0, "x.svg");
        assert_eq!(args[args.len() - 1], "x.svg");
        assert!(args.contains(&"1970-01-01T00:15:00Z".to_string()));
    }
}
