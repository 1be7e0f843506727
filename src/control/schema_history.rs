//! The schema history (`reshard_schema_history`): the columns of each
//! mapped source table from the position at which they became valid, per
//! pipeline and epoch; and the scratch table a DDL is replayed on to learn
//! what it did. Why the history makes decoding by position correct is in
//! [`crate::source::history`] and `docs/architecture.md`, "Schema history".
//!
//! Rows are only ever added or replaced by an identical derivation: a row
//! is keyed by its position, and the columns valid at a position never
//! change (a DDL seen again after a restart derives the same result from
//! the same earlier row, and an existing row is kept).

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::err;
use crate::db::{quote_ident, DbError, Retry};
use crate::position::Position;
use crate::source::schema::{load_catalog, Catalog, CatalogColumn, SchemaError};

/// What the history says of a table's columns.
#[derive(Debug, Clone, PartialEq)]
pub enum Columns {
    Known(Catalog),
    /// The table does not exist (dropped, renamed away, or not yet created).
    Absent,
    /// reshard cannot know them; the record's note says why.
    Unknown,
}

/// One row of the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub db: String,
    pub table: String,
    /// From here on (until the next record of the table).
    pub position: Position,
    pub columns: Columns,
    /// `SHOW CREATE TABLE` of the table (named as the source names it)
    /// when known: what the next DDL is replayed on.
    pub create_sql: String,
    /// Where the record came from (the start, or the DDL), or why the
    /// columns are unknown.
    pub note: String,
}

/// The stored form of [`Columns::Known`].
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    columns: Vec<CatalogColumn>,
    pk: Vec<String>,
}

/// A history row as stored, without pipeline and epoch.
type Row = (String, String, String, u64, String, String, String, String);

/// Every record of the pipeline's epoch, in no particular order.
pub async fn load(conn: &mut Conn, pipeline: &str, epoch: u16) -> Result<Vec<Record>, DbError> {
    let rows: Vec<Row> = conn
        .exec(
            "SELECT source_db, source_table, binlog_file, binlog_pos, state, columns_json, create_sql, note \
             FROM reshard_schema_history WHERE pipeline = ? AND epoch = ?",
            (pipeline, epoch),
        )
        .await
        .map_err(err("reading the schema history"))?;
    rows.into_iter()
        .map(|(db, table, file, pos, state, json, create_sql, note)| {
            let columns = match state.as_str() {
                "known" => {
                    let s: Stored = serde_json::from_str(&json).map_err(|e| {
                        DbError::unexpected(
                            "control",
                            "reading the schema history",
                            format!(
                                "the columns of {db}.{table} at {file}:{pos} do not parse: {e}"
                            ),
                        )
                    })?;
                    Columns::Known((s.columns, s.pk))
                }
                "absent" => Columns::Absent,
                _ => Columns::Unknown,
            };
            Ok(Record {
                position: Position::new(file, pos),
                db,
                table,
                columns,
                create_sql,
                note,
            })
        })
        .collect()
}

/// Adds a record; an existing record at the same position is kept.
pub async fn record(
    conn: &mut Conn,
    pipeline: &str,
    epoch: u16,
    r: &Record,
) -> Result<(), DbError> {
    let (state, json) = match &r.columns {
        Columns::Known((columns, pk)) => {
            let json = serde_json::to_string(&Stored {
                columns: columns.clone(),
                pk: pk.clone(),
            })
            .map_err(|e| {
                DbError::unexpected("control", "recording the schema history", e.to_string())
            })?;
            ("known", json)
        }
        Columns::Absent => ("absent", String::new()),
        Columns::Unknown => ("unknown", String::new()),
    };
    conn.exec_drop(
        "INSERT IGNORE INTO reshard_schema_history \
         (pipeline, epoch, source_db, source_table, binlog_file, binlog_pos, state, columns_json, create_sql, note) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            pipeline,
            epoch,
            &r.db,
            &r.table,
            &r.position.file,
            r.position.pos,
            state,
            json,
            &r.create_sql,
            &r.note,
        ),
    )
    .await
    .map_err(err("recording the schema history"))
}

