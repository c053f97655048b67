//! Loading prometheus-adapter rule files.
//!
//! [`parse`] turns YAML text into the raw [`schema`] types, strictly: unknown keys, duplicate keys
//! and wrong types are errors that name the path (`rules[2].name.matches`) and the line. Whether
//! the regexes and templates inside compile is decided later, in [`crate::rules`].

pub mod schema;

use std::path::Path;

pub use schema::{
    Backend, DiscoveryRule, EmptyResult, GroupResource, MetricsDiscoveryConfig, NameMapping,
    RegexFilter, ResourceMapping, ResourceRule, ResourceRules, ScheduleRule, ScheduleWindow, Text,
};

/// Why a rules file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("unable to read config file {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a valid rules file.
    #[error("{origin}: {path}: {message}")]
    Parse {
        /// File name or other description of where the text came from.
        origin: String,
        /// Path of the offending element, such as `rules[2].name`; `.` for the document.
        path: String,
        /// The parser's message, which carries the line and column.
        message: String,
    },
}

/// Reads and parses a rules file.
pub fn load_file(path: &Path) -> Result<MetricsDiscoveryConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses rules-file text; `origin` names the text in error messages.
pub fn parse(text: &str, origin: &str) -> Result<MetricsDiscoveryConfig, ConfigError> {
    // An empty file is an empty config for yaml.v2; the YAML reader wants a document.
    if text.trim().is_empty() {
        return Ok(MetricsDiscoveryConfig::default());
    }
    let mut path = String::from(".");
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        let mut track = serde_path_to_error::Track::new();
        let value = {
            let de = serde_path_to_error::Deserializer::new(de, &mut track);
            serde::Deserialize::deserialize(de)
        };
        match value {
            Ok(v) => Ok(v),
            Err(e) => {
                path = track.path().to_string();
                Err(e)
            }
        }
    });
    result.map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        path,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_rule_parses_with_positions() {
        let cfg = parse(
            "rules:\n- seriesQuery: 'up{namespace!=\"\"}'\n  metricsQuery: sum(<<.Series>>)\n",
            "t",
        )
        .unwrap();
        assert_eq!(cfg.rules.len(), 1);
        assert_eq!(cfg.rules[0].series_query.value, "up{namespace!=\"\"}");
        assert_eq!(cfg.rules[0].series_query.line, 2);
        assert_eq!(cfg.rules[0].metrics_query.line, 3);
        assert!(cfg.resource_rules.is_none());
    }

    #[test]
    fn an_unknown_key_names_the_key_the_path_and_the_line() {
        let err = parse(
            "rules:\n- seriesQuery: up\n  name:\n    matches: x\n    ass: y\n",
            "cfg.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("ass"), "{err}");
        assert!(err.contains("rules[0].name"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn a_duplicate_key_is_an_error() {
        let err = parse("rules:\n- seriesQuery: up\n  seriesQuery: down\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.to_lowercase().contains("duplicate"), "{err}");
    }

    #[test]
    fn nulls_read_as_empty_like_yaml_v2() {
        let cfg = parse(
            "rules:\n- seriesQuery: up\n  seriesFilters:\n  resources:\n  name:\n    as:\nexternalRules:\n",
            "t",
        )
        .unwrap();
        assert!(cfg.rules[0].series_filters.is_empty());
        assert!(cfg.rules[0].name.as_.is_empty());
        assert!(cfg.external_rules.is_empty());
    }

    #[test]
    fn an_empty_file_is_an_empty_config() {
        let cfg = parse("\n# nothing\n", "t").unwrap();
        assert!(cfg.rules.is_empty());
    }

    #[test]
    fn a_duplicate_override_label_is_an_error() {
        let err = parse(
            "rules:\n- resources:\n    overrides:\n      pod: {resource: pod}\n      pod: {resource: pods}\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(err.to_lowercase().contains("duplicate"), "{err}");
    }
}
