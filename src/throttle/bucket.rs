//! The token bucket of the rows/s cap.
//!
//! Tokens accrue at `rate` per second up to one second's worth. A batch of
//! `n` operations takes `n` tokens at once, even into debt, and waits
//! until the debt is paid back: `debt / rate`. A later batch finds the
//! debt of the earlier ones and waits behind them, so the batches started
//! in any window `[t1, t2]` hold at most `rate · (t2 − t1)` operations
//! plus the bucket's one second. A batch larger than a second's worth
//! still goes through (after its wait): the cap bounds the rate, not the
//! batch.

use std::time::{Duration, Instant};

/// See the module docs.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    /// A full bucket for `rate` (> 0) operations per second.
    pub fn new(rate: u64) -> Bucket {
        let rate = rate.max(1) as f64;
        Bucket {
            rate,
            tokens: rate,
            at: None,
        }
    }

    /// Takes `n` tokens at `now`; returns how long to wait before using
    /// them.
    pub fn take(&mut self, n: u64, now: Instant) -> Duration {
        if let Some(at) = self.at {
            let accrued = now.saturating_duration_since(at).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + accrued).min(self.rate);
        }
        self.at = Some(now);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_second_goes_at_once_then_the_rate_holds() {
        let t0 = Instant::now();
        let mut b = Bucket::new(100);
        assert_eq!(b.take(100, t0), Duration::ZERO);
        // 50 more: half a second of debt
        assert_eq!(b.take(50, t0), Duration::from_millis(500));
        // another lane behind it waits for both
        assert_eq!(b.take(50, t0), Duration::from_secs(1));
        // a second later the debt is paid back
        let later = t0 + Duration::from_secs(2);
        assert_eq!(b.take(100, later), Duration::ZERO);
    }

    #[test]
    fn the_operations_started_in_a_window_stay_under_the_cap() {
        let rate = 200;
        let mut b = Bucket::new(rate);
        let t0 = Instant::now();
        // lanes start a batch of 37 whenever their wait is over
        let mut clocks = [t0; 4];
        let mut started = Vec::new();
        for _ in 0..400 {
            let lane = (0..4).min_by_key(|&i| clocks[i]).unwrap_or(0);
            let now = clocks[lane];
            let start = now + b.take(37, now);
            started.push(start);
            clocks[lane] = start;
        }
        let end = *started.iter().max().unwrap_or(&t0);
        let secs = end.duration_since(t0).as_secs_f64();
        let ops = started.len() as f64 * 37.0;
        assert!(
            ops <= rate as f64 * secs + rate as f64 + 37.0,
            "{ops} ops in {secs} s"
        );
        assert!(
            ops >= rate as f64 * secs,
            "{ops} ops in {secs} s: the cap wastes time"
        );
    }
}
