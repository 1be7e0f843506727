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
mod reader;

use std::sync::Arc;

use mysql_async::Conn;
use tokio::sync::watch;

use crate::checkpoint::Saves;
use crate::config::{Config, Endpoint};
use crate::db::{self, Flavor, Session};
use crate::position::Position;
use crate::rules::lookup::Lookups;
use crate::rules::Router;
use crate::source::archive::ArchiveSource;
use crate::source::ddl_policy::{DdlPolicy, Watch};
use crate::source::history::SchemaHistory;
use crate::source::{SourceError, StartAt};
use crate::version::Version;
use crate::writer::pool::LanePool;
use crate::writer::Stats;
pub(crate) use coordinator::lane_failure;
use coordinator::Coordinator;
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
    /// Which watermarks may be saved as the checkpoint (`run`: all; a
    /// replay: only forward, none when it starts past the checkpoint).
    pub saves: Saves,
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
    /// The command that runs the attempt (`run`, `replay`), for messages
    /// that say how to go on.
    pub command: &'static str,
}

/// Runs one attempt: connects the lanes and the source, runs the
/// [`Coordinator`] until shutdown, `stop_at` or an error, then drains.
///
/// The reader task ends with the attempt on every path: it is a
/// [`crate::task::Background`] task, aborted when dropped. Tombstone
/// pruning is not part of an attempt: only `run` prunes (see
/// [`crate::checkpoint::prune`]), never `replay`.
pub async fn run_attempt(a: Attempt<'_>) -> Result<Outcome, PipelineError> {
    let cfg = a.cfg;
    // connections first: a target we cannot reach fails the attempt early
    let stats = Arc::new(Stats::default());
    let (lanes, progress) = LanePool::start(cfg, stats.clone()).await?;
    let (source, reader) = reader::start(&a).await?;
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
    let mut coordinator = Coordinator::new(a, lanes, progress, stats, start_pos);
    let result = coordinator.run(source).await;
    drop(reader);
    coordinator.drain(result).await
}

/// `[pipeline] on_ddl` over the router's tables: what each rule routes by
/// and where its target tables are (see [`crate::source::ddl_policy`]).
fn ddl_policy(cfg: &Config, router: &Router, command: &'static str) -> DdlPolicy {
    let tables = router
        .rules()
        .map(|r| {
            let mut shards: Vec<Endpoint> = r
                .shards
                .iter()
                .filter(|s| cfg.applies(s))
                .filter_map(|s| cfg.targets.get(s).cloned())
                .collect();
            shards.sort_by(|a, b| a.name.cmp(&b.name));
            shards.dedup_by(|a, b| a.name == b.name);
            let watch = Watch {
                rule_file: r.file.display().to_string(),
                key: r.key.clone(),
                shard: r.shard.expr.columns(),
                version: r.version_column.clone(),
                target: r.target.clone(),
                rename: r.rename.clone(),
                exclude: r.exclude.clone(),
                shards,
            };
            ((r.source_db.clone(), r.source_table.clone()), watch)
        })
        .collect();
    DdlPolicy {
        mode: cfg.pipeline.on_ddl,
        tables,
        accepted: cfg.pipeline.accept_ddl.clone(),
        config: cfg.path.display().to_string(),
        command,
        connect_timeout: cfg.pipeline.connect_timeout,
    }
}

/// The schema history of the router's tables (see
/// [`crate::source::history`]), with every table's columns recorded as
/// valid at `at` when given: where streaming starts, or the initial copy's
/// position. (A GTID start has no position to record at.) Its DDL policy
/// names `command` (`run`, `replay`) as the way past a halt.
pub async fn open_history(
    cfg: &Config,
    router: &Router,
    at: Option<&Position>,
    command: &'static str,
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
    history.set_policy(ddl_policy(cfg, router, command));
    if let Some(at) = at {
        let mut source = db::connect(&cfg.source, Session::Read, budget).await?;
        let prepared = history.prepare(&mut source, at).await;
        let _ = source.disconnect().await;
        prepared.map_err(SourceError::Schema)?;
    }
    Ok(history)
}
