//! `reshard status`: checkpoint, floor, source head, lag in bytes and
//! seconds, and the progress of the initial copy — of this process's
//! checkpoint row, and (`subsets`) of every shard subset of the pipeline
//! with the process that applies it, if one runs. `process` (and each
//! subset's) carries the figures the applying process last kept: the
//! figures of its metrics endpoint ([`crate::metrics::figures`]).

use std::path::Path;
use std::process::ExitCode;

use mysql_async::Conn;
use serde::Serialize;

use super::servers::Servers;
use crate::checkpoint::continuity;
use crate::config::Config;
use crate::control::{self, checkpoint};
use crate::metrics::figures::Figures;
use crate::monitor::lag::lags;
use crate::position::Position;
use crate::source;

#[derive(Debug, Serialize)]
struct TableCopy {
    table: String,
    rows_copied: u64,
    rows_estimate: u64,
    done: bool,
}

#[derive(Debug, Serialize)]
struct Status {
    pipeline: String,
    checkpoint: Option<String>,
    epoch: Option<u16>,
    floor: Option<String>,
    source_head: String,
    lag_bytes: Option<u64>,
    lag_seconds: Option<u64>,
    snapshot: Option<SnapshotStatus>,
    dead_letters: u64,
    /// The figures of the process applying this checkpoint row, as it
    /// last kept them.
    process: Option<ProcessStatus>,
    /// Every checkpoint row of the pipeline (one per shard subset).
    subsets: Vec<SubsetStatus>,
}

/// A process's figures as it last kept them.
#[derive(Debug, Clone, Serialize)]
struct ProcessStatus {
    host: String,
    pid: u32,
    /// Seconds since it kept them (it does every `progress_interval_secs`
    /// while it runs).
    age_secs: u64,
    figures: Figures,
}

/// One checkpoint row of the pipeline and who applies its shards.
#[derive(Debug, Serialize)]
struct SubsetStatus {
    pipeline: String,
    /// Its shards; empty: every shard of `[targets]`.
    shards: Vec<String>,
    checkpoint: Option<String>,
    epoch: Option<u16>,
    floor: Option<String>,
    lag_bytes: Option<u64>,
    lag_seconds: Option<u64>,
    copying: bool,
    /// The process holding its shards' leases (host, pid, since), if any.
    running: Option<String>,
    /// The figures its process last kept.
    process: Option<ProcessStatus>,
}

#[derive(Debug, Serialize)]
struct SnapshotStatus {
    position: String,
    state: &'static str,
    tables: Vec<TableCopy>,
}

pub async fn status(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(path)?;
    let mut servers = Servers::connect(&cfg).await?;
    servers.ensure_migrated(&cfg).await?;
    let st = collect(&mut servers, &cfg).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print!("{}", render(&st));
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads everything `status` shows.
async fn collect(servers: &mut Servers, cfg: &Config) -> anyhow::Result<Status> {
    let name = cfg.pipeline.name.clone();
    let cp = checkpoint::load(&mut servers.control, &name).await?;
    let floor = checkpoint::floor(&mut servers.control, &name).await?;
    let head = source::head(&mut servers.source).await?;
    let files = continuity::binlog_sizes(&mut servers.source)
        .await
        .unwrap_or_default();
    let source_ts = checkpoint::source_ts(&mut servers.control, &name).await?;
    let (lag_b, lag_s) = lags(cp.as_ref(), &head, &files, source_ts.unwrap_or(0));
    let snapshot = snapshot_status(&mut servers.control, &name).await?;
    let dead_letters = control::dead_letter::count(&mut servers.control, &name).await?;
    let base = &cfg.pipeline.base_name;
    let mut processes = processes(&mut servers.control, base).await?;
    let process = processes.get(&name).cloned();
    let subsets = subsets(servers, base, &head, &files, &mut processes).await?;
    Ok(Status {
        pipeline: name,
        checkpoint: cp.as_ref().map(|c| c.position.to_string()),
        epoch: cp.as_ref().map(|c| c.epoch),
        floor: floor.map(|f| f.to_string()),
        source_head: head.to_string(),
        lag_bytes: lag_b,
        lag_seconds: lag_s,
        snapshot,
        dead_letters,
        process,
        subsets,
    })
}

/// The figures every process of the pipeline `base` last kept, by
/// checkpoint row. Figures that do not parse (another version's) are left
/// out.
async fn processes(
    control: &mut Conn,
    base: &str,
) -> anyhow::Result<std::collections::HashMap<String, ProcessStatus>> {
    let stored = control::figures::list(control, base).await?;
    Ok(stored
        .into_iter()
        .filter_map(|s| {
            let figures = serde_json::from_str(&s.figures).ok()?;
            let p = ProcessStatus {
                host: s.host,
                pid: s.pid,
                age_secs: s.age_secs,
                figures,
            };
            Some((s.pipeline, p))
        })
        .collect())
}

/// Every subset of the pipeline `base`, with the process applying it.
async fn subsets(
    servers: &mut Servers,
    base: &str,
    head: &Position,
    files: &[(String, u64)],
    processes: &mut std::collections::HashMap<String, ProcessStatus>,
) -> anyhow::Result<Vec<SubsetStatus>> {
    let rows = control::subset::list(&mut servers.control, base).await?;
    let live = control::lease::live_holders(&mut servers.control, base).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let (lag_b, lag_s) = lags(r.checkpoint.as_ref(), head, files, r.source_ts);
            SubsetStatus {
                running: live
                    .iter()
                    .find(|h| h.subset == r.key)
                    .map(|h| format!("host {}, pid {}", h.owner.host, h.owner.pid)),
                process: processes.remove(&r.key),
                pipeline: r.key,
                shards: r.shards.unwrap_or_default(),
                checkpoint: r.checkpoint.as_ref().map(|c| c.position.to_string()),
                epoch: r.checkpoint.as_ref().map(|c| c.epoch),
                floor: r.floor.map(|f| f.to_string()),
                lag_bytes: lag_b,
                lag_seconds: lag_s,
                copying: r.copying,
            }
        })
        .collect())
}

