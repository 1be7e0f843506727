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
    /// Where to resume after this transaction: the start of the next event.
    pub end: Position,
    /// Commit timestamp (seconds since the epoch), for lag.
    pub timestamp: u32,
}

/// What the tailer yields.
#[derive(Debug)]
pub enum SourceItem {
    Transaction(Transaction),
    /// The source is alive; the position is a boundary when not inside a
    /// transaction.
    Heartbeat(Option<Position>),
}
