//! reshard's tables on every target database (`migrations/shard/`):
//!
//! * `_reshard_tombstone` — one row per deleted key: (target table,
//!   [`crate::writer::keyenc`] key, version). A tombstone only ever rises
//!   (`GREATEST`), and is written in the same transaction as its delete, so
//!   an older upsert replayed later loses against it (see
//!   `docs/architecture.md`, "Tombstones and the floor").
//! * `_reshard_applied` — the position of each lane's last committed mark,
//!   written in the batch's transaction; for operators and `status`, never
//!   used to skip work.
//!
//! The lane functions take the batch's open transaction and name each
//! table with its shard's database (a lane may serve several shards of
//! one server); pruning takes a connection of its own to one shard.

use std::collections::HashMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Transaction, Value};

use crate::db::{quote_ident, DbError};
use crate::position::Position;
use crate::version::Version;

/// The per-shard tombstone table.
const TOMBSTONE_TABLE: &str = "_reshard_tombstone";
/// Keys per tombstone statement.
const CHUNK: usize = 500;
/// Tombstones deleted per pruning statement, so no long lock is held.
const PRUNE_BATCH: usize = 1000;

/// `(?, ?, …)` lists: `groups` groups of `width` placeholders.
fn placeholder_groups(groups: usize, width: usize) -> String {
    let one = format!("({})", vec!["?"; width].join(", "));
    vec![one; groups].join(", ")
}

/// A target table of one shard: its database and its name.
#[derive(Debug, Clone, Copy)]
pub struct TableOf<'a> {
    pub database: &'a str,
    pub table: &'a str,
}

/// `` `db`.`name` `` of one of reshard's tables in a shard's database.
fn own_table(database: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(database), quote_ident(name))
}

/// Raises tombstones to at least the given versions (`GREATEST`, never a
/// plain overwrite).
fn tombstone_upsert_sql(database: &str, rows: usize) -> String {
    format!(
        "INSERT INTO {} (tbl, k, version) VALUES {} ON DUPLICATE KEY UPDATE version = GREATEST(version, VALUES(version))",
        own_table(database, TOMBSTONE_TABLE),
        placeholder_groups(rows, 3)
    )
}

/// Reads the tombstones of `rows` keys of one table.
fn tombstone_lookup_sql(database: &str, rows: usize) -> String {
    format!(
        "SELECT k, version FROM {} WHERE tbl = ? AND k IN ({})",
        own_table(database, TOMBSTONE_TABLE),
        vec!["?"; rows].join(", ")
    )
}

/// Deletes up to [`PRUNE_BATCH`] tombstones of `tables` tables below a version.
fn tombstone_prune_sql(tables: usize) -> String {
    format!(
        "DELETE FROM {} WHERE tbl IN ({}) AND version < ? LIMIT {PRUNE_BATCH}",
        quote_ident(TOMBSTONE_TABLE),
        vec!["?"; tables].join(", ")
    )
}

fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}

/// Whether a table (of the shard whose database is `database`) has any
/// tombstone at all.
pub async fn any_tombstone<Q: Queryable>(
    tx: &mut Q,
    server: &str,
    database: &str,
    table: &str,
) -> Result<bool, DbError> {
    let any: Option<i64> = tx
        .exec_first(
            format!(
                "SELECT EXISTS(SELECT 1 FROM {} WHERE tbl = ?)",
                own_table(database, TOMBSTONE_TABLE)
            ),
            (table,),
        )
        .await
        .map_err(|e| DbError::query(server, format!("looking for tombstones of {table}"), e))?;
    Ok(any.unwrap_or(1) != 0)
}

/// The tombstones of the given keys of one table.
pub async fn read_tombstones(
    tx: &mut Transaction<'_>,
    server: &str,
    of: TableOf<'_>,
    keys: &[&[u8]],
) -> Result<HashMap<Vec<u8>, Version>, DbError> {
    let table = of.table;
    let mut tombs = HashMap::new();
    for chunk in keys.chunks(CHUNK) {
        let mut params: Vec<Value> = Vec::with_capacity(chunk.len() + 1);
        params.push(bytes(table.as_bytes()));
        params.extend(chunk.iter().map(|k| bytes(k)));
        let rows: Vec<(Vec<u8>, Vec<u8>)> = tx
            .exec(
                tombstone_lookup_sql(of.database, chunk.len()),
                Params::Positional(params),
            )
            .await
            .map_err(|e| DbError::query(server, format!("reading tombstones of {table}"), e))?;
        for (k, v) in rows {
            if let Ok(v) = Version::from_bytes(&v) {
                tombs.insert(k, v);
            }
        }
    }
    Ok(tombs)
}

