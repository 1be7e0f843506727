//! The simulated pipeline: reshard's real pure parts, wired the way
//! `pipeline::Coordinator`, `writer::lane::run`, `snapshot::copy`,
//! `commands::replay` and `checkpoint::prune` wire them, with every I/O
//! replaced by a step the scheduler picks.
//!
//! Real: the router (`rules::Router` compiled from a rule file with
//! `where`), the version encoding (`Version::at`, and `with_column` inside
//! the router), lane assignment (`writer::pool::lane_of`), batch
//! deduplication (`writer::lane::dedup`), the checkpoint bookkeeping and
//! watermark (`checkpoint::Bookkeeping`, `checkpoint::Tracker`) and the
//! prune threshold (`checkpoint::prune::threshold`).
//!
//! Simulated: the source (`model`), the targets (`target`), the control
//! database (`Control`), and time.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mysql_async::consts::ColumnType;
use reshard::checkpoint::bookkeeping::{Bookkeeping, Mark};
use reshard::checkpoint::{prune, LaneProgress, Tracker};
use reshard::control::position_log::Logged;
use reshard::position::Position;
use reshard::rules::file::parse_rule;
use reshard::rules::route::no_context;
use reshard::rules::{RouteError, Router};
use reshard::source::schema::SchemaOrigin;
use reshard::source::{Column, RowChange, TableSchema};
use reshard::version::Version;
use reshard::writer::{keyenc, pool, OpKind, WriteOp};

use super::model::{KeyMode, Workload};
use super::target::{assigned_columns, Cell, Collation, Target};

/// Tombstone retention. The model's clock runs the retention forward
/// before every prune, so every logged position is old enough: pruning is
/// as aggressive as the position log allows.
const RETENTION: Duration = Duration::from_secs(10);

/// Sizes and budgets of a model.
#[derive(Debug, Clone)]
pub struct Params {
    pub shards: usize,
    pub lanes_per_shard: usize,
    /// Operations a lane gathers before it must apply.
    pub batch_size: usize,
    /// Rows per copy chunk.
    pub chunk_rows: usize,
    /// Lanes take and apply a batch in one step ([`Action::Batch`]) instead
    /// of receiving message by message ([`Action::Recv`], [`Action::Flush`]).
    /// The coarser step keeps the exhaustive search small: a batch is cut
    /// by what was queued when the lane ran, not by the linger timeout.
    pub atomic_batches: bool,
    pub crashes: u8,
    pub replays: u8,
    pub prunes: u8,
}

/// Deliberately broken components, only in the test, to show that the
/// simulation catches each bug shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Variant {
    /// Lanes report a mark when they receive it, before the operations
    /// queued ahead of it are applied: the checkpoint follows dispatch.
    pub mark_on_receive: bool,
    /// The router routes the before image without evaluating `where`
    /// (route.rs before c18d9b8).
    pub where_ignored_on_before: bool,
    /// Versions without the row index (column versions before 11e167e:
    /// the row images of one event or compressed payload tie).
    pub no_row_index: bool,
    /// Tombstone pruning runs while a replay is running (issue 9).
    pub prune_during_replay: bool,
    /// The prune threshold takes the newest logged position of any epoch
    /// and versions it with the current epoch (issue 9).
    pub prune_mixes_epochs: bool,
    /// Lanes are chosen by the raw key bytes (`keyenc::encode` of the key)
    /// rather than by the operation's `key_enc` (issue 8, item 2: today
    /// they are the same; once `key_enc` is collation-aware they differ).
    pub lane_by_raw_bytes: bool,
    /// Not a component but an operator's step: `replay --from X` with X
    /// beyond the checkpoint. reshard accepts it today, and the replay then
    /// saves a checkpoint past the transactions between the checkpoint and
    /// X, which nobody applied (a finding of this simulation).
    pub replay_beyond_checkpoint: bool,
}

const VARIANTS: [&str; 7] = [
    "mark-on-receive",
    "where-ignored-on-before",
    "no-row-index",
    "prune-during-replay",
    "prune-mixes-epochs",
    "lane-by-raw-bytes",
    "replay-beyond-checkpoint",
];

impl Variant {
    fn flags(&mut self) -> [&mut bool; 7] {
        [
            &mut self.mark_on_receive,
            &mut self.where_ignored_on_before,
            &mut self.no_row_index,
            &mut self.prune_during_replay,
            &mut self.prune_mixes_epochs,
            &mut self.lane_by_raw_bytes,
            &mut self.replay_beyond_checkpoint,
        ]
    }

    pub fn parse(s: &str) -> Option<Variant> {
        let mut v = Variant::default();
        for name in s.split(',').filter(|n| !n.is_empty() && *n != "none") {
            let i = VARIANTS.iter().position(|x| *x == name)?;
            *v.flags()[i] = true;
        }
        Some(v)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut me = *self;
        let on: Vec<&str> = me
            .flags()
            .into_iter()
            .zip(VARIANTS)
            .filter(|(b, _)| **b)
            .map(|(_, n)| n)
            .collect();
        if on.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&on.join(","))
        }
    }
}

