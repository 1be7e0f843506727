//! The simulated source: one table `app.t (id, tenant, upd, val)`, a
//! workload of binlog event groups over a few keys — committed
//! transactions, and the PREPARE and COMMIT/ROLLBACK groups of XA
//! transactions — and the binlog positions they occupy (rotations, a
//! consistent snapshot position P, a failover to a server whose binlog
//! starts over).
//!
//! A workload is fixed before a schedule runs; the scheduler only decides
//! *when* each group is written. `states[i]` is the committed table after
//! the first `i` groups (a PREPARE changes nothing visible, its COMMIT
//! does), so the source's content at any point of a schedule is one
//! index.

use std::collections::BTreeMap;

use mysql_async::Value;
use reshard::position::Position;

/// How keys look: integers, or short strings under a case-insensitive
/// collation (`utf8mb4_general_ci`), where `a` and `A` are one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyMode {
    Int,
    CaseInsensitive,
}

/// The two spellings of each key under `_ci`: the second differs in case
/// and has a trailing space (PAD SPACE collations ignore it), so the two
/// hash to different lanes of two (`lane_hash` is FNV-1a, whose low bit a
/// case change alone never flips).
const CI_NAMES: [&[u8]; 8] = [b"a", b"A ", b"b", b"B ", b"c", b"C ", b"d", b"D "];

impl KeyMode {
    /// The key value of slot `slot` (a slot is one spelling of a key).
    pub fn value(self, slot: u8) -> Value {
        match self {
            KeyMode::Int => Value::Int(i64::from(slot) + 1),
            KeyMode::CaseInsensitive => Value::Bytes(CI_NAMES[usize::from(slot)].to_vec()),
        }
    }

    /// The key slot `slot` spells (two spellings per key under `_ci`).
    pub fn class(self, slot: u8) -> u8 {
        match self {
            KeyMode::Int => slot,
            KeyMode::CaseInsensitive => slot / 2,
        }
    }

    /// Spelling `variant` of key `class`.
    pub fn slot(self, class: u8, variant: u8) -> u8 {
        match self {
            KeyMode::Int => class,
            KeyMode::CaseInsensitive => class * 2 + variant % 2,
        }
    }

    pub fn show(self, slot: u8) -> String {
        match self.value(slot) {
            Value::Int(i) => i.to_string(),
            Value::Bytes(b) => format!("'{}'", String::from_utf8_lossy(&b)),
            v => format!("{v:?}"),
        }
    }
}

/// A source row. `tenant` is the shard key (`tenant % 2`, rows with a NULL
/// tenant are outside the rule's `where`); `upd` is the column of column
/// versions (the commit second of the row's last change).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Row {
    pub slot: u8,
    pub tenant: Option<i64>,
    pub upd: i64,
    pub val: i64,
}

impl Row {
    pub fn cells(&self, mode: KeyMode) -> Vec<Value> {
        vec![
            mode.value(self.slot),
            self.tenant.map_or(Value::NULL, Value::Int),
            Value::Int(self.upd),
            Value::Int(self.val),
        ]
    }

    pub fn show(&self, mode: KeyMode) -> String {
        let t = self.tenant.map_or("NULL".to_string(), |t| t.to_string());
        format!(
            "id={} tenant={t} upd={} val={}",
            mode.show(self.slot),
            self.upd,
            self.val
        )
    }
}

/// One rows event (or one compressed transaction payload): its start,
/// length, and its row images in order (before, after).
#[derive(Debug, Clone)]
pub struct Event {
    pub pos: Position,
    pub span: u64,
    pub rows: Vec<(Option<Row>, Option<Row>)>,
}

/// The part of an XA transaction an event group is, by xid number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Xa {
    /// `XA PREPARE`: the group holds the rows; nothing is committed yet.
    Prepare(u8),
    /// `XA COMMIT`: the prepared rows take effect (the group has none).
    Commit(u8),
    /// `XA ROLLBACK`: the prepared rows never take effect.
    Rollback(u8),
}

/// A source event group in the binlog: a committed transaction, or a part
/// of an XA transaction.
#[derive(Debug, Clone)]
pub struct Txn {
    /// Which server's binlog it is in (0, then 1 after a failover).
    pub segment: u8,
    pub xa: Option<Xa>,
    pub events: Vec<Event>,
    /// The boundary after it (what the decoder hands on as `end`).
    pub end: Position,
    /// The source's head once it committed: `end`, or the next file's
    /// start when the binlog rotated after it (a heartbeat reports it).
    pub head: Position,
    pub ts: u32,
}

/// One change a transaction makes, by key (not spelling).
#[derive(Debug, Clone)]
pub enum Op {
    Insert {
        slot: u8,
        tenant: Option<i64>,
        val: i64,
    },
    /// Update the row of key `class`: new spelling/key `slot` (a PK
    /// change when its key differs), tenant and value.
    Update {
        class: u8,
        slot: u8,
        tenant: Option<i64>,
        val: i64,
    },
    Delete {
        class: u8,
    },
}

