//! The chunked walk of one table, the per-chunk digests, the row-by-row
//! comparison of differing chunks and the re-check of candidates (see the
//! module docs of [`super`] for the argument).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row};
use mysql_common::value::Value;

use super::canon::{self, Digest, Kind};
use super::keys::{self, KeyCol};
use super::report::{Category, KeyEntry, TableReport};
use super::{Verifier, VerifyError};
use crate::db::{quote_ident, DbError};
use crate::inspect::sample::{normalize, select_list};
use crate::position::Position;
use crate::rules::convert::display_cells;
use crate::rules::file::Rule;
use crate::rules::RouteError;
use crate::source::schema::{from_catalog, load_catalog, SchemaError, SchemaOrigin};
use crate::source::{RowChange, TableSchema};
use crate::version::Version;
use crate::writer::op::{OpKind, TargetTable};

/// One shard of the rule being verified.
struct ShardPlan {
    /// Index into [`Verifier::targets`] (= the router's shard index).
    idx: usize,
    name: String,
    /// `` `db`.`table` ``
    table: String,
    /// The target columns the rule writes, in [`TargetTable::columns`] order.
    read: TableSchema,
    select: String,
    kinds: Vec<Kind>,
    keys: Vec<KeyCol>,
}

/// One table being verified.
struct Plan {
    name: String,
    schema: Arc<TableSchema>,
    table: String,
    select: String,
    keys: Vec<KeyCol>,
    /// Source column indices of the row identity (= target key order).
    key_src: Vec<usize>,
    /// Canonical kinds of the key columns (from the first shard's table).
    key_kinds: Vec<Kind>,
    target: Arc<TargetTable>,
    shards: Vec<ShardPlan>,
}

impl Plan {
    fn shard_pos(&self, idx: usize) -> Option<usize> {
        self.shards.iter().position(|s| s.idx == idx)
    }

    /// Canonical identity of a key (cells in key order).
    fn ckey(&self, key: &[Value]) -> Vec<u8> {
        canon::encode(&canon::row(key, &self.key_kinds))
    }

    fn src_key(&self, row: &[Value]) -> Vec<Value> {
        self.key_src
            .iter()
            .filter_map(|&i| row.get(i).cloned())
            .collect()
    }

    fn tgt_key(&self, row: &[Value]) -> Vec<Value> {
        self.target
            .key
            .iter()
            .filter_map(|&i| row.get(i).cloned())
            .collect()
    }
}

/// Where the rule puts a source row.
enum Expect {
    At {
        shard: usize,
        values: Vec<Value>,
    },
    /// The rule's `where` excludes it.
    Filtered,
    Unroutable(String),
}

/// Candidate keys waiting for their re-check.
#[derive(Default)]
struct Pending {
    keys: BTreeMap<Vec<u8>, Vec<Value>>,
    /// When the newest candidate was read.
    since: Option<Instant>,
}

impl Pending {
    fn add(&mut self, ckey: Vec<u8>, key: Vec<Value>, read_at: Instant) {
        self.keys.entry(ckey).or_insert(key);
        self.since = Some(self.since.map_or(read_at, |s| s.max(read_at)));
    }
}

