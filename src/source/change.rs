//! What the tailer hands to the router: row changes grouped into committed
//! source transactions. Every change carries its version (derived from its
//! event's position) and every transaction the position to resume after it.

use std::sync::Arc;

use mysql_common::value::Value;

use super::schema::TableSchema;
use crate::position::Position;
use crate::version::Version;

/// One decoded row change.
#[derive(Debug, Clone)]
pub struct RowChange {
    pub table: Arc<TableSchema>,
    /// Before image (update, delete).
    pub before: Option<Vec<Value>>,
    /// After image (insert, update).
    pub after: Option<Vec<Value>>,
    pub version: Version,
    /// Start of the rows event (or of the compressed payload) it came from.
    pub position: Position,
    /// Length in bytes of that event or payload (0 for a row read by
    /// `SELECT`): column versions need it to order the row images of one
    /// event ([`crate::version::Version::with_column`]).
    pub span: u64,
}

impl RowChange {
    /// A row read by `SELECT` ([`super::rows`]), as the insert the copy
    /// applies (dry-run and verify route it the same way).
    pub fn selected(
        table: Arc<TableSchema>,
        row: Vec<Value>,
        version: Version,
        position: Position,
    ) -> RowChange {
        RowChange {
            table,
            before: None,
            after: Some(row),
            version,
            position,
            span: 0,
        }
    }

    pub fn kind(&self) -> &'static str {
        match (&self.before, &self.after) {
            (None, Some(_)) => "insert",
            (Some(_), Some(_)) => "update",
            _ => "delete",
        }
    }
}

/// A committed source transaction (or a boundary without rows: DDL, rotate).
#[derive(Debug, Clone)]
pub struct Transaction {
    pub changes: Vec<RowChange>,
    /// Where this transaction ends: the start of the next event.
    pub end: Position,
    /// Where a checkpoint taken after this transaction may resume: `end`,
    /// or, while an XA transaction is prepared but not yet committed or
    /// rolled back, the start of the oldest such PREPARE group (its rows
    /// must be read again after a restart). Always a transaction boundary.
    pub resume: Position,
    /// Commit timestamp (seconds since the epoch), for lag.
    pub timestamp: u32,
}

/// What the tailer yields.
#[derive(Debug)]
pub enum SourceItem {
    Transaction(Transaction),
    /// The source is alive; the position is where it is, given when that
    /// is a boundary a checkpoint may hold (no transaction open, no XA
    /// transaction prepared).
    Heartbeat(Option<Position>),
}
