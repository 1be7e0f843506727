//! A lane's queue: FIFO, bounded by the **operations** it holds, however
//! they are sent — one at a time ([`LaneMsg::Op`], the copy) or in slices
//! ([`LaneMsg::Ops`], the stream: one channel send and one wake-up for
//! many operations).
//!
//! The bound is a semaphore of `capacity` permits beside the channel: a
//! message takes one permit per operation before it is queued and gives
//! them back when the lane takes it out, so at most `capacity` operations
//! wait in a queue whatever the slices' sizes (the memory bound of
//! `docs/architecture.md`, "Large transactions"). Marks take none; the
//! channel's own bound (`capacity` messages) limits them. The order of
//! messages is the channel's, so a mark still follows every operation
//! sent before it ("Checkpoint watermark").
//!
//! When the lane ends (returns, fails or is aborted) its receiver is
//! dropped, which closes the semaphore: a sender waiting for room learns
//! that the lane is gone instead of waiting for ever.
//!
//! What the lane took out of its queue waits in its [`Inbox`], which cuts
//! it into batches of exactly `batch_size` operations however the slices
//! fell (a statement's shape is its row count: batches of varying sizes
//! would prepare a statement for each), and reports a mark only once every
//! operation queued before it is in an applied batch.

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

use super::op::WriteOp;
use crate::checkpoint::LaneProgress;
use crate::position::Position;

/// What a lane receives (through [`super::pool::LanePool`]).
#[derive(Debug)]
pub enum LaneMsg {
    Op(WriteOp),
    /// Operations in the order they were routed.
    Ops(Vec<WriteOp>),
    /// Every operation of transactions `<= seq` for this lane was sent.
    Mark {
        seq: u64,
        end: Position,
        timestamp: u32,
    },
}

impl LaneMsg {
    /// The operations it carries.
    pub fn ops(&self) -> usize {
        match self {
            LaneMsg::Op(_) => 1,
            LaneMsg::Ops(ops) => ops.len(),
            LaneMsg::Mark { .. } => 0,
        }
    }
}

/// The lane is gone (its receiver was dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// A queue of `capacity` operations (at least 1).
pub fn queue(capacity: usize) -> (QueueTx, QueueRx) {
    let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let (tx, rx) = mpsc::channel(capacity);
    let room = Arc::new(Semaphore::new(capacity));
    (
        QueueTx {
            tx,
            room: room.clone(),
            capacity,
        },
        QueueRx { rx, room, capacity },
    )
}

/// The permits a message of `ops` operations takes: all of them, or the
/// whole queue for a slice larger than it (which then waits for an empty
/// queue instead of for ever).
fn permits(ops: usize, capacity: usize) -> u32 {
    ops.min(capacity) as u32
}

/// The sending side of a lane's queue.
#[derive(Debug, Clone)]
pub struct QueueTx {
    tx: mpsc::Sender<LaneMsg>,
    room: Arc<Semaphore>,
    capacity: usize,
}

impl QueueTx {
    /// Queues `msg`, waiting for room. Cancel safe: dropped before it
    /// returns, nothing was queued and no room is held.
    pub async fn send(&self, msg: LaneMsg) -> Result<(), Closed> {
        let slot = self.room_for(msg.ops()).await?;
        slot.send(msg);
        Ok(())
    }

    /// Queues the operations of `slice` as one message, taking them out
    /// of it only once there is room: cancel safe, a caller may drop this
    /// future and offer the same slice again.
    pub async fn send_slice(&self, slice: &mut Vec<WriteOp>) -> Result<(), Closed> {
        if slice.is_empty() {
            return Ok(());
        }
        let slot = self.room_for(slice.len()).await?;
        slot.send(LaneMsg::Ops(std::mem::take(slice)));
        Ok(())
    }

    /// Waits for room for a message of `ops` operations and a slot in the
    /// channel; the room is taken only once both are there (cancel safe).
    async fn room_for(&self, ops: usize) -> Result<mpsc::Permit<'_, LaneMsg>, Closed> {
        let room = self
            .room
            .acquire_many(permits(ops, self.capacity))
            .await
            .map_err(|_| Closed)?;
        let slot = self.tx.reserve().await.map_err(|_| Closed)?;
        room.forget();
        Ok(slot)
    }
}

