//! The selector grammar, step for step like apimachinery's `labels.Parse`, so that the inputs
//! accepted and their meaning agree with Kubernetes.

use super::names::validate_key;
use super::{Operator, Requirement, SelectorError};

/// The requirements of `s` in written order, each validated.
pub(super) fn requirements(s: &str) -> Result<Vec<Requirement>, SelectorError> {
    Parser {
        tokens: lex(s),
        pos: 0,
    }
    .parse()
}

/// Lexer tokens, named after apimachinery's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    End,
    OpenPar,
    ClosePar,
    Comma,
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    In,
    NotIn,
    Ident,
}

/// Whitespace as apimachinery's lexer defines it.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Bytes that start an operator token and end an identifier.
fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits the input into tokens with their literal text. Identifiers are runs
/// of any bytes other than whitespace and operator symbols, exactly as in
/// apimachinery; validation happens later. Cutting only at ASCII bytes keeps
/// every slice on a UTF-8 boundary.
fn lex(s: &str) -> Vec<(Tok, &str)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while b.get(i).copied().is_some_and(is_ws) {
            i += 1;
        }
        let Some(&c) = b.get(i) else {
            out.push((Tok::End, ""));
            return out;
        };
        let start = i;
        let tok = if is_special(c) {
            // Longest match, as the Go lexer's greedy loop does; the only
            // two-byte tokens are "!=" and "==".
            let next = b.get(i + 1).copied();
            let (tok, len) = match (c, next) {
                (b'!', Some(b'=')) => (Tok::NotEq, 2),
                (b'=', Some(b'=')) => (Tok::DoubleEq, 2),
                (b'!', _) => (Tok::Not, 1),
                (b'=', _) => (Tok::Eq, 1),
                (b'(', _) => (Tok::OpenPar, 1),
                (b')', _) => (Tok::ClosePar, 1),
                (b',', _) => (Tok::Comma, 1),
                (b'>', _) => (Tok::Gt, 1),
                _ => (Tok::Lt, 1),
            };
            i += len;
            tok
        } else {
            while b.get(i).is_some_and(|&c| !is_special(c) && !is_ws(c)) {
                i += 1;
            }
            match s.get(start..i) {
                Some("in") => Tok::In,
                Some("notin") => Tok::NotIn,
                _ => Tok::Ident,
            }
        };
        out.push((tok, s.get(start..i).unwrap_or("")));
    }
}

/// Whether `in`/`notin` are keywords (after a key) or plain identifiers
/// (keys and values), mirroring apimachinery's parser contexts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

/// Recursive-descent parser over the token list, step for step like
/// apimachinery's so that accepted inputs and their meaning agree.
struct Parser<'a> {
    tokens: Vec<(Tok, &'a str)>,
    pos: usize,
}

fn syntax(message: String) -> SelectorError {
    SelectorError::Syntax { message }
}

impl<'a> Parser<'a> {
    fn peek(&self, ctx: Ctx) -> (Tok, &'a str) {
        let (tok, lit) = self.tokens.get(self.pos).copied().unwrap_or((Tok::End, ""));
        match tok {
            Tok::In | Tok::NotIn if ctx == Ctx::Values => (Tok::Ident, lit),
            _ => (tok, lit),
        }
    }

