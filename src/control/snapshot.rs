//! The initial copy's state: its position P (`reshard_snapshot`) and the
//! progress of each table part (`reshard_snapshot_table`: a key range
//! `(last_key, upper_key]` still to copy, `last_key` being the last key of
//! the last applied chunk; keys in [`crate::writer::keyenc`] form).

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

/// The copy progress of one part of a source table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    /// `db.table` on the source.
    pub table: String,
    /// The part (a key range) of the table; 0 for a table copied whole.
    pub part: u32,
    /// Encoded key of the last copied row ([`crate::writer::keyenc`]), or
    /// the part's lower bound (exclusive) before its first chunk.
    pub last_key: Option<Vec<u8>>,
    /// The part's upper bound (inclusive); `None`: the table's end.
    pub upper_key: Option<Vec<u8>>,
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

/// The copy progress of every table part of the pipeline, by table name
/// and part.
pub async fn tables(conn: &mut Conn, pipeline: &str) -> Result<Vec<TableCopy>, DbError> {
    let rows: Vec<mysql_async::Row> = conn
        .exec(
            "SELECT source_table, part, last_key, upper_key, rows_copied, rows_estimate, done \
             FROM reshard_snapshot_table WHERE pipeline = ? ORDER BY source_table, part",
            (pipeline,),
        )
        .await
        .map_err(err("reading the copy progress"))?;
    rows.into_iter()
        .map(|mut r| {
            let done: Option<i8> = r.take(6);
            Some(TableCopy {
                table: r.take(0)?,
                part: r.take(1)?,
                last_key: r.take(2)?,
                upper_key: r.take(3)?,
                rows_copied: r.take(4)?,
                rows_estimate: r.take(5)?,
                done: done? != 0,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            DbError::unexpected(
                "control",
                "reading the copy progress",
                "a reshard_snapshot_table row has an unexpected shape (run reshard migrate)",
            )
        })
}

const SAVE_TABLE: &str = "REPLACE INTO reshard_snapshot_table \
     (pipeline, source_table, part, last_key, upper_key, rows_copied, rows_estimate, done) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

fn save_params(pipeline: &str, t: &TableCopy) -> mysql_async::Params {
    mysql_async::Params::Positional(vec![
        pipeline.into(),
        t.table.as_str().into(),
        t.part.into(),
        t.last_key.clone().into(),
        t.upper_key.clone().into(),
        t.rows_copied.into(),
        t.rows_estimate.into(),
        t.done.into(),
    ])
}

/// Saves a table part's progress after an applied chunk.
pub async fn save_table(conn: &mut Conn, pipeline: &str, t: &TableCopy) -> Result<(), DbError> {
    conn.exec_drop(SAVE_TABLE, save_params(pipeline, t))
        .await
        .map_err(err("saving the copy progress"))
}

/// Saves the parts of a table in one transaction, before any of them is
/// copied: a resumed copy must find all of them or none (a missing part
/// would be a key range never copied).
pub async fn save_parts(
    conn: &mut Conn,
    pipeline: &str,
    parts: &[TableCopy],
) -> Result<(), DbError> {
    let result = async {
        let mut tx = conn.start_transaction(Default::default()).await?;
        for t in parts {
            tx.exec_drop(SAVE_TABLE, save_params(pipeline, t)).await?;
        }
        tx.commit().await
    };
    result
        .await
        .map_err(err("saving the parts of a table's copy"))
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
