//! Dead letters (`reshard_dead_letter`): rows whose shard key could not be
//! derived, recorded instead of halting when `on_derive_error =
//! "dead-letter"`, so no row is ever dropped silently.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use mysql_common::value::Value;

use super::err;
use crate::db::DbError;
use crate::rules::convert::display_cells;
use crate::source::RowChange;

/// Records a row change that cannot be routed, with the routing error.
pub async fn record(
    conn: &mut Conn,
    pipeline: &str,
    change: &RowChange,
    error: &str,
) -> Result<(), DbError> {
    let image = change.after.as_ref().or(change.before.as_ref());
    let key: Vec<Value> = image
        .map(|row| {
            change
                .table
                .pk
                .iter()
                .filter_map(|&i| row.get(i).cloned())
                .collect()
        })
        .unwrap_or_default();
    let row_text = image.map(|r| display_cells(r)).unwrap_or_default();
    let position = change.position();
    tracing::warn!(table = %change.table.full_name(), %position, error, "row dead-lettered");
    crate::metrics::global().dead_lettered(&change.table.full_name());
    conn.exec_drop(
        "INSERT INTO reshard_dead_letter (pipeline, binlog_file, binlog_pos, source_table, row_key, error, row_image) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            pipeline,
            &position.file,
            position.pos,
            change.table.full_name(),
            display_cells(&key),
            error,
            row_text,
        ),
    )
    .await
    .map_err(err("writing a dead letter"))
}

/// How many dead letters the pipeline has.
pub async fn count(conn: &mut Conn, pipeline: &str) -> Result<u64, DbError> {
    let n: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM reshard_dead_letter WHERE pipeline = ?",
            (pipeline,),
        )
        .await
        .map_err(err("counting the dead letters"))?;
    Ok(n.unwrap_or(0))
}
