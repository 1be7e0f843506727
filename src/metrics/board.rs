//! The progress clocks of the pipeline's stages, which the stall alarm
//! ([`crate::monitor::stall`]) reads once a second.
//!
//! A stage is stalled when it has work and makes no progress, so each
//! stage reports both, as cheaply as its hot path allows:
//!
//! * the **reader** counts the events it reads ([`Board::event_read`], one
//!   relaxed atomic add) and says when it waits for the coordinator to take
//!   an item ([`Board::reader_blocked`], once per item);
//! * each **lane** says when it starts on a batch and when that batch is
//!   done ([`Board::lane_busy`], once per batch, including the time its
//!   shard is ridden out), and when the throttle, not the shard, holds it
//!   back ([`Board::lane_throttled`]);
//! * the **copy** says while it runs and counts its chunks.
//!
//! The alarm turns changes of the counters into "last progress at" times
//! itself, so no stage reads the clock per event.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A lane as the alarm sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneState {
    pub shard: String,
    pub lane_in_shard: usize,
    /// Since when it works on one batch (`None`: idle, or lingering for
    /// more operations).
    pub busy_since: Option<Instant>,
    /// The throttle holds the batch back (not a stall).
    pub throttled: bool,
}

/// What the stages report (see the module docs).
pub struct Board {
    origin: Instant,
    lanes: Mutex<BTreeMap<usize, LaneState>>,
    events: AtomicU64,
    commits: AtomicU64,
    copy_chunks: AtomicU64,
    /// Milliseconds since `origin` + 1 when the reader began to wait for
    /// room; 0 while it does not wait.
    reader_blocked: AtomicU64,
    /// Copies running (0 or 1).
    copying: AtomicU64,
}

/// Counters and states at one moment.
#[derive(Debug, Clone)]
pub struct BoardView {
    pub lanes: Vec<(usize, LaneState)>,
    pub events: u64,
    pub commits: u64,
    pub copy_chunks: u64,
    pub reader_blocked_since: Option<Instant>,
    pub copying: bool,
}

impl Board {
    pub fn new() -> Board {
        Board {
            origin: Instant::now(),
            lanes: Mutex::new(BTreeMap::new()),
            events: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            copy_chunks: AtomicU64::new(0),
            reader_blocked: AtomicU64::new(0),
            copying: AtomicU64::new(0),
        }
    }

    pub fn event_read(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    /// A batch was committed (by a lane, or by the copy).
    pub fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn copied(&self) {
        self.copy_chunks.fetch_add(1, Ordering::Relaxed);
    }

    /// Lane `lane` of `shard` works on a batch until the guard is dropped.
    pub fn lane_busy(&self, lane: usize, shard: &str, lane_in_shard: usize) -> LaneBusy<'_> {
        self.with_lanes(|lanes| {
            let s = lanes.entry(lane).or_insert_with(|| LaneState {
                shard: shard.to_string(),
                lane_in_shard,
                busy_since: None,
                throttled: false,
            });
            s.busy_since = Some(Instant::now());
            s.throttled = false;
        });
        LaneBusy { board: self, lane }
    }

    /// The throttle holds lane `lane` back (`true`) or let it go
    /// (`false`): its batch's clock starts again, the wait was no stall.
    pub fn lane_throttled(&self, lane: usize, throttled: bool) {
        self.with_lanes(|lanes| {
            if let Some(s) = lanes.get_mut(&lane) {
                s.throttled = throttled;
                if !throttled && s.busy_since.is_some() {
                    s.busy_since = Some(Instant::now());
                }
            }
        });
    }

    /// The reader waits for the coordinator until the guard is dropped.
    pub fn reader_blocked(&self) -> ReaderBlocked<'_> {
        let ms = self.origin.elapsed().as_millis() as u64 + 1;
        self.reader_blocked.store(ms, Ordering::Relaxed);
        ReaderBlocked { board: self }
    }

    /// The initial copy runs until the guard is dropped.
    pub fn copying(&self) -> Copying<'_> {
        self.copying.fetch_add(1, Ordering::Relaxed);
        Copying { board: self }
    }

    pub fn view(&self) -> BoardView {
        let mut lanes = Vec::new();
        self.with_lanes(|l| lanes = l.iter().map(|(k, v)| (*k, v.clone())).collect());
        let blocked = self.reader_blocked.load(Ordering::Relaxed);
        BoardView {
            lanes,
            events: self.events.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            copy_chunks: self.copy_chunks.load(Ordering::Relaxed),
            reader_blocked_since: (blocked > 0)
                .then(|| self.origin + Duration::from_millis(blocked - 1)),
            copying: self.copying.load(Ordering::Relaxed) > 0,
        }
    }

    /// Runs `f` on the lanes; a poisoned lock (a panic elsewhere while it
    /// was held) still holds consistent entries, each written whole.
    fn with_lanes(&self, f: impl FnOnce(&mut BTreeMap<usize, LaneState>)) {
        let mut guard = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard);
    }
}

impl Default for Board {
    fn default() -> Self {
        Board::new()
    }
}

/// See [`Board::lane_busy`].
pub struct LaneBusy<'a> {
    board: &'a Board,
    lane: usize,
}

impl Drop for LaneBusy<'_> {
    fn drop(&mut self) {
        self.board.with_lanes(|lanes| {
            if let Some(s) = lanes.get_mut(&self.lane) {
                s.busy_since = None;
                s.throttled = false;
            }
        });
    }
}

/// See [`Board::reader_blocked`].
pub struct ReaderBlocked<'a> {
    board: &'a Board,
}

impl Drop for ReaderBlocked<'_> {
    fn drop(&mut self) {
        self.board.reader_blocked.store(0, Ordering::Relaxed);
    }
}

/// See [`Board::copying`].
pub struct Copying<'a> {
    board: &'a Board,
}

impl Drop for Copying<'_> {
    fn drop(&mut self) {
        self.board.copying.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_clear_what_they_set() {
        let b = Board::new();
        {
            let _busy = b.lane_busy(2, "s1", 0);
            let _blocked = b.reader_blocked();
            let _copy = b.copying();
            let v = b.view();
            assert!(v.lanes[0].1.busy_since.is_some());
            assert!(v.reader_blocked_since.is_some() && v.copying);
            b.lane_throttled(2, true);
            assert!(b.view().lanes[0].1.throttled);
        }
        let v = b.view();
        assert_eq!(v.lanes[0].1.busy_since, None);
        assert!(!v.lanes[0].1.throttled);
        assert!(v.reader_blocked_since.is_none() && !v.copying);
    }
}
