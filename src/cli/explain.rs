//! `prom-metrics-adapter explain`: one API request taken apart: which rule matched and why (or
//! the nearest candidates when none did), the PromQL rendered, Prometheus' raw answer, the JSON
//! the server returns, and with `--hpa` what the HPA will compute from it.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use clap::Parser;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::flags::{Output, RulesTarget};
use crate::api::{self, AppState, request};
use crate::config;
use crate::discovery::{CustomMetricKey, Discoverer, DiscoverySettings, Registry};
use crate::hpa::explain::{HpaSpec, MetricKind};
use crate::query::QueryResult;
use crate::query::objects::{ListRequest, ObjectLister, SeriesObjectLister};
use crate::rules::query::{ObjectNames, ObjectScope, render_custom, render_external};
use crate::rules::{self, RestMapper};

/// Explains one request against a live Prometheus (standalone semantics: `*` resolves to the
/// objects named in the series).
#[derive(Debug, Parser)]
#[command(name = "prom-metrics-adapter explain")]
pub struct ExplainArgs {
    /// The rules file, Prometheus and look-back (Prometheus is only contacted by `check` when
    /// --prometheus-url is given).
    #[command(flatten)]
    pub target: RulesTarget,
    /// Simulate an HPA: `type=AverageValue,target=100,current=3,min=1,max=10[,tolerance=0.1][,metric=Pods|Object|External]`.
    #[arg(long)]
    pub hpa: Option<HpaSpec>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// The API path with its query string, for example
    /// `/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/http_requests?labelSelector=app%3Dweb`.
    pub path: String,
}

