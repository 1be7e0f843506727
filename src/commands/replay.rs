//! `reshard replay`: re-apply a binlog range from the source server.
//!
//! Needs no checkpoint and never snapshots. It moves the checkpoint only
//! forward (a replay of an old range leaves a newer checkpoint where it
//! is). Row changes below the pipeline's floor — the snapshot version or
//! the tombstone pruning floor, whichever is higher — are skipped and
//! counted, because their deletes may have left no tombstone: applying them
//! could bring back a deleted row. With shard subsets, the floor is the
//! highest of any subset that applied one of the replay's shards (see
//! [`crate::control::subset`]). `--below-floor` applies them anyway (for
//! a target restored from an old backup), with a warning.
//!
//! A replay never prunes tombstones (only `run` does, and the lease keeps
//! a `run` from running beside it), so the floor read at its start holds
//! for its whole duration: no tombstone of the range can disappear under
//! it and let an older insert resurrect a deleted row.
//!
//! With `--to`, it exits 0 once the transaction ending at `--to` is applied,
//! even if the source is idle; without, it goes on streaming like `run`.
//! A transient failure restarts the replay from `--from` (replaying is
//! idempotent).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use mysql_async::Conn;

use super::replicator::{attempt_backoff, pause_and_reconnect, shutdown_signal, Replicator};
use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::control::{self, checkpoint};
use crate::db::{Flavor, Retry};
use crate::pipeline::{run_attempt, Attempt, Outcome};
use crate::position::Position;
use crate::rules::lookup::Lookups;
use crate::rules::Router;
use crate::source::archive::ArchiveSource;
use crate::source::StartAt;

/// Arguments of `replay`.
pub struct ReplayArgs {
    pub from: Option<Position>,
    pub from_gtid: Option<String>,
    pub to: Option<Position>,
    pub below_floor: bool,
    /// Read archived binlog files from this directory instead of the server.
    pub binlog_dir: Option<PathBuf>,
    /// DDL events let through whatever `on_ddl` says.
    pub accept_ddl: Vec<Position>,
}

pub async fn replay(path: &Path, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    // listening from the start (see `shutdown_signal`)
    let _ = shutdown_signal();
    let start = match (&args.from, &args.from_gtid) {
        (Some(p), None) => StartAt::Position(p.clone()),
        (None, Some(g)) => StartAt::Gtid(g.clone()),
        _ => bail!("give exactly one of --from FILE:POS and --from-gtid SET"),
    };
    if let (Some(from), Some(to)) = (&args.from, &args.to) {
        if to <= from {
            bail!("--to {to} is not after --from {from}: nothing to replay");
        }
    }
    if let (Some(dir), Some(from)) = (&args.binlog_dir, &args.from) {
        return super::replay_archive::replay_archive(path, dir, from, &args).await;
    }
    let Replicator {
        mut cfg,
        router,
        lookups,
        mut servers,
        flavor,
        checksum,
        identity,
    } = Replicator::start(path).await?;
    if let Some(to) = &args.to {
        let head = crate::source::head(&mut servers.source).await?;
        if *to > head {
            bail!("--to {to} is beyond the source's current head {head}");
        }
    }
    cfg.pipeline.accept_ddl = args.accept_ddl.clone();
    let read = Read::Server { flavor, checksum };
    let replay = Replay::new(cfg, router, lookups, servers.control, identity, read);
    run_replay(replay, start, args.to.clone(), &args).await
}

/// What a replay of a range needs once started.
pub(super) struct Replay {
    pub cfg: Config,
    pub router: Router,
    pub lookups: Lookups,
    pub control: Conn,
    pub identity: String,
    pub read: Read,
}

impl Replay {
    pub(super) fn new(
        cfg: Config,
        router: Router,
        lookups: Lookups,
        control: Conn,
        identity: String,
        read: Read,
    ) -> Replay {
        Replay {
            cfg,
            router,
            lookups,
            control,
            identity,
            read,
        }
    }
}

/// Where a replay reads the binlog.
pub(super) enum Read {
    /// From the source server's stream.
    Server { flavor: Flavor, checksum: bool },
    /// From archived files (`--binlog-dir`).
    Archive(ArchiveSource),
}

