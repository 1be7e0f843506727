//! The low watermark of fully applied source transactions.
//!
//! # Why the watermark is a safe checkpoint
//!
//! The coordinator numbers source transactions in binlog order and, after
//! it has put *all* operations of transaction `n` into the lanes' queues,
//! may put a mark `n` into every lane's queue. Queues are FIFO, so when a
//! lane has committed everything it received before mark `n`, it holds
//! every operation of transactions `≤ n` that was meant for it. The lane
//! then reports `n`. The minimum over all lanes is therefore a transaction
//! all of whose operations (and all earlier ones) are durable on every
//! shard: resuming after its end position loses nothing, and re-applying
//! what some lanes already hold is harmless because writes are versioned.

use crate::position::Position;

/// Progress reported by one lane.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LaneProgress {
    pub lane: usize,
    pub seq: u64,
    pub end: Position,
    pub timestamp: u32,
}

/// Combines lane progress into the watermark. (`Clone` and `Hash` let the
/// simulation in `tests/sim` copy and fingerprint a pipeline's state.)
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tracker {
    lanes: Vec<Option<LaneProgress>>,
}

impl Tracker {
    pub fn new(lanes: usize) -> Self {
        Tracker {
            lanes: vec![None; lanes],
        }
    }

    /// Records a lane's progress (ignores anything older than what it said).
    pub fn update(&mut self, p: LaneProgress) {
        if let Some(slot) = self.lanes.get_mut(p.lane) {
            if slot.as_ref().is_none_or(|old| old.seq < p.seq) {
                *slot = Some(p);
            }
        }
    }

    /// The transaction every lane has applied, if every lane reported.
    pub fn watermark(&self) -> Option<&LaneProgress> {
        let mut min: Option<&LaneProgress> = None;
        for l in &self.lanes {
            let l = l.as_ref()?;
            if min.is_none_or(|m| l.seq < m.seq) {
                min = Some(l);
            }
        }
        min
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lane: usize, seq: u64) -> LaneProgress {
        LaneProgress {
            lane,
            seq,
            end: Position::new("b.000001", seq * 10 + 4),
            timestamp: 0,
        }
    }

    #[test]
    fn watermark_is_the_slowest_lane() {
        let mut t = Tracker::new(3);
        t.update(p(0, 5));
        t.update(p(1, 7));
        assert!(
            t.watermark().is_none(),
            "a silent lane holds the watermark back"
        );
        t.update(p(2, 6));
        assert_eq!(t.watermark().unwrap().seq, 5);
        t.update(p(0, 9));
        assert_eq!(t.watermark().unwrap().seq, 6);
        t.update(p(2, 3)); // stale report is ignored
        assert_eq!(t.watermark().unwrap().seq, 6);
    }
}
