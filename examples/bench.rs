//! Throughput benchmark (`scripts/bench`): rows/s for binlog decode, for
//! end-to-end apply through `reshard run`, and for the same rows through a
//! plain batched `REPLACE` loader, all on this machine, so the figures are
//! read as ratios. Record results in BENCHMARKS.md with the command.
//!
//! `BENCH_ROWS` (default 200000) sets the row count.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Params, Value};
use reshard::config::Endpoint;
use reshard::db::{self, Flavor, Session};
use reshard::position::Position;
use reshard::source::{SourceItem, Tailer, TailerOptions};
use reshard_testkit::scenario::connect;
use reshard_testkit::{MariaDb, ServerOptions};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const TABLE: &str = "(id BIGINT UNSIGNED NOT NULL PRIMARY KEY, buyer INT NOT NULL, name VARCHAR(64) NOT NULL, amount DECIMAL(12,2) NOT NULL, created DATETIME(6) NOT NULL";

fn bin() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| {
            p.parent()
                .and_then(|d| d.parent())
                .map(|d| d.join("reshard"))
        })
        .unwrap_or_else(|| "reshard".into())
}

async fn head(url: &str) -> Res<Position> {
    let mut c = connect(url).await?;
    Ok(reshard::source::head(&mut c).await?)
}

