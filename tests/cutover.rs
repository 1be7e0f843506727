//! The cut-over fence, `reshard wait --until` (issue 12), against real
//! servers: under an application's load the source is made read-only,
//! `wait --until now` returns once every shard has applied everything, and
//! `verify` then exits 0 at once (without re-checks). Before `run` starts,
//! the same fence times out with exit 1 and the lag of every shard. A GTID
//! fence (MariaDB) is reached at the source's last GTID, not at a later one.
//!
//! Its own test binary: `read_only` is a global setting of the source.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::{connect, Scenario, Workload, WorkloadOptions};

/// The source is writable again when the test ends, also on a panic.
struct Writable;

impl Drop for Writable {
    fn drop(&mut self) {
        let _ = cluster().source.sql("SET GLOBAL read_only = 0");
    }
}

fn out(s: &Scenario, args: &[&str]) -> (Option<i32>, String, String) {
    let o = reshard(s, args);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

async fn source_orders(s: &Scenario) -> u64 {
    let mut c = s.source().await.unwrap();
    let n: Option<u64> = c.query_first("SELECT COUNT(*) FROM orders").await.unwrap();
    n.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_then_wait_until_now_then_verify_is_clean() {
    let s = Scenario::create(cluster(), "cutover").unwrap();
    migrate(&s);
    let (file, pos) = s.source_head().await.unwrap();
    let from = format!("{file}:{pos}");
    let db = &s.source_db;
    cluster()
        .source
        .sql(&format!(
            "CREATE USER IF NOT EXISTS 'cut_app'@'%' IDENTIFIED BY 'cut-app-pw'; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON {db}.* TO 'cut_app'@'%'"
        ))
        .unwrap();
    let (orders, items) = s.bulk_load(300).await.unwrap();

    // nothing applies yet: the fence times out, naming every shard's lag
    let (code, stdout, stderr) = out(&s, &["wait", "--until", "now", "--timeout", "1"]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("timed out before "), "{stdout}");
    for shard in s.shard_urls.keys() {
        assert!(stdout.contains(&format!("shard {shard}: ")), "{stdout}");
    }

    let mut run = spawn_run(&s, &["--from", &from]);
    let app_url = format!(
        "mysql://cut_app:cut-app-pw@127.0.0.1:{}/{db}",
        cluster().source.port()
    );
    let load = tokio::spawn(async move {
        let mut conn = connect(&app_url).await.unwrap();
        let mut w = Workload::new(12);
        w.adopt(orders, items);
        let opts = WorkloadOptions {
            operations: 10,
            seed: 12,
            rotate_every: 0,
        };
        loop {
            if let Err(e) = w.run(&mut conn, &opts).await {
                return (w.done, e.to_string());
            }
        }
    });
    // the load is going: more orders than the bulk load
    wait_until(&s, "the load", Duration::from_secs(60), || async {
        source_orders(&s).await > 320
    })
    .await;

    let _writable = Writable;
    cluster().source.sql("SET GLOBAL read_only = 1").unwrap();
    let (done, error) = load.await.unwrap();
    assert!(
        error.contains("read-only") || error.contains("1290"),
        "{done}: {error}"
    );

    let started = Instant::now();
    let (code, stdout, stderr) = out(&s, &["wait", "--until", "now", "--timeout", "120"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}\n{}", run_log(&s));
    assert!(stdout.starts_with("reached "), "{stdout}");
    let (code, stdout, stderr) = out(&s, &["verify", "--rechecks", "0"]);
    assert_eq!(
        code,
        Some(0),
        "verify after the fence ({:?}):\n{stdout}\n{stderr}",
        started.elapsed()
    );
    // the same fence by GTID: the source's last one is reached, a later one not
    let gtid: Option<String> = s
        .source()
        .await
        .unwrap()
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap();
    let gtid = gtid.unwrap();
    let (code, stdout, stderr) = out(&s, &["wait", "--until", &gtid, "--timeout", "60"]);
    assert_eq!(code, Some(0), "{gtid}: {stdout}\n{stderr}");
    let (domain_server, seq) = gtid.split(',').next().unwrap().rsplit_once('-').unwrap();
    let later = format!("{domain_server}-{}", seq.parse::<u64>().unwrap() + 1000);
    let (code, stdout, _) = out(&s, &["wait", "--until", &later, "--timeout", "1"]);
    assert_eq!(code, Some(1), "{later}: {stdout}");
    assert!(stdout.contains("GTID not reached"), "{stdout}");
    let st = terminate(&mut run, Duration::from_secs(30));
    assert!(st.success(), "{}", run_log(&s));
}
