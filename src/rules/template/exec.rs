//! Execution: walks the syntax tree over the data and writes the output.
//!
//! Runtime values borrow from the data and from the template wherever they can, because a
//! template is rendered for every metrics request.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use super::funcs::{Arity, Func, apply};
use super::node::{Arg, Cmd, Control, Node, Pipe};
use super::print::write_v;
use super::{ROOT_TYPE, Template, Value};

/// A runtime value, borrowing from the data and the template where it can.
#[derive(Clone, Debug)]
pub(super) enum Val<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Str(Cow<'a, str>),
    List(Cow<'a, [String]>),
    Map(&'a BTreeMap<String, String>),
    Root(&'a [(&'a str, Value)]),
}

impl<'a> Val<'a> {
    pub(super) fn of(v: &'a Value) -> Val<'a> {
        match v {
            Value::Str(s) => Val::Str(Cow::Borrowed(s)),
            Value::List(l) => Val::List(Cow::Borrowed(l)),
            Value::Map(m) => Val::Map(m),
            Value::Bool(b) => Val::Bool(*b),
            Value::Int(n) => Val::Int(*n),
            Value::Nil => Val::Nil,
        }
    }

    pub(super) fn is_nil(&self) -> bool {
        matches!(self, Val::Nil)
    }

    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Val::Nil => "<nil>",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Str(_) => "string",
            Val::List(_) => "[]string",
            Val::Map(_) => "map[string]string",
            Val::Root(_) => ROOT_TYPE,
        }
    }

    pub(super) fn truth(&self) -> bool {
        match self {
            Val::Nil => false,
            Val::Bool(b) => *b,
            Val::Int(n) => *n != 0,
            Val::Str(s) => !s.is_empty(),
            Val::List(l) => !l.is_empty(),
            Val::Map(m) => !m.is_empty(),
            Val::Root(_) => true,
        }
    }

    /// Go's `%v`.
    pub(super) fn to_v(&self) -> String {
        let mut s = String::new();
        write_v(&mut s, self);
        s
    }
}

/// Element `i` of a list, borrowed when the list is.
pub(super) fn list_elem<'a>(l: &Cow<'a, [String]>, i: usize) -> Val<'a> {
    match l {
        Cow::Borrowed(s) => {
            let s: &'a [String] = s;
            Val::Str(Cow::Borrowed(s[i].as_str()))
        }
        Cow::Owned(v) => Val::Str(Cow::Owned(v[i].clone())),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Continue,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Any,
    Str,
}

/// An execution error before it is placed in the source: [`Template::render`] turns `pos` into
/// a line and column.
pub(super) struct XErr {
    pub(super) pos: usize,
    pub(super) ctx: String,
    pub(super) msg: String,
}

fn xerr(pos: usize, ctx: impl fmt::Display, msg: impl Into<String>) -> XErr {
    XErr {
        pos,
        ctx: ctx.to_string(),
        msg: msg.into(),
    }
}

type XResult<T> = Result<T, XErr>;

/// Renders `t` with `data`; slot 0 (`$`) and dot start as the data itself.
// Called by `Template::render` on every request; the hint lets it be inlined across codegen
// units as it was before the engine was split into files (benches/render.rs).
#[inline]
pub(super) fn execute<'a>(t: &'a Template, data: &'a [(&'a str, Value)]) -> XResult<String> {
    let mut slots: Vec<Option<Val<'_>>> = vec![None; t.nslots.max(1)];
    slots[0] = Some(Val::Root(data));
    let mut ex = Exec {
        t,
        slots,
        out: String::with_capacity(t.src.len() + 64),
    };
    let dot = Val::Root(data);
    ex.walk(&dot, &t.root)?;
    Ok(ex.out)
}

struct Exec<'a> {
    t: &'a Template,
    slots: Vec<Option<Val<'a>>>,
    out: String,
}

impl<'a> Exec<'a> {
    fn reset(&mut self, (lo, hi): (usize, usize)) {
        for s in self.slots.iter_mut().take(hi).skip(lo) {
            *s = None;
        }
    }

