//! The coordinator of one streaming attempt: one method per event.
//!
//! The event loop ([`Coordinator::run`]) waits, in priority order (a
//! `biased` select), for: shutdown, a lane that ended, lane progress, the
//! tick, and the next source item (a chunk of a transaction's rows, a
//! transaction's end, or a heartbeat). Each event
//! is handled by its own method; the state they share is the
//! [`Bookkeeping`] (what was dispatched, marked, applied and saved), the
//! [`Tracker`] (the watermark over the lanes) and the [`LanePool`] (where
//! operations go). When the loop ends, [`Coordinator::drain`] closes the
//! lanes and saves the last watermark.
//!
//! Why the saved checkpoint is safe is argued in `docs/architecture.md`,
//! "Checkpoint watermark", and in [`crate::checkpoint::bookkeeping`]: the
//! coordinator only saves watermarks, and a mark is queued only after
//! every operation of its transaction was queued.
//!
//! # Large transactions
//!
//! A transaction's rows arrive in bounded chunks ([`SourceItem::Rows`])
//! and are routed and queued chunk by chunk; its number is only taken when
//! its end arrives ([`SourceItem::Transaction`]), after every chunk was
//! queued. Everything between the reader and the targets is bounded (the
//! reader's channel, the chunks, the lane queues), so the slowest lane
//! holds back the coordinator, which holds back the reader, which stops
//! reading the source (`docs/architecture.md`, "Large transactions").
//!
//! # Progress under load
//!
//! The tick comes before the source in the priority order, so a source
//! that always has a transaction ready (a catch-up, a burst) cannot starve
//! it: marks, checkpoints and progress lines come on time whatever the
//! load. While a transaction is being queued and a lane's queue is full
//! ([`Coordinator::send_slice`]), the coordinator still handles lane progress,
//! the tick and shutdown; a shutdown then abandons the half-queued
//! transaction, which is not marked and so is applied again, whole, after
//! the checkpoint.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::time::Interval;

use super::reader::SourceRx;
use super::{Attempt, Outcome, PipelineError, Stage};
use crate::checkpoint::bookkeeping::{Advance, Bookkeeping, Saves};
use crate::checkpoint::{Checkpoint, LaneProgress, Tracker};
use crate::config::OnDeriveError;
use crate::control::{self, lease};
use crate::monitor::waits::{Side, Waits};
use crate::position::Position;
use crate::rules::RouteError;
use crate::source::{Chunk, RowChange, SourceError, SourceItem, Transaction};
use crate::writer::pool::{LaneExit, LanePool, SLICE_BYTES};
use crate::writer::{Stats, WriteOp};

/// What an event handler tells the loop: go on, or end the attempt.
type Flow = ControlFlow<Result<Outcome, PipelineError>>;

/// How queueing a transaction's operations ended.
enum Queued {
    /// Every operation is on its lane.
    All,
    /// A lane is gone; its error surfaces from `join_next`.
    LaneGone,
    /// Shutdown was requested while a lane's queue was full.
    Shutdown,
}

/// Throughput between two progress lines.
struct Report {
    at: Instant,
    ops: u64,
    /// Where the coordinator waited since ([`crate::monitor::waits`]).
    waits: Waits,
}

/// The state of one attempt between its start and its drain.
pub(super) struct Coordinator<'a> {
    a: Attempt<'a>,
    lanes: LanePool,
    progress: mpsc::UnboundedReceiver<LaneProgress>,
    tracker: Tracker,
    book: Bookkeeping,
    stats: Arc<Stats>,
    report: Report,
    dead_letters: u64,
    /// Rows of a transaction were queued and its end was not read yet.
    open: bool,
    /// A lane was gone while the open transaction's rows were queued.
    lost: bool,
    /// When the control connection last proved it holds the lease.
    lease_checked: Instant,
    /// Marks, checkpoints and progress lines.
    ticker: Interval,
}