impl Verifier {
    /// Compares one mapped source table with its targets.
    pub async fn verify_table(&mut self, rule: &Rule) -> Result<TableReport, VerifyError> {
        let plan = self.plan(rule).await?;
        let mut report = TableReport {
            target: plan.target.name.clone(),
            ..TableReport::default()
        };
        for s in &plan.shards {
            report.per_shard.entry(s.name.clone()).or_default();
        }
        tracing::info!(
            table = %plan.name,
            target = %plan.target.name,
            shards = plan.shards.len(),
            "verifying"
        );
        let chunk = self.options.chunk_rows.max(1);
        let mut pending = Pending::default();
        let mut lo: Option<Vec<Value>> = None;
        let mut last_progress = Instant::now();
        loop {
            if let (false, Some(control)) = (self.lookups.is_empty(), self.control.as_mut()) {
                self.lookups.refresh(control).await?;
            }
            let read_at = Instant::now();
            let rows = read_range(
                &mut self.source,
                "source",
                &plan.schema,
                &plan.select,
                &plan.table,
                &plan.keys,
                lo.as_deref(),
                None,
                chunk,
            )
            .await?;
            let hi: Option<Vec<Value>> = if rows.len() < chunk {
                None
            } else {
                rows.last().map(|r| plan.src_key(r))
            };
            report.source_rows += rows.len() as u64;
            report.chunks += 1;

            // what the rule expects, per shard: canonical key → row hash
            let mut expected: Vec<HashMap<Vec<u8>, u128>> = vec![HashMap::new(); plan.shards.len()];
            let mut src_keys: HashMap<Vec<u8>, Vec<Value>> = HashMap::with_capacity(rows.len());
            for row in rows {
                let key = plan.src_key(&row);
                let ck = plan.ckey(&key);
                match self.expect(&plan, row)? {
                    Expect::At { shard, values } => {
                        if let Some(j) = plan.shard_pos(shard) {
                            let h = canon::hash(&canon::row(&values, &plan.shards[j].kinds));
                            expected[j].insert(ck.clone(), h);
                        }
                    }
                    Expect::Filtered => {}
                    Expect::Unroutable(_) => pending.add(ck.clone(), key.clone(), read_at),
                }
                src_keys.insert(ck, key);
            }

            let mut differs = false;
            for (j, want_rows) in expected.iter().enumerate() {
                let sp = &plan.shards[j];
                let counts = report.per_shard.entry(sp.name.clone()).or_default();
                counts.expected += want_rows.len() as u64;
                let mut want = Digest::default();
                for h in want_rows.values() {
                    want.add(*h);
                }
                let conn = &mut self.targets[sp.idx].rows;
                let page = read_range(
                    conn,
                    &sp.name,
                    &sp.read,
                    &sp.select,
                    &sp.table,
                    &sp.keys,
                    lo.as_deref(),
                    hi.as_deref(),
                    chunk + 1,
                )
                .await?;
                counts.found += page.len() as u64;
                let complete = page.len() <= chunk;
                if complete {
                    let mut got = Digest::default();
                    for r in &page {
                        got.add(canon::hash(&canon::row(r, &sp.kinds)));
                    }
                    if got == want {
                        continue;
                    }
                }
                // row by row, streaming the rest of the range page by page
                differs = true;
                let mut seen: HashSet<Vec<u8>> = HashSet::new();
                let mut page = page;
                let mut page_read_at = read_at;
                loop {
                    let more = page.len() > chunk;
                    let cursor = page.last().map(|r| plan.tgt_key(r));
                    for r in &page {
                        let key = plan.tgt_key(r);
                        let ck = plan.ckey(&key);
                        let h = canon::hash(&canon::row(r, &sp.kinds));
                        match want_rows.get(&ck) {
                            Some(want) => {
                                seen.insert(ck.clone());
                                if *want != h {
                                    pending.add(ck, key, page_read_at);
                                }
                            }
                            None => pending.add(ck, key, page_read_at),
                        }
                    }
                    if pending.keys.len() >= self.options.pending_max {
                        self.flush(&plan, &mut pending, &mut report).await?;
                    }
                    if !more {
                        break;
                    }
                    page_read_at = Instant::now();
                    let sp = &plan.shards[j];
                    page = read_range(
                        &mut self.targets[sp.idx].rows,
                        &sp.name,
                        &sp.read,
                        &sp.select,
                        &sp.table,
                        &sp.keys,
                        cursor.as_deref(),
                        hi.as_deref(),
                        chunk + 1,
                    )
                    .await?;
                    report.per_shard.entry(sp.name.clone()).or_default().found += page.len() as u64;
                }
                for ck in want_rows.keys() {
                    if !seen.contains(ck) {
                        if let Some(key) = src_keys.get(ck) {
                            pending.add(ck.clone(), key.clone(), read_at);
                        }
                    }
                }
            }
            if differs {
                report.chunks_differing += 1;
            }
            if pending.keys.len() >= self.options.pending_max {
                self.flush(&plan, &mut pending, &mut report).await?;
            }
            if last_progress.elapsed() >= self.options.progress_interval {
                last_progress = Instant::now();
                tracing::info!(
                    table = %plan.name,
                    rows = report.source_rows,
                    chunks = report.chunks,
                    differing = report.chunks_differing,
                    "verify progress"
                );
            }
            match hi {
                Some(h) => lo = Some(h),
                None => break,
            }
        }
        self.flush(&plan, &mut pending, &mut report).await?;
        tracing::info!(
            table = %plan.name,
            rows = report.source_rows,
            differences = report.differences(),
            "verified"
        );
        Ok(report)
    }

