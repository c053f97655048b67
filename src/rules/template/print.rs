//! Go's `fmt` printing (`%v`, `Sprint`, `Sprintf` and its verbs) and `strconv` quoting.
//!
//! Rendered queries and error messages must be byte-identical to what Go produces for
//! prometheus-adapter's configurations, so printing follows Go's rules, including its
//! `%!verb(type=value)` forms for mistakes, rather than Rust's formatting.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::exec::Val;

/// Go's `%v` with no flags.
// Called by execution for every printed action; the hint lets it be inlined across codegen
// units as it was before the engine was split into files (benches/render.rs).
#[inline]
pub(super) fn write_v(out: &mut String, v: &Val<'_>) {
    match v {
        Val::Nil => out.push_str("<nil>"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Val::Str(s) => out.push_str(s),
        Val::List(l) => {
            out.push('[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(e);
            }
            out.push(']');
        }
        Val::Map(m) => {
            out.push_str("map[");
            for (i, (k, val)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                out.push_str(val);
            }
            out.push(']');
        }
        Val::Root(d) => {
            out.push('{');
            for (i, (_, val)) in d.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_v(out, &Val::of(val));
            }
            out.push('}');
        }
    }
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
pub(super) fn sprint(out: &mut String, vals: &[Val<'_>]) {
    let mut prev_str = false;
    for (i, v) in vals.iter().enumerate() {
        let is_str = matches!(v, Val::Str(_));
        if i > 0 && !is_str && !prev_str {
            out.push(' ');
        }
        write_v(out, v);
        prev_str = is_str;
    }
}

#[derive(Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// Go's limit on width and precision numbers in a format.
const FMT_NUM_MAX: usize = 1_000_000;

/// Parses a decimal number at `*i`; `None` (and `*i` moved to the end) when
/// it is too large, as Go does.
fn parse_fmt_num(b: &[u8], i: &mut usize) -> Option<Option<usize>> {
    let mut n: usize = 0;
    let mut any = false;
    while *i < b.len() && b[*i].is_ascii_digit() {
        if n > FMT_NUM_MAX {
            *i = b.len();
            return None;
        }
        n = n * 10 + (b[*i] - b'0') as usize;
        any = true;
        *i += 1;
    }
    Some(any.then_some(n))
}

/// Go's `fmt.Sprintf` for the verbs templates use.
pub(super) fn sprintf(out: &mut String, format: &str, args: &[Val<'_>]) {
    let b = format.as_bytes();
    let mut i = 0;
    let mut argn = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i] != b'%' {
            i += 1;
        }
        out.push_str(&format[start..i]);
        if i >= b.len() {
            break;
        }
        i += 1;
        let mut sp = Spec::default();
        while i < b.len() {
            match b[i] {
                b'#' => sp.sharp = true,
                b'0' => sp.zero = !sp.minus,
                b'+' => sp.plus = true,
                b'-' => {
                    sp.minus = true;
                    sp.zero = false;
                }
                b' ' => sp.space = true,
                _ => break,
            }
            i += 1;
        }
        if i < b.len() && b[i] == b'*' {
            i += 1;
            match args.get(argn) {
                Some(Val::Int(n)) if n.unsigned_abs() <= FMT_NUM_MAX as u64 => {
                    sp.width = Some(n.unsigned_abs() as usize);
                    if *n < 0 {
                        sp.minus = true;
                        sp.zero = false;
                    }
                }
                _ => out.push_str("%!(BADWIDTH)"),
            }
            argn = (argn + 1).min(args.len());
        } else {
            match parse_fmt_num(b, &mut i) {
                Some(w) => sp.width = w,
                None => {
                    out.push_str("%!(NOVERB)");
                    break;
                }
            }
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            if i < b.len() && b[i] == b'*' {
                i += 1;
                match args.get(argn) {
                    Some(Val::Int(n)) if *n >= 0 && *n as u64 <= FMT_NUM_MAX as u64 => {
                        sp.prec = Some(*n as usize)
                    }
                    _ => out.push_str("%!(BADPREC)"),
                }
                argn = (argn + 1).min(args.len());
            } else {
                match parse_fmt_num(b, &mut i) {
                    Some(p) => sp.prec = Some(p.unwrap_or(0)),
                    None => {
                        out.push_str("%!(NOVERB)");
                        break;
                    }
                }
            }
        }
        let Some(verb) = format[i..].chars().next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += verb.len_utf8();
        if verb == '%' {
            out.push('%');
        } else if let Some(a) = args.get(argn) {
            fmt_arg(out, a, verb, &sp);
            argn += 1;
        } else {
            let _ = write!(out, "%!{verb}(MISSING)");
        }
    }
    if argn < args.len() {
        out.push_str("%!(EXTRA ");
        for (j, a) in args[argn..].iter().enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            if a.is_nil() {
                out.push_str("<nil>");
            } else {
                out.push_str(a.type_name());
                out.push('=');
                write_v(out, a);
            }
        }
        out.push(')');
    }
}

