//! `reshard dry-run` against real servers: exact per-shard counts on a
//! valid plan, one finding per kind of problem (exit 1), and nothing
//! written anywhere.

mod common;

use std::collections::BTreeMap;

use common::*;
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::{connect, Scenario, Workload, WorkloadOptions};

async fn loaded(name: &str, ops: usize) -> Scenario {
    let s = Scenario::create(cluster(), name).unwrap();
    migrate(&s);
    let mut conn = s.source().await.unwrap();
    Workload::new(11)
        .run(
            &mut conn,
            &WorkloadOptions {
                operations: ops,
                seed: 11,
                rotate_every: 0,
            },
        )
        .await
        .unwrap();
    s
}

fn dry_run(s: &Scenario, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec!["dry-run", "--json"];
    args.extend_from_slice(extra);
    let out = reshard(s, &args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}\n{stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

async fn source_counts(s: &Scenario, sql: &str) -> BTreeMap<String, u64> {
    let mut c = s.source().await.unwrap();
    let rows: Vec<(u64, u64)> = c.query(sql).await.unwrap();
    rows.into_iter()
        .map(|(shard, n)| (format!("s{shard}"), n))
        .collect()
}

/// Checksums of every table of every database the scenario uses: dry-run
/// must change none of them.
async fn fingerprint(s: &Scenario) -> Vec<String> {
    // (not the source's binlog head: other tests of this binary write to
    // the same source server concurrently)
    let mut out = Vec::new();
    let mut urls = vec![s.source_url.clone(), s.control_url.clone()];
    urls.extend(s.shard_urls.values().cloned());
    for url in urls {
        let Ok(mut c) = connect(&url).await else {
            out.push(format!("{url}: absent"));
            continue;
        };
        let tables: Vec<String> = c.query("SHOW TABLES").await.unwrap_or_default();
        for t in tables {
            let r: Option<(String, Option<i64>)> = c
                .query_first(format!("CHECKSUM TABLE `{t}` EXTENDED"))
                .await
                .unwrap();
            out.push(format!("{url}/{t}={:?}", r.and_then(|r| r.1)));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_plan_exits_0_with_exact_counts_and_writes_nothing() {
    let s = loaded("dryok", 800).await;
    let before = fingerprint(&s).await;
    let (code, json, stderr) = dry_run(&s, &["--sample", "100000"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    assert_eq!(json["ok"], true);
    let orders = &json["tables"]["dryok_src.orders"];
    assert_eq!(orders["exact"], true);
    let want = source_counts(
        &s,
        "SELECT CRC32(buyer_id) % 4, COUNT(*) FROM orders GROUP BY 1",
    )
    .await;
    for (shard, n) in &want {
        assert_eq!(
            orders["per_shard"][shard].as_u64(),
            Some(*n),
            "orders on {shard}: {orders:#}"
        );
    }
    let items = &json["tables"]["dryok_src.items"];
    let want = source_counts(
        &s,
        "SELECT CRC32(order_id) % 4, COUNT(*) FROM items GROUP BY 1",
    )
    .await;
    for (shard, n) in &want {
        assert_eq!(
            items["per_shard"][shard].as_u64(),
            Some(*n),
            "items on {shard}"
        );
    }
    let total: u64 = want.values().sum();
    let servers: u64 = items["per_server"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(servers, total, "per-server counts add up");
    assert!(items["skew"].as_f64().unwrap() >= 1.0);
    assert_eq!(fingerprint(&s).await, before, "dry-run wrote something");

    // human output, and a sample smaller than the table
    let out = reshard(&s, &["dry-run", "--sample", "50"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("skew (max/mean)") && text.contains("sample of"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_range_is_routed_too() {
    let s = Scenario::create(cluster(), "drybin").unwrap();
    migrate(&s);
    let (f1, p1) = s.source_head().await.unwrap();
    let mut c = s.source().await.unwrap();
    c.query_drop("INSERT INTO orders (id, buyer_id) VALUES (1, 1), (2, 2), (3, 3), (4, 4)")
        .await
        .unwrap();
    c.query_drop("DELETE FROM orders WHERE id = 4")
        .await
        .unwrap();
    let (f2, p2) = s.source_head().await.unwrap();
    let (code, json, stderr) = dry_run(
        &s,
        &[
            "--from",
            &format!("{f1}:{p1}"),
            "--to",
            &format!("{f2}:{p2}"),
        ],
    );
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    let ops = &json["tables"]["drybin_src.orders"]["binlog_ops_per_shard"];
    let total: u64 = ops
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 5, "4 inserts and 1 delete: {ops:#}");
}

fn kinds(json: &serde_json::Value) -> Vec<String> {
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_problem_is_a_finding_with_exit_1() {
    let c = cluster();
    let s = loaded("dryfind", 300).await;
    let mut src = s.source().await.unwrap();
    src.query_drop("INSERT INTO orders (id, buyer_id, qty) VALUES (424242, 7, NULL)")
        .await
        .unwrap();
    // break the targets in four ways
    c.targets[0]
        .sql("ALTER TABLE dryfind_s0.orders DROP COLUMN shard_no")
        .unwrap();
    c.targets[1]
        .sql("ALTER TABLE dryfind_s1.orders DROP COLUMN _reshard_version")
        .unwrap();
    c.targets[0].sql("DROP TABLE dryfind_s2.items").unwrap();
    c.targets[1]
        .sql("ALTER TABLE dryfind_s3.orders ADD UNIQUE KEY by_buyer (buyer_id, id)")
        .unwrap();
    let before = fingerprint(&s).await;
    let (code, json, stderr) = dry_run(&s, &[]);
    assert_eq!(code, 1, "{json:#}\n{stderr}");
    assert_eq!(json["ok"], false);
    let k = kinds(&json);
    for want in [
        "missing_target_column",
        "missing_version_column",
        "missing_target_table",
        "secondary_unique_key",
    ] {
        assert!(k.iter().any(|x| x == want), "no {want} in {k:?}");
    }
    let fixes: Vec<String> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["fix"].as_str().map(String::from))
        .collect();
    assert!(
        fixes
            .iter()
            .any(|f| f.contains("ALTER TABLE `dryfind_s0`.`orders` ADD COLUMN `shard_no`")),
        "{fixes:#?}"
    );
    assert!(
        fixes
            .iter()
            .any(|f| f.contains("ADD COLUMN `_reshard_version` BINARY(16) NOT NULL DEFAULT ''")),
        "{fixes:#?}"
    );
    assert!(
        fixes
            .iter()
            .any(|f| f.starts_with("CREATE TABLE `dryfind_s2`.`items`")),
        "{fixes:#?}"
    );
    assert_eq!(fingerprint(&s).await, before, "dry-run wrote something");

    // rules that do not fit: unknown column, unknown shard, missing source
    // table, a row whose shard cannot be derived, a derived value too big
    let rules = s.dir.path().join("rules");
    let orders = std::fs::read_to_string(rules.join("orders.toml")).unwrap();
    std::fs::write(
        rules.join("orders.toml"),
        orders.replace(
            "shard = \"crc32(buyer_id) % 4\"",
            "shard = \"crc32(qty) % 4\"",
        ),
    )
    .unwrap();
    std::fs::write(
        rules.join("ghost.toml"),
        "source = \"dryfind_src.ghost\"\nshard = \"0\"\nshards = [\"s0\"]\n",
    )
    .unwrap();
    std::fs::write(rules.join("typo.toml"), "source = \"dryfind_src.unmapped\"\nshard = \"crc32(no_such_col) % 2\"\nshards = [\"s0\", \"s9\"]\n").unwrap();
    let (code, json, _) = dry_run(&s, &[]);
    assert_eq!(code, 1);
    let k = kinds(&json);
    for want in [
        "derivation_failures",
        "missing_source_table",
        "unknown_shard",
    ] {
        assert!(k.iter().any(|x| x == want), "no {want} in {k:?}");
    }
    let failures = &json["tables"]["dryfind_src.orders"]["failures"];
    assert!(
        failures
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["key"] == "(424242)" && f["expression"] == "crc32(qty) % 4"),
        "{failures:#}"
    );
    std::fs::write(rules.join("typo.toml"), "source = \"dryfind_src.unmapped\"\nshard = \"crc32(no_such_col) % 1\"\nshards = [\"s0\"]\n").unwrap();
    let (_, json, _) = dry_run(&s, &[]);
    let msgs: Vec<String> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("typo.toml:2:") && m.contains("no_such_col")),
        "{msgs:#?}"
    );

    // a derived value that does not fit its column
    std::fs::remove_file(rules.join("typo.toml")).unwrap();
    std::fs::remove_file(rules.join("ghost.toml")).unwrap();
    std::fs::write(
        rules.join("orders.toml"),
        orders.replace(
            "shard_no = \"crc32(buyer_id) % 4\"",
            "shard_no = \"crc32(buyer_id)\"",
        ),
    )
    .unwrap();
    for shard in 0..4 {
        let t = &c.targets[shard % 2];
        let _ = t.sql(&format!(
            "ALTER TABLE dryfind_s{shard}.orders ADD COLUMN IF NOT EXISTS shard_no INT NULL"
        ));
    }
    let (code, json, _) = dry_run(&s, &[]);
    assert_eq!(code, 1);
    let msgs: Vec<String> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        kinds(&json).iter().any(|x| x == "derived_type"),
        "{msgs:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_errors_and_unreachable_servers_exit_2() {
    let s = Scenario::create(cluster(), "dryerr").unwrap();
    let rules = s.dir.path().join("rules");
    let orders = std::fs::read_to_string(rules.join("orders.toml")).unwrap();
    std::fs::write(
        rules.join("orders.toml"),
        orders.replace("% 4\"\nshards", "%\"\nshards"),
    )
    .unwrap();
    let out = reshard(&s, &["dry-run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("orders.toml:3:"), "{err}");
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
    std::fs::write(rules.join("orders.toml"), orders).unwrap();
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = cfg.replace(
        &format!("{}", cluster().targets[1].port()),
        &port.to_string(),
    );
    std::fs::write(&s.config, dead).unwrap();
    let out = reshard(&s, &["dry-run", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("target s1") && err.contains("cannot connect"),
        "{err}"
    );
    assert!(
        !err.contains(reshard_testkit::MariaDb::ROOT_PASSWORD),
        "{err}"
    );
}

/// `lookup('table', key)` reads a directory table of the control database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_tables_route_rows_in_dry_run_and_run() {
    let s = Scenario::create(cluster(), "drylook").unwrap();
    migrate(&s);
    let mut ctl = connect(&s.control_url).await.unwrap();
    ctl.query_drop("CREATE TABLE buyer_shard (k INT PRIMARY KEY, v INT NOT NULL)")
        .await
        .unwrap();
    ctl.query_drop("INSERT INTO buyer_shard VALUES (1, 3), (2, 3), (3, 0)")
        .await
        .unwrap();
    let rules = s.dir.path().join("rules");
    let orders = std::fs::read_to_string(rules.join("orders.toml")).unwrap();
    std::fs::write(
        rules.join("orders.toml"),
        orders.replace(
            "shard = \"crc32(buyer_id) % 4\"",
            "shard = \"coalesce(lookup('buyer_shard', buyer_id), 1)\"",
        ),
    )
    .unwrap();
    let (file, pos) = s.source_head().await.unwrap();
    let mut src = s.source().await.unwrap();
    src.query_drop(
        "INSERT INTO orders (id, buyer_id) VALUES (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)",
    )
    .await
    .unwrap();
    let (code, json, stderr) = dry_run(&s, &[]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    let per = &json["tables"]["drylook_src.orders"]["per_shard"];
    assert_eq!(
        (per["s0"].as_u64(), per["s1"].as_u64(), per["s3"].as_u64()),
        (Some(1), Some(2), Some(2)),
        "{per:#}"
    );

    let mut run = spawn_run(&s, &["--from", &format!("{file}:{pos}")]);
    s.wait_caught_up(std::time::Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    terminate(&mut run, std::time::Duration::from_secs(30));
    for (shard, want) in [("s0", 1u64), ("s1", 2), ("s2", 0), ("s3", 2)] {
        let mut c = connect(&s.shard_urls[shard]).await.unwrap();
        let n: Option<u64> = c.query_first("SELECT COUNT(*) FROM orders").await.unwrap();
        assert_eq!(n, Some(want), "{shard}\n{}", run_log(&s));
    }
}
