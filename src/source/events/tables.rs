//! TABLE_MAP and rows events: which tables are mapped (their schema and
//! column layout, read once per distinct TABLE_MAP until the next DDL),
//! and the rows events held for the open group.
//!
//! A rows event is checked when it is read — its table is mapped, its
//! images are full, its rows walk to the end of the event, the version of
//! its last row fits — and held as it is; its values are decoded when the
//! group's rows are handed out ([`crate::source::spool::Release`]).

use std::sync::Arc;

use mysql_async::Conn;
use mysql_common::binlog::events::{Event, TableMapEvent};

use super::{bad, Decoder, Payload, Placed, Step};
use crate::position::{file_seq, Position};
use crate::source::decode::{decode_error, id_width, Layout, RowsEvent, TableMapColumns};
use crate::source::schema::{complete_with, from_table_map, SchemaOrigin, TableSchema};
use crate::source::spool::{Mapped, Origin, Spool};
use crate::source::SourceError;
use crate::version::Version;

/// Bounds the cache of TABLE_MAPs (tables × their distinct maps).
const MAX_MAPS: usize = 4096;

impl Decoder {
    /// TABLE_MAP: the schema and layout of a mapped table (completed from
    /// the schema history or information_schema when the event has no
    /// column names), or a note that the table is filtered out.
    pub(super) async fn on_table_map(
        &mut self,
        event: &Event,
        ev: &Placed,
        conn: Option<&mut Conn>,
    ) -> Step {
        let width = id_width(event);
        let data = event.data();
        let (Some(id), Some(key)) = (data.get(..width), data.get(width..)) else {
            return Err(bad(
                &ev.start,
                ev.ty,
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        };
        let id = id.iter().rev().fold(0u64, |a, b| (a << 8) | u64::from(*b));
        let mapped = match self.maps.get(key) {
            Some(m) => m.clone(),
            None => {
                let m = self.map_table(event, ev, width, conn).await?;
                if self.maps.len() >= MAX_MAPS {
                    self.maps.clear();
                }
                self.maps.insert(key.to_vec(), m.clone());
                m
            }
        };
        self.tables.insert(id, mapped);
        self.advance(ev);
        Ok(None)
    }

    /// Reads a TABLE_MAP's table: `None` when the filter leaves it out.
    async fn map_table(
        &mut self,
        event: &Event,
        ev: &Placed,
        width: usize,
        conn: Option<&mut Conn>,
    ) -> Result<Option<Arc<Mapped>>, SourceError> {
        let tme: TableMapEvent<'_> = event.read_event().map_err(|e| bad(&ev.start, ev.ty, e))?;
        let db = tme.database_name();
        let table = tme.table_name();
        if !(self.opts.filter)(&db, &table) {
            let full = format!("{db}.{table}");
            if self.ignored_logged.insert(full.clone()) {
                tracing::info!(table = %full, "no shard rule for this table; its changes are ignored");
            }
            return Ok(None);
        }
        let (mut schema, has_names) = from_table_map(&tme).map_err(SourceError::Schema)?;
        if !has_names {
            schema = self.name_columns(schema, &ev.start, conn).await?;
        }
        let layout = TableMapColumns::read(event.data(), width)
            .and_then(|cols| Layout::new(&cols, &schema))
            .map_err(|e| SourceError::Decode {
                position: ev.start.clone(),
                message: format!("{}: {e}", schema.full_name()),
            })?;
        Ok(Some(Arc::new(Mapped {
            schema: Arc::new(schema),
            layout,
        })))
    }

    /// Names the columns of a TABLE_MAP without names: from the schema
    /// history at the event's position when there is one, else from
    /// information_schema now (`conn`), else by position.
    async fn name_columns(
        &mut self,
        mut schema: TableSchema,
        at: &Position,
        conn: Option<&mut Conn>,
    ) -> Result<TableSchema, SourceError> {
        if let Some(h) = self.history.as_ref().filter(|_| self.names_by_history) {
            let (catalog, valid_from) = h.catalog_at(&schema.db, &schema.table, at)?;
            let table = (schema.db.clone(), schema.table.clone());
            return complete_with(schema, catalog).map_err(|e| {
                SourceError::Schema(h.mismatch(e, (&table.0, &table.1), at, valid_from))
            });
        }
        match conn {
            Some(conn) => Ok(self.cache.complete(conn, schema).await?),
            None => {
                positional_names(&mut schema);
                Ok(schema)
            }
        }
    }

    /// WRITE/UPDATE/DELETE rows (v1 and v2).
    pub(super) fn on_rows(&mut self, event: &Event, ev: &Placed) -> Step {
        if self.txn.is_none() {
            self.implicit = true;
        }
        let stmt_end = self.rows(event, ev)?;
        self.advance(ev);
        if stmt_end && self.implicit && self.txn.is_some() && !ev.inner {
            // rows outside BEGIN…COMMIT (non-transactional tables on MySQL
            // 5.1): the end of the statement commits them
            self.implicit = false;
            let end_pos = self.end_position();
            return self.commit(end_pos, ev.timestamp).map(Some);
        }
        Ok(None)
    }

    /// TRANSACTION_PAYLOAD (MySQL binlog_transaction_compression): its
    /// inner events follow.
    pub(super) fn on_payload(&mut self, ev: &Placed) -> Step {
        self.payload = Some(Payload {
            start: ev.start.clone(),
            end: ev.log_pos,
            rows: 0,
        });
        Ok(None)
    }

    /// Checks a rows event and holds it in the open group; true if it ends
    /// its statement.
    fn rows(&mut self, event: &Event, ev: &Placed) -> Result<bool, SourceError> {
        let start = &ev.start;
        let width = id_width(event);
        // the plain type (a MariaDB compressed event was inflated)
        let ty = event.header().event_type_raw();
        let rows = RowsEvent::parse(ty, width, event.data()).map_err(|e| SourceError::Decode {
            position: start.clone(),
            message: format!("rows event: {e}"),
        })?;
        let table = match self.tables.get(&rows.table_id) {
            Some(Some(t)) => t.clone(),
            Some(None) => return Ok(rows.stmt_end),
            None => {
                return Err(SourceError::Definite(format!(
                    "rows event at {start} refers to table id {} without a preceding TABLE_MAP (stream resumed inside a transaction?)",
                    rows.table_id
                )))
            }
        };
        let count = rows
            .check_full(table.layout.len())
            .and_then(|()| rows.count(&table.layout))
            .map_err(|e| SourceError::Decode {
                position: start.clone(),
                message: decode_error(e, &table.schema).to_string(),
            })?;
        let (offset, first_row, span) = match (&self.payload, ev.inner) {
            (Some(p), true) => (p.start.pos, p.rows, p.end.saturating_sub(p.start.pos)),
            _ => (start.pos, 0, u64::from(event.header().event_size())),
        };
        let (file, seq) = self.file_id(start)?;
        let last = first_row + count.saturating_sub(1);
        Version::new(self.opts.epoch, seq, offset, last).map_err(|e| {
            SourceError::Definite(format!(
                "cannot version the row at {}:{offset} (row {last}): {e}",
                self.file
            ))
        })?;
        let origin = Origin {
            ty,
            id_width: width as u8,
            offset,
            first_row,
            span,
            rows: count,
        };
        let budget = &self.budget;
        let spool = self.txn.get_or_insert_with(|| Spool::new(budget.clone()));
        spool.append(&table, (&file, seq), origin, event.data())?;
        if let (Some(p), true) = (self.payload.as_mut(), ev.inner) {
            p.rows = first_row + count;
        }
        Ok(rows.stmt_end)
    }

    /// The current file's name (shared by its rows) and sequence.
    fn file_id(&mut self, at: &Position) -> Result<(Arc<str>, u32), SourceError> {
        if let Some((name, seq)) = &self.file_id {
            if **name == *self.file {
                return Ok((name.clone(), *seq));
            }
        }
        let seq = file_seq(&self.file)
            .map_err(|e| SourceError::Definite(format!("cannot version the rows at {at}: {e}")))?;
        let id = (Arc::<str>::from(self.file.as_str()), seq);
        self.file_id = Some(id.clone());
        Ok(id)
    }
}

/// Without FULL row metadata and without a connection to ask, columns can
/// only be named by position.
fn positional_names(schema: &mut TableSchema) {
    for (i, c) in schema.columns.iter_mut().enumerate() {
        c.name = format!("@{}", i + 1);
    }
    schema.origin = SchemaOrigin::Positional;
}
