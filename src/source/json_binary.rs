//! MySQL's binary JSON (the `JSON` column type in row images) → the JSON
//! text MySQL itself prints for it (`SELECT doc`, `JSON_EXTRACT(doc, '$')`).
//!
//! mysql_common parses the binary format ([`jsonb::Value`]) but its
//! conversion to `serde_json` refuses *opaque* values — the SQL scalars
//! that JSON documents built from SQL values hold: `DECIMAL`, `DATE`,
//! `TIME`, `DATETIME`/`TIMESTAMP`, and any other type as raw bytes. This
//! module prints them as MySQL's `Json_wrapper::to_string` does:
//!
//! * DECIMAL as a bare number with its scale (`9.00`, not `9`);
//! * DATE as `"YYYY-MM-DD"`, DATETIME/TIMESTAMP as
//!   `"YYYY-MM-DD hh:mm:ss.ffffff"`, TIME as `"hh:mm:ss.ffffff"` (always
//!   six fractional digits);
//! * every other opaque type as `"base64:typeN:…"` (N the column type);
//! * objects with their keys in stored order (MySQL stores them sorted by
//!   length, then bytes) as `{"k": v, …}`, arrays as `[a, b]` — a space after
//!   each `:` and `,`, as MySQL prints them.
//!
//! The DECIMAL and temporal scalars are decoded by the row decoder's own
//! [`super::decode::decimal`] and [`super::decode::temporal`] (digit groups
//! checked, no overflow on any bits), not by mysql_common's value parsers.
//!
//! Printing the server's own text makes a streamed JSON value identical to
//! the same value read by `SELECT` (the initial copy), so both paths write
//! the same bytes to the targets.
//!
//! Nothing here panics on malformed input: errors are returned, and the
//! nesting depth is capped ([`MAX_DEPTH`]; MySQL's own limit is 100), so a
//! corrupt document cannot exhaust the stack.

use std::fmt::Write as _;

use mysql_common::binlog::jsonb::{self, OpaqueValue};
use mysql_common::constants::ColumnType;

use super::decode::bytes::Cursor;
use super::decode::temporal::{self, Packed};
use super::decode::{decimal, values::ValueError};

/// Deeper documents are refused (MySQL refuses beyond 100).
pub const MAX_DEPTH: usize = 200;

/// A binary JSON value that cannot be printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("binary JSON: {0}")]
pub struct JsonBinaryError(String);

/// The JSON text MySQL prints for a binary JSON value.
pub fn to_text(value: &jsonb::Value<'_>) -> Result<String, JsonBinaryError> {
    let mut out = String::new();
    write_value(&mut out, value, 0)?;
    Ok(out)
}

fn write_value(
    out: &mut String,
    v: &jsonb::Value<'_>,
    depth: usize,
) -> Result<(), JsonBinaryError> {
    use jsonb::Value as J;
    if depth > MAX_DEPTH {
        return Err(JsonBinaryError(format!(
            "nested deeper than {MAX_DEPTH} levels"
        )));
    }
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::I16(x) => push(out, x),
        J::U16(x) => push(out, x),
        J::I32(x) => push(out, x),
        J::U32(x) => push(out, x),
        J::I64(x) => push(out, x),
        J::U64(x) => push(out, x),
        J::F64(x) => write_double(out, *x),
        J::String(s) => write_string(out, &utf8(s.str_raw())?),
        J::SmallArray(a) => write_array(out, a.iter(), depth)?,
        J::LargeArray(a) => write_array(out, a.iter(), depth)?,
        J::SmallObject(o) => write_object(out, o.iter(), depth)?,
        J::LargeObject(o) => write_object(out, o.iter(), depth)?,
        J::Opaque(o) => write_opaque(out, o)?,
    }
    Ok(())
}

fn push(out: &mut String, x: impl std::fmt::Display) {
    let _ = write!(out, "{x}");
}

fn utf8(b: &[u8]) -> Result<String, JsonBinaryError> {
    String::from_utf8(b.to_vec()).map_err(|e| JsonBinaryError(format!("string is not UTF-8: {e}")))
}

fn write_array<'a>(
    out: &mut String,
    items: impl Iterator<Item = std::io::Result<jsonb::Value<'a>>>,
    depth: usize,
) -> Result<(), JsonBinaryError> {
    out.push('[');
    for (i, item) in items.enumerate() {
        let item = item.map_err(|e| JsonBinaryError(format!("array element {i}: {e}")))?;
        if i > 0 {
            out.push_str(", ");
        }
        write_value(out, &item, depth + 1)?;
    }
    out.push(']');
    Ok(())
}

