//! A lane's queue: FIFO, bounded by the **operations** it holds and by
//! their **bytes**, however they are sent: in whole batches (the copy) or
//! in slices (the stream), each a [`LaneMsg::Ops`], one channel send and
//! one wake-up for many operations.
//!
//! The bound is a semaphore of `capacity` permits beside the channel. A
//! message weighs a permit per operation, or, when that is more, one per
//! `bytes / capacity` of its operations' [`WriteOp::bytes`], so that the
//! permits of what waits bound both its count (`capacity`) and its bytes
//! (`bytes`). A message takes its permits before it is queued and the
//! lane gives them back when it takes the message out, so at most that
//! much waits in a queue whatever the slices' sizes (the memory bound of
//! `docs/architecture.md`, "Large transactions"); a message heavier than
//! the whole queue waits for an empty queue instead of for ever. Marks
//! take none; the channel's own bound (`capacity` messages) limits them.
//! The order of messages is the channel's, so a mark still follows every
//! operation sent before it ("Checkpoint watermark").
//!
//! When the lane ends (returns, fails or is aborted) its receiver is
//! dropped, which closes the semaphore: a sender waiting for room learns
//! that the lane is gone instead of waiting for ever.
//!
//! What the lane took out of its queue waits in its [`Inbox`], which cuts
//! it into batches of exactly `batch_size` operations however the slices
//! fell (a statement's shape is its row count: batches of varying sizes
//! would prepare a statement for each) — or fewer, when they reach
//! [`BATCH_BYTES`] first (wide rows) — and reports a mark only once every
//! operation queued before it is in an applied batch.

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

use super::op::WriteOp;
use crate::checkpoint::LaneProgress;
use crate::position::Position;

/// What a lane receives (through [`super::pool::LanePool`]).
#[derive(Debug)]
pub enum LaneMsg {
    /// Operations in the order they were routed, and their
    /// [`WriteOp::bytes`] together ([`LaneMsg::ops_of`]).
    Ops { ops: Vec<WriteOp>, bytes: usize },
    /// Every operation of transactions `<= seq` for this lane was sent.
    Mark {
        seq: u64,
        end: Position,
        timestamp: u32,
    },
}

impl LaneMsg {
    /// A message of operations, weighed.
    pub fn ops_of(ops: Vec<WriteOp>) -> LaneMsg {
        let bytes = ops.iter().map(WriteOp::bytes).sum();
        LaneMsg::Ops { ops, bytes }
    }

    /// The operations it carries.
    pub fn ops(&self) -> usize {
        match self {
            LaneMsg::Ops { ops, .. } => ops.len(),
            LaneMsg::Mark { .. } => 0,
        }
    }

    /// The bytes of the operations it carries.
    pub fn bytes(&self) -> usize {
        match self {
            LaneMsg::Ops { bytes, .. } => *bytes,
            LaneMsg::Mark { .. } => 0,
        }
    }
}

/// The lane is gone (its receiver was dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// The bytes of operations ([`WriteOp::bytes`]) that end a lane's batch,
/// besides its `batch_size` operations: a batch ends with the operation
/// that brings it to this many bytes (so it always holds at least one,
/// however wide). The copy's dispatcher ends its batches the same way, so
/// a lane takes each of them whole.
pub const BATCH_BYTES: usize = 4 << 20;

/// The weights of a queue: what it holds at most. A message of `n`
/// operations and `b` bytes takes `max(n, b / unit)` permits, so the
/// permits out bound the count and the bytes of what waits.
#[derive(Debug, Clone, Copy)]
struct Scale {
    /// Permits: operations.
    capacity: usize,
    /// Bytes of operations one permit stands for.
    unit: usize,
}

impl Scale {
    /// The permits of a message of `ops` operations and `bytes` bytes:
    /// enough for both, or the whole queue's when it is heavier (it then
    /// waits for an empty queue instead of for ever).
    fn permits(&self, ops: usize, bytes: usize) -> u32 {
        ops.max(bytes.div_ceil(self.unit)).min(self.capacity) as u32
    }
}

/// A queue of `capacity` operations and about `bytes` bytes of them (at
/// least 1 of each).
pub fn queue(capacity: usize, bytes: usize) -> (QueueTx, QueueRx) {
    let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let scale = Scale {
        capacity,
        unit: (bytes / capacity).max(1),
    };
    let (tx, rx) = mpsc::channel(capacity);
    let room = Arc::new(Semaphore::new(capacity));
    (
        QueueTx {
            tx,
            room: room.clone(),
            scale,
        },
        QueueRx { rx, room },
    )
}