/// Replays from `start` to `to` (without, on like `run`): checks the
/// epoch, reads the floor, makes sure there is a checkpoint row to move
/// forward, and runs attempts until the end, shutdown or a definite error.
pub(super) async fn run_replay(
    r: Replay,
    start: StartAt,
    to: Option<Position>,
    args: &ReplayArgs,
) -> anyhow::Result<ExitCode> {
    let stop_rx = shutdown_signal();
    let Replay {
        cfg,
        mut router,
        mut lookups,
        mut control,
        identity,
        read,
    } = r;
    let (flavor, checksum, archive) = match read {
        Read::Server { flavor, checksum } => (flavor, checksum, None),
        // flavour and checksums are the stream's: not used for files
        Read::Archive(a) => (Flavor::MariaDb, false, Some(a)),
    };
    let name = &cfg.pipeline.name;
    let stored = checkpoint::load(&mut control, name).await?;
    if let (Some(cp), Some(from)) = (&stored, &args.from) {
        check_epoch(&cfg, &mut control, cp, from).await?;
    }
    // the highest floor of any subset that applied one of these shards:
    // their tombstones may be pruned up to there
    let subsets = control::subset::list(&mut control, &cfg.pipeline.base_name).await?;
    let floor = checkpoint::floor(&mut control, name)
        .await?
        .max(control::subset::floor(&cfg.applied_shards(), &subsets));
    if args.below_floor {
        if let Some(f) = floor {
            tracing::warn!(floor = %f, "--below-floor: changes below the floor are applied; rows deleted before the floor may reappear until the replay passes their deletes");
        }
    }
    if stored.is_none() {
        // a checkpoint row to move forward, at the replay's start
        if let Some(from) = &args.from {
            let cp = Checkpoint {
                position: from.clone(),
                epoch: cfg.pipeline.epoch,
                source_identity: identity.clone(),
            };
            checkpoint::save(&mut control, name, &cp).await?;
        }
    }
    let forward_only = checkpoint::load(&mut control, name)
        .await?
        .map(|c| c.position);
    // the endpoint, the throttle and the monitor, for as long as the replay
    let _observer = crate::monitor::start(&cfg).await?;
    let mut backoff = attempt_backoff();
    loop {
        let mut skipped = 0u64;
        let attempt = Attempt {
            cfg: &cfg,
            router: &mut router,
            control: &mut control,
            start: start.clone(),
            stop_at: to.clone(),
            floor: if args.below_floor { None } else { floor },
            forward_only: forward_only.clone(),
            skipped: &mut skipped,
            source_identity: identity.clone(),
            flavor,
            checksum,
            shutdown: stop_rx.clone(),
            lookups: &mut lookups,
            archive: archive.clone(),
            command: "replay",
        };
        let result = run_attempt(attempt).await;
        if skipped > 0 {
            tracing::warn!(skipped, floor = ?floor.map(|f| f.to_string()), "row changes below the floor were skipped (use --below-floor to apply them)");
        }
        match result {
            Ok(Outcome::ReachedEnd) => {
                let to = to.as_ref().map(|t| t.to_string()).unwrap_or_default();
                println!("replayed up to {to}; {skipped} row change(s) below the floor skipped");
                return Ok(ExitCode::SUCCESS);
            }
            Ok(Outcome::Shutdown) => return Ok(ExitCode::SUCCESS),
            Err(e) if e.retry() == Retry::Definite => return Err(e.into()),
            Err(e) => {
                // replaying is idempotent: start the range again
                if !pause_and_reconnect(&cfg, &mut control, &mut backoff, &stop_rx, &e).await? {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
}

/// Refuses a replay whose versions would be wrong: a config epoch below the
/// checkpoint's, or a `--from` before the current epoch began (those events
/// were versioned under an earlier epoch, maybe on another server).
async fn check_epoch(
    cfg: &Config,
    control: &mut Conn,
    cp: &Checkpoint,
    from: &Position,
) -> anyhow::Result<()> {
    let epoch = cfg.pipeline.epoch;
    if cp.epoch > epoch {
        bail!(
            "[pipeline] epoch is {epoch} but the checkpoint is at epoch {}",
            cp.epoch
        );
    }
    if let Some(begin) = checkpoint::epoch_start(control, &cfg.pipeline.name).await? {
        if *from < begin && cp.epoch == epoch {
            bail!(
                "--from {from} is before the current epoch {} began at {begin}: those events belong to an earlier epoch (or another server) and would be versioned wrongly; replay from {begin} or later",
                cp.epoch
            );
        }
    }
    Ok(())
}
