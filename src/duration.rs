//! Go and Prometheus duration strings.
//!
//! prometheus-adapter's flags (`--metrics-relist-interval=1m`) go through
//! Go's `time.ParseDuration`, while config fields such as
//! `resourceRules.window` go through Prometheus' `model.ParseDuration`. The
//! two grammars differ (`1.5h` and `-1s` only in Go; `1d`, `1w`, `1y` only in
//! Prometheus), so each gets its own parser. Durations shown to clients are
//! printed the way Go's `Duration.String()` prints them (`5m` → `5m0s`).

use std::fmt::Write as _;
use std::time::Duration;

const NANOS_PER_MICRO: u64 = 1_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
const NANOS_PER_SECOND: u64 = 1_000_000_000;
const NANOS_PER_MINUTE: u64 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: u64 = 60 * NANOS_PER_MINUTE;
const NANOS_PER_DAY: u64 = 24 * NANOS_PER_HOUR;
/// 2^63: the magnitude of `i64::MIN`, which Go's parser allows while summing.
const TWO_POW_63: u64 = 1 << 63;

/// Why a duration string was rejected. Messages follow Go's and Prometheus'
/// wording so that users recognise them.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// An empty string where Prometheus' grammar needs a duration.
    #[error("empty duration string")]
    Empty,
    /// The text does not follow the grammar.
    #[error("invalid duration {}", time_quote(.input))]
    Invalid {
        /// The whole input.
        input: String,
    },
    /// A number without a unit, such as `1` or `1h30`.
    #[error("missing unit in duration {}", time_quote(.input))]
    MissingUnit {
        /// The whole input.
        input: String,
    },
    /// A unit the grammar does not know, such as `d` for Go.
    #[error("unknown unit {} in duration {}", time_quote(.unit), time_quote(.input))]
    UnknownUnit {
        /// The unrecognised unit text.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// The value does not fit in a signed 64-bit count of nanoseconds.
    #[error("duration {} is out of range (about ±292 years at most)", time_quote(.input))]
    OutOfRange {
        /// The whole input.
        input: String,
    },
    /// A negative duration where only non-negative ones make sense.
    #[error("duration {} must not be negative", time_quote(.input))]
    Negative {
        /// The whole input.
        input: String,
    },
}

/// Quotes like Go's `time` package does in its errors: printable ASCII as is
/// (with `"` and `\` escaped), every other byte as `\xNN`.
fn time_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c.is_ascii() && !c.is_ascii_control() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
    out
}

/// Parses `s` exactly as Go's `time.ParseDuration`, returning nanoseconds.
///
/// Grammar: an optional sign, then one or more `<decimal><unit>` pairs where
/// the decimal may have a fraction (`1.5`, `.5`, `1.`) and the unit is one of
/// `ns`, `us`, `µs` (U+00B5), `μs` (U+03BC), `ms`, `s`, `m`, `h`. A lone `0`
/// (optionally signed) needs no unit. Fractions are converted with the same
/// float arithmetic Go uses, so results agree to the nanosecond.
///
/// One deliberate difference: Go's running sum can wrap to a small value for
/// inputs such as `9223372036854775808ns9223372036854775808ns` and then
/// succeed; here every overflow is an error.
pub fn parse_go_duration(s: &str) -> Result<i64, DurationError> {
    let invalid = || DurationError::Invalid {
        input: s.to_owned(),
    };
    let out_of_range = || DurationError::OutOfRange {
        input: s.to_owned(),
    };
    let mut rest = s.as_bytes();
    let mut neg = false;
    if let Some((&c, after_sign)) = rest.split_first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        rest = after_sign;
    }
    if rest == b"0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while let Some(&first) = rest.first() {
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        let before = rest.len();
        let (mut v, after_int) = leading_int(rest).ok_or_else(invalid)?;
        rest = after_int;
        let had_int = before != rest.len();

        let mut frac: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut had_frac = false;
        if let Some((b'.', after_dot)) = rest.split_first() {
            rest = after_dot;
            let before = rest.len();
            let (f, sc, after_frac) = leading_fraction(rest);
            frac = f;
            scale = sc;
            rest = after_frac;
            had_frac = before != rest.len();
        }
        if !had_int && !had_frac {
            return Err(invalid());
        }

        let unit_len = rest
            .iter()
            .position(|&c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit {
                input: s.to_owned(),
            });
        }
        let (unit_text, after_unit) = rest.split_at(unit_len);
        rest = after_unit;
        let unit = match unit_text {
            b"ns" => 1,
            // "µs" (U+00B5) and "μs" (U+03BC) in UTF-8.
            b"us" | [0xc2, 0xb5, b's'] | [0xce, 0xbc, b's'] => NANOS_PER_MICRO,
            b"ms" => NANOS_PER_MILLI,
            b"s" => NANOS_PER_SECOND,
            b"m" => NANOS_PER_MINUTE,
            b"h" => NANOS_PER_HOUR,
            _ => {
                return Err(DurationError::UnknownUnit {
                    unit: String::from_utf8_lossy(unit_text).into_owned(),
                    input: s.to_owned(),
                });
            }
        };
        if v > TWO_POW_63 / unit {
            return Err(out_of_range());
        }
        v *= unit;
        if frac > 0 {
            // Same operation order and rounding as Go: float64(f) * (float64(unit) / scale).
            let extra = (frac as f64 * (unit as f64 / scale)) as u64;
            v = v.checked_add(extra).ok_or_else(out_of_range)?;
            if v > TWO_POW_63 {
                return Err(out_of_range());
            }
        }
        total = total.checked_add(v).ok_or_else(out_of_range)?;
        if total > TWO_POW_63 {
            return Err(out_of_range());
        }
    }
    if neg {
        // total ≤ 2^63, so this is exact, including i64::MIN.
        return Ok(0i64.wrapping_sub_unsigned(total));
    }
    i64::try_from(total).map_err(|_| out_of_range())
}

