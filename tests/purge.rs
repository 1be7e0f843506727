//! Replaying from a purged binlog is an error naming the missing file. Its
//! own test binary: it purges its source's binlogs.

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_a_purged_binlog_exits_2_naming_the_file() {
    let s = Scenario::create(cluster(), "purge").unwrap();
    migrate(&s);
    let (old, _) = s.source_head().await.unwrap();
    let mut c = s.source().await.unwrap();
    c.query_drop("INSERT INTO orders (id, buyer_id) VALUES (1, 1)")
        .await
        .unwrap();
    // MariaDB keeps a file until its binlog checkpoint moves on: retry
    let mut gone = false;
    for _ in 0..50 {
        c.query_drop("FLUSH BINARY LOGS").await.unwrap();
        let (head, _) = s.source_head().await.unwrap();
        c.query_drop(format!("PURGE BINARY LOGS TO '{head}'"))
            .await
            .unwrap();
        let files: Vec<mysql_async::Row> = c.query("SHOW BINARY LOGS").await.unwrap();
        if !files
            .iter()
            .any(|r| r.get::<String, _>(0).as_deref() == Some(old.as_str()))
        {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "could not purge {old}");
    let (head, pos) = s.source_head().await.unwrap();
    let out = reshard(
        &s,
        &[
            "replay",
            "--from",
            &format!("{old}:4"),
            "--to",
            &format!("{head}:{pos}"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&old), "names the missing file {old}: {err}");
    assert!(err.contains("purged"), "{err}");
}