    fn walk(&mut self, dot: &Val<'a>, list: &'a [Node]) -> XResult<Flow> {
        let t = self.t;
        for node in list {
            let flow = match node {
                Node::Text { start, end } => {
                    self.out.push_str(&t.src[*start..*end]);
                    Flow::Normal
                }
                Node::Action(pipe) => {
                    let v = self.eval_pipe(dot, pipe)?;
                    if pipe.decls.is_empty() {
                        match &v {
                            Val::Nil => self.out.push_str("<no value>"),
                            v => write_v(&mut self.out, v),
                        }
                    }
                    Flow::Normal
                }
                Node::If(c) => {
                    let v = self.eval_pipe(dot, &c.pipe)?;
                    let f = if v.truth() {
                        self.walk(dot, &c.list)?
                    } else if let Some(e) = &c.els {
                        self.walk(dot, e)?
                    } else {
                        Flow::Normal
                    };
                    self.reset(c.scope);
                    f
                }
                Node::With(c) => {
                    let v = self.eval_pipe(dot, &c.pipe)?;
                    let f = if v.truth() {
                        self.walk(&v, &c.list)?
                    } else if let Some(e) = &c.els {
                        self.walk(dot, e)?
                    } else {
                        Flow::Normal
                    };
                    self.reset(c.scope);
                    f
                }
                Node::Range(c) => {
                    let f = self.range(dot, c)?;
                    self.reset(c.scope);
                    f
                }
                Node::Break => Flow::Break,
                Node::Continue => Flow::Continue,
            };
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn set_slot(&mut self, slot: usize, v: Val<'a>) {
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(v);
        }
    }

    /// One range iteration; returns true when the loop must stop.
    fn iteration(&mut self, c: &'a Control, key: Val<'a>, elem: Val<'a>) -> XResult<bool> {
        match c.pipe.decls.as_slice() {
            [] => {}
            [v] => self.set_slot(v.slot, elem.clone()),
            [k, v, ..] => {
                self.set_slot(k.slot, key);
                self.set_slot(v.slot, elem.clone());
            }
        }
        let f = self.walk(&elem, &c.list)?;
        self.reset(c.body);
        Ok(f == Flow::Break)
    }

    fn range(&mut self, dot: &Val<'a>, c: &'a Control) -> XResult<Flow> {
        let v = self.eval_pipe(dot, &c.pipe)?;
        let ran = match &v {
            Val::List(l) => {
                for i in 0..l.len() {
                    if self.iteration(c, Val::Int(i as i64), list_elem(l, i))? {
                        break;
                    }
                }
                !l.is_empty()
            }
            Val::Map(m) => {
                let m: &'a BTreeMap<String, String> = m;
                for (k, val) in m.iter() {
                    if self.iteration(
                        c,
                        Val::Str(Cow::Borrowed(k)),
                        Val::Str(Cow::Borrowed(val)),
                    )? {
                        break;
                    }
                }
                !m.is_empty()
            }
            Val::Nil => false,
            other => {
                return Err(xerr(
                    c.pipe.pos,
                    &c.pipe,
                    format!("range can't iterate over {}", other.to_v()),
                ));
            }
        };
        if !ran && let Some(e) = &c.els {
            return self.walk(dot, e);
        }
        Ok(Flow::Normal)
    }

    fn eval_pipe(&mut self, dot: &Val<'a>, pipe: &'a Pipe) -> XResult<Val<'a>> {
        let mut fin: Option<Val<'a>> = None;
        for cmd in &pipe.cmds {
            fin = Some(self.eval_cmd(dot, cmd, fin)?);
        }
        let v = fin.unwrap_or(Val::Nil);
        for d in &pipe.decls {
            if d.undefined {
                return Err(xerr(
                    pipe.pos,
                    pipe,
                    format!("undefined variable: {}", d.name),
                ));
            }
            self.set_slot(d.slot, v.clone());
        }
        Ok(v)
    }

