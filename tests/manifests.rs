//! The deployment files: `manifests/` (what `kubectl apply -f manifests/` installs) and the Helm
//! chart in `deploy/helm/prom-metrics-adapter`, rendered by the real `helm` with its defaults
//! and with values files written for prometheus-community's prometheus-adapter chart.
//!
//! The same checks run on both: every document parses and matches the Kubernetes schema; the
//! APIServices reach the adapter's HTTPS port through a Service that exists; RBAC bindings name
//! roles that exist and the ServiceAccount the adapter runs as; the config the Deployment mounts
//! loads and compiles with the adapter's own loader, and has rules for every API registered.
//!
//! The chart tests need `helm` on PATH: `scripts/install-deps.sh` installs it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::tools::{self, CHART, run_helm};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use prom_metrics_adapter::config;
use prom_metrics_adapter::rules::{CompiledConfig, RestMapper, compile};
use serde_json::Value;

const HPA_SERVICE_ACCOUNT: (&str, &str) = ("kube-system", "horizontal-pod-autoscaler");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Loading documents

/// One Kubernetes object and where it came from.
#[derive(Clone, Debug)]
struct Doc {
    origin: String,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        str_at(&self.value, "/kind")
    }
    fn name(&self) -> &str {
        str_at(&self.value, "/metadata/name")
    }
    fn namespace(&self) -> &str {
        str_at(&self.value, "/metadata/namespace")
    }
    fn label(&self) -> String {
        format!("{} {} ({})", self.kind(), self.name(), self.origin)
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn parse_documents(text: &str, origin: &str) -> Vec<Doc> {
    let values: Vec<Value> = serde_saphyr::from_multiple(text)
        .unwrap_or_else(|e| panic!("{origin} is not valid YAML: {e}"));
    values
        .into_iter()
        .filter(|v| !v.is_null())
        .map(|value| Doc {
            origin: origin.to_string(),
            value,
        })
        .collect()
}

/// The YAML files of a directory, sorted as kubectl applies them; with `recursive`, those of its
/// subdirectories too.
fn yaml_files(dir: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if recursive {
                out.extend(yaml_files(&path, true));
            }
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    out
}

fn load_files(files: &[PathBuf]) -> Vec<Doc> {
    files
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let origin = path
                .strip_prefix(root())
                .unwrap_or(path)
                .display()
                .to_string();
            parse_documents(&text, &origin)
        })
        .collect()
}

/// What `kubectl apply -f manifests/` applies (it does not descend into subdirectories).
fn manifests() -> Vec<Doc> {
    load_files(&yaml_files(&root().join("manifests"), false))
}

/// Everything under manifests/, the optional files included.
fn all_manifests() -> Vec<Doc> {
    load_files(&yaml_files(&root().join("manifests"), true))
}

fn of_kind<'a>(docs: &'a [Doc], kind: &str) -> Vec<&'a Doc> {
    docs.iter().filter(|d| d.kind() == kind).collect()
}

fn one_of_kind<'a>(docs: &'a [Doc], kind: &str) -> &'a Doc {
    let found = of_kind(docs, kind);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind}, found {found:?}"
    );
    found[0]
}

fn find<'a>(docs: &'a [Doc], kind: &str, namespace: &str, name: &str) -> Option<&'a Doc> {
    docs.iter()
        .find(|d| d.kind() == kind && d.namespace() == namespace && d.name() == name)
}

fn api_service_names(docs: &[Doc]) -> BTreeSet<String> {
    of_kind(docs, "APIService")
        .iter()
        .map(|d| d.name().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Checks shared by the manifests and every chart render. Each returns what it found wrong.

const NAMESPACED_KINDS: &[&str] = &[
    "ServiceAccount",
    "ConfigMap",
    "Secret",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "Role",
    "RoleBinding",
    "Issuer",
    "Certificate",
    "NetworkPolicy",
    "ServiceMonitor",
    "PrometheusRule",
];

fn check_identity(docs: &[Doc]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for d in docs {
        for field in ["/apiVersion", "/kind", "/metadata/name"] {
            if str_at(&d.value, field).is_empty() {
                problems.push(format!("{}: no {field}", d.label()));
            }
        }
        let namespaced = NAMESPACED_KINDS.contains(&d.kind());
        if namespaced && d.namespace().is_empty() {
            problems.push(format!(
                "{}: namespaced kind without metadata.namespace",
                d.label()
            ));
        }
        if !namespaced && !d.namespace().is_empty() {
            problems.push(format!(
                "{}: cluster-scoped kind with a namespace",
                d.label()
            ));
        }
        if !seen.insert((
            d.kind().to_string(),
            d.namespace().to_string(),
            d.name().to_string(),
        )) {
            problems.push(format!("{}: defined twice", d.label()));
        }
    }
    problems
}

/// Deserializes into the k8s-openapi type and serializes back: a field that does not survive is
/// one the type does not have (a typo or a misplaced key), and a wrong type or apiVersion fails
/// outright. `None` for kinds k8s-openapi does not know (cert-manager's).
fn schema_problems(doc: &Doc) -> Option<Vec<String>> {
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
        v: &Value,
    ) -> Result<Value, String> {
        let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(&typed).map_err(|e| e.to_string())
    }
    let v = &doc.value;
    let back = match doc.kind() {
        "Namespace" => round_trip::<Namespace>(v),
        "ServiceAccount" => round_trip::<ServiceAccount>(v),
        "ConfigMap" => round_trip::<ConfigMap>(v),
        "Secret" => round_trip::<Secret>(v),
        "Service" => round_trip::<Service>(v),
        "Deployment" => round_trip::<Deployment>(v),
        "PodDisruptionBudget" => round_trip::<PodDisruptionBudget>(v),
        "ClusterRole" => round_trip::<ClusterRole>(v),
        "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(v),
        "Role" => round_trip::<Role>(v),
        "RoleBinding" => round_trip::<RoleBinding>(v),
        "APIService" => round_trip::<APIService>(v),
        "NetworkPolicy" => round_trip::<k8s_openapi::api::networking::v1::NetworkPolicy>(v),
        _ => return None,
    };
    let mut problems = Vec::new();
    match back {
        Err(e) => problems.push(format!("{}: {e}", doc.label())),
        Ok(back) => lost_fields(v, &back, "", &doc.label(), &mut problems),
    }
    Some(problems)
}

fn lost_fields(orig: &Value, back: &Value, path: &str, label: &str, out: &mut Vec<String>) {
    match (orig, back) {
        (Value::Null, _) => {}
        (Value::Object(o), Value::Object(b)) => {
            for (k, v) in o {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(bv) => lost_fields(v, bv, &p, label, out),
                    None if v.is_null() => {}
                    None => out.push(format!("{label}: unknown field {p}")),
                }
            }
        }
        (Value::Array(o), Value::Array(b)) if o.len() == b.len() => {
            for (i, (ov, bv)) in o.iter().zip(b).enumerate() {
                lost_fields(ov, bv, &format!("{path}[{i}]"), label, out);
            }
        }
        (o, b) if o == b => {}
        (o, b) => out.push(format!("{label}: {path} is {o}, read back as {b}")),
    }
}

fn check_schema(docs: &[Doc]) -> Vec<String> {
    docs.iter().filter_map(schema_problems).flatten().collect()
}

