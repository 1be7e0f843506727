//! End-to-end: tail → derive → versioned write → checkpoint, against real
//! MariaDB servers, driving the real binary.

mod common;

use std::time::Duration;

use common::*;
use reshard::testkit::scenario::{Scenario, Workload, WorkloadOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_small_workload_converges() {
    let s = Scenario::create(cluster(), "smoke").unwrap();
    migrate(&s);
    let mut run = spawn_run(&s, &[]);
    // wait for the start checkpoint
    for _ in 0..100 {
        if s.checkpoint().await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut w = Workload::new(1);
    let mut conn = s.source().await.unwrap();
    w.run(
        &mut conn,
        &WorkloadOptions {
            operations: 300,
            seed: 1,
            rotate_every: 100,
        },
    )
    .await
    .unwrap();
    s.wait_caught_up(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    let diffs = s.compare(20).await.unwrap();
    let st = terminate(&mut run, Duration::from_secs(30));
    assert!(diffs.is_empty(), "{}\n{}", diffs.join("\n"), run_log(&s));
    assert!(st.success(), "{}", run_log(&s));
}
