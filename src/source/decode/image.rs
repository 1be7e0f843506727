//! Row images that may leave columns out, and the JSON diffs of
//! PARTIAL_UPDATE_ROWS: what `inspect` shows for the events the pipeline
//! refuses (`binlog_row_image=MINIMAL`/`NOBLOB`, NDB's partial images,
//! `binlog_row_value_options=PARTIAL_JSON`). Each present value is decoded
//! by [`super::values`], as the pipeline decodes it, so what `inspect`
//! prints for a column is what `run` would apply.
//!
//! # The bytes (MySQL's `pack_row`)
//!
//! An image holds the columns set in its column bitmap: a NULL bitmap with
//! one bit per column *in the image*, then the non-NULL values in column
//! order. The after image of a PARTIAL_UPDATE_ROWS event starts with its
//! value options (a length-encoded integer: 0, or 1 for PARTIAL_JSON) and,
//! with PARTIAL_JSON, one bit per JSON column *of the table* (in column
//! order, in the image or not) telling which JSON values are diffs. A diff
//! value is a 4-byte length, then entries of an operation byte (0 REPLACE,
//! 1 INSERT, 2 REMOVE), a length-encoded path and, but for REMOVE, a
//! length-encoded binary JSON document.
//!
//! As in [`super::event`], every length is checked against the event
//! first: a corrupt event is an error, never a panic, and nothing is
//! allocated beyond what its bytes can hold.

use mysql_common::value::Value;

use super::bytes::{Cursor, Short};
use super::event::{ones, RowsError, RowsEvent};
use super::layout::{Codec, Layout};
use super::values::{self, ValueError};

/// One column of an image.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// The image does not hold the column.
    Absent,
    /// The value (NULL included), as the pipeline decodes it.
    Value(Value),
    /// A partial JSON update: the changes to the before image's document.
    Diff(Vec<JsonDiff>),
}

/// One change of a partial JSON update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonDiff {
    pub op: DiffOp,
    /// The JSON path (`$.a[1]`), lossily UTF-8.
    pub path: String,
    /// The new value as MySQL's JSON text (not for `Remove`).
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffOp {
    Replace,
    Insert,
    Remove,
}

impl DiffOp {
    /// The name MySQL's JSON functions use (`JSON_REPLACE`…).
    pub fn name(self) -> &'static str {
        match self {
            DiffOp::Replace => "REPLACE",
            DiffOp::Insert => "INSERT",
            DiffOp::Remove => "REMOVE",
        }
    }
}

/// One row change: before and after image, every column of the table.
pub type Images = (Option<Vec<Field>>, Option<Vec<Field>>);

impl<'a> RowsEvent<'a> {
    /// The rows, decoded with `layout` whatever columns their images hold;
    /// an error if the event names more columns than the table map.
    pub fn images<'l>(&self, layout: &'l Layout) -> Result<ImageRows<'a, 'l>, RowsError> {
        if self.width > layout.len() {
            return Err(RowsError::Malformed(format!(
                "the event has {} columns, its table map {}",
                self.width,
                layout.len()
            )));
        }
        Ok(ImageRows {
            ev: *self,
            layout,
            c: Cursor::new(self.rows),
            json_columns: layout.codecs.iter().filter(|c| is_json(c)).count(),
        })
    }
}

/// The row changes of an event, decoded one at a time.
pub struct ImageRows<'a, 'l> {
    ev: RowsEvent<'a>,
    layout: &'l Layout,
    c: Cursor<'a>,
    /// JSON columns of the table: the partial bits of a PARTIAL_JSON image.
    json_columns: usize,
}

impl Iterator for ImageRows<'_, '_> {
    type Item = Result<Images, RowsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.c.is_empty() {
            return None;
        }
        let left = self.c.rest().len();
        let r = self.row().and_then(|row| {
            if self.c.rest().len() == left {
                // images of no column would never end the event
                Err(RowsError::Malformed("a row of no bytes".into()))
            } else {
                Ok(row)
            }
        });
        if r.is_err() {
            // one error ends the event
            self.c = Cursor::new(&[]);
        }
        Some(r)
    }
}

