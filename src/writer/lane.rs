//! A writer lane: one connection to one shard applying batches in order.
//!
//! # Why a batch is safe to apply, and to apply again
//!
//! One key always goes to one lane ([`super::pool`] hashes table and key),
//! and a lane applies its queue in order, so no two writers race on a key.
//! Within a batch only the newest operation per key matters — versions
//! grow along the binlog, so the last operation dominates every earlier
//! one — and the batch runs in **one transaction** that:
//!
//! 1. reads the tombstones of the keys it will upsert;
//! 2. deletes keys only where the row's version is older, and raises their
//!    tombstones with `GREATEST` (never lowers one);
//! 3. upserts rows newer than their tombstone, each column guarded by
//!    `IF(new version > current version, …)`;
//! 4. records the lane's applied position.
//!
//! Every step compares versions, so applying a batch twice, or an older
//! batch after a newer one, changes nothing: a target never moves
//! backwards and a deleted row never comes back, not even between two
//! statements, because all of it commits at once.
//!
//! A batch with nothing for steps 1 and 2 to do — only upserts, no
//! tombstone possible — is applied as plain upserts without a
//! transaction, each statement atomic on its own, and step 4 follows as a
//! statement of its own once they all succeeded ([`needs_no_transaction`],
//! [`record_after`]; `docs/architecture.md`, "Batches without a
//! transaction").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Transaction, TxOpts};
use mysql_common::value::Value;
use tokio::sync::mpsc;

pub use super::dedup::{dedup, BatchOp, Group};
use super::link::Link;
pub use super::memo::LaneMemo;
use super::op::{OpKind, TargetTable, WriteOp};
use super::prepared::{is_unknown_handle, ConnId, Prepared};
pub use super::queue::LaneMsg;
use super::queue::{Inbox, QueueRx, BATCH_BYTES};
use super::{outage, sql};
use crate::checkpoint::LaneProgress;
use crate::config::{db_name, Endpoint};
use crate::control::shard;
use crate::db::wire::{self, WireConn};
use crate::db::{DbError, Retry};
use crate::position::Position;
use crate::version::Version;

/// Settings of one lane.
#[derive(Debug, Clone)]
pub struct LaneConfig {
    pub pipeline: String,
    /// The shards it serves, for messages (`s0+s2`).
    pub shard: String,
    /// Global lane number (index in the tracker).
    pub lane: usize,
    /// Lane number within its group (the shards it serves).
    pub lane_in_shard: usize,
    pub batch_size: usize,
    pub linger: Duration,
    /// The shards it serves, all on the server of its connection (see
    /// [`super::pool`]).
    pub shards: Vec<LaneShard>,
}

/// A shard a lane writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneShard {
    /// Index of the shard (in name order of `[targets]`), as in
    /// [`WriteOp::shard`].
    pub index: usize,
    pub name: String,
    /// Its database on the server: every table is named with it.
    pub database: String,
}

impl LaneConfig {
    /// The served shard of index `index`; an operation for another one is
    /// a bug of the pool (definite).
    fn shard_of(&self, index: usize) -> Result<&LaneShard, DbError> {
        self.shards
            .iter()
            .find(|s| s.index == index)
            .ok_or_else(|| {
                DbError::unexpected(
                    &self.shard,
                    "applying a batch",
                    format!(
                        "lane {} got an operation for shard #{index}, which it does not serve",
                        self.lane
                    ),
                )
            })
    }
}

impl LaneConfig {
    /// The one lane of a shard outside the lane pool (a dead-letter
    /// retry), for the shard of router index `index`: it records no
    /// applied position.
    pub fn single(p: &crate::config::Pipeline, index: usize, ep: &Endpoint) -> LaneConfig {
        LaneConfig {
            pipeline: p.name.clone(),
            shard: ep.name.clone(),
            lane: 0,
            lane_in_shard: 0,
            batch_size: p.batch_size,
            linger: p.linger,
            shards: vec![LaneShard {
                index,
                name: ep.name.clone(),
                database: db_name(&ep.url).unwrap_or_default(),
            }],
        }
    }
}

/// Counters shared with the progress reporter.
#[derive(Debug, Default)]
pub struct Stats {
    pub ops_applied: AtomicU64,
    pub batches: AtomicU64,
    pub ops_skipped_tombstone: AtomicU64,
    /// (shard, table) → whether the target table has a secondary UNIQUE
    /// key, learned once per attempt.
    pub secondary_unique: std::sync::Mutex<HashMap<(String, String), bool>>,
    /// shard → the byte budget of one statement ([`sql::statement_budget`]
    /// of its `max_allowed_packet`), learned once per attempt.
    pub statement_budget: std::sync::Mutex<HashMap<String, usize>>,
}

