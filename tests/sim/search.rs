//! Searching schedules: breadth-first over every schedule of a small model
//! (with state dedup; a counterexample is a shortest schedule), random
//! schedules from seeds (a counterexample is shrunk by dropping steps),
//! and traces that replay a schedule step by step.

use std::collections::HashSet;

use super::model::{KeyMode, Op, Rng, Row, TxnSpec, Workload, Xa};
use super::system::{Action, Coverage, Env, Left, Params, State, Variant, Violation};

/// A model: a workload, sizes and budgets.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub seed: Option<u64>,
    pub w: Workload,
    pub p: Params,
    pub left: Left,
}

fn row(slot: u8, tenant: Option<i64>) -> Row {
    Row {
        slot,
        tenant,
        upd: 1000,
        val: 0,
    }
}

fn small_params() -> Params {
    Params {
        shards: 2,
        lanes_per_shard: 1,
        batch_size: 2,
        chunk_rows: 2,
        atomic_batches: true,
        atomic_dispatch: true,
    }
}

/// The exhaustive model: 3 keys, 2 shards, 1 lane each, 4 transactions
/// covering every kind of change (budgets: each test sets its own).
///
/// * txn 0: key 1 changes tenant 1 → 2 (moves s1 → s0);
/// * txn 1: key 3 inserted; key 2's tenant NULL → 1 (starts matching
///   `where`); the binlog rotates after it;
/// * txn 2, one compressed payload: key 2 deleted, key 3 renamed to key 2
///   (a primary-key change onto the key just deleted);
/// * txn 3: key 1's tenant 2 → NULL (stops matching).
pub fn small(key_mode: KeyMode, column_version: bool) -> Model {
    let specs = vec![
        TxnSpec {
            ops: vec![Op::Update {
                class: 0,
                slot: 0,
                tenant: Some(2),
                val: 0,
            }],
            ..Default::default()
        },
        TxnSpec {
            ops: vec![
                Op::Insert {
                    slot: key_mode.slot(2, 0),
                    tenant: Some(3),
                    val: 0,
                },
                Op::Update {
                    class: 1,
                    slot: key_mode.slot(1, 0),
                    tenant: Some(1),
                    val: 0,
                },
            ],
            rotate_after: true,
            ..Default::default()
        },
        TxnSpec {
            ops: vec![
                Op::Delete { class: 1 },
                Op::Update {
                    class: 2,
                    slot: key_mode.slot(1, 1),
                    tenant: Some(3),
                    val: 1,
                },
            ],
            compressed: true,
            same_second: true,
            ..Default::default()
        },
        TxnSpec {
            ops: vec![Op::Update {
                class: 0,
                slot: key_mode.slot(0, 1),
                tenant: None,
                val: 0,
            }],
            ..Default::default()
        },
    ];
    let initial = vec![
        row(key_mode.slot(0, 0), Some(1)),
        row(key_mode.slot(1, 0), None),
    ];
    let name = match (key_mode, column_version) {
        (KeyMode::Int, false) => "small",
        (KeyMode::Int, true) => "small-column",
        (KeyMode::CaseInsensitive, false) => "small-ci",
        (KeyMode::CaseInsensitive, true) => "small-ci-column",
    };
    let p = small_params();
    Model {
        name: name.into(),
        seed: None,
        w: Workload::build(name, key_mode, column_version, initial, &specs),
        left: Left {
            crashes: 1,
            replays: 1,
            prunes: 1,
        },
        p,
    }
}