impl ImageRows<'_, '_> {
    fn row(&mut self) -> Result<Images, RowsError> {
        let before = match self.ev.before_cols {
            Some(cols) => Some(self.image(cols, false)?),
            None => None,
        };
        let after = match self.ev.after_cols {
            Some(cols) => Some(self.image(cols, self.ev.json_diffs)?),
            None => None,
        };
        Ok((before, after))
    }

    /// One image holding the columns set in `cols`; `options`: it starts
    /// with value options (the after image of PARTIAL_UPDATE_ROWS).
    fn image(&mut self, cols: &[u8], options: bool) -> Result<Vec<Field>, RowsError> {
        let short = |_: Short| RowsError::Malformed("the event ends inside a row image".into());
        let partial = match options {
            true => value_options(&mut self.c, self.json_columns)?,
            false => None,
        };
        let nulls = self
            .c
            .take(ones(cols, self.ev.width).div_ceil(8))
            .map_err(short)?;
        let mut out = Vec::with_capacity(self.layout.len());
        let (mut in_image, mut json) = (0, 0);
        for (i, codec) in self.layout.codecs.iter().enumerate() {
            let diff = is_json(codec) && {
                json += 1;
                partial.is_some_and(|bits| bit(bits, json - 1))
            };
            if i >= self.ev.width || !bit(cols, i) {
                out.push(Field::Absent);
                continue;
            }
            in_image += 1;
            let field = if bit(nulls, in_image - 1) {
                Ok(Field::Value(Value::NULL))
            } else if diff {
                json_diffs(&mut self.c).map(Field::Diff)
            } else {
                values::decode(*codec, &mut self.c).map(Field::Value)
            };
            out.push(field.map_err(|error| RowsError::Value { column: i, error })?);
        }
        Ok(out)
    }
}

/// A JSON column (a binary JSON type, whatever its metadata): one partial
/// bit each.
fn is_json(codec: &Codec) -> bool {
    matches!(codec, Codec::Json { .. } | Codec::Unsupported(245))
}

/// Bit `i` of a bitmap, least significant first (`i` within it).
fn bit(bitmap: &[u8], i: usize) -> bool {
    bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// The value options of a PARTIAL_UPDATE_ROWS after image, and with
/// PARTIAL_JSON its partial bits (`json_columns` of them).
fn value_options<'a>(
    c: &mut Cursor<'a>,
    json_columns: usize,
) -> Result<Option<&'a [u8]>, RowsError> {
    let short = |_: Short| RowsError::Malformed("the event ends inside the value options".into());
    match c.lenenc().map_err(short)? {
        0 => Ok(None),
        1 => c.take(json_columns.div_ceil(8)).map(Some).map_err(short),
        other => Err(RowsError::Malformed(format!(
            "unknown value options {other} in a partial JSON update"
        ))),
    }
}

