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
    plans: HashMap<(String, String), Plan>,
    collations: Arc<KeyCollations>,
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
            plans: HashMap::new(),
            collations: Arc::new(KeyCollations::default()),
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
        let key = (schema.db.clone(), schema.table.clone());
        let stale = match self.plans.get(&key) {
            Some(p) => !Arc::ptr_eq(&p.schema, schema) && *p.schema != **schema,
            None => true,
        };
        if stale {
            let rule = self
                .rules
                .get(&key)
                .ok_or_else(|| RouteError::Bind(format!("no rule for {}", schema.full_name())))?
                .clone();
            let plan = compile(rule, schema, &self.shard_index, &self.collations)?;
            self.plans.insert(key.clone(), plan);
        } else if let Some(p) = self.plans.get_mut(&key) {
            // same schema in a new Arc: remember it to skip the compare next time
            p.schema = schema.clone();
        }
        self.plans
            .get(&key)
            .ok_or_else(|| RouteError::Bind(format!("no plan for {}", schema.full_name())))
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
    pub fn route(
        &mut self,
        change: &RowChange,
        ctx: &dyn EvalContext,
    ) -> Result<Vec<WriteOp>, RouteError> {
        let plan = self.plan(&change.table)?;
        let new = match &change.after {
            Some(after) => upsert_of(plan, after, change, ctx)?,
            None => None,
        };
        let old = match &change.before {
            Some(before) => location_of(plan, before, &to_expr_row(before, plan), change, ctx)?,
            None => None,
        };
        let op = |at: Located, kind: OpKind| WriteOp {
            shard: at.shard,
            table: plan.target.clone(),
            key: at.key.cells,
            key_enc: at.key.canonical,
            kind,
            version: at.version,
        };
        let mut ops = Vec::with_capacity(2);
        match (old, new) {
            (Some(old), Some((new, values))) => {
                if old.shard != new.shard || old.key.canonical != new.key.canonical {
                    ops.push(op(old, OpKind::Delete));
                }
                ops.push(op(new, OpKind::Upsert(values)));
            }
            (Some(old), None) => ops.push(op(old, OpKind::Delete)),
            (None, Some((new, values))) => ops.push(op(new, OpKind::Upsert(values))),
            (None, None) => {}
        }
        Ok(ops)
    }
}

/// Where a row image that passes `where` lives on the targets, and the
/// version of an operation built from it.
struct Located {
    shard: usize,
    key: Key,
    version: Version,
}

/// A row's key: its cells and its canonical bytes.
struct Key {
    cells: Vec<Cell>,
    canonical: Vec<u8>,
}

impl Key {
    fn of(plan: &Plan, row: &[Cell]) -> Key {
        let cells: Vec<Cell> = plan.key_src.iter().map(|&i| row[i].clone()).collect();
        let canonical = keyenc::canonical(&cells, &plan.key_parts);
        Key { cells, canonical }
    }
}

/// The location of `cells` (whose expression values are `row`) if it
/// passes the rule's `where`, else `None`.
fn location_of(
    plan: &Plan,
    cells: &[Cell],
    row: &[Value],
    change: &RowChange,
    ctx: &dyn EvalContext,
) -> Result<Option<Located>, RouteError> {
    if !passes(plan, row, change, ctx)? {
        return Ok(None);
    }
    Ok(Some(Located {
        shard: shard_of(plan, row, cells, change, ctx)?,
        key: Key::of(plan, cells),
        version: version_of(plan, cells, change)?,
    }))
}

/// The location and target row of an after image that passes `where`.
fn upsert_of(
    plan: &Plan,
    after: &[Cell],
    change: &RowChange,
    ctx: &dyn EvalContext,
) -> Result<Option<(Located, Vec<Cell>)>, RouteError> {
    let row = to_expr_row(after, plan);
    let Some(at) = location_of(plan, after, &row, change, ctx)? else {
        return Ok(None);
    };
    let mut values = Vec::with_capacity(plan.sources.len());
    let mut derived = plan.derive.iter();
    for src in &plan.sources {
        if let Some(i) = src {
            values.push(after[*i].clone());
            continue;
        }
        let column = || plan.target.columns[values.len()].clone();
        let Some(e) = derived.next() else {
            return Err(RouteError::Bind(format!(
                "no expression for the derived column {}",
                column()
            )));
        };
        let v = e.eval(&row, ctx).map_err(|e| {
            plan.derive_error(Some(after), change, DeriveStage::Column(column()), e)
        })?;
        values.push(expr_to_cell(v));
    }
    Ok(Some((at, values)))
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
fn to_expr_row(cells: &[Cell], plan: &Plan) -> Vec<Value> {
    let mut row = vec![Value::Null; cells.len()];
    for &i in &plan.used {
        if let (Some(c), Some(col)) = (cells.get(i), plan.schema.columns.get(i)) {
            row[i] = cell_to_expr(c, col);
        }
    }
    row
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
        used: used_columns(&rule, schema),
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
