//! The JSON that Django's session serializer writes: Python's
//! `json.dumps(obj, separators=(",", ":"))` with its defaults, notably
//! `ensure_ascii=True`.
//!
//! Byte-identity matters because the JSON is what gets compressed and signed:
//! a different but equivalent text still decodes in Django, yet no longer
//! matches Django's own `session_data` for the same session.
//!
//! Two ways in: [`django_json_from_str`] reads JSON text and keeps its key
//! order and number literals whatever serde_json's features are, which is
//! what a library needs; [`django_json`] writes a `serde_json::Map`, which
//! holds the order and the digits only with serde_json's `preserve_order`
//! and `arbitrary_precision` (the `exact-json` feature).

use indexmap::IndexMap;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `object` exactly as Django's `JSONSerializer` does (Python's
/// `json.dumps(object, separators=(",", ":"))`).
///
/// - No whitespace; keys in the map's order, which is insertion order, as
///   in Python, only with `serde_json/preserve_order` (feature
///   `exact-json`); without it the map sorts its keys.
/// - `ensure_ascii`: `"` `\` and `\n` `\r` `\t` `\b` `\f` get their short
///   escapes; every other character outside `0x20..=0x7e` (controls, DEL
///   `0x7f`, all non-ASCII) becomes `\uXXXX` in lowercase hex, characters
///   above U+FFFF as a UTF-16 surrogate pair. `/` is not escaped.
/// - Integers are written digit for digit as the map holds them (with
///   `arbitrary_precision`, feature `exact-json`, `9007199254740993` stays
///   exact); `-0` becomes `0`, as a Python int.
/// - Other numbers are floats in Python: they are written as Python's
///   `repr(float)` (`1.5`, `1e+16`, `1e-05`, `1000000000000000.0`), which
///   can differ from the literal held by `serde_json` (`1e16`, `1.50`).
///   One known difference remains: a literal too large for a double, such
///   as `1e400`, is `Infinity` in Python, which is not JSON; it is written
///   as `serde_json` holds it (`1e+400`), which Django reads back as the
///   same infinity.
///
/// To write JSON text without going through a map, see
/// [`django_json_from_str`].
///
/// ```
/// let object = serde_json::json!({"name": "Zoë 🎉", "n": [1, 1.5, null]});
/// let serde_json::Value::Object(map) = object else { unreachable!() };
/// assert_eq!(
///     sessiond_signing::django_json(&map),
///     r#"{"name":"Zo\u00eb \ud83c\udf89","n":[1,1.5,null]}"#
/// );
/// ```
pub fn django_json(object: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(64);
    write_object(&mut out, object);
    out
}

/// What Django writes for a value it read from `json`: Python's
/// `json.dumps(json.loads(json), separators=(",", ":"))`, with the rules of
/// [`django_json`]. An error if `json` is not JSON, or holds a lone UTF-16
/// surrogate escape (`"\ud800"`), which a Rust string cannot hold.
///
/// Unlike [`django_json`], this needs none of serde_json's global features:
/// keys keep the order of the text, integers their digits (`2**70` stays
/// `1180591620717411303424`), and a float literal becomes Python's `repr`
/// of it (`1e16` becomes `1e+16`), as when Django reads and writes it back.
/// A key given twice keeps its first place and its last value, as in a
/// Python dict. Text Django wrote comes back unchanged.
///
/// ```
/// assert_eq!(
///     sessiond_signing::django_json_from_str(r#"{ "z": 1180591620717411303424, "a": [1e16, "Zoë"] }"#)?,
///     r#"{"z":1180591620717411303424,"a":[1e+16,"Zo\u00eb"]}"#
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn django_json_from_str(json: &str) -> Result<String, serde_json::Error> {
    // Parsed whole first for serde_json's nesting limit (128 levels):
    // splitting into raw members skips nested text without one, and
    // `write_raw` recurses once per level, so text nested without bound
    // would overflow the stack.
    serde_json::from_str::<Value>(json)?;
    let value: &RawValue = serde_json::from_str(json)?;
    let mut out = String::with_capacity(json.len());
    write_raw(&mut out, value)?;
    Ok(out)
}

