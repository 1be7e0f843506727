//! The router: row changes → versioned write operations (see "Stages and
//! types" in `docs/architecture.md`).
//!
//! [`RouteError`] is large (it names table, key, expression and position
//! for the operator); it only occurs on the halt/dead-letter path, so it is
//! not boxed.
//!
//! * insert → upsert(after, v) at the after image's shard;
//! * update → upsert(after, v); if the key **or the shard** changed, also
//!   delete(before-key, v) at the old location (possibly another shard);
//! * delete → delete(key, v).
//!
//! A `where` filter is evaluated on **both** images, and an image that
//! does not match is never routed: a row that never matched produces
//! nothing (its shard may not even be derivable, e.g. the NULL shard key
//! the filter is there to exclude); one that stops matching becomes a
//! delete where it was (the before image's shard and key); one that starts
//! matching becomes an upsert. The targets hold exactly the matching rows,
//! because every image that matched was applied where its shard expression
//! put it, and the change that makes it stop matching deletes it there.
//! `where` reads the rule's lookups as they are when the change is routed,
//! like the shard expression.
//!
//! "The key changed" compares canonical keys ([`keyenc::canonical`]): an
//! update from 'abc' to 'ABC' under a case-insensitive collation is the
//! same target row, so it is an upsert alone (which rewrites the key's
//! bytes, see [`crate::writer::sql::upsert`]). A delete of the old
//! spelling would share the upsert's tombstone and version, and the upsert
//! at that version would then lose against it: the row would be lost.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use mysql_common::value::Value as Cell;

use super::convert::{cell_to_expr, display_cells, expr_to_cell};
use super::expr::{self, Bound, EvalContext, EvalError, Value};
use super::file::{Rule, RuleExpr};
use crate::source::collation::KeyCollations;
use crate::source::rows::{row_identity, IdentityError};
use crate::source::{RowChange, TableSchema};
use crate::version::{column_key_datetime, column_key_int, Version, VersionError};
use crate::writer::keyenc::{self, KeyPart};
use crate::writer::op::{OpKind, TargetTable, WriteOp};

/// A rule that does not fit the source schema, or a row it cannot route.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("{0}")]
    Bind(String),
    /// The rule gives the table no row identity. (Its message includes
    /// `why`, so `why` is not also the error's source: a chain printed in
    /// full would say it twice.)
    #[error("{file}: {why}")]
    Identity { file: String, why: IdentityError },
    /// The row's own fault: the rule cannot compute `stage` for it. The
    /// pipeline and the copy may dead-letter such a row and go on.
    #[error("cannot derive {stage} for {table} key {key} at {position}: `{expr}`: {cause}")]
    Derive {
        table: String,
        key: String,
        stage: DeriveStage,
        /// The text of the expression (the column name for
        /// [`DeriveStage::Version`]).
        expr: String,
        position: String,
        #[source]
        cause: DeriveCause,
    },
}

/// What the rule makes of one change ([`Router::route_row`]).
#[derive(Debug)]
pub enum Routed {
    /// The operations, in the order they must be applied.
    Ops(Vec<WriteOp>),
    /// The rule cannot derive something for this row (always a
    /// [`RouteError::Derive`]): the row's fault, not the rule's. The copy
    /// dead-letters it or stops (`on_derive_error`); dry-run and verify
    /// report it.
    Unroutable(RouteError),
}

/// What the router could not compute for a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeriveStage {
    /// The rule's `where` filter.
    Where,
    /// The shard expression.
    Shard,
    /// The derived column of this name.
    Column(String),
    /// The version, from `version = { column }`.
    Version,
}

impl std::fmt::Display for DeriveStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeriveStage::Where => f.write_str("where"),
            DeriveStage::Shard => f.write_str("the shard"),
            DeriveStage::Column(c) => f.write_str(c),
            DeriveStage::Version => f.write_str("the version"),
        }
    }
}

/// Why a derivation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeriveCause {
    /// The expression failed on this row.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// The version column's value does not fit a version.
    #[error(transparent)]
    Version(#[from] VersionError),
    /// The expression's value cannot be used (no shard index, a version
    /// column that is neither a number nor a date-time).
    #[error("{0}")]
    Value(String),
}

/// A rule compiled against one schema of its source table.
struct Plan {
    schema: Arc<TableSchema>,
    shard: Bound,
    derive: Vec<Bound>,
    where_: Option<Bound>,
    /// Source column index of each target column (derived ones are None).
    sources: Vec<Option<usize>>,
    /// Source column indices of the row identity.
    key_src: Vec<usize>,
    /// How each key column takes part in the canonical key.
    key_parts: Vec<KeyPart>,
    /// Shard index of each rule slot.
    slots: Vec<usize>,
    target: Arc<TargetTable>,
    rule: Arc<Rule>,
    /// Source column index of `version = { column }`.
    version_col: Option<usize>,
    /// Source columns any expression of the rule reads.
    used: Vec<usize>,
    /// Source columns a row's location depends on: `used` and the key.
    located_by: Vec<usize>,
    /// Every target column is the source column at its index, and none is
    /// derived: an after image is the target row as it is.
    identity: bool,
}

