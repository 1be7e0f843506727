//! TABLE_MAP and rows events for the view: each row image decoded column
//! by column, with a `present` marker from the event's column bitmap, so
//! partial images (MINIMAL, NOBLOB, NDB) and partial JSON updates
//! (PARTIAL_UPDATE_ROWS) show what they hold instead of being refused as
//! the pipeline refuses them.
//!
//! The images are read by the pipeline's own decoder
//! ([`crate::source::decode::image`]) with the table's layout from its
//! TABLE_MAP, so every value is the one `run` would apply, and a corrupt
//! image is an error at its row (never a panic or an allocation beyond the
//! event).

use mysql_common::binlog::consts::RowsEventFlags;
use mysql_common::binlog::events::{Event, TableMapEvent};

use super::render;
use super::{Cell, EventRecord, EventView, JsonChange, Mapped, RowRecord};
use crate::source::decode::{
    decode_error, id_width, Field, JsonDiff, Layout, RowsEvent, TableMapColumns,
};
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
        // a table map whose layout does not read fails its rows events
        let layout = TableMapColumns::read(event.data(), id_width(event))
            .and_then(|cols| Layout::new(&cols, &schema))
            .map_err(|e| format!("{}: {e}", schema.full_name()));
        self.tables
            .insert(tme.table_id(), Mapped { layout, schema });
        Ok(())
    }

    /// WRITE/UPDATE/DELETE (v1, v2), PARTIAL_UPDATE_ROWS, and pre-GA and
    /// MariaDB compressed ones once re-made as those.
    pub(super) fn rows(&mut self, event: &Event, rec: &mut EventRecord) -> Result<(), String> {
        let ty = event.header().event_type_raw();
        let ev = RowsEvent::parse(ty, id_width(event), event.data()).map_err(|e| e.to_string())?;
        let flags = format!("{:?}", RowsEventFlags::from_bits_truncate(ev.flags));
        rec.info = Some(format!(
            "table_id={}; {} column(s); flags {}",
            ev.table_id,
            ev.width,
            flags
                .trim_start_matches("RowsEventFlags(")
                .trim_end_matches(')')
        ));
        let Some(mapped) = self.tables.get(&ev.table_id) else {
            return Err(format!(
                "no TABLE_MAP for table id {} precedes this event, so its values cannot be decoded",
                ev.table_id
            ));
        };
        let schema = &mapped.schema;
        rec.table = Some(schema.full_name());
        let layout = mapped.layout.as_ref().map_err(Clone::clone)?;
        let why = |e| decode_error(e, schema).to_string();
        let rows = ev.images(layout).map_err(why)?;
        let width = schema.columns.len().max(1);
        let mut out = Vec::new();
        // the decoder ends the event at a row of no bytes, and the cells
        // shown per event are capped, so memory follows the event
        for (k, row) in rows.enumerate() {
            if (k + 1) * width > MAX_CELLS {
                rec.rows = Some(out);
                return Err(format!(
                    "more than {MAX_CELLS} column values in one event; the first {k} row(s) are shown"
                ));
            }
            let (before, after) = match row {
                Ok(r) => r,
                Err(e) => {
                    let k = out.len() + 1;
                    rec.rows = Some(out);
                    return Err(format!("row {k}: {}", why(e)));
                }
            };
            let image = |fields: Option<Vec<Field>>| fields.map(|f| cells(f, schema));
            out.push(RowRecord {
                before: image(before),
                after: image(after),
            });
        }
        rec.rows = Some(out);
        Ok(())
    }
}

/// The cells of one row image: every column of the table, those the
/// image leaves out marked not present.
fn cells(fields: Vec<Field>, schema: &TableSchema) -> Vec<Cell> {
    fields
        .into_iter()
        .zip(&schema.columns)
        .map(|(field, col)| cell(field, col))
        .collect()
}

/// One column.
fn cell(field: Field, col: &Column) -> Cell {
    let name = col.name.clone();
    match field {
        Field::Absent => Cell {
            name,
            present: false,
            value: None,
            diff: None,
            text: "(absent)".into(),
        },
        Field::Value(v) => Cell {
            name,
            present: true,
            value: Some(render::json(&v, col)),
            diff: None,
            text: render::text(&v, col),
        },
        Field::Diff(diffs) => {
            let text = diffs.iter().fold(name.clone(), |doc, d| match &d.value {
                Some(v) => format!("JSON_{}({doc}, '{}', {v})", d.op.name(), d.path),
                None => format!("JSON_{}({doc}, '{}')", d.op.name(), d.path),
            });
            Cell {
                name,
                present: true,
                value: None,
                diff: Some(diffs.into_iter().map(json_change).collect()),
                text,
            }
        }
    }
}

fn json_change(d: JsonDiff) -> JsonChange {
    JsonChange {
        op: d.op.name().into(),
        path: d.path,
        value: d.value,
    }
}
