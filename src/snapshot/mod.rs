//! The initial copy: existing rows of every mapped table, without locks.
//!
//! # Why the copy needs no table locks
//!
//! (The argument in full: "Copy and stream" in `docs/architecture.md`.)
//!
//! 1. We obtain a source position P that is consistent with what readers
//!    see: `START TRANSACTION WITH CONSISTENT SNAPSHOT` plus the
//!    `binlog_snapshot_file/position` status (MariaDB, Percona), or MySQL's
//!    `performance_schema.log_status`. Every transaction before P in the
//!    binlog is visible to that snapshot, and no transaction after P is.
//!    (`SHOW MASTER STATUS` is not enough: a transaction can be in the
//!    binlog before its position but not yet visible in InnoDB; a copy
//!    would miss it and the stream, starting after it, too.) Likewise an
//!    XA transaction prepared before P and committed after it: P is taken
//!    again while `XA RECOVER` lists prepared transactions
//!    ([`consistent_position`]).
//! 2. P is saved (with the checkpoint = P) **before** any row is copied,
//!    and a resumed copy reuses it.
//! 3. Each chunk is its own short statement that starts after P was taken,
//!    so it sees every transaction before P (and maybe some after). Rows go
//!    through the same router and writer at version
//!    `v(P) = epoch|seq(P)|offset(P)|0`.
//! 4. Streaming then starts at P. Every change after P has a version
//!    greater than v(P): it wins over the copied row whichever is applied
//!    first, and a row deleted after P is protected by its tombstone (the
//!    copy's upsert at v(P) loses against it).
//!
//! So whatever interleaving of copy and source writes happens, after the
//! stream has passed the copy's end every key holds its latest version.
//! Chunks are keyset-paginated in primary-key order and the last key of
//! each finished chunk is saved, so a crash resumes at the last finished
//! chunk rather than from zero (re-copying a chunk is harmless: versions).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use mysql_common::value::Value;
use tokio::sync::watch;

use crate::checkpoint::Checkpoint;
use crate::config::{Config, OnDeriveError};
use crate::control;
use crate::db::{self, DbError, Flavor, Session};
use crate::pipeline::PipelineError;
use crate::position::Position;
use crate::rules::lookup::Lookups;
use crate::rules::{RouteError, Routed, Router};
use crate::source::rows::TableReader;
use crate::source::schema::load_table;
use crate::source::{RowChange, TableSchema};
use crate::version::Version;
use crate::writer::lane::{apply_batch, LaneConfig, Stats, TombstoneHints};
use crate::writer::{keyenc, WriteOp};

/// How long the copy waits for prepared XA transactions to resolve.
const XA_WAIT: Duration = Duration::from_secs(600);