/// What replaying a DDL on a scratch copy of a table made of it.
#[derive(Debug)]
pub enum Replayed {
    /// The table after the DDL (its `SHOW CREATE TABLE`, naming the
    /// scratch table), and the catalogs before and after.
    Table {
        create_sql: String,
        before: Option<Catalog>,
        after: Catalog,
    },
    /// The DDL renamed or dropped the table.
    Gone,
    /// The control server refused a step: its message.
    Rejected(String),
}

/// Creates the scratch table `scratch` in the control database with
/// `create` (a `CREATE TABLE` naming it), applies `ddl` (naming it too) if
/// any, reads the result and drops the scratch table again. A statement
/// the server refuses is [`Replayed::Rejected`]; a failure that may clear
/// (a lost connection) is an error.
pub async fn replay(
    conn: &mut Conn,
    scratch: &str,
    create: &str,
    ddl: Option<&str>,
) -> Result<Replayed, SchemaError> {
    let db: Option<String> = conn
        .query_first("SELECT DATABASE()")
        .await
        .map_err(err("reading the control database name"))?;
    let db = db.unwrap_or_default();
    let drop = format!("DROP TABLE IF EXISTS {}", quote_ident(scratch));
    // the source's DDL, not the control server's session: no strict mode,
    // foreign keys to tables that are not here
    for setup in [
        drop.as_str(),
        "SET SESSION sql_mode = '', foreign_key_checks = 0",
    ] {
        if let Err(m) = step(conn, setup).await? {
            return Ok(Replayed::Rejected(m));
        }
    }
    let result = apply(conn, &db, scratch, create, ddl).await;
    let cleanup = step(conn, &drop).await;
    let replayed = result?;
    cleanup?.map_err(|m| DbError::unexpected("control", "dropping the scratch table", m))?;
    Ok(replayed)
}

/// The steps of [`replay`] between setting up and cleaning up.
async fn apply(
    conn: &mut Conn,
    db: &str,
    scratch: &str,
    create: &str,
    ddl: Option<&str>,
) -> Result<Replayed, SchemaError> {
    if let Err(m) = step(conn, create).await? {
        return Ok(Replayed::Rejected(m));
    }
    let mut before = None;
    if let Some(ddl) = ddl {
        before = Some(load_catalog(conn, "control", db, scratch).await?);
        if let Err(m) = step(conn, ddl).await? {
            return Ok(Replayed::Rejected(m));
        }
    }
    let shown: Result<Option<(String, String)>, _> = conn
        .query_first(format!("SHOW CREATE TABLE {}", quote_ident(scratch)))
        .await;
    let create_sql = match shown {
        Ok(Some((_, sql))) => sql,
        Ok(None) => return Ok(Replayed::Gone),
        Err(e) => {
            let e = DbError::query("control", "reading the scratch table", e);
            return match (e.code(), e.retry()) {
                (Some(1146), _) => Ok(Replayed::Gone),
                (_, Retry::Transient) => Err(e.into()),
                _ => Ok(Replayed::Rejected(e.to_string())),
            };
        }
    };
    let after = load_catalog(conn, "control", db, scratch).await?;
    Ok(Replayed::Table {
        create_sql,
        before,
        after,
    })
}

/// Runs one statement: `Ok(Err(message))` when the server refused it.
async fn step(conn: &mut Conn, sql: &str) -> Result<Result<(), String>, SchemaError> {
    match conn.query_drop(sql).await {
        Ok(()) => Ok(Ok(())),
        Err(e) => {
            let e = DbError::query("control", "replaying a DDL on a scratch table", e);
            match e.retry() {
                Retry::Transient => Err(e.into()),
                Retry::Definite => Ok(Err(e.to_string())),
            }
        }
    }
}
