//! Bounds checked before mysql_common parses an event body read from a
//! file: `framing` runs [`check`] on every framed event and hands an event
//! that fails on as undecodable, so no parser below sees it.
//!
//! # Why
//!
//! A file's bytes are untrusted (a damaged copy, a truncated upload, a CRC
//! recomputed over damage). Some of mysql_common's parsers index or reserve
//! by a count or length read from the body without checking it against the
//! bytes that are there, or `unwrap` a conversion of a value read from it:
//! a panic (caught by `framing` as a last line of defence, but still a
//! parser run on bad input) or an allocation of any size (which aborts the
//! process and cannot be caught). Each check below walks the body exactly
//! as that parser will, with every count and length bounded by the bytes
//! left, so what passes is what the parser reads without panicking; a body
//! the parser would only reject with an error may pass (its error is then
//! reported as usual).
//!
//! The checks live here rather than in the parsers so that they hold for
//! whichever mysql_common release reshard is built with (the crates.io
//! release, unpatched). Row images are not parsed by mysql_common at all:
//! the row decoder ([`super::decode`]) checks every length itself.

use mysql_common::binlog::consts::EventType;
use mysql_common::binlog::events::{Event, TableMapEvent};
use mysql_common::constants::ColumnType;

use super::framing::guarded;

const PREVIOUS_GTIDS: u8 = EventType::PREVIOUS_GTIDS_EVENT as u8;
const TRANSACTION_PAYLOAD: u8 = EventType::TRANSACTION_PAYLOAD_EVENT as u8;
const TABLE_MAP: u8 = EventType::TABLE_MAP_EVENT as u8;

/// Checks an event's body; `Err(why)` when a parser would read beyond it
/// or reserve more than it holds.
pub fn check(event: &Event) -> Result<(), String> {
    let data = event.data();
    match event.header().event_type_raw() {
        PREVIOUS_GTIDS => previous_gtids(data),
        TRANSACTION_PAYLOAD => transaction_payload(data),
        TABLE_MAP => match guarded(|| event.read_event::<TableMapEvent<'_>>()) {
            Ok(tme) => {
                column_metadata(&tme)?;
                let narrow = event
                    .fde()
                    .get_event_type_header_length(EventType::TABLE_MAP_EVENT)
                    == 6;
                optional_metadata(data, narrow).map_or(Ok(()), enum_and_set_lists)
            }
            // mysql_common's own (checked) parse fails: its error is reported
            Err(_) => Ok(()),
        },
        _ => Ok(()),
    }
}

/// A cursor over a body that never reads past it.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let (head, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(head)
    }

    fn uint(&mut self, n: u64) -> Option<u64> {
        let b = self.take(n)?;
        Some(
            b.iter()
                .rev()
                .fold(0u64, |acc, x| (acc << 8) | u64::from(*x)),
        )
    }

    /// MySQL's variable-length integer (the first byte's trailing ones
    /// count the bytes that follow; all ones: a raw u64 follows).
    fn varlen(&mut self) -> Option<u64> {
        let first = *self.rest.first()?;
        let ones = u64::from(first.trailing_ones());
        if ones == 8 {
            self.take(1)?;
            return self.uint(8);
        }
        Some(self.uint(ones + 1)? >> (ones + 1))
    }

    /// A length-encoded integer; `0xfb` and `0xff` read as 0, as
    /// mysql_common's unchecked `eat_lenenc_int` does.
    fn lenenc(&mut self) -> Option<u64> {
        match self.uint(1)? {
            x @ 0..=0xfa => Some(x),
            0xfc => self.uint(2),
            0xfd => self.uint(3),
            0xfe => self.uint(8),
            _ => Some(0),
        }
    }
}

