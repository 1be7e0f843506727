//! The event-level view behind `reshard inspect`: every event of a binlog
//! file as a record (position, type, header fields, the GTID of its
//! transaction, what it says, and for rows events the decoded images),
//! also the events the pipeline refuses (MINIMAL/NOBLOB images,
//! PARTIAL_UPDATE_ROWS, XA, INCIDENT, pre-GA rows events) and those it
//! cannot decode at all, which are shown as such.
//!
//! It shares the framing ([`super::framing`]), the schemas from TABLE_MAP
//! metadata ([`super::schema::from_table_map`]) and the row decoder
//! ([`super::decode`], whose [`super::decode::image`] also reads the images
//! the pipeline refuses) with the pipeline, so what `inspect` prints is
//! what `run` would apply. It keeps no transactions: each event is shown on
//! its own, so a refused event is shown rather than refused. An event whose
//! body does not parse becomes a record with `undecodable` set; nothing an
//! event holds makes [`EventView::view`] fail (a panic inside one of
//! mysql_common's event parsers is caught and shown the same way).
//!
//! The record is the `--json` schema documented in the README ("inspect").

mod names;
mod other;
pub mod render;
mod rows;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use mysql_common::binlog::events::Event;
use serde::Serialize;

pub use names::event_type_name;

use super::framing::{panic_text, Framed};
use super::schema::TableSchema;

/// What `inspect` shows for one event (one JSON object per event).
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    /// The file's name as positions use it.
    pub file: String,
    /// Byte offset of the event (of its TRANSACTION_PAYLOAD for an inner
    /// event).
    pub pos: u64,
    /// For an event inside a TRANSACTION_PAYLOAD: its byte offset in the
    /// decompressed payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner: Option<u64>,
    #[serde(rename = "type")]
    pub type_name: String,
    pub type_code: u8,
    /// Seconds since the epoch (header).
    pub timestamp: u32,
    pub server_id: u32,
    /// The header's `event_size`.
    pub size: u32,
    /// The header's `log_pos` (the end of the event in the server's binlog).
    pub log_pos: u32,
    /// The GTID of the transaction the event belongs to.
    pub gtid: Option<String>,
    /// What the event says, in a line (statement text, XID, next file…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
    /// `db.table` of a TABLE_MAP or rows event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The row images of a rows event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<RowRecord>>,
    /// Why the event (or part of it) could not be decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecodable: Option<String>,
}

/// One row of a rows event.
#[derive(Debug, Clone, Serialize)]
pub struct RowRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Vec<Cell>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<Cell>>,
}

/// One column of a row image.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// From the TABLE_MAP's metadata, else `@1`, `@2`… by position.
    pub name: String,
    /// False when the image does not hold the column (MINIMAL and NOBLOB
    /// images, NDB's partial ones).
    pub present: bool,
    /// The value (see the README for the JSON mapping); absent when the
    /// column is not present or holds a partial JSON update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// A partial JSON update (PARTIAL_UPDATE_ROWS): the changes to apply to
    /// the before image's document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<Vec<JsonChange>>,
    /// The value as text, for the human form.
    #[serde(skip)]
    pub text: String,
}

/// One change of a partial JSON update.
#[derive(Debug, Clone, Serialize)]
pub struct JsonChange {
    /// `REPLACE`, `INSERT` or `REMOVE`.
    pub op: String,
    pub path: String,
    /// The new value as JSON text (not for `REMOVE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A TABLE_MAP as rows events need it: the table's schema and the layout
/// of its row images (or why the layout does not read).
struct Mapped {
    layout: Result<super::decode::Layout, String>,
    schema: TableSchema,
}

/// Turns the events of one file into records, keeping the table maps and
/// the current GTID between them.
pub struct EventView {
    file: String,
    tables: HashMap<u64, Mapped>,
    gtid: Option<String>,
    /// A transaction began (BEGIN, or a MariaDB GTID of one).
    in_txn: bool,
}

/// How an event relates to the transaction around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Txn {
    /// Inside it, or unrelated.
    Inside,
    /// A GTID: the GTID is the next transaction's from here on.
    Gtid,
    /// It ends the transaction (XID, COMMIT, ROLLBACK, a DDL outside one).
    Ends,
}

