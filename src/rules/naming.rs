//! Series filtering and naming: `seriesFilters` and `name.matches` / `name.as`.
//!
//! Semantics follow prometheus-adapter: filters are unanchored and all must pass; a non-empty
//! `matches` is also an implicit `is` filter; `as` is a Go `regexp.Expand` template, for which the
//! `regex` crate's `Captures::expand` has the same rules (`$name` takes the longest run of word
//! characters, so `$1_per_second` names a group that does not exist and expands to "").

use regex::Regex;

use super::RuleError;
use crate::config::{NameMapping, RegexFilter, Text};

/// One compiled `seriesFilters` entry.
#[derive(Clone, Debug)]
pub struct SeriesFilter {
    regex: Regex,
    /// `true` for `is`, `false` for `isNot`.
    must_match: bool,
}

impl SeriesFilter {
    /// Whether a series name passes this filter.
    pub fn passes(&self, series_name: &str) -> bool {
        self.regex.is_match(series_name) == self.must_match
    }
}

/// Turns series names into API metric names and decides which series a rule keeps.
#[derive(Clone, Debug)]
pub struct MetricNamer {
    filters: Vec<SeriesFilter>,
    matches: Regex,
    as_template: String,
}

/// Compiles a regex from a config field, naming the field on failure.
pub(crate) fn compile_regex(text: &Text, field: &str) -> Result<Regex, RuleError> {
    Regex::new(&text.value).map_err(|e| RuleError::at(field, text, format!("invalid regex: {e}")))
}

impl MetricNamer {
    /// Compiles the `seriesFilters` and `name` blocks of a rule.
    pub fn compile(filters: &[RegexFilter], name: &NameMapping) -> Result<Self, RuleError> {
        let mut compiled = Vec::with_capacity(filters.len() + 1);
        for (i, filter) in filters.iter().enumerate() {
            let field = format!("seriesFilters[{i}]");
            match (&filter.is, &filter.is_not) {
                (Some(is), None) => compiled.push(SeriesFilter {
                    regex: compile_regex(is, &format!("{field}.is"))?,
                    must_match: true,
                }),
                (None, Some(is_not)) => compiled.push(SeriesFilter {
                    regex: compile_regex(is_not, &format!("{field}.isNot"))?,
                    must_match: false,
                }),
                (Some(is), Some(_)) => {
                    return Err(RuleError::at(
                        &field,
                        is,
                        "cannot have both an is and an isNot regex in one filter",
                    ));
                }
                (None, None) => {
                    return Err(RuleError::new(
                        &field,
                        "a filter must have either an is or an isNot regex",
                    ));
                }
            }
        }

        let matches_src = if name.matches.is_empty() {
            ".*"
        } else {
            name.matches.as_str()
        };
        let matches = Regex::new(matches_src).map_err(|e| {
            RuleError::at("name.matches", &name.matches, format!("invalid regex: {e}"))
        })?;
        if !name.matches.is_empty() {
            compiled.push(SeriesFilter {
                regex: matches.clone(),
                must_match: true,
            });
        }

        let as_template = if name.as_.is_empty() {
            match matches.captures_len() - 1 {
                0 => "$0".to_string(),
                1 => "$1".to_string(),
                n => {
                    return Err(RuleError::at(
                        "name.as",
                        &name.matches,
                        format!(
                            "must specify an 'as' value for name matcher {matches_src:?} \
                             with {n} capture groups"
                        ),
                    ));
                }
            }
        } else {
            name.as_.value.clone()
        };

        Ok(MetricNamer {
            filters: compiled,
            matches,
            as_template,
        })
    }

    /// Whether the rule keeps a series with this name.
    pub fn keeps(&self, series_name: &str) -> bool {
        self.filters.iter().all(|f| f.passes(series_name))
    }

    /// The API metric name for a series name, or `None` when `matches` does not match.
    pub fn metric_name(&self, series_name: &str) -> Option<String> {
        let caps = self.matches.captures(series_name)?;
        let mut out = String::new();
        caps.expand(&self.as_template, &mut out);
        Some(out)
    }

