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
//! * `replay --binlog-dir` judges the DDL in archived files the same way,
//!   in each mode, and `--accept-ddl` lets a halted one through.
//! * `follow` halts at a table swap (gh-ost's `RENAME TABLE`) and at a
//!   `DROP TABLE`.
//! * `follow` on a target whose account may not `ALTER` halts with the
//!   statement to run there, and goes on once the grant is there.

mod common;

use std::path::Path;
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

/// Closes the source's active binlog file and copies every file from
/// `from_file` on (all closed now) into `dir`; returns the new active file.
async fn archive_to(from_file: &str, dir: &Path) -> String {
    let mut root = connect(&cluster().source.url("")).await.unwrap();
    root.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let rows: Vec<mysql_async::Row> = root.query("SHOW BINARY LOGS").await.unwrap();
    let files: Vec<String> = rows.iter().map(|r| r.get(0).unwrap()).collect();
    let active = files.last().unwrap().clone();
    std::fs::create_dir_all(dir).unwrap();
    for f in files
        .iter()
        .filter(|f| f.as_str() >= from_file && **f != active)
    {
        std::fs::copy(cluster().source.datadir().join(f), dir.join(f)).unwrap();
    }
    active
}

/// The position `--accept-ddl` takes, from a halt in `out`.
fn halted_at(out: &str) -> String {
    let halt = out
        .lines()
        .rev()
        .find(|l| l.contains("--accept-ddl "))
        .unwrap_or_else(|| panic!("no halt message\n{out}"));
    halt.rsplit("--accept-ddl ")
        .next()
        .and_then(|p| p.split('`').next())
        .unwrap_or_default()
        .to_string()
}

fn set_mode(s: &Scenario, from: &str, to: &str) {
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    let (from, to) = (format!("on_ddl = \"{from}\""), format!("on_ddl = \"{to}\""));
    assert!(cfg.contains(&from), "{cfg}");
    std::fs::write(&s.config, cfg.replace(&from, &to)).unwrap();
}

