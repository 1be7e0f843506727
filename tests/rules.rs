//! Rules against real servers: `where` on both row images (copy, dry-run,
//! stream and replay), and column versions that keep binlog order for
//! changes of one key with equal column values.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::{connect, Scenario};

/// Adds `table` to the scenario: on the source with `columns`, on every
/// shard with the version column too, and a rule file `rule` for it.
async fn add_table(s: &Scenario, table: &str, columns: &str, rule: &str) {
    let mut src = s.source().await.unwrap();
    src.query_drop(format!("CREATE TABLE `{table}` ({columns}) ENGINE=InnoDB"))
        .await
        .unwrap();
    for url in s.shard_urls.values() {
        let mut t = connect(url).await.unwrap();
        t.query_drop(format!(
            "CREATE TABLE `{table}` ({columns}, _reshard_version BINARY(16) NOT NULL DEFAULT '') ENGINE=InnoDB"
        ))
        .await
        .unwrap();
    }
    std::fs::write(
        s.dir.path().join("rules").join(format!("{table}.toml")),
        format!(
            "source = \"{}.{table}\"\nshards = [\"s0\", \"s1\", \"s2\", \"s3\"]\n{rule}\n",
            s.source_db
        ),
    )
    .unwrap();
}

/// A test table as the targets must hold it.
struct Table {
    name: &'static str,
    /// SQL rendering a row as text, the same on source and targets.
    row: &'static str,
    /// SQL computing a source row's shard index.
    shard: &'static str,
    /// SQL condition of the source rows that belong on the targets.
    filter: &'static str,
}

/// The differences between the targets and the source's rows that pass
/// the table's filter, routed by its shard (empty when they are equal).
async fn differences(s: &Scenario, t: &Table) -> Vec<String> {
    let mut src = s.source().await.unwrap();
    let rows: Vec<(u64, String)> = src
        .query(format!(
            "SELECT {}, {} FROM `{}` WHERE {}",
            t.shard, t.row, t.name, t.filter
        ))
        .await
        .unwrap();
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (n, text) in rows {
        want.entry(format!("s{n}")).or_default().insert(text);
    }
    let mut diffs = Vec::new();
    for (name, url) in &s.shard_urls {
        let mut c = connect(url).await.unwrap();
        let got: BTreeSet<String> = c
            .query(format!("SELECT {} FROM `{}`", t.row, t.name))
            .await
            .unwrap()
            .into_iter()
            .collect();
        let want = want.remove(name).unwrap_or_default();
        for r in want.difference(&got) {
            diffs.push(format!("{}@{name}: missing or different: {r}", t.name));
        }
        for r in got.difference(&want) {
            diffs.push(format!("{}@{name}: extra or different: {r}", t.name));
        }
    }
    diffs
}

/// Stops `run` (which must exit cleanly) and asserts that the targets
/// equal the routed source and that nothing was dead-lettered.
async fn stop_and_compare(s: &Scenario, run: &mut Child, t: &Table) {
    let diffs = differences(s, t).await;
    let st = terminate(run, Duration::from_secs(30));
    assert!(st.success(), "{}", run_log(s));
    assert!(diffs.is_empty(), "{}\n{}", diffs.join("\n"), run_log(s));
    assert_eq!(dead_letters(s).await, vec![]);
}

