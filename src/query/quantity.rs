//! Kubernetes `resource.Quantity` strings for metric values.
//!
//! prometheus-adapter turns every sample into
//! `resource.NewMilliQuantity(int64(v*1000), format)` and serialises it in
//! canonical form: `DecimalSI` for custom/external metrics and CPU,
//! `BinarySI` for memory. The HPA and `kubectl` read these strings, and users
//! compare them with upstream's, so the canonical rules of apimachinery's
//! `quantity.go` are reproduced here exactly for every value upstream can
//! represent.
//!
//! Beyond upstream's range (|v·1000| ≥ 2^63, about 9.2e15), Go's `int64`
//! conversion produces garbage (`-9223372036854775808m`). We keep counting in
//! `i128` instead, which is an intentional improvement; only values above
//! about 1.7e35 are refused.

use std::fmt::Write as _;

/// 2^63 as a float: the first value Go's `int64(v*1000)` cannot represent.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
/// 2^127 as a float: the first magnitude an `i128` cannot represent.
const TWO_POW_127: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;

/// Why a float could not become a quantity.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityError {
    /// NaN has no quantity; callers decide whether it means 0 (as upstream
    /// does for custom and resource metrics) or an error.
    #[error("the value is NaN, which is not a quantity")]
    NaN,
    /// ±Inf has no quantity and is never serialised.
    #[error("the value is infinite, which is not a quantity")]
    Infinite,
    /// The value times 1000 does not fit in an `i128`.
    #[error("the value is too large to be written as a quantity (more than about 1.7e35)")]
    OutOfRange,
}

/// The canonical `DecimalSI` string of `NewMilliQuantity(v*1000, DecimalSI)`,
/// e.g. `0.5` → `500m`, `16` → `16`, `20.5` → `20500m`, `1.5e6` → `1500k`.
pub fn decimal_si_from_f64(v: f64) -> Result<String, QuantityError> {
    milli_from_f64(v).map(decimal_si_from_milli)
}

/// The canonical `BinarySI` string of `NewMilliQuantity(v*1000, BinarySI)`,
/// e.g. `1048576` → `1Mi`, `3100` → `3100`, `1.5` → `1500m`.
pub fn binary_si_from_f64(v: f64) -> Result<String, QuantityError> {
    milli_from_f64(v).map(binary_si_from_milli)
}

/// The number of thousandths that upstream stores for `v`.
///
/// Within Go's range this is exactly `int64(v*1000)`: the product is rounded
/// as a float first and then truncated toward zero, so `1.005` gives `1004`
/// just as in Go. Beyond it, `v` is necessarily a whole number (it exceeds
/// 2^53), and the result is that number times 1000, computed exactly; this
/// keeps powers of two intact for memory (`3·2^60` → `3Ei`).
pub fn milli_from_f64(v: f64) -> Result<i128, QuantityError> {
    if v.is_nan() {
        return Err(QuantityError::NaN);
    }
    if v.is_infinite() {
        return Err(QuantityError::Infinite);
    }
    let product = v * 1000.0;
    if (-TWO_POW_63..TWO_POW_63).contains(&product) {
        // In range, `as` truncates toward zero exactly like Go's conversion.
        return Ok(i128::from(product as i64));
    }
    if v.abs() >= TWO_POW_127 {
        return Err(QuantityError::OutOfRange);
    }
    (v.trunc() as i128)
        .checked_mul(1000)
        .ok_or(QuantityError::OutOfRange)
}

