//! The schema history: the columns each mapped table had at each binlog
//! position, so that a TABLE_MAP without column names
//! (`binlog_row_metadata` not FULL) is decoded with the columns of *its*
//! position, not with those information_schema shows now.
//!
//! # Why decoding by the history is right, or refuses
//!
//! A record says "from position P on, until the table's next record, the
//! table has these columns". Records come from two places only:
//!
//! 1. **The start** ([`SchemaHistory::prepare`], before streaming from P,
//!    and at the initial copy's position): for a table without a record
//!    valid at P, the columns information_schema shows now are valid at P
//!    only if no DDL touched the table between P and now. reshard reads
//!    them, then the source's head H, then scans the binlog from P to H for
//!    DDL statements (`SHOW BINLOG EVENTS`). None touched the table: the
//!    columns are recorded at P. Some did: the columns before the first of
//!    them cannot be known — the table is recorded *unknown* at P, and the
//!    columns read are recorded at the end of the last DDL, from where
//!    they are valid.
//! 2. **A DDL in the stream** ([`SchemaHistory::on_ddl`], at the position
//!    where the DDL event ends): the table's previous record is replayed
//!    on a scratch table in the control database (its `SHOW CREATE TABLE`,
//!    then the DDL with the table's name replaced), so the server itself
//!    says what the DDL did; reshard does not parse column definitions.
//!    What cannot be replayed or followed (a rename from an untracked
//!    table, `CREATE TABLE … LIKE`, a DDL the control server refuses, a
//!    DDL after an unknown record) is recorded *unknown*.
//!
//! A record is keyed by its position, and the columns valid at a position
//! never change, so recording again after a restart is harmless (the first
//! record is kept) and records may run ahead of the checkpoint. The decoder
//! records a DDL before it hands out the boundary after it, so the
//! checkpoint never passes a DDL whose record is not stored.
//!
//! Decoding uses the record valid at the TABLE_MAP's position, and still
//! requires the TABLE_MAP's column count and types to match it. An unknown
//! record, no record, or a mismatch is a definite error naming the table,
//! the position and the fix: a guess could put values into the wrong
//! columns, and same-typed columns swapped would go unnoticed. With FULL
//! metadata the history is kept the same way but never consulted, so
//! nothing there can stop a pipeline.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::ddl::{self, Ddl, TableRef};
use super::events::truncate;
use super::schema::{load_catalog, Catalog, HistoryGap, SchemaError};
use crate::control::schema_history::{self as store, Columns, Record, Replayed};
use crate::db::{quote_ident, DbError, Retry};
use crate::position::{file_seq, Position};

/// `(db, table)`.
type Key = (String, String);

/// Rows per `SHOW BINLOG EVENTS` page.
const PAGE: usize = 1000;

/// A DDL statement found between two positions.
struct Seen {
    start: Position,
    end: Position,
    query: String,
    /// A `CREATE TABLE` that says the table did not exist before it.
    creates: bool,
}

/// The history of a pipeline's mapped tables, with the control connection
/// it records on.
pub struct SchemaHistory {
    control: Conn,
    pipeline: String,
    epoch: u16,
    /// The scratch table DDLs are replayed on (in the control database).
    scratch: String,
    mapped: Vec<Key>,
    tables: HashMap<Key, BTreeMap<Position, Arc<Record>>>,
    /// `[pipeline] on_ddl`, judged after each DDL is recorded.
    policy: Option<super::ddl_policy::DdlPolicy>,
}

impl SchemaHistory {
    /// Loads the pipeline's history for `epoch` (positions of another epoch
    /// may be of another server).
    pub async fn load(
        mut control: Conn,
        pipeline: &str,
        epoch: u16,
        mapped: Vec<Key>,
    ) -> Result<SchemaHistory, SchemaError> {
        let records = store::load(&mut control, pipeline, epoch).await?;
        let mut h = SchemaHistory {
            control,
            pipeline: pipeline.to_string(),
            epoch,
            scratch: format!(
                "reshard_scratch_{:08x}",
                crc32fast::hash(pipeline.as_bytes())
            ),
            mapped,
            tables: HashMap::new(),
            policy: None,
        };
        for r in records {
            h.insert(r);
        }
        Ok(h)
    }

