//! Row 7, small: many tiny transactions. `BENCH_SMALL_TXNS` (100,000)
//! single-row `INSERT` transactions, then as many single-row `UPDATE`
//! transactions, written by a loop on the source itself (one commit per
//! statement), then replayed by `reshard run` into emptied shards: row
//! changes and transactions per second, from the process start until the
//! checkpoint reaches the end, with peak RSS and every process's CPU.
//!
//! The other rows stream a few large transactions; this one is what a
//! busy OLTP source writes. Each transaction is a GTID event, a table
//! map, one row and a commit: the per-transaction work of the reader, the
//! coordinator and the checkpoint (channel depths, marks, positions)
//! weighs here and hardly anywhere else, so a change that helps large
//! transactions is checked here for what it costs small ones.

use mysql_async::prelude::Queryable;

use crate::cpu::{counters, counters_since, Cpu};
use crate::env::{Bench, Settings};
use crate::load::converged;
use crate::report::Report;
use crate::workload::COLUMNS;
use crate::Res;

/// A loop on the source: statement `body` (which reads the counter `i`)
/// once for each `i` in `1..=n`, each its own transaction (autocommit).
fn source_loop(n: usize, body: &str) -> String {
    format!(
        "BEGIN NOT ATOMIC DECLARE i INT DEFAULT 1; WHILE i <= {n} DO {body}; SET i = i + 1; END WHILE; END"
    )
}

pub async fn run(b: &Bench, s: &Settings, report: &mut Report) -> Res<()> {
    let n = s.small_txns;
    b.create_table("small", COLUMNS)?;
    b.reset("small")?;
    let cfg = b.configure("small", &["small"], s)?;
    let start = b.head().await?;
    let mut c = b.source_conn().await?;
    c.query_drop(source_loop(
        n,
        "INSERT INTO small VALUES (i * 7919 + 1, i % 10007, CONCAT('customer-', i), i % 1000, TIMESTAMP'2024-01-01 12:00:00' + INTERVAL i SECOND)",
    ))
    .await?;
    c.query_drop(source_loop(
        n,
        "UPDATE small SET amount = amount + 1 WHERE id = i * 7919 + 1",
    ))
    .await?;
    c.disconnect().await?;
    let end = b.head().await?;
    // one row per transaction: as many row changes as transactions
    let txns = 2 * n as u64;
    eprintln!("bench: small: {txns} transactions of one row, binlog {start} .. {end}");
    let mut r = b.run_reshard(&cfg, Some(&start))?;
    let cpu0 = Cpu::take(b, Some(r.pid()));
    let stmts0 = counters(b);
    let secs = r.wait_checkpoint(b, &end).await?;
    let cpu = Cpu::take(b, Some(r.pid())).since(&cpu0);
    let stmts = counters_since(b, &stmts0);
    let rss = r.peak_rss();
    r.stop()?;
    converged(b, "small")?;
    let rate = txns as f64 / secs;
    eprintln!(
        "bench: small: {rate:.0} row changes/s ({rate:.0} transactions/s), peak RSS {} MiB, CPU s {cpu}, targets {stmts}",
        rss >> 20
    );
    report.add(
        "small",
        &format!("reshard run, {txns} one-row transactions"),
        rate,
        "row changes/s",
        None,
        serde_json::json!({"secs": secs, "transactions": txns, "transactions_per_s": rate, "peak_rss_mib": rss as f64 / 1048576.0, "cpu_secs": cpu, "targets": stmts}),
    );
    Ok(())
}
