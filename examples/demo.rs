//! The demo: start a MariaDB source and two target servers, create a sample
//! `shop` schema with existing rows, run `reshard run` into 4 logical shards
//! spread over the two targets (initial copy, then streaming), write a
//! random workload on the source while it runs, then
//! check that the targets match the source routed by the server's own
//! `CRC32()`. Run it with `scripts/demo`.
//!
//! The rules are the repository's own examples, `shard-rules/orders.toml`
//! and `shard-rules/items.toml`, copied unchanged: the demo's source
//! database is `shop`, as they name it.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use reshard_testkit::scenario::{Scenario, Workload, WorkloadOptions};
use reshard_testkit::Cluster;

/// The example rule files the demo runs with (the tables its workload
/// writes; their routing is the one [`Scenario::compare`] checks).
const DEMO_RULES: [&str; 2] = ["orders.toml", "items.toml"];

#[tokio::main]
async fn main() -> ExitCode {
    match demo().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::from(2)
        }
    }
}

async fn demo() -> Result<bool, Box<dyn std::error::Error>> {
    let bin = reshard_testkit::reshard_binary("RESHARD_BIN");
    let bin = bin.to_string_lossy().into_owned();
    let ops: usize = std::env::var("DEMO_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);

    println!("==> starting MariaDB: 1 source (binlog ROW/FULL) + 2 targets on free loopback ports");
    let t = Instant::now();
    let cluster = Cluster::start(2)?;
    println!(
        "    source :{}  targets :{} :{}  ({:.1}s)",
        cluster.source.port(),
        cluster.targets[0].port(),
        cluster.targets[1].port(),
        t.elapsed().as_secs_f64()
    );

    let s = Scenario::create_in(&cluster, "demo", "shop")?;
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shard-rules");
    for file in DEMO_RULES {
        s.use_rule_file(&examples.join(file))?;
    }
    println!("==> config: {}", s.config.display());
    println!(
        "{}",
        std::fs::read_to_string(&s.config)?.replace(reshard_testkit::MariaDb::ROOT_PASSWORD, "***")
    );
    for file in DEMO_RULES {
        println!(
            "==> rule file {} (from shard-rules/):",
            s.dir.path().join("rules").join(file).display()
        );
        println!(
            "{}",
            std::fs::read_to_string(s.dir.path().join("rules").join(file))?
        );
    }

    println!("==> reshard migrate");
    let st = s.reshard(&bin, &["migrate"]).status()?;
    if !st.success() {
        return Err("reshard migrate failed".into());
    }

    let bulk: u64 = std::env::var("DEMO_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    println!("==> loading {bulk} orders and {bulk} items on the source before reshard starts");
    let (orders, items) = s.bulk_load(bulk).await?;

    println!("==> reshard run: initial copy without locks, then streaming (logs below are reshard's own, on stderr)");
    let mut run = s.reshard(&bin, &["run"]).stdout(Stdio::null()).spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.checkpoint().await?.is_none() {
        if Instant::now() > deadline {
            return Err("reshard run did not record its start checkpoint".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    println!("==> workload: {ops} random inserts/updates/deletes (shard-key and PK changes, re-inserts, latin1/utf8mb4, BIGINT UNSIGNED > 2^63, DECIMAL, DATETIME(6), TIMESTAMP, JSON, BLOB), binlog rotating");
    let mut conn = s.source().await?;
    let mut w = Workload::new(42);
    w.adopt(orders, items);
    let t = Instant::now();
    w.run(
        &mut conn,
        &WorkloadOptions {
            operations: ops,
            seed: 42,
            rotate_every: 2000,
        },
    )
    .await?;
    println!(
        "    {} operations in {:.1}s",
        w.done,
        t.elapsed().as_secs_f64()
    );

    println!("==> waiting for the checkpoint to reach the source head");
    s.wait_caught_up(Duration::from_secs(120)).await?;
    println!(
        "    caught up in {:.1}s after the workload ended",
        t.elapsed().as_secs_f64()
    );

    println!("==> comparing every shard with the source routed by SQL CRC32()");
    let diffs = s.compare(20).await?;
    for (shard, url) in &s.shard_urls {
        let mut c = reshard_testkit::scenario::connect(url).await?;
        use mysql_async::prelude::Queryable;
        let n: Option<(u64, u64)> = c
            .query_first("SELECT (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM items)")
            .await?;
        let (o, i) = n.unwrap_or((0, 0));
        println!("    {shard}: {o:>6} orders {i:>6} items");
    }

    println!("==> reshard dry-run (validates the plan against the live schemas and routes every row; writes nothing)");
    let out = s.reshard(&bin, &["dry-run"]).output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));

    unsafe {
        libc::kill(run.id() as i32, libc::SIGTERM);
    }
    let st = run.wait()?;
    println!("==> reshard run stopped on SIGTERM: {st}");
    let _ = Command::new("true").status();

    if diffs.is_empty() {
        println!("==> OK: the 4 shards hold exactly the source's rows, each on its rule's shard, derived column correct");
        Ok(true)
    } else {
        println!("==> MISMATCH:");
        for d in diffs {
            println!("    {d}");
        }
        Ok(false)
    }
}
