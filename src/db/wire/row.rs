//! Binary result rows (`COM_STMT_EXECUTE`'s resultset rows) decoded into
//! values.
//!
//! # Why it yields what the driver yields
//!
//! Every value is the one mysql_common's `Value::deserialize_bin` gives
//! for the column's type and `UNSIGNED` flag — the decoder the driver
//! uses: integers of every width as `Int` (an `UNSIGNED BIGINT` above
//! `i64::MAX` as `UInt`), `FLOAT` and `DOUBLE` as such, date-times and
//! times by their length byte, everything else (strings, blobs, decimals,
//! `ENUM`, `SET`, `BIT`, `JSON`, geometry) as the bytes the server sent.
//! A unit test decodes a row of every type both ways and compares.
//!
//! # Why not mysql_common's decoder itself
//!
//! It is the copy readers' hottest code: each value went through the
//! generic `ParseBuf::parse` machinery (`BENCHMARKS.md`, session 9), and
//! a column type it does not know ends in a panic (`unimplemented!`).
//! Here a row is one pass over the packet, and a type the decoder does
//! not know is a malformed-packet error naming it.

use mysql_common::constants::{ColumnFlags, ColumnType};
use mysql_common::value::Value;

use super::{ColumnKind, WireError};

/// One binary result row: a 0x00 header, the NULL bitmap (offset by two
/// bits), then each non-NULL value in the column's binary encoding.
pub(super) fn decode_row(payload: &[u8], columns: &[ColumnKind]) -> Result<Vec<Value>, WireError> {
    let bitmap_len = (columns.len() + 7 + 2) / 8;
    let (Some(bitmap), Some(mut rest)) = (
        payload.get(1..1 + bitmap_len),
        payload.get(1 + bitmap_len..),
    ) else {
        return Err(malformed("a result row shorter than its NULL bitmap"));
    };
    let mut row = Vec::with_capacity(columns.len());
    for (i, &(ty, flags)) in columns.iter().enumerate() {
        let bit = i + 2;
        let null = bitmap
            .get(bit / 8)
            .is_some_and(|b| b & (1 << (bit % 8)) != 0);
        row.push(if null {
            Value::NULL
        } else {
            value(&mut rest, ty, flags.contains(ColumnFlags::UNSIGNED_FLAG))?
        });
    }
    Ok(row)
}

/// The value at the start of `buf`, which moves past it.
fn value(buf: &mut &[u8], ty: ColumnType, unsigned: bool) -> Result<Value, WireError> {
    use ColumnType::*;
    Ok(match ty {
        MYSQL_TYPE_STRING
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_SET
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_DECIMAL
        | MYSQL_TYPE_NEWDECIMAL
        | MYSQL_TYPE_BIT
        | MYSQL_TYPE_GEOMETRY
        | MYSQL_TYPE_VECTOR
        | MYSQL_TYPE_JSON => {
            let len = lenenc(buf)?;
            Value::Bytes(take(buf, len)?.to_vec())
        }
        MYSQL_TYPE_TINY => {
            let [b] = fixed(buf)?;
            Value::Int(if unsigned {
                i64::from(b)
            } else {
                i64::from(b as i8)
            })
        }
        MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR => {
            let b = fixed(buf)?;
            Value::Int(if unsigned {
                i64::from(u16::from_le_bytes(b))
            } else {
                i64::from(i16::from_le_bytes(b))
            })
        }
        MYSQL_TYPE_LONG | MYSQL_TYPE_INT24 => {
            let b = fixed(buf)?;
            Value::Int(if unsigned {
                i64::from(u32::from_le_bytes(b))
            } else {
                i64::from(i32::from_le_bytes(b))
            })
        }
        MYSQL_TYPE_LONGLONG => {
            let b = fixed(buf)?;
            if unsigned {
                let u = u64::from_le_bytes(b);
                i64::try_from(u).map_or(Value::UInt(u), Value::Int)
            } else {
                Value::Int(i64::from_le_bytes(b))
            }
        }
        MYSQL_TYPE_FLOAT => Value::Float(f32::from_le_bytes(fixed(buf)?)),
        MYSQL_TYPE_DOUBLE => Value::Double(f64::from_le_bytes(fixed(buf)?)),
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE | MYSQL_TYPE_DATETIME => {
            datetime(buf)?
        }
        MYSQL_TYPE_TIME => time(buf)?,
        MYSQL_TYPE_NULL => Value::NULL,
        other => return Err(malformed(&format!("a value of column type {other:?}"))),
    })
}

