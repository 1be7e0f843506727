//! Row 5, memory: peak RSS of `reshard run` while one large transaction
//! (`BENCH_MEMORY_BYTES` of binlog, default 1 GiB: one `INSERT … SELECT`
//! of ~1 KiB rows) streams through, from the process start until the
//! checkpoint passes the transaction. `VmHWM` is the kernel's high-water
//! mark, so polling is not needed.

use mysql_async::prelude::Queryable;

use crate::env::{Bench, Settings};
use crate::load::converged_count;
use crate::report::Report;
use crate::Res;

/// Bytes of padding per row.
const PAD: u64 = 1000;

pub async fn run(b: &Bench, s: &Settings, report: &mut Report) -> Res<()> {
    b.create_table(
        "big",
        "id BIGINT UNSIGNED NOT NULL PRIMARY KEY, buyer INT NOT NULL, pad VARCHAR(2000) NOT NULL",
    )?;
    let cfg = b.configure("memory", &["big"], s)?;
    // a row image is ~ PAD + 20 bytes in the binlog
    let rows = (s.memory_bytes / (PAD + 20)).max(1);
    let start = b.head().await?;
    let mut c = b.source_conn().await?;
    c.query_drop(format!(
        "INSERT INTO big SELECT seq, seq % 10007, CONCAT(seq, ':', REPEAT(CHAR(65 + seq % 26), {PAD})) FROM seq_1_to_{rows}"
    ))
    .await?;
    c.disconnect().await?;
    let end = b.head().await?;
    let bytes = end.pos.saturating_sub(start.pos);
    eprintln!(
        "bench: memory: one transaction of {rows} rows, {} MiB of binlog",
        bytes >> 20
    );
    let mut r = b.run_reshard(&cfg, Some(&start))?;
    let secs = r.wait_checkpoint(b, &end).await?;
    let rss = r.peak_rss();
    r.stop()?;
    converged_count(b, "big", rows)?;
    report.add(
        "memory",
        &format!("peak RSS, one {} MiB transaction ({rows} rows)", bytes >> 20),
        rss as f64 / 1048576.0,
        "MiB",
        None,
        serde_json::json!({"txn_bytes": bytes, "rows": rows, "secs": secs, "rows_per_s": rows as f64 / secs}),
    );
    Ok(())
}
