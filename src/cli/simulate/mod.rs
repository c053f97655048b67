//! `prom-metrics-adapter simulate`: replays what the adapter would have answered over a past
//! window through the HPA controller's algorithm ([`crate::hpa`]), sync by sync, and shows
//! what the HPA would have done: a table, JSON, CSV, and a picture, with `--what-if` edits of
//! the HPA overlaid on the same history.

mod history;
mod output;
mod plot;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use clap::{Parser, ValueEnum};

pub use history::{PodFilter, Window};

use super::flags::{PrometheusArgs, go_duration};
use crate::config;
use crate::discovery::{Registry, SeriesKey};
use crate::hpa::replay::{ReplayInput, replay};
use crate::hpa::spec::{Hpa, Source, Target, parse_manifest};
use crate::hpa::{ControllerSettings, Observed, Step};
use crate::query::shared::SharedQueries;
use crate::rules::selector::Selector;
use crate::rules::{self, RestMapper};

const ABOUT: &str = "Replays Prometheus history through the HPA controller's algorithm: what an HPA \
would have done over a past window, and what a changed one (--what-if) would have done";

const LONG_ABOUT: &str = "Replays Prometheus history through the HPA controller's algorithm.

For every sync period (--step) between --from and --to, each metric of the HPA is what the adapter \
would have answered at that moment (the rule's PromQL, evaluated with one range query per metric), \
and the decision is the one Kubernetes 1.36's controller makes: tolerance (including behavior's \
per-direction tolerance), the highest of several metrics, invalid metrics, minReplicas/maxReplicas, \
the legacy max(2 x current, 4) scale-up limit of an HPA without behavior, and behavior in full \
(stabilization windows with their recommendation history, Pods/Percent policies over periodSeconds, \
selectPolicy Max/Min/Disabled).

Assumption: the pod count fed back at each sync is the simulated one. Per-pod values (Pods metrics, \
CPU and memory) are rescaled: each sync's recorded total is shared evenly by the simulated pods. \
External and Object values are used as recorded (a queue's length cannot be known for another pod \
count). With --replicas-from-history the recorded replica count (kube_deployment_status_replicas) is \
fed back instead, and per-pod values are used as recorded.

Left out: pod start-up time and readiness delays (a pod the HPA asks for counts from the next sync), \
the CPU initialization period, the cluster autoscaler (nodes are always available), and controller \
restarts (its memory starts empty at --from). Without a cluster, the pods of the scale target are \
those named <scaleTargetRef.name>-... (or --pod-selector, matched against the series' labels).";

/// Table, JSON or CSV.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One row per sync, for people.
    Table,
    /// An object whose `steps` array holds one object per sync.
    Json,
    /// One row per sync, for spreadsheets.
    Csv,
}

/// The flags of `simulate`.
#[derive(Debug, Parser)]
#[command(name = "prom-metrics-adapter simulate", about = ABOUT, long_about = LONG_ABOUT)]
pub struct SimulateArgs {
    /// The rules file (prometheus-adapter format).
    #[arg(long)]
    pub config: PathBuf,
    /// How to reach Prometheus.
    #[command(flatten)]
    pub prometheus: PrometheusArgs,
    /// The HorizontalPodAutoscaler: an autoscaling/v2 manifest, YAML or JSON.
    #[arg(long)]
    pub hpa: PathBuf,
    /// Start of the window: a Go duration relative to now (`-6h`), an RFC 3339 time, or Unix
    /// seconds.
    #[arg(long, allow_hyphen_values = true)]
    pub from: String,
    /// End of the window, in the same forms, or `now`.
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    pub to: String,
    /// The HPA sync period (`--horizontal-pod-autoscaler-sync-period`).
    #[arg(long, default_value = "15s", value_parser = go_duration)]
    pub step: Duration,
    /// The HPA's namespace (default: the manifest's, else `default`).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Which pods belong to the scale target, as a label selector on the series' labels
    /// (default: pods named `<scaleTargetRef.name>-…`).
    #[arg(long)]
    pub pod_selector: Option<String>,
    /// Feed back the replica count Prometheus recorded (kube-state-metrics'
    /// `kube_deployment_status_replicas`) instead of the simulated one.
    #[arg(long)]
    pub replicas_from_history: bool,
    /// Replicas before the first sync (default: minReplicas).
    #[arg(long)]
    pub initial_replicas: Option<i32>,
    /// Change the HPA (`path=value`, paths relative to `spec`, repeatable) and overlay the
    /// changed HPA on the same history: `behavior.scaleUp.stabilizationWindowSeconds=0`,
    /// `metrics[0].target.averageValue=50`.
    #[arg(long = "what-if", value_name = "PATH=VALUE")]
    pub what_if: Vec<String>,
    /// Each pod's request for Utilization targets, `cpu=500m,memory=1Gi`.
    #[arg(long)]
    pub pod_request: Option<String>,
    /// The controller's `--horizontal-pod-autoscaler-tolerance`.
    #[arg(long, default_value_t = 0.1)]
    pub tolerance: f64,
    /// The controller's `--horizontal-pod-autoscaler-downscale-stabilization`.
    #[arg(long, default_value = "5m", value_parser = go_duration)]
    pub downscale_stabilization: Duration,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Draw replicas over time against each metric and its target into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// The replay of one HPA.
#[derive(Clone, Debug)]
pub struct Run {
    /// The HPA replayed.
    pub hpa: Hpa,
    /// One entry per sync.
    pub steps: Vec<Step>,
}

/// A finished simulation.
#[derive(Clone, Debug)]
pub struct Simulation {
    /// The HPA's namespace.
    pub namespace: String,
    /// The syncs.
    pub window: Window,
    /// Per metric label, the PromQL the server renders for it.
    pub queries: Vec<(String, String)>,
    /// The HPA as given.
    pub base: Run,
    /// The HPA with `--what-if` edits, when any, and the edits.
    pub what_if: Option<(Vec<String>, Run)>,
    /// Range queries sent to Prometheus.
    pub range_queries: usize,
    /// What the replay assumed, in words.
    pub assumptions: Vec<String>,
}

/// A time flag: `now`, a Go duration relative to now, Unix seconds, or RFC 3339.
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_ms);
    }
    if let Ok(nanos) = crate::duration::parse_go_duration(s) {
        return Ok(now_ms + nanos / 1_000_000);
    }
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    s.parse::<k8s_openapi::jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            format!("{s:?}: use `now`, a duration such as -6h, an RFC 3339 time or Unix seconds")
        })
}