    fn var_value(&self, arg: &'a Arg, slot: usize, name: &str) -> XResult<Val<'a>> {
        match self.slots.get(slot) {
            Some(Some(v)) => Ok(v.clone()),
            _ => Err(xerr(arg.pos(), arg, format!("undefined variable: {name}"))),
        }
    }

    fn not_a_function(&self, args: &[Arg], fin: &Option<Val<'a>>) -> XResult<()> {
        if args.len() > 1 || fin.is_some() {
            let a = &args[0];
            return Err(xerr(
                a.pos(),
                a,
                format!("can't give argument to non-function {a}"),
            ));
        }
        Ok(())
    }

    fn eval_cmd(&mut self, dot: &Val<'a>, cmd: &'a Cmd, fin: Option<Val<'a>>) -> XResult<Val<'a>> {
        let args = &cmd.args;
        let first = &args[0];
        let has_args = args.len() > 1 || fin.is_some();
        match first {
            Arg::Field { names, .. } => self.field_chain(first, dot.clone(), names, has_args),
            Arg::Chain { node, names, .. } => {
                let recv = self.eval_arg(dot, node, Want::Any)?;
                self.field_chain(first, recv, names, has_args)
            }
            Arg::Func { func, .. } => self.call(dot, *func, first, &args[1..], fin),
            Arg::Pipe(p) => {
                self.not_a_function(args, &fin)?;
                self.eval_pipe(dot, p)
            }
            Arg::Var {
                slot, name, names, ..
            } => {
                let v = self.var_value(first, *slot, name)?;
                if names.is_empty() {
                    self.not_a_function(args, &fin)?;
                    Ok(v)
                } else {
                    self.field_chain(first, v, names, has_args)
                }
            }
            Arg::Bool { val, .. } => {
                self.not_a_function(args, &fin)?;
                Ok(Val::Bool(*val))
            }
            Arg::Dot { .. } => {
                self.not_a_function(args, &fin)?;
                Ok(dot.clone())
            }
            Arg::Nil { pos } => {
                self.not_a_function(args, &fin)?;
                Err(xerr(*pos, first, "nil is not a command"))
            }
            Arg::Int { val, .. } => {
                self.not_a_function(args, &fin)?;
                Ok(Val::Int(*val))
            }
            Arg::Str { val, .. } => {
                self.not_a_function(args, &fin)?;
                Ok(Val::Str(Cow::Borrowed(val)))
            }
        }
    }

    fn field_chain(
        &self,
        node: &'a Arg,
        mut recv: Val<'a>,
        names: &'a [String],
        has_args: bool,
    ) -> XResult<Val<'a>> {
        let n = names.len();
        for (i, name) in names.iter().enumerate() {
            recv = self.field(node, recv, name, has_args && i + 1 == n)?;
        }
        Ok(recv)
    }

    fn field(
        &self,
        node: &'a Arg,
        recv: Val<'a>,
        name: &'a str,
        has_args: bool,
    ) -> XResult<Val<'a>> {
        let err = |msg: String| Err(xerr(node.pos(), node, msg));
        match recv {
            Val::Nil => Ok(Val::Nil),
            Val::Root(data) => match data.iter().find(|(k, _)| *k == name) {
                Some((_, v)) => {
                    if has_args {
                        return err(format!(
                            "{name} has arguments but cannot be invoked as function"
                        ));
                    }
                    Ok(Val::of(v))
                }
                None => err(format!("can't evaluate field {name} in type {ROOT_TYPE}")),
            },
            Val::Map(m) => {
                if has_args {
                    return err(format!("{name} is not a method but has arguments"));
                }
                Ok(m.get(name)
                    .map_or(Val::Nil, |s| Val::Str(Cow::Borrowed(s.as_str()))))
            }
            other => err(format!(
                "can't evaluate field {name} in type {}",
                other.type_name()
            )),
        }
    }

