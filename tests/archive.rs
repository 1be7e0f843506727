//! `replay --binlog-dir` against real MariaDB servers: archived binlog
//! files replayed into fresh targets equal a live run's targets, with
//! MariaDB's compressed events (`log_bin_compress=ON`) live and in the
//! files; without a reachable source when the files carry column names;
//! and an error naming the table when neither does. Text keys compare under
//! their collation as on a live run (learned from the source, or kept in
//! the control database for the build that wrote the files), else are
//! refused by name.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::collations::{collation_workload, insert_first_spellings, CI_LATIN1, CI_UTF8};
use common::tables::{add_table, compare_table, only_own_rules};
use common::*;
use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};
use reshard_testkit::scenario::{connect, Scenario, Workload, WorkloadOptions};

/// A table with a column of every type MariaDB 10.11 has (of the
/// geometries, POINT): integers signed and unsigned, floats,
/// DECIMAL, dates and times, BIT, ENUM, SET, text and binary strings of
/// every length class, JSON, POINT, INET4, INET6 and UUID.
const KINDS: &str = "(
  id INT NOT NULL PRIMARY KEY,
  ti TINYINT NULL, tu TINYINT UNSIGNED NULL, si SMALLINT NULL, su SMALLINT UNSIGNED NULL,
  mi MEDIUMINT NULL, mu MEDIUMINT UNSIGNED NULL, ii INT NULL, iu INT UNSIGNED NULL,
  bi BIGINT NULL, bu BIGINT UNSIGNED NULL, fl FLOAT NULL, db DOUBLE NULL,
  de DECIMAL(30,10) NULL, dt DATE NULL, tm TIME(3) NULL, dtm DATETIME(6) NULL,
  ts TIMESTAMP(6) NULL DEFAULT NULL, yr YEAR NULL, bt BIT(10) NULL,
  en ENUM('a','b','c') NULL, st SET('x','y','z') NULL, ch CHAR(5) NULL,
  bn BINARY(4) NULL, vc VARCHAR(40) CHARACTER SET utf8mb4 NULL, vb VARBINARY(40) NULL,
  tb TINYBLOB NULL, tx TEXT CHARACTER SET utf8mb4 NULL, mb MEDIUMBLOB NULL,
  lt LONGTEXT CHARACTER SET utf8mb4 NULL, js JSON NULL, tt TINYTEXT NULL, mt MEDIUMTEXT NULL,
  bl BLOB NULL, lb LONGBLOB NULL, g POINT NULL, i4 INET4 NULL, i6 INET6 NULL, uu UUID NULL";

const VERSION_COL: &str = "_reshard_version BINARY(16) NOT NULL DEFAULT ''";

/// Creates `kinds` on the source (when `source`) and on every shard, and
/// its rule file, reading from `src_db`.
fn add_kinds(s: &Scenario, src_db: &str, source: bool) {
    let c = cluster();
    let kinds = KINDS;
    if source {
        c.source
            .sql(&format!(
                "CREATE TABLE {src_db}.kinds {kinds}) ENGINE=InnoDB"
            ))
            .unwrap();
    }
    for (shard, url) in &s.shard_urls {
        let db = url.rsplit('/').next().unwrap();
        let n: usize = shard[1..].parse().unwrap();
        c.targets[n % c.targets.len()]
            .sql(&format!(
                "CREATE TABLE {db}.kinds {kinds}, {VERSION_COL}) ENGINE=InnoDB"
            ))
            .unwrap();
    }
    let rules = s.dir.path().join("rules");
    std::fs::write(
        rules.join("kinds.toml"),
        format!("source = \"{src_db}.kinds\"\nshard = \"id % 4\"\nshards = [\"s0\", \"s1\", \"s2\", \"s3\"]\n"),
    )
    .unwrap();
}

fn hex(rng: &mut rand::rngs::StdRng, max: usize) -> String {
    let n = rng.gen_range(0..max);
    let b: String = (0..n).map(|_| format!("{:02X}", rng.gen::<u8>())).collect();
    format!("X'{b}'")
}