    /// Resolves schemas, key columns and target tables of a rule.
    async fn plan(&mut self, rule: &Rule) -> Result<Plan, VerifyError> {
        let name = rule.source_name();
        let (cols, pk) = load_catalog(
            &mut self.source_catalog,
            "source",
            &rule.source_db,
            &rule.source_table,
        )
        .await?;
        let schema = Arc::new(from_catalog(
            &rule.source_db,
            &rule.source_table,
            &cols,
            &pk,
        ));
        let bind = |e: RouteError| VerifyError::Rule {
            table: name.clone(),
            message: e.to_string(),
        };
        let target = self.router.target_table(&schema).map_err(bind)?;
        let key_src: Vec<usize> = match &rule.key {
            Some(k) => k
                .iter()
                .map(|c| {
                    schema.column_index(c).ok_or_else(|| VerifyError::Rule {
                        table: name.clone(),
                        message: format!("key column {c:?} is not in {name}"),
                    })
                })
                .collect::<Result<_, _>>()?,
            None => schema.pk.clone(),
        };
        if key_src.is_empty() || key_src.len() != target.key.len() {
            return Err(VerifyError::Rule {
                table: name.clone(),
                message: format!("{name} has no row identity (primary key or `key`)"),
            });
        }
        let key_names: Vec<String> = key_src
            .iter()
            .map(|&i| schema.columns[i].name.clone())
            .collect();
        let src_keys = keys::key_cols(
            &mut self.source_catalog,
            "source",
            &rule.source_db,
            &rule.source_table,
            &key_names,
        )
        .await?;

        // the rule's shards, each once, in rule order
        let mut shards = Vec::new();
        for shard in &rule.shards {
            let Some(idx) = self.targets.iter().position(|t| &t.name == shard) else {
                return Err(VerifyError::UnknownShard {
                    table: name.clone(),
                    shard: shard.clone(),
                });
            };
            if shards.iter().any(|s: &ShardPlan| s.idx == idx) {
                continue;
            }
            let t = &mut self.targets[idx];
            let (tcols, tpk) =
                match load_catalog(&mut t.catalog, &t.name, &t.db, &target.name).await {
                    Ok(x) => x,
                    Err(SchemaError::Missing { .. }) => {
                        return Err(VerifyError::MissingTarget {
                            shard: t.name.clone(),
                            db: t.db.clone(),
                            table: target.name.clone(),
                        })
                    }
                    Err(e) => return Err(e.into()),
                };
            let full = from_catalog(&t.db, &target.name, &tcols, &tpk);
            let mut columns = Vec::with_capacity(target.columns.len());
            for c in &target.columns {
                let Some(i) = full.column_index(c) else {
                    return Err(VerifyError::MissingColumn {
                        shard: t.name.clone(),
                        db: t.db.clone(),
                        table: target.name.clone(),
                        column: c.clone(),
                        source_table: name.clone(),
                    });
                };
                columns.push(full.columns[i].clone());
            }
            let read = TableSchema {
                db: t.db.clone(),
                table: target.name.clone(),
                columns,
                pk: target.key.clone(),
                origin: SchemaOrigin::InformationSchema,
            };
            let tkey_names: Vec<String> = target
                .key
                .iter()
                .filter_map(|&i| read.columns.get(i).map(|c| c.name.clone()))
                .collect();
            let tkeys =
                keys::key_cols(&mut t.catalog, &t.name, &t.db, &target.name, &tkey_names).await?;
            shards.push(ShardPlan {
                idx,
                name: t.name.clone(),
                table: format!("{}.{}", quote_ident(&t.db), quote_ident(&target.name)),
                select: select_list(&read),
                kinds: read.columns.iter().map(Kind::of).collect(),
                keys: tkeys,
                read,
            });
        }
        let key_kinds = match shards.first() {
            Some(s) => target
                .key
                .iter()
                .map(|&i| s.kinds.get(i).copied().unwrap_or(Kind::Other))
                .collect(),
            None => vec![Kind::Other; key_src.len()],
        };
        Ok(Plan {
            table: format!(
                "{}.{}",
                quote_ident(&rule.source_db),
                quote_ident(&rule.source_table)
            ),
            select: select_list(&schema),
            keys: src_keys,
            key_src,
            key_kinds,
            target,
            shards,
            schema,
            name,
        })
    }

