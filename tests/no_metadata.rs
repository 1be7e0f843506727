//! Without `binlog_row_metadata=FULL`, TABLE_MAP events carry no column
//! names, keys or (on MariaDB, with NO_LOG) signedness: names and keys come
//! from information_schema, and BIGINT UNSIGNED values above 2^63 must not
//! decode as negative numbers. Its own test binary: it changes a global
//! setting of its source server.

mod common;

use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::{Scenario, Workload, WorkloadOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_with_names_and_signedness_from_information_schema() {
    let c = cluster();
    c.source
        .sql("SET GLOBAL binlog_row_metadata = NO_LOG")
        .unwrap();
    let s = Scenario::create(c, "nometa").unwrap();
    migrate(&s);
    let (file, pos) = s.source_head().await.unwrap();
    let mut conn = s.source().await.unwrap();
    let mut w = Workload::new(7);
    w.run(
        &mut conn,
        &WorkloadOptions {
            operations: 1500,
            seed: 7,
            rotate_every: 0,
        },
    )
    .await
    .unwrap();
    conn.query_drop("INSERT INTO orders (id, buyer_id, big) VALUES (18446744073709551615, 5, 18446744073709551615)").await.unwrap();
    let mut run = spawn_run(&s, &["--from", &format!("{file}:{pos}")]);
    s.wait_caught_up(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    let diffs = s.compare(20).await.unwrap();
    terminate(&mut run, Duration::from_secs(30));
    assert!(diffs.is_empty(), "{}\n{}", diffs.join("\n"), run_log(&s));
    assert!(
        run_log(&s).contains("binlog_row_metadata is not FULL"),
        "warns about the fallback"
    );
}