/// One scheduler step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The source commits its next transaction.
    Commit,
    /// The copy reads, routes and applies its next chunk.
    CopyChunk,
    /// The copy saves the progress of the chunk it applied.
    CopySave,
    /// The coordinator routes the next transaction and queues its ops.
    Dispatch,
    /// A heartbeat at the source's head.
    Heartbeat,
    /// The coordinator's tick: queue a mark, save a new watermark.
    Tick,
    /// Lane i takes the next message of its queue.
    Recv(u8),
    /// Lane i applies its batch in one transaction and reports its mark.
    Flush(u8),
    /// Lane i receives messages until its batch is full or its queue is
    /// empty, then applies the batch (`Recv`… then `Flush`, at once).
    Batch(u8),
    /// A replay that reached its end drains and exits; `run` restarts.
    Finish,
    /// kill -9: every in-flight batch is lost; restart from the checkpoint.
    Crash,
    /// `replay --from X` where X is the boundary after the k-th
    /// transaction of the current binlog (0: its start).
    Replay(u8),
    /// One tombstone-pruning pass.
    Prune,
    /// After the source failed over: `run --from <its start> --force` with
    /// `[pipeline] epoch` raised.
    Raise,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Commit => f.write_str("c"),
            Action::CopyChunk => f.write_str("k"),
            Action::CopySave => f.write_str("K"),
            Action::Dispatch => f.write_str("d"),
            Action::Heartbeat => f.write_str("h"),
            Action::Tick => f.write_str("t"),
            Action::Recv(i) => write!(f, "r{i}"),
            Action::Flush(i) => write!(f, "f{i}"),
            Action::Batch(i) => write!(f, "b{i}"),
            Action::Finish => f.write_str("F"),
            Action::Crash => f.write_str("X"),
            Action::Replay(k) => write!(f, "R{k}"),
            Action::Prune => f.write_str("P"),
            Action::Raise => f.write_str("E"),
        }
    }
}

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Action, String> {
        let n = |t: &str| t.parse::<u8>().map_err(|_| format!("bad step {s:?}"));
        Ok(match s {
            "c" => Action::Commit,
            "k" => Action::CopyChunk,
            "K" => Action::CopySave,
            "d" => Action::Dispatch,
            "h" => Action::Heartbeat,
            "t" => Action::Tick,
            "F" => Action::Finish,
            "X" => Action::Crash,
            "P" => Action::Prune,
            "E" => Action::Raise,
            _ if s.starts_with('r') => Action::Recv(n(&s[1..])?),
            _ if s.starts_with('f') => Action::Flush(n(&s[1..])?),
            _ if s.starts_with('b') => Action::Batch(n(&s[1..])?),
            _ if s.starts_with('R') => Action::Replay(n(&s[1..])?),
            _ => return Err(format!("unknown step {s:?}")),
        })
    }
}

/// A broken invariant.
#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: u8,
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.invariant {
            1 => "a key's version on a target decreased",
            2 => "a deleted key is present at a version not above its delete",
            3 => "the checkpoint went back or passed an unapplied operation",
            4 => "at quiescence a target differs from route(source)",
            _ => "the model got stuck",
        };
        write!(f, "invariant {} ({name}): {}", self.invariant, self.what)
    }
}

fn violation(invariant: u8, what: String) -> Violation {
    Violation { invariant, what }
}

/// reshard's control database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Control {
    pub checkpoint: Position,
    pub epoch: u16,
    /// Which source binlog the pipeline streams (raised with the epoch).
    pub segment: u8,
    pub floor: Version,
    /// Copy progress: the last key (class) of the last saved chunk.
    pub copy_cursor: Option<u8>,
    /// The position log: (commit time, position, epoch it was logged in).
    pub log: Vec<(u32, Position, u16)>,
    pub epoch_start: Option<Position>,
}

/// What a lane receives.
#[derive(Debug, Clone)]
pub enum Msg {
    Op(WriteOp),
    Mark { seq: u64, end: Position, ts: u32 },
}

fn hash_op<H: Hasher>(op: &WriteOp, h: &mut H) {
    op.shard.hash(h);
    op.key_enc.hash(h);
    op.version.hash(h);
    op.position.hash(h);
    match &op.kind {
        OpKind::Delete => 0u8.hash(h),
        OpKind::Upsert(vals) => {
            1u8.hash(h);
            for v in vals {
                Cell::of(v).hash(h);
            }
        }
    }
}

impl Hash for Msg {
    fn hash<H: Hasher>(&self, h: &mut H) {
        match self {
            Msg::Op(op) => hash_op(op, h),
            Msg::Mark { seq, end, ts } => (seq, end, ts).hash(h),
        }
    }
}

/// One writer lane: its queue, the batch it is gathering, the mark held
/// until that batch is applied, and its tombstone hint.
#[derive(Debug, Clone, Default)]
pub struct Lane {
    pub queue: VecDeque<Msg>,
    pub pending: Vec<WriteOp>,
    pub held: Option<LaneProgress>,
    pub hint: Option<bool>,
}

