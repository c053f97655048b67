//! The `check` subcommand, offline and against a real Prometheus with fixture data.

mod common;

use std::process::Command;

use common::prometheus;
use serde_json::Value;

fn check(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_prom-metrics-adapter"))
        .arg("check")
        .args(args)
        .output()
        .expect("run check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn path(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_chart_defaults_warn_about_the_resource_explosion_and_report_counts() {
    let (code, out, err) = check(&[
        "--config",
        &path("tests/fixtures/compat/chart-default-rules.yaml"),
        "--prometheus-url",
        prometheus().url(),
        "--metrics-max-age=20m",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("also maps common labels to resources"),
        "{out}"
    );
    assert!(out.contains("discovery against"), "{out}");
    assert!(out.contains("series matched:"), "{out}");
    assert!(out.contains("API resources served:"), "{out}");
    // cAdvisor series become pod metrics named after the series.
    assert!(out.contains("pods/cpu_usage"), "{out}");
    assert!(out.contains("pods/memory_working_set_bytes"), "{out}");
    let (code, _, _) = check(&[
        "--config",
        &path("tests/fixtures/compat/chart-default-rules.yaml"),
        "--strict",
    ]);
    assert_eq!(code, 2, "--strict turns warnings into exit 2");
}

#[test]
fn rules_that_cannot_work_are_errors_and_json_parses_back() {
    let (code, out, err) = check(&[
        "--config",
        &path("tests/fixtures/custom-rules.yaml"),
        "-o",
        "json",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON output");
    let findings = report["findings"].as_array().unwrap();
    let has = |level: &str, loc: &str, word: &str| {
        findings.iter().any(|f| {
            f["level"] == level
                && f["location"].as_str().unwrap().starts_with(loc)
                && f["message"].as_str().unwrap().contains(word)
        })
    };
    assert!(has("error", "rules[6].name.as", "1_rate"), "{out}");
    assert!(has("warning", "rules[1].metricsQuery", "summed"), "{out}");
    assert_eq!(
        report["errors"],
        findings.iter().filter(|f| f["level"] == "error").count()
    );
}

#[test]
fn discovery_reports_dropped_series_with_an_example_and_the_names_produced() {
    let (code, out, err) = check(&[
        "--config",
        &path("config/examples/http-requests-per-second.yaml"),
        "--prometheus-url",
        prometheus().url(),
        "--metrics-max-age=20m",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let rule = &report["discovery"]["rules"][0];
    assert!(rule["series"].as_u64().unwrap() > 0, "{rule}");
    let names: Vec<&str> = rule["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"pods/flask_http_request_per_second"),
        "{names:?}"
    );
}

#[test]
fn a_broken_file_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.yaml");
    std::fs::write(&p, "rules:\n- seriesQuery: up\n  metricsQuerry: x\n").unwrap();
    let (code, out, _) = check(&["--config", p.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("metricsQuerry") && out.contains("line 3"),
        "{out}"
    );
}

#[test]
fn credentials_and_query_strings_of_the_prometheus_url_never_reach_the_output() {
    let url = prometheus()
        .url()
        .replacen("http://", "http://reader:s3cret@", 1)
        + "/?api_key=k3y";
    for format in ["text", "json"] {
        let (code, out, err) = check(&[
            "--config",
            &path("tests/fixtures/external-rules.yaml"),
            "--prometheus-url",
            &url,
            "-o",
            format,
        ]);
        assert!(code == 0 || code == 1, "{out}{err}");
        assert!(out.contains("REDACTED"), "{out}");
        let all = format!("{out}{err}");
        assert!(
            !all.contains("s3cret") && !all.contains("k3y"),
            "{format}: {all}"
        );
    }
}

#[test]
fn schedule_rules_are_linted_for_zones_crons_and_overlapping_windows() {
    let (code, out, err) = check(&["--config", &path("config/examples/schedule-floor.yaml")]);
    assert_eq!(code, 0, "the example is clean: {out}{err}");

    let dir = tempfile::tempdir().unwrap();
    let overlapping = dir.path().join("overlapping.yaml");
    std::fs::write(
        &overlapping,
        r#"scheduleRules:
- name: shop-floor
  timezone: UTC
  windows:
  - {start: "0 8 * * *", end: "0 18 * * *", replicas: 3}
  - {start: "0 12 * * *", end: "0 14 * * *", replicas: 10}
"#,
    )
    .unwrap();
    let (code, out, err) = check(&["--config", overlapping.to_str().unwrap(), "--strict"]);
    assert_eq!(code, 2, "overlaps are warnings: {out}{err}");
    assert!(out.contains("scheduleRules[0].windows"), "{out}");
    assert!(out.contains("the higher, 10, applies"), "{out}");

    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        r#"scheduleRules:
- name: shop-floor
  timezone: Europe/Paaris
  windows:
  - {start: "0 8 * *", end: "0 18 * * *", replicas: 3}
"#,
    )
    .unwrap();
    let (code, out, err) = check(&["--config", broken.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("scheduleRules[0].timezone (line 3)"), "{out}");
    assert!(out.contains("did you mean Europe/Paris?"), "{out}");
    assert!(
        out.contains("scheduleRules[0].windows[0].start (line 5)"),
        "{out}"
    );
}
