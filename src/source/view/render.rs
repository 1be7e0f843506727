//! Decoded column values as `inspect` shows them: SQL-literal-like text
//! for humans, and JSON for `--json` (see the README's "inspect" section
//! for the mapping).

use mysql_common::constants::ColumnType;
use mysql_common::value::Value;
use serde_json::json;

use crate::source::row_image::civil_from_unix;
use crate::source::schema::{Column, BINARY_CHARSET};

/// How a value of a column is shown.
enum Kind {
    Null,
    Number(String),
    Text(String),
    Binary(Vec<u8>),
}

fn kind(v: &Value, col: &Column) -> Kind {
    use ColumnType::*;
    match v {
        Value::NULL => Kind::Null,
        Value::Int(i) => Kind::Number(i.to_string()),
        Value::UInt(u) => Kind::Number(u.to_string()),
        Value::Float(f) => Kind::Number(f.to_string()),
        Value::Double(f) => Kind::Number(f.to_string()),
        Value::Date(y, m, d, hh, mm, ss, us) => {
            let date = format!("{y:04}-{m:02}-{d:02}");
            if matches!(col.ty, MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE) {
                Kind::Text(date)
            } else {
                Kind::Text(format!("{date} {hh:02}:{mm:02}:{ss:02}{}", frac(*us)))
            }
        }
        Value::Time(neg, days, hh, mm, ss, us) => {
            let hours = u64::from(*days) * 24 + u64::from(*hh);
            let sign = if *neg { "-" } else { "" };
            Kind::Text(format!("{sign}{hours:02}:{mm:02}:{ss:02}{}", frac(*us)))
        }
        Value::Bytes(b) => match col.ty {
            MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => {
                Kind::Number(String::from_utf8_lossy(b).into_owned())
            }
            // binary whatever the charset metadata says
            MYSQL_TYPE_VECTOR | MYSQL_TYPE_GEOMETRY | MYSQL_TYPE_BIT => Kind::Binary(b.clone()),
            _ if col.charset == BINARY_CHARSET => Kind::Binary(b.clone()),
            _ => match std::str::from_utf8(b) {
                Ok(s) => Kind::Text(s.to_string()),
                Err(_) => Kind::Binary(b.clone()),
            },
        },
    }
}

fn frac(us: u32) -> String {
    if us == 0 {
        String::new()
    } else {
        format!(".{us:06}")
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// A value as text: `NULL`, a number, a `'quoted'` string (with `\'`,
/// `\\`, `\n`, `\r`, `\t`, `\0` escaped), or `X'hex'` for bytes that are
/// binary or not UTF-8.
pub fn text(v: &Value, col: &Column) -> String {
    match kind(v, col) {
        Kind::Null => "NULL".into(),
        Kind::Number(n) => n,
        Kind::Binary(b) => format!("X'{}'", hex(&b)),
        Kind::Text(s) => {
            let mut out = String::with_capacity(s.len() + 2);
            out.push('\'');
            for c in s.chars() {
                match c {
                    '\'' => out.push_str("\\'"),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\0' => out.push_str("\\0"),
                    c => out.push(c),
                }
            }
            out.push('\'');
            out
        }
    }
}

/// A value as JSON: `null`; integers and floating-point numbers as
/// numbers; DECIMAL as a string holding its exact text; strings, dates and
/// times as strings; binary (or non-UTF-8) bytes as `{"hex": "…"}`.
pub fn json(v: &Value, col: &Column) -> serde_json::Value {
    match (kind(v, col), v) {
        (Kind::Null, _) => serde_json::Value::Null,
        (Kind::Number(_), Value::Int(i)) => json!(i),
        (Kind::Number(_), Value::UInt(u)) => json!(u),
        (Kind::Number(_), Value::Float(f)) => json!(f),
        (Kind::Number(_), Value::Double(f)) => json!(f),
        (Kind::Number(n), _) | (Kind::Text(n), _) => json!(n),
        (Kind::Binary(b), _) => json!({ "hex": hex(&b) }),
    }
}

/// A binlog timestamp as `YYYY-MM-DD hh:mm:ss` (UTC).
pub fn timestamp(secs: u32) -> String {
    let (y, m, d, hh, mm, ss) = civil_from_unix(i64::from(secs));
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_render() {
        let text_col = Column::new("s", ColumnType::MYSQL_TYPE_VARCHAR);
        let bin = Column {
            charset: BINARY_CHARSET,
            ..Column::new("b", ColumnType::MYSQL_TYPE_BLOB)
        };
        let dec = Column::new("d", ColumnType::MYSQL_TYPE_NEWDECIMAL);
        let date = Column::new("d", ColumnType::MYSQL_TYPE_DATE);
        let s = Value::Bytes(b"it's".to_vec());
        assert_eq!(text(&s, &text_col), "'it\\'s'");
        assert_eq!(json(&s, &text_col), json!("it's"));
        assert_eq!(text(&Value::Bytes(vec![0, 255]), &bin), "X'00FF'");
        assert_eq!(
            json(&Value::Bytes(vec![0, 255]), &bin),
            json!({"hex": "00FF"})
        );
        assert_eq!(text(&Value::Bytes(b"-10.55".to_vec()), &dec), "-10.55");
        assert_eq!(
            json(&Value::Bytes(b"-10.55".to_vec()), &dec),
            json!("-10.55")
        );
        assert_eq!(
            text(&Value::Date(2024, 2, 29, 0, 0, 0, 0), &date),
            "'2024-02-29'"
        );
        let t = Column::new("t", ColumnType::MYSQL_TYPE_TIME2);
        assert_eq!(
            text(&Value::Time(true, 21, 3, 48, 27, 0), &t),
            "'-507:48:27'"
        );
        assert_eq!(json(&Value::UInt(u64::MAX), &t), json!(u64::MAX));
        assert_eq!(timestamp(951_782_400), "2000-02-29 00:00:00");
    }
}
