//! The throttle (`[throttle]`): spares the targets by holding writer
//! batches back, before they are applied, on two grounds:
//!
//! * **a rows/s cap** (`max_rows_per_sec`, over every shard of this
//!   process): a token bucket ([`Bucket`]) that refills at the cap and
//!   holds one second of it; a batch takes as many tokens as it has
//!   operations and waits while the bucket is in debt, so over any window
//!   the lanes start at most the cap times the window, plus one second of
//!   it, in batches;
//! * **a target server's replication lag** (`max_lag_secs`): [`lag`]
//!   checks each target server (`Seconds_Behind_Master`, or `lag_query`)
//!   and closes its gate while the lag is above the maximum or unknown;
//!   the lanes of that server's shards wait at the gate, the others go on.
//!
//! Every lane calls [`admit`] before it applies a batch (the copy's
//! writers too). Waiting there is safe: nothing is applied or
//! acknowledged meanwhile, so the checkpoint simply stays behind the
//! waiting lane (`docs/architecture.md`, "Checkpoint watermark" and
//! "Watching and throttling"); a full
//! lane queue then holds back the coordinator and the reader exactly as a
//! slow shard does. The wait is outside the batch's time limit and is no
//! stall ([`crate::metrics::board`]). A shutdown that finds a lane waiting
//! drains as usual: what was not applied within `shutdown_timeout_secs`
//! is applied again from the checkpoint.
//!
//! Why writes are held back is logged when it begins and ends, and shown
//! as `reshard_throttled{reason,server}`, `reshard_throttle_wait_seconds_total`
//! and `reshard_target_lag_seconds{server}`.

pub mod bucket;
pub mod lag;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use bucket::Bucket;
use lag::Gate;

use crate::config::Config;
use crate::metrics;
use crate::task::Background;
use crate::writer::LaneConfig;

/// The process's throttle, once [`install`]ed.
static THROTTLE: OnceLock<Throttle> = OnceLock::new();

/// Log the rows/s cap holding lanes back at most this often.
const RATE_LOG_EVERY: Duration = Duration::from_secs(30);

struct Throttle {
    bucket: Option<Mutex<Bucket>>,
    cap: u64,
    /// Shard → the gate of its server (only with `max_lag_secs`).
    gates: lag::Gates,
    /// Lanes waiting for the cap now.
    rate_waiters: AtomicUsize,
    /// When the cap was last logged, in ms after `origin` (+1; 0: never).
    rate_logged: AtomicU64,
    origin: Instant,
}

/// Sets up the throttle of this process from `[throttle]` and starts the
/// lag checks; the returned tasks end them when dropped. Nothing when no
/// throttle is configured (then [`admit`] returns at once).
pub fn install(cfg: &Config) -> Vec<Background> {
    let t = &cfg.throttle;
    if !t.enabled() {
        return Vec::new();
    }
    let (gates, tasks) = match t.max_lag {
        Some(max) => lag::start(cfg, max),
        None => (HashMap::new(), Vec::new()),
    };
    let throttle = Throttle {
        bucket: (t.max_rows_per_sec > 0).then(|| Mutex::new(Bucket::new(t.max_rows_per_sec))),
        cap: t.max_rows_per_sec,
        gates,
        rate_waiters: AtomicUsize::new(0),
        rate_logged: AtomicU64::new(0),
        origin: Instant::now(),
    };
    if THROTTLE.set(throttle).is_err() {
        tracing::debug!("the throttle was set up before; keeping the first");
    }
    tracing::info!(
        max_rows_per_sec = t.max_rows_per_sec,
        max_lag_secs = t.max_lag.map_or(0, |d| d.as_secs()),
        "throttle on"
    );
    tasks
}

/// Waits until lane `lane` may apply a batch of `rows` operations (see the
/// module docs). Returns at once without a throttle.
pub async fn admit(lane: &LaneConfig, rows: usize) {
    if let Some(t) = THROTTLE.get() {
        t.admit(lane, rows).await;
    }
}

impl Throttle {
    async fn admit(&self, lane: &LaneConfig, rows: usize) {
        let m = metrics::global();
        if let Some((server, gate)) = self.gates.get(&lane.shard) {
            let mut gate = gate.clone();
            if !gate.borrow().open() {
                let started = Instant::now();
                m.board.lane_throttled(lane.lane, true);
                // the checker never drops its sender while the throttle
                // lives; if it did, the gate is as good as open
                let _ = gate.wait_for(Gate::open).await;
                m.board.lane_throttled(lane.lane, false);
                let waited = started.elapsed().as_secs_f64();
                m.throttle_wait_seconds
                    .with_label_values(&["lag"])
                    .inc_by(waited);
                tracing::debug!(shard = %lane.shard, lane = lane.lane, server = %server, waited_s = waited, "lag throttle released the lane");
            }
        }
        let Some(bucket) = &self.bucket else {
            return;
        };
        let wait = {
            let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
            b.take(rows as u64, Instant::now())
        };
        if wait.is_zero() {
            return;
        }
        self.rate_wait(lane, wait).await;
    }

    /// Holds a lane back for the rows/s cap.
    async fn rate_wait(&self, lane: &LaneConfig, wait: Duration) {
        let m = metrics::global();
        let gauge = m.throttled.with_label_values(&["rate", ""]);
        if self.rate_waiters.fetch_add(1, Ordering::Relaxed) == 0 {
            gauge.set(1);
        }
        self.log_rate(wait);
        m.board.lane_throttled(lane.lane, true);
        tokio::time::sleep(wait).await;
        m.board.lane_throttled(lane.lane, false);
        m.throttle_wait_seconds
            .with_label_values(&["rate"])
            .inc_by(wait.as_secs_f64());
        if self.rate_waiters.fetch_sub(1, Ordering::Relaxed) == 1 {
            gauge.set(0);
        }
    }

    fn log_rate(&self, wait: Duration) {
        let now = self.origin.elapsed().as_millis() as u64 + 1;
        let last = self.rate_logged.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= RATE_LOG_EVERY.as_millis() as u64;
        if due
            && self
                .rate_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::info!(
                max_rows_per_sec = self.cap,
                wait_ms = wait.as_millis() as u64,
                "throttled: the rows/s cap holds writer batches back (logged at most every 30 s)"
            );
        }
    }
}
