//! The DDL policy (`[pipeline] on_ddl`): what a DDL statement on a mapped
//! table does to the pipeline. The schema history ([`super::history`])
//! says what the statement did — the table's columns before and after it,
//! as the server itself derived them on a scratch copy — and this module
//! judges that change:
//!
//! | change | `halt` | `follow` | `ignore` |
//! |---|---|---|---|
//! | a key, shard-expression or version column dropped, renamed or retyped; the primary key changed | halt | halt | halt |
//! | columns added, each nullable or with a default | halt | added to the targets, carried | warning |
//! | no column changed (an index, a comment, the engine, a reorder) | halt | go on | go on |
//! | any other column change | halt | halt | warning |
//! | `TRUNCATE`, `DROP`, a rename away or onto the table, `CREATE OR REPLACE` | halt | halt | warning |
//! | what the history cannot tell | halt | halt | warning |
//! | `CREATE TABLE` of a table that did not exist | go on | go on | go on |
//!
//! # Why halting is safe, and the way past a halt
//!
//! A halt is a definite error raised while the DDL event is decoded, before
//! the boundary after it is handed out, so the checkpoint stays before the
//! DDL: a restart reads it again and halts again, until the operator has
//! made the targets fit and lets that one event through with `run
//! --accept-ddl FILE:POS` (its start position, which every halt names).
//! Nothing after the DDL was applied, and nothing before it is skipped.
//!
//! Routing columns always halt because rows routed before and after the
//! DDL would disagree: a retyped key gives the same row another canonical
//! key (another lane, another tombstone), a changed shard expression input
//! sends the same row to another shard, and the versions could no longer
//! keep one key's changes in order (`docs/architecture.md`, "Keys and
//! collations"). `TRUNCATE` deletes rows without row events, so the targets
//! would keep them. `follow` only carries what leaves every earlier row as
//! it is: a column whose value for the existing rows is NULL or its
//! default, which the targets then also hold ([`crate::writer::follow`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::ddl::{Ddl, TableRef};
use super::events::truncate;
use super::schema::{Catalog, CatalogColumn, SchemaError};
use crate::config::{Endpoint, OnDdl};
use crate::control::schema_history::{Columns, Record};
use crate::position::Position;
use crate::writer::follow::{self, FollowError, NewColumn};

/// `(db, table)`.
type Key = (String, String);

/// What the policy needs to know of a mapped table (from its rule).
#[derive(Debug, Clone)]
pub struct Watch {
    /// The rule file, for messages.
    pub rule_file: String,
    /// The rule's `key`; `None`: the source's primary key.
    pub key: Option<Vec<String>>,
    /// Columns the shard expression reads.
    pub shard: Vec<String>,
    /// `version = { column }`.
    pub version: Option<String>,
    /// The target table, on every shard in `shards`.
    pub target: String,
    /// Source column → target column.
    pub rename: BTreeMap<String, String>,
    pub exclude: Vec<String>,
    pub shards: Vec<Endpoint>,
}

/// The policy of one pipeline.
pub struct DdlPolicy {
    pub mode: OnDdl,
    pub tables: HashMap<Key, Watch>,
    /// DDL events (start positions) let through (`run --accept-ddl`).
    pub accepted: Vec<Position>,
    /// The config file, for the commands in messages.
    pub config: String,
    /// The command that streams (`run`, `replay`), named in a halt.
    pub command: &'static str,
    /// Connection budget of a target (follow).
    pub connect_timeout: Duration,
}

/// A DDL the pipeline stops at: what, where, why and the fix.
#[derive(Debug)]
pub struct DdlHalt {
    pub table: String,
    pub start: Position,
    pub end: Position,
    pub statement: String,
    pub why: String,
    pub fix: String,
    pub config: String,
    /// `run` or `replay`.
    pub command: &'static str,
}

