//! The parser: turns the lexer's tokens into the syntax tree of `node.rs`.
//!
//! It follows Go's `text/template/parse` closely enough to reject the same templates with the
//! same messages. Unlike Go it also checks references to the top-level data against the field
//! names the caller declares, so that a misspelt field fails when the config loads rather than
//! on every request, and it records which fields a template uses.

use super::funcs::Func;
use super::lex::{Kind, Lexer, Tok};
use super::literal::{IntErr, parse_go_int, unquote, unquote_char};
use super::node::{Arg, Cmd, Control, Decl, Node, Pipe};
use super::print::go_quote;
use super::{MAX_DEPTH, ROOT_TYPE, TemplateError, line_col};

type PResult<T> = Result<T, TemplateError>;

enum Item {
    Node(Node),
    End,
    Else,
}

#[derive(PartialEq, Eq)]
enum Next {
    End,
    Else,
}

/// Parser state for one template; [`Template::parse`](super::Template::parse) reads the slot
/// count and the field usage off it when done.
pub(super) struct Parser<'s> {
    name: &'s str,
    src: &'s str,
    toks: Vec<Tok>,
    lex_err: String,
    i: usize,
    /// Highest token index read so far (its line is the error line).
    hi: usize,
    fields: &'s [&'s str],
    /// Variables in scope: name and slot.
    vars: Vec<(String, usize)>,
    pub(super) nslots: usize,
    range_depth: usize,
    depth: usize,
    /// Whether `.` is the top-level data at this point.
    dot_is_root: bool,
    /// `$` was assigned to; stop checking `$.Field` names.
    root_reassigned: bool,
    action_line: usize,
    pub(super) used_fields: Vec<String>,
    pub(super) uses_root: bool,
}

