//! The initial copy's state: its position P (`reshard_snapshot`) and the
//! progress of each table (`reshard_snapshot_table`: the last key of the
//! last finished chunk, in [`crate::writer::keyenc`] form).

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::err;
use crate::checkpoint::Checkpoint;
use crate::db::DbError;
use crate::position::Position;
use crate::version::Version;

/// The snapshot row of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub position: Position,
    pub done: bool,
}

/// The copy progress of one source table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    /// `db.table` on the source.
    pub table: String,
    /// Encoded key of the last copied row ([`crate::writer::keyenc`]).
    pub last_key: Option<Vec<u8>>,
    pub rows_copied: u64,
    pub rows_estimate: u64,
    pub done: bool,
}

/// Reads the pipeline's snapshot row.
pub async fn load(conn: &mut Conn, pipeline: &str) -> Result<Option<Snapshot>, DbError> {
    let row: Option<(String, u64, String)> = conn
        .exec_first(
            "SELECT binlog_file, binlog_pos, state FROM reshard_snapshot WHERE pipeline = ?",
            (pipeline,),
        )
        .await
        .map_err(err("reading the snapshot state"))?;
    Ok(row.map(|(f, p, s)| Snapshot {
        position: Position::new(f, p),
        done: s == "done",
    }))
}

/// In one transaction: forgets any earlier copy progress, saves P as the
/// copy's position (state `copying`) and resets the checkpoint to P with
/// the floor `floor`.
pub async fn begin(
    conn: &mut Conn,
    pipeline: &str,
    cp: &Checkpoint,
    floor: Version,
) -> Result<(), DbError> {
    let q = err("saving the snapshot position");
    let p = &cp.position;
    let result = async {
        let mut tx = conn.start_transaction(Default::default()).await?;
        tx.exec_drop(
            "DELETE FROM reshard_snapshot_table WHERE pipeline = ?",
            (pipeline,),
        )
        .await?;
        tx.exec_drop(
            "REPLACE INTO reshard_snapshot (pipeline, binlog_file, binlog_pos, state) VALUES (?, ?, ?, 'copying')",
            (pipeline, &p.file, p.pos),
        )
        .await?;
        super::checkpoint::reset(&mut tx, pipeline, cp, floor).await?;
        tx.commit().await
    };
    result.await.map_err(q)
}

/// A `reshard_snapshot_table` row without its pipeline.
type TableRow = (String, Option<Vec<u8>>, u64, u64, i8);

/// The copy progress of every table of the pipeline, by table name.
pub async fn tables(conn: &mut Conn, pipeline: &str) -> Result<Vec<TableCopy>, DbError> {
    let rows: Vec<TableRow> = conn
        .exec(
            "SELECT source_table, last_key, rows_copied, rows_estimate, done FROM reshard_snapshot_table \
             WHERE pipeline = ? ORDER BY source_table",
            (pipeline,),
        )
        .await
        .map_err(err("reading the copy progress"))?;
    Ok(rows
        .into_iter()
        .map(
            |(table, last_key, rows_copied, rows_estimate, done)| TableCopy {
                table,
                last_key,
                rows_copied,
                rows_estimate,
                done: done != 0,
            },
        )
        .collect())
}

/// Saves a table's progress after a finished chunk.
pub async fn save_table(conn: &mut Conn, pipeline: &str, t: &TableCopy) -> Result<(), DbError> {
    conn.exec_drop(
        "REPLACE INTO reshard_snapshot_table (pipeline, source_table, last_key, rows_copied, rows_estimate, done) VALUES (?, ?, ?, ?, ?, ?)",
        (pipeline, &t.table, &t.last_key, t.rows_copied, t.rows_estimate, t.done),
    )
    .await
    .map_err(err("saving the copy progress"))
}

/// Marks the copy done.
pub async fn finish(conn: &mut Conn, pipeline: &str) -> Result<(), DbError> {
    conn.exec_drop(
        "UPDATE reshard_snapshot SET state = 'done', finished_at = CURRENT_TIMESTAMP(6) WHERE pipeline = ?",
        (pipeline,),
    )
    .await
    .map_err(err("finishing the snapshot"))
}
