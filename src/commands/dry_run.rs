//! `reshard dry-run`: validate config and rules against the real source and
//! target schemas, route a sample of source rows (and optionally a binlog
//! range), and report per-shard distribution, skew and every failure.
//! Writes nothing anywhere. Exit 0 clean, 1 findings, 2 cannot run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::servers::Servers;
use crate::config::{db_name, Config};
use crate::db::{self, Session};
use crate::inspect::report::DeriveFailure;
use crate::inspect::sample::sample;
use crate::inspect::validate::{check_target, fits, servers_of, TargetCatalog};
use crate::inspect::{Finding, Report, TableReport};
use crate::position::Position;
use crate::rules::lookup::Lookups;
use crate::rules::{load_dir, RouteError, Router};
use crate::source::schema::{from_catalog, load_catalog, SchemaError};
use crate::source::{self, RowChange, SourceItem, Tailer, TailerOptions};
use crate::version::Version;
use mysql_async::prelude::Queryable;

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
    let mut sampler = db::connect(&cfg.source, Session::Write, cfg.pipeline.connect_timeout)
        .await
        .context("source server")?;
    let shard_names: Vec<String> = cfg.targets.keys().cloned().collect();
    let server_of = servers_of(&cfg.targets);
    let mut report = Report {
        config: cfg.path.display().to_string(),
        ..Report::default()
    };

    // rules whose shards are all configured go on to the schema checks
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
            report.findings.push(Finding {
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
    let mut router = Router::new(valid.clone(), &shard_names)?;
    let mut lookups = Lookups::new(&valid, cfg.pipeline.lookup_ttl);
    if !lookups.is_empty() {
        let db = db_name(&cfg.control.url).unwrap_or_default();
        let loaded = match servers
            .control
            .query_drop(format!("USE {}", crate::db::quote_ident(&db)))
            .await
        {
            Ok(()) => lookups
                .refresh(&mut servers.control)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("control database {db}: {e}")),
        };
        if let Err(e) = loaded {
            let tables: Vec<&String> = lookups.wanted().collect();
            report.findings.push(Finding {
                kind: "lookup_table",
                table: format!("{tables:?}"),
                shard: None,
                message: format!("cannot load the lookup tables the rules use: {e}"),
                fix: Some(
                    "create them in the control database with columns k (key) and v (value)".into(),
                ),
            });
        }
    }

    for rule in &valid {
        let name = rule.source_name();
        let finding = |kind: &'static str, message: String| Finding {
            kind,
            table: name.clone(),
            shard: None,
            message,
            fix: None,
        };
        let (cols, pk) = match load_catalog(
            &mut servers.source,
            "source",
            &rule.source_db,
            &rule.source_table,
        )
        .await
        {
            Ok(x) => x,
            Err(SchemaError::Missing { table }) => {
                report.findings.push(finding(
                    "missing_source_table",
                    format!(
                        "{}: source table {table} does not exist on the source",
                        rule.file.display()
                    ),
                ));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let schema = Arc::new(from_catalog(
            &rule.source_db,
            &rule.source_table,
            &cols,
            &pk,
        ));
        let target = match router.target_table(&schema) {
            Ok(t) => t,
            Err(e) => {
                report
                    .findings
                    .push(finding("rule_does_not_fit", e.to_string()));
                continue;
            }
        };
        let mut table_report = TableReport {
            target: target.name.clone(),
            ..TableReport::default()
        };
        // target tables on every shard of the rule
        let mut catalog: Option<TargetCatalog> = None;
        let shards: BTreeSet<&String> = rule.shards.iter().collect();
        for shard in shards {
            table_report.per_shard.insert(shard.clone(), 0);
            let Some((_, conn)) = servers.targets.iter_mut().find(|(n, _)| n == shard) else {
                continue;
            };
            let db = cfg
                .targets
                .get(shard)
                .and_then(|ep| db_name(&ep.url))
                .unwrap_or_default();
            let cat =
                check_target(conn, shard, &db, rule, &target, &cols, &mut report.findings).await?;
            if catalog.is_none() {
                catalog = cat;
            }
        }
        // sample rows through the router
        let key = router.row_identity(&schema)?;
        let mut routed: Vec<Result<Vec<crate::writer::WriteOp>, RouteError>> = Vec::new();
        let stats = sample(&mut sampler, &schema, &key, args.sample, |row| {
            let change = RowChange::selected(
                schema.clone(),
                row,
                Version::ZERO,
                Position::new("sample.000001", 4),
            );
            routed.push(router.route(&change, &lookups));
        })
        .await?;
        table_report.rows_sampled = stats.rows;
        table_report.exact = stats.exact;
        table_report.rows_in_table = stats.estimate;
        let mut misfits: BTreeMap<String, String> = BTreeMap::new();
        for r in routed {
            match r {
                Ok(ops) => {
                    for op in ops {
                        let shard = &shard_names[op.shard];
                        *table_report.per_shard.entry(shard.clone()).or_default() += 1;
                        let server = server_of.get(shard).cloned().unwrap_or_default();
                        *table_report.per_server.entry(server).or_default() += 1;
                        if let (Some(cat), crate::writer::OpKind::Upsert(values)) =
                            (&catalog, &op.kind)
                        {
                            for ((col, v), _) in target.columns.iter().zip(values).zip(0..) {
                                if !rule.derive.iter().any(|(d, _)| d == col)
                                    || misfits.contains_key(col)
                                {
                                    continue;
                                }
                                if let Some(why) = cat.column(col).and_then(|c| fits(v, c)) {
                                    misfits.insert(col.clone(), why);
                                }
                            }
                        }
                    }
                }
                Err(RouteError::Derive {
                    key,
                    stage,
                    expr,
                    cause,
                    ..
                }) => {
                    table_report.failures_total += 1;
                    if table_report.failures.len() < FAILURE_CAP {
                        table_report.failures.push(DeriveFailure {
                            key,
                            expression: if expr.is_empty() {
                                stage.to_string()
                            } else {
                                expr
                            },
                            error: cause.to_string(),
                        });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        for (col, why) in misfits {
            report.findings.push(Finding {
                kind: "derived_type",
                table: name.clone(),
                shard: None,
                message: format!("derived column {col}: {why}"),
                fix: Some(format!(
                    "widen the target column {col} or change the expression"
                )),
            });
        }
        if table_report.failures_total > 0 {
            report.findings.push(finding(
                "derivation_failures",
                format!(
                    "{} sampled row(s) cannot be routed (first: key {}: {})",
                    table_report.failures_total,
                    table_report
                        .failures
                        .first()
                        .map(|f| f.key.as_str())
                        .unwrap_or(""),
                    table_report
                        .failures
                        .first()
                        .map(|f| f.error.as_str())
                        .unwrap_or("")
                ),
            ));
        }
        table_report.compute_skew();
        report.tables.insert(name.clone(), table_report);
    }

    if let Some(from) = &args.from {
        route_binlog(
            &cfg,
            &mut router,
            &lookups,
            from,
            args.to.as_ref(),
            &shard_names,
            &mut report,
        )
        .await?;
    }

    report.ok = report.findings.is_empty();
    super::emit_report(&report, report.ok, args.json, || report.render())
}

/// Routes the row events of `[from, to)` (to the source head when `to` is
/// not given) and adds per-shard operation counts and failures.
async fn route_binlog(
    cfg: &Config,
    router: &mut Router,
    lookups: &Lookups,
    from: &Position,
    to: Option<&Position>,
    shard_names: &[String],
    report: &mut Report,
) -> anyhow::Result<()> {
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
    let wanted: BTreeSet<(String, String)> = router
        .rules()
        .map(|r| (r.source_db.clone(), r.source_table.clone()))
        .collect();
    let mut tailer = Tailer::start(
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
        },
    )
    .await?;
    let mut position = from.clone();
    let mut binlog_failures: BTreeMap<String, u64> = BTreeMap::new();
    while position < end {
        let item = tokio::time::timeout(cfg.pipeline.heartbeat * 3, tailer.next())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "the source sent nothing for a while at {position}, before reaching {end}"
                )
            })??;
        let txn = match item {
            SourceItem::Transaction(t) => t,
            SourceItem::Heartbeat(Some(p)) => {
                position = p;
                continue;
            }
            SourceItem::Heartbeat(None) => continue,
        };
        position = txn.end.clone();
        for change in &txn.changes {
            let t = report.tables.entry(change.table.full_name()).or_default();
            let ops = t.binlog_ops_per_shard.get_or_insert_with(BTreeMap::new);
            match router.route(change, lookups) {
                Ok(list) => {
                    for op in list {
                        *ops.entry(shard_names[op.shard].clone()).or_default() += 1;
                    }
                }
                Err(RouteError::Derive {
                    key,
                    stage,
                    expr,
                    cause,
                    position,
                    ..
                }) => {
                    t.failures_total += 1;
                    if t.failures.len() < FAILURE_CAP {
                        t.failures.push(DeriveFailure {
                            key: format!("{key} at {position}"),
                            expression: if expr.is_empty() {
                                stage.to_string()
                            } else {
                                expr
                            },
                            error: cause.to_string(),
                        });
                    }
                    *binlog_failures.entry(change.table.full_name()).or_insert(0) += 1;
                }
                Err(e) => report.findings.push(Finding {
                    kind: "rule_does_not_fit",
                    table: change.table.full_name(),
                    shard: None,
                    message: e.to_string(),
                    fix: None,
                }),
            }
        }
    }
    tailer.close().await;
    for (table, n) in binlog_failures {
        report.findings.push(Finding {
            kind: "derivation_failures",
            table,
            shard: None,
            message: format!(
                "{n} row change(s) in the binlog range {from} .. {end} cannot be routed"
            ),
            fix: None,
        });
    }
    Ok(())
}
