//! `simulate` against a real Prometheus loaded with generated history: the scenarios of issue 14
//! (a queue backlog spike, an HTTP request-rate step load, a flapping signal) replayed through
//! the HPA algorithm, and the command line's outputs and errors.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use prom_metrics_adapter::cli::local_prometheus::LocalPrometheus;
use prom_metrics_adapter::cli::simulate::{SimulateArgs, Simulation, simulate};
use serde_json::Value;

/// Start of the generated history: two hours ago, on a whole minute.
fn t0() -> i64 {
    static T0: OnceLock<i64> = OnceLock::new();
    *T0.get_or_init(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        (now - 2 * 3600) / 60 * 60
    })
}

/// The queue backlog: 0, then 3,000 messages from +5 min to +15 min, then drained.
fn backlog(t: i64) -> f64 {
    if (t0() + 300..t0() + 900).contains(&t) {
        3000.0
    } else {
        0.0
    }
}

/// Total HTTP load (req/s) of the step-load scenario, shared by 4 recorded pods.
fn http_load(t: i64) -> f64 {
    match t - t0() {
        d if d < 300 => 250.0,
        d if d < 600 => 1200.0,
        d if d < 900 => 3000.0,
        _ => 50.0,
    }
}

/// The flapping signal: a square wave around the target, 2 minutes per level.
fn flapping(t: i64) -> f64 {
    if ((t - t0()).div_euclid(120)) % 2 == 0 {
        480.0
    } else {
        150.0
    }
}

const PODS: [&str; 4] = ["web-a", "web-b", "web-c", "web-d"];

fn history() -> String {
    let times: Vec<i64> = (t0() - 600..=t0() + 3600).step_by(15).collect();
    let mut out = String::new();
    let mut gauge = |name: &str, series: &dyn Fn(i64) -> Vec<(String, f64)>| {
        writeln!(out, "# TYPE {name} gauge").unwrap();
        for &t in &times {
            for (labels, v) in series(t) {
                writeln!(out, "{name}{{{labels}}} {v} {t}").unwrap();
            }
        }
    };
    gauge("queue_messages", &|t| {
        vec![
            ("namespace=\"jobs\",queue=\"work\"".into(), backlog(t)),
            ("namespace=\"jobs\",queue=\"other\"".into(), 99_999.0),
        ]
    });
    gauge("http_requests_per_second", &|t| {
        let mut v: Vec<(String, f64)> = PODS
            .iter()
            .map(|p| {
                (
                    format!("namespace=\"web\",pod=\"{p}\""),
                    http_load(t) / PODS.len() as f64,
                )
            })
            .collect();
        // Not the scale target's pods: another Deployment, and a namesake in another namespace.
        v.push(("namespace=\"web\",pod=\"api-1\"".into(), 10_000.0));
        v.push(("namespace=\"other\",pod=\"web-a\"".into(), 10_000.0));
        v
    });
    // cAdvisor's CPU counter: a quarter of a core per pod of the target (one core in all).
    writeln!(out, "# TYPE container_cpu_usage_seconds counter").unwrap();
    for &t in &times {
        for p in PODS.iter().chain(&["api-1"]) {
            let v = (t - times[0]) as f64 * 0.25;
            writeln!(
                out,
                "container_cpu_usage_seconds_total{{namespace=\"web\",pod=\"{p}\",container=\"app\"}} {v} {t}"
            )
            .unwrap();
        }
    }
    let mut gauge = |name: &str, series: &dyn Fn(i64) -> Vec<(String, f64)>| {
        writeln!(out, "# TYPE {name} gauge").unwrap();
        for &t in &times {
            for (labels, v) in series(t) {
                writeln!(out, "{name}{{{labels}}} {v} {t}").unwrap();
            }
        }
    };
    gauge("kube_deployment_status_replicas", &|_| {
        vec![("namespace=\"web\",deployment=\"web\"".into(), 4.0)]
    });
    gauge("flappy", &|t| {
        vec![("namespace=\"flap\",source=\"x\"".into(), flapping(t))]
    });
    // The demo's samples too (its own series), for the command the demo prints.
    let demo = prom_metrics_adapter::cli::demo::demo_samples(demo_from(), demo_from() + 1200);
    out.push_str(demo.trim_end_matches("# EOF\n"));
    out.push_str("# EOF\n");
    out
}

/// Where the demo's samples start: as for a demo started now.
fn demo_from() -> i64 {
    static FROM: OnceLock<i64> = OnceLock::new();
    *FROM.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            - 15 * 60
    })
}

