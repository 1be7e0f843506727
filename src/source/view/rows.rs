//! TABLE_MAP and rows events for the view: each row image decoded column
//! by column, with a `present` marker from the event's column bitmap, so
//! partial images (MINIMAL, NOBLOB, NDB) show what they hold instead of
//! being refused as the pipeline refuses them.

use mysql_common::binlog::events::{Event, EventData, TableMapEvent};
use mysql_common::binlog::jsondiff::{JsonDiff, JsonDiffOperation};
use mysql_common::binlog::row::BinlogRow;
use mysql_common::binlog::value::BinlogValue;

use super::render;
use super::{Cell, EventRecord, EventView, JsonChange, Mapped, RowRecord};
use crate::source::json_binary;
use crate::source::row_image::normalize;
use crate::source::schema::{from_table_map, Column, TableSchema};

/// Column values shown per rows event at most (about 100 MB of records).
const MAX_CELLS: usize = 1_000_000;

impl EventView {
    /// TABLE_MAP: remembers the table for the rows events that follow.
    pub(super) fn table_map(&mut self, event: &Event, rec: &mut EventRecord) -> Result<(), String> {
        let tme: TableMapEvent<'_> = event.read_event().map_err(|e| e.to_string())?;
        let (mut schema, has_names) = from_table_map(&tme).map_err(|e| e.to_string())?;
        if !has_names {
            for (i, c) in schema.columns.iter_mut().enumerate() {
                c.name = format!("@{}", i + 1);
            }
        }
        let columns: Vec<String> = schema
            .columns
            .iter()
            .map(|c| {
                let ty = format!("{:?}", c.ty);
                let ty = ty.trim_start_matches("MYSQL_TYPE_");
                let unsigned = if c.unsigned { " UNSIGNED" } else { "" };
                format!("{} {ty}{unsigned}", c.name)
            })
            .collect();
        rec.table = Some(schema.full_name());
        rec.info = Some(format!(
            "table_id={}; columns: {}{}",
            tme.table_id(),
            columns.join(", "),
            if has_names {
                ""
            } else {
                " (the table map carries no column names)"
            }
        ));
        self.tables.insert(
            tme.table_id(),
            Mapped {
                tme: tme.into_owned(),
                schema,
            },
        );
        Ok(())
    }

    /// WRITE/UPDATE/DELETE (v1, v2), PARTIAL_UPDATE_ROWS, and pre-GA and
    /// MariaDB compressed ones once re-made as those.
    pub(super) fn rows(&mut self, event: &Event, rec: &mut EventRecord) -> Result<(), String> {
        let Some(EventData::RowsEvent(data)) = event.read_data().map_err(|e| e.to_string())? else {
            return Err("not a rows event".into());
        };
        let id = data.table_id();
        rec.info = Some(format!(
            "table_id={id}; {} column(s); flags {}",
            data.num_columns(),
            format!("{:?}", data.flags())
                .trim_start_matches("RowsEventFlags(")
                .trim_end_matches(')')
        ));
        let Some(mapped) = self.tables.get(&id) else {
            return Err(format!(
                "no TABLE_MAP for table id {id} precedes this event, so its values cannot be decoded"
            ));
        };
        rec.table = Some(mapped.schema.full_name());
        let n = usize::try_from(data.num_columns()).map_err(|_| "column count overflows")?;
        // which columns each image holds (one bit per column)
        let before_bits: Option<Vec<bool>> = data
            .columns_before_image()
            .map(|s| (0..n).map(|i| s.get(i).is_some_and(|b| *b)).collect());
        let after_bits: Option<Vec<bool>> = data
            .columns_after_image()
            .map(|s| (0..n).map(|i| s.get(i).is_some_and(|b| *b)).collect());
        let width = mapped.schema.columns.len().max(n).max(1);
        let mut out = Vec::new();
        // every real row takes at least one byte (its null bitmap), and the
        // cells shown per event are capped, so memory follows the event
        let rows = data.rows(&mapped.tme).take(data.rows_data().len());
        for (k, row) in rows.enumerate() {
            if (k + 1) * width > MAX_CELLS {
                rec.rows = Some(out);
                return Err(format!(
                    "more than {MAX_CELLS} column values in one event; the first {k} row(s) are shown"
                ));
            }
            let row = match row {
                Ok(r) => r,
                Err(e) => {
                    let k = out.len() + 1;
                    rec.rows = Some(out);
                    return Err(format!("row {k}: {e}"));
                }
            };
            let (before, after) = row;
            let image = |r: Option<BinlogRow>, present: &Option<Vec<bool>>| {
                r.map(|r| cells(r, present.as_deref().unwrap_or(&[]), &mapped.schema))
                    .transpose()
            };
            out.push(RowRecord {
                before: image(before, &before_bits)?,
                after: image(after, &after_bits)?,
            });
        }
        rec.rows = Some(out);
        Ok(())
    }
}

/// The cells of one row image: every column of the table, those the
/// bitmap leaves out marked not present.
fn cells(mut row: BinlogRow, present: &[bool], schema: &TableSchema) -> Result<Vec<Cell>, String> {
    let mut values = Vec::with_capacity(row.len());
    for i in 0..row.len() {
        values.push(row.take(i).map(|v| v.into_owned()));
    }
    let mut values = values.into_iter();
    let width = schema.columns.len().max(present.len());
    let mut out = Vec::with_capacity(width);
    for i in 0..width {
        let fallback;
        let col = match schema.columns.get(i) {
            Some(c) => c,
            None => {
                fallback = Column::new(
                    format!("@{}", i + 1),
                    mysql_common::constants::ColumnType::MYSQL_TYPE_NULL,
                );
                &fallback
            }
        };
        if !present.get(i).copied().unwrap_or(false) {
            out.push(Cell {
                name: col.name.clone(),
                present: false,
                value: None,
                diff: None,
                text: "(absent)".into(),
            });
            continue;
        }
        let value = values.next().flatten().ok_or_else(|| {
            format!(
                "{}: the image holds fewer values than its bitmap names",
                col.name
            )
        })?;
        out.push(cell(value, col)?);
    }
    Ok(out)
}

/// One present column.
fn cell(value: BinlogValue<'static>, col: &Column) -> Result<Cell, String> {
    if let BinlogValue::JsonDiff(diffs) = &value {
        let changes = diffs
            .iter()
            .map(json_change)
            .collect::<Result<Vec<_>, _>>()?;
        let text = changes
            .iter()
            .fold(col.name.clone(), |doc, c| match &c.value {
                Some(v) => format!("JSON_{}({doc}, '{}', {v})", c.op, c.path),
                None => format!("JSON_{}({doc}, '{}')", c.op, c.path),
            });
        return Ok(Cell {
            name: col.name.clone(),
            present: true,
            value: None,
            diff: Some(changes),
            text,
        });
    }
    let v = normalize(value, col).map_err(|e| format!("{}: {e}", col.name))?;
    Ok(Cell {
        name: col.name.clone(),
        present: true,
        value: Some(render::json(&v, col)),
        diff: None,
        text: render::text(&v, col),
    })
}

fn json_change(d: &JsonDiff<'_>) -> Result<JsonChange, String> {
    let op = match d.operation() {
        JsonDiffOperation::REPLACE => "REPLACE",
        JsonDiffOperation::INSERT => "INSERT",
        JsonDiffOperation::REMOVE => "REMOVE",
    };
    let value = d
        .value()
        .map(json_binary::to_text)
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(JsonChange {
        op: op.into(),
        path: d.path_str().into_owned(),
        value,
    })
}
