//! A rows event (WRITE/UPDATE/DELETE, v1 and v2, and PARTIAL_UPDATE_ROWS)
//! read straight from its bytes: the post-header, the column bitmaps, and
//! the row images, decoded with the table's [`Layout`].
//!
//! The pipeline accepts only full row images (`binlog_row_image=FULL`):
//! every column of the table is in every image, so the column bitmaps are
//! all ones and each image is a NULL bitmap over all columns followed by
//! the non-NULL values. That is checked once per event, from the bitmaps,
//! before any row is read ([`RowsEvent::check_full`], which also refuses
//! PARTIAL_UPDATE_ROWS). `inspect` reads the images that leave columns out
//! as well, through [`super::image`].

use mysql_common::value::Value;

use super::bytes::{Cursor, Short};
use super::layout::Layout;
use super::values::{self, ValueError};

/// `STMT_END_F`: the last rows event of a statement.
const STMT_END: u16 = 1;

/// PARTIAL_UPDATE_ROWS (MySQL 8.0 `binlog_row_value_options=PARTIAL_JSON`):
/// an update whose after images may hold JSON columns as diffs.
pub const PARTIAL_UPDATE_ROWS: u8 = 39;

/// What a rows event does to its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Insert,
    Update,
    Delete,
}

impl Kind {
    /// The kind of a rows event type (v1 23–25, v2 30–32, and 39,
    /// PARTIAL_UPDATE_ROWS: a v2 update), and whether it carries v2 extra
    /// data.
    pub fn of(ty: u8) -> Option<(Kind, bool)> {
        match ty {
            23 => Some((Kind::Insert, false)),
            24 => Some((Kind::Update, false)),
            25 => Some((Kind::Delete, false)),
            30 => Some((Kind::Insert, true)),
            31 | PARTIAL_UPDATE_ROWS => Some((Kind::Update, true)),
            32 => Some((Kind::Delete, true)),
            _ => None,
        }
    }
}

/// Why a rows event cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowsError {
    /// The post-header or the bitmaps do not parse.
    Malformed(String),
    /// Not every column is in the images: `got` of `expected`.
    Partial { got: usize, expected: usize },
    /// A value of column `column` (index) does not decode.
    Value { column: usize, error: ValueError },
}

impl std::fmt::Display for RowsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowsError::Malformed(m) => f.write_str(m),
            RowsError::Partial { got, expected } => {
                write!(f, "row images hold {got} of {expected} columns")
            }
            RowsError::Value { column, error } => {
                write!(f, "column {}: {error:?}", column + 1)
            }
        }
    }
}

impl From<Short> for RowsError {
    fn from(_: Short) -> Self {
        RowsError::Malformed("the event ends inside its header".into())
    }
}

/// A parsed rows event.
#[derive(Debug, Clone, Copy)]
pub struct RowsEvent<'a> {
    pub kind: Kind,
    pub table_id: u64,
    /// The event's flags (`STMT_END_F` and others).
    pub flags: u16,
    pub stmt_end: bool,
    /// The column count the event states.
    pub width: usize,
    /// Columns in its images (the fewest of before and after).
    present: usize,
    /// The column bitmaps: which columns the before (update, delete) and
    /// after (insert, update) images hold, one bit per column.
    pub(super) before_cols: Option<&'a [u8]>,
    pub(super) after_cols: Option<&'a [u8]>,
    /// PARTIAL_UPDATE_ROWS: each after image starts with its value options.
    pub(super) json_diffs: bool,
    pub(super) rows: &'a [u8],
}

impl<'a> RowsEvent<'a> {
    /// Parses the event of raw type `ty` (see [`Kind::of`]) from its body
    /// `data` (without the common header); the table id is `id_width`
    /// bytes (6, or 4 for binlogs before MySQL 5.1.4).
    pub fn parse(ty: u8, id_width: usize, data: &'a [u8]) -> Result<Self, RowsError> {
        let (kind, v2) = Kind::of(ty)
            .ok_or_else(|| RowsError::Malformed(format!("type {ty} is not a rows event")))?;
        let mut c = Cursor::new(data);
        let table_id = c.le(id_width)?;
        let flags = c.le(2)? as u16;
        if v2 {
            let extra = c.le(2)? as usize;
            c.take(extra.saturating_sub(2))?;
        }
        let width = usize::try_from(c.lenenc()?).map_err(|_| Short)?;
        let bitmap = width.div_ceil(8);
        let before_cols = match kind {
            Kind::Insert => None,
            _ => Some(c.take(bitmap)?),
        };
        let after_cols = match kind {
            Kind::Delete => None,
            _ => Some(c.take(bitmap)?),
        };
        let present = [before_cols, after_cols]
            .into_iter()
            .flatten()
            .map(|b| ones(b, width))
            .min()
            .unwrap_or(width);
        Ok(RowsEvent {
            kind,
            table_id,
            flags,
            stmt_end: flags & STMT_END != 0,
            width,
            present,
            before_cols,
            after_cols,
            json_diffs: ty == PARTIAL_UPDATE_ROWS,
            rows: c.rest(),
        })
    }