/// Raises the tombstones of the given keys of one table to at least the
/// given versions.
pub async fn raise_tombstones(
    tx: &mut Transaction<'_>,
    server: &str,
    of: TableOf<'_>,
    tombstones: &[(&[u8], Version)],
) -> Result<(), DbError> {
    let table = of.table;
    for chunk in tombstones.chunks(CHUNK) {
        let mut params = Vec::with_capacity(chunk.len() * 3);
        for (k, v) in chunk {
            params.push(bytes(table.as_bytes()));
            params.push(bytes(k));
            params.push(bytes(&v.to_bytes()));
        }
        tx.exec_drop(
            tombstone_upsert_sql(of.database, chunk.len()),
            Params::Positional(params),
        )
        .await
        .map_err(|e| DbError::query(server, format!("writing tombstones of {table}"), e))?;
    }
    Ok(())
}

/// Which lane's applied position [`record_applied`] writes.
#[derive(Debug, Clone, Copy)]
pub struct LaneId<'a> {
    pub pipeline: &'a str,
    pub shard: &'a str,
    /// The shard's database.
    pub database: &'a str,
    pub lane_in_shard: u32,
}

/// The statement recording a lane's applied position; its parameters are
/// [`applied_params`].
pub fn record_applied_sql(database: &str) -> String {
    format!(
        "INSERT INTO {} (pipeline, shard, lane, binlog_file, binlog_pos) \
         VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE binlog_file = VALUES(binlog_file), binlog_pos = VALUES(binlog_pos)",
        own_table(database, "_reshard_applied")
    )
}

/// The parameters of [`record_applied_sql`].
pub fn applied_params(lane: LaneId<'_>, end: &Position) -> [Value; 5] {
    [
        bytes(lane.pipeline.as_bytes()),
        bytes(lane.shard.as_bytes()),
        Value::UInt(u64::from(lane.lane_in_shard)),
        bytes(end.file.as_bytes()),
        Value::UInt(end.pos),
    ]
}

/// Records a lane's applied position: in its batch's transaction, or on
/// its own once every statement of a batch without one succeeded.
pub async fn record_applied<Q: Queryable>(
    q: &mut Q,
    lane: LaneId<'_>,
    end: &Position,
) -> Result<(), DbError> {
    q.exec_drop(
        record_applied_sql(lane.database),
        Params::Positional(applied_params(lane, end).to_vec()),
    )
    .await
    .map_err(|e| DbError::query(lane.shard, "recording the applied position", e))
}

/// The applied positions of the pipeline's lanes of `shard` (lanes that
/// never committed a batch have none).
pub async fn applied(
    conn: &mut Conn,
    pipeline: &str,
    shard: &str,
) -> Result<Vec<Position>, DbError> {
    let rows: Vec<(String, u64)> = conn
        .exec(
            "SELECT binlog_file, binlog_pos FROM `_reshard_applied` WHERE pipeline = ? AND shard = ?",
            (pipeline, shard),
        )
        .await
        .map_err(|e| DbError::query(shard, "reading the applied positions", e))?;
    Ok(rows.into_iter().map(|(f, p)| Position::new(f, p)).collect())
}

/// Deletes the tombstones of `tables` below `below`, in small batches with
/// a short pause between them; returns how many went.
pub async fn prune_tombstones(
    conn: &mut Conn,
    server: &str,
    tables: &[String],
    below: Version,
) -> Result<u64, DbError> {
    let sql = tombstone_prune_sql(tables.len());
    let mut pruned = 0u64;
    loop {
        let mut params: Vec<Value> = tables.iter().map(|t| bytes(t.as_bytes())).collect();
        params.push(bytes(&below.to_bytes()));
        conn.exec_drop(&sql, Params::Positional(params))
            .await
            .map_err(|e| DbError::query(server, "pruning tombstones", e))?;
        let n = conn.affected_rows();
        pruned += n;
        if n < PRUNE_BATCH as u64 {
            return Ok(pruned);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_only_rise() {
        assert_eq!(
            tombstone_upsert_sql("s1", 2),
            "INSERT INTO `s1`.`_reshard_tombstone` (tbl, k, version) VALUES (?, ?, ?), (?, ?, ?) \
             ON DUPLICATE KEY UPDATE version = GREATEST(version, VALUES(version))"
        );
        assert_eq!(
            tombstone_lookup_sql("s1", 2),
            "SELECT k, version FROM `s1`.`_reshard_tombstone` WHERE tbl = ? AND k IN (?, ?)"
        );
    }

    #[test]
    fn pruning_is_bounded_and_strictly_below() {
        assert_eq!(
            tombstone_prune_sql(2),
            "DELETE FROM `_reshard_tombstone` WHERE tbl IN (?, ?) AND version < ? LIMIT 1000"
        );
    }
}