/// `DATE`/`DATETIME`/`TIMESTAMP`: a length byte (0, 4, 7 or 11), then
/// year, month, day, hour, minute, second, microseconds as far as it goes.
fn datetime(buf: &mut &[u8]) -> Result<Value, WireError> {
    let [len] = fixed(buf)?;
    let b = take(buf, usize::from(len))?;
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut us) = (0, 0, 0, 0, 0, 0, 0);
    if len >= 4 {
        (y, mo, d) = (u16::from_le_bytes([at(0), at(1)]), at(2), at(3));
    }
    if len >= 7 {
        (h, mi, s) = (at(4), at(5), at(6));
    }
    if len == 11 {
        us = u32::from_le_bytes([at(7), at(8), at(9), at(10)]);
    }
    Ok(Value::Date(y, mo, d, h, mi, s, us))
}

/// `TIME`: a length byte (0, 8 or 12), then sign, days, hours, minutes,
/// seconds, microseconds as far as it goes.
fn time(buf: &mut &[u8]) -> Result<Value, WireError> {
    let [len] = fixed(buf)?;
    let b = take(buf, usize::from(len))?;
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let (mut neg, mut days, mut h, mut mi, mut s, mut us) = (false, 0, 0, 0, 0, 0);
    if len >= 8 {
        neg = at(0) == 1;
        days = u32::from_le_bytes([at(1), at(2), at(3), at(4)]);
        (h, mi, s) = (at(5), at(6), at(7));
    }
    if len == 12 {
        us = u32::from_le_bytes([at(8), at(9), at(10), at(11)]);
    }
    Ok(Value::Time(neg, days, h, mi, s, us))
}

/// A length-encoded integer.
fn lenenc(buf: &mut &[u8]) -> Result<usize, WireError> {
    let [first] = fixed(buf)?;
    let n = match first {
        0xFC => u64::from(u16::from_le_bytes(fixed(buf)?)),
        0xFD => {
            let [a, b, c] = fixed(buf)?;
            u64::from(u32::from_le_bytes([a, b, c, 0]))
        }
        0xFE => u64::from_le_bytes(fixed(buf)?),
        0xFB | 0xFF => return Err(malformed("a length in a result row")),
        n => u64::from(n),
    };
    usize::try_from(n).map_err(|_| malformed("a length in a result row"))
}

/// The next `N` bytes.
fn fixed<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], WireError> {
    let b = take(buf, N)?;
    b.try_into().map_err(|_| malformed("a result row"))
}