/// Runs `explain`; returns the exit code.
pub async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let args = match ExplainArgs::try_parse_from(&args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return Ok(e.exit_code());
        }
    };
    let raw = config::load_file(&args.target.config)?;
    let mapper = RestMapper::standalone();
    let compiled = rules::compile(&raw, &mapper).map_err(|errors| {
        anyhow::anyhow!(
            "invalid config:\n{}",
            errors
                .iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    // Explaining shows what the backend answers now: nothing shared, nothing stale.
    let queries = Arc::new(crate::query::shared::SharedQueries::new(
        &super::prometheus_settings(&args.target.prometheus),
        Duration::ZERO,
        Duration::ZERO,
    )?);
    let config = Arc::new(ArcSwap::from_pointee(compiled));
    let mapper_swap = Arc::new(ArcSwap::from_pointee(mapper.clone()));
    let registry = Arc::new(ArcSwap::from_pointee(Registry::default()));
    let progress = super::progress_line(args.output == Output::Text);
    let report = Discoverer::new(
        queries.clone(),
        config.clone(),
        mapper_swap.clone(),
        registry.clone(),
        DiscoverySettings {
            relist_interval: Duration::from_secs(600),
            max_age: args.target.metrics_max_age,
        },
    )
    .relist()
    .await;
    if let Some(p) = progress {
        p.abort();
    }
    let objects = ObjectLister::Series(SeriesObjectLister::new(
        queries.clone(),
        args.target.metrics_max_age,
    ));
    let (path, query_string) = match args.path.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (args.path.clone(), None),
    };
    let reg = registry.load_full();
    let mut out = serde_json::Map::new();
    out.insert("request".into(), json!(format!("GET {}", args.path)));
    if !report.failures.is_empty() {
        out.insert(
            "discoveryErrors".into(),
            json!(
                report
                    .failures
                    .iter()
                    .map(|f| format!("{}: {}", f.key.query, f.error))
                    .collect::<Vec<_>>()
            ),
        );
    }
    let mut kind = None;
    let segs = request::segments(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let params =
        request::parse_params(query_string.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = api::unix_now();
    let mut rendered = None;
    let mut backend = None;
    match segs.get(1).map(|s| s.as_ref()) {
        Some(api::custom::GROUP) if segs.len() > 3 => {
            let p =
                api::custom::parse_object_path(&segs[2..]).map_err(|e| anyhow::anyhow!("{e}"))?;
            kind = Some(if p.name == "*" {
                MetricKind::Pods
            } else {
                MetricKind::Object
            });
            let info = mapper.resolve_qualified(&p.resource).cloned();
            let key = info.as_ref().map(|i| CustomMetricKey {
                resource: i.group_resource(),
                namespaced: p.namespace.is_some(),
                metric: p.metric.clone(),
            });
            match (info, key.as_ref().and_then(|k| reg.custom(k))) {
                (Some(info), Some(m)) => {
                    out.insert("matched".into(), json!({
                        "rule": m.rule.label(), "seriesQuery": m.rule.series_query, "series": &*m.series_name, "backend": m.rule.backend_name(),
                        "resourceLabel": m.resource_label.clone().unwrap_or_else(|e| e),
                        "namespaceLabel": m.rule.namespace_label,
                        "problems": m.rule.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    }));
                    if let Ok(label) = &m.resource_label {
                        let ns = p
                            .namespace
                            .as_deref()
                            .zip(m.rule.namespace_label.as_deref())
                            .map(|(n, l)| (l, n));
                        let names = if p.name == "*" {
                            objects
                                .list(ListRequest {
                                    resource: &info,
                                    namespace: ns,
                                    selector: &params.label_selector,
                                    series_name: &m.series_name,
                                    resource_label: label,
                                    backend: m.rule.backend.as_ref(),
                                })
                                .await
                                .unwrap_or_default()
                        } else {
                            vec![p.name.clone()]
                        };
                        out.insert("objects".into(), json!(names));
                        if !names.is_empty() {
                            backend = m.rule.backend.clone();
                            rendered = render_custom(
                                &m.rule,
                                &m.series_name,
                                ObjectScope {
                                    namespace: ns,
                                    resource_label: label,
                                    names: ObjectNames::Listed(&names),
                                },
                                &params.metric_label_selector,
                            )
                            .ok();
                        }
                    }
                }
                (_, _) => {
                    let mut near: Vec<String> = reg
                        .custom_keys()
                        .iter()
                        .filter(|k| {
                            k.metric == p.metric || strsim::levenshtein(&k.metric, &p.metric) <= 3
                        })
                        .map(|k| {
                            format!(
                                "{}/{} ({})",
                                k.resource,
                                k.metric,
                                if k.namespaced {
                                    "namespaced"
                                } else {
                                    "cluster-scoped"
                                }
                            )
                        })
                        .collect();
                    near.truncate(10);
                    out.insert("matched".into(), Value::Null);
                    let hint = reg
                        .custom_hint(&p.metric, None)
                        .map(|h| format!("{h}; "))
                        .unwrap_or_default();
                    out.insert("why".into(), json!(format!(
                        "no rule discovered {}/{} {}: {hint}{}",
                        p.resource, p.metric,
                        if p.namespace.is_some() { "within a namespace" } else { "at cluster scope" },
                        if near.is_empty() { "no similar metric was discovered either; run `check --prometheus-url …` to see what each rule matched".to_string() } else { format!("nearest candidates: {}", near.join(", ")) }
                    )));
                }
            }
        }
        Some(api::external::GROUP) if segs.len() > 3 => {
            kind = Some(MetricKind::External);
            let metric = segs.last().map(|s| s.to_string()).unwrap_or_default();
            let ns = segs.get(4).map(|s| s.to_string());
            let compiled = config.load_full();
            let schedule = compiled.schedule(&metric, ns.as_deref().unwrap_or_default());
            match (schedule, reg.external(&metric)) {
                (Some(s), _) => {
                    out.insert("matched".into(), schedule_explained(s));
                }
                (None, found) => match found {
                    Some(m) => {
                        out.insert("matched".into(), json!({"rule": m.rule.label(), "seriesQuery": m.rule.series_query, "series": &*m.series_name, "backend": m.rule.backend_name(),
                        "namespaced": m.rule.resources.namespaced(), "emptyResult": if m.rule.empty_as_zero { "zero" } else { "empty" }}));
                        let nsm = if m.rule.resources.namespaced() {
                            m.rule.namespace_label.as_deref().zip(ns.as_deref())
                        } else {
                            None
                        };
                        backend = m.rule.backend.clone();
                        rendered =
                            render_external(&m.rule, &m.series_name, nsm, &params.label_selector)
                                .ok();
                    }
                    None => {
                        let near: Vec<&String> = reg
                            .external_names()
                            .iter()
                            .filter(|n| strsim::levenshtein(n, &metric) <= 3)
                            .take(10)
                            .collect();
                        out.insert("matched".into(), Value::Null);
                        out.insert(
                        "why".into(),
                        json!(format!(
                            "no external rule discovered {metric}; {}nearest candidates: {near:?}",
                            reg.external_hint(&metric)
                                .map(|h| format!("{h}; "))
                                .unwrap_or_default()
                        )),
                    );
                    }
                },
            }
        }
        _ => {}
    }
    if let Some(q) = &rendered {
        out.insert("query".into(), json!(q));
        let client = queries.backend(backend.as_ref())?.client().clone();
        out.insert("backend".into(), json!(client.name()));
        let answer = match client.query(q, now).await {
            Ok(QueryResult::Vector(v)) => json!(v.iter().map(|s| json!({"labels": s.labels, "value": s.value.to_string(), "timestamp": s.timestamp})).collect::<Vec<_>>()),
            Ok(QueryResult::Scalar(s)) => json!({"scalar": s.value.to_string()}),
            Ok(other) => json!({"resultType": other.type_name()}),
            Err(e) => json!({"error": e.to_string()}),
        };
        out.insert("prometheusAnswer".into(), answer);
    }
    let state = Arc::new(AppState {
        config,
        registry,
        mapper: mapper_swap,
        queries,
        objects,
        lookups: None,
        fallback: None,
        ready: true.into(),
        draining: Default::default(),
        profiling: None,
    });
    let resp = api::router(state)
        .oneshot(axum::http::Request::get(&args.path).body(axum::body::Body::empty())?)
        .await?;
    let code = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20).await?;
    let body: Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
    out.insert("answer".into(), json!({"code": code, "body": body}));

    if let Some(spec) = &args.hpa {
        let metric = spec.metric.or(kind).unwrap_or(MetricKind::External);
        let values: Vec<f64> = body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["value"].as_str())
            .filter_map(parse_quantity)
            .collect();
        let hpa = match (code, spec.compute(metric, &values)) {
            (200, Ok(r)) => {
                json!({"metric": format!("{metric:?}"), "current": spec.current, "desired": r.desired, "steps": r.steps})
            }
            (200, Err(e)) => {
                json!({"metric": format!("{metric:?}"), "current": spec.current, "desired": spec.current, "steps": [e]})
            }
            (c, _) => {
                json!({"metric": format!("{metric:?}"), "current": spec.current, "desired": spec.current,
                              "steps": [format!("the API answered {c}: the HPA reports an error and keeps {} replicas", spec.current)]})
            }
        };
        out.insert("hpa".into(), hpa);
    }
    let out = Value::Object(out);
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&out)?),
        Output::Text => print_text(&out),
    }
    Ok(if code == 200 { 0 } else { 1 })
}

