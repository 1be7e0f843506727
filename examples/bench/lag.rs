//! Row 4, lag under a paced source load.
//!
//! `reshard run` streams from the source head while a load generator
//! commits, every 10 ms on a fixed schedule, one transaction of
//! `BENCH_LAG_RATE / 100` row changes (half inserts of new rows, half
//! updates of existing ones) into `bench.lag`, for `BENCH_LAG_SECS`.
//! Beside it, a heartbeat writer sets `bench.hb.seq = k` every 100 ms
//! (autocommit) and notes the instant its COMMIT returned; a reader polls
//! the target shards every 10 ms for the highest `seq` they hold.
//!
//! **Heartbeat lag** of heartbeat k = the first poll of the targets that
//! shows `seq >= k` minus the instant the source acknowledged k's COMMIT,
//! both on this process's monotonic clock (resolution: the 10 ms poll).
//! So it is what a reader of the targets sees: binlog shipping, decode,
//! routing, batching (linger), the apply and its commit. Reported: p50,
//! p99 and max over every heartbeat of the run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use reshard_testkit::scenario::connect;

use crate::env::{Bench, Settings};
use crate::report::Report;
use crate::workload::{insert_seq, COLUMNS};
use crate::Res;

/// Rows present before the run, which the updates cycle over.
const EXISTING: u64 = 50_000;
/// Ids of rows inserted during the run start here (in `seq` terms).
const NEW_BASE: u64 = 100_000_000;

