//! `reshard dry-run`: validate config and rules against the real source and
//! target schemas, route a sample of source rows (and optionally a binlog
//! range), and report per-shard distribution, skew and every failure.
//! Writes nothing anywhere. Exit 0 clean, 1 findings, 2 cannot run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use mysql_common::value::Value as Cell;

use super::servers::Servers;
use crate::config::{db_name, Config};
use crate::db::{self, Session};
use crate::inspect::report::DeriveFailure;
use crate::inspect::sample::sample;
use crate::inspect::validate::{check_target, fits, servers_of, TargetCatalog};
use crate::inspect::{Finding, Report, TableReport};
use crate::position::Position;
use crate::rules::lookup::Lookups;
use crate::rules::{load_dir, RouteError, Router, Rule};
use crate::source::collation::{CollationError, CollationLoader};
use crate::source::schema::{from_catalog, load_catalog, CatalogColumn, SchemaError};
use crate::source::{self, RowChange, SourceItem, TableSchema, Tailer, TailerOptions};
use crate::version::Version;
use crate::writer::{OpKind, TargetTable, WriteOp};

/// Failures listed per table (all are counted).
const FAILURE_CAP: usize = 100;

/// Options of the command.
pub struct DryRunArgs {
    pub sample: u64,
    pub from: Option<Position>,
    pub to: Option<Position>,
    pub json: bool,
}

pub async fn dry_run(path: &Path, args: DryRunArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(path)?;
    let rules = load_dir(&cfg.pipeline.rules)?;
    let mut servers = Servers::connect_with(&cfg, false).await?;
    let sampler = db::connect(&cfg.source, Session::Write, cfg.pipeline.connect_timeout)
        .await
        .context("source server")?;
    let shard_names: Vec<String> = cfg.targets.keys().cloned().collect();
    let mut report = Report {
        config: cfg.path.display().to_string(),
        ..Report::default()
    };

    // rules whose shards are all configured go on to the schema checks
    let valid = configured_rules(&cfg, rules, &mut report.findings);
    let router = Router::new(valid.clone(), &shard_names)?;
    let lookups = load_lookups(&cfg, &mut servers.control, &valid, &mut report.findings).await;
    let mut inspection = Inspection {
        cfg: &cfg,
        server_of: servers_of(&cfg.targets),
        shard_names,
        servers,
        sampler,
        router,
        lookups,
        collations: CollationLoader::default(),
        report,
    };
    for rule in &valid {
        inspection.table(rule, args.sample).await?;
    }
    if let Some(from) = &args.from {
        inspection.route_binlog(from, args.to.as_ref()).await?;
    }

    let mut report = inspection.report;
    report.ok = report.findings.is_empty();
    super::emit_report(&report, report.ok, args.json, || report.render())
}

/// The rules whose shards are all in `[targets]`; an `unknown_shard`
/// finding for each other one.
fn configured_rules(cfg: &Config, rules: Vec<Rule>, findings: &mut Vec<Finding>) -> Vec<Rule> {
    let shard_names: Vec<String> = cfg.targets.keys().cloned().collect();
    let mut valid = Vec::new();
    for rule in rules {
        let unknown: Vec<&String> = rule
            .shards
            .iter()
            .filter(|s| !cfg.targets.contains_key(*s))
            .collect();
        if unknown.is_empty() {
            valid.push(rule);
        } else {
            findings.push(Finding {
                kind: "unknown_shard",
                table: rule.source_name(),
                shard: None,
                message: format!(
                    "{}: shards names {:?}, not in [targets] (configured: {})",
                    rule.file.display(),
                    unknown,
                    shard_names.join(", ")
                ),
                fix: Some(format!(
                    "add them to [targets] in {} or fix `shards`",
                    cfg.path.display()
                )),
            });
        }
    }
    valid
}

/// The lookup tables the rules use, read from the control database; a
/// `lookup_table` finding when they cannot be.
async fn load_lookups(
    cfg: &Config,
    control: &mut Conn,
    rules: &[Rule],
    findings: &mut Vec<Finding>,
) -> Lookups {
    let mut lookups = Lookups::new(rules, cfg.pipeline.lookup_ttl);
    if lookups.is_empty() {
        return lookups;
    }
    let db = db_name(&cfg.control.url).unwrap_or_default();
    let loaded = match control
        .query_drop(format!("USE {}", crate::db::quote_ident(&db)))
        .await
    {
        Ok(()) => lookups.refresh(control).await.map_err(|e| e.to_string()),
        Err(e) => Err(format!("control database {db}: {e}")),
    };
    if let Err(e) = loaded {
        let tables: Vec<&String> = lookups.wanted().collect();
        findings.push(Finding {
            kind: "lookup_table",
            table: format!("{tables:?}"),
            shard: None,
            message: format!("cannot load the lookup tables the rules use: {e}"),
            fix: Some(
                "create them in the control database with columns k (key) and v (value)".into(),
            ),
        });
    }
    lookups
}