    /// Pings the control connection, idle between DDLs, so that the
    /// server's `wait_timeout` does not close it (see [`super::stream`]).
    pub async fn keep_alive(&mut self, within: std::time::Duration) -> Result<(), DbError> {
        crate::db::ping(&mut self.control, "control", within).await
    }

    /// Closes the control connection.
    pub async fn close(self) {
        let _ = self.control.disconnect().await;
    }

    fn insert(&mut self, r: Record) {
        self.tables
            .entry((r.db.clone(), r.table.clone()))
            .or_default()
            .insert(r.position.clone(), Arc::new(r));
    }

    /// Stores a record (an existing one at its position wins) and keeps it.
    async fn persist(&mut self, r: Record) -> Result<(), SchemaError> {
        let key = (r.db.clone(), r.table.clone());
        if self.record_exactly(&key, &r.position) {
            return Ok(());
        }
        store::record(&mut self.control, &self.pipeline, self.epoch, &r).await?;
        self.insert(r);
        Ok(())
    }

    fn record_exactly(&self, key: &Key, at: &Position) -> bool {
        self.tables.get(key).is_some_and(|m| m.contains_key(at))
    }

    /// The record valid at `at` (the last one at or before it).
    fn record_at(&self, key: &Key, at: &Position) -> Option<&Arc<Record>> {
        self.tables
            .get(key)?
            .range(..=at.clone())
            .next_back()
            .map(|(_, r)| r)
    }

    /// The last record strictly before `at`.
    fn record_before(&self, key: &Key, at: &Position) -> Option<&Arc<Record>> {
        self.tables
            .get(key)?
            .range(..at.clone())
            .next_back()
            .map(|(_, r)| r)
    }