/// A message in the queue with the permits it holds.
#[derive(Debug)]
struct Queued {
    msg: LaneMsg,
    permits: u32,
}

/// The sending side of a lane's queue.
#[derive(Debug, Clone)]
pub struct QueueTx {
    tx: mpsc::Sender<Queued>,
    room: Arc<Semaphore>,
    scale: Scale,
}

impl QueueTx {
    /// Queues `msg`, waiting for room. Cancel safe: dropped before it
    /// returns, nothing was queued and no room is held.
    pub async fn send(&self, msg: LaneMsg) -> Result<(), Closed> {
        let permits = self.scale.permits(msg.ops(), msg.bytes());
        let slot = self.room_for(permits).await?;
        slot.send(Queued { msg, permits });
        Ok(())
    }

    /// Queues the operations of `slice`, of `bytes` bytes together, as
    /// one message, taking them out of it only once there is room: cancel
    /// safe, a caller may drop this future and offer the same slice again.
    pub async fn send_slice(&self, slice: &mut Vec<WriteOp>, bytes: usize) -> Result<(), Closed> {
        if slice.is_empty() {
            return Ok(());
        }
        let permits = self.scale.permits(slice.len(), bytes);
        let slot = self.room_for(permits).await?;
        let ops = std::mem::take(slice);
        slot.send(Queued {
            msg: LaneMsg::Ops { ops, bytes },
            permits,
        });
        Ok(())
    }

    /// Waits for `permits` of room and a slot in the channel; the room is
    /// taken only once both are there (cancel safe).
    async fn room_for(&self, permits: u32) -> Result<mpsc::Permit<'_, Queued>, Closed> {
        let room = self.room.acquire_many(permits).await.map_err(|_| Closed)?;
        let slot = self.tx.reserve().await.map_err(|_| Closed)?;
        room.forget();
        Ok(slot)
    }
}

/// The receiving side of a lane's queue, held by the lane.
#[derive(Debug)]
pub struct QueueRx {
    rx: mpsc::Receiver<Queued>,
    room: Arc<Semaphore>,
}

impl QueueRx {
    /// The next message, giving its room back; `None` once every sender
    /// is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<LaneMsg> {
        let Queued { msg, permits } = self.rx.recv().await?;
        self.room.add_permits(permits as usize);
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
    /// [`WriteOp::bytes`] of `ops`, together.
    bytes: usize,
    /// Marks not reported yet, each with the number of operations of
    /// `ops` queued before it.
    marks: Vec<(usize, LaneProgress)>,
    /// A batch's operations at most.
    batch: usize,
    /// The bytes that end a batch ([`BATCH_BYTES`]).
    batch_bytes: usize,
}

impl Inbox {
    /// The inbox of lane `lane` (its number in the tracker), whose
    /// batches hold `batch` operations at most, and end with the one that
    /// brings them to `batch_bytes` bytes.
    pub fn new(lane: usize, batch: usize, batch_bytes: usize) -> Inbox {
        Inbox {
            lane,
            ops: Vec::with_capacity(batch),
            bytes: 0,
            marks: Vec::new(),
            batch: batch.max(1),
            batch_bytes,
        }
    }

    /// Whether no operation waits (marks may).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Whether a whole batch waits: its operations or its bytes.
    pub fn full(&self) -> bool {
        self.ops.len() >= self.batch || self.bytes >= self.batch_bytes
    }

