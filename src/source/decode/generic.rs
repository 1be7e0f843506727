//! The reference the decoder's tests compare against: mysql_common's
//! generic path (rows event → `BinlogRow` → `BinlogValue`) with each value
//! made bindable as [`crate::source::row_image`] describes. Test-only:
//! nothing reshard runs decodes row values through mysql_common.
//!
//! mysql_common's values are close to, but not quite, the bindable ones:
//!
//! * integers of unsigned columns whose signedness the TABLE_MAP did not
//!   carry arrive as negative numbers (`BIGINT UNSIGNED` max as -1) and are
//!   reinterpreted at the column's width;
//! * negative signed `MEDIUMINT`s arrive as their unsigned 24-bit pattern
//!   (mysql_common 0.37 does not sign-extend them) and are sign-extended;
//! * TIMESTAMP arrives as seconds since the epoch;
//! * SET and BIT arrive as raw bytes; YEAR as text where `0000` shows as
//!   `1900`; `BINARY(n)` without its trailing zero bytes.
//!
//! Where mysql_common is wrong the decoder's tests do not compare: negative
//! TIME(1)/TIME(2) with a fraction (an unsigned subtraction in
//! `binlog::misc::my_time_packed_from_binary`: a panic in debug builds, a
//! wrong TIME in release), TIMESTAMPs past 2038, old-format TIMEs of 24
//! hours or more, DECIMAL digit groups out of range.

use mysql_common::binlog::row::BinlogRow;
use mysql_common::binlog::value::BinlogValue;
use mysql_common::constants::ColumnType;
use mysql_common::value::Value;

use super::image::Field;
use crate::source::row_image::{civil_from_unix, DecodeError};
use crate::source::schema::{Column, TableSchema, BINARY_CHARSET};

/// Decodes a full row image into one value per column.
pub(super) fn decode_row(row: BinlogRow, schema: &TableSchema) -> Result<Vec<Value>, DecodeError> {
    if row.len() != schema.columns.len() {
        return Err(DecodeError::PartialImage {
            table: schema.full_name(),
            got: row.len(),
            expected: schema.columns.len(),
        });
    }
    let values = row.unwrap();
    let mut out = Vec::with_capacity(values.len());
    for (v, col) in values.into_iter().zip(schema.columns.iter()) {
        out.push(normalize(v, col).map_err(|message| DecodeError::Value {
            table: schema.full_name(),
            column: col.name.clone(),
            message,
        })?);
    }
    Ok(out)
}

/// Decodes an image holding the columns marked in `present` (MINIMAL,
/// NOBLOB): every column of the table, those left out [`Field::Absent`].
pub(super) fn decode_partial(
    row: BinlogRow,
    present: &[bool],
    schema: &TableSchema,
) -> Result<Vec<Field>, String> {
    let mut values = row.unwrap().into_iter();
    let mut out = Vec::with_capacity(schema.columns.len());
    for (i, col) in schema.columns.iter().enumerate() {
        if !present[i] {
            out.push(Field::Absent);
            continue;
        }
        let v = values.next().ok_or("fewer values than present columns")?;
        out.push(Field::Value(normalize(v, col)?));
    }
    Ok(out)
}

/// One value of a row image, made bindable for its column (see the module
/// docs).
fn normalize(v: BinlogValue<'static>, col: &Column) -> Result<Value, String> {
    use ColumnType::*;
    let v = match v {
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(j) => {
            let json = crate::source::json_binary::to_text(&j).map_err(|e| e.to_string())?;
            return Ok(Value::Bytes(json.into_bytes()));
        }
        BinlogValue::JsonDiff(_) => {
            return Err("partial JSON update (binlog_row_value_options=PARTIAL_JSON) is not supported; set it to ''".into())
        }
    };
    if v == Value::NULL {
        return Ok(v);
    }
    Ok(match (col.ty, v) {
        (MYSQL_TYPE_TINY, Value::Int(i)) if col.unsigned => Value::UInt(u64::from(i as u8)),
        (MYSQL_TYPE_SHORT, Value::Int(i)) if col.unsigned => Value::UInt(u64::from(i as u16)),
        (MYSQL_TYPE_INT24, Value::Int(i)) if col.unsigned => Value::UInt((i as u64) & 0xFF_FFFF),
        // mysql_common reads a signed 24-bit integer without extending its
        // sign: -1 arrives as 16777215.
        (MYSQL_TYPE_INT24, Value::Int(i)) if i >= 0x80_0000 => Value::Int(i - 0x100_0000),
        (MYSQL_TYPE_LONG, Value::Int(i)) if col.unsigned => Value::UInt(u64::from(i as u32)),
        (MYSQL_TYPE_LONGLONG, Value::Int(i)) if col.unsigned => Value::UInt(i as u64),
        (MYSQL_TYPE_TIMESTAMP, Value::Int(secs)) => timestamp(secs, 0)?,
        (MYSQL_TYPE_TIMESTAMP2, Value::Bytes(b)) => {
            let s = std::str::from_utf8(&b).map_err(|_| "TIMESTAMP is not text".to_string())?;
            let (secs, micros) = match s.split_once('.') {
                Some((a, b)) => (a, b),
                None => (s, "0"),
            };
            let secs: i64 = secs.parse().map_err(|_| format!("bad TIMESTAMP {s:?}"))?;
            let micros: u32 = micros.parse().map_err(|_| format!("bad TIMESTAMP {s:?}"))?;
            timestamp(secs, micros)?
        }
        (MYSQL_TYPE_YEAR, Value::Bytes(b)) => {
            let y: i64 = std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| "bad YEAR".to_string())?;
            Value::Int(if y == 1900 { 0 } else { y })
        }
        (MYSQL_TYPE_SET, Value::Bytes(b)) => {
            if b.len() > 8 {
                return Err(format!("SET bitmap of {} bytes", b.len()));
            }
            let mut n = 0u64;
            for (i, byte) in b.iter().enumerate() {
                n |= u64::from(*byte) << (8 * i);
            }
            Value::UInt(n)
        }
        (MYSQL_TYPE_STRING, Value::Bytes(b)) if col.charset == BINARY_CHARSET => {
            Value::Bytes(pad_binary(b, col.length))
        }
        (MYSQL_TYPE_BIT, Value::Bytes(b)) => {
            if b.len() > 8 {
                return Err(format!("BIT value of {} bytes", b.len()));
            }
            Value::UInt(
                b.iter()
                    .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte)),
            )
        }
        (_, v) => v,
    })
}

