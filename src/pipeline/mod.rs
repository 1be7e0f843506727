//! One streaming attempt: wires tailer → router → writer lanes →
//! checkpoint (gh-ost's streamer/applier split, with the router in
//! between). [`run_attempt`] connects everything and hands over to the
//! [`coordinator`], which handles the events of the attempt one method each.
//!
//! An attempt starts at a transaction boundary and ends on shutdown, on
//! reaching `stop_at`, or with an error that the caller classifies:
//! transient errors restart the attempt from the stored checkpoint with
//! backoff, definite ones stop reshard. Nothing is lost either way,
//! because the checkpoint only ever names a transaction all of whose
//! operations are durable on every shard ([`crate::checkpoint::tracker`]),
//! and re-applying what lies after it is harmless (versions).

mod coordinator;
mod error;

use std::collections::HashSet;
use std::sync::Arc;

use mysql_async::Conn;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::checkpoint::prune;
use crate::config::Config;
use crate::db::{self, Flavor, Session};
use crate::position::Position;
use crate::rules::lookup::Lookups;
use crate::rules::Router;
use crate::source::archive::{ArchiveReader, ArchiveSource};
use crate::source::events::TableFilter;
use crate::source::history::SchemaHistory;
use crate::source::{DecoderOptions, SourceError, SourceItem, StartAt, Tailer, TailerOptions};
use crate::version::Version;
use crate::writer::pool::LanePool;
use crate::writer::Stats;
use coordinator::{Coordinator, SourceRx};
pub use error::{PipelineError, Stage};

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
    /// Read archived binlog files instead of the server's stream
    /// (`replay --binlog-dir`).
    pub archive: Option<ArchiveSource>,
}

/// Runs one attempt: connects the lanes and the source, runs the
/// [`Coordinator`] until shutdown, `stop_at` or an error, then drains.
pub async fn run_attempt(a: Attempt<'_>) -> Result<Outcome, PipelineError> {
    let cfg = a.cfg;
    // connections first: a target we cannot reach fails the attempt early
    let stats = Arc::new(Stats::default());
    let (lanes, progress) = LanePool::start(cfg, stats.clone()).await?;
    let (source, tailer_task) = open_source(&a).await?;
    let start_pos = match &a.start {
        StartAt::Position(p) => {
            tracing::info!(position = %p, shards = cfg.targets.len(), lanes = lanes.len(), "streaming");
            p.clone()
        }
        StartAt::Gtid(g) => {
            tracing::info!(gtid = %g, shards = cfg.targets.len(), lanes = lanes.len(), "streaming");
            Position::new("", 4)
        }
    };
    let prune = start_pruning(cfg, a.router);
    let mut coordinator = Coordinator::new(a, lanes, progress, stats, start_pos);
    let result = coordinator.run(source).await;
    tailer_task.abort();
    prune.abort();
    coordinator.drain(result).await
}

/// Opens the binlog tailer on the router's tables and forwards its items
/// from a task of its own, so reading overlaps applying.
async fn open_source(a: &Attempt<'_>) -> Result<(SourceRx, JoinHandle<()>), PipelineError> {
    let cfg = a.cfg;
    let budget = cfg.pipeline.connect_timeout;
    let wanted: HashSet<(String, String)> = a
        .router
        .rules()
        .map(|r| (r.source_db.clone(), r.source_table.clone()))
        .collect();
    let filter = Arc::new(move |d: &str, t: &str| wanted.contains(&(d.to_string(), t.to_string())));
    if let Some(archive) = &a.archive {
        return open_archive(a, archive, filter).await;
    }
    let stream_conn = db::connect(&cfg.source, Session::Read, budget).await?;
    let schema_conn = db::connect(&cfg.source, Session::Read, budget).await?;
    let mut tailer = Tailer::open(
        stream_conn,
        schema_conn,
        a.start.clone(),
        TailerOptions {
            server_id: cfg.server_id,
            epoch: cfg.pipeline.epoch,
            heartbeat: cfg.pipeline.heartbeat,
            flavor: a.flavor,
            checksum: a.checksum,
            filter,
        },
    )
    .await?;
    let at = match &a.start {
        StartAt::Position(p) => Some(p),
        StartAt::Gtid(_) => None,
    };
    tailer.set_history(open_history(cfg, a.router, at).await?);
    let (tx, rx) = mpsc::channel::<Result<SourceItem, SourceError>>(64);
    let task = tokio::spawn(async move {
        loop {
            let item = tailer.next().await;
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
        tailer.close().await;
    });
    Ok((rx, task))
}

/// The schema history of the router's tables (see
/// [`crate::source::history`]), with every table's columns recorded as
/// valid at `at` when given: where streaming starts, or the initial copy's
/// position. (A GTID start has no position to record at.)
pub async fn open_history(
    cfg: &Config,
    router: &Router,
    at: Option<&Position>,
) -> Result<SchemaHistory, PipelineError> {
    let budget = cfg.pipeline.connect_timeout;
    let control = db::connect(&cfg.control, Session::Read, budget).await?;
    let mapped = router
        .rules()
        .map(|r| (r.source_db.clone(), r.source_table.clone()))
        .collect();
    let p = &cfg.pipeline;
    let mut history = SchemaHistory::load(control, &p.name, p.epoch, mapped)
        .await
        .map_err(SourceError::Schema)?;
    if let Some(at) = at {
        let mut source = db::connect(&cfg.source, Session::Read, budget).await?;
        let prepared = history.prepare(&mut source, at).await;
        let _ = source.disconnect().await;
        prepared.map_err(SourceError::Schema)?;
    }
    Ok(history)
}

/// Reads archived binlog files from a task of its own, like the tailer
/// ([`crate::source::archive`]); a read past the last file is an error
/// unless `stop_at` ended the attempt first.
async fn open_archive(
    a: &Attempt<'_>,
    archive: &ArchiveSource,
    filter: TableFilter,
) -> Result<(SourceRx, JoinHandle<()>), PipelineError> {
    let cfg = a.cfg;
    let StartAt::Position(start) = &a.start else {
        return Err(SourceError::Definite(
            "archived binlogs are read from a position (--from FILE:POS), not a GTID set".into(),
        )
        .into());
    };
    let schema_conn = if archive.schemas_from_source {
        Some(db::connect(&cfg.source, Session::Read, cfg.pipeline.connect_timeout).await?)
    } else {
        None
    };
    let opts = DecoderOptions {
        epoch: cfg.pipeline.epoch,
        checksum: false,
        filter,
    };
    let mut reader = ArchiveReader::new(archive.archive.clone(), start.clone(), opts, schema_conn);
    let (tx, rx) = mpsc::channel::<Result<SourceItem, SourceError>>(64);
    let task = tokio::spawn(async move {
        loop {
            let item = match reader.next().await {
                Ok(Some(item)) => Ok(item),
                Ok(None) => Err(SourceError::Definite(
                    "the archived binlog files end before the replay's end position".into(),
                )),
                Err(e) => Err(e),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    Ok((rx, task))
}

/// Starts tombstone pruning for the tables versioned by position (see
/// [`crate::checkpoint::prune`]); it runs until the attempt aborts it.
fn start_pruning(cfg: &Config, router: &Router) -> JoinHandle<()> {
    let tables: Vec<String> = router
        .rules()
        .filter(|r| r.version_column.is_none())
        .map(|r| r.target.clone())
        .collect();
    tokio::spawn(prune::prune_loop(cfg.clone(), tables))
}
