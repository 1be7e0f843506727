//! `reshard run`: the long-lived replicator.
//!
//! Start-up, in order: config and rules (errors name file, line, column);
//! a connection to every server; reshard's tables migrated; source
//! pre-flight checks; the shard leases; the start position. Then streaming
//! attempts, each resuming from the stored checkpoint; transient failures
//! retry with backoff, definite ones stop with exit code 2. Tombstone
//! pruning ([`crate::checkpoint::prune`]) runs beside them, for as long as
//! `run` does; `replay` never prunes.
//!
//! # Where streaming starts
//!
//! * a checkpoint exists: there (refusing `--from` unless `--force`), after
//!   checking that the source is the same server and that its binlog
//!   numbering did not go backwards — positions of a reset or different
//!   server would produce versions *lower* than the targets hold, and
//!   every change would be dropped silently. Raising `[pipeline] epoch`
//!   continues on purpose.
//! * `--from FILE:POS`: there, saved as the checkpoint before streaming.
//! * neither, for a shard subset whose shards other subsets applied
//!   before: where they stopped ([`crate::control::subset`]; a copy would
//!   keep rows deleted since);
//! * neither: the initial copy ([`crate::snapshot`]) at a consistent
//!   position P saved *before* any row is copied (with the checkpoint P),
//!   then streaming from P. A crash mid-copy resumes the copy.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::replicator::{attempt_backoff, pause_and_reconnect, shutdown_signal, Replicator};
use super::servers::Servers;
use crate::checkpoint::continuity::{self, ContinuityError};
use crate::checkpoint::{prune, Checkpoint, Saves};
use crate::config::Config;
use crate::control::subset::Inherit;
use crate::control::{self, checkpoint};
use crate::db::{self, Retry};
use crate::pipeline::{run_attempt, Attempt, Outcome, PipelineError};
use crate::position::Position;
use crate::snapshot;
use crate::source::{self, StartAt};

/// Arguments of `run`.
pub struct RunArgs {
    pub from: Option<Position>,
    pub force: bool,
    /// DDL events let through whatever `on_ddl` says.
    pub accept_ddl: Vec<Position>,
}