/// A random row of `kinds` as SQL literals.
fn kinds_row(rng: &mut rand::rngs::StdRng, id: i32) -> String {
    let mut v = vec![id.to_string()];
    let null =
        |rng: &mut rand::rngs::StdRng, s: String| if rng.gen_bool(0.1) { "NULL".into() } else { s };
    let ints = [
        rng.gen_range(-128..=127i64).to_string(),
        rng.gen_range(0..=255u64).to_string(),
        rng.gen_range(-32768..=32767i64).to_string(),
        rng.gen_range(0..=65535u64).to_string(),
        rng.gen_range(-8_388_608..=8_388_607i64).to_string(),
        rng.gen_range(0..=16_777_215u64).to_string(),
        rng.gen::<i32>().to_string(),
        rng.gen::<u32>().to_string(),
        rng.gen::<i64>().to_string(),
        rng.gen::<u64>().to_string(),
        format!("{}", f64::from(rng.gen_range(-4000..4000)) / 4.0),
        format!("{}", f64::from(rng.gen_range(-80000..80000)) / 8.0),
        format!(
            "'{}.{:010}'",
            rng.gen_range(-99_999_999i64..99_999_999),
            rng.gen_range(0..10_000_000_000u64)
        ),
    ];
    for i in ints {
        v.push(null(rng, i));
    }
    let date = format!(
        "'{}-{:02}-{:02}'",
        rng.gen_range(1000..9999),
        rng.gen_range(1..13),
        rng.gen_range(1..29)
    );
    let sign = if rng.gen_bool(0.3) { "-" } else { "" };
    let time = format!(
        "'{sign}{}:{:02}:{:02}.{:03}'",
        rng.gen_range(0..839),
        rng.gen_range(0..60),
        rng.gen_range(0..60),
        rng.gen_range(0..1000)
    );
    // microseconds; any date-time of years 1000-9999, a TIMESTAMP's range
    let dtm = format!(
        "TIMESTAMP('1000-01-01') + INTERVAL {} MICROSECOND",
        rng.gen_range(0..283_000_000_000_000_000u64)
    );
    let ts = format!(
        "FROM_UNIXTIME({}.{:06})",
        rng.gen_range(1..2_147_483_647u32),
        rng.gen_range(0..1_000_000)
    );
    let year = rng.gen_range(1901..2156).to_string();
    let bits = format!("b'{:b}'", rng.gen_range(0..1024));
    let en = format!("'{}'", ["a", "b", "c"][rng.gen_range(0..3)]);
    let st = format!("'{}'", ["", "x", "y,z", "x,y,z"][rng.gen_range(0..4)]);
    let ch = format!("'{}'", ["", "a", "ab c", "é"][rng.gen_range(0..4)]);
    // BINARY(4) without trailing zero bytes (their padding is issue 8's)
    let bn = format!("X'{:08X}'", rng.gen_range(0x0100_0001u32..0xFFFF_FFFF) | 1);
    let vc = format!(
        "'{}'",
        [
            "",
            "plain",
            "caf\u{e9} \u{4e2d}\u{6587}",
            "it''s \\\\ \u{1f600}"
        ][rng.gen_range(0..4)]
    );
    let long = "lorem \u{e9}psum ".repeat(rng.gen_range(1..200));
    let json = format!(
        "'{{\"k\": {}, \"a\": [1, 2.5, null], \"s\": \"\u{e9} q\"}}'",
        rng.gen::<u16>()
    );
    let rest = [
        date,
        time,
        dtm,
        ts,
        year,
        bits,
        en,
        st,
        ch,
        bn,
        vc,
        hex(rng, 40),
        hex(rng, 200),
        format!("'{}'", "t\u{fc}xt ".repeat(rng.gen_range(0..50))),
        hex(rng, 3000),
        format!("'{long}'"),
        json,
        format!("'tiny {}'", rng.gen::<u8>()),
        format!("'{}'", "m\u{e9}dium ".repeat(rng.gen_range(0..300))),
        hex(rng, 300),
        hex(rng, 5000),
        format!(
            "POINT({}, {})",
            f64::from(rng.gen_range(-1800..1800)) / 10.0,
            f64::from(rng.gen_range(-900..900)) / 10.0
        ),
        // text literals (the workload's session is `NAMES binary`, where a
        // binary string is the packed form)
        format!(
            "_utf8mb4'10.{}.{}.{}'",
            rng.gen::<u8>(),
            rng.gen::<u8>(),
            rng.gen::<u8>()
        ),
        format!(
            "_utf8mb4'2001:db8::{:x}:{:x}'",
            rng.gen::<u16>(),
            rng.gen::<u16>()
        ),
        // RFC 4122 versions 1 (time-based: MariaDB stores it swapped) and 4
        format!(
            "_utf8mb4'{:08x}-{:04x}-{}{:03x}-{:x}{:03x}-{:012x}'",
            rng.gen::<u32>(),
            rng.gen::<u16>(),
            [1, 4][rng.gen_range(0..2)],
            rng.gen_range(0..0x1000),
            rng.gen_range(8..12),
            rng.gen_range(0..0x1000),
            rng.gen::<u64>() & 0xFFFF_FFFF_FFFF
        ),
    ];
    for r in rest {
        v.push(null(rng, r));
    }
    v.join(", ")
}