/// A lane that failed, and why (its `source()`).
#[derive(Debug, thiserror::Error)]
#[error("writer lane {lane} of shard {shard}")]
pub struct LaneError {
    pub shard: String,
    pub lane: usize,
    #[source]
    pub source: DbError,
}

impl LaneError {
    /// As the database failure says.
    pub fn retry(&self) -> Retry {
        self.source.retry()
    }
}

/// One shard's operations on one table of a batch, as the statements
/// name it.
pub(super) struct Part<'a> {
    pub shard: &'a LaneShard,
    pub table: &'a TargetTable,
    /// `` `db`.`table` `` ([`sql::qualified`]).
    pub qualified: String,
}

impl<'a> Part<'a> {
    /// Group `g`'s shard and table, as the lane `cfg` names them.
    fn of(cfg: &'a LaneConfig, g: &'a Group) -> Result<Part<'a>, DbError> {
        let shard = cfg.shard_of(g.shard)?;
        Ok(Part {
            shard,
            table: &g.table,
            qualified: sql::qualified(&shard.database, &g.table.name),
        })
    }

    /// The shard's name, for messages.
    pub(super) fn server(&self) -> &str {
        &self.shard.name
    }

    /// The upsert statement of `rows` rows, with the `shared` version as a
    /// literal when every row has it ([`shared_version`]).
    fn upsert_text(&self, rows: usize, shared: Option<&[u8; 16]>) -> String {
        let t = self.table;
        match shared {
            Some(v) => sql::upsert_at(&self.qualified, &t.columns, &t.key, rows, v),
            None => sql::upsert(&self.qualified, &t.columns, &t.key, rows),
        }
    }
}

use sql::MAX_PARAMS;
const RETRIES: u32 = 5;
/// The longest one try of a batch may take (lock waits included) before
/// its connection is presumed dead.
const BATCH_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs a lane until its queue closes; what it holds is applied first.
/// The connection is kept alive while idle, and a shard that cannot be
/// written is ridden out (see [`super::link`] and [`super::outage`]).
pub async fn run(
    mut link: Link,
    cfg: LaneConfig,
    mut rx: QueueRx,
    progress: mpsc::UnboundedSender<LaneProgress>,
    stats: Arc<Stats>,
) -> Result<(), LaneError> {
    let mut inbox = Inbox::new(cfg.lane, cfg.batch_size, BATCH_BYTES);
    let mut memo = LaneMemo::default();
    let mut closed = false;
    loop {
        if inbox.is_empty() {
            if closed {
                break;
            }
            // wait for work, keeping an idle connection alive
            let msg = match link.ping_due() {
                Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                    Ok(msg) => msg,
                    Err(_) => {
                        link.keep_alive().await;
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            match msg {
                None => closed = true,
                Some(msg) => inbox.take(msg, &progress),
            }
            continue;
        }
        // linger for more, bounded by size and time
        let deadline = tokio::time::Instant::now() + cfg.linger;
        while !inbox.full() && !closed {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => break,
                Ok(None) => closed = true,
                Ok(Some(msg)) => inbox.take(msg, &progress),
            }
        }
        let (ops, mut mark) = inbox.cut();
        let batch = dedup(ops);
        let end = mark.as_ref().map(|m| m.end.clone());
        let mut pending = Pending {
            batch: &batch,
            end: end.as_ref(),
            stats: &stats,
            memo: &mut memo,
        };
        let _busy =
            crate::metrics::global()
                .board
                .lane_busy(cfg.lane, &cfg.shard, cfg.lane_in_shard);
        if let Err(e) = pending.apply_on(&mut link, &cfg, None).await {
            if e.retry() == Retry::Definite {
                return Err(LaneError {
                    shard: cfg.shard.clone(),
                    lane: cfg.lane,
                    source: e,
                });
            }
            let later = outage::ride_out(&mut link, &cfg, &mut rx, &mut pending, e).await?;
            if let Some(m) = mark.take() {
                let _ = progress.send(m);
            }
            // received while the shard was down: it follows what the
            // inbox still holds
            if let Some(m) = later {
                inbox.mark(m, &progress);
            }
        }
        if let Some(m) = mark.take() {
            let _ = progress.send(m);
        }
    }
    link.close().await;
    Ok(())
}

/// A lane's batch until it is applied.
pub(super) struct Pending<'a> {
    pub batch: &'a [Group],
    /// The position recorded with it (its mark's, if one came with it).
    pub end: Option<&'a Position>,
    pub stats: &'a Stats,
    pub memo: &'a mut LaneMemo,
}

