//! Canonical forms for comparing a source row (routed) with a target row.
//!
//! The two sides of a comparison come from different places — source cells
//! and derived values computed by the router on one side, values read back
//! from a target table on the other — and a value can come back in another
//! shape than it went in: a derived `UInt(3)` stored in an `INT` column
//! reads back as `Int(3)`, a derived `5` in a `DECIMAL(10,2)` as `"5.00"`.
//! So cells are compared by a canonical *text*, chosen per **target**
//! column kind ([`Kind::of`]):
//!
//! | kind | canonical text |
//! |---|---|
//! | numbers (integers, DECIMAL, FLOAT, DOUBLE, YEAR) | plain decimal without leading or trailing zeros (`5`, `-0.5`, `12.25`); text that is not a plain decimal stays as it is |
//! | DATE | `YYYY-MM-DD` |
//! | DATETIME(n), TIMESTAMP(n) | `YYYY-MM-DD hh:mm:ss[.f]`, `n` fraction digits (values read in UTC) |
//! | TIME(n) | `[-]hh:mm:ss[.f]`, hours may exceed 24 |
//! | everything else | integers as digits, strings as their bytes (in the column's own character set: rows are read over a `binary` connection) |
//!
//! `NULL` is distinct from every text. A row is the tagged, length-prefixed
//! concatenation of its column texts, so two different rows never encode
//! alike; its 128-bit hash feeds the per-chunk digests.

use std::hash::{Hash, Hasher};

use mysql_common::constants::ColumnType;
use mysql_common::value::Value;

use crate::source::Column;

/// How a target column's values are canonicalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Number,
    Date,
    /// DATETIME / TIMESTAMP with this many fraction digits.
    DateTime(u8),
    /// TIME with this many fraction digits.
    Time(u8),
    Other,
}

impl Kind {
    /// The kind of a (target) column.
    pub fn of(col: &Column) -> Kind {
        use ColumnType::*;
        match col.ty {
            MYSQL_TYPE_TINY
            | MYSQL_TYPE_SHORT
            | MYSQL_TYPE_INT24
            | MYSQL_TYPE_LONG
            | MYSQL_TYPE_LONGLONG
            | MYSQL_TYPE_NEWDECIMAL
            | MYSQL_TYPE_DECIMAL
            | MYSQL_TYPE_FLOAT
            | MYSQL_TYPE_DOUBLE
            | MYSQL_TYPE_YEAR => Kind::Number,
            MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Kind::Date,
            MYSQL_TYPE_DATETIME
            | MYSQL_TYPE_DATETIME2
            | MYSQL_TYPE_TIMESTAMP
            | MYSQL_TYPE_TIMESTAMP2 => Kind::DateTime(col.decimals.min(6)),
            MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => Kind::Time(col.decimals.min(6)),
            _ => Kind::Other,
        }
    }
}

/// The canonical text of a cell (`None` for NULL).
pub fn canon(cell: &Value, kind: Kind) -> Option<Vec<u8>> {
    let text = match cell {
        Value::NULL => return None,
        Value::Int(i) => i.to_string().into_bytes(),
        Value::UInt(u) => u.to_string().into_bytes(),
        Value::Float(f) => f.to_string().into_bytes(),
        Value::Double(f) => f.to_string().into_bytes(),
        Value::Bytes(b) => b.clone(),
        Value::Date(y, m, d, hh, mm, ss, us) => {
            let date = format!("{y:04}-{m:02}-{d:02}");
            let text = match kind {
                Kind::Date => date,
                Kind::DateTime(n) => {
                    format!("{date} {hh:02}:{mm:02}:{ss:02}{}", fraction(*us, n))
                }
                _ => format!("{date} {hh:02}:{mm:02}:{ss:02}{}", fraction(*us, 6)),
            };
            text.into_bytes()
        }
        Value::Time(neg, days, hh, mm, ss, us) => {
            let n = match kind {
                Kind::Time(n) => n,
                _ => 6,
            };
            let hours = u64::from(*days) * 24 + u64::from(*hh);
            let sign = if *neg { "-" } else { "" };
            format!("{sign}{hours:02}:{mm:02}:{ss:02}{}", fraction(*us, n)).into_bytes()
        }
    };
    Some(match kind {
        Kind::Number => plain_decimal(&text).map(String::into_bytes).unwrap_or(text),
        _ => text,
    })
}

