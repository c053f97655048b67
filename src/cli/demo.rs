//! `prom-metrics-adapter demo`: the quick start. Starts a local Prometheus with generated
//! samples and serves the embedded demo rules from it in standalone mode.

use std::fmt::Write as _;

/// The rules the demo serves.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.yaml");

/// Pods of the demo and their request rates per second.
pub const DEMO_PODS: &[(&str, f64)] = &[("web-1", 2.0), ("web-2", 4.0), ("web-3", 6.0)];

/// OpenMetrics samples every 15 s from `from` to `to` (Unix seconds): request counters and
/// in-flight gauges for [`DEMO_PODS`] in namespace `default`, and two queue lengths.
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
        for (queue, len) in [("orders", 120), ("emails", 7)] {
            let _ = writeln!(
                out,
                "queue_length{{namespace=\"default\",queue=\"{queue}\"}} {len} {t}"
            );
        }
    }
    out.push_str("# EOF\n");
    out
}
