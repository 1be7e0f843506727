//! The simulated pipeline's state and the steps the scheduler may take:
//! reshard's real pure parts, wired the way `pipeline::Coordinator`,
//! `writer::lane::run`, `snapshot::copy`, `commands::replay` and
//! `checkpoint::prune` wire them, with every I/O replaced by a step.
//!
//! Real: the router (`rules::Router` compiled from a rule file with
//! `where`, comparing keys under the key column's collation), the version
//! encoding (`Version::at`, and `with_column` inside the router), lane
//! assignment (`writer::pool::lane_of`), batch deduplication
//! (`writer::lane::dedup`), the XA hold (`source::xa::Prepared`), the
//! checkpoint bookkeeping and watermark (`checkpoint::Bookkeeping`,
//! `checkpoint::Tracker`) and the prune threshold
//! (`checkpoint::prune::threshold`).
//!
//! Simulated: the source (`model`), the targets (`target`), the control
//! database (`Control`), and time. What each step does is in `steps`; the
//! invariants are in `check`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mysql_async::consts::ColumnType;
use reshard::checkpoint::bookkeeping::{Bookkeeping, Mark};
use reshard::checkpoint::{LaneProgress, Saves, Tracker};
use reshard::position::Position;
use reshard::rules::file::parse_rule;
use reshard::rules::Router;
use reshard::source::collation::KeyCollations;
use reshard::source::schema::SchemaOrigin;
use reshard::source::xa::Prepared;
use reshard::source::{Column, RowChange, TableSchema};
use reshard::version::Version;
use reshard::writer::collation::{Collation as KeyCollation, WeightTable, Weights};
use reshard::writer::keyenc::KeyPart;
use reshard::writer::WriteOp;

use super::model::{KeyMode, Workload};
use super::target::{assigned_columns, Collation, Target, TombRead};

/// Tombstone retention. The model's clock runs the retention forward
/// before every prune, so every logged position is old enough: pruning is
/// as aggressive as the position log allows.
pub const RETENTION: Duration = Duration::from_secs(10);

/// Sizes of a model.
#[derive(Debug, Clone)]
pub struct Params {
    pub shards: usize,
    pub lanes_per_shard: usize,
    /// Operations a lane gathers before it must apply.
    pub batch_size: usize,
    /// Rows per copy chunk.
    pub chunk_rows: usize,
    /// Lanes take and apply a batch in one step ([`Action::Batch`]) instead
    /// of receiving message by message ([`Action::Recv`]) and applying in
    /// two steps ([`Action::Flush`]: the batch's transaction begins and
    /// reads its tombstones; [`Action::Write`]: it writes and commits).
    /// The coarser step keeps the exhaustive search small: a batch is cut
    /// by what was queued when the lane ran, not by the linger timeout,
    /// and no other lane commits inside it.
    pub atomic_batches: bool,
    /// The coordinator queues a transaction's operations in one step
    /// ([`Action::Dispatch`]) instead of one change per step, with ticks
    /// possible in between.
    pub atomic_dispatch: bool,
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
    /// Tombstone pruning runs while a replay is running (before b1020bd).
    pub prune_during_replay: bool,
    /// The prune threshold takes the newest logged position of any epoch
    /// and versions it with the current epoch (before b1020bd).
    pub prune_mixes_epochs: bool,
    /// Lanes are chosen by the raw key bytes (`keyenc::encode` of the key)
    /// rather than by the operation's canonical `key_enc` (before
    /// aa2e8d7): two spellings of one key under a `_ci` collation go to
    /// two lanes.
    pub lane_by_raw_bytes: bool,
    /// `replay --from X` with X beyond the checkpoint saves checkpoints
    /// past its start, jumping over the transactions between the
    /// checkpoint and X, which nobody applied (a finding of this
    /// simulation; before `checkpoint::Saves::starting_at`).
    pub replay_saves_past_gap: bool,
}

