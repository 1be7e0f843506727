//! What holds the pipeline back: where the stage between the source and
//! the targets waited, and for whom.
//!
//! The copy's dispatcher ([`crate::snapshot`]) and the stream's
//! coordinator ([`crate::pipeline`]) each sit between the reading side
//! and the lanes, so where they wait says which side is the slower one:
//!
//! * **for the source** (nothing to take from the readers, or from the
//!   binlog reader): reading and decoding are slower — or, streaming,
//!   reshard has caught up and waits for new changes (the lag says which);
//! * **for the targets** (the copy: as many pages in flight as it may
//!   have; both: a lane's full queue): the lanes are slower — their
//!   target servers, or the lanes' own work of building statements;
//! * **throttled** (`snapshot_rows_per_sec`): on purpose.
//!
//! The rest of the time the stage routes rows; when it hardly waited at
//! all, the router (reshard's CPU) bounds the pipeline. The copy's
//! progress line and its last line, and the stream's progress line,
//! report the split (`BENCHMARKS.md`, session 12: pages of 100 rows had
//! the copy wait for the source 68 % of the time; pages of 1000 have it
//! wait for the targets).

use std::time::{Duration, Instant};

/// The side a wait is for (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Targets,
    Throttle,
}

/// A stage's waits.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Waits {
    pub source: Duration,
    pub targets: Duration,
    pub throttle: Duration,
}

/// Waiting for one side this share of the time, and more than for the
/// others, says that side bounds the stage.
const BOUND_SHARE: f64 = 0.2;

impl Waits {
    /// Adds the time since `since` to `side` (nothing without one: the
    /// stage did not wait).
    pub fn add_since(&mut self, side: Option<Side>, since: Instant) {
        if let Some(side) = side {
            self.add(side, since.elapsed());
        }
    }

    pub fn add(&mut self, side: Side, d: Duration) {
        match side {
            Side::Source => self.source += d,
            Side::Targets => self.targets += d,
            Side::Throttle => self.throttle += d,
        }
    }

    /// What bounded the stage over `elapsed`: `"throttle"`, `"source"`
    /// or `"targets"` when it waited for that at least a fifth of the
    /// time (and for it most), else `"reshard"` (it was busy routing).
    pub fn bound_by(&self, elapsed: Duration) -> &'static str {
        let total = elapsed.as_secs_f64();
        if total <= 0.0 {
            return "reshard";
        }
        let share = |d: Duration| d.as_secs_f64() / total;
        let sides = [
            (self.throttle, "throttle"),
            (self.source, "source"),
            (self.targets, "targets"),
        ];
        sides
            .into_iter()
            .filter(|(d, _)| share(*d) >= BOUND_SHARE)
            .max_by_key(|(d, _)| *d)
            .map_or("reshard", |(_, name)| name)
    }

    /// The share of `elapsed` spent waiting for `d`, in percent.
    pub fn percent(d: Duration, elapsed: Duration) -> f64 {
        let total = elapsed.as_secs_f64();
        if total <= 0.0 {
            return 0.0;
        }
        (100.0 * d.as_secs_f64() / total).round()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(source: u64, targets: u64, throttle: u64) -> Waits {
        Waits {
            source: Duration::from_millis(source),
            targets: Duration::from_millis(targets),
            throttle: Duration::from_millis(throttle),
        }
    }

    #[test]
    fn the_side_waited_for_most_bounds_the_stage() {
        let run = Duration::from_millis(4000);
        // session 12's pages of 100 rows: 3.0 s of 4.0 waiting for a page
        assert_eq!(waits(3000, 280, 0).bound_by(run), "source");
        // pages of 1000: 1.7 s of 2.6 waiting for room
        assert_eq!(
            waits(30, 1700, 0).bound_by(Duration::from_millis(2600)),
            "targets"
        );
        assert_eq!(waits(100, 2000, 1500).bound_by(run), "targets");
        assert_eq!(waits(100, 900, 2500).bound_by(run), "throttle");
    }

    #[test]
    fn little_waiting_means_the_router_itself_bounds_the_stage() {
        let run = Duration::from_millis(4000);
        assert_eq!(waits(300, 400, 0).bound_by(run), "reshard");
        assert_eq!(Waits::default().bound_by(run), "reshard");
        assert_eq!(Waits::default().bound_by(Duration::ZERO), "reshard");
    }

    #[test]
    fn waits_add_up_per_side_and_as_percent() {
        let mut w = Waits::default();
        w.add(Side::Source, Duration::from_millis(250));
        w.add(Side::Source, Duration::from_millis(250));
        w.add(Side::Targets, Duration::from_millis(100));
        w.add(Side::Throttle, Duration::from_millis(5));
        assert_eq!(w, waits(500, 100, 5));
        assert_eq!(Waits::percent(w.source, Duration::from_secs(2)), 25.0);
        assert_eq!(Waits::percent(w.source, Duration::ZERO), 0.0);
    }
}
