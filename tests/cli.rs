//! The binary's start-up behaviour: required flags, config errors, the loopback rule.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prom-metrics-adapter"))
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> (i32, String) {
    let out = bin().args(args).output().expect("run binary");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_missing_config_flag_is_refused_with_upstreams_message() {
    let (code, out) = run(&["--standalone"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no metrics discovery configuration file specified"),
        "{out}"
    );
}

#[test]
fn an_unknown_key_in_the_config_names_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "rules:\n- seriesQuery: up\n  metricsQuerry: x\n").unwrap();
    let (code, out) = run(&["--standalone", &format!("--config={}", path.display())]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("metricsQuerry") && out.contains("line 3") && out.contains("rules[0]"),
        "{out}"
    );
}

#[test]
fn a_non_loopback_address_needs_the_explicit_flag() {
    let (code, out) = run(&[
        "--standalone",
        &format!("--config={}", fixture("custom-rules.yaml")),
        "--prometheus-url=http://127.0.0.1:1",
        "--listen-address=0.0.0.0:0",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--allow-insecure-remote"), "{out}");
}

#[test]
fn strict_config_refuses_rules_that_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "rules:\n- seriesQuery: 'x_total'\n  name: {matches: '^(.*)_total$', as: '$1_per_second'}\n  metricsQuery: 'sum(<<.Series>>)'\n",
    )
    .unwrap();
    let (code, out) = run(&[
        "--standalone",
        "--strict-config",
        &format!("--config={}", path.display()),
        "--prometheus-url=http://127.0.0.1:1",
        "--listen-address=127.0.0.1:0",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rules[0].name.as"), "{out}");
}

#[test]
fn help_lists_upstream_flags() {
    let (code, out) = run(&["--help"]);
    assert_eq!(code, 0, "{out}");
    for flag in [
        "--prometheus-url",
        "--metrics-relist-interval",
        "--prometheus-header",
        "--standalone",
    ] {
        assert!(out.contains(flag), "{flag} missing from help");
    }
}
