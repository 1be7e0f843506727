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

/// A test's turn on the source; `binlog_row_metadata` is FULL again (the
/// test kit's setting) when it ends, also on a panic.
struct Turn {
    _guard: tokio::sync::MutexGuard<'static, ()>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = cluster()
            .source
            .sql("SET GLOBAL binlog_row_metadata = FULL");
    }
}

/// Waits for the turn, sets `binlog_row_metadata`, and creates the
/// scenario `name` with the table `t (id, a, b)` on the source and the
/// targets (`b` only if `with_b`).
async fn turn(metadata: &str, name: &str, with_b: bool) -> (Turn, Scenario) {
    let guard = METADATA.lock().await;
    cluster()
        .source
        .sql(&format!("SET GLOBAL binlog_row_metadata = {metadata}"))
        .unwrap();
    let s = Scenario::create(cluster(), name).unwrap();
    // these tests are about decoding across DDL: the DDL policy lets every
    // DDL through (tests/ddl_policy.rs tests the policy)
    s.configure("on_ddl = \"ignore\"").unwrap();
    let cols = if with_b {
        "id INT PRIMARY KEY, a INT NULL, b INT NULL"
    } else {
        "id INT PRIMARY KEY, a INT NULL"
    };
    make_table(&s, "t", cols, cols).await;
    (Turn { _guard: guard }, s)
}

const SHARDS: [&str; 4] = ["s0", "s1", "s2", "s3"];

/// Creates `name` on the source (`source_cols`) and on every shard
/// (`target_cols` plus the version column), with a rule routing it by
/// `crc32(id) % 4`.
async fn make_table(s: &Scenario, name: &str, source_cols: &str, target_cols: &str) {
    let mut src = s.source().await.unwrap();
    src.query_drop(format!(
        "CREATE TABLE `{name}` ({source_cols}) ENGINE=InnoDB"
    ))
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

/// Waits for `run` to stop by itself: it must exit 2 without a retry, its
/// log naming every needle. Returns the log.
fn assert_halts(s: &Scenario, run: &mut Child, needles: &[&str]) -> String {
    let status = wait_exit(run, Duration::from_secs(60));
    if status.is_none() {
        terminate(run, Duration::from_secs(30));
    }
    let log = run_log(s);
    let status = status.unwrap_or_else(|| panic!("reshard did not halt\n{log}"));
    assert_eq!(status.code(), Some(2), "{log}");
    for needle in needles {
        assert!(log.contains(needle), "the message lacks {needle:?}\n{log}");
    }
    assert!(!log.contains("transient failure"), "retried\n{log}");
    log
}

/// Migrates, loads 20 rows into `t` and starts `run` from before them;
/// returns once it has caught up.
async fn streaming(s: &Scenario) -> Child {
    migrate(s);
    let start = pos(s.source_head().await.unwrap());
    on_source(
        s,
        &["INSERT INTO t (id, a) SELECT seq, seq FROM seq_1_to_20"],
    )
    .await;
    let run = spawn_run(s, &["--from", &start]);
    s.wait_caught_up(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(s)));
    run
}

fn pos((file, pos): (String, u64)) -> String {
    format!("{file}:{pos}")
}

/// Item 9, the history knows: reshard ran (and recorded the schemas), was
/// stopped, and while it was stopped `t1` got a column and a swap of two
/// same-typed columns (`CHANGE a tmp`, `CHANGE b a`, `CHANGE tmp b`), `t` a
/// reorder (`MODIFY … AFTER`), with row changes before and after each DDL.
/// After the restart every event decodes with the columns it was written
/// with. `t3`, created and altered after the first start position, is
/// followed from its `CREATE TABLE` in the binlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_metadata_ddl_while_stopped_decodes_with_the_schema_history() {
    let (_turn, s) = turn("MINIMAL", "hist_known", true).await;
    make_table(
        &s,
        "t1",
        "id INT PRIMARY KEY, a INT NULL, b INT NULL, note VARCHAR(20) NULL",
        "id INT PRIMARY KEY, a INT NULL, b INT NULL, note VARCHAR(20) NULL, c VARCHAR(20) NULL",
    )
    .await;
    migrate(&s);
    let start = pos(s.source_head().await.unwrap());
    // t3 is created after the start position and altered before reshard
    // first runs: its history begins with the CREATE in the binlog
    make_table(
        &s,
        "t3",
        "id INT PRIMARY KEY, a INT NULL",
        "id INT PRIMARY KEY, a INT NULL, d INT NULL",
    )
    .await;
    on_source(&s, &[
        "INSERT INTO t1 (id, a, b, note) SELECT seq, seq, 1000 + seq, CONCAT('n', seq) FROM seq_1_to_40",
        "INSERT INTO t (id, a, b) SELECT seq, seq, 1000 + seq FROM seq_1_to_40",
        "INSERT INTO t3 (id, a) SELECT seq, seq FROM seq_1_to_10",
        "ALTER TABLE t3 ADD COLUMN d INT NULL FIRST",
        "INSERT INTO t3 (id, a, d) SELECT seq, seq, 7 * seq FROM seq_11_to_20",
    ])
    .await;
    run_until_caught_up(&s, &["--from", &start]).await;

    // reshard is stopped: row changes around each DDL
    on_source(
        &s,
        &[
            "UPDATE t1 SET a = a + 1, b = b + 1 WHERE id <= 10",
            "INSERT INTO t1 (id, a, b, note) VALUES (41, 41, 1041, 'before add')",
            "DELETE FROM t1 WHERE id = 40",
            "UPDATE t SET a = a + 1 WHERE id <= 10",
            "INSERT INTO t (id, a, b) VALUES (41, 41, 1041)",
            "ALTER TABLE t1 ADD COLUMN c VARCHAR(20) NULL",
            "UPDATE t1 SET c = CONCAT('c', id), a = a + 2 WHERE id BETWEEN 5 AND 15",
            "INSERT INTO t1 (id, a, b, note, c) VALUES (42, 42, 1042, 'after add', 'c42')",
            "ALTER TABLE t1 CHANGE a tmp INT NULL",
            "ALTER TABLE t1 CHANGE b a INT NULL",
            "ALTER TABLE t1 CHANGE tmp b INT NULL",
            "UPDATE t1 SET a = a + 5 WHERE id BETWEEN 12 AND 20",
            "INSERT INTO t1 (id, a, b, note, c) VALUES (43, 2043, 43, 'after swap', 'c43')",
            "DELETE FROM t1 WHERE id = 39",
            "ALTER TABLE t MODIFY a INT NULL AFTER b",
            "UPDATE t SET b = b + 7 WHERE id BETWEEN 8 AND 16",
            "INSERT INTO t (id, b, a) VALUES (42, 1042, 42)",
        ],
    )
    .await;

    run_until_caught_up(&s, &[]).await;
    // t's reorder kept every value under its name: the targets equal the
    // source. t1's swap renamed the columns without touching the rows, and
    // the targets were not renamed (that is an on-DDL policy's job): a row
    // last written before the swap holds its values under the names they
    // had then, a row written after it under the new ones — exactly what
    // FULL metadata would give.
    assert_same(&s, "t", &["id", "a", "b"]).await;
    assert_same(&s, "t3", &["id", "a", "d"]).await;
    let cols = ["id", "a", "b", "note", "c"];
    let mut src = s.source().await.unwrap();
    let mut want: Vec<String> = rows_of(&mut src, "t1", &cols)
        .await
        .into_iter()
        .map(|r| {
            let v: Vec<&str> = r.split('|').collect();
            let id: u32 = v[0].parse().unwrap();
            if (12..=20).contains(&id) || id == 43 {
                r
            } else {
                [v[0], v[2], v[1], v[3], v[4]].join("|")
            }
        })
        .collect();
    want.sort();
    assert_eq!(target_rows(&s, "t1", &cols).await, want, "{}", run_log(&s));
}