/// The initial copy's state and per-table progress, if there was a copy.
async fn snapshot_status(control: &mut Conn, name: &str) -> anyhow::Result<Option<SnapshotStatus>> {
    let Some(s) = control::snapshot::load(control, name).await? else {
        return Ok(None);
    };
    // a large table is copied in parts: one line per table
    let mut tables: Vec<TableCopy> = Vec::new();
    for t in control::snapshot::tables(control, name).await? {
        match tables.last_mut() {
            Some(last) if last.table == t.table => {
                last.rows_copied += t.rows_copied;
                last.rows_estimate += t.rows_estimate;
                last.done &= t.done;
            }
            _ => tables.push(TableCopy {
                table: t.table,
                rows_copied: t.rows_copied,
                rows_estimate: t.rows_estimate,
                done: t.done,
            }),
        }
    }
    Ok(Some(SnapshotStatus {
        position: s.position.to_string(),
        state: if s.done { "done" } else { "copying" },
        tables,
    }))
}

/// The human form of the status.
fn render(st: &Status) -> String {
    use std::fmt::Write;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut out = String::new();
    let _ = writeln!(out, "pipeline     {}", st.pipeline);
    let _ = writeln!(out, "checkpoint   {}", opt(st.checkpoint.clone()));
    let _ = writeln!(out, "epoch        {}", opt(st.epoch.map(|e| e.to_string())));
    let _ = writeln!(out, "floor        {}", opt(st.floor.clone()));
    let _ = writeln!(out, "source head  {}", st.source_head);
    let _ = writeln!(
        out,
        "lag          {} bytes, {} s",
        opt(st.lag_bytes.map(|b| b.to_string())),
        opt(st.lag_seconds.map(|s| s.to_string()))
    );
    let _ = writeln!(out, "dead letters {}", st.dead_letters);
    if let Some(p) = &st.process {
        let _ = writeln!(
            out,
            "process      host {}, pid {} (figures {} s old)",
            p.host, p.pid, p.age_secs
        );
        out.push_str(&p.figures.render(""));
    }
    render_subsets(&mut out, &st.subsets);
    if let Some(s) = &st.snapshot {
        let _ = writeln!(out, "snapshot     {} at {}", s.state, s.position);
        for t in &s.tables {
            let pct = if t.rows_estimate > 0 {
                100.0 * t.rows_copied as f64 / t.rows_estimate as f64
            } else {
                100.0
            };
            let _ = writeln!(
                out,
                "  {:<40} {:>10} / ~{:<10} {:>5.1}%{}",
                t.table,
                t.rows_copied,
                t.rows_estimate,
                pct.min(100.0),
                if t.done { " done" } else { "" }
            );
        }
    }
    out
}

/// The subsets part of the human form (only when there are several, or
/// the one there is is a subset).
fn render_subsets(out: &mut String, subsets: &[SubsetStatus]) {
    use std::fmt::Write;
    if subsets.len() < 2 && subsets.iter().all(|s| s.shards.is_empty()) {
        return;
    }
    let _ = writeln!(out, "subsets      {}", subsets.len());
    for s in subsets {
        let shards = if s.shards.is_empty() {
            "all shards".to_string()
        } else {
            s.shards.join(",")
        };
        let _ = writeln!(
            out,
            "  {:<30} {:<16} checkpoint {}{}, lag {} bytes, {} s, {}{}",
            s.pipeline,
            shards,
            s.checkpoint.as_deref().unwrap_or("-"),
            if s.copying { " (copying)" } else { "" },
            s.lag_bytes.map_or("-".into(), |b| b.to_string()),
            s.lag_seconds.map_or("-".into(), |b| b.to_string()),
            s.running
                .as_deref()
                .map_or("not running".into(), |r| format!("running: {r}")),
            s.process
                .as_ref()
                .map_or(String::new(), |p| brief(&p.figures)),
        );
    }
}

/// A subset's figures in a few words: rows applied, and what holds it up.
fn brief(f: &Figures) -> String {
    let mut s = format!(", {} rows applied", f.rows_total());
    if !f.stalled.is_empty() {
        s.push_str(&format!(", stalled: {}", f.stalled.join(" ")));
    }
    if !f.throttled.is_empty() {
        s.push_str(", throttled");
    }
    s
}
