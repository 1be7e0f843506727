//! A lane's batch deduplicated: the newest operation per key, grouped by
//! shard and table.
//!
//! # Why only the newest operation per key is applied
//!
//! Versions grow along the binlog, and the write rule keeps, per key, the
//! effect of the operation with the highest version (`docs/architecture.md`,
//! "Versions"): so within a batch the newest operation of a key dominates
//! every older one, which can be left out. Only a delete's tombstone
//! outlives a later upsert of the same key, so each kept operation carries
//! the newest delete of its key in the batch ([`BatchOp::tombstone`]): the
//! tombstone table ends up the same however the binlog was cut into
//! batches. Keys are compared by their canonical bytes
//! ([`super::keyenc::canonical`]), the identity the target's primary key
//! sees ("Keys and collations").
//!
//! # Cost
//!
//! Dedup runs on every operation a lane applies, so it copies nothing: the
//! map from key to kept operation borrows the operations' canonical keys
//! and is hashed with foldhash (a fast non-cryptographic hash with a
//! per-process random seed; the keys come from the source's rows, so a
//! fixed seed would let crafted keys collide on purpose), and the kept
//! operations are then moved, not cloned, into their groups.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use super::op::{TargetTable, WriteOp};
use crate::version::Version;

/// An operation after deduplication, with the newest delete of its key
/// in the batch: a collapsed delete still raises its tombstone, so the
/// tombstone table ends up the same however the binlog was batched.
#[derive(Debug)]
pub struct BatchOp {
    pub op: WriteOp,
    pub tombstone: Option<Version>,
}

/// One shard's operations on one table (one column list) of a batch.
#[derive(Debug)]
pub struct Group {
    pub shard: usize,
    pub table: Arc<TargetTable>,
    pub ops: Vec<BatchOp>,
}

/// A key of a group, while the batch is read: the operation kept for it
/// (an index into the batch) and its newest delete.
struct Slot {
    kept: usize,
    tombstone: Option<Version>,
}

/// Keeps the newest operation per (shard, table, key), grouped by shard
/// and table (a lane may serve several shards of its server), in the
/// order each group and each key first appears; of two operations with
/// one version the later is kept.
///
/// A group is one *column list* of a table, not one table name: after a
/// column was added on the source, one batch can hold upserts written
/// with the old columns and with the new ones, and each needs its own
/// statement. The groups are applied in order in one transaction, and
/// every step compares versions, so a key appearing in two groups ends
/// up exactly as if both operations were in one.
pub fn dedup(ops: Vec<WriteOp>) -> Vec<Group> {
    let (heads, slots) = keep(&ops);
    // the common case (a copy batch, most stream batches): one group and
    // no key twice, so slot k is operation k; they move over in order
    if let ([head], [group]) = (heads.as_slice(), slots.as_slice()) {
        if group.len() == ops.len() {
            let (shard, table) = (ops[*head].shard, ops[*head].table.clone());
            let ops = ops
                .into_iter()
                .zip(group)
                .map(|(op, slot)| BatchOp {
                    op,
                    tombstone: slot.tombstone,
                })
                .collect();
            return vec![Group { shard, table, ops }];
        }
    }
    // where each kept operation goes: (group, slot)
    let mut to: Vec<Option<(usize, usize)>> = vec![None; ops.len()];
    for (g, group) in slots.iter().enumerate() {
        for (k, slot) in group.iter().enumerate() {
            to[slot.kept] = Some((g, k));
        }
    }
    let mut placed: Vec<Vec<Option<WriteOp>>> = slots
        .iter()
        .map(|group| std::iter::repeat_with(|| None).take(group.len()).collect())
        .collect();
    let tables: Vec<(usize, Arc<TargetTable>)> = heads
        .iter()
        .map(|&h| (ops[h].shard, ops[h].table.clone()))
        .collect();
    for (op, to) in ops.into_iter().zip(to) {
        if let Some((g, k)) = to {
            placed[g][k] = Some(op);
        }
    }
    tables
        .into_iter()
        .zip(placed.into_iter().zip(slots))
        .map(|((shard, table), (kept, slots))| Group {
            shard,
            table,
            ops: kept
                .into_iter()
                .zip(slots)
                .filter_map(|(op, slot)| {
                    op.map(|op| BatchOp {
                        op,
                        tombstone: slot.tombstone,
                    })
                })
                .collect(),
        })
        .collect()
}

/// Reads the batch: the first operation of each group, and per group the
/// slot of each key in order of first appearance.
fn keep(ops: &[WriteOp]) -> (Vec<usize>, Vec<Vec<Slot>>) {
    let mut heads: Vec<usize> = Vec::new();
    let mut slots: Vec<Vec<Slot>> = Vec::new();
    let mut seen: Vec<HashMap<&[u8], usize, foldhash::fast::RandomState>> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let g = match heads.iter().position(|&h| same_group(&ops[h], op)) {
            Some(g) => g,
            None => {
                heads.push(i);
                slots.push(Vec::new());
                seen.push(HashMap::with_capacity_and_hasher(
                    ops.len() - i,
                    foldhash::fast::RandomState::default(),
                ));
                heads.len() - 1
            }
        };
        let del = op.kind.is_delete().then_some(op.version);
        let group = &mut slots[g];
        match seen[g].entry(op.key_enc.as_slice()) {
            Entry::Occupied(e) => {
                let slot = &mut group[*e.get()];
                slot.tombstone = slot.tombstone.max(del);
                if ops[slot.kept].version <= op.version {
                    slot.kept = i;
                }
            }
            Entry::Vacant(e) => {
                e.insert(group.len());
                group.push(Slot {
                    kept: i,
                    tombstone: del,
                });
            }
        }
    }
    (heads, slots)
}

