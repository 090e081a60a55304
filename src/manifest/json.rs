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
    /// As [`Style::ManifestLine`] with `,` and `:` separators: the compact
    /// form serde_json prints, for showing values (`sheaf browse`).
    Compact,
}

/// Encodes `value` the way Python's `json.dumps` does in the given style.
pub fn encode(value: &Value, style: Style) -> String {
    let mut out = String::new();
    write_value(&mut out, value, style);
    out
}

/// Appends `value` encoded in `style` to `out`.
pub fn encode_into(out: &mut String, value: &Value, style: Style) {
    write_value(out, value, style);
}

/// Appends the JSON string of `s` encoded in `style` to `out`.
pub fn encode_str_into(out: &mut String, s: &str, style: Style) {
    write_string(out, s, style);
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
        Style::Canonical | Style::Compact => ",",
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
    write_fields(out, fields, style, write_value);
}

/// `{"key": value, ...}` of `fields` in their order, each value written by `write`.
fn write_fields<V: ?Sized>(
    out: &mut String,
    fields: Vec<(&String, &V)>,
    style: Style,
    write: fn(&mut String, &V, Style),
) {
    out.push('{');
    for (i, (key, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push_str(item_separator(style));
        }
        write_string(out, key, style);
        out.push_str(match style {
            Style::Canonical | Style::Compact => ":",
            Style::ManifestLine => ": ",
        });
        write(out, value, style);
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
    // Most strings (keys, hashes, paths) need no escape: copied in one piece
    // up to the first byte that may. That byte is ASCII or, in canonical
    // style, the lead byte of a character, so the split is on a character.
    let plain = s
        .bytes()
        .position(|b| match b {
            b'"' | b'\\' => true,
            0x20..=0x7e => false,
            0x80.. => style == Style::Canonical,
            _ => true,
        })
        .unwrap_or(s.len());
    out.push_str(&s[..plain]);
    for c in s[plain..].chars() {
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

/// A JSON value with its numbers kept as written: what the top hash is
/// computed from when a line holds numbers serde_json cannot keep exactly
/// (integers beyond the 64-bit ranges, `-0`), which Python keeps exact.
#[derive(Debug, Clone, PartialEq)]
pub enum Exact {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number token as written.
    Number(String),
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Exact>),
    /// An object, members in file order.
    Object(Vec<(String, Exact)>),
}

impl Exact {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Exact> {
        match self {
            Exact::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Whether the JSON document `text` has a number serde_json would not keep
/// exactly: an integer outside the `i64` and `u64` ranges, or `-0`. (Floats
/// are exact: parsed to the nearest double, as Python does.)
pub fn has_inexact_numbers(text: &str) -> bool {
    let bytes = text.as_bytes();
    // Every integer of fewer than 19 digits fits in an i64: a text without a
    // run of 19 digits and without `-0` needs no closer look.
    let mut run = 0u32;
    let long_run = bytes.iter().any(|b| {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        run >= 19
    });
    if !long_run && !bytes.windows(2).any(|w| w == b"-0") {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len() && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    i += 1;
                }
                let token = &text[start..i];
                let integer = !token.contains(['.', 'e', 'E']);
                if integer && (token == "-0" || (token.parse::<i64>().is_err() && token.parse::<u64>().is_err())) {
                    return true;
                }
            }
            _ => i += 1,
        }
    }
    false
}

/// Parses one JSON document keeping every number token as written. Meant
/// for text serde_json already accepted (so it is valid JSON within
/// serde_json's nesting limit); errors say where it stopped.
pub fn parse_exact(text: &str) -> Result<Exact, String> {
    let mut p = ExactParser { text, pos: 0 };
    let v = p.value()?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(format!("trailing characters at byte {}", p.pos));
    }
    Ok(v)
}

struct ExactParser<'a> {
    text: &'a str,
    pos: usize,
}