fn is_subset(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The one Deployment and its adapter container (the first one, as the chart and manifests
/// put it).
fn adapter(docs: &[Doc]) -> (&Doc, &Value) {
    let deployment = one_of_kind(docs, "Deployment");
    let container = deployment
        .value
        .pointer("/spec/template/spec/containers/0")
        .expect("the Deployment has no container");
    (deployment, container)
}

fn args(container: &Value) -> Vec<&str> {
    container["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn flag<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    args(container)
        .into_iter()
        .find_map(|a| a.strip_prefix(prefix.as_str()))
}

/// A container port given by number or by name, as a number.
fn resolve_port(container: &Value, port: &Value) -> Option<i64> {
    let ports = container["ports"].as_array()?;
    match port {
        Value::Number(n) => ports
            .iter()
            .find(|p| p["containerPort"].as_i64() == n.as_i64())
            .and_then(|p| p["containerPort"].as_i64()),
        Value::String(name) => ports
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_i64()),
        _ => None,
    }
}

/// Each APIService reaches the adapter: its Service exists in the namespace it names, has the
/// port it names (443 when unset), selects the Deployment's pods, and forwards to the container
/// port that --secure-port makes the adapter listen on.
fn check_api_services(docs: &[Doc]) -> Vec<String> {
    let mut problems = Vec::new();
    let (deployment, container) = adapter(docs);
    let pod_labels = &deployment.value["spec"]["template"]["metadata"]["labels"];
    let secure_port: Option<i64> = flag(container, "secure-port").and_then(|p| p.parse().ok());
    if secure_port.is_none() {
        problems.push("the adapter has no --secure-port".into());
    }
    let https = resolve_port(container, &Value::from("https"));
    if https != secure_port {
        problems.push(format!(
            "container port `https` is {https:?}, --secure-port is {secure_port:?}"
        ));
    }
    let api_services = of_kind(docs, "APIService");
    if api_services.is_empty() {
        problems.push("no APIService".into());
    }
    for api in api_services {
        let spec = &api.value["spec"];
        let (group, version) = (str_at(spec, "/group"), str_at(spec, "/version"));
        if api.name() != format!("{version}.{group}") {
            problems.push(format!("{}: name is not <version>.<group>", api.label()));
        }
        if spec["groupPriorityMinimum"] != 100 {
            problems.push(format!("{}: groupPriorityMinimum is not 100", api.label()));
        }
        // The aggregator must verify the adapter: a CA in the bundle, injected by
        // cert-manager, or kept there by the adapter itself (--cert-secret-name, this
        // APIService among --cert-apiservices). Never insecureSkipTLSVerify, and never an
        // empty caBundle, which would blank the live one on every apply.
        let managed = flag(container, "cert-secret-name").is_some()
            && flag(container, "cert-apiservices")
                .map(|list| list.split(',').any(|n| n == api.name()))
                .unwrap_or(true);
        let verified = spec["caBundle"].as_str().is_some_and(|b| !b.is_empty())
            || api.value["metadata"]["annotations"]
                .get("cert-manager.io/inject-ca-from")
                .is_some()
            || managed;
        if !verified {
            problems.push(format!(
                "{}: nothing makes the aggregator verify the adapter (caBundle, cert-manager injection or --cert-secret-name)",
                api.label()
            ));
        }
        if spec.get("insecureSkipTLSVerify").is_some() {
            problems.push(format!("{}: sets insecureSkipTLSVerify", api.label()));
        }
        if spec["caBundle"] == "" {
            problems.push(format!(
                "{}: an empty caBundle blanks the live one on every apply",
                api.label()
            ));
        }
        let (svc_ns, svc_name) = (
            str_at(spec, "/service/namespace"),
            str_at(spec, "/service/name"),
        );
        let Some(service) = find(docs, "Service", svc_ns, svc_name) else {
            problems.push(format!(
                "{}: Service {svc_ns}/{svc_name} does not exist",
                api.label()
            ));
            continue;
        };
        if svc_ns != deployment.namespace() {
            problems.push(format!(
                "{}: Service namespace {svc_ns} is not the Deployment's",
                api.label()
            ));
        }
        if !is_subset(&service.value["spec"]["selector"], pod_labels) {
            problems.push(format!(
                "{}: does not select the adapter's pods",
                service.label()
            ));
        }
        let wanted = spec["service"]["port"].as_i64().unwrap_or(443);
        let Some(port) = service.value["spec"]["ports"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["port"].as_i64() == Some(wanted)))
        else {
            problems.push(format!(
                "{}: {} has no port {wanted}",
                api.label(),
                service.label()
            ));
            continue;
        };
        let target = port.get("targetPort").unwrap_or(&port["port"]);
        let resolved = resolve_port(container, target);
        if resolved.is_none() || resolved != secure_port {
            problems.push(format!(
                "{}: targetPort {target} reaches container port {resolved:?}, the adapter listens on {secure_port:?}",
                service.label()
            ));
        }
    }
    problems
}

/// What the adapter needs to read for `*` requests and for resolving the kinds rules name.
const RESOURCE_READER_NEEDS: &[(&str, &[&str])] = &[
    ("", &["namespaces", "pods", "services", "nodes"]),
    (
        "apps",
        &["deployments", "statefulsets", "replicasets", "daemonsets"],
    ),
    ("batch", &["jobs"]),
];

fn grants(role: &Value, group: &str, resource: &str, verbs: &[&str]) -> bool {
    let has = |rule: &Value, key: &str, want: &str| {
        rule[key]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == want || x == "*"))
    };
    let rules = role["rules"].as_array().cloned().unwrap_or_default();
    verbs.iter().all(|verb| {
        rules.iter().any(|r| {
            has(r, "apiGroups", group) && has(r, "resources", resource) && has(r, "verbs", verb)
        })
    })
}