    fn eval_arg(&mut self, dot: &Val<'a>, arg: &'a Arg, want: Want) -> XResult<Val<'a>> {
        let literal_as_str = |found: &Arg| {
            Err(xerr(
                found.pos(),
                found,
                format!("expected string; found {found}"),
            ))
        };
        let v = match arg {
            Arg::Dot { .. } => dot.clone(),
            Arg::Nil { pos } => {
                if want == Want::Str {
                    return Err(xerr(*pos, arg, "cannot assign nil to string"));
                }
                return Ok(Val::Nil);
            }
            Arg::Field { names, .. } => self.field_chain(arg, dot.clone(), names, false)?,
            Arg::Var {
                slot, name, names, ..
            } => {
                let v = self.var_value(arg, *slot, name)?;
                self.field_chain(arg, v, names, false)?
            }
            Arg::Pipe(p) => self.eval_pipe(dot, p)?,
            Arg::Func { func, .. } => self.call(dot, *func, arg, &[], None)?,
            Arg::Chain { node, names, .. } => {
                let recv = self.eval_arg(dot, node, Want::Any)?;
                self.field_chain(arg, recv, names, false)?
            }
            Arg::Bool { val, .. } => {
                if want == Want::Str {
                    return literal_as_str(arg);
                }
                Val::Bool(*val)
            }
            Arg::Int { val, .. } => {
                if want == Want::Str {
                    return literal_as_str(arg);
                }
                Val::Int(*val)
            }
            Arg::Str { val, .. } => Val::Str(Cow::Borrowed(val)),
        };
        if want == Want::Str {
            check_str(arg, &v)?;
        }
        Ok(v)
    }

    fn call(
        &mut self,
        dot: &Val<'a>,
        func: Func,
        node: &'a Arg,
        args: &'a [Arg],
        fin: Option<Val<'a>>,
    ) -> XResult<Val<'a>> {
        let name = func.name();
        let num_in = args.len() + usize::from(fin.is_some());
        match func.arity() {
            Arity::Exact(n) if num_in != n => {
                return Err(xerr(
                    node.pos(),
                    node,
                    format!("wrong number of args for {name}: want {n} got {num_in}"),
                ));
            }
            Arity::AtLeast(n) if num_in < n => {
                return Err(xerr(
                    node.pos(),
                    node,
                    format!(
                        "wrong number of args for {name}: want at least {n} got {}",
                        args.len()
                    ),
                ));
            }
            _ => {}
        }
        if matches!(func, Func::And | Func::Or) {
            let is_or = func == Func::Or;
            let mut v = Val::Nil;
            for a in args {
                v = self.eval_arg(dot, a, Want::Any)?;
                if v.truth() == is_or {
                    return Ok(v);
                }
            }
            if let Some(f) = fin {
                v = f;
            }
            return Ok(v);
        }
        let mut vals: Vec<Val<'a>> = Vec::with_capacity(num_in);
        for (i, a) in args.iter().enumerate() {
            let want = if func == Func::Printf && i == 0 {
                Want::Str
            } else {
                Want::Any
            };
            vals.push(self.eval_arg(dot, a, want)?);
        }
        if let Some(f) = fin {
            if func == Func::Printf && args.is_empty() {
                check_str(node, &f)?;
            }
            vals.push(f);
        }
        let call_name = if func == Func::Call {
            args.first().map(|a| a.to_string())
        } else {
            None
        };
        apply(func, &vals, call_name)
            .map_err(|msg| xerr(node.pos(), node, format!("error calling {name}: {msg}")))
    }
}