    /// Checks that the images hold every one of the table's `columns`, in
    /// full (no PARTIAL_UPDATE_ROWS diffs).
    pub fn check_full(&self, columns: usize) -> Result<(), RowsError> {
        if self.json_diffs {
            return Err(RowsError::Malformed(
                "a partial JSON update (PARTIAL_UPDATE_ROWS) has no full after images".into(),
            ));
        }
        if columns == 0 {
            // an image of no column takes no byte: the rows would never end
            return Err(RowsError::Malformed(
                "rows of a table without columns (a damaged event)".into(),
            ));
        }
        if self.width != columns || self.present != columns {
            return Err(RowsError::Partial {
                got: self.present,
                expected: columns,
            });
        }
        Ok(())
    }

    /// The rows, decoded with `layout` (call [`RowsEvent::check_full`]
    /// first): (before, after) images in event order.
    pub fn rows<'l>(&self, layout: &'l Layout) -> Rows<'a, 'l> {
        Rows {
            kind: self.kind,
            layout,
            c: Cursor::new(self.rows),
        }
    }

    /// The number of row changes, walking the images without decoding
    /// them.
    pub fn count(&self, layout: &Layout) -> Result<u64, RowsError> {
        let mut c = Cursor::new(self.rows);
        let mut n = 0;
        let images = if self.kind == Kind::Update { 2 } else { 1 };
        while !c.is_empty() {
            let before = c.rest().len();
            for _ in 0..images {
                skip_image(layout, &mut c)?;
            }
            if c.rest().len() == before {
                return Err(RowsError::Malformed("a row image of no bytes".into()));
            }
            n += 1;
        }
        Ok(n)
    }
}

/// Set bits among the first `width` of `bitmap`.
pub(super) fn ones(bitmap: &[u8], width: usize) -> usize {
    let full: usize = bitmap[..width / 8]
        .iter()
        .map(|b| b.count_ones() as usize)
        .sum();
    let tail = match (width % 8, bitmap.get(width / 8)) {
        (0, _) | (_, None) => 0,
        (bits, Some(b)) => (b & ((1u8 << bits) - 1)).count_ones() as usize,
    };
    full + tail
}

/// One row change: before and after image.
pub type Change = (Option<Vec<Value>>, Option<Vec<Value>>);

/// The row changes of an event, decoded one at a time.
pub struct Rows<'a, 'l> {
    kind: Kind,
    layout: &'l Layout,
    c: Cursor<'a>,
}

impl Iterator for Rows<'_, '_> {
    type Item = Result<Change, RowsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.c.is_empty() {
            return None;
        }
        let mut image = || image(self.layout, &mut self.c);
        let r = match self.kind {
            Kind::Insert => image().map(|a| (None, Some(a))),
            Kind::Delete => image().map(|b| (Some(b), None)),
            Kind::Update => image().and_then(|b| Ok((Some(b), Some(image()?)))),
        };
        if r.is_err() {
            // one error ends the event
            self.c = Cursor::new(&[]);
        }
        Some(r)
    }
}

/// A full row image: its NULL bitmap, then every non-NULL value.
fn image(layout: &Layout, c: &mut Cursor<'_>) -> Result<Vec<Value>, RowsError> {
    let n = layout.codecs.len();
    let nulls = c.take(n.div_ceil(8))?;
    let mut row = Vec::with_capacity(n);
    for (i, codec) in layout.codecs.iter().enumerate() {
        if nulls[i / 8] & (1 << (i % 8)) != 0 {
            row.push(Value::NULL);
            continue;
        }
        let v = values::decode(*codec, c).map_err(|error| RowsError::Value { column: i, error })?;
        row.push(v);
    }
    Ok(row)
}

fn skip_image(layout: &Layout, c: &mut Cursor<'_>) -> Result<(), RowsError> {
    let n = layout.codecs.len();
    let nulls = c.take(n.div_ceil(8))?;
    for (i, codec) in layout.codecs.iter().enumerate() {
        if nulls[i / 8] & (1 << (i % 8)) == 0 {
            values::skip(*codec, c).map_err(|error| RowsError::Value { column: i, error })?;
        }
    }
    Ok(())
}