/// Two spellings of one key racing on two lanes: `a` (tenant 1) is
/// updated, respelled `A ` and deleted, with two lanes per shard applying
/// message by message (a batch's tombstone read and its writes are two
/// steps). Under `utf8mb4_general_ci` all three are one key: one lane.
pub fn ci_race() -> Model {
    let mode = KeyMode::CaseInsensitive;
    let upd = |slot, val| Op::Update {
        class: 0,
        slot,
        tenant: Some(1),
        val,
    };
    let specs = vec![
        TxnSpec {
            ops: vec![upd(mode.slot(0, 0), 1)],
            ..Default::default()
        },
        TxnSpec {
            ops: vec![upd(mode.slot(0, 1), 1)],
            ..Default::default()
        },
        TxnSpec {
            ops: vec![Op::Delete { class: 0 }],
            ..Default::default()
        },
    ];
    let mut p = small_params();
    p.lanes_per_shard = 2;
    p.atomic_batches = false;
    Model {
        name: "ci-race".into(),
        seed: None,
        w: Workload::build("ci-race", mode, false, vec![row(0, Some(1))], &specs),
        p,
        left: Left {
            crashes: 0,
            replays: 0,
            prunes: 0,
        },
    }
}

/// XA transactions: `x0` updates key 1 and commits after a plain
/// transaction on key 2 (the binlog rotates in between); `x1` deletes
/// key 2 and rolls back. With a crash and a replay (from any boundary of
/// the current binlog: inside x0's PREPARE..COMMIT span the replay stops
/// on the COMMIT it cannot match).
pub fn xa() -> Model {
    let specs = vec![
        TxnSpec {
            ops: vec![Op::Update {
                class: 0,
                slot: 0,
                tenant: Some(1),
                val: 1,
            }],
            xa: Some(Xa::Prepare(0)),
            ..Default::default()
        },
        TxnSpec {
            ops: vec![Op::Update {
                class: 1,
                slot: 1,
                tenant: Some(2),
                val: 1,
            }],
            rotate_after: true,
            ..Default::default()
        },
        TxnSpec {
            xa: Some(Xa::Commit(0)),
            ..Default::default()
        },
        TxnSpec {
            ops: vec![Op::Delete { class: 1 }],
            xa: Some(Xa::Prepare(1)),
            ..Default::default()
        },
        TxnSpec {
            xa: Some(Xa::Rollback(1)),
            ..Default::default()
        },
    ];
    Model {
        name: "xa".into(),
        seed: None,
        w: Workload::build(
            "xa",
            KeyMode::Int,
            false,
            vec![row(0, Some(1)), row(1, Some(2))],
            &specs,
        ),
        p: small_params(),
        left: Left {
            crashes: 1,
            replays: 1,
            prunes: 0,
        },
    }
}

/// A failover: two transactions on the first server (with a rotation),
/// then an insert and a delete on the new one after the epoch raise.
pub fn failover() -> Model {
    let upd = |val| Op::Update {
        class: 0,
        slot: 0,
        tenant: Some(1),
        val,
    };
    let specs = vec![
        TxnSpec {
            ops: vec![upd(1)],
            rotate_after: true,
            ..Default::default()
        },
        TxnSpec {
            ops: vec![upd(2)],
            ..Default::default()
        },
        TxnSpec {
            ops: vec![Op::Insert {
                slot: 1,
                tenant: Some(1),
                val: 0,
            }],
            failover_before: true,
            ..Default::default()
        },
        TxnSpec {
            ops: vec![Op::Delete { class: 1 }],
            ..Default::default()
        },
    ];
    Model {
        name: "failover".into(),
        seed: None,
        w: Workload::build(
            "failover",
            KeyMode::Int,
            false,
            vec![row(0, Some(1))],
            &specs,
        ),
        p: small_params(),
        left: Left {
            crashes: 1,
            replays: 0,
            prunes: 1,
        },
    }
}

/// A random model from a seed (workload, sizes and budgets). With
/// `collation`, a quarter of the workloads have case-insensitive keys.
pub fn random(seed: u64, collation: bool) -> (Model, Rng) {
    let mut rng = Rng::new(seed);
    let keys = 2 + rng.below(3) as u8;
    let n = 2 + rng.below(5) as usize;
    let failover = rng.below(3) == 0;
    let name = if collation { "random-ci" } else { "random" };
    let w = Workload::random(&mut rng, name, keys, n, failover, collation);
    let p = Params {
        shards: 2,
        lanes_per_shard: 1 + rng.below(2) as usize,
        batch_size: 1 + rng.below(3) as usize,
        chunk_rows: 1 + rng.below(3) as usize,
        atomic_batches: false,
        atomic_dispatch: false,
    };
    let left = Left {
        crashes: rng.below(3) as u8,
        replays: rng.below(2) as u8,
        prunes: rng.below(3) as u8,
    };
    let m = Model {
        name: name.into(),
        seed: Some(seed),
        w,
        p,
        left,
    };
    (m, rng)
}

