//! The initial copy: existing rows of every mapped table, without locks.
//!
//! # Why the copy needs no table locks (DESIGN §3)
//!
//! 1. We obtain a source position P that is consistent with what readers
//!    see: `START TRANSACTION WITH CONSISTENT SNAPSHOT` plus the
//!    `binlog_snapshot_file/position` status (MariaDB, Percona), or MySQL's
//!    `performance_schema.log_status`. Every transaction before P in the
//!    binlog is visible to that snapshot, and no transaction after P is.
//!    (`SHOW MASTER STATUS` is not enough: a transaction can be in the
//!    binlog before its position but not yet visible in InnoDB; a copy
//!    would miss it and the stream, starting after it, too.)
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
use mysql_async::{Conn, Params, Row};
use tokio::sync::watch;

use crate::checkpoint::Checkpoint;
use crate::config::{Config, OnDeriveError};
use crate::control;
use crate::db::{self, quote_ident, DbError, Flavor, Session};
use crate::inspect::sample::{after_key, after_params, normalize, select_list};
use crate::pipeline::PipelineError;
use crate::position::Position;
use crate::rules::lookup::Lookups;
use crate::rules::{RouteError, Router};
use crate::source::schema::load_table;
use crate::source::RowChange;
use crate::version::Version;
use crate::writer::lane::{apply_batch, LaneConfig, Stats, TombstoneHints};
use crate::writer::{keyenc, WriteOp};

