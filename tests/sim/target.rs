//! An in-memory target shard that implements exactly what reshard relies
//! on from the server, statement by statement as `writer::lane` issues
//! them for one batch (after the real `lane::dedup`):
//!
//! 1. read the tombstones of the keys to upsert (skipped when the lane's
//!    hint says the table has none, like `LaneMemo`);
//! 2. `DELETE … WHERE key = ? AND _reshard_version < ?`;
//! 3. raise tombstones with `GREATEST` (a tombstone is keyed by the
//!    operation's `key_enc`: `VARBINARY`, byte-wise);
//! 4. upsert the rows whose version is above their tombstone (as read in
//!    step 1): `INSERT … ON DUPLICATE KEY UPDATE c = IF(VALUES(v) > v,
//!    VALUES(c), c)` for the columns the real `sql::upsert` assigns.
//!
//! Rows are found by the key column's collation: byte-wise for integers,
//! case-insensitively with trailing spaces ignored (PAD SPACE) under
//! `_ci`, and for `BINARY(n)` the stored value is zero-padded to n bytes
//! while a `WHERE` compares unpadded. `tests/sim_differential.rs` checks
//! this model against a real MariaDB.

use std::collections::BTreeMap;

use mysql_async::Value;
use reshard::version::Version;
use reshard::writer::lane::{dedup, Group};
use reshard::writer::{sql, OpKind, WriteOp};

/// A hashable copy of a bound value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cell {
    Null,
    Int(i64),
    UInt(u64),
    Bytes(Vec<u8>),
    Other(String),
}

impl Cell {
    pub fn of(v: &Value) -> Cell {
        match v {
            Value::NULL => Cell::Null,
            Value::Int(i) => Cell::Int(*i),
            Value::UInt(u) => Cell::UInt(*u),
            Value::Bytes(b) => Cell::Bytes(b.clone()),
            other => Cell::Other(format!("{other:?}")),
        }
    }

    pub fn show(&self) -> String {
        match self {
            Cell::Null => "NULL".into(),
            Cell::Int(i) => i.to_string(),
            Cell::UInt(u) => u.to_string(),
            Cell::Bytes(b) => format!("'{}'", String::from_utf8_lossy(b).escape_default()),
            Cell::Other(s) => s.clone(),
        }
    }
}

/// How the server compares the key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collation {
    /// Integers and `_bin`: byte-wise.
    Binary,
    /// `utf8mb4_general_ci`, `latin1_swedish_ci` on ASCII: case folded,
    /// trailing spaces ignored.
    CaseInsensitive,
    /// `BINARY(n)`: stored zero-padded to n bytes, compared byte-wise.
    PaddedBinary(usize),
}

impl Collation {
    /// The key as the index compares it, for a value being stored
    /// (`INSERT`) or looked up (`WHERE`).
    pub fn key(self, key: &[Value], storing: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for v in key {
            match (self, v) {
                (_, Value::Int(i)) => out.extend_from_slice(&i.to_be_bytes()),
                (_, Value::UInt(u)) => out.extend_from_slice(&u.to_be_bytes()),
                (Collation::CaseInsensitive, Value::Bytes(b)) => {
                    let mut b = b.to_ascii_lowercase();
                    while b.last() == Some(&b' ') {
                        b.pop();
                    }
                    out.extend_from_slice(&b);
                }
                (Collation::PaddedBinary(n), Value::Bytes(b)) if storing => {
                    out.extend_from_slice(&pad(b, n));
                }
                (_, Value::Bytes(b)) => out.extend_from_slice(b),
                (_, other) => out.extend_from_slice(format!("{other:?}").as_bytes()),
            }
            out.push(0xff);
        }
        out
    }

    /// The value as stored.
    pub fn stored(self, v: &Value) -> Cell {
        match (self, v) {
            (Collation::PaddedBinary(n), Value::Bytes(b)) => Cell::Bytes(pad(b, n)),
            _ => Cell::of(v),
        }
    }
}

fn pad(b: &[u8], n: usize) -> Vec<u8> {
    let mut b = b.to_vec();
    if b.len() < n {
        b.resize(n, 0);
    }
    b
}

/// A stored row: its cells (key columns as first stored) and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TRow {
    pub cells: Vec<Cell>,
    pub version: Version,
}

/// A tombstone: its version, and the row key (by collation) it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tomb {
    pub version: Version,
    pub key: Vec<u8>,
}

/// One target database holding one table and its tombstones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Target {
    /// By collation key.
    pub rows: BTreeMap<Vec<u8>, TRow>,
    /// By `key_enc` (the tombstone table's `k`, `VARBINARY`).
    pub tombs: BTreeMap<Vec<u8>, Tomb>,
}

/// What the upsert statement assigns on a duplicate key, column by column,
/// read from the real `sql::upsert` text so the model follows it.
pub fn assigned_columns(columns: &[String], key: &[usize]) -> Vec<bool> {
    let text = sql::upsert("t", columns, key, 1);
    let update = text
        .split_once("ON DUPLICATE KEY UPDATE")
        .map(|(_, u)| u.to_string())
        .unwrap_or_default();
    columns
        .iter()
        .map(|c| update.contains(&format!("`{c}` = IF(")))
        .collect()
}

