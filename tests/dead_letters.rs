//! `reshard dead-letters list|retry|drop` (issue 12): the round trip of
//! rows whose shard could not be derived, against real servers.
//!
//! Rows with a NULL shard key become dead letters; a retry under the same
//! rule keeps them (exit 1, error updated); the rule is fixed, `run` goes
//! on, and newer source changes of two of those keys are applied — one
//! moving the row to another shard, one in place. The retry then applies
//! the old changes at their own versions: the third row appears, the two
//! newer ones are not overwritten (nor resurrected on the old shard), and
//! `verify` exits 0. `drop` empties another table's letters. The letters
//! are counted per table in `reshard_dead_letters_total` and in `status`.

mod common;

use std::time::Duration;

use common::scrape::{free_port, scrape, sum};
use common::tables::{add_table, compare_table, head, only_own_rules, Table};
use common::*;
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::Scenario;

const T: Table = Table {
    name: "t",
    columns: "id INT NOT NULL, tenant INT NULL, note VARCHAR(20) NULL",
    key: "PRIMARY KEY (id)",
    shard: "crc32(tenant) % 4",
    shard_sql: "CRC32(COALESCE(tenant, 0)) % 4",
};

/// Another table whose letters are dropped.
const U: Table = Table {
    name: "u",
    shard: "crc32(tenant) % 4",
    ..T
};

fn out(s: &Scenario, args: &[&str]) -> (Option<i32>, String, String) {
    let o = reshard(s, args);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `dead-letters list --json`, asserting success.
fn letters(s: &Scenario, table: &str) -> serde_json::Value {
    let (code, stdout, stderr) = out(s, &["dead-letters", "list", "--json", "--table", table]);
    assert_eq!(code, Some(0), "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_shard_keys_round_trip_through_a_rule_fix_without_overwriting_newer_changes() {
    let s = Scenario::create(cluster(), "dlq").unwrap();
    only_own_rules(&s);
    add_table(&s, &T).await;
    add_table(&s, &U).await;
    s.configure("on_derive_error = \"dead-letter\"").unwrap();
    let port = free_port();
    s.configure(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\""))
        .unwrap();
    migrate(&s);
    let from = head(&s).await;
    on_source(
        &s,
        &[
            "INSERT INTO t VALUES (1, NULL, 'v1'), (2, NULL, 'w1'), (3, NULL, 'x1'), (4, 4, 'y1')",
            "INSERT INTO u VALUES (1, NULL, 'gone')",
        ],
    )
    .await;
    let mut run = spawn_run(&s, &["--from", &from]);
    s.wait_caught_up(Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    let t = format!("{}.t", s.source_db);
    let u = format!("{}.u", s.source_db);
    let m = scrape(port).await.expect("the metrics endpoint");
    let counted = |table: &str| sum(&m, "reshard_dead_letters_total", &[("table", table)]);
    assert_eq!((counted(&t), counted(&u)), (3.0, 1.0), "{m:?}");
    wait_until(
        &s,
        "status to count the letters",
        Duration::from_secs(60),
        || async {
            let figures = &status_json(&s)["process"]["figures"]["dead_letters"];
            figures[&t] == 3 && figures[&u] == 1
        },
    )
    .await;
    let (_, human, _) = out(&s, &["status"]);
    assert!(
        human.contains(&format!("dead letters 4 ({t} 3, {u} 1)")),
        "{human}"
    );
    assert!(
        terminate(&mut run, Duration::from_secs(30)).success(),
        "{}",
        run_log(&s)
    );

    let json = letters(&s, &t);
    assert_eq!(json["count"], 3, "{json:#}");
    let first = &json["dead_letters"][0];
    assert_eq!(first["table"], t.as_str());
    assert_eq!(first["key"], "(1)");
    assert_eq!(first["expression"], "crc32(tenant) % 4");
    assert!(first["position"].as_str().unwrap().contains(':'), "{first}");
    assert!(
        first["error"]
            .as_str()
            .unwrap()
            .contains("cannot derive the shard"),
        "{first}"
    );
    let (_, human, _) = out(&s, &["dead-letters", "list"]);
    assert!(
        human.contains("4 dead letter(s)") && human.contains("expression: crc32(tenant) % 4"),
        "{human}"
    );

    // the rule still fails: the letters stay, exit 1
    let (code, stdout, stderr) = out(&s, &["dead-letters", "retry", "--table", &t]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("retried 0 dead letter(s); 3 kept"),
        "{stdout}"
    );

    // fix the rule; newer changes of keys 1 (to another shard) and 2 (in place)
    let rule = s.dir.path().join("rules").join("t.toml");
    let text = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(
        &rule,
        text.replace("crc32(tenant) % 4", "crc32(coalesce(tenant, 0)) % 4"),
    )
    .unwrap();
    let mut src = s.source().await.unwrap();
    let moved: Option<u32> = src
        .query_first("SELECT seq FROM seq_1_to_50 WHERE CRC32(seq) % 4 <> CRC32(0) % 4 LIMIT 1")
        .await
        .unwrap();
    let moved = moved.unwrap();
    on_source(
        &s,
        &[
            &format!("UPDATE t SET tenant = {moved}, note = 'v2' WHERE id = 1"),
            "UPDATE t SET note = 'w2' WHERE id = 2",
        ],
    )
    .await;
    run_until_caught_up(&s, &[]).await;

    let (code, stdout, stderr) = out(&s, &["dead-letters", "retry", "--table", &t]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("retried 3 dead letter(s); 0 kept"),
        "{stdout}"
    );
    assert_eq!(letters(&s, &t)["count"], 0);
    let diffs = compare_table(&s, &T, 20).await;
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let (code, stdout, stderr) = out(&s, &["verify", "--table", &t]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");

    assert_eq!(letters(&s, &u)["count"], 1);
    let (code, stdout, _) = out(&s, &["dead-letters", "drop", "--table", &u]);
    assert_eq!((code, stdout.trim()), (Some(0), "dropped 1 dead letter(s)"));
    assert_eq!(letters(&s, &u)["count"], 0);
}
