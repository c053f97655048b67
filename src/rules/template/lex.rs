//! The lexer: splits a template into text and the tokens of its actions.
//!
//! Token kinds and error messages follow Go's `text/template/parse/lex.go`, so that parse errors
//! read like Go's. The whole source is lexed up front; a lexing error becomes an `Error` token
//! that the parser reports when it reaches it, as Go's parser does.

use super::print::{go_quote, is_print};

const LEFT_DELIM: &str = "<<";
const RIGHT_DELIM: &[u8] = b">>";

/// Token kinds, named after Go's `itemType`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
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
    pub(super) fn is_keyword(self) -> bool {
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

/// A token: its kind and its byte range in the source.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tok {
    pub(super) kind: Kind,
    pub(super) pos: usize,
    pub(super) end: usize,
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

/// Lexer state over one source.
pub(super) struct Lexer<'s> {
    src: &'s str,
    b: &'s [u8],
    toks: Vec<Tok>,
    err: String,
}

impl<'s> Lexer<'s> {
    pub(super) fn new(src: &'s str) -> Self {
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

    /// All tokens, ending with `Eof` or `Error`, and the error message if any.
    pub(super) fn run(mut self) -> (Vec<Tok>, String) {
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

#[cfg(test)]
mod tests {
    use crate::rules::template::tests::{exec_err, parse_err, r};

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
}
