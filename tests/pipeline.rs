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

/// Acceptance: a random workload of 10,000 operations on two tables, with
/// the binlog rotating and the pipeline crashed (SIGKILL) or stopped
/// (SIGTERM) at random points at least 5 times, converges: the union of the
/// shards equals the source routed by the server's own CRC32(), with the
/// derived column right and nothing extra. Then the same binlog range is
/// applied a second time and must leave every target table unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_with_crashes_converges_and_replaying_the_range_changes_nothing() {
    use rand::{Rng, SeedableRng};
    let s = Scenario::create(cluster(), "torture").unwrap();
    migrate(&s);
    let (file, pos) = s.source_head().await.unwrap();
    let first = format!("{file}:{pos}");
    let mut run = spawn_run(&s, &["--from", &first]);

    let seed: u64 = std::env::var("RESHARD_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261122);
    let mut conn = s.source().await.unwrap();
    let workload = tokio::spawn(async move {
        let mut w = Workload::new(seed);
        for _ in 0..20 {
            w.run(
                &mut conn,
                &WorkloadOptions {
                    operations: 500,
                    seed,
                    rotate_every: 1500,
                },
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        Ok::<usize, reshard::testkit::TestkitError>(w.done)
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut stops = 0;
    while stops < 6 || !workload.is_finished() {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(150..700))).await;
        if rng.gen_bool(0.75) {
            crash(&mut run);
        } else {
            let st = terminate(&mut run, Duration::from_secs(30));
            assert!(st.success(), "SIGTERM must exit 0\n{}", run_log(&s));
        }
        stops += 1;
        run = spawn_run(&s, &[]);
        if stops > 40 {
            break;
        }
    }
    let done = workload.await.unwrap().unwrap();
    assert!(done >= 10_000, "only {done} operations ran");
    assert!(stops >= 5);
    eprintln!("workload: {done} operations, {stops} stops/crashes");
    s.wait_caught_up(Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    let diffs = s.compare(20).await.unwrap();
    assert!(
        diffs.is_empty(),
        "after {stops} stops:\n{}\n{}",
        diffs.join("\n"),
        run_log(&s)
    );
    let st = terminate(&mut run, Duration::from_secs(30));
    assert!(st.success(), "{}", run_log(&s));
    let log = run_log(&s);
    assert!(
        log.contains("mysql-bin.000"),
        "progress lines name positions"
    );

    // the same range again, from the very first position
    let before = s.target_fingerprint().await.unwrap();
    let mut again = spawn_run(&s, &["--from", &first, "--force"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.wait_caught_up(Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    let st = terminate(&mut again, Duration::from_secs(30));
    assert!(st.success(), "{}", run_log(&s));
    let after = s.target_fingerprint().await.unwrap();
    assert_eq!(
        before, after,
        "re-applying the binlog range changed a target"
    );
    assert!(s.compare(5).await.unwrap().is_empty());
}