impl Plan {
    /// The text of the expression computing `stage` (for messages).
    fn text(&self, stage: &DeriveStage) -> String {
        match stage {
            DeriveStage::Shard => self.rule.shard.text.clone(),
            DeriveStage::Where => self
                .rule
                .where_
                .as_ref()
                .map(|w| w.text.clone())
                .unwrap_or_default(),
            DeriveStage::Column(col) => self
                .rule
                .derive
                .iter()
                .find(|(c, _)| c == col)
                .map(|(_, e)| e.text.clone())
                .unwrap_or_default(),
            DeriveStage::Version => self
                .version_col
                .and_then(|i| self.schema.columns.get(i))
                .map(|c| c.name.clone())
                .unwrap_or_default(),
        }
    }

    /// The error for a row (`cells`, `None` when the key is not shown)
    /// whose `stage` cannot be computed.
    fn derive_error(
        &self,
        cells: Option<&[Cell]>,
        change: &RowChange,
        stage: DeriveStage,
        cause: impl Into<DeriveCause>,
    ) -> RouteError {
        RouteError::Derive {
            table: self.schema.full_name(),
            key: cells.map(|c| key_text(self, c)).unwrap_or_default(),
            expr: self.text(&stage),
            stage,
            position: change.position().to_string(),
            cause: cause.into(),
        }
    }
}

/// Routes row changes of every mapped table.
pub struct Router {
    rules: HashMap<(String, String), Arc<Rule>>,
    shard_index: HashMap<String, usize>,
    plans: Plans,
    collations: Arc<KeyCollations>,
    scratch: Scratch,
}

impl Router {
    /// `shards` are the configured target names, in the order lanes use.
    pub fn new(rules: Vec<Rule>, shards: &[String]) -> Result<Router, RouteError> {
        let shard_index: HashMap<String, usize> = shards
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect();
        let mut map = HashMap::new();
        for r in rules {
            for s in &r.shards {
                if !shard_index.contains_key(s) {
                    return Err(RouteError::Bind(format!(
                        "{}: shards names {s:?}, which is not in [targets] (known: {})",
                        r.file.display(),
                        shards.join(", ")
                    )));
                }
            }
            map.insert((r.source_db.clone(), r.source_table.clone()), Arc::new(r));
        }
        Ok(Router {
            rules: map,
            shard_index,
            plans: Plans::default(),
            collations: Arc::new(KeyCollations::default()),
            scratch: Scratch::default(),
        })
    }

    /// Compares text keys under the collations learned from the source
    /// ([`crate::source::collation`]); without, every key column compares
    /// byte-wise, which only commands that write nothing may do.
    pub fn with_key_collations(mut self, collations: Arc<KeyCollations>) -> Router {
        self.collations = collations;
        self.plans.clear();
        self
    }

    /// Whether `db.table` has a rule.
    pub fn wants(&self, db: &str, table: &str) -> bool {
        self.rules
            .contains_key(&(db.to_string(), table.to_string()))
    }

