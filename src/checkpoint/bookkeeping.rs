//! The coordinator's checkpoint bookkeeping: which transaction was
//! dispatched, marked, applied and saved, and what to persist when the
//! watermark moves. Pure state, no I/O, so the rules are unit-tested here.
//!
//! # Why what is saved is safe
//!
//! * Transactions (and heartbeats that move past the last dispatched end)
//!   are numbered `1, 2, …` in binlog order, a transaction only once every
//!   one of its operations was queued; a mark `n` is only queued after
//!   that, so the
//!   [`super::Tracker`] watermark names a transaction whose operations are
//!   all durable (see `docs/architecture.md`, "Checkpoint watermark").
//! * A mark carries the transaction's *resume* position, not its end: the
//!   two differ while an XA transaction is prepared but unresolved, and
//!   then the checkpoint must stay at the start of its PREPARE group (see
//!   [`crate::source::xa`]). The end is kept aside per mark, for
//!   [`Bookkeeping::applied`].
//! * A watermark is handled once (`seq` above the last handled one), so the
//!   saved checkpoint only moves forward along the binlog.
//! * A replay passes [`Saves::Past`] the checkpoint it found at start. A
//!   watermark at or below it is not saved, so replaying an old range never
//!   moves a newer checkpoint back.
//! * A checkpoint claims that every transaction before it is applied. A
//!   replay establishes that only for what it applies, from its start on;
//!   before its start, only the checkpoint it found vouches. So a replay
//!   that starts *past* that checkpoint saves nothing at all
//!   ([`Saves::starting_at`]): any watermark of it would jump over the
//!   transactions between the checkpoint and its start, which nobody
//!   applied, and the next `run` would resume after them. The checkpoint
//!   stays; `run` applies from it, the gap and the replayed range again
//!   (harmless: versions). Nor does such a replay log positions for
//!   pruning: the pruning threshold must stay a position every change
//!   before which is applied (see `docs/architecture.md`, "Checkpoint
//!   watermark" and "Tombstones and the floor").
//! * The position log (commit time → position, for tombstone pruning) gets
//!   at most one row per cadence, and only for a watermark with a commit
//!   time (heartbeats carry none).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::tracker::LaneProgress;
use crate::position::Position;

/// A mark to queue on every lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub seq: u64,
    /// Where the checkpoint may resume once the mark is applied (what the
    /// lanes carry and report back).
    pub resume: Position,
    /// End of the last transaction dispatched before the mark.
    pub end: Position,
    pub timestamp: u32,
}

/// Which watermarks an attempt may save as the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Saves {
    /// Every one (`run`).
    All,
    /// Only those past this position: the checkpoint a replay found at
    /// its start (it never moves back).
    Past(Position),
    /// None (and no position-log rows): a replay that starts past the
    /// checkpoint, or that applies shards whose checkpoint is another
    /// subset's.
    Nothing,
}

impl Saves {
    /// What an attempt that starts at `start` may save: [`Saves::Past`] a
    /// checkpoint before `start` becomes [`Saves::Nothing`] (see the module
    /// docs: the transactions between were never applied).
    pub fn starting_at(self, start: &Position) -> Saves {
        match self {
            Saves::Past(cp) if *start > cp => Saves::Nothing,
            s => s,
        }
    }
}

/// What to persist for a new watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    /// Save this position as the checkpoint (`None`: a replay must not
    /// move the checkpoint there, see [`Saves`]).
    pub save: Option<Position>,
    /// The watermark's commit time, for the checkpoint row.
    pub timestamp: u32,
    /// Also record (commit time, position) in the position log.
    pub log_position: bool,
}

/// Checkpoint bookkeeping of one attempt. (`Clone` and `Hash` let the
/// simulation in `tests/sim` copy and fingerprint a pipeline's state.)
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bookkeeping {
    /// Number of the last dispatched transaction (or heartbeat advance).
    seq: u64,
    /// Last mark queued on the lanes.
    marked: u64,
    /// Last watermark handled.
    handled: u64,
    /// End position, resume position and commit time of what was
    /// dispatched last.
    dispatched_end: Position,
    dispatched_resume: Position,
    dispatched_ts: u32,
    /// End positions of the marks queued and not yet handled, by seq.
    mark_ends: VecDeque<(u64, Position)>,
    /// End of the last watermark: applied on every shard.
    applied: Position,
    /// Last position saved as the checkpoint.
    saved: Position,
    saves: Saves,
    last_logged: Option<Instant>,
    log_every: Duration,
    /// The source sent a heartbeat after the last transaction.
    idle: bool,
}