impl std::fmt::Display for DdlHalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DDL on {} at {} (ends at {}): `{}`: {} Fix: {} Then let this DDL through: `reshard {} --config {} --accept-ddl {}`",
            self.table,
            self.start,
            self.end,
            self.statement,
            self.why,
            self.fix,
            self.command,
            self.config,
            self.start
        )?;
        if self.command == "replay" {
            f.write_str(" (with the replay's other options as before)")?;
        }
        Ok(())
    }
}

/// One mapped table a DDL touched, with its history records around it.
pub struct Touched {
    pub key: Key,
    /// The record valid just before the DDL.
    pub before: Option<Arc<Record>>,
    /// The record the DDL made (`None`: the DDL left the table as it was).
    pub after: Option<Arc<Record>>,
}

/// What the policy decides for one table.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Go on (logged at info with why).
    Pass(String),
    /// Go on with a warning.
    Warn(String),
    /// Add these columns to the targets, then go on.
    Follow(Vec<NewColumn>),
    /// Stop: why, and the fix.
    Halt(String, String),
}

/// The DDL as a statement of what it did.
struct Event<'a> {
    ddl: &'a Ddl,
    statement: &'a str,
    start: &'a Position,
    end: &'a Position,
}

impl DdlPolicy {
    /// Judges a DDL event on the mapped tables it touched: goes on, adds
    /// columns to the targets (`follow`), or returns the halt.
    pub async fn judge(
        &self,
        (ddl, statement): (&Ddl, &str),
        start: &Position,
        end: &Position,
        touched: Vec<Touched>,
    ) -> Result<(), SchemaError> {
        if touched.is_empty() {
            return Ok(());
        }
        let ev = Event {
            ddl,
            statement,
            start,
            end,
        };
        if self.accepted.contains(start) {
            tracing::warn!(position = %start, statement = %truncate(statement, 200), "DDL let through by --accept-ddl");
            return Ok(());
        }
        for t in touched {
            let Some(watch) = self.tables.get(&t.key) else {
                continue;
            };
            let table = format!("{}.{}", t.key.0, t.key.1);
            match self.verdict(&ev, watch, &t) {
                Verdict::Pass(why) => {
                    tracing::info!(table, position = %start, on_ddl = ?self.mode, why, "DDL on a mapped table: going on")
                }
                Verdict::Warn(why) => {
                    tracing::warn!(table, position = %start, statement = %truncate(statement, 200), why, "DDL on a mapped table ignored (on_ddl = ignore)")
                }
                Verdict::Follow(columns) => self.follow(&ev, &table, watch, &columns).await?,
                Verdict::Halt(why, fix) => return Err(self.halt(&ev, table, why, fix)),
            }
        }
        Ok(())
    }

    fn halt(&self, ev: &Event<'_>, table: String, why: String, fix: String) -> SchemaError {
        SchemaError::Ddl(Box::new(DdlHalt {
            table,
            start: ev.start.clone(),
            end: ev.end.clone(),
            statement: truncate(ev.statement, 500),
            why,
            fix,
            config: self.config.clone(),
            command: self.command,
        }))
    }

    /// `follow`: adds the columns to every shard's target table.
    async fn follow(
        &self,
        ev: &Event<'_>,
        table: &str,
        watch: &Watch,
        columns: &[NewColumn],
    ) -> Result<(), SchemaError> {
        let added =
            follow::add_columns(&watch.shards, &watch.target, columns, self.connect_timeout).await;
        match added {
            Ok(statements) => {
                let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
                tracing::info!(table, position = %ev.start, columns = ?names, targets_altered = statements.len(), "on_ddl = follow: carrying the added column(s)");
                Ok(())
            }
            Err(FollowError::Db(e)) => Err(SchemaError::Db(e)),
            Err(FollowError::Refused {
                shard,
                statement,
                message,
            }) => {
                let why = format!("on_ddl = \"follow\" could not add the new column(s) to target {shard}: {message}.");
                let fix = format!("run `{statement};` on {shard} (and on every other shard that lacks the column), or grant ALTER on the target tables to reshard's target user and restart.");
                Err(self.halt(ev, table.to_string(), why, fix))
            }
        }
    }