    /// The name the rule's author most likely meant when `as` has dangling references:
    /// `$1_per_second` read as `${1}_per_second` (the longest prefix that names a group).
    /// `None` when `as` has no dangling reference.
    pub fn intended_metric_name(&self, series_name: &str) -> Option<String> {
        if self.dangling_references().is_empty() {
            return None;
        }
        let names: Vec<&str> = self.matches.capture_names().flatten().collect();
        let groups = self.matches.captures_len();
        let is_group = |r: &str| match r.parse::<usize>() {
            Ok(i) => i < groups,
            Err(_) => names.contains(&r),
        };
        let mut repaired = String::new();
        let t = self.as_template.as_str();
        let mut i = 0;
        while let Some(off) = t[i..].find('$') {
            repaired.push_str(&t[i..i + off]);
            i += off + 1;
            let rest = &t[i..];
            let word_len = rest
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            let word = &rest[..word_len];
            if word.is_empty() || is_group(word) {
                repaired.push('$');
                continue;
            }
            let prefix = (1..word.len())
                .rev()
                .map(|n| &word[..n])
                .find(|p| is_group(p));
            match prefix {
                Some(p) => {
                    repaired.push_str(&format!("${{{p}}}{}", &word[p.len()..]));
                    i += word_len;
                }
                None => repaired.push('$'),
            }
        }
        repaired.push_str(&t[i..]);
        let caps = self.matches.captures(series_name)?;
        let mut out = String::new();
        caps.expand(&repaired, &mut out);
        Some(out)
    }

    /// The effective `as` template (after upstream's defaults).
    pub fn as_template(&self) -> &str {
        &self.as_template
    }

    /// Whether some series name this rule keeps could become `api_name`: the literal text
    /// before the first and after the last reference of `as` must frame it. A cheap test that
    /// never says no wrongly (an `as` with `$$` is not examined), used to pick the rules a
    /// targeted lookup asks about.
    pub fn could_produce(&self, api_name: &str) -> bool {
        let t = self.as_template.as_str();
        if t == "$0" {
            return self.keeps(api_name);
        }
        if t.contains("$$") {
            return true;
        }
        let Some(first) = t.find('$') else {
            return t == api_name;
        };
        let last = t.rfind('$').unwrap_or(first);
        let rest = &t[last + 1..];
        let suffix = match rest.strip_prefix('{') {
            Some(inner) => match inner.find('}') {
                Some(i) => &inner[i + 1..],
                None => return true,
            },
            None => {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[end..]
            }
        };
        let prefix = &t[..first];
        api_name.len() >= prefix.len() + suffix.len()
            && api_name.starts_with(prefix)
            && api_name.ends_with(suffix)
    }

    /// Names in `as` that refer to no capture group of `matches`: each expands to "" (the
    /// `$1_per_second` trap). Empty when every reference resolves.
    pub fn dangling_references(&self) -> Vec<String> {
        let names: Vec<&str> = self.matches.capture_names().flatten().collect();
        let groups = self.matches.captures_len();
        expand_references(&self.as_template)
            .into_iter()
            .filter(|r| match r.parse::<usize>() {
                Ok(i) => i >= groups,
                Err(_) => !names.contains(&r.as_str()),
            })
            .collect()
    }
}

/// Whether a series name can be written into PromQL as a bare metric name
/// (`[a-zA-Z_:][a-zA-Z0-9_:]*`). Prometheus 3 accepts any UTF-8 name, but such a name would be
/// pasted unquoted into `<<.Series>>`, where it could rewrite the query; discovery skips it.
pub fn is_valid_series_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Whether an API metric name is usable in a URL path segment, as the HPA validates it
/// (`IsValidPathSegmentName`: not empty, `.` or `..`, no `/` or `%`).
pub fn is_valid_api_metric_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%'])
}