/// Reads a quantity as the adapter writes them (DecimalSI and BinarySI suffixes).
pub fn parse_quantity(q: &str) -> Option<f64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (s, mult) in SUFFIXES {
        if let Some(n) = q.strip_suffix(s) {
            return n.parse::<f64>().ok().map(|v| v * mult);
        }
    }
    q.parse().ok()
}

fn print_text(out: &Value) {
    println!("{}", out["request"].as_str().unwrap_or_default());
    if let Some(errs) = out["discoveryErrors"].as_array() {
        for e in errs {
            println!("  discovery error: {}", e.as_str().unwrap_or_default());
        }
    }
    match &out["matched"] {
        Value::Null => println!(
            "\nno rule matched: {}",
            out["why"].as_str().unwrap_or_default()
        ),
        m if m["windows"].is_array() => {
            println!(
                "\nmatched {}, a schedule floor in {} (now {}), namespaces: {}",
                m["rule"].as_str().unwrap_or_default(),
                m["timezone"].as_str().unwrap_or_default(),
                m["localTime"].as_str().unwrap_or_default(),
                m["namespaces"]
            );
            for w in m["windows"].as_array().into_iter().flatten() {
                println!(
                    "  {} window {} → {}: {} replicas",
                    if w["active"] == true {
                        "active"
                    } else {
                        "      "
                    },
                    w["start"].as_str().unwrap_or_default(),
                    w["end"].as_str().unwrap_or_default(),
                    w["replicas"]
                );
            }
            println!("  value now: {}", m["value"]);
        }
        m => {
            println!(
                "\nmatched {} (seriesQuery {}), series {}",
                m["rule"].as_str().unwrap_or_default(),
                m["seriesQuery"],
                m["series"].as_str().unwrap_or_default()
            );
            if let Some(b) = m["backend"].as_str().filter(|b| *b != "default") {
                println!("  backend {b}");
            }
            if let Some(l) = m["resourceLabel"].as_str() {
                println!(
                    "  object label {l}, namespace label {}",
                    m["namespaceLabel"]
                );
            }
            for p in m["problems"].as_array().into_iter().flatten() {
                println!("  problem: {}", p.as_str().unwrap_or_default());
            }
        }
    }
    if let Some(objects) = out["objects"].as_array() {
        let names: Vec<&str> = objects.iter().filter_map(Value::as_str).collect();
        println!(
            "  objects: {}",
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    if let Some(q) = out["query"].as_str() {
        println!("\nPromQL:\n  {q}");
        println!("\nPrometheus answered:");
        match &out["prometheusAnswer"] {
            Value::Array(samples) if samples.is_empty() => println!("  (no samples)"),
            Value::Array(samples) => {
                for s in samples {
                    println!(
                        "  {} {}",
                        s["labels"],
                        s["value"].as_str().unwrap_or_default()
                    );
                }
            }
            other => println!("  {other}"),
        }
    }
    println!("\nthe server answers {}:", out["answer"]["code"]);
    println!(
        "{}",
        serde_json::to_string_pretty(&out["answer"]["body"]).unwrap_or_default()
    );
    if let Some(h) = out.get("hpa") {
        println!(
            "\nHPA ({} metric):",
            h["metric"].as_str().unwrap_or_default()
        );
        for s in h["steps"].as_array().into_iter().flatten() {
            println!("  {}", s.as_str().unwrap_or_default());
        }
        println!("HPA: {} → {} replicas", h["current"], h["desired"]);
    }
}

/// A schedule floor taken apart: its zone, each window with whether it is active now, and the
/// value now.
fn schedule_explained(s: &crate::rules::schedule::Schedule) -> Value {
    let now = chrono::Utc::now();
    let state = s.state_at(now);
    json!({
        "rule": s.label(),
        "timezone": s.zone.name(),
        "localTime": now.with_timezone(&s.zone).format("%Y-%m-%d %H:%M %Z").to_string(),
        "namespaces": if s.namespaces.is_empty() { json!("all") } else { json!(s.namespaces) },
        "windows": s.windows.iter().enumerate().map(|(i, w)| json!({
            "start": w.start.as_str(),
            "end": w.end.as_str(),
            "replicas": w.replicas,
            "active": state.as_ref().map(|st| st.active.contains(&i)).unwrap_or(false),
        })).collect::<Vec<_>>(),
        "value": match &state {
            Ok(st) => json!(st.value),
            Err(e) => json!(e.to_string()),
        },
    })
}