/// The next `n` bytes.
fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if buf.len() < n {
        return Err(malformed("a result row cut short"));
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn malformed(what: &str) -> WireError {
    WireError::Protocol(what.into())
}

#[cfg(test)]
mod tests {
    use mysql_common::io::ParseBuf;
    use mysql_common::value::{BinValue, ValueDeserializer};

    use super::*;

    /// mysql_common's decoding of the same row.
    fn theirs(payload: &[u8], columns: &[ColumnKind]) -> Vec<Value> {
        let bitmap_len = (columns.len() + 9) / 8;
        let bitmap = &payload[1..1 + bitmap_len];
        let mut buf = ParseBuf(&payload[1 + bitmap_len..]);
        let mut row = Vec::new();
        for (i, &(ty, flags)) in columns.iter().enumerate() {
            let bit = i + 2;
            if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
                row.push(Value::NULL);
            } else {
                let v: ValueDeserializer<BinValue> = buf.parse((ty, flags)).unwrap();
                row.push(v.0);
            }
        }
        row
    }

    /// A row of `values` (raw encodings; `None` is NULL) as a packet.
    fn packet(values: &[Option<Vec<u8>>]) -> Vec<u8> {
        let mut bitmap = vec![0u8; (values.len() + 9) / 8];
        let mut body = Vec::new();
        for (i, v) in values.iter().enumerate() {
            match v {
                None => bitmap[(i + 2) / 8] |= 1 << ((i + 2) % 8),
                Some(b) => body.extend_from_slice(b),
            }
        }
        let mut p = vec![0u8];
        p.extend(bitmap);
        p.extend(body);
        p
    }

    fn lenenc_str(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match b.len() {
            n if n < 0xFB => out.push(n as u8),
            n if n <= 0xFFFF => {
                out.push(0xFC);
                out.extend_from_slice(&(n as u16).to_le_bytes());
            }
            n if n <= 0xFF_FFFF => {
                out.push(0xFD);
                out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
            }
            n => {
                out.push(0xFE);
                out.extend_from_slice(&(n as u64).to_le_bytes());
            }
        }
        out.extend_from_slice(b);
        out
    }

    #[test]
    fn every_column_type_decodes_as_mysql_common_decodes_it() {
        use ColumnType::*;
        let u = ColumnFlags::UNSIGNED_FLAG;
        let s = ColumnFlags::empty();
        let long_text = vec![b'x'; 70_000];
        let cases: Vec<(ColumnType, ColumnFlags, Option<Vec<u8>>)> = vec![
            (MYSQL_TYPE_TINY, s, Some(vec![0x80])),
            (MYSQL_TYPE_TINY, u, Some(vec![0xFF])),
            (MYSQL_TYPE_SHORT, s, Some((-2i16).to_le_bytes().to_vec())),
            (MYSQL_TYPE_SHORT, u, Some(0xFFFFu16.to_le_bytes().to_vec())),
            (MYSQL_TYPE_YEAR, u, Some(2024u16.to_le_bytes().to_vec())),
            (
                MYSQL_TYPE_INT24,
                s,
                Some((-8_388_608i32).to_le_bytes().to_vec()),
            ),
            (MYSQL_TYPE_LONG, s, Some(i32::MIN.to_le_bytes().to_vec())),
            (MYSQL_TYPE_LONG, u, Some(u32::MAX.to_le_bytes().to_vec())),
            (
                MYSQL_TYPE_LONGLONG,
                s,
                Some(i64::MIN.to_le_bytes().to_vec()),
            ),
            (
                MYSQL_TYPE_LONGLONG,
                u,
                Some(u64::MAX.to_le_bytes().to_vec()),
            ),
            (MYSQL_TYPE_LONGLONG, u, Some(7u64.to_le_bytes().to_vec())),
            (MYSQL_TYPE_FLOAT, s, Some((-1.5f32).to_le_bytes().to_vec())),
            (MYSQL_TYPE_DOUBLE, s, Some(f64::MAX.to_le_bytes().to_vec())),
            (MYSQL_TYPE_NULL, s, Some(Vec::new())),
            (MYSQL_TYPE_DATE, s, Some(vec![4, 0xE8, 0x07, 2, 29])),
            (MYSQL_TYPE_DATETIME, s, Some(vec![0])),
            (
                MYSQL_TYPE_DATETIME,
                s,
                Some(vec![7, 0xE8, 0x07, 12, 31, 23, 59, 58]),
            ),
            (
                MYSQL_TYPE_TIMESTAMP,
                s,
                Some(vec![11, 0xB2, 0x07, 1, 1, 0, 0, 1, 0x3F, 0x42, 0x0F, 0]),
            ),
            (MYSQL_TYPE_TIME, s, Some(vec![0])),
            (
                MYSQL_TYPE_TIME,
                s,
                Some(vec![8, 1, 34, 0, 0, 0, 10, 20, 30]),
            ),
            (
                MYSQL_TYPE_TIME,
                s,
                Some(vec![12, 0, 0, 0, 0, 0, 0, 0, 1, 0x40, 0x42, 0x0F, 0]),
            ),
            (MYSQL_TYPE_VAR_STRING, s, Some(lenenc_str(b"hello"))),
            (MYSQL_TYPE_STRING, s, Some(lenenc_str(b"pad   "))),
            (MYSQL_TYPE_VAR_STRING, s, None),
            (MYSQL_TYPE_BLOB, s, Some(lenenc_str(&[0, 0xFF, 0xFB]))),
            (MYSQL_TYPE_BLOB, s, Some(lenenc_str(&long_text))),
            (MYSQL_TYPE_NEWDECIMAL, s, Some(lenenc_str(b"-12.500"))),
            (MYSQL_TYPE_ENUM, s, Some(lenenc_str(b"b"))),
            (MYSQL_TYPE_SET, s, Some(lenenc_str(b"a,c"))),
            (MYSQL_TYPE_BIT, u, Some(lenenc_str(&[1, 0]))),
            (MYSQL_TYPE_JSON, s, Some(lenenc_str(br#"{"a":1}"#))),
            (MYSQL_TYPE_GEOMETRY, s, Some(lenenc_str(&[0; 25]))),
            (MYSQL_TYPE_LONG, s, None),
        ];
        let columns: Vec<ColumnKind> = cases.iter().map(|(t, f, _)| (*t, *f)).collect();
        let values: Vec<Option<Vec<u8>>> = cases.iter().map(|(_, _, v)| v.clone()).collect();
        let p = packet(&values);
        let ours = decode_row(&p, &columns).expect("decodes");
        assert_eq!(ours, theirs(&p, &columns));
        assert_eq!(ours[9], Value::UInt(u64::MAX));
        assert_eq!(ours[23], Value::NULL);
    }

    #[test]
    fn a_row_cut_short_or_of_an_unknown_type_is_an_error_not_a_panic() {
        let columns = [(ColumnType::MYSQL_TYPE_LONGLONG, ColumnFlags::empty())];
        let p = packet(&[Some(7i64.to_le_bytes().to_vec())]);
        for cut in 0..p.len() {
            assert!(decode_row(&p[..cut], &columns).is_err(), "cut at {cut}");
        }
        let text = [(ColumnType::MYSQL_TYPE_VAR_STRING, ColumnFlags::empty())];
        let p = packet(&[Some(lenenc_str(b"abc"))]);
        assert!(decode_row(&p[..p.len() - 1], &text).is_err());
        let odd = [(ColumnType::MYSQL_TYPE_TYPED_ARRAY, ColumnFlags::empty())];
        let e = decode_row(&packet(&[Some(vec![1])]), &odd).unwrap_err();
        assert!(e.to_string().contains("TYPED_ARRAY"), "{e}");
    }
}
