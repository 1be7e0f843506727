//! The copy's dispatcher: routes each page's rows into upserts at the
//! copy's version v(P), queues them on the writer lanes (the very lanes
//! streaming uses, [`crate::writer::LanePool`]) and then a mark; saves a
//! unit's progress once the lanes have applied it.
//!
//! # Why saved progress never runs ahead of the targets
//!
//! Pages are numbered in the order they are dispatched, and page *n*'s
//! mark follows all its operations in every lane's FIFO queue. When every
//! lane has reported mark *n* ([`Tracker`]), every page up to *n* is
//! committed on every shard ("Checkpoint watermark" in
//! `docs/architecture.md`, with pages in place of transactions). Only then
//! does a unit's cursor move to the last key of its page. A unit's pages
//! come from one reader in key order ([`super::read`]), so the saved
//! cursor only moves forward and every key at or below it is applied; a
//! crash re-reads the pages after it, and re-applying one is harmless
//! (versions). Saves are coalesced ([`SAVE_EVERY`]): a saved cursor may
//! lag the applied one by a quarter of a second, which only means a few
//! more pages re-read after a crash.
//!
//! # Whole batches, one message each
//!
//! The dispatcher does the lanes' batching itself: it keeps each lane's
//! operations ([`LaneBuf`]) until they make a full batch, then queues them
//! in one message ([`LanePool::send_to`]), so a lane gets one message per
//! batch rather than one per row, and every batch — every upsert
//! statement — has the same number of rows (one prepared statement per
//! table instead of one per batch length), unless its rows reach
//! [`BATCH_BYTES`] first (wide rows, where a batch is held by its
//! bytes). A lane's mark therefore names
//! the last page *all* of whose operations for that lane were queued:
//! page *n* once its buffer is empty, else the page before the oldest
//! operation it still holds ([`Dispatcher::mark_lanes`]). Each lane's mark
//! still follows every operation it covers in that lane's FIFO queue, so
//! the watermark argument above holds unchanged; a lane whose buffer
//! fills slowly only holds the watermark back. To bound that (and the
//! rows held), at most [`Dispatcher::max_pending`] pages wait for their
//! lanes: no page is dispatched while that many are not applied, and
//! once every lane has also reported every mark it was sent (so no
//! progress can come), every buffer is queued as it is and marked up to
//! the last page ([`Dispatcher::unstick`]), as it is once the readers
//! are done ([`Dispatcher::flush_all`]). While the lanes are the slower
//! side, every batch is full.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_common::value::Value;
use tokio::sync::mpsc;

use super::plan::Plan;
use super::read::Page;
use super::Copy;
use crate::checkpoint::{LaneProgress, Tracker};
use crate::config::{Config, OnDeriveError};
use crate::control;
use crate::monitor::waits::{Side, Waits};
use crate::pipeline::{lane_failure, PipelineError};
use crate::position::Position;
use crate::rules::RouteError;
use crate::source::RowChange;
use crate::version::Version;
use crate::writer::queue::BATCH_BYTES;
use crate::writer::{LanePool, WriteOp};

/// Applied progress is saved at least this often (and whenever a unit
/// finishes, and once everything dispatched is applied): a save per page
/// was a round trip and a commit on the control database per 1000 rows.
const SAVE_EVERY: Duration = Duration::from_millis(250);

/// A dispatched page, until the lanes applied it.
struct Sent {
    seq: u64,
    unit: usize,
    rows: u64,
    cursor: Option<Vec<Value>>,
    finished: bool,
}

/// One lane's operations not queued yet (see the module docs).
struct LaneBuf {
    ops: Vec<WriteOp>,
    /// Their [`WriteOp::bytes`] together.
    bytes: usize,
    /// The page of the oldest of them.
    first_page: u64,
    /// The last mark queued on the lane, and the last it reported.
    marked: u64,
    reported: u64,
    /// Operations per batch of the lane (the copy's batch size,
    /// `snapshot_batch_rows`, per shard it serves: [`Config::for_copy`]).
    batch: usize,
}

impl LaneBuf {
    /// The last page all of whose operations for this lane are queued,
    /// once pages up to `seq` were dispatched: `seq` when nothing is
    /// buffered, else the page before the oldest buffered operation.
    fn covered(&self, seq: u64) -> u64 {
        if self.ops.is_empty() {
            seq
        } else {
            self.first_page.saturating_sub(1)
        }
    }
}