/// The group references in a Go `Expand` template, in order.
fn expand_references(template: &str) -> Vec<String> {
    let bytes = template.as_bytes();
    let mut refs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        i += 1;
        if i < bytes.len() && bytes[i] == b'$' {
            i += 1;
        } else if i < bytes.len() && bytes[i] == b'{' {
            if let Some(end) = template[i..].find('}') {
                refs.push(template[i + 1..i + end].to_string());
                i += end + 1;
            }
        } else {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            if i > start {
                refs.push(template[start..i].to_string());
            }
        }
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn could_produce_is_framed_by_the_literals_of_as() {
        let namer = |matches: &str, as_: &str| {
            MetricNamer::compile(
                &[],
                &NameMapping {
                    matches: Text::new(matches),
                    as_: Text::new(as_),
                },
            )
            .unwrap()
        };
        let rate = namer("^(.*)_total$", "${1}_per_second");
        assert!(rate.could_produce("http_requests_per_second"));
        assert!(!rate.could_produce("http_requests_total"));
        let same = namer("^http_.*", "");
        assert!(same.could_produce("http_requests_total"));
        assert!(!same.could_produce("grpc_requests_total"));
        let fixed = namer(
            "^vllm:(kv|gpu)_cache_usage_perc$",
            "vllm:kv_cache_usage_perc",
        );
        assert!(fixed.could_produce("vllm:kv_cache_usage_perc"));
        assert!(!fixed.could_produce("vllm:gpu_cache_usage_perc"));
        let bare = namer("^(.*)_seconds_total$", "${1}_cpu");
        assert!(bare.could_produce("node_cpu"));
        assert!(!bare.could_produce("node_memory"));
    }

    fn namer(matches: &str, as_: &str, filters: &[(&str, bool)]) -> Result<MetricNamer, RuleError> {
        let filters: Vec<RegexFilter> = filters
            .iter()
            .map(|(re, is)| RegexFilter {
                is: is.then(|| Text::new(*re)),
                is_not: (!is).then(|| Text::new(*re)),
            })
            .collect();
        MetricNamer::compile(
            &filters,
            &NameMapping {
                matches: Text::new(matches),
                as_: Text::new(as_),
            },
        )
    }

    #[test]
    fn per_second_rule_renames_totals() {
        let n = namer("^(.*)_total$", "${1}_per_second", &[]).unwrap();
        assert_eq!(
            n.metric_name("flask_http_request_total").unwrap(),
            "flask_http_request_per_second"
        );
        assert!(!n.keeps("flask_http_request_seconds"));
        assert!(n.dangling_references().is_empty());
    }

    #[test]
    fn dollar_one_underscore_names_a_missing_group_and_expands_empty() {
        let n = namer("^(.*)_total$", "$1_per_second", &[]).unwrap();
        assert_eq!(n.metric_name("x_total").unwrap(), "");
        assert_eq!(n.dangling_references(), vec!["1_per_second".to_string()]);
    }

    #[test]
    fn the_intended_name_of_a_dangling_reference_is_recovered() {
        let n = namer("^(.*)_total$", "$1_per_second", &[]).unwrap();
        assert_eq!(n.intended_metric_name("x_total").unwrap(), "x_per_second");
        let n = namer("^(?P<base>.*)_total$", "$base_rate", &[]).unwrap();
        assert_eq!(n.intended_metric_name("x_total").unwrap(), "x_rate");
        let ok = namer("^(.*)_total$", "${1}_per_second", &[]).unwrap();
        assert_eq!(ok.intended_metric_name("x_total"), None);
    }

    #[test]
    fn only_plain_metric_names_are_valid_series_names() {
        assert!(is_valid_series_name("http_requests_total"));
        assert!(is_valid_series_name("job:rate5m"));
        assert!(!is_valid_series_name("http.server.duration"));
        assert!(!is_valid_series_name(r#"x) or vector(1"#));
        assert!(!is_valid_series_name("1x"));
        assert!(!is_valid_series_name(""));
        assert!(is_valid_api_metric_name("a:b"));
        assert!(!is_valid_api_metric_name("a/b"));
    }

    #[test]
    fn as_defaults_follow_the_number_of_groups() {
        assert_eq!(
            namer("", "", &[]).unwrap().metric_name("abc").unwrap(),
            "abc"
        );
        assert_eq!(
            namer("^container_(.*)_seconds_total$", "", &[])
                .unwrap()
                .metric_name("container_cpu_usage_seconds_total")
                .unwrap(),
            "cpu_usage"
        );
        // $0 is the match, not the whole name, when matches is unanchored.
        assert_eq!(
            namer("_total", "", &[])
                .unwrap()
                .metric_name("a_total")
                .unwrap(),
            "_total"
        );
        let err = namer("^(a)(b)$", "", &[]).unwrap_err();
        assert!(
            err.to_string().contains("must specify an 'as' value"),
            "{err}"
        );
    }

    #[test]
    fn filters_are_unanchored_and_all_must_pass() {
        let n = namer("", "", &[("_total", true), ("_seconds_total$", false)]).unwrap();
        assert!(n.keeps("http_requests_total"));
        assert!(n.keeps("http_requests_total_x"));
        assert!(!n.keeps("http_request_duration_seconds_total"));
        assert!(!n.keeps("up"));
    }

    #[test]
    fn a_filter_with_both_or_neither_regex_is_an_error() {
        let both = MetricNamer::compile(
            &[RegexFilter {
                is: Some(Text::new("a")),
                is_not: Some(Text::new("b")),
            }],
            &NameMapping::default(),
        )
        .unwrap_err();
        assert!(both.to_string().contains("both"), "{both}");
        let neither =
            MetricNamer::compile(&[RegexFilter::default()], &NameMapping::default()).unwrap_err();
        assert!(neither.to_string().contains("either"), "{neither}");
    }

    #[test]
    fn a_bad_regex_names_the_field() {
        let err = namer("(", "", &[]).unwrap_err();
        assert_eq!(err.field, "name.matches");
        let err = namer("", "", &[("[", false)]).unwrap_err();
        assert_eq!(err.field, "seriesFilters[0].isNot");
    }
}
