//! `simulate` over a 6-hour window at a 15 s step with 3 metrics (a per-pod request rate over 20
//! pods, a queue length, an object's gauge) against a local real Prometheus. Target (issue 14):
//! under 2 s, and no more than one range query per metric. Prints the time and the queries;
//! `cargo bench --bench simulate` (needs the Debian `prometheus` package). Under `cargo test` it
//! replays 30 minutes once as a smoke test.

use std::fmt::Write as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use prom_metrics_adapter::cli::local_prometheus::LocalPrometheus;
use prom_metrics_adapter::cli::simulate::{SimulateArgs, simulate};

const RULES: &str = r#"
rules:
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
- seriesQuery: 'deployment_inflight{namespace!="",deployment!=""}'
  resources: {overrides: {namespace: {resource: namespace}, deployment: {group: apps, resource: deployment}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: 'queue_length{namespace!="",queue!=""}'
  resources: {overrides: {namespace: {resource: namespace}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)'
"#;

const HPA: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: bench}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 40
  metrics:
  - type: Pods
    pods:
      metric: {name: http_requests_per_second}
      target: {type: AverageValue, averageValue: "50"}
  - type: External
    external:
      metric: {name: queue_length, selector: {matchLabels: {queue: orders}}}
      target: {type: AverageValue, averageValue: "100"}
  - type: Object
    object:
      describedObject: {apiVersion: apps/v1, kind: Deployment, name: web}
      metric: {name: deployment_inflight}
      target: {type: Value, value: "40"}
  behavior:
    scaleDown: {policies: [{type: Percent, value: 10, periodSeconds: 60}]}
"#;

/// `hours` of history every 15 s, ending now: a daily-looking load over 20 pods, a queue with
/// bursts, and an in-flight gauge.
fn samples(now: i64, hours: i64) -> String {
    let start = now - hours * 3600 - 600;
    let mut s = String::from("# TYPE http_requests counter\n");
    let mut totals = [0.0f64; 20];
    for t in (start..=now).step_by(15) {
        let phase = (t - start) as f64 / 3600.0;
        for (p, total) in totals.iter_mut().enumerate() {
            *total += 15.0 * (40.0 + 30.0 * (phase + p as f64 / 20.0).sin());
            writeln!(
                s,
                "http_requests_total{{namespace=\"bench\",pod=\"web-{p}\"}} {total} {t}"
            )
            .unwrap();
        }
    }
    s.push_str("# TYPE queue_length gauge\n");
    for t in (start..=now).step_by(15) {
        let burst = if (t / 900) % 4 == 0 { 2500 } else { 150 };
        writeln!(
            s,
            "queue_length{{namespace=\"bench\",queue=\"orders\"}} {burst} {t}"
        )
        .unwrap();
    }
    s.push_str("# TYPE deployment_inflight gauge\n");
    for t in (start..=now).step_by(15) {
        let v = 30.0 + 20.0 * ((t - start) as f64 / 1800.0).cos();
        writeln!(
            s,
            "deployment_inflight{{namespace=\"bench\",deployment=\"web\"}} {v} {t}"
        )
        .unwrap();
    }
    s.push_str("# EOF\n");
    s
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (hours, window, rounds) = if bench { (6, "-6h", 5) } else { (1, "-30m", 1) };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let prom = match LocalPrometheus::start(&samples(now, hours)) {
        Ok(p) => p,
        Err(e) => {
            println!("skipping the simulate benchmark: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    let hpa = dir.path().join("hpa.yaml");
    std::fs::write(&rules, RULES).unwrap();
    std::fs::write(&hpa, HPA).unwrap();
    let args = SimulateArgs::try_parse_from([
        "simulate",
        "--config",
        rules.to_str().unwrap(),
        "--prometheus-url",
        prom.url(),
        "--hpa",
        hpa.to_str().unwrap(),
        "--from",
        window,
        "--step",
        "15s",
    ])
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..rounds {
        let t = Instant::now();
        let sim = rt.block_on(simulate(&args)).expect("simulate");
        times.push(t.elapsed().as_secs_f64());
        last = Some(sim);
    }
    let sim = last.unwrap();
    let metrics = sim.base.hpa.metrics.len();
    assert!(
        sim.range_queries <= metrics,
        "{} range queries for {metrics} metrics",
        sim.range_queries
    );
    assert!(
        sim.base
            .steps
            .iter()
            .all(|s| s.metrics.iter().all(|m| m.error.is_none())),
        "every metric has a value at every sync"
    );
    times.sort_by(f64::total_cmp);
    let changes = sim
        .base
        .steps
        .iter()
        .filter(|s| s.decision.replicas != s.current)
        .count();
    println!(
        "simulate over {window} at a 15 s step ({} syncs, {metrics} metrics, 20 pods): median \
         {:.3} s, max {:.3} s over {rounds} run(s); {} range queries (target: at most one per \
         metric, under 2 s); {changes} replica changes",
        sim.window.steps,
        times[times.len() / 2],
        times[times.len() - 1],
        sim.range_queries,
    );
}