/// Go's `leadingInt`: consumes digits; `None` when the value exceeds 2^63.
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let mut x: u64 = 0;
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        if x > TWO_POW_63 / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > TWO_POW_63 {
            return None;
        }
        i += 1;
    }
    Some((x, s.get(i..).unwrap_or_default()))
}

/// Go's `leadingFraction`: consumes digits, keeping as many as fit and
/// ignoring the rest, and returns the value with its power-of-ten scale.
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let mut x: u64 = 0;
    let mut scale: f64 = 1.0;
    let mut overflow = false;
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        i += 1;
        if overflow {
            continue;
        }
        if x > (TWO_POW_63 - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > TWO_POW_63 {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, s.get(i..).unwrap_or_default())
}

/// Formats nanoseconds exactly as Go's `time.Duration.String()`: `0s`,
/// `1ns`, `1.5µs`, `500ms`, `1.5s`, `5m0s`, `1h0m0s`, `2h45m30.5s`, with a
/// leading `-` for negative values (including `i64::MIN`).
pub fn format_go_duration(nanos: i64) -> String {
    let mut out = String::new();
    if nanos < 0 {
        out.push('-');
    }
    let u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".to_owned();
    }
    if u < NANOS_PER_SECOND {
        // Below a second Go switches to the largest unit that keeps an
        // integer part: ns, µs (U+00B5) or ms.
        let (digits, unit) = if u < NANOS_PER_MICRO {
            (0, "ns")
        } else if u < NANOS_PER_MILLI {
            (3, "\u{b5}s")
        } else {
            (6, "ms")
        };
        push_with_fraction(&mut out, u, digits);
        out.push_str(unit);
        return out;
    }
    let seconds = u / NANOS_PER_SECOND;
    let hours = seconds / 3600;
    let minutes = (seconds / 60) % 60;
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if seconds >= 60 {
        let _ = write!(out, "{minutes}m");
    }
    push_with_fraction(
        &mut out,
        (seconds % 60) * NANOS_PER_SECOND + u % NANOS_PER_SECOND,
        9,
    );
    out.push('s');
    out
}

/// Writes `v / 10^digits` with the fraction's trailing zeros (and a bare
/// decimal point) left out, as Go's `fmtFrac` + `fmtInt` do.
fn push_with_fraction(out: &mut String, v: u64, digits: u32) {
    let pow = 10u64.pow(digits);
    let _ = write!(out, "{}", v / pow);
    let mut frac = v % pow;
    if frac == 0 {
        return;
    }
    let mut width = digits as usize;
    while frac.is_multiple_of(10) {
        frac /= 10;
        width -= 1;
    }
    let _ = write!(out, ".{frac:0width$}");
}