/// Obtains a position consistent with what a reader sees (see the module
/// docs), at a moment when no XA transaction is prepared on the source.
///
/// A transaction prepared before P and committed after it is invisible to
/// the copy, and the stream from P reads only its `XA COMMIT`, not its
/// rows. So while `XA RECOVER` lists prepared transactions after P was
/// taken, P is taken again (with backoff, for at most ten minutes). The
/// stream still refuses an `XA COMMIT` whose PREPARE it never read, for a
/// transaction prepared and committed around P between two checks.
pub async fn consistent_position(conn: &mut Conn, flavor: Flavor) -> Result<Position, DbError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(200);
    loop {
        let p = snapshot_position(conn, flavor).await?;
        let prepared = prepared_xa(conn).await?;
        if prepared.is_empty() {
            return Ok(p);
        }
        if started.elapsed() >= XA_WAIT {
            return Err(DbError::unexpected(
                "source",
                "taking a consistent snapshot position",
                format!(
                    "XA RECOVER still lists {} prepared XA transaction(s) after {}s ({}); the copy cannot see their rows. Commit or roll them back (XA COMMIT / XA ROLLBACK) and start again",
                    prepared.len(),
                    XA_WAIT.as_secs(),
                    prepared.join(", ")
                ),
            ));
        }
        tracing::warn!(position = %p, xids = %prepared.join(", "), "prepared XA transaction(s) on the source: the copy cannot see their rows, waiting for their XA COMMIT or XA ROLLBACK");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// The xids `XA RECOVER` lists. Without the privilege to run it (MySQL
/// 8.0's XA_RECOVER_ADMIN), none: the stream's check remains.
async fn prepared_xa(conn: &mut Conn) -> Result<Vec<String>, DbError> {
    let rows: Vec<(i64, usize, usize, Vec<u8>)> = match conn.query("XA RECOVER").await {
        Ok(rows) => rows,
        Err(mysql_async::Error::Server(e)) if e.code == 1227 || e.code == 1044 => {
            tracing::warn!(error = %e.message, "cannot run XA RECOVER; the copy cannot wait for prepared XA transactions");
            return Ok(Vec::new());
        }
        Err(e) => return Err(DbError::query("source", "XA RECOVER", e)),
    };
    Ok(rows
        .into_iter()
        .map(|(format_id, gl, bl, data)| {
            let part = |r: std::ops::Range<usize>| data.get(r).unwrap_or_default().to_vec();
            crate::source::xa::Xid {
                format_id,
                gtrid: part(0..gl),
                bqual: part(gl..gl + bl),
            }
            .to_string()
        })
        .collect())
}

/// A position consistent with what a reader sees, holding the snapshot
/// transaction only for the status query.
async fn snapshot_position(conn: &mut Conn, flavor: Flavor) -> Result<Position, DbError> {
    let q = |e| DbError::query("source", "taking a consistent snapshot position", e);
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await
        .map_err(q)?;
    let rows: Vec<(String, String)> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(q)?;
    conn.query_drop("COMMIT").await.map_err(q)?;
    let get = |name: &str| {
        rows.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if let (Some(file), Some(pos)) = (get("binlog_snapshot_file"), get("binlog_snapshot_position"))
    {
        if let Ok(pos) = pos.parse::<u64>() {
            if !file.is_empty() {
                return Ok(Position::new(file, pos));
            }
        }
    }
    if flavor == Flavor::MySql {
        // log_status blocks commits while it collects, so the position is
        // consistent with InnoDB
        let local: Option<String> = conn
            .query_first("SELECT CAST(LOCAL AS CHAR) FROM performance_schema.log_status")
            .await
            .map_err(|e| {
                DbError::query(
                    "source",
                    "reading performance_schema.log_status (needs BACKUP_ADMIN)",
                    e,
                )
            })?;
        if let Some(json) = local {
            let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
            let file = v["binary_log_position"]
                .as_u64()
                .zip(v["binary_log_file"].as_str().map(str::to_string));
            if let Some((pos, file)) = file {
                return Ok(Position::new(file, pos));
            }
        }
    }
    Err(DbError::unexpected(
        "source",
        "taking a consistent snapshot position",
        "the server reports neither binlog_snapshot_file/position (MariaDB, Percona) nor performance_schema.log_status (MySQL 8.0+)",
    ))
}

/// Saves P, the checkpoint P and the floor v(P) in one transaction, before
/// any row is copied.
pub async fn begin(
    control: &mut Conn,
    pipeline: &str,
    p: &Position,
    epoch: u16,
    identity: &str,
) -> Result<(), DbError> {
    let floor = Version::at(epoch, p, 0).map_err(|e| {
        DbError::unexpected(
            "source",
            format!("versioning the snapshot position {p}"),
            e.to_string(),
        )
    })?;
    let cp = Checkpoint {
        position: p.clone(),
        epoch,
        source_identity: identity.to_string(),
    };
    control::snapshot::begin(control, pipeline, &cp, floor).await
}

/// What the copy needs.
pub struct Copy<'a> {
    pub cfg: &'a Config,
    pub router: &'a mut Router,
    pub lookups: &'a mut Lookups,
    pub control: &'a mut Conn,
    pub position: Position,
    pub shutdown: watch::Receiver<bool>,
}

/// How a copy ended.
#[derive(Debug, PartialEq, Eq)]
pub enum CopyOutcome {
    Done,
    /// SIGINT/SIGTERM between chunks; progress is saved.
    Interrupted,
}

struct TableProgress {
    last_key: Option<Vec<Value>>,
    rows: u64,
    done: bool,
}

async fn progress(
    control: &mut Conn,
    pipeline: &str,
) -> Result<BTreeMap<String, TableProgress>, DbError> {
    let rows = control::snapshot::tables(control, pipeline).await?;
    Ok(rows
        .into_iter()
        .map(|t| {
            (
                t.table,
                TableProgress {
                    last_key: t.last_key.and_then(|k| keyenc::decode(&k)),
                    rows: t.rows_copied,
                    done: t.done,
                },
            )
        })
        .collect())
}

/// Saves the progress of one table after a finished chunk.
async fn save_progress(
    control: &mut Conn,
    pipeline: &str,
    t: &TableCopy,
    finished: bool,
) -> Result<(), DbError> {
    let saved = control::snapshot::TableCopy {
        table: t.full.clone(),
        last_key: t.cursor.as_ref().map(|k| keyenc::encode(k)),
        rows_copied: t.rows,
        rows_estimate: t.estimate.max(t.rows),
        done: finished,
    };
    control::snapshot::save_table(control, pipeline, &saved).await
}

/// Copies every mapped table (resuming after the last finished chunk),
/// then marks the snapshot done.
pub async fn copy(mut c: Copy<'_>) -> Result<CopyOutcome, PipelineError> {
    let p = &c.cfg.pipeline;
    let _copying = crate::metrics::global().board.copying();
    let mut source = db::connect(&c.cfg.source, Session::Write, p.connect_timeout).await?;
    let mut writers = Writers::connect(c.cfg).await?;
    let version =
        Version::at(p.epoch, &c.position, 0).map_err(|e| PipelineError::Definite(e.to_string()))?;
    let mut done = progress(c.control, &p.name).await?;
    let mut tables: Vec<(String, String)> = c
        .router
        .rules()
        .map(|r| (r.source_db.clone(), r.source_table.clone()))
        .collect();
    tables.sort();
    tracing::info!(position = %c.position, tables = tables.len(), "initial copy");
    // the tables' columns at P, for streaming from P without FULL metadata
    crate::pipeline::open_history(c.cfg, c.router, Some(&c.position))
        .await?
        .close()
        .await;

    for (db_name, table) in tables {
        let state = done
            .remove(&format!("{db_name}.{table}"))
            .unwrap_or(TableProgress {
                last_key: None,
                rows: 0,
                done: false,
            });
        if state.done {
            continue;
        }
        let mut t = TableCopy::open(&mut c, &mut source, &db_name, &table, state).await?;
        if copy_table(&mut c, &mut source, &mut writers, &mut t, version).await?
            == CopyOutcome::Interrupted
        {
            return Ok(CopyOutcome::Interrupted);
        }
    }
    control::snapshot::finish(c.control, &c.cfg.pipeline.name).await?;
    writers.disconnect().await;
    tracing::info!(position = %c.position, "initial copy done; streaming from its position");
    Ok(CopyOutcome::Done)
}

/// One writer connection per target shard this process applies, with the
/// router's index of the shard. (With `[pipeline] shards`, the rows routed
/// to the other shards are dropped: each subset copies its own shards.)
struct Writers {
    shards: Vec<(usize, LaneConfig, Conn, TombstoneHints)>,
    stats: Stats,
}

impl Writers {
    async fn connect(cfg: &Config) -> Result<Writers, PipelineError> {
        let p = &cfg.pipeline;
        let mut shards = Vec::new();
        for (i, ep) in cfg.targets.values().enumerate() {
            if !cfg.applies(&ep.name) {
                continue;
            }
            let conn = db::connect(ep, Session::Write, p.connect_timeout).await?;
            let lane = LaneConfig {
                pipeline: p.name.clone(),
                shard: ep.name.clone(),
                lane: 0,
                lane_in_shard: 0,
                batch_size: p.batch_size,
                linger: p.linger,
            };
            shards.push((i, lane, conn, TombstoneHints::default()));
        }
        Ok(Writers {
            shards,
            stats: Stats::default(),
        })
    }

    /// Applies a chunk's operations on every shard at once.
    async fn apply(&mut self, mut per_shard: BTreeMap<usize, Vec<WriteOp>>) -> Result<(), DbError> {
        let stats = &self.stats;
        let mut futures = Vec::new();
        for (i, lc, conn, hints) in self.shards.iter_mut() {
            if let Some(ops) = per_shard.remove(i) {
                futures.push(async move { apply_batch(conn, lc, ops, None, stats, hints).await });
            }
        }
        for r in futures_util::future::join_all(futures).await {
            r?;
        }
        Ok(())
    }

    async fn disconnect(self) {
        for (_, _, conn, _) in self.shards {
            let _ = conn.disconnect().await;
        }
    }
}

/// The copy of one table in progress.
struct TableCopy {
    reader: TableReader,
    full: String,
    estimate: u64,
    /// The last key copied (the keyset cursor).
    cursor: Option<Vec<Value>>,
    /// Rows copied so far (with those of earlier runs).
    rows: u64,
    /// Rows copied before this run.
    base_rows: u64,
    started: Instant,
    last_log: Instant,
    bar: Option<indicatif::ProgressBar>,
}

impl TableCopy {
    /// Resolves the table's schema and row identity and resumes its
    /// progress.
    async fn open(
        c: &mut Copy<'_>,
        source: &mut Conn,
        db_name: &str,
        table: &str,
        state: TableProgress,
    ) -> Result<TableCopy, PipelineError> {
        let full = format!("{db_name}.{table}");
        let schema = Arc::new(
            load_table(source, db_name, table)
                .await
                .map_err(|e| PipelineError::Definite(e.to_string()))?,
        );
        let key = c
            .router
            .row_identity(&schema)
            .map_err(|e| PipelineError::Definite(e.to_string()))?;
        let reader = TableReader::open(source, "source", schema, key).await?;
        let estimate = reader.estimate(source).await?.max(state.rows);
        Ok(TableCopy {
            bar: std::io::stderr()
                .is_terminal()
                .then(|| progress_bar(&full, estimate, state.rows)),
            reader,
            full,
            estimate,
            cursor: state.last_key,
            rows: state.rows,
            base_rows: state.rows,
            started: Instant::now(),
            last_log: Instant::now(),
        })
    }

    /// Shows the rows copied so far: on the bar, else in a log line every
    /// `interval`.
    fn report(&mut self, interval: Duration) {
        if let Some(b) = &self.bar {
            if self.rows > b.length().unwrap_or(0) {
                b.set_length(self.rows);
            }
            b.set_position(self.rows);
        } else if self.last_log.elapsed() >= interval {
            let rate = (self.rows - self.base_rows) as f64
                / self.started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(table = %self.full, rows = self.rows, estimate = self.estimate, rows_per_s = rate.round(), "copying");
            self.last_log = Instant::now();
        }
    }

    /// Waits as long as `rows_per_sec` (0: no limit) asks.
    async fn throttle(&self, rows_per_sec: u64) {
        if rows_per_sec == 0 {
            return;
        }
        let due =
            Duration::from_secs_f64((self.rows - self.base_rows) as f64 / rows_per_sec as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

fn progress_bar(full: &str, estimate: u64, rows: u64) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(estimate);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/~{len} rows {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b.set_message(full.to_string());
    b.set_position(rows);
    b
}

/// Copies one table chunk by chunk from its cursor, saving the progress
/// after each chunk is applied on every shard.
async fn copy_table(
    c: &mut Copy<'_>,
    source: &mut Conn,
    writers: &mut Writers,
    t: &mut TableCopy,
    version: Version,
) -> Result<CopyOutcome, PipelineError> {
    let p = &c.cfg.pipeline;
    let chunk = p.snapshot_chunk_rows;
    loop {
        if *c.shutdown.borrow() {
            if let Some(b) = &t.bar {
                b.abandon();
            }
            return Ok(CopyOutcome::Interrupted);
        }
        let page = t.reader.next_page(source, &mut t.cursor, chunk).await?;
        let n = page.len();
        if !c.lookups.is_empty() {
            c.lookups.refresh(c.control).await?;
        }
        let per_shard = route_chunk(c, t.reader.schema(), page, version).await?;
        writers.apply(per_shard).await?;
        crate::metrics::global().copied(&t.full, n as u64);
        t.rows += n as u64;
        let finished = n < chunk;
        save_progress(c.control, &p.name, t, finished).await?;
        t.report(p.progress_interval);
        if finished {
            break;
        }
        t.throttle(p.snapshot_rows_per_sec).await;
    }
    if let Some(b) = &t.bar {
        b.finish();
    }
    tracing::info!(table = %t.full, rows = t.rows, secs = t.started.elapsed().as_secs_f64(), "table copied");
    Ok(CopyOutcome::Done)
}

/// Routes a chunk of copied rows as inserts at the copy's version, per
/// shard. A row the rule cannot route is dead-lettered when
/// `on_derive_error = "dead-letter"`; otherwise the copy stops, before the
/// chunk is applied, so that no row is dropped.
async fn route_chunk(
    c: &mut Copy<'_>,
    schema: &Arc<TableSchema>,
    rows: Vec<Vec<Value>>,
    version: Version,
) -> Result<BTreeMap<usize, Vec<WriteOp>>, PipelineError> {
    let p = &c.cfg.pipeline;
    let stop = |e: RouteError| {
        PipelineError::Definite(format!(
            "{e}\nThe initial copy stopped so that no row is dropped; fix the rule (or set on_derive_error = \"dead-letter\") and run again: the copy resumes at its last finished chunk."
        ))
    };
    let mut per_shard: BTreeMap<usize, Vec<WriteOp>> = BTreeMap::new();
    let file: Arc<str> = Arc::from(c.position.file.as_str());
    for row in rows {
        let change = RowChange::selected(schema.clone(), row, version, file.clone());
        match c.router.route_row(&change, &*c.lookups).map_err(stop)? {
            Routed::Ops(ops) => {
                for op in ops {
                    per_shard.entry(op.shard).or_default().push(op);
                }
            }
            Routed::Unroutable(e) if p.on_derive_error == OnDeriveError::DeadLetter => {
                control::dead_letter::record(c.control, &p.name, &change, &e.to_string()).await?;
            }
            Routed::Unroutable(e) => return Err(stop(e)),
        }
    }
    Ok(per_shard)
}