/// Bindings name roles that exist (in these documents, or built into every cluster) and bind
/// them to the ServiceAccount the Deployment runs as (or, for the HPA binding, to the HPA
/// controller); and the adapter ends up with every grant it needs.
fn check_rbac(docs: &[Doc], service_account_created: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let (deployment, _) = adapter(docs);
    let ns = deployment.namespace();
    let sa = str_at(&deployment.value, "/spec/template/spec/serviceAccountName");
    if sa.is_empty() {
        problems.push(format!("{}: no serviceAccountName", deployment.label()));
    }
    if service_account_created && find(docs, "ServiceAccount", ns, sa).is_none() {
        problems.push(format!("ServiceAccount {ns}/{sa} does not exist"));
    }
    // (binding kind, binding namespace, role kind, role name) of the adapter's bindings.
    let mut adapter_roles: Vec<(&str, &str, &str, &str)> = Vec::new();
    let mut hpa_roles: Vec<&Doc> = Vec::new();
    for binding in docs
        .iter()
        .filter(|d| matches!(d.kind(), "RoleBinding" | "ClusterRoleBinding"))
    {
        let role_ref = &binding.value["roleRef"];
        let (role_kind, role_name) = (str_at(role_ref, "/kind"), str_at(role_ref, "/name"));
        if str_at(role_ref, "/apiGroup") != "rbac.authorization.k8s.io" {
            problems.push(format!("{}: roleRef.apiGroup", binding.label()));
        }
        let role = match role_kind {
            "ClusterRole" => find(docs, "ClusterRole", "", role_name),
            "Role" if binding.kind() == "RoleBinding" => {
                find(docs, "Role", binding.namespace(), role_name)
            }
            _ => {
                problems.push(format!("{}: cannot bind a {role_kind}", binding.label()));
                continue;
            }
        };
        let built_in = (role_kind, role_name) == ("ClusterRole", "system:auth-delegator")
            || (role_kind, binding.namespace(), role_name)
                == (
                    "Role",
                    "kube-system",
                    "extension-apiserver-authentication-reader",
                );
        if role.is_none() && !built_in {
            problems.push(format!(
                "{}: {role_kind} {role_name} does not exist",
                binding.label()
            ));
        }
        let subjects = binding.value["subjects"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if subjects.is_empty() {
            problems.push(format!("{}: no subjects", binding.label()));
        }
        for s in &subjects {
            let who = (str_at(s, "/namespace"), str_at(s, "/name"));
            if str_at(s, "/kind") != "ServiceAccount" {
                problems.push(format!(
                    "{}: subject {s} is not a ServiceAccount",
                    binding.label()
                ));
            } else if who == HPA_SERVICE_ACCOUNT {
                hpa_roles.extend(role);
            } else if who == (ns, sa) {
                adapter_roles.push((binding.kind(), binding.namespace(), role_kind, role_name));
            } else {
                problems.push(format!(
                    "{}: binds {}/{}, the adapter runs as {ns}/{sa}",
                    binding.label(),
                    who.0,
                    who.1
                ));
            }
        }
    }
    for (what, wanted) in [
        (
            "ClusterRoleBinding to system:auth-delegator",
            (
                "ClusterRoleBinding",
                "",
                "ClusterRole",
                "system:auth-delegator",
            ),
        ),
        (
            "RoleBinding in kube-system to extension-apiserver-authentication-reader",
            (
                "RoleBinding",
                "kube-system",
                "Role",
                "extension-apiserver-authentication-reader",
            ),
        ),
    ] {
        if !adapter_roles.contains(&wanted) {
            problems.push(format!("the adapter has no {what}"));
        }
    }
    let cluster_roles: Vec<&Doc> = adapter_roles
        .iter()
        .filter(|(bk, _, rk, _)| (*bk, *rk) == ("ClusterRoleBinding", "ClusterRole"))
        .filter_map(|(_, _, _, name)| find(docs, "ClusterRole", "", name))
        .collect();
    for (group, resources) in RESOURCE_READER_NEEDS {
        for resource in *resources {
            if !cluster_roles
                .iter()
                .any(|r| grants(&r.value, group, resource, &["get", "list", "watch"]))
            {
                problems.push(format!(
                    "the adapter cannot get/list/watch {resource} in group {group:?}"
                ));
            }
        }
    }
    for api in of_kind(docs, "APIService") {
        let group = str_at(&api.value, "/spec/group");
        // CPU and memory targets list pod metrics; the other APIs are read metric by metric.
        let (resource, verbs): (&str, &[&str]) = if group == "metrics.k8s.io" {
            ("pods", &["list"])
        } else {
            ("*", &["get", "list"])
        };
        if !hpa_roles
            .iter()
            .any(|r| grants(&r.value, group, resource, verbs))
        {
            problems.push(format!(
                "the HPA controller is not granted {} on {group} {resource}",
                verbs.join("/")
            ));
        }
    }
    problems
}

/// The config file the Deployment's --config names, read from the ConfigMap volume mounted
/// there; `Err` when the wiring is broken.
fn mounted_config(docs: &[Doc]) -> Result<String, String> {
    let (deployment, container) = adapter(docs);
    let path = flag(container, "config").ok_or("the adapter has no --config")?;
    let (dir, file) = path
        .rsplit_once('/')
        .ok_or("--config is not an absolute path")?;
    let mount = container["volumeMounts"]
        .as_array()
        .and_then(|ms| {
            ms.iter()
                .find(|m| str_at(m, "/mountPath").trim_end_matches('/') == dir)
        })
        .ok_or_else(|| format!("nothing is mounted at {dir}"))?;
    let volume_name = str_at(mount, "/name");
    let volume = deployment.value["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| str_at(v, "/name") == volume_name))
        .ok_or_else(|| format!("no volume {volume_name}"))?;
    let cm_name = str_at(volume, "/configMap/name");
    let cm = find(docs, "ConfigMap", deployment.namespace(), cm_name)
        .ok_or_else(|| format!("ConfigMap {cm_name} does not exist"))?;
    cm.value["data"][file]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{} has no key {file}", cm.label()))
}

/// Loads and compiles a config with the adapter's own code; panics on any problem or warning.
fn compile_cleanly(text: &str, origin: &str) -> CompiledConfig {
    let cfg = config::parse(text, origin).unwrap_or_else(|e| panic!("{origin}: {e}"));
    let compiled = compile(&cfg, &RestMapper::standalone())
        .unwrap_or_else(|e| panic!("{origin} does not compile: {e:?}"));
    assert!(
        compiled.problems().is_empty(),
        "{origin}: {:?}",
        compiled.problems()
    );
    assert!(
        compiled.warnings().is_empty(),
        "{origin}: {:?}",
        compiled.warnings()
    );
    compiled
}

/// Every API registered has rules behind it: the adapter does not serve a group without rules,
/// and an APIService whose backend does not serve it stalls namespace deletion cluster-wide.
fn check_apis_have_rules(docs: &[Doc], compiled: &CompiledConfig) -> Vec<String> {
    let mut problems = Vec::new();
    for api in of_kind(docs, "APIService") {
        let served = match str_at(&api.value, "/spec/group") {
            "custom.metrics.k8s.io" => !compiled.rules.is_empty(),
            "external.metrics.k8s.io" => compiled.serves_external(),
            "metrics.k8s.io" => compiled.resource_rules.is_some(),
            other => {
                problems.push(format!("{}: unexpected group {other}", api.label()));
                continue;
            }
        };
        if !served {
            problems.push(format!("{}: the config has no rules for it", api.label()));
        }
    }
    problems
}

fn assert_no_problems(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

/// Every structural check, on one set of documents (a manifests directory or a chart render).
fn check_all(what: &str, docs: &[Doc], service_account_created: bool) {
    assert_no_problems(&format!("{what}: identity"), check_identity(docs));
    assert_no_problems(&format!("{what}: schema"), check_schema(docs));
    assert_no_problems(&format!("{what}: APIServices"), check_api_services(docs));
    assert_no_problems(
        &format!("{what}: RBAC"),
        check_rbac(docs, service_account_created),
    );
}

// ---------------------------------------------------------------------------------------------
// manifests/

#[test]
fn every_manifest_document_parses_names_itself_and_matches_the_kubernetes_schema() {
    let docs = all_manifests();
    assert!(docs.len() >= 15, "only {} documents", docs.len());
    assert_no_problems("manifests", check_identity(&docs));
    assert_no_problems("manifests", check_schema(&docs));
    // Only cert-manager kinds may escape the schema check, and manifests/ has none.
    assert!(docs.iter().all(|d| schema_problems(d).is_some()));
}

#[test]
fn the_schema_check_catches_unknown_fields_and_wrong_types() {
    let doc = |yaml: &str| parse_documents(yaml, "inline").remove(0);
    let typo = doc(
        "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: b}\nspec: {ports: [{port: 443, tragetPort: 6443}]}\n",
    );
    assert!(
        schema_problems(&typo)
            .unwrap()
            .iter()
            .any(|p| p.contains("tragetPort")),
        "{:?}",
        schema_problems(&typo)
    );
    let wrong_type =
        doc("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {replicas: two}\n");
    assert!(!schema_problems(&wrong_type).unwrap().is_empty());
    let wrong_version =
        doc("apiVersion: policy/v1beta2\nkind: PodDisruptionBudget\nmetadata: {name: a}\n");
    assert!(!schema_problems(&wrong_version).unwrap().is_empty());
}

#[test]
fn kubectl_apply_creates_the_namespace_before_anything_in_it() {
    let files = yaml_files(&root().join("manifests"), false);
    let first = load_files(&files[..1]);
    assert_eq!(first.len(), 1, "{}", files[0].display());
    assert_eq!(first[0].kind(), "Namespace");
    assert_eq!(first[0].name(), "monitoring");
    for d in manifests() {
        if !d.namespace().is_empty() {
            assert!(
                matches!(d.namespace(), "monitoring" | "kube-system"),
                "{}",
                d.label()
            );
        }
    }
}

#[test]
fn manifests_apiservices_reach_the_service_and_port_the_adapter_listens_on() {
    let docs = manifests();
    assert_no_problems("manifests", check_api_services(&docs));
    assert_eq!(
        api_service_names(&docs),
        BTreeSet::from([
            "v1beta1.custom.metrics.k8s.io".to_string(),
            "v1beta2.custom.metrics.k8s.io".to_string(),
            "v1beta1.external.metrics.k8s.io".to_string(),
        ])
    );
    let priority = |name: &str| {
        find(&docs, "APIService", "", name).unwrap().value["spec"]["versionPriority"]
            .as_i64()
            .unwrap()
    };
    assert!(
        priority("v1beta2.custom.metrics.k8s.io") > priority("v1beta1.custom.metrics.k8s.io"),
        "v1beta2 must be the preferred version"
    );
    let (deployment, container) = adapter(&docs);
    assert_eq!(deployment.namespace(), "monitoring");
    assert_eq!(flag(container, "secure-port"), Some("6443"));
    let service = find(&docs, "Service", "monitoring", "prom-metrics-adapter").unwrap();
    assert_eq!(service.value["spec"]["ports"][0]["port"], 443);
    assert_eq!(service.value["spec"]["ports"][0]["name"], "https");
}

#[test]
fn the_optional_metrics_k8s_io_apiservice_reaches_the_adapter_and_its_example_rules_compile() {
    let path = root().join("manifests/optional/resource-metrics-apiservice.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("metrics-server"),
        "must warn about metrics-server"
    );
    let mut docs = manifests();
    let optional = load_files(&[path]);
    assert!(find(&optional, "APIService", "", "v1beta1.metrics.k8s.io").is_some());
    docs.extend(optional);
    assert_no_problems("manifests + optional", check_api_services(&docs));
    assert_no_problems("manifests + optional", check_rbac(&docs, true));

    // The resourceRules example in its comment, added to the shipped config, compiles and
    // then covers every APIService, metrics.k8s.io included.
    let example: String = text
        .lines()
        .skip_while(|l| !l.starts_with("#   resourceRules:"))
        .take_while(|l| l.starts_with("#   "))
        .map(|l| format!("{}\n", &l[4..]))
        .collect();
    assert!(example.contains("window:"), "example not found:\n{example}");
    let config = format!("{}{example}", mounted_config(&docs).unwrap());
    let compiled = compile_cleanly(&config, "manifests + optional example");
    assert!(compiled.resource_rules.is_some());
    assert_no_problems(
        "manifests + optional",
        check_apis_have_rules(&docs, &compiled),
    );
}

#[test]
fn manifests_rbac_binds_existing_roles_to_the_adapters_service_account() {
    let docs = manifests();
    assert_no_problems("manifests", check_rbac(&docs, true));
    assert!(
        find(
            &docs,
            "ServiceAccount",
            "monitoring",
            "prom-metrics-adapter"
        )
        .is_some()
    );
}

#[test]
fn the_rbac_check_catches_a_dangling_role_and_a_wrong_subject() {
    let mut docs = manifests();
    for d in &mut docs {
        if d.kind() == "ClusterRoleBinding" && d.name() == "prom-metrics-adapter-resource-reader" {
            d.value["roleRef"]["name"] = "no-such-role".into();
        }
        if d.kind() == "RoleBinding" {
            d.value["subjects"][0]["name"] = "default".into();
        }
    }
    let problems = check_rbac(&docs, true).join("\n");
    assert!(
        problems.contains("no-such-role does not exist"),
        "{problems}"
    );
    assert!(problems.contains("binds monitoring/default"), "{problems}");
    assert!(
        problems.contains("cannot get/list/watch pods"),
        "{problems}"
    );
    assert!(
        problems.contains("extension-apiserver-authentication-reader"),
        "{problems}"
    );
}

#[test]
fn manifests_config_map_loads_and_compiles_and_covers_every_apiservice() {
    let docs = manifests();
    let cm = find(
        &docs,
        "ConfigMap",
        "monitoring",
        "prom-metrics-adapter-config",
    )
    .expect("ConfigMap prom-metrics-adapter-config");
    let text = cm.value["data"]["config.yaml"].as_str().unwrap();
    // The Deployment mounts this ConfigMap where --config points.
    assert_eq!(mounted_config(&docs).unwrap(), text);
    let compiled = compile_cleanly(text, "manifests");
    // Request rate per pod (two counter names) and in-flight per pod: explicit rules, not the
    // chart's catch-all `<<.Resource>>` templates.
    assert_eq!(compiled.rules.len(), 2);
    assert!(!text.contains("<<.Resource>>"));
    let cfg = config::parse(text, "manifests").unwrap();
    for rule in &cfg.rules {
        let labels: Vec<&String> = rule.resources.overrides.keys().collect();
        assert_eq!(labels, ["namespace", "pod"]);
        assert!(rule.resources.template.is_empty());
    }
    assert!(text.contains("http_requests_total") || text.contains("http_requests?_total"));
    assert!(text.contains("flask_"));
    assert!(text.contains("http_requests_in_flight"));
    assert_no_problems("manifests", check_apis_have_rules(&docs, &compiled));
}

#[test]
fn manifests_deployment_runs_restricted_with_two_replicas_and_health_probes() {
    let docs = manifests();
    let (deployment, container) = adapter(&docs);
    let spec = &deployment.value["spec"];
    assert_eq!(spec["replicas"], 2);
    let pod = &spec["template"]["spec"];
    let term = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    assert!(is_subset(
        &term["labelSelector"]["matchLabels"],
        &spec["template"]["metadata"]["labels"]
    ));
    assert!(is_subset(
        &spec["selector"]["matchLabels"],
        &spec["template"]["metadata"]["labels"]
    ));

    let sc = &container["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65534);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);

    for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["scheme"], "HTTPS", "{probe}");
        assert_eq!(resolve_port(container, &get["port"]), Some(6443), "{probe}");
    }
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["requests"]["memory"].is_string());

    assert_eq!(
        args(container),
        [
            "--secure-port=6443",
            "--cert-secret-name=prom-metrics-adapter-serving-cert",
            "--cert-service-name=prom-metrics-adapter",
            "--cert-dir=/tmp/cert",
            "--config=/etc/adapter/config.yaml",
            "--prometheus-url=http://prometheus-k8s.monitoring.svc:9090",
            "--metrics-relist-interval=1m",
        ]
    );
    // The read-only root filesystem leaves /tmp (an emptyDir) for the generated certificate.
    let tmp = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/tmp")
        .expect("/tmp mount");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == tmp["name"])
        .unwrap();
    assert!(volume.get("emptyDir").is_some());
    assert!(
        str_at(container, "/image")
            .starts_with("ghcr.io/prom-metrics-adapter/prom-metrics-adapter:")
    );

    let pdb = one_of_kind(&docs, "PodDisruptionBudget");
    assert_eq!(pdb.value["spec"]["minAvailable"], 1);
    assert!(is_subset(
        &pdb.value["spec"]["selector"]["matchLabels"],
        &spec["template"]["metadata"]["labels"]
    ));
}

