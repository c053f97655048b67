//! Go-compatible string quoting.
//!
//! prometheus-adapter writes label values into PromQL with Go's `%q`
//! (`strconv.Quote`). Reproducing that byte for byte keeps the queries we send
//! identical to upstream's, so users comparing logs or Prometheus query stats
//! see the same text.

use std::fmt::Write as _;

/// Quotes `s` exactly as Go's `strconv.Quote` would.
///
/// Every ASCII input is byte-identical to Go. For non-ASCII input the only
/// source of difference is Go's `IsPrint` table, which this module
/// approximates (see [`is_go_print`]); valid label values are ASCII, so the
/// approximation never affects a query built from validated input.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    // Label values and object names are printable ASCII without quotes or backslashes: they
    // are copied whole (a request over 50 pods quotes a 400-byte regex).
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push_str(s);
    } else {
        for c in s.chars() {
            push_escaped(&mut out, c);
        }
    }
    out.push('"');
    out
}

/// Appends one character the way Go's `appendEscapedRune` does for a
/// double-quoted, non-ASCII-only, non-graphic-only quote.
fn push_escaped(out: &mut String, c: char) {
    // The quote character and the backslash are always escaped, even though
    // both are printable.
    match c {
        '"' => {
            out.push_str("\\\"");
            return;
        }
        '\\' => {
            out.push_str("\\\\");
            return;
        }
        _ => {}
    }
    if is_go_print(c) {
        out.push(c);
        return;
    }
    let named = match c {
        '\u{7}' => Some("\\a"),
        '\u{8}' => Some("\\b"),
        '\u{c}' => Some("\\f"),
        '\n' => Some("\\n"),
        '\r' => Some("\\r"),
        '\t' => Some("\\t"),
        '\u{b}' => Some("\\v"),
        _ => None,
    };
    if let Some(esc) = named {
        out.push_str(esc);
        return;
    }
    let cp = u32::from(c);
    // Writing into a String cannot fail; the results are ignored on purpose.
    if cp < 0x20 || cp == 0x7f {
        let _ = write!(out, "\\x{cp:02x}");
    } else if cp < 0x1_0000 {
        let _ = write!(out, "\\u{cp:04x}");
    } else {
        let _ = write!(out, "\\U{cp:08x}");
    }
}

/// Approximates Go's `strconv.IsPrint` (and `unicode.IsPrint`): letters,
/// marks, numbers, punctuation, symbols and the ASCII space are printable;
/// controls, format characters, private use, unassigned code points and
/// every space other than U+0020 are not.
///
/// Rust's standard library exposes no general-category table, so this is
/// exact for:
/// - ASCII and the C1 controls;
/// - all separators (Zs, Zl, Zp);
/// - the format characters (Cf) of Unicode 15.0, the version Go ≥ 1.21 uses;
/// - private use (Co) and the noncharacters (part of Cn);
/// - the wholly unassigned planes 4–13 and the unassigned parts of plane 14.
///
/// Approximation: any other unassigned code point in planes 0–3 (and code
/// points assigned after Unicode 15.0) is treated as printable, whereas Go
/// escapes it as `\uXXXX` / `\UXXXXXXXX`.
pub fn is_go_print(c: char) -> bool {
    let cp = u32::from(c);
    if cp < 0x80 {
        return (0x20..0x7f).contains(&cp);
    }
    // C1 controls.
    if cp <= 0x9f {
        return false;
    }
    if is_separator(cp) || is_format(cp) {
        return false;
    }
    // Private use areas.
    if (0xe000..=0xf8ff).contains(&cp) || cp >= 0xf_0000 {
        return false;
    }
    // Noncharacters: U+FDD0..U+FDEF and the last two code points of every plane.
    if (0xfdd0..=0xfdef).contains(&cp) || (cp & 0xfffe) == 0xfffe {
        return false;
    }
    // Planes 4 to 13 have no assigned characters at all.
    if (0x4_0000..=0xd_ffff).contains(&cp) {
        return false;
    }
    // Plane 14 holds only tag characters (format, handled above) and the
    // variation selectors supplement (nonspacing marks, printable).
    if (0xe_0000..=0xe_ffff).contains(&cp) {
        return (0xe_0100..=0xe_01ef).contains(&cp);
    }
    true
}

/// Space, line and paragraph separators other than U+0020 (categories Zs, Zl, Zp).
fn is_separator(cp: u32) -> bool {
    matches!(
        cp,
        0xa0 | 0x1680 | 0x2000..=0x200a | 0x2028 | 0x2029 | 0x202f | 0x205f | 0x3000
    )
}