/// The dispatcher's state (see the module docs).
pub struct Dispatcher {
    pool: LanePool,
    bufs: Vec<LaneBuf>,
    /// Pages dispatched and not yet applied before every buffer is queued
    /// as it is.
    max_pending: usize,
    progress: mpsc::UnboundedReceiver<LaneProgress>,
    tracker: Tracker,
    /// The last page dispatched.
    seq: u64,
    pending: VecDeque<Sent>,
    version: Version,
    started: Instant,
    /// Rows dispatched by this run (the throttle's count).
    dispatched: u64,
    report: Report,
    /// Units whose applied progress is not saved yet, and when progress
    /// was last saved ([`SAVE_EVERY`]).
    unsaved: Vec<usize>,
    saved_at: Instant,
    /// The operations of the row being routed (a reused buffer).
    routed: Vec<WriteOp>,
    /// Where it waited, and for whom ([`crate::monitor::waits`]).
    waits: Waits,
}

impl Dispatcher {
    /// `batches` is each lane's batch size, in the pool's lane order
    /// ([`lane_batches`]); `page` the rows of a page.
    pub fn new(
        pool: LanePool,
        progress: mpsc::UnboundedReceiver<LaneProgress>,
        version: Version,
        plan: &Plan,
        batches: Vec<usize>,
        page: usize,
    ) -> Dispatcher {
        let lanes = pool.len();
        let per_lane = batches.iter().copied().max().unwrap_or(1).max(1);
        // a lane's buffer fills in about lanes × batch / page pages: let
        // twice that (and two more) wait before forcing partial batches
        let fill = (lanes * per_lane).div_ceil(page.max(1));
        let bufs = (0..lanes)
            .map(|l| LaneBuf {
                ops: Vec::new(),
                bytes: 0,
                first_page: 0,
                marked: 0,
                reported: 0,
                batch: batches.get(l).copied().unwrap_or(per_lane).max(1),
            })
            .collect();
        Dispatcher {
            tracker: Tracker::new(lanes),
            pool,
            bufs,
            max_pending: 2 * fill + 2,
            progress,
            seq: 0,
            pending: VecDeque::new(),
            version,
            started: Instant::now(),
            dispatched: 0,
            report: Report::new(plan),
            unsaved: Vec::new(),
            saved_at: Instant::now(),
            routed: Vec::new(),
            waits: Waits::default(),
        }
    }

    /// Whether another page may be dispatched now (see the module docs).
    pub fn has_room(&self) -> bool {
        self.pending.len() < self.max_pending
    }

    /// What the dispatcher would wait for now: room, when it has none;
    /// else a page, when `no_page` (none is ready); else nothing.
    pub fn waiting_for(&self, no_page: bool) -> Option<Side> {
        if !self.has_room() {
            Some(Side::Targets)
        } else if no_page {
            Some(Side::Source)
        } else {
            None
        }
    }

    /// It waited `since` then for `side` ([`Dispatcher::waiting_for`]).
    pub fn waited(&mut self, side: Option<Side>, since: Instant) {
        self.waits.add_since(side, since);
    }

    /// Its waits so far and how long it has run.
    pub fn waits(&self) -> (Waits, Duration) {
        (self.waits, self.started.elapsed())
    }

    /// Whether every dispatched page is applied.
    pub fn all_applied(&self) -> bool {
        self.tracker.watermark().map_or(0, |w| w.seq) >= self.seq
    }

    /// The pool's next lane exit, as the copy's error.
    async fn lane_exited(&mut self) -> PipelineError {
        self.pool
            .join_next()
            .await
            .map_or(PipelineError::LaneStopped, lane_failure)
    }

    /// The next progress a lane reports; a lane that ends is an error
    /// (lanes end only once closed).
    pub async fn next_progress(&mut self) -> Result<LaneProgress, PipelineError> {
        tokio::select! {
            biased;
            exit = self.pool.join_next() => Err(exit.map_or(PipelineError::LaneStopped, lane_failure)),
            Some(p) = self.progress.recv() => Ok(p),
        }
    }

