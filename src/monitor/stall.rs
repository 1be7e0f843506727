//! The stall alarm: which stage has work and makes no progress.
//!
//! Once a second the monitor hands [`StallWatch::observe`] the source head
//! and the stages' progress clocks ([`crate::metrics::board`]). A stage is
//! **stalled** when, for `stall_secs`:
//!
//! 1. **a lane** (`lane:SHARD/N`) has worked on one batch without
//!    committing it — the batch waits for a lock on the target (`FLUSH
//!    TABLES WITH READ LOCK`, a long row lock), the shard is down and the
//!    lane rides it out, or a statement hangs. Time the throttle holds the
//!    batch back does not count;
//! 2. **the copy** has applied no chunk while it runs;
//! 3. **the router** (the coordinator, which routes and queues) has taken
//!    no item from the reader, which waited for it all along, and no lane
//!    committed anything meanwhile (nor does the throttle hold a lane back,
//!    which makes the coordinator wait on purpose);
//! 4. **the reader** has read no binlog event while the source head moved
//!    (heartbeats count as events, so an idle source is no stall; the
//!    reader starts after the initial copy, so its clock starts there).
//!
//! A stuck stage stops the stages before it: a lane that cannot commit
//! fills its queue, the coordinator waits for room, the reader waits for
//! the coordinator. So the alarm names the stage furthest downstream that
//! is stuck (lanes, then copy, router, reader) and not the ones that merely
//! wait for it. A big transaction is no stall: its events are read, its
//! operations flow to the lanes, their batches commit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::metrics::board::BoardView;
use crate::position::Position;

/// A stage that is stalled now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// `reader`, `router`, `copy` or `lane:SHARD/N`: the `stage` label.
    pub stage: String,
    /// What it has not done, for the log.
    pub what: String,
}

/// A change of the alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Began(Stuck),
    /// The stage made progress again after this long stalled.
    Ended {
        stage: String,
        after: Duration,
    },
}

/// The progress clocks over time and the stages stalled now.
pub struct StallWatch {
    limit: Duration,
    events: Clock,
    commits: Clock,
    copy: Clock,
    /// The head when the reader last read an event.
    head_at_event: Option<Position>,
    current: BTreeMap<String, Instant>,
}

/// When a counter last changed.
struct Clock {
    value: u64,
    at: Instant,
}

impl Clock {
    fn new(now: Instant) -> Clock {
        Clock { value: 0, at: now }
    }

    /// Whether the counter moved.
    fn update(&mut self, value: u64, now: Instant) -> bool {
        if value == self.value {
            return false;
        }
        self.value = value;
        self.at = now;
        true
    }

    fn idle(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.at)
    }
}

impl StallWatch {
    pub fn new(limit: Duration, now: Instant) -> StallWatch {
        StallWatch {
            limit,
            events: Clock::new(now),
            commits: Clock::new(now),
            copy: Clock::new(now),
            head_at_event: None,
            current: BTreeMap::new(),
        }
    }

    /// Takes in the state at `now` (`head`: the source head, when it could
    /// be read) and returns what began and ended.
    pub fn observe(
        &mut self,
        now: Instant,
        head: Option<&Position>,
        view: &BoardView,
    ) -> Vec<Change> {
        if self.events.update(view.events, now) || self.head_at_event.is_none() {
            if let Some(h) = head {
                self.head_at_event = Some(h.clone());
            }
        }
        if view.copying {
            // the reader starts after the copy: the source moving meanwhile
            // is no stall of a reader that is not running yet
            self.events.at = now;
            self.head_at_event = head.cloned().or(self.head_at_event.take());
        }
        self.commits.update(view.commits, now);
        if !view.copying {
            // the copy's clock runs from when it (re)starts
            self.copy.at = now;
        }
        self.copy.update(view.copy_chunks, now);
        let stuck = self.diagnose(now, head, view);
        let mut changes = Vec::new();
        let gone: Vec<String> = self
            .current
            .keys()
            .filter(|s| !stuck.iter().any(|x| &x.stage == *s))
            .cloned()
            .collect();
        for stage in gone {
            if let Some(since) = self.current.remove(&stage) {
                let after = now.saturating_duration_since(since);
                changes.push(Change::Ended { stage, after });
            }
        }
        for s in stuck {
            if !self.current.contains_key(&s.stage) {
                self.current.insert(s.stage.clone(), now);
                changes.push(Change::Began(s));
            }
        }
        changes
    }