fn write_object<'a>(
    out: &mut String,
    entries: impl Iterator<Item = std::io::Result<(jsonb::ObjectKey<'a>, jsonb::Value<'a>)>>,
    depth: usize,
) -> Result<(), JsonBinaryError> {
    out.push('{');
    for (i, entry) in entries.enumerate() {
        let (key, value) = entry.map_err(|e| JsonBinaryError(format!("object member {i}: {e}")))?;
        if i > 0 {
            out.push_str(", ");
        }
        write_string(out, &utf8(key.value_raw())?);
        out.push_str(": ");
        write_value(out, &value, depth + 1)?;
    }
    out.push('}');
    Ok(())
}

/// A double as MySQL prints it: the shortest text that reads back the same
/// value, with a `.0` on integral values (`3.0`) and an exponent for very
/// large or small magnitudes (`1e20`).
fn write_double(out: &mut String, x: f64) {
    if x.is_finite() {
        push(out, format_args!("{x:?}"));
    } else {
        // JSON has no infinities or NaN; MySQL cannot store them either
        out.push_str("null");
    }
}

/// A JSON string with MySQL's escapes: `"`, `\`, the short forms of
/// control characters, `\u00XX` for the others; everything else as is.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The SQL scalars inside a document (see the module docs).
fn write_opaque(out: &mut String, o: &OpaqueValue<'_>) -> Result<(), JsonBinaryError> {
    let data = o.data_raw();
    let packed = || -> Result<i64, JsonBinaryError> {
        data.first_chunk::<8>()
            .map(|b| i64::from_le_bytes(*b))
            .ok_or_else(|| {
                JsonBinaryError(format!(
                    "{:?} value of {} byte(s), expected 8",
                    o.value_type(),
                    data.len()
                ))
            })
    };
    match o.value_type() {
        ColumnType::MYSQL_TYPE_NEWDECIMAL => {
            // precision and scale come first, then the binary DECIMAL
            let (p, s, bin) = match data {
                [p, s, bin @ ..] if s <= p && *p <= 65 => (*p, *s, bin),
                _ => {
                    return Err(JsonBinaryError(
                        "DECIMAL with a bad precision or scale".into(),
                    ))
                }
            };
            let text = decimal::to_text(&mut Cursor::new(bin), p, s).map_err(|e| {
                JsonBinaryError(match e {
                    ValueError::Short => format!("DECIMAL({p},{s}) value is cut short"),
                    ValueError::Bad(m) => m,
                })
            })?;
            out.push_str(&String::from_utf8_lossy(&text));
        }
        ColumnType::MYSQL_TYPE_DATE => {
            write_string(out, &temporal::packed_text(Packed::Date, packed()?));
        }
        ColumnType::MYSQL_TYPE_TIME => {
            write_string(out, &temporal::packed_text(Packed::Time, packed()?));
        }
        ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_TIMESTAMP => {
            write_string(out, &temporal::packed_text(Packed::DateTime, packed()?));
        }
        other => {
            let text = format!("base64:type{}:{}", other as u8, base64(data));
            write_string(out, &text);
        }
    }
    Ok(())
}

/// Standard base64 with padding (RFC 4648), as MySQL prints opaque bytes.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"U"), "VQ==");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"Man"), "TWFu");
    }

    #[test]
    fn strings_escape_like_mysql() {
        let mut s = String::new();
        write_string(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn doubles_keep_a_fraction() {
        let mut s = String::new();
        write_double(&mut s, 3.0);
        s.push(' ');
        write_double(&mut s, 0.1);
        s.push(' ');
        write_double(&mut s, 1e20);
        assert_eq!(s, "3.0 0.1 1e20");
    }

    #[test]
    fn opaque_scalars_print_as_mysql_does() {
        // DECIMAL(4,2) 9.00: precision, scale, then the packed decimal
        let dec = OpaqueValue::new(ColumnType::MYSQL_TYPE_NEWDECIMAL, vec![4, 2, 0x89, 0x00]);
        assert_eq!(to_text(&jsonb::Value::Opaque(dec)).unwrap(), "9.00");
        let other = OpaqueValue::new(ColumnType::MYSQL_TYPE_VARCHAR, b"U".to_vec());
        assert_eq!(
            to_text(&jsonb::Value::Opaque(other)).unwrap(),
            "\"base64:type15:VQ==\""
        );
        let short = OpaqueValue::new(ColumnType::MYSQL_TYPE_DATE, vec![1, 2]);
        assert!(to_text(&jsonb::Value::Opaque(short)).is_err());
    }
}