    fn verdict(&self, ev: &Event<'_>, watch: &Watch, t: &Touched) -> Verdict {
        let before = t.before.as_deref().map(|r| &r.columns);
        let after = t.after.as_deref().map(|r| &r.columns);
        let lenient = self.mode == OnDdl::Ignore;
        let gone = |what: &str| -> Verdict {
            let why = format!("{what}; the targets keep its rows.");
            if lenient {
                return Verdict::Warn(why);
            }
            Verdict::Halt(
                why,
                format!("remove or keep the rows of {} on the targets as the application needs (with DROP, its rows are gone from the source), or undo the DDL on the source.", watch.target),
            )
        };
        match ev.ddl {
            Ddl::Truncate { .. } => truncated(watch, lenient),
            Ddl::Create { .. } if !matches!(before, Some(Columns::Known(_))) => {
                Verdict::Pass("the table was created".into())
            }
            Ddl::Create { .. } if after.is_none() => {
                Verdict::Pass("CREATE … IF NOT EXISTS of an existing table".into())
            }
            Ddl::Create { .. } => gone("CREATE OR REPLACE replaced the table"),
            Ddl::Drop { .. } | Ddl::DropDatabase { .. } => gone("the table was dropped"),
            Ddl::Rename { .. } => renamed(t, watch, lenient),
            _ if matches!(after, Some(Columns::Absent)) => gone("the table was renamed away"),
            _ => match (before, after.or(before)) {
                (Some(Columns::Known(b)), Some(Columns::Known(a))) => {
                    self.altered(watch, b, a, t.after.as_deref())
                }
                _ => unknowable(t, lenient),
            },
        }
    }

    /// An `ALTER` (or index change) whose before and after columns are known.
    fn altered(
        &self,
        watch: &Watch,
        before: &Catalog,
        after: &Catalog,
        rec: Option<&Record>,
    ) -> Verdict {
        let diff = Diff::of(before, after);
        if let Some((why, fix)) = routing_change(watch, before, after, &diff) {
            return Verdict::Halt(why, fix);
        }
        let halt_fix = format!(
            "apply the same change to the target table {} on every shard (dry-run prints what is missing), or set on_ddl = \"follow\" to have added nullable or defaulted columns carried.",
            watch.target
        );
        if diff.is_empty() {
            return match self.mode {
                OnDdl::Halt => Verdict::Halt(
                    "on_ddl = \"halt\" stops at every DDL of a mapped table (this one changed no column).".into(),
                    halt_fix,
                ),
                _ => Verdict::Pass("no column changed".into()),
            };
        }
        let summary = diff.describe();
        match self.mode {
            OnDdl::Halt => Verdict::Halt(
                format!("on_ddl = \"halt\" stops at every DDL of a mapped table ({summary})."),
                halt_fix,
            ),
            OnDdl::Ignore => Verdict::Warn(format!(
                "{summary}; the target tables are not changed (add, drop or exclude the columns yourself)"
            )),
            OnDdl::Follow => follow_added(watch, &diff, rec, summary),
        }
    }
}

/// What a DDL did to a table's columns, by name.
#[derive(Debug, Default)]
struct Diff<'a> {
    added: Vec<&'a CatalogColumn>,
    dropped: Vec<&'a CatalogColumn>,
    /// (before, after) of a column whose type, collation or nullability changed.
    changed: Vec<(&'a CatalogColumn, &'a CatalogColumn)>,
}

impl<'a> Diff<'a> {
    fn of(before: &'a Catalog, after: &'a Catalog) -> Diff<'a> {
        let find = |cols: &'a [CatalogColumn], name: &str| {
            cols.iter().find(|c| c.name.eq_ignore_ascii_case(name))
        };
        let mut d = Diff::default();
        for b in &before.0 {
            match find(&after.0, &b.name) {
                None => d.dropped.push(b),
                Some(a) if definition_changed(b, a) => d.changed.push((b, a)),
                Some(_) => {}
            }
        }
        d.added = after
            .0
            .iter()
            .filter(|a| find(&before.0, &a.name).is_none())
            .collect();
        d
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.dropped.is_empty() && self.changed.is_empty()
    }

    fn describe(&self) -> String {
        let names = |v: &[&CatalogColumn]| {
            v.iter()
                .map(|c| format!("`{}`", c.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("added {}", names(&self.added)));
        }
        if !self.dropped.is_empty() {
            parts.push(format!("dropped or renamed {}", names(&self.dropped)));
        }
        for (b, a) in &self.changed {
            parts.push(format!(
                "changed `{}` from {} to {}",
                b.name,
                shown(b),
                shown(a)
            ));
        }
        parts.join("; ")
    }
}

