//! Operating the adapter: the alerts pass promtool's checks and their unit tests, and every
//! panel of the dashboard parses and returns data from a real Prometheus that scraped a
//! cluster-mode adapter after some traffic.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::fake_kube::FakeKube;
use common::secure::{Ca, HPA_HEADERS, auth_configmap, client, get, start_with_config};
use prom_metrics_adapter::cli::local_prometheus::LocalPrometheus;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian package prometheus) on PATH");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {}:\n{text}", args.join(" "));
    text
}

#[test]
fn the_alerts_pass_promtool_check_and_their_unit_tests() {
    let checked = promtool(
        &["check", "rules", "deploy/prometheus/alerts.yaml"],
        &root(),
    );
    assert!(checked.contains("SUCCESS: 6 rules found"), "{checked}");
    let tested = promtool(
        &["test", "rules", "alerts-test.yaml"],
        &root().join("tests/fixtures/alerts"),
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has a runbook section in the README.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let alerts: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("deploy/prometheus/alerts.yaml")).unwrap(),
    )
    .unwrap();
    for rule in alerts["groups"][0]["rules"].as_array().unwrap() {
        let name = rule["alert"].as_str().unwrap();
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        assert!(url.ends_with(&format!("#{}", name.to_lowercase())), "{url}");
        assert!(
            readme.contains(&format!("\n#### {name}\n")),
            "no runbook for {name}"
        );
    }
}

/// A rule whose query fails when Prometheus runs it (many-to-many matching), so backend errors
/// show on the dashboard.
const FAILING_RULE: &str = r#"
- seriesQuery: 'worker_busy_threads{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)$", as: "${1}_conflicting"}
  metricsQuery: '<<.Series>>{<<.LabelMatchers>>} + on(namespace) <<.Series>>{<<.LabelMatchers>>}'
"#;

async fn prometheus_query(prometheus: &str, query: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_parses_and_shows_data_after_traffic() {
    prom_metrics_adapter::install_crypto_provider();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // One Prometheus: the adapter's backend, scraping the adapter every second.
    let scrape = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n\
         - job_name: prom-metrics-adapter\n  scheme: https\n  tls_config: {{insecure_skip_verify: true}}\n\
         \x20 static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    );
    // Only samples up to now: Prometheus appends scraped samples only after the newest
    // backfilled one, and the fixture's reach three minutes into the future.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let samples: String = common::fixture_samples()
        .lines()
        .filter(|l| {
            l.starts_with('#')
                || l.rsplit(' ')
                    .next()
                    .and_then(|t| t.parse::<u64>().ok())
                    .is_some_and(|t| t < now)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let prometheus = tokio::task::spawn_blocking(move || {
        LocalPrometheus::start_with_config(&samples, &scrape).unwrap()
    })
    .await
    .unwrap();
    let fake = FakeKube::start().await;
    let front_proxy_ca = Ca::new("front-proxy-ca");
    *fake.state.auth_configmap.lock().unwrap() =
        Some(auth_configmap(&Ca::new("client-ca"), &front_proxy_ca));
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.yaml");
    let config = common::fixture("custom-rules.yaml").replacen(
        "rules:\n",
        &format!("rules:{FAILING_RULE}"),
        1,
    );
    std::fs::write(&config_path, &config).unwrap();
    let server = start_with_config(
        &fake,
        &config,
        &[
            format!("--secure-port={port}"),
            format!("--prometheus-url={}", prometheus.url()),
            format!("--config={}", config_path.display()),
            "--metrics-relist-interval=1s".into(),
            "--metrics-max-age=20m".into(),
            "--query-cache-ttl=0s".into(),
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics".into(),
        ],
    )
    .await;

    // Traffic: the HPA's requests (the same ones again are answered from the auth caches), a
    // metric whose query fails in Prometheus, an anonymous request refused, and a reload.
    let fp = client(Some(&front_proxy_ca.client("front-proxy-client", &[])));
    for _ in 0..5 {
        let (code, _) = get(&fp, &server.url(common::secure::HPA_PATH), HPA_HEADERS)
            .await
            .unwrap();
        assert_eq!(code, 200);
        let (code, _) = get(
            &fp,
            &server.url("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/worker-1/worker_busy_threads_conflicting"),
            HPA_HEADERS,
        )
        .await
        .unwrap();
        assert_eq!(code, 500);
        let (code, _) = get(&client(None), &server.url(common::secure::HPA_PATH), &[])
            .await
            .unwrap();
        assert_eq!(code, 403);
    }
    std::fs::write(&config_path, format!("{config}\n# edited\n")).unwrap();

    // Wait until Prometheus holds a few scrapes taken after all that.
    let prom = prometheus.url().to_string();
    for _ in 0..300 {
        let v = prometheus_query(
            &prom,
            "count_over_time(prom_metrics_adapter_config_reload_total{result=\"success\"}[1m])",
        )
        .await;
        if v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n >= 3)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/prom-metrics-adapter.json")).unwrap(),
    )
    .unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$job", ".*");
            checked += 1;
            if let Err(e) = promql_parser::parser::parse(&expr) {
                failures.push(format!("{}: does not parse ({e}): {expr}", panel["title"]));
                continue;
            }
            let answer = prometheus_query(&prom, &expr).await;
            let empty = answer["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty());
            if answer["status"] != "success" || empty {
                failures.push(format!("{}: no data for {expr}: {answer}", panel["title"]));
            }
        }
    }
    assert!(checked >= 20, "{checked} queries");
    if !failures.is_empty() {
        let targets: Value = reqwest::get(format!("{prom}/api/v1/targets"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        panic!("{}\nscrape targets: {targets}", failures.join("\n"));
    }
}