/// A derivation error as the failure the report lists (the key with the
/// binlog position when `at_position`); None for any other routing error.
fn derive_failure(e: &RouteError, at_position: bool) -> Option<DeriveFailure> {
    match e {
        RouteError::Derive {
            key,
            stage,
            expr,
            cause,
            position,
            ..
        } => Some(DeriveFailure {
            key: if at_position {
                format!("{key} at {position}")
            } else {
                key.clone()
            },
            expression: if expr.is_empty() {
                stage.to_string()
            } else {
                expr.clone()
            },
            error: cause.to_string(),
        }),
        _ => None,
    }
}

/// Records in `misfits` (column → why) the first value of each derived
/// column that does not fit its target column.
fn note_misfits(
    rule: &Rule,
    target: &TargetTable,
    catalog: &TargetCatalog,
    values: &[Cell],
    misfits: &mut BTreeMap<String, String>,
) {
    for (col, v) in target.columns.iter().zip(values) {
        if !rule.derive.iter().any(|(d, _)| d == col) || misfits.contains_key(col) {
            continue;
        }
        if let Some(why) = catalog.column(col).and_then(|c| fits(v, c)) {
            misfits.insert(col.clone(), why);
        }
    }
}

/// One dry run: the connections, the router and the report it fills.
struct Inspection<'a> {
    cfg: &'a Config,
    /// Shard index → name.
    shard_names: Vec<String>,
    /// Shard name → `host:port`.
    server_of: BTreeMap<String, String>,
    servers: Servers,
    /// The source connection rows are sampled on.
    sampler: Conn,
    router: Router,
    lookups: Lookups,
    /// Learns the key collations, as `run` does at start-up.
    collations: CollationLoader,
    report: Report,
}

