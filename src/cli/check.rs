//! `prom-metrics-adapter check`: a rules file checked offline and, with `--prometheus-url`,
//! against a live Prometheus (what each rule discovers and why series are dropped).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use serde_json::{Value, json};

use super::flags::{Output, RulesTarget};
use crate::config;
use crate::discovery::{Discoverer, DiscoverySettings, Registry, RuleStats};
use crate::query::PrometheusClient;
use crate::query::shared::SharedQueries;
use crate::rules::backends::BackendSpec;
use crate::rules::lint::{Finding, Level, lint};
use crate::rules::{self, RestMapper};

/// Checks a rules file: strict parse, every regex and template compiled, every query rendered
/// with example arguments and parsed as PromQL, known traps reported. With --prometheus-url,
/// also runs discovery once and reports what each rule matched.
#[derive(Debug, Parser)]
#[command(name = "prom-metrics-adapter check")]
pub struct CheckArgs {
    /// The rules file, Prometheus and look-back (Prometheus is only contacted by `check` when
    /// --prometheus-url is given).
    #[command(flatten)]
    pub target: RulesTarget,
    /// Exit 2 when there are warnings (and no errors).
    #[arg(long)]
    pub strict: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Runs `check`; returns the exit code.
pub async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let matches = match CheckArgs::command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return Ok(e.exit_code());
        }
    };
    let online = matches.value_source("prometheus_url") == Some(ValueSource::CommandLine);
    let args = CheckArgs::from_arg_matches(&matches)?;
    let name = args.target.config.display().to_string();
    let mapper = RestMapper::standalone();
    let mut findings = Vec::new();
    let mut compiled = None;
    match config::load_file(&args.target.config) {
        Err(e) => findings.push(Finding {
            level: Level::Error,
            location: name.clone(),
            message: e.to_string(),
        }),
        Ok(raw) => match rules::compile(&raw, &mapper) {
            Err(errors) => findings.extend(errors.into_iter().map(|e| Finding {
                level: Level::Error,
                location: e.location(),
                message: e.message,
            })),
            Ok(c) => {
                findings.extend(lint(&c, &mapper));
                compiled = Some(c);
            }
        },
    }

    let mut discovery = None;
    if online && let Some(c) = compiled {
        let queries = Arc::new(SharedQueries::new(
            &super::prometheus_settings(&args.target.prometheus),
            Duration::ZERO,
            Duration::ZERO,
        )?);
        findings.extend(unreachable_backends(&queries, &c.backends).await);
        if let Some(interval) = scrape_interval(queries.client()).await
            && args.target.metrics_max_age < interval
        {
            findings.push(Finding {
                level: Level::Warning,
                location: "--metrics-max-age".into(),
                message: format!(
                    "{:?} is shorter than Prometheus' scrape interval ({interval:?}): metrics will appear and disappear between relists",
                    args.target.metrics_max_age
                ),
            });
        }
        let config = Arc::new(ArcSwap::from_pointee(c));
        let registry = Arc::new(ArcSwap::from_pointee(Registry::default()));
        let mut discoverer = Discoverer::new(
            queries,
            config.clone(),
            Arc::new(ArcSwap::from_pointee(mapper.clone())),
            registry.clone(),
            DiscoverySettings {
                relist_interval: Duration::from_secs(600),
                max_age: args.target.metrics_max_age,
            },
        );
        let progress = super::progress_line(args.output == Output::Text);
        let report = discoverer.relist().await;
        if let Some(p) = progress {
            p.abort();
        }
        for f in &report.failures {
            let location = match &f.key.backend {
                Some(b) => format!("seriesQuery {:?} on backend {}", f.key.query, b.name),
                None => format!("seriesQuery {:?}", f.key.query),
            };
            findings.push(Finding {
                level: Level::Error,
                location,
                message: f.error.to_string(),
            });
        }
        let reg = registry.load_full();
        let config = config.load_full();
        let rules: Vec<Value> = config
            .all_rules()
            .zip(reg.custom_stats.iter().chain(reg.external_stats.iter()))
            .map(|(r, s)| {
                let mut report = rule_report(&r.label(), &r.series_query, s);
                report["backend"] = json!(r.backend_name());
                report
            })
            .collect();
        discovery = Some(json!({
            "prometheus": crate::query::prometheus::redacted_url(&args.target.prometheus.prometheus_url),
            "rules": rules,
            "customResources": reg.custom_keys().len(),
            "externalMetrics": reg.external_names().len(),
        }));
    }

    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    let warnings = findings
        .iter()
        .filter(|f| f.level == Level::Warning)
        .count();
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "config": name, "findings": findings, "discovery": discovery,
                "errors": errors, "warnings": warnings,
            }))?
        ),
        Output::Text => print_text(&name, &findings, discovery.as_ref(), errors, warnings),
    }
    Ok(if errors > 0 {
        1
    } else if warnings > 0 && args.strict {
        2
    } else {
        0
    })
}

