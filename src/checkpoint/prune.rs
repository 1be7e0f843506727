//! Tombstone pruning.
//!
//! Tombstones older than the checkpoint minus a retention of binlog time
//! (default 7 days) are deleted, in small batches so no long lock is held.
//! Binlog time comes from the position log ([`crate::control::position_log`]),
//! which the coordinator fills with (commit time, position) pairs of
//! checkpointed transactions.
//!
//! # Why the floor is raised first
//!
//! A replay from before a pruned tombstone could resurrect its row. So the
//! highest pruned version is recorded as the pipeline's **floor before**
//! any tombstone is deleted (a crash in between only makes replays skip a
//! little more than needed, never less), and `replay` skips changes below
//! the floor unless told otherwise.
//!
//! Tables versioned by a column (`version = { column }`) keep their
//! tombstones: their versions do not order by binlog position.

use crate::config::Config;
use crate::control::{self, shard};
use crate::db::{self, DbError, Session};
use crate::position::Position;
use crate::version::Version;

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

/// The pruning threshold for the position-log entry `logged` (the newest
/// checkpoint committed at least the retention ago): tombstones below it
/// go, and it becomes the floor. `None` when the position gives no version
/// (then nothing is pruned). Pure, so the simulation in `tests/sim` prunes
/// with it.
pub fn threshold(epoch: u16, logged: &Position) -> Option<Version> {
    Version::at(epoch, logged, 0).ok()
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
    let Some((ts, position)) =
        control::position_log::newest_older_than(&mut control, &p.name, age).await?
    else {
        return Ok(None);
    };
    let Some(threshold) = threshold(p.epoch, &position) else {
        return Ok(None);
    };
    control::checkpoint::raise_floor(&mut control, &p.name, threshold).await?;
    let mut pruned = 0u64;
    for ep in cfg.targets.values() {
        let mut conn = db::connect(ep, Session::Write, budget).await?;
        pruned += shard::prune_tombstones(&mut conn, &ep.name, tables, threshold).await?;
    }
    control::position_log::trim(&mut control, &p.name, ts).await?;
    Ok(Some((threshold, pruned)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_the_logged_position_at_row_zero() {
        let p: Position = "b.000003:1200".parse().unwrap();
        let t = threshold(2, &p).unwrap();
        assert_eq!(t, Version::at(2, &p, 0).unwrap());
        assert!(
            t <= Version::at(2, &p, 5).unwrap(),
            "rows of the event at p stay"
        );
        assert!(t > Version::at(2, &"b.000003:1100".parse().unwrap(), 9).unwrap());
        assert_eq!(threshold(0, &Position::new("nosuffix", 4)), None);
    }
}
