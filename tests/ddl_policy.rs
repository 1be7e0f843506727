//! `[pipeline] on_ddl` (issue 12): what a DDL on a mapped table does to a
//! running pipeline, in each mode, against real servers.
//!
//! * `halt` (default): stops at the DDL with its position and the fix; the
//!   checkpoint stays before it, and `run --accept-ddl POS` goes on once
//!   the targets fit. `TRUNCATE` halts too.
//! * `follow`: an added defaulted column is added to the targets and
//!   carried; an index passes; a retyped shard-expression column halts,
//!   also after a restart.
//! * `ignore`: `TRUNCATE` passes with a warning (the targets keep the rows);
//!   a dropped shard-expression column still halts.

mod common;

use std::process::Child;
use std::time::Duration;

use common::tables::{add_table, compare_table, head, only_own_rules, Table};
use common::*;
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::{connect, Scenario};

const T: Table = Table {
    name: "t",
    columns: "id INT NOT NULL, a INT NOT NULL, note VARCHAR(20) NULL",
    key: "PRIMARY KEY (id)",
    shard: "crc32(a) % 4",
    shard_sql: "CRC32(a) % 4",
};

/// `t` with the column `c` the tests add.
const T_WITH_C: Table = Table {
    columns: "id INT NOT NULL, a INT NOT NULL, note VARCHAR(20) NULL, c VARCHAR(10) NULL",
    ..T
};

/// A scenario with only `t`, `on_ddl` set (unless `None`), migrated, 20
/// rows, and `run` streaming from before them, caught up.
async fn streaming(name: &str, on_ddl: Option<&str>) -> (Scenario, Child) {
    let s = Scenario::create(cluster(), name).unwrap();
    only_own_rules(&s);
    add_table(&s, &T).await;
    if let Some(mode) = on_ddl {
        s.configure(&format!("on_ddl = \"{mode}\"")).unwrap();
    }
    migrate(&s);
    let from = head(&s).await;
    on_source(
        &s,
        &["INSERT INTO t (id, a, note) SELECT seq, seq % 7, CONCAT('n', seq) FROM seq_1_to_20"],
    )
    .await;
    let run = spawn_run(&s, &["--from", &from]);
    caught_up(&s).await;
    (s, run)
}

async fn on_targets(s: &Scenario, q: &str) {
    for url in s.shard_urls.values() {
        connect(url).await.unwrap().query_drop(q).await.unwrap();
    }
}

async fn caught_up(s: &Scenario) {
    s.wait_caught_up(Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(s)));
}

async fn converged(s: &Scenario, t: &Table<'_>) {
    caught_up(s).await;
    let diffs = compare_table(s, t, 20).await;
    assert!(diffs.is_empty(), "{}\n{}", diffs.join("\n"), run_log(s));
}

/// Waits for `run` to stop by itself with exit code 2 (no retry), its log
/// naming every needle; returns the position `--accept-ddl` takes.
fn halts(s: &Scenario, run: &mut Child, needles: &[&str]) -> String {
    let status = wait_exit(run, Duration::from_secs(90));
    if status.is_none() {
        terminate(run, Duration::from_secs(30));
    }
    let log = run_log(s);
    assert_eq!(
        status.and_then(|st| st.code()),
        Some(2),
        "did not halt\n{log}"
    );
    assert!(!log.contains("transient failure"), "retried\n{log}");
    let halt = log
        .lines()
        .rev()
        .find(|l| l.contains("--accept-ddl "))
        .unwrap_or_else(|| panic!("no halt message\n{log}"));
    for needle in needles {
        assert!(halt.contains(needle), "the halt lacks {needle:?}: {halt}");
    }
    let pos = halt
        .rsplit("--accept-ddl ")
        .next()
        .and_then(|p| p.split('`').next())
        .unwrap_or_default()
        .to_string();
    assert!(halt.contains(&format!(" at {pos} (ends at ")), "{halt}");
    pos
}

/// `FILE:POS` as a comparable pair.
fn at(p: &str) -> (String, u64) {
    let (f, n) = p.rsplit_once(':').unwrap();
    (f.to_string(), n.parse().unwrap())
}

/// Rows of `t` on all shards together.
async fn target_rows(s: &Scenario) -> u64 {
    let mut n = 0;
    for url in s.shard_urls.values() {
        let c: Option<u64> = connect(url)
            .await
            .unwrap()
            .query_first("SELECT COUNT(*) FROM t")
            .await
            .unwrap();
        n += c.unwrap_or(0);
    }
    n
}

