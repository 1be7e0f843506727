//! Schema changes on the source (issue 8, items 9 and 10).
//!
//! * Without `binlog_row_metadata=FULL` a TABLE_MAP carries no column
//!   names: reshard follows the DDL in the stream and keeps a schema
//!   history in the control database, so events from before an `ALTER`
//!   decode with the columns they were written with — or reshard halts,
//!   naming the table and the position, when the history cannot know them.
//!   Never a silent swap.
//! * With FULL metadata, a nullable column added on the targets and then on
//!   the source is carried without a restart; a column added on the source
//!   only halts at once (never retried) with a message naming the table,
//!   the column and the fix.
//!
//! Its own test binary: the tests change `binlog_row_metadata`, a global
//! setting of the source server, so they take turns ([`METADATA`]).

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::{connect, Scenario};

/// Held by each test for its whole run: `binlog_row_metadata` is global.
static METADATA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SHARDS: [&str; 4] = ["s0", "s1", "s2", "s3"];

/// Creates `name` on the source (`source_cols`) and on every shard
/// (`target_cols` plus the version column), with a rule routing it by
/// `crc32(id) % 4`.
async fn make_table(s: &Scenario, name: &str, source_cols: &str, target_cols: &str) {
    let mut src = s.source().await.unwrap();
    src.query_drop(format!("CREATE TABLE `{name}` ({source_cols}) ENGINE=InnoDB"))
        .await
        .unwrap();
    for url in s.shard_urls.values() {
        let mut t = connect(url).await.unwrap();
        t.query_drop(format!(
            "CREATE TABLE `{name}` ({target_cols}, _reshard_version BINARY(16) NOT NULL DEFAULT '') ENGINE=InnoDB"
        ))
        .await
        .unwrap();
    }
    let shards: Vec<String> = SHARDS.iter().map(|s| format!("\"{s}\"")).collect();
    std::fs::write(
        s.dir.path().join("rules").join(format!("{name}.toml")),
        format!(
            "source = \"{}.{name}\"\nshard = \"crc32(id) % 4\"\nshards = [{}]\n",
            s.source_db,
            shards.join(", ")
        ),
    )
    .unwrap();
}

/// Runs `sql` on every shard.
async fn on_targets(s: &Scenario, sql: &str) {
    for url in s.shard_urls.values() {
        let mut t = connect(url).await.unwrap();
        t.query_drop(sql).await.unwrap();
    }
}

/// `cols` of every row of `table`, rendered as text, sorted.
async fn rows_of(conn: &mut mysql_async::Conn, table: &str, cols: &[&str]) -> Vec<String> {
    let parts: Vec<String> = cols
        .iter()
        .map(|c| format!("IFNULL(CAST(`{c}` AS CHAR), 'NULL')"))
        .collect();
    let mut rows: Vec<String> = conn
        .query(format!(
            "SELECT CONCAT_WS('|', {}) FROM `{table}` ORDER BY id",
            parts.join(", ")
        ))
        .await
        .unwrap();
    rows.sort();
    rows
}

/// The union of every shard's rows of `table` (sorted).
async fn target_rows(s: &Scenario, table: &str, cols: &[&str]) -> Vec<String> {
    let mut all = Vec::new();
    for url in s.shard_urls.values() {
        let mut t = connect(url).await.unwrap();
        all.extend(rows_of(&mut t, table, cols).await);
    }
    all.sort();
    all
}

/// Asserts that the targets hold exactly the source's rows of `table`.
async fn assert_same(s: &Scenario, table: &str, cols: &[&str]) {
    let mut src = s.source().await.unwrap();
    let want = rows_of(&mut src, table, cols).await;
    let got = target_rows(s, table, cols).await;
    assert_eq!(
        got,
        want,
        "targets differ from the source for {table}\n{}",
        run_log(s)
    );
}

/// Waits until the child exits (at most `timeout`).
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `run`, waits until it has caught up with the source, and stops it.
async fn run_until_caught_up(s: &Scenario, extra: &[&str]) {
    let mut run = spawn_run(s, extra);
    s.wait_caught_up(Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(s)));
    let st = terminate(&mut run, Duration::from_secs(30));
    assert!(st.success(), "{}", run_log(s));
}

