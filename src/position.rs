//! Binlog positions: `mysql-bin.000042:1234`.
//!
//! A [`Position`] names the *start* of an event in a binlog file. Positions
//! order by the file's numeric sequence first (the `.000042` suffix, which is
//! what the server uses when it rotates) and by offset second, so comparing
//! two positions of one server's binlog compares their order in the log.
//! Positions of different servers or across `RESET MASTER` are not
//! comparable: that is what the version epoch (see [`crate::version`]) and
//! the checkpoint's server identity are for.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A position in a source's binary log: file name and byte offset of an
/// event start (or of the end of the log, which is the next event start).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    pub file: String,
    pub pos: u64,
}

/// Why a `FILE:POS` string is not a position.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PositionError {
    #[error("binlog position {0:?} must look like FILE:POS, e.g. mysql-bin.000042:1234")]
    Shape(String),
    #[error("binlog position {input:?}: {pos:?} is not a byte offset (a non-negative integer)")]
    Offset { input: String, pos: String },
    #[error(
        "binlog file name {0:?} has no numeric sequence suffix (expected e.g. mysql-bin.000042)"
    )]
    NoSequence(String),
    #[error("binlog position {0:?}: offsets start at 4 (after the magic header)")]
    BeforeHeader(String),
}

impl Position {
    pub fn new(file: impl Into<String>, pos: u64) -> Self {
        Position {
            file: file.into(),
            pos,
        }
    }

    /// The numeric sequence of the file (`mysql-bin.000042` → 42).
    pub fn seq(&self) -> Result<u32, PositionError> {
        file_seq(&self.file)
    }
}

/// The numeric sequence suffix of a binlog file name.
pub fn file_seq(file: &str) -> Result<u32, PositionError> {
    let (_, suffix) = file
        .rsplit_once('.')
        .ok_or_else(|| PositionError::NoSequence(file.to_string()))?;
    if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PositionError::NoSequence(file.to_string()));
    }
    suffix
        .parse::<u32>()
        .map_err(|_| PositionError::NoSequence(file.to_string()))
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

impl FromStr for Position {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (file, pos) = s
            .rsplit_once(':')
            .ok_or_else(|| PositionError::Shape(s.to_string()))?;
        if file.is_empty() || file.contains(char::is_whitespace) {
            return Err(PositionError::Shape(s.to_string()));
        }
        let pos: u64 = pos.parse().map_err(|_| PositionError::Offset {
            input: s.to_string(),
            pos: pos.to_string(),
        })?;
        if pos < 4 {
            return Err(PositionError::BeforeHeader(s.to_string()));
        }
        file_seq(file)?;
        Ok(Position::new(file, pos))
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> Ordering {
        // Files whose names do not parse sort by name; `from_str` rejects
        // them, so this only matters for positions built by hand.
        let a = self.seq().ok();
        let b = other.seq().ok();
        a.cmp(&b)
            .then_with(|| self.file.cmp(&other.file))
            .then_with(|| self.pos.cmp(&other.pos))
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        let p: Position = "mysql-bin.000042:1234".parse().unwrap();
        assert_eq!(p, Position::new("mysql-bin.000042", 1234));
        assert_eq!(p.to_string(), "mysql-bin.000042:1234");
        assert_eq!(p.seq().unwrap(), 42);
    }

    #[test]
    fn file_names_with_colons_use_the_last_colon() {
        let p: Position = "host:a.000001:4".parse().unwrap();
        assert_eq!(p.file, "host:a.000001");
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(matches!(
            "mysql-bin.000001".parse::<Position>(),
            Err(PositionError::Shape(_))
        ));
        assert!(matches!(
            "mysql-bin.000001:x".parse::<Position>(),
            Err(PositionError::Offset { .. })
        ));
        assert!(matches!(
            "mysql-bin.000001:-4".parse::<Position>(),
            Err(PositionError::Offset { .. })
        ));
        assert!(matches!(
            "mysql-bin:4".parse::<Position>(),
            Err(PositionError::NoSequence(_))
        ));
        assert!(matches!(
            "mysql-bin.000001:3".parse::<Position>(),
            Err(PositionError::BeforeHeader(_))
        ));
        assert!(matches!(
            ":4".parse::<Position>(),
            Err(PositionError::Shape(_))
        ));
    }

    #[test]
    fn orders_by_sequence_then_offset_across_rotation() {
        let a: Position = "mysql-bin.000009:90000".parse().unwrap();
        let b: Position = "mysql-bin.000010:4".parse().unwrap();
        let c: Position = "mysql-bin.000010:120".parse().unwrap();
        assert!(a < b && b < c);
        // numeric, not lexical: 1000000 > 999999 although shorter strings sort first
        let d: Position = "mysql-bin.999999:4".parse().unwrap();
        let e: Position = "mysql-bin.1000000:4".parse().unwrap();
        assert!(d < e);
    }
}