pub async fn run(b: &Bench, s: &Settings, report: &mut Report) -> Res<()> {
    b.create_table("lag", COLUMNS)?;
    b.create_table(
        "hb",
        "id INT NOT NULL PRIMARY KEY, seq BIGINT NOT NULL, ts DATETIME(6) NOT NULL",
    )?;
    let cfg = b.configure("lag", &["lag", "hb"], s)?;
    let mut src = b.source_conn().await?;
    src.query_drop(insert_seq("lag", 0, EXISTING - 1)).await?;
    let start = b.head().await?;
    let mut r = b.run_reshard(&cfg, Some(&start))?;
    src.query_drop("INSERT INTO hb VALUES (1, 0, NOW(6))")
        .await?;
    let mut reader = Reader::connect(b).await?;
    let ready = Instant::now();
    while reader.seq().await? < 0 {
        r.check_alive()?;
        if ready.elapsed() > Duration::from_secs(60) {
            return Err("the heartbeat row did not reach the targets in 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let acks: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None]));
    let secs = Duration::from_secs(s.lag_secs);
    let generator = tokio::spawn(generate(src, s.lag_rate, secs));
    let beats = tokio::spawn(heartbeats(b.source_conn().await?, acks.clone(), secs));
    let mut lags: Vec<f64> = Vec::new();
    let mut seen = 0i64;
    let mut written_all: Option<(i64, Instant)> = None;
    loop {
        let now_seq = reader
            .seq()
            .await
            .map_err(|e| format!("heartbeat reader: {e}"))?;
        let now = Instant::now();
        while seen < now_seq {
            seen += 1;
            let ack = acks
                .lock()
                .ok()
                .and_then(|a| a.get(seen as usize).copied().flatten());
            lags.push(ack.map_or(0.0, |a| now.saturating_duration_since(a).as_secs_f64()));
        }
        if written_all.is_none() && beats.is_finished() {
            let total = acks.lock().map(|a| a.len() as i64 - 1).unwrap_or(0);
            written_all = Some((total, Instant::now()));
        }
        if let Some((total, at)) = written_all {
            if seen >= total || at.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
        r.check_alive()?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (changes, load_secs) = generator
        .await?
        .map_err(|e| format!("load generator: {e}"))?;
    beats.await?.map_err(|e| format!("heartbeat writer: {e}"))?;
    let total = written_all.map_or(0, |w| w.0);
    let rss = r.peak_rss();
    r.stop()?;
    let unseen = total - seen;
    lags.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lags.get(((lags.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let achieved = changes as f64 / load_secs;
    let details = serde_json::json!({
        "target_rate": s.lag_rate, "achieved_rate": achieved, "secs": load_secs,
        "heartbeats": total, "unseen_after_30s": unseen,
        "p50_ms": pct(0.5) * 1e3, "p99_ms": pct(0.99) * 1e3, "max_ms": pct(1.0) * 1e3,
        "peak_rss_mib": rss as f64 / 1048576.0,
    });
    eprintln!("bench: lag: {details}");
    let name =
        |p: &str| format!("heartbeat lag {p} at {achieved:.0} row changes/s for {load_secs:.0} s");
    report.add(
        "lag",
        &name("p50"),
        pct(0.5) * 1e3,
        "ms",
        None,
        details.clone(),
    );
    report.add("lag", &name("p99"), pct(0.99) * 1e3, "ms", None, details);
    if unseen > 0 {
        return Err(format!("{unseen} heartbeat(s) never reached the targets").into());
    }
    Ok(())
}

/// The paced load; returns the row changes committed and the seconds.
async fn generate(mut c: Conn, rate: u64, secs: Duration) -> Res<(u64, f64)> {
    let per_tick = (rate / 100).max(2);
    let inserts = per_tick / 2;
    let updates = per_tick - inserts;
    let t = Instant::now();
    let mut next = tokio::time::Instant::now();
    let (mut new_seq, mut upd_seq, mut changes) = (NEW_BASE, 0u64, 0u64);
    while t.elapsed() < secs {
        tokio::time::sleep_until(next).await;
        next += Duration::from_millis(10);
        c.query_drop("START TRANSACTION").await?;
        c.query_drop(insert_seq("lag", new_seq, new_seq + inserts - 1))
            .await?;
        if upd_seq + updates > EXISTING {
            upd_seq = 0;
        }
        c.query_drop(format!(
            "UPDATE lag SET amount = amount + 1 WHERE id BETWEEN {} AND {}",
            upd_seq * 7919 + 1,
            (upd_seq + updates - 1) * 7919 + 1
        ))
        .await?;
        c.query_drop("COMMIT").await?;
        new_seq += inserts;
        upd_seq += updates;
        changes += inserts + updates;
    }
    Ok((changes, t.elapsed().as_secs_f64()))
}

/// Sets `hb.seq` to 1, 2, … every 100 ms, noting each COMMIT's return.
async fn heartbeats(
    mut c: Conn,
    acks: Arc<Mutex<Vec<Option<Instant>>>>,
    secs: Duration,
) -> Res<()> {
    let t = Instant::now();
    let mut next = tokio::time::Instant::now();
    let mut k = 0u64;
    while t.elapsed() < secs {
        tokio::time::sleep_until(next).await;
        next += Duration::from_millis(100);
        k += 1;
        if let Ok(mut a) = acks.lock() {
            a.push(None);
        }
        c.exec_drop("UPDATE hb SET seq = ?, ts = NOW(6) WHERE id = 1", (k,))
            .await?;
        let now = Instant::now();
        if let Ok(mut a) = acks.lock() {
            a[k as usize] = Some(now);
        }
    }
    Ok(())
}

/// Polls both target servers for the highest heartbeat they hold.
struct Reader {
    conns: Vec<(Conn, String)>,
}

impl Reader {
    async fn connect(b: &Bench) -> Res<Reader> {
        let mut conns = Vec::new();
        for (i, t) in b.targets.iter().enumerate() {
            let shards: Vec<String> = (0..crate::env::SHARDS)
                .filter(|s| s % b.targets.len() == i)
                .map(|s| format!("SELECT seq FROM s{s}.hb"))
                .collect();
            let sql = format!(
                "SELECT COALESCE(MAX(seq), -1) FROM ({}) x",
                shards.join(" UNION ALL ")
            );
            conns.push((connect(&t.url("")).await?, sql));
        }
        Ok(Reader { conns })
    }

    async fn seq(&mut self) -> Res<i64> {
        let mut best = -1;
        for (c, sql) in &mut self.conns {
            let v: Option<i64> = c.query_first(sql.as_str()).await?;
            best = best.max(v.unwrap_or(-1));
        }
        Ok(best)
    }
}
