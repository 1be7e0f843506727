//! Row versions: the 128-bit `_reshard_version BINARY(16)` value.
//!
//! Layout, big-endian so that the server's byte-wise comparison of the
//! column is numeric comparison:
//!
//! ```text
//! epoch u16 | binlog file sequence u32 | event start offset u48 | row index u32
//! ```
//!
//! * deterministic: replaying an event yields the same version;
//! * distinct for two row images of one event (row index);
//! * ordered along the binlog across rotation (file sequence before offset);
//! * the epoch lets an operator continue on purpose after the source's
//!   numbering went backwards (`RESET MASTER`, a different server).
//!
//! A field that does not fit is an error ([`VersionError`]), never a wrap:
//! a wrapped version would order *before* what the targets hold and the
//! change would be dropped silently.
//!
//! Tables with `version = { column = … }` use another layout, column value
//! first ([`Version::with_column`]); "Versions" in `docs/architecture.md`
//! argues both.

use std::fmt;

use crate::position::{Position, PositionError};

/// A row version. `Version::ZERO` (16 zero bytes) is the column default and
/// loses against every real version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version(pub u128);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    #[error("event offset {0} does not fit the version's 48-bit offset field")]
    OffsetOverflow(u64),
    #[error("row index {0} does not fit the version's 32-bit row field")]
    RowOverflow(u64),
    #[error(transparent)]
    Position(#[from] PositionError),
    #[error("version must be 16 bytes, got {0}")]
    Length(usize),
    #[error("version column value {0} does not fit the version's 56-bit column field")]
    ColumnOverflow(String),
    #[error("epoch {0} does not fit the 8-bit epoch of column versions (at most 255)")]
    EpochOverflow(u16),
    #[error("binlog file sequence {0} does not fit the 24-bit field of column versions")]
    SeqOverflow(u32),
    #[error("event offset {0} does not fit the 32-bit offset field of column versions")]
    ColumnOffsetOverflow(u64),
    #[error("row {row} of the {span}-byte event (or compressed payload) at offset {offset} of binlog file #{seq} does not fit column versions, which order at most 256 row images per byte of their event")]
    ColumnRowOverflow {
        row: u64,
        span: u64,
        seq: u32,
        offset: u64,
    },
}

/// Row images a column version orders per byte of their event: the
/// multiplier of the event offset in the ordinal (see
/// [`Version::with_column`]).
const ROWS_PER_BYTE: u64 = 256;

const OFFSET_MAX: u64 = (1 << 48) - 1;

impl Version {
    pub const ZERO: Version = Version(0);

    /// Builds a version from its fields, refusing any that overflow.
    pub fn new(epoch: u16, file_seq: u32, offset: u64, row: u64) -> Result<Self, VersionError> {
        if offset > OFFSET_MAX {
            return Err(VersionError::OffsetOverflow(offset));
        }
        let row = u32::try_from(row).map_err(|_| VersionError::RowOverflow(row))?;
        Ok(Version(
            (u128::from(epoch) << 112)
                | (u128::from(file_seq) << 80)
                | (u128::from(offset) << 32)
                | u128::from(row),
        ))
    }

    /// The version of row `row` of the event that starts at `pos`.
    pub fn at(epoch: u16, pos: &Position, row: u64) -> Result<Self, VersionError> {
        Version::new(epoch, pos.seq()?, pos.pos, row)
    }

    /// A version ordered by a source column first (`version = { column =
    /// … }`), binlog order second:
    ///
    /// ```text
    /// epoch u8 | column key u56 | file sequence u24 | ordinal u40
    /// ordinal = event offset × 256 + row index
    /// ```
    ///
    /// `column` is an order-preserving key of the column value (see
    /// [`column_key_int`], [`column_key_datetime`]); `pos` is the start of
    /// the rows event (or compressed payload) holding the row image, `row`
    /// its index there and `span` that event's length in bytes (0 when
    /// unknown; only row 0 is then accepted).
    ///
    /// The ordinal is strictly increasing in binlog order within a file,
    /// so two changes of one key with equal column values (one rows event
    /// or payload holds several images of a key) never tie: row `r` of the
    /// event at offset `o` with length `n` has `o·256 + r < (o + n)·256`,
    /// the ordinal of the next event's first row, as long as `r < 256·n`.
    /// A plain rows event always satisfies that, since every row image
    /// takes at least one byte of it; a compressed payload that packs more
    /// than 256 row images per byte is refused
    /// ([`VersionError::ColumnRowOverflow`]), as is an offset of 2^32 or
    /// more, which a replication stream cannot produce (the event header's
    /// position is 32 bits).
    pub fn with_column(
        epoch: u16,
        column: u64,
        pos: &Position,
        row: u64,
        span: u64,
    ) -> Result<Self, VersionError> {
        Version::with_column_at(epoch, column, pos.seq()?, pos.pos, row, span)
    }