    /// Takes a message out of the queue: operations join the end, a mark
    /// is kept after them ([`Inbox::mark`]).
    pub fn take(&mut self, msg: LaneMsg, progress: &mpsc::UnboundedSender<LaneProgress>) {
        match msg {
            LaneMsg::Ops { ops, bytes } => {
                self.bytes += bytes;
                if self.ops.is_empty() && 2 * ops.len() >= self.batch {
                    // the message's vector becomes the inbox's: a whole
                    // batch (the copy's, a large slice) is not copied
                    self.ops = ops;
                } else {
                    self.ops.reserve(self.batch.saturating_sub(self.ops.len()));
                    self.ops.extend(ops);
                }
            }
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

    /// The next batch: the first operations waiting, up to a batch's
    /// count or bytes (all, if fewer; at least one), and the newest mark
    /// with no operation after it left waiting, to report once the batch
    /// is applied.
    pub fn cut(&mut self) -> (Vec<WriteOp>, Option<LaneProgress>) {
        let (n, bytes) = self.batch_len();
        // nothing left: the next message's vector takes the inbox's place
        let rest = if n == self.ops.len() {
            Vec::new()
        } else {
            let mut rest = Vec::with_capacity(self.batch.max(self.ops.len() - n));
            rest.extend(self.ops.drain(n..));
            rest
        };
        let batch = std::mem::replace(&mut self.ops, rest);
        self.bytes -= bytes;
        let covered = self.marks.iter().take_while(|(at, _)| *at <= n).count();
        let mark = self.marks.drain(..covered).next_back().map(|(_, p)| p);
        for (at, _) in &mut self.marks {
            *at -= n;
        }
        (batch, mark)
    }

    /// How many of the waiting operations the next batch takes, and their
    /// bytes.
    fn batch_len(&self) -> (usize, usize) {
        if self.ops.len() <= self.batch && self.bytes <= self.batch_bytes {
            return (self.ops.len(), self.bytes);
        }
        let mut taken = (0, 0);
        for op in self.ops.iter().take(self.batch) {
            if taken.0 > 0 && taken.1 >= self.batch_bytes {
                break;
            }
            taken = (taken.0 + 1, taken.1 + op.bytes());
        }
        taken
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
        let table = Arc::new(TargetTable {
            name: "t".into(),
            source: "db.t".into(),
            columns: vec!["id".into()],
            key: vec![0],
        });
        let key_enc = crate::writer::keyenc::encode(&k);
        let v = crate::version::Version(1);
        WriteOp::new(0, table, key_enc, OpKind::Delete(k), v)
    }

    /// An upsert of key `key` whose row holds `body` bytes.
    fn wide(key: i64, body: usize) -> WriteOp {
        let row = vec![Value::Int(key), Value::Bytes(vec![b'x'; body])];
        let table = Arc::new(TargetTable {
            name: "t".into(),
            source: "db.t".into(),
            columns: vec!["id".into(), "body".into()],
            key: vec![0],
        });
        let key_enc = crate::writer::keyenc::encode(&row[..1]);
        let v = crate::version::Version(1);
        WriteOp::new(0, table, key_enc, OpKind::Upsert(row), v)
    }

    fn keys(msg: &LaneMsg) -> Vec<Value> {
        match msg {
            LaneMsg::Ops { ops, .. } => ops.iter().flat_map(|o| o.key().cloned()).collect(),
            LaneMsg::Mark { .. } => Vec::new(),
        }
    }

    /// Sends `slice`, weighed.
    async fn send(tx: &QueueTx, slice: &mut Vec<WriteOp>) -> Result<(), Closed> {
        let bytes = slice.iter().map(WriteOp::bytes).sum();
        tx.send_slice(slice, bytes).await
    }

    /// A queue too large in bytes to be bounded by them.
    const ROOMY: usize = 1 << 30;

    /// The queue holds at most `capacity` operations however they are
    /// sent, gives the room back as the lane takes them, and keeps order.
    #[tokio::test]
    async fn bounded_by_operations_in_order() {
        let (tx, mut rx) = queue(4, ROOMY);
        let mut slice = vec![op(1), op(2), op(3)];
        send(&tx, &mut slice).await.expect("room for 3");
        assert!(slice.is_empty());
        tx.send(LaneMsg::ops_of(vec![op(4)]))
            .await
            .expect("room for 1");
        // full: a slice of 2 waits, and is still the caller's when dropped
        let mut more = vec![op(5), op(6)];
        let waited = tokio::time::timeout(Duration::from_millis(20), send(&tx, &mut more));
        assert!(waited.await.is_err(), "the queue holds 4 operations");
        assert_eq!(more.len(), 2);
        let first = rx.recv().await.expect("queued");
        assert_eq!(keys(&first), [Value::Int(1), Value::Int(2), Value::Int(3)]);
        send(&tx, &mut more).await.expect("room again");
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
        let (tx, mut rx) = queue(2, ROOMY);
        let mut big = vec![op(1), op(2), op(3)];
        send(&tx, &mut big).await.expect("an empty queue takes it");
        let mut next = vec![op(4)];
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { send(&tx, &mut next).await }
        });
        assert_eq!(rx.recv().await.map(|m| m.ops()), Some(3));
        assert_eq!(waiting.await.expect("joins"), Ok(()));
        tx.send(LaneMsg::ops_of(vec![op(5)])).await.expect("room");
        drop(rx);
        assert_eq!(tx.send(LaneMsg::ops_of(vec![op(6)])).await, Err(Closed));
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
        let mut inbox = Inbox::new(7, 4, ROOMY);
        inbox.take(mark(1), &progress);
        assert_eq!(reported.try_recv().map(|p| (p.lane, p.seq)), Ok((7, 1)));
        inbox.take(LaneMsg::ops_of(vec![op(1), op(2), op(3)]), &progress);
        inbox.take(mark(2), &progress);
        inbox.take(LaneMsg::ops_of(vec![op(4), op(5), op(6)]), &progress);
        inbox.take(mark(3), &progress);
        inbox.take(LaneMsg::ops_of(vec![op(7)]), &progress);
        assert!(
            reported.try_recv().is_err(),
            "marks wait for their operations"
        );
        let (batch, m) = inbox.cut();
        let keys: Vec<Value> = batch.iter().flat_map(|o| o.key().cloned()).collect();
        assert_eq!(keys, [1, 2, 3, 4].map(Value::Int));
        assert_eq!(m.map(|p| p.seq), Some(2));
        let (batch, m) = inbox.cut();
        assert_eq!(batch.len(), 3);
        assert_eq!(m.map(|p| p.seq), Some(3));
        assert!(inbox.is_empty());
        inbox.take(mark(4), &progress);
        assert_eq!(reported.try_recv().map(|p| p.seq), Ok(4));
    }