/// Inserts, updates and deletes on `kinds`; rotates the binlog now and then.
async fn kinds_workload(conn: &mut mysql_async::Conn, seed: u64, ids: std::ops::Range<i32>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    conn.query_drop("SET time_zone = '+00:00'").await.unwrap();
    for id in ids.clone() {
        let row = kinds_row(&mut rng, id);
        conn.query_drop(format!("INSERT INTO kinds VALUES ({row})"))
            .await
            .unwrap();
        if id % 3 == 0 {
            let row = kinds_row(&mut rng, id);
            conn.query_drop(format!("REPLACE INTO kinds VALUES ({row})"))
                .await
                .unwrap();
        }
        if id % 7 == 0 {
            conn.query_drop(format!("DELETE FROM kinds WHERE id = {}", id - 1))
                .await
                .unwrap();
        }
        if id % 40 == 0 {
            conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
        }
    }
    // a multi-row update in one transaction
    conn.query_drop(format!(
        "UPDATE kinds SET tx = CONCAT(IFNULL(tx, ''), 'u'), iu = IFNULL(iu, 0) DIV 2 WHERE id BETWEEN {} AND {}",
        ids.start,
        ids.start + 30
    ))
    .await
    .unwrap();
}

/// The source's binlog files (oldest first) and its head.
async fn binlogs(conn: &mut mysql_async::Conn) -> Vec<String> {
    let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.unwrap();
    rows.iter()
        .map(|r| r.get::<String, _>(0).unwrap())
        .collect()
}

/// Closes the active binlog file, copies every closed file from `from` on
/// into `dir` (with an index file when `index`), and purges them on the
/// server. Returns the new active file.
async fn archive(conn: &mut mysql_async::Conn, from: &str, dir: &Path, index: bool) -> String {
    conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let files = binlogs(conn).await;
    let active = files.last().unwrap().clone();
    let datadir = cluster().source.datadir().to_path_buf();
    std::fs::create_dir_all(dir).unwrap();
    let mut listed = String::new();
    for f in files.iter().filter(|f| f.as_str() >= from && **f != active) {
        std::fs::copy(datadir.join(f), dir.join(f)).unwrap();
        listed.push_str(&format!("./{f}\n"));
    }
    if index {
        std::fs::write(dir.join("mysql-bin.index"), listed).unwrap();
    }
    conn.query_drop(format!("PURGE BINARY LOGS TO '{active}'"))
        .await
        .unwrap();
    active
}