/// The tombstones a batch's first statement read: `(key_enc, version)`.
pub type TombRead = Vec<(Vec<u8>, Version)>;

impl Target {
    /// Applies one batch in one transaction, as a lane does
    /// ([`Target::begin`] and [`Target::write`] at once). `hint` is the
    /// lane's `LaneMemo` entry for the table.
    pub fn apply(
        &mut self,
        ops: Vec<WriteOp>,
        coll: Collation,
        assigned: &[bool],
        hint: &mut Option<bool>,
    ) {
        let groups = dedup(ops);
        let read = self.read(&groups, hint);
        self.write_groups(groups, &read, coll, assigned, hint);
    }

    /// Step 1 of a batch: the tombstones of the keys it upserts (after
    /// `dedup`), read when the batch's transaction begins. The read is a
    /// consistent snapshot (REPEATABLE READ): what other lanes commit
    /// before [`Target::write`] is not in it.
    pub fn begin(&self, ops: &[WriteOp], hint: &mut Option<bool>) -> TombRead {
        self.read(&dedup(ops.to_vec()), hint)
    }

    /// Steps 2–4 of a batch and its COMMIT, with the tombstones `read` at
    /// its start. The statements lock the rows they touch until the
    /// commit, so applying them at one instant is a serialization of what
    /// the server does.
    pub fn write(
        &mut self,
        ops: Vec<WriteOp>,
        read: &TombRead,
        coll: Collation,
        assigned: &[bool],
        hint: &mut Option<bool>,
    ) {
        self.write_groups(dedup(ops), read, coll, assigned, hint);
    }

    fn read(&self, groups: &[Group], hint: &mut Option<bool>) -> TombRead {
        let mut out = TombRead::new();
        for Group { ops: batch, .. } in groups {
            let any_upsert = batch.iter().any(|b| matches!(b.op.kind, OpKind::Upsert(_)));
            if !(any_upsert && *hint.get_or_insert_with(|| !self.tombs.is_empty())) {
                continue;
            }
            for b in batch {
                if let Some(t) = self.tombs.get(&b.op.key_enc) {
                    out.push((b.op.key_enc.clone(), t.version));
                }
            }
        }
        out
    }

    fn write_groups(
        &mut self,
        groups: Vec<Group>,
        read: &TombRead,
        coll: Collation,
        assigned: &[bool],
        hint: &mut Option<bool>,
    ) {
        for Group { ops: batch, .. } in groups {
            // 2. deletes of older rows
            for b in &batch {
                if b.op.kind.is_delete() {
                    let k = coll.key(&b.op.key().cloned().collect::<Vec<_>>(), false);
                    if self.rows.get(&k).is_some_and(|r| r.version < b.op.version) {
                        self.rows.remove(&k);
                    }
                }
            }
            // 3. tombstones, raised with GREATEST
            for b in &batch {
                if let Some(v) = b.tombstone {
                    *hint = Some(true);
                    let key = coll.key(&b.op.key().cloned().collect::<Vec<_>>(), false);
                    let t = self
                        .tombs
                        .entry(b.op.key_enc.clone())
                        .or_insert(Tomb { version: v, key });
                    t.version = t.version.max(v);
                }
            }
            // 4. upserts newer than their tombstone (as read in step 1)
            for b in &batch {
                let OpKind::Upsert(values) = &b.op.kind else {
                    continue;
                };
                let dead = read
                    .iter()
                    .any(|(k, v)| *k == b.op.key_enc && *v >= b.op.version);
                if !dead {
                    self.upsert(&b.op, values, coll, assigned);
                }
            }
        }
    }

    fn upsert(&mut self, op: &WriteOp, values: &[Value], coll: Collation, assigned: &[bool]) {
        let key_cols = &op.table.key;
        let k = coll.key(&op.key().cloned().collect::<Vec<_>>(), true);
        let cells: Vec<Cell> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if key_cols.contains(&i) {
                    coll.stored(v)
                } else {
                    Cell::of(v)
                }
            })
            .collect();
        match self.rows.get_mut(&k) {
            None => {
                self.rows.insert(
                    k,
                    TRow {
                        cells,
                        version: op.version,
                    },
                );
            }
            Some(row) => {
                // every assignment compares against the *old* version: the
                // version column is assigned last
                if op.version > row.version {
                    for (i, c) in cells.into_iter().enumerate() {
                        if assigned.get(i).copied().unwrap_or(false) {
                            row.cells[i] = c;
                        }
                    }
                    row.version = op.version;
                }
            }
        }
    }

    /// Deletes the tombstones below `threshold` (pruning).
    pub fn prune(&mut self, threshold: Version) -> usize {
        let before = self.tombs.len();
        self.tombs.retain(|_, t| t.version >= threshold);
        before - self.tombs.len()
    }

    /// The highest version the target holds for a key (row or tombstone).
    pub fn seen(&self, key: &[u8]) -> Version {
        let row = self.rows.get(key).map_or(Version::ZERO, |r| r.version);
        self.tombs
            .values()
            .filter(|t| t.key == key)
            .map(|t| t.version)
            .fold(row, Version::max)
    }
}
