//! Tombstone pruning.
//!
//! Tombstones older than the checkpoint minus a retention of binlog time
//! (default 7 days) are deleted, in small batches so no long lock is held.
//! Binlog time comes from `reshard_position_log`, which the pipeline fills
//! with (commit time, position) pairs of checkpointed transactions.
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

use mysql_async::prelude::Queryable;
use mysql_async::Params;

use super::store;
use crate::config::Config;
use crate::db::{self, DbError, Session};
use crate::position::Position;
use crate::version::Version;
use crate::writer::sql::TOMBSTONE_TABLE;

const BATCH: usize = 1000;

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
    let row: Option<(u32, String, u64)> = control
        .exec_first(
            "SELECT commit_ts, binlog_file, binlog_pos FROM reshard_position_log WHERE pipeline = ? \
             AND commit_ts <= UNIX_TIMESTAMP() - ? ORDER BY commit_ts DESC, binlog_file DESC, binlog_pos DESC LIMIT 1",
            (&p.name, p.tombstone_retention.as_secs()),
        )
        .await
        .map_err(|e| DbError::query("control", "finding the pruning threshold", e))?;
    let Some((ts, file, pos)) = row else {
        return Ok(None);
    };
    let position = Position::new(file, pos);
    let Ok(threshold) = Version::at(p.epoch, &position, 0) else {
        return Ok(None);
    };
    store::raise_floor(&mut control, &p.name, threshold).await?;
    let mut pruned = 0u64;
    let placeholders = vec!["?"; tables.len()].join(", ");
    let sql = format!(
        "DELETE FROM `{TOMBSTONE_TABLE}` WHERE tbl IN ({placeholders}) AND version < ? LIMIT {BATCH}"
    );
    for ep in cfg.targets.values() {
        let mut conn = db::connect(ep, Session::Write, budget).await?;
        loop {
            let mut params: Vec<mysql_async::Value> = tables
                .iter()
                .map(|t| mysql_async::Value::Bytes(t.as_bytes().to_vec()))
                .collect();
            params.push(mysql_async::Value::Bytes(threshold.to_bytes().to_vec()));
            conn.exec_drop(&sql, Params::Positional(params))
                .await
                .map_err(|e| DbError::query(&ep.name, "pruning tombstones", e))?;
            let n = conn.affected_rows();
            pruned += n;
            if n < BATCH as u64 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    control
        .exec_drop(
            "DELETE FROM reshard_position_log WHERE pipeline = ? AND commit_ts < ?",
            (&p.name, ts),
        )
        .await
        .map_err(|e| DbError::query("control", "trimming the position log", e))?;
    Ok(Some((threshold, pruned)))
}