/// A JSON column's value as diffs.
fn json_diffs(c: &mut Cursor<'_>) -> Result<Vec<JsonDiff>, ValueError> {
    let n = c.le(4)? as usize;
    let mut d = Cursor::new(c.take(n)?);
    let mut out = Vec::new();
    while !d.is_empty() {
        let op = match d.u8()? {
            0 => DiffOp::Replace,
            1 => DiffOp::Insert,
            2 => DiffOp::Remove,
            other => {
                return Err(ValueError::Bad(format!(
                    "unknown JSON diff operation {other}"
                )))
            }
        };
        let path = d
            .lenenc()
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))?;
        let path = String::from_utf8_lossy(d.take(path)?).into_owned();
        let value = match op {
            DiffOp::Remove => None,
            _ => {
                let n = d
                    .lenenc()
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX))?;
                Some(values::json_text(d.take(n)?)?)
            }
        };
        out.push(JsonDiff { op, path, value });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::decode::event::PARTIAL_UPDATE_ROWS;

    fn layout(codecs: &[Codec]) -> Layout {
        Layout {
            codecs: codecs.into(),
        }
    }

    const INT: Codec = Codec::Int {
        width: 4,
        unsigned: false,
    };
    const JSON: Codec = Codec::Json { prefix: 4 };

    /// Binary JSON of the integer `n` (an int16 scalar).
    fn json_int(n: u8) -> Vec<u8> {
        vec![5, n, 0]
    }

    #[test]
    fn minimal_images_hold_only_their_columns() {
        // DELETE of (INT, INT, INT): the before image holds columns 1 and 3,
        // the third NULL
        let mut body = vec![7, 0, 0, 0, 0, 0, 1, 0, 2, 0, 3, 0b101];
        body.extend([0b10, 42, 0, 0, 0]);
        let ev = RowsEvent::parse(32, 6, &body).unwrap();
        assert!(ev.check_full(3).is_err());
        let l = layout(&[INT, INT, INT]);
        let rows: Vec<_> = ev.images(&l).unwrap().collect();
        assert_eq!(
            rows,
            vec![Ok((
                Some(vec![
                    Field::Value(Value::Int(42)),
                    Field::Absent,
                    Field::Value(Value::NULL)
                ]),
                None
            ))]
        );
        // more columns in the event than in the table map
        assert!(ev.images(&layout(&[INT, INT])).is_err());
    }

    /// PARTIAL_UPDATE_ROWS of (INT, JSON, JSON): the after image holds a
    /// diff for the first JSON column and a full document for the second.
    #[test]
    fn partial_json_updates_are_diffs() {
        let mut body = vec![7, 0, 0, 0, 0, 0, 1, 0, 2, 0, 3, 0b111, 0b111];
        // before: (1, 2, 3)
        body.push(0);
        body.extend(1i32.to_le_bytes());
        for n in [2, 3] {
            body.extend(3u32.to_le_bytes());
            body.extend(json_int(n));
        }
        // after: PARTIAL_JSON, partial bits 0b01, no NULLs
        body.extend([1, 0b01, 0]);
        body.extend(1i32.to_le_bytes());
        let mut diffs = vec![0, 5];
        diffs.extend(b"$.age");
        diffs.push(3);
        diffs.extend(json_int(7));
        diffs.extend([2, 3]);
        diffs.extend(b"$.x");
        body.extend((diffs.len() as u32).to_le_bytes());
        body.extend(&diffs);
        body.extend(3u32.to_le_bytes());
        body.extend(json_int(9));
        let ev = RowsEvent::parse(PARTIAL_UPDATE_ROWS, 6, &body).unwrap();
        assert!(ev.check_full(3).is_err(), "the pipeline refuses it");
        let l = layout(&[INT, JSON, JSON]);
        let rows: Vec<_> = ev.images(&l).unwrap().map(Result::unwrap).collect();
        let json = |s: &str| Field::Value(Value::Bytes(s.as_bytes().to_vec()));
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].0,
            Some(vec![Field::Value(Value::Int(1)), json("2"), json("3")])
        );
        assert_eq!(
            rows[0].1,
            Some(vec![
                Field::Value(Value::Int(1)),
                Field::Diff(vec![
                    JsonDiff {
                        op: DiffOp::Replace,
                        path: "$.age".into(),
                        value: Some("7".into())
                    },
                    JsonDiff {
                        op: DiffOp::Remove,
                        path: "$.x".into(),
                        value: None
                    }
                ]),
                json("9"),
            ])
        );
        // every truncation is an error, never a panic
        for n in 14..body.len() {
            if let Ok(ev) = RowsEvent::parse(PARTIAL_UPDATE_ROWS, 6, &body[..n]) {
                let r: Vec<_> = ev.images(&l).unwrap().collect();
                assert!(r.iter().any(Result::is_err), "{n}");
            }
        }
    }

    #[test]
    fn unknown_value_options_and_operations_are_errors() {
        let mut c = Cursor::new(&[2]);
        assert!(value_options(&mut c, 1).is_err());
        let mut c = Cursor::new(&[3, 0, 0, 0, 9, 0, 0]);
        assert!(json_diffs(&mut c).is_err());
        // a path longer than the diff
        let mut c = Cursor::new(&[3, 0, 0, 0, 2, 9, b'$']);
        assert_eq!(json_diffs(&mut c), Err(ValueError::Short));
    }

    #[test]
    fn images_of_no_bytes_end_the_event() {
        // a WRITE whose image holds no column: no NULL bitmap, no value
        let body = [7, 0, 0, 0, 0, 0, 1, 0, 2, 0, 1, 0, 0xAA];
        let ev = RowsEvent::parse(30, 6, &body).unwrap();
        let l = layout(&[INT]);
        let r: Vec<_> = ev.images(&l).unwrap().collect();
        assert_eq!(r.len(), 1);
        assert!(r[0].is_err());
    }
}
