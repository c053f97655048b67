//! The README's migration guide does what it says: its install-beside command renders an
//! adapter that registers and patches no APIService, under the names its handover patch
//! uses; the handover patch, run with the real kubectl on an APIService as
//! prometheus-adapter's chart creates it, yields one the API server accepts and that points
//! at ours; and the rollback puts the saved APIService back exactly.
//!
//! The commands are taken from the README's code blocks and run in bash, with `kubectl`
//! standing for `kubectl --local` on files (no API server can be had here), so an edit to the
//! guide is tested as written.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::tools;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// The first ```sh block after `marker` in the README.
fn block_after(readme: &str, marker: &str) -> String {
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README has no {marker:?}"));
    let rest = &readme[at..];
    let start = rest
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + 6;
    let end = rest[start..].find("```").expect("the block ends") + start;
    rest[start..end].to_string()
}

const INSTALL: &str = "**2. Install ours beside it";
const HANDOVER: &str = "**3. Hand each APIService over.**";
const ROLLBACK: &str = "**Rolling back**";

/// The words of the first command in `block` that starts with `program`, continuation lines
/// joined and comments dropped.
fn command_words(block: &str, program: &str) -> Vec<String> {
    let mut joined = String::new();
    let mut inside = false;
    for line in block.lines() {
        let line = line.trim();
        if !inside && !line.starts_with(program) {
            continue;
        }
        inside = true;
        let (text, more) = match line.strip_suffix('\\') {
            Some(text) => (text, true),
            None => (line, false),
        };
        joined.push_str(text);
        joined.push(' ');
        if !more {
            break;
        }
    }
    assert!(inside, "no `{program}` command in:\n{block}");
    joined.split_whitespace().map(str::to_string).collect()
}

fn rendered_docs(text: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).expect("helm's output is YAML");
    docs.into_iter().filter(|v| !v.is_null()).collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The value of `--name=value` among a container's args.
fn flag<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    container["args"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix(prefix.as_str()))
}

/// The handover patch's target: Service name, namespace and port, read from the README.
fn handover_target(block: &str) -> (String, String, i64) {
    let text = block.replace("\\\"", "\"");
    let start = text
        .find("\"service\":")
        .expect("the patch names a service");
    let end = start + text[start..].find('}').unwrap() + 1;
    let json: Value =
        serde_json::from_str(&format!("{{{}}}", &text[start..end])).unwrap_or_else(|e| {
            panic!(
                "the handover's service is JSON ({e}): {}",
                &text[start..end]
            )
        });
    let service = &json["service"];
    (
        service["name"].as_str().unwrap().to_string(),
        service["namespace"].as_str().unwrap().to_string(),
        service["port"].as_i64().unwrap(),
    )
}

#[test]
fn the_install_beside_command_registers_nothing_and_serves_where_the_handover_points() {
    let readme = readme();
    let install = command_words(&block_after(&readme, INSTALL), "helm install");
    let handover = block_after(&readme, HANDOVER);

    // helm install <release> <chart> -n <ns> [-f values] [--set k=v]…, rendered with
    // prometheus-community's own default values file standing for the user's.
    assert_eq!(install[2], "prom-metrics-adapter");
    assert_eq!(install[3], tools::CHART);
    let mut release = String::new();
    let mut namespace = String::new();
    let mut extra: Vec<String> = Vec::new();
    let mut words = install.iter().skip(2);
    release.push_str(words.next().unwrap());
    words.next();
    while let Some(word) = words.next() {
        let value = words.next().expect("every option has a value").clone();
        match word.as_str() {
            "-n" | "--namespace" => namespace = value,
            "-f" | "--values" => {
                extra.push("-f".into());
                extra.push(
                    root()
                        .join("tests/fixtures/helm/prometheus-adapter-default-values.yaml")
                        .display()
                        .to_string(),
                );
            }
            "--set" => {
                extra.push("--set".into());
                extra.push(
                    value
                        .replace("<your-registry>", "registry.example")
                        .replace("<tag>", "v1"),
                );
            }
            other => panic!("unexpected option {other} in the README's helm install"),
        }
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let docs = rendered_docs(&tools::helm_template(&release, &namespace, &extra));

    assert!(
        of_kind(&docs, "APIService").is_empty(),
        "installed beside, ours registers no APIService"
    );
    let deployment = of_kind(&docs, "Deployment")[0];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        flag(container, "cert-apiservices"),
        Some(""),
        "and patches none"
    );
    assert_eq!(
        container["image"], "registry.example/prom-metrics-adapter:v1",
        "the README's image settings replace the values file's prometheus-adapter image"
    );

    // The Secret the handover reads the CA from is the one the adapter manages.
    let secret = handover
        .split_whitespace()
        .skip_while(|w| *w != "secret")
        .nth(1)
        .expect("the handover reads a Secret");
    assert_eq!(flag(container, "cert-secret-name"), Some(secret));
    assert!(
        handover.contains("jsonpath='{.data.ca\\.crt}'"),
        "the CA is the Secret's ca.crt"
    );

    // The Service the handover points at exists under that name, namespace and port.
    let (name, service_namespace, port) = handover_target(&handover);
    let service = of_kind(&docs, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == name.as_str())
        .unwrap_or_else(|| panic!("no Service {name} rendered"));
    assert_eq!(service["metadata"]["namespace"], service_namespace.as_str());
    assert_eq!(service_namespace, namespace);
    assert_eq!(service["spec"]["ports"][0]["port"], port);
}