fn check_str(node: &Arg, v: &Val<'_>) -> XResult<()> {
    match v {
        Val::Str(_) => Ok(()),
        Val::Nil => Err(xerr(node.pos(), node, "invalid value; expected string")),
        other => Err(xerr(
            node.pos(),
            node,
            format!(
                "wrong type for value; expected string; got {}",
                other.type_name()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::template::tests::{data, exec_err, exec_err_with, r, render_with};

    #[test]
    fn range_with_index_and_value() {
        let d = data("s", "", &[], "", &["a", "b", "c"]);
        assert_eq!(
            render_with(
                "<<range $i, $v := .GroupBySlice>><<if $i>>,<<end>><<$v>><<end>>",
                &d
            ),
            "a,b,c"
        );
        assert_eq!(
            render_with("<<range .GroupBySlice>>[<<.>>]<<end>>", &d),
            "[a][b][c]"
        );
        assert_eq!(
            render_with("<<range $v := .GroupBySlice>><<$v>><<end>>", &d),
            "abc"
        );
    }

    #[test]
    fn range_over_map_sorted_and_else() {
        let d = data("s", "", &[("z", "1"), ("a", "2"), ("m", "3")], "", &[]);
        assert_eq!(
            render_with(
                "<<range $k, $v := .LabelValuesByName>><<$k>>=<<$v>>;<<end>>",
                &d
            ),
            "a=2;m=3;z=1;"
        );
        assert_eq!(
            render_with("<<range .LabelValuesByName>><<.>><<end>>", &d),
            "231"
        );
        assert_eq!(
            render_with("<<range .GroupBySlice>>x<<else>>empty<<end>>", &d),
            "empty"
        );
        assert_eq!(
            render_with("<<range .LabelValuesByName.nope>>x<<else>>nil<<end>>", &d),
            "nil"
        );
    }

    #[test]
    fn range_break_continue_and_root_variable() {
        let d = data("s", "", &[], "g", &["a", "b", "c", "d", "e"]);
        assert_eq!(
            render_with(
                r#"<<range .GroupBySlice>><<if eq . "b">><<continue>><<end>><<if eq . "d">><<break>><<end>><<.>><<end>>"#,
                &d
            ),
            "ac"
        );
        assert_eq!(
            render_with("<<range .GroupBySlice>><<$.GroupBy>><<.>> <<end>>", &d),
            "ga gb gc gd ge "
        );
        assert_eq!(
            render_with(
                "<<range .GroupBySlice>><<with .>><<if eq . \"c\">><<break>><<end>><<end>><<.>><<end>>",
                &d
            ),
            "ab"
        );
    }

    #[test]
    fn if_else_if_and_with() {
        let src = r#"<<if eq .GroupBy "node">>n<<else if eq .GroupBy "pod">>p<<else>>x<<end>>"#;
        assert_eq!(r(src), "p");
        assert_eq!(
            r(r#"<<if eq .GroupBy "x">>a<<else if false>>b<<else>>c<<end>>"#),
            "c"
        );
        assert_eq!(r("<<if .GroupBySlice>>yes<<end>>"), "yes");
        assert_eq!(
            r("<<if .LabelValuesByName.nope>>yes<<else>>no<<end>>"),
            "no"
        );
        assert_eq!(r("<<with .GroupBy>>by (<<.>>)<<end>>"), "by (pod)");
        assert_eq!(r("<<with .LabelValuesByName>><<.pod>><<end>>"), "a|b");
        assert_eq!(
            r("<<with .LabelValuesByName.nope>>x<<else>>none<<end>>"),
            "none"
        );
        assert_eq!(
            r("<<with .LabelValuesByName.nope>>A<<else with .GroupBy>>B<<.>><<else>>C<<end>>"),
            "Bpod"
        );
        assert_eq!(r("<<with $x := .GroupBy>><<$x>>=<<.>><<end>>"), "pod=pod");
        let empty = data("s", "", &[], "", &[]);
        assert_eq!(
            render_with("<<with .GroupBy>>by (<<.>>)<<end>>", &empty),
            ""
        );
    }

    #[test]
    fn fields_variables_and_dot() {
        assert_eq!(r("<<.LabelValuesByName.pod>>"), "a|b");
        assert_eq!(r("<<.LabelValuesByName.nope>>"), "<no value>");
        assert_eq!(r("<<.LabelValuesByName.nope.deeper>>"), "<no value>");
        assert_eq!(
            r("<<$.GroupBy>> <<$x := .LabelValuesByName>><<$x.namespace>>"),
            "pod default"
        );
        assert_eq!(r("<<$x := .GroupBy>><<$x>>"), "pod");
        assert_eq!(
            r("<<$x := 1>><<if true>><<$x := 2>><<$x>><<end>><<$x>>"),
            "21"
        );
        assert_eq!(r("<<$x := 1>><<if true>><<$x = 2>><<end>><<$x>>"), "2");
        let d = data("s", "", &[], "", &["a", "b", "c"]);
        assert_eq!(
            render_with(
                "<<$n := \"\">><<range .GroupBySlice>><<$n = .>><<end>><<$n>>",
                &d
            ),
            "c"
        );
        assert_eq!(
            render_with(
                "<<$x := 0>><<range .GroupBySlice>><<$x := .>><<$x>><<end>><<$x>>",
                &d
            ),
            "abc0"
        );
        assert_eq!(r("<<(index .LabelValuesByName \"pod\")>>"), "a|b");
        assert_eq!(r("<<(.LabelValuesByName).pod>>"), "a|b");
        assert_eq!(
            r("<<.>>"),
            r#"{flask_http_request_total namespace="default",pod=~"a|b" map[namespace:default pod:a|b] pod [pod]}"#
        );
        assert_eq!(
            r("<<true>> <<false>> <<\"s\">> <<`raw\\n`>>"),
            "true false s raw\\n"
        );
    }

    #[test]
    fn exec_errors() {
        let e = exec_err("a\n  <<index .GroupBySlice 5>>");
        assert_eq!(
            e.to_string(),
            r#"template: t:2:4: executing "t" at <index>: error calling index: index out of range: 5"#
        );
        assert_eq!((e.line(), e.col()), (2, 5));
        assert!(
            exec_err(r#"<<.GroupBy "x">>"#)
                .to_string()
                .ends_with("GroupBy has arguments but cannot be invoked as function")
        );
        assert!(
            exec_err(r#"<<"x" | .GroupBy>>"#)
                .to_string()
                .ends_with("GroupBy has arguments but cannot be invoked as function")
        );
        assert!(
            exec_err(r#"<<.LabelValuesByName.pod 1>>"#)
                .to_string()
                .ends_with("pod is not a method but has arguments")
        );
        assert!(
            exec_err("<<.Series.foo>>")
                .to_string()
                .ends_with("can't evaluate field foo in type string")
        );
        assert!(
            exec_err("<<len>>")
                .to_string()
                .ends_with("wrong number of args for len: want 1 got 0")
        );
        assert!(
            exec_err("<<not 1 2>>")
                .to_string()
                .ends_with("wrong number of args for not: want 1 got 2")
        );
        assert!(
            exec_err("<<1 | ne 1 2>>")
                .to_string()
                .ends_with("wrong number of args for ne: want 2 got 3")
        );
        assert!(
            exec_err("<<index>>")
                .to_string()
                .ends_with("wrong number of args for index: want at least 1 got 0")
        );
        assert!(
            exec_err(r#"<<eq 1 "a">>"#)
                .to_string()
                .ends_with("error calling eq: incompatible types for comparison")
        );
        assert!(
            exec_err("<<eq 1>>")
                .to_string()
                .ends_with("error calling eq: missing argument for comparison")
        );
        assert!(
            exec_err("<<lt true false>>")
                .to_string()
                .ends_with("error calling lt: invalid type for comparison")
        );
        assert!(
            exec_err("<<lt 1 \"a\">>")
                .to_string()
                .ends_with("error calling lt: incompatible types for comparison")
        );
        assert!(
            exec_err("<<eq .GroupBySlice .GroupBySlice>>")
                .to_string()
                .ends_with("non-comparable type [pod]: []string")
        );
        assert!(
            exec_err("<<len 3>>")
                .to_string()
                .ends_with("error calling len: len of type int")
        );
        assert!(
            exec_err("<<len nil>>")
                .to_string()
                .ends_with("error calling len: len of untyped nil")
        );
        assert!(
            exec_err("<<nil>>")
                .to_string()
                .ends_with("nil is not a command")
        );
        assert!(
            exec_err("<<printf nil>>")
                .to_string()
                .ends_with("cannot assign nil to string")
        );
        assert!(
            exec_err("<<printf 1>>")
                .to_string()
                .ends_with("expected string; found 1")
        );
        assert!(
            exec_err("<<printf .GroupBySlice>>")
                .to_string()
                .ends_with("wrong type for value; expected string; got []string")
        );
        assert!(
            exec_err("<<1 2>>")
                .to_string()
                .ends_with("can't give argument to non-function 1")
        );
        assert!(
            exec_err("<<$x := 1>><<$x 2>>")
                .to_string()
                .ends_with("can't give argument to non-function $x")
        );
        assert!(
            exec_err("<<1 | (print 2)>>")
                .to_string()
                .ends_with("can't give argument to non-function (print 2)")
        );
        assert!(
            exec_err("<<$z = 1>>")
                .to_string()
                .ends_with("undefined variable: $z")
        );
        assert!(
            exec_err("<<if false>><<$x := 1>><<else>><<$x>><<end>>")
                .to_string()
                .ends_with("undefined variable: $x")
        );
        assert!(
            exec_err("<<range .GroupBy>><<end>>")
                .to_string()
                .ends_with("range can't iterate over pod")
        );
        assert!(
            exec_err("<<range 3>><<end>>")
                .to_string()
                .ends_with("range can't iterate over 3")
        );
        assert!(
            exec_err("<<call .GroupBy>>")
                .to_string()
                .ends_with("error calling call: non-function .GroupBy of type string")
        );
        let missing = exec_err_with("<<.Series>>", &[("GroupBy", Value::from("x"))]);
        assert!(
            missing.to_string().contains("can't evaluate field Series"),
            "{missing}"
        );
    }
}