    /// Routes a page, queues its operations and its mark (waiting while
    /// a lane's queue is full), then throttles.
    pub async fn dispatch(
        &mut self,
        c: &mut Copy<'_>,
        plan: &Plan,
        page: Page,
    ) -> Result<(), PipelineError> {
        let unit = &plan.units[page.unit];
        let schema = plan.tables[unit.table].reader.schema().clone();
        if !c.lookups.is_empty() {
            c.lookups.refresh(c.control).await?;
        }
        let rows = page.rows.len() as u64;
        let file: Arc<str> = Arc::from(c.position.file.as_str());
        self.seq += 1;
        let mut ops = std::mem::take(&mut self.routed);
        for row in page.rows {
            let mut change = RowChange::selected(schema.clone(), row, self.version, file.clone());
            // routed in place; only a row the rule cannot route awaits
            // (its dead letter is written)
            if let Err(e) = c.router.route_into(&mut change, &*c.lookups, &mut ops) {
                unrouted(c, &change, e).await?;
            }
            for op in ops.drain(..) {
                // queued in place; only a full batch awaits its lane
                let full = self.buffer(op).map_err(|NoBuffer(l)| {
                    PipelineError::Definite(format!("the copy has no buffer for lane {l}"))
                })?;
                if let Some(l) = full {
                    self.send(l).await?;
                }
            }
        }
        self.routed = ops;
        self.mark_lanes(&c.position).await?;
        self.pending.push_back(Sent {
            seq: self.seq,
            unit: page.unit,
            rows,
            cursor: page.cursor,
            finished: page.finished,
        });
        self.dispatched += rows;
        self.unstick(&c.position).await?;
        self.throttle(c.cfg.pipeline.snapshot_rows_per_sec).await;
        Ok(())
    }

    /// Adds an operation of the current page to its lane's buffer; the
    /// lane whose buffer now makes a batch, to be queued ([`Self::send`]).
    /// An operation for a shard another process applies is dropped (it
    /// has no lane here). Not `async`: the operation is moved once,
    /// not into a future first.
    fn buffer(&mut self, op: WriteOp) -> Result<Option<usize>, NoBuffer> {
        let Some(l) = self.pool.lane_index(&op) else {
            return Ok(None);
        };
        let Some(b) = self.bufs.get_mut(l) else {
            return Err(NoBuffer(l));
        };
        if b.ops.is_empty() {
            b.first_page = self.seq;
        }
        b.bytes += op.bytes();
        b.ops.push(op);
        Ok((b.ops.len() >= b.batch || b.bytes >= BATCH_BYTES).then_some(l))
    }

    /// Queues lane `l`'s buffer.
    async fn send(&mut self, l: usize) -> Result<(), PipelineError> {
        let Some(b) = self.bufs.get_mut(l) else {
            return Ok(());
        };
        let ops = std::mem::replace(&mut b.ops, Vec::with_capacity(b.batch));
        let bytes = std::mem::take(&mut b.bytes);
        // (a full lane queue: the targets are behind)
        let since = Instant::now();
        let sent = self.pool.send_to(l, ops, bytes).await;
        self.waited(Some(Side::Targets), since);
        if sent.is_err() {
            return Err(self.lane_exited().await);
        }
        Ok(())
    }

    /// Queues on each lane the mark of the last page all of whose
    /// operations for it are queued (see the module docs).
    async fn mark_lanes(&mut self, position: &Position) -> Result<(), PipelineError> {
        for l in 0..self.bufs.len() {
            let b = &self.bufs[l];
            let done = b.covered(self.seq);
            if done > b.marked {
                self.bufs[l].marked = done;
                let since = Instant::now();
                let marked = self.pool.mark_lane(l, done, position, 0).await;
                self.waited(Some(Side::Targets), since);
                if marked.is_err() {
                    return Err(self.lane_exited().await);
                }
            }
        }
        Ok(())
    }

    /// When [`Dispatcher::max_pending`] pages wait and every lane has
    /// reported every mark it was sent, nothing more will be applied
    /// until the buffers are queued: queues them as they are.
    async fn unstick(&mut self, position: &Position) -> Result<(), PipelineError> {
        // (a closed pool, while closing, takes nothing more)
        if self.has_room()
            || self.pool.is_empty()
            || self.bufs.iter().any(|b| b.reported < b.marked)
        {
            return Ok(());
        }
        self.flush_all(position).await
    }

    /// Queues every buffer as it is and marks every lane up to the last
    /// page dispatched: after the last page, and when too many pages wait.
    pub async fn flush_all(&mut self, position: &Position) -> Result<(), PipelineError> {
        for l in 0..self.bufs.len() {
            if !self.bufs[l].ops.is_empty() {
                self.send(l).await?;
            }
        }
        self.mark_lanes(position).await
    }