    /// The first position after `at` from which the table's columns are
    /// known again.
    fn known_after(&self, key: &Key, at: &Position) -> Option<Position> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.tables
            .get(key)?
            .range((Excluded(at.clone()), Unbounded))
            .find(|(_, r)| matches!(r.columns, Columns::Known(_)))
            .map(|(p, _)| p.clone())
    }

    /// Before streaming from `at`: every mapped table gets a record valid
    /// at `at` (see the module docs, 1.).
    pub async fn prepare(&mut self, source: &mut Conn, at: &Position) -> Result<(), SchemaError> {
        let missing: Vec<Key> = self
            .mapped
            .iter()
            .filter(|k| self.record_at(k, at).is_none())
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut live = Vec::with_capacity(missing.len());
        for (db, table) in &missing {
            live.push(read_live(source, db, table).await?);
        }
        let head = super::head(source).await?;
        let Some(mut changed) = ddl_between(source, at, &head, &missing).await? else {
            // the range is not on the source (purged): the stream fails
            // there too; record nothing that could be wrong
            return Ok(());
        };
        for ((db, table), (columns, create_sql)) in missing.into_iter().zip(live) {
            let seen = changed
                .remove(&(db.clone(), table.clone()))
                .unwrap_or_default();
            let (Some(first), Some(last)) = (seen.first(), seen.last()) else {
                let note = format!("information_schema when reshard started from {at}");
                self.persist(record(&db, &table, at, columns, create_sql, note))
                    .await?;
                continue;
            };
            let before = if first.creates {
                // the binlog holds only DDL that succeeded: the table did
                // not exist before it, and the stream replays it
                let note = format!("created after {at} by the DDL at {}", first.start);
                absent(&db, &table, at, note)
            } else {
                let note = format!(
                    "reshard had no schema history of {db}.{table} before {at}, and {} DDL statement(s) changed the table after that position (the first at {}: `{}`); information_schema shows only its columns after the last one, which ends at {}",
                    seen.len(),
                    first.start,
                    truncate(&first.query, 200),
                    last.end
                );
                unknown(&db, &table, at, note)
            };
            self.persist(before).await?;
            let note = format!(
                "information_schema when reshard started from {at}, valid after the DDL at {}",
                last.start
            );
            let end = last.end.clone();
            self.persist(record(&db, &table, &end, columns, create_sql, note))
                .await?;
        }
        Ok(())
    }

    /// The columns of `db.table` at `at`, and where they became valid.
    pub fn catalog_at(
        &self,
        db: &str,
        table: &str,
        at: &Position,
    ) -> Result<(&Catalog, &Position), SchemaError> {
        let key = (db.to_string(), table.to_string());
        let cannot = |why: String| {
            let reason = format!("the binlog does not name its columns (binlog_row_metadata is not FULL) and the schema history cannot tell them: {why}");
            self.gap(&key, at, reason)
        };
        match self.record_at(&key, at) {
            Some(r) => match &r.columns {
                Columns::Known(c) => Ok((c, &r.position)),
                Columns::Absent => Err(cannot(format!(
                    "the history says the table does not exist there (from {}: {})",
                    r.position, r.note
                ))),
                Columns::Unknown => Err(cannot(r.note.clone())),
            },
            None => Err(cannot(
                "the history has no record of it at or before this position (reshard did not start there, or started from a GTID)".into(),
            )),
        }
    }

    /// A TABLE_MAP of `db.table` at `at` that does not match the columns
    /// of the history ([`super::schema::complete_with`]'s count and type
    /// errors) says that the history is wrong here: said so, with the fix.
    pub fn mismatch(
        &self,
        e: SchemaError,
        (db, table): (&str, &str),
        at: &Position,
        valid_from: &Position,
    ) -> SchemaError {
        match e {
            SchemaError::ColumnCount { .. } | SchemaError::ColumnType { .. } => {
                let key = (db.to_string(), table.to_string());
                let reason = format!("its TABLE_MAP disagrees with the schema history (columns valid from {valid_from}): {e}");
                self.gap(&key, at, reason)
            }
            other => other,
        }
    }

    fn gap(&self, key: &Key, at: &Position, reason: String) -> SchemaError {
        SchemaError::History(Box::new(HistoryGap {
            table: format!("{}.{}", key.0, key.1),
            position: at.clone(),
            reason,
            resume: self.known_after(key, at),
        }))
    }

    /// A DDL QUERY event from `start` to `end`: records what it did to
    /// mapped tables (see the module docs, 2.).
    pub async fn on_ddl(
        &mut self,
        default_db: &str,
        query: &str,
        start: &Position,
        end: &Position,
    ) -> Result<(), SchemaError> {
        let ddl = ddl::classify(default_db, query);
        self.record_ddl(&ddl, query, start, end).await?;
        self.judge(&ddl, query, start, end).await
    }

    /// Judges the DDL by the pipeline's DDL policy, when one is set
    /// ([`super::ddl_policy`]), from the records around it.
    async fn judge(
        &self,
        ddl: &Ddl,
        query: &str,
        start: &Position,
        end: &Position,
    ) -> Result<(), SchemaError> {
        let Some(policy) = &self.policy else {
            return Ok(());
        };
        let mut keys = touched(ddl, &self.mapped);
        if let Some(t) = super::ddl_policy::truncated_table(ddl) {
            keys.extend(Some(key(t)).filter(|k| self.mapped.contains(k)));
        }
        let changes = keys
            .into_iter()
            .map(|k| super::ddl_policy::Touched {
                before: self.record_before(&k, end).cloned(),
                after: self.tables.get(&k).and_then(|m| m.get(end)).cloned(),
                key: k,
            })
            .collect();
        policy.judge((ddl, query), start, end, changes).await
    }

    /// Sets the DDL policy the history judges every DDL by.
    pub fn set_policy(&mut self, policy: super::ddl_policy::DdlPolicy) {
        self.policy = Some(policy);
    }

    /// Records what a DDL did to the mapped tables it touched.
    async fn record_ddl(
        &mut self,
        ddl: &Ddl,
        query: &str,
        start: &Position,
        end: &Position,
    ) -> Result<(), SchemaError> {
        let todo: Vec<Key> = touched(ddl, &self.mapped)
            .into_iter()
            .filter(|k| !self.record_exactly(k, end))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let note = format!("the DDL at {start}: `{}`", truncate(query, 500));
        let records = match ddl {
            Ddl::Alter { table, renamed_to } => {
                let mut out = Vec::new();
                if todo.contains(&key(table)) {
                    out.push(self.replay(table, query, end, &note).await?);
                }
                if let Some(to) = renamed_to.as_ref().filter(|t| todo.contains(&key(t))) {
                    let why = format!("renamed by {note}; reshard does not follow renamed tables");
                    out.push(unknown(&to.db, &to.table, end, why));
                }
                out
            }
            Ddl::Index { table } => vec![self.replay(table, query, end, &note).await?],
            Ddl::Create {
                table,
                if_not_exists,
                defines,
                ..
            } => {
                self.create(table, *if_not_exists, *defines, query, end, &note)
                    .await?
            }
            Ddl::Rename { pairs } => rename(pairs, &todo, end, &note, |k| {
                self.record_before(k, end).cloned()
            }),
            Ddl::Drop { .. } | Ddl::DropDatabase { .. } => todo
                .iter()
                .map(|(d, t)| absent(d, t, end, note.clone()))
                .collect(),
            Ddl::Unknown { .. } | Ddl::None | Ddl::Truncate { .. } => {
                let why = format!("a statement reshard cannot interpret changed it: {note}");
                todo.iter()
                    .map(|(d, t)| unknown(d, t, end, why.clone()))
                    .collect()
            }
        };
        for r in records {
            tracing::info!(table = %format!("{}.{}", r.db, r.table), position = %r.position, known = matches!(r.columns, Columns::Known(_)), "schema history: recorded the table's columns after a DDL");
            self.persist(r).await?;
        }
        Ok(())
    }

    /// `CREATE TABLE`: replayed when it defines the columns itself.
    async fn create(
        &mut self,
        table: &TableRef,
        if_not_exists: bool,
        defines: bool,
        query: &str,
        end: &Position,
        note: &str,
    ) -> Result<Vec<Record>, SchemaError> {
        let k = key(table);
        let exists = self
            .record_before(&k, end)
            .is_some_and(|r| matches!(r.columns, Columns::Known(_)));
        if if_not_exists && exists {
            return Ok(Vec::new());
        }
        if !defines {
            let why = format!(
                "created by {note}, whose columns reshard does not derive (LIKE or SELECT)"
            );
            return Ok(vec![unknown(&k.0, &k.1, end, why)]);
        }
        let create = ddl::with_name(query, &table.span, &self.scratch);
        let replayed = store::replay(&mut self.control, &self.scratch, &create, None).await?;
        Ok(vec![self.replayed(&k, end, note, None, replayed)])
    }

    /// `ALTER TABLE` or an index statement on `table`: replayed on the
    /// table's previous record.
    async fn replay(
        &mut self,
        table: &TableRef,
        query: &str,
        end: &Position,
        note: &str,
    ) -> Result<Record, SchemaError> {
        let k = key(table);
        let prev = self.record_before(&k, end).cloned();
        let prev_create =
            prev.as_ref()
                .and_then(|p| match (&p.columns, ddl::classify(&k.0, &p.create_sql)) {
                    (Columns::Known(c), Ddl::Create { table: t, .. }) => Some((
                        c.clone(),
                        ddl::with_name(&p.create_sql, &t.span, &self.scratch),
                    )),
                    _ => None,
                });
        let Some((prev_catalog, create)) = prev_create else {
            let before = prev.map_or_else(|| "no record".to_string(), |p| p.note.clone());
            let why = format!("{note} changed the table while its columns were unknown ({before})");
            return Ok(unknown(&k.0, &k.1, end, why));
        };
        let ddl = ddl::with_name(query, &table.span, &self.scratch);
        let replayed = store::replay(&mut self.control, &self.scratch, &create, Some(&ddl)).await?;
        Ok(self.replayed(&k, end, note, Some(&prev_catalog), replayed))
    }

    /// The record for what a replay made of the table.
    fn replayed(
        &self,
        (db, table): &Key,
        end: &Position,
        note: &str,
        prev: Option<&Catalog>,
        replayed: Replayed,
    ) -> Record {
        match replayed {
            Replayed::Table {
                create_sql,
                before,
                after,
            } => {
                let catalog = match (prev, before) {
                    (Some(p), Some(b)) => carry_over(p, &b, after),
                    _ => after,
                };
                let create_sql = match ddl::classify(db, &create_sql) {
                    Ddl::Create { table: t, .. } => ddl::with_name(&create_sql, &t.span, table),
                    _ => create_sql,
                };
                record(
                    db,
                    table,
                    end,
                    Columns::Known(catalog),
                    create_sql,
                    note.to_string(),
                )
            }
            Replayed::Gone => {
                let why = format!("renamed or dropped by {note}");
                absent(db, table, end, why)
            }
            Replayed::Rejected(message) => {
                let why = format!("the control server could not replay {note}: {message}");
                unknown(db, table, end, why)
            }
        }
    }
}

