//! The *streamer* role: everything that reads the source.
//!
//! * [`preflight`] — `ensure_*` checks of the source's settings;
//! * [`stream`] — the tailer (replica connection, checksum verification),
//!   feeding an [`events::Decoder`];
//! * [`events`] — the binlog event state machine shared by the tailer and
//!   the offline reader: transaction assembly, positions, compressed
//!   payloads, table maps, schema completion;
//! * [`framing`] — the event iterator over binlog files (framing, CRC32,
//!   TRANSACTION_PAYLOAD decompression), shared by [`file`], [`archive`]
//!   and `inspect`; [`bounds`] checks bodies before mysql_common parses;
//! * [`file`] — the offline reader of binlog files over the same decoder;
//! * [`archive`] — a directory of archived binlog files as a source of the
//!   pipeline (`replay --binlog-dir`), next to the [`stream`] tailer;
//! * [`view`] — the event-level view behind `reshard inspect`;
//! * [`rebuild`] — MariaDB's compressed events and pre-GA rows events
//!   re-made as the plain events mysql_common parses;
//! * [`json_binary`] — MySQL's binary JSON → the text MySQL prints;
//! * [`schema`] — table schemas from TABLE_MAP metadata or information_schema;
//! * [`history`] — the schema history: each mapped table's columns by
//!   position, for TABLE_MAPs without names (see its docs); [`ddl`] reads
//!   the head of a DDL statement for it; [`ddl_policy`] judges each DDL
//!   of a mapped table by `[pipeline] on_ddl` (halt, follow, ignore);
//! * [`collation`] — the collations of key columns, learned at start-up;
//! * [`row_image`] — what row values become (the bindable values) and the
//!   decoding errors;
//! * [`rows`] — table rows read by `SELECT` in the same form, by key
//!   ranges (the initial copy, dry-run sampling, verify);
//! * [`xa`] — XA ids and the rows of prepared XA transactions, held until
//!   their outcome;
//! * [`rollback`] — savepoints, rolled-back rows and which of them
//!   persisted (non-transactional tables);
//! * [`spool`] — the rows of an event group held until its outcome, in
//!   memory within a budget and in a temporary file beyond, handed out in
//!   bounded chunks;
//! * [`decode`] — the row decoder: rows events → bindable values, straight
//!   from the event bytes, with each table's layout read once (for the
//!   pipeline and for `inspect`: no row value is parsed by mysql_common);
//! * [`change`] — the types handed to the router;
//! * [`gtid`] — MySQL GTID sets, and where one is complete in the source's
//!   binlog (the cut-over fence on MySQL).

pub mod archive;
pub mod bounds;
pub mod change;
pub mod checksum;
pub mod collation;
pub mod ddl;
pub mod ddl_policy;
pub mod decode;
pub mod events;
pub mod file;
pub mod framing;
pub mod gtid;
pub mod history;
pub mod json_binary;
pub mod preflight;
pub mod rebuild;
pub mod rollback;
pub mod row_image;
pub mod rows;
pub mod schema;
pub mod spool;
pub mod stream;
pub mod view;
pub mod xa;

pub use change::{Chunk, RowChange, SourceItem, Transaction};
pub use events::{Decoder, DecoderOptions, EventAt, Hold};
pub use file::{BinlogFile, FileError, FileSummary};
pub use schema::{Column, TableSchema};
pub use stream::{StartAt, TableFilter, Tailer, TailerOptions};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::db::{DbError, Retry};
use crate::position::Position;

/// A failure while reading the source. [`SourceError::retry`] says whether
/// reading again can help; a database failure keeps its own decision.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A database failure while reading (stream, schema queries).
    #[error(transparent)]
    Db(#[from] DbError),
    /// The stream ended without an error of its own: retry from the
    /// checkpoint with backoff. (The message is all there is.)
    #[error("{0}")]
    Transient(String),
    /// Something reshard refuses in what it read, which reading again will
    /// not fix. (The message is all there is.)
    #[error("{0}")]
    Definite(String),
    #[error("binlog checksum mismatch in event type {event_type} at {position}: stored {expected:#010x}, computed {actual:#010x}; the binlog or the network corrupted it")]
    Checksum {
        position: Position,
        event_type: u8,
        expected: u32,
        actual: u32,
    },
    #[error("the source cannot stream from {position}: {message}. If the file was purged, the changes since then are gone from the binlog: re-seed the targets (run without a checkpoint) or restore the binlog; if the position is not an event start, use a transaction boundary from `reshard status`")]
    Unavailable { position: Position, message: String },
    #[error("cannot decode the event at {position}: {message}")]
    Decode { position: Position, message: String },
    #[error(transparent)]
    Schema(schema::SchemaError),
    #[error(transparent)]
    Preflight(#[from] preflight::PreflightError),
    /// Reading a binlog file offline.
    #[error(transparent)]
    File(Box<file::FileError>),
    /// Holding or handing out a group's rows ([`spool`]).
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
}

impl SourceError {
    /// Transient for a lost stream and as the database says for database
    /// failures; everything else is definite.
    pub fn retry(&self) -> Retry {
        match self {
            SourceError::Transient(_) => Retry::Transient,
            SourceError::Db(e)
            | SourceError::Schema(schema::SchemaError::Db(e))
            | SourceError::Preflight(preflight::PreflightError::Db(e)) => e.retry(),
            _ => Retry::Definite,
        }
    }
}

/// The source's current end of binlog (`SHOW MASTER STATUS`, or `SHOW BINARY
/// LOG STATUS` on MySQL ≥ 8.4).
pub async fn head(conn: &mut Conn) -> Result<Position, DbError> {
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(r) => r,
        Err(_) => conn
            .query_first("SHOW BINARY LOG STATUS")
            .await
            .map_err(|e| DbError::query("source", "SHOW BINARY LOG STATUS", e))?,
    };
    let row = row.ok_or_else(|| {
        DbError::unexpected(
            "source",
            "SHOW MASTER STATUS",
            "returned nothing: the binary log is off",
        )
    })?;
    let file: Option<String> = row.get(0);
    let pos: Option<u64> = row.get(1);
    match (file, pos) {
        (Some(file), Some(pos)) => Ok(Position::new(file, pos)),
        _ => Err(DbError::unexpected(
            "source",
            "SHOW MASTER STATUS",
            "unexpected result shape",
        )),
    }
}

/// The binlog files the source still has, oldest first.
pub async fn binlog_files(conn: &mut Conn) -> Result<Vec<String>, DbError> {
    let rows: Vec<mysql_async::Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| DbError::query("source", "SHOW BINARY LOGS", e))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.get::<String, _>(0))
        .collect())
}

/// A name for the source server that changes when it is a different server:
/// `@@server_uuid` on MySQL, `server_id` on MariaDB.
pub async fn server_identity(conn: &mut Conn) -> Result<String, DbError> {
    let uuid: Option<Option<String>> = conn.query_first("SELECT @@server_uuid").await.ok();
    if let Some(Some(u)) = uuid {
        return Ok(u);
    }
    let id: Option<u64> = conn
        .query_first("SELECT @@server_id")
        .await
        .map_err(|e| DbError::query("source", "SELECT @@server_id", e))?;
    Ok(format!("server_id={}", id.unwrap_or(0)))
}
