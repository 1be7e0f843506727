//! Failover safety (docs/architecture.md, "Errors, retries and
//! ownership"): `run` never resumes silently on a source that no longer
//! holds the checkpoint's history. A MariaDB source restored from a copy of
//! its data directory that lacks the last transactions (same address, same
//! server_id, same file names) is refused through its GTID state; a source
//! after `RESET MASTER` is refused, and continues on purpose after an epoch
//! raise with `--from … --force`.
//!
//! These tests stop the source and replace its data directory, so they take
//! turns on a cluster of their own.

mod common;

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use common::load::*;
use common::{migrate, reshard, run_log, spawn_run, terminate, wait_exit, wait_until};
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::{connect, Scenario};

/// `cp -a from/. to/` (to emptied first).
fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    std::fs::create_dir_all(to).unwrap();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// Runs `run` under load until it applied `n` more transactions, then
/// stops it with SIGTERM.
async fn apply_some(s: &Scenario, first_id: u64, n: u64) {
    let mut run = spawn_run(s, &[]);
    wait_until(s, "a checkpoint", Duration::from_secs(90), || async {
        checkpoint(s).await.is_some()
    })
    .await;
    let load = Load::start(s, first_id);
    load.wait_for(n, "the load", s).await;
    load.stop().await;
    wait_applied_to_now(s, "the run to apply the load").await;
    assert!(
        terminate(&mut run, Duration::from_secs(60)).success(),
        "{}",
        run_log(s)
    );
}

/// `run` must refuse: exit 2 within a minute; returns its log.
fn refused(s: &Scenario, log: &str) -> String {
    let before = run_log(s).len();
    let mut run: Child = spawn_run(s, &[]);
    let status = wait_exit(&mut run, Duration::from_secs(60));
    if status.is_none() {
        let _ = run.kill();
    }
    let text = run_log(s)[before..].to_string();
    assert_eq!(status.and_then(|st| st.code()), Some(2), "{log}: {text}");
    text
}

async fn anchor_gtid(s: &Scenario) -> String {
    let mut c = connect(&s.control_url).await.unwrap();
    let g: Option<String> = c
        .exec_first(
            "SELECT anchor_gtid FROM reshard_checkpoint WHERE pipeline = ?",
            (&s.name,),
        )
        .await
        .unwrap();
    g.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_restored_without_its_last_transactions_is_refused() {
    let mut c = own_cluster().await;
    let s = Scenario::create(&c, "fo_restore").unwrap();
    migrate(&s);
    apply_some(&s, 1, 100).await;

    // a copy of the data directory, taken while the server is stopped
    let backup = s.dir.path().join("datadir-backup");
    let datadir = c.source.datadir().to_path_buf();
    c.source.stop();
    copy_dir(&datadir, &backup);
    c.source.start_again().unwrap();

    // more transactions, applied by reshard: the checkpoint passes them
    apply_some(&s, 1_000_000, 100).await;
    let expected = anchor_gtid(&s).await;
    assert!(
        !expected.is_empty(),
        "the stop recorded the checkpoint's GTID state"
    );

    // the source comes back from the copy, without them, and writes a few
    // transactions of its own
    c.source.stop();
    copy_dir(&backup, &datadir);
    c.source.start_again().unwrap();
    let mut src = s.source().await.unwrap();
    for id in 2_000_000..2_000_003u64 {
        src.exec_drop("INSERT INTO orders (id, buyer_id) VALUES (?, 1)", (id,))
            .await
            .unwrap();
    }
    let found: Option<String> = src.query_first("SELECT @@gtid_binlog_pos").await.unwrap();
    drop(src);

    let text = refused(&s, "run against the restored source");
    eprintln!("{text}");
    for needle in [
        "gtid_binlog_pos",
        &format!("include {expected}"),
        &format!("found {}", found.unwrap_or_default()),
        "--from",
        "epoch",
        "replay --from-gtid",
    ] {
        assert!(text.contains(needle), "the refusal says {needle:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_master_is_refused_and_an_epoch_raise_continues() {
    let c = own_cluster().await;
    let s = Scenario::create(&c, "fo_reset").unwrap();
    migrate(&s);
    apply_some(&s, 1, 100).await;

    c.source.sql("RESET MASTER").unwrap();
    let text = refused(&s, "run after RESET MASTER");
    assert!(text.contains("--from") && text.contains("epoch"), "{text}");

    // on purpose: a higher epoch, from the source's new head
    s.configure("epoch = 1").unwrap();
    let (file, pos) = s.source_head().await.unwrap();
    let from = format!("{file}:{pos}");
    let mut run = spawn_run(&s, &["--from", &from, "--force"]);
    let load = Load::start(&s, 1_000_000);
    load.wait_for(100, "the load after the reset", &s).await;
    load.stop().await;
    converges_and_stops(&s, &mut run).await;
    // and a later restart resumes: the old history's anchor is gone
    let mut again = spawn_run(&s, &[]);
    let load = Load::start(&s, 2_000_000);
    load.wait_for(50, "the load after the restart", &s).await;
    load.stop().await;
    converges_and_stops(&s, &mut again).await;
    let out = reshard(&s, &["status", "--json"]);
    assert!(out.status.success());
}