/// Runs `script` in bash in `dir`, with `kubectl` standing for the real kubectl applied with
/// `--local` to `<dir>/state/<apiservice>.json`, and the Secret holding `ca`.
fn run_with_local_kubectl(dir: &Path, ca: &str, script: &str) {
    let shim = r#"
set -euo pipefail
kubectl() {
  local args=("$@")
  if [ "${args[0]}" = -n ]; then args=("${args[@]:2}"); fi
  case "${args[0]} ${args[1]}" in
    "get secret") printf '%s' "$CA_B64" ;;
    "patch apiservice")
      local name="${args[2]}"
      command "$KUBECTL" patch --local -f "state/$name.json" -o json "${args[@]:3}" > "state/$name.next"
      mv "state/$name.next" "state/$name.json" ;;
    "scale deploy/prometheus-adapter" | "rollout status") ;;
    *) echo "the guide ran an unexpected command: kubectl $*" >&2; return 97 ;;
  esac
}
"#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{shim}\n{script}"))
        .current_dir(dir)
        .env("KUBECTL", tools::kubectl())
        .env("KUBECONFIG", "/dev/null")
        .env("CA_B64", ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the guide's commands failed:\n{script}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The API server's rule for an APIService's TLS settings (apiregistration validation):
/// a caBundle and insecureSkipTLSVerify may not be set together.
fn accepted_by_the_api_server(spec: &Value) -> bool {
    let has_bundle = spec["caBundle"].as_str().is_some_and(|b| !b.is_empty());
    !(has_bundle && spec["insecureSkipTLSVerify"] == true)
}

#[test]
fn the_handover_points_the_old_apiservice_at_ours_and_the_rollback_restores_it() {
    let readme = readme();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let name = "v1beta1.custom.metrics.k8s.io";
    let before = std::fs::read_to_string(
        root().join("tests/fixtures/migration/prometheus-adapter-apiservice.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join(format!("state/{name}.json")), &before).unwrap();
    // Step 1 of the guide saved it.
    std::fs::write(dir.path().join(format!("{name}.before.json")), &before).unwrap();
    let before: Value = serde_json::from_str(&before).unwrap();
    let state = || -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("state/{name}.json"))).unwrap(),
        )
        .unwrap()
    };

    let ca = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==";
    let handover = block_after(&readme, HANDOVER);
    assert!(handover.contains(&format!("handover {name}")));
    run_with_local_kubectl(dir.path(), ca, &handover);
    let after = state();
    let (service, namespace, port) = handover_target(&handover);
    assert_eq!(after["spec"]["service"]["name"], service.as_str());
    assert_eq!(after["spec"]["service"]["namespace"], namespace.as_str());
    assert_eq!(after["spec"]["service"]["port"], port);
    assert_eq!(after["spec"]["caBundle"], ca);
    assert!(after["spec"].get("insecureSkipTLSVerify").is_none());
    assert!(accepted_by_the_api_server(&after["spec"]));
    assert_eq!(after["spec"]["group"], before["spec"]["group"]);
    assert_eq!(after["spec"]["version"], before["spec"]["version"]);
    assert_eq!(
        after["metadata"], before["metadata"],
        "only the spec changes"
    );

    run_with_local_kubectl(dir.path(), ca, &block_after(&readme, ROLLBACK));
    let back = state();
    assert_eq!(back, before, "the rollback restores the saved APIService");
    assert!(accepted_by_the_api_server(&back["spec"]));
}