fn pos((file, pos): (String, u64)) -> String {
    format!("{file}:{pos}")
}

/// Item 10: with FULL metadata, a nullable column added on the targets
/// and then on the source is carried without a restart — also when one
/// writer batch holds rows from both sides of the `ALTER`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_metadata_column_added_on_targets_then_source_is_carried() {
    let _turn = METADATA.lock().await;
    let c = cluster();
    c.source.sql("SET GLOBAL binlog_row_metadata = FULL").unwrap();
    let s = Scenario::create(c, "ddl_full").unwrap();
    // a long linger, so that one batch spans the ALTER
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, cfg.replace("linger_ms = 10", "linger_ms = 1500")).unwrap();
    make_table(
        &s,
        "t",
        "id INT PRIMARY KEY, a INT NULL",
        "id INT PRIMARY KEY, a INT NULL",
    )
    .await;
    migrate(&s);
    let start = pos(s.source_head().await.unwrap());
    let mut src = s.source().await.unwrap();
    src.query_drop("INSERT INTO t (id, a) SELECT seq, seq FROM seq_1_to_20")
        .await
        .unwrap();
    let mut run = spawn_run(&s, &["--from", &start]);
    s.wait_caught_up(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));

    on_targets(&s, "ALTER TABLE t ADD COLUMN c VARCHAR(20) NULL").await;
    for round in 0..3 {
        let base = 100 * (round + 1);
        src.query_drop(format!(
            "INSERT INTO t (id, a) SELECT {base} + seq, seq FROM seq_1_to_20"
        ))
        .await
        .unwrap();
        if round == 0 {
            src.query_drop("ALTER TABLE t ADD COLUMN c VARCHAR(20) NULL")
                .await
                .unwrap();
        }
        src.query_drop(format!(
            "UPDATE t SET c = CONCAT('r{round}-', id), a = a + 1 WHERE id % 3 = {}",
            round % 3
        ))
        .await
        .unwrap();
    }
    s.wait_caught_up(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    assert_same(&s, "t", &["id", "a", "c"]).await;
    let st = terminate(&mut run, Duration::from_secs(30));
    assert!(st.success(), "{}", run_log(&s));
}

/// Item 10: a column added on the source only (the targets lack it) halts
/// at once with a message naming the table, the column and the fix; the
/// error cannot clear by itself, so it is never retried with backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_metadata_column_added_on_source_only_halts_naming_table_and_column() {
    let _turn = METADATA.lock().await;
    let c = cluster();
    c.source.sql("SET GLOBAL binlog_row_metadata = FULL").unwrap();
    let s = Scenario::create(c, "ddl_src_only").unwrap();
    make_table(
        &s,
        "t",
        "id INT PRIMARY KEY, a INT NULL",
        "id INT PRIMARY KEY, a INT NULL",
    )
    .await;
    migrate(&s);
    let start = pos(s.source_head().await.unwrap());
    let mut src = s.source().await.unwrap();
    src.query_drop("INSERT INTO t (id, a) SELECT seq, seq FROM seq_1_to_20")
        .await
        .unwrap();
    let mut run = spawn_run(&s, &["--from", &start]);
    s.wait_caught_up(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    src.query_drop("ALTER TABLE t ADD COLUMN extra_col INT NULL")
        .await
        .unwrap();
    src.query_drop("INSERT INTO t (id, a, extra_col) VALUES (100, 1, 2)")
        .await
        .unwrap();
    let status = wait_exit(&mut run, Duration::from_secs(60));
    if status.is_none() {
        terminate(&mut run, Duration::from_secs(30));
    }
    let log = run_log(&s);
    let status = status.unwrap_or_else(|| panic!("reshard did not halt\n{log}"));
    assert_eq!(status.code(), Some(2), "{log}");
    let table = format!("{}.t", s.source_db);
    for needle in [table.as_str(), "extra_col", "ADD COLUMN", "exclude"] {
        assert!(log.contains(needle), "the message lacks {needle:?}\n{log}");
    }
    assert!(!log.contains("transient failure"), "retried\n{log}");
}
