//! The coordinator: wires tailer → router → writer lanes → checkpoint for
//! one streaming attempt (gh-ost's streamer/applier split, with the router
//! in between).
//!
//! An attempt starts at a transaction boundary and ends on shutdown, on
//! reaching `stop_at`, or with an error that the caller classifies:
//! transient errors restart the attempt from the stored checkpoint with
//! backoff, definite ones stop reshard. Nothing is lost either way,
//! because the checkpoint only ever names a transaction all of whose
//! operations are durable on every shard ([`crate::checkpoint::tracker`]),
//! and re-applying what lies after it is harmless (versions).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::checkpoint::prune;
use crate::checkpoint::{store, Checkpoint, LaneProgress, Tracker};
use crate::config::{Config, OnDeriveError};
use crate::db::{self, DbError, Flavor, Session};
use crate::position::Position;
use crate::rules::convert::display_cells;
use crate::rules::lookup::Lookups;
use crate::rules::{RouteError, Router};
use crate::source::{SourceError, SourceItem, StartAt, Tailer, TailerOptions};
use crate::version::Version;
use crate::writer::keyenc::lane_hash;
use crate::writer::lane::{self, LaneConfig, LaneMsg, Stats};

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Retry from the checkpoint.
    #[error("{0}")]
    Transient(String),
    /// Stop.
    #[error("{0}")]
    Definite(String),
}

impl From<SourceError> for PipelineError {
    fn from(e: SourceError) -> Self {
        if e.is_transient() {
            PipelineError::Transient(e.to_string())
        } else {
            PipelineError::Definite(e.to_string())
        }
    }
}

impl From<DbError> for PipelineError {
    fn from(e: DbError) -> Self {
        if e.is_transient() {
            PipelineError::Transient(e.to_string())
        } else {
            PipelineError::Definite(e.to_string())
        }
    }
}

/// How an attempt ended without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// SIGINT/SIGTERM: drained and checkpointed.
    Shutdown,
    /// The transaction ending at `stop_at` is applied.
    ReachedEnd,
}

/// What an attempt needs besides the config.
pub struct Attempt<'a> {
    pub cfg: &'a Config,
    pub router: &'a mut Router,
    /// Connection holding the lease; also used for checkpoints.
    pub control: &'a mut Conn,
    pub start: StartAt,
    pub stop_at: Option<Position>,
    /// Replay: skip row changes whose (position) version is below this.
    pub floor: Option<Version>,
    /// Replay: never move the checkpoint to or below this position.
    pub forward_only: Option<Position>,
    /// Row changes skipped below the floor (added to).
    pub skipped: &'a mut u64,
    pub source_identity: String,
    pub flavor: Flavor,
    pub checksum: bool,
    pub shutdown: watch::Receiver<bool>,
    /// `lookup()` tables, refreshed before routing when stale.
    pub lookups: &'a mut Lookups,
}

struct Lanes {
    senders: Vec<mpsc::Sender<LaneMsg>>,
    tasks: JoinSet<Result<(), lane::LaneError>>,
    per_shard: usize,
}

impl Lanes {
    async fn broadcast(&self, seq: u64, end: &Position, timestamp: u32) -> Result<(), ()> {
        for s in &self.senders {
            s.send(LaneMsg::Mark {
                seq,
                end: end.clone(),
                timestamp,
            })
            .await
            .map_err(|_| ())?;
        }
        Ok(())
    }
}

