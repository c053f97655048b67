//! The simulation as a table, JSON and CSV.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Run, Simulation};
use crate::api::format_timestamp;
use crate::hpa::Step;
use crate::hpa::spec::{Hpa, Target};

fn time(ms: i64) -> String {
    format_timestamp(ms as f64 / 1000.0)
}

/// A number with at most three decimals and no trailing zeros (`3000`, `0.25`).
pub(super) fn num(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn target_text(t: Target) -> String {
    match t {
        Target::Value(_) => format!("value {}", num(t.as_f64())),
        Target::AverageValue(_) => format!("average {}", num(t.as_f64())),
        Target::Utilization(p) => format!("{p}% of requests"),
    }
}

fn limited_by(step: &Step) -> Vec<&'static str> {
    [step.decision.stabilized, step.decision.limited]
        .into_iter()
        .flatten()
        .map(|l| l.reason())
        .collect()
}

/// What a run amounts to: the figures people compare between two HPAs.
fn summary(run: &Run) -> Value {
    let replicas: Vec<i32> = run.steps.iter().map(|s| s.decision.replicas).collect();
    let changes = run
        .steps
        .iter()
        .filter(|s| s.decision.replicas != s.current)
        .count();
    let limited = run
        .steps
        .iter()
        .filter(|s| s.decision.behavior_limited())
        .count();
    json!({
        "replicaChanges": changes,
        "minReplicas": replicas.iter().min(),
        "maxReplicas": replicas.iter().max(),
        "syncsLimitedByBehavior": limited,
        "finalReplicas": replicas.last(),
    })
}

fn hpa_json(hpa: &Hpa) -> Value {
    json!({
        "name": hpa.name,
        "scaleTargetRef": {
            "apiVersion": hpa.scale_target.api_version,
            "kind": hpa.scale_target.kind,
            "name": hpa.scale_target.name,
        },
        "minReplicas": hpa.bounds.min_replicas,
        "maxReplicas": hpa.bounds.max_replicas,
        "behavior": if hpa.bounds.behavior.is_some() { "behavior (defaults filled in)" } else { "none: legacy max(2 x current, 4) scale-up limit and downscale stabilization" },
        "metrics": hpa.metrics.iter().map(|m| json!({
            "name": m.label(),
            "type": m.kind(),
            "target": target_text(m.target),
        })).collect::<Vec<_>>(),
    })
}

fn steps_json(run: &Run) -> Vec<Value> {
    run.steps
        .iter()
        .map(|s| {
            json!({
                "time": time(s.time),
                "currentReplicas": s.current,
                "metrics": run.hpa.metrics.iter().zip(&s.metrics).map(|(m, v)| json!({
                    "name": m.label(),
                    "type": m.kind(),
                    "target": m.target.as_f64(),
                    "value": v.value,
                    "proposal": v.proposal,
                    "error": v.error,
                })).collect::<Vec<_>>(),
                "desiredReplicas": s.decision.desired,
                "replicas": s.decision.replicas,
                "reason": s.decision.reason,
                "limitedBy": limited_by(s),
            })
        })
        .collect()
}

/// The JSON document: the HPA, the window, the assumptions, the queries, a summary and one
/// object per sync in `steps`; `whatIf` holds the same for the changed HPA.
pub fn json(sim: &Simulation) -> Value {
    let mut out = json!({
        "namespace": sim.namespace,
        "window": {
            "from": time(sim.window.start_ms),
            "to": sim.window.times().last().map(|t| time(*t)),
            "stepSeconds": sim.window.step_ms as f64 / 1000.0,
            "syncs": sim.window.steps,
        },
        "hpa": hpa_json(&sim.base.hpa),
        "assumptions": sim.assumptions,
        "queries": sim.queries.iter().map(|(m, q)| json!({"metric": m, "query": q})).collect::<Vec<_>>(),
        "rangeQueries": sim.range_queries,
        "summary": summary(&sim.base),
        "steps": steps_json(&sim.base),
    });
    if let Some((changes, run)) = &sim.what_if {
        out["whatIf"] = json!({
            "changes": changes,
            "hpa": hpa_json(&run.hpa),
            "summary": summary(run),
            "steps": steps_json(run),
        });
    }
    out
}

fn metric_cell(step: &Step, i: usize) -> String {
    match &step.metrics[i] {
        m if m.value.is_some() => num(m.value.unwrap_or_default()),
        m if m.error.is_some() => "-".into(),
        _ => String::new(),
    }
}