/// Obtains a position consistent with what a reader sees (see the module
/// docs), holding the snapshot transaction only for the status query.
pub async fn consistent_position(conn: &mut Conn, flavor: Flavor) -> Result<Position, DbError> {
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
    last_key: Option<Vec<mysql_common::value::Value>>,
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

/// Copies every mapped table (resuming after the last finished chunk),
/// then marks the snapshot done.
pub async fn copy(c: Copy<'_>) -> Result<CopyOutcome, PipelineError> {
    let cfg = c.cfg;
    let p = &cfg.pipeline;
    let budget = p.connect_timeout;
    let mut reader = db::connect(&cfg.source, Session::Write, budget).await?;
    let mut writers: Vec<(LaneConfig, Conn, TombstoneHints)> = Vec::new();
    for ep in cfg.targets.values() {
        let conn = db::connect(ep, Session::Write, budget).await?;
        writers.push((
            LaneConfig {
                pipeline: p.name.clone(),
                shard: ep.name.clone(),
                lane: 0,
                lane_in_shard: 0,
                batch_size: p.batch_size,
                linger: p.linger,
            },
            conn,
            TombstoneHints::default(),
        ));
    }
    let stats = Stats::default();
    let version =
        Version::at(p.epoch, &c.position, 0).map_err(|e| PipelineError::Definite(e.to_string()))?;
    let mut done = progress(c.control, &p.name).await?;
    let mut tables: Vec<(String, String)> = c
        .router
        .rules()
        .map(|r| (r.source_db.clone(), r.source_table.clone()))
        .collect();
    tables.sort();
    let tty = std::io::stderr().is_terminal();
    tracing::info!(position = %c.position, tables = tables.len(), "initial copy");

    for (db_name, table) in tables {
        let full = format!("{db_name}.{table}");
        let state = done.remove(&full).unwrap_or(TableProgress {
            last_key: None,
            rows: 0,
            done: false,
        });
        if state.done {
            continue;
        }
        let schema = Arc::new(
            load_table(&mut reader, &db_name, &table)
                .await
                .map_err(|e| PipelineError::Definite(e.to_string()))?,
        );
        let rule_key = c
            .router
            .rules()
            .find(|r| r.source_db == db_name && r.source_table == table)
            .and_then(|r| r.key.clone());
        let key: Vec<usize> = match rule_key {
            Some(k) => k.iter().filter_map(|n| schema.column_index(n)).collect(),
            None => schema.pk.clone(),
        };
        if key.is_empty() {
            return Err(PipelineError::Definite(format!(
                "{full} has no primary key and its rule declares no `key`"
            )));
        }
        let estimate: Option<Option<u64>> = reader
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&db_name, &table),
            )
            .await
            .map_err(|e| DbError::query("source", format!("estimating {full}"), e))?;
        let estimate = estimate.flatten().unwrap_or(0).max(state.rows);
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new(estimate);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {pos}/~{len} rows {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_message(full.clone());
            b.set_position(state.rows);
            b
        });
        let cols = select_list(&schema);
        let qt = format!("{}.{}", quote_ident(&db_name), quote_ident(&table));
        let keys: Vec<String> = key
            .iter()
            .map(|&i| quote_ident(&schema.columns[i].name))
            .collect();
        let order = keys.join(", ");
        let chunk = p.snapshot_chunk_rows;
        let mut last = state.last_key;
        let mut rows_done = state.rows;
        let started = Instant::now();
        let mut last_log = Instant::now();
        let base_rows = rows_done;
        loop {
            if *c.shutdown.borrow() {
                if let Some(b) = &bar {
                    b.abandon();
                }
                return Ok(CopyOutcome::Interrupted);
            }
            let (sql, params) = match &last {
                None => (
                    format!("SELECT {cols} FROM {qt} ORDER BY {order} LIMIT {chunk}"),
                    Vec::new(),
                ),
                Some(l) => (
                    format!(
                        "SELECT {cols} FROM {qt} WHERE {} ORDER BY {order} LIMIT {chunk}",
                        after_key(&keys)
                    ),
                    after_params(l),
                ),
            };
            let page: Vec<Row> = reader
                .exec(sql, Params::from(params))
                .await
                .map_err(|e| DbError::query("source", format!("copying {full}"), e))?;
            let n = page.len();
            let mut per_shard: BTreeMap<usize, Vec<WriteOp>> = BTreeMap::new();
            if !c.lookups.is_empty() {
                c.lookups.refresh(c.control).await?;
            }
            for r in page {
                let row = normalize(r, &schema);
                last = Some(key.iter().map(|&i| row[i].clone()).collect());
                let change = RowChange {
                    table: schema.clone(),
                    before: None,
                    after: Some(row),
                    version,
                    position: c.position.clone(),
                };
                match c.router.route(&change, &*c.lookups) {
                    Ok(ops) => {
                        for op in ops {
                            per_shard.entry(op.shard).or_default().push(op);
                        }
                    }
                    Err(e @ RouteError::Derive { .. }) if p.on_derive_error == OnDeriveError::DeadLetter => {
                        control::dead_letter::record(c.control, &p.name, &change, &e.to_string()).await?;
                    }
                    Err(e) => {
                        return Err(PipelineError::Definite(format!(
                            "{e}\nThe initial copy stopped so that no row is dropped; fix the rule (or set on_derive_error = \"dead-letter\") and run again: the copy resumes at its last finished chunk."
                        )))
                    }
                }
            }
            // apply the chunk on every shard at once
            let mut futures = Vec::new();
            for (i, (lc, conn, hints)) in writers.iter_mut().enumerate() {
                if let Some(ops) = per_shard.remove(&i) {
                    let stats = &stats;
                    futures
                        .push(async move { apply_batch(conn, lc, ops, None, stats, hints).await });
                }
            }
            for r in futures_util::future::join_all(futures).await {
                r?;
            }
            rows_done += n as u64;
            let finished = n < chunk;
            let saved = control::snapshot::TableCopy {
                table: full.clone(),
                last_key: last.as_ref().map(|k| keyenc::encode(k)),
                rows_copied: rows_done,
                rows_estimate: estimate.max(rows_done),
                done: finished,
            };
            control::snapshot::save_table(c.control, &p.name, &saved).await?;
            if let Some(b) = &bar {
                if rows_done > b.length().unwrap_or(0) {
                    b.set_length(rows_done);
                }
                b.set_position(rows_done);
            } else if last_log.elapsed() >= p.progress_interval {
                let rate =
                    (rows_done - base_rows) as f64 / started.elapsed().as_secs_f64().max(0.001);
                tracing::info!(table = %full, rows = rows_done, estimate, rows_per_s = rate.round(), "copying");
                last_log = Instant::now();
            }
            if finished {
                break;
            }
            if p.snapshot_rows_per_sec > 0 {
                let due = Duration::from_secs_f64(
                    (rows_done - base_rows) as f64 / p.snapshot_rows_per_sec as f64,
                );
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        if let Some(b) = &bar {
            b.finish();
        }
        tracing::info!(table = %full, rows = rows_done, secs = started.elapsed().as_secs_f64(), "table copied");
    }
    control::snapshot::finish(c.control, &p.name).await?;
    for (_, conn, _) in writers {
        let _ = conn.disconnect().await;
    }
    tracing::info!(position = %c.position, "initial copy done; streaming from its position");
    Ok(CopyOutcome::Done)
}
