//! Rows 2 and 3: the ceiling and end to end.
//!
//! * Ceiling: the main workload's row changes (decoded from its binlog and
//!   routed by the same rule, so the very same rows) written by a plain
//!   multi-row `REPLACE` loader into the same shard tables, with as many
//!   connections as reshard has lanes: half on each target server, each
//!   owning the keys that hash to it, in binlog order, one autocommit
//!   statement of `batch_size` rows at a time. No versions, no tombstones,
//!   no checkpoint. Statements are built before the clock starts. Median of
//!   `BENCH_RUNS` runs.
//! * End to end: `reshard run --from <workload start>` into emptied shard
//!   tables and a fresh control database, timed from the process start
//!   until the checkpoint reaches the workload's end; peak RSS (`VmHWM`)
//!   of the process; the targets are then checked against the source.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Params, Value};
use reshard::config::Endpoint;
use reshard::db::wire::WireConn;
use reshard::db::{self, quote_ident, Session};
use reshard::rules::route::no_context;
use reshard::rules::{load_dir, Router};
use reshard::source::{BinlogFile, SourceItem};
use reshard::writer::{sql, OpKind};

use crate::cpu::{counters, counters_since, Cpu};
use crate::env::{median, Bench, Settings, SHARDS};
use crate::report::Report;
use crate::workload::Workload;
use crate::Res;

/// A routed upsert: shard, key hash, values and version.
struct Row {
    shard: usize,
    hash: u64,
    values: Vec<Value>,
    version: Value,
}

/// How the loader writes its statements (the `ceiling` row uses
/// [`Form::Replace`]; the `forms` row compares them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `REPLACE` of `batch` rows, prepared, autocommit: the ceiling.
    Replace,
    /// The same as one text statement with the values as literals.
    ReplaceText,
    /// reshard's versioned upsert (every column guarded by the version),
    /// prepared, autocommit: what the guard costs the server.
    Upsert,
    /// The same as text with literals.
    UpsertText,
    /// The versioned upsert as a lane sends it: `BEGIN`, the prepared
    /// upsert, the applied-position row, `COMMIT` (four round trips).
    UpsertTxn,
    /// The same transaction as one text script, one round trip.
    UpsertScript,
    /// The versioned upsert of one row, its parameters sent as arrays
    /// of `batch` rows (MariaDB's `COM_STMT_BULK_EXECUTE`), autocommit:
    /// how a lane sends plain upserts on MariaDB.
    UpsertBulk,
    /// `REPLACE` of one row with arrays of `batch` rows: the same
    /// protocol for the ceiling's statement.
    ReplaceBulk,
}

impl Form {
    pub const ALL: [Form; 8] = [
        Form::Replace,
        Form::ReplaceText,
        Form::Upsert,
        Form::UpsertText,
        Form::UpsertTxn,
        Form::UpsertScript,
        Form::UpsertBulk,
        Form::ReplaceBulk,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Form::Replace => "REPLACE, prepared, autocommit",
            Form::ReplaceText => "REPLACE, text literals, autocommit",
            Form::Upsert => "versioned upsert, prepared, autocommit",
            Form::UpsertText => "versioned upsert, text literals, autocommit",
            Form::UpsertTxn => {
                "versioned upsert + applied row, prepared, BEGIN/COMMIT (4 round trips, as a lane)"
            }
            Form::UpsertScript => {
                "versioned upsert + applied row in one text script (1 round trip)"
            }
            Form::UpsertBulk => "versioned upsert of one row, array binding, autocommit",
            Form::ReplaceBulk => "REPLACE of one row, array binding, autocommit",
        }
    }
}