/// A model by name, as a trace names it.
pub fn named(name: &str, seed: Option<u64>) -> Option<Model> {
    Some(match name {
        "small" => small(KeyMode::Int, false),
        "small-column" => small(KeyMode::Int, true),
        "small-ci" => small(KeyMode::CaseInsensitive, false),
        "small-ci-column" => small(KeyMode::CaseInsensitive, true),
        "failover" => failover(),
        "ci-race" => ci_race(),
        "xa" => xa(),
        "random" => random(seed?, false).0,
        "random-ci" => random(seed?, true).0,
        _ => return None,
    })
}

/// What a search found.
#[derive(Debug, Clone)]
pub struct Found {
    pub model: Model,
    pub variant: Variant,
    pub trace: Vec<Action>,
    pub violation: Violation,
}

impl Found {
    /// The schedule, step by step, and how to replay it.
    pub fn report(&self) -> String {
        let mut env = Env::new(self.model.w.clone(), self.model.p.clone(), self.variant);
        env.log = Some(Vec::new());
        let mut s = env.init(self.model.left);
        let mut out = format!(
            "model {} (seed {}), variant {}: {}\nshortest schedule found ({} steps):\n",
            self.model.name,
            self.model.seed.map_or("-".to_string(), |s| s.to_string()),
            self.variant,
            self.violation,
            self.trace.len()
        );
        for (i, a) in self.trace.iter().enumerate() {
            let r = env.step(&mut s, *a).and_then(|_| env.check(&mut s));
            let notes = env.log.replace(Vec::new()).unwrap_or_default();
            out.push_str(&format!(
                "{:>4}. {:<4} {}\n",
                i + 1,
                a.to_string(),
                notes.join("; ")
            ));
            if let Err(v) = r {
                out.push_str(&format!("      -> {v}\n"));
                break;
            }
        }
        out.push_str(&format!("replay: {}\n", self.replay_command()));
        out
    }

    /// What `SIM_REPLAY` takes: the model (by name, with its seed, budgets
    /// and batch steps), the variant and the schedule.
    pub fn spec(&self) -> String {
        let trace: Vec<String> = self.trace.iter().map(|a| a.to_string()).collect();
        let l = self.model.left;
        format!(
            "model={}{} left={},{},{} batches={} variant={} trace={}",
            self.model.name,
            self.model
                .seed
                .map_or(String::new(), |s| format!(" seed={s}")),
            l.crashes,
            l.replays,
            l.prunes,
            if self.model.p.atomic_batches {
                "atomic"
            } else {
                "split"
            },
            self.variant,
            trace.join(",")
        )
    }

    pub fn replay_command(&self) -> String {
        format!(
            "SIM_REPLAY='{}' cargo test --test simulation replay_a_trace -- --ignored --nocapture",
            self.spec()
        )
    }
}