/// Event counts by type name in the files of `dir`, as `inspect --json`
/// shows them; none may be undecodable.
fn event_types(dir: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut n = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "index") {
            continue;
        }
        let out = std::process::Command::new(BIN)
            .args(["inspect", "--json"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(r.get("undecodable").is_none(), "{r}");
            *n.entry(r["type"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    n
}

fn verify_ok(s: &Scenario) {
    let out = reshard(s, &["verify", "--rechecks", "0"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify of {}: {}\n{}",
        s.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scenario whose rules read `src`'s source tables (its own source
/// database stays empty), with `kinds` on its shards.
fn fresh_targets(name: &str, src: &Scenario) -> Scenario {
    let s = Scenario::create(cluster(), name).unwrap();
    for f in ["orders.toml", "items.toml"] {
        std::fs::copy(
            src.dir.path().join("rules").join(f),
            s.dir.path().join("rules").join(f),
        )
        .unwrap();
    }
    add_kinds(&s, &src.source_db, false);
    migrate(&s);
    s
}

/// Points a scenario's config at a source nobody listens on, or back.
fn source_reachable(s: &Scenario, yes: bool) {
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    let live = cluster().source.url("");
    let dead = "mysql://root:x@127.0.0.1:9/";
    let cfg = if yes {
        cfg.replace(dead, &live)
    } else {
        cfg.replace(&live, dead)
    };
    std::fs::write(&s.config, cfg).unwrap();
}

fn replay(s: &Scenario, dir: &Path, from: &str) -> (i32, String) {
    replay_files(s, dir, from, &[])
}

/// Held by the tests that archive and purge the source's binlog files
/// (and set its binlog globals), so that they never purge each other's.
static SOURCE_BINLOGS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Acceptance "live and archived agree", then the same archive path
/// without a source, then with neither metadata nor source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_and_archived_agree() {
    let _files = SOURCE_BINLOGS.lock().await;
    let a = Scenario::create(cluster(), "arlive").unwrap();
    add_kinds(&a, &a.source_db, true);
    migrate(&a);
    let mut conn = a.source().await.unwrap();
    let mut root = connect(&cluster().source.url("")).await.unwrap();
    // names from information_schema: the table maps carry none
    root.query_drop("SET GLOBAL binlog_row_metadata = MINIMAL")
        .await
        .unwrap();
    root.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let (file, pos) = a.source_head().await.unwrap();
    let from = format!("{file}:{pos}");
    let mut w = Workload::new(11);
    let opts = |seed| WorkloadOptions {
        operations: 300,
        seed,
        rotate_every: 120,
    };
    w.run(&mut conn, &opts(11)).await.unwrap();
    kinds_workload(&mut conn, 1, 1..120).await;
    root.query_drop("SET GLOBAL log_bin_compress = ON, log_bin_compress_min_len = 10")
        .await
        .unwrap();
    // started while the source compresses (no longer refused): it reads
    // the uncompressed part, then follows the compressed one live
    let mut run = spawn_run(&a, &["--from", &from]);
    w.run(&mut conn, &opts(12)).await.unwrap();
    kinds_workload(&mut conn, 2, 120..240).await;
    root.query_drop("SET GLOBAL log_bin_compress = OFF")
        .await
        .unwrap();
    a.wait_caught_up(Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&a)));
    assert!(
        terminate(&mut run, Duration::from_secs(30)).success(),
        "{}",
        run_log(&a)
    );
    verify_ok(&a);

    // archive (with an index file), purge, replay into fresh targets
    let tmp = tempfile::tempdir().unwrap();
    let dir1: PathBuf = tmp.path().join("one");
    root.query_drop("SET GLOBAL binlog_row_metadata = FULL")
        .await
        .unwrap();
    let next = archive(&mut root, &file, &dir1, true).await;
    // MariaDB's own events, compressed ones (log_bin_compress) included,
    // all decoded in the files (and above, live)
    let types = event_types(&dir1);
    let compressed: usize = types
        .iter()
        .filter(|(t, _)| t.contains("_COMPRESSED"))
        .map(|(_, n)| n)
        .sum();
    assert!(compressed > 100, "{types:?}");
    for t in [
        "MARIADB_ANNOTATE_ROWS",
        "MARIADB_GTID_LIST",
        "MARIADB_BINLOG_CHECKPOINT",
        "MARIADB_GTID",
    ] {
        assert!(types.contains_key(t), "no {t} in {types:?}");
    }
    let b = fresh_targets("arfile", &a);
    let (code, out) = replay(&b, &dir1, &from);
    assert_eq!(code, 0, "{out}");
    verify_ok(&b);
    assert_eq!(
        a.target_fingerprint().await.unwrap(),
        b.target_fingerprint().await.unwrap(),
        "live and archived targets differ (rows, versions or tombstones)"
    );

    // FULL metadata: no source needed (files found by sequence, no index)
    let from2 = format!("{next}:4");
    w.run(&mut conn, &opts(13)).await.unwrap();
    kinds_workload(&mut conn, 3, 240..300).await;
    root.query_drop("SET GLOBAL binlog_row_metadata = MINIMAL")
        .await
        .unwrap();
    let next = archive(&mut root, &next, &tmp.path().join("two"), false).await;
    source_reachable(&b, false);
    let (code, out) = replay(&b, &tmp.path().join("two"), &from2);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("source server is not reachable"), "{out}");
    source_reachable(&b, true);
    verify_ok(&b);

    // neither names in the files nor a source: an error naming the table
    kinds_workload(&mut conn, 4, 300..310).await;
    let _ = archive(&mut root, &next, &tmp.path().join("three"), false).await;
    root.query_drop("SET GLOBAL binlog_row_metadata = FULL")
        .await
        .unwrap();
    source_reachable(&b, false);
    let (code, out) = replay(&b, &tmp.path().join("three"), &format!("{next}:4"));
    source_reachable(&b, true);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("arlive_src.kinds") && out.contains("binlog_row_metadata"),
        "{out}"
    );
}

/// A scenario of fresh targets for `src`'s collation tables: the same
/// rules (reading `src`'s source tables), its own control database.
async fn fresh_collation_targets(name: &str, src: &Scenario) -> Scenario {
    let s = Scenario::create(cluster(), name).unwrap();
    only_own_rules(&s);
    for t in [&CI_UTF8, &CI_LATIN1] {
        add_table(&s, t).await;
        let rule = format!("{}.toml", t.name);
        std::fs::copy(
            src.dir.path().join("rules").join(&rule),
            s.dir.path().join("rules").join(&rule),
        )
        .unwrap();
    }
    migrate(&s);
    s
}

/// Every row of the collation tables on every shard, byte-exact with its
/// version, and the tombstones' fingerprint.
async fn collation_targets(s: &Scenario) -> Vec<String> {
    let mut out = s.target_fingerprint().await.unwrap();
    for (shard, url) in &s.shard_urls {
        let mut c = connect(url).await.unwrap();
        for t in [&CI_UTF8, &CI_LATIN1] {
            let rows: Vec<String> = c
                .query(format!(
                    "SELECT CONCAT_WS('|', HEX(k), tenant, IFNULL(n, 'NULL'), HEX(_reshard_version)) FROM {} ORDER BY HEX(k)",
                    t.name
                ))
                .await
                .unwrap();
            out.extend(rows.into_iter().map(|r| format!("{shard}.{}: {r}", t.name)));
        }
    }
    out
}

/// Bug: `replay --binlog-dir` compared text keys byte-wise (it learned no
/// key collations), so a key changed to a collation-equal spelling became
/// a delete plus an upsert of two keys, and the archived replay's targets
/// (tombstones, and rows when the two land out of order) differed from a
/// live run's. Now: learned from the source for the tables it has, taken
/// from the control database for the build that wrote the files without
/// one, and an error naming the table, column and collation otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_text_keys_compare_under_their_collation() {
    let _files = SOURCE_BINLOGS.lock().await;
    let tables = [&CI_UTF8, &CI_LATIN1];
    let a = Scenario::create(cluster(), "arcoll").unwrap();
    only_own_rules(&a);
    for t in tables {
        add_table(&a, t).await;
    }
    a.configure("lanes_per_shard = 4\nbatch_size = 50").unwrap();
    migrate(&a);
    let mut root = connect(&cluster().source.url("")).await.unwrap();
    root.query_drop("SET GLOBAL binlog_row_metadata = FULL")
        .await
        .unwrap();
    root.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let (file, pos) = a.source_head().await.unwrap();
    let from = format!("{file}:{pos}");
    let mut run = spawn_run(&a, &["--from", &from]);
    let mut c = a.source().await.unwrap();
    for t in tables {
        insert_first_spellings(&mut c, t.name, 20).await;
        collation_workload(&mut c, t.name, 20).await;
    }
    a.wait_caught_up(Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&a)));
    assert!(
        terminate(&mut run, Duration::from_secs(30)).success(),
        "{}",
        run_log(&a)
    );
    for t in tables {
        let diffs = compare_table(&a, t, 20).await;
        assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    }
    let live = collation_targets(&a).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("files");
    archive(&mut root, &file, &dir, true).await;

    // the source has the tables: learned from it, as `run` does
    let b = fresh_collation_targets("arcollb", &a).await;
    let (code, out) = replay(&b, &dir, &from);
    assert_eq!(code, 0, "{out}");
    assert_eq!(collation_targets(&b).await, live, "{out}");
    verify_ok(&b);

    // no source: the weights the control database keeps for the build
    // that wrote the files (here copied from the live run's)
    let d = fresh_collation_targets("arcolld", &a).await;
    cluster()
        .targets[0]
        .sql("INSERT INTO arcolld_meta.reshard_collation SELECT * FROM arcoll_meta.reshard_collation")
        .unwrap();
    source_reachable(&d, false);
    let (code, out) = replay(&d, &dir, &from);
    source_reachable(&d, true);
    assert_eq!(code, 0, "{out}");
    assert_eq!(collation_targets(&d).await, live, "{out}");

    // neither the table on the source nor weights kept: refused by name
    let e = fresh_collation_targets("arcolle", &a).await;
    let src = &a.source_db;
    root.query_drop(format!("RENAME TABLE {src}.ci_utf8 TO {src}.ci_utf8_away"))
        .await
        .unwrap();
    let (code, out) = replay(&e, &dir, &from);
    root.query_drop(format!("RENAME TABLE {src}.ci_utf8_away TO {src}.ci_utf8"))
        .await
        .unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("{src}.ci_utf8"))
            && out.contains("column k")
            && out.contains("utf8mb4_general_ci"),
        "{out}"
    );
}

