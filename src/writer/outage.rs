//! What a lane does when its shard cannot be written.
//!
//! A batch that fails transiently (the connection was lost or killed, the
//! server restarts, is read-only for a moment, a lock conflict outlasted
//! its retries) was rolled back by the server, or it committed if only
//! the answer was lost: applying it again is right either way (see
//! [`super::lane`]). So [`ride_out`] keeps the batch and:
//!
//! 1. reconnects and applies it again at once, holding the lane's queue:
//!    a killed connection or a server back within a second costs nothing
//!    more;
//! 2. if that fails, the shard is down for a while, and the other shards
//!    must not wait for it: the lane now takes everything the coordinator
//!    sends and drops it, and retries the batch with backoff until the
//!    shard takes it.
//!
//! The lane reports no progress for anything it dropped, so the
//! checkpoint — the minimum over all lanes (`docs/architecture.md`,
//! "Checkpoint watermark") — stays at what this shard has applied, while
//! the other shards go on. Once the batch is applied: if nothing was
//! dropped the lane just goes on; otherwise it ends with the original
//! (transient) error and the attempt restarts from the checkpoint,
//! re-reading what this shard missed (the other shards get those changes
//! again, which versions make harmless).

use std::time::{Duration, Instant};

use super::lane::{LaneConfig, LaneError, LaneMsg, Pending};
use super::link::Link;
use super::queue::QueueRx;
use crate::checkpoint::LaneProgress;
use crate::db::{Backoff, DbError, Retry};

/// How long the first reconnect may take while the lane holds its queue.
const QUICK_CONNECT: Duration = Duration::from_secs(2);

/// What the lane dropped while its shard was down.
#[derive(Default)]
struct Dropped {
    ops: u64,
    /// The newest mark received before the first dropped operation.
    mark: Option<LaneProgress>,
}

impl Dropped {
    fn take(&mut self, msg: LaneMsg, cfg: &LaneConfig) {
        match msg {
            LaneMsg::Ops { .. } => self.ops += msg.ops() as u64,
            LaneMsg::Mark {
                seq,
                end,
                timestamp,
            } if self.ops == 0 => {
                self.mark = Some(LaneProgress {
                    lane: cfg.lane,
                    seq,
                    end,
                    timestamp,
                })
            }
            LaneMsg::Mark { .. } => {}
        }
    }
}

/// After `pending` failed with the transient `error`: applies it again
/// until the shard takes it, as the module docs describe. `Ok` when the
/// lane goes on, with the newest mark received meanwhile (everything
/// before it is applied); a lane error when it must stop: a definite
/// failure, the queue closed (shutdown) while the shard was down, or
/// operations were dropped (the attempt restarts from the checkpoint).
pub(super) async fn ride_out(
    link: &mut Link,
    cfg: &LaneConfig,
    rx: &mut QueueRx,
    pending: &mut Pending<'_>,
    error: DbError,
) -> Result<Option<LaneProgress>, LaneError> {
    let fail = |source: DbError| LaneError {
        shard: cfg.shard.clone(),
        lane: cfg.lane,
        source,
    };
    let cause = error
        .transient()
        .map_or("transient failure", |t| t.describe());
    tracing::warn!(shard = %cfg.shard, lane = cfg.lane, cause, error = %error, "write to the shard failed; reconnecting and applying the batch again");
    crate::metrics::global().retried("writer", cause);
    link.lost();
    match pending.apply_on(link, cfg, Some(QUICK_CONNECT)).await {
        Ok(()) => return Ok(None),
        Err(e) if e.retry() == Retry::Definite => return Err(fail(e)),
        Err(_) => link.lost(),
    }
    tracing::warn!(shard = %cfg.shard, lane = cfg.lane, cause, "shard unavailable: the other shards go on and the checkpoint waits for this one; its queued changes are dropped and read again from the checkpoint once it is back");
    let since = Instant::now();
    let mut dropped = Dropped::default();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    loop {
        let pause = tokio::time::sleep(backoff.next_delay());
        if drain_while(rx, pause, &mut dropped, cfg).await.is_none() {
            return Err(fail(error));
        }
        let again = pending.apply_on(link, cfg, None);
        match drain_while(rx, again, &mut dropped, cfg).await {
            None => return Err(fail(error)),
            Some(Ok(())) => break,
            Some(Err(e)) if e.retry() == Retry::Definite => return Err(fail(e)),
            Some(Err(e)) => {
                tracing::debug!(shard = %cfg.shard, lane = cfg.lane, error = %e, "shard still unavailable");
                crate::metrics::global().retried("writer", cause);
                link.lost();
            }
        }
    }
    let secs = since.elapsed().as_secs_f64();
    if dropped.ops == 0 {
        tracing::info!(shard = %cfg.shard, lane = cfg.lane, secs, "shard back; nothing was dropped, going on");
        return Ok(dropped.mark);
    }
    tracing::info!(shard = %cfg.shard, lane = cfg.lane, secs, dropped = dropped.ops, "shard back; resuming from the checkpoint to apply what it missed");
    Err(fail(error))
}

/// Drops what arrives until `work` finishes; `None` when the queue closed
/// first.
async fn drain_while<T>(
    rx: &mut QueueRx,
    work: impl std::future::Future<Output = T>,
    dropped: &mut Dropped,
    cfg: &LaneConfig,
) -> Option<T> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return Some(out),
            msg = rx.recv() => match msg {
                Some(msg) => dropped.take(msg, cfg),
                None => return None,
            },
        }
    }
}
