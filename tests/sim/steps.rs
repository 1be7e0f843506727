//! What each scheduler step does, as the real component it stands for
//! does it: the copy (`snapshot`), the decoder's XA hold
//! (`source::events`), the coordinator (`pipeline::coordinator`: dispatch,
//! tick, persist), the lanes (`writer::lane::run`), `replay`, pruning
//! (`checkpoint::prune`) and `run --from --force` after a failover.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use reshard::checkpoint::{prune, LaneProgress, Saves};
use reshard::control::position_log::Logged;
use reshard::position::Position;
use reshard::rules::route::no_context;
use reshard::rules::RouteError;
use reshard::source::xa::{Held, Xid};
use reshard::source::RowChange;
use reshard::version::Version;
use reshard::writer::{keyenc, pool, OpKind, WriteOp};

use super::model::{Txn, Xa};
use super::system::{
    stream_mut, violation, Begun, Env, Mode, Msg, Origin, Owed, Phase, State, Stream, Violation,
};
use super::target::Cell;

/// A version as the trace shows it: `epoch/file/offset/row`, or for
/// column versions `epoch|column value|file|offset.row`.
pub fn sv(v: Version, column: bool) -> String {
    if !column {
        return v.to_string();
    }
    let x = v.0;
    let col = ((x >> 64) & ((1 << 56) - 1)) as i64 - (1i64 << 55);
    let ord = (x & ((1 << 40) - 1)) as u64;
    format!(
        "{}|{col}|{}|{}.{}",
        x >> 120,
        (x >> 40) & 0xff_ffff,
        ord / 256,
        ord % 256
    )
}

fn xid(x: u8) -> Xid {
    Xid {
        format_id: 1,
        gtrid: vec![b'x', b'0' + x],
        bqual: Vec::new(),
    }
}

impl Env {
    fn show_ops(&self, ids: &[u32]) -> String {
        let parts: Vec<String> = ids
            .iter()
            .map(|&i| {
                let o = &self.ops[i as usize];
                let key: Vec<String> = o.key().map(|v| Cell::of(v).show()).collect();
                let what = match &o.kind {
                    OpKind::Delete(_) => "delete".to_string(),
                    OpKind::Upsert(v) => {
                        let vals: Vec<String> = v.iter().map(|c| Cell::of(c).show()).collect();
                        format!("upsert({})", vals.join(","))
                    }
                };
                format!(
                    "{what} s{} id={} @{}",
                    o.shard,
                    key.join(","),
                    sv(o.version, self.w.column_version)
                )
            })
            .collect();
        if parts.is_empty() {
            "no ops".into()
        } else {
            parts.join("; ")
        }
    }

    /// Routes one change with the real router (or a broken variant).
    #[allow(clippy::result_large_err)] // RouteError's own trade-off (route.rs)
    fn route(&mut self, change: &RowChange) -> Result<Vec<WriteOp>, RouteError> {
        let mut change = change.clone();
        if self.v.no_row_index {
            let v = change.version;
            change.version = Version::new(v.epoch(), v.file_seq(), v.offset(), 0)
                .expect("fields of a version fit");
        }
        if !(self.v.where_ignored_on_before && change.before.is_some()) {
            // as the coordinator routes: the change's values move into the ops
            let mut ops = Vec::new();
            self.router
                .route_into(&mut change, no_context(), &mut ops)?;
            return Ok(ops);
        }
        // route.rs before c18d9b8: the before image located without `where`
        let new = match &change.after {
            Some(_) => {
                let insert = RowChange {
                    before: None,
                    ..change.clone()
                };
                self.router.route(&insert, no_context())?.into_iter().next()
            }
            None => None,
        };
        let delete = RowChange {
            after: None,
            ..change.clone()
        };
        let old = self.plain.route(&delete, no_context())?.into_iter().next();
        let moved = match (&old, &new) {
            (Some(o), Some(n)) => o.shard != n.shard || o.key_enc != n.key_enc,
            (Some(_), None) => true,
            _ => false,
        };
        Ok(old.filter(|_| moved).into_iter().chain(new).collect())
    }

