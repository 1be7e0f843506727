//! `reshard verify` against real servers, through the real binary: a
//! converged pipeline verifies clean (also while the source keeps
//! changing), tampered targets show every kind of difference under the
//! right key and shard, `--table` restricts the comparison, and an
//! unreachable server is an error.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};
use reshard_testkit::scenario::{connect, Scenario, Workload, WorkloadOptions};
use serde_json::Value as Json;

fn verify(s: &Scenario, extra: &[&str]) -> (i32, Json, String) {
    let mut args = vec!["verify", "--json"];
    args.extend_from_slice(extra);
    let out = reshard(s, &args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}\n{stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

/// Keys of one category of one table as (key, shard, expected_shard).
fn keys(json: &Json, table: &str, category: &str) -> Vec<(String, String, String)> {
    let t = &json["tables"][table][category];
    t["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no {category} in {table}: {json:#}"))
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap_or("").to_string(),
                k["shard"].as_str().unwrap_or("").to_string(),
                k["expected_shard"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn count(json: &Json, table: &str, category: &str) -> u64 {
    json["tables"][table][category]["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no count for {table} {category}: {json:#}"))
}

async fn shard(s: &Scenario, name: &str) -> mysql_async::Conn {
    connect(&s.shard_urls[name]).await.unwrap()
}

/// Converge a pipeline on a 1000-operation workload, verify it clean (once
/// idle, once while the source keeps changing), then tamper with the
/// targets and check that each tampered key is reported in its category
/// and shard, with every chunking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converged_pipeline_verifies_clean_and_tampering_is_found() {
    let started = Instant::now();
    let s = Scenario::create(cluster(), "vfy").unwrap();
    migrate(&s);
    let (file, pos) = s.source_head().await.unwrap();
    let mut run = spawn_run(&s, &["--from", &format!("{file}:{pos}")]);
    let mut conn = s.source().await.unwrap();
    let mut w = Workload::new(5);
    w.run(
        &mut conn,
        &WorkloadOptions {
            operations: 1000,
            seed: 5,
            rotate_every: 400,
        },
    )
    .await
    .unwrap();
    s.wait_caught_up(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    eprintln!("converged after {:?}", started.elapsed());

    // 1. converged: exit 0, nothing to report
    let (code, json, stderr) = verify(&s, &[]);
    assert_eq!(code, 0, "{json:#}\n{stderr}\n{}", run_log(&s));
    assert_eq!(json["ok"], true);
    assert_eq!(json["differences"], 0);
    let orders = "vfy_src.orders";
    let items = "vfy_src.items";
    for t in [orders, items] {
        let rows = json["tables"][t]["source_rows"].as_u64().unwrap();
        assert!(rows > 50, "{t}: {json:#}");
        let per_shard = json["tables"][t]["per_shard"].as_object().unwrap();
        assert_eq!(per_shard.len(), 4, "{t}: {json:#}");
        let found: u64 = per_shard
            .values()
            .map(|c| c["found"].as_u64().unwrap())
            .sum();
        let expected: u64 = per_shard
            .values()
            .map(|c| c["expected"].as_u64().unwrap())
            .sum();
        assert_eq!((found, expected), (rows, rows), "{t}: {json:#}");
    }
    assert!(
        json["tables"].get("vfy_src.unmapped").is_none(),
        "unmapped tables are not verified"
    );

    // 1b. while the source changes and the pipeline follows: rows changed
    // during the verify are re-checked, not reported
    let bg = tokio::spawn(async move {
        w.run(
            &mut conn,
            &WorkloadOptions {
                operations: 300,
                seed: 6,
                rotate_every: 0,
            },
        )
        .await
        .map(|()| (w, conn))
    });
    let cfg = s.config.clone();
    let dir = s.dir.path().to_path_buf();
    let live = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(["verify", "--json", "--chunk-rows", "16", "--config"])
            .arg(cfg)
            .current_dir(dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    bg.await.unwrap().unwrap();
    if let Ok(j) = serde_json::from_slice::<Json>(&live.stdout) {
        for t in [orders, items] {
            eprintln!(
                "verify during the workload, {t}: {} chunks, {} differing, {} key(s) re-checked",
                j["tables"][t]["chunks"],
                j["tables"][t]["chunks_differing"],
                j["tables"][t]["rechecked"]
            );
        }
    }
    assert_eq!(
        live.status.code(),
        Some(0),
        "verify during a workload reported differences:\n{}\n{}",
        String::from_utf8_lossy(&live.stdout),
        String::from_utf8_lossy(&live.stderr)
    );
    s.wait_caught_up(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    let st = terminate(&mut run, Duration::from_secs(30));
    assert!(st.success(), "{}", run_log(&s));

    // 1c. a source change the stopped pipeline has not applied is a real
    // difference, and re-checking does not hide it…
    let mut src = s.source().await.unwrap();
    let (oid, line): (u64, i64) = src
        .exec_first(
            "SELECT order_id, line FROM items ORDER BY order_id, line LIMIT 1",
            (),
        )
        .await
        .unwrap()
        .expect("an item");
    src.exec_drop(
        "UPDATE items SET sku = 'changed while verifying' WHERE order_id = ? AND line = ?",
        (oid, line),
    )
    .await
    .unwrap();
    let changed = format!("({oid}, {line})");
    let (code, json, stderr) = verify(&s, &["--rechecks", "1", "--recheck-delay-ms", "50"]);
    assert_eq!(code, 1, "{json:#}\n{stderr}");
    assert_eq!(json["differences"], 1, "{json:#}");
    assert_eq!(keys(&json, items, "different")[0].0, changed, "{json:#}");
    assert_eq!(
        json["tables"][items]["different"]["keys"][0]["columns"],
        serde_json::json!(["sku"])
    );
    // …but once the pipeline applies it during the re-checks, it is not
    // reported: start verify, and the pipeline only after verify saw the
    // difference at first sight
    let mut live = s
        .reshard(
            BIN,
            &[
                "verify",
                "--json",
                "--rechecks",
                "20",
                "--recheck-delay-ms",
                "500",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(live.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut err, &mut line).unwrap();
        assert!(n > 0, "verify ended before re-checking:\n{seen}");
        seen.push_str(&line);
        if line.contains("re-checking") {
            break;
        }
    }
    let mut run = spawn_run(&s, &[]);
    let out = live.wait_with_output().unwrap();
    let json: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{json:#}\n{seen}\n{}",
        run_log(&s)
    );
    assert!(
        json["tables"][items]["rechecked"].as_u64() >= Some(1),
        "{json:#}"
    );
    s.wait_caught_up(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    let st = terminate(&mut run, Duration::from_secs(30));
    assert!(st.success(), "{}", run_log(&s));

    // 2. tamper directly on the targets (the pipeline is stopped)
    let mut s0 = shard(&s, "s0").await;
    let missing: u64 = s0
        .query_first("SELECT id FROM orders ORDER BY id LIMIT 1")
        .await
        .unwrap()
        .expect("an order on s0");
    s0.exec_drop("DELETE FROM orders WHERE id = ?", (missing,))
        .await
        .unwrap();
    let mut s1 = shard(&s, "s1").await;
    let different: u64 = s1
        .query_first("SELECT id FROM orders ORDER BY id DESC LIMIT 1")
        .await
        .unwrap()
        .expect("an order on s1");
    s1.exec_drop(
        "UPDATE orders SET qty = IFNULL(qty, 0) + 1000 WHERE id = ?",
        (different,),
    )
    .await
    .unwrap();
    let mut s2 = shard(&s, "s2").await;
    let row: Row = s2
        .exec_first(
            "SELECT order_id, line, sku, price, flag, memo FROM items ORDER BY order_id, line LIMIT 1",
            (),
        )
        .await
        .unwrap()
        .expect("an item on s2");
    let values: Vec<Value> = row.unwrap();
    let misplaced = match (&values[0], &values[1]) {
        (Value::UInt(o), Value::Int(l)) => format!("({o}, {l})"),
        (Value::Int(o), Value::Int(l)) => format!("({o}, {l})"),
        other => panic!("unexpected key values {other:?}"),
    };
    let mut s3 = shard(&s, "s3").await;
    s3.exec_drop(
        "INSERT INTO items (order_id, line, sku, price, flag, memo) VALUES (?, ?, ?, ?, ?, ?)",
        values,
    )
    .await
    .unwrap();
    // keys the source cannot have: below every key, and above every key
    s2.query_drop("INSERT INTO orders (id, buyer_id) VALUES (0, 5)")
        .await
        .unwrap();
    s1.query_drop("INSERT INTO items (order_id, line, sku) VALUES (18446744073709551615, 99, 'x')")
        .await
        .unwrap();

    for chunk in ["1000", "7"] {
        let (code, json, stderr) = verify(&s, &["--chunk-rows", chunk]);
        let ctx = format!("--chunk-rows {chunk}: {json:#}\n{stderr}");
        assert_eq!(code, 1, "{ctx}");
        assert_eq!(json["ok"], false, "{ctx}");
        assert_eq!(json["differences"], 5, "{ctx}");
        assert_eq!(
            keys(&json, orders, "missing"),
            vec![(format!("({missing})"), "s0".into(), String::new())],
            "{ctx}"
        );
        assert_eq!(
            keys(&json, orders, "different"),
            vec![(format!("({different})"), "s1".into(), String::new())],
            "{ctx}"
        );
        assert_eq!(
            json["tables"][orders]["different"]["keys"][0]["columns"],
            serde_json::json!(["qty"]),
            "{ctx}"
        );
        assert_eq!(
            keys(&json, orders, "extra"),
            vec![("(0)".into(), "s2".into(), String::new())],
            "{ctx}"
        );
        assert_eq!(
            keys(&json, items, "misplaced"),
            vec![(misplaced.clone(), "s3".into(), "s2".into())],
            "{ctx}"
        );
        assert_eq!(
            keys(&json, items, "extra"),
            vec![(
                "(18446744073709551615, 99)".into(),
                "s1".into(),
                String::new()
            )],
            "{ctx}"
        );
        for (t, c) in [
            (orders, "misplaced"),
            (orders, "unroutable"),
            (items, "missing"),
            (items, "different"),
            (items, "unroutable"),
        ] {
            assert_eq!(count(&json, t, c), 0, "{t} {c}: {ctx}");
        }
        assert_eq!(
            json["tables"][orders]["per_shard"]["s0"]["missing"], 1,
            "{ctx}"
        );
        assert_eq!(
            json["tables"][items]["per_shard"]["s3"]["misplaced"], 1,
            "{ctx}"
        );
    }

    // the human form names them too, and stdout carries only the result
    let out = reshard(&s, &["verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("missing    ({missing}) on s0"))
            && text.contains(&format!("misplaced  {misplaced} on s3 (belongs on s2)"))
            && text.contains("5 difference(s)"),
        "{text}"
    );
    assert!(!text.contains("INFO"), "logs on stdout: {text}");
    eprintln!("test took {:?}", started.elapsed());
}

/// `--table` compares only that table; an unknown one is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_option_restricts_to_one_table() {
    let s = Scenario::create(cluster(), "vfytab").unwrap();
    let mut c = s.source().await.unwrap();
    // rows on the source only: no pipeline ran, so every one is missing
    c.query_drop(
        "INSERT INTO items (order_id, line, sku) VALUES (1, 1, 'a'), (1, 2, 'b'), (2, 1, 'c')",
    )
    .await
    .unwrap();

    let (code, json, stderr) = verify(&s, &["--table", "vfytab_src.orders"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    let tables: Vec<&String> = json["tables"].as_object().unwrap().keys().collect();
    assert_eq!(tables, vec!["vfytab_src.orders"], "{json:#}");

    let (code, json, stderr) = verify(&s, &["--table", "vfytab_src.items"]);
    assert_eq!(code, 1, "{json:#}\n{stderr}");
    let tables: Vec<&String> = json["tables"].as_object().unwrap().keys().collect();
    assert_eq!(tables, vec!["vfytab_src.items"], "{json:#}");
    assert_eq!(count(&json, "vfytab_src.items", "missing"), 3, "{json:#}");
    assert_eq!(json["tables"]["vfytab_src.items"]["source_rows"], 3);

    let (code, json, _) = verify(&s, &[]);
    assert_eq!(code, 1);
    assert_eq!(json["tables"].as_object().unwrap().len(), 2, "{json:#}");

    let out = reshard(&s, &["verify", "--json", "--table", "vfytab_src.nope"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        err.contains("vfytab_src.nope") && err.contains("vfytab_src.items"),
        "{err}"
    );
}

/// An unreachable target is an error (2) within the connect budget, naming
/// the target and never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_is_an_error() {
    let s = Scenario::create(cluster(), "vfydown").unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let text = std::fs::read_to_string(&s.config).unwrap();
    let s3 = &s.shard_urls["s3"];
    let (_, hostport) = s3.rsplit_once('@').unwrap();
    let (addr, _) = hostport.split_once('/').unwrap();
    let down = s3.replace(addr, &format!("127.0.0.1:{port}"));
    let password = s3
        .trim_start_matches("mysql://")
        .split_once('@')
        .and_then(|(cred, _)| cred.split_once(':'))
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    let text = text
        .replace(s3, &down)
        .replace("connect_timeout_secs = 5", "connect_timeout_secs = 2");
    std::fs::write(&s.config, text).unwrap();
    let start = Instant::now();
    let out = reshard(&s, &["verify", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("s3"), "{err}");
    assert!(password.len() < 4 || !err.contains(&password), "{err}");
}

/// Text keys are paged in the column's collation order (not byte order),
/// so chunk boundaries between mixed-case keys neither skip nor repeat
/// rows, on the source or on the targets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_keys_tile_in_collation_order() {
    let s = Scenario::create(cluster(), "vfytxt").unwrap();
    let table = "(name VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL PRIMARY KEY, n INT NULL)";
    let mut src = s.source().await.unwrap();
    src.query_drop(format!("CREATE TABLE tags {table}"))
        .await
        .unwrap();
    let names: Vec<String> = (0..40)
        .map(|i: u32| {
            let c = char::from(b'a' + (i % 26) as u8);
            let c = if i.is_multiple_of(2) {
                c.to_ascii_uppercase()
            } else {
                c
            };
            format!("{c}{i}\u{e9}")
        })
        .collect();
    for (i, n) in names.iter().enumerate() {
        src.exec_drop("INSERT INTO tags VALUES (?, ?)", (n, i as i64))
            .await
            .unwrap();
    }
    std::fs::write(
        s.dir.path().join("rules/tags.toml"),
        "source = \"vfytxt_src.tags\"\nshard = \"crc32(name) % 4\"\nshards = [\"s0\", \"s1\", \"s2\", \"s3\"]\n",
    )
    .unwrap();
    let rows: Vec<(String, i64, u64)> = src
        .query("SELECT name, n, CRC32(name) % 4 FROM tags")
        .await
        .unwrap();
    for name in s.shard_urls.keys() {
        let mut t = shard(&s, name).await;
        let versioned = table.replacen(
            "n INT NULL)",
            "n INT NULL, _reshard_version BINARY(16) NOT NULL DEFAULT '')",
            1,
        );
        t.query_drop(format!("CREATE TABLE tags {versioned}"))
            .await
            .unwrap();
        for (n, v, sh) in &rows {
            if format!("s{sh}") == *name {
                t.exec_drop("INSERT INTO tags (name, n) VALUES (?, ?)", (n, v))
                    .await
                    .unwrap();
            }
        }
    }
    let (code, json, stderr) = verify(&s, &["--table", "vfytxt_src.tags", "--chunk-rows", "3"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    let t = &json["tables"]["vfytxt_src.tags"];
    assert_eq!(t["source_rows"], 40, "every row once: {json:#}");
    let found: u64 = t["per_shard"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["found"].as_u64().unwrap())
        .sum();
    assert_eq!(found, 40, "every target row once: {json:#}");

    // a row gone from its shard is found missing
    let (victim, _, sh) = &rows[7];
    let mut t = shard(&s, &format!("s{sh}")).await;
    t.exec_drop("DELETE FROM tags WHERE name = ?", (victim,))
        .await
        .unwrap();
    let (code, json, stderr) = verify(&s, &["--table", "vfytxt_src.tags", "--chunk-rows", "3"]);
    assert_eq!(code, 1, "{json:#}\n{stderr}");
    assert_eq!(
        keys(&json, "vfytxt_src.tags", "missing"),
        vec![(format!("({victim:?})"), format!("s{sh}"), String::new())],
        "{json:#}"
    );
}
