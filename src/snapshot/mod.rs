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
//! Nothing here depends on the order in which chunks are read or applied.
//!
//! # In parallel, through the lanes
//!
//! [`plan`] splits the work into units (a table, or a key range of a large
//! one, tiling its key space), [`read`] runs `snapshot_readers` source
//! connections reading units in keyset pages, and [`dispatch`] routes the
//! pages into the same writer lanes the stream uses, saving a unit's
//! cursor only once every lane has applied its pages (a watermark over
//! marks, like the checkpoint's). A crash resumes every unit after its
//! last applied page; re-copying a page is harmless (versions). The
//! argument in full: "Copy and stream" in `docs/architecture.md`.
//! Where the dispatcher waited says which side held the copy back
//! ([`crate::monitor::waits`]).

mod dispatch;
mod plan;
mod read;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::watch;

use dispatch::Dispatcher;
use plan::Plan;

use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::control;
use crate::db::{self, DbError, Flavor, Session};
use crate::monitor::waits::Waits;
use crate::pipeline::PipelineError;
use crate::position::Position;
use crate::rules::lookup::Lookups;
use crate::rules::Router;
use crate::version::Version;
use crate::writer::{LanePool, Stats};

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
    /// SIGINT/SIGTERM; the progress of every applied chunk is saved.
    Interrupted,
}

/// Copies every mapped table (resuming each part after its last applied
/// chunk), then marks the snapshot done.
pub async fn copy(mut c: Copy<'_>) -> Result<CopyOutcome, PipelineError> {
    let cfg = c.cfg;
    let p = &cfg.pipeline;
    let _copying = crate::metrics::global().board.copying();
    let version =
        Version::at(p.epoch, &c.position, 0).map_err(|e| PipelineError::Definite(e.to_string()))?;
    let mut source = db::connect(&cfg.source, Session::Write, p.connect_timeout).await?;
    // the tables' columns at P, for streaming from P without FULL metadata
    crate::pipeline::open_history(cfg, c.router, Some(&c.position), "run")
        .await?
        .close()
        .await;
    let mut plan = plan::plan(&mut c, &mut source).await?;
    let _ = source.disconnect().await;
    let work: Vec<read::Work> = plan
        .units
        .iter()
        .enumerate()
        .filter(|(_, u)| !u.done)
        .map(|(i, u)| read::Work {
            unit: i,
            reader: plan.tables[u.table].reader.clone(),
            cursor: u.cursor.clone(),
            upper: u.upper.clone(),
        })
        .collect();
    tracing::info!(position = %c.position, tables = plan.tables.len(), units = work.len(), readers = p.snapshot_readers, "initial copy");
    // the copy's own lanes, with the copy's batch size
    let lanes = cfg.for_copy();
    let (pool, progress) = LanePool::start(&lanes, Arc::new(Stats::default())).await?;
    let batches = dispatch::lane_batches(&lanes)?;
    let mut d = Dispatcher::new(
        pool,
        progress,
        version,
        &plan,
        batches,
        p.snapshot_chunk_rows,
    );
    let outcome = run(&mut c, &mut plan, &mut d, read::start(cfg, work)).await;
    let (waits, elapsed) = d.waits();
    d.close(&mut c, &mut plan, p.shutdown_timeout).await;
    if outcome? == CopyOutcome::Interrupted {
        return Ok(CopyOutcome::Interrupted);
    }
    control::snapshot::finish(c.control, &p.name).await?;
    tracing::info!(
        position = %c.position,
        rows = plan.units.iter().map(|u| u.rows).sum::<u64>(),
        secs = (elapsed.as_secs_f64() * 10.0).round() / 10.0,
        waited_for_source_pct = Waits::percent(waits.source, elapsed),
        waited_for_targets_pct = Waits::percent(waits.targets, elapsed),
        bound_by = waits.bound_by(elapsed),
        "initial copy done; streaming from its position"
    );
    Ok(CopyOutcome::Done)
}

/// Dispatches the readers' pages until every unit is read and applied, a
/// shutdown is asked for, or a lane or reader fails.
async fn run(
    c: &mut Copy<'_>,
    plan: &mut Plan,
    d: &mut Dispatcher,
    mut readers: read::Readers,
) -> Result<CopyOutcome, PipelineError> {
    let mut shutdown = c.shutdown.clone();
    let mut pages_open = true;
    loop {
        if !pages_open && readers.tasks.is_empty() && d.all_applied() {
            return Ok(CopyOutcome::Done);
        }
        // what the dispatcher waits for until a branch is taken
        let side = d.waiting_for(pages_open && readers.pages.is_empty());
        let since = Instant::now();
        tokio::select! {
            biased;
            // (a bool, not the watch's guard: the command runs as a task,
            // whose future must be `Send`)
            true = async { shutdown.wait_for(|stop| *stop).await.is_ok() } => return Ok(CopyOutcome::Interrupted),
            p = d.next_progress() => {
                d.waited(side, since);
                d.applied(c, plan, p?).await?
            }
            Some(ended) = readers.tasks.join_next() => match ended {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(e) => return Err(PipelineError::Definite(format!("a copy reader crashed: {e}"))),
            },
            page = readers.pages.recv(), if pages_open && d.has_room() => match page {
                Some(page) => {
                    d.waited(side, since);
                    d.dispatch(c, plan, page).await?
                }
                None => {
                    // every reader is done: queue what the lanes' buffers hold
                    pages_open = false;
                    d.flush_all(&c.position).await?;
                }
            },
        }
    }
}