impl ExactParser<'_> {
    fn skip_ws(&mut self) {
        while self.text.as_bytes().get(self.pos).is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, literal: &str) -> bool {
        let found = self.text[self.pos..].starts_with(literal);
        if found {
            self.pos += literal.len();
        }
        found
    }

    fn value(&mut self) -> Result<Exact, String> {
        self.skip_ws();
        let bytes = self.text.as_bytes();
        match bytes.get(self.pos) {
            Some(b'{') => {
                self.pos += 1;
                let mut members = Vec::new();
                self.skip_ws();
                if self.eat("}") {
                    return Ok(Exact::Object(members));
                }
                loop {
                    self.skip_ws();
                    let key = self.string()?;
                    self.skip_ws();
                    if !self.eat(":") {
                        return Err(format!("expected ':' at byte {}", self.pos));
                    }
                    members.push((key, self.value()?));
                    self.skip_ws();
                    if self.eat("}") {
                        return Ok(Exact::Object(members));
                    }
                    if !self.eat(",") {
                        return Err(format!("expected ',' or '}}' at byte {}", self.pos));
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.eat("]") {
                    return Ok(Exact::Array(items));
                }
                loop {
                    items.push(self.value()?);
                    self.skip_ws();
                    if self.eat("]") {
                        return Ok(Exact::Array(items));
                    }
                    if !self.eat(",") {
                        return Err(format!("expected ',' or ']' at byte {}", self.pos));
                    }
                }
            }
            Some(b'"') => Ok(Exact::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                while bytes.get(self.pos).is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
                    self.pos += 1;
                }
                Ok(Exact::Number(self.text[start..self.pos].to_owned()))
            }
            _ if self.eat("null") => Ok(Exact::Null),
            _ if self.eat("true") => Ok(Exact::Bool(true)),
            _ if self.eat("false") => Ok(Exact::Bool(false)),
            _ => Err(format!("unexpected input at byte {}", self.pos)),
        }
    }

    /// A string token, unescaped by serde_json.
    fn string(&mut self) -> Result<String, String> {
        let bytes = self.text.as_bytes();
        if bytes.get(self.pos) != Some(&b'"') {
            return Err(format!("expected a string at byte {}", self.pos));
        }
        let start = self.pos;
        self.pos += 1;
        while let Some(&b) = bytes.get(self.pos) {
            match b {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    return serde_json::from_str(&self.text[start..self.pos]).map_err(|e| e.to_string());
                }
                _ => self.pos += 1,
            }
        }
        Err("unterminated string".into())
    }
}

/// Parses JSON as Python's `json.loads` reads it, into a serde_json value:
/// `-0` is the integer 0; an integer beyond the 64-bit ranges, which a
/// serde_json value cannot hold exactly, is an error naming it (rather
/// than a rounded float).
pub fn parse_like_python(text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if !has_inexact_numbers(text) {
        return Ok(value);
    }
    fn convert(x: &Exact) -> Result<Value, String> {
        Ok(match x {
            Exact::Null => Value::Null,
            Exact::Bool(b) => Value::Bool(*b),
            Exact::Number(t) if t.contains(['.', 'e', 'E']) => serde_json::from_str(t).map_err(|e| e.to_string())?,
            Exact::Number(t) if t.trim_start_matches('-').bytes().all(|b| b == b'0') => Value::from(0),
            Exact::Number(t) => match (t.parse::<i64>(), t.parse::<u64>()) {
                (Ok(i), _) => Value::from(i),
                (_, Ok(u)) => Value::from(u),
                _ => {
                    let shown: String = t.chars().take(40).collect();
                    let more = if t.len() > 40 { "..." } else { "" };
                    return Err(format!(
                        "the integer {shown}{more} is beyond 64 bits, which Sheaf cannot store exactly \
                         (write it as a string)"
                    ));
                }
            },
            Exact::String(s) => Value::String(s.clone()),
            Exact::Array(items) => Value::Array(items.iter().map(convert).collect::<Result<_, _>>()?),
            Exact::Object(members) => {
                let mut map = Map::new();
                for (k, v) in members {
                    map.insert(k.clone(), convert(v)?);
                }
                Value::Object(map)
            }
        })
    }
    convert(&parse_exact(text)?)
}

/// Encodes `value` in the canonical (hashed) style, as Python's
/// `json.dumps(json.loads(text), sort_keys=True, separators=(',', ':'))`
/// would: integers of any size as written (`-0` as `0`), floats as
/// Python's `repr` of the nearest double.
pub fn encode_exact_canonical(value: &Exact) -> String {
    let mut out = String::new();
    write_exact(&mut out, value, Style::Canonical);
    out
}

/// Encodes `value` compactly ([`Style::Compact`]), every integer as
/// written: how `sheaf browse` shows metadata holding integers beyond 64
/// bits, which a serde_json value would round.
pub fn encode_exact_compact(value: &Exact) -> String {
    let mut out = String::new();
    write_exact(&mut out, value, Style::Compact);
    out
}

/// Encodes `value` as quilt3 writes a manifest line it loaded: members in
/// their order (a repeated key keeps its first place and its last value, as
/// Python's dict does), numbers as written but for `-0`, which Python reads
/// as the integer 0, and floats, printed by `repr`.
pub fn encode_exact_line(value: &Exact) -> String {
    let mut out = String::new();
    write_exact(&mut out, value, Style::ManifestLine);
    out
}