/// Runs one attempt.
pub async fn run_attempt(mut a: Attempt<'_>) -> Result<Outcome, PipelineError> {
    let cfg = a.cfg;
    let p = &cfg.pipeline;
    let budget = p.connect_timeout;

    // connections first: a target we cannot reach fails the attempt early
    let shard_names: Vec<String> = cfg.targets.keys().cloned().collect();
    let mut lanes = Lanes {
        senders: Vec::new(),
        tasks: JoinSet::new(),
        per_shard: p.lanes_per_shard,
    };
    let stats = Arc::new(Stats::default());
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<LaneProgress>();
    for (s, ep) in cfg.targets.values().enumerate() {
        for l in 0..p.lanes_per_shard {
            let conn = db::connect(ep, Session::Write, budget).await?;
            let (tx, rx) = mpsc::channel(p.batch_size * 4);
            lanes.senders.push(tx);
            let lc = LaneConfig {
                pipeline: p.name.clone(),
                shard: ep.name.clone(),
                lane: s * p.lanes_per_shard + l,
                lane_in_shard: l,
                batch_size: p.batch_size,
                linger: p.linger,
            };
            lanes
                .tasks
                .spawn(lane::run(conn, lc, rx, progress_tx.clone(), stats.clone()));
        }
    }
    drop(progress_tx);
    let mut tracker = Tracker::new(lanes.senders.len());

    let stream_conn = db::connect(&cfg.source, Session::Read, budget).await?;
    let schema_conn = db::connect(&cfg.source, Session::Read, budget).await?;
    let router_filter = {
        let wanted: std::collections::HashSet<(String, String)> = a
            .router
            .rules()
            .map(|r| (r.source_db.clone(), r.source_table.clone()))
            .collect();
        Arc::new(move |d: &str, t: &str| wanted.contains(&(d.to_string(), t.to_string())))
    };
    let start_pos = match &a.start {
        StartAt::Position(p) => p.clone(),
        StartAt::Gtid(_) => Position::new("", 4),
    };
    let tailer = Tailer::open(
        stream_conn,
        schema_conn,
        a.start.clone(),
        TailerOptions {
            server_id: cfg.server_id,
            epoch: p.epoch,
            heartbeat: p.heartbeat,
            flavor: a.flavor,
            checksum: a.checksum,
            filter: router_filter,
        },
    )
    .await?;
    let (src_tx, mut src_rx) = mpsc::channel::<Result<SourceItem, SourceError>>(64);
    let tailer_task = tokio::spawn(async move {
        let mut tailer = tailer;
        loop {
            let item = tailer.next().await;
            let stop = item.is_err();
            if src_tx.send(item).await.is_err() || stop {
                break;
            }
        }
        tailer.close().await;
    });

    match &a.start {
        StartAt::Position(p) => {
            tracing::info!(position = %p, shards = shard_names.len(), lanes = lanes.senders.len(), "streaming")
        }
        StartAt::Gtid(g) => {
            tracing::info!(gtid = %g, shards = shard_names.len(), lanes = lanes.senders.len(), "streaming")
        }
    }
    let prune = {
        let tables: Vec<String> = a
            .router
            .rules()
            .filter(|r| r.version_column.is_none())
            .map(|r| r.target.clone())
            .collect();
        tokio::spawn(prune::prune_loop(cfg.clone(), tables))
    };

    let mut seq: u64 = 0;
    let mut dispatched_end = start_pos.clone();
    let mut dispatched_ts: u32 = 0;
    let mut marked_seq: u64 = 0;
    let mut saved_seq: u64 = 0;
    let mut saved_pos = start_pos.clone();
    let mut applied_pos = start_pos.clone();
    let mut last_poslog: Option<Instant> = None;
    let poslog_every =
        (p.tombstone_retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut idle = false;
    let mut tick = tokio::time::interval(
        Duration::from_millis(100).min(p.linger.max(Duration::from_millis(10))),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_progress = Instant::now();
    let mut last_ops = 0u64;
    let mut dead_letters = 0u64;
    let mut stop_reached = false;
    let mut shutdown = a.shutdown.clone();

    let result: Result<Outcome, PipelineError> = loop {
        if stop_reached {
            break Ok(Outcome::ReachedEnd);
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    break Ok(Outcome::Shutdown);
                }
            }
            Some(joined) = lanes.tasks.join_next() => {
                break Err(lane_failure(joined));
            }
            Some(p) = progress_rx.recv() => tracker.update(p),
            item = src_rx.recv() => {
                match item {
                    None => break Err(PipelineError::Transient("the binlog reader stopped".into())),
                    Some(Err(e)) => break Err(e.into()),
                    Some(Ok(SourceItem::Heartbeat(pos))) => {
                        idle = true;
                        if let Some(pos) = pos {
                            if pos > dispatched_end {
                                seq += 1;
                                dispatched_end = pos;
                            }
                        }
                    }
                    Some(Ok(SourceItem::Transaction(txn))) => {
                        idle = false;
                        seq += 1;
                        if let Err(e) = dispatch(&mut a, &lanes, &txn, &mut dead_letters).await {
                            break Err(e);
                        }
                        dispatched_end = txn.end.clone();
                        dispatched_ts = txn.timestamp;
                        if let Some(stop) = &a.stop_at {
                            if txn.end >= *stop {
                                stop_reached = true;
                            }
                        }
                    }
                }
            }
            _ = tick.tick() => {
                if seq > marked_seq {
                    if lanes.broadcast(seq, &dispatched_end, dispatched_ts).await.is_err() {
                        continue;
                    }
                    marked_seq = seq;
                }
                if let Some(w) = tracker.watermark().cloned() {
                    if w.seq > saved_seq {
                        saved_seq = w.seq;
                        applied_pos = w.end.clone();
                        if persist(&mut a, &w).await? {
                            saved_pos = w.end.clone();
                        }
                        if w.timestamp > 0 && last_poslog.is_none_or(|t| t.elapsed() >= poslog_every) {
                            store::log_position(a.control, &p.name, &w.end, w.timestamp).await?;
                            last_poslog = Some(Instant::now());
                        }
                    }
                }
                if last_progress.elapsed() >= p.progress_interval {
                    let ops = stats.ops_applied.load(Ordering::Relaxed);
                    let secs = last_progress.elapsed().as_secs_f64();
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                    let lag = if idle && saved_seq == seq { 0 } else { now.saturating_sub(u64::from(dispatched_ts)) };
                    tracing::info!(position = %dispatched_end, checkpoint = %saved_pos, lag_s = lag, rows_per_s = ((ops - last_ops) as f64 / secs).round(), dead_letters, "progress");
                    last_ops = ops;
                    last_progress = Instant::now();
                }
            }
        }
    };

    // drain: final mark, close queues, wait for the lanes, final checkpoint
    tailer_task.abort();
    prune.abort();
    let drain_deadline = Instant::now() + p.shutdown_timeout;
    let mut lane_error: Option<PipelineError> = None;
    if result.is_ok() {
        if seq > marked_seq {
            let _ = lanes.broadcast(seq, &dispatched_end, dispatched_ts).await;
        }
        lanes.senders.clear();
        loop {
            let left = drain_deadline.saturating_duration_since(Instant::now());
            tokio::select! {
                j = lanes.tasks.join_next() => match j {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(other) => { lane_error = Some(lane_failure(other)); }
                },
                Some(p) = progress_rx.recv() => tracker.update(p),
                _ = tokio::time::sleep(left) => {
                    tracing::warn!("drain timed out; unapplied batches will be re-applied from the checkpoint");
                    lanes.tasks.abort_all();
                    break;
                }
            }
        }
        while let Ok(p) = progress_rx.try_recv() {
            tracker.update(p);
        }
        if let Some(w) = tracker.watermark().cloned() {
            if w.seq > saved_seq {
                applied_pos = w.end.clone();
                if persist(&mut a, &w).await? {
                    saved_pos = w.end.clone();
                }
            }
        }
        tracing::info!(checkpoint = %saved_pos, "drained");
    } else {
        lanes.senders.clear();
        lanes.tasks.abort_all();
    }
    match (result, lane_error) {
        (Err(e), _) => Err(e),
        (Ok(_), Some(e)) => Err(e),
        (Ok(o), None) => {
            if o == Outcome::ReachedEnd {
                if let Some(stop) = &a.stop_at {
                    if applied_pos < *stop {
                        return Err(PipelineError::Transient(format!(
                            "stopped before {stop}: applied up to {applied_pos}"
                        )));
                    }
                }
            }
            Ok(o)
        }
    }
}