#[tokio::main]
async fn main() -> Res<()> {
    let n: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let source = MariaDb::start(ServerOptions::source(1))?;
    let target = MariaDb::start(ServerOptions::plain(2))?;
    source.sql(&format!(
        "CREATE DATABASE bench; CREATE TABLE bench.t {TABLE}) ENGINE=InnoDB;"
    ))?;
    let mut ddl = String::from("CREATE DATABASE plain; ");
    ddl.push_str(&format!("CREATE TABLE plain.t {TABLE}) ENGINE=InnoDB; "));
    for s in 0..4 {
        ddl.push_str(&format!(
            "CREATE DATABASE s{s}; CREATE TABLE s{s}.t {TABLE}, _reshard_version BINARY(16) NOT NULL DEFAULT '') ENGINE=InnoDB; "
        ));
    }
    target.sql(&ddl)?;

    // the workload: n rows in 1000-row INSERTs
    let start = head(&source.url("")).await?;
    let mut c = connect(&source.url("bench")).await?;
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut sql = String::from("INSERT INTO t VALUES ");
        let mut params: Vec<Value> = Vec::new();
        for (j, i) in chunk.iter().enumerate() {
            if j > 0 {
                sql.push(',');
            }
            sql.push_str("(?,?,?,?,?)");
            params.push(Value::UInt(*i as u64 * 7919 + 1));
            params.push(Value::Int((*i % 10_007) as i64));
            params.push(Value::Bytes(format!("customer-{i}-ñ").into_bytes()));
            params.push(Value::Bytes(
                format!("{}.{:02}", i % 100_000, i % 100).into_bytes(),
            ));
            params.push(Value::Date(
                2024,
                1 + (*i % 12) as u8,
                1 + (*i % 28) as u8,
                12,
                0,
                0,
                (*i % 1_000_000) as u32,
            ));
        }
        c.exec_drop(sql, Params::Positional(params)).await?;
    }
    let load_secs = t.elapsed().as_secs_f64();
    let end = head(&source.url("")).await?;
    println!(
        "rows: {n} (source load {:.0} rows/s), binlog {start} .. {end}",
        n as f64 / load_secs
    );

    // 1. decode: the tailer alone
    let ep = Endpoint {
        name: "source".into(),
        url: source.url(""),
    };
    let budget = Duration::from_secs(10);
    let stream = db::connect(&ep, Session::Read, budget).await?;
    let schema = db::connect(&ep, Session::Read, budget).await?;
    let mut tailer = Tailer::start(
        stream,
        schema,
        start.clone(),
        TailerOptions {
            server_id: 77,
            epoch: 0,
            heartbeat: Duration::from_secs(1),
            flavor: Flavor::MariaDb,
            checksum: true,
            filter: Arc::new(|d: &str, t: &str| d == "bench" && t == "t"),
            hold: Default::default(),
        },
    )
    .await?;
    let t = Instant::now();
    let mut rows = 0usize;
    loop {
        match tailer.next().await? {
            SourceItem::Rows(chunk) => rows += chunk.changes.len(),
            SourceItem::Transaction(txn) => {
                if txn.end >= end {
                    break;
                }
            }
            SourceItem::Heartbeat(_) => {}
        }
    }
    let decode = rows as f64 / t.elapsed().as_secs_f64();
    tailer.close().await;

    // 2. end to end: reshard run into 4 shards on the target server
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("rules"))?;
    std::fs::write(
        dir.path().join("rules/t.toml"),
        "source = \"bench.t\"\nshard = \"crc32(buyer) % 4\"\nshards = [\"s0\", \"s1\", \"s2\", \"s3\"]\n",
    )?;
    let mut targets = String::new();
    for s in 0..4 {
        targets.push_str(&format!("s{s} = \"{}\"\n", target.url(&format!("s{s}"))));
    }
    let cfg = dir.path().join("reshard.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\nurl = \"{}\"\nserver_id = 78\n[control]\nurl = \"{}\"\n[targets]\n{targets}[pipeline]\nrules = \"rules\"\nprogress_interval_secs = 5\n",
            source.url(""),
            target.url("meta")
        ),
    )?;
    let st = std::process::Command::new(bin())
        .args(["migrate", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        return Err("migrate failed".into());
    }
    let t = Instant::now();
    let mut run = std::process::Command::new(bin())
        .args(["run", "--from", &start.to_string(), "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut ctl = connect(&target.url("meta")).await?;
    loop {
        let cp: Option<(String, u64)> = ctl
            .query_first("SELECT binlog_file, binlog_pos FROM reshard_checkpoint")
            .await
            .unwrap_or(None);
        if let Some((f, p)) = cp {
            if Position::new(f, p) >= end {
                break;
            }
        }
        if t.elapsed() > Duration::from_secs(900) {
            return Err("end-to-end apply did not finish in 15 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e2e = n as f64 / t.elapsed().as_secs_f64();
    unsafe {
        libc::kill(run.id() as i32, libc::SIGTERM);
    }
    run.wait()?;

    // 3. baseline: SELECT from the source, batched REPLACE, 2 connections
    let t = Instant::now();
    let mut loaders = Vec::new();
    for part in 0..2u64 {
        let src_url = source.url("bench");
        let dst_url = target.url("plain");
        loaders.push(tokio::spawn(async move {
            let e = |x: &dyn std::fmt::Display| x.to_string();
            let mut src = connect(&src_url).await.map_err(|x| e(&x))?;
            let mut dst = connect(&dst_url).await.map_err(|x| e(&x))?;
            let rows: Vec<mysql_async::Row> = src
                .exec("SELECT * FROM t WHERE id % 2 = ?", (part,))
                .await
                .map_err(|x| e(&x))?;
            for chunk in rows.chunks(500) {
                let mut sql = String::from("REPLACE INTO t VALUES ");
                let mut params = Vec::with_capacity(chunk.len() * 5);
                for (j, r) in chunk.iter().enumerate() {
                    if j > 0 {
                        sql.push(',');
                    }
                    sql.push_str("(?,?,?,?,?)");
                    params.extend(r.clone().unwrap());
                }
                dst.exec_drop(sql, Params::Positional(params))
                    .await
                    .map_err(|x| e(&x))?;
            }
            Ok::<(), String>(())
        }));
    }
    for l in loaders {
        l.await??;
    }
    let replace = n as f64 / t.elapsed().as_secs_f64();

    println!();
    println!("| stage | rows/s | vs REPLACE loader |");
    println!("|---|---:|---:|");
    println!(
        "| binlog decode (tailer) | {decode:.0} | {:.2} |",
        decode / replace
    );
    println!(
        "| end-to-end `reshard run` (4 shards, 2 lanes each) | {e2e:.0} | {:.2} |",
        e2e / replace
    );
    println!("| plain batched REPLACE loader (2 connections) | {replace:.0} | 1.00 |");
    Ok(())
}