    /// Routes a source row as the pipeline would insert it.
    fn expect(&mut self, plan: &Plan, row: Vec<Value>) -> Result<Expect, VerifyError> {
        let change = RowChange {
            table: plan.schema.clone(),
            before: None,
            after: Some(row),
            version: Version::ZERO,
            position: Position::new("verify.000001", 4),
        };
        match self.router.route(&change, &self.lookups) {
            Ok(ops) => Ok(ops
                .into_iter()
                .find_map(|op| match op.kind {
                    OpKind::Upsert(values) => Some(Expect::At {
                        shard: op.shard,
                        values,
                    }),
                    OpKind::Delete => None,
                })
                .unwrap_or(Expect::Filtered)),
            Err(RouteError::Derive {
                stage, expr, cause, ..
            }) => Ok(Expect::Unroutable(if expr.is_empty() {
                format!("{stage}: {cause}")
            } else {
                format!("{stage} `{expr}`: {cause}")
            })),
            Err(e) => Err(VerifyError::Rule {
                table: plan.name.clone(),
                message: e.to_string(),
            }),
        }
    }

    /// Re-checks the pending candidates and records those that still
    /// differ after the last re-check.
    async fn flush(
        &mut self,
        plan: &Plan,
        pending: &mut Pending,
        report: &mut TableReport,
    ) -> Result<(), VerifyError> {
        let mut keys: Vec<(Vec<u8>, Vec<Value>)> =
            std::mem::take(&mut pending.keys).into_iter().collect();
        let mut last = pending.since.take().unwrap_or_else(Instant::now);
        if keys.is_empty() {
            return Ok(());
        }
        report.rechecked += keys.len() as u64;
        if self.options.rechecks > 0 {
            tracing::info!(
                table = %plan.name,
                keys = keys.len(),
                "{} key(s) differ at first sight; re-checking up to {} time(s), {:?} apart",
                keys.len(),
                self.options.rechecks,
                self.options.recheck_delay
            );
        }
        let mut verdicts: HashMap<Vec<u8>, Vec<(Category, KeyEntry)>> = HashMap::new();
        for attempt in 0..self.options.rechecks.max(1) {
            if self.options.rechecks > 0 {
                let due = last + self.options.recheck_delay;
                tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            }
            verdicts = self.classify(plan, &keys).await?;
            last = Instant::now();
            keys.retain(|(ck, _)| verdicts.get(ck).is_some_and(|v| !v.is_empty()));
            tracing::debug!(table = %plan.name, attempt, still = keys.len(), "re-checked");
            if keys.is_empty() {
                break;
            }
        }
        for (ck, _) in keys {
            for (c, e) in verdicts.remove(&ck).unwrap_or_default() {
                report.record(c, e, self.options.key_cap);
            }
        }
        Ok(())
    }