fn prometheus() -> &'static LocalPrometheus {
    static PROM: OnceLock<LocalPrometheus> = OnceLock::new();
    PROM.get_or_init(|| LocalPrometheus::start(&history()).expect("start Prometheus"))
}

const RULES: &str = r#"
rules:
- seriesQuery: 'http_requests_per_second{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: 'queue_messages{namespace!="",queue!=""}'
  resources: {overrides: {namespace: {resource: namespace}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)'
- seriesQuery: 'flappy{namespace!=""}'
  resources: {overrides: {namespace: {resource: namespace}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>})'
resourceRules:
  cpu:
    containerQuery: 'sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
    nodeQuery: 'sum(rate(node_cpu_seconds_total{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}, node: {resource: node}}}
    containerLabel: container
  memory:
    containerQuery: 'sum(container_memory_working_set_bytes{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
    nodeQuery: 'sum(node_memory_working_set_bytes{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}, node: {resource: node}}}
    containerLabel: container
  window: 1m
"#;

const QUEUE_HPA: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: worker, namespace: jobs}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: worker}
  minReplicas: 1
  maxReplicas: 30
  metrics:
  - type: External
    external:
      metric: {name: queue_messages, selector: {matchLabels: {queue: work}}}
      target: {type: AverageValue, averageValue: "100"}
"#;