pub async fn run(
    b: &Bench,
    s: &Settings,
    w: &Workload,
    report: &mut Report,
    ceiling: bool,
    e2e: bool,
    forms: bool,
) -> Res<()> {
    let cfg = b.configure("main", &["t"], s)?;
    let mut ceiling_rate = None;
    let mut ceiling_cpu_total = None;
    if forms {
        let (columns, rows) = routed(&cfg, &w.file)?;
        forms_row(b, s, w, &columns, &rows, report).await?;
    }
    if ceiling {
        let (columns, rows) = routed(&cfg, &w.file)?;
        let conns = s.connections();
        let mut secs = Vec::new();
        let mut ceiling_cpu = None;
        let mut totals = Vec::new();
        for run in 0..s.runs {
            b.reset("t")?;
            let (x, cpu) =
                replace_load(b, &columns, &rows, conns, s.batch_size(), Form::Replace).await?;
            eprintln!(
                "bench: ceiling run {}: {:.0} row changes/s ({conns} connections), CPU s {cpu}",
                run + 1,
                w.changes as f64 / x
            );
            secs.push(x);
            totals.push(cpu_total(&cpu));
            ceiling_cpu = Some(cpu);
        }
        ceiling_cpu_total = Some(median(totals));
        let secs = median(secs);
        let rate = w.changes as f64 / secs;
        ceiling_rate = Some(rate);
        report.add(
            "ceiling",
            &format!("plain multi-row REPLACE loader ({conns} connections, 2 servers)"),
            rate,
            "rows/s",
            None,
            serde_json::json!({"secs": secs, "row_changes": w.changes, "connections": conns, "batch": s.batch_size(), "cpu_secs_last_run": ceiling_cpu}),
        );
    }
    if e2e {
        let mut results = Vec::new();
        for run in 0..s.e2e_runs {
            b.reset("t")?;
            b.migrate(&cfg)?;
            let mut r = b.run_reshard(&cfg, Some(&w.start))?;
            let cpu0 = Cpu::take(b, Some(r.pid()));
            let stmts0 = counters(b);
            let mid = r.wait_checkpoint(b, &w.mid).await?;
            let secs = r.wait_checkpoint(b, &w.end).await?;
            let cpu = Cpu::take(b, Some(r.pid())).since(&cpu0);
            let stmts = counters_since(b, &stmts0);
            let rss = r.peak_rss();
            r.stop()?;
            converged(b, "t")?;
            let half = w.changes as f64 / 2.0;
            eprintln!(
                "bench: e2e run {}: {:.0} row changes/s (inserts {:.0}/s, the UPDATE {:.0}/s), peak RSS {} MiB, CPU s {cpu}, targets {stmts}",
                run + 1,
                w.changes as f64 / secs,
                half / mid,
                half / (secs - mid),
                rss >> 20
            );
            results.push((secs, rss, mid, cpu));
        }
        let secs = median(results.iter().map(|r| r.0).collect());
        let rss = results.iter().map(|r| r.1).max().unwrap_or(0);
        let mid = median(results.iter().map(|r| r.2).collect());
        let cpu_total_median = median(results.iter().map(|r| cpu_total(&r.3)).collect());
        let rate = w.changes as f64 / secs;
        report.add(
            "e2e",
            &format!(
                "reshard run: {} inserts + one {}-row UPDATE ({} lanes)",
                s.rows,
                s.rows,
                s.connections()
            ),
            rate,
            "rows/s",
            ceiling_rate.map(|c| ("ceiling".to_string(), rate / c)),
            serde_json::json!({
                "secs": secs, "row_changes": w.changes, "peak_rss_mib": rss as f64 / 1048576.0,
                "insert_phase_secs": mid, "update_phase_secs": secs - mid,
                "cpu_secs": results.last().map(|r| r.3.clone()),
            }),
        );
        // on a machine where the run is CPU-bound, the CPU every process
        // spends is steadier than the wall time (BENCHMARKS.md)
        let per_million = 1e6 / w.changes as f64;
        report.add(
            "e2e",
            "CPU s per 1M row changes, every process (reshard, servers, bench)",
            cpu_total_median * per_million,
            "CPU s",
            ceiling_cpu_total.map(|c| ("ceiling's CPU".to_string(), c / cpu_total_median)),
            serde_json::json!({"ceiling_cpu_secs": ceiling_cpu_total.map(|c| c * per_million)}),
        );
        report.add(
            "e2e",
            "reshard peak RSS (VmHWM)",
            rss as f64 / 1048576.0,
            "MiB",
            None,
            serde_json::json!({}),
        );
    }
    Ok(())
}

/// The CPU seconds of every process in one run's [`Cpu::since`].
fn cpu_total(cpu: &serde_json::Value) -> f64 {
    cpu.as_object()
        .map(|m| m.values().filter_map(serde_json::Value::as_f64).sum())
        .unwrap_or(0.0)
}

/// The `forms` row: the loader in every [`Form`], each run taking the
/// forms in turn (from another first form each run) so that they share
/// the machine's moods; the median per form, and its ratio to
/// [`Form::Replace`].
async fn forms_row(
    b: &Bench,
    s: &Settings,
    w: &Workload,
    columns: &[String],
    rows: &[Row],
    report: &mut Report,
) -> Res<()> {
    let conns = s.connections();
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); Form::ALL.len()];
    let mut cpus: Vec<serde_json::Value> = vec![serde_json::Value::Null; Form::ALL.len()];
    for run in 0..s.runs {
        // each run starts at another form: the first load after the
        // workload has the servers to itself, later ones share them with
        // the purge of the earlier ones' undo
        for k in 0..Form::ALL.len() {
            let i = (k + run) % Form::ALL.len();
            let form = Form::ALL[i];
            b.reset("t")?;
            let (x, cpu) = replace_load(b, columns, rows, conns, s.batch_size(), form).await?;
            eprintln!(
                "bench: forms run {}: {:.0} row changes/s, {} , CPU s {cpu}",
                run + 1,
                w.changes as f64 / x,
                form.describe()
            );
            secs[i].push(x);
            cpus[i] = cpu;
        }
    }
    let base = median(secs[0].clone());
    for (i, form) in Form::ALL.into_iter().enumerate() {
        let x = median(secs[i].clone());
        report.add(
            "forms",
            form.describe(),
            w.changes as f64 / x,
            "rows/s",
            Some(("REPLACE".to_string(), base / x)),
            serde_json::json!({"secs": x, "connections": conns, "batch": s.batch_size(), "cpu_secs_last_run": cpus[i]}),
        );
    }
    Ok(())
}

