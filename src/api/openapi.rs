//! `/openapi/v2` and `/openapi/v3`: OpenAPI documents for the groups this config serves, so the
//! aggregator (and `kubectl explain`) can describe them.

use serde_json::{Value, json};

use super::{custom, external};
use crate::rules::CompiledConfig;

/// One served group version: its list kind and the paths that return it.
struct GroupVersion {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    schema: &'static str,
    paths: &'static [&'static str],
}

const CUSTOM_PATHS: &[&str] = &[
    "/namespaces/{namespace}/{resource}/{name}/{metric}",
    "/namespaces/{namespace}/metrics/{metric}",
    "/{resource}/{name}/{metric}",
];
const EXTERNAL_PATHS: &[&str] = &["/namespaces/{namespace}/{metric}"];

fn served(config: &CompiledConfig) -> Vec<GroupVersion> {
    let mut out = Vec::new();
    if !config.rules.is_empty() {
        for v in custom::VERSIONS {
            out.push(GroupVersion {
                group: custom::GROUP,
                version: v,
                kind: "MetricValueList",
                schema: if *v == "v1beta1" {
                    "io.k8s.metrics.pkg.apis.custom_metrics.v1beta1.MetricValueList"
                } else {
                    "io.k8s.metrics.pkg.apis.custom_metrics.v1beta2.MetricValueList"
                },
                paths: CUSTOM_PATHS,
            });
        }
    }
    if config.serves_external() {
        out.push(GroupVersion {
            group: external::GROUP,
            version: external::VERSION,
            kind: "ExternalMetricValueList",
            schema: "io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValueList",
            paths: EXTERNAL_PATHS,
        });
    }
    out
}

fn string() -> Value {
    json!({"type": "string"})
}

/// The schema of a list kind; `r` turns a schema name into a reference.
fn list_schema(gv: &GroupVersion, r: &dyn Fn(&str) -> String) -> (Value, Value) {
    let quantity =
        json!({"type": "string", "description": "Kubernetes quantity, such as 500m or 20500m"});
    let time = json!({"type": "string", "format": "date-time"});
    let selector = json!({"type": "object", "nullable": true, "description": "the metric label selector",
        "properties": {"matchLabels": {"type": "object", "additionalProperties": string()},
                       "matchExpressions": {"type": "array", "items": {"type": "object"}}}});
    let described = json!({"type": "object", "properties": {
        "kind": string(), "namespace": string(), "name": string(), "apiVersion": string()}});
    let item = match (gv.group, gv.version) {
        (g, "v1beta1") if g == custom::GROUP => json!({"type": "object",
            "required": ["describedObject", "metricName", "timestamp", "value"],
            "properties": {"describedObject": described, "metricName": string(), "timestamp": time,
                "window": {"type": "integer", "format": "int64"}, "value": quantity, "selector": selector}}),
        (g, _) if g == custom::GROUP => json!({"type": "object",
            "required": ["describedObject", "metric", "timestamp", "value"],
            "properties": {"describedObject": described,
                "metric": {"type": "object", "properties": {"name": string(), "selector": selector}},
                "timestamp": time, "windowSeconds": {"type": "integer", "format": "int64"}, "value": quantity}}),
        _ => {
            json!({"type": "object", "required": ["metricName", "metricLabels", "timestamp", "value"],
            "properties": {"metricName": string(),
                "metricLabels": {"type": "object", "nullable": true, "additionalProperties": string()},
                "timestamp": time, "window": {"type": "integer", "format": "int64"}, "value": quantity}})
        }
    };
    let item_name = format!("{}Item", gv.schema);
    let list = json!({"type": "object", "required": ["items"],
        "description": format!("{} of {}/{}", gv.kind, gv.group, gv.version),
        "properties": {"kind": string(), "apiVersion": string(), "metadata": {"type": "object"},
            "items": {"type": "array", "items": {"$ref": r(&item_name)}}},
        "x-kubernetes-group-version-kind": [{"group": gv.group, "version": gv.version, "kind": gv.kind}]});
    (json!({gv.schema: list}), json!({item_name: item}))
}

fn parameters(path: &str, v3: bool) -> Vec<Value> {
    let mut params: Vec<Value> = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            if v3 {
                json!({"name": name, "in": "path", "required": true, "schema": string()})
            } else {
                json!({"name": name, "in": "path", "required": true, "type": "string"})
            }
        })
        .collect();
    for q in ["labelSelector", "metricLabelSelector"] {
        params.push(if v3 {
            json!({"name": q, "in": "query", "schema": string()})
        } else {
            json!({"name": q, "in": "query", "type": "string"})
        });
    }
    params
}

