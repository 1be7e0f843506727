//! Row 5, memory: peak RSS of `reshard run` while one large transaction
//! (`BENCH_MEMORY_BYTES` of binlog, default 1 GiB: one `INSERT … SELECT`
//! of ~1 KiB rows) streams through, from the process start until the
//! checkpoint passes the transaction. `VmHWM` is the kernel's high-water
//! mark, so polling is not needed.

use mysql_async::prelude::Queryable;

use crate::env::{Bench, Settings};
use crate::load::converged_columns;
use crate::report::Report;
use crate::Res;
use reshard::position::Position;

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
    let bytes = binlog_bytes(b, &start, &end)?;
    eprintln!(
        "bench: memory: one transaction of {rows} rows, {} MiB of binlog",
        bytes >> 20
    );
    let mut r = b.run_reshard(&cfg, Some(&start))?;
    let sampler = RssSampler::start(r.pid());
    let secs = r.wait_checkpoint(b, &end).await?;
    let rss = r.peak_rss();
    let timeline = sampler.stop();
    r.stop()?;
    eprintln!("bench: memory: RSS (s, MiB) {timeline:?}");
    converged_columns(b, "big", "id, buyer, pad")?;
    report.add(
        "memory",
        &format!("peak RSS, one {} MiB transaction ({rows} rows)", bytes >> 20),
        rss as f64 / 1048576.0,
        "MiB",
        None,
        serde_json::json!({"txn_bytes": bytes, "rows": rows, "secs": secs, "rows_per_s": rows as f64 / secs, "rss_timeline_s_mib": timeline}),
    );
    Ok(())
}

/// Bytes of binlog from `start` to `end`, also when the transaction made
/// the binlog rotate (one larger than `max_binlog_size` is written whole,
/// then the server moves to the next file): from `SHOW BINARY LOGS`.
fn binlog_bytes(b: &Bench, start: &Position, end: &Position) -> Res<u64> {
    if start.file == end.file {
        return Ok(end.pos.saturating_sub(start.pos));
    }
    let mut bytes = 0;
    for line in b.source.sql("SHOW BINARY LOGS")?.lines() {
        let mut f = line.split('\t');
        let (Some(name), Some(size)) = (f.next(), f.next()) else {
            continue;
        };
        let size: u64 = size.trim().parse().unwrap_or(0);
        if name == start.file {
            bytes += size.saturating_sub(start.pos);
        } else if name > start.file.as_str() && name < end.file.as_str() {
            bytes += size;
        } else if name == end.file {
            bytes += end.pos;
        }
    }
    Ok(bytes)
}

/// Samples a process's resident set (`VmRSS`) every 100 ms on a thread of
/// its own, keeping a sample whenever it moved by 8 MiB or more: when
/// the peak happens says which stage holds the memory.
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, u64)>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let t = std::time::Instant::now();
            let mut out: Vec<(f64, u64)> = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("VmRSS:"))
                            .and_then(|v| {
                                v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
                            })
                    })
                    .unwrap_or(0);
                let mib = kib >> 10;
                if out.last().is_none_or(|&(_, last)| last.abs_diff(mib) >= 8) {
                    out.push(((t.elapsed().as_secs_f64() * 10.0).round() / 10.0, mib));
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            out
        });
        RssSampler { stop, thread }
    }

    fn stop(self) -> Vec<(f64, u64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