    /// Waits as long as `rows_per_sec` (0: no limit) asks.
    async fn throttle(&mut self, rows_per_sec: u64) {
        if rows_per_sec == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.dispatched as f64 / rows_per_sec as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(wait).await;
            self.waits.add(Side::Throttle, wait);
        }
    }

    /// Takes a lane's progress and saves every unit whose pages the lanes
    /// have now applied.
    pub async fn applied(
        &mut self,
        c: &mut Copy<'_>,
        plan: &mut Plan,
        p: LaneProgress,
    ) -> Result<(), PipelineError> {
        if let Some(b) = self.bufs.get_mut(p.lane) {
            b.reported = b.reported.max(p.seq);
        }
        self.tracker.update(p);
        let Some(w) = self.tracker.watermark().map(|w| w.seq) else {
            return self.unstick(&c.position).await;
        };
        let mut dirty: Vec<usize> = Vec::new();
        while self.pending.front().is_some_and(|s| s.seq <= w) {
            let Some(s) = self.pending.pop_front() else {
                break;
            };
            let u = &mut plan.units[s.unit];
            u.rows += s.rows;
            if s.cursor.is_some() {
                u.cursor = s.cursor;
            }
            u.done = s.finished;
            self.report.rows += s.rows;
            crate::metrics::global().copied(&plan.tables[u.table].full, s.rows);
            if !dirty.contains(&s.unit) {
                dirty.push(s.unit);
            }
        }
        let mut announced: Vec<usize> = Vec::new();
        for i in dirty {
            let u = &plan.units[i];
            if !self.unsaved.contains(&i) {
                self.unsaved.push(i);
            }
            // once per table, however many of its parts finished here
            if u.done
                && !announced.contains(&u.table)
                && plan.units.iter().all(|o| o.table != u.table || o.done)
            {
                announced.push(u.table);
                let t = &plan.tables[u.table];
                tracing::info!(table = %t.full, rows = plan.units.iter().filter(|o| o.table == u.table).map(|o| o.rows).sum::<u64>(), "table copied");
            }
        }
        let finished = self.unsaved.iter().any(|&i| plan.units[i].done);
        if finished || self.saved_at.elapsed() >= SAVE_EVERY || self.all_applied() {
            self.save(c, plan).await?;
        }
        self.report
            .show(c.cfg.pipeline.progress_interval, self.started, &self.waits);
        self.unstick(&c.position).await
    }

    /// Saves the progress of every unit that moved since the last save.
    pub async fn save(&mut self, c: &mut Copy<'_>, plan: &Plan) -> Result<(), PipelineError> {
        for i in std::mem::take(&mut self.unsaved) {
            let u = &plan.units[i];
            let t = &plan.tables[u.table];
            control::snapshot::save_table(c.control, &c.cfg.pipeline.name, &u.saved(&t.full))
                .await?;
        }
        self.saved_at = Instant::now();
        Ok(())
    }

    /// Closes the lanes: they apply what they hold and end, within
    /// `timeout` (then they are aborted; what they did not apply is not
    /// saved, and is copied again). Their last progress is saved.
    pub async fn close(&mut self, c: &mut Copy<'_>, plan: &mut Plan, timeout: Duration) {
        self.pool.close();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            tokio::select! {
                exit = self.pool.join_next() => if exit.is_none() { break },
                Some(p) = self.progress.recv() => {
                    if let Err(e) = self.applied(c, plan, p).await {
                        tracing::warn!(error = %e, "saving the copy progress failed; the unsaved chunks are copied again");
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!("the lanes did not finish in time; their chunks are copied again");
                    self.pool.abort();
                    break;
                }
            }
        }
        while let Ok(p) = self.progress.try_recv() {
            if self.applied(c, plan, p).await.is_err() {
                break;
            }
        }
        if let Err(e) = self.save(c, plan).await {
            tracing::warn!(error = %e, "saving the copy progress failed; the unsaved chunks are copied again");
        }
        self.report.finish();
    }
}

/// A lane the dispatcher keeps no buffer for (a bug, not an input).
struct NoBuffer(usize);

