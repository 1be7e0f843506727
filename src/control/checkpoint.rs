//! The checkpoint row (`reshard_checkpoint`), one per pipeline.
//!
//! Besides the [`Checkpoint`] itself it holds the replay floor (only ever
//! raised), the commit time of the checkpointed transaction (for lag) and
//! the position where the current epoch began (for `replay`).

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Transaction};

use super::err;
use crate::checkpoint::Checkpoint;
use crate::db::DbError;
use crate::position::Position;
use crate::version::Version;

/// Reads the pipeline's checkpoint, if any.
pub async fn load(conn: &mut Conn, pipeline: &str) -> Result<Option<Checkpoint>, DbError> {
    let row: Option<(String, u64, u16, String)> = conn
        .exec_first(
            "SELECT binlog_file, binlog_pos, epoch, source_identity FROM reshard_checkpoint WHERE pipeline = ?",
            (pipeline,),
        )
        .await
        .map_err(err("reading the checkpoint"))?;
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
    .map_err(err(format!("saving the checkpoint {}", cp.position)))
}

/// Writes the checkpoint reached by streaming, with the commit time of its
/// transaction (for lag; a zero time keeps the stored one).
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
    .map_err(err(format!("saving the checkpoint {}", cp.position)))
}

/// Replaces the checkpoint row with `cp` and the floor `floor`, inside the
/// initial copy's transaction ([`super::snapshot::begin`]): the copy
/// restarts the pipeline's history, so the old floor, epoch start and
/// commit time go too.
pub(super) async fn reset(
    tx: &mut Transaction<'_>,
    pipeline: &str,
    cp: &Checkpoint,
    floor: Version,
) -> Result<(), mysql_async::Error> {
    tx.exec_drop(
        "REPLACE INTO reshard_checkpoint (pipeline, binlog_file, binlog_pos, epoch, source_identity, floor) VALUES (?, ?, ?, ?, ?, ?)",
        (
            pipeline,
            &cp.position.file,
            cp.position.pos,
            cp.epoch,
            &cp.source_identity,
            floor.to_bytes().to_vec(),
        ),
    )
    .await
}

/// The commit time (Unix seconds) of the checkpointed transaction, if known.
pub async fn source_ts(conn: &mut Conn, pipeline: &str) -> Result<Option<u32>, DbError> {
    conn.exec_first(
        "SELECT source_ts FROM reshard_checkpoint WHERE pipeline = ?",
        (pipeline,),
    )
    .await
    .map_err(err("reading the checkpoint's commit time"))
}

/// The replay floor (`None` when there is none: 16 zero bytes or no row).
pub async fn floor(conn: &mut Conn, pipeline: &str) -> Result<Option<Version>, DbError> {
    let v: Option<Vec<u8>> = conn
        .exec_first(
            "SELECT floor FROM reshard_checkpoint WHERE pipeline = ?",
            (pipeline,),
        )
        .await
        .map_err(err("reading the replay floor"))?;
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
    .map_err(err("raising the replay floor"))
}

/// Where the current epoch began (set when the epoch is raised).
pub async fn epoch_start(conn: &mut Conn, pipeline: &str) -> Result<Option<Position>, DbError> {
    let r: Option<(String, u64)> = conn
        .exec_first(
            "SELECT epoch_file, epoch_pos FROM reshard_checkpoint WHERE pipeline = ?",
            (pipeline,),
        )
        .await
        .map_err(err("reading the epoch start"))?;
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
    .map_err(err("recording the epoch start"))
}

/// A position at or before the checkpoint and the source's GTID state
/// there (see [`crate::checkpoint::continuity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub position: Position,
    /// MariaDB `BINLOG_GTID_POS` of the position.
    pub gtid: String,
}

/// The checkpoint's anchor, if one is recorded.
pub async fn anchor(conn: &mut Conn, pipeline: &str) -> Result<Option<Anchor>, DbError> {
    let r: Option<(String, u64, String)> = conn
        .exec_first(
            "SELECT anchor_file, anchor_pos, anchor_gtid FROM reshard_checkpoint WHERE pipeline = ?",
            (pipeline,),
        )
        .await
        .map_err(err("reading the checkpoint's anchor"))?;
    Ok(r.filter(|(f, _, _)| !f.is_empty())
        .map(|(f, p, gtid)| Anchor {
            position: Position::new(f, p),
            gtid,
        }))
}

/// Records the checkpoint's anchor.
pub async fn set_anchor(conn: &mut Conn, pipeline: &str, a: &Anchor) -> Result<(), DbError> {
    conn.exec_drop(
        "UPDATE reshard_checkpoint SET anchor_file = ?, anchor_pos = ?, anchor_gtid = ? WHERE pipeline = ?",
        (&a.position.file, a.position.pos, &a.gtid, pipeline),
    )
    .await
    .map_err(err("recording the checkpoint's anchor"))
}

/// Forgets the anchor: the checkpoint was moved to another history
/// (`--from`, an epoch raise).
pub async fn clear_anchor(conn: &mut Conn, pipeline: &str) -> Result<(), DbError> {
    conn.exec_drop(
        "UPDATE reshard_checkpoint SET anchor_file = '', anchor_pos = 0, anchor_gtid = '' WHERE pipeline = ?",
        (pipeline,),
    )
    .await
    .map_err(err("clearing the checkpoint's anchor"))
}
