//! A Go `text/template`-compatible engine for the subset of the template
//! language that prometheus-adapter configurations use (`metricsQuery`,
//! `resources.template`), with `<<` and `>>` as the action delimiters.
//!
//! With these delimiters `{{` and `}}` are ordinary text.
//!
//! Supported (matching Go's behaviour):
//! - text copied verbatim; actions `<< … >>`; comments `<</* … */>>`;
//!   trim markers `<<- ` and ` ->>` (a dash followed or preceded by
//!   whitespace), so `<<-3>>` is the number -3;
//! - pipelines with `|` (the piped value becomes the last argument), fields
//!   `.Field`, map keys `.Map.key`, `.`, `$`, `$.Field`, `$var`, `$var.key`,
//!   chained fields on parenthesised pipelines, string (`"…"`, raw `` `…` ``),
//!   integer and character literals, `true`, `false`, `nil`;
//! - variable declaration `$x := …` and assignment `$x = …`, scoped to the
//!   enclosing control structure;
//! - `if` / `else if` / `else`, `with` / `else with` / `else`, `range`
//!   (lists, maps in sorted key order, `else`, `break`, `continue`);
//! - the built-in functions `and`, `or` (short-circuit, returning the deciding
//!   operand), `not`, `len`, `index`, `slice`, `print`, `println`, `printf`,
//!   `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `html`, `js`, `urlquery`, `call`;
//! - printing like Go's `fmt`: lists as `[a b]`, maps as `map[k:v]` with
//!   sorted keys, a missing value as `<no value>`.
//!
//! Not supported: `define`, `template` and `block` (a parse error), floating
//! point and complex constants (a parse error), method calls, and user
//! functions. A reference to a top-level field that the data does not have,
//! or to an unknown function, is a parse error.
//!
//! Nesting of control structures and parenthesised pipelines is limited to
//! [`MAX_DEPTH`] levels, so that no input can exhaust the stack.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

const LEFT_DELIM: &str = "<<";
const RIGHT_DELIM: &[u8] = b">>";

/// Maximum nesting of control structures (`if`, `with`, `range`, including
/// `else if` chains) and parenthesised pipelines.
pub const MAX_DEPTH: usize = 100;

/// Type name used for the top-level data in messages (Go would print the
/// name of the Go struct).
const ROOT_TYPE: &str = "struct";

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// A value a template can see or compute.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A Go `string`.
    Str(String),
    /// A Go `[]string`.
    List(Vec<String>),
    /// A Go `map[string]string`.
    Map(BTreeMap<String, String>),
    /// A Go `bool`.
    Bool(bool),
    /// A Go `int`.
    Int(i64),
    /// No value (Go's invalid `reflect.Value`); prints as `<no value>`.
    Nil,
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Self {
        Value::List(v)
    }
}

impl From<BTreeMap<String, String>> for Value {
    fn from(m: BTreeMap<String, String>) -> Self {
        Value::Map(m)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

/// An error from parsing or executing a template.
///
/// `line` is 1-based and `col` is the 1-based byte column within the
/// template text. Messages read like Go's: parse errors as
/// `template: NAME:LINE: MESSAGE`, execution errors as
/// `template: NAME:LINE:COL: executing "NAME" at <NODE>: MESSAGE`, where COL
/// is Go's 0-based byte offset within the line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// The template text is invalid.
    #[error("template: {name}:{line}: {message}")]
    Parse {
        name: String,
        line: usize,
        col: usize,
        message: String,
    },
    /// The template failed while rendering.
    #[error(
        "template: {name}:{line}:{go_col}: executing \"{name}\" at <{context}>: {message}",
        go_col = .col.saturating_sub(1)
    )]
    Exec {
        name: String,
        line: usize,
        col: usize,
        /// The source form of the node being evaluated.
        context: String,
        message: String,
    },
}

impl TemplateError {
    /// 1-based line within the template text.
    pub fn line(&self) -> usize {
        match self {
            TemplateError::Parse { line, .. } | TemplateError::Exec { line, .. } => *line,
        }
    }

    /// 1-based byte column within the line.
    pub fn col(&self) -> usize {
        match self {
            TemplateError::Parse { col, .. } | TemplateError::Exec { col, .. } => *col,
        }
    }

    /// The message without the location prefix.
    pub fn message(&self) -> &str {
        match self {
            TemplateError::Parse { message, .. } | TemplateError::Exec { message, .. } => message,
        }
    }
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    src: String,
    root: Vec<Node>,
    /// Number of variable slots; slot 0 is `$`.
    nslots: usize,
    /// Top-level fields referenced by name.
    used_fields: Vec<String>,
    /// The data as a whole is used (`.` at top level, bare `$`).
    uses_root: bool,
    fields: Vec<String>,
}

impl Template {
    /// Parses `src`. `fields` lists the field names the data will have (e.g.
    /// `["Series","LabelMatchers","LabelValuesByName","GroupBy","GroupBySlice"]`);
    /// a reference to any other top-level field (`.Foo`, `$.Foo`) or an
    /// unknown function is a parse error.
    pub fn parse(name: &str, src: &str, fields: &[&str]) -> Result<Template, TemplateError> {
        let (toks, lex_err) = Lexer::new(src).run();
        let mut p = Parser {
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
        };
        let root = p.parse_top()?;
        Ok(Template {
            name: name.to_string(),
            src: src.to_string(),
            root,
            nslots: p.nslots,
            used_fields: p.used_fields,
            uses_root: p.uses_root,
            fields: fields.iter().map(|f| f.to_string()).collect(),
        })
    }

    /// Renders with `data`: pairs of (field name, value).
    pub fn render(&self, data: &[(&str, Value)]) -> Result<String, TemplateError> {
        let mut slots: Vec<Option<Val<'_>>> = vec![None; self.nslots.max(1)];
        slots[0] = Some(Val::Root(data));
        let mut ex = Exec {
            t: self,
            slots,
            out: String::with_capacity(self.src.len() + 64),
        };
        let dot = Val::Root(data);
        match ex.walk(&dot, &self.root) {
            Ok(_) => Ok(ex.out),
            Err(e) => {
                let (line, col) = line_col(&self.src, e.pos);
                Err(TemplateError::Exec {
                    name: self.name.clone(),
                    line,
                    col,
                    context: e.ctx,
                    message: e.msg,
                })
            }
        }
    }