pub async fn run(path: &Path, args: RunArgs) -> anyhow::Result<ExitCode> {
    // listening from the start: a SIGTERM during the start-up checks is a
    // shutdown request (the first attempt drains at once, exit 0), not death
    let stop_rx = shutdown_signal();
    let Replicator {
        mut cfg,
        mut router,
        mut lookups,
        mut servers,
        flavor,
        checksum,
        identity,
    } = Replicator::start(path).await?;
    cfg.pipeline.accept_ddl = args.accept_ddl;
    let (start, mut needs_copy) =
        start_position(&cfg, &mut servers, args.from, args.force, &identity).await?;
    tracing::info!(pipeline = %cfg.pipeline.name, start = %start, epoch = cfg.pipeline.epoch, "starting");
    // the other start-up connections are not needed any more
    let Servers { mut control, .. } = servers;
    // the metrics endpoint, the throttle and the monitor (lag, stall
    // alarm, figures for `status`), for as long as `run` runs
    let _observer = crate::monitor::start(&cfg).await?;
    // pruning runs for as long as `run` does, between attempts too, and
    // ends with it on every path (a dropped task is aborted)
    let _pruning = prune::start(&cfg, &router);
    // the GTID state at the checkpoint, for the next start's failover check
    let _anchoring = continuity::start(&cfg);

    let mut backoff = attempt_backoff();
    // the start checked the source; a later attempt follows a failure
    let mut after_failure = false;
    loop {
        if needs_copy {
            let result = snapshot::copy(snapshot::Copy {
                cfg: &cfg,
                router: &mut router,
                lookups: &mut lookups,
                control: &mut control,
                position: start.clone(),
                shutdown: stop_rx.clone(),
            })
            .await;
            match result {
                Ok(snapshot::CopyOutcome::Done) => needs_copy = false,
                Ok(snapshot::CopyOutcome::Interrupted) => {
                    tracing::info!(
                        "initial copy interrupted; it resumes at its last finished chunk"
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                Err(e) if e.retry() == Retry::Definite => return Err(e.into()),
                Err(e) => {
                    if !pause_and_reconnect(&cfg, &mut control, &mut backoff, &stop_rx, &e).await? {
                        return Ok(ExitCode::SUCCESS);
                    }
                    continue;
                }
            }
        }
        let cp = match resume_point(&cfg, &mut control, &identity, after_failure).await? {
            Ok(cp) => cp,
            Err(e) => {
                if !pause_and_reconnect(&cfg, &mut control, &mut backoff, &stop_rx, &e).await? {
                    return Ok(ExitCode::SUCCESS);
                }
                continue;
            }
        };
        after_failure = true;
        let attempt = Attempt {
            cfg: &cfg,
            router: &mut router,
            control: &mut control,
            start: StartAt::Position(cp.position),
            stop_at: None,
            floor: None,
            saves: Saves::All,
            skipped: &mut 0,
            source_identity: identity.clone(),
            flavor,
            checksum,
            shutdown: stop_rx.clone(),
            lookups: &mut lookups,
            archive: None,
            command: "run",
        };
        match run_attempt(attempt).await {
            Ok(Outcome::Shutdown) | Ok(Outcome::ReachedEnd) => {
                continuity::log_record(&cfg).await;
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) if e.retry() == Retry::Definite => return Err(e.into()),
            Err(e) => {
                if !pause_and_reconnect(&cfg, &mut control, &mut backoff, &stop_rx, &e).await? {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
}

/// The stored checkpoint an attempt starts from; after a failure, also
/// checked against the source, which may have failed over meanwhile
/// ([`continuity::recheck`]). `Ok(Err(_))`: a transient failure to pause
/// on; `Err`: stop.
async fn resume_point(
    cfg: &Config,
    control: &mut mysql_async::Conn,
    identity: &str,
    after_failure: bool,
) -> anyhow::Result<Result<Checkpoint, PipelineError>> {
    let cp = match checkpoint::load(control, &cfg.pipeline.name).await {
        Ok(cp) => cp.context("the checkpoint disappeared from the control database")?,
        Err(e) if e.retry() == Retry::Definite => return Err(e.into()),
        Err(e) => return Ok(Err(e.into())),
    };
    if after_failure {
        match continuity::recheck(cfg, identity, &cp.position).await {
            Ok(()) => {}
            Err(ContinuityError::Db(e)) if e.retry() == Retry::Transient => {
                return Ok(Err(e.into()))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Ok(cp))
}

async fn start_position(
    cfg: &Config,
    servers: &mut Servers,
    from: Option<Position>,
    force: bool,
    identity: &str,
) -> anyhow::Result<(Position, bool)> {
    let p = &cfg.pipeline;
    let existing = checkpoint::load(&mut servers.control, &p.name).await?;
    if let Some(cp) = &existing {
        if from.is_some() && !force {
            bail!(
                "pipeline {:?} already has a checkpoint at {}; refusing --from without --force (it would move the checkpoint)",
                p.name,
                cp.position
            );
        }
    }
    let subsets = control::subset::list(&mut servers.control, &p.base_name).await?;
    if let Some(from) = from {
        let cp = Checkpoint {
            position: from.clone(),
            epoch: p.epoch,
            source_identity: identity.to_string(),
        };
        checkpoint::save(&mut servers.control, &p.name, &cp).await?;
        // a position chosen by hand may be of another history
        checkpoint::clear_anchor(&mut servers.control, &p.name).await?;
        if existing.as_ref().is_some_and(|old| p.epoch > old.epoch) {
            checkpoint::set_epoch_start(&mut servers.control, &p.name, &from).await?;
        }
        inherit_floor(cfg, &mut servers.control, &subsets).await?;
        return Ok((from, false));
    }
    match existing {
        Some(cp) => {
            check_continuity(cfg, servers, &cp, identity).await?;
            control::subset::check_resume(
                &p.name,
                &cp.position,
                p.epoch,
                &cfg.applied_shards(),
                &subsets,
            )
            .with_context(|| {
                format!(
                    "resuming subset {} at its checkpoint {}",
                    p.name, cp.position
                )
            })?;
            if cp.epoch != p.epoch || cp.source_identity != identity {
                let new = Checkpoint {
                    epoch: p.epoch,
                    source_identity: identity.to_string(),
                    ..cp.clone()
                };
                checkpoint::save(&mut servers.control, &p.name, &new).await?;
                checkpoint::clear_anchor(&mut servers.control, &p.name).await?;
                if p.epoch > cp.epoch {
                    checkpoint::set_epoch_start(&mut servers.control, &p.name, &cp.position)
                        .await?;
                }
            }
            let snap = control::snapshot::load(&mut servers.control, &p.name).await?;
            let copying = snap.as_ref().is_some_and(|s| !s.done);
            if copying {
                tracing::info!(position = %cp.position, "resuming the initial copy at its last finished chunk");
            }
            Ok((
                checkpoint::load(&mut servers.control, &p.name)
                    .await?
                    .map(|c| c.position)
                    .unwrap_or(cp.position),
                copying,
            ))
        }
        None => new_start(cfg, servers, identity, &subsets).await,
    }
}

/// The start of a pipeline (or shard subset) without a checkpoint: where
/// other subsets left its shards, else the initial copy at a consistent
/// position (see [`crate::control::subset`]).
async fn new_start(
    cfg: &Config,
    servers: &mut Servers,
    identity: &str,
    subsets: &[control::subset::Subset],
) -> anyhow::Result<(Position, bool)> {
    let p = &cfg.pipeline;
    let shards = cfg.applied_shards();
    let inherited = control::subset::inherit(&p.name, &shards, subsets, p.epoch, identity)
        .with_context(|| format!("starting the new shard subset {}", p.name))?;
    if let Inherit::Resume { position, from, .. } = inherited {
        let cp = Checkpoint {
            position: position.clone(),
            epoch: p.epoch,
            source_identity: identity.to_string(),
        };
        check_continuity(cfg, servers, &cp, identity).await?;
        checkpoint::save(&mut servers.control, &p.name, &cp).await?;
        inherit_floor(cfg, &mut servers.control, subsets).await?;
        tracing::info!(position = %position, from = %from.join(", "), "no checkpoint for this shard subset: resuming its shards where the subsets that applied them stopped");
        return Ok((position, false));
    }
    let flavor = db::flavor(&mut servers.source, "source").await?;
    let pos = snapshot::consistent_position(&mut servers.source, flavor).await?;
    snapshot::begin(&mut servers.control, &p.name, &pos, p.epoch, identity).await?;
    tracing::info!(position = %pos, "no checkpoint: copying the existing rows at a consistent snapshot position, then streaming from it");
    Ok((pos, true))
}

/// Raises this subset's floor to the highest floor of a row that covers
/// one of its shards: their tombstones may be pruned up to there.
async fn inherit_floor(
    cfg: &Config,
    control: &mut mysql_async::Conn,
    subsets: &[control::subset::Subset],
) -> anyhow::Result<()> {
    if let Some(f) = control::subset::floor(&cfg.applied_shards(), subsets) {
        checkpoint::raise_floor(control, &cfg.pipeline.name, f).await?;
    }
    Ok(())
}

/// Refuses to stream when positions would produce versions that go
/// backwards, unless the operator raised the epoch, and when the source no
/// longer holds the checkpoint's history (restored, reset, failed over:
/// [`continuity`]).
async fn check_continuity(
    cfg: &Config,
    servers: &mut Servers,
    cp: &Checkpoint,
    identity: &str,
) -> anyhow::Result<()> {
    let epoch = cfg.pipeline.epoch;
    if epoch < cp.epoch {
        bail!(
            "[pipeline] epoch is {epoch} but the checkpoint was written at epoch {}; versions would go backwards. Set epoch to at least {}",
            cp.epoch,
            cp.epoch
        );
    }
    let raised = epoch > cp.epoch;
    if cp.source_identity != identity && !raised {
        bail!(
            "the source is a different server ({identity}) than the one the checkpoint was taken on ({}); its binlog positions are not comparable and its changes could be silently ignored. To continue on purpose, raise [pipeline] epoch to {} and start with --from FILE:POS --force",
            cp.source_identity,
            cp.epoch + 1
        );
    }
    let files = source::binlog_files(&mut servers.source).await?;
    if files.contains(&cp.position.file) {
        if !raised {
            let name = &cfg.pipeline.name;
            continuity::check(
                &mut servers.source,
                &mut servers.control,
                name,
                &cp.position,
            )
            .await?;
        }
        return Ok(());
    }
    let cp_seq = cp.position.seq()?;
    let max_seq = files
        .iter()
        .filter_map(|f| crate::position::file_seq(f).ok())
        .max();
    match max_seq {
        Some(m) if m < cp_seq && !raised => bail!(
            "the source's binlog went backwards: the checkpoint is at {} but the newest file is sequence {m} (RESET MASTER?). New events would carry lower versions than the targets hold and be ignored. To continue on purpose, raise [pipeline] epoch to {} and start with --from FILE:POS --force",
            cp.position,
            cp.epoch + 1
        ),
        Some(m) if m < cp_seq => bail!(
            "the epoch was raised but the checkpoint {} is gone from the source; start with --from FILE:POS --force",
            cp.position
        ),
        _ => bail!(
            "the checkpoint's binlog file {} has been purged from the source (oldest available: {}); the changes since then are lost to the binlog. Re-seed the targets or restore the binlog",
            cp.position.file,
            files.first().map(String::as_str).unwrap_or("none")
        ),
    }
}
