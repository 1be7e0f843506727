//! Dead letters (`reshard_dead_letter`): rows whose shard key could not be
//! derived, recorded instead of halting when `on_derive_error =
//! "dead-letter"`, so no row is ever dropped silently.
//!
//! Each letter keeps the row change itself ([`stored`]: schema, images,
//! version, event length), so `reshard dead-letters retry` routes exactly
//! that change through the current rules and applies it at its own
//! version; why that cannot overwrite newer data is argued in
//! `docs/architecture.md`, "Dead letters".

mod stored;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use mysql_common::value::Value;

use super::err;
use crate::db::DbError;
use crate::position::Position;
use crate::rules::convert::display_cells;
use crate::rules::RouteError;
use crate::source::RowChange;
use crate::version::Version;

pub use stored::StoredError;

/// Records a row change that cannot be routed, with the routing error.
pub async fn record(
    conn: &mut Conn,
    pipeline: &str,
    change: &RowChange,
    error: &RouteError,
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
    let error_text = error.to_string();
    let position = change.position();
    tracing::warn!(table = %change.table.full_name(), %position, error = %error_text, "row dead-lettered");
    crate::metrics::global().dead_lettered(&change.table.full_name());
    conn.exec_drop(
        "INSERT INTO reshard_dead_letter (pipeline, binlog_file, binlog_pos, source_table, row_key, error, row_image, version, span, expression, change_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            Value::from(pipeline),
            Value::from(&position.file),
            Value::from(position.pos),
            Value::from(change.table.full_name()),
            Value::from(display_cells(&key)),
            Value::from(error_text),
            Value::from(row_text),
            Value::from(change.version.to_bytes().to_vec()),
            Value::from(change.span),
            Value::from(expression(error)),
            Value::from(stored::encode(change)),
        ],
    )
    .await
    .map_err(err("writing a dead letter"))
}

/// The expression a routing error names (empty when none).
pub fn expression(error: &RouteError) -> String {
    match error {
        RouteError::Derive { expr, .. } => expr.clone(),
        _ => String::new(),
    }
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

/// One dead letter as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Letter {
    pub id: u64,
    pub table: String,
    pub key: String,
    #[serde(serialize_with = "as_text")]
    pub position: Position,
    /// The expression that failed (empty for letters recorded before
    /// control migration 8).
    pub expression: String,
    pub error: String,
    /// When it was recorded (control server time, UTC).
    pub created_at: String,
    #[serde(skip)]
    pub version: Option<Version>,
    #[serde(skip)]
    pub span: u64,
    #[serde(skip)]
    pub change_json: Option<String>,
}

fn as_text<S: serde::Serializer>(p: &Position, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(p)
}

impl Letter {
    /// The row change to route again, if the letter keeps one.
    pub fn change(&self) -> Option<Result<RowChange, StoredError>> {
        let (json, version) = (self.change_json.as_deref()?, self.version?);
        Some(stored::decode(
            json,
            version,
            self.position.clone(),
            self.span,
        ))
    }
}

type Row = (
    u64,
    String,
    String,
    String,
    u64,
    Option<String>,
    String,
    String,
    Option<Vec<u8>>,
    Option<u64>,
    Option<String>,
);

/// The pipeline's dead letters (of `table`, `db.table`, when given), oldest
/// first.
pub async fn list(
    conn: &mut Conn,
    pipeline: &str,
    table: Option<&str>,
) -> Result<Vec<Letter>, DbError> {
    let rows: Vec<Row> = conn
        .exec(
            "SELECT id, source_table, row_key, binlog_file, binlog_pos, expression, error, \
             DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s'), version, span, change_json \
             FROM reshard_dead_letter WHERE pipeline = ? AND (? IS NULL OR source_table = ?) ORDER BY id",
            (pipeline, table, table),
        )
        .await
        .map_err(err("reading the dead letters"))?;
    Ok(rows
        .into_iter()
        .map(|r| Letter {
            id: r.0,
            table: r.1,
            key: r.2,
            position: Position::new(r.3, r.4),
            expression: r.5.unwrap_or_default(),
            error: r.6,
            created_at: r.7,
            version: r.8.and_then(|b| Version::from_bytes(&b).ok()),
            span: r.9.unwrap_or(0),
            change_json: r.10,
        })
        .collect())
}

/// Deletes letters by id; returns how many went.
pub async fn delete(conn: &mut Conn, pipeline: &str, ids: &[u64]) -> Result<u64, DbError> {
    let mut n = 0;
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let mut params = vec![Value::from(pipeline)];
        params.extend(chunk.iter().map(|&i| Value::from(i)));
        conn.exec_drop(
            format!("DELETE FROM reshard_dead_letter WHERE pipeline = ? AND id IN ({marks})"),
            params,
        )
        .await
        .map_err(err("deleting dead letters"))?;
        n += conn.affected_rows();
    }
    Ok(n)
}

/// Replaces a letter's error (a retry that still cannot route it).
pub async fn update_error(
    conn: &mut Conn,
    id: u64,
    error: &str,
    expression: &str,
) -> Result<(), DbError> {
    conn.exec_drop(
        "UPDATE reshard_dead_letter SET error = ?, expression = ? WHERE id = ?",
        (error, expression, id),
    )
    .await
    .map_err(err("updating a dead letter"))
}