const VARIANTS: [&str; 7] = [
    "mark-on-receive",
    "where-ignored-on-before",
    "no-row-index",
    "prune-during-replay",
    "prune-mixes-epochs",
    "lane-by-raw-bytes",
    "replay-saves-past-gap",
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
            &mut self.replay_saves_past_gap,
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
    /// The source commits its next event group.
    Commit,
    /// The copy reads, routes and applies its next chunk.
    CopyChunk,
    /// The copy saves the progress of the chunk it applied.
    CopySave,
    /// The decoder hands out the next transaction; the coordinator routes
    /// it and queues its ops.
    Dispatch,
    /// A heartbeat at the source's head.
    Heartbeat,
    /// The coordinator's tick: queue a mark, save a new watermark.
    Tick,
    /// Lane i takes the next message of its queue.
    Recv(u8),
    /// Lane i begins its batch's transaction and reads its tombstones.
    Flush(u8),
    /// Lane i writes its begun batch, commits and reports its mark.
    Write(u8),
    /// Lane i receives messages until its batch is full or its queue is
    /// empty, then applies the batch (`Recv`…, `Flush`, `Write` at once).
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
            Action::Write(i) => write!(f, "w{i}"),
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
            _ if s.starts_with('w') => Action::Write(n(&s[1..])?),
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

pub fn violation(invariant: u8, what: String) -> Violation {
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
}

/// What a lane receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Msg {
    /// An operation, by its number in [`Env::ops`].
    Op(u32),
    Mark {
        seq: u64,
        end: Position,
        ts: u32,
    },
}

/// A batch whose transaction has begun: its operations and the
/// tombstones its first statement read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Begun {
    pub ops: Vec<u32>,
    pub read: TombRead,
}

/// One writer lane: its queue, the batch it is gathering or writing, the
/// mark held until that batch is applied, and its tombstone hint.
#[derive(Debug, Clone, Default, Hash)]
pub struct Lane {
    pub queue: VecDeque<Msg>,
    pub pending: Vec<u32>,
    pub begun: Option<Begun>,
    pub held: Option<LaneProgress>,
    pub hint: Option<bool>,
}

impl Lane {
    /// Nothing received and not applied.
    pub fn idle(&self) -> bool {
        self.pending.is_empty() && self.begun.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mode {
    Run,
    /// `replay --from X --to <head>`: stops after event group `stop`.
    Replay {
        stop: u8,
        floor: Version,
        draining: bool,
    },
}

/// An operation (by number) dispatched by the running process whose
/// transaction (by index) no saved checkpoint has passed yet; invariant 3
/// checks them at each save.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owed {
    pub txn: u8,
    pub op: u32,
}

/// A streaming process (`run` or `replay`): everything a crash loses.
#[derive(Debug, Clone)]
pub struct Stream {
    pub mode: Mode,
    /// Where it started streaming.
    pub start: Position,
    pub book: Bookkeeping,
    pub tracker: Tracker,
    /// The watermark sequence the bookkeeping handled last.
    pub handled: u64,
    /// Next event group to decode.
    pub cursor: u8,
    /// The decoder's prepared XA transactions (the real `xa::Prepared`).
    pub prepared: Prepared,
    /// End of the last transaction the decoder handed out (where the next
    /// PREPARE group starts).
    pub last_end: Position,
    /// The changes of the transaction being queued that are not yet.
    pub partial: Option<VecDeque<RowChange>>,
    pub lanes: Vec<Lane>,
    pub owed: Vec<Owed>,
}

impl Hash for Stream {
    /// The decoder's state is left out: it is a function of `start` and
    /// `cursor` (what was decoded since the start); of the transaction
    /// being queued, how much is left says which changes.
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.partial.as_ref().map(VecDeque::len).hash(h);
        self.mode.hash(h);
        self.start.hash(h);
        self.book.hash(h);
        self.tracker.hash(h);
        self.handled.hash(h);
        self.cursor.hash(h);
        self.lanes.hash(h);
        self.owed.hash(h);
    }
}