/// The receiving side of a lane's queue, held by the lane.
#[derive(Debug)]
pub struct QueueRx {
    rx: mpsc::Receiver<LaneMsg>,
    room: Arc<Semaphore>,
    capacity: usize,
}

impl QueueRx {
    /// The next message, giving its room back; `None` once every sender
    /// is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<LaneMsg> {
        let msg = self.rx.recv().await?;
        self.room
            .add_permits(permits(msg.ops(), self.capacity) as usize);
        Some(msg)
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        self.room.close();
    }
}

/// What a lane took out of its queue and has not applied yet: the
/// operations in order, and the marks between them.
#[derive(Debug)]
pub struct Inbox {
    lane: usize,
    ops: Vec<WriteOp>,
    /// Marks not reported yet, each with the number of operations of
    /// `ops` queued before it.
    marks: Vec<(usize, LaneProgress)>,
    /// The room a batch's buffer is made with.
    batch: usize,
}

impl Inbox {
    /// The inbox of lane `lane` (its number in the tracker), whose
    /// batches hold `batch` operations.
    pub fn new(lane: usize, batch: usize) -> Inbox {
        Inbox {
            lane,
            ops: Vec::with_capacity(batch),
            marks: Vec::new(),
            batch,
        }
    }

    /// Operations waiting.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no operation waits (marks may).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Takes a message out of the queue: operations join the end, a mark
    /// is kept after them ([`Inbox::mark`]).
    pub fn take(&mut self, msg: LaneMsg, progress: &mpsc::UnboundedSender<LaneProgress>) {
        match msg {
            LaneMsg::Op(op) => self.ops.push(op),
            LaneMsg::Ops(slice) => self.ops.extend(slice),
            LaneMsg::Mark {
                seq,
                end,
                timestamp,
            } => {
                let p = LaneProgress {
                    lane: self.lane,
                    seq,
                    end,
                    timestamp,
                };
                self.mark(p, progress);
            }
        }
    }

    /// A mark after every operation waiting now: reported at once when
    /// none waits (everything before it is applied), else kept until the
    /// batch holding the last of them is applied.
    pub fn mark(&mut self, p: LaneProgress, progress: &mpsc::UnboundedSender<LaneProgress>) {
        if self.ops.is_empty() {
            let _ = progress.send(p);
        } else {
            self.marks.push((self.ops.len(), p));
        }
    }