/// MySQL's TRANSACTION_PAYLOAD header: fields `(type, length, value)` up to
/// an end mark, then the payload. mysql_common's parser skips an unknown
/// field by its length unchecked, and `unwrap`s the conversions of a field
/// type above 255 and of an unknown compression type.
fn transaction_payload(body: &[u8]) -> Result<(), String> {
    let bad = |what: &str| Err(format!("malformed TRANSACTION_PAYLOAD header: {what}"));
    let mut c = Cursor { rest: body };
    while !c.rest.is_empty() {
        let Some(field) = c.lenenc() else {
            return bad("a field type runs past the event");
        };
        match field {
            0 => return Ok(()), // end mark: the parser checks the payload size
            1..=3 => {
                let (Some(_), Some(value)) = (c.lenenc(), c.lenenc()) else {
                    return bad("a field runs past the event");
                };
                if field == 2 && value != 0 && value != 255 {
                    return bad(&format!("unknown compression type {value}"));
                }
            }
            4..=255 => {
                let skipped = c.lenenc().and_then(|len| c.take(len));
                if skipped.is_none() {
                    return bad(&format!("field {field} runs past the event"));
                }
            }
            _ => return bad(&format!("field type {field} is not a byte")),
        }
    }
    Ok(())
}

/// A TABLE_MAP's column metadata, which the row parser indexes unchecked:
///
/// * every column of a known type has its metadata (the parser indexes an
///   empty slice for a column whose metadata the block is too short for);
/// * `DECIMAL(p, s)`: the parser computes `p - s` and sizes a buffer by it,
///   so `s > p` underflows (a buffer of any size). MySQL allows `p <= 65`,
///   `s <= 30`, `s <= p`.
///
/// From the first column of a type mysql_common does not know on, the
/// parser fails with an error, so nothing after it is checked.
fn column_metadata(tme: &TableMapEvent<'_>) -> Result<(), String> {
    for i in 0..tme.columns_count() as usize {
        let Ok(Some(ty)) = tme.get_column_type(i) else {
            break;
        };
        let Some(md) = tme.get_column_metadata(i) else {
            return Err(format!(
                "malformed TABLE_MAP: the metadata of column {} ({ty:?}) is cut short",
                i + 1
            ));
        };
        if let (ColumnType::MYSQL_TYPE_NEWDECIMAL, &[precision, scale]) = (ty, md) {
            if precision > 65 || scale > 30 || scale > precision {
                return Err(format!(
                    "malformed TABLE_MAP: column {} is DECIMAL({precision},{scale})",
                    i + 1
                ));
            }
        }
    }
    Ok(())
}

/// The optional metadata at the end of a TABLE_MAP body (`narrow`: a 4-byte
/// table id), walked as mysql_common's parse (which succeeded) walked it.
fn optional_metadata(data: &[u8], narrow: bool) -> Option<&[u8]> {
    let mut c = Cursor { rest: data };
    c.take(if narrow { 4 } else { 6 } + 2)?; // table id, flags
    for _ in 0..2 {
        let len = c.uint(1)?; // database, then table: length, name, NUL
        c.take(len + 1)?;
    }
    let columns = c.lenenc()?;
    c.take(columns)?;
    let metadata = c.lenenc()?;
    c.take(metadata)?;
    c.take(columns.div_ceil(8))?; // null bitmap
    Some(c.rest)
}

/// The ENUM and SET value lists of the optional metadata
/// (`binlog_row_metadata=FULL`), whose parser reserves by each list's
/// count. Fields are `(type, length, value)`; one cut short is the
/// parser's error.
fn enum_and_set_lists(optional: &[u8]) -> Result<(), String> {
    let mut tlvs = Cursor { rest: optional };
    while let (Some(ty), Some(len)) = (tlvs.uint(1), tlvs.lenenc()) {
        let Some(value) = tlvs.take(len) else {
            break;
        };
        if ty == SET_STR_VALUE || ty == ENUM_STR_VALUE {
            value_lists(value)?;
        }
    }
    Ok(())
}

/// `OptionalMetadataFieldType` SET_STR_VALUE and ENUM_STR_VALUE.
const SET_STR_VALUE: u64 = 5;
const ENUM_STR_VALUE: u64 = 6;