impl<'a> Coordinator<'a> {
    pub(super) fn new(
        a: Attempt<'a>,
        lanes: LanePool,
        progress: mpsc::UnboundedReceiver<LaneProgress>,
        stats: Arc<Stats>,
        start: Position,
    ) -> Self {
        let book = Bookkeeping::new(
            start.clone(),
            a.saves.clone(),
            a.cfg.pipeline.tombstone_retention,
        );
        if let (Saves::Past(checkpoint), Saves::Nothing) = (&a.saves, book.saves()) {
            tracing::warn!(start = %start, checkpoint = %checkpoint, "the replay starts past the checkpoint: the transactions between were never applied, so the checkpoint stays where it is and the next `run` applies from there (the replayed range again too, which is harmless)");
        }
        let linger = a.cfg.pipeline.linger;
        let mut ticker = tokio::time::interval(
            Duration::from_millis(100).min(linger.max(Duration::from_millis(10))),
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Coordinator {
            tracker: Tracker::new(lanes.len()),
            a,
            lanes,
            progress,
            book,
            stats,
            report: Report {
                at: Instant::now(),
                ops: 0,
                waits: Waits::default(),
            },
            dead_letters: 0,
            open: false,
            lost: false,
            lease_checked: Instant::now(),
            ticker,
        }
    }

    /// The event loop, until shutdown, `stop_at`, or an error.
    ///
    /// The order of the arms is a priority (`biased`): shutdown first, then
    /// lane failures, lane progress, the tick, and source items last — a
    /// source that always has an item ready cannot starve the tick.
    pub(super) async fn run(&mut self, mut source: SourceRx) -> Result<Outcome, PipelineError> {
        loop {
            // nothing to take: waiting for the source (or caught up)
            let waiting = source.is_empty().then_some(Side::Source);
            let since = Instant::now();
            let flow = tokio::select! {
                biased;
                _ = self.a.shutdown.changed() => {
                    let requested = *self.a.shutdown.borrow();
                    self.shutdown(requested)
                }
                Some(exit) = self.lanes.join_next() => ControlFlow::Break(Err(lane_failure(exit))),
                Some(p) = self.progress.recv() => {
                    self.report.waits.add_since(waiting, since);
                    self.lane_progress(p)
                }
                _ = self.ticker.tick() => {
                    self.report.waits.add_since(waiting, since);
                    match self.tick().await {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(e) => ControlFlow::Break(Err(e)),
                    }
                }
                item = source.recv() => {
                    self.report.waits.add_since(waiting, since);
                    self.source_item(item).await
                }
            };
            if let ControlFlow::Break(result) = flow {
                return result;
            }
        }
    }

    /// The shutdown signal changed: end the attempt when it is set.
    fn shutdown(&mut self, requested: bool) -> Flow {
        if requested {
            ControlFlow::Break(Ok(Outcome::Shutdown))
        } else {
            ControlFlow::Continue(())
        }
    }

    /// A lane reported that it applied everything before a mark.
    fn lane_progress(&mut self, p: LaneProgress) -> Flow {
        self.tracker.update(p);
        ControlFlow::Continue(())
    }

    async fn source_item(&mut self, item: Option<Result<SourceItem, SourceError>>) -> Flow {
        match item {
            None => ControlFlow::Break(Err(PipelineError::ReaderStopped)),
            Some(Err(e)) => ControlFlow::Break(Err(e.into())),
            Some(Ok(SourceItem::Heartbeat(pos))) => self.heartbeat(pos),
            Some(Ok(SourceItem::Rows(chunk))) => self.rows(chunk).await,
            Some(Ok(SourceItem::Transaction(txn))) => self.transaction(txn),
        }
    }

    /// The source is idle (see [`Bookkeeping::heartbeat`]).
    fn heartbeat(&mut self, pos: Option<Position>) -> Flow {
        self.book.heartbeat(pos);
        ControlFlow::Continue(())
    }

    /// A chunk of a committed transaction's rows: route them and queue
    /// their operations. The transaction counts only once its end is
    /// queued ([`Coordinator::transaction`]), so a mark queued meanwhile
    /// names the transaction before it.
    async fn rows(&mut self, chunk: Chunk) -> Flow {
        if !self.open {
            self.book.begin_transaction();
            self.open = true;
        }
        let mut changes = chunk.changes;
        match self.dispatch(&mut changes).await {
            Err(e) => ControlFlow::Break(Err(e)),
            Ok(Queued::All) => ControlFlow::Continue(()),
            // a lane is gone: its error surfaces from join_next; the
            // transaction is never marked
            Ok(Queued::LaneGone) => {
                self.lost = true;
                ControlFlow::Continue(())
            }
            Ok(Queued::Shutdown) => ControlFlow::Break(Ok(Outcome::Shutdown)),
        }
    }

    /// The end of a committed source transaction, after its rows: it is
    /// dispatched; ends the attempt once the transaction ending at
    /// `stop_at` is queued.
    fn transaction(&mut self, txn: Transaction) -> Flow {
        if !self.open {
            self.book.begin_transaction();
        }
        self.open = false;
        if std::mem::take(&mut self.lost) {
            // not all of it was queued: never marked
            return ControlFlow::Continue(());
        }
        self.book
            .dispatched(txn.end.clone(), txn.resume, txn.timestamp);
        match &self.a.stop_at {
            Some(stop) if txn.end >= *stop => ControlFlow::Break(Ok(Outcome::ReachedEnd)),
            _ => ControlFlow::Continue(()),
        }
    }

    /// Routes row changes and queues the operations on their lanes. The
    /// changes' values move into the operations
    /// ([`crate::rules::Router::route_into`]), and the operations go to
    /// each lane in slices ([`LanePool::send_slice`]): all of them are
    /// queued before this returns [`Queued::All`], so the transaction's
    /// end, and a mark after it, follow every one of them.
    async fn dispatch(&mut self, changes: &mut [RowChange]) -> Result<Queued, PipelineError> {
        if !changes.is_empty() && !self.a.lookups.is_empty() {
            self.a.lookups.refresh(self.a.control).await?;
        }
        let mut ops = Vec::with_capacity(2);
        // about a lane's share of the chunk's operations (an update may make two)
        let share = changes.len() * 2 / self.lanes.len().max(1) + 1;
        let mut slices: Vec<Vec<WriteOp>> = (0..self.lanes.len())
            .map(|l| Vec::with_capacity(share.min(self.lanes.slice_len(l))))
            .collect();
        // the bytes of each slice: wide rows end a slice before its count
        let mut bytes = vec![0; slices.len()];
        for change in changes {
            let a = &mut self.a;
            let p = &a.cfg.pipeline;
            if a.floor.is_some_and(|floor| change.version < floor) {
                *a.skipped += 1;
                continue;
            }
            match a.router.route_into(change, &*a.lookups, &mut ops) {
                Ok(()) => {}
                Err(e @ RouteError::Derive { .. })
                    if p.on_derive_error == OnDeriveError::DeadLetter =>
                {
                    control::dead_letter::record(a.control, &p.name, change, &e).await?;
                    self.dead_letters += 1;
                    continue;
                }
                Err(error) => {
                    return Err(PipelineError::Route {
                        error,
                        stage: Stage::Stream,
                    })
                }
            };
            for op in ops.drain(..) {
                // None: another process applies its shard
                let Some(l) = self.lanes.lane_of(&op) else {
                    continue;
                };
                bytes[l] += op.bytes();
                slices[l].push(op);
                if slices[l].len() >= self.lanes.slice_len(l) || bytes[l] >= SLICE_BYTES {
                    match self.send_slice(l, &mut slices[l], bytes[l]).await? {
                        Queued::All => bytes[l] = 0,
                        other => return Ok(other),
                    }
                }
            }
        }
        for (l, (slice, bytes)) in slices.iter_mut().zip(bytes).enumerate() {
            match self.send_slice(l, slice, bytes).await? {
                Queued::All => {}
                other => return Ok(other),
            }
        }
        Ok(Queued::All)
    }

    /// Queues a slice of operations on lane `lane`. While the lane's queue
    /// is full, lane progress, the tick and shutdown are still handled (in
    /// that order), so neither a large transaction nor a slow shard holds
    /// back checkpoints, progress lines or a shutdown.
    async fn send_slice(
        &mut self,
        lane: usize,
        slice: &mut Vec<WriteOp>,
        bytes: usize,
    ) -> Result<Queued, PipelineError> {
        while !slice.is_empty() {
            // (while the lane's queue is full: the targets are behind)
            let since = Instant::now();
            tokio::select! {
                biased;
                _ = self.a.shutdown.changed() => {
                    if *self.a.shutdown.borrow() {
                        return Ok(Queued::Shutdown);
                    }
                }
                Some(p) = self.progress.recv() => {
                    self.report.waits.add_since(Some(Side::Targets), since);
                    self.tracker.update(p)
                }
                _ = self.ticker.tick() => {
                    self.report.waits.add_since(Some(Side::Targets), since);
                    self.tick().await?
                }
                sent = self.lanes.send_slice(lane, slice, bytes) => {
                    self.report.waits.add_since(Some(Side::Targets), since);
                    if sent.is_err() {
                        return Ok(Queued::LaneGone);
                    }
                }
            }
        }
        Ok(Queued::All)
    }

    /// The tick: queue a mark for what was dispatched, save a new
    /// watermark, and log progress. Also runs while a transaction is half
    /// queued: the mark then names the transaction before it.
    async fn tick(&mut self) -> Result<(), PipelineError> {
        if let Some(m) = self.book.mark_due() {
            if self
                .lanes
                .mark(m.seq, &m.resume, m.timestamp)
                .await
                .is_err()
            {
                // a lane is gone; its error surfaces from join_next
                return Ok(());
            }
            self.book.marked(&m);
        }
        if let Some(w) = self.tracker.watermark().cloned() {
            if let Some(adv) = self.book.advance(&w, Instant::now()) {
                self.persist(&w, &adv, true).await?;
            }
        }
        self.check_lease().await?;
        self.report_progress();
        Ok(())
    }

    /// Every [`lease::CHECK_EVERY`]: the control connection still holds
    /// the lease (which also keeps it from idling past `wait_timeout`, and
    /// notices a dead one; see [`crate::control::lease`]).
    async fn check_lease(&mut self) -> Result<(), PipelineError> {
        if self.lease_checked.elapsed() < lease::CHECK_EVERY {
            return Ok(());
        }
        let claim = lease::Claim::of(self.a.cfg);
        let check = lease::holds(self.a.control, &claim);
        match tokio::time::timeout(lease::CHECK_TIMEOUT, check).await {
            Ok(Ok(true)) => {
                self.lease_checked = Instant::now();
                Ok(())
            }
            Ok(Ok(false)) => Err(PipelineError::LeaseLost("not held any more")),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(PipelineError::LeaseLost(
                "the control connection does not answer",
            )),
        }
    }

    /// Saves a new watermark as the checkpoint (when allowed) and, when due
    /// and `log` is set, records its commit time in the position log. A
    /// control connection that does not answer within
    /// [`lease::CHECK_TIMEOUT`] is presumed dead, with the lease it held.
    async fn persist(
        &mut self,
        w: &LaneProgress,
        adv: &Advance,
        log: bool,
    ) -> Result<(), PipelineError> {
        tokio::time::timeout(lease::CHECK_TIMEOUT, self.save(w, adv, log))
            .await
            .unwrap_or(Err(PipelineError::LeaseLost(
                "the control connection does not answer",
            )))
    }

    async fn save(
        &mut self,
        w: &LaneProgress,
        adv: &Advance,
        log: bool,
    ) -> Result<(), PipelineError> {
        let name = &self.a.cfg.pipeline.name;
        if let Some(pos) = &adv.save {
            let cp = Checkpoint {
                position: pos.clone(),
                epoch: self.a.cfg.pipeline.epoch,
                source_identity: self.a.source_identity.clone(),
            };
            control::checkpoint::save_progress(self.a.control, name, &cp, adv.timestamp).await?;
            self.book.saved(pos.clone());
        }
        if log && adv.log_position {
            let epoch = self.a.cfg.pipeline.epoch;
            control::position_log::record(self.a.control, name, epoch, &w.end, w.timestamp).await?;
            self.book.logged(Instant::now());
        }
        Ok(())
    }

    fn report_progress(&mut self) {
        let p = &self.a.cfg.pipeline;
        if self.report.at.elapsed() < p.progress_interval {
            return;
        }
        let ops = self.stats.ops_applied.load(Ordering::Relaxed);
        let elapsed = self.report.at.elapsed();
        let secs = elapsed.as_secs_f64();
        let waits = self.report.waits;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        tracing::info!(
            position = %self.book.dispatched_end(),
            checkpoint = %self.book.checkpoint(),
            lag_s = self.book.lag_secs(now),
            rows_per_s = ((ops - self.report.ops) as f64 / secs).round(),
            dead_letters = self.dead_letters,
            waited_for_source_pct = Waits::percent(waits.source, elapsed),
            waited_for_targets_pct = Waits::percent(waits.targets, elapsed),
            bound_by = waits.bound_by(elapsed),
            "progress"
        );
        self.report = Report {
            at: Instant::now(),
            ops,
            waits: Waits::default(),
        };
    }

    /// Ends the attempt. After an error the lanes are stopped at once;
    /// otherwise the last mark is queued, the lanes apply what they hold
    /// and the last watermark is saved, all within `shutdown_timeout`
    /// (what is not applied by then is applied again after the checkpoint).
    pub(super) async fn drain(
        mut self,
        result: Result<Outcome, PipelineError>,
    ) -> Result<Outcome, PipelineError> {
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                self.lanes.close();
                self.lanes.abort();
                return Err(e);
            }
        };
        let deadline = tokio::time::Instant::now() + self.a.cfg.pipeline.shutdown_timeout;
        if let Some(m) = self.book.mark_due() {
            // the queues may be full: queueing the mark counts against the
            // deadline too
            let mark = self.lanes.mark(m.seq, &m.resume, m.timestamp);
            if let Ok(Ok(())) = tokio::time::timeout_at(deadline, mark).await {
                self.book.marked(&m);
            }
        }
        self.lanes.close();
        let lane_error = self.wait_for_lanes(deadline).await;
        while let Ok(p) = self.progress.try_recv() {
            self.tracker.update(p);
        }
        if let Some(w) = self.tracker.watermark().cloned() {
            if let Some(adv) = self.book.advance(&w, Instant::now()) {
                self.persist(&w, &adv, false).await?;
            }
        }
        tracing::info!(checkpoint = %self.book.checkpoint(), "drained");
        if let Some(e) = lane_error {
            return Err(e);
        }
        if outcome == Outcome::ReachedEnd {
            if let Some(stop) = &self.a.stop_at {
                let applied = self.book.applied();
                if applied < stop {
                    return Err(PipelineError::StoppedShort {
                        stop: stop.clone(),
                        applied: applied.clone(),
                    });
                }
            }
        }
        Ok(outcome)
    }

    /// Waits for the closed lanes to finish, collecting their progress;
    /// returns the last lane failure.
    async fn wait_for_lanes(&mut self, deadline: tokio::time::Instant) -> Option<PipelineError> {
        let mut lane_error = None;
        loop {
            tokio::select! {
                exit = self.lanes.join_next() => match exit {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(other) => lane_error = Some(lane_failure(other)),
                },
                Some(p) = self.progress.recv() => self.tracker.update(p),
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!("drain timed out; unapplied batches will be re-applied from the checkpoint");
                    self.lanes.abort();
                    break;
                }
            }
        }
        lane_error
    }
}

/// The error of a lane that ended (also the initial copy's).
pub(crate) fn lane_failure(exit: LaneExit) -> PipelineError {
    match exit {
        Ok(Ok(())) => PipelineError::LaneStopped,
        Ok(Err(e)) => PipelineError::Lane(e),
        Err(e) => PipelineError::LaneCrashed(e),
    }
}