    /// The operations (by number) of the row image `origin`, routed once
    /// per model; `None` for a dead letter.
    fn routed(
        &mut self,
        origin: Origin,
        change: impl FnOnce(&Env) -> RowChange,
    ) -> Option<Vec<u32>> {
        if let Some(ids) = self.routed.get(&origin) {
            return ids.clone();
        }
        let change = change(self);
        let ids = match self.route(&change) {
            Ok(ops) => Some(
                ops.into_iter()
                    .map(|op| {
                        self.ops.push(op);
                        (self.ops.len() - 1) as u32
                    })
                    .collect(),
            ),
            Err(RouteError::Derive { .. }) => None,
            Err(e) => panic!("the model's rule does not fit: {e}"),
        };
        self.routed.insert(origin, ids.clone());
        ids
    }

    /// The lane of an operation (the real `pool::lane_of`, or the variant).
    fn lane_of(&self, op: &WriteOp) -> usize {
        let per = self.p.lanes_per_shard;
        if self.v.lane_by_raw_bytes {
            let raw = keyenc::encode(&op.key().cloned().collect::<Vec<_>>());
            op.shard * per + (keyenc::lane_hash(&op.table.name, &raw) % per as u64) as usize
        } else {
            pool::lane_of(op, per)
        }
    }

    pub fn copy_chunk(&mut self, s: &mut State) {
        let cursor = s.ctl.copy_cursor;
        let at = s.committed;
        let state = &self.w.states[usize::from(at)];
        let rows: Vec<u8> = state
            .keys()
            .filter(|c| cursor.is_none_or(|k| **c > k))
            .take(self.p.chunk_rows)
            .copied()
            .collect();
        let p = self.w.starts[0].clone();
        let version = Version::at(s.ctl.epoch, &p, 0).expect("P versions");
        let mut per_shard: BTreeMap<usize, Vec<WriteOp>> = BTreeMap::new();
        let mut notes = Vec::new();
        for &class in &rows {
            let ids = self.routed(Origin::Copy(at, class), |env| {
                let r = &env.w.states[usize::from(at)][&class];
                let file = std::sync::Arc::from(p.file.as_str());
                RowChange::selected(env.schema.clone(), r.cells(env.w.mode), version, file)
            });
            let Some(ids) = ids else {
                notes.push("dead letter".into());
                continue;
            };
            if self.log.is_some() {
                notes.push(self.show_ops(&ids));
            }
            for i in ids {
                let op = &self.ops[i as usize];
                per_shard.entry(op.shard).or_default().push(op.clone());
            }
        }
        for (shard, ops) in per_shard {
            let mut hint = None;
            Arc::make_mut(&mut s.targets[shard]).apply(ops, self.coll, &self.assigned, &mut hint);
        }
        let last = rows.last().copied().or(cursor);
        let finished = rows.len() < self.p.chunk_rows;
        s.phase = Phase::Copy {
            unsaved: Some((last, finished)),
        };
        let n = rows.len();
        self.note(|| {
            format!(
                "copy chunk after key {cursor:?}: {n} rows at v(P): {}",
                notes.join("; ")
            )
        });
    }

    pub fn copy_save(&mut self, s: &mut State) {
        let Phase::Copy {
            unsaved: Some((last, finished)),
        } = s.phase
        else {
            panic!("CopySave without an applied chunk");
        };
        s.ctl.copy_cursor = if finished { Some(u8::MAX) } else { last };
        s.phase = if finished {
            self.stream(s, Mode::Run, s.ctl.checkpoint.clone(), Saves::All)
        } else {
            Phase::Copy { unsaved: None }
        };
        self.note(|| {
            if finished {
                "copy done; streaming from P".to_string()
            } else {
                format!("copy progress saved at key {last:?}")
            }
        });
    }

    /// The row changes of event group `i` as the decoder builds them.
    fn changes(&self, i: usize, epoch: u16) -> Vec<RowChange> {
        let txn = &self.w.txns[i];
        let mut out = Vec::new();
        for ev in &txn.events {
            for (r, (before, after)) in ev.rows.iter().enumerate() {
                out.push(RowChange {
                    table: self.schema.clone(),
                    before: before.as_ref().map(|r| r.cells(self.w.mode)),
                    after: after.as_ref().map(|r| r.cells(self.w.mode)),
                    version: Version::at(epoch, &ev.pos, r as u64).expect("model versions fit"),
                    span: ev.span,
                    file: std::sync::Arc::from(ev.pos.file.as_str()),
                });
            }
        }
        out
    }