/// A transaction to build: its changes and how they land in the binlog.
#[derive(Debug, Clone, Default)]
pub struct TxnSpec {
    pub ops: Vec<Op>,
    /// One compressed payload (one position, row index 0..n) instead of an
    /// event per change.
    pub compressed: bool,
    /// Committed in the same second as the previous transaction.
    pub same_second: bool,
    /// The binlog rotates after it.
    pub rotate_after: bool,
    /// The source fails over (or is `RESET MASTER`ed) before it: its binlog
    /// starts over at `b.000001`, and reshard continues with a raised epoch.
    pub failover_before: bool,
    /// An XA part: a `Prepare` carries `ops`, an outcome none. The keys a
    /// prepared transaction changed are locked until its outcome (InnoDB
    /// row locks), so no transaction in between touches them.
    pub xa: Option<Xa>,
}

/// A workload: the table at P and the transactions after it.
#[derive(Debug, Clone)]
pub struct Workload {
    pub name: String,
    pub mode: KeyMode,
    /// Version by `upd` (`version = { column = "upd" }`).
    pub column_version: bool,
    pub txns: Vec<Txn>,
    /// `states[i]`: the table (by key) after `i` transactions.
    pub states: Vec<BTreeMap<u8, Row>>,
    /// Where each segment's binlog starts; `starts[0]` is the snapshot
    /// position P.
    pub starts: Vec<Position>,
    pub initial_ts: u32,
}

fn file(seq: u32) -> String {
    format!("b.{seq:06}")
}

/// Bytes of the events around the rows of a transaction (GTID + BEGIN,
/// XID) and of one rows event.
const TXN_HEAD: u64 = 60;
const XID: u64 = 31;
const EVENT: u64 = 40;
const ROW: u64 = 30;
/// Where the first transaction of a file starts (after the format
/// description and previous-GTIDs events).
const FIRST_TXN: u64 = 256;
/// P: the source already has some binlog when reshard starts.
const SNAPSHOT_OFFSET: u64 = 4000;

impl Workload {
    /// Builds the binlog of `specs` applied to `initial` (by key class).
    pub fn build(
        name: &str,
        mode: KeyMode,
        column_version: bool,
        initial: Vec<Row>,
        specs: &[TxnSpec],
    ) -> Workload {
        let initial_ts = 1000u32;
        let mut state: BTreeMap<u8, Row> = initial
            .into_iter()
            .map(|r| (mode.class(r.slot), r))
            .collect();
        let mut states = vec![state.clone()];
        let mut txns = Vec::new();
        let (mut segment, mut seq, mut off) = (0u8, 1u32, SNAPSHOT_OFFSET);
        let mut starts = vec![Position::new(file(seq), off)];
        let mut ts = initial_ts;
        // prepared XA transactions: their operations and statement time
        let mut held: BTreeMap<u8, (Vec<Op>, i64)> = BTreeMap::new();
        for spec in specs {
            if spec.failover_before {
                segment += 1;
                seq = 1;
                off = FIRST_TXN;
                starts.push(Position::new(file(seq), off));
            }
            if !spec.same_second {
                ts += 1;
            }
            let rows = xa_rows(&mut state, &mut held, mode, spec, i64::from(ts));
            let mut events = Vec::new();
            let mut at = off + TXN_HEAD;
            let groups: Vec<Vec<(Option<Row>, Option<Row>)>> = if spec.compressed {
                vec![rows]
            } else {
                rows.into_iter().map(|r| vec![r]).collect()
            };
            for g in groups {
                let span = EVENT + ROW * g.len() as u64;
                events.push(Event {
                    pos: Position::new(file(seq), at),
                    span,
                    rows: g,
                });
                at += span;
            }
            // XA END + XA_PREPARE_LOG, or the XA COMMIT/ROLLBACK query,
            // count as the XID event
            let end = Position::new(file(seq), at + XID);
            off = at + XID;
            let head = if spec.rotate_after {
                seq += 1;
                off = FIRST_TXN;
                Position::new(file(seq), 4)
            } else {
                end.clone()
            };
            txns.push(Txn {
                segment,
                xa: spec.xa,
                events,
                end,
                head,
                ts,
            });
            states.push(state.clone());
        }
        Workload {
            name: name.to_string(),
            mode,
            column_version,
            txns,
            states,
            starts,
            initial_ts,
        }
    }

    /// Index of the first transaction of `segment` (or the number of
    /// transactions when it has none).
    pub fn first_of(&self, segment: u8) -> usize {
        self.txns
            .iter()
            .position(|t| t.segment >= segment)
            .unwrap_or(self.txns.len())
    }

