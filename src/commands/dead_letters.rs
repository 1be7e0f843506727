//! `reshard dead-letters list|retry|drop`: the rows `on_derive_error =
//! "dead-letter"` set aside.
//!
//! * `list` shows them (table, key, position, expression, error);
//! * `retry` routes each stored change again through the *current* rules
//!   and applies it at its *own* version, then deletes the letters it
//!   applied; a change that still cannot be routed stays, with its new
//!   error. It takes the pipeline lease (so `run` must be stopped, which a
//!   rule change needs anyway) and refuses letters below the floor;
//! * `drop` deletes them.
//!
//! Why a retry cannot overwrite newer data, and why it must not run beside
//! `run`, is argued in `docs/architecture.md`, "Dead letters".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use mysql_async::Conn;

use super::replicator::Replicator;
use super::EXIT_FINDINGS;
use crate::config::Config;
use crate::control::{checkpoint, dead_letter, dead_letter::Letter};
use crate::db::{self, Session};
use crate::rules::{Routed, Router};
use crate::writer::lane::{apply_batch, LaneConfig, LaneMemo, Stats};
use crate::writer::WriteOp;

/// `--table` of the three actions.
pub struct Filter<'a> {
    pub table: Option<&'a str>,
}

/// The control database, with reshard's tables checked.
async fn control(cfg: &Config) -> anyhow::Result<Conn> {
    let conn = db::connect(&cfg.control, Session::Read, cfg.pipeline.connect_timeout)
        .await
        .context("control server")?;
    Ok(conn)
}

/// `dead-letters list [--json]`.
pub async fn list(path: &Path, f: Filter<'_>, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(path)?;
    let mut conn = control(&cfg).await?;
    let letters = dead_letter::list(&mut conn, &cfg.pipeline.name, f.table).await?;
    if json {
        let doc = serde_json::json!({
            "pipeline": cfg.pipeline.name,
            "count": letters.len(),
            "dead_letters": letters,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", render(&cfg.pipeline.name, &letters));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(pipeline: &str, letters: &[Letter]) -> String {
    let mut out = format!("{} dead letter(s) of pipeline {pipeline}\n", letters.len());
    for l in letters {
        let _ = writeln!(
            out,
            "#{} {} key {} at {} ({})\n    expression: {}\n    error: {}",
            l.id,
            l.table,
            l.key,
            l.position,
            l.created_at,
            if l.expression.is_empty() {
                "-"
            } else {
                &l.expression
            },
            l.error
        );
    }
    out
}

/// `dead-letters drop [--table T]`.
pub async fn drop(path: &Path, f: Filter<'_>) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(path)?;
    let mut conn = control(&cfg).await?;
    let ids: Vec<u64> = dead_letter::list(&mut conn, &cfg.pipeline.name, f.table)
        .await?
        .iter()
        .map(|l| l.id)
        .collect();
    let n = dead_letter::delete(&mut conn, &cfg.pipeline.name, &ids).await?;
    tracing::warn!(
        dropped = n,
        "dead letters dropped; their rows are not on the targets"
    );
    println!("dropped {n} dead letter(s)");
    Ok(ExitCode::SUCCESS)
}

/// What a retry made of the letters.
#[derive(Default)]
struct Outcome {
    /// Letter ids whose operations are applied, and the operations.
    routed: Vec<u64>,
    ops: Vec<WriteOp>,
    /// Letters kept, and why.
    kept: Vec<(u64, String)>,
}

/// `dead-letters retry [--table T]`.
pub async fn retry(path: &Path, f: Filter<'_>) -> anyhow::Result<ExitCode> {
    let r = Replicator::start(path).await?;
    let (cfg, mut router, mut lookups) = (r.cfg, r.router, r.lookups);
    let mut control = r.servers.control;
    let name = cfg.pipeline.name.clone();
    let floor = checkpoint::floor(&mut control, &name).await?;
    let letters = dead_letter::list(&mut control, &name, f.table).await?;
    if !lookups.is_empty() {
        lookups.refresh(&mut control).await?;
    }
    let mut out = Outcome::default();
    for l in &letters {
        match route(l, floor, &mut router, &lookups) {
            Ok(ops) => {
                out.routed.push(l.id);
                out.ops.extend(ops);
            }
            Err(Kept::Unroutable(error, expr)) => {
                dead_letter::update_error(&mut control, l.id, &error, &expr).await?;
                out.kept.push((l.id, error));
            }
            Err(Kept::Other(why)) => out.kept.push((l.id, why)),
        }
    }
    apply(&cfg, std::mem::take(&mut out.ops)).await?;
    let deleted = dead_letter::delete(&mut control, &name, &out.routed).await?;
    tracing::info!(
        retried = deleted,
        kept = out.kept.len(),
        "dead letters re-driven through the current rules"
    );
    println!("retried {deleted} dead letter(s); {} kept", out.kept.len());
    for (id, why) in &out.kept {
        println!("  #{id} kept: {why}");
    }
    Ok(if out.kept.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FINDINGS)
    })
}

/// Why a letter stays.
enum Kept {
    /// The current rules still cannot route it: the new error and expression.
    Unroutable(String, String),
    Other(String),
}

/// The operations of a letter's change under the current rules.
fn route(
    l: &Letter,
    floor: Option<crate::version::Version>,
    router: &mut Router,
    lookups: &crate::rules::lookup::Lookups,
) -> Result<Vec<WriteOp>, Kept> {
    let change = match l.change() {
        None => return Err(Kept::Other("recorded before control migration 8, without the row change: drop it and re-copy the row (or replay its position)".into())),
        Some(Err(e)) => return Err(Kept::Other(e.to_string())),
        Some(Ok(c)) => c,
    };
    if floor.is_some_and(|f| change.version < f) {
        return Err(Kept::Other(format!("its version is below the floor (tombstones of later deletes of its key may be pruned, so applying it could bring back a deleted row): replay from before {} with --below-floor, or re-seed", l.position)));
    }
    match router.route_row(&change, lookups) {
        Ok(Routed::Ops(ops)) => Ok(ops),
        Ok(Routed::Unroutable(e)) => {
            Err(Kept::Unroutable(e.to_string(), dead_letter::expression(&e)))
        }
        Err(e) => Err(Kept::Other(format!(
            "the rule does not fit the row's schema: {e}"
        ))),
    }
}

/// Applies operations per shard in batches, each one transaction of
/// versioned writes (the lanes' own [`apply_batch`]).
async fn apply(cfg: &Config, ops: Vec<WriteOp>) -> anyhow::Result<()> {
    let mut per_shard: BTreeMap<usize, Vec<WriteOp>> = BTreeMap::new();
    for op in ops {
        per_shard.entry(op.shard).or_default().push(op);
    }
    let p = &cfg.pipeline;
    let stats = Stats::default();
    for (i, ep) in cfg.targets.values().enumerate() {
        // another process's shard: its own letter of the change is its own
        let Some(mut ops) = per_shard.remove(&i).filter(|_| cfg.applies(&ep.name)) else {
            continue;
        };
        let mut conn = db::connect(ep, Session::Write, p.connect_timeout).await?;
        let lane = LaneConfig::single(p, i, ep);
        let mut hints = LaneMemo::default();
        while !ops.is_empty() {
            let rest = ops.split_off(ops.len().min(p.batch_size));
            apply_batch(&mut conn, &lane, ops, None, &stats, &mut hints)
                .await
                .with_context(|| format!("applying re-driven dead letters on {}", ep.name))?;
            ops = rest;
        }
    }
    Ok(())
}