/// The workload's upserts as the rule routes them (the target columns and
/// one row per change, in binlog order).
fn routed(cfg: &Path, file: &Path) -> Res<(Vec<String>, Vec<Row>)> {
    let shards: Vec<String> = (0..SHARDS).map(|s| format!("s{s}")).collect();
    let rules = load_dir(&cfg.with_file_name("rules"))?;
    let mut router = Router::new(rules, &shards)?;
    let mut f = BinlogFile::open(file)?;
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    while let Some(item) = f.next()? {
        let SourceItem::Rows(chunk) = item else {
            continue;
        };
        for change in &chunk.changes {
            for op in router.route(change, no_context())? {
                let OpKind::Upsert(values) = op.kind else {
                    return Err("the workload has no deletes".into());
                };
                columns.clone_from(&op.table.columns);
                let mut h = DefaultHasher::new();
                op.key_enc.hash(&mut h);
                rows.push(Row {
                    shard: op.shard,
                    hash: h.finish(),
                    values,
                    version: Value::Bytes(op.version.to_bytes().to_vec()),
                });
            }
        }
    }
    Ok((columns, rows))
}

/// One round trip: prepared SQL and its parameters, or a text script.
enum Statement {
    Prepared(String, Vec<Value>),
    Text(Vec<u8>),
    /// A statement of `width` parameters and its rows' values, one
    /// `COM_STMT_BULK_EXECUTE`.
    Bulk(String, usize, Vec<Value>),
}

/// The round trips that write one chunk of a shard's rows in `form`.
fn statements(form: Form, sh: usize, columns: &[String], chunk: &[&Row]) -> Vec<Statement> {
    let table = sql::qualified(&format!("s{sh}"), "t");
    let applied = format!(
        "INSERT INTO `s{sh}`.`_reshard_applied` (pipeline, shard, lane, binlog_file, binlog_pos) \
         VALUES ('bench', 's{sh}', 0, 'mysql-bin.000001', 4) ON DUPLICATE KEY UPDATE binlog_pos = VALUES(binlog_pos) + 1"
    );
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let replace_head = format!("REPLACE INTO {table} ({}) VALUES ", cols.join(", "));
    let key = [0usize];
    let params = |versioned: bool| -> Vec<Value> {
        chunk
            .iter()
            .flat_map(|r| {
                let v = versioned.then(|| r.version.clone());
                r.values.iter().cloned().chain(v)
            })
            .collect()
    };
    let text = |head: &str, tail: &str, versioned: bool| -> Vec<u8> {
        let mut out = head.as_bytes().to_vec();
        for (i, r) in chunk.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"(" } else { b", (" });
            for (j, v) in r
                .values
                .iter()
                .chain(versioned.then_some(&r.version))
                .enumerate()
            {
                if j > 0 {
                    out.extend_from_slice(b", ");
                }
                crate::literal::push_literal(&mut out, v);
            }
            out.push(b')');
        }
        out.extend_from_slice(tail.as_bytes());
        out
    };
    let holders_one = |width: usize| format!("({})", vec!["?"; width].join(", "));
    let holders = |width: usize| {
        let one = format!("({})", vec!["?"; width].join(", "));
        vec![one; chunk.len()].join(", ")
    };
    match form {
        Form::Replace => vec![Statement::Prepared(
            format!("{replace_head}{}", holders(cols.len())),
            params(false),
        )],
        Form::ReplaceText => vec![Statement::Text(text(&replace_head, "", false))],
        Form::Upsert => vec![Statement::Prepared(
            sql::upsert(&table, columns, &key, chunk.len()),
            params(true),
        )],
        Form::UpsertText => vec![Statement::Text(text(
            &sql::upsert_head(&table, columns),
            &sql::upsert_tail(columns, &key),
            true,
        ))],
        Form::UpsertBulk => vec![Statement::Bulk(
            sql::upsert(&table, columns, &key, 1),
            columns.len() + 1,
            params(true),
        )],
        Form::ReplaceBulk => vec![Statement::Bulk(
            format!("{replace_head}{}", holders_one(cols.len())),
            cols.len(),
            params(false),
        )],
        Form::UpsertTxn => vec![
            Statement::Text(b"BEGIN".to_vec()),
            Statement::Prepared(
                sql::upsert(&table, columns, &key, chunk.len()),
                params(true),
            ),
            Statement::Prepared(applied, Vec::new()),
            Statement::Text(b"COMMIT".to_vec()),
        ],
        Form::UpsertScript => {
            let head = format!("BEGIN; {}", sql::upsert_head(&table, columns));
            let tail = format!("{}; {applied}; COMMIT", sql::upsert_tail(columns, &key));
            vec![Statement::Text(text(&head, &tail, true))]
        }
    }
}