impl Hash for Lane {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.queue.hash(h);
        self.pending.len().hash(h);
        for op in &self.pending {
            hash_op(op, h);
        }
        self.held.hash(h);
        self.hint.hash(h);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mode {
    Run,
    /// `replay --from X --to <head>`: stops after transaction `stop`.
    Replay {
        stop: u8,
        floor: Version,
        draining: bool,
    },
}

/// An operation dispatched by the running process whose transaction no
/// saved checkpoint has passed yet (invariant 3 checks it at each save).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owed {
    pub end: Position,
    pub shard: u8,
    pub key: Vec<u8>,
    pub version: Version,
}

/// A streaming process (`run` or `replay`): everything a crash loses.
#[derive(Debug, Clone, Hash)]
pub struct Stream {
    pub mode: Mode,
    /// Where it started streaming.
    pub start: Position,
    pub book: Bookkeeping,
    pub tracker: Tracker,
    /// The watermark sequence the bookkeeping handled last.
    pub handled: u64,
    /// Next transaction to dispatch.
    pub cursor: u8,
    pub lanes: Vec<Lane>,
    pub owed: Vec<Owed>,
}

impl Stream {
    /// Queues the due mark on every lane (`LanePool::mark`).
    fn mark(&mut self) -> Option<Mark> {
        let m = self.book.mark_due()?;
        for l in &mut self.lanes {
            l.queue.push_back(Msg::Mark {
                seq: m.seq,
                end: m.resume.clone(),
                ts: m.timestamp,
            });
        }
        self.book.marked(&m);
        Some(m)
    }

    fn draining(&self) -> bool {
        matches!(self.mode, Mode::Replay { draining: true, .. })
    }

    fn idle_lanes(&self) -> bool {
        self.lanes
            .iter()
            .all(|l| l.pending.is_empty() && !l.queue.iter().any(|m| matches!(m, Msg::Op(_))))
    }
}

#[derive(Debug, Clone, Hash)]
pub enum Phase {
    /// The initial copy; `unsaved` is a chunk applied but not yet saved:
    /// (its last key, whether it was the last chunk).
    Copy {
        unsaved: Option<(Option<u8>, bool)>,
    },
    Stream(Box<Stream>),
}

/// The highest versions a target ever held for a key: the history the
/// invariants compare against (pruning cannot lower it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Ghost {
    pub row: Version,
    pub tomb: Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Left {
    pub crashes: u8,
    pub replays: u8,
    pub prunes: u8,
}

/// The whole simulated world.
#[derive(Debug, Clone)]
pub struct State {
    pub committed: u8,
    pub targets: Vec<Target>,
    pub ctl: Control,
    pub phase: Phase,
    pub ghost: BTreeMap<(u8, Vec<u8>), Ghost>,
    pub left: Left,
}

impl Hash for State {
    /// Everything but the parts of the ghost the targets already show: a
    /// present row's version is its ghost row version (invariant 1 holds
    /// up to here), an absent row's ghost version is below its ghost
    /// tombstone (a row only goes by a newer delete), and a ghost
    /// tombstone only differs from the target's after pruning. So two
    /// states that hash alike here meet the same invariants from now on.
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.committed.hash(h);
        self.targets.hash(h);
        self.ctl.hash(h);
        self.phase.hash(h);
        self.left.hash(h);
        for ((shard, key), g) in &self.ghost {
            let held = self.targets[usize::from(*shard)]
                .tombs
                .values()
                .filter(|t| t.key == *key)
                .map(|t| t.version)
                .max()
                .unwrap_or(Version::ZERO);
            if g.tomb > held {
                (shard, key, g.tomb).hash(h);
            }
        }
    }
}

/// The fixed parts of a model: workload, sizes, variant and reshard's real
/// components.
pub struct Env {
    pub w: Workload,
    pub p: Params,
    pub v: Variant,
    schema: Arc<TableSchema>,
    router: Router,
    /// The same rule without `where` (for the where variant).
    plain: Router,
    coll: Collation,
    assigned: Vec<bool>,
    /// Step descriptions, when tracing.
    pub log: Option<Vec<String>>,
}

fn base_instant() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn rule_text(column_version: bool, with_where: bool) -> String {
    let mut t =
        String::from("source = \"app.t\"\nshard = \"tenant % 2\"\nshards = [\"s0\", \"s1\"]\n");
    if with_where {
        t.push_str("where = \"tenant IS NOT NULL\"\n");
    }
    if column_version {
        t.push_str("version = { column = \"upd\" }\n");
    }
    t
}