    /// The stalled stages, furthest downstream first (see the module docs).
    fn diagnose(&self, now: Instant, head: Option<&Position>, view: &BoardView) -> Vec<Stuck> {
        let limit = self.limit;
        let lanes: Vec<Stuck> = view
            .lanes
            .iter()
            .filter_map(|(i, l)| {
                let busy = now.saturating_duration_since(l.busy_since?);
                (!l.throttled && busy >= limit).then(|| Stuck {
                    stage: format!("lane:{}/{}", l.shard, l.lane_in_shard),
                    what: format!(
                        "writer lane {i} (shard {}, lane {} of the shard) has not committed its batch for {} s: a lock on the target (FLUSH TABLES WITH READ LOCK, a long row lock), the shard down, or a statement that hangs",
                        l.shard, l.lane_in_shard, busy.as_secs()
                    ),
                })
            })
            .collect();
        if !lanes.is_empty() {
            return lanes;
        }
        if view.copying {
            let idle = self.copy.idle(now);
            return if idle >= limit {
                vec![Stuck {
                    stage: "copy".into(),
                    what: format!(
                        "the initial copy has applied no chunk for {} s",
                        idle.as_secs()
                    ),
                }]
            } else {
                Vec::new()
            };
        }
        if let Some(since) = view.reader_blocked_since {
            let waited = now.saturating_duration_since(since);
            // a throttled lane holds the coordinator back on purpose
            let throttled = view.lanes.iter().any(|(_, l)| l.throttled);
            if waited >= limit && self.commits.idle(now) >= limit && !throttled {
                return vec![Stuck {
                    stage: "router".into(),
                    what: format!(
                        "the coordinator has taken no transaction from the binlog reader for {} s and no batch was committed meanwhile",
                        waited.as_secs()
                    ),
                }];
            }
            return Vec::new();
        }
        let idle = self.events.idle(now);
        match (head, &self.head_at_event) {
            (Some(h), Some(then)) if idle >= limit && h != then => vec![Stuck {
                stage: "reader".into(),
                what: format!(
                    "no binlog event read for {} s while the source head moved from {then} to {h} (the stream, or attempts to open it, fail: see the retries)",
                    idle.as_secs()
                ),
            }],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::board::LaneState;

    const LIMIT: Duration = Duration::from_secs(10);

    fn view() -> BoardView {
        BoardView {
            lanes: Vec::new(),
            events: 0,
            commits: 0,
            copy_chunks: 0,
            reader_blocked_since: None,
            copying: false,
        }
    }

    fn pos(n: u64) -> Position {
        Position::new("b.000001", n)
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    fn lane(shard: &str, n: usize, busy_since: Instant, throttled: bool) -> LaneState {
        LaneState {
            shard: shard.into(),
            lane_in_shard: n,
            busy_since: Some(busy_since),
            throttled,
        }
    }

    /// The changes are the beginning of a stall of `stage` alone.
    fn began(c: &[Change], stage: &str) {
        assert!(matches!(c, [Change::Began(s)] if s.stage == stage), "{c:?}");
    }

    #[test]
    fn a_lane_stuck_on_a_batch_is_named_and_not_the_stages_waiting_for_it() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(LIMIT, t0);
        let mut v = view();
        v.events = 5;
        assert!(w.observe(t0, Some(&pos(100)), &v).is_empty());
        v.lanes.push((3, lane("s1", 1, secs(t0, 1), false)));
        v.reader_blocked_since = Some(secs(t0, 2));
        assert!(w.observe(secs(t0, 10), Some(&pos(900)), &v).is_empty());
        let c = w.observe(secs(t0, 12), Some(&pos(900)), &v);
        assert_eq!(c.len(), 1, "{c:?}");
        match &c[0] {
            Change::Began(s) => {
                assert_eq!(s.stage, "lane:s1/1");
                assert!(s.what.contains("writer lane 3"), "{}", s.what);
            }
            other => panic!("{other:?}"),
        }
        // reported once
        assert!(w.observe(secs(t0, 13), Some(&pos(900)), &v).is_empty());
        // the batch commits: over
        v.lanes[0].1.busy_since = None;
        v.reader_blocked_since = None;
        v.commits = 1;
        v.events = 9;
        let c = w.observe(secs(t0, 14), Some(&pos(950)), &v);
        assert_eq!(
            c,
            [Change::Ended {
                stage: "lane:s1/1".into(),
                after: Duration::from_secs(2)
            }]
        );
    }

    #[test]
    fn a_throttled_lane_is_not_stalled() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(LIMIT, t0);
        let mut v = view();
        v.lanes.push((0, lane("s0", 0, t0, true)));
        assert!(w.observe(secs(t0, 60), None, &v).is_empty());
    }

    #[test]
    fn the_reader_stalls_only_while_the_source_moves() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(LIMIT, t0);
        let v = view();
        assert!(w.observe(t0, Some(&pos(100)), &v).is_empty());
        // idle source: no event, no stall
        assert!(w.observe(secs(t0, 30), Some(&pos(100)), &v).is_empty());
        let c = w.observe(secs(t0, 31), Some(&pos(200)), &v);
        began(&c, "reader");
    }