impl Bookkeeping {
    /// Starts at `start` (the checkpoint or replay start), saving what
    /// `saves` allows from there ([`Saves::starting_at`]). The position log
    /// gets a row about ten times per tombstone retention, between once a
    /// second and once a minute.
    pub fn new(start: Position, saves: Saves, tombstone_retention: Duration) -> Self {
        Bookkeeping {
            seq: 0,
            marked: 0,
            handled: 0,
            dispatched_end: start.clone(),
            dispatched_resume: start.clone(),
            dispatched_ts: 0,
            mark_ends: VecDeque::new(),
            applied: start.clone(),
            // what is stored: a replay's checkpoint, else where it starts
            saved: match &saves {
                Saves::Past(cp) => cp.clone(),
                _ => start.clone(),
            },
            saves: saves.starting_at(&start),
            last_logged: None,
            log_every: (tombstone_retention / 10)
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
            idle: false,
        }
    }

    /// A transaction arrives: returns the number it gets once all its
    /// operations are queued ([`Bookkeeping::dispatched`]).
    pub fn begin_transaction(&mut self) -> u64 {
        self.idle = false;
        self.seq + 1
    }

    /// Every operation of the current transaction is queued; it ends at
    /// `end` and a checkpoint after it may resume at `resume`. Only now
    /// does it count, so a mark queued while a transaction is half queued
    /// names the one before it.
    pub fn dispatched(&mut self, end: Position, resume: Position, timestamp: u32) {
        self.seq += 1;
        self.dispatched_end = end;
        self.dispatched_resume = resume;
        self.dispatched_ts = timestamp;
    }

    /// A heartbeat: the source is idle; a position past the last dispatched
    /// end counts as an empty transaction, so an idle source still gets an
    /// up-to-date checkpoint.
    pub fn heartbeat(&mut self, pos: Option<Position>) {
        self.idle = true;
        if let Some(pos) = pos {
            if pos > self.dispatched_end {
                self.seq += 1;
                self.dispatched_resume = pos.clone();
                self.dispatched_end = pos;
            }
        }
    }

    /// The mark to queue, when something was dispatched since the last one.
    pub fn mark_due(&self) -> Option<Mark> {
        (self.seq > self.marked).then(|| Mark {
            seq: self.seq,
            resume: self.dispatched_resume.clone(),
            end: self.dispatched_end.clone(),
            timestamp: self.dispatched_ts,
        })
    }

    /// Mark `m` is queued on every lane.
    pub fn marked(&mut self, m: &Mark) {
        self.marked = m.seq;
        self.mark_ends.push_back((m.seq, m.end.clone()));
    }

    /// A watermark: what to persist, when it is new.
    pub fn advance(&mut self, w: &LaneProgress, now: Instant) -> Option<Advance> {
        if w.seq <= self.handled {
            return None;
        }
        self.handled = w.seq;
        while let Some((seq, end)) = self.mark_ends.front() {
            if *seq > w.seq {
                break;
            }
            self.applied = end.clone();
            self.mark_ends.pop_front();
        }
        let save = match &self.saves {
            Saves::All => true,
            Saves::Past(cp) => w.end > *cp,
            Saves::Nothing => false,
        };
        let log_position = self.saves != Saves::Nothing
            && w.timestamp > 0
            && self
                .last_logged
                .is_none_or(|t| now.saturating_duration_since(t) >= self.log_every);
        Some(Advance {
            save: save.then(|| w.end.clone()),
            timestamp: w.timestamp,
            log_position,
        })
    }

    /// What this attempt may save (after [`Saves::starting_at`]).
    pub fn saves(&self) -> &Saves {
        &self.saves
    }

    /// The checkpoint `pos` was saved.
    pub fn saved(&mut self, pos: Position) {
        self.saved = pos;
    }

