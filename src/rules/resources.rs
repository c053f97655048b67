//! Association between Prometheus labels and Kubernetes resources (`resources` in a rule).
//!
//! Overrides map one label to one group-resource. The template (`<<.Resource>>`,
//! `kube_<<.Group>>_<<.Resource>>`) works in both directions, as upstream: forwards it renders
//! the label for a resource (group dots and dashes become `_`, the resource is singular);
//! backwards it is rendered with regex captures in place of `.Group` and `.Resource`, anchored,
//! and every series label is matched against it.

use regex::Regex;

use super::RuleError;
use super::mapper::{GroupResource, RestMapper};
use super::template::{Template, Value};
use crate::config::ResourceMapping;

/// The fields a resource template may use.
const TEMPLATE_FIELDS: &[&str] = &["Group", "Resource"];

/// A compiled `resources` block, independent of which resources the cluster has.
#[derive(Clone, Debug)]
pub struct ResourceConverter {
    /// `(label, group, resource)` as written in the config, not yet normalised.
    overrides: Vec<(String, String, String)>,
    template: Option<(Template, Regex)>,
    namespaced: bool,
}

/// Whether a label maps to a resource, and why not when it does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelResource {
    /// The label names objects of this resource.
    Resource(GroupResource),
    /// The label matched the template or an override, but the mapper knows no such resource.
    Unknown(GroupResource),
    /// The label is not a resource label.
    NotAResource,
}

impl ResourceConverter {
    /// Compiles a `resources` block.
    pub fn compile(mapping: &ResourceMapping) -> Result<Self, RuleError> {
        let overrides = mapping
            .overrides
            .iter()
            .map(|(label, gr)| (label.clone(), gr.group.clone(), gr.resource.clone()))
            .collect();
        let template = if mapping.template.is_empty() {
            None
        } else {
            let tmpl = Template::parse(
                "resource-template",
                mapping.template.as_str(),
                TEMPLATE_FIELDS,
            )
            .map_err(|e| RuleError::at("resources.template", &mapping.template, e.to_string()))?;
            if !tmpl.uses_field("Resource") {
                return Err(RuleError::at(
                    "resources.template",
                    &mapping.template,
                    "must include at least <<.Resource>>",
                ));
            }
            let pattern = tmpl
                .render(&[
                    ("Group", Value::Str("(?P<group>.+?)".into())),
                    ("Resource", Value::Str("(?P<resource>.+?)".into())),
                ])
                .map_err(|e| {
                    RuleError::at("resources.template", &mapping.template, e.to_string())
                })?;
            let reverse = Regex::new(&format!("^{pattern}$")).map_err(|e| {
                RuleError::at(
                    "resources.template",
                    &mapping.template,
                    format!("the template does not form a valid regex when reversed: {e}"),
                )
            })?;
            Some((tmpl, reverse))
        };
        Ok(ResourceConverter {
            overrides,
            template,
            namespaced: mapping.namespaced.unwrap_or(true),
        })
    }

    /// The `namespaced` flag (external rules).
    pub fn namespaced(&self) -> bool {
        self.namespaced
    }

    /// Whether the block maps anything at all.
    pub fn is_empty(&self) -> bool {
        self.overrides.is_empty() && self.template.is_none()
    }

    /// Whether a template is set (it maps labels such as `job` or `service` to resources too).
    pub fn has_template(&self) -> bool {
        self.template.is_some()
    }

    /// Overrides whose resource the mapper does not know, as `(label, group/resource)`.
    /// Upstream refuses to start on these ("unable to normalize group-resource").
    pub fn unknown_overrides(&self, mapper: &RestMapper) -> Vec<(String, GroupResource)> {
        self.overrides
            .iter()
            .filter(|(_, group, resource)| mapper.resolve(group, resource).is_none())
            .map(|(label, group, resource)| (label.clone(), GroupResource::new(group, resource)))
            .collect()
    }

    /// The resource a label names.
    pub fn resource_for_label(&self, label: &str, mapper: &RestMapper) -> LabelResource {
        if let Some((_, group, resource)) = self.overrides.iter().find(|(l, _, _)| l == label) {
            return match mapper.resolve(group, resource) {
                Some(info) => LabelResource::Resource(info.group_resource()),
                None => LabelResource::Unknown(GroupResource::new(group, resource)),
            };
        }
        let Some((_, reverse)) = &self.template else {
            return LabelResource::NotAResource;
        };
        let Some(caps) = reverse.captures(label) else {
            return LabelResource::NotAResource;
        };
        let group = caps.name("group").map_or("", |m| m.as_str());
        let resource = caps.name("resource").map_or("", |m| m.as_str());
        match mapper.resolve(group, resource) {
            Some(info) => LabelResource::Resource(info.group_resource()),
            None => LabelResource::Unknown(GroupResource::new(group, resource)),
        }
    }