    #[test]
    fn a_waiting_reader_points_at_the_router_unless_batches_commit() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(LIMIT, t0);
        let mut v = view();
        v.reader_blocked_since = Some(t0);
        v.commits = 1;
        assert!(w.observe(secs(t0, 5), Some(&pos(100)), &v).is_empty());
        // batches committed 5 s ago: a slow pipeline, not a stalled one
        assert!(w.observe(secs(t0, 11), Some(&pos(100)), &v).is_empty());
        let c = w.observe(secs(t0, 16), Some(&pos(100)), &v);
        began(&c, "router");
    }

    #[test]
    fn waiting_for_a_throttled_lane_or_for_the_copy_is_no_stall() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(LIMIT, t0);
        let mut v = view();
        v.copying = true;
        v.copy_chunks = 1;
        assert!(w.observe(t0, Some(&pos(100)), &v).is_empty());
        v.copy_chunks = 2;
        assert!(w.observe(secs(t0, 29), Some(&pos(800)), &v).is_empty());
        // the copy ends after the source moved on: the reader starts now
        v.copying = false;
        assert!(w.observe(secs(t0, 30), Some(&pos(900)), &v).is_empty());
        v.lanes.push((1, lane("s0", 1, secs(t0, 30), true)));
        v.reader_blocked_since = Some(secs(t0, 30));
        assert!(w.observe(secs(t0, 60), Some(&pos(900)), &v).is_empty());
        v.lanes.clear();
        began(&w.observe(secs(t0, 61), Some(&pos(900)), &v), "router");
    }

    #[test]
    fn a_copy_without_chunks_stalls() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(LIMIT, t0);
        let mut v = view();
        // a long idle time before the copy starts does not count
        assert!(w.observe(secs(t0, 100), Some(&pos(1)), &v).is_empty());
        v.copying = true;
        assert!(w.observe(secs(t0, 105), Some(&pos(9)), &v).is_empty());
        let c = w.observe(secs(t0, 111), Some(&pos(9)), &v);
        began(&c, "copy");
    }
}
