//! JSON encoding that matches Python's `json.dumps` byte for byte.
//!
//! quilt3 computes a package's top hash over `json.dumps(..., sort_keys=True,
//! separators=(',', ':'))` (ASCII-escaped) and writes manifest lines with
//! `json.dumps(..., ensure_ascii=False)`. serde_json prints floats and escapes
//! strings differently, so both encodings are written out here.

use serde_json::{Map, Number, Value};
use std::fmt::Write;

/// How to lay out the encoded JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// The form hashed into a top hash: keys sorted recursively, `,` and `:`
    /// separators, everything outside printable ASCII escaped as `\uXXXX`.
    Canonical,
    /// The form of a manifest line as quilt3 writes it: keys in their order,
    /// `, ` and `: ` separators, non-ASCII characters written as UTF-8.
    ManifestLine,
}

/// Encodes `value` the way Python's `json.dumps` does in the given style.
pub fn encode(value: &Value, style: Style) -> String {
    let mut out = String::new();
    write_value(&mut out, value, style);
    out
}

fn write_value(out: &mut String, value: &Value, style: Style) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s, style),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_separator(style));
                }
                write_value(out, item, style);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map, style),
    }
}

fn item_separator(style: Style) -> &'static str {
    match style {
        Style::Canonical => ",",
        Style::ManifestLine => ", ",
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>, style: Style) {
    let mut fields: Vec<(&String, &Value)> = map.iter().collect();
    if style == Style::Canonical {
        // Python sorts str keys by code point; Rust's str order (UTF-8 bytes)
        // is the same order.
        fields.sort_by(|a, b| a.0.cmp(b.0));
    }
    out.push('{');
    for (i, (key, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push_str(item_separator(style));
        }
        write_string(out, key, style);
        out.push_str(match style {
            Style::Canonical => ":",
            Style::ManifestLine => ": ",
        });
        write_value(out, value, style);
    }
    out.push('}');
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        write!(out, "{i}").unwrap();
    } else if let Some(u) = n.as_u64() {
        write!(out, "{u}").unwrap();
    } else if let Some(f) = n.as_f64() {
        out.push_str(&python_float_repr(f));
    }
}

/// Formats a float exactly as Python's `repr(float)` does: the shortest digits
/// that round-trip, in fixed notation when the decimal exponent is in
/// `-4 < exp <= 16`, otherwise in scientific notation with a signed exponent of at
/// least two digits (`1e+16`, `1e-05`, `1.5`, `100.0`).
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    // Rust's `{:e}` prints the shortest round-tripping digits: "-1.2345e-7".
    let sci = format!("{f:e}");
    let (negative, sci) = match sci.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, sci.as_str()),
    };
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Position of the decimal point relative to the digit string, as in
    // CPython's `format_float_short`: value = 0.DIGITS * 10^decpt.
    let decpt = exp + 1;
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()).unwrap();
    } else if decpt <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-decpt) as usize));
        out.push_str(&digits);
    } else {
        let decpt = decpt as usize;
        if decpt >= digits.len() {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', decpt - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt]);
            out.push('.');
            out.push_str(&digits[decpt..]);
        }
    }
    out
}

fn write_string(out: &mut String, s: &str, style: Style) {
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
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap(),
            // ensure_ascii=True escapes everything outside ' '..='~', DEL included.
            c if style == Style::Canonical && (c as u32) >= 0x7f => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(out, "\\u{unit:04x}").unwrap();
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_match_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.2345e-7, "1.2345e-07"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e100, "1e+100"),
            (-2.5e-300, "-2.5e-300"),
            (3.141592653589793, "3.141592653589793"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ];
        for (f, want) in cases {
            assert_eq!(python_float_repr(f), want, "repr of {f:e}");
        }
    }

    #[test]
    fn canonical_sorts_and_escapes() {
        let v = json!({"b": 1, "a": ["é", "😀", "\u{7f}", "\n\"\\/"], "c": {"z": 1.0, "y": null}});
        assert_eq!(
            encode(&v, Style::Canonical),
            r#"{"a":["\u00e9","\ud83d\ude00","\u007f","\n\"\\/"],"b":1,"c":{"y":null,"z":1.0}}"#
        );
    }

    #[test]
    fn manifest_line_keeps_order_and_utf8() {
        let v = json!({"b": 1, "a": ["é", "\u{7f}", "\u{1}"], "f": 1e16});
        assert_eq!(
            encode(&v, Style::ManifestLine),
            "{\"b\": 1, \"a\": [\"é\", \"\u{7f}\", \"\\u0001\"], \"f\": 1e+16}"
        );
    }
}