/// Waits until the checkpoint reaches the source head; fails at once,
/// with the log, if `run` exits first.
async fn caught_up_while_running(s: &Scenario, run: &mut Child) {
    let (file, pos) = s.source_head().await.unwrap();
    let seq = |f: &str| f.rsplit('.').next().and_then(|n| n.parse::<u64>().ok());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(st) = run.try_wait().unwrap() {
            panic!(
                "reshard run exited ({st}) before catching up:\n{}",
                run_log(s)
            );
        }
        if let Some((f, p)) = s.checkpoint().await.unwrap() {
            if (seq(&f), p) >= (seq(&file), pos) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not caught up with {file}:{pos}:\n{}",
            run_log(s)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn dead_letters(s: &Scenario) -> Vec<(String, String)> {
    let mut c = connect(&s.control_url).await.unwrap();
    c.query("SELECT row_key, error FROM reshard_dead_letter")
        .await
        .unwrap()
}

/// Deletes every row and tombstone of `table` on the targets.
async fn wipe_targets(s: &Scenario, table: &str) {
    for url in s.shard_urls.values() {
        let mut t = connect(url).await.unwrap();
        t.query_drop(format!(
            "DELETE FROM `{table}`; DELETE FROM _reshard_tombstone"
        ))
        .await
        .unwrap();
    }
}

/// `reshard replay` of `from` up to the source head, asserting exit 0,
/// targets equal to the routed source and no dead letter.
async fn replay_and_compare(s: &Scenario, from: &str, t: &Table) {
    let (f, p) = s.source_head().await.unwrap();
    let out = reshard(s, &["replay", "--from", from, "--to", &format!("{f}:{p}")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "replay: {stderr}");
    let diffs = differences(s, t).await;
    assert!(
        diffs.is_empty(),
        "replayed:\n{}\n{stderr}",
        diffs.join("\n")
    );
    assert_eq!(dead_letters(s).await, vec![]);
}

const ACCT: &str = "id INT NOT NULL PRIMARY KEY, tenant_id INT NULL, note VARCHAR(20) NULL";
const ACCT_RULE: &str = "where = \"tenant_id IS NOT NULL\"\nshard = \"crc32(tenant_id) % 4\"";
const ACCT_TABLE: Table = Table {
    name: "acct",
    row: "CONCAT_WS('|', id, IFNULL(tenant_id, 'NULL'), IFNULL(note, 'NULL'))",
    shard: "CRC32(tenant_id) % 4",
    filter: "tenant_id IS NOT NULL",
};

/// Every transition of a row through `where`: never matching (update,
/// key change, delete), starting, stopping (also with a key change) and
/// going on matching (also across shards), one statement each and several
/// in one rows event.
const TRANSITIONS: &[&str] = &[
    "INSERT INTO acct VALUES (1, NULL, 'n1'), (2, NULL, 'n2'), (3, NULL, 'n3'), (4, 10, 'm4'), (5, 11, 'm5'), (6, 12, 'm6'), (7, 13, 'm7'), (8, NULL, 'n8'), (9, 14, 'm9')",
    // never matched: update, delete, key change
    "UPDATE acct SET note = 'n1b' WHERE id = 1",
    "DELETE FROM acct WHERE id = 2",
    "UPDATE acct SET id = 108 WHERE id = 8",
    // starts matching
    "UPDATE acct SET tenant_id = 20 WHERE id = 3",
    // stops matching, then starts again on another shard
    "UPDATE acct SET tenant_id = NULL WHERE id = 4",
    "UPDATE acct SET tenant_id = 31, note = 'm4b' WHERE id = 4",
    // both match: same shard, another shard, a key change
    "UPDATE acct SET note = 'm5b' WHERE id = 5",
    "UPDATE acct SET tenant_id = 17 WHERE id = 5",
    "UPDATE acct SET id = 106 WHERE id = 6",
    // stops matching with a key change
    "UPDATE acct SET id = 109, tenant_id = NULL WHERE id = 9",
    // a matching row deleted
    "DELETE FROM acct WHERE id = 7",
    // every kind at once, in one rows event
    "UPDATE acct SET note = CONCAT(IFNULL(note, ''), '!')",
    "UPDATE acct SET tenant_id = IF(tenant_id IS NULL, 40 + id % 3, NULL) WHERE id IN (1, 3, 106, 108)",
    "DELETE FROM acct WHERE id IN (1, 3, 108)",
];

/// Issue 8, item 5: an update or delete of a row that never matched
/// `where` (a NULL tenant, whose shard cannot be derived) was routed
/// through the shard expression and halted the pipeline. Each transition
/// must apply as `where` says, while streaming and in a replay, with no
/// derive error and no dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_is_evaluated_on_the_before_image_streamed_and_replayed() {
    let s = Scenario::create(cluster(), "rwstream").unwrap();
    add_table(&s, "acct", ACCT, ACCT_RULE).await;
    migrate(&s);
    let (file, pos) = s.source_head().await.unwrap();
    let from = format!("{file}:{pos}");
    let mut run = spawn_run(&s, &["--from", &from]);
    let mut src = s.source().await.unwrap();
    for q in TRANSITIONS {
        src.query_drop(*q).await.unwrap();
    }
    caught_up_while_running(&s, &mut run).await;
    stop_and_compare(&s, &mut run, &ACCT_TABLE).await;
    assert!(!run_log(&s).contains("cannot derive"), "{}", run_log(&s));

    // the same range again, on empty targets
    wipe_targets(&s, "acct").await;
    replay_and_compare(&s, &from, &ACCT_TABLE).await;
}

/// Issue 8, item 5: the initial copy and dry-run (its sample and its
/// binlog range) apply `where` the same way: rows that do not match are
/// neither copied, counted nor failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_applies_to_the_copy_and_to_dry_run() {
    let s = Scenario::create(cluster(), "rwcopy").unwrap();
    add_table(&s, "acct", ACCT, ACCT_RULE).await;
    migrate(&s);
    let (file, pos) = s.source_head().await.unwrap();
    let mut src = s.source().await.unwrap();
    for q in TRANSITIONS {
        src.query_drop(*q).await.unwrap();
    }
    src.query_drop("INSERT INTO acct VALUES (200, NULL, 'n200'), (201, 50, 'm201')")
        .await
        .unwrap();
    let (head, hpos) = s.source_head().await.unwrap();

    let out = reshard(
        &s,
        &[
            "dry-run",
            "--json",
            "--sample",
            "100000",
            "--from",
            &format!("{file}:{pos}"),
            "--to",
            &format!("{head}:{hpos}"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{json:#}");
    let acct = &json["tables"]["rwcopy_src.acct"];
    assert_eq!(acct["failures_total"], 0, "{acct:#}");
    let counts: Vec<(u64, u64)> = src
        .query(format!(
            "SELECT {}, COUNT(*) FROM acct WHERE {} GROUP BY 1",
            ACCT_TABLE.shard, ACCT_TABLE.filter
        ))
        .await
        .unwrap();
    let per_shard: u64 = acct["per_shard"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        per_shard,
        counts.iter().map(|c| c.1).sum::<u64>(),
        "{acct:#}"
    );
    for (n, c) in counts {
        assert_eq!(acct["per_shard"][format!("s{n}")], c, "{acct:#}");
    }
    assert!(acct["binlog_ops_per_shard"].is_object(), "{acct:#}");

    let mut run = spawn_run(&s, &[]);
    caught_up_while_running(&s, &mut run).await;
    src.query_drop("UPDATE acct SET tenant_id = 51 WHERE id = 200")
        .await
        .unwrap();
    src.query_drop("UPDATE acct SET tenant_id = NULL WHERE id = 201")
        .await
        .unwrap();
    caught_up_while_running(&s, &mut run).await;
    stop_and_compare(&s, &mut run, &ACCT_TABLE).await;
}

const PROD: &str =
    "id INT NOT NULL PRIMARY KEY, note VARCHAR(20) NULL, updated_at DATETIME NOT NULL";
const PROD_TABLE: Table = Table {
    name: "prod",
    row: "CONCAT_WS('|', id, IFNULL(note, 'NULL'), updated_at)",
    shard: "CRC32(id) % 4",
    filter: "TRUE",
};

/// Issue 8, item 6: with `version = { column = "updated_at" }` at second
/// precision, changes of one key in one rows event got equal versions, so
/// a key deleted and re-inserted by one statement stayed deleted and the
/// second of two updates was ignored. Every change below happens in the
/// same second, in transactions of several statements and in single rows
/// events; applied one operation per batch (so batching cannot hide a
/// tie), live and replayed, the targets hold the final source rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_version_ties_keep_binlog_order() {
    let s = Scenario::create(cluster(), "rcolver").unwrap();
    add_table(
        &s,
        "prod",
        PROD,
        "shard = \"crc32(id) % 4\"\nversion = { column = \"updated_at\" }",
    )
    .await;
    s.configure("batch_size = 1").unwrap();
    migrate(&s);
    let (file, pos) = s.source_head().await.unwrap();
    let from = format!("{file}:{pos}");
    let mut run = spawn_run(&s, &["--from", &from]);
    let ts = "'2024-05-01 10:00:00'";
    let mut src = s.source().await.unwrap();
    let txns: Vec<Vec<String>> = vec![
        vec![format!(
            "INSERT INTO prod VALUES (1, 'a', {ts}), (2, 'a', {ts}), (10, 'k10', {ts}), (11, 'k11', {ts}), (12, 'k12', {ts}), (20, 'a', {ts}), (30, 'a', {ts}), (31, 'a', {ts})"
        )],
        vec![
            // delete + re-insert, two updates: statements of one transaction
            "DELETE FROM prod WHERE id = 1".into(),
            format!("INSERT INTO prod VALUES (1, 're', {ts})"),
            "UPDATE prod SET note = 'u1' WHERE id = 2".into(),
            "UPDATE prod SET note = 'u2' WHERE id = 2".into(),
            // one rows event: keys 12 and 11 are deleted then re-inserted
            "UPDATE prod SET id = id + 1 WHERE id BETWEEN 10 AND 12 ORDER BY id DESC".into(),
            // one rows event: two updates of key 20
            format!("INSERT INTO prod VALUES (20, 'b', {ts}), (20, 'c', {ts}) ON DUPLICATE KEY UPDATE note = VALUES(note)"),
            // one rows event: 30 and 31 swap their notes through key 32
            "UPDATE prod SET id = CASE id WHEN 30 THEN 32 WHEN 31 THEN 30 END WHERE id IN (30, 31) ORDER BY id".into(),
            "UPDATE prod SET id = 31 WHERE id = 32".into(),
        ],
        vec![
            "UPDATE prod SET note = 'v' WHERE id IN (1, 2)".into(),
            "DELETE FROM prod WHERE id = 1".into(),
            format!("INSERT INTO prod VALUES (1, 'back', {ts})"),
        ],
    ];
    for txn in &txns {
        src.query_drop("BEGIN").await.unwrap();
        for q in txn {
            src.query_drop(q).await.unwrap();
        }
        src.query_drop("COMMIT").await.unwrap();
    }
    let updated: Vec<String> = src
        .query("SELECT DISTINCT CAST(updated_at AS CHAR) FROM prod")
        .await
        .unwrap();
    assert_eq!(
        updated,
        vec!["2024-05-01 10:00:00".to_string()],
        "one second"
    );
    caught_up_while_running(&s, &mut run).await;
    stop_and_compare(&s, &mut run, &PROD_TABLE).await;

    wipe_targets(&s, "prod").await;
    replay_and_compare(&s, &from, &PROD_TABLE).await;
    // a second replay over the converged targets changes nothing
    replay_and_compare(&s, &from, &PROD_TABLE).await;
}