    /// [`Version::with_column`] at the file sequence `seq` and offset
    /// `offset` (e.g. those of a row's position version).
    pub fn with_column_at(
        epoch: u16,
        column: u64,
        seq: u32,
        offset: u64,
        row: u64,
        span: u64,
    ) -> Result<Self, VersionError> {
        let epoch8 = u8::try_from(epoch).map_err(|_| VersionError::EpochOverflow(epoch))?;
        if column >= 1 << 56 {
            return Err(VersionError::ColumnOverflow(column.to_string()));
        }
        if seq >= 1 << 24 {
            return Err(VersionError::SeqOverflow(seq));
        }
        if offset >= 1 << 32 {
            return Err(VersionError::ColumnOffsetOverflow(offset));
        }
        if row > 0 && row >= span.saturating_mul(ROWS_PER_BYTE) {
            return Err(VersionError::ColumnRowOverflow {
                row,
                span,
                seq,
                offset,
            });
        }
        let ordinal = (offset * ROWS_PER_BYTE)
            .checked_add(row)
            .filter(|o| *o < 1 << 40)
            .ok_or(VersionError::ColumnOffsetOverflow(offset))?;
        Ok(Version(
            (u128::from(epoch8) << 120)
                | (u128::from(column) << 64)
                | (u128::from(seq) << 40)
                | u128::from(ordinal),
        ))
    }

    pub fn epoch(self) -> u16 {
        (self.0 >> 112) as u16
    }
    pub fn file_seq(self) -> u32 {
        (self.0 >> 80) as u32
    }
    pub fn offset(self) -> u64 {
        ((self.0 >> 32) as u64) & OFFSET_MAX
    }
    pub fn row(self) -> u32 {
        self.0 as u32
    }

    /// The 16 big-endian bytes stored in `_reshard_version`.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, VersionError> {
        let arr: [u8; 16] = b.try_into().map_err(|_| VersionError::Length(b.len()))?;
        Ok(Version(u128::from_be_bytes(arr)))
    }
}

const COLUMN_BIAS: i128 = 1 << 55;

/// Order-preserving 56-bit key of an integer column value
/// (−2^55 ≤ v < 2^55).
pub fn column_key_int(v: i128) -> Result<u64, VersionError> {
    let k = v + COLUMN_BIAS;
    if (0..(1i128 << 56)).contains(&k) {
        Ok(k as u64)
    } else {
        Err(VersionError::ColumnOverflow(v.to_string()))
    }
}

