//! The checkpoint row in the control database.
//!
//! The checkpoint is the position of the last source transaction whose
//! operations are durably applied on every shard — always a transaction
//! boundary — plus the epoch and the identity of the source server it was
//! taken on, so a restart can tell when the source's numbering went
//! backwards (`RESET MASTER`, another server) and refuse to write versions
//! that would silently lose against what the targets hold.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::db::DbError;
use crate::position::Position;

/// A stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: Position,
    pub epoch: u16,
    pub source_identity: String,
}

/// Reads the pipeline's checkpoint, if any.
pub async fn load(conn: &mut Conn, pipeline: &str) -> Result<Option<Checkpoint>, DbError> {
    let row: Option<(String, u64, u16, String)> = conn
        .exec_first(
            "SELECT binlog_file, binlog_pos, epoch, source_identity FROM reshard_checkpoint WHERE pipeline = ?",
            (pipeline,),
        )
        .await
        .map_err(|e| DbError::query("control", "reading the checkpoint", e))?;
    Ok(row.map(|(file, pos, epoch, source_identity)| Checkpoint {
        position: Position::new(file, pos),
        epoch,
        source_identity,
    }))
}

/// Writes the pipeline's checkpoint.
pub async fn save(conn: &mut Conn, pipeline: &str, cp: &Checkpoint) -> Result<(), DbError> {
    conn.exec_drop(
        "INSERT INTO reshard_checkpoint (pipeline, binlog_file, binlog_pos, epoch, source_identity) \
         VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE binlog_file = VALUES(binlog_file), \
         binlog_pos = VALUES(binlog_pos), epoch = VALUES(epoch), source_identity = VALUES(source_identity)",
        (
            pipeline,
            &cp.position.file,
            cp.position.pos,
            cp.epoch,
            &cp.source_identity,
        ),
    )
    .await
    .map_err(|e| DbError::query("control", format!("saving the checkpoint {}", cp.position), e))
}

/// Removes the pipeline's checkpoint (`run --from --force`).
pub async fn clear(conn: &mut Conn, pipeline: &str) -> Result<(), DbError> {
    conn.exec_drop(
        "DELETE FROM reshard_checkpoint WHERE pipeline = ?",
        (pipeline,),
    )
    .await
    .map_err(|e| DbError::query("control", "clearing the checkpoint", e))
}

/// Takes the pipeline's lease: a named lock held as long as `conn` lives,
/// so two `run`s of one pipeline cannot interleave their checkpoints.
pub async fn acquire_lease(conn: &mut Conn, pipeline: &str) -> Result<bool, DbError> {
    let got: Option<Option<i64>> = conn
        .exec_first("SELECT GET_LOCK(?, 0)", (format!("reshard:{pipeline}"),))
        .await
        .map_err(|e| DbError::query("control", "taking the pipeline lease", e))?;
    Ok(got.flatten() == Some(1))
}