    /// The next batch: the first `max` operations waiting (all, if fewer),
    /// and the newest mark with no operation after it left waiting, to
    /// report once the batch is applied.
    pub fn cut(&mut self, max: usize) -> (Vec<WriteOp>, Option<LaneProgress>) {
        let n = self.ops.len().min(max.max(1));
        let mut rest = Vec::with_capacity(self.batch.max(self.ops.len() - n));
        rest.extend(self.ops.drain(n..));
        let batch = std::mem::replace(&mut self.ops, rest);
        let covered = self.marks.iter().take_while(|(at, _)| *at <= n).count();
        let mark = self.marks.drain(..covered).next_back().map(|(_, p)| p);
        for (at, _) in &mut self.marks {
            *at -= n;
        }
        (batch, mark)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mysql_common::value::Value;

    use super::*;
    use crate::writer::op::{OpKind, TargetTable};

    fn op(key: i64) -> WriteOp {
        let k = vec![Value::Int(key)];
        WriteOp {
            shard: 0,
            table: Arc::new(TargetTable {
                name: "t".into(),
                source: "db.t".into(),
                columns: vec!["id".into()],
                key: vec![0],
            }),
            key_enc: crate::writer::keyenc::encode(&k),
            kind: OpKind::Delete(k),
            version: crate::version::Version(1),
        }
    }

    fn keys(msg: &LaneMsg) -> Vec<Value> {
        match msg {
            LaneMsg::Op(o) => o.key().cloned().collect(),
            LaneMsg::Ops(ops) => ops.iter().flat_map(|o| o.key().cloned()).collect(),
            LaneMsg::Mark { .. } => Vec::new(),
        }
    }

    /// The queue holds at most `capacity` operations however they are
    /// sent, gives the room back as the lane takes them, and keeps order.
    #[tokio::test]
    async fn bounded_by_operations_in_order() {
        let (tx, mut rx) = queue(4);
        let mut slice = vec![op(1), op(2), op(3)];
        tx.send_slice(&mut slice).await.expect("room for 3");
        assert!(slice.is_empty());
        tx.send(LaneMsg::Op(op(4))).await.expect("room for 1");
        // full: a slice of 2 waits, and is still the caller's when dropped
        let mut more = vec![op(5), op(6)];
        let waited = tokio::time::timeout(Duration::from_millis(20), tx.send_slice(&mut more));
        assert!(waited.await.is_err(), "the queue holds 4 operations");
        assert_eq!(more.len(), 2);
        let first = rx.recv().await.expect("queued");
        assert_eq!(keys(&first), [Value::Int(1), Value::Int(2), Value::Int(3)]);
        tx.send_slice(&mut more).await.expect("room again");
        let rest: Vec<Value> = [rx.recv().await, rx.recv().await]
            .iter()
            .flatten()
            .flat_map(keys)
            .collect();
        assert_eq!(rest, [Value::Int(4), Value::Int(5), Value::Int(6)]);
    }

    /// A slice larger than the queue waits for an empty queue, not for
    /// ever; a sender waiting on a lane that ended learns it is gone.
    #[tokio::test]
    async fn large_slices_pass_and_a_gone_lane_is_noticed() {
        let (tx, mut rx) = queue(2);
        let mut big = vec![op(1), op(2), op(3)];
        tx.send_slice(&mut big)
            .await
            .expect("an empty queue takes it");
        let mut next = vec![op(4)];
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send_slice(&mut next).await }
        });
        assert_eq!(rx.recv().await.map(|m| m.ops()), Some(3));
        assert_eq!(waiting.await.expect("joins"), Ok(()));
        tx.send(LaneMsg::Op(op(5))).await.expect("room");
        drop(rx);
        assert_eq!(tx.send(LaneMsg::Op(op(6))).await, Err(Closed));
    }

    fn mark(seq: u64) -> LaneMsg {
        LaneMsg::Mark {
            seq,
            end: Position::new("bin.000001", seq),
            timestamp: 0,
        }
    }

    /// Batches are cut at `batch_size` whatever the slices, and a mark is
    /// reported only with the batch that holds the last operation before
    /// it (at once when nothing waits).
    #[test]
    fn inbox_cuts_exact_batches_and_keeps_marks_in_place() {
        let (progress, mut reported) = mpsc::unbounded_channel();
        let mut inbox = Inbox::new(7, 4);
        inbox.take(mark(1), &progress);
        assert_eq!(reported.try_recv().map(|p| (p.lane, p.seq)), Ok((7, 1)));
        inbox.take(LaneMsg::Ops(vec![op(1), op(2), op(3)]), &progress);
        inbox.take(mark(2), &progress);
        inbox.take(LaneMsg::Ops(vec![op(4), op(5), op(6)]), &progress);
        inbox.take(mark(3), &progress);
        inbox.take(LaneMsg::Op(op(7)), &progress);
        assert!(
            reported.try_recv().is_err(),
            "marks wait for their operations"
        );
        let (batch, m) = inbox.cut(4);
        let keys: Vec<Value> = batch.iter().flat_map(|o| o.key().cloned()).collect();
        assert_eq!(keys, [1, 2, 3, 4].map(Value::Int));
        assert_eq!(m.map(|p| p.seq), Some(2));
        let (batch, m) = inbox.cut(4);
        assert_eq!(batch.len(), 3);
        assert_eq!(m.map(|p| p.seq), Some(3));
        assert!(inbox.is_empty());
        inbox.take(mark(4), &progress);
        assert_eq!(reported.try_recv().map(|p| p.seq), Ok(4));
    }
}
