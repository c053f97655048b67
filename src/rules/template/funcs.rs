//! The built-in functions: names, arities and behaviour, with Go's error messages.
//!
//! User functions are not supported, so this table is the whole function namespace: the parser
//! rejects any other name when the config loads.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::exec::{Val, list_elem};
use super::print::{is_print, sprint, sprintf, write_v};

/// A built-in function, as the parser resolved it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Func {
    And,
    Call,
    Html,
    Index,
    Slice,
    Js,
    Len,
    Not,
    Or,
    Print,
    Printf,
    Println,
    Urlquery,
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
    Ne,
}

/// How many arguments a function takes, checked when it is called, as Go does.
pub(super) enum Arity {
    Exact(usize),
    AtLeast(usize),
}

const FUNCS: &[(&str, Func)] = &[
    ("and", Func::And),
    ("call", Func::Call),
    ("html", Func::Html),
    ("index", Func::Index),
    ("slice", Func::Slice),
    ("js", Func::Js),
    ("len", Func::Len),
    ("not", Func::Not),
    ("or", Func::Or),
    ("print", Func::Print),
    ("printf", Func::Printf),
    ("println", Func::Println),
    ("urlquery", Func::Urlquery),
    ("eq", Func::Eq),
    ("ge", Func::Ge),
    ("gt", Func::Gt),
    ("le", Func::Le),
    ("lt", Func::Lt),
    ("ne", Func::Ne),
];

impl Func {
    pub(super) fn lookup(name: &str) -> Option<Func> {
        FUNCS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    pub(super) fn name(self) -> &'static str {
        FUNCS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }

    pub(super) fn arity(self) -> Arity {
        match self {
            Func::Not | Func::Len => Arity::Exact(1),
            Func::Ne | Func::Lt | Func::Le | Func::Gt | Func::Ge => Arity::Exact(2),
            Func::And
            | Func::Or
            | Func::Call
            | Func::Index
            | Func::Slice
            | Func::Printf
            | Func::Eq => Arity::AtLeast(1),
            Func::Html | Func::Js | Func::Urlquery | Func::Print | Func::Println => {
                Arity::AtLeast(0)
            }
        }
    }
}

/// Calls `func` on evaluated arguments (`and`/`or` short-circuit in the caller); the error is
/// the message after `error calling NAME: `.
pub(super) fn apply<'a>(
    func: Func,
    vals: &[Val<'a>],
    call_name: Option<String>,
) -> Result<Val<'a>, String> {
    let owned = |s: String| Ok(Val::Str(Cow::Owned(s)));
    match func {
        // Handled by the caller (short-circuit).
        Func::And | Func::Or => Ok(vals.last().cloned().unwrap_or(Val::Nil)),
        Func::Not => Ok(Val::Bool(!vals[0].truth())),
        Func::Len => match &vals[0] {
            Val::Str(s) => Ok(Val::Int(s.len() as i64)),
            Val::List(l) => Ok(Val::Int(l.len() as i64)),
            Val::Map(m) => Ok(Val::Int(m.len() as i64)),
            Val::Nil => Err("len of untyped nil".to_string()),
            other => Err(format!("len of type {}", other.type_name())),
        },
        Func::Index => index(&vals[0], &vals[1..]),
        Func::Slice => slice(&vals[0], &vals[1..]),
        Func::Print => {
            let mut s = String::new();
            sprint(&mut s, vals);
            owned(s)
        }
        Func::Println => {
            let mut s = String::new();
            for (i, v) in vals.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                write_v(&mut s, v);
            }
            s.push('\n');
            owned(s)
        }
        Func::Printf => {
            let format = match &vals[0] {
                Val::Str(s) => s.as_ref(),
                _ => "",
            };
            let mut s = String::new();
            sprintf(&mut s, format, &vals[1..]);
            owned(s)
        }
        Func::Eq => eq(&vals[0], &vals[1..]).map(Val::Bool),
        Func::Ne => eq(&vals[0], &vals[1..2]).map(|b| Val::Bool(!b)),
        Func::Lt => lt(&vals[0], &vals[1]).map(Val::Bool),
        Func::Le => le(&vals[0], &vals[1]).map(Val::Bool),
        Func::Gt => le(&vals[0], &vals[1]).map(|b| Val::Bool(!b)),
        Func::Ge => lt(&vals[0], &vals[1]).map(|b| Val::Bool(!b)),
        Func::Html => owned(html_escape(&eval_args_string(vals))),
        Func::Js => owned(js_escape(&eval_args_string(vals))),
        Func::Urlquery => owned(url_query_escape(&eval_args_string(vals))),
        Func::Call => match &vals[0] {
            Val::Nil => Err("call of nil".to_string()),
            other => Err(format!(
                "non-function {} of type {}",
                call_name.unwrap_or_default(),
                other.type_name()
            )),
        },
    }
}