fn rule_report(label: &str, query: &str, s: &RuleStats) -> Value {
    let examples: HashMap<&str, &String> =
        s.dropped.examples.iter().map(|(k, v)| (*k, v)).collect();
    json!({
        "rule": label, "seriesQuery": query, "series": s.series,
        "dropped": {
            "filtered": s.dropped.filtered, "emptyName": s.dropped.empty_name,
            "noResource": s.dropped.no_resource, "invalidName": s.dropped.invalid_name,
            "examples": examples,
        },
        "metrics": s.metrics, "names": s.names,
    })
}

/// One finding per named backend that cannot be built or does not answer a trivial query.
async fn unreachable_backends(queries: &SharedQueries, specs: &[Arc<BackendSpec>]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        let location = format!("backends[{index}] ({})", spec.name);
        let answer = match queries.backend(Some(spec)) {
            Ok(b) => b
                .client()
                .query("1", crate::api::unix_now())
                .await
                .map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = answer {
            out.push(Finding {
                level: Level::Error,
                location,
                message: format!(
                    "unreachable at {}: {e}",
                    crate::query::prometheus::redacted_url(&spec.url)
                ),
            });
        }
    }
    out
}

/// Prometheus' global scrape interval, from its running configuration.
async fn scrape_interval(client: &PrometheusClient) -> Option<Duration> {
    let yaml = client.config_yaml().await.ok()?;
    let mut in_global = false;
    for line in yaml.lines() {
        if !line.starts_with(' ') {
            in_global = line.starts_with("global:");
            continue;
        }
        if in_global && let Some(v) = line.trim().strip_prefix("scrape_interval:") {
            return crate::duration::parse_prometheus_duration(v.trim()).ok();
        }
    }
    Some(Duration::from_secs(60))
}

fn print_text(
    name: &str,
    findings: &[Finding],
    discovery: Option<&Value>,
    errors: usize,
    warnings: usize,
) {
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let paint = |level: Level| match (level, color) {
        (Level::Error, true) => "\x1b[31merror\x1b[0m  ",
        (Level::Warning, true) => "\x1b[33mwarning\x1b[0m",
        (Level::Info, true) => "\x1b[36minfo\x1b[0m   ",
        (Level::Error, false) => "error  ",
        (Level::Warning, false) => "warning",
        (Level::Info, false) => "info   ",
    };
    println!("{name}");
    for f in findings {
        println!("  {} {}: {}", paint(f.level), f.location, f.message);
    }
    if let Some(d) = discovery {
        println!(
            "\ndiscovery against {}:",
            d["prometheus"].as_str().unwrap_or_default()
        );
        for r in d["rules"].as_array().into_iter().flatten() {
            println!(
                "  {} {}",
                r["rule"].as_str().unwrap_or_default(),
                r["seriesQuery"]
            );
            println!("    series matched: {}", r["series"]);
            let dropped = &r["dropped"];
            for (key, what) in [
                ("filtered", "removed by seriesFilters / name.matches"),
                ("emptyName", "named \"\" by name.as"),
                ("noResource", "no label maps to a resource"),
                ("invalidName", "name not usable in PromQL or a URL"),
            ] {
                let n = dropped[key].as_u64().unwrap_or(0);
                if n > 0 {
                    let example_key = match key {
                        "emptyName" => "empty_name",
                        "noResource" => "no_resource",
                        "invalidName" => "invalid_name",
                        k => k,
                    };
                    println!(
                        "    dropped {n}: {what} (e.g. {})",
                        dropped["examples"][example_key].as_str().unwrap_or("?")
                    );
                }
            }
            let names: Vec<&str> = r["names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let shown: Vec<&str> = names.iter().take(10).copied().collect();
            let more = if names.len() > 10 {
                format!(" … and {} more", names.len() - 10)
            } else {
                String::new()
            };
            println!(
                "    metrics served: {} {}{more}",
                r["metrics"],
                shown.join(", ")
            );
        }
        println!(
            "  API resources served: {} custom, {} external",
            d["customResources"], d["externalMetrics"]
        );
    }
    println!("\n{errors} error(s), {warnings} warning(s)");
}