/// The documented MySQL 8/9 fixture rows, replayed from archived files into
/// MariaDB targets, without a MySQL server.
struct Case {
    /// Fixture path under the fixtures folder.
    file: &'static str,
    /// Source table (`db.table`) and target table.
    source: &'static str,
    target: &'static str,
    /// Target columns (before the version column) and the row key.
    columns: &'static str,
    key: &'static str,
    /// What the refusal names, for a case that must be refused.
    refused: Option<&'static str>,
    /// Replay up to the commit after the first event of this type (else to
    /// the end of the file).
    to_after: Option<u8>,
}

const CASES: &[Case] = &[
    // 9.0.1, FULL metadata: SQL scalars inside JSON
    Case {
        file: "rust_mysql_common/json-opaque.binlog",
        source: "foo.test",
        target: "fx_json",
        columns: "a VARCHAR(255) NOT NULL PRIMARY KEY",
        key: "a",
        refused: None,
        to_after: None,
    },
    // 8.0.26, FULL metadata: BIT
    Case {
        file: "rust_mysql_common/mysql_type_bit.000001",
        source: "mysql.foo",
        target: "fx_bit",
        columns: "a BIT(3) NOT NULL PRIMARY KEY, b VARCHAR(64) NULL, c BIT(8) NULL",
        key: "a",
        refused: None,
        to_after: None,
    },
    // 9.0.1, FULL metadata with a primary key: VECTOR (as bytes)
    Case {
        file: "rust_mysql_common/vector.binlog",
        source: "dtb.foo",
        target: "fx_vector",
        columns: "id BIGINT UNSIGNED NOT NULL PRIMARY KEY, vector_column VARBINARY(64) NULL",
        key: "id",
        refused: None,
        to_after: None,
    },
    // 8.0.32, a ZSTD TRANSACTION_PAYLOAD; names from the source's schema
    Case {
        file: "rust_mysql_common/transaction_compression.000001",
        source: "test.tb1",
        target: "fx_payload",
        columns: "c1 INT NOT NULL PRIMARY KEY",
        key: "c1",
        refused: None,
        to_after: None,
    },
    // 8.0.40: a TIME beyond 24 hours; names from the source's schema
    Case {
        file: "rust_mysql_common/time_issue.000001",
        source: "noria.t",
        target: "fx_time",
        columns: "c TIME NOT NULL PRIMARY KEY",
        key: "c",
        refused: None,
        to_after: None,
    },
    // 5.6 with binlog_row_image=MINIMAL: refused
    Case {
        file: "gh-ost/mysql-bin.000066",
        source: "test.samplet",
        target: "fx_samplet",
        columns:
            "id INT NOT NULL PRIMARY KEY, license INT NULL, name VARCHAR(64) NULL, b TINYBLOB NULL",
        key: "id",
        refused: Some("binlog_row_image"),
        to_after: None,
    },
    // 8.0.26, FULL metadata with INVISIBLE columns (COLUMN_VISIBILITY)
    Case {
        file: "rust_mysql_common/binlog-invisible-columns.000001",
        source: "mysql.t1",
        target: "fx_invisible",
        columns: "f1 INT UNSIGNED NULL, f2 INT UNSIGNED NULL, f3 INT NOT NULL PRIMARY KEY, \
                  f4 TEXT NULL, f5 BLOB NULL, f6 BIGINT UNSIGNED NULL",
        key: "f3",
        refused: None,
        to_after: None,
    },
    // 9.6.0: a tagged GTID (MySQL 8.3+); names from the source's schema
    Case {
        file: "rust_mysql_common/binlog_transaction_with_GTID_TAG.000001",
        source: "test.orders",
        target: "fx_tagged",
        columns: "id INT NOT NULL PRIMARY KEY, qty INT NULL, amount DECIMAL(10,2) NULL",
        key: "id",
        refused: None,
        to_after: None,
    },
    // 8.0.28, FULL metadata: CHAR, VARCHAR, ENUM, SET and TEXT, keyed by the
    // ENUM; replayed up to its update (a delete follows)
    Case {
        file: "rust_mysql_common/mysql-enum-string-set.000001",
        source: "mysql.t",
        target: "fx_enumset",
        columns: "f1 CHAR(128) NULL, f2 VARCHAR(300) NULL, \
                  f3 ENUM('var1','variant2','foo') NOT NULL PRIMARY KEY, \
                  f4 SET('one','two','three','four') NULL, f5 TEXT NULL",
        key: "f3",
        refused: None,
        to_after: Some(31),
    },
];