// ---------------------------------------------------------------------------------------------
// The Helm chart

const RELEASE: &str = "adapter";
const NAMESPACE: &str = "monitoring";
const FULLNAME: &str = "adapter-prom-metrics-adapter";

/// `helm template` of the chart with extra arguments; panics with helm's output on failure.
fn render(extra: &[&str]) -> Vec<Doc> {
    let text = tools::helm_template(RELEASE, NAMESPACE, extra);
    parse_documents(&text, &format!("helm template {}", extra.join(" ")))
}

fn render_error(extra: &[&str]) -> String {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", NAMESPACE];
    args.extend_from_slice(extra);
    let out = run_helm(&args);
    assert!(!out.status.success(), "helm {} succeeded", args.join(" "));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fixture(name: &str) -> String {
    root()
        .join("tests/fixtures/helm")
        .join(name)
        .display()
        .to_string()
}

const PROMETHEUS_ADAPTER_VALUES: &str = "prometheus-adapter-values.yaml";

/// The rendered config: loads, compiles without problems or warnings, and has rules for every
/// APIService the render registers.
fn rendered_config(docs: &[Doc], what: &str) -> (String, CompiledConfig) {
    let text = mounted_config(docs).unwrap_or_else(|e| panic!("{what}: {e}"));
    let compiled = compile_cleanly(&text, what);
    assert_no_problems(what, check_apis_have_rules(docs, &compiled));
    (text, compiled)
}

#[test]
fn helm_lint_passes_with_default_values_and_a_prometheus_adapter_values_file() {
    for extra in [
        vec![],
        vec!["-f".to_string(), fixture(PROMETHEUS_ADAPTER_VALUES)],
    ] {
        let mut args = vec!["lint", "--strict", CHART];
        args.extend(extra.iter().map(String::as_str));
        let out = run_helm(&args);
        assert!(
            out.status.success(),
            "helm {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn chart_default_render_passes_every_check_and_its_config_compiles() {
    let docs = render(&[]);
    check_all("default render", &docs, true);
    rendered_config(&docs, "default render");
    // Default rules give custom metrics only; no external rules, no resource rules.
    assert_eq!(
        api_service_names(&docs),
        BTreeSet::from([
            "v1beta1.custom.metrics.k8s.io".to_string(),
            "v1beta2.custom.metrics.k8s.io".to_string(),
        ])
    );
    let (deployment, container) = adapter(&docs);
    assert_eq!(deployment.name(), FULLNAME);
    assert_eq!(deployment.namespace(), NAMESPACE);
    assert_eq!(deployment.value["spec"]["replicas"], 2);
    assert_eq!(
        args(container),
        [
            "--secure-port=6443",
            "--cert-secret-name=adapter-prom-metrics-adapter-serving-cert",
            "--cert-service-name=adapter-prom-metrics-adapter",
            "--cert-apiservices=v1beta1.custom.metrics.k8s.io,v1beta2.custom.metrics.k8s.io",
            "--cert-dir=/tmp/cert",
            "--prometheus-url=http://prometheus.default.svc:9090",
            "--metrics-relist-interval=1m",
            "--v=1",
            "--config=/etc/adapter/config.yaml",
        ]
    );
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        one_of_kind(&docs, "PodDisruptionBudget").value["spec"]["maxUnavailable"],
        1
    );
    assert!(of_kind(&docs, "Secret").is_empty());
    assert!(of_kind(&docs, "Certificate").is_empty());
}

#[test]
fn chart_default_rules_are_the_manifests_rules_not_the_catch_all_templates() {
    let as_value = |text: &str| -> Value { serde_saphyr::from_str(text).unwrap() };
    let from_chart = as_value(&rendered_config(&render(&[]), "default render").0);
    let from_manifests = as_value(&mounted_config(&manifests()).unwrap());
    assert_eq!(from_chart["rules"], from_manifests["rules"]);
    assert_eq!(from_chart["rules"].as_array().map(Vec::len), Some(2));
    assert!(from_chart.get("externalRules").is_none());
    assert!(from_chart.get("resourceRules").is_none());
}

#[test]
fn chart_pod_template_checksum_follows_the_config() {
    let checksum = |extra: &[&str]| -> String {
        let docs = render(extra);
        let (deployment, _) = adapter(&docs);
        let sum = str_at(
            &deployment.value,
            "/spec/template/metadata/annotations/checksum~1config",
        )
        .to_string();
        assert_eq!(sum.len(), 64, "{sum:?}");
        assert!(sum.chars().all(|c| c.is_ascii_hexdigit()), "{sum:?}");
        sum
    };
    let default = checksum(&[]);
    assert_eq!(checksum(&[]), default, "renders must be reproducible");
    assert_eq!(checksum(&["--set", "replicas=3"]), default);
    assert_ne!(
        checksum(&[
            "--set",
            "rules.default=false",
            "-f",
            &fixture(PROMETHEUS_ADAPTER_VALUES)
        ]),
        default
    );
}

#[test]
fn chart_renders_a_prometheus_adapter_values_file_unchanged() {
    let values = fixture(PROMETHEUS_ADAPTER_VALUES);
    let docs = render(&["-f", &values]);
    check_all("prometheus-adapter values", &docs, true);
    let (text, compiled) = rendered_config(&docs, "prometheus-adapter values");

    assert_eq!(
        api_service_names(&docs),
        BTreeSet::from([
            "v1beta1.custom.metrics.k8s.io".to_string(),
            "v1beta2.custom.metrics.k8s.io".to_string(),
            "v1beta1.external.metrics.k8s.io".to_string(),
        ])
    );
    // rules.default: false leaves only the user's rules.
    assert_eq!(compiled.rules.len(), 1);
    assert_eq!(compiled.external_rules.len(), 1);
    let cfg = config::parse(&text, "rendered").unwrap();
    assert_eq!(
        cfg.rules[0].series_query.as_str(),
        r#"http_server_requests_seconds_count{namespace!="",pod!=""}"#
    );
    assert_eq!(
        cfg.rules[0].metrics_query.as_str(),
        r#"sum(rate(<<.Series>>{<<.LabelMatchers>>,uri!~"/actuator/.*"}[2m])) by (<<.GroupBy>>)"#
    );
    assert_eq!(
        cfg.external_rules[0].metrics_query.as_str(),
        "sum(<<.Series>>{<<.LabelMatchers>>}) by (consumergroup, topic)"
    );

    let (deployment, container) = adapter(&docs);
    assert_eq!(deployment.value["spec"]["replicas"], 2);
    let a = args(container);
    assert!(
        a.contains(&"--prometheus-url=http://mimir-query-frontend.mimir.svc:8080/prometheus"),
        "{a:?}"
    );
    assert!(a.contains(&"--v=4"), "{a:?}");
    // extraArguments come last, in order.
    assert_eq!(
        a[a.len() - 2..],
        [
            "--prometheus-header=X-Scope-OrgID=platform",
            "--metrics-max-age=5m"
        ]
    );
    assert!(!a.iter().any(|x| x.starts_with("--tls-cert-file")));
    assert_eq!(container["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(container["resources"]["requests"]["cpu"], "200m");
    let pod = &deployment.value["spec"]["template"]["spec"];
    assert_eq!(
        pod["tolerations"][0]["key"],
        "node-role.kubernetes.io/control-plane"
    );
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(
        deployment.value["spec"]["template"]["metadata"]["labels"]["team"],
        "platform"
    );
    assert_eq!(container["securityContext"]["runAsUser"], 10001);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    // tls and certManager are off: the adapter manages its certificate (a Secret it creates,
    // none rendered), and the APIServices have neither a bundle nor insecureSkipTLSVerify.
    for api in of_kind(&docs, "APIService") {
        assert!(
            api.value["spec"].get("insecureSkipTLSVerify").is_none()
                && api.value["spec"].get("caBundle").is_none(),
            "{}",
            api.label()
        );
    }
    assert!(flag(container, "cert-secret-name").is_some());
    assert!(of_kind(&docs, "Secret").is_empty());
    assert!(of_kind(&docs, "Certificate").is_empty());
    assert!(of_kind(&docs, "Issuer").is_empty());
    // The HPA may read the external metrics it now serves.
    let hpa = find(
        &docs,
        "ClusterRole",
        "",
        &format!("{FULLNAME}-hpa-metrics-reader"),
    )
    .unwrap();
    assert!(grants(
        &hpa.value,
        "external.metrics.k8s.io",
        "*",
        &["get", "list"]
    ));
}

#[test]
fn chart_registers_metrics_k8s_io_only_with_resource_rules() {
    let without = render(&[]);
    assert!(!api_service_names(&without).contains("v1beta1.metrics.k8s.io"));
    assert!(!mounted_config(&without).unwrap().contains("resourceRules"));

    let with = render(&["-f", &fixture("resource-rules-values.yaml")]);
    check_all("resource rules", &with, true);
    let (_, compiled) = rendered_config(&with, "resource rules");
    let rr = compiled
        .resource_rules
        .expect("resourceRules in the config");
    assert_eq!(rr.window, std::time::Duration::from_secs(180));
    let api = find(&with, "APIService", "", "v1beta1.metrics.k8s.io").expect("metrics.k8s.io");
    assert_eq!(api.value["spec"]["group"], "metrics.k8s.io");
    let reader = find(
        &with,
        "ClusterRole",
        "",
        &format!("{FULLNAME}-aggregated-metrics-reader"),
    )
    .expect("aggregated reader role");
    assert_eq!(
        reader.value["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
}

#[test]
fn chart_with_cert_manager_issues_the_serving_certificate_and_injects_its_ca() {
    let docs = render(&["--set", "certManager.enabled=true"]);
    check_all("cert-manager", &docs, true);
    let certificates = of_kind(&docs, "Certificate");
    assert_eq!(certificates.len(), 2, "{certificates:?}");
    let ca = find(
        &docs,
        "Certificate",
        NAMESPACE,
        &format!("{FULLNAME}-root-cert"),
    )
    .unwrap();
    assert_eq!(ca.value["spec"]["isCA"], true);
    let serving = find(&docs, "Certificate", NAMESPACE, &format!("{FULLNAME}-cert")).unwrap();
    let dns: Vec<&str> = serving.value["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        dns.contains(&format!("{FULLNAME}.{NAMESPACE}.svc").as_str()),
        "{dns:?}"
    );
    assert_eq!(of_kind(&docs, "Issuer").len(), 2);

    let injection = format!("{NAMESPACE}/{FULLNAME}-root-cert");
    for api in of_kind(&docs, "APIService") {
        assert_eq!(
            api.value["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            injection.as_str(),
            "{}",
            api.label()
        );
        assert!(api.value["spec"].get("insecureSkipTLSVerify").is_none());
    }
    // The adapter serves the certificate cert-manager writes.
    let (deployment, container) = adapter(&docs);
    let secret = str_at(&serving.value, "/spec/secretName");
    let volume = deployment.value["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == secret)
        .expect("serving-cert volume");
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("serving-cert mount");
    let dir = str_at(mount, "/mountPath");
    assert_eq!(
        flag(container, "tls-cert-file"),
        Some(format!("{dir}/tls.crt").as_str())
    );
    assert_eq!(
        flag(container, "tls-private-key-file"),
        Some(format!("{dir}/tls.key").as_str())
    );
}

#[test]
fn chart_with_tls_enable_creates_the_secret_and_sets_the_ca_bundle() {
    let docs = render(&[
        "--set",
        "tls.enable=true",
        "--set",
        "tls.ca=CA-PEM",
        "--set",
        "tls.certificate=CERT-PEM",
        "--set",
        "tls.key=KEY-PEM",
    ]);
    check_all("tls", &docs, true);
    let secret = find(&docs, "Secret", NAMESPACE, FULLNAME).expect("TLS Secret");
    assert_eq!(secret.value["type"], "kubernetes.io/tls");
    assert_eq!(secret.value["data"]["tls.crt"], "Q0VSVC1QRU0="); // base64("CERT-PEM")
    for api in of_kind(&docs, "APIService") {
        assert_eq!(api.value["spec"]["caBundle"], "Q0EtUEVN", "{}", api.label()); // base64("CA-PEM")
        assert!(api.value["spec"].get("insecureSkipTLSVerify").is_none());
    }
    let (_, container) = adapter(&docs);
    assert!(flag(container, "tls-cert-file").is_some());

    let err = render_error(&["--set", "tls.enable=true"]);
    assert!(err.contains("is required when tls.enable is true"), "{err}");
    let err = render_error(&[
        "--set",
        "certManager.enabled=true",
        "--set",
        "tls.enable=true",
        "--set",
        "tls.ca=a",
        "--set",
        "tls.certificate=b",
        "--set",
        "tls.key=c",
    ]);
    assert!(err.contains("set only one"), "{err}");
}

#[test]
fn chart_with_an_existing_config_map_mounts_it_and_generates_none() {
    let docs = render(&["--set", "rules.existing=my-adapter-rules"]);
    assert!(of_kind(&docs, "ConfigMap").is_empty());
    let (deployment, _) = adapter(&docs);
    let volumes = deployment.value["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v["configMap"]["name"] == "my-adapter-rules")
    );
    assert_no_problems("existing", check_api_services(&docs));
    // The APIServices still follow rules.*, or apiServices.* when set.
    assert!(api_service_names(&docs).contains("v1beta2.custom.metrics.k8s.io"));
    let forced = render(&[
        "--set",
        "rules.existing=my-adapter-rules",
        "--set",
        "apiServices.external=true",
        "--set",
        "apiServices.custom=false",
    ]);
    assert_eq!(
        api_service_names(&forced),
        BTreeSet::from(["v1beta1.external.metrics.k8s.io".to_string()])
    );
    assert_no_problems("existing, forced", check_rbac(&forced, true));
}

#[test]
fn chart_honours_service_account_and_rbac_switches() {
    let docs = render(&[
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=preexisting",
    ]);
    assert!(of_kind(&docs, "ServiceAccount").is_empty());
    let (deployment, _) = adapter(&docs);
    assert_eq!(
        deployment.value["spec"]["template"]["spec"]["serviceAccountName"],
        "preexisting"
    );
    check_all("existing service account", &docs, false);

    let docs = render(&["--set", "rbac.create=false"]);
    let kinds: BTreeMap<&str, usize> = docs.iter().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(d.kind()).or_default() += 1;
        m
    });
    for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        assert!(
            !kinds.contains_key(kind),
            "{kind} rendered with rbac.create=false"
        );
    }
}

#[test]
fn chart_renders_every_optional_key_in_a_valid_place() {
    let docs = render(&["-f", &fixture("all-options-values.yaml")]);
    check_all("all options", &docs, true);
    rendered_config(&docs, "all options");
    let fullname = "adapter-metrics";
    // extraManifests, given as an object (rendered with tpl) and as a string.
    let extra = find(&docs, "ConfigMap", "adapters", "extra-from-object").unwrap();
    assert_eq!(extra.value["data"]["release"], RELEASE);
    assert!(find(&docs, "ConfigMap", "adapters", "extra-from-string").is_some());
    for d in docs.iter().filter(|d| !d.name().starts_with("extra-from-")) {
        assert_eq!(
            d.value["metadata"]["labels"]["team"],
            "platform",
            "{}",
            d.label()
        );
        assert_eq!(
            d.value["metadata"]["annotations"]["owner"],
            "platform@example.com",
            "{}",
            d.label()
        );
        if NAMESPACED_KINDS.contains(&d.kind()) && d.kind() != "RoleBinding" {
            assert_eq!(d.namespace(), "adapters", "{}", d.label());
        }
    }
    let api = find(&docs, "APIService", "", "v1beta2.custom.metrics.k8s.io").unwrap();
    assert_eq!(api.value["spec"]["service"]["namespace"], "adapters");
    assert_eq!(api.value["spec"]["service"]["port"], 8443);

    let (deployment, container) = adapter(&docs);
    assert_eq!(deployment.name(), fullname);
    let pod = &deployment.value["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["containers"][1]["name"], "sidecar");
    assert_eq!(
        pod["imagePullSecrets"],
        serde_json::json!([{"name": "regcred"}, {"name": "other-regcred"}])
    );
    assert!(pod["affinity"].get("nodeAffinity").is_some());
    assert!(pod["affinity"].get("podAntiAffinity").is_none());
    assert_eq!(
        str_at(container, "/image"),
        "registry.example.com/prom-metrics-adapter:0.1.0-rc1"
    );
    assert_eq!(
        flag(container, "prometheus-url"),
        Some("https://thanos-query.monitoring.svc/")
    );
    assert_eq!(container["startupProbe"]["failureThreshold"], 30);
    assert_eq!(container["env"][0]["name"], "RUST_LOG");
    assert!(
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/etc/prometheus-ca")
    );
    let pdb = one_of_kind(&docs, "PodDisruptionBudget");
    assert_eq!(pdb.value["spec"]["minAvailable"], 1);
    assert!(pdb.value["spec"].get("maxUnavailable").is_none());
    assert_eq!(
        pdb.value["spec"]["unhealthyPodEvictionPolicy"],
        "AlwaysAllow"
    );
    let reader = find(
        &docs,
        "ClusterRole",
        "",
        &format!("{fullname}-resource-reader"),
    )
    .unwrap();
    assert!(grants(
        &reader.value,
        "networking.k8s.io",
        "ingresses",
        &["get", "list", "watch"]
    ));
    let sa = find(&docs, "ServiceAccount", "adapters", fullname).unwrap();
    assert!(
        sa.value["metadata"]["annotations"]
            .get("eks.amazonaws.com/role-arn")
            .is_some()
    );
}

/// Seconds of a Go duration flag value as the manifests write them (`10s`, `1m`).
fn flag_seconds(container: &Value, name: &str, default: u64) -> u64 {
    match flag(container, name) {
        None => default,
        Some(v) => {
            let (n, unit) = v.split_at(v.trim_end_matches(|c: char| c.is_alphabetic()).len());
            let n: u64 = n.parse().unwrap_or_else(|_| panic!("--{name}={v}"));
            match unit {
                "s" => n,
                "m" => n * 60,
                other => panic!("--{name}: unit {other:?}"),
            }
        }
    }
}

#[test]
fn pods_get_the_time_their_shutdown_takes_and_the_chart_passes_the_serving_flags() {
    for (what, docs) in [
        ("manifests", manifests()),
        ("chart", render(&[])),
        (
            "chart, longer shutdown",
            render(&[
                "--set",
                "shutdownDelaySeconds=20",
                "--set",
                "shutdownTimeoutSeconds=60",
            ]),
        ),
    ] {
        let (deployment, container) = adapter(&docs);
        let grace = deployment.value["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        let needed = flag_seconds(container, "shutdown-delay-duration", 10)
            + flag_seconds(container, "shutdown-timeout", 30);
        assert!(
            grace > needed,
            "{what}: terminationGracePeriodSeconds {grace} does not cover the {needed} s shutdown"
        );
    }
    let docs = render(&["--set", "serveStaleFor=45s", "--set", "queryCacheTTL=0s"]);
    let (_, container) = adapter(&docs);
    assert_eq!(flag(container, "serve-stale-for"), Some("45s"));
    assert_eq!(flag(container, "query-cache-ttl"), Some("0s"));
}

#[test]
fn chart_renders_from_the_prometheus_adapter_charts_own_default_values() {
    let docs = render(&["-f", &fixture("prometheus-adapter-default-values.yaml")]);
    check_all("prometheus-adapter defaults", &docs, true);
    let (_, config) = rendered_config(&docs, "prometheus-adapter defaults");
    assert!(!config.rules.is_empty());
    let (deployment, _) = adapter(&docs);
    assert_eq!(deployment.value["spec"]["replicas"], 1, "their replicas: 1");
    assert!(
        of_kind(&docs, "PodDisruptionBudget").is_empty(),
        "their PDB is off"
    );
}

/// The chart's copies of the alerts and the dashboard are the files that are tested.
#[test]
fn chart_files_are_the_tested_alerts_and_dashboard() {
    for (chart, tested) in [
        (
            "deploy/helm/prom-metrics-adapter/files/alerts.yaml",
            "deploy/prometheus/alerts.yaml",
        ),
        (
            "deploy/helm/prom-metrics-adapter/files/dashboard.json",
            "deploy/grafana/prom-metrics-adapter.json",
        ),
    ] {
        assert_eq!(
            std::fs::read_to_string(root().join(chart)).unwrap(),
            std::fs::read_to_string(root().join(tested)).unwrap(),
            "{chart} differs from {tested}: copy it over"
        );
    }
}

#[test]
fn chart_monitoring_objects_are_off_by_default_and_each_switch_renders_its_object() {
    let default = render(&[]);
    for kind in ["ServiceMonitor", "PrometheusRule", "NetworkPolicy"] {
        assert!(
            of_kind(&default, kind).is_empty(),
            "{kind} rendered by default"
        );
    }
    assert!(of_kind(&default, "ConfigMap").iter().all(|c| {
        c.value["metadata"]["labels"]
            .get("grafana_dashboard")
            .is_none()
    }));

    // ServiceMonitor: selects the Service, scrapes its https port.
    let docs = render(&["--set", "serviceMonitor.enabled=true"]);
    let sm = one_of_kind(&docs, "ServiceMonitor");
    let service = one_of_kind(&docs, "Service");
    assert!(is_subset(
        &sm.value["spec"]["selector"]["matchLabels"],
        &service.value["metadata"]["labels"]
    ));
    let endpoint = &sm.value["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service.value["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["scheme"], "https");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(sm.value["apiVersion"], "monitoring.coreos.com/v1");

    // PrometheusRule: exactly the promtool-tested groups.
    let docs = render(&["--set", "prometheusRule.enabled=true"]);
    let rule = one_of_kind(&docs, "PrometheusRule");
    let tested: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("deploy/prometheus/alerts.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(rule.value["spec"]["groups"], tested["groups"]);

    // The dashboard for Grafana's sidecar.
    let docs = render(&["--set", "grafanaDashboard.enabled=true"]);
    let cm = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c.value["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("a dashboard ConfigMap");
    let shipped: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/prom-metrics-adapter.json")).unwrap(),
    )
    .unwrap();
    let rendered: Value = serde_json::from_str(
        cm.value["data"]["prom-metrics-adapter.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(rendered, shipped);

    // NetworkPolicy: refuses to render without the API server's addresses, then admits the
    // API server and Prometheus to the adapter's pods only.
    let err = render_error(&["--set", "networkPolicy.enabled=true"]);
    assert!(err.contains("networkPolicy.apiServerCIDRs"), "{err}");
    let docs = render(&[
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "networkPolicy.apiServerCIDRs={10.0.0.0/24}",
    ]);
    check_all("network policy", &docs, true);
    let policy = one_of_kind(&docs, "NetworkPolicy");
    let (deployment, _) = adapter(&docs);
    assert!(is_subset(
        &policy.value["spec"]["podSelector"]["matchLabels"],
        &deployment.value["spec"]["template"]["metadata"]["labels"]
    ));
    let from = &policy.value["spec"]["ingress"][0]["from"];
    assert_eq!(from[0]["ipBlock"]["cidr"], "10.0.0.0/24");
    assert_eq!(
        from[1]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "prometheus"
    );
    assert_eq!(
        policy.value["spec"]["ingress"][0]["ports"][0]["port"],
        "https"
    );
}

#[test]
fn installed_beside_another_adapter_the_chart_registers_and_patches_no_apiservice() {
    // The first step of a migration: ours runs next to prometheus-adapter, which still owns
    // the APIServices; the adapter must not touch their caBundle.
    let docs = render(&[
        "--set",
        "apiServices.custom=false",
        "--set",
        "apiServices.external=false",
        "--set",
        "apiServices.resource=false",
    ]);
    assert!(of_kind(&docs, "APIService").is_empty());
    let (_, container) = adapter(&docs);
    assert_eq!(flag(container, "cert-apiservices"), Some(""));
    assert!(
        of_kind(&docs, "ClusterRole")
            .iter()
            .all(|r| !r.name().ends_with("-apiservices")),
        "no right to patch APIServices it does not serve"
    );
}

#[test]
fn chart_schedule_floors_and_named_backends_render_into_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        r#"rules:
  default: false
  backends:
  - name: longterm
    url: http://thanos-query.monitoring.svc:9090
    headers: {X-Scope-OrgID: team-a}
  custom:
  - seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
    backend: longterm
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
    name: {matches: "^(.*)_total$", as: "${1}_per_second"}
    metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
  schedules:
  - name: storefront-floor
    timezone: Europe/Berlin
    windows:
    - {start: "0 8 * * 1-5", end: "0 18 * * 1-5", replicas: 6}
"#,
    )
    .unwrap();
    let docs = render(&["-f", values.to_str().unwrap()]);
    check_all("schedules render", &docs, true);
    let (text, compiled) = rendered_config(&docs, "schedules render");
    assert!(text.contains("scheduleRules:"), "{text}");
    assert_eq!(compiled.schedules.len(), 1);
    assert_eq!(compiled.schedules[0].name, "storefront-floor");
    assert_eq!(compiled.backends.len(), 1);
    assert_eq!(compiled.rules[0].backend_name(), "longterm");
    assert_eq!(
        api_service_names(&docs),
        BTreeSet::from([
            "v1beta1.custom.metrics.k8s.io".to_string(),
            "v1beta2.custom.metrics.k8s.io".to_string(),
            "v1beta1.external.metrics.k8s.io".to_string()
        ])
    );
}

#[test]
fn chart_external_metrics_fallback_passes_the_flag_registers_the_api_and_lets_the_adapter_read() {
    let docs = render(&[
        "--set",
        "externalMetricsFallback.url=https://keda-operator-metrics-apiserver.keda.svc:443",
        "--set",
        "externalMetricsFallback.caFile=/etc/keda/ca.crt",
    ]);
    check_all("fallback render", &docs, true);
    let (_, container) = adapter(&docs);
    assert_eq!(
        flag(container, "external-metrics-fallback"),
        Some("https://keda-operator-metrics-apiserver.keda.svc:443")
    );
    assert_eq!(
        flag(container, "external-metrics-fallback-ca-file"),
        Some("/etc/keda/ca.crt")
    );
    assert!(api_service_names(&docs).contains("v1beta1.external.metrics.k8s.io"));
    let role = find(
        &docs,
        "ClusterRole",
        "",
        &format!("{FULLNAME}-external-metrics-fallback"),
    )
    .expect("the adapter's read access to external metrics");
    assert!(grants(
        &role.value,
        "external.metrics.k8s.io",
        "s0-rabbitmq-orders",
        &["get"]
    ));
    let binding = find(
        &docs,
        "ClusterRoleBinding",
        "",
        &format!("{FULLNAME}-external-metrics-fallback"),
    )
    .unwrap();
    assert_eq!(binding.value["subjects"][0]["name"], FULLNAME);
    // Without the URL, none of it.
    let docs = render(&[]);
    assert!(
        find(
            &docs,
            "ClusterRole",
            "",
            &format!("{FULLNAME}-external-metrics-fallback")
        )
        .is_none()
    );
}