fn schema(mode: KeyMode) -> TableSchema {
    let mut id = Column::new("id", ColumnType::MYSQL_TYPE_LONG);
    if mode == KeyMode::CaseInsensitive {
        id = Column::new("id", ColumnType::MYSQL_TYPE_VARCHAR);
        id.charset = 45; // utf8mb4_general_ci
        id.length = 32;
    }
    TableSchema {
        db: "app".into(),
        table: "t".into(),
        columns: vec![
            id,
            Column::new("tenant", ColumnType::MYSQL_TYPE_LONG),
            Column::new("upd", ColumnType::MYSQL_TYPE_LONG),
            Column::new("val", ColumnType::MYSQL_TYPE_LONG),
        ],
        pk: vec![0],
        origin: SchemaOrigin::InformationSchema,
    }
}

fn compile(column_version: bool, with_where: bool) -> Router {
    let text = rule_text(column_version, with_where);
    let rule = parse_rule(Path::new("t.toml"), &text).expect("the model's rule parses");
    Router::new(vec![rule], &["s0".to_string(), "s1".to_string()]).expect("the model's rule binds")
}

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

fn show_ops(ops: &[WriteOp], column: bool) -> String {
    let parts: Vec<String> = ops
        .iter()
        .map(|o| {
            let key: Vec<String> = o.key.iter().map(|v| Cell::of(v).show()).collect();
            let what = match &o.kind {
                OpKind::Delete => "delete".to_string(),
                OpKind::Upsert(v) => {
                    let vals: Vec<String> = v.iter().map(|c| Cell::of(c).show()).collect();
                    format!("upsert({})", vals.join(","))
                }
            };
            format!(
                "{what} s{} id={} @{}",
                o.shard,
                key.join(","),
                sv(o.version, column)
            )
        })
        .collect();
    if parts.is_empty() {
        "no ops".into()
    } else {
        parts.join("; ")
    }
}

impl Env {
    pub fn new(w: Workload, p: Params, v: Variant) -> Env {
        assert_eq!(p.shards, 2, "the model's rule names two shards");
        let schema = Arc::new(schema(w.mode));
        let mut router = compile(w.column_version, true);
        let target = router
            .target_table(&schema)
            .expect("the rule fits the schema");
        let assigned = assigned_columns(&target.columns, &target.key);
        let coll = match w.mode {
            KeyMode::Int => Collation::Binary,
            KeyMode::CaseInsensitive => Collation::CaseInsensitive,
        };
        Env {
            plain: compile(w.column_version, false),
            w,
            p,
            v,
            schema,
            router,
            coll,
            assigned,
            log: None,
        }
    }

    /// Reuses this environment (its compiled router) for another workload
    /// with the same key mode and versioning, or builds a new one.
    pub fn reuse(mut self, w: Workload, p: Params, v: Variant) -> Env {
        if self.w.mode != w.mode || self.w.column_version != w.column_version {
            return Env::new(w, p, v);
        }
        self.w = w;
        self.p = p;
        self.v = v;
        self.log = None;
        self
    }

    fn lanes(&self) -> usize {
        self.p.shards * self.p.lanes_per_shard
    }

    fn note(&mut self, f: impl FnOnce() -> String) {
        if let Some(log) = &mut self.log {
            log.push(f());
        }
    }

    /// The state before the first step: the source holds `states[0]`, P
    /// and the floor v(P) are saved, the copy is about to start.
    pub fn init(&self, left: Left) -> State {
        let p = self.w.starts[0].clone();
        State {
            committed: 0,
            targets: vec![Target::default(); self.p.shards],
            ctl: Control {
                floor: Version::at(0, &p, 0).expect("P versions"),
                checkpoint: p,
                epoch: 0,
                segment: 0,
                copy_cursor: None,
                log: Vec::new(),
                epoch_start: None,
            },
            phase: Phase::Copy { unsaved: None },
            ghost: BTreeMap::new(),
            left,
        }
    }

    /// The model's clock: the last commit's time (the simulated `now`).
    fn now(&self, s: &State) -> Instant {
        let ts = s
            .committed
            .checked_sub(1)
            .map_or(self.w.initial_ts, |i| self.w.txns[usize::from(i)].ts);
        base_instant() + Duration::from_secs(u64::from(ts - self.w.initial_ts))
    }

    /// The source's head in the current binlog.
    fn head(&self, s: &State) -> Position {
        let n = usize::from(s.committed);
        if n > self.w.first_of(s.ctl.segment) {
            self.w.txns[n - 1].head.clone()
        } else {
            self.w.starts[usize::from(s.ctl.segment)].clone()
        }
    }

    /// The boundary `replay --from` names for `Replay(k)`.
    fn boundary(&self, s: &State, k: u8) -> Position {
        let first = self.w.first_of(s.ctl.segment);
        if k == 0 {
            self.w.starts[usize::from(s.ctl.segment)].clone()
        } else {
            self.w.txns[first + usize::from(k) - 1].end.clone()
        }
    }