    /// The decoder (`source::events`): the changes event group `i` hands
    /// out as a transaction, holding an XA PREPARE's rows until its
    /// COMMIT; `Err` for an `XA COMMIT` whose PREPARE this stream never
    /// read (a definite error: the stream stops).
    fn decode(&self, st: &mut Stream, i: usize, epoch: u16) -> Result<Vec<RowChange>, String> {
        let txn: &Txn = &self.w.txns[i];
        match txn.xa {
            None => Ok(self.changes(i, epoch)),
            Some(Xa::Prepare(x)) => {
                let held = Held {
                    start: st.last_end.clone(),
                    prepared_at: txn.end.clone(),
                    changes: self.changes(i, epoch),
                };
                st.prepared
                    .prepare(xid(x), held)
                    .map_err(|e| e.to_string())?;
                Ok(Vec::new())
            }
            Some(Xa::Commit(x)) => match st.prepared.commit(&xid(x), &txn.end) {
                Some(held) => Ok(held.changes),
                None => Err(format!(
                    "XA COMMIT {} at {}: reshard never read its XA PREPARE (the stream started at {})",
                    xid(x),
                    txn.end,
                    st.start
                )),
            },
            Some(Xa::Rollback(x)) => {
                st.prepared.rollback(&xid(x));
                Ok(Vec::new())
            }
        }
    }

    /// The coordinator's `transaction`: decode, route every change above
    /// the floor and queue its operations on their lanes, then count the
    /// transaction as dispatched. With `atomic_dispatch` all at once;
    /// otherwise one change per step, so a tick can come while the
    /// transaction is half queued (`send_op` handles ticks while a lane's
    /// queue is full): its mark then names the transaction before.
    pub fn dispatch(&mut self, s: &mut State) -> Result<(), Violation> {
        let epoch = s.ctl.epoch;
        let Phase::Stream(st) = &mut s.phase else {
            panic!("Dispatch outside streaming");
        };
        let i = usize::from(st.cursor);
        let mut notes = Vec::new();
        if st.partial.is_none() {
            st.book.begin_transaction();
            let changes = match self.decode(st, i, epoch) {
                Ok(c) => c,
                Err(e) => return self.decode_failed(s, e),
            };
            match self.w.txns[i].xa {
                Some(Xa::Commit(_)) => self.seen.xa_commits += 1,
                Some(Xa::Rollback(_)) => self.seen.xa_rollbacks += 1,
                _ => {}
            }
            st.partial = Some(changes.into());
        }
        while let Some(change) = st.partial.as_mut().and_then(|p| p.pop_front()) {
            self.queue(st, i, change, &mut notes);
            if !self.p.atomic_dispatch && st.partial.as_ref().is_some_and(|p| !p.is_empty()) {
                self.note(|| format!("queue a change of group {i}: {}", notes.join("; ")));
                return Ok(());
            }
        }
        st.partial = None;
        self.dispatched(st, i, &notes);
        Ok(())
    }

    /// Routes one change (unless below a replay's floor) and queues its
    /// operations.
    fn queue(&mut self, st: &mut Stream, i: usize, change: RowChange, notes: &mut Vec<String>) {
        let version = change.version;
        if let Mode::Replay { floor, .. } = st.mode {
            if version < floor {
                notes.push(format!("skipped below the floor @{version}"));
                return;
            }
        }
        let Some(ids) = self.routed(Origin::Change(version), |_| change) else {
            notes.push(format!("dead letter @{version}"));
            return;
        };
        if self.log.is_some() {
            notes.push(self.show_ops(&ids));
        }
        for id in ids {
            let lane = self.lane_of(&self.ops[id as usize]);
            st.owed.push(Owed {
                txn: i as u8,
                op: id,
            });
            st.lanes[lane].queue.push_back(Msg::Op(id));
        }
    }

