//! One owner per pipeline (README, "Running for weeks"; docs/architecture.md,
//! "Errors, retries and ownership"): a second `reshard run` on a running
//! pipeline refuses to start and names the holder, and after `kill -9` of
//! the holder a new process takes over at once, with no operator action,
//! and converges.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::load::*;
use common::{cluster, crash, migrate, run_log, spawn_run, wait_exit, wait_until};
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::{connect, Scenario};

/// The pids the lease rows of pipeline `name` record (one row per shard).
async fn lease_pids(s: &Scenario, name: &str) -> Vec<u32> {
    let Ok(mut c) = connect(&s.control_url).await else {
        return Vec::new();
    };
    c.exec("SELECT pid FROM reshard_lease WHERE pipeline = ?", (name,))
        .await
        .unwrap_or_default()
}

/// Waits until every lease row of the scenario's pipeline names `run`.
async fn wait_lease_held_by(s: &Scenario, run: &Child, what: &str) {
    let pid = run.id();
    wait_until(s, what, Duration::from_secs(60), || async {
        let pids = lease_pids(s, &s.name).await;
        !pids.is_empty() && pids.iter().all(|p| *p == pid)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_is_refused_and_a_killed_holder_is_replaced_at_once() {
    let s = Scenario::create(cluster(), "own_single").unwrap();
    migrate(&s);
    let mut first = spawn_run(&s, &[]);
    wait_until(
        &s,
        "the first checkpoint",
        Duration::from_secs(60),
        || async { checkpoint(&s).await.is_some() },
    )
    .await;
    wait_lease_held_by(&s, &first, "the first run to hold the lease").await;
    let load = Load::start(&s, 1);
    load.wait_for(100, "the load to start", &s).await;
    wait_applied_to_now(&s, "the first run to stream").await;

    // a second process on the same pipeline: refused, naming the holder
    let second = s
        .reshard(common::BIN, &["run"])
        .output()
        .expect("second run");
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "the second run: {err}");
    let pid = format!("pid {}", first.id());
    for needle in ["already running", "host ", &pid, "running since"] {
        assert!(err.contains(needle), "the refusal names {needle:?}: {err}");
    }
    assert_running(&mut first, &s, "after a second run was refused");

    // kill -9 of the holder: its sessions die with the process (the kernel
    // closes its sockets), so the server releases the lease at once
    crash(&mut first);
    let killed_at = Instant::now();
    let mut next = spawn_run(&s, &[]);
    wait_lease_held_by(&s, &next, "the new run to take the lease").await;
    let took = killed_at.elapsed();
    assert_running(&mut next, &s, "after taking over");
    load.wait_for(100, "the load after the takeover", &s).await;
    wait_applied_to_now(&s, "the new run to apply").await;
    eprintln!("the new run held the lease {took:?} after kill -9 of the holder");
    assert!(
        took < Duration::from_secs(30),
        "taking over after kill -9 took {took:?}\n{}",
        run_log(&s)
    );
    load.stop().await;
    converges_and_stops(&s, &mut next).await;
    assert!(wait_exit(&mut next, Duration::from_secs(1)).is_some());
}
