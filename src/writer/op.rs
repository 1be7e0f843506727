//! Write operations: what the router asks a target shard to do.

use std::sync::Arc;

use mysql_common::value::Value;

use crate::version::Version;

/// A target table as the writer sees it: name, column order and the
/// columns that identify a row.
#[derive(Debug, PartialEq, Eq)]
pub struct TargetTable {
    /// Table name on every target (in the shard's database).
    pub name: String,
    /// The source table (`db.table`) whose rule writes it, for messages.
    pub source: String,
    /// Column names, in the order of [`OpKind::Upsert`] values; the version
    /// column is not among them.
    pub columns: Vec<String>,
    /// Indices into `columns` of the row identity, in key order.
    pub key: Vec<usize>,
}

/// Upsert a whole row, or delete a key leaving a tombstone.
#[derive(Debug, Clone, PartialEq)]
pub enum OpKind {
    Upsert(Vec<Value>),
    Delete,
}

/// One versioned operation on one key of one shard.
#[derive(Debug, Clone)]
pub struct WriteOp {
    /// Index of the shard (in name order of `[targets]`).
    pub shard: usize,
    pub table: Arc<TargetTable>,
    /// Values of the key columns.
    pub key: Vec<Value>,
    /// [`super::keyenc::canonical`] of `key`: the key's identity on the
    /// target (tombstone key, lane hash, batch deduplication); equal for
    /// spellings the key's collation finds equal.
    pub key_enc: Vec<u8>,
    pub kind: OpKind,
    pub version: Version,
}
