//! Rules compiled from a config: naming, resource association and query templates.
//!
//! Everything here is pure: no network, no clock. [`compile`] turns a parsed
//! [`MetricsDiscoveryConfig`](crate::config::MetricsDiscoveryConfig) into a [`CompiledConfig`],
//! reporting every problem with the rule index, the field and the line.

pub mod backends;
pub mod compiled;
pub mod lint;
pub mod mapper;
pub mod naming;
pub mod query;
pub mod quote;
pub mod resources;
pub mod schedule;
pub mod selector;
pub mod template;

pub use compiled::{CompiledConfig, CompiledRule, ResourceRuleSet, RuleKind, compile};
pub use mapper::{GroupResource, ResourceInfo, RestMapper};

use crate::config::Text;

/// A problem with one field of one rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", self.location())]
pub struct RuleError {
    /// `rules`, `externalRules` or `resourceRules`.
    pub section: String,
    /// Index of the rule in its section (unused for `resourceRules`).
    pub index: usize,
    /// Field path inside the rule, such as `name.matches`.
    pub field: String,
    /// 1-based line of the field's value; 0 when unknown.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl RuleError {
    /// An error about `field`, located where `text` was written.
    pub fn at(field: &str, text: &Text, message: impl Into<String>) -> Self {
        RuleError {
            section: String::new(),
            index: 0,
            field: field.to_string(),
            line: text.line,
            message: message.into(),
        }
    }

    /// An error about `field` without a known position.
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        RuleError {
            section: String::new(),
            index: 0,
            field: field.to_string(),
            line: 0,
            message: message.into(),
        }
    }

    /// Places the error in a rule of a section.
    pub fn in_rule(mut self, section: &str, index: usize) -> Self {
        self.section = section.to_string();
        self.index = index;
        self
    }

    /// `rules[3].name.matches (line 14)`.
    pub fn location(&self) -> String {
        let mut s = if self.section == "resourceRules" {
            format!("resourceRules.{}", self.field)
        } else {
            format!("{}[{}].{}", self.section, self.index, self.field)
        };
        if self.line > 0 {
            s.push_str(&format!(" (line {})", self.line));
        }
        s
    }
}