fn pad(out: &mut String, s: &str, sp: &Spec) {
    let w = sp.width.unwrap_or(0);
    let n = s.chars().count();
    if n >= w {
        out.push_str(s);
        return;
    }
    let fill = w - n;
    if sp.minus {
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', fill));
    } else {
        out.extend(std::iter::repeat_n(if sp.zero { '0' } else { ' ' }, fill));
        out.push_str(s);
    }
}

fn bad_verb(out: &mut String, verb: char, v: &Val<'_>) {
    out.push_str("%!");
    out.push(verb);
    out.push('(');
    if v.is_nil() {
        out.push_str("<nil>");
    } else {
        out.push_str(v.type_name());
        out.push('=');
        write_v(out, v);
    }
    out.push(')');
}

fn fmt_arg(out: &mut String, v: &Val<'_>, verb: char, sp: &Spec) {
    if verb == 'T' {
        pad(out, v.type_name(), sp);
        return;
    }
    match v {
        Val::Nil => {
            if verb == 'v' {
                pad(out, "<nil>", sp);
            } else {
                bad_verb(out, verb, v);
            }
        }
        Val::Bool(b) => match verb {
            'v' | 't' => pad(out, if *b { "true" } else { "false" }, sp),
            _ => bad_verb(out, verb, v),
        },
        Val::Int(n) => match verb {
            'v' => {
                let plain = Spec {
                    plus: false,
                    sharp: false,
                    ..*sp
                };
                fmt_integer(out, *n, 10, verb, &plain);
            }
            'd' => fmt_integer(out, *n, 10, verb, sp),
            'b' => fmt_integer(out, *n, 2, verb, sp),
            'o' | 'O' => fmt_integer(out, *n, 8, verb, sp),
            'x' | 'X' => fmt_integer(out, *n, 16, verb, sp),
            'c' => {
                let mut tmp = [0u8; 4];
                pad(out, rune_of(*n).encode_utf8(&mut tmp), sp);
            }
            'q' => {
                let r = rune_of(*n);
                let mut s = String::new();
                if sp.sharp && is_print(r) && r != '\'' {
                    s.push('\'');
                    s.push(r);
                    s.push('\'');
                } else {
                    append_quoted(&mut s, std::iter::once(r), '\'', sp.plus);
                }
                pad(out, &s, sp);
            }
            'U' => {
                let u = *n as u64;
                let mut s = format!("U+{u:04X}");
                if sp.sharp
                    && let Some(c) = char::from_u32(u as u32).filter(|_| u <= 0x10FFFF)
                    && is_print(c)
                {
                    let _ = write!(s, " '{c}'");
                }
                pad(out, &s, sp);
            }
            _ => bad_verb(out, verb, v),
        },
        Val::Str(s) => match verb {
            'v' if sp.sharp => fmt_q(
                out,
                s,
                &Spec {
                    sharp: false,
                    ..*sp
                },
            ),
            'v' | 's' => pad(out, truncate_chars(s, sp.prec), sp),
            'q' => fmt_q(out, s, sp),
            'x' | 'X' => fmt_sx(out, s, verb == 'X', sp),
            _ => bad_verb(out, verb, v),
        },
        Val::List(l) => {
            if verb == 'v' && sp.sharp {
                out.push_str("[]string{");
                for (i, e) in l.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&go_quote(e));
                }
                out.push('}');
                return;
            }
            out.push('[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_arg(out, &Val::Str(Cow::Borrowed(e)), verb, sp);
            }
            out.push(']');
        }
        Val::Map(m) => {
            if verb == 'v' && sp.sharp {
                out.push_str("map[string]string{");
                for (i, (k, val)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&go_quote(k));
                    out.push(':');
                    out.push_str(&go_quote(val));
                }
                out.push('}');
                return;
            }
            out.push_str("map[");
            for (i, (k, val)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_arg(out, &Val::Str(Cow::Borrowed(k)), verb, sp);
                out.push(':');
                fmt_arg(out, &Val::Str(Cow::Borrowed(val)), verb, sp);
            }
            out.push(']');
        }
        Val::Root(d) => {
            out.push('{');
            for (i, (name, val)) in d.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                if verb == 'v' && sp.plus {
                    out.push_str(name);
                    out.push(':');
                }
                fmt_arg(out, &Val::of(val), verb, sp);
            }
            out.push('}');
        }
    }
}