    /// Every rule, for validation.
    pub fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.rules.values()
    }

    fn plan(&mut self, schema: &Arc<TableSchema>) -> Result<&Plan, RouteError> {
        let (rules, plans, _) = self.parts();
        plans.get(rules, schema)
    }

    /// The router's parts, borrowed apart.
    fn parts(&mut self) -> (Rules<'_>, &mut Plans, &mut Scratch) {
        let rules = Rules {
            rules: &self.rules,
            shard_index: &self.shard_index,
            collations: &self.collations,
        };
        (rules, &mut self.plans, &mut self.scratch)
    }

    /// Compiles the rule of `schema`'s table against it: the target table
    /// it writes, or why the rule does not fit the schema.
    pub fn target_table(
        &mut self,
        schema: &Arc<TableSchema>,
    ) -> Result<Arc<TargetTable>, RouteError> {
        Ok(self.plan(schema)?.target.clone())
    }

    /// The row identity of `schema`'s table under its rule: the source
    /// column indices of the rule's `key`, else of the primary key
    /// ([`row_identity`]).
    pub fn row_identity(&mut self, schema: &Arc<TableSchema>) -> Result<Vec<usize>, RouteError> {
        Ok(self.plan(schema)?.key_src.clone())
    }

    /// Routes one change, telling a row the rule cannot route
    /// ([`Routed::Unroutable`]) from a rule that does not fit (`Err`).
    pub fn route_row(
        &mut self,
        change: &RowChange,
        ctx: &dyn EvalContext,
    ) -> Result<Routed, RouteError> {
        match self.route(change, ctx) {
            Ok(ops) => Ok(Routed::Ops(ops)),
            Err(e @ RouteError::Derive { .. }) => Ok(Routed::Unroutable(e)),
            Err(e) => Err(e),
        }
    }

    /// The operations for one change, in the order they must be applied.
    ///
    /// `where` is evaluated on both images, so the four transitions of an
    /// update are: neither image matches → nothing; only the before image
    /// → a delete where the row was; only the after image → an upsert;
    /// both → the ordinary update. A non-matching image is never routed
    /// (its shard may not be derivable, e.g. a NULL shard key the filter
    /// exists to exclude).
    pub fn route<'c>(
        &mut self,
        change: &'c RowChange,
        ctx: &dyn EvalContext,
    ) -> Result<Vec<WriteOp>, RouteError> {
        let mut ops = Vec::with_capacity(2);
        let images = |c: &'c RowChange| Images {
            before: c.before.as_deref().map(Image::Borrowed),
            after: c.after.as_deref().map(Image::Borrowed),
        };
        self.route_with(change, ctx, images, &mut ops)?;
        Ok(ops)
    }

    /// [`Router::route`], appending to `out`, that **moves** the row's
    /// values into the operations instead of copying them (the
    /// coordinator's path: a value is copied once, into the statement,
    /// not three times). On success `change`'s images are taken (left
    /// `None`); on an error `change` is untouched, so that it can be
    /// dead-lettered whole.
    pub fn route_into(
        &mut self,
        change: &mut RowChange,
        ctx: &dyn EvalContext,
        out: &mut Vec<WriteOp>,
    ) -> Result<(), RouteError> {
        let (rules, plans, scratch) = self.parts();
        let plan = plans.get(rules, &change.table)?;
        let decision = decide(plan, change, ctx, scratch)?;
        let images = Images {
            before: change.before.take().map(Image::Owned),
            after: change.after.take().map(Image::Owned),
        };
        decision.build(plan, images, out);
        Ok(())
    }

    /// Decides for `change` ([`decide`]), then builds its operations from
    /// the images `images` gives.
    fn route_with<'c>(
        &mut self,
        change: &'c RowChange,
        ctx: &dyn EvalContext,
        images: impl FnOnce(&'c RowChange) -> Images<'c>,
        out: &mut Vec<WriteOp>,
    ) -> Result<(), RouteError> {
        let (rules, plans, scratch) = self.parts();
        let plan = plans.get(rules, &change.table)?;
        let decision = decide(plan, change, ctx, scratch)?;
        decision.build(plan, images(change), out);
        Ok(())
    }
}

/// What compiling a plan needs from the router.
#[derive(Clone, Copy)]
struct Rules<'a> {
    rules: &'a HashMap<(String, String), Arc<Rule>>,
    shard_index: &'a HashMap<String, usize>,
    collations: &'a KeyCollations,
}

/// The compiled plan of each table (database → table → plan), looked up
/// with the schema's borrowed names: routing a change allocates nothing
/// to find its plan.
#[derive(Default)]
struct Plans {
    by_db: HashMap<String, HashMap<String, Plan, FastHash>, FastHash>,
}

/// The plan maps are looked up for every change: foldhash, not SipHash.
type FastHash = foldhash::fast::RandomState;

impl Plans {
    /// The plan for `schema`, compiled again when the table's schema
    /// changed.
    fn get(&mut self, rules: Rules<'_>, schema: &Arc<TableSchema>) -> Result<&Plan, RouteError> {
        let (db, table) = (schema.db.as_str(), schema.table.as_str());
        let known = self.by_db.get_mut(db).and_then(|t| t.get_mut(table));
        let fresh = match known {
            Some(p) if Arc::ptr_eq(&p.schema, schema) => true,
            Some(p) if *p.schema == **schema => {
                // same schema in a new Arc: remember it to skip the compare next time
                p.schema = schema.clone();
                true
            }
            _ => false,
        };
        if !fresh {
            let rule = rules
                .rules
                .get(&(schema.db.clone(), schema.table.clone()))
                .ok_or_else(|| RouteError::Bind(format!("no rule for {}", schema.full_name())))?
                .clone();
            let plan = compile(rule, schema, rules.shard_index, rules.collations)?;
            self.by_db
                .entry(schema.db.clone())
                .or_default()
                .insert(schema.table.clone(), plan);
        }
        self.by_db
            .get(db)
            .and_then(|t| t.get(table))
            .ok_or_else(|| RouteError::Bind(format!("no plan for {}", schema.full_name())))
    }

    fn clear(&mut self) {
        self.by_db.clear();
    }
}

/// Buffers the router reuses from one change to the next.
#[derive(Default)]
struct Scratch {
    /// The row image as expression values ([`to_expr_row`]).
    row: Vec<Value>,
    /// The before image's canonical key, compared with the after image's.
    key: Vec<u8>,
}

