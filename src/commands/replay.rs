//! `reshard replay`: re-apply a binlog range from the source server.
//!
//! Needs no checkpoint and never snapshots. Row changes below the
//! pipeline's floor — the snapshot version or the tombstone pruning floor,
//! whichever is higher — are skipped and
//! counted, because their deletes may have left no tombstone: applying them
//! could bring back a deleted row. With shard subsets, the floor is the
//! highest of any subset that applied one of the replay's shards (see
//! [`crate::control::subset`]). `--below-floor` applies them anyway (for
//! a target restored from an old backup), with a warning.
//!
//! # Which checkpoints a replay saves
//!
//! A checkpoint claims that every change before it is applied on every
//! shard of its row. A replay applies its range from where it starts — its
//! `--from`, or the floor when it skips changes below a higher one — so it
//! may only move a checkpoint that already vouches for everything before
//! that start ([`saves`]; `docs/architecture.md`, "Checkpoint watermark"):
//!
//! * its row has a checkpoint C: only forward past C (a replay of an old
//!   range leaves a newer checkpoint where it is), and not at all when it
//!   starts past C (`Saves::starting_at`, in the bookkeeping) or skips
//!   changes below a floor above C: the changes between C and its start
//!   were applied by nobody, and a checkpoint past them would make every
//!   later `run` skip them (a finding of the model checker). C stays, with
//!   a warning; `run` applies from C, re-applying the replayed range
//!   (harmless: versions). A `--from-gtid` start is at or before C when
//!   the GTID state at C (`BINLOG_GTID_POS`) includes the set in every
//!   domain; when the source cannot say (MySQL), nothing is saved;
//! * no row, but other shard subsets applied its shards: nothing, for the
//!   same reason — their checkpoints vouch for its shards, and its `run`
//!   resumes where they stopped ([`crate::control::subset::inherit`]);
//! * nothing ever applied its shards: the replay's `--from` becomes the
//!   checkpoint, as with `run --from`, and it moves forward from there.
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
use crate::checkpoint::continuity::{self, GtidState};
use crate::checkpoint::{Checkpoint, Saves};
use crate::config::Config;
use crate::control::subset::{Inherit, Subset};
use crate::control::{self, checkpoint};
use crate::db::{Flavor, Retry};
use crate::pipeline::{run_attempt, Attempt, Outcome};
use crate::position::Position;
use crate::rules::lookup::Lookups;
use crate::rules::Router;
use crate::source::archive::ArchiveSource;
use crate::source::StartAt;
use crate::version::Version;

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
    let read = Read::Server {
        flavor,
        checksum,
        source: servers.source,
    };
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
    /// From the source server's stream (`source`: a connection for the
    /// start-up questions).
    Server {
        flavor: Flavor,
        checksum: bool,
        source: Conn,
    },
    /// From archived files (`--binlog-dir`).
    Archive(ArchiveSource),
}

/// Replays from `start` to `to` (without, on like `run`): checks the
/// epoch, reads the floor, settles which checkpoints it may save
/// ([`saves`]), and runs attempts until the end, shutdown or a definite
/// error.
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
    let (flavor, checksum, source, archive) = match read {
        Read::Server {
            flavor,
            checksum,
            source,
        } => (flavor, checksum, Some(source), None),
        // flavour and checksums are the stream's: not used for files
        Read::Archive(a) => (Flavor::MariaDb, false, None, Some(a)),
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
    let skips_below = if args.below_floor { None } else { floor };
    let at = Start {
        from: &start,
        skips_below,
        source,
    };
    let saves = saves(&cfg, &mut control, &identity, stored, &subsets, at).await?;
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
            floor: skips_below,
            saves: saves.clone(),
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

/// Where a replay starts applying, for [`saves`].
struct Start<'a> {
    from: &'a StartAt,
    /// The floor it skips row changes below (none with `--below-floor`).
    skips_below: Option<Version>,
    /// The source, to place a `--from-gtid` start (`None`: archived files).
    source: Option<Conn>,
}