fn rune_of(n: i64) -> char {
    u32::try_from(n)
        .ok()
        .and_then(char::from_u32)
        .unwrap_or('\u{FFFD}')
}

fn truncate_chars(s: &str, prec: Option<usize>) -> &str {
    match prec {
        Some(p) => match s.char_indices().nth(p) {
            Some((i, _)) => &s[..i],
            None => s,
        },
        None => s,
    }
}

fn fmt_q(out: &mut String, s: &str, sp: &Spec) {
    let s = truncate_chars(s, sp.prec);
    let mut q = String::with_capacity(s.len() + 2);
    if sp.sharp && can_backquote(s) {
        q.push('`');
        q.push_str(s);
        q.push('`');
    } else {
        append_quoted(&mut q, s.chars(), '"', sp.plus);
    }
    pad(out, &q, sp);
}

fn fmt_sx(out: &mut String, s: &str, upper: bool, sp: &Spec) {
    let mut bytes = s.as_bytes();
    if let Some(p) = sp.prec
        && p < bytes.len()
    {
        bytes = &bytes[..p];
    }
    if bytes.is_empty() {
        pad(out, "", sp);
        return;
    }
    let prefix = if upper { "0X" } else { "0x" };
    let mut h = String::with_capacity(bytes.len() * 3 + 2);
    for (i, b) in bytes.iter().enumerate() {
        if sp.sharp && (i == 0 || sp.space) {
            if i > 0 {
                h.push(' ');
            }
            h.push_str(prefix);
        } else if i > 0 && sp.space {
            h.push(' ');
        }
        if upper {
            let _ = write!(h, "{b:02X}");
        } else {
            let _ = write!(h, "{b:02x}");
        }
    }
    pad(out, &h, sp);
}

fn fmt_integer(out: &mut String, n: i64, base: u32, verb: char, sp: &Spec) {
    let neg = n < 0;
    let u = n.unsigned_abs();
    if sp.prec == Some(0) && u == 0 {
        pad(out, "", &Spec { zero: false, ..*sp });
        return;
    }
    let mut digits = match (base, verb) {
        (16, 'X') => format!("{u:X}"),
        (16, _) => format!("{u:x}"),
        (8, _) => format!("{u:o}"),
        (2, _) => format!("{u:b}"),
        _ => u.to_string(),
    };
    let min_digits = if let Some(p) = sp.prec {
        p
    } else if sp.zero && !sp.minus && sp.width.is_some() {
        let w = sp.width.unwrap_or(0);
        if neg || sp.plus || sp.space {
            w.saturating_sub(1)
        } else {
            w
        }
    } else {
        0
    };
    if digits.len() < min_digits {
        let zeros = "0".repeat(min_digits - digits.len());
        digits.insert_str(0, &zeros);
    }
    let mut s = String::with_capacity(digits.len() + 3);
    if neg {
        s.push('-');
    } else if sp.plus {
        s.push('+');
    } else if sp.space {
        s.push(' ');
    }
    if verb == 'O' {
        s.push_str("0o");
    } else if sp.sharp {
        match base {
            2 => s.push_str("0b"),
            8 if !digits.starts_with('0') => s.push('0'),
            16 => s.push_str(if verb == 'X' { "0X" } else { "0x" }),
            _ => {}
        }
    }
    s.push_str(&digits);
    pad(out, &s, &Spec { zero: false, ..*sp });
}

/// Go's `strconv.CanBackquote`.
fn can_backquote(s: &str) -> bool {
    s.chars()
        .all(|c| c != '`' && c != '\u{7f}' && c != '\u{feff}' && (c >= ' ' || c == '\t'))
}

/// Go's `strconv.Quote`: the one the queries use.
pub(super) use crate::rules::quote::go_quote;