    /// Wide operations weigh their bytes: a queue of 100 operations and
    /// 100 KiB holds two of 40 KiB, not a hundred; one heavier than the
    /// whole queue still passes, alone.
    #[tokio::test]
    async fn bounded_by_bytes_for_wide_operations() {
        let (tx, mut rx) = queue(100, 100 << 10);
        tx.send(LaneMsg::ops_of(vec![wide(1, 40 << 10)]))
            .await
            .expect("room");
        let mut slice = vec![wide(2, 40 << 10)];
        send(&tx, &mut slice).await.expect("room for a second");
        let third = tx.send(LaneMsg::ops_of(vec![wide(3, 40 << 10)]));
        let waited = tokio::time::timeout(Duration::from_millis(20), third);
        assert!(waited.await.is_err(), "the queue holds about 100 KiB");
        // narrow ones still fit beside them, by count
        let mut narrow: Vec<WriteOp> = (10..20).map(op).collect();
        send(&tx, &mut narrow).await.expect("room by count");
        assert_eq!(rx.recv().await.map(|m| m.ops()), Some(1));
        tx.send(LaneMsg::ops_of(vec![wide(3, 40 << 10)]))
            .await
            .expect("room again");
        for _ in 0..3 {
            assert!(rx.recv().await.is_some());
        }
        tx.send(LaneMsg::ops_of(vec![wide(4, 1 << 20)]))
            .await
            .expect("an empty queue takes one heavier than itself");
    }

    /// A batch ends at its bytes before its count, holds at least one
    /// operation however wide, and keeps its marks in place.
    #[test]
    fn inbox_cuts_wide_batches_by_bytes() {
        let (progress, _reported) = mpsc::unbounded_channel();
        let kib = |n: usize| wide(n as i64, n << 10).bytes();
        let mut inbox = Inbox::new(0, 100, kib(30) + kib(20));
        inbox.take(
            LaneMsg::ops_of(vec![wide(30, 30 << 10), wide(20, 20 << 10)]),
            &progress,
        );
        assert!(inbox.full(), "a batch's bytes wait");
        inbox.take(mark(1), &progress);
        inbox.take(LaneMsg::ops_of(vec![wide(10, 10 << 10)]), &progress);
        inbox.take(LaneMsg::ops_of(vec![wide(500, 500 << 10)]), &progress);
        inbox.take(LaneMsg::ops_of(vec![wide(1, 1 << 10)]), &progress);
        let ids =
            |b: &[WriteOp]| -> Vec<Value> { b.iter().flat_map(|o| o.key().cloned()).collect() };
        let (batch, m) = inbox.cut();
        assert_eq!(ids(&batch), [Value::Int(30), Value::Int(20)]);
        assert_eq!(m.map(|p| p.seq), Some(1));
        let (batch, m) = inbox.cut();
        assert_eq!(
            ids(&batch),
            [Value::Int(10), Value::Int(500)],
            "the one that reaches the budget ends the batch"
        );
        assert!(m.is_none());
        assert!(!inbox.full());
        let (batch, _) = inbox.cut();
        assert_eq!(ids(&batch), [Value::Int(1)]);
        assert!(inbox.is_empty());
        // one wider than the budget is a batch of its own
        inbox.take(LaneMsg::ops_of(vec![wide(900, 900 << 10)]), &progress);
        inbox.take(LaneMsg::ops_of(vec![wide(2, 2 << 10)]), &progress);
        let (batch, _) = inbox.cut();
        assert_eq!(ids(&batch), [Value::Int(900)], "alone, however wide");
    }
}