fn definition_changed(b: &CatalogColumn, a: &CatalogColumn) -> bool {
    b.column_type != a.column_type || b.collation != a.collation || b.nullable != a.nullable
}

/// A column's type as a message shows it.
fn shown(c: &CatalogColumn) -> String {
    let mut s = c.column_type.clone();
    if let Some(coll) = &c.collation {
        s.push_str(&format!(" COLLATE {coll}"));
    }
    s.push_str(if c.nullable { " NULL" } else { " NOT NULL" });
    s
}

/// The routing columns of a table (key, shard expression, version) the DDL
/// dropped, renamed or retyped, or a changed primary key the rule keys by:
/// the halt every mode shares.
fn routing_change(
    watch: &Watch,
    before: &Catalog,
    after: &Catalog,
    diff: &Diff<'_>,
) -> Option<(String, String)> {
    let fix = format!(
        "undo the DDL on the source; or, when every value keeps its text and order (e.g. INT to BIGINT), make the same change to the target tables; otherwise adapt the rule {} and the target tables to the new schema and re-seed the targets (a new copy). Rows routed by the old schema and by the new one would otherwise disagree on the row's key or shard.",
        watch.rule_file
    );
    if watch.key.is_none() && !same_names(&before.1, &after.1) {
        let why = format!(
            "the primary key changed from ({}) to ({}); the rule keys rows by it.",
            before.1.join(", "),
            after.1.join(", ")
        );
        return Some((why, fix));
    }
    let key = watch.key.clone().unwrap_or_else(|| before.1.clone());
    let roles = key
        .iter()
        .map(|c| (c, "key"))
        .chain(watch.shard.iter().map(|c| (c, "shard expression")))
        .chain(watch.version.iter().map(|c| (c, "version")));
    for (col, role) in roles {
        let named = |c: &&CatalogColumn| c.name.eq_ignore_ascii_case(col);
        if diff.dropped.iter().any(named) {
            return Some((
                format!("the {role} column `{col}` was dropped or renamed."),
                fix,
            ));
        }
        if let Some((b, a)) = diff.changed.iter().find(|(b, _)| named(b)) {
            if b.column_type != a.column_type || b.collation != a.collation {
                let why = format!(
                    "the {role} column `{col}` changed from {} to {}.",
                    shown(b),
                    shown(a)
                );
                return Some((why, fix));
            }
        }
    }
    None
}