/// Saves a watermark as the checkpoint (with its commit time), unless a
/// replay must not move the checkpoint to it. Returns whether it saved.
async fn persist(a: &mut Attempt<'_>, w: &LaneProgress) -> Result<bool, PipelineError> {
    if let Some(min) = &a.forward_only {
        if w.end <= *min {
            return Ok(false);
        }
    }
    let cp = Checkpoint {
        position: w.end.clone(),
        epoch: a.cfg.pipeline.epoch,
        source_identity: a.source_identity.clone(),
    };
    store::save_progress(a.control, &a.cfg.pipeline.name, &cp, w.timestamp).await?;
    Ok(true)
}

/// Routes a transaction's changes and queues the operations on their lanes.
async fn dispatch(
    a: &mut Attempt<'_>,
    lanes: &Lanes,
    txn: &crate::source::Transaction,
    dead_letters: &mut u64,
) -> Result<(), PipelineError> {
    let p = &a.cfg.pipeline;
    if !txn.changes.is_empty() && !a.lookups.is_empty() {
        a.lookups.refresh(a.control).await?;
    }
    for change in &txn.changes {
        if let Some(floor) = a.floor {
            if change.version < floor {
                *a.skipped += 1;
                continue;
            }
        }
        let ops = match a.router.route(change, &*a.lookups) {
            Ok(ops) => ops,
            Err(e @ RouteError::Derive { .. }) if p.on_derive_error == OnDeriveError::DeadLetter => {
                dead_letter(a.control, &p.name, change, &e.to_string()).await?;
                *dead_letters += 1;
                continue;
            }
            Err(e) => {
                return Err(PipelineError::Definite(format!(
                    "{e}\nThe pipeline stopped so that no row is dropped; fix the rule (or set [pipeline] on_derive_error = \"dead-letter\") and run again: it resumes from the checkpoint."
                )))
            }
        };
        for op in ops {
            let l = op.shard * lanes.per_shard
                + (lane_hash(&op.table.name, &op.key_enc) % lanes.per_shard as u64) as usize;
            if lanes.senders[l].send(LaneMsg::Op(op)).await.is_err() {
                // the lane died; its error surfaces from join_next
                return Ok(());
            }
        }
    }
    Ok(())
}

