//! The position log (`reshard_position_log`): when checkpointed positions
//! were committed on the source, so tombstone pruning can turn "N days of
//! binlog" into a position (see [`crate::checkpoint::prune`]).

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::err;
use crate::db::DbError;
use crate::position::Position;

/// Remembers that `pos` (a checkpoint) was committed at `commit_ts`.
pub async fn record(
    conn: &mut Conn,
    pipeline: &str,
    pos: &Position,
    commit_ts: u32,
) -> Result<(), DbError> {
    conn.exec_drop(
        "INSERT IGNORE INTO reshard_position_log (pipeline, commit_ts, binlog_file, binlog_pos) VALUES (?, ?, ?, ?)",
        (pipeline, commit_ts, &pos.file, pos.pos),
    )
    .await
    .map_err(err("logging the checkpoint position"))
}

/// The newest logged position committed at least `age_secs` ago, with its
/// commit time.
pub async fn newest_older_than(
    conn: &mut Conn,
    pipeline: &str,
    age_secs: u64,
) -> Result<Option<(u32, Position)>, DbError> {
    let row: Option<(u32, String, u64)> = conn
        .exec_first(
            "SELECT commit_ts, binlog_file, binlog_pos FROM reshard_position_log WHERE pipeline = ? \
             AND commit_ts <= UNIX_TIMESTAMP() - ? ORDER BY commit_ts DESC, binlog_file DESC, binlog_pos DESC LIMIT 1",
            (pipeline, age_secs),
        )
        .await
        .map_err(err("finding the pruning threshold"))?;
    Ok(row.map(|(ts, file, pos)| (ts, Position::new(file, pos))))
}

/// Forgets positions committed before `commit_ts`.
pub async fn trim(conn: &mut Conn, pipeline: &str, commit_ts: u32) -> Result<(), DbError> {
    conn.exec_drop(
        "DELETE FROM reshard_position_log WHERE pipeline = ? AND commit_ts < ?",
        (pipeline, commit_ts),
    )
    .await
    .map_err(err("trimming the position log"))
}