/// Parses a [`Found::spec`]: the model, variant and schedule it names.
pub fn parse_spec(spec: &str) -> Result<(Model, Variant, Vec<Action>), String> {
    let mut name = None;
    let mut seed = None;
    let mut left = None;
    let mut atomic = None;
    let mut variant = Variant::default();
    let mut trace = Vec::new();
    for part in spec.split_whitespace() {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not key=value"))?;
        let num = |t: &str| {
            t.parse::<u8>()
                .map_err(|_| format!("bad number in {part:?}"))
        };
        match k {
            "model" => name = Some(v.to_string()),
            "seed" => seed = Some(v.parse::<u64>().map_err(|_| format!("bad seed {v:?}"))?),
            "left" => {
                let n: Vec<u8> = v.split(',').map(num).collect::<Result<_, _>>()?;
                let [crashes, replays, prunes] = n[..] else {
                    return Err(format!("left= takes three numbers: {v:?}"));
                };
                left = Some(Left {
                    crashes,
                    replays,
                    prunes,
                });
            }
            "batches" => atomic = Some(v == "atomic"),
            "variant" => {
                variant = Variant::parse(v).ok_or_else(|| format!("unknown variant {v:?}"))?
            }
            "trace" => {
                trace = v
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(|t| t.parse::<Action>())
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown key {k:?}")),
        }
    }
    let name = name.ok_or("model= is missing")?;
    let mut m =
        named(&name, seed).ok_or_else(|| format!("unknown model {name:?} (or no seed=)"))?;
    if let Some(l) = left {
        m.left = l;
    }
    if let Some(a) = atomic {
        m.p.atomic_batches = a;
    }
    Ok((m, variant, trace))
}

/// Counts of an exhaustive search.
#[derive(Debug, Clone, Copy, Default)]
pub struct Explored {
    pub states: usize,
    pub transitions: usize,
    pub depth: usize,
    pub quiescent: usize,
}

/// A state with nothing left to do must have converged with the whole
/// workload committed.
fn stuck(env: &Env, s: &State, acts: &[Action]) -> Option<Violation> {
    let done = usize::from(s.committed) == env.w.txns.len() && env.quiescent(s);
    (acts.is_empty() && !done).then(|| Violation {
        invariant: 5,
        what: format!("no step is possible after {} transactions", s.committed),
    })
}

/// A bound on exhaustive searches (memory).
const MAX_STATES: usize = 3_000_000;

/// Breadth-first search over every schedule of `m`, deduplicating states
/// by fingerprint. Stops at the first violation, whose schedule is then a
/// shortest one.
pub fn bfs(m: &Model, variant: Variant) -> Result<Explored, Box<Found>> {
    let mut env = Env::new(m.w.clone(), m.p.clone(), variant);
    let mut stats = Explored::default();
    let fail = |trace: Vec<Action>, violation: Violation| {
        Box::new(Found {
            model: m.clone(),
            variant,
            trace,
            violation,
        })
    };
    let mut init = env.init(m.left);
    env.check(&mut init).map_err(|v| fail(Vec::new(), v))?;
    let mut seen: HashSet<u128> = HashSet::new();
    seen.insert(Env::fingerprint(&init));
    // parent index and action of every state reached, for the schedules
    let mut parents: Vec<(u32, Option<Action>)> = vec![(0, None)];
    let path = |parents: &[(u32, Option<Action>)], mut i: usize| {
        let mut p = Vec::new();
        while let (up, Some(a)) = parents[i] {
            p.push(a);
            i = up as usize;
        }
        p.reverse();
        p
    };
    let mut frontier: Vec<(State, u32)> = vec![(init, 0)];
    let mut acts = Vec::new();
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for (s, idx) in frontier {
            stats.states += 1;
            if env.quiescent(&s) {
                stats.quiescent += 1;
            }
            env.enabled(&s, &mut acts);
            if let Some(v) = stuck(&env, &s, &acts) {
                return Err(fail(path(&parents, idx as usize), v));
            }
            for &a in &acts {
                stats.transitions += 1;
                let mut t = s.clone();
                if let Err(v) = env.step(&mut t, a).and_then(|_| env.check(&mut t)) {
                    let mut trace = path(&parents, idx as usize);
                    trace.push(a);
                    return Err(fail(trace, v));
                }
                if seen.insert(Env::fingerprint(&t)) {
                    parents.push((idx, Some(a)));
                    next.push((t, (parents.len() - 1) as u32));
                }
            }
        }
        if !next.is_empty() {
            stats.depth += 1;
        }
        if std::env::var_os("SIM_VERBOSE").is_some() {
            eprintln!(
                "depth {} frontier {} states {}",
                stats.depth,
                next.len(),
                stats.states
            );
        }
        if stats.states > MAX_STATES {
            panic!(
                "{}: more than {MAX_STATES} states; shrink the model",
                m.name
            );
        }
        frontier = next;
    }
    Ok(stats)
}