/// The files of one test, removed with it.
struct Files {
    dir: tempfile::TempDir,
    written: std::cell::Cell<usize>,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
        Files {
            dir,
            written: std::cell::Cell::new(0),
        }
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn args(&self, hpa: &str, minutes: i64, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "simulate".to_string(),
            "--config".into(),
            self.path("rules.yaml").display().to_string(),
            "--prometheus-url".into(),
            prometheus().url().into(),
            "--hpa".into(),
            {
                // One file per call: a test may prepare several runs before starting them.
                self.written.set(self.written.get() + 1);
                self.write(&format!("hpa-{}.yaml", self.written.get()), hpa)
            },
            "--from".into(),
            t0().to_string(),
            "--to".into(),
            (t0() + minutes * 60).to_string(),
        ]
        .into();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

fn run(hpa: &str, minutes: i64, extra: &[&str]) -> Simulation {
    let files = Files::new();
    let args = SimulateArgs::try_parse_from(files.args(hpa, minutes, extra)).expect("flags");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(simulate(&args))
        .unwrap_or_else(|e| panic!("simulate failed: {e:#}"))
}

/// Replicas after the sync `offset` seconds after t0.
fn replicas_at(steps: &[prom_metrics_adapter::hpa::Step], offset: i64) -> i32 {
    steps
        .iter()
        .find(|s| s.time == (t0() + offset) * 1000)
        .unwrap_or_else(|| panic!("no sync at +{offset}s"))
        .decision
        .replicas
}

/// Seconds after t0 of the first sync at or after `after` whose replicas satisfy `pred`.
fn first_sync(
    steps: &[prom_metrics_adapter::hpa::Step],
    after: i64,
    pred: impl Fn(i32) -> bool,
) -> i64 {
    steps
        .iter()
        .find(|s| s.time >= (t0() + after) * 1000 && pred(s.decision.replicas))
        .map(|s| s.time / 1000 - t0())
        .expect("no such sync")
}

fn series(steps: &[prom_metrics_adapter::hpa::Step], offsets: &[i64]) -> Vec<i32> {
    offsets.iter().map(|o| replicas_at(steps, *o)).collect()
}

const SPIKE: [i64; 5] = [285, 300, 315, 330, 345];

#[test]
fn a_backlog_spike_without_behavior_doubles_each_sync_and_waits_out_the_window() {
    let sim = run(QUEUE_HPA, 30, &[]);
    let steps = &sim.base.steps;
    // The last sync before the spike, then one sync per 15 s: max(2 × current, 4) each time.
    assert_eq!(series(steps, &SPIKE), [1, 4, 8, 16, 30]);
    let spike = steps
        .iter()
        .find(|s| s.time == (t0() + 300) * 1000)
        .unwrap();
    assert_eq!(
        spike.metrics[0].value,
        Some(3000.0),
        "only queue=work counts"
    );
    assert_eq!(spike.decision.desired, Some(30));
    // Drained at +900 (last high recommendation at +885): the legacy window keeps 30 until
    // that recommendation is more than 300 s old.
    assert_eq!(first_sync(steps, 900, |r| r < 30), 885 + 315);
    assert_eq!(replicas_at(steps, 1200), 1);
    assert_eq!(sim.range_queries, 1);
}

#[test]
fn a_backlog_spike_with_an_empty_behavior_follows_the_default_policies() {
    let hpa = format!("{QUEUE_HPA}  behavior: {{}}\n");
    let sim = run(&hpa, 30, &[]);
    assert_eq!(series(&sim.base.steps, &SPIKE), [1, 5, 10, 20, 30]);
    // The 300 s window, then the default 100 % per 15 s: straight to minReplicas.
    assert_eq!(first_sync(&sim.base.steps, 900, |r| r < 30), 885 + 300);
    assert_eq!(replicas_at(&sim.base.steps, 1185), 1);
}

#[test]
fn a_900_percent_policy_reaches_30_within_30_seconds() {
    // As a what-if on the legacy HPA: both replay the same history.
    let sim = run(
        QUEUE_HPA,
        30,
        &[
            "--what-if",
            r#"behavior.scaleUp.policies=[{"type":"Percent","value":900,"periodSeconds":15}]"#,
        ],
    );
    let (_, what_if) = sim.what_if.as_ref().expect("what-if run");
    assert_eq!(series(&what_if.steps, &SPIKE), [1, 10, 30, 30, 30]);
    assert!(first_sync(&what_if.steps, 300, |r| r == 30) - 300 < 30);
    assert_eq!(series(&sim.base.steps, &SPIKE), [1, 4, 8, 16, 30]);
    assert_eq!(sim.range_queries, 1, "the what-if reuses the history");
}

#[test]
fn after_the_window_scale_down_follows_the_policy() {
    let hpa = format!(
        "{QUEUE_HPA}  behavior:\n    scaleDown:\n      policies: [{{type: Pods, value: 10, periodSeconds: 60}}]\n"
    );
    let sim = run(&hpa, 30, &[]);
    let steps = &sim.base.steps;
    let drop = first_sync(steps, 900, |r| r < 30);
    assert_eq!(drop, 885 + 300);
    // 10 pods per 60 s: 20, then 10 a period later, then minReplicas.
    assert_eq!(
        series(steps, &[drop, drop + 45, drop + 60, drop + 120]),
        [20, 20, 10, 1]
    );
    assert!(
        steps
            .iter()
            .any(|s| s.decision.limited.map(|l| l.reason()) == Some("ScaleDownLimit"))
    );
    assert!(
        steps
            .iter()
            .any(|s| s.decision.stabilized.map(|l| l.reason()) == Some("ScaleDownStabilized"))
    );
}

const HTTP_HPA: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 20
  metrics:
  - type: Pods
    pods:
      metric: {name: http_requests_per_second}
      target: {type: AverageValue, averageValue: "100"}
  behavior:
    scaleUp: {policies: [{type: Percent, value: 1000, periodSeconds: 15}]}
    scaleDown: {stabilizationWindowSeconds: 0}
"#;

#[test]
fn an_http_step_load_gives_the_formula_clamped_to_the_bounds() {
    let sim = run(HTTP_HPA, 20, &[]);
    let steps = &sim.base.steps;
    // One sync into each plateau of the load: ceil(load / 100 per pod), within [2, 20].
    let plateaus = [15, 315, 615, 915];
    let expected: Vec<i32> = plateaus
        .iter()
        .map(|o| ((http_load(t0() + o) / 100.0).ceil() as i32).clamp(2, 20))
        .collect();
    assert_eq!(expected, [3, 12, 20, 2]);
    assert_eq!(series(steps, &plateaus), expected);
    // Per-pod values are the recorded total spread over the simulated pods.
    let s = steps
        .iter()
        .find(|s| s.time == (t0() + 315) * 1000)
        .unwrap();
    assert_eq!(s.current, 12);
    assert_eq!(s.metrics[0].value, Some(100.0));
    assert!(
        sim.queries[0]
            .1
            .contains(r#"pod=~"web-a|web-b|web-c|web-d""#),
        "{:?}",
        sim.queries
    );
    assert!(sim.assumptions.iter().any(|a| a.contains("rescaled")));
}

#[test]
fn recorded_replicas_are_fed_back_from_kube_state_metrics() {
    let sim = run(HTTP_HPA, 20, &["--replicas-from-history"]);
    for s in &sim.base.steps {
        assert_eq!(s.current, 4);
        // 4 recorded pods each at a quarter of the load: the metric asks for ceil(load / 100).
        let load = http_load(s.time / 1000);
        assert_eq!(s.metrics[0].value, Some(load / 4.0));
    }
    assert_eq!(sim.base.steps[25].decision.desired, Some(12));
    assert_eq!(sim.range_queries, 2);
}

const FLAP_HPA: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: flap, namespace: flap}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: flap}
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: External
    external:
      metric: {name: flappy}
      target: {type: AverageValue, averageValue: "100"}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 0}
