//! One column value of a row image → the bindable value reshard writes,
//! straight from the event bytes (the same values the mysql_common path
//! of [`crate::source::row_image`] produces, see its docs for why each
//! type becomes what it does). Only strings allocate: their bytes are
//! copied once into the value.

use mysql_common::value::Value;

use super::bytes::{Cursor, Short};
use super::layout::Codec;
use super::temporal;

/// Why a value could not be decoded (the caller names table and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// The image ends inside the value.
    Short,
    /// The bytes are not a value of the column's type.
    Bad(String),
}

impl From<Short> for ValueError {
    fn from(_: Short) -> Self {
        ValueError::Short
    }
}

/// Decodes the non-NULL value of a column from `c`.
#[inline]
pub fn decode(codec: Codec, c: &mut Cursor<'_>) -> Result<Value, ValueError> {
    Ok(match codec {
        Codec::Int { width, unsigned } => int(c, width, unsigned)?,
        Codec::Float => Value::Float(f32::from_bits(c.le(4)? as u32)),
        Codec::Double => Value::Double(f64::from_bits(c.le(8)?)),
        Codec::Var { prefix } | Codec::Blob { prefix } => {
            let n = c.le(usize::from(prefix))? as usize;
            Value::Bytes(c.take(n)?.to_vec())
        }
        Codec::Binary { prefix, pad } => {
            let n = c.le(usize::from(prefix))? as usize;
            let b = c.take(n)?;
            let mut v = Vec::with_capacity(b.len().max(pad as usize));
            v.extend_from_slice(b);
            if v.len() < pad as usize {
                v.resize(pad as usize, 0);
            }
            Value::Bytes(v)
        }
        Codec::Decimal { precision, scale } => {
            Value::Bytes(super::decimal::to_text(c, precision, scale)?)
        }
        Codec::Year => match c.u8()? {
            0 => Value::Int(0),
            y => Value::Int(1900 + i64::from(y)),
        },
        Codec::Enum { width } => Value::Int(c.le(usize::from(width))? as i64),
        Codec::Set { width } => Value::UInt(c.le(usize::from(width))?),
        Codec::Bit { width } => Value::UInt(c.be(usize::from(width))?),
        Codec::Json { prefix } => json(c, prefix)?,
        Codec::Unsupported(ty) => {
            return Err(ValueError::Bad(format!(
                "column type {ty} (or its metadata) is not supported"
            )))
        }
        t => temporal::decode(t, c)?,
    })
}

#[inline]
fn int(c: &mut Cursor<'_>, width: u8, unsigned: bool) -> Result<Value, ValueError> {
    let w = usize::from(width);
    let raw = c.le(w)?;
    Ok(if unsigned {
        Value::UInt(raw)
    } else {
        let shift = 64 - 8 * u32::from(width);
        Value::Int(((raw << shift) as i64) >> shift)
    })
}

/// MySQL's binary JSON as the text MySQL prints
/// ([`crate::source::json_binary`]).
fn json(c: &mut Cursor<'_>, prefix: u8) -> Result<Value, ValueError> {
    let n = c.le(usize::from(prefix))? as usize;
    Ok(Value::Bytes(json_text(c.take(n)?)?.into_bytes()))
}

/// A binary JSON document (`bytes`, without its length) as MySQL's text.
pub(super) fn json_text(bytes: &[u8]) -> Result<String, ValueError> {
    use mysql_common::binlog::jsonb;
    use mysql_common::io::ParseBuf;
    let doc: jsonb::Value<'_> = ParseBuf(bytes)
        .parse(())
        .map_err(|e| ValueError::Bad(format!("binary JSON: {e}")))?;
    crate::source::json_binary::to_text(&doc).map_err(|e| ValueError::Bad(e.to_string()))
}

/// Skips the non-NULL value of a column (counting rows without decoding
/// them); the same checks as [`decode`] for lengths.
#[inline]
pub fn skip(codec: Codec, c: &mut Cursor<'_>) -> Result<(), ValueError> {
    let fixed = match codec {
        Codec::Int { width, .. } => usize::from(width),
        Codec::Float => 4,
        Codec::Double => 8,
        Codec::Year => 1,
        Codec::Date | Codec::OldTime => 3,
        Codec::OldDateTime => 8,
        Codec::OldTimestamp => 4,
        Codec::DateTime2 { fsp } => 5 + temporal::frac_len(fsp),
        Codec::Time2 { fsp } => 3 + temporal::frac_len(fsp),
        Codec::Timestamp2 { fsp } => 4 + temporal::frac_len(fsp),
        Codec::Decimal { precision, scale } => super::decimal::bin_size(precision, scale),
        Codec::Enum { width } | Codec::Set { width } | Codec::Bit { width } => usize::from(width),
        Codec::Var { prefix }
        | Codec::Blob { prefix }
        | Codec::Json { prefix }
        | Codec::Binary { prefix, .. } => c.le(usize::from(prefix))? as usize,
        Codec::Unsupported(_) => return decode(codec, c).map(drop),
    };
    c.take(fixed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(codec: Codec, bytes: &[u8]) -> Result<Value, ValueError> {
        let mut c = Cursor::new(bytes);
        let v = decode(codec, &mut c)?;
        assert!(c.is_empty(), "{codec:?} left {:?}", c.rest());
        let mut s = Cursor::new(bytes);
        skip(codec, &mut s).unwrap();
        assert!(s.is_empty(), "skip of {codec:?} left {:?}", s.rest());
        Ok(v)
    }

    #[test]
    fn integers_take_their_sign_from_the_column() {
        let i = |width, unsigned| Codec::Int { width, unsigned };
        assert_eq!(dec(i(1, false), &[0xFF]), Ok(Value::Int(-1)));
        assert_eq!(dec(i(1, true), &[0xFF]), Ok(Value::UInt(255)));
        assert_eq!(dec(i(3, false), &[0xFF, 0xFF, 0xFF]), Ok(Value::Int(-1)));
        assert_eq!(dec(i(3, false), &[0, 0, 0x80]), Ok(Value::Int(-8_388_608)));
        assert_eq!(
            dec(i(3, true), &[0xFF, 0xFF, 0xFF]),
            Ok(Value::UInt(16_777_215))
        );
        assert_eq!(dec(i(8, true), &[0xFF; 8]), Ok(Value::UInt(u64::MAX)));
        assert_eq!(dec(i(8, false), &[0xFF; 8]), Ok(Value::Int(-1)));
        assert_eq!(dec(i(4, false), &[1, 0]), Err(ValueError::Short));
    }

    #[test]
    fn strings_binary_and_bitmaps() {
        assert_eq!(
            dec(Codec::Var { prefix: 1 }, &[2, b'h', b'i']),
            Ok(Value::Bytes(b"hi".to_vec()))
        );
        assert_eq!(
            dec(Codec::Binary { prefix: 1, pad: 4 }, &[2, 7, 7]),
            Ok(Value::Bytes(vec![7, 7, 0, 0]))
        );
        assert_eq!(
            dec(Codec::Set { width: 2 }, &[5, 1]),
            Ok(Value::UInt(0x105))
        );
        assert_eq!(
            dec(Codec::Bit { width: 2 }, &[1, 2]),
            Ok(Value::UInt(0x102))
        );
        assert_eq!(dec(Codec::Year, &[0]), Ok(Value::Int(0)));
        assert_eq!(dec(Codec::Year, &[124]), Ok(Value::Int(2024)));
        assert_eq!(
            dec(Codec::Var { prefix: 2 }, &[9, 0, 1]),
            Err(ValueError::Short)
        );
    }
}