/// Canonical `DecimalSI` form of `milli` thousandths, following
/// apimachinery's `int64Amount.AsCanonicalBytes`:
///
/// 1. Zero is `0`, whatever the format (`decQuantity(0, 0, DecimalSI)` → `"0"`).
/// 2. Move every factor of ten from the number into the exponent, then
///    lower the exponent to a multiple of three, so no precision is lost and
///    the suffix is as large as possible (`1000M` → `1G`, `108e-2` → `1080m`,
///    `1.5` → `1500m`).
/// 3. The exponent picks the suffix `m`, none, `k`, `M`, `G`, `T`, `P`, `E`
///    (`300e6` → `300M`, `1e12` → `1T`, `3e3` → `3k`, `1e18` → `1E`).
/// 4. Exponents above 18 cannot come from upstream's `int64`; for them we
///    follow current apimachinery, which writes exponent notation instead of
///    dropping the magnitude (`1e21` → `1e21`, `5e21` → `5e21`,
///    `1000E` → `1e21`).
pub fn decimal_si_from_milli(milli: i128) -> String {
    if milli == 0 {
        return "0".to_owned();
    }
    let sign = if milli < 0 { "-" } else { "" };
    let (mantissa, exponent) = decimal_canonical(milli.unsigned_abs());
    let exponent_text;
    let suffix = match exponent {
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        e => {
            exponent_text = format!("e{e}");
            &exponent_text
        }
    };
    // One allocation, sized for any i128: each item of a list answer has a value.
    let mut out = String::with_capacity(48);
    let _ = write!(out, "{sign}{mantissa}{suffix}");
    out
}

/// Splits a non-zero number of thousandths into a mantissa and a power-of-ten
/// exponent that is a multiple of three and as large as possible.
fn decimal_canonical(magnitude: u128) -> (u128, i32) {
    let mut mantissa = magnitude;
    let mut exponent: i32 = -3;
    while mantissa != 0 && mantissa.is_multiple_of(10) {
        mantissa /= 10;
        exponent += 1;
    }
    while exponent.rem_euclid(3) != 0 {
        // The factors multiplied back were removed above, so this never
        // exceeds the input; the fallback only guards against that proof
        // being wrong.
        match mantissa.checked_mul(10) {
            Some(m) => {
                mantissa = m;
                exponent -= 1;
            }
            None => return (magnitude, -3),
        }
    }
    (mantissa, exponent)
}