"#;

#[test]
fn a_flapping_signal_flaps_without_a_window_and_not_with_one() {
    let sim = run(
        FLAP_HPA,
        30,
        &[
            "--what-if",
            "behavior.scaleDown.stabilizationWindowSeconds=300",
        ],
    );
    let changes = |steps: &[prom_metrics_adapter::hpa::Step]| {
        steps
            .iter()
            .filter(|s| s.decision.replicas != s.current)
            .count()
    };
    // Without a window the replicas follow every level of the wave: one change per level
    // change, plus the first scale-up from minReplicas.
    let levels: Vec<i64> = (0..=120).map(|k| t0() + k * 15).collect();
    let level_changes = levels
        .windows(2)
        .filter(|w| flapping(w[0]) != flapping(w[1]))
        .count();
    assert_eq!(level_changes, 15);
    assert_eq!(changes(&sim.base.steps), level_changes + 1);
    // With 300 s the highest recommendation of the last 5 minutes always asks for 5: one change.
    let (_, stabilized) = sim.what_if.as_ref().unwrap();
    assert_eq!(changes(&stabilized.steps), 1);
    assert!(
        stabilized
            .steps
            .iter()
            .skip(1)
            .all(|s| s.decision.replicas == 5)
    );
}

fn cli(args: &[String]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_prom-metrics-adapter"))
        .args(args)
        .output()
        .expect("run simulate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn json_csv_table_and_plot_outputs() {
    let files = Files::new();
    let plot = files.path("spike.svg").display().to_string();
    let what_if =
        r#"behavior.scaleUp.policies=[{"type":"Percent","value":900,"periodSeconds":15}]"#;
    let (code, out, err) = cli(&files.args(
        QUEUE_HPA,
        30,
        &["-o", "json", "--plot", &plot, "--what-if", what_if],
    ));
    assert_eq!(code, 0, "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 121);
    let spike = &steps[20];
    let expected_time = k8s_openapi::jiff::Timestamp::from_second(t0() + 300)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    assert_eq!(spike["time"], expected_time);
    assert_eq!(spike["metrics"][0]["name"], "queue_messages");
    assert_eq!(spike["metrics"][0]["value"], 3000.0);
    assert_eq!(spike["desiredReplicas"], 30);
    assert_eq!(spike["replicas"], 4);
    assert_eq!(spike["limitedBy"][0], "ScaleUpLimit");
    assert!(
        spike["reason"]
            .as_str()
            .unwrap()
            .starts_with("queue_messages above target")
    );
    assert_eq!(doc["whatIf"]["steps"][20]["replicas"], 10);
    assert_eq!(doc["rangeQueries"], 1);
    assert!(
        doc["queries"][0]["query"]
            .as_str()
            .unwrap()
            .contains(r#"queue="work""#)
    );
    if let Some(keep) = std::env::var_os("SIMULATE_KEEP_PLOT") {
        // For looking at the picture: `SIMULATE_KEEP_PLOT=/tmp/spike.svg cargo test …`.
        std::fs::copy(&plot, keep).unwrap();
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
    assert!(svg.contains("limited by a policy or stabilization window"));
    assert!(svg.contains("replicas with behavior.scaleUp.policies"));

    let (code, out, err) = cli(&files.args(QUEUE_HPA, 30, &["-o", "csv"]));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "time,queue_messages,current,desired,replicas,limited_by,reason"
    );
    assert_eq!(lines.len(), 122);
    assert!(
        lines[21].starts_with(&format!("{expected_time},3000,1,30,4,ScaleUpLimit,")),
        "{}",
        lines[21]
    );

    let (code, out, err) = cli(&files.args(QUEUE_HPA, 30, &[]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("queue_messages (average 100)"), "{out}");
    assert!(out.contains("assumption: pods are ready"), "{out}");
    let summary = out.lines().last().unwrap();
    assert!(
        summary.starts_with("5 replica changes, 1..30 replicas"),
        "{summary}"
    );
}

#[test]
fn help_states_what_is_left_out_and_the_rescaling_assumption() {
    let (code, out, _) = cli(&["simulate".into(), "--help".into()]);
    assert_eq!(code, 0);
    for words in [
        "pod start-up time",
        "readiness delays",
        "cluster autoscaler",
        "rescaled",
        "kube_deployment_status_replicas",
    ] {
        assert!(out.contains(words), "--help lacks {words:?}:\n{out}");
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let files = Files::new();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            files.args("kind: Deployment\n", 5, &[]),
            "invalid HorizontalPodAutoscaler",
        ),
        (
            files.args(
                &QUEUE_HPA.replace("queue_messages", "queue_mesages"),
                5,
                &[],
            ),
            "no external rule serves queue_mesages",
        ),
        (
            files.args(
                QUEUE_HPA,
                5,
                &["--what-if", "behavior.scaleUp.stabilisationWindowSeconds=0"],
            ),
            "stabilisationWindowSeconds",
        ),
        (files.args(QUEUE_HPA, 5, &["--plot", "x.png"]), "only SVG"),
        (
            files.args(&HTTP_HPA.replace("name: web}", "name: nothing}"), 5, &[]),
            "no pod of the scale target",
        ),
        (
            files.args(QUEUE_HPA, 5, &["--replicas-from-history"]),
            "no kube_deployment_status_replicas",
        ),
        (
            {
                let mut a = files.args(QUEUE_HPA, 5, &[]);
                let i = a.iter().position(|x| x == "--prometheus-url").unwrap();
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                a[i + 1] = format!("http://127.0.0.1:{port}");
                a
            },
            "discovery: listing the series",
        ),
        (
            files.args(QUEUE_HPA, -5, &[]),
            "--from must not be after --to",
        ),
    ];
    for (args, want) in cases {
        let (code, out, err) = cli(&args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: wanted {want:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `matchExpressions` select as `matchLabels` do.
#[test]
fn match_expressions_select_like_match_labels() {
    let hpa = QUEUE_HPA.replace(
        "selector: {matchLabels: {queue: work}}",
        "selector: {matchExpressions: [{key: queue, operator: In, values: [work]}]}",
    );
    let sim = run(&hpa, 10, &[]);
    let by_time: BTreeMap<i64, i32> = sim
        .base
        .steps
        .iter()
        .map(|s| (s.time / 1000 - t0(), s.decision.replicas))
        .collect();
    assert_eq!(by_time[&300], 4);
}

#[test]
fn the_command_the_demo_prints_replays_its_queue_spike() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("demo.svg").display().to_string();
    let mut args =
        prom_metrics_adapter::cli::demo::simulate_args(prometheus().url(), demo_from(), &plot);
    args.extend(["-o".to_string(), "json".to_string()]);
    let out = Command::new(env!("CARGO_BIN_EXE_prom-metrics-adapter"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(&args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let replicas = |steps: &Value, from_sync: usize| -> Vec<i64> {
        (from_sync..from_sync + 5)
            .map(|k| steps[k]["replicas"].as_i64().unwrap())
            .collect()
    };
    // The spike starts 3 minutes in: sync 12 of 15 s.
    assert_eq!(replicas(&doc["steps"], 11), [1, 4, 8, 16, 30]);
    assert_eq!(replicas(&doc["whatIf"]["steps"], 11), [1, 10, 30, 30, 30]);
    assert!(std::fs::metadata(&plot).unwrap().len() > 10_000);
}

const CPU_HPA: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 10
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
"#;

#[test]
fn a_cpu_utilization_hpa_reads_resource_rules_and_the_pod_request() {
    // One core in all; 500m requests at 50 %: 250m per pod, so 4 pods.
    let sim = run(CPU_HPA, 5, &["--pod-request", "cpu=500m"]);
    assert_eq!(series(&sim.base.steps, &[0, 15, 60, 300]), [4, 4, 4, 4]);
    assert!(
        sim.queries[0]
            .1
            .contains("container_cpu_usage_seconds_total"),
        "{:?}",
        sim.queries
    );
    // Without the request there is nothing to divide by: the metric is invalid, nothing moves.
    let sim = run(CPU_HPA, 1, &[]);
    assert!(sim.base.steps.iter().all(|s| s.decision.replicas == 2));
    assert!(
        sim.base.steps[0].decision.reason.contains("--pod-request"),
        "{}",
        sim.base.steps[0].decision.reason
    );
}