/// A `BINARY(n)` value with the zero bytes the binlog left out (`n`: the
/// column's byte length; 0 when unknown, then the value stays as logged).
fn pad_binary(mut b: Vec<u8>, n: u32) -> Vec<u8> {
    if let Ok(n) = usize::try_from(n) {
        if b.len() < n {
            b.resize(n, 0);
        }
    }
    b
}

/// Seconds since the epoch → UTC date-time value.
fn timestamp(secs: i64, micros: u32) -> Result<Value, String> {
    if secs == 0 && micros == 0 {
        return Ok(Value::Date(0, 0, 0, 0, 0, 0, 0));
    }
    let (y, m, d, hh, mm, ss) = civil_from_unix(secs);
    let y = u16::try_from(y).map_err(|_| format!("TIMESTAMP {secs} out of range"))?;
    Ok(Value::Date(y, m, d, hh, mm, ss, micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(ty: ColumnType, unsigned: bool) -> Column {
        Column {
            unsigned,
            ..Column::new("c", ty)
        }
    }

    #[test]
    fn unsigned_bigint_max_is_not_minus_one() {
        let v = normalize(
            BinlogValue::Value(Value::Int(-1)),
            &col(ColumnType::MYSQL_TYPE_LONGLONG, true),
        )
        .unwrap();
        assert_eq!(v, Value::UInt(u64::MAX));
        let v = normalize(
            BinlogValue::Value(Value::Int(-1)),
            &col(ColumnType::MYSQL_TYPE_TINY, true),
        )
        .unwrap();
        assert_eq!(v, Value::UInt(255));
    }

    #[test]
    fn signed_mediumints_are_sign_extended() {
        let signed = col(ColumnType::MYSQL_TYPE_INT24, false);
        let norm = |i: i64, c: &Column| normalize(BinlogValue::Value(Value::Int(i)), c).unwrap();
        assert_eq!(norm(0xFF_FFFF, &signed), Value::Int(-1));
        assert_eq!(norm(0x80_0000, &signed), Value::Int(-8_388_608));
        assert_eq!(norm(0x7F_FFFF, &signed), Value::Int(8_388_607));
        // already sign-extended (a fixed mysql_common) stays as is
        assert_eq!(norm(-5, &signed), Value::Int(-5));
        let unsigned = col(ColumnType::MYSQL_TYPE_INT24, true);
        assert_eq!(norm(0xFF_FFFF, &unsigned), Value::UInt(16_777_215));
        assert_eq!(norm(-1, &unsigned), Value::UInt(16_777_215));
    }

    #[test]
    fn timestamps_are_utc() {
        let v = normalize(
            BinlogValue::Value(Value::Bytes(b"1700000000.000123".to_vec())),
            &col(ColumnType::MYSQL_TYPE_TIMESTAMP2, false),
        )
        .unwrap();
        assert_eq!(v, Value::Date(2023, 11, 14, 22, 13, 20, 123));
    }

    #[test]
    fn binary_values_get_their_zero_padding_back() {
        let binary16 = Column {
            charset: BINARY_CHARSET,
            length: 16,
            ..Column::new("id", ColumnType::MYSQL_TYPE_STRING)
        };
        let norm = |b: &[u8], c: &Column| {
            normalize(BinlogValue::Value(Value::Bytes(b.to_vec())), c).unwrap()
        };
        let mut full = vec![0xAB; 15];
        full.push(0);
        assert_eq!(norm(&[0xAB; 15], &binary16), Value::Bytes(full));
        assert_eq!(norm(&[], &binary16), Value::Bytes(vec![0; 16]));
        assert_eq!(norm(&[7; 16], &binary16), Value::Bytes(vec![7; 16]));
        // CHAR keeps its value as logged (its pad is a space the server
        // ignores), and so does a BINARY of unknown length
        let char10 = Column {
            charset: 45,
            length: 40,
            ..Column::new("c", ColumnType::MYSQL_TYPE_STRING)
        };
        assert_eq!(norm(b"ab", &char10), Value::Bytes(b"ab".to_vec()));
        let unknown = Column {
            length: 0,
            ..binary16
        };
        assert_eq!(norm(b"ab", &unknown), Value::Bytes(b"ab".to_vec()));
    }

    #[test]
    fn set_and_bit_become_integers() {
        let v = normalize(
            BinlogValue::Value(Value::Bytes(vec![0x05, 0x01])),
            &col(ColumnType::MYSQL_TYPE_SET, false),
        )
        .unwrap();
        assert_eq!(v, Value::UInt(0x0105));
        let v = normalize(
            BinlogValue::Value(Value::Bytes(vec![0x01, 0x02])),
            &col(ColumnType::MYSQL_TYPE_BIT, false),
        )
        .unwrap();
        assert_eq!(v, Value::UInt(0x0102));
    }
}