fn decide(
    plan: &Plan,
    change: &RowChange,
    ctx: &dyn EvalContext,
    scratch: &mut Scratch,
) -> Result<Decision, RouteError> {
    let new = match &change.after {
        Some(after) => upsert_of(plan, after, change, ctx, &mut scratch.row)?,
        None => None,
    };
    let old = match (&change.before, &change.after) {
        // an update that keeps every column the location is computed
        // from stays where it is: nothing to delete
        (Some(before), Some(after)) if new.is_some() && same_location(plan, before, after) => None,
        (Some(before), _) => {
            to_expr_row(before, plan, &mut scratch.row);
            location_of(plan, before, &scratch.row, change, ctx, &mut scratch.key)?
        }
        (None, _) => None,
    };
    // the before image's location is deleted when the row leaves it:
    // another key, another shard, or no longer matching `where`
    let old = match (old, &new) {
        (Some((shard, _)), Some((n, _))) if shard == n.shard && scratch.key == n.canonical => None,
        (Some((shard, version)), _) => Some(Located {
            shard,
            canonical: scratch.key.clone(),
            version,
        }),
        (None, _) => None,
    };
    Ok(Decision {
        delete: old,
        upsert: new,
    })
}

/// Where a row image that passes `where` lives on the targets (its shard
/// and canonical key), and the version of an operation built from it.
struct Located {
    shard: usize,
    canonical: Vec<u8>,
    version: Version,
}

/// What a change becomes ([`decide`]), before values are read from its
/// images.
struct Decision {
    /// Delete at the before image's location.
    delete: Option<Located>,
    /// Upsert at the after image's location, with the derived columns'
    /// values in order.
    upsert: Option<(Located, Vec<Cell>)>,
}
impl Decision {
    /// The operations, in the order they must be applied: the delete at
    /// the old location before the upsert at the new one. Values are read
    /// from `images` (cloned from borrowed ones, moved out of owned ones).
    fn build(self, plan: &Plan, mut images: Images<'_>, out: &mut Vec<WriteOp>) {
        let op = |at: Located, kind: OpKind| {
            WriteOp::new(
                at.shard,
                plan.target.clone(),
                at.canonical,
                kind,
                at.version,
            )
        };
        if let (Some(at), Some(before)) = (self.delete, images.before.as_mut()) {
            let key = plan.key_src.iter().map(|&i| before.take(i)).collect();
            out.push(op(at, OpKind::Delete(key)));
        }
        if let (Some((at, derived)), Some(after)) = (self.upsert, images.after) {
            // the key is the row's own at `plan.target.key`
            out.push(op(at, OpKind::Upsert(target_row(plan, after, derived))));
        }
    }
}

/// The images a change's operations take their values from.
struct Images<'a> {
    before: Option<Image<'a>>,
    after: Option<Image<'a>>,
}

/// A row image: borrowed (its cells are cloned) or owned (they are moved).
enum Image<'a> {
    Borrowed(&'a [Cell]),
    Owned(Vec<Cell>),
}

impl Image<'_> {
    /// Cell `i`, moved out of an owned image (each cell is taken at most
    /// once: no two target columns read the same source column).
    fn take(&mut self, i: usize) -> Cell {
        match self {
            Image::Borrowed(r) => r[i].clone(),
            Image::Owned(r) => std::mem::replace(&mut r[i], Cell::NULL),
        }
    }

    fn len(&self) -> usize {
        match self {
            Image::Borrowed(r) => r.len(),
            Image::Owned(r) => r.len(),
        }
    }
}

/// The target row of an after image: its cells in target column order,
/// derived columns in their places. A rule that keeps every source column
/// in place and derives none takes an owned image whole.
fn target_row(plan: &Plan, mut after: Image<'_>, derived: Vec<Cell>) -> Vec<Cell> {
    if plan.identity && after.len() == plan.sources.len() {
        match after {
            Image::Owned(row) => return row,
            Image::Borrowed(row) => return row.to_vec(),
        }
    }
    let mut derived = derived.into_iter();
    plan.sources
        .iter()
        .map(|src| match src {
            Some(i) => after.take(*i),
            None => derived.next().unwrap_or(Cell::NULL),
        })
        .collect()
}

/// The shard and version of `cells` (whose expression values are `row`)
/// if it passes the rule's `where`, with its canonical key written into
/// `key`; `None` when it does not pass.
fn location_of(
    plan: &Plan,
    cells: &[Cell],
    row: &[Value],
    change: &RowChange,
    ctx: &dyn EvalContext,
    key: &mut Vec<u8>,
) -> Result<Option<(usize, Version)>, RouteError> {
    if !passes(plan, row, change, ctx)? {
        return Ok(None);
    }
    let shard = shard_of(plan, row, cells, change, ctx)?;
    let version = version_of(plan, cells, change)?;
    keyenc::canonical_into(
        plan.key_src.iter().map(|&i| &cells[i]),
        &plan.key_parts,
        key,
    );
    Ok(Some((shard, version)))
}