/// `RENAME TABLE a TO b, …`, pair by pair: a mapped table renamed to a
/// mapped name keeps its columns; one renamed away is absent; one
/// renamed from a table reshard does not follow is unknown.
fn rename(
    pairs: &[(TableRef, TableRef)],
    todo: &[Key],
    end: &Position,
    note: &str,
    before: impl Fn(&Key) -> Option<Arc<Record>>,
) -> Vec<Record> {
    /// What a name holds after some of the pairs.
    enum Holds {
        Nothing,
        Unfollowed,
        Table(Arc<Record>),
    }
    let mut state: HashMap<Key, Holds> = HashMap::new();
    for (from, to) in pairs {
        let f = key(from);
        let moving = match state.remove(&f) {
            Some(h) => h,
            None => match before(&f) {
                Some(r) if matches!(r.columns, Columns::Known(_)) => Holds::Table(r),
                _ => Holds::Unfollowed,
            },
        };
        state.insert(f, Holds::Nothing);
        state.insert(key(to), moving);
    }
    let mut out = Vec::new();
    for (db, table) in todo {
        let r = match state.get(&(db.clone(), table.clone())) {
            None => continue,
            Some(Holds::Nothing) => {
                let why = format!("renamed away by {note}");
                absent(db, table, end, why)
            }
            Some(Holds::Table(r)) => Record {
                db: db.clone(),
                table: table.clone(),
                position: end.clone(),
                columns: r.columns.clone(),
                create_sql: r.create_sql.clone(),
                note: format!("renamed from {}.{} by {note}", r.db, r.table),
            },
            Some(Holds::Unfollowed) => {
                let why =
                    format!("renamed from a table whose columns reshard does not follow by {note}");
                unknown(db, table, end, why)
            }
        };
        out.push(r);
    }
    out
}