fn lane_failure(
    joined: Result<Result<(), lane::LaneError>, tokio::task::JoinError>,
) -> PipelineError {
    match joined {
        Ok(Ok(())) => PipelineError::Transient("a writer lane stopped unexpectedly".into()),
        Ok(Err(e)) if e.is_transient() => PipelineError::Transient(e.to_string()),
        Ok(Err(e)) => PipelineError::Definite(e.to_string()),
        Err(e) => PipelineError::Definite(format!("a writer lane crashed: {e}")),
    }
}

/// Records a row that cannot be routed in the control database.
pub async fn dead_letter(
    control: &mut Conn,
    pipeline: &str,
    change: &crate::source::RowChange,
    error: &str,
) -> Result<(), PipelineError> {
    let image = change.after.as_ref().or(change.before.as_ref());
    let key: Vec<mysql_common::value::Value> = image
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
    tracing::warn!(table = %change.table.full_name(), position = %change.position, error, "row dead-lettered");
    control
        .exec_drop(
            "INSERT INTO reshard_dead_letter (pipeline, binlog_file, binlog_pos, source_table, row_key, error, row_image) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                pipeline,
                &change.position.file,
                change.position.pos,
                change.table.full_name(),
                display_cells(&key),
                error,
                row_text,
            ),
        )
        .await
        .map_err(|e| DbError::query("control", "writing a dead letter", e).into())
}