/// Format characters (category Cf) as of Unicode 15.0.
fn is_format(cp: u32) -> bool {
    matches!(
        cp,
        0xad | 0x600..=0x605
            | 0x61c
            | 0x6dd
            | 0x70f
            | 0x890..=0x891
            | 0x8e2
            | 0x180e
            | 0x200b..=0x200f
            | 0x202a..=0x202e
            | 0x2060..=0x2064
            | 0x2066..=0x206f
            | 0xfeff
            | 0xfff9..=0xfffb
            | 0x110bd
            | 0x110cd
            | 0x13430..=0x1343f
            | 0x1bca0..=0x1bca3
            | 0x1d173..=0x1d17a
            | 0xe0001
            | 0xe0020..=0xe007f
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn go_strconv_test_table() {
        // The quoteTests table of Go's strconv package (valid UTF-8 rows only:
        // a Rust &str cannot hold the invalid byte of "abc\xffdef").
        let cases: &[(&str, &str)] = &[
            ("\u{7}\u{8}\u{c}\r\n\t\u{b}", r#""\a\b\f\r\n\t\v""#),
            ("\\", r#""\\""#),
            ("\u{263a}", "\"\u{263a}\""),
            ("\u{10ffff}", r#""\U0010ffff""#),
            ("\u{4}", r#""\x04""#),
            ("!\u{a0}!\u{2000}!\u{3000}!", r#""!\u00a0!\u2000!\u3000!""#),
            ("\u{7f}", r#""\x7f""#),
        ];
        for (input, want) in cases {
            assert_eq!(go_quote(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn ascii_is_exact() {
        assert_eq!(go_quote(""), r#""""#);
        assert_eq!(go_quote("GET"), r#""GET""#);
        assert_eq!(go_quote(r#"a"b"#), r#""a\"b""#);
        assert_eq!(go_quote("a|b.c-d_e"), r#""a|b.c-d_e""#);
        assert_eq!(go_quote("\u{0}"), r#""\x00""#);
        assert_eq!(go_quote("\u{1b}[0m"), r#""\x1b[0m""#);
        assert_eq!(go_quote(" ~"), r#"" ~""#);
        assert_eq!(go_quote("'"), r#""'""#);
        for b in 0u8..0x80 {
            let c = char::from(b);
            let q = go_quote(&c.to_string());
            let printable = (0x20..0x7f).contains(&b);
            if printable && c != '"' && c != '\\' {
                assert_eq!(q, format!("\"{c}\""));
            } else {
                assert!(q.contains('\\'), "{b:#x} must be escaped, got {q}");
            }
        }
    }

    #[test]
    fn non_ascii_known_go_outputs() {
        assert_eq!(go_quote("\u{85}"), r#""\u0085""#);
        assert_eq!(go_quote("\u{9f}"), r#""\u009f""#);
        assert_eq!(go_quote("\u{ad}"), r#""\u00ad""#);
        assert_eq!(go_quote("\u{200b}"), r#""\u200b""#);
        assert_eq!(go_quote("\u{2028}"), r#""\u2028""#);
        assert_eq!(go_quote("\u{feff}"), r#""\ufeff""#);
        assert_eq!(go_quote("\u{e000}"), r#""\ue000""#);
        assert_eq!(go_quote("\u{fffe}"), r#""\ufffe""#);
        assert_eq!(go_quote("\u{e0001}"), r#""\U000e0001""#);
        assert_eq!(go_quote("\u{f0000}"), r#""\U000f0000""#);
        // Printable non-ASCII stays as is.
        assert_eq!(go_quote("é日本µ"), "\"é日本µ\"");
        assert_eq!(go_quote("\u{fffd}"), "\"\u{fffd}\"");
        assert_eq!(go_quote("\u{1f600}"), "\"\u{1f600}\"");
        assert_eq!(go_quote("\u{e0100}"), "\"\u{e0100}\"");
        assert_eq!(go_quote("\u{301}"), "\"\u{301}\"");
    }

    /// Test-only reader of Go double-quoted literals, enough to check that
    /// quoting is reversible and self-delimiting.
    fn go_unquote(q: &str) -> Option<String> {
        let inner = q.strip_prefix('"')?.strip_suffix('"')?;
        let mut out = String::new();
        let mut it = inner.chars();
        while let Some(c) = it.next() {
            match c {
                '"' => return None,
                '\\' => {
                    let e = it.next()?;
                    let hex = |it: &mut std::str::Chars<'_>, n: usize| -> Option<char> {
                        let s: String = it.take(n).collect();
                        if s.len() != n {
                            return None;
                        }
                        char::from_u32(u32::from_str_radix(&s, 16).ok()?)
                    };
                    out.push(match e {
                        'a' => '\u{7}',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        'v' => '\u{b}',
                        '\\' => '\\',
                        '"' => '"',
                        'x' => hex(&mut it, 2)?,
                        'u' => hex(&mut it, 4)?,
                        'U' => hex(&mut it, 8)?,
                        _ => return None,
                    });
                }
                c if u32::from(c) < 0x20 || c == '\u{7f}' => return None,
                c => out.push(c),
            }
        }
        Some(out)
    }

    proptest! {
        #[test]
        fn quoting_round_trips(s in any::<String>()) {
            let q = go_quote(&s);
            prop_assert_eq!(go_unquote(&q), Some(s));
        }

        #[test]
        fn ascii_round_trips(s in "[\\x00-\\x7f]{0,40}") {
            let q = go_quote(&s);
            prop_assert!(q.is_ascii());
            prop_assert_eq!(go_unquote(&q), Some(s));
        }
    }
}
