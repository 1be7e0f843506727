//! Shared by the integration tests: one MariaDB cluster per test binary
//! (a binlog source and two targets), and helpers to drive the real
//! `reshard` binary.
#![allow(dead_code)]

pub mod collations;
pub mod fixtures;
pub mod load;
pub mod scrape;
pub mod tables;

use std::process::{Child, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use reshard_testkit::scenario::Scenario;
use reshard_testkit::Cluster;

pub const BIN: &str = env!("CARGO_BIN_EXE_reshard");

pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| match Cluster::start(2) {
        Ok(c) => c,
        Err(e) => panic!("cannot start the MariaDB test cluster: {e}"),
    })
}

/// Runs a reshard command to completion.
pub fn reshard(s: &Scenario, args: &[&str]) -> Output {
    s.reshard(BIN, args).output().expect("run reshard")
}

/// `replay --binlog-dir DIR --from FROM` and `extra`: (exit code, output).
pub fn replay_files(
    s: &Scenario,
    dir: &std::path::Path,
    from: &str,
    extra: &[&str],
) -> (i32, String) {
    let mut args = vec![
        "replay",
        "--binlog-dir",
        dir.to_str().unwrap(),
        "--from",
        from,
    ];
    args.extend_from_slice(extra);
    let out = reshard(s, &args);
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// `reshard status --json`, asserting success.
pub fn status_json(s: &Scenario) -> serde_json::Value {
    let out = reshard(s, &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `reshard migrate`, asserting success.
pub fn migrate(s: &Scenario) {
    let out = reshard(s, &["migrate"]);
    assert!(
        out.status.success(),
        "migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `reshard run` in the background, stderr to a log file in the
/// scenario directory.
pub fn spawn_run(s: &Scenario, extra: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(s.dir.path().join("run.log"))
        .expect("log file");
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    s.reshard(BIN, &args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn reshard run")
}

/// Sends signal `sig` (e.g. `libc::SIGTERM`) to the child.
pub fn signal(child: &Child, sig: i32) {
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Waits at most `timeout` for the child to exit; `None` if it did not.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return Some(st);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, then wait (at most `timeout`) for a clean exit.
pub fn terminate(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    signal(child, libc::SIGTERM);
    match wait_exit(child, timeout) {
        Some(st) => st,
        None => {
            let _ = child.kill();
            panic!("reshard did not exit within {timeout:?} of SIGTERM");
        }
    }
}

/// SIGKILL: a crash at an arbitrary point.
pub fn crash(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

pub fn run_log(s: &Scenario) -> String {
    std::fs::read_to_string(s.dir.path().join("run.log")).unwrap_or_default()
}

/// Polls `cond` every 100 ms until it holds, or panics at the deadline with
/// the run log.
pub async fn wait_until<F, Fut>(s: &Scenario, what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while !cond().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}\n{}",
            run_log(s)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `sql` on the scenario's source database, in order.
pub async fn on_source(s: &Scenario, sql: &[&str]) {
    use mysql_async::prelude::Queryable;
    let mut src = s.source().await.unwrap();
    for q in sql {
        src.query_drop(*q)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
}

/// Starts `run`, waits until it has caught up with the source, and stops
/// it (it must exit 0).
pub async fn run_until_caught_up(s: &Scenario, extra: &[&str]) {
    let mut run = spawn_run(s, extra);
    s.wait_caught_up(Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(s)));
    let st = terminate(&mut run, Duration::from_secs(30));
    assert!(st.success(), "{}", run_log(s));
}