fn index_arg(ix: &Val<'_>, cap: usize) -> Result<usize, String> {
    match ix {
        Val::Int(x) => {
            if *x < 0 || *x as u64 > cap as u64 {
                Err(format!("index out of range: {x}"))
            } else {
                Ok(*x as usize)
            }
        }
        Val::Nil => Err("cannot index slice/array with nil".to_string()),
        other => Err(format!(
            "cannot index slice/array with type {}",
            other.type_name()
        )),
    }
}

fn index<'a>(item: &Val<'a>, idxs: &[Val<'a>]) -> Result<Val<'a>, String> {
    if item.is_nil() {
        return Err("index of untyped nil".to_string());
    }
    let mut cur = item.clone();
    for ix in idxs {
        cur = match &cur {
            Val::List(l) => {
                let x = index_arg(ix, l.len())?;
                if x >= l.len() {
                    return Err("reflect: slice index out of range".to_string());
                }
                list_elem(l, x)
            }
            Val::Str(s) => {
                let x = index_arg(ix, s.len())?;
                match s.as_bytes().get(x) {
                    Some(b) => Val::Int(*b as i64),
                    None => return Err("reflect: string index out of range".to_string()),
                }
            }
            Val::Map(m) => {
                let m: &'a BTreeMap<String, String> = m;
                let key = match ix {
                    Val::Str(k) => k,
                    Val::Nil => return Err("value is nil; should be of type string".to_string()),
                    other => {
                        return Err(format!(
                            "value has type {}; should be string",
                            other.type_name()
                        ));
                    }
                };
                Val::Str(Cow::Borrowed(
                    m.get(key.as_ref()).map_or("", |s| s.as_str()),
                ))
            }
            Val::Nil => return Err("index of untyped nil".to_string()),
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(cur)
}

fn slice<'a>(item: &Val<'a>, idxs: &[Val<'a>]) -> Result<Val<'a>, String> {
    if item.is_nil() {
        return Err("slice of untyped nil".to_string());
    }
    if idxs.len() > 3 {
        return Err(format!("too many slice indexes: {}", idxs.len()));
    }
    let len = match item {
        Val::Str(s) => {
            if idxs.len() == 3 {
                return Err("cannot 3-index slice a string".to_string());
            }
            s.len()
        }
        Val::List(l) => l.len(),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    let mut idx = [0, len, len];
    for (i, ix) in idxs.iter().enumerate() {
        idx[i] = index_arg(ix, len)?;
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    if idxs.len() == 3 && idx[1] > idx[2] {
        return Err(format!("invalid slice index: {} > {}", idx[1], idx[2]));
    }
    let (i, j) = (idx[0], idx[1]);
    Ok(match item {
        Val::Str(Cow::Borrowed(s)) => {
            let s: &'a str = s;
            match s.get(i..j) {
                Some(sub) => Val::Str(Cow::Borrowed(sub)),
                None => Val::Str(Cow::Owned(
                    String::from_utf8_lossy(&s.as_bytes()[i..j]).into_owned(),
                )),
            }
        }
        Val::Str(Cow::Owned(s)) => Val::Str(Cow::Owned(
            String::from_utf8_lossy(&s.as_bytes()[i..j]).into_owned(),
        )),
        Val::List(Cow::Borrowed(l)) => {
            let l: &'a [String] = l;
            Val::List(Cow::Borrowed(&l[i..j]))
        }
        Val::List(Cow::Owned(l)) => Val::List(Cow::Owned(l[i..j].to_vec())),
        _ => Val::Nil,
    })
}

/// Comparison kinds of Go's `eq`/`lt`.
#[derive(PartialEq, Eq, Clone, Copy)]
enum BasicKind {
    Invalid,
    Bool,
    Int,
    Str,
}

fn basic_kind(v: &Val<'_>) -> BasicKind {
    match v {
        Val::Bool(_) => BasicKind::Bool,
        Val::Int(_) => BasicKind::Int,
        Val::Str(_) => BasicKind::Str,
        _ => BasicKind::Invalid,
    }
}

/// Discriminant used for Go's "same kind" check on non-basic values.
fn go_kind(v: &Val<'_>) -> u8 {
    match v {
        Val::Nil => 0,
        Val::Bool(_) => 1,
        Val::Int(_) => 2,
        Val::Str(_) => 3,
        Val::List(_) => 4,
        Val::Map(_) => 5,
        Val::Root(_) => 6,
    }
}

fn eq(a: &Val<'_>, bs: &[Val<'_>]) -> Result<bool, String> {
    if bs.is_empty() {
        return Err("missing argument for comparison".to_string());
    }
    let k1 = basic_kind(a);
    for b in bs {
        let k2 = basic_kind(b);
        let truth = if k1 != k2 {
            if !a.is_nil() && !b.is_nil() {
                return Err("incompatible types for comparison".to_string());
            }
            false
        } else {
            match (a, b) {
                (Val::Bool(x), Val::Bool(y)) => x == y,
                (Val::Int(x), Val::Int(y)) => x == y,
                (Val::Str(x), Val::Str(y)) => x == y,
                _ => {
                    if go_kind(a) != go_kind(b) && !a.is_nil() && !b.is_nil() {
                        return Err(format!(
                            "non-comparable types {}: {}, {}: {}",
                            a.to_v(),
                            a.type_name(),
                            b.type_name(),
                            b.to_v()
                        ));
                    }
                    if a.is_nil() || b.is_nil() {
                        a.is_nil() == b.is_nil()
                    } else {
                        match b {
                            Val::Root(_) => true,
                            other => {
                                return Err(format!(
                                    "non-comparable type {}: {}",
                                    other.to_v(),
                                    other.type_name()
                                ));
                            }
                        }
                    }
                }
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

fn lt(a: &Val<'_>, b: &Val<'_>) -> Result<bool, String> {
    const BAD_TYPE: &str = "invalid type for comparison";
    let (k1, k2) = (basic_kind(a), basic_kind(b));
    if k1 == BasicKind::Invalid || k2 == BasicKind::Invalid {
        return Err(BAD_TYPE.to_string());
    }
    if k1 != k2 {
        return Err("incompatible types for comparison".to_string());
    }
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Ok(x < y),
        (Val::Str(x), Val::Str(y)) => Ok(x < y),
        _ => Err(BAD_TYPE.to_string()),
    }
}

fn le(a: &Val<'_>, b: &Val<'_>) -> Result<bool, String> {
    if lt(a, b)? {
        return Ok(true);
    }
    eq(a, std::slice::from_ref(b))
}

/// Text of the arguments of `html`, `js` and `urlquery` (Go's `evalArgs`).
fn eval_args_string<'b>(vals: &'b [Val<'_>]) -> Cow<'b, str> {
    if let [Val::Str(s)] = vals {
        return Cow::Borrowed(s.as_ref());
    }
    let mapped: Vec<Val<'_>> = vals
        .iter()
        .map(|v| match v {
            Val::Nil => Val::Str(Cow::Borrowed("<no value>")),
            other => other.clone(),
        })
        .collect();
    let mut s = String::new();
    sprint(&mut s, &mapped);
    Cow::Owned(s)
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\0' => out.push('\u{FFFD}'),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u00{:02X}", c as u32);
            }
            c if !c.is_ascii() && !is_print(c) => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn url_query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::rules::template::tests::{data, exec_err, exec_err_with, r, render_with};

    #[test]
    fn len_eq_comparisons() {
        assert_eq!(
            r("<<len .GroupBySlice>> <<len .GroupBy>> <<len .LabelValuesByName>>"),
            "1 3 2"
        );
        assert_eq!(r(r#"<<eq .GroupBy "pod">>"#), "true");
        assert_eq!(r(r#"<<eq .GroupBy "a" "b" "pod">>"#), "true");
        assert_eq!(r(r#"<<eq .GroupBy "a" "b">>"#), "false");
        assert_eq!(r(r#"<<ne .GroupBy "pod">>"#), "false");
        assert_eq!(
            r("<<lt 1 2>> <<le 2 2>> <<gt 1 2>> <<ge 2 3>>"),
            "true true false false"
        );
        assert_eq!(r(r#"<<lt "a" "b">> <<gt "b" "a">>"#), "true true");
        assert_eq!(
            r("<<eq true true>> <<eq nil nil>> <<eq .LabelValuesByName.x nil>>"),
            "true true true"
        );
        assert_eq!(r(r#"<<eq .LabelValuesByName.x "">>"#), "false");
        assert_eq!(r("<<not 0>> <<not .GroupBy>>"), "true false");
    }

    #[test]
    fn and_or_return_operands() {
        assert_eq!(r("<<and 1 0 2>>"), "0");
        assert_eq!(r(r#"<<and 1 "x">>"#), "x");
        assert_eq!(r(r#"<<or "" .GroupBy>>"#), "pod");
        assert_eq!(r(r#"<<or 0 "">>"#), "");
        assert_eq!(r("<<and .GroupBy .Series>>"), "flask_http_request_total");
        assert_eq!(r("<<.GroupBy | or 0>>"), "pod");
        assert_eq!(r("<<0 | and 1>>"), "0");
        // Short-circuit: the failing argument is never evaluated.
        assert_eq!(r("<<or .GroupBy (index .GroupBySlice 10)>>"), "pod");
        assert_eq!(r(r#"<<and "" (index .GroupBySlice 10)>>"#), "");
        assert!(
            exec_err("<<and 1 (index .GroupBySlice 10)>>")
                .to_string()
                .contains("index out of range: 10")
        );
    }

    #[test]
    fn escapers() {
        assert_eq!(
            r(r#"<<html "<a href=\"x\">'&'">>"#),
            "&lt;a href=&#34;x&#34;&gt;&#39;&amp;&#39;"
        );
        assert_eq!(r(r#"<<urlquery "a b&c=d/é">>"#), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(
            r(r#"<<js "it's <b> \"q\"">>"#),
            r#"it\'s \u003Cb\u003E \"q\""#
        );
        assert_eq!(r("<<html .LabelValuesByName.nope>>"), "&lt;no value&gt;");
        assert_eq!(r("<<html 1 2>>"), "1 2");
    }

    #[test]
    fn index_and_slice() {
        let d = data("flask", "", &[("a", "1")], "", &["x", "y", "z"]);
        assert_eq!(render_with("<<index .GroupBySlice 1>>", &d), "y");
        assert_eq!(render_with("<<index .Series 0>>", &d), "102");
        assert_eq!(render_with("<<index .LabelValuesByName>>", &d), "map[a:1]");
        assert_eq!(
            render_with(r#"<<index .LabelValuesByName "a" 0>>"#, &d),
            "49"
        );
        assert_eq!(render_with("<<slice .Series 1 3>>", &d), "la");
        assert_eq!(render_with("<<slice .GroupBySlice 1>>", &d), "[y z]");
        assert_eq!(render_with("<<slice .GroupBySlice 1 2 3>>", &d), "[y]");
        assert_eq!(render_with("<<slice .GroupBySlice>>", &d), "[x y z]");
        assert_eq!(
            render_with("<<range slice .GroupBySlice 2>><<.>><<end>>", &d),
            "z"
        );
        let e = exec_err_with("<<index .GroupBySlice 5>>", &d).to_string();
        assert_eq!(
            e,
            r#"template: t:1:2: executing "t" at <index>: error calling index: index out of range: 5"#
        );
        assert!(
            exec_err_with("<<index .GroupBySlice 3>>", &d)
                .to_string()
                .contains("slice index out of range")
        );
        assert!(
            exec_err_with("<<index .GroupBySlice -1>>", &d)
                .to_string()
                .contains("index out of range: -1")
        );
        assert!(
            exec_err_with(r#"<<index .GroupBySlice "a">>"#, &d)
                .to_string()
                .contains("cannot index slice/array with type string")
        );
        assert!(
            exec_err_with("<<index .LabelValuesByName 1>>", &d)
                .to_string()
                .contains("value has type int; should be string")
        );
        assert!(
            exec_err_with("<<index nil 1>>", &d)
                .to_string()
                .contains("index of untyped nil")
        );
        assert!(
            exec_err_with("<<index true 1>>", &d)
                .to_string()
                .contains("can't index item of type bool")
        );
        assert!(
            exec_err_with("<<slice .Series 3 1>>", &d)
                .to_string()
                .contains("invalid slice index: 3 > 1")
        );
        assert!(
            exec_err_with("<<slice .Series 1 2 3>>", &d)
                .to_string()
                .contains("cannot 3-index slice a string")
        );
        assert!(
            exec_err_with("<<slice .LabelValuesByName>>", &d)
                .to_string()
                .contains("can't slice item of type map[string]string")
        );
    }
}
