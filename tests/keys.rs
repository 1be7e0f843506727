//! Keys as production schemas have them, against real MariaDB servers
//! through the real binary: `BINARY(n)` keys whose value ends in zero bytes,
//! keys that are equal under their column's collation, copy paging on text
//! keys, and the longest keys MySQL allows.

mod common;

use std::time::{Duration, Instant};

use common::collations::{collation_workload, exec, insert_first_spellings, CI_LATIN1, CI_UTF8};
use common::tables::{add_table, compare_table, head, only_own_rules, Table};
use common::*;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reshard_testkit::scenario::Scenario;

/// A scenario with only `tables` mapped, `config` lines added to its
/// `[pipeline]`, migrated.
async fn scenario(name: &str, tables: &[&Table<'_>], config: &str) -> Scenario {
    let s = Scenario::create(cluster(), name).unwrap();
    only_own_rules(&s);
    if !config.is_empty() {
        s.configure(config).unwrap();
    }
    for t in tables {
        add_table(&s, t).await;
    }
    migrate(&s);
    s
}

/// Waits until the initial copy of `run` is done.
fn wait_for_copy(s: &Scenario, run: &mut std::process::Child) {
    let timeout = Duration::from_secs(120);
    let deadline = Instant::now() + timeout;
    while !run_log(s).contains("initial copy done") {
        if let Ok(Some(st)) = run.try_wait() {
            panic!(
                "reshard run exited ({st}) before the copy was done:\n{}",
                run_log(s)
            );
        }
        assert!(
            Instant::now() < deadline,
            "the copy was not done within {timeout:?}:\n{}",
            run_log(s)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Streams until caught up, compares, stops the pipeline.
async fn converge(s: &Scenario, run: &mut std::process::Child, tables: &[&Table<'_>]) {
    s.wait_caught_up(Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(s)));
    let mut diffs = Vec::new();
    for t in tables {
        diffs.extend(compare_table(s, t, 20).await);
    }
    let st = terminate(run, Duration::from_secs(30));
    assert!(diffs.is_empty(), "{}\n{}", diffs.join("\n"), run_log(s));
    assert!(st.success(), "{}", run_log(s));
}

/// `replay --from … --to <head>`, then the targets must still equal the
/// source. Returns the replay's log.
async fn replay_and_compare(s: &Scenario, from: &str, tables: &[&Table<'_>]) -> String {
    let to = head(s).await;
    let out = reshard(s, &["replay", "--from", from, "--to", &to]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut diffs = Vec::new();
    for t in tables {
        diffs.extend(compare_table(s, t, 20).await);
    }
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        diffs.is_empty(),
        "after the replay:\n{}\n{log}",
        diffs.join("\n")
    );
    log
}

// ---------------------------------------------------------------------
// 1. BINARY(n) keys ending in 0x00

const UUIDS: Table = Table {
    name: "uuids",
    columns: "id BINARY(16) NOT NULL, tenant INT NOT NULL, note VARCHAR(40) NULL",
    key: "PRIMARY KEY (id)",
    shard: "crc32(tenant) % 4",
    shard_sql: "CRC32(tenant) % 4",
};

/// A 16-byte key (unique for each `i`); `i % 4` of 2 and 3 end in one or
/// several zero bytes (`i % 16 == 3`: all zero but the first two bytes),
/// the others in a non-zero byte (some with zeros inside).
fn uuid(rng: &mut StdRng, i: usize) -> Vec<u8> {
    let mut k: [u8; 16] = rng.gen();
    k[0] = k[0].max(1);
    let zeros = match i % 4 {
        2 => 1,
        3 if i % 16 == 3 => {
            k[0] = (i >> 8) as u8 + 1;
            k[1] = i as u8;
            14
        }
        3 => rng.gen_range(2..8),
        _ => {
            k[15] = k[15].max(1);
            if i % 8 == 1 {
                k[7] = 0;
            }
            0
        }
    };
    for b in &mut k[16 - zeros..] {
        *b = 0;
    }
    k.to_vec()
}

async fn insert_uuid(c: &mut Conn, id: &[u8], tenant: i32, note: &str) {
    c.exec_drop(
        "INSERT INTO uuids (id, tenant, note) VALUES (?, ?, ?)",
        (Value::Bytes(id.to_vec()), tenant, note),
    )
    .await
    .unwrap();
}

/// Issue 8, item 1: the binlog drops a BINARY value's trailing zero bytes.
/// Keys ending in 0x00 must be copied, updated, moved across shards,
/// re-keyed and deleted like any other, while streaming and in a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary16_keys_ending_in_zero_are_copied_moved_rekeyed_and_deleted() {
    let s = scenario("kbin", &[&UUIDS], "").await;
    let mut rng = StdRng::seed_from_u64(16);
    let mut c = s.source().await.unwrap();
    let mut live: Vec<Vec<u8>> = Vec::new();
    for i in 0..200 {
        let id = uuid(&mut rng, i);
        insert_uuid(&mut c, &id, (i % 13) as i32, "copied").await;
        live.push(id);
    }
    // also the all-zero key, which the binlog carries as an empty string
    insert_uuid(&mut c, &[0u8; 16], 1, "zero").await;
    live.push(vec![0u8; 16]);

    let mut run = spawn_run(&s, &[]);
    wait_for_copy(&s, &mut run);
    let streamed_from = head(&s).await;
    for i in 200..400 {
        let id = uuid(&mut rng, i);
        insert_uuid(&mut c, &id, (i % 13) as i32, "streamed").await;
        live.push(id);
    }
    for (n, id) in live.iter().enumerate().step_by(3) {
        c.exec_drop(
            "UPDATE uuids SET note = ? WHERE id = ?",
            (format!("updated {n}"), Value::Bytes(id.clone())),
        )
        .await
        .unwrap();
    }
    // moved across shards (the shard follows tenant)
    for id in live.iter().skip(1).step_by(4) {
        c.exec_drop(
            "UPDATE uuids SET tenant = tenant + 5 WHERE id = ?",
            (Value::Bytes(id.clone()),),
        )
        .await
        .unwrap();
    }
    // re-keyed, to keys that end in zeros and keys that do not
    for (n, slot) in live.iter_mut().enumerate().skip(2).step_by(5) {
        let new = uuid(&mut rng, 400 + n);
        c.exec_drop(
            "UPDATE uuids SET id = ? WHERE id = ?",
            (Value::Bytes(new.clone()), Value::Bytes(slot.clone())),
        )
        .await
        .unwrap();
        *slot = new;
    }
    // deleted and re-inserted in one transaction
    for id in live.iter().skip(3).step_by(10) {
        let mut tx = c
            .start_transaction(mysql_async::TxOpts::default())
            .await
            .unwrap();
        tx.exec_drop(
            "DELETE FROM uuids WHERE id = ?",
            (Value::Bytes(id.clone()),),
        )
        .await
        .unwrap();
        insert_uuid_tx(&mut tx, id).await;
        tx.commit().await.unwrap();
    }
    // deleted, half of what is left
    for id in live.iter().step_by(2) {
        c.exec_drop(
            "DELETE FROM uuids WHERE id = ?",
            (Value::Bytes(id.clone()),),
        )
        .await
        .unwrap();
    }
    let left: u64 = c
        .query_first("SELECT COUNT(*) FROM uuids WHERE RIGHT(id, 1) = 0x00")
        .await
        .unwrap()
        .unwrap();
    assert!(left > 50, "only {left} keys end in 0x00");
    converge(&s, &mut run, &[&UUIDS]).await;
    replay_and_compare(&s, &streamed_from, &[&UUIDS]).await;
}

async fn insert_uuid_tx(tx: &mut mysql_async::Transaction<'_>, id: &[u8]) {
    tx.exec_drop(
        "INSERT INTO uuids (id, tenant, note) VALUES (?, 7, 're-inserted')",
        (Value::Bytes(id.to_vec()),),
    )
    .await
    .unwrap();
}

// ---------------------------------------------------------------------
// 2. Keys equal under the column's collation

/// Issue 8, item 2: under `utf8mb4_general_ci` and `latin1_swedish_ci`
/// 'a' = 'A', 'e' = 'é' and trailing spaces are ignored. Keys changed to a
/// collation-equal spelling must end with the source's current bytes on
/// the target, while streaming (several lanes per shard) and after a
/// replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_equal_under_the_collation_keep_the_sources_bytes() {
    let tables = [&CI_UTF8, &CI_LATIN1];
    let s = scenario("kcoll", &tables, "lanes_per_shard = 4\nbatch_size = 50").await;
    let keys = 40;
    let mut c = s.source().await.unwrap();
    for t in tables {
        insert_first_spellings(&mut c, t.name, keys).await;
    }
    let mut run = spawn_run(&s, &[]);
    wait_for_copy(&s, &mut run);
    let streamed_from = head(&s).await;
    for t in tables {
        collation_workload(&mut c, t.name, keys).await;
    }
    converge(&s, &mut run, &tables).await;
    assert!(run_log(&s).contains("learned the weights of a key collation"));
    let replayed = replay_and_compare(&s, &streamed_from, &tables).await;
    assert!(
        replayed.contains("INFO") && !replayed.contains("learned the weights"),
        "a restart reuses the weights kept in the control database:\n{replayed}"
    );
}

/// The collations reshard learns agree with the server: for every pair
/// of a few hundred strings (case, accents, expansions, trailing spaces
/// and tabs, emoji, CJK, combining marks), canonical keys are equal
/// exactly when the server finds the strings equal. Collations reshard
/// cannot compare exactly are refused with the table, column and
/// collation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_collations_agree_with_the_server() {
    use reshard::source::collation::CollationLoader;
    use reshard::source::schema::load_table;
    use reshard::writer::keyenc;
    let c = cluster();
    let db = "kcmp";
    c.source.sql(&format!("CREATE DATABASE {db}")).unwrap();
    let mut conn = reshard_testkit::scenario::connect(&c.source.url(db))
        .await
        .unwrap();
    let pieces = [
        "a",
        "A",
        "b",
        "B",
        "e",
        "E",
        "\u{e9}",
        "\u{c9}",
        "\u{df}",
        "ss",
        "SS",
        "\u{fc}",
        "y",
        "\u{e6}",
        "ae",
        "o",
        "\u{f6}",
        " ",
        "\t",
        "-",
        "0",
        "\u{1f600}",
        "\u{1f601}",
        "\u{4e2d}",
        "\u{301}",
        "\u{130}",
        "\u{131}",
        "i",
        "I",
    ];
    let mut rng = StdRng::seed_from_u64(8);
    let mut strings: Vec<String> = (0..400)
        .map(|_| {
            let n = rng.gen_range(0..4);
            let mut s: String = (0..n)
                .map(|_| pieces[rng.gen_range(0..pieces.len())])
                .collect();
            if rng.gen_bool(0.3) {
                s.push_str(&" ".repeat(rng.gen_range(1..3)));
            }
            s
        })
        .collect();
    strings.sort();
    strings.dedup();
    let collations = [
        ("utf8mb4", "utf8mb4_general_ci"),
        ("utf8mb4", "utf8mb4_general_nopad_ci"),
        ("utf8mb4", "utf8mb4_unicode_ci"),
        ("utf8mb4", "utf8mb4_unicode_520_ci"),
        ("utf8mb4", "utf8mb4_bin"),
        ("utf8mb4", "utf8mb4_nopad_bin"),
        ("utf8mb3", "utf8mb3_general_ci"),
        ("latin1", "latin1_swedish_ci"),
        ("latin1", "latin1_german2_ci"),
        ("latin1", "latin1_bin"),
    ];
    for (i, (cs, coll)) in collations.iter().enumerate() {
        let t = format!("t{i}");
        conn.query_drop(format!(
            "CREATE TABLE {t} (id INT PRIMARY KEY, k VARCHAR(40) CHARACTER SET {cs} COLLATE {coll} NOT NULL, UNIQUE KEY (id, k))"
        ))
        .await
        .unwrap();
        let mut id = 0;
        for s in &strings {
            let fits: Option<i64> = conn
                .exec_first(format!("SELECT CONVERT(CONVERT(? USING {cs}) USING utf8mb4) = ? COLLATE utf8mb4_bin"), (s, s))
                .await
                .unwrap();
            if fits == Some(1) {
                conn.exec_drop(format!("INSERT INTO {t} VALUES (?, ?)"), (id, s))
                    .await
                    .unwrap();
                id += 1;
            }
        }
        let mut loader = CollationLoader::default();
        let key = vec!["k".to_string()];
        loader
            .learn_table(&mut conn, db, &t, Some(&key))
            .await
            .unwrap();
        let learned = loader.finish();
        let schema = load_table(&mut conn, db, &t).await.unwrap();
        let part = learned.part(&schema, 1).unwrap();
        let rows: Vec<(i64, Vec<u8>)> = conn
            .query(format!("SELECT id, CAST(k AS BINARY) FROM {t}"))
            .await
            .unwrap();
        let canon: std::collections::HashMap<i64, Vec<u8>> = rows
            .into_iter()
            .map(|(id, b)| {
                (
                    id,
                    keyenc::canonical(&[Value::Bytes(b)], std::slice::from_ref(&part)),
                )
            })
            .collect();
        let pairs: Vec<(i64, i64, i64)> = conn
            .query(format!("SELECT a.id, b.id, a.k = b.k FROM {t} a, {t} b"))
            .await
            .unwrap();
        let mut equal = 0;
        for (a, b, eq) in &pairs {
            assert_eq!(
                canon[a] == canon[b],
                *eq == 1,
                "{coll}: ids {a} and {b}: server says equal = {eq}"
            );
            equal += usize::from(*eq == 1 && a != b);
        }
        eprintln!("{coll}: {} strings, {equal} equal pairs", canon.len());
    }
    // refused, naming table, column and collation
    for (cs, coll) in [
        ("utf8mb4", "utf8mb4_czech_ci"),
        ("latin2", "latin2_czech_cs"),
        ("utf8mb4", "utf8mb4_spanish2_ci"),
        ("ucs2", "ucs2_general_ci"),
    ] {
        let t = format!("r_{coll}");
        conn.query_drop(format!(
            "CREATE TABLE {t} (k VARCHAR(10) CHARACTER SET {cs} COLLATE {coll} PRIMARY KEY)"
        ))
        .await
        .unwrap();
        let mut loader = CollationLoader::default();
        let e = loader
            .learn_table(&mut conn, db, &t, None)
            .await
            .expect_err(coll)
            .to_string();
        assert!(
            e.contains(&format!("{db}.{t}")) && e.contains(coll) && e.contains("column k"),
            "{e}"
        );
    }
}

/// A key collation reshard cannot compare exactly is refused by `run` at
/// start-up, naming table, column and collation, and is a `dry-run`
/// finding; so is a target key column whose collation is not the
/// source's (with the fix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_and_mismatched_key_collations_are_refused_and_reported() {
    let czech = Table {
        name: "czech",
        columns: "k VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_czech_ci NOT NULL, tenant INT NOT NULL",
        ..CI_UTF8
    };
    let s = scenario("kref", &[&czech, &CI_UTF8], "").await;
    // the targets' key column compares byte-wise, the source's does not
    for url in s.shard_urls.values() {
        let mut c = reshard_testkit::scenario::connect(url).await.unwrap();
        c.query_drop("ALTER TABLE ci_utf8 MODIFY k VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL")
            .await
            .unwrap();
    }
    let out = reshard(&s, &["dry-run", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(1), "{json:#}");
    let findings: Vec<&serde_json::Value> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "key_collation")
        .collect();
    let unsupported = findings
        .iter()
        .find(|f| f["table"] == "kref_src.czech")
        .unwrap_or_else(|| panic!("{json:#}"));
    let msg = unsupported["message"].as_str().unwrap();
    assert!(
        msg.contains("utf8mb4_czech_ci") && msg.contains("column k"),
        "{msg}"
    );
    let mismatched: Vec<_> = findings
        .iter()
        .filter(|f| f["table"] == "kref_src.ci_utf8")
        .collect();
    assert_eq!(mismatched.len(), 4, "one per shard: {json:#}");
    let fix = mismatched[0]["fix"].as_str().unwrap();
    assert!(fix.contains("COLLATE utf8mb4_general_ci"), "{fix}");

    let out = reshard(&s, &["run"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("kref_src.czech")
            && stderr.contains("column k")
            && stderr.contains("utf8mb4_czech_ci"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------
// 3. Copy paging on text keys

/// Inserts distinct (under the column's collation) random keys mixing
/// case, accents, symbols and digits until the table holds `n` rows.
async fn fill_text_keys(c: &mut Conn, table: &str, n: u64, utf8: bool, seed: u64) {
    let mut pieces = vec![
        "a", "A", "b", "B", "z", "Z", "e", "E", "\u{e9}", "\u{c9}", "\u{e8}", "\u{f6}", "\u{d6}",
        "\u{e5}", "\u{fc}", "\u{df}", "0", "1", "9", "-", "_", ".", "~", "!", "#", "@", " ",
    ];
    if utf8 {
        pieces.extend(["\u{4e2d}", "\u{1f600}", "\u{142}", "\u{3b1}"]);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let have: u64 = c
            .query_first(format!("SELECT COUNT(*) FROM {table}"))
            .await
            .unwrap()
            .unwrap();
        if have >= n {
            break;
        }
        let batch = (n - have).min(500) as usize;
        let keys: Vec<String> = (0..batch)
            .map(|_| {
                let len = rng.gen_range(1..10);
                (0..len)
                    .map(|_| pieces[rng.gen_range(0..pieces.len())])
                    .collect()
            })
            .collect();
        let rows = vec!["(?, 1, 0)"; batch].join(", ");
        c.exec_drop(
            format!("INSERT IGNORE INTO {table} (k, tenant, n) VALUES {rows}"),
            keys,
        )
        .await
        .unwrap();
    }
}

/// Issue 8, item 3: the initial copy pages `WHERE key > ?` and `ORDER BY
/// key`; both must order text keys by the column's collation (one keyset
/// reader for copy, sampling and verify, see `source::rows`). Two tables of
/// 6,000 VARCHAR keys (latin1_swedish_ci, utf8mb4_general_ci) copied in
/// pages of 100: every row arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_pages_text_keys_in_collation_order_every_row_exactly_once() {
    let tables = [&CI_UTF8, &CI_LATIN1];
    let s = scenario("kpage", &tables, "snapshot_chunk_rows = 100").await;
    let mut c = s.source().await.unwrap();
    fill_text_keys(&mut c, CI_UTF8.name, 6000, true, 1).await;
    fill_text_keys(&mut c, CI_LATIN1.name, 6000, false, 2).await;
    let mut run = spawn_run(&s, &[]);
    wait_for_copy(&s, &mut run);
    let mut control = reshard_testkit::scenario::connect(&s.control_url)
        .await
        .unwrap();
    let copied: Vec<(String, u64)> = control
        .exec(
            "SELECT source_table, rows_copied FROM reshard_snapshot_table WHERE pipeline = ? ORDER BY source_table",
            (&s.name,),
        )
        .await
        .unwrap();
    assert_eq!(
        copied,
        vec![
            ("kpage_src.ci_latin1".to_string(), 6000),
            ("kpage_src.ci_utf8".to_string(), 6000)
        ],
        "rows read by the copy's pages"
    );
    converge(&s, &mut run, &tables).await;
}

// ---------------------------------------------------------------------
// 4. Long keys

const LONG_BIN: Table = Table {
    name: "long_bin",
    columns: "k VARBINARY(3072) NOT NULL, tenant INT NOT NULL, n INT NULL",
    key: "PRIMARY KEY (k)",
    shard: "crc32(tenant) % 4",
    shard_sql: "CRC32(tenant) % 4",
};

const LONG_TEXT: Table = Table {
    name: "long_text",
    columns: "k VARCHAR(768) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL, tenant INT NOT NULL, n INT NULL",
    key: "PRIMARY KEY (k)",
    shard: "crc32(tenant) % 4",
    shard_sql: "CRC32(tenant) % 4",
};

/// The longest key of each table, told apart by its last character only:
/// 3,072 bytes, or 768 characters of which 767 CJK (3 bytes of text, 4 of
/// `unicode_ci` weights each).
fn long_key(table: &str, i: usize) -> String {
    let last = ["a", "b", "c", "d", "e", "f", "g", "h", "x", "y"][i % 10];
    let last = format!("{last}{}", i / 10);
    if table == LONG_BIN.name {
        format!("{}{last}", "k".repeat(3072 - last.len()))
    } else {
        format!("{}{last}", "\u{4e2d}".repeat(768 - last.chars().count()))
    }
}

/// Issue 8, item 4: MySQL allows 3,072-byte keys, longer than the
/// tombstone key column (and than the copy's saved cursor was). Such keys
/// are copied (the cursor saved between pages), updated, deleted (the
/// tombstone holds a digest of the key, never a truncated key),
/// re-inserted and replayed like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_keys_are_copied_deleted_and_replayed_never_truncated() {
    let tables = [&LONG_BIN, &LONG_TEXT];
    let s = scenario("klong", &tables, "snapshot_chunk_rows = 7").await;
    let mut c = s.source().await.unwrap();
    let insert = |t: &str| format!("INSERT INTO {t} (k, tenant, n) VALUES (?, ?, 0)");
    for t in tables {
        for i in 0..30 {
            exec(
                &mut c,
                insert(t.name),
                vec![long_key(t.name, i).into(), (i as i64).into()],
            )
            .await;
        }
    }
    let mut run = spawn_run(&s, &[]);
    wait_for_copy(&s, &mut run);
    let streamed_from = head(&s).await;
    for t in tables {
        let name = t.name;
        for i in 30..60 {
            exec(
                &mut c,
                insert(name),
                vec![long_key(name, i).into(), (i as i64).into()],
            )
            .await;
        }
        for i in (0..60).step_by(3) {
            let sql = format!("UPDATE {name} SET n = n + 1, tenant = tenant + 1 WHERE k = ?");
            exec(&mut c, sql, vec![long_key(name, i).into()]).await;
        }
        for i in (0..60).step_by(2) {
            exec(
                &mut c,
                format!("DELETE FROM {name} WHERE k = ?"),
                vec![long_key(name, i).into()],
            )
            .await;
        }
        // deleted keys come back, on another shard
        for i in (0..60).step_by(8) {
            exec(
                &mut c,
                insert(name),
                vec![long_key(name, i).into(), (i as i64 + 100).into()],
            )
            .await;
        }
    }
    // the long text keys change spelling: the last letter's case
    let sql =
        "UPDATE long_text SET k = CONCAT(LEFT(k, 767), UPPER(RIGHT(k, 1))) WHERE k LIKE '%x_'";
    c.query_drop(sql).await.unwrap();
    converge(&s, &mut run, &tables).await;
    for url in s.shard_urls.values() {
        let mut t = reshard_testkit::scenario::connect(url).await.unwrap();
        let lengths: Vec<(Vec<u8>, u64)> = t
            .query("SELECT tbl, MAX(LENGTH(k)) FROM _reshard_tombstone GROUP BY tbl")
            .await
            .unwrap();
        for (tbl, len) in lengths {
            assert_eq!(len, 33, "{}: a digested key", String::from_utf8_lossy(&tbl));
        }
    }
    replay_and_compare(&s, &streamed_from, &tables).await;
}