/// One row per sync: time, each metric's value, the replicas before, what the metrics asked
/// for, the replicas after, and why.
pub fn table(sim: &Simulation) -> String {
    let hpa = &sim.base.hpa;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "HPA {}/{} → {} {}, replicas {}..{}, {} syncs every {}s",
        sim.namespace,
        hpa.name,
        hpa.scale_target.kind,
        hpa.scale_target.name,
        hpa.bounds.min_replicas,
        hpa.bounds.max_replicas,
        sim.window.steps,
        num(sim.window.step_ms as f64 / 1000.0)
    );
    for (m, q) in &sim.queries {
        let _ = writeln!(out, "  {m}: {q}");
    }
    for a in &sim.assumptions {
        let _ = writeln!(out, "  assumption: {a}");
    }
    if let Some((changes, _)) = &sim.what_if {
        let _ = writeln!(out, "  what-if: {}", changes.join(", "));
    }
    out.push('\n');
    let mut header = vec!["time".to_string()];
    header.extend(
        hpa.metrics
            .iter()
            .map(|m| format!("{} ({})", m.label(), target_text(m.target))),
    );
    header.extend(["current", "desired", "replicas"].map(String::from));
    if sim.what_if.is_some() {
        header.extend(["what-if desired", "what-if replicas"].map(String::from));
    }
    header.push("reason".into());
    let mut rows = vec![header];
    for (k, s) in sim.base.steps.iter().enumerate() {
        let mut row = vec![time(s.time)];
        row.extend((0..hpa.metrics.len()).map(|i| metric_cell(s, i)));
        row.push(s.current.to_string());
        row.push(
            s.decision
                .desired
                .map(|d| d.to_string())
                .unwrap_or("-".into()),
        );
        row.push(s.decision.replicas.to_string());
        if let Some((_, run)) = &sim.what_if {
            let w = &run.steps[k];
            row.push(
                w.decision
                    .desired
                    .map(|d| d.to_string())
                    .unwrap_or("-".into()),
            );
            row.push(w.decision.replicas.to_string());
        }
        row.push(s.decision.reason.clone());
        rows.push(row);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns - 1)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let s = summary(&sim.base);
    let _ = writeln!(
        out,
        "\n{} replica changes, {}..{} replicas, {} syncs limited by behavior",
        s["replicaChanges"], s["minReplicas"], s["maxReplicas"], s["syncsLimitedByBehavior"]
    );
    if let Some((_, run)) = &sim.what_if {
        let s = summary(run);
        let _ = writeln!(
            out,
            "what-if: {} replica changes, {}..{} replicas, {} syncs limited by behavior",
            s["replicaChanges"], s["minReplicas"], s["maxReplicas"], s["syncsLimitedByBehavior"]
        );
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One row per sync, with a header.
pub fn csv(sim: &Simulation) -> String {
    let hpa = &sim.base.hpa;
    let mut header = vec!["time".to_string()];
    header.extend(hpa.metrics.iter().map(|m| csv_field(&m.label())));
    header.extend(["current", "desired", "replicas", "limited_by", "reason"].map(String::from));
    if sim.what_if.is_some() {
        header.extend(["what_if_desired", "what_if_replicas"].map(String::from));
    }
    let mut out = header.join(",") + "\n";
    for (k, s) in sim.base.steps.iter().enumerate() {
        let mut row = vec![time(s.time)];
        row.extend((0..hpa.metrics.len()).map(|i| s.metrics[i].value.map(num).unwrap_or_default()));
        row.push(s.current.to_string());
        row.push(
            s.decision
                .desired
                .map(|d| d.to_string())
                .unwrap_or_default(),
        );
        row.push(s.decision.replicas.to_string());
        row.push(limited_by(s).join(" "));
        row.push(csv_field(&s.decision.reason));
        if let Some((_, run)) = &sim.what_if {
            let w = &run.steps[k];
            row.push(
                w.decision
                    .desired
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
            );
            row.push(w.decision.replicas.to_string());
        }
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_csv_fields_are_written_compactly_and_safely() {
        assert_eq!(num(3000.0), "3000");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(1.0 / 3.0), "0.333");
        assert_eq!(num(-0.0001), "0");
        assert_eq!(csv_field("a, \"b\""), "\"a, \"\"b\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
