//! `--what-if 'path=value'`: edits of an HPA manifest, made on its JSON form before it is read
//! (and validated) as an HPA, so an edit is checked exactly as the manifest itself is.

use serde_json::Value;

use super::spec::SpecError;

fn err<T>(msg: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError(msg.into()))
}

/// One step of a path: a field name, or an index into a list.
#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
}

fn parse_path(path: &str) -> Result<Vec<Step>, SpecError> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if name.is_empty() && (steps.is_empty() || rest.is_empty()) {
            return err(format!("--what-if path {path:?}: empty field name"));
        }
        if !name.is_empty() {
            steps.push(Step::Field(name.to_string()));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let end = inner
                .find(']')
                .ok_or_else(|| SpecError(format!("--what-if path {path:?}: missing ]")))?;
            let index = inner[..end].parse::<usize>().map_err(|_| {
                SpecError(format!(
                    "--what-if path {path:?}: {:?} is not a list index",
                    &inner[..end]
                ))
            })?;
            steps.push(Step::Index(index));
            rest = &inner[end + 1..];
        }
        if !rest.is_empty() {
            return err(format!("--what-if path {path:?}: unexpected {rest:?}"));
        }
    }
    Ok(steps)
}

/// `metrics[i].target…` and `metrics[i].metric…` name the fields of the metric's source
/// (`metrics[i].external.target…`), as people write them: the source field comes from the
/// metric's `type`.
fn source_shorthand(doc: &Value, steps: &mut Vec<Step>) {
    let [
        Step::Field(spec),
        Step::Field(metrics),
        Step::Index(i),
        Step::Field(field),
        ..,
    ] = steps.as_slice()
    else {
        return;
    };
    if spec != "spec"
        || metrics != "metrics"
        || !matches!(
            field.as_str(),
            "target" | "metric" | "describedObject" | "name" | "container"
        )
    {
        return;
    }
    let source = match doc["spec"]["metrics"][*i]["type"].as_str() {
        Some("Pods") => "pods",
        Some("Object") => "object",
        Some("External") => "external",
        Some("Resource") => "resource",
        Some("ContainerResource") => "containerResource",
        _ => return,
    };
    steps.insert(3, Step::Field(source.to_string()));
}

/// Applies one `path=value` edit to a manifest in its JSON form.
///
/// Paths are relative to `spec` unless they start with `spec.` or `metadata.`
/// (`behavior.scaleUp.stabilizationWindowSeconds=0`, `metrics[0].target.averageValue=50`).
/// Missing objects on the way are created, so a `behavior` can be added to an HPA without one;
/// a list index may name an existing element or the next one. `metrics[i].target…` is short
/// for the target of the metric's source (`metrics[i].external.target…`). The value is JSON when it parses
/// as JSON (`0`, `true`, `[{"type":"Pods","value":4,"periodSeconds":15}]`), a string otherwise;
/// a number replacing a string stays a string (quantities are strings). Field names are checked
/// when the edited manifest is read, so a misspelt one is an error naming its path.
pub fn apply_edit(doc: &mut Value, edit: &str) -> Result<(), SpecError> {
    let (path, raw) = edit.split_once('=').ok_or_else(|| {
        SpecError(format!(
            "--what-if {edit:?}: expected path=value, for example behavior.scaleUp.stabilizationWindowSeconds=0"
        ))
    })?;
    let path = path.trim();
    let full = if path.starts_with("spec.") || path.starts_with("metadata.") {
        path.to_string()
    } else {
        format!("spec.{path}")
    };
    let mut steps = parse_path(&full)?;
    source_shorthand(doc, &mut steps);
    let mut value: Value =
        serde_json::from_str(raw.trim()).unwrap_or_else(|_| Value::String(raw.to_string()));
    let mut cur = doc;
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        match step {
            Step::Field(name) => {
                if cur.is_null() {
                    *cur = Value::Object(Default::default());
                }
                let Some(map) = cur.as_object_mut() else {
                    return err(format!(
                        "--what-if {edit:?}: {name:?} is a field, but what holds it is not an object"
                    ));
                };
                let slot = map.entry(name.clone()).or_insert(Value::Null);
                if last {
                    if slot.is_string() && value.is_number() {
                        value = Value::String(value.to_string());
                    }
                    *slot = value;
                    return Ok(());
                }
                cur = slot;
            }
            Step::Index(index) => {
                let Some(list) = cur.as_array_mut() else {
                    return err(format!(
                        "--what-if {edit:?}: [{index}] indexes something that is not a list"
                    ));
                };
                if *index == list.len() {
                    list.push(Value::Null);
                } else if *index > list.len() {
                    return err(format!(
                        "--what-if {edit:?}: index {index} is beyond the list's {} elements",
                        list.len()
                    ));
                }
                let slot = &mut list[*index];
                if last {
                    if slot.is_string() && value.is_number() {
                        value = Value::String(value.to_string());
                    }
                    *slot = value;
                    return Ok(());
                }
                cur = slot;
            }
        }
    }
    err(format!("--what-if {edit:?}: empty path"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_fields_and_indices() {
        assert_eq!(
            parse_path("spec.metrics[0].target").unwrap(),
            [
                Step::Field("spec".into()),
                Step::Field("metrics".into()),
                Step::Index(0),
                Step::Field("target".into()),
            ]
        );
        assert!(parse_path("spec..x").is_err());
        assert!(parse_path("spec.a[1").is_err());
        assert!(parse_path("spec.a[1]x").is_err());
    }

    #[test]
    fn edits_create_what_is_missing_and_keep_quantities_strings() {
        let mut doc = serde_json::json!({"spec": {"metrics": [
            {"type": "External", "external": {"target": {"averageValue": "100"}}}
        ]}});
        apply_edit(&mut doc, "metrics[0].target.averageValue=50").unwrap();
        assert_eq!(
            doc["spec"]["metrics"][0]["external"]["target"]["averageValue"],
            "50"
        );
        apply_edit(&mut doc, "behavior.scaleUp.stabilizationWindowSeconds=0").unwrap();
        assert_eq!(
            doc["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"],
            0
        );
        apply_edit(&mut doc, "metadata.name=x").unwrap();
        assert_eq!(doc["metadata"]["name"], "x");
        assert!(apply_edit(&mut doc, "no-equals-sign").is_err());
        assert!(apply_edit(&mut doc, "metrics[0].type[0]=x").is_err());
    }
}