/// Writes one value of the text. Objects and arrays are split into their
/// members' raw text and each member written in turn, which reads nested
/// text once per level: a session is a few levels deep at most, and the
/// caller has checked the depth against serde_json's nesting limit.
fn write_raw(out: &mut String, value: &RawValue) -> Result<(), serde_json::Error> {
    let text = value.get();
    match text.as_bytes().first() {
        Some(b'{') => {
            // `IndexMap` keeps a repeated key where it first came, with its
            // last value, as a Python dict does.
            let members: IndexMap<String, &RawValue> = serde_json::from_str(text)?;
            out.push('{');
            for (i, (key, value)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, &key);
                out.push(':');
                write_raw(out, value)?;
            }
            out.push('}');
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            out.push('[');
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_raw(out, item)?;
            }
            out.push(']');
        }
        Some(b'"') => write_string(out, &serde_json::from_str::<String>(text)?),
        Some(b'-' | b'0'..=b'9') => write_number(out, text),
        // `true`, `false` and `null`, which the parse above has checked.
        _ => out.push_str(text),
    }
    Ok(())
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        // With `arbitrary_precision` this is the literal as parsed; without
        // it, the i64/u64/f64 the number holds.
        Value::Number(n) => write_number(out, &n.to_string()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(object) => write_object(out, object),
    }
}

fn write_object(out: &mut String, object: &Map<String, Value>) {
    out.push('{');
    for (i, (key, value)) in object.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
}

/// Python's `py_encode_basestring_ascii`.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for &unit in c.encode_utf16(&mut units).iter() {
                    out.push_str("\\u");
                    for shift in [12, 8, 4, 0] {
                        out.push(char::from(HEX[usize::from((unit >> shift) & 0xf)]));
                    }
                }
            }
        }
    }
    out.push('"');
}

/// Writes the JSON number `literal` as Python writes the int or float it
/// reads it as.
fn write_number(out: &mut String, literal: &str) {
    // Python's JSON grammar makes a number a float exactly when it has a
    // fraction or an exponent.
    if !literal.contains(['.', 'e', 'E']) {
        if literal.bytes().all(|b| b == b'-' || b == b'0') {
            out.push('0');
        } else {
            out.push_str(literal);
        }
        return;
    }
    match literal.parse::<f64>() {
        Ok(f) if f.is_finite() => write_python_float(out, f),
        _ => write_overflowing_literal(out, literal),
    }
}

/// A float literal too large for a double, with its exponent written as
/// serde_json's `arbitrary_precision` writes it (`1E400` as `1e+400`), so
/// that text and map give the same bytes.
fn write_overflowing_literal(out: &mut String, literal: &str) {
    match literal.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => {
            out.push_str(mantissa);
            out.push('e');
            if !exponent.starts_with(['+', '-']) {
                out.push('+');
            }
            out.push_str(exponent);
        }
        None => out.push_str(literal),
    }
}

/// Python's `float.__repr__` (CPython `format_float_short`, mode `'r'`): the
/// shortest digits that round-trip, in positional notation when the decimal
/// point falls within `-4 < decpt <= 16`, otherwise as `d.ddde±XX`.
fn write_python_float(out: &mut String, f: f64) {
    // Rust's `{:e}` prints the same shortest round-trip digits as Python's
    // repr, e.g. `-1.2345e-5`, `1e16`, `0e0`.
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let mut digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    break_tie_to_even(f, exponent, &mut digits);
    if negative {
        out.push('-');
    }
    // `decpt` as in CPython: the value is 0.DIGITS × 10^decpt.
    let decpt = exponent + 1;
    if f == 0.0 {
        out.push_str("0.0");
    } else if decpt <= -4 || decpt > 16 {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if exponent < 0 { '-' } else { '+' });
        let magnitude = exponent.unsigned_abs();
        if magnitude < 10 {
            out.push('0');
        }
        out.push_str(&magnitude.to_string());
    } else if decpt <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', decpt.unsigned_abs() as usize));
        out.push_str(&digits);
    } else {
        let point = decpt.unsigned_abs() as usize;
        if point >= digits.len() {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', point - digits.len()));
            out.push_str(".0");
        } else {
            let (whole, fraction) = digits.split_at(point);
            out.push_str(whole);
            out.push('.');
            out.push_str(fraction);
        }
    }
}

