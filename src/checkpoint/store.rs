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
use crate::version::Version;

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

/// Writes the checkpoint reached by streaming, with the commit time of its
/// transaction (for lag).
pub async fn save_progress(
    conn: &mut Conn,
    pipeline: &str,
    cp: &Checkpoint,
    source_ts: u32,
) -> Result<(), DbError> {
    conn.exec_drop(
        "INSERT INTO reshard_checkpoint (pipeline, binlog_file, binlog_pos, epoch, source_identity, source_ts) \
         VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE binlog_file = VALUES(binlog_file), \
         binlog_pos = VALUES(binlog_pos), epoch = VALUES(epoch), source_identity = VALUES(source_identity), \
         source_ts = IF(VALUES(source_ts) > 0, VALUES(source_ts), source_ts)",
        (pipeline, &cp.position.file, cp.position.pos, cp.epoch, &cp.source_identity, source_ts),
    )
    .await
    .map_err(|e| DbError::query("control", format!("saving the checkpoint {}", cp.position), e))
}

/// Remembers when a checkpointed position was committed on the source, for
/// tombstone pruning by binlog age.
pub async fn log_position(
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
    .map_err(|e| DbError::query("control", "logging the checkpoint position", e))
}

/// The replay floor (16 zero bytes when none).
pub async fn floor(conn: &mut Conn, pipeline: &str) -> Result<Option<Version>, DbError> {
    let v: Option<Vec<u8>> = conn
        .exec_first(
            "SELECT floor FROM reshard_checkpoint WHERE pipeline = ?",
            (pipeline,),
        )
        .await
        .map_err(|e| DbError::query("control", "reading the replay floor", e))?;
    Ok(v.and_then(|b| Version::from_bytes(&b).ok())
        .filter(|v| *v > Version::ZERO))
}

/// Raises the replay floor (never lowers it).
pub async fn raise_floor(conn: &mut Conn, pipeline: &str, floor: Version) -> Result<(), DbError> {
    conn.exec_drop(
        "UPDATE reshard_checkpoint SET floor = GREATEST(floor, ?) WHERE pipeline = ?",
        (floor.to_bytes().to_vec(), pipeline),
    )
    .await
    .map_err(|e| DbError::query("control", "raising the replay floor", e))
}

/// Where the current epoch began (set when the epoch is raised).
pub async fn epoch_start(conn: &mut Conn, pipeline: &str) -> Result<Option<Position>, DbError> {
    let r: Option<(String, u64)> = conn
        .exec_first(
            "SELECT epoch_file, epoch_pos FROM reshard_checkpoint WHERE pipeline = ?",
            (pipeline,),
        )
        .await
        .map_err(|e| DbError::query("control", "reading the epoch start", e))?;
    Ok(r.filter(|(f, _)| !f.is_empty())
        .map(|(f, p)| Position::new(f, p)))
}

/// Records that the current epoch begins at `pos`.
pub async fn set_epoch_start(
    conn: &mut Conn,
    pipeline: &str,
    pos: &Position,
) -> Result<(), DbError> {
    conn.exec_drop(
        "UPDATE reshard_checkpoint SET epoch_file = ?, epoch_pos = ? WHERE pipeline = ?",
        (&pos.file, pos.pos, pipeline),
    )
    .await
    .map_err(|e| DbError::query("control", "recording the epoch start", e))
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