fn same_names(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

/// `follow` on an `ALTER` that changed columns: added nullable or defaulted
/// columns are carried; anything else halts.
fn follow_added(watch: &Watch, diff: &Diff<'_>, rec: Option<&Record>, summary: String) -> Verdict {
    let fix = format!(
        "make the same change to the target table {} on every shard, or leave the column out with exclude = [\"…\"] in {}.",
        watch.target, watch.rule_file
    );
    if !diff.dropped.is_empty() || !diff.changed.is_empty() {
        return Verdict::Halt(
            format!("on_ddl = \"follow\" only carries added columns ({summary})."),
            fix,
        );
    }
    let create_sql = rec.map_or("", |r| r.create_sql.as_str());
    let mut out = Vec::new();
    for c in diff.added.iter().filter(|c| {
        !watch
            .exclude
            .iter()
            .any(|e| e.eq_ignore_ascii_case(&c.name))
    }) {
        let Some(definition) = column_definition(create_sql, c) else {
            let why = format!(
                "the definition of the added column `{}` is not in the schema history.",
                c.name
            );
            return Verdict::Halt(why, fix);
        };
        let upper = definition.to_ascii_uppercase();
        if upper.contains("GENERATED ")
            || upper.contains(" AS (")
            || upper.contains("AUTO_INCREMENT")
        {
            let why = format!(
                "the added column `{}` is generated or AUTO_INCREMENT ({definition}).",
                c.name
            );
            return Verdict::Halt(why, fix);
        }
        if !c.nullable && !upper.contains("DEFAULT ") {
            let why = format!("the added column `{}` is NOT NULL without a default, so the source gave the existing rows an implicit value; reshard carries only nullable or defaulted columns.", c.name);
            return Verdict::Halt(why, fix);
        }
        let name = watch
            .rename
            .get(&c.name)
            .cloned()
            .unwrap_or_else(|| c.name.clone());
        out.push(NewColumn { name, definition });
    }
    if out.is_empty() {
        return Verdict::Pass("the added columns are excluded by the rule".into());
    }
    Verdict::Follow(out)
}

/// The definition of column `c` in a `SHOW CREATE TABLE` text (what
/// follows its name on its line), with the column's character set and
/// collation spelled out: the target table's defaults may differ.
fn column_definition(create_sql: &str, c: &CatalogColumn) -> Option<String> {
    let quoted = crate::db::quote_ident(&c.name);
    let line = create_sql
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&quoted))?;
    let def = line[quoted.len()..]
        .trim()
        .trim_end_matches(',')
        .trim()
        .to_string();
    let Some(coll) = c.collation.as_deref() else {
        return Some(def);
    };
    if def.to_ascii_uppercase().contains("COLLATE") || !def.starts_with(&c.column_type) {
        return Some(def);
    }
    let charset = coll.split('_').next().unwrap_or(coll);
    let rest = &def[c.column_type.len()..];
    Some(format!(
        "{} CHARACTER SET {charset} COLLATE {coll}{rest}",
        c.column_type
    ))
}

fn truncated(watch: &Watch, lenient: bool) -> Verdict {
    let why = "TRUNCATE deleted every row of the table on the source without row events, so the targets still hold them.".to_string();
    if lenient {
        return Verdict::Warn(why);
    }
    Verdict::Halt(
        why,
        format!(
            "delete those rows on every shard (`DELETE FROM {}` when the target table holds only this table's rows), or set on_ddl = \"ignore\" to keep them.",
            crate::db::quote_ident(&watch.target)
        ),
    )
}

/// `RENAME TABLE` onto or away from a mapped name: the rows behind the name
/// are another table's now (gh-ost and pt-online-schema-change swap tables
/// this way).
fn renamed(t: &Touched, watch: &Watch, lenient: bool) -> Verdict {
    let note = t
        .after
        .as_ref()
        .map_or_else(String::new, |r| r.note.clone());
    let why = format!("a RENAME TABLE put another table in its place or moved it away ({note}); its rows and columns may differ from what the targets hold.");
    if lenient {
        return Verdict::Warn(why);
    }
    Verdict::Halt(
        why,
        format!("make the target table {} match the table now behind the name (for an online schema change tool: apply its ALTER to the targets), or re-seed the targets.", watch.target),
    )
}

/// A DDL whose effect the history cannot tell.
fn unknowable(t: &Touched, lenient: bool) -> Verdict {
    let note = t
        .after
        .as_ref()
        .or(t.before.as_ref())
        .map_or_else(|| "no history".to_string(), |r| r.note.clone());
    let why = format!("reshard cannot tell what the statement did to the columns ({note}), so it cannot check that the key and shard columns are intact.");
    if lenient {
        return Verdict::Warn(why);
    }
    Verdict::Halt(why, "check the table's key and shard-expression columns and make the targets match the new schema.".into())
}

/// The mapped tables the policy judges for `ddl`: those the history
/// records ([`super::history`]'s `touched`) and a truncated one.
pub fn truncated_table(ddl: &Ddl) -> Option<&TableRef> {
    match ddl {
        Ddl::Truncate { table } => Some(table),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