fn operation(gv: &GroupVersion, path: &str, v3: bool, r: &dyn Fn(&str) -> String) -> Value {
    let ok = if v3 {
        json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": r(gv.schema)}}}})
    } else {
        json!({"description": "OK", "schema": {"$ref": r(gv.schema)}})
    };
    json!({"get": {
        "operationId": format!("get{}{}", gv.kind, path.replace(['{', '}', '/'], "_")),
        "tags": [format!("{}_{}", gv.group, gv.version)],
        "parameters": parameters(path, v3),
        "responses": {"200": ok, "401": {"description": "Unauthorized"}, "403": {"description": "Forbidden"},
                      "404": {"description": "Not Found"}}
    }})
}

fn info() -> Value {
    json!({"title": "prom-metrics-adapter", "version": env!("CARGO_PKG_VERSION")})
}

/// The Swagger 2.0 document of every served group version.
pub fn v2(config: &CompiledConfig) -> Value {
    let r = |name: &str| format!("#/definitions/{name}");
    let mut paths = serde_json::Map::new();
    let mut definitions = serde_json::Map::new();
    for gv in served(config) {
        for p in gv.paths {
            let full = format!("/apis/{}/{}{p}", gv.group, gv.version);
            paths.insert(full, operation(&gv, p, false, &r));
        }
        let (list, item) = list_schema(&gv, &r);
        for doc in [list, item] {
            if let Value::Object(m) = doc {
                definitions.extend(m);
            }
        }
    }
    json!({"swagger": "2.0", "info": info(), "paths": paths, "definitions": definitions})
}

/// The OpenAPI v3 index: one entry per served group version.
pub fn v3_index(config: &CompiledConfig) -> Value {
    let mut paths = serde_json::Map::new();
    for gv in served(config) {
        let key = format!("apis/{}/{}", gv.group, gv.version);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}")}),
        );
    }
    json!({"paths": paths})
}

/// The OpenAPI 3.0 document of one group version, or `None` when it is not served.
pub fn v3_group_version(config: &CompiledConfig, group: &str, version: &str) -> Option<Value> {
    let gv = served(config)
        .into_iter()
        .find(|gv| gv.group == group && gv.version == version)?;
    let r = |name: &str| format!("#/components/schemas/{name}");
    let mut paths = serde_json::Map::new();
    for p in gv.paths {
        paths.insert(
            format!("/apis/{}/{}{p}", gv.group, gv.version),
            operation(&gv, p, true, &r),
        );
    }
    let (list, item) = list_schema(&gv, &r);
    let mut schemas = serde_json::Map::new();
    for doc in [list, item] {
        if let Value::Object(m) = doc {
            schemas.extend(m);
        }
    }
    Some(
        json!({"openapi": "3.0.0", "info": info(), "paths": paths, "components": {"schemas": schemas}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::rules::{RestMapper, compile};

    fn cfg(yaml: &str) -> CompiledConfig {
        compile(
            &config::parse(yaml, "t").unwrap(),
            &RestMapper::standalone(),
        )
        .unwrap()
    }

    #[test]
    fn documents_cover_exactly_the_served_groups_and_their_refs_resolve() {
        let c = cfg(
            "rules:\n- seriesQuery: x\n  metricsQuery: x\nexternalRules:\n- seriesQuery: y\n  resources: {namespaced: false}\n  metricsQuery: y\n",
        );
        let doc = v2(&c);
        assert_eq!(doc["swagger"], "2.0");
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), 3 + 3 + 1);
        for (_, op) in paths {
            let r = op["get"]["responses"]["200"]["schema"]["$ref"]
                .as_str()
                .unwrap();
            let name = r.trim_start_matches("#/definitions/");
            assert!(doc["definitions"][name].is_object(), "{r}");
        }
        let index = v3_index(&c);
        assert_eq!(index["paths"].as_object().unwrap().len(), 3);
        let gv = v3_group_version(&c, "external.metrics.k8s.io", "v1beta1").unwrap();
        assert_eq!(gv["openapi"], "3.0.0");
        assert!(v3_group_version(&c, "metrics.k8s.io", "v1beta1").is_none());
        let only_custom = cfg("rules:\n- seriesQuery: x\n  metricsQuery: x\n");
        assert_eq!(
            v3_index(&only_custom)["paths"].as_object().unwrap().len(),
            2
        );
    }
}