    /// A new streaming process from `start`.
    fn stream(
        &self,
        s: &State,
        mode: Mode,
        start: Position,
        forward_only: Option<Position>,
    ) -> Phase {
        let seg = s.ctl.segment;
        let cursor = (self.w.first_of(seg)..self.w.txns.len())
            .find(|&i| self.w.txns[i].segment == seg && self.w.txns[i].end > start)
            .unwrap_or_else(|| self.w.first_of(seg + 1));
        Phase::Stream(Box::new(Stream {
            mode,
            book: Bookkeeping::new(start.clone(), forward_only, RETENTION),
            start,
            tracker: Tracker::new(self.lanes()),
            handled: 0,
            cursor: cursor as u8,
            lanes: vec![Lane::default(); self.lanes()],
            owed: Vec::new(),
        }))
    }

    /// `run` restarting from the saved checkpoint.
    fn restart(&self, s: &State) -> Phase {
        if self.copy_done(s) {
            self.stream(s, Mode::Run, s.ctl.checkpoint.clone(), None)
        } else {
            Phase::Copy { unsaved: None }
        }
    }

    fn copy_done(&self, s: &State) -> bool {
        s.ctl.copy_cursor == Some(u8::MAX)
    }

    /// Every step the scheduler may take now.
    pub fn enabled(&self, s: &State, out: &mut Vec<Action>) {
        out.clear();
        let next = usize::from(s.committed);
        let seg = s.ctl.segment;
        let next_seg = self.w.txns.get(next).map(|t| t.segment);
        if next_seg == Some(seg) {
            out.push(Action::Commit);
        }
        let st = match &s.phase {
            Phase::Copy { unsaved } => {
                out.push(if unsaved.is_none() {
                    Action::CopyChunk
                } else {
                    Action::CopySave
                });
                if s.left.crashes > 0 {
                    out.push(Action::Crash);
                }
                return;
            }
            Phase::Stream(st) => st,
        };
        let draining = st.draining();
        let cursor = usize::from(st.cursor);
        if !draining && cursor < next && self.w.txns[cursor].segment == seg {
            out.push(Action::Dispatch);
        }
        if !draining && cursor == next && self.head(s) > *st.book.dispatched_end() {
            out.push(Action::Heartbeat);
        }
        let newer = st.tracker.watermark().is_some_and(|w| w.seq > st.handled);
        if !draining && (st.book.mark_due().is_some() || newer) {
            out.push(Action::Tick);
        }
        for (i, l) in st.lanes.iter().enumerate() {
            if self.p.atomic_batches {
                if !l.queue.is_empty() {
                    out.push(Action::Batch(i as u8));
                }
                continue;
            }
            if !l.queue.is_empty() && l.pending.len() < self.p.batch_size {
                out.push(Action::Recv(i as u8));
            }
            if !l.pending.is_empty() {
                out.push(Action::Flush(i as u8));
            }
        }
        let all_empty = st
            .lanes
            .iter()
            .all(|l| l.queue.is_empty() && l.pending.is_empty());
        if draining && all_empty {
            out.push(Action::Finish);
        }
        if s.left.crashes > 0 {
            out.push(Action::Crash);
        }
        if s.left.replays > 0 && st.mode == Mode::Run {
            let n = next - self.w.first_of(seg);
            for k in 0..n as u8 {
                if self.v.replay_beyond_checkpoint || self.boundary(s, k) <= s.ctl.checkpoint {
                    out.push(Action::Replay(k));
                }
            }
        }
        let prune_ok = st.mode == Mode::Run || self.v.prune_during_replay;
        if s.left.prunes > 0 && !self.w.column_version && prune_ok && self.threshold(s).is_some() {
            out.push(Action::Prune);
        }
        if next_seg == Some(seg + 1) && st.mode == Mode::Run {
            let last = if next > self.w.first_of(seg) {
                self.w.txns[next - 1].end.clone()
            } else {
                self.w.starts[usize::from(seg)].clone()
            };
            if s.ctl.checkpoint >= last {
                out.push(Action::Raise);
            }
        }
    }

