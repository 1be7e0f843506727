//! The chunked walk of one table, the per-chunk digests, the row-by-row
//! comparison of differing chunks and the re-check of candidates (see the
//! module docs of [`super`] for the argument).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use mysql_common::value::Value;

use super::canon::{self, Digest, Kind};
use super::report::{Category, KeyEntry, TableReport};
use super::{Verifier, VerifyError};
use crate::rules::convert::display_cells;
use crate::rules::file::Rule;
use crate::rules::{RouteError, Routed};
use crate::source::rows::TableReader;
use crate::source::schema::{from_catalog, load_catalog, SchemaError, SchemaOrigin};
use crate::source::{RowChange, TableSchema};
use crate::version::Version;
use crate::writer::op::{OpKind, TargetTable};

/// One shard of the rule being verified.
struct ShardPlan {
    /// Index into [`Verifier::targets`] (= the router's shard index).
    idx: usize,
    name: String,
    /// The target columns the rule writes, in [`TargetTable::columns`]
    /// order, keyed by the target key.
    reader: TableReader,
    kinds: Vec<Kind>,
}

/// One table being verified.
struct Plan {
    name: String,
    /// The source table, keyed by the rule's row identity (= target key
    /// order).
    source: TableReader,
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

/// One chunk of the source: the key range `(lo, hi]` and what the rule
/// expects of it.
struct Chunk {
    lo: Option<Vec<Value>>,
    /// `None`: the last chunk, open above.
    hi: Option<Vec<Value>>,
    read_at: Instant,
    /// Per shard of the plan: canonical key → hash of the expected row.
    expected: Vec<HashMap<Vec<u8>, u128>>,
    /// Canonical key → key of every source row of the chunk.
    src_keys: HashMap<Vec<u8>, Vec<Value>>,
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
        let mut pending = Pending::default();
        let mut lo: Option<Vec<Value>> = None;
        let mut last_progress = Instant::now();
        loop {
            let chunk = self
                .read_chunk(&plan, lo, &mut pending, &mut report)
                .await?;
            let mut differs = false;
            for j in 0..plan.shards.len() {
                differs |= self
                    .compare_shard(&plan, &chunk, j, &mut pending, &mut report)
                    .await?;
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
            match chunk.hi {
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

    /// Reads the source chunk after `lo` and routes its rows: what each
    /// shard should hold. Unroutable rows become candidates.
    async fn read_chunk(
        &mut self,
        plan: &Plan,
        lo: Option<Vec<Value>>,
        pending: &mut Pending,
        report: &mut TableReport,
    ) -> Result<Chunk, VerifyError> {
        if let (false, Some(control)) = (self.lookups.is_empty(), self.control.as_mut()) {
            self.lookups.refresh(control).await?;
        }
        let limit = self.options.chunk_rows.max(1);
        let read_at = Instant::now();
        let rows = plan
            .source
            .page(&mut self.source, lo.as_deref(), None, limit)
            .await?;
        let hi: Option<Vec<Value>> = if rows.len() < limit {
            None
        } else {
            rows.last().map(|r| plan.source.key_of(r))
        };
        report.source_rows += rows.len() as u64;
        report.chunks += 1;

        let mut expected: Vec<HashMap<Vec<u8>, u128>> = vec![HashMap::new(); plan.shards.len()];
        let mut src_keys: HashMap<Vec<u8>, Vec<Value>> = HashMap::with_capacity(rows.len());
        for row in rows {
            let key = plan.source.key_of(&row);
            let ck = plan.ckey(&key);
            match self.expect(plan, row)? {
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
        Ok(Chunk {
            lo,
            hi,
            read_at,
            expected,
            src_keys,
        })
    }

    /// Compares the chunk's range on shard `j` of the plan: by digest, and
    /// row by row when the digests differ (true then). Differing keys
    /// become candidates.
    async fn compare_shard(
        &mut self,
        plan: &Plan,
        chunk: &Chunk,
        j: usize,
        pending: &mut Pending,
        report: &mut TableReport,
    ) -> Result<bool, VerifyError> {
        let limit = self.options.chunk_rows.max(1);
        let sp = &plan.shards[j];
        let want_rows = &chunk.expected[j];
        let counts = report.per_shard.entry(sp.name.clone()).or_default();
        counts.expected += want_rows.len() as u64;
        let mut want = Digest::default();
        for h in want_rows.values() {
            want.add(*h);
        }
        let page = sp
            .reader
            .page(
                &mut self.targets[sp.idx].rows,
                chunk.lo.as_deref(),
                chunk.hi.as_deref(),
                limit + 1,
            )
            .await?;
        counts.found += page.len() as u64;
        if page.len() <= limit {
            let mut got = Digest::default();
            for r in &page {
                got.add(canon::hash(&canon::row(r, &sp.kinds)));
            }
            if got == want {
                return Ok(false);
            }
        }
        let seen = self
            .compare_rows(plan, chunk, j, page, pending, report)
            .await?;
        for ck in want_rows.keys() {
            if !seen.contains(ck) {
                if let Some(key) = chunk.src_keys.get(ck) {
                    pending.add(ck.clone(), key.clone(), chunk.read_at);
                }
            }
        }
        Ok(true)
    }

    /// Compares shard `j`'s rows of the chunk's range with the expected
    /// ones row by row, starting with `page` and streaming the rest of the
    /// range page by page. Returns the expected keys found.
    async fn compare_rows(
        &mut self,
        plan: &Plan,
        chunk: &Chunk,
        j: usize,
        mut page: Vec<Vec<Value>>,
        pending: &mut Pending,
        report: &mut TableReport,
    ) -> Result<HashSet<Vec<u8>>, VerifyError> {
        let limit = self.options.chunk_rows.max(1);
        let sp = &plan.shards[j];
        let want_rows = &chunk.expected[j];
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut page_read_at = chunk.read_at;
        loop {
            let more = page.len() > limit;
            let cursor = page.last().map(|r| sp.reader.key_of(r));
            for r in &page {
                let key = sp.reader.key_of(r);
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
                self.flush(plan, pending, report).await?;
            }
            if !more {
                return Ok(seen);
            }
            page_read_at = Instant::now();
            page = sp
                .reader
                .page(
                    &mut self.targets[sp.idx].rows,
                    cursor.as_deref(),
                    chunk.hi.as_deref(),
                    limit + 1,
                )
                .await?;
            report.per_shard.entry(sp.name.clone()).or_default().found += page.len() as u64;
        }
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
        let bind = |source: RouteError| VerifyError::Rule {
            table: name.clone(),
            source: Box::new(source),
        };
        let target = self.router.target_table(&schema).map_err(bind)?;
        let key = self.router.row_identity(&schema).map_err(bind)?;
        let source = TableReader::open(&mut self.source_catalog, "source", schema, key).await?;

        // the rule's shards, each once, in rule order
        let mut shards: Vec<ShardPlan> = Vec::new();
        for shard in &rule.shards {
            let Some(idx) = self.targets.iter().position(|t| &t.name == shard) else {
                return Err(VerifyError::UnknownShard {
                    table: name.clone(),
                    shard: shard.clone(),
                });
            };
            if !shards.iter().any(|s| s.idx == idx) {
                shards.push(self.shard_plan(idx, &name, &target).await?);
            }
        }
        let key_kinds = match shards.first() {
            Some(s) => target
                .key
                .iter()
                .map(|&i| s.kinds.get(i).copied().unwrap_or(Kind::Other))
                .collect(),
            None => vec![Kind::Other; target.key.len()],
        };
        Ok(Plan {
            name,
            source,
            key_kinds,
            target,
            shards,
        })
    }

    /// Reads the target table of target `idx`: the columns the rule for
    /// `source_table` writes, which must all be there.
    async fn shard_plan(
        &mut self,
        idx: usize,
        source_table: &str,
        target: &TargetTable,
    ) -> Result<ShardPlan, VerifyError> {
        let t = &mut self.targets[idx];
        let (tcols, tpk) = match load_catalog(&mut t.catalog, &t.name, &t.db, &target.name).await {
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
                    source_table: source_table.to_string(),
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
        let kinds = read.columns.iter().map(Kind::of).collect();
        let reader =
            TableReader::open(&mut t.catalog, &t.name, Arc::new(read), target.key.clone()).await?;
        Ok(ShardPlan {
            idx,
            name: t.name.clone(),
            reader,
            kinds,
        })
    }

    /// Routes a source row as the pipeline would insert it.
    fn expect(&mut self, plan: &Plan, row: Vec<Value>) -> Result<Expect, VerifyError> {
        let change = RowChange::selected(
            plan.source.schema().clone(),
            row,
            Version::ZERO,
            std::sync::Arc::from("verify.000001"),
        );
        let routed = self
            .router
            .route_row(&change, &self.lookups)
            .map_err(|source| VerifyError::Rule {
                table: plan.name.clone(),
                source: Box::new(source),
            })?;
        Ok(match routed {
            Routed::Ops(ops) => ops
                .into_iter()
                .find_map(|op| match op.kind {
                    OpKind::Upsert(values) => Some(Expect::At {
                        shard: op.shard,
                        values,
                    }),
                    OpKind::Delete(_) => None,
                })
                .unwrap_or(Expect::Filtered),
            Routed::Unroutable(RouteError::Derive {
                stage, expr, cause, ..
            }) => Expect::Unroutable(if expr.is_empty() {
                format!("{stage}: {cause}")
            } else {
                format!("{stage} `{expr}`: {cause}")
            }),
            Routed::Unroutable(e) => Expect::Unroutable(e.to_string()),
        })
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
            let rows = plan.source.with_keys(&mut self.source, &cells).await?;
            let mut source: HashMap<Vec<u8>, Expect> = HashMap::new();
            for row in rows {
                let ck = plan.ckey(&plan.source.key_of(&row));
                let e = self.expect(plan, row)?;
                source.insert(ck, e);
            }
            let mut held: Vec<HashMap<Vec<u8>, canon::Texts>> = Vec::new();
            for sp in &plan.shards {
                let rows = sp
                    .reader
                    .with_keys(&mut self.targets[sp.idx].rows, &cells)
                    .await?;
                held.push(
                    rows.into_iter()
                        .map(|r| (plan.ckey(&sp.reader.key_of(&r)), canon::row(&r, &sp.kinds)))
                        .collect(),
                );
            }
            for (ck, key) in batch {
                if let Some(found) = verdict(plan, ck, key, source.get(ck), &held) {
                    out.insert(ck.clone(), found);
                }
            }
        }
        Ok(out)
    }
}

/// What is wrong with one key, given what the source row expects
/// (`None`: no source row) and what each shard holds; `None` when the
/// routed shard is not one of the plan's.
fn verdict(
    plan: &Plan,
    ck: &[u8],
    key: &[Value],
    source: Option<&Expect>,
    held: &[HashMap<Vec<u8>, canon::Texts>],
) -> Option<Vec<(Category, KeyEntry)>> {
    let entry = |shard: Option<&str>| KeyEntry {
        key: display_cells(key),
        shard: shard.map(str::to_string),
        expected_shard: None,
        columns: Vec::new(),
        error: None,
    };
    let mut found = Vec::new();
    match source {
        Some(Expect::At { shard, values }) => {
            let s = plan.shard_pos(*shard)?;
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
    Some(found)
}