impl Stream {
    /// Queues the due mark on every lane (`LanePool::mark`): lanes carry
    /// its resume position.
    pub fn mark(&mut self) -> Option<Mark> {
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

    pub fn draining(&self) -> bool {
        matches!(self.mode, Mode::Replay { draining: true, .. })
    }

    /// No operation received, queued or being applied.
    pub fn idle_lanes(&self) -> bool {
        self.lanes
            .iter()
            .all(|l| l.idle() && !l.queue.iter().any(|m| matches!(m, Msg::Op(_))))
    }

    /// Nothing at all left on the lanes.
    pub fn empty_lanes(&self) -> bool {
        self.lanes.iter().all(|l| l.idle() && l.queue.is_empty())
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

/// What the schedule may still do that is not progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Left {
    pub crashes: u8,
    pub replays: u8,
    pub prunes: u8,
}

/// The whole simulated world.
#[derive(Debug, Clone)]
pub struct State {
    /// Event groups the source has committed.
    pub committed: u8,
    /// Shared until a step writes one (cheap copies for the search).
    pub targets: Vec<Arc<Target>>,
    pub ctl: Control,
    pub phase: Phase,
    pub ghost: Arc<BTreeMap<(u8, Vec<u8>), Ghost>>,
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
        for ((shard, key), g) in self.ghost.iter() {
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

/// Where an operation came from, to route each row image once per model:
/// a row change (its version as decoded: epoch, position and row index
/// name one image), or a copied row (table state, key class).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    Change(Version),
    Copy(u8, u8),
}

/// What the random schedules exercised (counted per step, summed over a
/// run), so a run shows it reached every feature.
#[derive(Debug, Clone, Copy, Default)]
pub struct Coverage {
    pub crashes: u64,
    pub replays: u64,
    /// Replays that stopped on an `XA COMMIT` whose PREPARE they never read.
    pub replays_refused: u64,
    pub prunes: u64,
    pub tombstones_pruned: u64,
    pub raises: u64,
    pub xa_commits: u64,
    pub xa_rollbacks: u64,
    /// Checks of invariant 4 (quiescent states).
    pub converged: u64,
    pub ci_schedules: u64,
    pub column_schedules: u64,
}

impl std::ops::AddAssign for Coverage {
    fn add_assign(&mut self, o: Coverage) {
        self.crashes += o.crashes;
        self.replays += o.replays;
        self.replays_refused += o.replays_refused;
        self.prunes += o.prunes;
        self.tombstones_pruned += o.tombstones_pruned;
        self.raises += o.raises;
        self.xa_commits += o.xa_commits;
        self.xa_rollbacks += o.xa_rollbacks;
        self.converged += o.converged;
        self.ci_schedules += o.ci_schedules;
        self.column_schedules += o.column_schedules;
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} crashes, {} replays ({} stopped on an XA COMMIT without its PREPARE), {} prunes ({} tombstones), {} epoch raises, {} XA commits, {} XA rollbacks, {} quiescent states checked; {} schedules with _ci keys, {} with column versions",
            self.crashes,
            self.replays,
            self.replays_refused,
            self.prunes,
            self.tombstones_pruned,
            self.raises,
            self.xa_commits,
            self.xa_rollbacks,
            self.converged,
            self.ci_schedules,
            self.column_schedules
        )
    }
}

/// The fixed parts of a model: workload, sizes, variant and reshard's real
/// components; and the operations routed so far.
pub struct Env {
    pub w: Workload,
    pub p: Params,
    pub v: Variant,
    pub schema: Arc<TableSchema>,
    pub router: Router,
    /// The same rule without `where` (for the where variant).
    pub plain: Router,
    pub coll: Collation,
    pub assigned: Vec<bool>,
    /// Every operation routed, numbered; lanes and the owed list hold
    /// numbers (cheap to copy and to fingerprint).
    pub ops: Vec<WriteOp>,
    /// The operations of each row image (`None`: a dead letter).
    pub routed: HashMap<Origin, Option<Vec<u32>>>,
    /// Step descriptions, when tracing.
    pub log: Option<Vec<String>>,
    pub seen: Coverage,
}

pub fn base_instant() -> Instant {
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

/// The key column's part of the canonical key, as `source::collation`
/// would learn it: `utf8mb4_general_ci` (id 45, PAD SPACE) over the ASCII
/// the model's keys use — every letter weighs as its capital — or exact
/// for integers.
fn key_part(mode: KeyMode) -> KeyPart {
    if mode == KeyMode::Int {
        return KeyPart::Exact;
    }
    let weights: Vec<[u8; 2]> = (0u8..128).map(|c| [0, c.to_ascii_uppercase()]).collect();
    let table =
        WeightTable::from_sequence(weights.iter().map(|w| Some(&w[..]))).expect("128 weights fit");
    KeyPart::Collated(Arc::new(KeyCollation::new(
        "utf8mb4_general_ci",
        45,
        true,
        Weights::Utf8(table),
    )))
}

/// The real router of the model's rule, comparing keys under the key
/// column's collation as `run` does.
fn compile(mode: KeyMode, column_version: bool, with_where: bool) -> Router {
    let text = rule_text(column_version, with_where);
    let rule = parse_rule(Path::new("t.toml"), &text).expect("the model's rule parses");
    let collations = KeyCollations::given([(("app", "t", "id"), key_part(mode))]);
    Router::new(vec![rule], &["s0".to_string(), "s1".to_string()])
        .expect("the model's rule binds")
        .with_key_collations(Arc::new(collations))
}

impl Env {
    pub fn new(w: Workload, p: Params, v: Variant) -> Env {
        assert_eq!(p.shards, 2, "the model's rule names two shards");
        let schema = Arc::new(schema(w.mode));
        let mut router = compile(w.mode, w.column_version, true);
        let target = router
            .target_table(&schema)
            .expect("the rule fits the schema");
        let assigned = assigned_columns(&target.columns, &target.key);
        let coll = match w.mode {
            KeyMode::Int => Collation::Binary,
            KeyMode::CaseInsensitive => Collation::CaseInsensitive,
        };
        Env {
            plain: compile(w.mode, w.column_version, false),
            w,
            p,
            v,
            schema,
            router,
            coll,
            assigned,
            ops: Vec::new(),
            routed: HashMap::new(),
            log: None,
            seen: Coverage::default(),
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
        self.ops.clear();
        self.routed.clear();
        self
    }

    pub fn lanes(&self) -> usize {
        self.p.shards * self.p.lanes_per_shard
    }

    pub fn note(&mut self, f: impl FnOnce() -> String) {
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
            targets: (0..self.p.shards)
                .map(|_| Arc::new(Target::default()))
                .collect(),
            ctl: Control {
                floor: Version::at(0, &p, 0).expect("P versions"),
                checkpoint: p,
                epoch: 0,
                segment: 0,
                copy_cursor: None,
                log: Vec::new(),
            },
            phase: Phase::Copy { unsaved: None },
            ghost: Arc::new(BTreeMap::new()),
            left,
        }
    }

    /// The model's clock: the last commit's time (the simulated `now`).
    pub fn now(&self, s: &State) -> Instant {
        let ts = s
            .committed
            .checked_sub(1)
            .map_or(self.w.initial_ts, |i| self.w.txns[usize::from(i)].ts);
        base_instant() + Duration::from_secs(u64::from(ts - self.w.initial_ts))
    }

    /// The source's head in the current binlog.
    pub fn head(&self, s: &State) -> Position {
        let n = usize::from(s.committed);
        if n > self.w.first_of(s.ctl.segment) {
            self.w.txns[n - 1].head.clone()
        } else {
            self.w.starts[usize::from(s.ctl.segment)].clone()
        }
    }

    /// The boundary `replay --from` names for `Replay(k)`.
    pub fn boundary(&self, s: &State, k: u8) -> Position {
        let first = self.w.first_of(s.ctl.segment);
        if k == 0 {
            self.w.starts[usize::from(s.ctl.segment)].clone()
        } else {
            self.w.txns[first + usize::from(k) - 1].end.clone()
        }
    }

    /// A new streaming process from `start`.
    pub fn stream(&self, s: &State, mode: Mode, start: Position, saves: Saves) -> Phase {
        let seg = s.ctl.segment;
        let cursor = (self.w.first_of(seg)..self.w.txns.len())
            .find(|&i| self.w.txns[i].segment == seg && self.w.txns[i].end > start)
            .unwrap_or_else(|| self.w.first_of(seg + 1));
        let mut st = Stream {
            mode,
            book: Bookkeeping::new(start.clone(), saves, RETENTION),
            last_end: start.clone(),
            start,
            tracker: Tracker::new(self.lanes()),
            handled: 0,
            cursor: cursor as u8,
            prepared: Prepared::default(),
            partial: None,
            lanes: vec![Lane::default(); self.lanes()],
            owed: Vec::new(),
        };
        // starting where the binlog rotated, the decoder first reads the
        // ROTATE: a boundary of its own (`close_file`)
        let rotated = self.w.txns[..cursor]
            .iter()
            .find(|t| t.segment == seg && t.end == st.start && t.head != t.end);
        if let Some(t) = rotated {
            st.book.begin_transaction();
            st.book.dispatched(t.head.clone(), t.head.clone(), t.ts);
            st.last_end = t.head.clone();
        }
        Phase::Stream(Box::new(st))
    }

    /// `run` restarting from the saved checkpoint.
    pub fn restart(&self, s: &State) -> Phase {
        if self.copy_done(s) {
            self.stream(s, Mode::Run, s.ctl.checkpoint.clone(), Saves::All)
        } else {
            Phase::Copy { unsaved: None }
        }
    }

    pub fn copy_done(&self, s: &State) -> bool {
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
        self.enabled_stream(s, st, out);
        if s.left.crashes > 0 {
            out.push(Action::Crash);
        }
        self.enabled_operator(s, st, out);
    }

    /// The coordinator's and the lanes' steps.
    fn enabled_stream(&self, s: &State, st: &Stream, out: &mut Vec<Action>) {
        let next = usize::from(s.committed);
        let draining = st.draining();
        let cursor = usize::from(st.cursor);
        if !draining && cursor < next && self.w.txns[cursor].segment == s.ctl.segment {
            out.push(Action::Dispatch);
        }
        // a heartbeat with a position: none while an XA is prepared
        let idle = cursor == next && st.prepared.is_empty() && st.partial.is_none();
        if !draining && idle && self.head(s) > *st.book.dispatched_end() {
            out.push(Action::Heartbeat);
        }
        let newer = st.tracker.watermark().is_some_and(|w| w.seq > st.handled);
        if !draining && (st.book.mark_due().is_some() || newer) {
            out.push(Action::Tick);
        }
        for (i, l) in st.lanes.iter().enumerate() {
            let i = i as u8;
            if self.p.atomic_batches {
                if !l.queue.is_empty() {
                    out.push(Action::Batch(i));
                }
            } else if l.begun.is_some() {
                out.push(Action::Write(i));
            } else {
                if !l.queue.is_empty() && l.pending.len() < self.p.batch_size {
                    out.push(Action::Recv(i));
                }
                if !l.pending.is_empty() {
                    out.push(Action::Flush(i));
                }
            }
        }
        if draining && st.empty_lanes() {
            out.push(Action::Finish);
        }
    }

    /// Replays, pruning and the epoch raise.
    fn enabled_operator(&self, s: &State, st: &Stream, out: &mut Vec<Action>) {
        let next = usize::from(s.committed);
        let seg = s.ctl.segment;
        if s.left.replays > 0 && st.mode == Mode::Run {
            let n = next - self.w.first_of(seg);
            out.extend((0..n as u8).map(Action::Replay));
        }
        let prune_ok = st.mode == Mode::Run || self.v.prune_during_replay;
        if s.left.prunes > 0 && !self.w.column_version && prune_ok && self.threshold(s).is_some() {
            out.push(Action::Prune);
        }
        let next_seg = self.w.txns.get(next).map(|t| t.segment);
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

    /// Takes one step. A step that is not enabled panics (schedules are
    /// only built from [`Env::enabled`]).
    pub fn step(&mut self, s: &mut State, a: Action) -> Result<(), Violation> {
        match a {
            Action::Commit => {
                s.committed += 1;
                let i = usize::from(s.committed) - 1;
                self.note(|| format!("source commits event group {i}"));
            }
            Action::CopyChunk => self.copy_chunk(s),
            Action::CopySave => self.copy_save(s),
            Action::Dispatch => self.dispatch(s)?,
            Action::Heartbeat => {
                let head = self.head(s);
                self.note(|| format!("heartbeat at {head}"));
                stream_mut(s).book.heartbeat(Some(head));
            }
            Action::Tick => self.tick(s)?,
            Action::Recv(i) => self.recv(s, usize::from(i)),
            Action::Flush(i) => self.flush(s, usize::from(i)),
            Action::Write(i) => self.write(s, usize::from(i)),
            Action::Batch(i) => self.batch(s, usize::from(i)),
            Action::Finish => self.finish(s)?,
            Action::Crash => {
                self.seen.crashes += 1;
                s.left.crashes -= 1;
                s.phase = self.restart(s);
                let cp = s.ctl.checkpoint.clone();
                self.note(|| format!("crash: in-flight work lost; restart from checkpoint {cp}"));
            }
            Action::Replay(k) => self.replay(s, k),
            Action::Prune => self.prune(s),
            Action::Raise => self.raise(s),
        }
        Ok(())
    }

    /// A 128-bit fingerprint of a state, for the exhaustive search's
    /// dedup (two multiply-xorshift streams).
    pub fn fingerprint(s: &State) -> u128 {
        let mut h = Two(0x243F_6A88_85A3_08D3, 0x1319_8A2E_0370_7344);
        s.hash(&mut h);
        h.mix(0);
        (u128::from(h.0) << 64) | u128::from(h.1)
    }
}

pub fn stream_mut(s: &mut State) -> &mut Stream {
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