    /// A random workload: `keys` keys, `n` transactions of 1–3 changes.
    pub fn random(
        rng: &mut Rng,
        name: &str,
        keys: u8,
        n: usize,
        failover: bool,
        collation: bool,
    ) -> Workload {
        let mode = if rng.below(4) == 0 && collation {
            KeyMode::CaseInsensitive
        } else {
            KeyMode::Int
        };
        let column_version = rng.below(3) == 0;
        let mut state: BTreeMap<u8, Row> = BTreeMap::new();
        let mut initial = Vec::new();
        for class in 0..keys {
            if rng.below(2) == 0 {
                let r = Row {
                    slot: mode.slot(class, rng.below(2) as u8),
                    tenant: random_tenant(rng),
                    upd: 1000,
                    val: rng.below(3) as i64,
                };
                state.insert(class, r.clone());
                initial.push(r);
            }
        }
        let failover_at = (failover && n >= 2).then(|| 1 + rng.below(n as u64 - 1) as usize);
        let mut specs = Vec::new();
        let mut gen = Gen {
            mode,
            keys,
            state,
            pending: Vec::new(),
            next_xid: 0,
        };
        let mut failed_over = false;
        for i in 0..n {
            // a failover waits until no XA transaction is prepared
            let failing = failover_at.is_some_and(|f| i >= f) && !failed_over;
            let failover_before = failing && gen.pending.is_empty();
            failed_over |= failover_before;
            let (ops, xa) =
                if failing && !failover_before || !gen.pending.is_empty() && rng.below(3) == 0 {
                    gen.resolve(rng)
                } else if !failover_before && gen.pending.len() < 2 && rng.below(5) == 0 {
                    gen.prepare(rng)
                } else {
                    (gen.ops(rng, true), None)
                };
            specs.push(TxnSpec {
                ops,
                compressed: rng.below(3) == 0,
                same_second: rng.below(3) == 0,
                rotate_after: rng.below(4) == 0,
                failover_before,
                xa,
            });
        }
        Workload::build(name, mode, column_version, initial, &specs)
    }
}

/// The row images of `spec`, and the table after it: a plain transaction
/// or an `XA COMMIT` changes the table, an `XA PREPARE` only holds its
/// operations (its images are those the commit will have: its keys are
/// locked until then).
fn xa_rows(
    state: &mut BTreeMap<u8, Row>,
    held: &mut BTreeMap<u8, (Vec<Op>, i64)>,
    mode: KeyMode,
    spec: &TxnSpec,
    ts: i64,
) -> Vec<(Option<Row>, Option<Row>)> {
    match spec.xa {
        None => spec
            .ops
            .iter()
            .map(|op| apply(state, mode, op, ts))
            .collect(),
        Some(Xa::Prepare(x)) => {
            let mut scratch = state.clone();
            let rows = spec
                .ops
                .iter()
                .map(|op| apply(&mut scratch, mode, op, ts))
                .collect();
            let prev = held.insert(x, (spec.ops.clone(), ts));
            assert!(prev.is_none(), "xid {x} prepared twice");
            rows
        }
        Some(Xa::Commit(x)) => {
            let (ops, at) = held.remove(&x).expect("XA COMMIT of a prepared xid");
            for op in &ops {
                apply(state, mode, op, at);
            }
            Vec::new()
        }
        Some(Xa::Rollback(x)) => {
            held.remove(&x).expect("XA ROLLBACK of a prepared xid");
            Vec::new()
        }
    }
}

/// The key classes an operation touches (locks).
fn touched(mode: KeyMode, op: &Op) -> Vec<u8> {
    match *op {
        Op::Insert { slot, .. } => vec![mode.class(slot)],
        Op::Update { class, slot, .. } => vec![class, mode.class(slot)],
        Op::Delete { class } => vec![class],
    }
}

fn random_tenant(rng: &mut Rng) -> Option<i64> {
    match rng.below(4) {
        0 => None,
        t => Some(t as i64),
    }
}

/// Builds a random workload's transactions: plain ones, and XA ones whose
/// keys stay locked from their PREPARE to their outcome.
struct Gen {
    mode: KeyMode,
    keys: u8,
    /// The committed table.
    state: BTreeMap<u8, Row>,
    /// Prepared XA transactions: xid, operations, locked key classes.
    pending: Vec<(u8, Vec<Op>, Vec<u8>)>,
    next_xid: u8,
}

impl Gen {
    fn locked(&self) -> Vec<u8> {
        self.pending
            .iter()
            .flat_map(|p| p.2.iter().copied())
            .collect()
    }