/// A copied row the rule could not route ([`crate::rules::Router::route_into`]
/// leaves it whole): dead-lettered when `on_derive_error = "dead-letter"`;
/// otherwise the copy stops before the page is marked, so that no row is
/// dropped.
async fn unrouted(
    c: &mut Copy<'_>,
    change: &RowChange,
    e: RouteError,
) -> Result<(), PipelineError> {
    match e {
        e @ RouteError::Derive { .. }
            if c.cfg.pipeline.on_derive_error == OnDeriveError::DeadLetter =>
        {
            control::dead_letter::record(c.control, &c.cfg.pipeline.name, change, &e).await?;
            Ok(())
        }
        e => Err(PipelineError::Definite(format!(
            "{e}\nThe initial copy stopped so that no row is dropped; fix the rule (or set on_derive_error = \"dead-letter\") and run again: the copy resumes at its last finished chunk."
        ))),
    }
}

/// The copy's progress for people: a bar on a terminal, else a log line
/// every `progress_interval`.
struct Report {
    rows: u64,
    /// Rows applied before this run.
    base: u64,
    estimate: u64,
    bar: Option<indicatif::ProgressBar>,
    last_log: Instant,
}

impl Report {
    fn new(plan: &Plan) -> Report {
        let rows: u64 = plan.units.iter().map(|u| u.rows).sum();
        let estimate: u64 = plan.units.iter().map(|u| u.estimate.max(u.rows)).sum();
        Report {
            rows,
            base: rows,
            estimate,
            bar: std::io::stderr()
                .is_terminal()
                .then(|| progress_bar(estimate, rows)),
            last_log: Instant::now(),
        }
    }

    fn show(&mut self, interval: Duration, started: Instant, waits: &Waits) {
        if let Some(b) = &self.bar {
            if self.rows > b.length().unwrap_or(0) {
                b.set_length(self.rows);
            }
            b.set_position(self.rows);
        } else if self.last_log.elapsed() >= interval {
            let elapsed = started.elapsed();
            let rate = (self.rows - self.base) as f64 / elapsed.as_secs_f64().max(0.001);
            tracing::info!(
                rows = self.rows,
                estimate = self.estimate,
                rows_per_s = rate.round(),
                waited_for_source_pct = Waits::percent(waits.source, elapsed),
                waited_for_targets_pct = Waits::percent(waits.targets, elapsed),
                bound_by = waits.bound_by(elapsed),
                "copying"
            );
            self.last_log = Instant::now();
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

fn progress_bar(estimate: u64, rows: u64) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(estimate);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "initial copy [{bar:30}] {pos}/~{len} rows {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b.set_position(rows);
    b
}

/// Each lane's batch size, in the order [`LanePool::start`] creates the
/// lanes: `batch_size` per shard the lane serves (the copy passes
/// [`Config::for_copy`], whose `batch_size` is `snapshot_batch_rows`).
pub fn lane_batches(cfg: &Config) -> Result<Vec<usize>, crate::db::DbError> {
    let mut out = Vec::new();
    for (members, width) in crate::writer::pool::groups(cfg)? {
        out.extend(std::iter::repeat_n(
            cfg.pipeline.batch_size * members.len(),
            width,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(ops: usize, first_page: u64) -> LaneBuf {
        let op = |k: i64| {
            let key = vec![Value::Int(k)];
            let table = Arc::new(crate::writer::TargetTable {
                name: "t".into(),
                source: "d.t".into(),
                columns: vec!["id".into()],
                key: vec![0],
            });
            let key_enc = crate::writer::keyenc::encode(&key);
            let kind = crate::writer::OpKind::Upsert(key);
            WriteOp::new(0, table, key_enc, kind, Version(1))
        };
        LaneBuf {
            ops: (0..ops as i64).map(op).collect(),
            bytes: 0,
            first_page,
            marked: 0,
            reported: 0,
            batch: 500,
        }
    }

    /// A lane's mark never covers a page whose operations for it still
    /// wait in its buffer.
    #[test]
    fn a_lane_is_marked_only_up_to_its_oldest_buffered_page() {
        assert_eq!(buf(0, 0).covered(7), 7, "an empty buffer: every page");
        assert_eq!(
            buf(3, 5).covered(7),
            4,
            "pages 5..=7 may still have ops here"
        );
        assert_eq!(buf(3, 7).covered(7), 6);
        assert_eq!(buf(1, 1).covered(1), 0, "nothing before the first page");
    }
}