    /// The label that holds names of `resource` objects.
    pub fn label_for_resource(
        &self,
        resource: &GroupResource,
        mapper: &RestMapper,
    ) -> Result<String, String> {
        for (label, group, res) in &self.overrides {
            if let Some(info) = mapper.resolve(group, res)
                && info.group_resource() == *resource
            {
                return Ok(label.clone());
            }
        }
        let Some((tmpl, _)) = &self.template else {
            return Err(format!(
                "no label is mapped to {resource}: add an override for it or a resources.template"
            ));
        };
        let singular = mapper
            .singular(&resource.resource)
            .ok_or_else(|| format!("unknown resource {resource}"))?;
        let group = resource.group.replace(['.', '-'], "_");
        tmpl.render(&[
            ("Group", Value::Str(group)),
            ("Resource", Value::Str(singular.to_string())),
        ])
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GroupResource as RawGr, Text};

    fn overrides(pairs: &[(&str, &str, &str)]) -> ResourceMapping {
        ResourceMapping {
            overrides: pairs
                .iter()
                .map(|(l, g, r)| {
                    (
                        l.to_string(),
                        RawGr {
                            group: g.to_string(),
                            resource: r.to_string(),
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    fn template(t: &str) -> ResourceMapping {
        ResourceMapping {
            template: Text::new(t),
            ..Default::default()
        }
    }

    #[test]
    fn overrides_map_both_ways_with_any_spelling() {
        let m = RestMapper::standalone();
        let c = ResourceConverter::compile(&overrides(&[
            ("namespace", "", "namespace"),
            ("pod", "", "pod"),
            ("owner", "apps", "deployment"),
        ]))
        .unwrap();
        assert_eq!(
            c.resource_for_label("pod", &m),
            LabelResource::Resource(GroupResource::new("", "pods"))
        );
        assert_eq!(c.resource_for_label("job", &m), LabelResource::NotAResource);
        assert_eq!(
            c.label_for_resource(&GroupResource::new("apps", "deployments"), &m)
                .unwrap(),
            "owner"
        );
        assert_eq!(
            c.label_for_resource(&GroupResource::namespaces(), &m)
                .unwrap(),
            "namespace"
        );
        assert!(
            c.label_for_resource(&GroupResource::new("", "nodes"), &m)
                .is_err()
        );
    }

    #[test]
    fn the_resource_template_runs_forwards_and_backwards() {
        let m = RestMapper::standalone();
        let c = ResourceConverter::compile(&template("kube_<<.Group>>_<<.Resource>>")).unwrap();
        assert_eq!(
            c.label_for_resource(&GroupResource::new("networking.k8s.io", "ingresses"), &m)
                .unwrap(),
            "kube_networking_k8s_io_ingress"
        );
        assert_eq!(
            c.resource_for_label("kube_apps_deployment", &m),
            LabelResource::Resource(GroupResource::new("apps", "deployments"))
        );
        // Dotted groups do not round-trip, as upstream.
        assert_eq!(
            c.resource_for_label("kube_networking_k8s_io_ingress", &m),
            LabelResource::Unknown(GroupResource::new("networking", "k8s_io_ingress"))
        );
        let plain = ResourceConverter::compile(&template("<<.Resource>>")).unwrap();
        assert_eq!(
            plain.resource_for_label("job", &m),
            LabelResource::Resource(GroupResource::new("batch", "jobs"))
        );
        assert_eq!(
            plain.resource_for_label("service", &m),
            LabelResource::Resource(GroupResource::new("", "services"))
        );
        assert_eq!(
            plain.resource_for_label("instance", &m),
            LabelResource::Unknown(GroupResource::new("", "instance"))
        );
        assert_eq!(
            plain
                .label_for_resource(&GroupResource::new("", "pods"), &m)
                .unwrap(),
            "pod"
        );
    }

    #[test]
    fn a_template_without_resource_is_an_error() {
        let err = ResourceConverter::compile(&template("kube_<<.Group>>")).unwrap_err();
        assert!(err.to_string().contains("<<.Resource>>"), "{err}");
        assert!(ResourceConverter::compile(&template("<<.Nope>>")).is_err());
    }

    #[test]
    fn unknown_overrides_are_reported() {
        let m = RestMapper::standalone();
        let c =
            ResourceConverter::compile(&overrides(&[("x", "", "gadgets"), ("pod", "", "pods")]))
                .unwrap();
        assert_eq!(
            c.unknown_overrides(&m),
            vec![("x".to_string(), GroupResource::new("", "gadgets"))]
        );
    }
}