/// Whether two images of a row agree on every column its location is
/// computed from ([`Plan::located_by`]): then they pass `where` alike and
/// have the same shard and canonical key, because `where`, the shard
/// expression and the key read nothing else (lookups read their
/// arguments, which are columns, and a context that does not change
/// within a change). Floating-point cells compare by their bits, so `-0`
/// and `0`, which a shard expression or a key encoding may tell apart, go
/// the long way.
fn same_location(plan: &Plan, a: &[Cell], b: &[Cell]) -> bool {
    plan.located_by.iter().all(|&i| match (a.get(i), b.get(i)) {
        (Some(Cell::Float(x)), Some(Cell::Float(y))) => x.to_bits() == y.to_bits(),
        (Some(Cell::Double(x)), Some(Cell::Double(y))) => x.to_bits() == y.to_bits(),
        (Some(x), Some(y)) => x == y,
        (None, None) => true,
        _ => false,
    })
}

/// The location of an after image that passes `where`, and the values of
/// its derived columns (in order).
fn upsert_of(
    plan: &Plan,
    after: &[Cell],
    change: &RowChange,
    ctx: &dyn EvalContext,
    row: &mut Vec<Value>,
) -> Result<Option<(Located, Vec<Cell>)>, RouteError> {
    to_expr_row(after, plan, row);
    let mut canonical = Vec::with_capacity(16 * plan.key_src.len());
    let Some((shard, version)) = location_of(plan, after, row, change, ctx, &mut canonical)? else {
        return Ok(None);
    };
    let mut derived = Vec::with_capacity(plan.derive.len());
    for (e, (column, _)) in plan.derive.iter().zip(&plan.rule.derive) {
        let v = e.eval(row, ctx).map_err(|e| {
            plan.derive_error(Some(after), change, DeriveStage::Column(column.clone()), e)
        })?;
        derived.push(expr_to_cell(v));
    }
    let at = Located {
        shard,
        canonical,
        version,
    };
    Ok(Some((at, derived)))
}

/// The version of an operation built from `cells`: the change's
/// position-derived version, or with `version = { column }` the column's
/// value then the position and row index of the change, so that changes of
/// one key with equal values never tie (upserts use the after image,
/// deletes the before image, so a delete always beats the row it removes).
fn version_of(plan: &Plan, cells: &[Cell], change: &RowChange) -> Result<Version, RouteError> {
    let Some(i) = plan.version_col else {
        return Ok(change.version);
    };
    let fail =
        |cause: DeriveCause| plan.derive_error(Some(cells), change, DeriveStage::Version, cause);
    let key = match &cells[i] {
        Cell::NULL => 0,
        Cell::Int(v) => column_key_int(i128::from(*v)).map_err(|e| fail(e.into()))?,
        Cell::UInt(v) => column_key_int(i128::from(*v)).map_err(|e| fail(e.into()))?,
        Cell::Date(y, m, d, hh, mm, ss, us) => column_key_datetime(*y, *m, *d, *hh, *mm, *ss, *us),
        other => {
            return Err(fail(DeriveCause::Value(format!(
                "{other:?} is not a number or a date-time"
            ))))
        }
    };
    let row = u64::from(change.version.row());
    let v = change.version;
    Version::with_column_at(v.epoch(), key, v.file_seq(), v.offset(), row, change.span)
        .map_err(|e| fail(e.into()))
}

/// The row as expression values; only the columns some expression of the
/// rule reads are converted (the others stay NULL and are never read).
/// Written into `row`, a buffer reused from change to change.
fn to_expr_row(cells: &[Cell], plan: &Plan, row: &mut Vec<Value>) {
    row.clear();
    row.resize(cells.len(), Value::Null);
    for &i in &plan.used {
        if let (Some(c), Some(col)) = (cells.get(i), plan.schema.columns.get(i)) {
            row[i] = cell_to_expr(c, col);
        }
    }
}

fn key_text(plan: &Plan, cells: &[Cell]) -> String {
    let key: Vec<Cell> = plan
        .key_src
        .iter()
        .filter_map(|&i| cells.get(i).cloned())
        .collect();
    display_cells(&key)
}

fn passes(
    plan: &Plan,
    row: &[Value],
    change: &RowChange,
    ctx: &dyn EvalContext,
) -> Result<bool, RouteError> {
    let Some(w) = &plan.where_ else {
        return Ok(true);
    };
    let v = w
        .eval(row, ctx)
        .map_err(|e| plan.derive_error(None, change, DeriveStage::Where, e))?;
    Ok(match v {
        Value::Null => false,
        Value::Int(i) => i != 0,
        Value::UInt(u) => u != 0,
        Value::Double(f) => f != 0.0,
        Value::Decimal(s) => s
            .trim_start_matches(['-', '0', '.'])
            .chars()
            .any(|c| c.is_ascii_digit() && c != '0'),
        Value::Bytes(b) => String::from_utf8_lossy(&b)
            .trim()
            .parse::<f64>()
            .map(|f| f != 0.0)
            .unwrap_or(false),
    })
}