/// Rust and Python agree on the shortest round-trip digits except when the
/// float lies exactly halfway between two candidates of that length (e.g.
/// 568025686039701.25): Rust rounds the last digit up, Python's dtoa to
/// even (`…701.2`). Detects that case from the exact decimal expansion and
/// switches to the even neighbour when it also round-trips.
fn break_tie_to_even(f: f64, exponent: i32, digits: &mut String) {
    let Some(&last) = digits.as_bytes().last() else {
        return;
    };
    // ASCII digits have the parity of their value (b'0' is 48).
    if last.is_multiple_of(2) {
        return;
    }
    // An f64's exact decimal expansion has at most 767 significant digits.
    let exact = format!("{:.800e}", f.abs());
    let Some((exact_mantissa, exact_exponent)) = exact.split_once('e') else {
        return;
    };
    if exact_exponent.parse::<i32>().ok() != Some(exponent) {
        return;
    }
    let exact_digits: Vec<u8> = exact_mantissa.bytes().filter(|b| *b != b'.').collect();
    let n = digits.len();
    let is_tie = exact_digits.get(n) == Some(&b'5')
        && exact_digits
            .get(n + 1..)
            .is_some_and(|rest| rest.iter().all(|b| *b == b'0'));
    if !is_tie {
        return;
    }
    // The two candidates are the truncation T and T + 1 in the last place;
    // the odd one was chosen, so the even one is the other: one step down
    // if the chosen one is T + 1, one step up if it is T.
    let truncated_last = exact_digits.get(n - 1).copied().unwrap_or(last);
    let even = if truncated_last == last {
        last + 1
    } else {
        last - 1
    };
    if !even.is_ascii_digit() {
        return;
    }
    let mut candidate = digits.clone();
    candidate.pop();
    candidate.push(char::from(even));
    let text = format!("0.{candidate}e{}", exponent + 1);
    if text.parse::<f64>().ok() == Some(f.abs()) {
        *digits = candidate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dump(value: Value) -> String {
        let mut map = Map::new();
        map.insert("v".to_owned(), value);
        let text = django_json(&map);
        text["{\"v\":".len()..text.len() - 1].to_owned()
    }

    /// The number `literal` written from a map and from text, which must
    /// agree.
    fn float_literal(literal: &str) -> String {
        let from_map = dump(serde_json::from_str(literal).unwrap());
        let from_text = django_json_from_str(literal).unwrap();
        assert_eq!(from_map, from_text, "{literal}");
        from_text
    }

    #[test]
    fn escapes_like_python_ensure_ascii() {
        // Expected strings are what CPython 3.11 json.dumps prints.
        assert_eq!(
            dump(json!("\u{7f}\u{0}\u{1f}\u{2028}/\u{8}\u{c}")),
            r#""\u007f\u0000\u001f\u2028/\b\f""#
        );
        assert_eq!(dump(json!("q\"uote\\\n\r\t")), r#""q\"uote\\\n\r\t""#);
        assert_eq!(dump(json!(" ~")), r#"" ~""#);
        assert_eq!(
            dump(json!("\u{80}\u{ff}\u{fffd}")),
            r#""\u0080\u00ff\ufffd""#
        );
        assert_eq!(
            dump(json!("\u{10000}\u{10ffff}")),
            r#""\ud800\udc00\udbff\udfff""#
        );
        assert_eq!(dump(json!("\u{1F389}")), r#""\ud83c\udf89""#);
    }

    #[test]
    fn text_and_map_give_the_same_bytes() {
        let object = json!({
            "name": "Zo\u{eb} \u{1F389}",
            "escapes": "\u{7f}\u{0}\u{1f}\u{2028}/\u{8}\u{c}q\"uote\\\n\r\t",
            "é\"": {"z": [1, 1.5, -0.0, 1e16, null, true, false], "a": {}},
            "big": 123456789012345678901234567890_u128,
        });
        let Value::Object(map) = object else {
            unreachable!()
        };
        let text = serde_json::to_string(&map).unwrap();
        assert_eq!(django_json_from_str(&text).unwrap(), django_json(&map));
    }

    #[test]
    fn text_keeps_its_key_order_and_digits() {
        assert_eq!(
            django_json_from_str(
                r#" { "z" : 1180591620717411303424 , "a" : [ 1e16 , 1.50, -0, "\u00E9\/" ] , "m" : { } } "#
            )
            .unwrap(),
            r#"{"z":1180591620717411303424,"a":[1e+16,1.5,0,"\u00e9/"],"m":{}}"#
        );
    }

    #[test]
    fn text_keeps_a_repeated_key_first_with_its_last_value() {
        // Python: json.dumps(json.loads('{"a":1,"b":2,"a":3}'))
        assert_eq!(
            django_json_from_str(r#"{"a":1,"b":2,"a":3}"#).unwrap(),
            r#"{"a":3,"b":2}"#
        );
    }

    #[test]
    fn text_django_wrote_comes_back_unchanged() {
        let django = r#"{"z":1,"big":1180591620717411303424,"f":1e+16,"name":"Zo\u00eb","nested":{"y":[1.5,2,1e-05],"x":null},"a":true}"#;
        assert_eq!(django_json_from_str(django).unwrap(), django);
    }

    #[test]
    fn text_that_is_not_json_or_has_a_lone_surrogate_is_an_error() {
        for text in [
            "",
            "{",
            r#"{"a":1}x"#,
            "NaN",
            r#"{"a":"\ud800"}"#,
            r#"{"\udc00":1}"#,
        ] {
            assert!(django_json_from_str(text).is_err(), "{text}");
        }
    }

    #[test]
    fn nesting_is_bounded_by_serde_jsons_limit() {
        let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(django_json_from_str(&nested(100)).unwrap(), nested(100));
        // Without the check, a million levels overflow the stack and abort.
        let err = django_json_from_str(&nested(1_000_000)).unwrap_err();
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }

    #[test]
    fn escapes_keys_too() {
        let mut map = Map::new();
        map.insert("é\"".to_owned(), json!({}));
        map.insert("b".to_owned(), json!([]));
        assert_eq!(django_json(&map), r#"{"\u00e9\"":{},"b":[]}"#);
    }

    #[test]
    fn keeps_insertion_order() {
        let map: Map<String, Value> = serde_json::from_str(r#"{"z":1,"a":2,"m":3}"#).unwrap();
        assert_eq!(django_json(&map), r#"{"z":1,"a":2,"m":3}"#);
    }

    #[test]
    fn writes_integers_exactly() {
        assert_eq!(float_literal("9007199254740993"), "9007199254740993");
        assert_eq!(
            float_literal("-123456789012345678901234567890"),
            "-123456789012345678901234567890"
        );
        assert_eq!(float_literal("-0"), "0");
        assert_eq!(float_literal("0"), "0");
        assert_eq!(dump(json!(u64::MAX)), u64::MAX.to_string());
        assert_eq!(dump(json!(i64::MIN)), i64::MIN.to_string());
    }

    #[test]
    fn writes_floats_as_python_repr() {
        // (JSON literal, CPython 3.11 `json.dumps(json.loads(literal))`)
        let cases = [
            ("1.5", "1.5"),
            ("-0.25", "-0.25"),
            ("1.50", "1.5"),
            ("1.0", "1.0"),
            ("1e0", "1.0"),
            ("1E2", "100.0"),
            ("-0.0", "-0.0"),
            ("0.0", "0.0"),
            ("0e5", "0.0"),
            ("1e16", "1e+16"),
            ("1e15", "1000000000000000.0"),
            ("1.5e16", "1.5e+16"),
            ("123456789012345678.0", "1.2345678901234568e+17"),
            ("1e-5", "1e-05"),
            ("1e-4", "0.0001"),
            ("0.00012345", "0.00012345"),
            ("0.1", "0.1"),
            ("0.30000000000000004", "0.30000000000000004"),
            ("1.5e300", "1.5e+300"),
            ("5e-324", "5e-324"),
            ("9223372036854775808.0", "9.223372036854776e+18"),
            ("1e22", "1e+22"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("-1e-7", "-1e-07"),
            ("123.456", "123.456"),
            ("1234567890123456.7", "1234567890123456.8"),
            ("1e-400", "0.0"),
            // Exactly halfway between two shortest candidates: to even.
            ("568025686039701.25", "568025686039701.2"),
            ("-176757534807349.125", "-176757534807349.12"),
            ("590413917271.40625", "590413917271.4062"),
            ("0.5", "0.5"),
            ("2.5", "2.5"),
        ];
        for (literal, python) in cases {
            assert_eq!(float_literal(literal), python, "{literal}");
        }
    }

    #[test]
    fn floats_made_in_rust_are_written_as_python_would() {
        assert_eq!(dump(json!(1e16)), "1e+16");
        assert_eq!(dump(json!(2.5)), "2.5");
        assert_eq!(dump(json!(100.0)), "100.0");
    }

    #[test]
    fn keeps_literals_that_overflow_a_double() {
        // Python would write `Infinity` (not JSON); see `django_json`.
        // serde_json's `arbitrary_precision` normalizes the exponent marker.
        assert_eq!(float_literal("1e400"), "1e+400");
        assert_eq!(float_literal("-1E400"), "-1e+400");
    }
}