/// Canonical `BinarySI` form of `milli` thousandths, following
/// apimachinery's `Quantity.CanonicalizeBytes`:
///
/// 1. Zero is `0` (`decQuantity(0, 0, BinarySI)` → `"0"`).
/// 2. Values strictly between -1024 and 1024 fall back to `DecimalSI`
///    "to avoid rounding" (`decQuantity(5, 0, BinarySI)` → `"5"`,
///    `decQuantity(500, -3, BinarySI)` → `"500m"`, so `1000` → `1k`).
/// 3. Values with a fractional part fall back to `DecimalSI` so no precision
///    is lost (`decQuantity(1234567, -3, BinarySI)` → `"1234567m"`).
/// 4. Otherwise remove every factor of 1024 and pick `Ki`…`Ei`; a number
///    with no such factor is printed plainly (`1Gi`, `1.5Gi` → `1536Mi`,
///    `decQuantity(1025, 0, BinarySI)` → `"1025"`, `2000` → `"2000"`,
///    `1536` → `"1536"`, `3100` → `"3100"`).
/// 5. Multiples of 1024^7 and beyond have no binary suffix and cannot come
///    from upstream's `int64`; like current apimachinery we then print the
///    exact decimal form (`2^70` → `1180591620717411303424`).
pub fn binary_si_from_milli(milli: i128) -> String {
    if milli == 0 {
        return "0".to_owned();
    }
    let magnitude = milli.unsigned_abs();
    if magnitude < 1_024_000 || !magnitude.is_multiple_of(1000) {
        return decimal_si_from_milli(milli);
    }
    let mut mantissa = magnitude / 1000;
    let mut power = 0usize;
    while mantissa >= 1024 && mantissa.is_multiple_of(1024) {
        mantissa /= 1024;
        power += 1;
    }
    let suffix = match power {
        0 => "",
        1 => "Ki",
        2 => "Mi",
        3 => "Gi",
        4 => "Ti",
        5 => "Pi",
        6 => "Ei",
        _ => return decimal_si_from_milli(milli),
    };
    let sign = if milli < 0 { "-" } else { "" };
    format!("{sign}{mantissa}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimal_examples() {
        let cases: &[(f64, &str)] = &[
            (0.5, "500m"),
            (16.0, "16"),
            (20.5, "20500m"),
            (1.5e6, "1500k"),
            (2e6, "2M"),
            (1000.0, "1k"),
            (0.0, "0"),
            (-0.0, "0"),
            (-0.25, "-250m"),
            (0.0001, "0"),
            (-0.0001, "0"),
            (0.001, "1m"),
            (0.08, "80m"),
            (1.08, "1080m"),
            (1.1, "1100m"),
            (1e9, "1G"),
            (3e8, "300M"),
            (1e12, "1T"),
            (3000.0, "3k"),
            (1_234_567e6, "1234567M"),
            (1e15, "1P"),
            (1e18 / 1000.0, "1P"),
            (9.2e15, "9200T"),
            (-9.2e15, "-9200T"),
            (123.456, "123456m"),
            (-1.0, "-1"),
            (-1500.0, "-1500"),
            (-2e6, "-2M"),
            // Float artefacts are Go's too: 1.005*1000 == 1004.999…, truncated.
            (1.005, "1004m"),
            (0.3, "300m"),
            (1e-3 * 0.5, "0"),
        ];
        for (v, want) in cases {
            assert_eq!(decimal_si_from_f64(*v).as_deref(), Ok(*want), "{v}");
        }
    }

    #[test]
    fn decimal_beyond_int64() {
        // Go would print -9223372036854775808m for all of these.
        assert_eq!(decimal_si_from_f64(1e16).as_deref(), Ok("10P"));
        assert_eq!(decimal_si_from_f64(1e18).as_deref(), Ok("1E"));
        assert_eq!(decimal_si_from_f64(1.5e21).as_deref(), Ok("1500E"));
        assert_eq!(decimal_si_from_f64(1e21).as_deref(), Ok("1e21"));
        assert_eq!(decimal_si_from_f64(5e21).as_deref(), Ok("5e21"));
        assert_eq!(decimal_si_from_f64(-1e21).as_deref(), Ok("-1e21"));
        assert_eq!(decimal_si_from_milli(10i128.pow(27)), "1e24");
        assert_eq!(decimal_si_from_milli(10i128.pow(24)), "1e21");
        assert_eq!(decimal_si_from_milli(10i128.pow(25)), "10e21");
        assert_eq!(
            decimal_si_from_milli(i128::MAX),
            "170141183460469231731687303715884105727m"
        );
        assert_eq!(
            decimal_si_from_milli(i128::MIN),
            "-170141183460469231731687303715884105728m"
        );
        assert_eq!(
            decimal_si_from_f64(1e35).as_deref(),
            Ok("99999999999999996863366107917975552")
        );
        assert_eq!(decimal_si_from_f64(1e36), Err(QuantityError::OutOfRange));
        assert_eq!(
            decimal_si_from_f64(f64::MAX),
            Err(QuantityError::OutOfRange)
        );
        assert_eq!(
            decimal_si_from_f64(-f64::MAX),
            Err(QuantityError::OutOfRange)
        );
    }

    #[test]
    fn non_finite() {
        assert_eq!(decimal_si_from_f64(f64::NAN), Err(QuantityError::NaN));
        assert_eq!(binary_si_from_f64(f64::NAN), Err(QuantityError::NaN));
        assert_eq!(
            decimal_si_from_f64(f64::INFINITY),
            Err(QuantityError::Infinite)
        );
        assert_eq!(
            decimal_si_from_f64(f64::NEG_INFINITY),
            Err(QuantityError::Infinite)
        );
        assert_eq!(
            binary_si_from_f64(f64::INFINITY),
            Err(QuantityError::Infinite)
        );
    }

    #[test]
    fn binary_examples() {
        const KI: f64 = 1024.0;
        let cases: &[(f64, &str)] = &[
            (3100.0, "3100"),
            (1_048_576.0, "1Mi"),
            (1536.0, "1536"),
            (1.5, "1500m"),
            (0.5, "500m"),
            (5.0, "5"),
            (1000.0, "1k"),
            (1023.0, "1023"),
            (1023.5, "1023500m"),
            (1024.0, "1Ki"),
            (1024.5, "1024500m"),
            (-1024.0, "-1Ki"),
            (-1023.0, "-1023"),
            (2048.0, "2Ki"),
            (6.0 * KI, "6Ki"),
            (1_536_000.0, "1500Ki"),
            (1025.0, "1025"),
            (2000.0, "2000"),
            (-2000.0, "-2000"),
            (1e6, "1000000"),
            (KI * KI * KI, "1Gi"),
            (1.5 * KI * KI * KI, "1536Mi"),
            (300.0 * KI * KI, "300Mi"),
            (1001.0 * KI * KI * KI, "1001Gi"),
            (KI * KI * KI * KI, "1Ti"),
            (0.0, "0"),
            (0.0001, "0"),
            (1_234_567.0 / 1000.0, "1234567m"),
            (2_147_483_648.5, "2147483648500m"),
        ];
        for (v, want) in cases {
            assert_eq!(binary_si_from_f64(*v).as_deref(), Ok(*want), "{v}");
        }
    }

    #[test]
    fn binary_beyond_int64() {
        let two = |p: i32| 2f64.powi(p);
        assert_eq!(binary_si_from_f64(4.0 * two(50)).as_deref(), Ok("4Pi"));
        assert_eq!(binary_si_from_f64(3.0 * two(60)).as_deref(), Ok("3Ei"));
        assert_eq!(
            binary_si_from_f64(1023.0 * two(60)).as_deref(),
            Ok("1023Ei")
        );
        assert_eq!(
            binary_si_from_f64(two(70)).as_deref(),
            Ok("1180591620717411303424")
        );
        assert_eq!(
            binary_si_from_f64(-two(70)).as_deref(),
            Ok("-1180591620717411303424")
        );
        assert_eq!(binary_si_from_milli(10i128.pow(24)), "953674316406250Mi");
        assert_eq!(
            binary_si_from_milli(3 * (1i128 << 70) * 1000),
            "3541774862152233910272"
        );
    }

    /// Test-only decimal reader of the strings produced above, to prove that
    /// the canonical form never changes the value.
    fn parse_back(s: &str) -> i128 {
        let (neg, body) = match s.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, s),
        };
        let split = body
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(body.len());
        let (digits, suffix) = body.split_at(split);
        let n: i128 = digits.parse().unwrap();
        let scaled = match suffix {
            "m" => n,
            "" => n * 1000,
            "k" => n * 1_000_000,
            "M" => n * 10i128.pow(9),
            "G" => n * 10i128.pow(12),
            "T" => n * 10i128.pow(15),
            "P" => n * 10i128.pow(18),
            "E" => n * 10i128.pow(21),
            "Ki" => n * 1024 * 1000,
            "Mi" => n * 1024i128.pow(2) * 1000,
            "Gi" => n * 1024i128.pow(3) * 1000,
            "Ti" => n * 1024i128.pow(4) * 1000,
            "Pi" => n * 1024i128.pow(5) * 1000,
            "Ei" => n * 1024i128.pow(6) * 1000,
            e => n * 10i128.pow(e.strip_prefix('e').unwrap().parse::<u32>().unwrap() + 3),
        };
        if neg { -scaled } else { scaled }
    }

    proptest! {
        #[test]
        fn decimal_preserves_value(m in any::<i64>()) {
            let s = decimal_si_from_milli(i128::from(m));
            prop_assert_eq!(parse_back(&s), i128::from(m));
        }

        #[test]
        fn binary_preserves_value(m in any::<i64>()) {
            let s = binary_si_from_milli(i128::from(m));
            prop_assert_eq!(parse_back(&s), i128::from(m));
        }

        #[test]
        fn binary_preserves_whole_values(v in any::<i32>(), shift in 0u32..40) {
            let m = i128::from(v) * (1i128 << shift) * 1000;
            prop_assert_eq!(parse_back(&binary_si_from_milli(m)), m);
        }

        #[test]
        fn large_values_preserved(m in any::<i128>()) {
            prop_assert_eq!(parse_back(&decimal_si_from_milli(m / 10)), m / 10);
            prop_assert_eq!(parse_back(&binary_si_from_milli(m / 10)), m / 10);
        }

        #[test]
        fn floats_never_panic(v in any::<f64>()) {
            let _ = decimal_si_from_f64(v);
            let _ = binary_si_from_f64(v);
        }

        #[test]
        fn in_range_floats_match_go_truncation(v in -9.2e15f64..9.2e15) {
            let m = milli_from_f64(v).unwrap();
            prop_assert_eq!(m, i128::from((v * 1000.0).trunc() as i64));
        }
    }
}
