//! A table's column layout, read once per TABLE_MAP: for each column, how
//! its value is laid out in a row image and which bindable value it
//! becomes ([`Codec`]). The row decoder then walks row images without
//! looking at the TABLE_MAP again (mysql_common re-reads the column
//! metadata from the start for every column of every row).
//!
//! The binlog type and metadata come from the TABLE_MAP (they say how the
//! bytes are laid out); signedness, the `binary` character set and the
//! declared length of `BINARY(n)` come from the table's schema, which may
//! have completed them from the schema history or information_schema.

use super::bytes::{Cursor, Short};
use crate::source::schema::{TableSchema, BINARY_CHARSET};

/// How one column's value is stored in a row image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// An integer of 1, 2, 3, 4 or 8 little-endian bytes.
    Int {
        width: u8,
        unsigned: bool,
    },
    Float,
    Double,
    /// One byte, years since 1900 (0 is the zero year).
    Year,
    /// MySQL's binary DECIMAL: `precision` digits, `scale` after the point.
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// DATE: 3 bytes, `day | month << 5 | year << 9`.
    Date,
    /// The pre-5.6.4 DATETIME: 8 bytes `YYYYMMDDhhmmss`.
    OldDateTime,
    /// The pre-5.6.4 TIME: 3 bytes `hhmmss`.
    OldTime,
    /// The pre-5.6.4 TIMESTAMP: 4 bytes of seconds.
    OldTimestamp,
    /// DATETIME(n), TIME(n), TIMESTAMP(n) of 5.6.4+ with `fsp` digits.
    DateTime2 {
        fsp: u8,
    },
    Time2 {
        fsp: u8,
    },
    Timestamp2 {
        fsp: u8,
    },
    /// A string with a 1- or 2-byte length prefix (VARCHAR, CHAR).
    Var {
        prefix: u8,
    },
    /// `BINARY(n)`: a CHAR of the binary character set, padded back to
    /// `pad` bytes (the binlog drops the trailing zero bytes).
    Binary {
        prefix: u8,
        pad: u32,
    },
    /// BLOB, TEXT, GEOMETRY, VECTOR: a 1–4 byte length prefix.
    Blob {
        prefix: u8,
    },
    /// MySQL's binary JSON with a 1–4 byte length prefix.
    Json {
        prefix: u8,
    },
    /// ENUM: the 1-based index in 1 or 2 bytes.
    Enum {
        width: u8,
    },
    /// SET: a bitmap of 1–8 bytes, little-endian.
    Set {
        width: u8,
    },
    /// BIT(n): `width` bytes, big-endian.
    Bit {
        width: u8,
    },
    /// A type the decoder cannot read (raw type byte); a row holding a
    /// non-NULL value of it fails to decode.
    Unsupported(u8),
}

/// The layout of every column of a table, in column order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub codecs: Box<[Codec]>,
}

/// A TABLE_MAP whose column part does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("table map: {0}")]
pub struct LayoutError(pub String);

impl From<Short> for LayoutError {
    fn from(_: Short) -> Self {
        LayoutError("the event ends inside its column metadata".into())
    }
}

/// The column types and their metadata, as a TABLE_MAP body holds them.
pub struct TableMapColumns<'a> {
    pub types: &'a [u8],
    pub meta: &'a [u8],
}

impl<'a> TableMapColumns<'a> {
    /// Reads the column part of a TABLE_MAP event body (`data` without the
    /// common header; the post-header's table id is `id_width` bytes).
    pub fn read(data: &'a [u8], id_width: usize) -> Result<Self, LayoutError> {
        let mut c = Cursor::new(data);
        c.take(id_width + 2)?; // table id, flags
        for _ in 0..2 {
            // schema and table name: length, bytes, NUL
            let n = usize::from(c.u8()?);
            c.take(n + 1)?;
        }
        let n = usize::try_from(c.lenenc()?).map_err(|_| Short)?;
        let types = c.take(n)?;
        let meta_len = usize::try_from(c.lenenc()?).map_err(|_| Short)?;
        let meta = c.take(meta_len)?;
        Ok(TableMapColumns { types, meta })
    }
}

/// Bytes of TABLE_MAP metadata a column of binlog type `ty` has.
fn meta_len(ty: u8) -> Result<usize, LayoutError> {
    Ok(match ty {
        // BLOBs, DOUBLE, FLOAT, GEOMETRY, TIME2, DATETIME2, TIMESTAMP2,
        // JSON, VECTOR
        249..=252 | 5 | 4 | 255 | 19 | 18 | 17 | 245 | 242 => 1,
        // VARCHAR, NEWDECIMAL, SET, ENUM, STRING, BIT
        15 | 246 | 248 | 247 | 254 | 16 => 2,
        // TYPED_ARRAY (functional indexes over JSON arrays)
        244 => {
            return Err(LayoutError(
                "typed-array column (type 244) is not supported".into(),
            ))
        }
        _ => 0,
    })
}

impl Layout {
    /// The layout of a table from its TABLE_MAP's columns and its schema
    /// (which must have as many columns).
    pub fn new(cols: &TableMapColumns<'_>, schema: &TableSchema) -> Result<Layout, LayoutError> {
        if cols.types.len() != schema.columns.len() {
            return Err(LayoutError(format!(
                "{} columns in the event, {} in the schema",
                cols.types.len(),
                schema.columns.len()
            )));
        }
        let mut meta = Cursor::new(cols.meta);
        let mut codecs = Vec::with_capacity(cols.types.len());
        for (&ty, col) in cols.types.iter().zip(&schema.columns) {
            let md = meta.take(meta_len(ty)?)?;
            let binary = col.charset == BINARY_CHARSET;
            codecs.push(codec(ty, md, col.unsigned, binary, col.length));
        }
        Ok(Layout {
            codecs: codecs.into_boxed_slice(),
        })
    }