fn shard_of(
    plan: &Plan,
    row: &[Value],
    cells: &[Cell],
    change: &RowChange,
    ctx: &dyn EvalContext,
) -> Result<usize, RouteError> {
    let fail =
        |cause: DeriveCause| plan.derive_error(Some(cells), change, DeriveStage::Shard, cause);
    let v = plan.shard.eval(row, ctx).map_err(|e| fail(e.into()))?;
    let idx = match v.as_integer() {
        Some(i) if i >= 0 => i,
        _ => {
            return Err(fail(DeriveCause::Value(format!(
                "the shard expression gave {}, expected an index from 0 to {}",
                describe(&v),
                plan.slots.len().saturating_sub(1)
            ))))
        }
    };
    usize::try_from(idx)
        .ok()
        .and_then(|i| plan.slots.get(i).copied())
        .ok_or_else(|| {
            fail(DeriveCause::Value(format!(
                "shard index {idx} is out of range: `shards` has {} entries",
                plan.slots.len()
            )))
        })
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Bytes(b) => format!("the string {:?}", String::from_utf8_lossy(b)),
        Value::Decimal(d) => d.clone(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Double(f) => f.to_string(),
    }
}

fn bind(rule: &Rule, e: &RuleExpr, schema: &TableSchema) -> Result<Bound, RouteError> {
    e.expr
        .bind(&|name: &str| schema.column_index(name))
        .map_err(|b| {
            RouteError::Bind(rule.locate(
                e.offset + b.offset,
                &format!("in `{}` for {}: {}", e.name, schema.full_name(), b.message),
            ))
        })
}