impl<'s> Parser<'s> {
    /// Lexes `src` and readies a parser over it, with `$` in slot 0.
    pub(super) fn new(name: &'s str, src: &'s str, fields: &'s [&'s str]) -> Self {
        let (toks, lex_err) = Lexer::new(src).run();
        Parser {
            name,
            src,
            toks,
            lex_err,
            i: 0,
            hi: 0,
            fields,
            vars: vec![("$".to_string(), 0)],
            nslots: 1,
            range_depth: 0,
            depth: 0,
            dot_is_root: true,
            root_reassigned: false,
            action_line: 0,
            used_fields: Vec::new(),
            uses_root: false,
        }
    }

    fn tok(&mut self, i: usize) -> Tok {
        let i = i.min(self.toks.len() - 1);
        self.hi = self.hi.max(i);
        self.toks[i]
    }

    fn next(&mut self) -> Tok {
        let t = self.tok(self.i);
        self.i += 1;
        t
    }

    fn backup(&mut self) {
        self.i = self.i.saturating_sub(1);
    }

    fn peek(&mut self) -> Tok {
        self.tok(self.i)
    }

    fn next_non_space(&mut self) -> Tok {
        loop {
            let t = self.next();
            if t.kind != Kind::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Tok {
        loop {
            let t = self.peek();
            if t.kind != Kind::Space {
                return t;
            }
            self.i += 1;
        }
    }

    fn val(&self, t: Tok) -> &'s str {
        &self.src[t.pos..t.end]
    }

    fn error_at<T>(&self, pos: usize, msg: impl Into<String>) -> PResult<T> {
        let (line, col) = line_col(self.src, pos);
        Err(TemplateError::Parse {
            name: self.name.to_string(),
            line,
            col,
            message: msg.into(),
        })
    }

    fn error<T>(&self, msg: impl Into<String>) -> PResult<T> {
        let pos = self.toks[self.hi.min(self.toks.len() - 1)].pos;
        self.error_at(pos, msg)
    }

    fn describe(&self, t: Tok) -> String {
        match t.kind {
            Kind::Eof => "EOF".to_string(),
            Kind::Error => self.lex_err.clone(),
            k if k.is_keyword() => format!("<{}>", self.val(t)),
            _ => {
                let v = self.val(t);
                if v.len() > 10 {
                    let head: String = v.chars().take(10).collect();
                    format!("{}...", go_quote(&head))
                } else {
                    go_quote(v)
                }
            }
        }
    }

    fn unexpected<T>(&self, t: Tok, context: &str) -> PResult<T> {
        if t.kind == Kind::Error {
            let line = line_col(self.src, t.pos).0;
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != line {
                if self.lex_err.ends_with(" action") {
                    extra = format!(" started at {}:{}", self.name, self.action_line);
                } else {
                    extra = format!(" in action started at {}:{}", self.name, self.action_line);
                }
            }
            return self.error_at(t.pos, format!("{}{}", self.lex_err, extra));
        }
        self.error_at(
            t.pos,
            format!("unexpected {} in {}", self.describe(t), context),
        )
    }

    fn expect(&mut self, kind: Kind, context: &str) -> PResult<Tok> {
        let t = self.next_non_space();
        if t.kind != kind {
            return self.unexpected(t, context);
        }
        Ok(t)
    }

    fn new_slot(&mut self) -> usize {
        self.nslots += 1;
        self.nslots - 1
    }

    fn lookup_var(&self, name: &str) -> Option<usize> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
    }

    pub(super) fn parse_top(&mut self) -> PResult<Vec<Node>> {
        let mut list = Vec::new();
        while self.peek().kind != Kind::Eof {
            match self.text_or_action()? {
                Item::Node(n) => list.push(n),
                Item::End => return self.error("unexpected {{end}}"),
                Item::Else => return self.error("unexpected {{else}}"),
            }
        }
        Ok(list)
    }

    fn text_or_action(&mut self) -> PResult<Item> {
        let t = self.next_non_space();
        match t.kind {
            Kind::Text => Ok(Item::Node(Node::Text {
                start: t.pos,
                end: t.end,
            })),
            Kind::LeftDelim => {
                self.action_line = line_col(self.src, t.pos).0;
                let r = self.action();
                self.action_line = 0;
                r
            }
            _ => self.unexpected(t, "input"),
        }
    }

    fn action(&mut self) -> PResult<Item> {
        let t = self.next_non_space();
        match t.kind {
            Kind::KwBlock | Kind::KwDefine | Kind::KwTemplate => {
                self.error(format!("{{{{{}}}}} actions are not supported", self.val(t)))
            }
            Kind::KwBreak | Kind::KwContinue => {
                let word = if t.kind == Kind::KwBreak {
                    "{{break}}"
                } else {
                    "{{continue}}"
                };
                let n = self.next_non_space();
                if n.kind != Kind::RightDelim {
                    return self.unexpected(n, word);
                }
                if self.range_depth == 0 {
                    return self.error(format!("{word} outside {{{{range}}}}"));
                }
                Ok(Item::Node(if t.kind == Kind::KwBreak {
                    Node::Break
                } else {
                    Node::Continue
                }))
            }
            Kind::KwElse => {
                let p = self.peek_non_space();
                if !matches!(p.kind, Kind::KwIf | Kind::KwWith) {
                    self.expect(Kind::RightDelim, "else")?;
                }
                Ok(Item::Else)
            }
            Kind::KwEnd => {
                self.expect(Kind::RightDelim, "end")?;
                Ok(Item::End)
            }
            Kind::KwIf => Ok(Item::Node(Node::If(self.control("if")?))),
            Kind::KwRange => Ok(Item::Node(Node::Range(self.control("range")?))),
            Kind::KwWith => Ok(Item::Node(Node::With(self.control("with")?))),
            _ => {
                self.backup();
                let pipe = self.pipeline("command", Kind::RightDelim)?;
                Ok(Item::Node(Node::Action(pipe)))
            }
        }
    }

    fn item_list(&mut self) -> PResult<(Vec<Node>, Next)> {
        let mut list = Vec::new();
        while self.peek_non_space().kind != Kind::Eof {
            match self.text_or_action()? {
                Item::Node(n) => list.push(n),
                Item::End => return Ok((list, Next::End)),
                Item::Else => return Ok((list, Next::Else)),
            }
        }
        self.error("unexpected EOF")
    }

    fn control(&mut self, context: &'static str) -> PResult<Box<Control>> {
        if self.depth >= MAX_DEPTH {
            return self.error(format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        self.depth += 1;
        let mark = self.vars.len();
        let scope_lo = self.nslots;
        let pipe = self.pipeline(context, Kind::RightDelim)?;
        let saved_dot = self.dot_is_root;
        if context != "if" {
            self.dot_is_root = false;
        }
        if context == "range" {
            self.range_depth += 1;
        }
        let body_lo = self.nslots;
        let (list, next) = self.item_list()?;
        let body_hi = self.nslots;
        if context == "range" {
            self.range_depth -= 1;
        }
        self.dot_is_root = saved_dot;
        let els = match next {
            Next::End => None,
            Next::Else => {
                let kind = self.peek().kind;
                if context == "if" && kind == Kind::KwIf {
                    self.next();
                    Some(vec![Node::If(self.control("if")?)])
                } else if context == "with" && kind == Kind::KwWith {
                    self.next();
                    Some(vec![Node::With(self.control("with")?)])
                } else {
                    let (l, n) = self.item_list()?;
                    if n != Next::End {
                        return self.error("expected end; found {{else}}");
                    }
                    Some(l)
                }
            }
        };
        self.vars.truncate(mark);
        self.depth -= 1;
        Ok(Box::new(Control {
            pipe,
            list,
            els,
            scope: (scope_lo, self.nslots),
            body: (body_lo, body_hi),
        }))
    }

    fn pipeline(&mut self, context: &str, end: Kind) -> PResult<Pipe> {
        let pos = self.peek_non_space().pos;
        let mut decl_toks: Vec<Tok> = Vec::new();
        let mut is_assign = false;
        loop {
            let v = self.peek_non_space();
            if v.kind != Kind::Variable {
                break;
            }
            let save = self.i;
            self.next();
            let nx = self.peek_non_space();
            match nx.kind {
                Kind::Assign | Kind::Declare => {
                    is_assign = nx.kind == Kind::Assign;
                    self.next();
                    decl_toks.push(v);
                    break;
                }
                Kind::Char if self.val(nx) == "," => {
                    self.next();
                    decl_toks.push(v);
                    if context == "range" && decl_toks.len() < 2 {
                        match self.peek_non_space().kind {
                            Kind::Variable | Kind::RightDelim | Kind::RParen => continue,
                            _ => return self.error("range can only initialize variables"),
                        }
                    }
                    return self.error(format!("too many declarations in {context}"));
                }
                _ => {
                    self.i = save;
                    break;
                }
            }
        }
        // Resolve the declared variables now, but make them visible only after
        // the commands: `$x := $x` reads the outer `$x`, as Go's runtime does.
        let mut decls = Vec::with_capacity(decl_toks.len());
        for t in &decl_toks {
            let name = self.val(*t).to_string();
            let decl = if is_assign {
                if name == "$" {
                    self.root_reassigned = true;
                }
                match self.lookup_var(&name) {
                    Some(slot) => Decl {
                        name,
                        slot,
                        undefined: false,
                    },
                    None => Decl {
                        name,
                        slot: self.new_slot(),
                        undefined: true,
                    },
                }
            } else {
                Decl {
                    name,
                    slot: self.new_slot(),
                    undefined: false,
                }
            };
            decls.push(decl);
        }
        let mut cmds = Vec::new();
        loop {
            let t = self.next_non_space();
            if t.kind == end {
                if cmds.is_empty() {
                    return self.error(format!("missing value for {context}"));
                }
                for (i, c) in cmds.iter().enumerate().skip(1) {
                    let c: &Cmd = c;
                    if matches!(
                        c.args.first(),
                        Some(
                            Arg::Bool { .. }
                                | Arg::Dot { .. }
                                | Arg::Nil { .. }
                                | Arg::Int { .. }
                                | Arg::Str { .. }
                        )
                    ) {
                        return self.error(format!(
                            "non executable command in pipeline stage {}",
                            i + 1
                        ));
                    }
                }
                for d in &decls {
                    self.vars.push((d.name.clone(), d.slot));
                }
                return Ok(Pipe { pos, decls, cmds });
            }
            match t.kind {
                Kind::Bool
                | Kind::CharConst
                | Kind::Complex
                | Kind::Dot
                | Kind::Field
                | Kind::Ident
                | Kind::Number
                | Kind::KwNil
                | Kind::RawStr
                | Kind::Str
                | Kind::Variable
                | Kind::LParen => {
                    self.backup();
                    cmds.push(self.command()?);
                }
                _ => return self.unexpected(t, context),
            }
        }
    }

    fn command(&mut self) -> PResult<Cmd> {
        let mut args = Vec::new();
        loop {
            self.peek_non_space();
            if let Some(op) = self.operand()? {
                args.push(op);
            }
            let t = self.next();
            match t.kind {
                Kind::Space => continue,
                Kind::RightDelim | Kind::RParen => self.backup(),
                Kind::Pipe => {}
                _ => return self.unexpected(t, "operand"),
            }
            break;
        }
        if args.is_empty() {
            return self.error("empty command");
        }
        Ok(Cmd { args })
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(mut node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().kind == Kind::Field {
            let chain_pos = self.peek().pos;
            let mut more = Vec::new();
            while self.peek().kind == Kind::Field {
                let t = self.next();
                more.push(self.val(t)[1..].to_string());
            }
            node = match node {
                Arg::Field { pos, mut names } => {
                    names.extend(more);
                    Arg::Field { pos, names }
                }
                Arg::Var {
                    pos,
                    name,
                    slot,
                    mut names,
                } => {
                    names.extend(more);
                    Arg::Var {
                        pos,
                        name,
                        slot,
                        names,
                    }
                }
                Arg::Bool { .. }
                | Arg::Str { .. }
                | Arg::Int { .. }
                | Arg::Nil { .. }
                | Arg::Dot { .. } => {
                    return self.error(format!(
                        "unexpected . after term {}",
                        go_quote(&node.to_string())
                    ));
                }
                other => Arg::Chain {
                    pos: chain_pos,
                    node: Box::new(other),
                    names: more,
                },
            };
        }
        self.check_root_ref(&node)?;
        Ok(Some(node))
    }

    /// Records (and checks) references to the top-level data.
    fn check_root_ref(&mut self, node: &Arg) -> PResult<()> {
        let first = match node {
            Arg::Field { names, .. } if self.dot_is_root => names.first(),
            Arg::Var { slot: 0, names, .. } if !self.root_reassigned => {
                if names.is_empty() {
                    self.uses_root = true;
                }
                names.first()
            }
            Arg::Dot { .. } if self.dot_is_root => {
                self.uses_root = true;
                None
            }
            _ => None,
        };
        if let Some(f) = first {
            if !self.fields.contains(&f.as_str()) {
                return self.error_at(
                    node.pos(),
                    format!(
                        "can't evaluate field {f} in type {ROOT_TYPE} (the data has fields: {})",
                        self.fields.join(", ")
                    ),
                );
            }
            if !self.used_fields.iter().any(|u| u == f) {
                self.used_fields.push(f.clone());
            }
        }
        Ok(())
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let t = self.next_non_space();
        let pos = t.pos;
        let arg = match t.kind {
            Kind::Ident => {
                let name = self.val(t);
                match Func::lookup(name) {
                    Some(func) => Arg::Func { pos, func },
                    None => return self.error(format!("function {} not defined", go_quote(name))),
                }
            }
            Kind::Dot => Arg::Dot { pos },
            Kind::KwNil => Arg::Nil { pos },
            Kind::Variable => {
                let name = self.val(t);
                match self.lookup_var(name) {
                    Some(slot) => Arg::Var {
                        pos,
                        name: name.to_string(),
                        slot,
                        names: Vec::new(),
                    },
                    None => return self.error(format!("undefined variable {}", go_quote(name))),
                }
            }
            Kind::Field => Arg::Field {
                pos,
                names: vec![self.val(t)[1..].to_string()],
            },
            Kind::Bool => Arg::Bool {
                pos,
                val: self.val(t) == "true",
            },
            Kind::CharConst | Kind::Complex | Kind::Number => self.number(t)?,
            Kind::LParen => {
                if self.depth >= MAX_DEPTH {
                    return self.error("max expression depth exceeded");
                }
                self.depth += 1;
                let p = self.pipeline("parenthesized pipeline", Kind::RParen)?;
                self.depth -= 1;
                Arg::Pipe(Box::new(p))
            }
            Kind::Str | Kind::RawStr => {
                let text = self.val(t);
                match unquote(text) {
                    Ok(val) => Arg::Str {
                        pos,
                        val,
                        text: text.to_string(),
                    },
                    Err(msg) => return self.error(msg),
                }
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        };
        Ok(Some(arg))
    }

    fn number(&self, t: Tok) -> PResult<Arg> {
        let text = self.val(t);
        let pos = t.pos;
        let int = |val: i64| Arg::Int {
            pos,
            val,
            text: text.to_string(),
        };
        match t.kind {
            Kind::CharConst => {
                let inner = &text[1..];
                match unquote_char(inner, '\'') {
                    Ok((c, "'")) => Ok(int(c.value())),
                    Ok(_) => self.error(format!("malformed character constant: {text}")),
                    Err(()) => self.error("invalid syntax"),
                }
            }
            Kind::Complex => self.error(format!("complex constants are not supported: {text}")),
            _ => match parse_go_int(text) {
                Ok(v) => Ok(int(v)),
                Err(IntErr::Float) => self.error(format!(
                    "floating-point constants are not supported: {text}"
                )),
                Err(IntErr::Overflow) => {
                    self.error(format!("integer overflow: {}", go_quote(text)))
                }
                Err(IntErr::Syntax) => {
                    self.error(format!("illegal number syntax: {}", go_quote(text)))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::template::Template;
    use crate::rules::template::tests::{FIELDS, exec_err, parse_err, r};

    #[test]
    fn error_unknown_function() {
        let e =
            Template::parse("metrics-query", r#"<<join "," .GroupBySlice>>"#, FIELDS).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"template: metrics-query:1: function "join" not defined"#
        );
        let e = parse_err("line1\nline2\n  <<.Series | join \",\">>");
        assert_eq!(
            e.to_string(),
            r#"template: t:3: function "join" not defined"#
        );
        assert_eq!(e.line(), 3);
    }

    #[test]
    fn error_unknown_field() {
        let e = parse_err("x\n<<.Foo>>");
        assert!(
            e.to_string()
                .starts_with("template: t:2: can't evaluate field Foo"),
            "{e}"
        );
        assert_eq!((e.line(), e.col()), (2, 3));
        assert!(
            parse_err("<<range .GroupBySlice>><<$.Bar>><<end>>")
                .to_string()
                .contains("field Bar")
        );
        assert!(
            parse_err("<<if .Nope>><<end>>")
                .to_string()
                .contains("field Nope")
        );
        assert!(
            parse_err("<<with .GroupBy>><<else>><<.Nope>><<end>>")
                .to_string()
                .contains("field Nope")
        );
        // Inside with/range, dot is no longer the data: checked at render time.
        let e = exec_err("<<range .GroupBySlice>><<.Foo>><<end>>");
        assert!(
            e.to_string()
                .contains("can't evaluate field Foo in type string"),
            "{e}"
        );
    }

    #[test]
    fn error_structure() {
        assert_eq!(
            parse_err("<<if .GroupBy>>x").to_string(),
            "template: t:1: unexpected EOF"
        );
        assert_eq!(
            parse_err("<<range .GroupBySlice>>x\n\n").to_string(),
            "template: t:3: unexpected EOF"
        );
        assert_eq!(
            parse_err("x<<end>>").to_string(),
            "template: t:1: unexpected {{end}}"
        );
        assert_eq!(
            parse_err("x\n<<else>>").to_string(),
            "template: t:2: unexpected {{else}}"
        );
        assert_eq!(
            parse_err("<<else if 1>>").to_string(),
            "template: t:1: unexpected {{else}}"
        );
        assert_eq!(
            parse_err("<<if 1>>a<<else>>b<<else>>c<<end>>").to_string(),
            "template: t:1: expected end; found {{else}}"
        );
        assert_eq!(
            parse_err("<<break>>").to_string(),
            "template: t:1: {{break}} outside {{range}}"
        );
        assert_eq!(
            parse_err("<<continue>>").to_string(),
            "template: t:1: {{continue}} outside {{range}}"
        );
        assert_eq!(
            parse_err("<<range .GroupBySlice>><<else>><<break>><<end>>").to_string(),
            "template: t:1: {{break}} outside {{range}}"
        );
        assert_eq!(
            parse_err("<<end 1>>").to_string(),
            r#"template: t:1: unexpected "1" in end"#
        );
        assert_eq!(
            parse_err("<<if>><<end>>").to_string(),
            "template: t:1: missing value for if"
        );
        assert_eq!(
            parse_err("<<>>").to_string(),
            "template: t:1: missing value for command"
        );
        assert_eq!(
            parse_err(r#"<<.GroupBy | "x">>"#).to_string(),
            "template: t:1: non executable command in pipeline stage 2"
        );
        assert_eq!(
            parse_err(r#"<<"x".y>>"#).to_string(),
            r#"template: t:1: unexpected . after term "\"x\"""#
        );
        assert_eq!(
            parse_err("<<$a, $b := 1>>").to_string(),
            "template: t:1: too many declarations in command"
        );
        assert_eq!(
            parse_err("<<range $a, $b, $c := .GroupBySlice>><<end>>").to_string(),
            "template: t:1: too many declarations in range"
        );
        assert_eq!(
            parse_err("<<range $a, 1 := .GroupBySlice>><<end>>").to_string(),
            "template: t:1: range can only initialize variables"
        );
        assert_eq!(
            parse_err("<<$y>>").to_string(),
            r#"template: t:1: undefined variable "$y""#
        );
        assert_eq!(
            parse_err("<<if 1>><<$x := 1>><<end>><<$x>>").to_string(),
            r#"template: t:1: undefined variable "$x""#
        );
        assert!(
            parse_err(r#"<<define "x">>a<<end>>"#)
                .to_string()
                .contains("not supported")
        );
        assert!(
            parse_err(r#"<<template "x">>"#)
                .to_string()
                .contains("not supported")
        );
        assert!(
            parse_err(r#"<<block "x" .>>a<<end>>"#)
                .to_string()
                .contains("not supported")
        );
        assert!(
            parse_err("<<1.5>>")
                .to_string()
                .contains("floating-point constants are not supported")
        );
        assert!(
            parse_err("<<1+2i>>")
                .to_string()
                .contains("complex constants are not supported")
        );
        assert_eq!(
            parse_err("<<12a>>").to_string(),
            r#"template: t:1: bad number syntax: "12a""#
        );
        assert_eq!(
            parse_err("<<08>>").to_string(),
            r#"template: t:1: integer overflow: "08""#
        );
        assert_eq!(
            parse_err("<<99999999999999999999>>").to_string(),
            r#"template: t:1: integer overflow: "99999999999999999999""#
        );
        assert_eq!(
            parse_err("<<.Series->>").to_string(),
            "template: t:1: bad character U+002D '-'"
        );
        assert_eq!(
            parse_err("<<a:b>>").to_string(),
            r#"template: t:1: function "a" not defined"#
        );
        assert_eq!(
            parse_err("<<.Series :x>>").to_string(),
            "template: t:1: expected :="
        );
        assert_eq!(
            parse_err("<<.Series \u{1}>>").to_string(),
            "template: t:1: unrecognized character in action: U+0001"
        );
        assert_eq!(
            parse_err("<<.Series , 1>>").to_string(),
            r#"template: t:1: unexpected "," in operand"#
        );
        assert_eq!(
            parse_err("<<if 1 else>><<end>>").to_string(),
            "template: t:1: unexpected <else> in operand"
        );
        assert_eq!(
            parse_err("<<if else>><<end>>").to_string(),
            "template: t:1: unexpected <else> in if"
        );
    }

    #[test]
    fn nesting_is_capped() {
        let deep_if = format!("{}x{}", "<<if 1>>".repeat(150), "<<end>>".repeat(150));
        assert!(
            parse_err(&deep_if)
                .to_string()
                .contains("nesting deeper than 100")
        );
        let ok_if = format!("{}x{}", "<<if 1>>".repeat(99), "<<end>>".repeat(99));
        assert_eq!(r(&ok_if), "x");
        let deep_paren = format!("<<{}1{}>>", "(".repeat(150), ")".repeat(150));
        assert!(
            parse_err(&deep_paren)
                .to_string()
                .contains("max expression depth exceeded")
        );
        let ok_paren = format!("<<{}1{}>>", "(".repeat(90), ")".repeat(90));
        assert_eq!(r(&ok_paren), "1");
        let deep_else_if = format!("<<if 0>>{}<<end>>", "<<else if 0>>".repeat(150));
        assert!(parse_err(&deep_else_if).to_string().contains("nesting"));
        let huge = "<<if 1>>".repeat(100_000);
        assert!(parse_err(&huge).to_string().contains("nesting"));
    }
}