    /// Every operation of event group `i` is queued: it counts
    /// (`Bookkeeping::dispatched`), a replay that reached its end drains,
    /// and a rotation after it is a boundary of its own.
    fn dispatched(&mut self, st: &mut Stream, i: usize, notes: &[String]) {
        let end = self.w.txns[i].end.clone();
        let resume = st.prepared.resume(&end);
        st.last_end = end.clone();
        let ts = self.w.txns[i].ts;
        st.book.dispatched(end.clone(), resume.clone(), ts);
        st.cursor += 1;
        if let Mode::Replay { stop, draining, .. } = &mut st.mode {
            if usize::from(*stop) == i {
                // ReachedEnd: the drain queues the last mark and closes the lanes
                *draining = true;
                st.mark();
            }
        }
        let head = &self.w.txns[i].head;
        if *head != end && !st.draining() {
            // the binlog rotated after it: the decoder hands out the
            // ROTATE as a boundary of its own (`close_file`)
            st.book.begin_transaction();
            let resume = st.prepared.resume(head);
            st.last_end = head.clone();
            st.book.dispatched(head.clone(), resume, ts);
        }
        let xa = self.w.txns[i]
            .xa
            .map_or(String::new(), |x| format!(" {x:?}"));
        self.note(|| {
            format!(
                "dispatch group {i}{xa} (ends {end}, resume {resume}): {}",
                notes.join("; ")
            )
        });
    }

    /// The decoder stopped on an `XA COMMIT` without its PREPARE. `run`
    /// streams from the checkpoint, which must never let that happen
    /// (invariant 3: the checkpoint sits between a PREPARE and its COMMIT);
    /// a replay from an operator's position inside an XA span stops with
    /// the error, and `run` restarts.
    fn decode_failed(&mut self, s: &mut State, e: String) -> Result<(), Violation> {
        if stream_mut(s).mode == Mode::Run {
            return Err(violation(
                3,
                format!("restarted from checkpoint {}: {e}", s.ctl.checkpoint),
            ));
        }
        self.seen.replays_refused += 1;
        s.phase = self.restart(s);
        self.note(|| format!("replay stops: {e}; run restarts"));
        Ok(())
    }

    pub fn tick(&mut self, s: &mut State) -> Result<(), Violation> {
        let now = self.now(s);
        let st = stream_mut(s);
        let mut note = String::from("tick:");
        if let Some(m) = st.mark() {
            note.push_str(&format!(" mark {} (resume {})", m.seq, m.resume));
        }
        if let Some(w) = st.tracker.watermark().cloned() {
            if let Some(adv) = st.book.advance(&w, now) {
                st.handled = w.seq;
                self.persist(s, &w, adv.save, adv.log_position, now, &mut note)?;
            }
        }
        self.note(|| note);
        Ok(())
    }

    /// Saves a watermark (`Coordinator::save`).
    fn persist(
        &mut self,
        s: &mut State,
        w: &LaneProgress,
        save: Option<Position>,
        log: bool,
        now: Instant,
        note: &mut String,
    ) -> Result<(), Violation> {
        if let Some(pos) = save {
            self.save_checkpoint(s, &pos)?;
            stream_mut(s).book.saved(pos.clone());
            note.push_str(&format!(" checkpoint {pos}"));
        }
        if log && s.left.prunes > 0 {
            let entry = (w.timestamp, w.end.clone(), s.ctl.epoch);
            if !s.ctl.log.iter().any(|e| e.0 == entry.0 && e.1 == entry.1) {
                s.ctl.log.push(entry);
            }
            stream_mut(s).book.logged(now);
            note.push_str(&format!(" logged ({}, {})", w.timestamp, w.end));
        }
        Ok(())
    }

    /// Invariant 3, at the moment the checkpoint is written.
    fn save_checkpoint(&self, s: &mut State, pos: &Position) -> Result<(), Violation> {
        if *pos < s.ctl.checkpoint {
            return Err(violation(
                3,
                format!("checkpoint moved back from {} to {pos}", s.ctl.checkpoint),
            ));
        }
        let Phase::Stream(st) = &mut s.phase else {
            panic!("a checkpoint saved outside streaming")
        };
        if *pos > s.ctl.checkpoint && st.start > s.ctl.checkpoint {
            return Err(violation(
                3,
                format!(
                    "checkpoint {pos} saved past the transactions between the checkpoint {} and {}, where this process started",
                    s.ctl.checkpoint, st.start
                ),
            ));
        }
        let column = self.w.column_version;
        for o in &st.owed {
            let end = &self.w.txns[usize::from(o.txn)].end;
            if end > pos {
                continue;
            }
            let op = &self.ops[o.op as usize];
            let key = self.coll.key(&op.key().cloned().collect::<Vec<_>>(), true);
            let t = &s.targets[op.shard];
            let g = s
                .ghost
                .get(&(op.shard as u8, key.clone()))
                .copied()
                .unwrap_or_default();
            let seen = t.seen(&key).max(g.row).max(g.tomb);
            if seen < op.version {
                return Err(violation(
                    3,
                    format!(
                        "checkpoint {pos} saved while the operation @{} on shard s{} (transaction ending {end}) is not applied (shard holds @{})",
                        sv(op.version, column), op.shard, sv(seen, column)
                    ),
                ));
            }
        }
        st.owed
            .retain(|o| self.w.txns[usize::from(o.txn)].end > *pos);
        s.ctl.checkpoint = pos.clone();
        Ok(())
    }