/// Compiles `rule` against one schema of its source table: binds its
/// expressions and resolves the target table it writes, or says why the
/// rule does not fit the schema.
fn compile(
    rule: Arc<Rule>,
    schema: &Arc<TableSchema>,
    shard_index: &HashMap<String, usize>,
    collations: &KeyCollations,
) -> Result<Plan, RouteError> {
    let file = rule.file.display().to_string();
    let shard = bind(&rule, &rule.shard, schema)?;
    let mut derive = Vec::new();
    for (_, e) in &rule.derive {
        derive.push(bind(&rule, e, schema)?);
    }
    let where_ = rule
        .where_
        .as_ref()
        .map(|w| bind(&rule, w, schema))
        .transpose()?;
    for c in rule.exclude.iter().chain(rule.rename.keys()) {
        if schema.column_index(c).is_none() {
            return Err(RouteError::Bind(format!(
                "{file}: column {c:?} is not in {}",
                schema.full_name()
            )));
        }
    }
    let version_col = version_column(&rule, schema, &file)?;
    let key_src =
        row_identity(schema, rule.key.as_deref()).map_err(|why| RouteError::Identity {
            file: file.clone(),
            why,
        })?;
    let key_parts = key_src
        .iter()
        .map(|&i| collations.part(schema, i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RouteError::Bind(format!("{file}: {e}")))?;
    let (columns, sources) = target_columns(&rule, schema, &key_src, &file)?;
    let identity = sources.iter().enumerate().all(|(i, s)| *s == Some(i));
    let key: Vec<usize> = key_src
        .iter()
        .map(|k| sources.iter().position(|s| *s == Some(*k)).unwrap_or(0))
        .collect();
    let slots = rule
        .shards
        .iter()
        .map(|s| {
            shard_index
                .get(s)
                .copied()
                .ok_or_else(|| RouteError::Bind(format!("{file}: unknown shard {s:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let used = used_columns(&rule, schema);
    let located_by = located_by(&used, &key_src);
    Ok(Plan {
        schema: schema.clone(),
        shard,
        derive,
        where_,
        sources,
        key_src,
        key_parts,
        slots,
        target: Arc::new(TargetTable {
            name: rule.target.clone(),
            source: schema.full_name(),
            columns,
            key,
        }),
        version_col,
        located_by,
        used,
        identity,
        rule,
    })
}

/// The source column of `version = { column }`, which must be an integer
/// or a date-time.
fn version_column(
    rule: &Rule,
    schema: &TableSchema,
    file: &str,
) -> Result<Option<usize>, RouteError> {
    let Some(c) = &rule.version_column else {
        return Ok(None);
    };
    let i = schema.column_index(c).ok_or_else(|| {
        RouteError::Bind(format!(
            "{file}: version column {c:?} is not in {}",
            schema.full_name()
        ))
    })?;
    use mysql_common::constants::ColumnType::*;
    let col = &schema.columns[i];
    if !matches!(
        col.ty,
        MYSQL_TYPE_TINY
            | MYSQL_TYPE_SHORT
            | MYSQL_TYPE_INT24
            | MYSQL_TYPE_LONG
            | MYSQL_TYPE_LONGLONG
            | MYSQL_TYPE_DATE
            | MYSQL_TYPE_NEWDATE
            | MYSQL_TYPE_DATETIME
            | MYSQL_TYPE_DATETIME2
            | MYSQL_TYPE_TIMESTAMP
            | MYSQL_TYPE_TIMESTAMP2
    ) {
        return Err(RouteError::Bind(format!(
            "{file}: version column {c:?} is {:?}; it must be an integer, DATE, DATETIME or TIMESTAMP column",
            col.ty
        )));
    }
    Ok(Some(i))
}

/// The target table's columns (source columns not excluded, renamed, then
/// the derived ones) and the source column of each (`None`: derived).
fn target_columns(
    rule: &Rule,
    schema: &TableSchema,
    key_src: &[usize],
    file: &str,
) -> Result<(Vec<String>, Vec<Option<usize>>), RouteError> {
    let mut columns = Vec::new();
    let mut sources = Vec::new();
    for (i, c) in schema.columns.iter().enumerate() {
        let excluded = rule.exclude.iter().any(|x| x.eq_ignore_ascii_case(&c.name));
        if excluded {
            if key_src.contains(&i) {
                return Err(RouteError::Bind(format!(
                    "{file}: key column {:?} cannot be excluded",
                    c.name
                )));
            }
            continue;
        }
        let name = rule
            .rename
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&c.name))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| c.name.clone());
        columns.push(name);
        sources.push(Some(i));
    }
    for (name, _) in &rule.derive {
        if columns.iter().any(|c| c.eq_ignore_ascii_case(name)) {
            return Err(RouteError::Bind(format!(
                "{file}: derived column {name:?} collides with a source column"
            )));
        }
        columns.push(name.clone());
        sources.push(None);
    }
    Ok((columns, sources))
}

/// The columns of `used` and `key`, sorted.
fn located_by(used: &[usize], key: &[usize]) -> Vec<usize> {
    let mut all: Vec<usize> = used.iter().chain(key).copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Source columns any expression of the rule reads, sorted.
fn used_columns(rule: &Rule, schema: &TableSchema) -> Vec<usize> {
    let mut names = rule.shard.expr.columns();
    for (_, d) in &rule.derive {
        names.extend(d.expr.columns());
    }
    if let Some(w) = &rule.where_ {
        names.extend(w.expr.columns());
    }
    let mut used: Vec<usize> = names
        .iter()
        .filter_map(|n| schema.column_index(n))
        .collect();
    used.sort_unstable();
    used.dedup();
    used
}

/// Evaluation context without lookup tables.
pub fn no_context() -> &'static dyn EvalContext {
    &expr::NoContext
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use mysql_common::constants::ColumnType;

    use super::*;
    use crate::rules::file::parse_rule;
    use crate::source::schema::{Column, SchemaOrigin};

    fn schema() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            db: "app".into(),
            table: "t".into(),
            columns: vec![
                Column::new("id", ColumnType::MYSQL_TYPE_LONG),
                Column::new("tenant", ColumnType::MYSQL_TYPE_LONG),
                Column::new("name", ColumnType::MYSQL_TYPE_VARCHAR),
                Column::new("secret", ColumnType::MYSQL_TYPE_VARCHAR),
            ],
            pk: vec![0],
            origin: SchemaOrigin::InformationSchema,
        })
    }

    fn router(extra: &str) -> Router {
        let text = format!(
            "source = \"app.t\"\nshard = \"tenant % 2\"\nshards = [\"s0\", \"s1\"]\n\
             where = \"tenant < 10\"\n{extra}"
        );
        let rule = parse_rule(Path::new("t.toml"), &text).expect("the rule parses");
        Router::new(vec![rule], &["s0".to_string(), "s1".to_string()]).expect("the rule binds")
    }

    fn row(id: i64, tenant: i64, name: &str) -> Vec<Cell> {
        vec![
            Cell::Int(id),
            Cell::Int(tenant),
            Cell::Bytes(name.as_bytes().to_vec()),
            Cell::Bytes(b"x".to_vec()),
        ]
    }

    fn change(before: Option<Vec<Cell>>, after: Option<Vec<Cell>>, n: u64) -> RowChange {
        RowChange {
            table: schema(),
            before,
            after,
            version: Version::new(0, 1, 1000, n).expect("fits"),
            span: 100,
            file: Arc::from("bin.000001"),
        }
    }

    fn changes() -> Vec<RowChange> {
        vec![
            change(None, Some(row(1, 0, "a")), 0),
            change(Some(row(1, 0, "a")), Some(row(1, 0, "b")), 1),
            change(Some(row(1, 0, "b")), Some(row(2, 0, "b")), 2),
            change(Some(row(2, 0, "b")), Some(row(2, 1, "b")), 3),
            change(Some(row(2, 1, "b")), Some(row(2, 11, "b")), 4),
            change(Some(row(2, 11, "b")), Some(row(2, 1, "c")), 5),
            change(Some(row(2, 1, "c")), None, 6),
            change(Some(row(3, 12, "c")), Some(row(3, 13, "d")), 7),
        ]
    }

    /// The coordinator's path (values moved out of the change) makes
    /// exactly the operations of the copying one, with rules that keep
    /// the row as it is and with rules that reshape it.
    #[test]
    fn route_into_moves_what_route_copies() {
        let rules = [
            "",
            "exclude = [\"secret\"]\n[rename]\nname = \"label\"\n[derive]\nslot = \"tenant % 2\"\n",
        ];
        for extra in rules {
            let (mut copying, mut moving) = (router(extra), router(extra));
            for c in changes() {
                let copied = copying.route(&c, no_context()).expect("routes");
                let mut taken = c.clone();
                let mut moved = Vec::new();
                moving
                    .route_into(&mut taken, no_context(), &mut moved)
                    .expect("routes");
                assert_eq!(
                    format!("{copied:?}"),
                    format!("{moved:?}"),
                    "{extra}: {c:?}"
                );
                assert!(taken.before.is_none() && taken.after.is_none());
            }
        }
        let mut r = router("");
        let ops = r.route(&changes()[2], no_context()).expect("routes");
        assert_eq!(ops.len(), 2, "a key change deletes the old key: {ops:?}");
        assert_eq!(ops[0].kind, OpKind::Delete(vec![Cell::Int(1)]));
        assert_eq!(ops[1].key().collect::<Vec<_>>(), [&Cell::Int(2)]);
        assert_eq!(ops[1].kind, OpKind::Upsert(row(2, 0, "b")));
    }

    /// An update is routed from its after image alone when it keeps every
    /// column its location is computed from; any of them changing (key,
    /// shard, `where`) still deletes the old location.
    #[test]
    fn an_update_that_keeps_its_location_deletes_nothing() {
        let kinds = |r: &mut Router, c: &RowChange| -> Vec<&'static str> {
            let ops = r.route(c, no_context()).expect("routes");
            ops.iter()
                .map(|o| match o.kind {
                    OpKind::Delete(_) => "delete",
                    OpKind::Upsert(_) => "upsert",
                })
                .collect()
        };
        for extra in ["", "[derive]\nslot = \"CONCAT(name, '!')\"\n"] {
            let mut r = router(extra);
            let c = changes();
            assert_eq!(kinds(&mut r, &c[1]), ["upsert"], "name only: {extra}");
            assert_eq!(kinds(&mut r, &c[2]), ["delete", "upsert"], "key");
            assert_eq!(kinds(&mut r, &c[3]), ["delete", "upsert"], "shard");
            assert_eq!(kinds(&mut r, &c[4]), ["delete"], "leaves `where`");
            assert_eq!(kinds(&mut r, &c[5]), ["upsert"], "enters `where`");
            assert_eq!(kinds(&mut r, &c[7]), Vec::<&str>::new(), "outside `where`");
        }
        // the shard stays (tenant 0 and 10 are both even), `where` fails
        let mut r = router("");
        let c = change(Some(row(1, 0, "a")), Some(row(1, 10, "a")), 1);
        assert_eq!(kinds(&mut r, &c), ["delete"]);
        // -0 and 0 are told apart: the long way, which gives the same upsert
        let schema = Arc::new(TableSchema {
            db: "app".into(),
            table: "f".into(),
            columns: vec![
                Column::new("x", ColumnType::MYSQL_TYPE_DOUBLE),
                Column::new("v", ColumnType::MYSQL_TYPE_LONG),
            ],
            pk: vec![0],
            origin: SchemaOrigin::InformationSchema,
        });
        let rule = parse_rule(
            Path::new("f.toml"),
            "source = \"app.f\"\nshard = \"v % 2\"\nshards = [\"s0\", \"s1\"]\n",
        )
        .expect("parses");
        let mut r = Router::new(vec![rule], &["s0".to_string(), "s1".to_string()]).expect("binds");
        let mut c = change(
            Some(vec![Cell::Double(-0.0), Cell::Int(1)]),
            Some(vec![Cell::Double(0.0), Cell::Int(1)]),
            1,
        );
        c.table = schema;
        let ops = r.route(&c, no_context()).expect("routes");
        let same: Vec<_> = {
            let mut plain = c.clone();
            plain.before = Some(vec![Cell::Double(0.0), Cell::Int(1)]);
            r.route(&plain, no_context()).expect("routes")
        };
        assert_eq!(same.len(), 1, "the same cells: one upsert");
        assert_eq!(ops.last().map(|o| &o.kind), same.last().map(|o| &o.kind));
    }

    /// A change the rule cannot route is left whole, for its dead letter.
    #[test]
    fn route_into_leaves_an_unroutable_change_whole() {
        let mut r = router("");
        let bad = change(None, Some(row(1, -1, "a")), 0);
        let mut taken = bad.clone();
        let mut out = Vec::new();
        let e = r.route_into(&mut taken, no_context(), &mut out);
        assert!(matches!(e, Err(RouteError::Derive { .. })), "{e:?}");
        assert!(out.is_empty());
        assert_eq!(format!("{taken:?}"), format!("{bad:?}"));
    }
}