/// Copies a fixture into a directory of its own as `binlog.000001`.
fn as_archive(src: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(src, dir.join("binlog.000001")).unwrap();
}

fn set_pipeline_name(s: &Scenario, name: &str) {
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    let cfg: String = cfg
        .lines()
        .map(|l| {
            if l.starts_with("name = ") {
                format!("name = \"{name}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&s.config, cfg + "\n").unwrap();
}

/// Acceptance "MySQL end to end without a MySQL server".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_binlogs_replay_into_mariadb() {
    let Some(fixtures) = common::fixtures::dir() else {
        return;
    };
    let s = Scenario::create(cluster(), "mysqlfx").unwrap();
    // the fixtures drop and recreate their tables; decoding is what is
    // tested here (the DDL policy on files is tests/ddl_policy.rs's)
    s.configure("on_ddl = \"ignore\"").unwrap();
    let c = cluster();
    // the schemas of the tables whose table maps carry no names
    c.source
        .sql("CREATE DATABASE IF NOT EXISTS test; CREATE DATABASE IF NOT EXISTS noria; \
              CREATE TABLE test.tb1 (c1 INT); CREATE TABLE noria.t (c TIME); \
              CREATE TABLE test.orders (id INT NOT NULL, qty INT, amount DECIMAL(10,2)); \
              CREATE TABLE test.samplet (id INT PRIMARY KEY, license INT, name VARCHAR(64), b TINYBLOB)")
        .unwrap();
    for case in CASES {
        for (shard, url) in &s.shard_urls {
            let db = url.rsplit('/').next().unwrap();
            let n: usize = shard[1..].parse().unwrap();
            c.targets[n % c.targets.len()]
                .sql(&format!(
                    "CREATE TABLE {db}.{} ({}, {VERSION_COL})",
                    case.target, case.columns
                ))
                .unwrap();
        }
        std::fs::write(
            s.dir.path().join("rules").join(format!("{}.toml", case.target)),
            format!(
                "source = \"{}\"\ntarget = \"{}\"\nkey = [\"{}\"]\nshard = \"0\"\nshards = [\"s0\", \"s1\", \"s2\", \"s3\"]\n",
                case.source, case.target, case.key
            ),
        )
        .unwrap();
    }
    migrate(&s);
    let tmp = tempfile::tempdir().unwrap();
    for case in CASES {
        let dir = tmp.path().join(case.target);
        as_archive(&fixtures.join(case.file), &dir);
        set_pipeline_name(&s, case.target);
        let to = case.to_after.map(|ty| {
            let raw = std::fs::read(fixtures.join(case.file)).unwrap();
            format!("binlog.000001:{}", common::fixtures::commit_after(&raw, ty))
        });
        let extra: Vec<&str> = to.iter().flat_map(|t| ["--to", t.as_str()]).collect();
        let (code, out) = replay_files(&s, &dir, "binlog.000001:4", &extra);
        if let Some(named) = case.refused {
            assert_eq!(code, 2, "{out}");
            assert!(out.contains(named), "{out}");
        } else {
            assert_eq!(code, 0, "{}: {out}", case.file);
        }
    }
    // partial JSON updates are refused too (their table needs no rule)
    let dir = tmp.path().join("partial");
    as_archive(&fixtures.join("rust_mysql_common/json.binlog.000001"), &dir);
    set_pipeline_name(&s, "fx_partial");
    let (code, out) = replay(&s, &dir, "binlog.000001:4");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("binlog_row_value_options"), "{out}");
    // a key under utf8mb4_0900_ai_ci (the TABLE_MAP's collation; UCA 9.0
    // has contractions) cannot be compared exactly: refused by name
    let text_key = "source = \"mysql.foo\"\ntarget = \"fx_bit\"\nkey = [\"b\"]\nshard = \"0\"\nshards = [\"s0\", \"s1\", \"s2\", \"s3\"]\n";
    std::fs::write(s.dir.path().join("rules").join("fx_bit.toml"), text_key).unwrap();
    set_pipeline_name(&s, "fx_bit_text");
    let (code, out) = replay(&s, &tmp.path().join("fx_bit"), "binlog.000001:4");
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("utf8mb4_0900_ai_ci") && out.contains("column b of mysql.foo"),
        "{out}"
    );
    documented_rows(&s, &fixtures).await;
}

/// The replayed rows of [`CASES`] equal the fixtures' documentation or an
/// independent decode (`fixtures::first_row_ints`, `mariadb-binlog -v`).
async fn documented_rows(s: &Scenario, fixtures: &Path) {
    let mut s0 = connect(&s.shard_urls["s0"]).await.unwrap();
    let mut json: Vec<String> = s0.query("SELECT a FROM fx_json").await.unwrap();
    json.sort();
    let mut want = common::fixtures::JSON_OPAQUE.to_vec();
    want.sort();
    assert_eq!(json, want);
    let bit: Vec<(u64, String, u64)> = s0
        .query("SELECT a + 0, b, c + 0 FROM fx_bit")
        .await
        .unwrap();
    assert_eq!(bit, vec![(4, "foo".to_string(), 32)]);
    let floats = |f: &[f32]| f.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let vectors: Vec<(u64, Vec<u8>)> = s0
        .query("SELECT id, vector_column FROM fx_vector ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        vectors,
        vec![
            (1, floats(&[1.1, 2.2, 3.3])),
            (2, floats(&[1.0, -1.0, 0.0]))
        ]
    );
    let payload: Vec<i32> = s0.query("SELECT c1 FROM fx_payload").await.unwrap();
    let raw =
        std::fs::read(fixtures.join("rust_mysql_common/transaction_compression.000001")).unwrap();
    assert_eq!(payload, common::fixtures::first_row_ints(&raw, 1));
    let time: Vec<String> = s0
        .query("SELECT CAST(c AS CHAR) FROM fx_time")
        .await
        .unwrap();
    assert_eq!(time, vec!["-507:48:27".to_string()]);
    // as `mariadb-binlog -v` decodes the file
    type Invisible = (Option<u32>, Option<u32>, i32, String, Vec<u8>, Option<u64>);
    let invisible: Vec<Invisible> = s0
        .query("SELECT f1, f2, f3, f4, f5, f6 FROM fx_invisible ORDER BY f3 DESC")
        .await
        .unwrap();
    assert_eq!(
        invisible,
        vec![
            (
                Some(1),
                Some(2),
                -3,
                "4".into(),
                vec![5],
                Some(6_000_000_000)
            ),
            (
                Some(111),
                Some(222),
                -333,
                "444".into(),
                b"U".to_vec(),
                None
            ),
        ]
    );
    // the INTs and the DECIMAL(10,2) decoded here: 4 bytes of integer part
    // and 1 of fraction, big-endian, the sign bit flipped
    let raw =
        std::fs::read(fixtures.join("rust_mysql_common/binlog_transaction_with_GTID_TAG.000001"))
            .unwrap();
    let ints = common::fixtures::first_row_ints(&raw, 2);
    let (_, _, _, ev) = common::fixtures::walk_events(&raw)
        .into_iter()
        .find(|e| e.1 == 30)
        .unwrap();
    let d = &ev[ev.len() - 4 - 5..ev.len() - 4];
    let whole = u32::from_be_bytes([d[0] ^ 0x80, d[1], d[2], d[3]]);
    let amount = format!("{whole}.{:02}", d[4]);
    let tagged: Vec<(i32, i32, String)> = s0
        .query("SELECT id, qty, CAST(amount AS CHAR) FROM fx_tagged")
        .await
        .unwrap();
    assert_eq!(tagged, vec![(ints[0], ints[1], amount)]);
    // rust_mysql_common's upstream test: the row after the update
    let digits = |n: usize| -> String { "0123456789".chars().cycle().take(n).collect() };
    let enumset: Vec<(String, String, String, String, String)> = s0
        .query("SELECT f1, f2, CAST(f3 AS CHAR), CAST(f4 AS CHAR), f5 FROM fx_enumset")
        .await
        .unwrap();
    let f5 = format!("{}{}{}", digits(129), digits(129), digits(40));
    assert_eq!(
        enumset,
        vec![(
            "field1".into(),
            "field_2".into(),
            "variant2".into(),
            "two,four".into(),
            f5
        )]
    );
}
