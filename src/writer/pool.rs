//! The lanes of one attempt, each running [`super::lane::run`] on its own
//! queue: `lanes_per_shard` connections to every shard, or
//! `lanes_per_server` connections to every target *server*, shared by the
//! shards it holds (targets whose URLs differ only in the database).
//!
//! # Lanes per server
//!
//! With many logical shards per server, lanes per shard open shards ×
//! lanes connections and split the server's stream into as many small
//! batches: more commits per row. A server's lanes instead fill each
//! batch from every shard it holds (`batch_size` per shard served), and
//! write each shard's part into that shard's database (every statement
//! names its table with the database, [`super::sql::qualified`]), all in
//! the batch's one transaction. With two shards per server (the
//! benchmark's targets) that bought nothing: a batch then makes a
//! statement per shard, and more lanes insert into each table at once
//! (BENCHMARKS.md), so lanes per shard stay the default.
//!
//! # One key, one lane
//!
//! [`LanePool::lane_of`] picks the lane of an operation among its shard's
//! lanes (its server's, or its own) by [`lane_hash`] of (table, key), so
//! every operation on one key of one table goes to the same lane, in the
//! order it was sent. A lane applies
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
use super::lane::{self, LaneConfig, LaneError, LaneMsg, LaneShard, Stats};
use super::link::Link;
use super::op::WriteOp;
use super::queue::{queue, QueueTx};
use crate::checkpoint::LaneProgress;
use crate::config::{db_name, Config, Endpoint, Lanes};
use crate::db::{self, DbError, Session};
use crate::position::Position;

/// The bytes of operations ([`WriteOp::bytes`]) one lane's queue holds
/// at most, besides its `4 × batch_size` operations.
pub const QUEUE_BYTES: usize = 4 << 20;

/// The bytes of operations a slice holds at most ([`LanePool::send_slice`]):
/// a quarter of a queue, as its count is.
pub const SLICE_BYTES: usize = QUEUE_BYTES / 4;

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
    senders: Vec<QueueTx>,
    /// Per lane: the operations a slice sent to it holds at most
    /// ([`LanePool::slice_len`]).
    slice_len: Vec<usize>,
    tasks: JoinSet<Result<(), LaneError>>,
    /// Per router shard index: its group's first lane and how many lanes
    /// it has, or `None` when another process applies the shard.
    lanes_of_shard: Vec<Option<(usize, usize)>>,
}