    pub fn recv(&mut self, s: &mut State, i: usize) {
        let mark_on_receive = self.v.mark_on_receive;
        let st = stream_mut(s);
        let lane = &mut st.lanes[i];
        let what = match lane.queue.pop_front() {
            Some(Msg::Op(op)) => {
                lane.pending.push(op);
                format!(
                    "op @{}",
                    sv(self.ops[op as usize].version, self.w.column_version)
                )
            }
            Some(Msg::Mark { seq, end, ts }) => {
                let p = LaneProgress {
                    lane: i,
                    seq,
                    end,
                    timestamp: ts,
                };
                if lane.pending.is_empty() || mark_on_receive {
                    st.tracker.update(p);
                    format!("mark {seq}, reported")
                } else {
                    lane.held = Some(p);
                    format!("mark {seq}, held until its batch is applied")
                }
            }
            None => panic!("Recv on an empty queue"),
        };
        self.note(|| format!("lane {i} receives {what}"));
    }

    fn lane_ops(&self, ids: &[u32]) -> Vec<WriteOp> {
        ids.iter().map(|&i| self.ops[i as usize].clone()).collect()
    }

    /// The lane's batch transaction begins: step 1 reads its tombstones.
    pub fn flush(&mut self, s: &mut State, i: usize) {
        let shard = i / self.p.lanes_per_shard;
        let Phase::Stream(st) = &mut s.phase else {
            panic!("Flush outside streaming")
        };
        let lane = &mut st.lanes[i];
        let ids = std::mem::take(&mut lane.pending);
        let read = s.targets[shard].begin(&self.lane_ops(&ids), &mut lane.hint);
        let n = read.len();
        let desc = if self.log.is_some() {
            self.show_ops(&ids)
        } else {
            String::new()
        };
        lane.begun = Some(Begun { ops: ids, read });
        self.note(|| format!("lane {i} begins a batch on s{shard} ({n} tombstones read): {desc}"));
    }

    /// The lane writes and commits its begun batch and reports the mark it
    /// held.
    pub fn write(&mut self, s: &mut State, i: usize) {
        let shard = i / self.p.lanes_per_shard;
        let Phase::Stream(st) = &mut s.phase else {
            panic!("Write outside streaming")
        };
        let lane = &mut st.lanes[i];
        let b = lane.begun.take().expect("a begun batch");
        let ops = self.lane_ops(&b.ops);
        Arc::make_mut(&mut s.targets[shard]).write(
            ops,
            &b.read,
            self.coll,
            &self.assigned,
            &mut lane.hint,
        );
        if let Some(p) = lane.held.take() {
            st.tracker.update(p);
        }
        let n = b.ops.len();
        self.note(|| format!("lane {i} writes and commits its batch of {n} on s{shard}"));
    }