/// Applies a batch (retrying deadlocks) on a connection of its own: what
/// a lane does with each batch, for writes outside the lane pool (a
/// dead-letter retry).
pub async fn apply_batch(
    conn: &mut Conn,
    cfg: &LaneConfig,
    ops: Vec<WriteOp>,
    end: Option<&Position>,
    stats: &Stats,
    memo: &mut LaneMemo,
) -> Result<(), DbError> {
    let batch = dedup(ops);
    let mut pending = Pending {
        batch: &batch,
        end,
        stats,
        memo,
    };
    pending.apply(conn, None, cfg).await
}

impl Pending<'_> {
    /// Applies the batch on the link's connection (opened first, within
    /// `quick` when given); a failed connection is the caller's to drop.
    pub(super) async fn apply_on(
        &mut self,
        link: &mut Link,
        cfg: &LaneConfig,
        quick: Option<Duration>,
    ) -> Result<(), DbError> {
        let (conn, wire) = link.both(quick).await?;
        self.apply(conn, wire, cfg).await
    }

    /// [`apply_batch`] after [`dedup`]. Each try is bounded by
    /// [`BATCH_TIMEOUT`]: a connection that stops answering (half-open) is
    /// a lost connection, not a lane stuck for the kernel's retransmission
    /// timeout.
    async fn apply(
        &mut self,
        conn: &mut Conn,
        mut wire: Option<&mut WireConn>,
        cfg: &LaneConfig,
    ) -> Result<(), DbError> {
        crate::throttle::admit(cfg, self.batch.iter().map(|g| g.ops.len()).sum()).await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = std::time::Instant::now();
            let tried =
                tokio::time::timeout(BATCH_TIMEOUT, apply(conn, wire.as_deref_mut(), cfg, self))
                    .await
                    .unwrap_or_else(|_| {
                        Err(DbError::no_answer(
                            &cfg.shard,
                            "applying a batch",
                            BATCH_TIMEOUT,
                        ))
                    });
            match tried {
                Ok(()) => {
                    crate::metrics::global().batch_applied(cfg, self.batch, started.elapsed());
                    return Ok(());
                }
                // deadlocks and lock waits: the transaction was rolled back, try again
                Err(e) if e.is_lock_conflict() && attempt < RETRIES => {
                    crate::metrics::global().retried(
                        "writer",
                        e.transient().map_or("lock conflict", |t| t.describe()),
                    );
                    tracing::warn!(shard = %cfg.shard, lane = cfg.lane, attempt, error = %e, "batch rolled back, retrying");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Why one table's part of a batch failed.
enum TableError {
    Db(DbError),
    /// An upsert updated another row (a secondary UNIQUE key collision):
    /// the batch is rolled back before the error is returned.
    Collision(DbError),
}

impl From<DbError> for TableError {
    fn from(e: DbError) -> Self {
        TableError::Db(e)
    }
}

/// Operations applied and upserts skipped under a tombstone, per batch.
#[derive(Default)]
struct Counts {
    applied: u64,
    skipped: u64,
}

/// One batch: as plain upserts when it needs no transaction
/// ([`needs_no_transaction`]), else in one transaction ([`apply_in_one`]).
async fn apply(
    conn: &mut Conn,
    wire: Option<&mut WireConn>,
    cfg: &LaneConfig,
    pending: &mut Pending<'_>,
) -> Result<(), DbError> {
    let counts = if needs_no_transaction(conn, cfg, pending).await? {
        match wire {
            Some(w) => {
                let counts = apply_upserts_wire(w, conn, cfg, pending).await?;
                record_after(Recorder::Wire(w), cfg, pending).await?;
                counts
            }
            None => {
                let counts = apply_upserts(conn, cfg, pending).await?;
                record_after(Recorder::Driver(conn), cfg, pending).await?;
                counts
            }
        }
    } else {
        apply_in_one(conn, cfg, pending).await?
    };
    let stats = pending.stats;
    stats
        .ops_applied
        .fetch_add(counts.applied, Ordering::Relaxed);
    stats
        .ops_skipped_tombstone
        .fetch_add(counts.skipped, Ordering::Relaxed);
    stats.batches.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Whether the batch is only upserts with no tombstone to read or raise,
/// into tables without a secondary UNIQUE key. Then steps 1 and 2 of the
/// module docs have nothing to do, and each upsert statement is atomic on
/// its own and idempotent, so no transaction is needed around them: a
/// failure part way leaves some rows applied, which applying the batch
/// again (a retry, or a replay from the checkpoint) cannot undo or harm.
/// Step 4 follows once every upsert succeeded ([`record_after`]). This is
/// every batch of the initial copy, and the stream's insert-only batches
/// and the batches of an `UPDATE` that keeps each row's key and shard.
async fn needs_no_transaction(
    conn: &mut Conn,
    cfg: &LaneConfig,
    pending: &mut Pending<'_>,
) -> Result<bool, DbError> {
    for g in pending.batch {
        let part = Part::of(cfg, g)?;
        let only_upserts = g
            .ops
            .iter()
            .all(|b| b.tombstone.is_none() && matches!(b.op.kind, OpKind::Upsert(_)));
        if !only_upserts {
            return Ok(false);
        }
        if pending.memo.may_exist(conn, &part).await?
            || has_secondary_unique(conn, &part, pending.stats).await?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Step 3 alone, autocommitted (see [`needs_no_transaction`]).
async fn apply_upserts(
    conn: &mut Conn,
    cfg: &LaneConfig,
    pending: &mut Pending<'_>,
) -> Result<Counts, DbError> {
    let mut counts = Counts::default();
    for g in pending.batch {
        let part = Part::of(cfg, g)?;
        let live: Vec<Upsert<'_>> = g.ops.iter().filter_map(|b| b.upsert()).collect();
        let prepared = &mut pending.memo.prepared;
        counts.applied += upsert_newer(conn, cfg, &part, &live, pending.stats, prepared)
            .await
            .map_err(|e| match e {
                TableError::Db(e) | TableError::Collision(e) => e,
            })?;
    }
    Ok(counts)
}

/// [`apply_upserts`] on the lane's connection of our own
/// ([`crate::db::wire`]): the rows' values are bound by reference, not
/// cloned. The same statements, cut at the same row and byte budgets
/// ([`upsert_chunk`]); `conn` (the driver's) answers what the lane
/// learns once per table and the names of missing columns.
async fn apply_upserts_wire(
    wire: &mut WireConn,
    conn: &mut Conn,
    cfg: &LaneConfig,
    pending: &mut Pending<'_>,
) -> Result<Counts, DbError> {
    let mut counts = Counts::default();
    for g in pending.batch {
        let part = Part::of(cfg, g)?;
        let live: Vec<Upsert<'_>> = g.ops.iter().filter_map(|b| b.upsert()).collect();
        if live.is_empty() {
            continue;
        }
        let budget = statement_budget(conn, cfg, pending.stats).await?;
        // the version is a parameter of each row, unless the multi-row
        // statement makes it a literal: cut as for the widest form
        let width = part.table.columns.len() + 1;
        let mut rest = &live[..];
        while !rest.is_empty() {
            match upsert_wire(wire, &part, rest, width, budget).await {
                Ok(rows) => rest = rest.get(rows.max(1)..).unwrap_or_default(),
                Err(e) => {
                    let table = &part.table.name;
                    let e = wire::db_error(part.server(), format!("upserting into {table}"), e);
                    if e.code() == Some(ER_BAD_FIELD_ERROR) {
                        return Err(missing_columns(conn, &part, e).await);
                    }
                    return Err(e);
                }
            }
        }
        counts.applied += live.len() as u64;
    }
    Ok(counts)
}

/// Writes the first rows of `upserts` with one statement on the lane's
/// connection of our own.
///
/// On MariaDB the single-row upsert is executed over the rows as arrays
/// ([`WireConn::exec_bulk`]): one prepared statement per table whatever
/// the row count, and the server runs it over the rows in one call, at a
/// lower cost per row than a multi-row statement's (`BENCHMARKS.md`,
/// session 8). The rows are the same, so is each row's effect: the
/// statement is the same guarded upsert, and a failure part way is
/// repaired by applying the batch again, as for the multi-row statement
/// (`docs/architecture.md`, "Batches without a transaction"). A server
/// without array binding, or rows whose column changes type from one row
/// to the next (a derived column), take the multi-row statement.
///
/// Takes as many rows as fit `budget` bytes (and,
/// for a multi-row statement, [`MAX_PARAMS`] at `width` parameters a row;
/// at least one); returns how many. The arrays are sized as they are
/// bound: a row is read once.
async fn upsert_wire(
    wire: &mut WireConn,
    part: &Part<'_>,
    upserts: &[Upsert<'_>],
    width: usize,
    budget: usize,
) -> Result<usize, wire::WireError> {
    if wire.has_bulk() && upserts.len() > 1 {
        let rows = wire.bind_bulk(part.table.columns.len() + 1);
        for u in upserts {
            let before = rows.len();
            u.values.iter().for_each(|v| rows.value(v));
            rows.bytes(&u.op.version.to_bytes());
            if rows.rows() > 1 && rows.len() > budget {
                rows.pop_row(before);
                break;
            }
        }
        if rows.is_uniform() && rows.rows() > 1 {
            let n = rows.rows();
            wire.exec_bulk(&part.upsert_text(1, None)).await?;
            return Ok(n);
        }
    }
    let rows = upsert_chunk(upserts, width, budget);
    let chunk = upserts.get(..rows).unwrap_or(upserts);
    let shared = shared_version(chunk);
    let params = wire.bind();
    for u in chunk {
        u.values.iter().for_each(|v| params.value(v));
        if shared.is_none() {
            params.bytes(&u.op.version.to_bytes());
        }
    }
    wire.exec_bound(&part.upsert_text(chunk.len(), shared.as_ref()))
        .await?;
    Ok(chunk.len())
}

/// One batch in one transaction: each group's part (steps 1–3 of the
/// module docs), then the lane's applied position in every shard the
/// batch wrote that does not hold it yet (step 4), then COMMIT.
async fn apply_in_one(
    conn: &mut Conn,
    cfg: &LaneConfig,
    pending: &mut Pending<'_>,
) -> Result<Counts, DbError> {
    let (batch, end, stats) = (pending.batch, pending.end, pending.stats);
    let memo = &mut *pending.memo;
    let mut tx = conn
        .start_transaction(TxOpts::default())
        .await
        .map_err(|e| DbError::query(&cfg.shard, "BEGIN", e))?;
    let mut counts = Counts::default();
    for g in batch {
        let part = Part::of(cfg, g)?;
        match apply_table(&mut tx, cfg, &part, &g.ops, stats, memo, &mut counts).await {
            Ok(()) => {}
            Err(TableError::Db(e)) => return Err(e),
            Err(TableError::Collision(e)) => {
                let _ = tx.rollback().await;
                return Err(e);
            }
        }
    }
    let written = unrecorded(cfg, batch, memo, end)?;
    if let Some(end) = end {
        for shard in &written {
            record_applied(&mut tx, cfg, shard, end).await?;
        }
    }
    tx.commit()
        .await
        .map_err(|e| DbError::query(&cfg.shard, "COMMIT", e))?;
    if let Some(end) = end {
        for shard in written {
            memo.committed(shard.index, end);
        }
    }
    Ok(counts)
}

/// One shard's operations on one table of a batch: read the tombstones of
/// the keys to upsert, delete older rows and raise their tombstones,
/// upsert what is newer than its tombstone.
async fn apply_table(
    tx: &mut Transaction<'_>,
    cfg: &LaneConfig,
    part: &Part<'_>,
    ops: &[BatchOp],
    stats: &Stats,
    memo: &mut LaneMemo,
    counts: &mut Counts,
) -> Result<(), TableError> {
    let upserts: Vec<Upsert<'_>> = ops.iter().filter_map(|b| b.upsert()).collect();
    let tombs = read_tombstones(tx, part, &upserts, memo).await?;
    counts.applied += delete_older(tx, part, ops).await?;
    raise_tombstones(tx, part, ops, memo).await?;
    let live: Vec<Upsert<'_>> = upserts
        .into_iter()
        .filter(|u| match tombs.get(&u.op.key_enc) {
            Some(t) if *t >= u.op.version => {
                counts.skipped += 1;
                false
            }
            _ => true,
        })
        .collect();
    counts.applied += upsert_newer(tx, cfg, part, &live, stats, &mut memo.prepared).await?;
    Ok(())
}

/// An upsert of a batch and the row it writes.
#[derive(Clone, Copy)]
struct Upsert<'a> {
    op: &'a WriteOp,
    values: &'a [Value],
}

impl BatchOp {
    /// The operation as an upsert, if it is one.
    fn upsert(&self) -> Option<Upsert<'_>> {
        match &self.op.kind {
            OpKind::Upsert(values) => Some(Upsert {
                op: &self.op,
                values,
            }),
            OpKind::Delete(_) => None,
        }
    }
}

/// Step 1: the tombstones of the keys to upsert (none read when the table
/// cannot have any, see [`LaneMemo`]).
async fn read_tombstones(
    tx: &mut Transaction<'_>,
    part: &Part<'_>,
    upserts: &[Upsert<'_>],
    memo: &mut LaneMemo,
) -> Result<HashMap<Vec<u8>, Version>, DbError> {
    if upserts.is_empty() || !memo.may_exist(tx, part).await? {
        return Ok(HashMap::new());
    }
    let keys: Vec<&[u8]> = upserts.iter().map(|u| u.op.key_enc.as_slice()).collect();
    let table = shard::TableOf {
        database: &part.shard.database,
        table: &part.table.name,
    };
    shard::read_tombstones(tx, part.server(), table, &keys).await
}

/// The names of a table's key columns.
fn key_columns(table: &TargetTable) -> Vec<&str> {
    table
        .key
        .iter()
        .map(|&i| table.columns[i].as_str())
        .collect()
}

/// `key values…, version` of each operation, the parameters of
/// [`sql::delete`] and [`sql::landed`].
fn key_version_params(ops: &[&WriteOp], key_len: usize) -> Vec<Value> {
    let mut params = Vec::with_capacity(ops.len() * (key_len + 1));
    for o in ops {
        params.extend(o.key().cloned());
        params.push(Value::Bytes(o.version.to_bytes().to_vec()));
    }
    params
}

/// Step 2a: deletes each key whose row is older than the delete; returns
/// how many deletes were applied.
async fn delete_older(
    tx: &mut Transaction<'_>,
    part: &Part<'_>,
    ops: &[BatchOp],
) -> Result<u64, DbError> {
    let deletes: Vec<&WriteOp> = ops
        .iter()
        .map(|b| &b.op)
        .filter(|o| o.kind.is_delete())
        .collect();
    if deletes.is_empty() {
        return Ok(0);
    }
    let key_cols = key_columns(part.table);
    let per = (MAX_PARAMS / (key_cols.len() + 1)).clamp(1, 200);
    for chunk in deletes.chunks(per) {
        tx.exec_drop(
            sql::delete(&part.qualified, &key_cols, chunk.len()),
            Params::Positional(key_version_params(chunk, key_cols.len())),
        )
        .await
        .map_err(|e| {
            DbError::query(
                part.server(),
                format!("deleting from {}", part.table.name),
                e,
            )
        })?;
    }
    Ok(deletes.len() as u64)
}

/// Step 2b: raises the tombstone of every deleted key, including deletes
/// collapsed under a later upsert of the same key (see [`BatchOp`]).
async fn raise_tombstones(
    tx: &mut Transaction<'_>,
    part: &Part<'_>,
    ops: &[BatchOp],
    memo: &mut LaneMemo,
) -> Result<(), DbError> {
    let tombstones: Vec<(&[u8], Version)> = ops
        .iter()
        .filter_map(|b| b.tombstone.map(|v| (b.op.key_enc.as_slice(), v)))
        .collect();
    if tombstones.is_empty() {
        return Ok(());
    }
    memo.written(part);
    let table = shard::TableOf {
        database: &part.shard.database,
        table: &part.table.name,
    };
    shard::raise_tombstones(tx, part.server(), table, &tombstones).await
}

/// Step 3: upserts the rows newer than their tombstone (each column
/// guarded by the version), in statements within the row and byte
/// budgets; returns how many were applied.
async fn upsert_newer<Q: Queryable + ConnId>(
    tx: &mut Q,
    cfg: &LaneConfig,
    part: &Part<'_>,
    live: &[Upsert<'_>],
    stats: &Stats,
    prepared: &mut Prepared,
) -> Result<u64, TableError> {
    if live.is_empty() {
        return Ok(0);
    }
    let table = part.table;
    let shared = shared_version(live);
    let width = table.columns.len() + usize::from(shared.is_none());
    let check = has_secondary_unique(tx, part, stats).await?;
    let key_cols = key_columns(table);
    let budget = statement_budget(tx, cfg, stats).await?;
    let mut rest = live;
    while !rest.is_empty() {
        let (params, rows) = bind_upserts(rest, width, budget, shared.is_none());
        let (chunk, tail) = rest.split_at(rows.min(rest.len()));
        rest = tail;
        let text = part.upsert_text(chunk.len(), shared.as_ref());
        let upserted = match exec_prepared(tx, prepared, &text, params).await {
            // the driver closed the kept handle: as text (`prepared`'s docs)
            Err(e) if is_unknown_handle(&e) => {
                prepared.forget(&text);
                let (again, _) = bind_upserts(chunk, width, budget, shared.is_none());
                tx.exec_drop(text, Params::Positional(again)).await
            }
            done => done,
        }
        .map_err(|e| DbError::query(part.server(), format!("upserting into {}", table.name), e));
        if let Err(e) = upserted {
            if e.code() == Some(ER_BAD_FIELD_ERROR) {
                return Err(missing_columns(tx, part, e).await.into());
            }
            return Err(e.into());
        }
        if check {
            let ops: Vec<&WriteOp> = chunk.iter().map(|u| u.op).collect();
            check_landed(tx, part, &key_cols, &ops).await?;
        }
    }
    Ok(live.len() as u64)
}

/// Executes `text` through the handle `prepared` keeps for it on this
/// connection, preparing (and keeping) one first if there is none.
async fn exec_prepared<Q: Queryable + ConnId>(
    tx: &mut Q,
    prepared: &mut Prepared,
    text: &str,
    params: Vec<Value>,
) -> Result<(), mysql_async::Error> {
    let handle = match prepared.get(text, tx.conn_id()) {
        Some(h) => h,
        None => {
            let h = tx.prep(text).await?;
            prepared.keep(text.to_string(), h.clone());
            h
        }
    };
    tx.exec_drop(&handle, Params::Positional(params)).await
}

/// The version every upsert of `live` carries, when there are several and
/// they share one: only the initial copy's batches (each row image of the
/// stream has a version of its own), whose statements then take it as a
/// literal ([`sql::upsert_at`]).
fn shared_version(live: &[Upsert<'_>]) -> Option<[u8; 16]> {
    let (first, rest) = live.split_first()?;
    let v = first.op.version;
    (!rest.is_empty() && rest.iter().all(|u| u.op.version == v)).then(|| v.to_bytes())
}

/// The parameters of one upsert statement: the rows of `upserts` from the
/// first on, as many as fit [`MAX_PARAMS`] and `budget` bytes (at least
/// one), each row's values (cloned: the batch is kept for a retry) and,
/// with `versions`, its version; `width` parameters a row. Sized while
/// bound; returns the parameters and the number of rows.
fn bind_upserts(
    upserts: &[Upsert<'_>],
    width: usize,
    budget: usize,
    versions: bool,
) -> (Vec<Value>, usize) {
    let rows = upsert_chunk(upserts, width, budget);
    let mut params = Vec::with_capacity(rows * width);
    for u in &upserts[..rows.min(upserts.len())] {
        params.extend(u.values.iter().cloned());
        if versions {
            params.push(Value::Bytes(u.op.version.to_bytes().to_vec()));
        }
    }
    (params, rows)
}

/// How many rows of `upserts`, from the first, one upsert statement
/// takes: as many as fit [`MAX_PARAMS`] and `budget` bytes, at least one;
/// `width` parameters a row.
fn upsert_chunk(upserts: &[Upsert<'_>], width: usize, budget: usize) -> usize {
    let mut run = sql::Run::new(MAX_PARAMS / width.max(1), budget);
    for u in upserts {
        let size = 27 + u.values.iter().map(sql::param_bytes).sum::<usize>();
        if !run.take(size) {
            break;
        }
    }
    run.rows()
}

/// MySQL's "Unknown column" error.
const ER_BAD_FIELD_ERROR: u16 = 1054;

/// An upsert named a column the target table lacks — typically one added
/// on the source, which the router now carries. Retrying cannot help, so
/// the error names the columns and the fix (a definite error: see
/// `docs/architecture.md`, "Schema history").
async fn missing_columns<Q: Queryable>(tx: &mut Q, part: &Part<'_>, error: DbError) -> DbError {
    let (server, table) = (part.server(), part.table);
    let tname = table.name.as_str();
    let present: Vec<String> = match tx
        .exec(sql::TARGET_COLUMNS, (&part.shard.database, tname))
        .await
    {
        Ok(cols) => cols,
        Err(_) => return error,
    };
    let missing: Vec<&str> = table
        .columns
        .iter()
        .filter(|c| !present.iter().any(|p| p.eq_ignore_ascii_case(c)))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return error;
    }
    let quoted: Vec<String> = missing.iter().map(|c| format!("`{c}`")).collect();
    let names: Vec<String> = missing.iter().map(|c| format!("{c:?}")).collect();
    DbError::unexpected(
        server,
        format!("upserting into {tname}"),
        format!(
            "target table `{tname}` has no column {} that the rule for {} writes (added on the source by a DDL, or derived by the rule). \
             reshard does not change target tables: add the column on every target first (ALTER TABLE `{tname}` ADD COLUMN {} …, nullable or with a default), \
             or leave it out of the rule (exclude = [{}]); then run reshard again, it resumes from the checkpoint",
            quoted.join(", "),
            table.source,
            quoted.join(", "),
            names.join(", "),
        ),
    )
}

/// The byte budget of one statement on a lane's server (half its
/// `max_allowed_packet`), learned once per server and attempt: a batch of
/// wide rows (BLOBs) is split so that no statement exceeds it.
async fn statement_budget<Q: Queryable>(
    tx: &mut Q,
    cfg: &LaneConfig,
    stats: &Stats,
) -> Result<usize, DbError> {
    let server = cfg.shard.as_str();
    let known = stats
        .statement_budget
        .lock()
        .ok()
        .and_then(|m| m.get(server).copied());
    if let Some(b) = known {
        return Ok(b);
    }
    let packet: Option<u64> = tx
        .query_first(sql::MAX_ALLOWED_PACKET)
        .await
        .map_err(|e| DbError::query(server, "reading max_allowed_packet", e))?;
    // the server's minimum is 1 KiB; 4 MiB is MySQL's default
    let b = sql::statement_budget(packet.unwrap_or(4 << 20));
    if let Ok(mut m) = stats.statement_budget.lock() {
        m.insert(server.to_string(), b);
    }
    Ok(b)
}

/// Whether the target table has a secondary UNIQUE key, learned once per
/// (shard, table) and attempt.
async fn has_secondary_unique<Q: Queryable>(
    tx: &mut Q,
    part: &Part<'_>,
    stats: &Stats,
) -> Result<bool, DbError> {
    let tname = part.table.name.as_str();
    let cache_key = (part.shard.name.clone(), tname.to_string());
    let known = stats
        .secondary_unique
        .lock()
        .ok()
        .and_then(|m| m.get(&cache_key).copied());
    if let Some(b) = known {
        return Ok(b);
    }
    let n: Option<u64> = tx
        .exec_first(sql::SECONDARY_UNIQUE, (&part.shard.database, tname))
        .await
        .map_err(|e| DbError::query(part.server(), format!("reading the keys of {tname}"), e))?;
    let b = n.unwrap_or(0) > 0;
    if let Ok(mut m) = stats.secondary_unique.lock() {
        m.insert(cache_key, b);
    }
    Ok(b)
}

/// A secondary UNIQUE collision makes ON DUPLICATE KEY UPDATE modify
/// another row: every upserted row must be on its own key, at least at our
/// version, or the batch is rolled back.
async fn check_landed<Q: Queryable>(
    tx: &mut Q,
    part: &Part<'_>,
    key_cols: &[&str],
    chunk: &[&WriteOp],
) -> Result<(), TableError> {
    let (server, tname) = (part.server(), part.table.name.as_str());
    let n: Option<u64> = tx
        .exec_first(
            sql::landed(&part.qualified, key_cols, chunk.len()),
            Params::Positional(key_version_params(chunk, key_cols.len())),
        )
        .await
        .map_err(|e| DbError::query(server, format!("checking the upsert into {tname}"), e))?;
    let n = n.unwrap_or(0);
    if n == chunk.len() as u64 {
        return Ok(());
    }
    Err(TableError::Collision(DbError::unexpected(
        server,
        format!("upserting into {tname}"),
        format!(
            "expected {} row(s) on their own keys, found {n}: a secondary UNIQUE key of {tname} made an upsert update another row. The batch was rolled back and the pipeline stopped; drop the secondary UNIQUE key on the targets (dry-run flags it) and run again",
            chunk.len()
        ),
    )))
}

/// Step 4: the lane's applied position in one shard it wrote, in the
/// batch's transaction.
async fn record_applied(
    tx: &mut Transaction<'_>,
    cfg: &LaneConfig,
    to: &LaneShard,
    end: &Position,
) -> Result<(), DbError> {
    shard::record_applied(tx, lane_id(cfg, to), end).await
}

/// The lane's row in `_reshard_applied` of shard `to`.
fn lane_id<'a>(cfg: &'a LaneConfig, to: &'a LaneShard) -> shard::LaneId<'a> {
    shard::LaneId {
        pipeline: &cfg.pipeline,
        shard: &to.name,
        database: &to.database,
        lane_in_shard: cfg.lane_in_shard as u32,
    }
}

/// The shards `batch` writes that do not hold `end` yet ([`LaneMemo`]):
/// where step 4 records it (none without a position).
fn unrecorded<'a>(
    cfg: &'a LaneConfig,
    batch: &[Group],
    memo: &LaneMemo,
    end: Option<&Position>,
) -> Result<Vec<&'a LaneShard>, DbError> {
    let mut shards: Vec<&LaneShard> = Vec::new();
    let Some(end) = end else {
        return Ok(shards);
    };
    for g in batch {
        let shard = cfg.shard_of(g.shard)?;
        if !shards.contains(&shard) && !memo.holds(shard.index, end) {
            shards.push(shard);
        }
    }
    Ok(shards)
}

/// The connection a batch without a transaction records its position on.
enum Recorder<'a> {
    Wire(&'a mut WireConn),
    Driver(&'a mut Conn),
}

/// Step 4 of a batch without a transaction: its position in every shard
/// it wrote that does not hold it yet, each an autocommitted statement
/// sent only after every upsert of the batch succeeded. The row claims no
/// more than the transactional path's: every operation of this lane up to
/// the position is applied and durable (each upsert committed on its own
/// before the record was sent), and a failure before the record leaves
/// the older position, a lower bound still (`docs/architecture.md`,
/// "Batches without a transaction").
async fn record_after(
    mut to: Recorder<'_>,
    cfg: &LaneConfig,
    pending: &mut Pending<'_>,
) -> Result<(), DbError> {
    let Some(end) = pending.end else {
        return Ok(());
    };
    for shard in unrecorded(cfg, pending.batch, pending.memo, Some(end))? {
        let lane = lane_id(cfg, shard);
        match &mut to {
            Recorder::Driver(conn) => shard::record_applied(*conn, lane, end).await?,
            Recorder::Wire(w) => {
                let params = w.bind();
                shard::applied_params(lane, end)
                    .iter()
                    .for_each(|v| params.value(v));
                w.exec_bound(&shard::record_applied_sql(lane.database))
                    .await
                    .map_err(|e| {
                        wire::db_error(&shard.name, "recording the applied position", e)
                    })?;
            }
        }
        pending.memo.committed(shard.index, end);
    }
    Ok(())
}
