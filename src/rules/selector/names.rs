//! The grammars of label keys, label values, object names and Prometheus label names.
//!
//! Checked at the edge, with apimachinery's limits and reasons, because values end up unescaped
//! in PromQL regexes and names in Kubernetes requests.

use super::SelectorError;

/// Longest allowed label value and qualified-name part (apimachinery's limit).
const MAX_NAME_LEN: usize = 63;
/// Longest allowed DNS-1123 subdomain, used for key prefixes and object names.
const MAX_SUBDOMAIN_LEN: usize = 253;

/// True for a Kubernetes label value: empty, or at most 63 characters of
/// `[A-Za-z0-9_.-]` that start and end with a letter or digit.
pub fn is_valid_label_value(s: &str) -> bool {
    s.is_empty() || is_qualified_name_part(s)
}

/// True for a Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*` (the classic
/// grammar every PromQL parser accepts unquoted).
pub fn is_valid_prom_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// True for an RFC 1123 label, the grammar of namespace names:
/// at most 63 characters of `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= MAX_NAME_LEN && is_dns_label_shape(s)
}

/// True for an RFC 1123 subdomain, the grammar of most object names: at most
/// 253 characters of dot-separated `[a-z0-9]([-a-z0-9]*[a-z0-9])?` labels.
/// Like apimachinery, it does not limit the length of each label.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= MAX_SUBDOMAIN_LEN && s.split('.').all(is_dns_label_shape)
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` without a length limit.
fn is_dns_label_shape(s: &str) -> bool {
    let b = s.as_bytes();
    let end_ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) if end_ok(first) && end_ok(last) => {
            b.iter().all(|c| end_ok(c) || *c == b'-')
        }
        _ => false,
    }
}

/// One to 63 characters of `[A-Za-z0-9_.-]`, starting and ending with a
/// letter or digit: a label value or the name part of a qualified name.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last))
            if b.len() <= MAX_NAME_LEN
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric() =>
        {
            b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Checks a label key as apimachinery's `IsQualifiedName` does.
pub(super) fn validate_key(key: &str) -> Result<(), SelectorError> {
    let invalid = |reason: &str| {
        Err(SelectorError::InvalidKey {
            key: key.to_owned(),
            reason: reason.to_owned(),
        })
    };
    let mut parts = key.split('/');
    let (prefix, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, _) => (None, name),
        (Some(prefix), Some(name), None) => (Some(prefix), name),
        _ => {
            return invalid(
                "a key may contain at most one '/', between an optional DNS subdomain prefix and the name",
            );
        }
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return invalid("the prefix before '/' must not be empty");
        }
        if prefix.len() > MAX_SUBDOMAIN_LEN {
            return invalid("the prefix before '/' must be at most 253 characters");
        }
        if !is_dns1123_subdomain(prefix) {
            return invalid(
                "the prefix before '/' must be a DNS subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
            );
        }
    }
    if name.is_empty() {
        return invalid("the name must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("the name must be at most 63 characters");
    }
    if !is_qualified_name_part(name) {
        return invalid(
            "the name may contain only letters, digits, '-', '_' and '.', and must start and end with a letter or digit",
        );
    }
    Ok(())
}

/// Checks a value as apimachinery's `IsValidLabelValue` does.
pub(super) fn validate_value(key: &str, value: &str) -> Result<(), SelectorError> {
    if is_valid_label_value(value) {
        return Ok(());
    }
    let reason = if value.len() > MAX_NAME_LEN {
        "a label value must be at most 63 characters"
    } else {
        "a label value must be empty or contain only letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    };
    Err(SelectorError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::selector::Selector;

    #[test]
    fn validates_keys_and_values_with_reasons() {
        let long63 = "a".repeat(63);
        let long64 = "a".repeat(64);
        assert!(Selector::parse(&format!("{long63}={long63}")).is_ok());
        let e = Selector::parse(&format!("{long64}=x")).unwrap_err();
        assert!(matches!(&e, SelectorError::InvalidKey { key, .. } if *key == long64));
        assert!(e.to_string().contains("at most 63"));
        let e = Selector::parse(&format!("x={long64}")).unwrap_err();
        assert!(matches!(&e, SelectorError::InvalidValue { value, .. } if *value == long64));
        let e = Selector::parse("x=-a").unwrap_err();
        assert!(e.to_string().contains(r#""-a""#), "{e}");
        assert!(e.to_string().contains(r#"label "x""#), "{e}");
        let e = Selector::parse("x=a\"b").unwrap_err();
        assert!(matches!(e, SelectorError::InvalidValue { .. }));
        let e = Selector::parse("x=a\\b").unwrap_err();
        assert!(matches!(e, SelectorError::InvalidValue { .. }));
        let e = Selector::parse("x in (a|b)").unwrap_err();
        assert!(matches!(e, SelectorError::InvalidValue { .. }));
        let e = Selector::parse("x=é").unwrap_err();
        assert!(matches!(e, SelectorError::InvalidValue { .. }));
        let e = Selector::parse("x>a").unwrap_err();
        assert!(matches!(e, SelectorError::NotAnInteger { .. }));
        assert!(e.to_string().contains("integer"));
        for key in [
            "/a",
            "a/",
            "a/b/c",
            "A.com/x",
            "-a",
            "a-",
            "a b",
            "a\"",
            "é",
            &format!("{}/a", "a".repeat(254)),
        ] {
            let e = Selector::parse(key).unwrap_err();
            assert!(
                matches!(
                    e,
                    SelectorError::InvalidKey { .. } | SelectorError::Syntax { .. }
                ),
                "{key:?}: {e}"
            );
        }
        assert!(Selector::parse(&format!("{}/a", "a".repeat(253))).is_ok());
        assert!(Selector::parse("Example.com/x").is_err());
        assert!(Selector::parse("example.com/X_y.Z").is_ok());
        assert!(Selector::parse("1234").is_ok());
        assert_eq!(
            Selector::parse("a=b\0").unwrap_err(),
            SelectorError::NulByte
        );
        let e = Selector::parse("a b").unwrap_err();
        assert!(e.to_string().contains("found 'b'"), "{e}");
    }

    #[test]
    fn dns_and_name_helpers() {
        assert!(is_dns1123_label("default"));
        assert!(is_dns1123_label("kube-system"));
        assert!(is_dns1123_label("a"));
        assert!(is_dns1123_label("0"));
        assert!(is_dns1123_label(&"a".repeat(63)));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", "a b", "é"] {
            assert!(!is_dns1123_label(bad), "{bad:?}");
        }
        assert!(is_dns1123_subdomain("sample-app-7cfb596f98-8h5fv"));
        assert!(is_dns1123_subdomain("a.b.c"));
        assert!(is_dns1123_subdomain(&format!("{}.b", "a".repeat(100))));
        assert!(is_dns1123_subdomain(&"a".repeat(253)));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
        for bad in ["", ".", "a.", ".a", "a..b", "a.-b", "A.b", "a_b", "a/b"] {
            assert!(!is_dns1123_subdomain(bad), "{bad:?}");
        }
        assert!(is_valid_label_value(""));
        assert!(is_valid_label_value("MyValue"));
        assert!(is_valid_label_value("my_value"));
        assert!(is_valid_label_value("12345"));
        assert!(is_valid_label_value("a.b-c_d"));
        for bad in [
            "-a",
            "a-",
            "_a",
            "a_",
            ".a",
            "a b",
            "a/b",
            "a\"b",
            "a|b",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_label_value(bad), "{bad:?}");
        }
        assert!(is_valid_prom_label_name("__name__"));
        assert!(is_valid_prom_label_name("_"));
        assert!(is_valid_prom_label_name("pod"));
        assert!(is_valid_prom_label_name("A9_z"));
        for bad in ["", "9a", "a-b", "a.b", "a/b", "é"] {
            assert!(!is_valid_prom_label_name(bad), "{bad:?}");
        }
    }
}