    fn next(&mut self, ctx: Ctx) -> (Tok, &'a str) {
        let item = self.peek(ctx);
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.peek(Ctx::Values);
            match tok {
                Tok::Ident | Tok::Not => {
                    reqs.push(self.requirement()?);
                    let (t, l) = self.next(Ctx::Values);
                    match t {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let (t2, l2) = self.peek(Ctx::Values);
                            if t2 != Tok::Ident && t2 != Tok::Not {
                                return Err(syntax(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(syntax(format!(
                                "found '{l}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                _ => {
                    return Err(syntax(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, unary) = self.key_and_unary_operator()?;
        if let Some(op) = unary {
            return Requirement::new(key, op, Vec::new());
        }
        let op = self.operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        Requirement::new(key, op, values)
    }

    /// Reads `[!]key` and decides whether the requirement is unary. As in
    /// apimachinery, `!key` stays unary even when more follows, so `!a=b`
    /// fails later at the `=`.
    fn key_and_unary_operator(&mut self) -> Result<(&'a str, Option<Operator>), SelectorError> {
        let (mut tok, mut lit) = self.next(Ctx::Values);
        let mut op = None;
        if tok == Tok::Not {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.next(Ctx::Values);
        }
        if tok != Tok::Ident {
            return Err(syntax(format!("found '{lit}', expected: identifier")));
        }
        validate_key(lit)?;
        let (t, _) = self.peek(Ctx::Values);
        if (t == Tok::End || t == Tok::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn operator(&mut self) -> Result<Operator, SelectorError> {
        let (tok, lit) = self.next(Ctx::KeyAndOperator);
        Ok(match tok {
            Tok::In => Operator::In,
            Tok::Eq => Operator::Equals,
            Tok::DoubleEq => Operator::DoubleEquals,
            Tok::Gt => Operator::GreaterThan,
            Tok::Lt => Operator::LessThan,
            Tok::NotIn => Operator::NotIn,
            Tok::NotEq => Operator::NotEquals,
            _ => {
                return Err(syntax(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                )));
            }
        })
    }

    /// `( values )`; `()` means one empty value, as in apimachinery.
    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        let (tok, lit) = self.next(Ctx::Values);
        if tok != Tok::OpenPar {
            return Err(syntax(format!("found '{lit}' expected: '('")));
        }
        let (tok, lit) = self.peek(Ctx::Values);
        match tok {
            Tok::Ident | Tok::Comma => {
                let values = self.identifier_list()?;
                let (tok, _) = self.next(Ctx::Values);
                if tok != Tok::ClosePar {
                    return Err(syntax(format!("found '{lit}', expected: ')'")));
                }
                Ok(values)
            }
            Tok::ClosePar => {
                self.next(Ctx::Values);
                Ok(vec![String::new()])
            }
            _ => Err(syntax(format!(
                "found '{lit}', expected: ',', ')' or identifier"
            ))),
        }
    }

    /// A comma-separated list in which empty entries stand for `""`; stops
    /// in front of the closing parenthesis.
    fn identifier_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.next(Ctx::Values);
            match tok {
                Tok::Ident => {
                    values.push(lit.to_owned());
                    let (t2, l2) = self.peek(Ctx::Values);
                    match t2 {
                        Tok::Comma => {}
                        Tok::ClosePar => return Ok(values),
                        _ => {
                            return Err(syntax(format!("found '{l2}', expected: ',' or ')'")));
                        }
                    }
                }
                Tok::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    match self.peek(Ctx::Values).0 {
                        Tok::ClosePar => {
                            values.push(String::new());
                            return Ok(values);
                        }
                        Tok::Comma => values.push(String::new()),
                        _ => {}
                    }
                }
                _ => {
                    return Err(syntax(format!(
                        "found '{lit}', expected: ',', or identifier"
                    )));
                }
            }
        }
    }

    /// The single value after `=`, `==`, `!=`, `>` or `<`; nothing means `""`.
    fn exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        let (tok, _) = self.peek(Ctx::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.next(Ctx::Values);
        if tok == Tok::Ident {
            Ok(vec![lit.to_owned()])
        } else {
            Err(syntax(format!("found '{lit}', expected: identifier")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::selector::Selector;
    use crate::rules::selector::tests::req;
    use proptest::prelude::*;

    #[test]
    fn parses_apimachinery_good_strings() {
        let cases: &[(&str, Vec<Requirement>)] = &[
            ("", vec![]),
            ("   \t\r\n", vec![]),
            (
                "x=a,y=b,z=c",
                vec![
                    req("x", Operator::Equals, &["a"]),
                    req("y", Operator::Equals, &["b"]),
                    req("z", Operator::Equals, &["c"]),
                ],
            ),
            (
                "x!=a,y=b",
                vec![
                    req("x", Operator::NotEquals, &["a"]),
                    req("y", Operator::Equals, &["b"]),
                ],
            ),
            ("x=", vec![req("x", Operator::Equals, &[""])]),
            ("x= ", vec![req("x", Operator::Equals, &[""])]),
            (
                "x=,z= ",
                vec![
                    req("x", Operator::Equals, &[""]),
                    req("z", Operator::Equals, &[""]),
                ],
            ),
            ("!x", vec![req("x", Operator::DoesNotExist, &[])]),
            ("x>1", vec![req("x", Operator::GreaterThan, &["1"])]),
            (
                "x>1,z<5",
                vec![
                    req("x", Operator::GreaterThan, &["1"]),
                    req("z", Operator::LessThan, &["5"]),
                ],
            ),
            ("\rx", vec![req("x", Operator::Exists, &[])]),
            (
                "this-is-a-dns.domain.com/key-with-dash",
                vec![req(
                    "this-is-a-dns.domain.com/key-with-dash",
                    Operator::Exists,
                    &[],
                )],
            ),
            (
                "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
                vec![req(
                    "0.1.2.domain/99",
                    Operator::NotIn,
                    &["10.10.100.1", "tick.tack.clock"],
                )],
            ),
            ("foo  in\t (abc)", vec![req("foo", Operator::In, &["abc"])]),
            ("x notin\n (abc)", vec![req("x", Operator::NotIn, &["abc"])]),
            ("x in (abc,)", vec![req("x", Operator::In, &["", "abc"])]),
            ("x notin (, a)", vec![req("x", Operator::NotIn, &["", "a"])]),
            ("x in (a,,b)", vec![req("x", Operator::In, &["", "a", "b"])]),
            (
                "x notin (abc,def),bar,z in (),w",
                vec![
                    req("bar", Operator::Exists, &[]),
                    req("w", Operator::Exists, &[]),
                    req("x", Operator::NotIn, &["abc", "def"]),
                    req("z", Operator::In, &[""]),
                ],
            ),
            ("a ", vec![req("a", Operator::Exists, &[])]),
            (
                "a in (x,y,notin, z,in)",
                vec![req("a", Operator::In, &["in", "notin", "x", "y", "z"])],
            ),
            ("notin=in", vec![req("notin", Operator::Equals, &["in"])]),
            ("in in (in)", vec![req("in", Operator::In, &["in"])]),
            ("x==a", vec![req("x", Operator::DoubleEquals, &["a"])]),
        ];
        for (input, want) in cases {
            let got = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(&got.requirements, want, "{input:?}");
        }
    }

    #[test]
    fn rejects_apimachinery_bad_strings() {
        for input in [
            "x=a||y=b",
            "x==a==b",
            "!x=a",
            "x<a",
            "x,y in",
            ",x,y",
            "x nott in (y)",
            "a in (xyz),",
            "a in (xyz)b notin ()",
            "a in (xyz abc)",
            "a notin(",
            "a (",
            "(",
            ",",
            "x,,y",
            "x in",
            "x in (a",
            "x in a",
            "x=(",
            "x=a b",
            "=a",
            "!",
            "!!x",
            "x>",
            "x>-1",
            "x>+1",
            "x>1.5",
            "x>99999999999999999999",
            "x <= 1",
            "x=a=b",
        ] {
            assert!(Selector::parse(input).is_err(), "{input:?} should fail");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(s in "[a-z0-9 !=(),<>.\\-/_\"\\\\|\t]{0,40}") {
            if let Ok(sel) = Selector::parse(&s) {
                let again = Selector::parse(&sel.to_string()).unwrap();
                prop_assert_eq!(&again, &sel);
                let _ = sel.to_prom_matchers();
                let _ = sel.to_label_selector_json();
            }
        }

        #[test]
        fn arbitrary_unicode_never_panics(s in any::<String>()) {
            let _ = Selector::parse(&s);
        }
    }
}