fn key(t: &TableRef) -> Key {
    (t.db.clone(), t.table.clone())
}

/// A record of columns reshard cannot know, and why.
fn unknown(db: &str, table: &str, at: &Position, why: String) -> Record {
    record(db, table, at, Columns::Unknown, String::new(), why)
}

/// A record of a table that does not exist, and why.
fn absent(db: &str, table: &str, at: &Position, why: String) -> Record {
    record(db, table, at, Columns::Absent, String::new(), why)
}

fn record(
    db: &str,
    table: &str,
    at: &Position,
    columns: Columns,
    create_sql: String,
    note: String,
) -> Record {
    Record {
        db: db.to_string(),
        table: table.to_string(),
        position: at.clone(),
        columns,
        create_sql,
        note,
    }
}

/// The mapped tables a statement may change.
fn touched(ddl: &Ddl, mapped: &[Key]) -> Vec<Key> {
    let named: Vec<Key> = match ddl {
        Ddl::Alter { table, renamed_to } => std::iter::once(table)
            .chain(renamed_to.as_ref())
            .map(key)
            .collect(),
        Ddl::Create { table, .. } | Ddl::Index { table } => vec![key(table)],
        Ddl::Drop { tables } => tables.iter().map(key).collect(),
        Ddl::Rename { pairs } => pairs.iter().flat_map(|(a, b)| [key(a), key(b)]).collect(),
        Ddl::DropDatabase { db } => mapped.iter().filter(|(d, _)| d == db).cloned().collect(),
        Ddl::Unknown { mentions } => mapped
            .iter()
            .filter(|(_, t)| mentions.iter().any(|m| &m.table == t))
            .cloned()
            .collect(),
        Ddl::None | Ddl::Truncate { .. } => Vec::new(),
    };
    let mut out: Vec<Key> = named.into_iter().filter(|k| mapped.contains(k)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The scratch table's columns are the control server's reading of them;
/// a column the DDL left as it was keeps the source's own reading (the
/// two servers may differ, e.g. on JSON).
fn carry_over(prev: &Catalog, before: &Catalog, (cols, pk): Catalog) -> Catalog {
    if prev.0.len() != before.0.len() {
        return (cols, pk);
    }
    let cols = cols
        .into_iter()
        .map(|c| {
            let same = before.0.iter().position(|b| {
                b.name == c.name
                    && b.column_type == c.column_type
                    && b.nullable == c.nullable
                    && b.collation == c.collation
            });
            match same {
                Some(i) => prev.0[i].clone(),
                None => c,
            }
        })
        .collect();
    (cols, pk)
}

/// A table's columns as the source shows them now, and its `SHOW CREATE
/// TABLE`.
async fn read_live(
    source: &mut Conn,
    db: &str,
    table: &str,
) -> Result<(Columns, String), SchemaError> {
    let catalog = match load_catalog(source, "source", db, table).await {
        Ok(c) => c,
        Err(SchemaError::Missing { .. }) => return Ok((Columns::Absent, String::new())),
        Err(e) => return Err(e),
    };
    let shown: Option<(String, String)> = source
        .query_first(format!(
            "SHOW CREATE TABLE {}.{}",
            quote_ident(db),
            quote_ident(table)
        ))
        .await
        .map_err(|e| DbError::query("source", format!("SHOW CREATE TABLE {db}.{table}"), e))?;
    Ok((
        Columns::Known(catalog),
        shown.map(|(_, sql)| sql).unwrap_or_default(),
    ))
}

/// The DDL statements touching `tables` from `from` to `to`, by table;
/// `None` when the source cannot show them (`from`'s file is purged, or
/// `from` is not an event start): streaming from there fails too.
async fn ddl_between(
    source: &mut Conn,
    from: &Position,
    to: &Position,
    tables: &[Key],
) -> Result<Option<HashMap<Key, Vec<Seen>>>, SchemaError> {
    let files = super::binlog_files(source).await?;
    if !files.contains(&from.file) {
        return Ok(None);
    }
    let (Ok(first), Ok(last)) = (from.seq(), to.seq()) else {
        return Ok(None);
    };
    let mut out: HashMap<Key, Vec<Seen>> = HashMap::new();
    for file in files
        .iter()
        .filter(|f| file_seq(f).is_ok_and(|s| s >= first && s <= last))
    {
        let mut pos = if *file == from.file { from.pos } else { 4 };
        loop {
            let sql = format!(
                "SHOW BINLOG EVENTS IN '{}' FROM {pos} LIMIT {PAGE}",
                file.replace('\\', "\\\\").replace('\'', "''")
            );
            let rows: Vec<mysql_async::Row> = match source.query(sql).await {
                Ok(rows) => rows,
                Err(e) => {
                    let context = format!("reading the DDL statements of {file} from {pos}");
                    let e = DbError::query("source", context, e);
                    if e.retry() == Retry::Transient {
                        return Err(e.into());
                    }
                    // e.g. not an event start: the stream says so itself
                    tracing::warn!(error = %e, "schema history: cannot scan the binlog; nothing recorded");
                    return Ok(None);
                }
            };
            let n = rows.len();
            for row in rows {
                let start = Position::new(file.clone(), row.get::<u64, _>(1).unwrap_or(0));
                if start >= *to {
                    return Ok(Some(out));
                }
                let end: u64 = row.get(4).unwrap_or(0);
                let ty: String = row.get(2).unwrap_or_default();
                if ty == "Query" {
                    let info: String = row.get(5).unwrap_or_default();
                    let (db, stmt) = ddl::split_use(&info);
                    let ddl = ddl::classify(&db, stmt);
                    let creates = matches!(ddl, Ddl::Create { new: true, .. });
                    for k in touched(&ddl, tables) {
                        out.entry(k).or_default().push(Seen {
                            start: start.clone(),
                            end: Position::new(file.clone(), end),
                            query: stmt.to_string(),
                            creates,
                        });
                    }
                }
                pos = pos.max(end);
            }
            if n < PAGE {
                break;
            }
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::schema::CatalogColumn;

    fn col(name: &str, column_type: &str, data_type: &str) -> CatalogColumn {
        CatalogColumn {
            name: name.into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            unsigned: false,
            charset_binary: false,
            nullable: true,
            decimals: 0,
            precision: 0,
            octets: None,
            labels: Vec::new(),
            collation: None,
        }
    }

    fn k(t: &str) -> Key {
        ("d".to_string(), t.to_string())
    }

    fn known(t: &str) -> Arc<Record> {
        let cat = (vec![col("id", "int(11)", "int")], vec!["id".to_string()]);
        let at = Position::new("b.000001", 4);
        Arc::new(record(
            "d",
            t,
            &at,
            Columns::Known(cat),
            "CREATE TABLE …".into(),
            String::new(),
        ))
    }

    #[test]
    fn statements_touch_only_mapped_tables() {
        let mapped = [k("t"), k("u")];
        let t = |q: &str| touched(&ddl::classify("d", q), &mapped);
        assert_eq!(t("ALTER TABLE t ADD c INT"), [k("t")]);
        assert_eq!(t("ALTER TABLE other.t ADD c INT"), Vec::<Key>::new());
        assert_eq!(t("RENAME TABLE t TO t_old, t_new TO t"), [k("t")]);
        assert_eq!(t("RENAME TABLE t TO x, u TO y, x TO t"), [k("t"), k("u")]);
        assert_eq!(t("DROP DATABASE d"), [k("t"), k("u")]);
        assert_eq!(t("ALTER SOMETHING u"), [k("u")]);
        assert_eq!(t("TRUNCATE TABLE t"), Vec::<Key>::new());
    }

    /// Applies `RENAME TABLE …` to `todo`, where the tables in `known` have
    /// known columns.
    fn renamed(q: &str, todo: &[Key], known_tables: &[&str]) -> Vec<Record> {
        let Ddl::Rename { pairs } = ddl::classify("d", q) else {
            panic!("{q} is not a rename")
        };
        let end = Position::new("b.000001", 100);
        let before = |key: &Key| {
            known_tables
                .contains(&key.1.as_str())
                .then(|| known(&key.1))
        };
        rename(&pairs, todo, &end, "the DDL", before)
    }

    /// gh-ost and pt-online-schema-change: the mapped table is replaced by
    /// one reshard does not follow.
    #[test]
    fn a_rename_from_an_unmapped_table_is_unknown() {
        let out = renamed("RENAME TABLE t TO _t_old, _t_gho TO t", &[k("t")], &["t"]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].columns, Columns::Unknown);
        assert_eq!(out[0].position, Position::new("b.000001", 100));
    }

    #[test]
    fn renames_between_mapped_tables_carry_their_columns() {
        let q = "RENAME TABLE t TO tmp, u TO t, tmp TO u";
        let out = renamed(q, &[k("t"), k("u")], &["t", "u"]);
        let notes: Vec<&str> = out.iter().map(|r| r.note.as_str()).collect();
        assert_eq!(
            notes,
            ["renamed from d.u by the DDL", "renamed from d.t by the DDL"]
        );
        assert!(out.iter().all(|r| matches!(r.columns, Columns::Known(_))));
        let away = renamed("RENAME TABLE t TO tmp", &[k("t")], &["t"]);
        assert_eq!(away[0].columns, Columns::Absent);
    }

    /// Columns the DDL left alone keep the source's reading (here the
    /// source says `json`, the control server `longtext`).
    #[test]
    fn untouched_columns_keep_the_source_reading() {
        let prev = (
            vec![col("id", "int(11)", "int"), col("doc", "json", "json")],
            vec!["id".to_string()],
        );
        let before = (
            vec![
                col("id", "int(11)", "int"),
                col("doc", "longtext", "longtext"),
            ],
            vec!["id".to_string()],
        );
        let after = (
            vec![
                col("id", "int(11)", "int"),
                col("c", "varchar(5)", "varchar"),
                col("doc", "longtext", "longtext"),
            ],
            vec!["id".to_string()],
        );
        let (cols, pk) = carry_over(&prev, &before, after);
        let types: Vec<&str> = cols.iter().map(|c| c.data_type.as_str()).collect();
        assert_eq!(types, ["int", "varchar", "json"]);
        assert_eq!(pk, ["id"]);
    }
}
