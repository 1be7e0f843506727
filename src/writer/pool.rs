//! The lanes of one attempt: `lanes_per_shard` connections to every shard,
//! each running [`super::lane::run`] on its own queue.
//!
//! # One key, one lane
//!
//! [`LanePool::send`] picks the lane of an operation from its shard and
//! [`lane_hash`] of (table, key), so every operation on one key of one
//! table goes to the same lane, in the order it was sent. A lane applies
//! its queue in order, so no two connections ever race on a key and a
//! key's operations reach the target in binlog order (the module docs of
//! [`super::lane`] argue why each batch is then safe). The coordinator only
//! decides *what* to send; *where* an operation goes is decided here.
//!
//! # Shards of other processes
//!
//! With `[pipeline] shards`, the pool has lanes for this process's shards
//! only, and drops the operations routed to the others: another process
//! applies them, from its own checkpoint. Marks go to this process's lanes,
//! so the watermark — and the checkpoint of this subset — names what is
//! durable on *its* shards, which is all its checkpoint row claims
//! (`docs/architecture.md`, "Scale-out: shard subsets").

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};

use super::keyenc::lane_hash;
use super::lane::{self, LaneConfig, LaneError, LaneMsg, Stats};
use super::link::Link;
use super::op::WriteOp;
use crate::checkpoint::LaneProgress;
use crate::config::Config;
use crate::db::DbError;
use crate::position::Position;

/// A lane's queue is gone: the lane stopped, and its error (if any) comes
/// from [`LanePool::join_next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneGone;

/// How a lane task ended.
pub type LaneExit = Result<Result<(), LaneError>, JoinError>;

/// The lane of an operation among `per_shard` lanes per shard: its
/// shard's lanes, chosen by [`lane_hash`] of table and key. (A function of
/// its own so that the simulation in `tests/sim` assigns lanes with it.)
pub fn lane_of(op: &WriteOp, per_shard: usize) -> usize {
    op.shard * per_shard + lane_in_shard(op, per_shard)
}

/// The index of an operation's lane among its shard's `per_shard` lanes.
fn lane_in_shard(op: &WriteOp, per_shard: usize) -> usize {
    (lane_hash(&op.table.name, &op.key_enc) % per_shard as u64) as usize
}

/// The writer lanes of one attempt.
pub struct LanePool {
    senders: Vec<mpsc::Sender<LaneMsg>>,
    tasks: JoinSet<Result<(), LaneError>>,
    per_shard: usize,
    /// Per router shard index: the index of its first lane, or `None`
    /// when another process applies the shard.
    first_lane: Vec<Option<usize>>,
}

impl LanePool {
    /// Starts every lane; each connects to its shard when it first has
    /// work, so a shard that is down does not hold up the others (see
    /// [`super::outage`]). Lanes report their progress on the returned
    /// receiver.
    pub async fn start(
        cfg: &Config,
        stats: Arc<Stats>,
    ) -> Result<(LanePool, mpsc::UnboundedReceiver<LaneProgress>), DbError> {
        let p = &cfg.pipeline;
        let mut pool = LanePool {
            senders: Vec::new(),
            tasks: JoinSet::new(),
            per_shard: p.lanes_per_shard,
            first_lane: Vec::new(),
        };
        let (progress_tx, progress_rx) = mpsc::unbounded_channel::<LaneProgress>();
        for ep in cfg.targets.values() {
            if !cfg.applies(&ep.name) {
                pool.first_lane.push(None);
                continue;
            }
            let s = pool.first_lane.iter().flatten().count();
            pool.first_lane.push(Some(s * p.lanes_per_shard));
            for l in 0..p.lanes_per_shard {
                let link = Link::new(ep.clone(), p.connect_timeout);
                let (tx, rx) = mpsc::channel(p.batch_size * 4);
                pool.senders.push(tx);
                let lc = LaneConfig {
                    pipeline: p.name.clone(),
                    shard: ep.name.clone(),
                    lane: s * p.lanes_per_shard + l,
                    lane_in_shard: l,
                    batch_size: p.batch_size,
                    linger: p.linger,
                };
                pool.tasks
                    .spawn(lane::run(link, lc, rx, progress_tx.clone(), stats.clone()));
            }
        }
        Ok((pool, progress_rx))
    }

    /// How many lanes there are (over all shards).
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Whether the pool has no lane (no target).
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// The lane of an operation: its shard's lanes, chosen by key; `None`
    /// when another process applies its shard.
    fn lane_of(&self, op: &WriteOp) -> Option<usize> {
        let first = (*self.first_lane.get(op.shard)?)?;
        Some(first + lane_in_shard(op, self.per_shard))
    }

    /// Queues an operation on its key's lane (waiting while the queue is
    /// full); drops it when another process applies its shard.
    pub async fn send(&self, op: WriteOp) -> Result<(), LaneGone> {
        let Some(l) = self.lane_of(&op) else {
            return Ok(());
        };
        let tx = self.senders.get(l).ok_or(LaneGone)?;
        tx.send(LaneMsg::Op(op)).await.map_err(|_| LaneGone)
    }

    /// Like [`LanePool::send`], but cancel safe: the operation is taken out
    /// of `op` only once its lane has room, so a caller may drop this
    /// future (a `select!` arm that lost) and offer the same `op` again.
    pub async fn send_from(&self, op: &mut Option<WriteOp>) -> Result<(), LaneGone> {
        let Some(o) = op.as_ref() else {
            return Ok(());
        };
        let Some(l) = self.lane_of(o) else {
            // another process applies its shard
            *op = None;
            return Ok(());
        };
        let tx = self.senders.get(l).ok_or(LaneGone)?;
        let permit = tx.reserve().await.map_err(|_| LaneGone)?;
        if let Some(o) = op.take() {
            permit.send(LaneMsg::Op(o));
        }
        Ok(())
    }

    /// Queues mark `seq` on every lane: every operation of transactions up
    /// to `seq` has been sent.
    pub async fn mark(&self, seq: u64, end: &Position, timestamp: u32) -> Result<(), LaneGone> {
        for s in &self.senders {
            s.send(LaneMsg::Mark {
                seq,
                end: end.clone(),
                timestamp,
            })
            .await
            .map_err(|_| LaneGone)?;
        }
        Ok(())
    }

    /// The next lane that ended, or `None` when no lane is left.
    pub async fn join_next(&mut self) -> Option<LaneExit> {
        self.tasks.join_next().await
    }

    /// Closes every queue: lanes apply what they hold and end.
    pub fn close(&mut self) {
        self.senders.clear();
    }

    /// Stops every lane now; unapplied batches are re-applied from the
    /// checkpoint by the next attempt.
    pub fn abort(&mut self) {
        self.tasks.abort_all();
    }
}
