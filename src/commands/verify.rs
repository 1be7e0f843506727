//! `reshard verify`: compare the source with the routed targets and report
//! missing, extra, misplaced and different rows per table and shard (see
//! [`crate::verify`] for how, and why it is complete and lock-free).
//! Reads only. Exit 0 equal, 1 differences, 2 cannot run.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use mysql_async::prelude::Queryable;

use super::servers::Servers;
use crate::config::{db_name, Config};
use crate::db::{self, quote_ident, Session};
use crate::rules::lookup::Lookups;
use crate::rules::{load_dir, Router};
use crate::verify::{Options, Report, Target, Verifier};

/// Options of the command.
pub struct VerifyArgs {
    /// Only this source table (`db.table`).
    pub table: Option<String>,
    /// Source rows per chunk.
    pub chunk_rows: u64,
    /// Re-checks of a differing key before it is reported.
    pub rechecks: u32,
    /// Wait before each re-check.
    pub recheck_delay: std::time::Duration,
    pub json: bool,
}

pub async fn verify(path: &Path, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(path)?;
    let mut rules = load_dir(&cfg.pipeline.rules)?;
    if let Some(t) = &args.table {
        let known: Vec<String> = rules.iter().map(|r| r.source_name()).collect();
        rules.retain(|r| r.source_name().eq_ignore_ascii_case(t));
        if rules.is_empty() {
            anyhow::bail!(
                "--table {t}: no rule file in {} maps that table (rules map: {})",
                cfg.pipeline.rules.display(),
                if known.is_empty() {
                    "nothing".to_string()
                } else {
                    known.join(", ")
                }
            );
        }
    }
    rules.sort_by_key(|r| r.source_name());
    let shard_names: Vec<String> = cfg.targets.keys().cloned().collect();
    let router = Router::new(rules.clone(), &shard_names)?;

    // every server first (bounded retry), then the row sessions
    let servers = Servers::connect_with(&cfg, false).await?;
    let budget = cfg.pipeline.connect_timeout;
    let source = db::connect(&cfg.source, Session::Write, budget)
        .await
        .context("source server")?;
    let mut targets = Vec::new();
    for (name, catalog) in servers.targets {
        let ep = cfg
            .targets
            .get(&name)
            .with_context(|| format!("target {name} is not configured"))?;
        let db = db_name(&ep.url).with_context(|| {
            format!(
                "target {name} ({}): the URL names no database",
                ep.redacted()
            )
        })?;
        let rows = db::connect(ep, Session::Write, budget)
            .await
            .with_context(|| format!("target {name}"))?;
        targets.push(Target {
            name,
            db,
            catalog,
            rows,
        });
    }

    let mut lookups = Lookups::new(&rules, cfg.pipeline.lookup_ttl);
    let mut control = None;
    if !lookups.is_empty() {
        let mut conn = servers.control;
        let db = db_name(&cfg.control.url).unwrap_or_default();
        conn.query_drop(format!("USE {}", quote_ident(&db)))
            .await
            .with_context(|| format!("control database {db} (lookup tables)"))?;
        lookups
            .refresh(&mut conn)
            .await
            .context("loading the lookup tables the rules use")?;
        control = Some(conn);
    }

    let mut verifier = Verifier {
        router,
        lookups,
        control,
        source_catalog: servers.source,
        source,
        targets,
        options: Options {
            chunk_rows: usize::try_from(args.chunk_rows).unwrap_or(1000).max(1),
            rechecks: args.rechecks,
            recheck_delay: args.recheck_delay,
            ..Options::default()
        },
    };
    let mut report = Report {
        config: cfg.path.display().to_string(),
        ..Report::default()
    };
    for rule in &rules {
        let name = rule.source_name();
        let t = verifier
            .verify_table(rule)
            .await
            .with_context(|| format!("verifying {name}"))?;
        report.tables.insert(name, t);
    }
    report.finish();
    super::emit_report(&report, report.ok, args.json, || report.render())
}