impl EventView {
    /// A view of the file whose events are named `file` in positions.
    pub fn new(file: impl Into<String>) -> EventView {
        EventView {
            file: file.into(),
            tables: HashMap::new(),
            gtid: None,
            in_txn: false,
        }
    }

    /// The record of one framed event.
    pub fn view(&mut self, framed: &Framed) -> EventRecord {
        let h = framed.event.header();
        let ty = h.event_type_raw();
        let mut rec = EventRecord {
            file: self.file.clone(),
            pos: framed.offset,
            inner: framed.inner,
            type_name: event_type_name(ty),
            type_code: ty,
            timestamp: h.timestamp(),
            server_id: h.server_id(),
            size: h.event_size(),
            log_pos: h.log_pos(),
            gtid: None,
            info: None,
            table: None,
            rows: None,
            undecodable: framed.undecodable.clone(),
        };
        let described = match rec.undecodable {
            // its body is not to be parsed (see `framing`)
            Some(_) => Ok(Ok(Txn::Inside)),
            None => catch_unwind(AssertUnwindSafe(|| self.describe(&framed.event, &mut rec))),
        };
        let txn = match described {
            Ok(Ok(txn)) => txn,
            Ok(Err(why)) => {
                rec.undecodable = Some(why);
                Txn::Inside
            }
            Err(p) => {
                rec.undecodable = Some(format!("the decoder panicked: {}", panic_text(&p)));
                Txn::Inside
            }
        };
        if txn == Txn::Gtid {
            self.gtid = rec.gtid.clone();
        }
        rec.gtid = self.gtid.clone();
        if txn == Txn::Ends {
            self.gtid = None;
            self.in_txn = false;
        }
        rec
    }

    /// Fills in what the event says; tells how it relates to the
    /// transaction around it.
    fn describe(&mut self, event: &Event, rec: &mut EventRecord) -> Result<Txn, String> {
        // the event's own type: a re-made event comes back here
        let ty = event.header().event_type_raw();
        if super::rebuild::is_mariadb_compressed(ty) {
            let plain = super::rebuild::inflate_mariadb(event).map_err(|e| e.0)?;
            return self.describe(&plain, rec);
        }
        if super::rebuild::is_pre_ga_rows(ty) {
            let v1 = super::rebuild::pre_ga_as_v1(event).map_err(|e| e.0)?;
            return self.rows(&v1, rec).map(|()| Txn::Inside);
        }
        match ty {
            23..=25 | 30..=32 | 39 => self.rows(event, rec).map(|()| Txn::Inside),
            19 => self.table_map(event, rec).map(|()| Txn::Inside),
            2 => self.query(event, rec),
            _ => other::describe(event, rec, &mut self.in_txn),
        }
    }

    /// QUERY: the statement; BEGIN opens a transaction, COMMIT and
    /// ROLLBACK end it, and a statement outside one (DDL) is one of its own.
    fn query(&mut self, event: &Event, rec: &mut EventRecord) -> Result<Txn, String> {
        let q: mysql_common::binlog::events::QueryEvent<'_> =
            event.read_event().map_err(|e| e.to_string())?;
        let text = q.query();
        let schema = q.schema();
        rec.info = Some(if schema.is_empty() {
            text.to_string()
        } else {
            format!("use `{schema}`; {text}")
        });
        let upper = text.trim_start().to_ascii_uppercase();
        if upper.starts_with("BEGIN") || upper.starts_with("XA START") {
            self.in_txn = true;
            return Ok(Txn::Inside);
        }
        let ends = upper.starts_with("COMMIT")
            || (upper.starts_with("ROLLBACK") && !upper.contains(" TO "))
            || upper.starts_with("XA COMMIT")
            || upper.starts_with("XA ROLLBACK")
            || upper.starts_with("XA PREPARE")
            || !self.in_txn;
        Ok(if ends { Txn::Ends } else { Txn::Inside })
    }
}