/// Which checkpoints the replay may save (see the module docs). With no
/// checkpoint for shards nothing applied yet, saves `--from` as it.
async fn saves(
    cfg: &Config,
    control: &mut Conn,
    identity: &str,
    stored: Option<Checkpoint>,
    subsets: &[Subset],
    at: Start<'_>,
) -> anyhow::Result<Saves> {
    let p = &cfg.pipeline;
    if let Some(cp) = stored {
        return Ok(past(cp, at).await);
    }
    let shards = cfg.applied_shards();
    if !matches!(
        control::subset::inherit(&p.name, &shards, subsets, p.epoch, identity),
        Ok(Inherit::Fresh)
    ) {
        tracing::warn!(subset = %p.name, "this shard subset has no checkpoint, and other subsets applied its shards: the replay saves none, and its `run` resumes where they stopped");
        return Ok(Saves::Nothing);
    }
    let StartAt::Position(from) = at.from else {
        // the first watermark is the stream's start
        return Ok(Saves::All);
    };
    let cp = Checkpoint {
        position: from.clone(),
        epoch: p.epoch,
        source_identity: identity.to_string(),
    };
    checkpoint::save(control, &p.name, &cp).await?;
    Ok(Saves::Past(from.clone()))
}

/// [`Saves::Past`] the stored checkpoint `cp`, or [`Saves::Nothing`] when
/// the replay starts past it: applying from a floor above it, or from
/// GTIDs the GTID state at `cp` does not include. (A `--from` position
/// past it is left to `Saves::starting_at`, which the bookkeeping
/// applies: the coordinator warns.)
async fn past(cp: Checkpoint, at: Start<'_>) -> Saves {
    if let Some(floor) = at.skips_below.filter(|f| floor_past(*f, &cp)) {
        tracing::warn!(floor = %floor, checkpoint = %cp.position, "the replay skips changes below the floor, which is past the checkpoint: nobody applied those between the two, so the checkpoint stays where it is and the next `run` applies from there (or use --below-floor)");
        return Saves::Nothing;
    }
    let StartAt::Gtid(set) = at.from else {
        return Saves::Past(cp.position);
    };
    let mut source = at.source;
    let have = match source.as_mut() {
        Some(c) => continuity::gtid_at(c, &cp.position).await,
        None => None,
    };
    let covered = have
        .as_deref()
        .and_then(GtidState::parse)
        .zip(GtidState::parse(set))
        .is_some_and(|(have, want)| have.includes(&want));
    if covered {
        return Saves::Past(cp.position);
    }
    tracing::warn!(gtid = %set, checkpoint = %cp.position, gtid_at_checkpoint = have.as_deref().unwrap_or("unknown"), "the replay may start past the checkpoint (the GTID state there does not include --from-gtid): the checkpoint stays where it is and the next `run` applies from there");
    Saves::Nothing
}

/// Whether skipping row changes below `floor` starts the replay past the
/// checkpoint `cp` (also when `cp` cannot be versioned: nothing vouches).
/// A snapshot's floor is its position's version, the checkpoint it starts
/// with: not past it.
fn floor_past(floor: Version, cp: &Checkpoint) -> bool {
    Version::at(cp.epoch, &cp.position, 0)
        .ok()
        .is_none_or(|v| floor > v)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(epoch: u16, pos: u64) -> Checkpoint {
        Checkpoint {
            position: Position::new("b.000002", pos),
            epoch,
            source_identity: "server_id=1".into(),
        }
    }

    #[test]
    fn a_floor_above_the_checkpoint_starts_the_replay_past_it() {
        let floor = |epoch, pos| Version::at(epoch, &Position::new("b.000002", pos), 0).unwrap();
        assert!(!floor_past(floor(0, 100), &cp(0, 100)), "a fresh copy's");
        assert!(!floor_past(floor(0, 50), &cp(0, 100)));
        assert!(floor_past(floor(0, 150), &cp(0, 100)));
        assert!(!floor_past(floor(0, 150), &cp(1, 100)), "an older epoch's");
        let unversioned = Checkpoint {
            position: Position::new("nameless", 4),
            ..cp(0, 4)
        };
        assert!(floor_past(floor(0, 50), &unversioned));
    }
}
