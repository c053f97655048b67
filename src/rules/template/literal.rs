//! Number, character and string literals, decoded as Go's `strconv` decodes them
//! (`ParseInt` with base 0, `UnquoteChar`, `Unquote`), so that templates accept and reject
//! exactly the literals Go does.

/// Why a number literal is not an `int`.
pub(super) enum IntErr {
    Syntax,
    Overflow,
    Float,
}

/// Parses a Go integer literal (`strconv.ParseInt(s, 0, 64)` syntax).
pub(super) fn parse_go_int(text: &str) -> Result<i64, IntErr> {
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
pub(super) enum Unit {
    Char(char),
    Byte(u8),
}

impl Unit {
    pub(super) fn value(&self) -> i64 {
        match self {
            Unit::Char(c) => *c as i64,
            Unit::Byte(b) => *b as i64,
        }
    }
}

/// Go's `strconv.UnquoteChar`: decodes one character or escape from `s`.
pub(super) fn unquote_char(s: &str, quote: char) -> Result<(Unit, &str), ()> {
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
pub(super) fn unquote(text: &str) -> Result<String, String> {
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

#[cfg(test)]
mod tests {
    use crate::rules::template::tests::{parse_err, r};

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
}
