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
    /// The row's values in [`TargetTable::columns`] order; its key is the
    /// values at [`TargetTable::key`].
    Upsert(Vec<Value>),
    /// The key's values, in key order.
    Delete(Vec<Value>),
}

impl OpKind {
    pub fn is_delete(&self) -> bool {
        matches!(self, OpKind::Delete(_))
    }
}

/// One versioned operation on one key of one shard.
#[derive(Debug, Clone)]
pub struct WriteOp {
    /// Index of the shard (in name order of `[targets]`).
    pub shard: usize,
    pub table: Arc<TargetTable>,
    /// [`super::keyenc::canonical`] of the key ([`WriteOp::key`]): the
    /// key's identity on the target (tombstone key, lane hash, batch
    /// deduplication); equal for spellings the key's collation finds
    /// equal.
    pub key_enc: Vec<u8>,
    pub kind: OpKind,
    pub version: Version,
    /// [`WriteOp::bytes`], weighed once when it is made, while its values
    /// are in the cache: the coordinator, the queue and the lane's batch
    /// read it for every operation.
    bytes: usize,
}

impl WriteOp {
    /// An operation, weighed ([`WriteOp::bytes`]).
    pub fn new(
        shard: usize,
        table: Arc<TargetTable>,
        key_enc: Vec<u8>,
        kind: OpKind,
        version: Version,
    ) -> WriteOp {
        let (OpKind::Upsert(values) | OpKind::Delete(values)) = &kind;
        let values: usize = values.iter().map(value_bytes).sum();
        let bytes = std::mem::size_of::<WriteOp>() + key_enc.len() + values;
        WriteOp {
            shard,
            table,
            key_enc,
            kind,
            version,
            bytes,
        }
    }

    /// The values of the key columns, in key order: an upsert's from its
    /// row (an upsert does not carry its key twice: one allocation and
    /// one copy of it less per row of the initial copy), a delete's own.
    pub fn key(&self) -> impl Iterator<Item = &Value> + '_ {
        let (row, key) = match &self.kind {
            OpKind::Upsert(row) => (Some(row), None),
            OpKind::Delete(key) => (None, Some(key)),
        };
        let from_row = row
            .into_iter()
            .flat_map(|row| self.table.key.iter().filter_map(|&i| row.get(i)));
        from_row.chain(key.into_iter().flatten())
    }

    /// About the memory the operation holds, in bytes, as it was made:
    /// itself, its values and what they point to, and its key's encoding.
    /// Lane queues, the coordinator's slices and lane batches are bounded
    /// by these bytes as well as by operation counts, so that wide rows
    /// are held by their size (`docs/architecture.md`, "Large
    /// transactions").
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The memory a value holds: itself and its bytes.
fn value_bytes(v: &Value) -> usize {
    std::mem::size_of::<Value>()
        + match v {
            Value::Bytes(b) => b.len(),
            _ => 0,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upserts_key_is_read_from_its_row_in_key_order() {
        let table = Arc::new(TargetTable {
            name: "t".into(),
            source: "d.t".into(),
            columns: vec!["a".into(), "b".into(), "c".into()],
            key: vec![2, 0],
        });
        let row = vec![Value::Int(1), Value::Int(2), Value::Int(3)];
        let op = |kind| WriteOp::new(0, table.clone(), Vec::new(), kind, Version(1));
        let up = op(OpKind::Upsert(row));
        assert!(!up.kind.is_delete());
        let key: Vec<&Value> = up.key().collect();
        assert_eq!(key, [&Value::Int(3), &Value::Int(1)]);
        let del = op(OpKind::Delete(vec![Value::Int(3), Value::Int(1)]));
        assert!(del.kind.is_delete());
        let key: Vec<&Value> = del.key().collect();
        assert_eq!(key, [&Value::Int(3), &Value::Int(1)]);
    }

    #[test]
    fn an_operation_weighs_its_values_bytes() {
        let table = Arc::new(TargetTable {
            name: "t".into(),
            source: "d.t".into(),
            columns: vec!["a".into(), "b".into()],
            key: vec![0],
        });
        let op = |body: usize| {
            let row = vec![Value::Int(1), Value::Bytes(vec![b'x'; body])];
            WriteOp::new(
                0,
                table.clone(),
                vec![0; 9],
                OpKind::Upsert(row),
                Version(1),
            )
        };
        let narrow = op(10).bytes();
        assert!(narrow < 256, "{narrow}");
        assert_eq!(op(1 << 20).bytes(), narrow - 10 + (1 << 20));
    }
}
