//! Tombstone pruning.
//!
//! Tombstones older than a retention of binlog time (default 7 days) are
//! deleted, in small batches so no long lock is held. Binlog time comes
//! from the position log ([`crate::control::position_log`]), which the
//! coordinator fills with (epoch, commit time, position) of checkpointed
//! transactions.
//!
//! # Why the floor is raised first
//!
//! A replay from before a pruned tombstone could resurrect its row. So the
//! highest pruned version is recorded as the pipeline's **floor before**
//! any tombstone is deleted (a crash in between only makes replays skip a
//! little more than needed, never less), and `replay` skips changes below
//! the floor unless told otherwise.
//!
//! # Why the threshold stays within one epoch
//!
//! The threshold is the version of one logged position, built from that
//! position's *own* epoch ([`threshold`]): a version the pipeline really
//! wrote, committed at least the retention ago. Everything below it was
//! written before it (epochs only grow, and within an epoch versions follow
//! the binlog), so it is older than the retention too. Mixing the current
//! epoch with a position logged under an older one — another server's
//! numbering after a failover or `RESET MASTER` — would put the threshold
//! above every tombstone of the old epoch whatever its age, and, where the
//! new server's positions are lower, above everything the new epoch has
//! written: every tombstone pruned at once and the floor above live
//! versions. Tombstones of an older epoch are pruned by their own binlog
//! time, or at the latest once a position of a later epoch is older than
//! the retention (they were written before it). The argument is in
//! `docs/architecture.md`, "Tombstones and the floor".
//!
//! # Who prunes
//!
//! Only `run` ([`start`]), for as long as it runs. `replay` reads the floor
//! once, at its start, and must not see it move: a tombstone pruned
//! mid-replay would let the replay's older insert resurrect its row. A
//! `run` cannot prune beside a replay of the same shards either: both hold
//! their shards' leases, and a `run` prunes only the shards it applies.
//!
//! Tables versioned by a column (`version = { column }`) keep their
//! tombstones: their versions do not order by binlog position.

use crate::config::Config;
use crate::control::position_log::{self, Logged};
use crate::control::{self, shard};
use crate::db::{self, DbError, Session};
use crate::rules::Router;
use crate::task::Background;
use crate::version::Version;

/// Starts pruning the tombstones of the router's tables versioned by
/// position; it runs until the returned task is dropped.
pub fn start(cfg: &Config, router: &Router) -> Background {
    let tables: Vec<String> = router
        .rules()
        .filter(|r| r.version_column.is_none())
        .map(|r| r.target.clone())
        .collect();
    Background::spawn(prune_loop(cfg.clone(), tables))
}

/// Prunes every `prune_interval` until aborted; failures are logged and
/// retried at the next interval.
pub async fn prune_loop(cfg: Config, tables: Vec<String>) {
    let mut every = tokio::time::interval(cfg.pipeline.prune_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        match prune_once(&cfg, &tables).await {
            Ok(Some((floor, n))) => {
                tracing::info!(floor = %floor, tombstones = n, "tombstones pruned")
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "tombstone pruning failed; retrying later"),
        }
    }
}

/// The pruning threshold among the positions logged at least the retention
/// ago: the highest version of one of them, each built with its own epoch
/// (see the module docs). Positions whose file name has no sequence number
/// cannot be versioned and are ignored.
pub fn threshold(old_enough: &[Logged]) -> Option<(&Logged, Version)> {
    old_enough
        .iter()
        .filter_map(|l| Some((l, Version::at(l.epoch, &l.position, 0).ok()?)))
        .max_by_key(|(_, v)| *v)
}

/// One pruning pass: returns the new floor and how many tombstones went.
pub async fn prune_once(
    cfg: &Config,
    tables: &[String],
) -> Result<Option<(Version, u64)>, DbError> {
    if tables.is_empty() {
        return Ok(None);
    }
    let p = &cfg.pipeline;
    let budget = p.connect_timeout;
    let mut control = db::connect(&cfg.control, Session::Read, budget).await?;
    let age = p.tombstone_retention.as_secs();
    let logged = position_log::older_than(&mut control, &p.name, age).await?;
    let Some((keep, threshold)) = threshold(&logged) else {
        return Ok(None);
    };
    control::checkpoint::raise_floor(&mut control, &p.name, threshold).await?;
    let mut pruned = 0u64;
    // only this process's shards: another subset prunes its own, under
    // its own floor (see `crate::control::subset`)
    for ep in cfg.applied_targets() {
        let mut conn = db::connect(ep, Session::Write, budget).await?;
        pruned += shard::prune_tombstones(&mut conn, &ep.name, tables, threshold).await?;
    }
    position_log::trim(&mut control, &p.name, keep).await?;
    Ok(Some((threshold, pruned)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::Position;

    fn logged(epoch: u16, commit_ts: u32, file: &str, pos: u64) -> Logged {
        Logged {
            epoch,
            commit_ts,
            position: Position::new(file, pos),
        }
    }

    #[test]
    fn nothing_old_enough_prunes_nothing() {
        assert_eq!(threshold(&[]), None);
        assert_eq!(threshold(&[logged(1, 10, "relay", 4)]), None);
    }

    #[test]
    fn within_an_epoch_the_newest_position_wins() {
        let l = [
            logged(0, 100, "mysql-bin.000002", 400),
            logged(0, 200, "mysql-bin.000003", 4),
            logged(0, 150, "mysql-bin.000002", 900),
        ];
        let (keep, v) = threshold(&l).unwrap();
        assert_eq!(keep, &l[1]);
        assert_eq!(v, Version::new(0, 3, 4, 0).unwrap());
    }

    /// After an epoch raise onto a server whose numbering is lower (a
    /// failover, `RESET MASTER`), the old server's positions keep their
    /// own epoch: the threshold is below every version of the new epoch.
    #[test]
    fn an_old_epoch_position_keeps_its_epoch() {
        let old = logged(1, 1_000, "old-bin.000050", 123_456);
        let (keep, v) = threshold(std::slice::from_ref(&old)).unwrap();
        assert_eq!(keep, &old);
        assert_eq!(v, Version::new(1, 50, 123_456, 0).unwrap());
        // the new server's first versions, at epoch 2, are above it
        let fresh = Version::at(2, &Position::new("mysql-bin.000001", 4), 0).unwrap();
        assert!(
            v < fresh,
            "the threshold prunes no tombstone of the new epoch"
        );
    }

    /// Old and new epochs both old enough: the new epoch's position is the
    /// threshold, whatever the old server's positions or clock say.
    #[test]
    fn the_highest_epoch_old_enough_wins() {
        let l = [
            logged(1, 5_000, "old-bin.000050", 123_456),
            logged(2, 4_000, "mysql-bin.000001", 900),
            logged(2, 3_000, "mysql-bin.000001", 300),
        ];
        let (keep, v) = threshold(&l).unwrap();
        assert_eq!(keep, &l[1]);
        assert_eq!(v, Version::new(2, 1, 900, 0).unwrap());
    }
}