    /// A position-log row was written at `now`.
    pub fn logged(&mut self, now: Instant) {
        self.last_logged = Some(now);
    }

    /// End of what was dispatched last.
    pub fn dispatched_end(&self) -> &Position {
        &self.dispatched_end
    }

    /// End of the last transaction of the last watermark (past the
    /// checkpoint while an XA transaction is prepared).
    pub fn applied(&self) -> &Position {
        &self.applied
    }

    /// The last saved checkpoint.
    pub fn checkpoint(&self) -> &Position {
        &self.saved
    }

    /// Seconds the applied state is behind the source at `now_secs` (Unix
    /// time): zero when the source is idle and everything dispatched was
    /// handled, else the age of the last dispatched commit.
    pub fn lag_secs(&self, now_secs: u64) -> u64 {
        if self.idle && self.handled == self.seq {
            0
        } else {
            now_secs.saturating_sub(u64::from(self.dispatched_ts))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(n: u64) -> Position {
        Position::new("b.000001", n)
    }

    fn w(seq: u64, end: u64, timestamp: u32) -> LaneProgress {
        LaneProgress {
            lane: 0,
            seq,
            end: pos(end),
            timestamp,
        }
    }

    #[test]
    fn marks_only_what_was_dispatched_since_the_last_mark() {
        let mut b = Bookkeeping::new(pos(4), Saves::All, Duration::from_secs(600));
        assert_eq!(b.mark_due(), None);
        assert_eq!(b.begin_transaction(), 1);
        b.dispatched(pos(100), pos(100), 7);
        assert_eq!(b.begin_transaction(), 2);
        b.dispatched(pos(200), pos(200), 8);
        let m = b.mark_due().unwrap();
        assert_eq!(
            m,
            Mark {
                seq: 2,
                resume: pos(200),
                end: pos(200),
                timestamp: 8
            }
        );
        b.marked(&m);
        assert_eq!(b.mark_due(), None);
    }

    #[test]
    fn a_half_dispatched_transaction_is_not_marked() {
        let mut b = Bookkeeping::new(pos(4), Saves::All, Duration::from_secs(600));
        b.begin_transaction();
        b.dispatched(pos(100), pos(100), 7);
        assert_eq!(b.begin_transaction(), 2);
        // transaction 2 is being queued: a tick now marks transaction 1
        let m = b.mark_due().unwrap();
        assert_eq!((m.seq, m.end.clone()), (1, pos(100)));
        b.marked(&m);
        assert_eq!(b.mark_due(), None);
        b.dispatched(pos(200), pos(200), 8);
        let m = b.mark_due().unwrap();
        assert_eq!((m.seq, m.end), (2, pos(200)));
    }

    #[test]
    fn heartbeats_count_only_when_they_move_forward() {
        let mut b = Bookkeeping::new(pos(100), Saves::All, Duration::from_secs(600));
        b.heartbeat(Some(pos(50)));
        b.heartbeat(None);
        assert_eq!(b.mark_due(), None);
        b.heartbeat(Some(pos(150)));
        let m = b.mark_due().unwrap();
        assert_eq!((m.seq, m.resume, m.timestamp), (1, pos(150), 0));
        assert_eq!(b.dispatched_end(), &pos(150));
    }

    /// Dispatches a transaction and marks it, as the coordinator does.
    fn mark(b: &mut Bookkeeping, end: u64, resume: u64) -> Mark {
        let seq = b.begin_transaction();
        b.dispatched(pos(end), pos(resume), 5);
        let m = b.mark_due().unwrap();
        assert_eq!(m.seq, seq);
        b.marked(&m);
        m
    }

    #[test]
    fn while_an_xa_is_prepared_marks_carry_its_start_and_applied_the_end() {
        let now = Instant::now();
        let mut b = Bookkeeping::new(pos(4), Saves::All, Duration::from_secs(600));
        // a PREPARE group from 100 to 150, then a transaction ending at 200
        let m1 = mark(&mut b, 150, 100);
        let m2 = mark(&mut b, 200, 100);
        assert_eq!((m1.resume.clone(), m2.resume.clone()), (pos(100), pos(100)));
        b.heartbeat(None);
        assert_eq!(b.mark_due(), None, "an idle source without a boundary");
        // the lanes report mark 2 (what they carried: its resume position)
        let a = b.advance(&w(2, 100, 5), now).unwrap();
        assert_eq!(a.save, Some(pos(100)));
        assert_eq!(b.applied(), &pos(200));
        // the COMMIT at 300 resolves it
        mark(&mut b, 300, 300);
        let a = b.advance(&w(3, 300, 5), now).unwrap();
        assert_eq!(a.save, Some(pos(300)));
        assert_eq!(b.applied(), &pos(300));
    }

    #[test]
    fn a_watermark_is_handled_once_and_saved_forward_only() {
        let now = Instant::now();
        let mut b = Bookkeeping::new(pos(4), Saves::Past(pos(300)), Duration::from_secs(600));
        for end in [200, 300, 400] {
            mark(&mut b, end, end);
        }
        let a = b.advance(&w(1, 200, 5), now).unwrap();
        assert_eq!(a.save, None, "at or below the replay's start: not saved");
        assert_eq!(b.applied(), &pos(200));
        assert_eq!(b.advance(&w(1, 200, 5), now), None, "handled already");
        let a = b.advance(&w(2, 300, 6), now).unwrap();
        assert_eq!(a.save, None);
        let a = b.advance(&w(3, 400, 7), now).unwrap();
        assert_eq!(a.save, Some(pos(400)));
        b.saved(pos(400));
        assert_eq!(b.checkpoint(), &pos(400));
    }

    /// The model checker's finding: a replay from 400 with the checkpoint
    /// at 300 never applied 300..400; saving 500 would skip it for good.
    #[test]
    fn a_replay_that_starts_past_the_checkpoint_saves_and_logs_nothing() {
        let now = Instant::now();
        let mut b = Bookkeeping::new(pos(400), Saves::Past(pos(300)), Duration::from_secs(20));
        assert_eq!(b.saves(), &Saves::Nothing);
        assert_eq!(b.checkpoint(), &pos(300), "the stored one, for the logs");
        mark(&mut b, 500, 500);
        let a = b.advance(&w(1, 500, 9), now).unwrap();
        assert_eq!((a.save, a.log_position), (None, false));
        b.heartbeat(Some(pos(600)));
        let m = b.mark_due().unwrap();
        b.marked(&m);
        assert_eq!(b.advance(&w(2, 600, 0), now).unwrap().save, None);
        // at the checkpoint it moves forward as before
        let b = Bookkeeping::new(pos(300), Saves::Past(pos(300)), Duration::from_secs(20));
        assert_eq!(b.saves(), &Saves::Past(pos(300)));
        let b = Bookkeeping::new(pos(400), Saves::All, Duration::from_secs(20));
        assert_eq!(b.saves(), &Saves::All);
    }

    #[test]
    fn the_position_log_has_a_cadence_and_needs_a_commit_time() {
        let t0 = Instant::now();
        // retention 20 s: one row every 2 s at most
        let mut b = Bookkeeping::new(pos(4), Saves::All, Duration::from_secs(20));
        let a = b.advance(&w(1, 100, 0), t0).unwrap();
        assert!(!a.log_position, "a heartbeat watermark has no commit time");
        let a = b.advance(&w(2, 200, 9), t0).unwrap();
        assert!(a.log_position);
        b.logged(t0);
        let a = b
            .advance(&w(3, 300, 9), t0 + Duration::from_secs(1))
            .unwrap();
        assert!(!a.log_position);
        let a = b
            .advance(&w(4, 400, 9), t0 + Duration::from_secs(2))
            .unwrap();
        assert!(a.log_position);
    }

    #[test]
    fn lag_is_zero_only_when_idle_and_caught_up() {
        let now = Instant::now();
        let mut b = Bookkeeping::new(pos(4), Saves::All, Duration::from_secs(600));
        b.begin_transaction();
        b.dispatched(pos(100), pos(100), 1_000);
        assert_eq!(b.lag_secs(1_010), 10);
        b.heartbeat(None);
        assert_eq!(b.lag_secs(1_010), 10, "idle but not applied yet");
        b.advance(&w(1, 100, 1_000), now);
        assert_eq!(b.lag_secs(1_010), 0);
    }
}
