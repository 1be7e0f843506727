//! The position log (`reshard_position_log`): when checkpointed positions
//! were committed on the source, and under which epoch they were versioned,
//! so tombstone pruning can turn "N days of binlog" into a version (see
//! [`crate::checkpoint::prune`]).

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::err;
use crate::db::DbError;
use crate::position::Position;

/// One logged checkpoint position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// The epoch its versions carry.
    pub epoch: u16,
    /// Its commit time on the source (Unix seconds, the source's clock).
    pub commit_ts: u32,
    pub position: Position,
}

/// Remembers that `pos` (a checkpoint, versioned under `epoch`) was
/// committed at `commit_ts`.
pub async fn record(
    conn: &mut Conn,
    pipeline: &str,
    epoch: u16,
    pos: &Position,
    commit_ts: u32,
) -> Result<(), DbError> {
    conn.exec_drop(
        "INSERT IGNORE INTO reshard_position_log (pipeline, epoch, commit_ts, binlog_file, binlog_pos) VALUES (?, ?, ?, ?, ?)",
        (pipeline, epoch, commit_ts, &pos.file, pos.pos),
    )
    .await
    .map_err(err("logging the checkpoint position"))
}

/// Every logged position committed at least `age_secs` ago. (Pruning
/// trims what it passed, and the coordinator logs about ten positions per
/// retention period and at most one a second, so these are few: at most
/// one retention period's worth after a long stop.)
pub async fn older_than(
    conn: &mut Conn,
    pipeline: &str,
    age_secs: u64,
) -> Result<Vec<Logged>, DbError> {
    let rows: Vec<(u16, u32, String, u64)> = conn
        .exec(
            "SELECT epoch, commit_ts, binlog_file, binlog_pos FROM reshard_position_log WHERE pipeline = ? \
             AND commit_ts <= UNIX_TIMESTAMP() - ?",
            (pipeline, age_secs),
        )
        .await
        .map_err(err("finding the pruning threshold"))?;
    Ok(rows
        .into_iter()
        .map(|(epoch, commit_ts, file, pos)| Logged {
            epoch,
            commit_ts,
            position: Position::new(file, pos),
        })
        .collect())
}

/// Forgets the positions before `keep`: those of older epochs, and those
/// of its epoch committed before it.
pub async fn trim(conn: &mut Conn, pipeline: &str, keep: &Logged) -> Result<(), DbError> {
    conn.exec_drop(
        "DELETE FROM reshard_position_log WHERE pipeline = ? AND (epoch < ? OR (epoch = ? AND commit_ts < ?))",
        (pipeline, keep.epoch, keep.epoch, keep.commit_ts),
    )
    .await
    .map_err(err("trimming the position log"))
}