/// Parses Prometheus' duration grammar (`model.ParseDuration`): integer
/// amounts with the units `y` (365d), `w`, `d`, `h`, `m`, `s`, `ms`, each at
/// most once and in that order, e.g. `1d`, `1h30m`, `90s`. `0` needs no unit;
/// there are no fractions and no sign. Results above `i64::MAX` nanoseconds
/// are out of range, as in Prometheus.
pub fn parse_prometheus_duration(s: &str) -> Result<Duration, DurationError> {
    match s {
        "0" => return Ok(Duration::ZERO),
        "" => return Err(DurationError::Empty),
        _ => {}
    }
    let invalid = || DurationError::Invalid {
        input: s.to_owned(),
    };
    let out_of_range = || DurationError::OutOfRange {
        input: s.to_owned(),
    };
    let mut rest = s;
    let mut total: u64 = 0;
    let mut last_position = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let (number, after) = rest.split_at(digits);
        let value: u64 = number.parse().map_err(|_| invalid())?;
        let unit_len = after.bytes().take_while(|b| !b.is_ascii_digit()).count();
        if unit_len == 0 {
            return Err(DurationError::MissingUnit {
                input: s.to_owned(),
            });
        }
        let (unit, after_unit) = after.split_at(unit_len);
        rest = after_unit;
        let (position, multiplier) = match unit {
            "y" => (1, 365 * NANOS_PER_DAY),
            "w" => (2, 7 * NANOS_PER_DAY),
            "d" => (3, NANOS_PER_DAY),
            "h" => (4, NANOS_PER_HOUR),
            "m" => (5, NANOS_PER_MINUTE),
            "s" => (6, NANOS_PER_SECOND),
            "ms" => (7, NANOS_PER_MILLI),
            _ => {
                return Err(DurationError::UnknownUnit {
                    unit: unit.to_owned(),
                    input: s.to_owned(),
                });
            }
        };
        // Units must go from biggest to smallest, each at most once, so that
        // "1m1d" cannot be misread.
        if position <= last_position {
            return Err(invalid());
        }
        last_position = position;
        if value > TWO_POW_63 / multiplier {
            return Err(out_of_range());
        }
        total = total
            .checked_add(value * multiplier)
            .ok_or_else(out_of_range)?;
        if total > TWO_POW_63 - 1 {
            return Err(out_of_range());
        }
    }
    Ok(Duration::from_nanos(total))
}