/// Item 9, the history cannot know: reshard starts for the first time
/// (no schema history) from a position before a swap of two same-typed
/// columns. information_schema shows the columns *after* the swap, so the
/// events before it cannot be decoded with certainty: reshard must halt,
/// naming the table, the position and the fix, and apply no swapped value.
/// Restarting from a position after the DDL (the fix) then works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_metadata_ddl_before_the_history_halts_instead_of_swapping() {
    let (_turn, s) = turn("MINIMAL", "hist_unknown", true).await;
    migrate(&s);
    let start = pos(s.source_head().await.unwrap());
    on_source(
        &s,
        &[
            "INSERT INTO t (id, a, b) SELECT seq, seq, 1000 + seq FROM seq_1_to_20",
            "ALTER TABLE t CHANGE a tmp INT NULL",
            "ALTER TABLE t CHANGE b a INT NULL",
            "ALTER TABLE t CHANGE tmp b INT NULL",
        ],
    )
    .await;
    let after = pos(s.source_head().await.unwrap());
    on_source(
        &s,
        &["INSERT INTO t (id, a, b) SELECT seq, 1000 + seq, seq FROM seq_21_to_30"],
    )
    .await;

    let mut run = spawn_run(&s, &["--from", &start]);
    let table = format!("{}.t", s.source_db);
    let needles = [&table, &after, "binlog_row_metadata=FULL", "--from"];
    let log = assert_halts(&s, &mut run, &needles);
    // nothing of t may be applied: the first event of t is before the swap
    // (a swapped row would read a = 1000 + id, b = id)
    let applied = target_rows(&s, "t", &["id", "a", "b"]).await;
    assert!(applied.is_empty(), "rows applied: {applied:?}\n{log}");

    // the fix: start again from a position after the DDL
    run_until_caught_up(&s, &["--from", &after, "--force"]).await;
    let got = target_rows(&s, "t", &["id", "a", "b"]).await;
    let mut want: Vec<String> = (21..=30).map(|i| format!("{i}|{}|{i}", 1000 + i)).collect();
    want.sort();
    assert_eq!(got, want, "{}", run_log(&s));
}

/// Item 10: with FULL metadata, a nullable column added on the targets
/// and then on the source is carried without a restart — also when one
/// writer batch holds rows from both sides of the `ALTER`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_metadata_column_added_on_targets_then_source_is_carried() {
    let (_turn, s) = turn("FULL", "ddl_full", false).await;
    // a long linger, so that one batch spans the ALTER
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, cfg.replace("linger_ms = 10", "linger_ms = 1500")).unwrap();
    let mut run = streaming(&s).await;
    on_targets(&s, "ALTER TABLE t ADD COLUMN c VARCHAR(20) NULL").await;
    let mut src = s.source().await.unwrap();
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
    let (_turn, s) = turn("FULL", "ddl_src_only", false).await;
    let mut run = streaming(&s).await;
    on_source(
        &s,
        &[
            "ALTER TABLE t ADD COLUMN extra_col INT NULL",
            "INSERT INTO t (id, a, extra_col) VALUES (100, 1, 2)",
        ],
    )
    .await;
    let table = format!("{}.t", s.source_db);
    assert_halts(
        &s,
        &mut run,
        &[&table, "extra_col", "ADD COLUMN", "exclude"],
    );
}
