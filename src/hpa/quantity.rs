//! Reading Kubernetes quantities (`100`, `1.5k`, `250m`, `1Gi`, `2e3`) as the HPA does: as
//! whole thousandths, rounded up (`Quantity.MilliValue()`), because every target and metric
//! value the controller compares is such an integer.

/// Parses a quantity into thousandths, rounding up as `MilliValue()` does (`0.0001` → 1).
///
/// Decimal arithmetic is exact (no float): `0.1` is 100, not 100.00000000000001 rounded up
/// to 101. Values beyond `i64` thousandths are errors.
pub fn parse_milli(text: &str) -> Result<i64, String> {
    let s = text.trim();
    let bad = |why: &str| format!("{text:?} is not a quantity: {why}");
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        Some(_) => (false, s),
        None => return Err(bad("empty")),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(bad("no digits"));
    }
    if frac_part.contains('.') {
        return Err(bad("more than one decimal point"));
    }
    // (power of ten, power of two) the suffix multiplies by.
    let (mut exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other => match other.strip_prefix(['e', 'E']) {
            Some(exp) if !exp.is_empty() => (
                exp.parse::<i32>()
                    .map_err(|_| bad("the exponent is not a whole number"))?,
                0,
            ),
            _ => {
                return Err(bad(
                    "unknown suffix (use n, u, m, k, M, G, T, P, E, Ki…Ei or eN)",
                ));
            }
        },
    };
    let digits = format!("{int_part}{frac_part}");
    let too_big = || bad("too large");
    let mut mantissa: i128 = 0;
    for d in digits.bytes() {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(d - b'0')))
            .ok_or_else(too_big)?;
    }
    exp10 -= frac_part.len() as i32;
    // value × 1000 = mantissa × 2^exp2 × 10^(exp10 + 3)
    exp10 += 3;
    let mut numerator = mantissa
        .checked_mul(1i128.checked_shl(exp2).ok_or_else(too_big)?)
        .ok_or_else(too_big)?;
    let mut denominator: i128 = 1;
    if exp10 >= 0 {
        let scale = 10i128.checked_pow(exp10 as u32).ok_or_else(too_big)?;
        numerator = numerator.checked_mul(scale).ok_or_else(too_big)?;
    } else {
        // Beyond 10^38 the value is below any thousandth: it rounds up to 1 (or down to 0).
        denominator = 10i128
            .checked_pow(exp10.unsigned_abs())
            .unwrap_or(i128::MAX);
    }
    let (quotient, remainder) = (numerator / denominator, numerator % denominator);
    let milli = match (negative, remainder != 0) {
        (false, true) => quotient + 1,
        (false, false) => quotient,
        (true, _) => -quotient,
    };
    i64::try_from(milli).map_err(|_| too_big())
}

#[cfg(test)]
mod tests {
    use super::parse_milli;

    #[test]
    fn quantities_read_as_rounded_up_thousandths() {
        for (q, milli) in [
            ("100", 100_000),
            ("0.1", 100),
            ("250m", 250),
            ("1.5k", 1_500_000),
            ("1Ki", 1_024_000),
            ("1Mi", 1_048_576_000),
            ("2e3", 2_000_000),
            ("1E-3", 1),
            ("0.0001", 1),
            ("1n", 1),
            ("0", 0),
            ("+5", 5000),
            ("-1.5", -1500),
            ("-0.0001", 0),
            (".5", 500),
        ] {
            assert_eq!(parse_milli(q), Ok(milli), "{q}");
        }
        for bad in [
            "",
            "abc",
            "1x",
            "1.2.3",
            "1e",
            "--1",
            "99999999999999999999E",
            ".",
        ] {
            assert!(parse_milli(bad).is_err(), "{bad}");
        }
    }
}