/// Go's `strconv` quoting of a string or rune with `quote` as the delimiter.
fn append_quoted(
    out: &mut String,
    chars: impl Iterator<Item = char>,
    quote: char,
    ascii_only: bool,
) {
    out.push(quote);
    for c in chars {
        if c == quote || c == '\\' {
            out.push('\\');
            out.push(c);
            continue;
        }
        let printable = if ascii_only {
            c.is_ascii() && is_print(c)
        } else {
            is_print(c)
        };
        if printable {
            out.push(c);
            continue;
        }
        match c {
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push(quote);
}

/// An approximation of Go's `unicode.IsPrint` without Unicode tables:
/// letters, marks, numbers, punctuation, symbols and the ASCII space are
/// printable; controls, other spaces, format characters, private-use code
/// points and noncharacters are not. (Unassigned code points count as
/// printable here; Go escapes them.)
pub(super) fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    if matches!(
        u,
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x890..=0x891
            | 0x8E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
            | 0xE000..=0xF8FF
            | 0xF0000..=0x10FFFF
            | 0xFDD0..=0xFDEF
    ) {
        return false;
    }
    (u & 0xFFFE) != 0xFFFE
}

#[cfg(test)]
mod tests {
    use crate::rules::template::tests::r;

    #[test]
    fn printf_and_pipes() {
        assert_eq!(
            r(r#"<<printf "%s_total" .Series>>"#),
            "flask_http_request_total_total"
        );
        assert_eq!(r(r#"<<.GroupBy | printf "%q">>"#), "\"pod\"");
        assert_eq!(r(r#"<<.GroupBy | printf "%s-%s" "x">>"#), "x-pod");
        assert_eq!(
            r(r#"<<printf "%d-%v-%s" 5 .GroupBySlice .GroupBy>>"#),
            "5-[pod]-pod"
        );
        assert_eq!(r(r#"<<printf "%s">>"#), "%!s(MISSING)");
        assert_eq!(r(r#"<<printf "%d" "x">>"#), "%!d(string=x)");
        assert_eq!(r(r#"<<printf "%s" .GroupBy 2>>"#), "pod%!(EXTRA int=2)");
        assert_eq!(
            r(r#"<<printf "%5s|%-5s|%05d|%x|%X|%o" "ab" "cd" 42 255 255 8>>"#),
            "   ab|cd   |00042|ff|FF|10"
        );
        assert_eq!(
            r(r#"<<printf "%x %q %v" "hi" .GroupBySlice .LabelValuesByName>>"#),
            r#"6869 ["pod"] map[namespace:default pod:a|b]"#
        );
        assert_eq!(
            r(r#"<<printf "%T %T %T %T %T" 1 "a" true .GroupBySlice .LabelValuesByName>>"#),
            "int string bool []string map[string]string"
        );
        assert_eq!(r(r#"<<printf "100%%">>"#), "100%");
        assert_eq!(r(r#"<<printf "%">>"#), "%!(NOVERB)");
        assert_eq!(r(r#"<<printf "%v %d" nil nil>>"#), "<nil> %!d(<nil>)");
        assert_eq!(
            r(r#"<<printf "%q %c %+d %.2s %t" 97 97 5 "abc" true>>"#),
            "'a' a +5 ab true"
        );
        assert_eq!(
            r(r#"<<printf "%#v %#v" .GroupBySlice "x">>"#),
            r#"[]string{"pod"} "x""#
        );
        assert_eq!(r(r#"<<printf "%d" .GroupBySlice>>"#), "[%!d(string=pod)]");
        assert_eq!(
            r(r#"<<printf "%q" "a\"b\n\u00e9\x01">>"#),
            r#""a\"b\né\x01""#
        );
        assert_eq!(r(r#"<<"x" | printf>>"#), "x");
        assert_eq!(
            r(r#"<<printf "%*d|%-*d|%.*s" 5 3 -3 4 2 "abc">>"#),
            "    3|4  |ab"
        );
        assert_eq!(r(r#"<<printf "%*d">>"#), "%!(BADWIDTH)%!d(MISSING)");
        assert_eq!(
            r(r#"<<printf "%#x %#o %+q %U" 255 8 "é" 233>>"#),
            r#"0xff 010 "\u00e9" U+00E9"#
        );
        assert_eq!(r(r#"<<.Series | len | printf "%03d">>"#), "024");
    }

    #[test]
    fn print_functions() {
        assert_eq!(r("<<print 1 2>>"), "1 2");
        assert_eq!(r(r#"<<print "a" "b">>"#), "ab");
        assert_eq!(r(r#"<<print "a" 1 2 "b" true>>"#), "a1 2btrue");
        assert_eq!(r(r#"<<println 1 "a">>"#), "1 a\n");
        assert_eq!(r("<<print nil .GroupBySlice>>"), "<nil> [pod]");
        assert_eq!(r("<<print>>"), "");
        assert_eq!(r("<<print .LabelValuesByName.nope>>"), "<nil>");
    }
}
