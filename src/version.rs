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
}

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