fn weight(a: Action) -> u64 {
    match a {
        Action::Commit | Action::Dispatch | Action::CopyChunk | Action::CopySave => 8,
        Action::Finish | Action::Raise => 8,
        Action::Recv(_) | Action::Batch(_) => 6,
        Action::Flush(_) | Action::Write(_) => 4,
        Action::Tick => 4,
        Action::Heartbeat => 2,
        Action::Prune => 2,
        Action::Crash | Action::Replay(_) => 1,
    }
}

fn progress(a: Action) -> bool {
    !matches!(a, Action::Crash | Action::Replay(_) | Action::Prune)
}

/// Runs a schedule: `steps` random steps, then random progress steps only
/// until nothing is left to do. Returns the schedule taken, or the
/// violation and the schedule up to it.
pub fn random_schedule(
    env: &mut Env,
    left: Left,
    rng: &mut Rng,
    steps: usize,
) -> Result<usize, (Vec<Action>, Violation)> {
    let mut s = env.init(left);
    let mut trace = Vec::new();
    let mut acts = Vec::new();
    let mut total = 0usize;
    for phase in 0..2 {
        let bound = if phase == 0 { steps } else { 5000 };
        for _ in 0..bound {
            env.enabled(&s, &mut acts);
            if phase == 1 {
                acts.retain(|a| progress(*a));
                if acts.is_empty() {
                    break;
                }
            }
            if acts.is_empty() {
                break;
            }
            let sum: u64 = acts.iter().map(|a| weight(*a)).sum();
            let mut pick = rng.below(sum);
            let a = *acts
                .iter()
                .find(|a| {
                    let w = weight(**a);
                    if pick < w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .expect("a weighted pick");
            trace.push(a);
            total += 1;
            if let Err(v) = env.step(&mut s, a).and_then(|_| env.check(&mut s)) {
                return Err((trace, v));
            }
        }
    }
    env.enabled(&s, &mut acts);
    acts.retain(|a| progress(*a));
    if let Some(v) = stuck(env, &s, &acts) {
        return Err((trace, v));
    }
    Ok(total)
}

/// Runs `trace` leniently (a step that is not enabled is skipped), then
/// completes it deterministically (the first enabled progress step, until
/// none is left). Returns the steps actually taken and the violation, if
/// any.
fn run_lenient(env: &mut Env, left: Left, trace: &[Action]) -> (Vec<Action>, Option<Violation>) {
    let mut s = env.init(left);
    let mut done = Vec::new();
    let mut acts = Vec::new();
    let step = |s: &mut State, a: Action, done: &mut Vec<Action>, env: &mut Env| {
        done.push(a);
        env.step(s, a).and_then(|_| env.check(s)).err()
    };
    for &a in trace {
        env.enabled(&s, &mut acts);
        if acts.contains(&a) {
            if let Some(v) = step(&mut s, a, &mut done, env) {
                return (done, Some(v));
            }
        }
    }
    for _ in 0..5000 {
        env.enabled(&s, &mut acts);
        acts.retain(|a| progress(*a));
        let Some(&a) = acts.first() else {
            return (done, stuck(env, &s, &acts));
        };
        if let Some(v) = step(&mut s, a, &mut done, env) {
            return (done, Some(v));
        }
    }
    (done, None)
}

/// Shrinks a failing schedule by dropping steps (halves, quarters, …,
/// single steps) while the same invariant still breaks.
pub fn shrink(
    env: &mut Env,
    left: Left,
    trace: Vec<Action>,
    v: Violation,
) -> (Vec<Action>, Violation) {
    let (mut best, mut best_v) = match run_lenient(env, left, &trace) {
        (t, Some(w)) if w.invariant == v.invariant => (t, w),
        _ => (trace, v),
    };
    let mut chunk = best.len().max(1);
    while chunk >= 1 {
        let mut i = 0;
        let mut shrunk = false;
        while i < best.len() {
            let candidate: Vec<Action> = best[..i]
                .iter()
                .chain(best[(i + chunk).min(best.len())..].iter())
                .copied()
                .collect();
            match run_lenient(env, left, &candidate) {
                (t, Some(w)) if w.invariant == best_v.invariant && t.len() < best.len() => {
                    best = t;
                    best_v = w;
                    shrunk = true;
                }
                _ => i += chunk,
            }
        }
        if !shrunk {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    (best, best_v)
}

/// Outcome of a random search.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sampled {
    pub schedules: u64,
    pub steps: u64,
    pub seen: Coverage,
}

/// Random schedules for seeds `seeds` (one workload and schedule each),
/// split over `threads` threads; stops at the first violation, shrunk.
/// `variant` may force a model feature through `tweak`.
pub fn sample(
    seeds: std::ops::Range<u64>,
    threads: usize,
    collation: bool,
    variant: Variant,
    tweak: &(dyn Fn(&mut Model) + Sync),
) -> Result<Sampled, Box<Found>> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Mutex;
    let stop = AtomicBool::new(false);
    let next = AtomicU64::new(seeds.start);
    let found: Mutex<Option<Box<Found>>> = Mutex::new(None);
    let totals = Mutex::new(Sampled::default());
    std::thread::scope(|sc| {
        for _ in 0..threads.max(1) {
            sc.spawn(|| {
                let mut mine = Sampled::default();
                // one environment per key mode and versioning, reused
                let mut envs: Vec<Env> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds.end {
                        break;
                    }
                    let (mut m, mut rng) = random(seed, collation);
                    tweak(&mut m);
                    let same =
                        |e: &Env| e.w.mode == m.w.mode && e.w.column_version == m.w.column_version;
                    let mut env = match envs.iter().position(same) {
                        Some(i) => envs.swap_remove(i).reuse(m.w.clone(), m.p.clone(), variant),
                        None => Env::new(m.w.clone(), m.p.clone(), variant),
                    };
                    let steps = 10 + rng.below(60) as usize;
                    match random_schedule(&mut env, m.left, &mut rng, steps) {
                        Ok(n) => {
                            mine.schedules += 1;
                            mine.steps += n as u64;
                            env.seen.ci_schedules +=
                                u64::from(m.w.mode == KeyMode::CaseInsensitive);
                            env.seen.column_schedules += u64::from(m.w.column_version);
                            mine.seen += std::mem::take(&mut env.seen);
                            envs.push(env);
                        }
                        Err((trace, v)) => {
                            stop.store(true, Ordering::Relaxed);
                            let (trace, violation) = shrink(&mut env, m.left, trace, v);
                            let f = Box::new(Found {
                                model: m,
                                variant,
                                trace,
                                violation,
                            });
                            let mut slot = found.lock().unwrap_or_else(|e| e.into_inner());
                            let better = slot.as_ref().is_none_or(|o| o.model.seed > f.model.seed);
                            if better {
                                *slot = Some(f);
                            }
                        }
                    }
                }
                let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
                t.schedules += mine.schedules;
                t.steps += mine.steps;
                t.seen += mine.seen;
            });
        }
    });
    if let Some(f) = found.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(f);
    }
    Ok(totals.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// Runs a trace strictly (every step must be enabled) and returns the
/// first violation.
pub fn replay(m: &Model, variant: Variant, trace: &[Action]) -> Result<Option<Violation>, String> {
    let mut env = Env::new(m.w.clone(), m.p.clone(), variant);
    let mut s = env.init(m.left);
    let mut acts = Vec::new();
    for (i, &a) in trace.iter().enumerate() {
        env.enabled(&s, &mut acts);
        if !acts.contains(&a) {
            return Err(format!("step {} ({a}) is not possible there", i + 1));
        }
        if let Err(v) = env.step(&mut s, a).and_then(|_| env.check(&mut s)) {
            return Ok(Some(v));
        }
    }
    Ok(None)
}