/// Archived binlog files replayed with `replay --binlog-dir` meet the DDL
/// policy as a live stream does: `follow` adds a column to the targets, a
/// retyped shard-expression column halts (exit 2, nothing after it
/// applied, the checkpoint before it) until `--accept-ddl`, `ignore` lets
/// a TRUNCATE pass with a warning, and `halt` stops at an added column.
/// (Before, the files' DDL was applied blindly in every mode.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_files_meet_the_ddl_policy_in_each_mode() {
    let s = Scenario::create(cluster(), "ddl_files").unwrap();
    only_own_rules(&s);
    add_table(&s, &T).await;
    s.configure("on_ddl = \"follow\"").unwrap();
    migrate(&s);
    let tmp = tempfile::tempdir().unwrap();
    let from = head(&s).await;
    let file0 = at(&from).0;
    on_source(
        &s,
        &["INSERT INTO t (id, a, note) SELECT seq, seq % 7, CONCAT('n', seq) FROM seq_1_to_20"],
    )
    .await;
    // rows only: the history records `t` where the replay starts
    let file1 = archive_to(&file0, &tmp.path().join("1")).await;
    let (code, out) = replay_files(&s, &tmp.path().join("1"), &from, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(target_rows(&s).await, 20, "{out}");

    // follow: the added column is added to the targets and carried
    on_source(
        &s,
        &[
            "ALTER TABLE t ADD COLUMN c VARCHAR(10) NULL DEFAULT 'dflt'",
            "INSERT INTO t (id, a, c) VALUES (100, 3, 'after')",
            "UPDATE t SET c = CONCAT('c', id) WHERE id % 2 = 0",
        ],
    )
    .await;
    let file2 = archive_to(&file1, &tmp.path().join("2")).await;
    let (code, out) = replay_files(&s, &tmp.path().join("2"), &format!("{file1}:4"), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("on_ddl = follow: added"), "{out}");
    let diffs = compare_table(&s, &T_WITH_C, 20).await;
    assert!(diffs.is_empty(), "{}\n{out}", diffs.join("\n"));

    // a retyped shard-expression column halts in every mode
    on_source(
        &s,
        &[
            "ALTER TABLE t MODIFY a BIGINT NOT NULL",
            "INSERT INTO t (id, a) VALUES (500, 5)",
        ],
    )
    .await;
    let file3 = archive_to(&file2, &tmp.path().join("3")).await;
    let three = (tmp.path().join("3"), format!("{file2}:4"));
    let (code, out) = replay_files(&s, &three.0, &three.1, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(
            "the shard expression column `a` changed from int(11) NOT NULL to bigint(20) NOT NULL"
        ) && out.contains("`reshard replay --config"),
        "{out}"
    );
    let pos = halted_at(&out);
    assert_eq!(target_rows(&s).await, 21, "a row after the DDL was applied");
    let cp = s.checkpoint().await.unwrap().unwrap();
    assert!(cp <= at(&pos), "checkpoint {cp:?} passed the DDL at {pos}");
    on_targets(&s, "ALTER TABLE t MODIFY a BIGINT NOT NULL").await;
    let (code, out) = replay_files(&s, &three.0, &three.1, &["--accept-ddl", &pos]);
    assert_eq!(code, 0, "{out}");
    let diffs = compare_table(&s, &T_WITH_C, 20).await;
    assert!(diffs.is_empty(), "{}\n{out}", diffs.join("\n"));

    // ignore: a TRUNCATE passes with a warning; the targets keep the rows
    set_mode(&s, "follow", "ignore");
    on_source(
        &s,
        &["TRUNCATE TABLE t", "INSERT INTO t (id, a) VALUES (600, 1)"],
    )
    .await;
    let file4 = archive_to(&file3, &tmp.path().join("4")).await;
    let (code, out) = replay_files(&s, &tmp.path().join("4"), &format!("{file3}:4"), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ignored (on_ddl = ignore)"), "{out}");
    assert_eq!(target_rows(&s).await, 23);

    // halt: an added column stops the replay
    set_mode(&s, "ignore", "halt");
    on_source(
        &s,
        &[
            "ALTER TABLE t ADD COLUMN d INT NULL",
            "INSERT INTO t (id, a, d) VALUES (700, 2, 7)",
        ],
    )
    .await;
    archive_to(&file4, &tmp.path().join("5")).await;
    let (code, out) = replay_files(&s, &tmp.path().join("5"), &format!("{file4}:4"), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("ADD COLUMN d") && out.contains("on_ddl = \"halt\""),
        "{out}"
    );
    assert_eq!(target_rows(&s).await, 23, "a row after the DDL was applied");
}

/// `follow` with a target account that lacks `ALTER` on one shard: `run`
/// halts at the DDL naming that shard, the refused `ALTER TABLE` and the
/// grant; once `ALTER` is granted, a restart adds the column where it is
/// missing (the shards that took it are left alone) and converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_halts_with_the_alter_a_target_refuses_until_it_may() {
    let s = Scenario::create(cluster(), "ddl_noalter").unwrap();
    only_own_rules(&s);
    add_table(&s, &T).await;
    s.configure("on_ddl = \"follow\"").unwrap();
    migrate(&s);
    // s1 through an account with DML only
    let url = s.shard_urls["s1"].clone();
    let server = cluster()
        .targets
        .iter()
        .find(|t| url.contains(&format!("127.0.0.1:{}/", t.port())))
        .unwrap();
    server
        .sql("CREATE USER 'noalter'@'%' IDENTIFIED BY 'noalter-pw'; GRANT SELECT, INSERT, UPDATE, DELETE ON ddl_noalter_s1.* TO 'noalter'@'%'")
        .unwrap();
    let root = format!("root:{}@", reshard_testkit::MariaDb::ROOT_PASSWORD);
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    let limited = url.replace(&root, "noalter:noalter-pw@");
    assert!(cfg.contains(&url), "{cfg}");
    std::fs::write(&s.config, cfg.replace(&url, &limited)).unwrap();

    let from = head(&s).await;
    on_source(
        &s,
        &["INSERT INTO t (id, a, note) SELECT seq, seq % 7, CONCAT('n', seq) FROM seq_1_to_20"],
    )
    .await;
    let mut run = spawn_run(&s, &["--from", &from]);
    caught_up(&s).await;
    on_source(
        &s,
        &[
            "ALTER TABLE t ADD COLUMN c VARCHAR(10) NULL",
            "INSERT INTO t (id, a, c) VALUES (100, 3, 'after')",
        ],
    )
    .await;
    halts(
        &s,
        &mut run,
        &[
            "could not add the new column(s) to target s1",
            "ALTER command denied",
            "run `ALTER TABLE `ddl_noalter_s1`.`t` ADD COLUMN `c` varchar(10)",
            "grant ALTER",
        ],
    );
    assert!(!run_log(&s).contains("noalter-pw"), "{}", run_log(&s));

    server
        .sql("GRANT ALTER ON ddl_noalter_s1.* TO 'noalter'@'%'")
        .unwrap();
    let mut run = spawn_run(&s, &[]);
    on_source(&s, &["UPDATE t SET c = CONCAT('c', id) WHERE id % 2 = 0"]).await;
    converged(&s, &T_WITH_C).await;
    assert!(
        terminate(&mut run, Duration::from_secs(30)).success(),
        "{}",
        run_log(&s)
    );
}

/// `follow` halts where rows would be lost or keyed anew: a table swap as
/// gh-ost ends (`RENAME TABLE t TO t_old, t_new TO t`), then, once that is
/// accepted, a `DROP TABLE`; each before anything after it is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_halts_at_a_table_swap_and_a_drop() {
    let (s, mut run) = streaming("ddl_swap", Some("follow")).await;
    on_source(
        &s,
        &[
            "CREATE TABLE t_new LIKE t",
            "INSERT INTO t_new (id, a) VALUES (900, 1)",
            "RENAME TABLE t TO t_old, t_new TO t",
        ],
    )
    .await;
    let pos = halts(&s, &mut run, &["RENAME TABLE t TO t_old, t_new TO t"]);
    assert_eq!(target_rows(&s).await, 20);

    let mut run = spawn_run(&s, &["--accept-ddl", &pos]);
    caught_up(&s).await;
    on_source(&s, &["DROP TABLE t"]).await;
    halts(&s, &mut run, &["DROP TABLE `t`", "the table was dropped"]);
    assert_eq!(target_rows(&s).await, 20, "the targets keep the rows");
}