    /// 1–3 random operations on unlocked keys (applied to the table when
    /// `commit`); none when every key is locked.
    fn ops(&mut self, rng: &mut Rng, commit: bool) -> Vec<Op> {
        let locked = self.locked();
        let mut scratch = self.state.clone();
        let mut ops = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let Some(op) = random_op(rng, &scratch, self.mode, self.keys, &locked) else {
                break;
            };
            apply(&mut scratch, self.mode, &op, 0);
            ops.push(op);
        }
        if commit {
            self.state = scratch;
        }
        ops
    }

    /// An `XA PREPARE` of random operations (a plain empty transaction when
    /// every key is locked).
    fn prepare(&mut self, rng: &mut Rng) -> (Vec<Op>, Option<Xa>) {
        let ops = self.ops(rng, false);
        if ops.is_empty() {
            return (ops, None);
        }
        let x = self.next_xid;
        self.next_xid += 1;
        let locks = ops.iter().flat_map(|op| touched(self.mode, op)).collect();
        self.pending.push((x, ops.clone(), locks));
        (ops, Some(Xa::Prepare(x)))
    }

    /// The outcome of a random prepared transaction: mostly `XA COMMIT`.
    fn resolve(&mut self, rng: &mut Rng) -> (Vec<Op>, Option<Xa>) {
        let (x, ops, _) = self
            .pending
            .remove(rng.below(self.pending.len() as u64) as usize);
        if rng.below(4) == 0 {
            return (Vec::new(), Some(Xa::Rollback(x)));
        }
        for op in &ops {
            apply(&mut self.state, self.mode, op, 0);
        }
        (Vec::new(), Some(Xa::Commit(x)))
    }
}

fn random_op(
    rng: &mut Rng,
    state: &BTreeMap<u8, Row>,
    mode: KeyMode,
    keys: u8,
    locked: &[u8],
) -> Option<Op> {
    let absent: Vec<u8> = (0..keys)
        .filter(|c| !state.contains_key(c) && !locked.contains(c))
        .collect();
    let present: Vec<u8> = state
        .keys()
        .copied()
        .filter(|c| !locked.contains(c))
        .collect();
    if absent.is_empty() && present.is_empty() {
        return None;
    }
    loop {
        match rng.below(5) {
            0 if !absent.is_empty() => {
                let class = absent[rng.below(absent.len() as u64) as usize];
                return Some(Op::Insert {
                    slot: mode.slot(class, rng.below(2) as u8),
                    tenant: random_tenant(rng),
                    val: rng.below(3) as i64,
                });
            }
            1 | 2 if !present.is_empty() => {
                let class = present[rng.below(present.len() as u64) as usize];
                let row = &state[&class];
                let (tenant, val) = if rng.below(2) == 0 {
                    (random_tenant(rng), row.val)
                } else {
                    (row.tenant, row.val + 1)
                };
                return Some(Op::Update {
                    class,
                    slot: row.slot,
                    tenant,
                    val,
                });
            }
            3 if !present.is_empty() => {
                // a primary-key change: to a free key, or (under `_ci`) to
                // another spelling of the same key
                let class = present[rng.below(present.len() as u64) as usize];
                let row = &state[&class];
                let respell = mode == KeyMode::CaseInsensitive && rng.below(2) == 0;
                let slot = if respell {
                    row.slot ^ 1
                } else if absent.is_empty() {
                    continue;
                } else {
                    mode.slot(
                        absent[rng.below(absent.len() as u64) as usize],
                        rng.below(2) as u8,
                    )
                };
                return Some(Op::Update {
                    class,
                    slot,
                    tenant: row.tenant,
                    val: row.val,
                });
            }
            4 if !present.is_empty() => {
                return Some(Op::Delete {
                    class: present[rng.below(present.len() as u64) as usize],
                });
            }
            _ => {}
        }
    }
}

/// Applies `op` to the table; returns its row images.
fn apply(
    state: &mut BTreeMap<u8, Row>,
    mode: KeyMode,
    op: &Op,
    ts: i64,
) -> (Option<Row>, Option<Row>) {
    let (before, after) = match *op {
        Op::Insert { slot, tenant, val } => (None, Some((slot, tenant, val))),
        Op::Update {
            class,
            slot,
            tenant,
            val,
        } => (Some(class), Some((slot, tenant, val))),
        Op::Delete { class } => (Some(class), None),
    };
    let before = before.map(|class| {
        state
            .remove(&class)
            .unwrap_or_else(|| panic!("workload changes a missing key: {op:?}"))
    });
    let after = after.map(|(slot, tenant, val)| {
        let r = Row {
            slot,
            tenant,
            upd: ts,
            val,
        };
        let prev = state.insert(mode.class(slot), r.clone());
        assert!(prev.is_none(), "workload writes an existing key: {op:?}");
        r
    });
    (before, after)
}

/// SplitMix64: small, fast and the same everywhere, so a seed names one
/// workload and one schedule for good.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