/// Order-preserving key of a DATE/DATETIME/TIMESTAMP value: milliseconds
/// since 0000-03-01 (the zero date `0000-00-00` is 0). Values within one
/// millisecond tie and are ordered by binlog position.
pub fn column_key_datetime(y: u16, m: u8, d: u8, hh: u8, mm: u8, ss: u8, micros: u32) -> u64 {
    if m == 0 || d == 0 {
        return 0;
    }
    let (y, m) = (i64::from(y), i64::from(m));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe; // since 0000-03-01
    let ms = days * 86_400_000
        + i64::from(hh) * 3_600_000
        + i64::from(mm) * 60_000
        + i64::from(ss) * 1000
        + i64::from(micros / 1000);
    u64::try_from(ms.max(0) + 1).unwrap_or(0)
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.epoch(),
            self.file_seq(),
            self.offset(),
            self.row()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let v = Version::new(3, 42, 123_456, 7).unwrap();
        assert_eq!(
            (v.epoch(), v.file_seq(), v.offset(), v.row()),
            (3, 42, 123_456, 7)
        );
        assert_eq!(Version::from_bytes(&v.to_bytes()).unwrap(), v);
        assert_eq!(v.to_string(), "3/42/123456/7");
    }

    #[test]
    fn byte_order_is_numeric_order() {
        let vs = [
            Version::new(0, 1, 4, 0).unwrap(),
            Version::new(0, 1, 4, 1).unwrap(),
            Version::new(0, 1, 300, 0).unwrap(),
            Version::new(0, 2, 4, 0).unwrap(),
            Version::new(0, 256, 4, 0).unwrap(),
            Version::new(1, 1, 4, 0).unwrap(),
        ];
        for w in vs.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_bytes() < w[1].to_bytes(), "{} vs {}", w[0], w[1]);
        }
        assert!(Version::ZERO.to_bytes() < vs[0].to_bytes());
    }

    #[test]
    fn rotation_orders_later_file_first_offset_above_earlier_file_high_offset() {
        let a = Version::at(0, &"bin.000009:4294967000".parse().unwrap(), 0).unwrap();
        let b = Version::at(0, &"bin.000010:4".parse().unwrap(), 0).unwrap();
        assert!(a < b);
    }

    #[test]
    fn column_versions_order_by_column_then_position() {
        let p1: Position = "b.000001:100".parse().unwrap();
        let p2: Position = "b.000002:4".parse().unwrap();
        let k = |v| column_key_int(v).unwrap();
        let v = |epoch, col, p: &Position| Version::with_column(epoch, col, p, 0, 50).unwrap();
        let a = v(0, k(5), &p2);
        let b = v(0, k(6), &p1);
        assert!(a < b, "a higher column value wins over a later position");
        let c = v(0, k(6), &p2);
        assert!(b < c, "equal values: binlog order");
        assert!(v(0, k(-3), &p2) < a);
        assert!(v(1, k(-3), &p1) > c, "a raised epoch wins");
        assert!(column_key_int(1 << 55).is_err());
        assert!(Version::with_column(256, 0, &p1, 0, 50).is_err());
    }

    /// Equal column values: the row images of one event order by their
    /// index, and every one of them below the next event's first row.
    #[test]
    fn column_versions_of_one_event_never_tie() {
        let at = |pos: &str, row, span| {
            Version::with_column(0, 7, &pos.parse().unwrap(), row, span).unwrap()
        };
        let rows: Vec<Version> = (0..5).map(|r| at("b.000003:1000", r, 40)).collect();
        for w in rows.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_bytes() < w[1].to_bytes());
        }
        // a compressed payload of 40 bytes holding 10,239 row images still
        // orders below the event right after it
        assert!(at("b.000003:1000", 10_239, 40) < at("b.000003:1040", 0, 30));
        assert!(at("b.000003:4294967000", 0, 200) > at("b.000003:1040", 10_000, 100));
        assert!(at("b.000003:4", 3, 10) < at("b.000004:4", 0, 10));
    }

    #[test]
    fn column_version_overflow_is_an_error_not_a_wrap() {
        let p: Position = "b.000001:1000".parse().unwrap();
        assert_eq!(
            Version::with_column(0, 1, &p, 256 * 40, 40),
            Err(VersionError::ColumnRowOverflow {
                row: 256 * 40,
                span: 40,
                seq: 1,
                offset: 1000,
            })
        );
        assert!(Version::with_column(0, 1, &p, 0, 0).is_ok());
        assert!(
            Version::with_column(0, 1, &p, 1, 0).is_err(),
            "unknown span: row 0 only"
        );
        let far: Position = "b.000001:4294967296".parse().unwrap();
        assert_eq!(
            Version::with_column(0, 1, &far, 0, 40),
            Err(VersionError::ColumnOffsetOverflow(1 << 32))
        );
        let top: Position = "b.000001:4294967295".parse().unwrap();
        assert!(Version::with_column(0, 1, &top, 255, 1).is_ok());
        let seq: Position = "b.16777216:4".parse().unwrap();
        assert_eq!(
            Version::with_column(0, 1, &seq, 0, 40),
            Err(VersionError::SeqOverflow(1 << 24))
        );
        assert!(Version::with_column(0, 1 << 56, &p, 0, 40).is_err());
    }

    #[test]
    fn datetime_keys_are_monotonic() {
        let a = column_key_datetime(1999, 12, 31, 23, 59, 59, 999_000);
        let b = column_key_datetime(2000, 1, 1, 0, 0, 0, 0);
        let c = column_key_datetime(2000, 3, 1, 0, 0, 0, 0);
        let d = column_key_datetime(2000, 2, 29, 23, 0, 0, 0);
        assert!(a < b && d < c && b < d);
        assert_eq!(column_key_datetime(0, 0, 0, 0, 0, 0, 0), 0);
        assert!(column_key_datetime(9999, 12, 31, 23, 59, 59, 999_999) < 1 << 56);
        assert!(column_key_datetime(1000, 1, 1, 0, 0, 0, 0) > 0);
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(
            Version::new(0, 1, 1 << 48, 0),
            Err(VersionError::OffsetOverflow(1 << 48))
        );
        assert_eq!(
            Version::new(0, 1, 4, u64::from(u32::MAX) + 1),
            Err(VersionError::RowOverflow(u64::from(u32::MAX) + 1))
        );
        assert!(Version::new(u16::MAX, u32::MAX, (1 << 48) - 1, u64::from(u32::MAX)).is_ok());
        assert!(matches!(
            Version::from_bytes(&[0; 15]),
            Err(VersionError::Length(15))
        ));
    }
}
