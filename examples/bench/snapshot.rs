//! Row 6, snapshot: the initial copy of `BENCH_SNAPSHOT_ROWS` pre-existing
//! rows (`reshard run` with no checkpoint, timed from the process start
//! until the copy is recorded done) against `mariadb-dump | mariadb` of
//! the same rows into the same shards: four pipelines at once, one per
//! shard, each dumping the rows of its shard (`--where 'crc32(buyer) % 4
//! = s'`, the rule's own expression) with extended inserts.

use std::process::Command;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::connect;
use reshard_testkit::MariaDb;

use crate::cpu::{children_seconds, counters, counters_since, Cpu, Stat};
use crate::env::{Bench, Settings, SHARDS};
use crate::load::converged;
use crate::report::Report;
use crate::workload::{insert_seq, COLUMNS};
use crate::Res;

pub async fn run(b: &Bench, s: &Settings, report: &mut Report) -> Res<()> {
    b.create_table("snap", COLUMNS)?;
    let n = s.snapshot_rows as u64;
    let mut c = b.source_conn().await?;
    let mut lo = 0;
    while lo < n {
        let hi = (lo + 100_000).min(n) - 1;
        c.query_drop(insert_seq("snap", lo, hi)).await?;
        lo = hi + 1;
    }
    c.disconnect().await?;
    let cfg = b.configure("snapshot", &["snap"], s)?;
    let mut r = b.run_reshard(&cfg, None)?;
    let cpu0 = Cpu::take(b, Some(r.pid()));
    let stmts0 = counters(b);
    let stat0 = Stat::take();
    let mut ctl = None;
    let copy_secs = loop {
        r.check_alive()?;
        if ctl.is_none() {
            ctl = connect(&b.targets[0].url("meta")).await.ok();
        }
        if let Some(c) = ctl.as_mut() {
            let state: Option<String> = c
                .query_first("SELECT state FROM reshard_snapshot")
                .await
                .unwrap_or(None);
            if state.as_deref() == Some("done") {
                break r.started.elapsed().as_secs_f64();
            }
        }
        if r.started.elapsed() > b.timeout {
            return Err("the initial copy did not finish in time".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let copy_idle = Stat::take().idle_cores_since(&stat0);
    let copy_cpu = Cpu::take(b, Some(r.pid())).since(&cpu0);
    let copy_stmts = counters_since(b, &stmts0);
    let rss = r.peak_rss();
    r.stop()?;
    converged(b, "snap")?;
    eprintln!(
        "bench: snapshot: reshard copy {:.0} rows/s, idle cores {copy_idle}, CPU s {copy_cpu}, targets {copy_stmts}",
        n as f64 / copy_secs
    );

    for sh in 0..SHARDS {
        b.target_of(sh).sql(&format!("TRUNCATE TABLE s{sh}.snap"))?;
    }
    let (cpu0, stmts0, clients0) = (Cpu::take(b, None), counters(b), children_seconds());
    let stat0 = Stat::take();
    let dump_secs = dump_load(b)?;
    let dump_idle = Stat::take().idle_cores_since(&stat0);
    let dump_cpu = Cpu::take(b, None).since(&cpu0);
    let dump_stmts = counters_since(b, &stmts0);
    let clients = ((children_seconds() - clients0) * 100.0).round() / 100.0;
    converged(b, "snap")?;
    eprintln!(
        "bench: snapshot: mariadb-dump | mariadb {:.0} rows/s, idle cores {dump_idle}, CPU s {dump_cpu} + clients {clients}, targets {dump_stmts}",
        n as f64 / dump_secs
    );
    let dump_rate = n as f64 / dump_secs;
    report.add(
        "snapshot",
        &format!("reshard initial copy of {n} rows"),
        n as f64 / copy_secs,
        "rows/s",
        Some((
            "mariadb-dump | mariadb".into(),
            (n as f64 / copy_secs) / dump_rate,
        )),
        serde_json::json!({"secs": copy_secs, "peak_rss_mib": rss as f64 / 1048576.0, "idle_cores": copy_idle, "cpu_secs": copy_cpu, "targets": copy_stmts}),
    );
    report.add(
        "snapshot",
        "mariadb-dump | mariadb, 4 pipelines (one per shard)",
        dump_rate,
        "rows/s",
        None,
        serde_json::json!({"secs": dump_secs, "idle_cores": dump_idle, "cpu_secs": dump_cpu, "clients_cpu_secs": clients, "targets": dump_stmts}),
    );
    Ok(())
}

fn client_args(m: &MariaDb) -> String {
    format!(
        "--no-defaults --protocol=tcp -h127.0.0.1 -P{} -uroot -p{}",
        m.port(),
        MariaDb::ROOT_PASSWORD
    )
}

/// Runs the four dump pipelines at once; returns the seconds.
fn dump_load(b: &Bench) -> Res<f64> {
    let t = Instant::now();
    let mut children = Vec::new();
    for sh in 0..SHARDS {
        let cmd = format!(
            "set -o pipefail; mariadb-dump {} --no-create-info --complete-insert --skip-add-locks --single-transaction --where='crc32(buyer) % 4 = {sh}' bench snap | mariadb {} s{sh}",
            client_args(&b.source),
            client_args(b.target_of(sh))
        );
        children.push(Command::new("bash").args(["-c", &cmd]).spawn()?);
    }
    for mut ch in children {
        let st = ch.wait()?;
        if !st.success() {
            return Err(format!("mariadb-dump | mariadb failed: {st}").into());
        }
    }
    Ok(t.elapsed().as_secs_f64())
}
