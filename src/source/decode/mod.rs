//! The row decoder: rows events → bindable row images, straight from the
//! event bytes.
//!
//! Every path that turns row images into values goes through it: the
//! tailer and the archive reader (full images, [`event`]) and `inspect`
//! (images that leave columns out and partial JSON updates, [`image`]).
//! No row value is parsed by mysql_common, whose row parser is kept only
//! as the reference of the tests (`generic`).
//!
//! mysql_common's generic path parses every value into a `BinlogValue`,
//! re-reads the TABLE_MAP's metadata from its start for each column of
//! each row, builds a column description (with names) per row and value,
//! and its values then need converting to the bindable ones
//! ([`crate::source::row_image`]; `generic` lists how).
//! This decoder reads each table's layout once per TABLE_MAP
//! ([`layout::Layout`], cached per table by the caller) and then walks the
//! images with a bounds-checked cursor ([`bytes::Cursor`]), writing each
//! value in its final form: integers, floats and date-times without any
//! allocation, strings and DECIMAL text with one.
//!
//! The values are the ones the generic path produces (checked against it
//! in its tests and by the fixture binlogs and the server round trips of
//! `tests/crc32.rs`), except where that path is wrong: negative TIME(1)/(2)
//! with a fraction (`temporal`), TIMESTAMPs past 2038, old-format TIMEs
//! of 24 hours or more, and DECIMAL digit groups out of range (refused).
//!
//! Nothing here panics on malformed bytes: every length is checked against
//! the event before it is used, so a corrupt event is an error and never
//! an allocation larger than the event.

pub mod bytes;
pub(crate) mod decimal;
pub mod event;
pub mod image;
pub mod layout;
pub(crate) mod temporal;
pub mod values;

#[cfg(test)]
mod generic;
#[cfg(test)]
mod tests;

pub use event::{Kind, RowsError, RowsEvent, PARTIAL_UPDATE_ROWS};
pub use image::{DiffOp, Field, JsonDiff};
pub use layout::{Codec, Layout, LayoutError, TableMapColumns};

use super::row_image::DecodeError;
use super::schema::TableSchema;

/// The width of the table id in a TABLE_MAP's or rows event's
/// post-header: 4 bytes where the format description gives the type a
/// 6-byte post-header (before MySQL 5.1.4), else 6.
pub fn id_width(event: &mysql_common::binlog::events::Event) -> usize {
    match event.header().event_type() {
        Ok(ty) if event.fde().get_event_type_header_length(ty) == 6 => 4,
        _ => 6,
    }
}

/// An event of raw type `ty` with `body`, framed as in a binlog file
/// without checksums, ending at `log_pos` (for tests).
#[cfg(test)]
pub(crate) fn test_event(ty: u8, log_pos: u32, body: &[u8]) -> mysql_common::binlog::events::Event {
    use mysql_common::binlog::consts::BinlogVersion;
    use mysql_common::binlog::events::{Event, FormatDescriptionEvent};
    let size = 19 + body.len() as u32;
    let mut raw = Vec::new();
    raw.extend(1_700_000_000u32.to_le_bytes());
    raw.push(ty);
    raw.extend(1u32.to_le_bytes());
    raw.extend(size.to_le_bytes());
    raw.extend(log_pos.to_le_bytes());
    raw.extend(0u16.to_le_bytes());
    raw.extend(body);
    let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
    Event::read(&fde, &raw[..]).expect("a well-formed test event")
}

/// A [`RowsError`] as the decoder reports it, naming the table and column.
pub fn decode_error(e: RowsError, schema: &TableSchema) -> DecodeError {
    match e {
        RowsError::Partial { got, expected } => DecodeError::PartialImage {
            table: schema.full_name(),
            got,
            expected,
        },
        RowsError::Malformed(message) => DecodeError::Value {
            table: schema.full_name(),
            column: "(rows event)".into(),
            message,
        },
        RowsError::Value { column, error } => DecodeError::Value {
            table: schema.full_name(),
            column: schema
                .columns
                .get(column)
                .map_or_else(|| format!("@{}", column + 1), |c| c.name.clone()),
            message: match error {
                values::ValueError::Short => "the row image ends inside the value".into(),
                values::ValueError::Bad(m) => m,
            },
        },
    }
}