fn write_exact(out: &mut String, value: &Exact, style: Style) {
    match value {
        Exact::Null => out.push_str("null"),
        Exact::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Exact::Number(token) if token.contains(['.', 'e', 'E']) => {
            out.push_str(&python_float_repr(token.parse::<f64>().unwrap_or(f64::NAN)));
        }
        Exact::Number(token) => {
            let digits = token.strip_prefix('-').unwrap_or(token);
            if token.starts_with('-') && digits.bytes().any(|b| b != b'0') {
                out.push('-');
            }
            out.push_str(digits);
        }
        Exact::String(s) => write_string(out, s, style),
        Exact::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_separator(style));
                }
                write_exact(out, item, style);
            }
            out.push(']');
        }
        Exact::Object(members) => {
            // Python's dict keeps the last of repeated keys, in the first one's place.
            let mut fields: Vec<(&String, &Exact)> = Vec::with_capacity(members.len());
            let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
            for (key, v) in members {
                match at.get(key.as_str()) {
                    Some(&i) => fields[i].1 = v,
                    None => {
                        at.insert(key, fields.len());
                        fields.push((key, v));
                    }
                }
            }
            if style == Style::Canonical {
                fields.sort_by(|a, b| a.0.cmp(b.0));
            }
            write_fields(out, fields, style, write_exact);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_exact_keeps_every_integer_and_the_member_order() {
        let text = r#"{"z": 1180591620717411303424, "a": [-0, 1.5, "é\n"], "m": {"k": -1208925819614629174706176}}"#;
        let exact = parse_exact(text).unwrap();
        assert_eq!(
            encode_exact_compact(&exact),
            r#"{"z":1180591620717411303424,"a":[0,1.5,"é\n"],"m":{"k":-1208925819614629174706176}}"#
        );
    }

    #[test]
    #[allow(clippy::approx_constant)] // the digits of pi are the point: repr must print them all
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
    fn strings_escape_after_a_plain_prefix() {
        let v = json!(["dir/é.txt", "ab\"c\\d", "x😀y\u{7f}", "plain/key.parquet", "tab\tend"]);
        assert_eq!(
            encode(&v, Style::Canonical),
            r#"["dir/\u00e9.txt","ab\"c\\d","x\ud83d\ude00y\u007f","plain/key.parquet","tab\tend"]"#
        );
        assert_eq!(
            encode(&v, Style::ManifestLine),
            "[\"dir/é.txt\", \"ab\\\"c\\\\d\", \"x😀y\u{7f}\", \"plain/key.parquet\", \"tab\\tend\"]"
        );
    }

    #[test]
    fn integers_up_to_64_bits_and_minus_zero_in_strings_are_exact() {
        for text in [
            r#"{"n": 9223372036854775807, "m": -9223372036854775808}"#,
            r#"{"n": 18446744073709551615, "k": "a-0", "f": -0.0}"#,
            r#"{"s": "123456789012345678901234567890"}"#,
        ] {
            assert!(!has_inexact_numbers(text), "{text}");
        }
        assert!(has_inexact_numbers(r#"{"n": [1, -0]}"#));
        assert!(has_inexact_numbers(r#"{"n": 12345678901234567890123}"#));
    }

    #[test]
    fn manifest_line_keeps_order_and_utf8() {
        let v = json!({"b": 1, "a": ["é", "\u{7f}", "\u{1}"], "f": 1e16});
        assert_eq!(
            encode(&v, Style::ManifestLine),
            "{\"b\": 1, \"a\": [\"é\", \"\u{7f}\", \"\\u0001\"], \"f\": 1e+16}"
        );
    }

    #[test]
    fn exact_numbers_hash_like_python() {
        for (text, inexact, canonical) in [
            (r#"{"n": 18446744073709551616}"#, true, r#"{"n":18446744073709551616}"#),
            (r#"{"n": -9223372036854775809}"#, true, r#"{"n":-9223372036854775809}"#),
            (
                r#"{"z": -0, "f": -0.0, "s": "-0 9999999999999999999999"}"#,
                true,
                r#"{"f":-0.0,"s":"-0 9999999999999999999999","z":0}"#,
            ),
            (
                r#"{"n": 18446744073709551615, "m": -9223372036854775808, "e": 1E2}"#,
                false,
                r#"{"e":100.0,"m":-9223372036854775808,"n":18446744073709551615}"#,
            ),
            (
                r#"{"b": [1, {"y": null, "x": true}], "a": "\u00e9\n"}"#,
                false,
                r#"{"a":"\u00e9\n","b":[1,{"x":true,"y":null}]}"#,
            ),
        ] {
            assert_eq!(has_inexact_numbers(text), inexact, "{text}");
            let exact = parse_exact(text).unwrap();
            assert_eq!(encode_exact_canonical(&exact), canonical, "{text}");
            if !inexact {
                let v: Value = serde_json::from_str(text).unwrap();
                assert_eq!(encode(&v, Style::Canonical), canonical, "{text}");
            }
        }
    }
}
