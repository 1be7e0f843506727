//! Scale-out (README, "Scale-out: several processes, one source";
//! docs/architecture.md, "Scale-out: shard subsets"): processes with
//! disjoint `[pipeline] shards` tail one source side by side, each applying
//! its own shards from its own checkpoint under its own shard leases. A
//! process claiming a shard that is applied already is refused, naming the
//! holder; a killed process's replacement resumes its subset; and a new
//! grouping of the shards resumes where the old subsets stopped.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::load::*;
use common::{cluster, crash, migrate, status_json, terminate, wait_until, BIN};
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::{connect, Scenario};

/// A copy of the scenario's config applying `shards` (none: every shard)
/// and streaming with its own replica `server_id`.
fn subset_config(s: &Scenario, file: &str, shards: &[&str], server_id: u32) -> PathBuf {
    let text = std::fs::read_to_string(&s.config).unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| match l.starts_with("server_id = ") {
            true => format!("server_id = {server_id}"),
            false => l.to_string(),
        })
        .collect();
    if !shards.is_empty() {
        let list: Vec<String> = shards.iter().map(|x| format!("{x:?}")).collect();
        // [pipeline] is the last section
        lines.push(format!("shards = [{}]", list.join(", ")));
    }
    let path = s.dir.path().join(file);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// `reshard run --config cfg` in the background, stderr to `log`.
