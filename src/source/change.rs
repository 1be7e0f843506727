//! What the tailer hands to the router: the row changes of committed
//! source transactions, in bounded chunks ([`SourceItem::Rows`]) followed
//! by the transaction's end ([`SourceItem::Transaction`]). Every change
//! carries its version (derived from its event's position) and every
//! transaction the position to resume after it.

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
    /// Its version: also where it is in the binlog, as integers (file
    /// sequence and start of its rows event or compressed payload, and the
    /// row's index there; see [`RowChange::position`]).
    pub version: Version,
    /// Length in bytes of that event or payload (0 for a row read by
    /// `SELECT`): column versions need it to order the row images of one
    /// event ([`crate::version::Version::with_column`]).
    pub span: u64,
    /// The name of the binlog file it is in, shared by every row of the
    /// file (for messages and dead letters).
    pub file: Arc<str>,
}

impl RowChange {
    /// A row read by `SELECT` ([`super::rows`]) at `position`, as the
    /// insert the copy applies (dry-run and verify route it the same way).
    pub fn selected(
        table: Arc<TableSchema>,
        row: Vec<Value>,
        version: Version,
        file: Arc<str>,
    ) -> RowChange {
        RowChange {
            table,
            before: None,
            after: Some(row),
            version,
            span: 0,
            file,
        }
    }

    /// Start of the rows event (or of the compressed payload) it came
    /// from; for a row read by `SELECT`, the copy's position.
    pub fn position(&self) -> Position {
        Position::new(&*self.file, self.version.offset())
    }

    pub fn kind(&self) -> &'static str {
        match (&self.before, &self.after) {
            (None, Some(_)) => "insert",
            (Some(_), Some(_)) => "update",
            _ => "delete",
        }
    }
}

/// Row changes of a committed transaction, in binlog order: a transaction
/// with rows is handed out as one or more chunks of bounded size, then its
/// [`Transaction`].
#[derive(Debug, Clone)]
pub struct Chunk {
    pub changes: Vec<RowChange>,
    /// The end of the transaction they belong to (its commit is read
    /// before any of its rows is handed out).
    pub end: Position,
}

/// The end of a committed source transaction, after its rows (or a
/// boundary without rows: DDL, rotate).
#[derive(Debug, Clone)]
pub struct Transaction {
    /// Where this transaction ends: the start of the next event.
    pub end: Position,
    /// Where a checkpoint taken after this transaction may resume: `end`,
    /// or, while an XA transaction is prepared but not yet committed or
    /// rolled back, the start of the oldest such PREPARE group (its rows
    /// must be read again after a restart). Always a transaction boundary.
    pub resume: Position,
    /// Commit timestamp (seconds since the epoch), for lag.
    pub timestamp: u32,
    /// Row changes handed out in its chunks.
    pub rows: u64,
}

/// What the tailer yields.
#[derive(Debug)]
pub enum SourceItem {
    /// Rows of the transaction whose [`SourceItem::Transaction`] follows.
    Rows(Chunk),
    Transaction(Transaction),
    /// The source is alive; the position is where it is, given when that
    /// is a boundary a checkpoint may hold (no transaction open, no XA
    /// transaction prepared).
    Heartbeat(Option<Position>),
}