/// Per ENUM or SET column: a count, then that many length-encoded strings;
/// every string takes at least one byte.
fn value_lists(value: &[u8]) -> Result<(), String> {
    let mut c = Cursor { rest: value };
    while !c.rest.is_empty() {
        let Some(count) = c.lenenc() else {
            return Ok(());
        };
        if count > c.rest.len() as u64 {
            return Err(format!(
                "malformed TABLE_MAP: an ENUM/SET list claims {count} values in {} bytes",
                c.rest.len()
            ));
        }
        for _ in 0..count {
            if c.lenenc().and_then(|n| c.take(n)).is_none() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// MySQL's PREVIOUS_GTIDS: a header (format byte and SID count), then per
/// SID a 16-byte UUID, a tag (MySQL 8.3+ tagged format: a variable-length
/// length and the tag), an interval count and the 16-byte intervals. The
/// parser reserves by the counts, so each is walked against the bytes
/// left (every SID takes at least 24 bytes, every interval 16).
fn previous_gtids(body: &[u8]) -> Result<(), String> {
    let bad = || {
        format!(
            "malformed PREVIOUS_GTIDS event: its counts exceed its {} bytes",
            body.len()
        )
    };
    let mut c = Cursor { rest: body };
    let header = c.uint(8).ok_or_else(bad)?;
    let tagged = header >> 56 != 0;
    let sids = if tagged {
        (header >> 8) & ((1 << 48) - 1)
    } else {
        header & ((1 << 56) - 1)
    };
    if sids.saturating_mul(24) > c.rest.len() as u64 {
        return Err(bad());
    }
    for _ in 0..sids {
        c.take(16).ok_or_else(bad)?;
        if tagged {
            let len = c.varlen().ok_or_else(bad)?;
            c.take(len).ok_or_else(bad)?;
        }
        let intervals = c.uint(8).ok_or_else(bad)?;
        c.take(intervals.checked_mul(16).ok_or_else(bad)?)
            .ok_or_else(bad)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_payload_fields_are_bounded() {
        // size 3, type ZSTD, end, 3 payload bytes
        let good = [1, 1, 3, 2, 1, 0, 0, 9, 9, 9];
        assert!(transaction_payload(&good).is_ok());
        // an unknown field claiming 200 bytes
        assert!(transaction_payload(&[7, 200, 1, 2]).is_err());
        // a field type beyond a byte (0xfc: two bytes follow)
        assert!(transaction_payload(&[0xfc, 0x2c, 0x01]).is_err());
        // an unknown compression type
        assert!(transaction_payload(&[1, 1, 3, 2, 1, 7, 0]).is_err());
        // a field cut short
        assert!(transaction_payload(&[1, 1]).is_err());
    }

    #[test]
    fn enum_and_set_lists_are_bounded() {
        // two lists: ('a','bc') and ('x')
        assert!(value_lists(&[2, 1, b'a', 2, b'b', b'c', 1, 1, b'x']).is_ok());
        // a count beyond the bytes
        assert!(value_lists(&[0xfc, 0xff, 0xff, 1, b'a']).is_err());
    }

    #[test]
    fn previous_gtids_counts_are_bounded() {
        let mut one = 1u64.to_le_bytes().to_vec();
        one.extend([0xAB; 16]);
        one.extend(1u64.to_le_bytes());
        one.extend([0; 16]);
        assert!(previous_gtids(&one).is_ok());
        let mut huge = one.clone();
        huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(previous_gtids(&huge).is_err());
        let many = (1u64 << 40).to_le_bytes();
        assert!(previous_gtids(&many).is_err());
        // tagged: format 1, one SID, tag "ab" (length 2 as varlen: 2 << 1)
        let mut tagged = ((1u64 << 56) | (1 << 8) | 1).to_le_bytes().to_vec();
        tagged.extend([0xCD; 16]);
        tagged.extend([4, b'a', b'b']);
        tagged.extend(1u64.to_le_bytes());
        tagged.extend([0; 16]);
        assert!(previous_gtids(&tagged).is_ok());
        tagged.truncate(tagged.len() - 1);
        assert!(previous_gtids(&tagged).is_err());
    }
}