/// Whether two operations go to one statement: same shard, same table
/// and column list.
fn same_group(a: &WriteOp, b: &WriteOp) -> bool {
    a.shard == b.shard && (Arc::ptr_eq(&a.table, &b.table) || *a.table == *b.table)
}

#[cfg(test)]
mod tests {
    use mysql_common::value::Value;

    use super::*;
    use crate::writer::OpKind;

    const DEL: OpKind = OpKind::Delete(Vec::new());

    fn op(key: i64, version: u128, kind: OpKind) -> WriteOp {
        let table = Arc::new(TargetTable {
            name: "t".into(),
            source: "db.t".into(),
            columns: vec!["id".into()],
            key: vec![0],
        });
        let k = vec![Value::Int(key)];
        let key_enc = crate::writer::keyenc::encode(&k);
        // a delete of this key (tests write `DEL`)
        let kind = if kind.is_delete() {
            OpKind::Delete(k)
        } else {
            kind
        };
        WriteOp::new(0, table, key_enc, kind, Version(version))
    }

    #[test]
    fn dedup_keeps_the_newest_op_per_key() {
        let ops = vec![
            op(1, 10, OpKind::Upsert(vec![Value::Int(1)])),
            op(2, 11, OpKind::Upsert(vec![Value::Int(2)])),
            op(1, 12, DEL),
            op(1, 9, OpKind::Upsert(vec![Value::Int(1)])),
        ];
        let groups = dedup(ops);
        assert_eq!(groups.len(), 1);
        let list = &groups[0].ops;
        assert_eq!(list.len(), 2);
        assert!(list[0].op.kind.is_delete());
        assert_eq!(list[0].op.version, Version(12));
        assert_eq!(list[0].tombstone, Some(Version(12)));
        assert_eq!(list[1].op.version, Version(11));
        assert_eq!(list[1].tombstone, None);
    }

    /// A batch of one table whose keys all differ keeps every operation,
    /// in order, each delete with its own tombstone.
    #[test]
    fn a_batch_without_repeats_keeps_every_operation_in_order() {
        let ops = vec![
            op(3, 10, OpKind::Upsert(vec![Value::Int(3)])),
            op(1, 11, DEL),
            op(2, 12, OpKind::Upsert(vec![Value::Int(2)])),
        ];
        let groups = dedup(ops);
        assert_eq!(groups.len(), 1);
        let kept: Vec<(Version, Option<Version>)> = groups[0]
            .ops
            .iter()
            .map(|b| (b.op.version, b.tombstone))
            .collect();
        assert_eq!(
            kept,
            vec![
                (Version(10), None),
                (Version(11), Some(Version(11))),
                (Version(12), None)
            ]
        );
    }

    /// Of two operations on one key with one version, the later one is
    /// kept (as the lane applied them before).
    #[test]
    fn dedup_keeps_the_later_of_equal_versions() {
        let ops = vec![
            op(1, 10, OpKind::Upsert(vec![Value::Int(1)])),
            op(1, 10, OpKind::Upsert(vec![Value::Int(2)])),
        ];
        let groups = dedup(ops);
        assert_eq!(
            groups[0].ops[0].op.kind,
            OpKind::Upsert(vec![Value::Int(2)])
        );
    }

    /// A column added on the source mid-batch: the upserts written with the
    /// old and with the new column list go to statements of their own, and
    /// shards to groups of their own, in order of first appearance.
    #[test]
    fn dedup_keeps_column_lists_of_one_table_apart() {
        let wide = Arc::new(TargetTable {
            name: "t".into(),
            source: "db.t".into(),
            columns: vec!["id".into(), "c".into()],
            key: vec![0],
        });
        let mut late = op(2, 11, OpKind::Upsert(vec![Value::Int(2), Value::NULL]));
        late.table = wide.clone();
        let mut other_shard = op(1, 13, DEL);
        other_shard.shard = 1;
        let ops = vec![
            op(1, 10, OpKind::Upsert(vec![Value::Int(1)])),
            late,
            other_shard,
            op(3, 9, DEL),
            op(1, 12, OpKind::Upsert(vec![Value::Int(1)])),
        ];
        let groups = dedup(ops);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].table.columns, ["id"]);
        let versions: Vec<u128> = groups[0].ops.iter().map(|b| b.op.version.0).collect();
        assert_eq!(versions, [12, 9]);
        assert!(Arc::ptr_eq(&groups[1].table, &wide));
        assert_eq!(groups[1].ops.len(), 1);
        assert_eq!((groups[2].shard, groups[2].ops.len()), (1, 1));
        assert_eq!(groups[2].ops[0].tombstone, Some(Version(13)));
    }

    /// Regression: a delete collapsed under a later upsert of the same key
    /// in one batch left no tombstone, so re-applying the binlog in other
    /// batches changed the tombstone table.
    #[test]
    fn collapsed_delete_still_raises_its_tombstone() {
        let ops = vec![
            op(1, 10, OpKind::Upsert(vec![Value::Int(1)])),
            op(1, 11, DEL),
            op(1, 12, OpKind::Upsert(vec![Value::Int(1)])),
        ];
        let groups = dedup(ops);
        let list = &groups[0].ops;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].op.version, Version(12));
        assert_eq!(list[0].tombstone, Some(Version(11)));
    }
}