/// Default mode: an added column halts at its DDL, naming table, position
/// and the fix; rows after it are not applied; the checkpoint stays before
/// it. With the column added on the targets, `--accept-ddl` goes on and
/// the rows converge. A TRUNCATE halts too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_stops_at_each_ddl_until_accepted() {
    let (s, mut run) = streaming("ddl_halt", None).await;
    let before = head(&s).await;
    on_source(
        &s,
        &[
            "ALTER TABLE t ADD COLUMN c VARCHAR(10) NULL",
            "INSERT INTO t (id, a, c) VALUES (100, 3, 'after')",
        ],
    )
    .await;
    let table = format!("DDL on {}.t at ", s.source_db);
    let pos = halts(&s, &mut run, &[&table, "ADD COLUMN c", "on_ddl = \"halt\""]);
    assert!(at(&pos) > at(&before), "{pos} is not after {before}");
    assert_eq!(target_rows(&s).await, 20, "a row after the DDL was applied");
    let cp = s.checkpoint().await.unwrap().unwrap();
    assert!(cp <= at(&pos), "checkpoint {cp:?} passed the DDL at {pos}");

    on_targets(&s, "ALTER TABLE t ADD COLUMN c VARCHAR(10) NULL").await;
    let mut run = spawn_run(&s, &["--accept-ddl", &pos]);
    on_source(&s, &["UPDATE t SET c = CONCAT('c', id) WHERE id % 2 = 0"]).await;
    converged(&s, &T_WITH_C).await;

    on_source(&s, &["TRUNCATE TABLE t"]).await;
    halts(
        &s,
        &mut run,
        &["TRUNCATE deleted every row", "DELETE FROM `t`"],
    );
}

/// `follow`: a defaulted column added on the source is added to every
/// target (with the source's character set) and carried; an index passes.
/// A retyped shard-expression column halts, and halts again after a
/// restart (the checkpoint never passed it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_adds_columns_to_the_targets_and_halts_on_routing_columns() {
    let (s, mut run) = streaming("ddl_follow", Some("follow")).await;
    on_source(
        &s,
        &[
            "ALTER TABLE t ADD COLUMN c VARCHAR(10) CHARACTER SET latin1 NULL DEFAULT 'd\u{e9}f', ADD INDEX by_note (note)",
            "INSERT INTO t (id, a, note) SELECT 20 + seq, seq, 'x' FROM seq_1_to_10",
            "UPDATE t SET c = CONCAT('v', id, '\u{e9}') WHERE id % 3 = 0",
        ],
    )
    .await;
    converged(&s, &T_WITH_C).await;
    for url in s.shard_urls.values() {
        let cs: Option<String> = connect(url)
            .await
            .unwrap()
            .query_first("SELECT CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 't' AND COLUMN_NAME = 'c'")
            .await
            .unwrap();
        assert_eq!(cs.as_deref(), Some("latin1"), "{url}");
    }
    assert!(
        run_log(&s).contains("on_ddl = follow: added"),
        "{}",
        run_log(&s)
    );

    on_source(
        &s,
        &[
            "ALTER TABLE t MODIFY a BIGINT NOT NULL",
            "INSERT INTO t (id, a) VALUES (500, 5)",
        ],
    )
    .await;
    let needle =
        "the shard expression column `a` changed from int(11) NOT NULL to bigint(20) NOT NULL";
    let pos = halts(&s, &mut run, &[needle, "re-seed"]);
    let mut again = spawn_run(&s, &[]);
    assert_eq!(halts(&s, &mut again, &[needle]), pos);
}

/// `ignore`: a TRUNCATE passes with a warning (the targets keep the rows,
/// later rows still arrive); a dropped shard-expression column halts all
/// the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_passes_truncate_but_not_a_dropped_shard_column() {
    let (s, mut run) = streaming("ddl_ignore", Some("ignore")).await;
    on_source(
        &s,
        &[
            "TRUNCATE TABLE t",
            "INSERT INTO t (id, a) VALUES (300, 1), (301, 2)",
        ],
    )
    .await;
    caught_up(&s).await;
    assert_eq!(target_rows(&s).await, 22);
    assert!(
        run_log(&s).contains("ignored (on_ddl = ignore)"),
        "{}",
        run_log(&s)
    );

    on_source(&s, &["ALTER TABLE t DROP COLUMN a"]).await;
    halts(
        &s,
        &mut run,
        &["the shard expression column `a` was dropped or renamed"],
    );
}