/// Parses a Go duration for settings that cannot be negative (such as the
/// relist interval). Zero is accepted; callers that need a strictly positive
/// value check for it themselves.
pub fn parse_go_duration_positive(s: &str) -> Result<Duration, DurationError> {
    let nanos = parse_go_duration(s)?;
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| DurationError::Negative {
            input: s.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NS: i64 = 1;
    const US: i64 = 1_000;
    const MS: i64 = 1_000_000;
    const S: i64 = 1_000_000_000;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;

    #[test]
    fn go_parse_duration_table() {
        // Go's parseDurationTests (src/time/time_test.go).
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("5s", 5 * S),
            ("30s", 30 * S),
            ("1478s", 1478 * S),
            ("-5s", -5 * S),
            ("+5s", 5 * S),
            ("-0", 0),
            ("+0", 0),
            ("5.0s", 5 * S),
            ("5.6s", 5 * S + 600 * MS),
            ("5.s", 5 * S),
            (".5s", 500 * MS),
            ("1.0s", S),
            ("1.00s", S),
            ("1.004s", S + 4 * MS),
            ("1.0040s", S + 4 * MS),
            ("100.00100s", 100 * S + MS),
            ("10ns", 10 * NS),
            ("11us", 11 * US),
            ("12\u{b5}s", 12 * US),
            ("12\u{3bc}s", 12 * US),
            ("13ms", 13 * MS),
            ("14s", 14 * S),
            ("15m", 15 * M),
            ("16h", 16 * H),
            ("3h30m", 3 * H + 30 * M),
            ("10.5s4m", 4 * M + 10 * S + 500 * MS),
            ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
            (
                "1h2m3s4ms5us6ns",
                H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS,
            ),
            ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
            ("52763797000ns", 52_763_797_000 * NS),
            ("0.3333333333333333333h", 20 * M),
            ("9007199254740993ns", (1 << 53) + 1),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-9223372036s854ms775us808ns", i64::MIN),
            ("-2562047h47m16.854775808s", i64::MIN),
            ("0.100000000000000000000h", 6 * M),
            (
                "0.830103483285477580700h",
                49 * M + 48 * S + 372_539_827 * NS,
            ),
            // From the brief.
            ("1.5h", 90 * M),
            ("2h45m30.5s", 2 * H + 45 * M + 30 * S + 500 * MS),
            ("1.s", S),
            ("500ms", 500 * MS),
            ("-1s", -S),
        ];
        for (input, want) in cases {
            assert_eq!(parse_go_duration(input), Ok(*want), "{input:?}");
        }
    }

    #[test]
    fn go_parse_duration_errors() {
        // Go's parseDurationErrorTests, plus the brief's cases.
        for input in [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "\u{85}\u{85}",
            "\u{fffd}",
            "\u{fffd} hello \u{fffd} world",
            "9223372036854775810ns",
            "9223372036854775808ns",
            "-9223372036854775809ns",
            "9223372036854776us",
            "3000000h",
            "9223372036854775.808us",
            "9223372036854ms775us808ns",
            "1",
            "+-5s",
            "1h-5m",
            "1h 5m",
            " 1h",
            "1h ",
            "1H",
            "1e3s",
            "0x10s",
            "--1s",
            "00",
            "1.2.3s",
            "1..2s",
            "9223372036854775808ns9223372036854775808ns",
        ] {
            assert!(parse_go_duration(input).is_err(), "{input:?} should fail");
        }
        assert!(
            matches!(parse_go_duration("1d"), Err(DurationError::UnknownUnit { ref unit, .. }) if unit == "d")
        );
        assert!(
            matches!(parse_go_duration("1h-5m"), Err(DurationError::UnknownUnit { ref unit, .. }) if unit == "h-")
        );
        assert!(matches!(
            parse_go_duration("1"),
            Err(DurationError::MissingUnit { .. })
        ));
        assert!(matches!(
            parse_go_duration("3000000h"),
            Err(DurationError::OutOfRange { .. })
        ));
        assert_eq!(
            parse_go_duration("1d").unwrap_err().to_string(),
            r#"unknown unit "d" in duration "1d""#
        );
        assert_eq!(
            parse_go_duration("\u{fffd}").unwrap_err().to_string(),
            r#"invalid duration "\xef\xbf\xbd""#
        );
    }

    #[test]
    fn go_duration_string_table() {
        // Go's durationTests plus the brief's examples.
        let cases: &[(&str, i64)] = &[
            ("0s", 0),
            ("1ns", NS),
            ("1.1\u{b5}s", 1100 * NS),
            ("2.2ms", 2200 * US),
            ("3.3s", 3300 * MS),
            ("4m5s", 4 * M + 5 * S),
            ("4m5.001s", 4 * M + 5001 * MS),
            ("5h6m7.001s", 5 * H + 6 * M + 7001 * MS),
            ("8m0.000000001s", 8 * M + NS),
            ("2562047h47m16.854775807s", i64::MAX),
            ("-2562047h47m16.854775808s", i64::MIN),
            ("1.5\u{b5}s", 1500 * NS),
            ("500ms", 500 * MS),
            ("1.5s", 1500 * MS),
            ("5m0s", 5 * M),
            ("1h0m0s", H),
            ("2h45m30.5s", 2 * H + 45 * M + 30 * S + 500 * MS),
            ("-1.5s", -1500 * MS),
            ("-1ns", -NS),
            ("-999.999999ms", -(S - 1)),
            ("1m0s", M),
            ("1h1m0s", H + M),
            ("1h0m1s", H + S),
            ("999ns", 999),
            ("1\u{b5}s", US),
        ];
        for (want, nanos) in cases {
            assert_eq!(format_go_duration(*nanos), *want, "{nanos}");
        }
    }

    #[test]
    fn prometheus_durations() {
        const D: u64 = 24 * 3600;
        let ok: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("5m", Duration::from_secs(300)),
            ("1d", Duration::from_secs(D)),
            ("1w", Duration::from_secs(7 * D)),
            ("1y", Duration::from_secs(365 * D)),
            ("1h30m", Duration::from_secs(5400)),
            (
                "1y2w3d4h5m6s7ms",
                Duration::from_millis(((((365 + 14 + 3) * 24 + 4) * 60 + 5) * 60 + 6) * 1000 + 7),
            ),
            (
                "2y3d5h24m1s",
                Duration::from_secs(((2 * 365 + 3) * 24 + 5) * 3600 + 24 * 60 + 1),
            ),
            (
                "31y259d1h46m40s",
                Duration::from_secs(((31 * 365 + 259) * 24 + 1) * 3600 + 46 * 60 + 40),
            ),
            ("100ms", Duration::from_millis(100)),
            ("0h0m", Duration::ZERO),
            (
                "106751d23h47m16s854ms",
                Duration::from_millis(9_223_372_036_854),
            ),
        ];
        for (input, want) in ok {
            assert_eq!(parse_prometheus_duration(input), Ok(*want), "{input:?}");
        }
        assert_eq!(parse_prometheus_duration(""), Err(DurationError::Empty));
        for input in [
            "1",
            "-1s",
            "+1s",
            "1.5h",
            "1m1d",
            "1h1h",
            "1s1m",
            "1ms1s",
            "1h 30m",
            " 1h",
            "1ns",
            "1us",
            "1x",
            "d",
            "1d1",
            "s1",
            "99999999999999999999s",
            "300y",
            "293y",
            "106752d",
            "0x1s",
            "1e3s",
        ] {
            assert!(
                parse_prometheus_duration(input).is_err(),
                "{input:?} should fail"
            );
        }
        assert!(matches!(
            parse_prometheus_duration("293y"),
            Err(DurationError::OutOfRange { .. })
        ));
        assert_eq!(
            parse_prometheus_duration("292y"),
            Ok(Duration::from_secs(292 * 365 * D))
        );
        assert!(matches!(
            parse_prometheus_duration("1x"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_prometheus_duration("1m1d"),
            Err(DurationError::Invalid { .. })
        ));
        // The window is reported in Go's format.
        let window = parse_prometheus_duration("5m").unwrap();
        assert_eq!(
            format_go_duration(i64::try_from(window.as_nanos()).unwrap()),
            "5m0s"
        );
    }

    #[test]
    fn positive_helper() {
        assert_eq!(
            parse_go_duration_positive("1m"),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(parse_go_duration_positive("0"), Ok(Duration::ZERO));
        assert_eq!(
            parse_go_duration_positive("1.5s"),
            Ok(Duration::from_millis(1500))
        );
        assert!(matches!(
            parse_go_duration_positive("-1s"),
            Err(DurationError::Negative { .. })
        ));
        assert!(matches!(
            parse_go_duration_positive("1d"),
            Err(DurationError::UnknownUnit { .. })
        ));
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(n in any::<i64>()) {
            prop_assert_eq!(parse_go_duration(&format_go_duration(n)), Ok(n));
        }

        #[test]
        fn millisecond_values_round_trip(ms in any::<i32>()) {
            let n = i64::from(ms) * MS;
            prop_assert_eq!(parse_go_duration(&format_go_duration(n)), Ok(n));
        }

        #[test]
        fn never_panics(s in "[-+0-9.a-z\u{b5}\u{3bc} ]{0,30}") {
            let _ = parse_go_duration(&s);
            let _ = parse_prometheus_duration(&s);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>()) {
            let _ = parse_go_duration(&s);
            let _ = parse_prometheus_duration(&s);
        }

        #[test]
        fn compound_integers_sum(h in 0u32..1000, m in 0u32..1000, sec in 0u32..1000) {
            let text = format!("{h}h{m}m{sec}s");
            let want = i64::from(h) * H + i64::from(m) * M + i64::from(sec) * S;
            prop_assert_eq!(parse_go_duration(&text), Ok(want));
            prop_assert_eq!(parse_go_duration(&format!("-{text}")), Ok(-want));
        }

        #[test]
        fn prometheus_agrees_with_go_on_shared_grammar(h in 0u32..10_000, m in 0u32..10_000, ms in 0u32..10_000) {
            let text = format!("{h}h{m}m{ms}ms");
            let go = parse_go_duration(&text).unwrap();
            let prom = parse_prometheus_duration(&text).unwrap();
            prop_assert_eq!(u128::try_from(go).unwrap(), prom.as_nanos());
        }
    }
}