    pub fn len(&self) -> usize {
        self.codecs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codecs.is_empty()
    }
}

/// The codec of a column of binlog type `ty` with metadata `md`.
fn codec(ty: u8, md: &[u8], unsigned: bool, binary: bool, length: u32) -> Codec {
    let m0 = md.first().copied().unwrap_or(0);
    let m1 = md.get(1).copied().unwrap_or(0);
    let int = |width| Codec::Int { width, unsigned };
    match ty {
        1 => int(1),
        2 => int(2),
        9 => int(3),
        3 => int(4),
        8 => int(8),
        4 => Codec::Float,
        5 => Codec::Double,
        13 => Codec::Year,
        246 if m1 <= m0 && m0 <= 65 && m0 > 0 => Codec::Decimal {
            precision: m0,
            scale: m1,
        },
        // DATE has not been logged since before row-based replication:
        // it is NEWDATE's layout
        10 | 14 => Codec::Date,
        12 => Codec::OldDateTime,
        11 => Codec::OldTime,
        7 => Codec::OldTimestamp,
        18 if m0 <= 6 => Codec::DateTime2 { fsp: m0 },
        19 if m0 <= 6 => Codec::Time2 { fsp: m0 },
        17 if m0 <= 6 => Codec::Timestamp2 { fsp: m0 },
        15 => Codec::Var {
            prefix: if u16::from_le_bytes([m0, m1]) < 256 {
                1
            } else {
                2
            },
        },
        254 => string(m0, m1, binary, length),
        247 if m1 == 1 || m1 == 2 => Codec::Enum { width: m1 },
        248 if (1..=8).contains(&m1) => Codec::Set { width: m1 },
        249..=252 | 255 | 242 if (1..=4).contains(&m0) => Codec::Blob { prefix: m0 },
        245 if (1..=4).contains(&m0) => Codec::Json { prefix: m0 },
        16 => match (u16::from(m1) * 8 + u16::from(m0)).div_ceil(8) {
            w @ 0..=8 => Codec::Bit { width: w as u8 },
            _ => Codec::Unsupported(16),
        },
        other => Codec::Unsupported(other),
    }
}

/// A STRING column: CHAR/BINARY, or ENUM/SET by the real type in the first
/// metadata byte (with two bits of a long CHAR's length folded into it,
/// MySQL bug #37426).
fn string(m0: u8, m1: u8, binary: bool, length: u32) -> Codec {
    let real = if m0 != 0 { m0 | 0x30 } else { 254 };
    match real {
        247 if m1 == 1 || m1 == 2 => Codec::Enum { width: m1 },
        248 if (1..=8).contains(&m1) => Codec::Set { width: m1 },
        254 => {
            let max = if m0 == 0 {
                usize::from(u16::from_le_bytes([m0, m1]))
            } else if (m0 & 0x30) != 0x30 {
                usize::from(m1) | (usize::from((m0 & 0x30) ^ 0x30) << 4)
            } else {
                usize::from(m1)
            };
            let prefix = if max < 256 { 1 } else { 2 };
            if binary {
                Codec::Binary {
                    prefix,
                    pad: length,
                }
            } else {
                Codec::Var { prefix }
            }
        }
        other => Codec::Unsupported(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_metadata_gives_the_real_type_and_prefix() {
        // CHAR(10) utf8mb4: 40 bytes
        assert_eq!(string(254, 40, false, 40), Codec::Var { prefix: 1 });
        // CHAR(255) utf8mb4: 1020 bytes, two length bits in the type byte
        assert_eq!(
            string(0xFE ^ 0x30, 1020u32 as u8, false, 1020),
            Codec::Var { prefix: 2 }
        );
        assert_eq!(
            string(254, 16, true, 16),
            Codec::Binary { prefix: 1, pad: 16 }
        );
        assert_eq!(string(247, 1, false, 0), Codec::Enum { width: 1 });
        assert_eq!(string(248, 3, false, 0), Codec::Set { width: 3 });
        assert_eq!(string(247, 3, false, 0), Codec::Unsupported(247));
    }

    #[test]
    fn metadata_is_walked_column_by_column() {
        // INT, VARCHAR(300), DECIMAL(12,2), DATETIME(6), BLOB, BIT(10)
        let types = [3, 15, 246, 18, 252, 16];
        let meta = [0x2C, 0x01, 12, 2, 6, 2, 2, 1];
        let cols = TableMapColumns {
            types: &types,
            meta: &meta,
        };
        let schema = TableSchema {
            db: "d".into(),
            table: "t".into(),
            columns: (0..6)
                .map(|i| {
                    crate::source::Column::new(
                        format!("c{i}"),
                        mysql_common::constants::ColumnType::MYSQL_TYPE_LONG,
                    )
                })
                .collect(),
            pk: vec![],
            origin: crate::source::schema::SchemaOrigin::BinlogMetadata,
        };
        let l = Layout::new(&cols, &schema).unwrap();
        assert_eq!(
            &*l.codecs,
            &[
                Codec::Int {
                    width: 4,
                    unsigned: false
                },
                Codec::Var { prefix: 2 },
                Codec::Decimal {
                    precision: 12,
                    scale: 2
                },
                Codec::DateTime2 { fsp: 6 },
                Codec::Blob { prefix: 2 },
                Codec::Bit { width: 2 },
            ]
        );
        let short = TableMapColumns {
            types: &types,
            meta: &meta[..7],
        };
        assert!(Layout::new(&short, &schema).is_err());
    }
}