/// Loads `rows` with `conns` connections in `form`; returns the seconds
/// it took and the CPU seconds of each process.
async fn replace_load(
    b: &Bench,
    columns: &[String],
    rows: &[Row],
    conns: usize,
    batch: usize,
    form: Form,
) -> Res<(f64, serde_json::Value)> {
    let servers = b.targets.len();
    let per_server = (conns / servers).max(1);
    // each connection's rows, per shard, in order
    let mut queues: Vec<Vec<Vec<&Row>>> = vec![vec![Vec::new(); SHARDS]; servers * per_server];
    for r in rows {
        let c = (r.shard % servers) * per_server + (r.hash % per_server as u64) as usize;
        queues[c][r.shard].push(r);
    }
    let mut work: Vec<(usize, Vec<Statement>)> = Vec::new();
    for (c, per_shard) in queues.into_iter().enumerate() {
        let mut stmts = Vec::new();
        let mut chunks: Vec<std::slice::Chunks<&Row>> =
            per_shard.iter().map(|q| q.chunks(batch)).collect();
        // interleave the shards' chunks, as a mixed stream would
        loop {
            let mut any = false;
            for (sh, it) in chunks.iter_mut().enumerate() {
                if let Some(chunk) = it.next() {
                    any = true;
                    stmts.extend(statements(form, sh, columns, chunk));
                }
            }
            if !any {
                break;
            }
        }
        work.push((c / per_server, stmts));
    }
    let mut conns_open = Vec::new();
    for (server, stmts) in work {
        let ep = Endpoint::new(format!("target{server}"), b.targets[server].url(""));
        let conn = db::connect(&ep, Session::Write, Duration::from_secs(10)).await?;
        let wire = match form {
            Form::UpsertBulk | Form::ReplaceBulk => {
                Some(WireConn::connect(&ep, Session::Write, Duration::from_secs(10)).await?)
            }
            _ => None,
        };
        conns_open.push((conn, wire, stmts));
    }
    let cpu = Cpu::take(b, None);
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (mut conn, mut wire, stmts) in conns_open {
        tasks.spawn(async move {
            for st in stmts {
                match st {
                    Statement::Prepared(sql, params) => {
                        conn.exec_drop(sql, Params::Positional(params)).await?
                    }
                    Statement::Text(script) => conn.query_drop(script).await?,
                    Statement::Bulk(sql, width, params) => {
                        let Some(w) = wire.as_mut() else {
                            return Err("no wire connection".into());
                        };
                        let rows = w.bind_bulk(width);
                        params.iter().for_each(|v| rows.value(v));
                        w.exec_bulk(&sql).await?;
                    }
                }
            }
            conn.disconnect().await?;
            if let Some(w) = wire {
                w.close().await;
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok((t.elapsed().as_secs_f64(), Cpu::take(b, None).since(&cpu)))
}

/// Checks the shards against the source: row count, and an order-free
/// checksum of every row.
pub fn converged(b: &Bench, table: &str) -> Res<()> {
    converged_columns(b, table, "id, buyer, name, amount, created")
}

/// Checks that the shards of `table` hold the source's rows: the count
/// and a checksum of `columns` (a comma-separated list).
pub fn converged_columns(b: &Bench, table: &str, columns: &str) -> Res<()> {
    let agg = format!("COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS('|', {columns}))), 0)");
    let parse = |out: String| -> Res<(u64, u64)> {
        let mut it = out.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
            _ => Err(format!("unexpected checksum output {out:?}").into()),
        }
    };
    let want = parse(b.source.sql(&format!("SELECT {agg} FROM bench.{table}"))?)?;
    let mut got = (0, 0);
    for sh in 0..SHARDS {
        let (n, sum) = parse(
            b.target_of(sh)
                .sql(&format!("SELECT {agg} FROM s{sh}.{table}"))?,
        )?;
        got = (got.0 + n, got.1 + sum);
    }
    if got != want {
        return Err(format!(
            "the shards of {table} do not match the source: (rows, checksum) {got:?} against {want:?}"
        )
        .into());
    }
    Ok(())
}