fn spawn(s: &Scenario, cfg: &Path, log: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(s.dir.path().join(log))
        .unwrap();
    std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(cfg)
        .current_dir(s.dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn log_of(s: &Scenario, file: &str) -> String {
    std::fs::read_to_string(s.dir.path().join(file)).unwrap_or_default()
}

/// `reshard run --config cfg` to its end (a refusal).
fn refused(cfg: &Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pids the lease rows of `shards` name.
async fn lease_pids(s: &Scenario, shards: &[&str]) -> Vec<u32> {
    let mut c = connect(&s.control_url).await.unwrap();
    let mut pids = Vec::new();
    for shard in shards {
        let pid: Option<u32> = c
            .exec_first(
                "SELECT pid FROM reshard_lease WHERE pipeline = ? AND shard = ?",
                (&s.name, shard),
            )
            .await
            .unwrap();
        pids.extend(pid);
    }
    pids
}

async fn wait_lease(s: &Scenario, shards: &[&str], run: &Child, what: &str) {
    wait_until(s, what, Duration::from_secs(60), || async {
        let pids = lease_pids(s, shards).await;
        pids.len() == shards.len() && pids.iter().all(|p| *p == run.id())
    })
    .await;
}

/// Waits until the checkpoint of every key reaches the source head as it
/// is now.
async fn wait_all_applied(s: &Scenario, keys: &[&str], what: &str) {
    let now = head(s).await;
    for key in keys {
        wait_until(s, what, Duration::from_secs(120), || async {
            checkpoint_of(s, key).await.is_some_and(|c| c >= now)
        })
        .await;
    }
}

/// The pipelines whose lanes recorded applied positions on a shard.
async fn appliers(s: &Scenario, shard: &str) -> Vec<String> {
    let mut c = connect(&s.shard_urls[shard]).await.unwrap();
    c.query("SELECT DISTINCT pipeline FROM _reshard_applied ORDER BY pipeline")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disjoint_subsets_converge_an_owned_shard_is_refused_and_a_replacement_resumes() {
    let s = Scenario::create(cluster(), "so_pair").unwrap();
    migrate(&s);
    let a_cfg = subset_config(&s, "a.toml", &["s0", "s1"], 4501);
    let b_cfg = subset_config(&s, "b.toml", &["s2", "s3"], 4502);
    let (a_key, b_key) = ("so_pair/s0,s1", "so_pair/s2,s3");
    let mut a = spawn(&s, &a_cfg, "a.log");
    wait_lease(&s, &["s0", "s1"], &a, "the first subset to take its shards").await;
    // free shards, but the server id of a running process of the pipeline
    let (code, err) = refused(&subset_config(&s, "twin.toml", &["s2"], 4501));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("server_id 4501 is already used"), "{err}");
    let mut b = spawn(&s, &b_cfg, "b.log");
    let logs = |s: &Scenario| format!("a:\n{}\nb:\n{}", log_of(s, "a.log"), log_of(s, "b.log"));
    wait_until(
        &s,
        "both subsets' first checkpoints",
        Duration::from_secs(90),
        || async {
            checkpoint_of(&s, a_key).await.is_some() && checkpoint_of(&s, b_key).await.is_some()
        },
    )
    .await;
    let load = Load::start(&s, 1);
    load.wait_for(200, "the load to start", &s).await;
    wait_all_applied(&s, &[a_key, b_key], "both subsets to stream").await;

    // a third process claiming an owned shard: refused, naming the holder
    let c_cfg = subset_config(&s, "c.toml", &["s1", "s2"], 4503);
    let (code, err) = refused(&c_cfg);
    assert_eq!(code, Some(2), "{err}");
    let a_pid = format!("pid {}", a.id());
    for needle in ["already running on shard s1", a_key, &a_pid, "host "] {
        assert!(err.contains(needle), "the refusal names {needle:?}: {err}");
    }
    let (code, err) = refused(&subset_config(&s, "all.toml", &[], 4504));
    assert_eq!(code, Some(2), "every shard is owned: {err}");

    // kill -9 of one: its replacement resumes its subset
    crash(&mut a);
    let cp_before = checkpoint_of(&s, a_key).await.expect("a's checkpoint");
    let mut a2 = spawn(&s, &a_cfg, "a.log");
    wait_lease(&s, &["s0", "s1"], &a2, "the replacement to take s0 and s1").await;
    load.wait_for(200, "the load after the replacement", &s)
        .await;
    wait_all_applied(&s, &[a_key, b_key], "both subsets after the replacement").await;
    assert!(checkpoint_of(&s, a_key).await.unwrap() > cp_before);
    load.stop().await;

    wait_all_applied(&s, &[a_key, b_key], "both subsets to catch up").await;
    let diffs = s.compare(20).await.unwrap();
    assert!(diffs.is_empty(), "{}\n{}", diffs.join("\n"), logs(&s));
    assert_verified(&s, &logs(&s));
    // each shard was written by its own subset only
    assert_eq!(appliers(&s, "s0").await, vec![a_key.to_string()]);
    assert_eq!(appliers(&s, "s3").await, vec![b_key.to_string()]);
    // status shows every subset, its checkpoint and who applies it
    let st = status_json(&s);
    let subsets = st["subsets"].as_array().expect("subsets");
    assert_eq!(subsets.len(), 2, "{st}");
    for (sub, run) in subsets.iter().zip([&a2, &b]) {
        assert!(sub["checkpoint"].is_string(), "{st}");
        assert_eq!(sub["lag_bytes"], 0, "{st}");
        let running = sub["running"].as_str().unwrap_or_default();
        assert!(running.contains(&format!("pid {}", run.id())), "{st}");
    }
    assert!(terminate(&mut a2, Duration::from_secs(60)).success());
    assert!(terminate(&mut b, Duration::from_secs(60)).success());

    // back to one process for every shard: it resumes where the subsets
    // stopped (no copy: a copy would keep rows deleted since)
    let mut one = spawn(&s, &s.config, "one.log");
    let load = Load::start(&s, 1_000_000);
    load.wait_for(200, "the load for the single process", &s)
        .await;
    load.stop().await;
    wait_all_applied(&s, &[&s.name], "the single process to catch up").await;
    let log = log_of(&s, "one.log");
    assert!(
        log.contains("where the subsets that applied them stopped"),
        "{log}"
    );
    assert!(!log.contains("initial copy"), "{log}");
    let diffs = s.compare(20).await.unwrap();
    assert!(diffs.is_empty(), "{}\n{log}", diffs.join("\n"));
    assert_verified(&s, &log);
    assert!(terminate(&mut one, Duration::from_secs(60)).success());
}