    /// Receive until the batch is full or the queue empty, then apply
    /// it (one transaction, nothing in between) and report the held mark.
    pub fn batch(&mut self, s: &mut State, i: usize) {
        loop {
            let lane = &stream_mut(s).lanes[i];
            if lane.queue.is_empty() || lane.pending.len() >= self.p.batch_size {
                break;
            }
            self.recv(s, i);
        }
        let shard = i / self.p.lanes_per_shard;
        let Phase::Stream(st) = &mut s.phase else {
            panic!("Batch outside streaming")
        };
        let lane = &mut st.lanes[i];
        if lane.pending.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut lane.pending);
        let desc = if self.log.is_some() {
            self.show_ops(&ids)
        } else {
            String::new()
        };
        let ops = self.lane_ops(&ids);
        Arc::make_mut(&mut s.targets[shard]).apply(ops, self.coll, &self.assigned, &mut lane.hint);
        if let Some(p) = lane.held.take() {
            st.tracker.update(p);
        }
        let n = ids.len();
        self.note(|| format!("lane {i} applies a batch of {n} on s{shard}: {desc}"));
    }

    pub fn finish(&mut self, s: &mut State) -> Result<(), Violation> {
        let now = self.now(s);
        let st = stream_mut(s);
        let mut note = String::from("replay drained:");
        if let Some(w) = st.tracker.watermark().cloned() {
            if let Some(adv) = st.book.advance(&w, now) {
                self.persist(s, &w, adv.save, false, now, &mut note)?;
            }
        }
        s.phase = self.restart(s);
        let cp = s.ctl.checkpoint.clone();
        self.note(|| format!("{note}; run restarts from {cp}"));
        Ok(())
    }

    pub fn replay(&mut self, s: &mut State, k: u8) {
        self.seen.replays += 1;
        s.left.replays -= 1;
        let from = self.boundary(s, k);
        let stop = s.committed - 1;
        let mode = Mode::Replay {
            stop,
            floor: s.ctl.floor,
            draining: false,
        };
        // `commands::replay`: forward past the checkpoint it found; the
        // variant, as before the fix, also from a start past it
        let cp = s.ctl.checkpoint.clone();
        let saves = if self.v.replay_saves_past_gap && from > cp {
            Saves::All
        } else {
            Saves::Past(cp)
        };
        s.phase = self.stream(s, mode, from.clone(), saves);
        let (to, floor) = (self.w.txns[usize::from(stop)].end.clone(), s.ctl.floor);
        self.note(|| format!("run stopped; replay --from {from} --to {to} (floor {floor})"));
    }

    /// The pruning threshold and the entry it keeps: the real
    /// `prune::threshold` over every logged position (the model's clock
    /// makes them all old enough), or, for the variant, the newest logged
    /// position versioned with the current epoch (`prune_once` before
    /// b1020bd).
    pub fn threshold(&self, s: &State) -> Option<(Version, Logged)> {
        let logged: Vec<Logged> = s
            .ctl
            .log
            .iter()
            .map(|(ts, pos, epoch)| Logged {
                epoch: *epoch,
                commit_ts: *ts,
                position: pos.clone(),
            })
            .collect();
        if self.v.prune_mixes_epochs {
            let newest = logged.into_iter().max_by(|a, b| {
                (a.commit_ts, &a.position.file, a.position.pos).cmp(&(
                    b.commit_ts,
                    &b.position.file,
                    b.position.pos,
                ))
            })?;
            let v = Version::at(s.ctl.epoch, &newest.position, 0).ok()?;
            return Some((v, newest));
        }
        prune::threshold(&logged).map(|(keep, v)| (v, keep.clone()))
    }

    pub fn prune(&mut self, s: &mut State) {
        s.left.prunes -= 1;
        let Some((threshold, keep)) = self.threshold(s) else {
            return;
        };
        s.ctl.floor = s.ctl.floor.max(threshold);
        let n: usize = s
            .targets
            .iter_mut()
            .map(|t| Arc::make_mut(t).prune(threshold))
            .sum();
        self.seen.prunes += 1;
        self.seen.tombstones_pruned += n as u64;
        // `position_log::trim`
        if self.v.prune_mixes_epochs {
            s.ctl.log.retain(|e| e.0 >= keep.commit_ts);
        } else {
            s.ctl
                .log
                .retain(|e| e.2 > keep.epoch || (e.2 == keep.epoch && e.0 >= keep.commit_ts));
        }
        let pos = keep.position;
        self.note(|| {
            format!("prune below {threshold} (logged {pos}): floor raised, {n} tombstones deleted")
        });
    }

    pub fn raise(&mut self, s: &mut State) {
        self.seen.raises += 1;
        let seg = s.ctl.segment + 1;
        let start = self.w.starts[usize::from(seg)].clone();
        s.ctl.epoch += 1;
        s.ctl.segment = seg;
        s.ctl.checkpoint = start.clone();
        s.phase = self.stream(s, Mode::Run, start.clone(), Saves::All);
        let e = s.ctl.epoch;
        self.note(|| format!("source failed over; run --from {start} --force at epoch {e}"));
    }
}