fn fraction(micros: u32, digits: u8) -> String {
    if digits == 0 {
        return String::new();
    }
    let f = format!("{:06}", micros % 1_000_000);
    format!(".{}", &f[..usize::from(digits.min(6))])
}

/// `-007.250` → `-7.25`, `0.00` → `0`; `None` unless the text is a plain
/// decimal (optional sign, digits, optional fraction; no exponent).
pub fn plain_decimal(text: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(text).ok()?.trim();
    let (neg, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let body = if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    };
    Some(if neg && body != "0" {
        format!("-{body}")
    } else {
        body
    })
}

/// Canonical texts of a row or key (`None` for NULL).
pub type Texts = Vec<Option<Vec<u8>>>;

/// Canonical texts of `cells` under `kinds` (same length).
pub fn row(cells: &[Value], kinds: &[Kind]) -> Texts {
    cells
        .iter()
        .zip(kinds.iter())
        .map(|(c, k)| canon(c, *k))
        .collect()
}

/// The tagged, length-prefixed encoding of canonical texts: the identity
/// of a key (or of a whole row).
pub fn encode(texts: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(texts.len() * 12);
    for t in texts {
        match t {
            None => out.push(0),
            Some(b) => {
                out.push(1);
                out.extend_from_slice(&(b.len() as u64).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
    out
}

/// A 128-bit hash of canonical texts (two SipHash passes with different
/// prefixes); digests add these up, so a digest does not depend on the
/// order rows arrive in.
pub fn hash(texts: &[Option<Vec<u8>>]) -> u128 {
    let enc = encode(texts);
    let mut a = std::collections::hash_map::DefaultHasher::new();
    0x5265_7368_u32.hash(&mut a);
    enc.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    0x6172_6421_u32.hash(&mut b);
    enc.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// An order-independent digest of a multiset of rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest {
    pub rows: u64,
    pub sum: u128,
}

impl Digest {
    pub fn add(&mut self, row_hash: u128) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(row_hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_compare_by_value_not_variant() {
        assert_eq!(
            canon(&Value::UInt(3), Kind::Number),
            canon(&Value::Int(3), Kind::Number)
        );
        assert_eq!(
            canon(&Value::UInt(3), Kind::Other),
            canon(&Value::Int(3), Kind::Other)
        );
        assert_eq!(
            canon(&Value::Int(5), Kind::Number),
            canon(&Value::Bytes(b"5.00".to_vec()), Kind::Number)
        );
        assert_ne!(
            canon(&Value::Bytes(b"5.00".to_vec()), Kind::Other),
            canon(&Value::Bytes(b"5".to_vec()), Kind::Other),
            "text columns keep their exact bytes"
        );
    }

    #[test]
    fn plain_decimals_are_normalised() {
        assert_eq!(plain_decimal(b"-007.250").as_deref(), Some("-7.25"));
        assert_eq!(plain_decimal(b"-0.00").as_deref(), Some("0"));
        assert_eq!(plain_decimal(b".5").as_deref(), Some("0.5"));
        assert_eq!(plain_decimal(b"1e5"), None);
        assert_eq!(plain_decimal(b"-"), None);
        assert_eq!(plain_decimal(b""), None);
    }

    #[test]
    fn dates_follow_the_target_column() {
        let d = Value::Date(2024, 1, 2, 3, 4, 5, 120_000);
        assert_eq!(
            canon(&d, Kind::DateTime(2)).as_deref(),
            Some(&b"2024-01-02 03:04:05.12"[..])
        );
        let day = Value::Date(2024, 1, 2, 0, 0, 0, 0);
        assert_eq!(
            canon(&day, Kind::Date),
            canon(&Value::Bytes(b"2024-01-02".to_vec()), Kind::Date)
        );
        let t = Value::Time(true, 1, 2, 3, 4, 0);
        assert_eq!(canon(&t, Kind::Time(0)).as_deref(), Some(&b"-26:03:04"[..]));
    }

    #[test]
    fn null_differs_from_empty_and_rows_are_self_delimiting() {
        assert_ne!(encode(&[None]), encode(&[Some(Vec::new())]));
        let a = encode(&[Some(b"ab".to_vec()), Some(b"c".to_vec())]);
        let b = encode(&[Some(b"a".to_vec()), Some(b"bc".to_vec())]);
        assert_ne!(a, b);
        let mut x = Digest::default();
        let mut y = Digest::default();
        x.add(1);
        x.add(2);
        y.add(2);
        y.add(1);
        assert_eq!(x, y);
    }
}