impl Inspection<'_> {
    /// Checks one rule against the source and its target tables and routes
    /// a sample of its rows.
    async fn table(&mut self, rule: &Rule, sample_rows: u64) -> anyhow::Result<()> {
        let name = rule.source_name();
        let Some((cols, schema)) = self.source_table(rule).await? else {
            return Ok(());
        };
        self.key_collations(rule).await?;
        let target = match self.router.target_table(&schema) {
            Ok(t) => t,
            Err(e) => {
                let finding = Finding::table("rule_does_not_fit", &name, e.to_string());
                self.report.findings.push(finding);
                return Ok(());
            }
        };
        let mut table_report = TableReport {
            target: target.name.clone(),
            ..TableReport::default()
        };
        let catalog = self
            .check_targets(rule, &target, &cols, &mut table_report)
            .await?;
        let routed = self.sample(&schema, sample_rows, &mut table_report).await?;
        let misfits = self.tally(rule, &target, catalog.as_ref(), routed, &mut table_report)?;
        self.sample_findings(&name, misfits, &table_report);
        table_report.compute_skew();
        self.report.tables.insert(name, table_report);
        Ok(())
    }

    /// A `key_collation` finding when `run` would refuse a key column's
    /// collation (see [`crate::source::collation`]).
    async fn key_collations(&mut self, rule: &Rule) -> anyhow::Result<()> {
        let learned = self
            .collations
            .learn_table(
                &mut self.servers.source,
                &rule.source_db,
                &rule.source_table,
                rule.key.as_deref(),
            )
            .await;
        match learned {
            Ok(()) => Ok(()),
            Err(CollationError::Db(e)) => Err(e.into()),
            Err(e @ CollationError::Unsupported { .. }) => {
                let finding = Finding::table("key_collation", &rule.source_name(), e.to_string());
                self.report.findings.push(finding);
                Ok(())
            }
            // no key or no such column: the rule check reports it
            Err(_) => Ok(()),
        }
    }

    /// The source table's columns and schema; None, with a finding, when
    /// the table does not exist.
    async fn source_table(
        &mut self,
        rule: &Rule,
    ) -> anyhow::Result<Option<(Vec<CatalogColumn>, Arc<TableSchema>)>> {
        let (cols, pk) = match load_catalog(
            &mut self.servers.source,
            "source",
            &rule.source_db,
            &rule.source_table,
        )
        .await
        {
            Ok(x) => x,
            Err(SchemaError::Missing { table }) => {
                self.report.findings.push(Finding::table(
                    "missing_source_table",
                    &rule.source_name(),
                    format!(
                        "{}: source table {table} does not exist on the source",
                        rule.file.display()
                    ),
                ));
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let schema = from_catalog(&rule.source_db, &rule.source_table, &cols, &pk);
        Ok(Some((cols, Arc::new(schema))))
    }

    /// Checks the target table on every shard of the rule (each shard gets
    /// a row count, zero so far); the catalog of the first one found.
    async fn check_targets(
        &mut self,
        rule: &Rule,
        target: &TargetTable,
        cols: &[CatalogColumn],
        table_report: &mut TableReport,
    ) -> anyhow::Result<Option<TargetCatalog>> {
        let mut catalog: Option<TargetCatalog> = None;
        let shards: BTreeSet<&String> = rule.shards.iter().collect();
        for shard in shards {
            table_report.per_shard.insert(shard.clone(), 0);
            let Some((_, conn)) = self.servers.targets.iter_mut().find(|(n, _)| n == shard) else {
                continue;
            };
            let db = self
                .cfg
                .targets
                .get(shard)
                .and_then(|ep| db_name(&ep.url))
                .unwrap_or_default();
            let findings = &mut self.report.findings;
            let cat = check_target(conn, shard, &db, rule, target, cols, findings).await?;
            if catalog.is_none() {
                catalog = cat;
            }
        }
        Ok(catalog)
    }

    /// Routes a sample of the table's rows (all of them when there are at
    /// most `n`) and notes how many were read.
    async fn sample(
        &mut self,
        schema: &Arc<TableSchema>,
        n: u64,
        table_report: &mut TableReport,
    ) -> anyhow::Result<Vec<Result<Vec<WriteOp>, RouteError>>> {
        let key = self.router.row_identity(schema)?;
        let mut routed = Vec::new();
        let router = &mut self.router;
        let lookups = &self.lookups;
        let stats = sample(&mut self.sampler, schema, &key, n, |row| {
            let change = RowChange::selected(
                schema.clone(),
                row,
                Version::ZERO,
                std::sync::Arc::from("sample.000001"),
            );
            routed.push(router.route(&change, lookups));
        })
        .await?;
        table_report.rows_sampled = stats.rows;
        table_report.exact = stats.exact;
        table_report.rows_in_table = stats.estimate;
        Ok(routed)
    }

    /// Counts the routed sample per shard and per server and records the
    /// rows that cannot be routed; returns the derived columns whose values
    /// do not fit the target (column → why).
    fn tally(
        &self,
        rule: &Rule,
        target: &TargetTable,
        catalog: Option<&TargetCatalog>,
        routed: Vec<Result<Vec<WriteOp>, RouteError>>,
        table_report: &mut TableReport,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let mut misfits: BTreeMap<String, String> = BTreeMap::new();
        for r in routed {
            let ops = match r {
                Ok(ops) => ops,
                Err(e) => match derive_failure(&e, false) {
                    Some(failure) => {
                        table_report.record_failure(failure, FAILURE_CAP);
                        continue;
                    }
                    None => return Err(e.into()),
                },
            };
            for op in ops {
                let shard = &self.shard_names[op.shard];
                *table_report.per_shard.entry(shard.clone()).or_default() += 1;
                let server = self.server_of.get(shard).cloned().unwrap_or_default();
                *table_report.per_server.entry(server).or_default() += 1;
                if let (Some(cat), OpKind::Upsert(values)) = (catalog, &op.kind) {
                    note_misfits(rule, target, cat, values, &mut misfits);
                }
            }
        }
        Ok(misfits)
    }

    /// The findings of one table's sample: derived values that do not fit
    /// their column, and rows that cannot be routed.
    fn sample_findings(
        &mut self,
        name: &str,
        misfits: BTreeMap<String, String>,
        table_report: &TableReport,
    ) {
        for (col, why) in misfits {
            self.report.findings.push(Finding {
                kind: "derived_type",
                table: name.to_string(),
                shard: None,
                message: format!("derived column {col}: {why}"),
                fix: Some(format!(
                    "widen the target column {col} or change the expression"
                )),
            });
        }
        if table_report.failures_total > 0 {
            let first = table_report.failures.first();
            self.report.findings.push(Finding::table(
                "derivation_failures",
                name,
                format!(
                    "{} sampled row(s) cannot be routed (first: key {}: {})",
                    table_report.failures_total,
                    first.map(|f| f.key.as_str()).unwrap_or(""),
                    first.map(|f| f.error.as_str()).unwrap_or("")
                ),
            ));
        }
    }

    /// Routes the row events of `[from, to)` (to the source head when `to`
    /// is not given) and adds per-shard operation counts and failures.
    async fn route_binlog(&mut self, from: &Position, to: Option<&Position>) -> anyhow::Result<()> {
        let (mut tailer, end) = self.binlog_tailer(from, to).await?;
        let mut position = from.clone();
        let mut binlog_failures: BTreeMap<String, u64> = BTreeMap::new();
        while position < end {
            let item = tokio::time::timeout(self.cfg.pipeline.heartbeat * 3, tailer.next())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "the source sent nothing for a while at {position}, before reaching {end}"
                    )
                })??;
            let chunk = match item {
                SourceItem::Rows(chunk) => chunk,
                SourceItem::Transaction(t) => {
                    position = t.end;
                    continue;
                }
                SourceItem::Heartbeat(Some(p)) => {
                    position = p;
                    continue;
                }
                SourceItem::Heartbeat(None) => continue,
            };
            for change in &chunk.changes {
                if !self.route_change(change) {
                    *binlog_failures.entry(change.table.full_name()).or_insert(0) += 1;
                }
            }
        }
        tailer.close().await;
        for (table, n) in binlog_failures {
            self.report.findings.push(Finding::table(
                "derivation_failures",
                &table,
                format!("{n} row change(s) in the binlog range {from} .. {end} cannot be routed"),
            ));
        }
        Ok(())
    }

    /// A tailer from `from` that decodes only the rules' tables, and where
    /// to stop: `to`, or the source's head now.
    async fn binlog_tailer(
        &self,
        from: &Position,
        to: Option<&Position>,
    ) -> anyhow::Result<(Tailer, Position)> {
        let cfg = self.cfg;
        let budget = cfg.pipeline.connect_timeout;
        let mut stream = db::connect(&cfg.source, Session::Read, budget)
            .await
            .context("source server")?;
        let flavor = db::flavor(&mut stream, "source").await?;
        let checksum = source::preflight::ensure_checksum(&mut stream).await?;
        let end = match to {
            Some(t) => t.clone(),
            None => source::head(&mut stream).await?,
        };
        let schema_conn = db::connect(&cfg.source, Session::Read, budget).await?;
        let wanted: BTreeSet<(String, String)> = self
            .router
            .rules()
            .map(|r| (r.source_db.clone(), r.source_table.clone()))
            .collect();
        let tailer = Tailer::start(
            stream,
            schema_conn,
            from.clone(),
            TailerOptions {
                // a different id than `run`'s, so a running pipeline is not kicked off
                server_id: cfg.server_id | 0x4000_0000,
                epoch: cfg.pipeline.epoch,
                heartbeat: cfg.pipeline.heartbeat,
                flavor,
                checksum,
                filter: Arc::new(move |d: &str, t: &str| {
                    wanted.contains(&(d.to_string(), t.to_string()))
                }),
                hold: cfg.pipeline.hold.clone(),
            },
        )
        .await?;
        Ok((tailer, end))
    }

    /// Routes one change of the binlog range into its table's operation
    /// counts; false when its shard or a derived column cannot be derived.
    fn route_change(&mut self, change: &RowChange) -> bool {
        let t = self
            .report
            .tables
            .entry(change.table.full_name())
            .or_default();
        let ops = t.binlog_ops_per_shard.get_or_insert_with(BTreeMap::new);
        match self.router.route(change, &self.lookups) {
            Ok(list) => {
                for op in list {
                    *ops.entry(self.shard_names[op.shard].clone()).or_default() += 1;
                }
                true
            }
            Err(e) => match derive_failure(&e, true) {
                Some(failure) => {
                    t.record_failure(failure, FAILURE_CAP);
                    false
                }
                None => {
                    self.report.findings.push(Finding::table(
                        "rule_does_not_fit",
                        &change.table.full_name(),
                        e.to_string(),
                    ));
                    true
                }
            },
        }
    }
}