fn pod_requests(spec: Option<&str>) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for part in spec
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
    {
        let (name, q) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("--pod-request {part:?}: expected cpu=500m or memory=1Gi"))?;
        let name = name.trim();
        if !matches!(name, "cpu" | "memory") {
            bail!("--pod-request {name:?}: only cpu and memory");
        }
        let milli = crate::hpa::quantity::parse_milli(q)
            .map_err(|e| anyhow!("--pod-request {name}: {e}"))?;
        if milli <= 0 {
            bail!("--pod-request {name} must be greater than 0");
        }
        out.insert(name.to_string(), milli);
    }
    Ok(out)
}

/// Runs a simulation.
pub async fn simulate(args: &SimulateArgs) -> anyhow::Result<Simulation> {
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .context("reading the clock")?
        .as_millis() as i64;
    let from = parse_time(&args.from, now_ms).map_err(|e| anyhow!("--from {e}"))?;
    let to = parse_time(&args.to, now_ms).map_err(|e| anyhow!("--to {e}"))?;
    // Whole seconds: sync times print as RFC 3339 seconds and line up with scrapes.
    let window = Window::new(
        from.div_euclid(1000) * 1000,
        to,
        args.step.as_millis() as i64,
    )?;
    if !(0.0..1.0).contains(&args.tolerance) {
        bail!("--tolerance must be at least 0 and below 1");
    }
    let settings = ControllerSettings {
        tolerance: args.tolerance,
        downscale_stabilization_seconds: i32::try_from(args.downscale_stabilization.as_secs())
            .unwrap_or(i32::MAX),
    };
    let text = std::fs::read_to_string(&args.hpa)
        .with_context(|| format!("reading {}", args.hpa.display()))?;
    let base = parse_manifest(&text, &[], &settings)
        .map_err(|e| anyhow!("{}: {e}", args.hpa.display()))?;
    let changed = if args.what_if.is_empty() {
        None
    } else {
        Some(
            parse_manifest(&text, &args.what_if, &settings)
                .map_err(|e| anyhow!("{} with --what-if: {e}", args.hpa.display()))?,
        )
    };
    let requests = pod_requests(args.pod_request.as_deref())?;
    let namespace = args
        .namespace
        .clone()
        .or_else(|| base.namespace.clone())
        .unwrap_or_else(|| "default".into());
    let pods = match &args.pod_selector {
        Some(s) => PodFilter::Selector(
            Selector::parse(s).map_err(|e| anyhow!("--pod-selector {s:?}: {e}"))?,
        ),
        None => PodFilter::NamePrefix(format!("{}-", base.scale_target.name)),
    };

    let raw = config::load_file(&args.config)?;
    let mapper = RestMapper::standalone();
    let compiled = rules::compile(&raw, &mapper).map_err(|errors| {
        anyhow!(
            "invalid config:\n{}",
            errors
                .iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    // Nothing shared between the replayed steps: every answer is the backend's at that time.
    let queries = SharedQueries::new(
        &super::prometheus_settings(&args.prometheus),
        Duration::ZERO,
        Duration::ZERO,
    )?;
    // Discovery over the window rather than the last --metrics-max-age: the metrics of the
    // past are what is replayed, even if their series have gone since.
    let (start_s, end_s) = (
        window.start_ms as f64 / 1000.0,
        window.times().last().copied().unwrap_or(window.start_ms) as f64 / 1000.0,
    );
    let mut listings: Vec<SeriesKey> = compiled
        .all_rules()
        .filter(|r| !r.series_query.trim().is_empty())
        .map(|r| SeriesKey::of(r))
        .collect();
    listings.dedup();
    let mut answers = HashMap::new();
    for key in listings {
        if answers.contains_key(&key) {
            continue;
        }
        let set = queries
            .backend(key.backend.as_ref())?
            .client()
            .series(&key.query, start_s, end_s)
            .await
            .with_context(|| {
                format!(
                    "discovery: listing the series of {} on backend {}",
                    key.query,
                    key.backend_name()
                )
            })?;
        answers.insert(key, Arc::new(set));
    }
    let registry = Registry::build(&compiled, &mapper, &answers, SystemTime::now());

    let cx = history::Inputs {
        queries: &queries,
        config: &compiled,
        mapper: &mapper,
        registry: &registry,
        namespace: &namespace,
        pods: &pods,
        window,
    };
    let mut calls = history::Calls::default();
    let mut hpas = vec![&base];
    hpas.extend(changed.as_ref());
    let fetched = history::fetch(&cx, &hpas, &mut calls).await?;
    let recorded = if args.replicas_from_history {
        Some(history::recorded_replicas(&cx, &mut calls, &base.scale_target).await?)
    } else {
        None
    };
    let initial = args
        .initial_replicas
        .or_else(|| {
            recorded
                .as_ref()
                .and_then(|r| r.iter().flatten().next().copied())
        })
        .unwrap_or(base.bounds.min_replicas);
    if initial < 0 {
        bail!("--initial-replicas must not be negative");
    }

    let times = window.times();
    let run_one = |hpa: &Hpa| -> anyhow::Result<Run> {
        let observed: Vec<Vec<Observed>> = hpa
            .metrics
            .iter()
            .map(|m| fetched[&history::source_key(&m.source)].observed.clone())
            .collect();
        let reqs: Vec<Option<i64>> = hpa
            .metrics
            .iter()
            .map(|m| match &m.source {
                Source::Resource { name, .. } => requests.get(name).copied(),
                _ => None,
            })
            .collect();
        let steps = replay(
            hpa,
            settings,
            &ReplayInput {
                times: &times,
                observed: &observed,
                recorded_replicas: recorded.as_deref(),
                initial_replicas: initial,
                requests: &reqs,
            },
        )?;
        Ok(Run {
            hpa: hpa.clone(),
            steps,
        })
    };
    let base_run = run_one(&base)?;
    let what_if = match &changed {
        Some(hpa) => Some((args.what_if.clone(), run_one(hpa)?)),
        None => None,
    };

    let mut queries = Vec::new();
    for hpa in &hpas {
        for m in &hpa.metrics {
            let q = fetched[&history::source_key(&m.source)].query.clone();
            let entry = (m.label(), q);
            if !queries.contains(&entry) {
                queries.push(entry);
            }
        }
    }
    let per_pod = hpas.iter().flat_map(|h| &h.metrics).any(|m| {
        matches!(m.source, Source::Pods { .. } | Source::Resource { .. })
            || matches!(m.target, Target::Utilization(_))
    });
    let mut assumptions = vec![
        "pods are ready, and share the load, from the sync after the HPA asks for them: no \
         start-up time, readiness delay or CPU initialization period; the cluster autoscaler \
         always has room"
            .to_string(),
        "the controller's memory (recommendations, scale events) starts empty at the first sync"
            .to_string(),
    ];
    if recorded.is_some() {
        assumptions.push(
            "the replica count fed back is the one Prometheus recorded; per-pod values are used \
             as recorded"
                .into(),
        );
    } else {
        assumptions.push(format!(
            "the replica count fed back is the simulated one, starting from {initial}"
        ));
        if per_pod {
            assumptions.push(
                "per-pod values are rescaled: each sync's recorded total is shared evenly by the \
                 simulated pods"
                    .into(),
            );
        }
    }
    assumptions.push(match &pods {
        PodFilter::Selector(s) => {
            format!("the scale target's pods are those whose series match {s:?}")
        }
        PodFilter::NamePrefix(p) => format!("the scale target's pods are those named {p}…"),
    });
    Ok(Simulation {
        namespace,
        window,
        queries,
        base: base_run,
        what_if,
        range_queries: calls.range_queries,
        assumptions,
    })
}

/// Runs `simulate`; returns the exit code.
pub async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let args = match SimulateArgs::try_parse_from(&args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return Ok(e.exit_code());
        }
    };
    if let Some(path) = &args.plot
        && path.extension().and_then(|e| e.to_str()) != Some("svg")
    {
        bail!(
            "--plot {}: only SVG is written (a PNG needs a font this binary does not carry); \
             name the file .svg and convert it, for example with rsvg-convert",
            path.display()
        );
    }
    let sim = simulate(&args).await?;
    let text = match args.output {
        Format::Table => output::table(&sim),
        Format::Json => serde_json::to_string_pretty(&output::json(&sim))? + "\n",
        Format::Csv => output::csv(&sim),
    };
    print!("{text}");
    if let Some(path) = &args.plot {
        plot::svg(&sim, path).with_context(|| format!("drawing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_relative_absolute_or_unix() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("-6h", now), Ok(now - 6 * 3600 * 1000));
        assert_eq!(parse_time("-1h30m", now), Ok(now - 5400 * 1000));
        assert_eq!(parse_time("1700000000", now), Ok(1_700_000_000_000));
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now),
            Ok(1_700_000_000_000)
        );
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn pod_requests_parse_as_thousandths() {
        let r = pod_requests(Some("cpu=500m,memory=1Gi")).unwrap();
        assert_eq!(r["cpu"], 500);
        assert_eq!(r["memory"], 1_073_741_824_000);
        assert!(pod_requests(Some("gpu=1")).is_err());
        assert!(pod_requests(Some("cpu")).is_err());
        assert!(pod_requests(Some("cpu=0")).is_err());
        assert!(pod_requests(None).unwrap().is_empty());
    }
}
