//! What holds the copy back: the time its dispatcher waited, and for
//! whom.
//!
//! The dispatcher ([`super::dispatch`]) sits between the readers and the
//! lanes, so where it waits says which side is the slower one:
//!
//! * **for a page** (it had room for one, and no reader had one ready):
//!   the source side — the readers' `SELECT`s — is slower;
//! * **for room** (as many pages in flight as it may have) or for a
//!   lane's full queue: the lanes, that is the targets, are slower;
//! * **throttled** (`snapshot_rows_per_sec`): on purpose.
//!
//! The rest of its time it routes rows; when it hardly waited at all, the
//! dispatcher itself (reshard's CPU) bounds the copy. The copy's progress
//! line and its last line report the split (`BENCHMARKS.md`, session 12:
//! pages of 100 rows had the dispatcher wait for the source 75 % of the
//! time; pages of 1000 have it wait for the targets).

use std::time::Duration;

/// The side a wait is for (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Targets,
    Throttle,
}

/// The dispatcher's waits so far.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Waits {
    pub source: Duration,
    pub targets: Duration,
    pub throttle: Duration,
}

/// Waiting for one side this share of the time, and more than for the
/// other, says that side bounds the copy.
const BOUND_SHARE: f64 = 0.2;

impl Waits {
    pub fn add(&mut self, side: Side, d: Duration) {
        match side {
            Side::Source => self.source += d,
            Side::Targets => self.targets += d,
            Side::Throttle => self.throttle += d,
        }
    }

    /// What bounded the copy over `elapsed`: `"throttle"`, `"source"`
    /// or `"targets"` when the dispatcher waited for it at least a fifth
    /// of the time (and for the throttle, or else the side, most), else
    /// `"reshard"` (it was busy routing).
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
    fn the_side_waited_for_most_bounds_the_copy() {
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
    fn little_waiting_means_the_dispatcher_itself_bounds_the_copy() {
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