/// The shards this process applies (indices in name order of `[targets]`)
/// that share lanes: those of one server with `lanes_per_server` (equal
/// connection options but for the database), else each shard alone; and
/// the group's lanes.
pub fn groups(cfg: &Config) -> Result<Vec<(Vec<usize>, usize)>, DbError> {
    let mut groups: Vec<(Option<mysql_async::Opts>, Vec<usize>)> = Vec::new();
    let (per_server, n) = match cfg.pipeline.lanes {
        Lanes::PerServer(n) => (true, n),
        Lanes::PerShard(n) => (false, n),
    };
    for (s, ep) in cfg.targets.values().enumerate() {
        if !cfg.applies(&ep.name) {
            continue;
        }
        if !per_server {
            groups.push((None, vec![s]));
            continue;
        }
        let server = Some(db::opts(ep, Session::Write, Some(None))?);
        match groups.iter_mut().find(|(o, _)| *o == server) {
            Some((_, members)) => members.push(s),
            None => groups.push((server, vec![s])),
        }
    }
    Ok(groups.into_iter().map(|(_, m)| (m, n.max(1))).collect())
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
        let endpoints: Vec<&Endpoint> = cfg.targets.values().collect();
        let mut pool = LanePool {
            senders: Vec::new(),
            slice_len: Vec::new(),
            tasks: JoinSet::new(),
            lanes_of_shard: vec![None; endpoints.len()],
        };
        let (progress_tx, progress_rx) = mpsc::unbounded_channel::<LaneProgress>();
        for (members, width) in groups(cfg)? {
            let Some(&first) = members.first() else {
                continue;
            };
            for &s in &members {
                pool.lanes_of_shard[s] = Some((pool.senders.len(), width));
            }
            let shards = lane_shards(&endpoints, &members);
            let label: Vec<&str> = members
                .iter()
                .map(|&s| endpoints[s].name.as_str())
                .collect();
            for l in 0..width {
                let wire = p.protocol == crate::config::Protocol::Wire;
                let link = Link::new(endpoints[first].clone(), p.connect_timeout, wire);
                // a batch size per shard served: a shared lane's batch
                // still makes statements of about batch_size rows each
                let batch_size = p.batch_size * members.len();
                let (tx, rx) = queue(batch_size * 4, QUEUE_BYTES);
                let lc = LaneConfig {
                    pipeline: p.name.clone(),
                    shard: label.join("+"),
                    lane: pool.senders.len(),
                    lane_in_shard: l,
                    batch_size,
                    linger: p.linger,
                    shards: shards.clone(),
                };
                pool.senders.push(tx);
                pool.slice_len.push(batch_size.max(1));
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

    /// The lane of an operation: one of its shard's group, chosen by key;
    /// `None` when another process applies its shard.
    pub fn lane_of(&self, op: &WriteOp) -> Option<usize> {
        let (first, width) = (*self.lanes_of_shard.get(op.shard)?)?;
        Some(first + lane_in_shard(op, width))
    }

    /// How many operations a slice for `lane` holds at most: its batch
    /// size (the lane cuts batches of exactly that many however slices
    /// fall, [`super::queue::Inbox`]), a quarter of its queue, so that one
    /// channel send and one wake-up of the lane serve many operations.
    /// A slice also ends at [`SLICE_BYTES`].
    pub fn slice_len(&self, lane: usize) -> usize {
        self.slice_len.get(lane).copied().unwrap_or(1)
    }

    /// Queues the operations of `slice`, all of [`LanePool::lane_of`]
    /// `lane`, in order, as one message of `bytes` bytes
    /// ([`WriteOp::bytes`] of them together), waiting while the lane's queue is
    /// full. Cancel safe: the operations are taken out of `slice` only
    /// once the lane has room, so a caller may drop this future (a
    /// `select!` arm that lost) and offer the same slice again.
    pub async fn send_slice(
        &self,
        lane: usize,
        slice: &mut Vec<WriteOp>,
        bytes: usize,
    ) -> Result<(), LaneGone> {
        let tx = self.senders.get(lane).ok_or(LaneGone)?;
        tx.send_slice(slice, bytes).await.map_err(|_| LaneGone)
    }

    /// The lane an operation goes to (an index below [`LanePool::len`]),
    /// as [`LanePool::lane_of`] picks it; `None` when another process
    /// applies its shard.
    pub fn lane_index(&self, op: &WriteOp) -> Option<usize> {
        self.lane_of(op)
    }

    /// Queues operations, in order, on lane `lane`, in one message of
    /// `bytes` bytes ([`WriteOp::bytes`] of them together): each must be
    /// one [`LanePool::lane_index`] gives that lane (the copy's dispatcher
    /// groups them so).
    pub async fn send_to(
        &self,
        lane: usize,
        ops: Vec<WriteOp>,
        bytes: usize,
    ) -> Result<(), LaneGone> {
        let tx = self.senders.get(lane).ok_or(LaneGone)?;
        tx.send(LaneMsg::Ops { ops, bytes })
            .await
            .map_err(|_| LaneGone)
    }

    /// Queues mark `seq` on lane `lane` alone: every operation of
    /// transactions (or copy pages) up to `seq` meant for it has been sent.
    pub async fn mark_lane(
        &self,
        lane: usize,
        seq: u64,
        end: &Position,
        timestamp: u32,
    ) -> Result<(), LaneGone> {
        let tx = self.senders.get(lane).ok_or(LaneGone)?;
        tx.send(LaneMsg::Mark {
            seq,
            end: end.clone(),
            timestamp,
        })
        .await
        .map_err(|_| LaneGone)
    }

    /// Queues mark `seq` on every lane: every operation of transactions up
    /// to `seq` has been sent.
    pub async fn mark(&self, seq: u64, end: &Position, timestamp: u32) -> Result<(), LaneGone> {
        for s in &self.senders {
            let mark = LaneMsg::Mark {
                seq,
                end: end.clone(),
                timestamp,
            };
            s.send(mark).await.map_err(|_| LaneGone)?;
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

/// The shards a lane of `members` serves, with their databases.
fn lane_shards(endpoints: &[&Endpoint], members: &[usize]) -> Vec<LaneShard> {
    members
        .iter()
        .map(|&s| LaneShard {
            index: s,
            name: endpoints[s].name.clone(),
            database: db_name(&endpoints[s].url).unwrap_or_default(),
        })
        .collect()
}