    /// True when the template references field `name` of the data. A
    /// template that uses the data as a whole (`<<.>>` at top level, a bare
    /// `$`) counts as using every field it was parsed with.
    pub fn uses_field(&self, name: &str) -> bool {
        self.used_fields.iter().any(|f| f == name)
            || (self.uses_root && self.fields.iter().any(|f| f == name))
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// The template name used in error messages.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// 1-based line and 1-based byte column of byte offset `pos`.
fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let before = &src.as_bytes()[..pos.min(src.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    (line, before.len() - start + 1)
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Error,
    Eof,
    Text,
    LeftDelim,
    RightDelim,
    Space,
    Assign,
    Declare,
    Pipe,
    Str,
    RawStr,
    CharConst,
    Number,
    Complex,
    Bool,
    Dot,
    Field,
    Variable,
    Ident,
    LParen,
    RParen,
    Char,
    KwBlock,
    KwBreak,
    KwContinue,
    KwDefine,
    KwElse,
    KwEnd,
    KwIf,
    KwNil,
    KwRange,
    KwTemplate,
    KwWith,
}

impl Kind {
    /// Go prints keyword tokens as `<word>` in messages.
    fn is_keyword(self) -> bool {
        matches!(
            self,
            Kind::Dot
                | Kind::KwBlock
                | Kind::KwBreak
                | Kind::KwContinue
                | Kind::KwDefine
                | Kind::KwElse
                | Kind::KwEnd
                | Kind::KwIf
                | Kind::KwNil
                | Kind::KwRange
                | Kind::KwTemplate
                | Kind::KwWith
        )
    }
}

#[derive(Clone, Copy, Debug)]
struct Tok {
    kind: Kind,
    pos: usize,
    end: usize,
}

fn is_space_byte(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

/// `-` followed by whitespace right after the left delimiter.
fn has_left_trim(rest: &[u8]) -> bool {
    rest.len() >= 2 && rest[0] == b'-' && is_space_byte(rest[1])
}

/// Go's `%#U` of a rune: `U+0041 'A'`.
fn fmt_u(c: char) -> String {
    if is_print(c) {
        format!("U+{:04X} '{}'", c as u32, c)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

struct Lexer<'s> {
    src: &'s str,
    b: &'s [u8],
    toks: Vec<Tok>,
    err: String,
}

impl<'s> Lexer<'s> {
    fn new(src: &'s str) -> Self {
        Lexer {
            src,
            b: src.as_bytes(),
            toks: Vec::new(),
            err: String::new(),
        }
    }

    fn push(&mut self, kind: Kind, pos: usize, end: usize) {
        self.toks.push(Tok { kind, pos, end });
    }

    fn fail(&mut self, pos: usize, msg: String) {
        self.err = msg;
        self.push(Kind::Error, pos, pos);
    }

    fn char_at(&self, p: usize) -> Option<char> {
        self.src.get(p..).and_then(|s| s.chars().next())
    }

    /// `Some(trim)` when a right delimiter (with or without a trim marker)
    /// starts at `p`.
    fn at_right_delim(&self, p: usize) -> Option<bool> {
        let rest = self.b.get(p..).unwrap_or(&[]);
        if rest.len() >= 2
            && is_space_byte(rest[0])
            && rest[1] == b'-'
            && rest[2..].starts_with(RIGHT_DELIM)
        {
            Some(true)
        } else if rest.starts_with(RIGHT_DELIM) {
            Some(false)
        } else {
            None
        }
    }

    fn at_terminator(&self, p: usize) -> bool {
        match self.b.get(p) {
            None => true,
            Some(&c) => {
                is_space_byte(c)
                    || matches!(c, b'.' | b',' | b'|' | b':' | b')' | b'(')
                    || self.b[p..].starts_with(RIGHT_DELIM)
            }
        }
    }

    fn skip_spaces(&self, mut p: usize) -> usize {
        while p < self.b.len() && is_space_byte(self.b[p]) {
            p += 1;
        }
        p
    }

    fn run(mut self) -> (Vec<Tok>, String) {
        let n = self.b.len();
        let mut pos = 0;
        loop {
            let Some(off) = self.src[pos..].find(LEFT_DELIM) else {
                if pos < n {
                    self.push(Kind::Text, pos, n);
                }
                self.push(Kind::Eof, n, n);
                break;
            };
            let delim = pos + off;
            let after = delim + LEFT_DELIM.len();
            let trim = has_left_trim(&self.b[after..]);
            let text_end = if trim {
                pos + self.src[pos..delim]
                    .trim_end_matches([' ', '\t', '\r', '\n'])
                    .len()
            } else {
                delim
            };
            if text_end > pos {
                self.push(Kind::Text, pos, text_end);
            }
            let p = after + if trim { 2 } else { 0 };
            if self.b[p..].starts_with(b"/*") {
                let Some(close) = self.src[p + 2..].find("*/") else {
                    self.fail(p, "unclosed comment".to_string());
                    break;
                };
                let mut q = p + 2 + close + 2;
                let Some(trim_right) = self.at_right_delim(q) else {
                    self.fail(p, "comment ends before closing delimiter".to_string());
                    break;
                };
                q += if trim_right { 2 } else { 0 } + RIGHT_DELIM.len();
                if trim_right {
                    q = self.skip_spaces(q);
                }
                pos = q;
                continue;
            }
            self.push(Kind::LeftDelim, delim, after);
            match self.lex_action(p) {
                Some(next) => pos = next,
                None => break,
            }
        }
        (self.toks, self.err)
    }

    /// Lexes the inside of an action starting at `p`; returns the position
    /// after the right delimiter, or `None` after an error.
    fn lex_action(&mut self, mut p: usize) -> Option<usize> {
        let mut parens: i64 = 0;
        loop {
            if let Some(trim) = self.at_right_delim(p) {
                if parens != 0 {
                    self.fail(p, "unclosed left paren".to_string());
                    return None;
                }
                if trim {
                    p += 2;
                }
                self.push(Kind::RightDelim, p, p + RIGHT_DELIM.len());
                p += RIGHT_DELIM.len();
                if trim {
                    p = self.skip_spaces(p);
                }
                return Some(p);
            }
            let Some(c) = self.char_at(p) else {
                self.fail(p, "unclosed action".to_string());
                return None;
            };
            let start = p;
            match c {
                ' ' | '\t' | '\r' | '\n' => {
                    let mut q = self.skip_spaces(p);
                    let count = q - p;
                    // A trim-marked right delimiter starts with a space.
                    if self.at_right_delim(q - 1) == Some(true) {
                        q -= 1;
                        if count == 1 {
                            p = q;
                            continue;
                        }
                    }
                    self.push(Kind::Space, start, q);
                    p = q;
                }
                '=' => {
                    self.push(Kind::Assign, p, p + 1);
                    p += 1;
                }
                ':' => {
                    if self.b.get(p + 1) == Some(&b'=') {
                        self.push(Kind::Declare, p, p + 2);
                        p += 2;
                    } else {
                        self.fail(p, "expected :=".to_string());
                        return None;
                    }
                }
                '|' => {
                    self.push(Kind::Pipe, p, p + 1);
                    p += 1;
                }
                '"' | '\'' => {
                    let (kind, what) = if c == '"' {
                        (Kind::Str, "unterminated quoted string")
                    } else {
                        (Kind::CharConst, "unterminated character constant")
                    };
                    let quote = c as u8;
                    let mut q = p + 1;
                    loop {
                        match self.b.get(q) {
                            None | Some(b'\n') => {
                                self.fail(start, what.to_string());
                                return None;
                            }
                            Some(b'\\') => match self.b.get(q + 1) {
                                None | Some(b'\n') => {
                                    self.fail(start, what.to_string());
                                    return None;
                                }
                                _ => q += 2,
                            },
                            Some(&x) if x == quote => {
                                q += 1;
                                break;
                            }
                            _ => q += 1,
                        }
                    }
                    self.push(kind, start, q);
                    p = q;
                }
                '`' => match self.src[p + 1..].find('`') {
                    Some(k) => {
                        let q = p + 1 + k + 1;
                        self.push(Kind::RawStr, p, q);
                        p = q;
                    }
                    None => {
                        self.fail(p, "unterminated raw quoted string".to_string());
                        return None;
                    }
                },
                '$' => p = self.lex_field_or_var(p, Kind::Variable)?,
                '.' if self.b.get(p + 1).is_some_and(|d| !d.is_ascii_digit()) => {
                    p = self.lex_field_or_var(p, Kind::Field)?
                }
                '.' | '+' | '-' | '0'..='9' => p = self.lex_number(p)?,
                c if is_alnum(c) => p = self.lex_identifier(p)?,
                '(' => {
                    parens += 1;
                    self.push(Kind::LParen, p, p + 1);
                    p += 1;
                }
                ')' => {
                    parens -= 1;
                    if parens < 0 {
                        self.fail(p, "unexpected right paren".to_string());
                        return None;
                    }
                    self.push(Kind::RParen, p, p + 1);
                    p += 1;
                }
                c if c.is_ascii() && !c.is_ascii_control() => {
                    self.push(Kind::Char, p, p + 1);
                    p += 1;
                }
                c => {
                    self.fail(p, format!("unrecognized character in action: {}", fmt_u(c)));
                    return None;
                }
            }
        }
    }

    fn lex_field_or_var(&mut self, p: usize, kind: Kind) -> Option<usize> {
        let mut q = p + 1;
        if self.at_terminator(q) {
            let k = if kind == Kind::Variable {
                Kind::Variable
            } else {
                Kind::Dot
            };
            self.push(k, p, q);
            return Some(q);
        }
        while let Some(c) = self.char_at(q)
            && is_alnum(c)
        {
            q += c.len_utf8();
        }
        if !self.at_terminator(q) {
            let c = self.char_at(q).unwrap_or('\u{FFFD}');
            self.fail(p, format!("bad character {}", fmt_u(c)));
            return None;
        }
        self.push(kind, p, q);
        Some(q)
    }

    fn lex_identifier(&mut self, p: usize) -> Option<usize> {
        let mut q = p;
        while let Some(c) = self.char_at(q)
            && is_alnum(c)
        {
            q += c.len_utf8();
        }
        if !self.at_terminator(q) {
            let c = self.char_at(q).unwrap_or('\u{FFFD}');
            self.fail(p, format!("bad character {}", fmt_u(c)));
            return None;
        }
        let kind = match &self.src[p..q] {
            "block" => Kind::KwBlock,
            "break" => Kind::KwBreak,
            "continue" => Kind::KwContinue,
            "define" => Kind::KwDefine,
            "else" => Kind::KwElse,
            "end" => Kind::KwEnd,
            "if" => Kind::KwIf,
            "nil" => Kind::KwNil,
            "range" => Kind::KwRange,
            "template" => Kind::KwTemplate,
            "with" => Kind::KwWith,
            "true" | "false" => Kind::Bool,
            _ => Kind::Ident,
        };
        self.push(kind, p, q);
        Some(q)
    }

    fn accept(&self, q: &mut usize, set: &[u8]) -> bool {
        if let Some(b) = self.b.get(*q)
            && set.contains(b)
        {
            *q += 1;
            return true;
        }
        false
    }

    fn accept_run(&self, q: &mut usize, set: &[u8]) {
        while self.accept(q, set) {}
    }

    /// Scans a number like Go's lexer; returns (ok, end).
    fn scan_number(&self, mut q: usize) -> (bool, usize) {
        self.accept(&mut q, b"+-");
        let mut digits: &[u8] = b"0123456789_";
        if self.accept(&mut q, b"0") {
            if self.accept(&mut q, b"xX") {
                digits = b"0123456789abcdefABCDEF_";
            } else if self.accept(&mut q, b"oO") {
                digits = b"01234567_";
            } else if self.accept(&mut q, b"bB") {
                digits = b"01_";
            }
        }
        self.accept_run(&mut q, digits);
        if self.accept(&mut q, b".") {
            self.accept_run(&mut q, digits);
        }
        if digits.len() == 11 && self.accept(&mut q, b"eE") {
            self.accept(&mut q, b"+-");
            self.accept_run(&mut q, b"0123456789_");
        }
        if digits.len() == 23 && self.accept(&mut q, b"pP") {
            self.accept(&mut q, b"+-");
            self.accept_run(&mut q, b"0123456789_");
        }
        self.accept(&mut q, b"i");
        match self.char_at(q) {
            Some(c) if is_alnum(c) => (false, q + c.len_utf8()),
            _ => (true, q),
        }
    }

    fn lex_number(&mut self, p: usize) -> Option<usize> {
        let (ok, q) = self.scan_number(p);
        if !ok {
            self.fail(
                p,
                format!("bad number syntax: {}", go_quote(&self.src[p..q])),
            );
            return None;
        }
        if matches!(self.b.get(q), Some(b'+' | b'-')) {
            let (ok, q2) = self.scan_number(q);
            if !ok || self.b[q2 - 1] != b'i' {
                self.fail(
                    p,
                    format!("bad number syntax: {}", go_quote(&self.src[p..q2])),
                );
                return None;
            }
            self.push(Kind::Complex, p, q2);
            return Some(q2);
        }
        self.push(Kind::Number, p, q);
        Some(q)
    }
}

// ---------------------------------------------------------------------------
// Syntax tree
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Node {
    /// A byte range of the source.
    Text {
        start: usize,
        end: usize,
    },
    Action(Pipe),
    If(Box<Control>),
    With(Box<Control>),
    Range(Box<Control>),
    Break,
    Continue,
}

#[derive(Clone, Debug)]
struct Control {
    pipe: Pipe,
    list: Vec<Node>,
    els: Option<Vec<Node>>,
    /// Variable slots declared anywhere inside; cleared when the structure ends.
    scope: (usize, usize),
    /// Slots declared inside the body; cleared after each range iteration.
    body: (usize, usize),
}

#[derive(Clone, Debug)]
struct Pipe {
    pos: usize,
    decls: Vec<Decl>,
    cmds: Vec<Cmd>,
}

#[derive(Clone, Debug)]
struct Decl {
    name: String,
    slot: usize,
    /// An assignment to a variable that was never declared (an exec error in Go).
    undefined: bool,
}

#[derive(Clone, Debug)]
struct Cmd {
    args: Vec<Arg>,
}

#[derive(Clone, Debug)]
enum Arg {
    Field {
        pos: usize,
        names: Vec<String>,
    },
    Var {
        pos: usize,
        name: String,
        slot: usize,
        names: Vec<String>,
    },
    Dot {
        pos: usize,
    },
    Nil {
        pos: usize,
    },
    Bool {
        pos: usize,
        val: bool,
    },
    Int {
        pos: usize,
        val: i64,
        text: String,
    },
    Str {
        pos: usize,
        val: String,
        text: String,
    },
    Func {
        pos: usize,
        func: Func,
    },
    Pipe(Box<Pipe>),
    Chain {
        pos: usize,
        node: Box<Arg>,
        names: Vec<String>,
    },
}

impl Arg {
    fn pos(&self) -> usize {
        match self {
            Arg::Field { pos, .. }
            | Arg::Var { pos, .. }
            | Arg::Dot { pos }
            | Arg::Nil { pos }
            | Arg::Bool { pos, .. }
            | Arg::Int { pos, .. }
            | Arg::Str { pos, .. }
            | Arg::Func { pos, .. }
            | Arg::Chain { pos, .. } => *pos,
            Arg::Pipe(p) => p.pos,
        }
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Field { names, .. } => {
                for n in names {
                    write!(f, ".{n}")?;
                }
                Ok(())
            }
            Arg::Var { name, names, .. } => {
                f.write_str(name)?;
                for n in names {
                    write!(f, ".{n}")?;
                }
                Ok(())
            }
            Arg::Dot { .. } => f.write_str("."),
            Arg::Nil { .. } => f.write_str("nil"),
            Arg::Bool { val, .. } => write!(f, "{val}"),
            Arg::Int { text, .. } | Arg::Str { text, .. } => f.write_str(text),
            Arg::Func { func, .. } => f.write_str(func.name()),
            Arg::Pipe(p) => write!(f, "({p})"),
            Arg::Chain { node, names, .. } => {
                write!(f, "{node}")?;
                for n in names {
                    write!(f, ".{n}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decls.is_empty() {
            for (i, d) in self.decls.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(&d.name)?;
            }
            f.write_str(" := ")?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            for (j, a) in c.args.iter().enumerate() {
                if j > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{a}")?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Func {
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

enum Arity {
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
    fn lookup(name: &str) -> Option<Func> {
        FUNCS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    fn name(self) -> &'static str {
        FUNCS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }

    fn arity(self) -> Arity {
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

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

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

struct Parser<'s> {
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
    nslots: usize,
    range_depth: usize,
    depth: usize,
    /// Whether `.` is the top-level data at this point.
    dot_is_root: bool,
    /// `$` was assigned to; stop checking `$.Field` names.
    root_reassigned: bool,
    action_line: usize,
    used_fields: Vec<String>,
    uses_root: bool,
}

impl<'s> Parser<'s> {
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

    fn parse_top(&mut self) -> PResult<Vec<Node>> {
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

enum IntErr {
    Syntax,
    Overflow,
    Float,
}

/// Parses a Go integer literal (`strconv.ParseInt(s, 0, 64)` syntax).
fn parse_go_int(text: &str) -> Result<i64, IntErr> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    let legacy_octal =
        lower.len() > 1 && lower.starts_with('0') && !lower[1..].starts_with(['x', 'o', 'b']);
    let (base, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if legacy_octal {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if base != 16 && (lower.contains(['.', 'e', 'p']) || lower.ends_with('i'))
        || base == 16 && (lower.contains(['.', 'p']) || lower.ends_with('i'))
    {
        return Err(IntErr::Float);
    }
    if !underscores_ok(&lower) {
        return Err(IntErr::Syntax);
    }
    // The leading 0 of a legacy octal literal is itself a digit.
    let mut any = legacy_octal;
    let mut acc: u64 = 0;
    let mut overflow = false;
    for c in digits.chars().filter(|&c| c != '_') {
        let Some(d) = c.to_digit(16) else {
            return Err(IntErr::Syntax);
        };
        if d >= base {
            // Go falls back to a float parse, which accepts "08"/"09"-style
            // decimals and then rejects them as "integer overflow".
            if legacy_octal && d < 10 {
                overflow = true;
                any = true;
                continue;
            }
            return Err(IntErr::Syntax);
        }
        any = true;
        match acc
            .checked_mul(base as u64)
            .and_then(|a| a.checked_add(d as u64))
        {
            Some(a) => acc = a,
            None => overflow = true,
        }
    }
    if !any {
        return Err(IntErr::Syntax);
    }
    if overflow {
        return Err(IntErr::Overflow);
    }
    if neg {
        if acc > i64::MAX as u64 + 1 {
            return Err(IntErr::Overflow);
        }
        Ok((acc as i64).wrapping_neg())
    } else {
        i64::try_from(acc).map_err(|_| IntErr::Overflow)
    }
}

/// Go's rule: underscores only between digits, or between a base prefix and a digit.
fn underscores_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1], b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1] == b'x';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || hex && (b'a'..=b'f').contains(&c) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// One decoded unit of a quoted literal.
enum Unit {
    Char(char),
    Byte(u8),
}

impl Unit {
    fn value(&self) -> i64 {
        match self {
            Unit::Char(c) => *c as i64,
            Unit::Byte(b) => *b as i64,
        }
    }
}

/// Go's `strconv.UnquoteChar`: decodes one character or escape from `s`.
fn unquote_char(s: &str, quote: char) -> Result<(Unit, &str), ()> {
    let mut it = s.chars();
    let c = it.next().ok_or(())?;
    if c == quote && (quote == '\'' || quote == '"') {
        return Err(());
    }
    if c != '\\' {
        return Ok((Unit::Char(c), it.as_str()));
    }
    let e = it.next().ok_or(())?;
    let rest = it.as_str();
    let simple = match e {
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'f' => Some('\x0c'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\x0b'),
        '\\' => Some('\\'),
        '\'' | '"' if e == quote => Some(e),
        _ => None,
    };
    if let Some(c) = simple {
        return Ok((Unit::Char(c), rest));
    }
    match e {
        'x' | 'u' | 'U' => {
            let n = match e {
                'x' => 2,
                'u' => 4,
                _ => 8,
            };
            let hex = rest.get(..n).ok_or(())?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(());
            }
            let v = u32::from_str_radix(hex, 16).map_err(|_| ())?;
            let rest = &rest[n..];
            if e == 'x' {
                return Ok((Unit::Byte(v as u8), rest));
            }
            let c = char::from_u32(v).ok_or(())?;
            Ok((Unit::Char(c), rest))
        }
        '0'..='7' => {
            let more = rest.get(..2).ok_or(())?;
            if !more.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return Err(());
            }
            let v = (e as u32 - '0' as u32) * 64 + u32::from_str_radix(more, 8).map_err(|_| ())?;
            if v > 255 {
                return Err(());
            }
            Ok((Unit::Byte(v as u8), &rest[2..]))
        }
        _ => Err(()),
    }
}

/// Go's `strconv.Unquote` for `"…"` and `` `…` `` literals.
fn unquote(text: &str) -> Result<String, String> {
    const SYNTAX: &str = "invalid syntax";
    if let Some(inner) = text.strip_prefix('`').and_then(|t| t.strip_suffix('`')) {
        return Ok(inner.replace('\r', ""));
    }
    let Some(mut s) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return Err(SYNTAX.to_string());
    };
    if !s.contains(['\\', '"', '\n']) {
        return Ok(s.to_string());
    }
    let mut buf: Vec<u8> = Vec::with_capacity(s.len());
    while !s.is_empty() {
        if s.starts_with('\n') {
            return Err(SYNTAX.to_string());
        }
        let (u, rest) = unquote_char(s, '"').map_err(|_| SYNTAX.to_string())?;
        match u {
            Unit::Char(c) => {
                let mut tmp = [0u8; 4];
                buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
            Unit::Byte(b) => buf.push(b),
        }
        s = rest;
    }
    String::from_utf8(buf).map_err(|_| "string literal is not valid UTF-8 (byte escapes forming invalid UTF-8 are not supported)".to_string())
}

// ---------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------

/// A runtime value, borrowing from the data and the template where it can.
#[derive(Clone, Debug)]
enum Val<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Str(Cow<'a, str>),
    List(Cow<'a, [String]>),
    Map(&'a BTreeMap<String, String>),
    Root(&'a [(&'a str, Value)]),
}

impl<'a> Val<'a> {
    fn of(v: &'a Value) -> Val<'a> {
        match v {
            Value::Str(s) => Val::Str(Cow::Borrowed(s)),
            Value::List(l) => Val::List(Cow::Borrowed(l)),
            Value::Map(m) => Val::Map(m),
            Value::Bool(b) => Val::Bool(*b),
            Value::Int(n) => Val::Int(*n),
            Value::Nil => Val::Nil,
        }
    }

    fn is_nil(&self) -> bool {
        matches!(self, Val::Nil)
    }

    fn type_name(&self) -> &'static str {
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

    fn truth(&self) -> bool {
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
    fn to_v(&self) -> String {
        let mut s = String::new();
        write_v(&mut s, self);
        s
    }
}

fn list_elem<'a>(l: &Cow<'a, [String]>, i: usize) -> Val<'a> {
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

struct XErr {
    pos: usize,
    ctx: String,
    msg: String,
}

fn xerr(pos: usize, ctx: impl fmt::Display, msg: impl Into<String>) -> XErr {
    XErr {
        pos,
        ctx: ctx.to_string(),
        msg: msg.into(),
    }
}

type XResult<T> = Result<T, XErr>;

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

// ---------------------------------------------------------------------------
// Built-in functions
// ---------------------------------------------------------------------------

fn apply<'a>(func: Func, vals: &[Val<'a>], call_name: Option<String>) -> Result<Val<'a>, String> {
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

// ---------------------------------------------------------------------------
// Go fmt emulation
// ---------------------------------------------------------------------------

/// Go's `%v` with no flags.
fn write_v(out: &mut String, v: &Val<'_>) {
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
fn sprint(out: &mut String, vals: &[Val<'_>]) {
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
fn sprintf(out: &mut String, format: &str, args: &[Val<'_>]) {
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

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    append_quoted(&mut out, s.chars(), '"', false);
    out
}

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
fn is_print(c: char) -> bool {
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
    use super::*;
    use proptest::prelude::*;

    const FIELDS: &[&str] = &[
        "Series",
        "LabelMatchers",
        "LabelValuesByName",
        "GroupBy",
        "GroupBySlice",
    ];

    fn map(pairs: &[(&str, &str)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn list(items: &[&str]) -> Value {
        Value::List(items.iter().map(|s| s.to_string()).collect())
    }

    fn data(
        series: &str,
        matchers: &str,
        by_name: &[(&str, &str)],
        group_by: &str,
        slice: &[&str],
    ) -> Vec<(&'static str, Value)> {
        vec![
            ("Series", series.into()),
            ("LabelMatchers", matchers.into()),
            ("LabelValuesByName", map(by_name)),
            ("GroupBy", group_by.into()),
            ("GroupBySlice", list(slice)),
        ]
    }

    fn std_data() -> Vec<(&'static str, Value)> {
        data(
            "flask_http_request_total",
            r#"namespace="default",pod=~"a|b""#,
            &[("namespace", "default"), ("pod", "a|b")],
            "pod",
            &["pod"],
        )
    }

    fn render_with(src: &str, d: &[(&str, Value)]) -> String {
        let t = Template::parse("metrics-query", src, FIELDS)
            .unwrap_or_else(|e| panic!("parse {src:?}: {e}"));
        t.render(d)
            .unwrap_or_else(|e| panic!("render {src:?}: {e}"))
    }

    fn r(src: &str) -> String {
        render_with(src, &std_data())
    }

    fn parse_err(src: &str) -> TemplateError {
        match Template::parse("t", src, FIELDS) {
            Ok(_) => panic!("expected a parse error for {src:?}"),
            Err(e) => {
                assert!(matches!(e, TemplateError::Parse { .. }), "{e:?}");
                e
            }
        }
    }

    fn exec_err_with(src: &str, d: &[(&str, Value)]) -> TemplateError {
        let t = Template::parse("t", src, FIELDS).unwrap_or_else(|e| panic!("parse {src:?}: {e}"));
        match t.render(d) {
            Ok(out) => panic!("expected an exec error for {src:?}, got {out:?}"),
            Err(e) => {
                assert!(matches!(e, TemplateError::Exec { .. }), "{e:?}");
                e
            }
        }
    }

    fn exec_err(src: &str) -> TemplateError {
        exec_err_with(src, &std_data())
    }

    // ----- golden cases from prometheus-adapter -----

    #[test]
    fn golden_rate_query() {
        let d = data(
            "flask_http_request_total",
            r#"namespace="default",pod=~"a|b""#,
            &[],
            "pod",
            &["pod"],
        );
        assert_eq!(
            render_with(
                "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)",
                &d
            ),
            r#"sum(rate(flask_http_request_total{namespace="default",pod=~"a|b"}[2m])) by (pod)"#
        );
    }

    #[test]
    fn golden_metrics_query_test_cases() {
        let d = data(
            "foo",
            r#"resource="bar""#,
            &[("resource", "bar")],
            "resource",
            &["resource"],
        );
        assert_eq!(render_with("series <<.Series>>", &d), "series foo");
        assert_eq!(render_with("<<.LabelMatchers>>", &d), r#"resource="bar""#);
        assert_eq!(render_with("<<.GroupBySlice>>", &d), "[resource]");
        assert_eq!(render_with("<<.GroupBy>>", &d), "resource");
        assert_eq!(
            render_with(r#"<<index .LabelValuesByName "resource">>"#, &d),
            "bar"
        );

        let d = data(
            "foo",
            r#"resource=~"bar|baz""#,
            &[("resource", "bar|baz")],
            "resource,extra,groups",
            &["resource", "extra", "groups"],
        );
        assert_eq!(
            render_with("<<.GroupBySlice>>", &d),
            "[resource extra groups]"
        );
        assert_eq!(render_with("<<.GroupBy>>", &d), "resource,extra,groups");
        assert_eq!(
            render_with(r#"<<index .LabelValuesByName "resource">>"#, &d),
            "bar|baz"
        );
        assert_eq!(
            render_with(r#"<<index .LabelValuesByName "missing">>"#, &d),
            ""
        );
        assert_eq!(
            render_with(
                r#"<<index .LabelValuesByName "namespaces">> <<index .LabelValuesByName "resource">>"#,
                &data(
                    "foo",
                    "",
                    &[("namespaces", "default"), ("resource", "bar|baz")],
                    "",
                    &[]
                )
            ),
            "default bar|baz"
        );

        let ext = r#"<<index .LabelValuesByName "namespaces">> <<.GroupBySlice>>"#;
        let d = data("foo", "", &[("namespaces", "default")], "", &["foo", "bar"]);
        assert_eq!(render_with(ext, &d), "default [foo bar]");
        let d = data("foo", "", &[], "", &["foo", "bar"]);
        assert_eq!(render_with(ext, &d), " [foo bar]");

        let d = data("foo", "", &[("foo", "bar")], "", &[]);
        assert_eq!(render_with("<<.LabelValuesByName>>", &d), "map[foo:bar]");
        let d = data("foo", "", &[("foo", "bar|baz")], "", &[]);
        assert_eq!(
            render_with("<<.LabelValuesByName>>", &d),
            "map[foo:bar|baz]"
        );
        let d = data("foo", "", &[("qux", "bar|baz"), ("foo", "bar")], "", &[]);
        assert_eq!(
            render_with("<<.LabelValuesByName>>", &d),
            "map[foo:bar qux:bar|baz]"
        );
        let d = data("foo", "", &[], "", &[]);
        assert_eq!(
            render_with("<<.LabelValuesByName>>|<<.GroupBySlice>>", &d),
            "map[]|[]"
        );
    }

    #[test]
    fn golden_series_registry_style_queries() {
        let d = data(
            "container_some_usage",
            r#"namespace="somens",pod=~"somepod1|somepod2",container!="POD""#,
            &[],
            "pod",
            &["pod"],
        );
        assert_eq!(
            render_with("sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)", &d),
            r#"sum(container_some_usage{namespace="somens",pod=~"somepod1|somepod2",container!="POD"}) by (pod)"#
        );
    }

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
    fn trim_markers() {
        assert_eq!(r("a  <<- .GroupBy ->>  b"), "apodb");
        assert_eq!(r("a \n\t <<- .GroupBy>> b"), "apod b");
        assert_eq!(r("a <<.GroupBy ->> \n b"), "a podb");
        assert_eq!(r("<<-3>>"), "-3");
        assert_eq!(r("x <<- 3>>"), "x3");
        assert_eq!(r("<<3 ->> y"), "3y");
        assert_eq!(r("<<- 3 ->>"), "3");
        assert_eq!(r("<<1 ->>  \n  <<- 2>>"), "12");
        assert_eq!(r("<<.GroupBy  ->>  x"), "podx");
        assert_eq!(
            r("a\n<<- range .GroupBySlice ->>\n  <<.>>\n<<- end ->>\nb"),
            "apodb"
        );
        // A dash without the space is not a trim marker.
        assert!(
            exec_err("<<3 -2>>")
                .to_string()
                .ends_with("can't give argument to non-function 3")
        );
        assert_eq!(r("<<print 3 -2>>"), "3 -2");
    }

    #[test]
    fn comments() {
        assert_eq!(r("a<</* c */>>b"), "ab");
        assert_eq!(r("a <</* c */>> b"), "a  b");
        assert_eq!(r("a \n <<- /* c\n more */ ->> \n b"), "ab");
        assert_eq!(r("a<</**/>>b"), "ab");
        assert!(
            parse_err("a<</* c >>")
                .to_string()
                .contains("unclosed comment")
        );
        assert!(
            parse_err("a<</* c */ x>>")
                .to_string()
                .contains("comment ends before closing delimiter")
        );
    }

    #[test]
    fn curly_braces_are_plain_text() {
        let src = "{{- range $i, $v := .GroupBySlice }}<<.GroupBy>>{{ end }}";
        assert_eq!(r(src), "{{- range $i, $v := .GroupBySlice }}pod{{ end }}");
        assert_eq!(r("a >> b }} {{"), "a >> b }} {{");
    }

    #[test]
    fn multi_line_block_scalar() {
        let src = "sum by (<<.GroupBy>>) (\n  irate(<<.Series>>{<<.LabelMatchers>>}[1m])\n)\n";
        assert_eq!(
            r(src),
            "sum by (pod) (\n  irate(flask_http_request_total{namespace=\"default\",pod=~\"a|b\"}[1m])\n)\n"
        );
        // Actions may span lines.
        assert_eq!(r("<<index\n   .LabelValuesByName\n   \"pod\">>"), "a|b");
        assert_eq!(r("\r\n<<.GroupBy>>\r\n"), "\r\npod\r\n");
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
    fn print_functions() {
        assert_eq!(r("<<print 1 2>>"), "1 2");
        assert_eq!(r(r#"<<print "a" "b">>"#), "ab");
        assert_eq!(r(r#"<<print "a" 1 2 "b" true>>"#), "a1 2btrue");
        assert_eq!(r(r#"<<println 1 "a">>"#), "1 a\n");
        assert_eq!(r("<<print nil .GroupBySlice>>"), "<nil> [pod]");
        assert_eq!(r("<<print>>"), "");
        assert_eq!(r("<<print .LabelValuesByName.nope>>"), "<nil>");
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
    fn literals() {
        assert_eq!(
            r(r#"<<"a\tb\u00e9\x41\101\U0001F600">>"#),
            "a\tbéAA\u{1F600}"
        );
        assert_eq!(r(r#"<<"\xc3\xa9">>"#), "é");
        assert_eq!(r("<<`a\\n\"b`>>"), "a\\n\"b");
        assert_eq!(r("<<'a'>> <<'\\n'>> <<'\\''>> <<'é'>>"), "97 10 39 233");
        assert_eq!(r(r#"<<printf "%c" 'é'>>"#), "é");
        assert_eq!(
            r("<<0x1F>> <<1_000>> <<-0o17>> <<017>> <<0b101>> <<+7>> <<-9223372036854775808>>"),
            "31 1000 -15 15 5 7 -9223372036854775808"
        );
    }

    // ----- errors -----

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
    fn error_unclosed_action_and_delims() {
        assert_eq!(
            parse_err("<<.Series").to_string(),
            "template: t:1: unclosed action"
        );
        assert_eq!(
            parse_err("a\n<<.Series\n\n").to_string(),
            "template: t:4: unclosed action started at t:2"
        );
        assert_eq!(
            parse_err("<<(.Series>>").to_string(),
            "template: t:1: unclosed left paren"
        );
        assert_eq!(
            parse_err("<<.Series)>>").to_string(),
            "template: t:1: unexpected right paren"
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
    fn error_bad_string_literals() {
        assert_eq!(
            parse_err(r#"<<"\q">>"#).to_string(),
            "template: t:1: invalid syntax"
        );
        assert_eq!(
            parse_err("<<\"abc>>").to_string(),
            "template: t:1: unterminated quoted string"
        );
        assert_eq!(
            parse_err("x\n<<\"ab\ncd\">>").to_string(),
            "template: t:2: unterminated quoted string"
        );
        assert_eq!(
            parse_err("<<`abc>>").to_string(),
            "template: t:1: unterminated raw quoted string"
        );
        assert_eq!(
            parse_err("<<'ab'>>").to_string(),
            "template: t:1: malformed character constant: 'ab'"
        );
        assert_eq!(
            parse_err("<<''>>").to_string(),
            "template: t:1: invalid syntax"
        );
        assert_eq!(
            parse_err("<<'a>>").to_string(),
            "template: t:1: unterminated character constant"
        );
        assert_eq!(
            parse_err(r#"<<"\u12">>"#).to_string(),
            "template: t:1: invalid syntax"
        );
        assert_eq!(
            parse_err(r#"<<"\400">>"#).to_string(),
            "template: t:1: invalid syntax"
        );
        assert_eq!(
            parse_err(r#"<<"\'">>"#).to_string(),
            "template: t:1: invalid syntax"
        );
        assert!(
            parse_err(r#"<<"\xff">>"#)
                .to_string()
                .contains("not valid UTF-8")
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

    #[test]
    fn uses_field_and_accessors() {
        let src = "sum(<<.Series>>{<<index .LabelValuesByName \"pod\">>}) by (<<$.GroupBy>>)";
        let t = Template::parse("q", src, FIELDS).unwrap();
        assert!(t.uses_field("Series"));
        assert!(t.uses_field("LabelValuesByName"));
        assert!(t.uses_field("GroupBy"));
        assert!(!t.uses_field("LabelMatchers"));
        assert!(!t.uses_field("GroupBySlice"));
        assert_eq!(t.source(), src);
        assert_eq!(t.name(), "q");
        let t = Template::parse(
            "q",
            "<<range .GroupBySlice>><<.LabelMatchers>><<end>>",
            FIELDS,
        )
        .unwrap();
        assert!(
            !t.uses_field("LabelMatchers"),
            "inside range, .LabelMatchers is a field of the element"
        );
        let t = Template::parse("q", "<<print .>>", FIELDS).unwrap();
        assert!(t.uses_field("LabelMatchers"));
        assert!(!t.uses_field("Other"));
        let t =
            Template::parse("r", "kube_<<.Group>>_<<.Resource>>", &["Group", "Resource"]).unwrap();
        assert_eq!(
            t.render(&[("Group", "apps".into()), ("Resource", "deployments".into())])
                .unwrap(),
            "kube_apps_deployments"
        );
        assert_eq!(
            t.render(&[
                ("Group", "(?P<group>.+?)".into()),
                ("Resource", "(?P<resource>.+?)".into())
            ])
            .unwrap(),
            "kube_(?P<group>.+?)_(?P<resource>.+?)"
        );
        assert!(t.uses_field("Group") && !t.uses_field("Series"));
    }

    #[test]
    fn empty_and_plain_templates() {
        assert_eq!(r(""), "");
        assert_eq!(r("plain text"), "plain text");
        assert_eq!(r("a > b >> c"), "a > b >> c");
    }

    #[test]
    #[ignore]
    fn render_speed() {
        let t = Template::parse(
            "q",
            "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)",
            FIELDS,
        )
        .unwrap();
        let d = std_data();
        let n = 200_000;
        let start = std::time::Instant::now();
        let mut total = 0;
        for _ in 0..n {
            total += t.render(&d).unwrap().len();
        }
        let per = start.elapsed() / n;
        println!("render: {per:?} per call ({total})");
        assert!(per < std::time::Duration::from_micros(5));
    }

    fn fuzz_data() -> Vec<(&'static str, Value)> {
        data("s", "m", &[("a", "1"), ("b", "")], "g", &["x", "y"])
    }

    fn no_panic(src: &str) {
        if let Ok(t) = Template::parse("fuzz", src, FIELDS) {
            let _ = t.render(&fuzz_data());
            let _ = t.render(&[]);
            let _ = t.uses_field("Series");
        }
    }

    const TOKENS: &[&str] = &[
        "<<",
        ">>",
        "<<-",
        " ->>",
        "<<- ",
        "-",
        " ",
        "\n",
        "\t",
        ".",
        ".Series",
        ".GroupBySlice",
        ".LabelValuesByName",
        ".a",
        "$",
        "$x",
        "$y",
        ":=",
        "=",
        ",",
        "|",
        "(",
        ")",
        "\"",
        "\"s\"",
        "`",
        "'",
        "'a'",
        "\\",
        "0",
        "1",
        "-1",
        "0x",
        "9999999999999999999999",
        "1.5",
        "if",
        "else",
        "end",
        "range",
        "with",
        "break",
        "continue",
        "define",
        "nil",
        "true",
        "index",
        "slice",
        "len",
        "printf",
        "print",
        "eq",
        "lt",
        "and",
        "or",
        "not",
        "html",
        "js",
        "urlquery",
        "call",
        "\"%s\"",
        "\"%d%v%q%x%5.2s%*d%\"",
        "/*",
        "*/",
        "é",
        "\u{0}",
        "{{",
        "}}",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

        #[test]
        fn never_panics_on_arbitrary_strings(s in any::<String>()) {
            no_panic(&s);
        }

        #[test]
        fn never_panics_on_token_soup(parts in prop::collection::vec(prop::sample::select(TOKENS), 0..48)) {
            no_panic(&parts.concat());
        }

        #[test]
        fn never_panics_inside_actions(parts in prop::collection::vec(prop::sample::select(TOKENS), 0..24)) {
            no_panic(&format!("<<{}>>", parts.join(" ")));
            no_panic(&format!("<<range $i, $v := .GroupBySlice>><<{}>><<end>>", parts.join(" ")));
        }
    }
}