    /// The pruning threshold and the entry it keeps: the real
    /// `prune::threshold` over every logged position (the model's clock
    /// makes them all old enough), or, for the variant, the newest logged
    /// position versioned with the current epoch (`prune_once` before
    /// b1020bd).
    fn threshold(&self, s: &State) -> Option<(Version, Logged)> {
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
            return self.router.route(&change, no_context());
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

    /// The lane of an operation (the real `pool::lane_of`, or the variant).
    fn lane_of(&self, op: &WriteOp) -> usize {
        let per = self.p.lanes_per_shard;
        if self.v.lane_by_raw_bytes {
            let raw = keyenc::encode(&op.key);
            op.shard * per + (keyenc::lane_hash(&op.table.name, &raw) % per as u64) as usize
        } else {
            pool::lane_of(op, per)
        }
    }

    /// Takes one step. A step that is not enabled panics (schedules are
    /// only built from [`Env::enabled`]).
    pub fn step(&mut self, s: &mut State, a: Action) -> Result<(), Violation> {
        match a {
            Action::Commit => {
                s.committed += 1;
                let i = usize::from(s.committed) - 1;
                self.note(|| format!("source commits txn {i}"));
            }
            Action::CopyChunk => self.copy_chunk(s),
            Action::CopySave => self.copy_save(s),
            Action::Dispatch => self.dispatch(s),
            Action::Heartbeat => {
                let head = self.head(s);
                self.note(|| format!("heartbeat at {head}"));
                stream_mut(s).book.heartbeat(Some(head));
            }
            Action::Tick => self.tick(s)?,
            Action::Recv(i) => self.recv(s, usize::from(i)),
            Action::Flush(i) => self.flush(s, usize::from(i)),
            Action::Batch(i) => {
                let i = usize::from(i);
                loop {
                    let st = stream_mut(s);
                    let lane = &st.lanes[i];
                    if lane.queue.is_empty() || lane.pending.len() >= self.p.batch_size {
                        break;
                    }
                    self.recv(s, i);
                }
                if !stream_mut(s).lanes[i].pending.is_empty() {
                    self.flush(s, i);
                }
            }
            Action::Finish => self.finish(s)?,
            Action::Crash => {
                s.left.crashes -= 1;
                s.phase = self.restart(s);
                let cp = s.ctl.checkpoint.clone();
                self.note(|| format!("crash: in-flight work lost; restart from checkpoint {cp}"));
            }
            Action::Replay(k) => self.replay(s, k),
            Action::Prune => self.prune(s),
            Action::Raise => {
                let seg = s.ctl.segment + 1;
                let start = self.w.starts[usize::from(seg)].clone();
                s.ctl.epoch += 1;
                s.ctl.segment = seg;
                s.ctl.checkpoint = start.clone();
                s.ctl.epoch_start = Some(start.clone());
                s.phase = self.stream(s, Mode::Run, start.clone(), None);
                let e = s.ctl.epoch;
                self.note(|| {
                    format!("source failed over; run --from {start} --force at epoch {e}")
                });
            }
        }
        Ok(())
    }

    fn copy_chunk(&mut self, s: &mut State) {
        let cursor = s.ctl.copy_cursor;
        let state = &self.w.states[usize::from(s.committed)];
        let rows: Vec<_> = state
            .iter()
            .filter(|(c, _)| cursor.is_none_or(|k| **c > k))
            .take(self.p.chunk_rows)
            .map(|(c, r)| (*c, r.clone()))
            .collect();
        let p = self.w.starts[0].clone();
        let version = Version::at(s.ctl.epoch, &p, 0).expect("P versions");
        let mut per_shard: BTreeMap<usize, Vec<WriteOp>> = BTreeMap::new();
        let mut notes = Vec::new();
        for (_, r) in &rows {
            let change = RowChange::selected(
                self.schema.clone(),
                r.cells(self.w.mode),
                version,
                p.clone(),
            );
            match self.route(&change) {
                Ok(ops) => {
                    if self.log.is_some() {
                        notes.push(show_ops(&ops, self.w.column_version));
                    }
                    for op in ops {
                        per_shard.entry(op.shard).or_default().push(op);
                    }
                }
                Err(RouteError::Derive { .. }) => notes.push("dead letter".into()),
                Err(e) => panic!("the model's rule does not fit: {e}"),
            }
        }
        for (shard, ops) in per_shard {
            let mut hint = None;
            s.targets[shard].apply(ops, self.coll, &self.assigned, &mut hint);
        }
        let last = rows.last().map(|(c, _)| *c).or(cursor);
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

    fn copy_save(&mut self, s: &mut State) {
        let Phase::Copy {
            unsaved: Some((last, finished)),
        } = s.phase
        else {
            panic!("CopySave without an applied chunk");
        };
        s.ctl.copy_cursor = if finished { Some(u8::MAX) } else { last };
        s.phase = if finished {
            self.stream(s, Mode::Run, s.ctl.checkpoint.clone(), None)
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

    fn dispatch(&mut self, s: &mut State) {
        let epoch = s.ctl.epoch;
        let Phase::Stream(st) = &mut s.phase else {
            panic!("Dispatch outside streaming");
        };
        let i = usize::from(st.cursor);
        let txn = self.w.txns[i].clone();
        st.book.begin_transaction();
        let floor = match st.mode {
            Mode::Replay { floor, .. } => Some(floor),
            Mode::Run => None,
        };
        let mut notes = Vec::new();
        for ev in &txn.events {
            for (r, (before, after)) in ev.rows.iter().enumerate() {
                let version = Version::at(epoch, &ev.pos, r as u64).expect("model versions fit");
                if floor.is_some_and(|f| version < f) {
                    notes.push(format!("skipped below the floor @{version}"));
                    continue;
                }
                let change = RowChange {
                    table: self.schema.clone(),
                    before: before.as_ref().map(|r| r.cells(self.w.mode)),
                    after: after.as_ref().map(|r| r.cells(self.w.mode)),
                    version,
                    position: ev.pos.clone(),
                    span: ev.span,
                };
                let ops = match self.route(&change) {
                    Ok(ops) => ops,
                    Err(RouteError::Derive { .. }) => {
                        notes.push(format!("dead letter @{version}"));
                        continue;
                    }
                    Err(e) => panic!("the model's rule does not fit: {e}"),
                };
                if self.log.is_some() {
                    notes.push(show_ops(&ops, self.w.column_version));
                }
                let Phase::Stream(st) = &mut s.phase else {
                    unreachable!()
                };
                for op in ops {
                    let lane = self.lane_of(&op);
                    st.owed.push(Owed {
                        end: txn.end.clone(),
                        shard: op.shard as u8,
                        key: self.coll.key(&op.key, true),
                        version: op.version,
                    });
                    st.lanes[lane].queue.push_back(Msg::Op(op));
                }
            }
        }
        let Phase::Stream(st) = &mut s.phase else {
            unreachable!()
        };
        st.book.dispatched(txn.end.clone(), txn.end.clone(), txn.ts);
        st.cursor += 1;
        if let Mode::Replay { stop, draining, .. } = &mut st.mode {
            if usize::from(*stop) == i {
                // ReachedEnd: the drain queues the last mark and closes the lanes
                *draining = true;
                st.mark();
            }
        }
        self.note(|| format!("dispatch txn {i} (ends {}): {}", txn.end, notes.join("; ")));
    }

    fn tick(&mut self, s: &mut State) -> Result<(), Violation> {
        let now = self.now(s);
        let st = stream_mut(s);
        let mut note = String::from("tick:");
        if let Some(m) = st.mark() {
            note.push_str(&format!(" mark {} ({})", m.seq, m.end));
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

    /// Saves a watermark (`Coordinator::persist`).
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
        for o in st.owed.iter().filter(|o| o.end <= *pos) {
            let t = &s.targets[usize::from(o.shard)];
            let g = s
                .ghost
                .get(&(o.shard, o.key.clone()))
                .copied()
                .unwrap_or_default();
            let seen = t.seen(&o.key).max(g.row).max(g.tomb);
            if seen < o.version {
                return Err(violation(
                    3,
                    format!(
                        "checkpoint {pos} saved while the operation @{} on shard s{} (transaction ending {}) is not applied (shard holds @{})",
                        sv(o.version, self.w.column_version), o.shard, o.end, sv(seen, self.w.column_version)
                    ),
                ));
            }
        }
        st.owed.retain(|o| o.end > *pos);
        s.ctl.checkpoint = pos.clone();
        Ok(())
    }

    fn recv(&mut self, s: &mut State, i: usize) {
        let mark_on_receive = self.v.mark_on_receive;
        let st = stream_mut(s);
        let lane = &mut st.lanes[i];
        let what = match lane.queue.pop_front() {
            Some(Msg::Op(op)) => {
                let v = op.version;
                lane.pending.push(op);
                format!("op @{}", sv(v, self.w.column_version))
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

    fn flush(&mut self, s: &mut State, i: usize) {
        let shard = i / self.p.lanes_per_shard;
        let Phase::Stream(st) = &mut s.phase else {
            panic!("Flush outside streaming")
        };
        let lane = &mut st.lanes[i];
        let ops = std::mem::take(&mut lane.pending);
        let n = ops.len();
        let desc = if self.log.is_some() {
            show_ops(&ops, self.w.column_version)
        } else {
            String::new()
        };
        s.targets[shard].apply(ops, self.coll, &self.assigned, &mut lane.hint);
        if let Some(p) = lane.held.take() {
            st.tracker.update(p);
        }
        self.note(|| format!("lane {i} applies a batch of {n} on s{shard}: {desc}"));
    }

    fn finish(&mut self, s: &mut State) -> Result<(), Violation> {
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

    fn replay(&mut self, s: &mut State, k: u8) {
        s.left.replays -= 1;
        let from = self.boundary(s, k);
        let stop = s.committed - 1;
        let mode = Mode::Replay {
            stop,
            floor: s.ctl.floor,
            draining: false,
        };
        s.phase = self.stream(s, mode, from.clone(), Some(s.ctl.checkpoint.clone()));
        let (to, floor) = (self.w.txns[usize::from(stop)].end.clone(), s.ctl.floor);
        self.note(|| format!("run stopped; replay --from {from} --to {to} (floor {floor})"));
    }

    fn prune(&mut self, s: &mut State) {
        s.left.prunes -= 1;
        let Some((threshold, keep)) = self.threshold(s) else {
            return;
        };
        s.ctl.floor = s.ctl.floor.max(threshold);
        let n: usize = s.targets.iter_mut().map(|t| t.prune(threshold)).sum();
        // `position_log::trim`
        if self.v.prune_mixes_epochs {
            s.ctl.log.retain(|e| e.0 >= keep.commit_ts);
        } else {
            s.ctl.log.retain(|e| {
                e.2 > keep.epoch || (e.2 == keep.epoch && e.0 >= keep.commit_ts)
            });
        }
        let pos = keep.position;
        self.note(|| {
            format!("prune below {threshold} (logged {pos}): floor raised, {n} tombstones deleted")
        });
    }

    /// Invariants 1, 2 and 4 (3 is checked as the checkpoint is saved).
    pub fn check(&self, s: &mut State) -> Result<(), Violation> {
        for (shard, t) in s.targets.iter().enumerate() {
            for tomb in t.tombs.values() {
                let k = (shard as u8, tomb.key.clone());
                match s.ghost.get_mut(&k) {
                    Some(g) => g.tomb = g.tomb.max(tomb.version),
                    None => {
                        s.ghost.insert(
                            k,
                            Ghost {
                                row: Version::ZERO,
                                tomb: tomb.version,
                            },
                        );
                    }
                }
            }
        }
        for (shard, t) in s.targets.iter().enumerate() {
            for (k, row) in &t.rows {
                let g = s.ghost.entry((shard as u8, k.clone())).or_default();
                if row.version < g.row {
                    return Err(violation(
                        1,
                        format!(
                            "s{shard} key {} went from @{} to @{}",
                            show_key(row),
                            sv(g.row, self.w.column_version),
                            sv(row.version, self.w.column_version)
                        ),
                    ));
                }
                if row.version <= g.tomb {
                    return Err(violation(
                        2,
                        format!(
                            "s{shard} key {} is present @{} but was deleted @{}",
                            show_key(row),
                            sv(row.version, self.w.column_version),
                            sv(g.tomb, self.w.column_version)
                        ),
                    ));
                }
                g.row = row.version;
            }
        }
        if self.quiescent(s) {
            self.converged(s)?;
        }
        Ok(())
    }

    /// No pending work: everything committed was dispatched and applied
    /// by `run`.
    pub fn quiescent(&self, s: &State) -> bool {
        match &s.phase {
            Phase::Stream(st) => {
                st.mode == Mode::Run && st.cursor == s.committed && st.idle_lanes()
            }
            Phase::Copy { .. } => false,
        }
    }

    /// Invariant 4: every target equals route(source), by an oracle that
    /// does not use reshard (shard = tenant % 2, rows with a tenant).
    fn converged(&self, s: &State) -> Result<(), Violation> {
        let mut want: Vec<BTreeMap<Vec<u8>, Vec<Cell>>> = vec![BTreeMap::new(); self.p.shards];
        for row in self.w.states[usize::from(s.committed)].values() {
            let Some(t) = row.tenant else { continue };
            let cells = row.cells(self.w.mode);
            let key = self.coll.key(&cells[..1], true);
            let mut stored: Vec<Cell> = cells.iter().map(Cell::of).collect();
            stored[0] = self.coll.stored(&cells[0]);
            want[t.rem_euclid(2) as usize].insert(key, stored);
        }
        for (shard, (t, want)) in s.targets.iter().zip(&want).enumerate() {
            let have: BTreeMap<&Vec<u8>, &Vec<Cell>> =
                t.rows.iter().map(|(k, r)| (k, &r.cells)).collect();
            let want: BTreeMap<&Vec<u8>, &Vec<Cell>> = want.iter().collect();
            if have != want {
                let show = |m: &BTreeMap<&Vec<u8>, &Vec<Cell>>| {
                    let rows: Vec<String> = m
                        .values()
                        .map(|c| c.iter().map(Cell::show).collect::<Vec<_>>().join(","))
                        .collect();
                    format!("[{}]", rows.join(" "))
                };
                return Err(violation(
                    4,
                    format!(
                        "after {} transactions s{shard} holds {} but route(source) is {}",
                        s.committed,
                        show(&have),
                        show(&want)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A 128-bit fingerprint of a state, for the exhaustive search's
    /// dedup (two SipHash passes with different prefixes).
    pub fn fingerprint(s: &State) -> u128 {
        let mut h = Two(0x243F_6A88_85A3_08D3, 0x1319_8A2E_0370_7344);
        s.hash(&mut h);
        h.mix(0);
        (u128::from(h.0) << 64) | u128::from(h.1)
    }
}

fn show_key(row: &super::target::TRow) -> String {
    row.cells.first().map(Cell::show).unwrap_or_default()
}

fn stream_mut(s: &mut State) -> &mut Stream {
    match &mut s.phase {
        Phase::Stream(st) => st,
        Phase::Copy { .. } => panic!("a streaming step during the copy"),
    }
}

/// Two multiply-xorshift streams with different constants, fed at once:
/// a 128-bit fingerprint for one traversal, cheap in a debug build.
#[derive(Default)]
struct Two(u64, u64);

impl Two {
    fn mix(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 ^= self.0 >> 29;
        self.1 = (self.1 ^ w.rotate_left(17)).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        self.1 ^= self.1 >> 31;
    }
}

impl Hasher for Two {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.mix(u64::from_le_bytes(b));
        }
        let mut last = 0u64;
        for (i, b) in chunks.remainder().iter().enumerate() {
            last |= u64::from(*b) << (8 * i);
        }
        self.mix(last ^ (bytes.len() as u64) << 56);
    }
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    fn write_u128(&mut self, i: u128) {
        self.mix(i as u64);
        self.mix((i >> 64) as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
}