    /// Reads `keys` on the source and on every shard of the rule, and says
    /// what is wrong with each (nothing: an empty list).
    async fn classify(
        &mut self,
        plan: &Plan,
        keys: &[(Vec<u8>, Vec<Value>)],
    ) -> Result<HashMap<Vec<u8>, Vec<(Category, KeyEntry)>>, VerifyError> {
        let mut out = HashMap::with_capacity(keys.len());
        for batch in keys.chunks(self.options.lookup_batch.max(1)) {
            let cells: Vec<&[Value]> = batch.iter().map(|(_, k)| k.as_slice()).collect();
            let rows = read_keys(
                &mut self.source,
                "source",
                &plan.schema,
                &plan.select,
                &plan.table,
                &plan.keys,
                &cells,
            )
            .await?;
            let mut source: HashMap<Vec<u8>, Expect> = HashMap::new();
            for row in rows {
                let ck = plan.ckey(&plan.src_key(&row));
                let e = self.expect(plan, row)?;
                source.insert(ck, e);
            }
            let mut held: Vec<HashMap<Vec<u8>, canon::Texts>> = Vec::new();
            for sp in &plan.shards {
                let rows = read_keys(
                    &mut self.targets[sp.idx].rows,
                    &sp.name,
                    &sp.read,
                    &sp.select,
                    &sp.table,
                    &sp.keys,
                    &cells,
                )
                .await?;
                held.push(
                    rows.into_iter()
                        .map(|r| (plan.ckey(&plan.tgt_key(&r)), canon::row(&r, &sp.kinds)))
                        .collect(),
                );
            }
            for (ck, key) in batch {
                let entry = |shard: Option<&str>| KeyEntry {
                    key: display_cells(key),
                    shard: shard.map(str::to_string),
                    expected_shard: None,
                    columns: Vec::new(),
                    error: None,
                };
                let mut found = Vec::new();
                match source.get(ck) {
                    Some(Expect::At { shard, values }) => {
                        let Some(s) = plan.shard_pos(*shard) else {
                            continue;
                        };
                        let home = &plan.shards[s];
                        for (j, sp) in plan.shards.iter().enumerate() {
                            if j != s && held[j].contains_key(ck) {
                                found.push((
                                    Category::Misplaced,
                                    KeyEntry {
                                        expected_shard: Some(home.name.clone()),
                                        ..entry(Some(&sp.name))
                                    },
                                ));
                            }
                        }
                        match held[s].get(ck) {
                            Some(got) => {
                                let want = canon::row(values, &home.kinds);
                                let columns: Vec<String> = want
                                    .iter()
                                    .zip(got.iter())
                                    .zip(plan.target.columns.iter())
                                    .filter(|((w, g), _)| w != g)
                                    .map(|(_, c)| c.clone())
                                    .collect();
                                if !columns.is_empty() {
                                    found.push((
                                        Category::Different,
                                        KeyEntry {
                                            columns,
                                            ..entry(Some(&home.name))
                                        },
                                    ));
                                }
                            }
                            None if found.is_empty() => {
                                found.push((Category::Missing, entry(Some(&home.name))));
                            }
                            None => {}
                        }
                    }
                    Some(Expect::Filtered) | None => {
                        for (j, sp) in plan.shards.iter().enumerate() {
                            if held[j].contains_key(ck) {
                                found.push((Category::Extra, entry(Some(&sp.name))));
                            }
                        }
                    }
                    Some(Expect::Unroutable(why)) => {
                        found.push((
                            Category::Unroutable,
                            KeyEntry {
                                error: Some(why.clone()),
                                ..entry(None)
                            },
                        ));
                    }
                }
                out.insert(ck.clone(), found);
            }
        }
        Ok(out)
    }
}

/// One keyset page: rows with keys in `(lo, hi]` in key order, at most
/// `limit`, normalized like decoded binlog rows.
#[allow(clippy::too_many_arguments)]
async fn read_range(
    conn: &mut Conn,
    server: &str,
    schema: &TableSchema,
    select: &str,
    table: &str,
    keys: &[KeyCol],
    lo: Option<&[Value]>,
    hi: Option<&[Value]>,
    limit: usize,
) -> Result<Vec<Vec<Value>>, DbError> {
    let (cond, params) = keys::range(keys, lo, hi);
    let sql = format!(
        "SELECT {select} FROM {table} {cond} ORDER BY {} LIMIT {limit}",
        keys::order_by(keys)
    );
    let rows: Vec<Row> = conn
        .exec(sql, Params::from(params))
        .await
        .map_err(|e| DbError::query(server, format!("reading {table}"), e))?;
    Ok(rows.into_iter().map(|r| normalize(r, schema)).collect())
}

/// The rows of `table` with these keys.
async fn read_keys(
    conn: &mut Conn,
    server: &str,
    schema: &TableSchema,
    select: &str,
    table: &str,
    keys: &[KeyCol],
    wanted: &[&[Value]],
) -> Result<Vec<Vec<Value>>, DbError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let one = format!("({})", keys::equals(keys));
    let cond = vec![one; wanted.len()].join(" OR ");
    let params: Vec<Value> = wanted.iter().flat_map(|k| k.iter().cloned()).collect();
    let sql = format!("SELECT {select} FROM {table} WHERE {cond}");
    let rows: Vec<Row> = conn
        .exec(sql, Params::from(params))
        .await
        .map_err(|e| DbError::query(server, format!("re-reading keys of {table}"), e))?;
    Ok(rows.into_iter().map(|r| normalize(r, schema)).collect())
}
