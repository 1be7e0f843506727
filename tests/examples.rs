//! The examples a user copies — `shard-rules/*.toml` and
//! `reshard.example.toml` — dry-run cleanly against real servers holding
//! the tables they describe, and route every row where plain SQL on the
//! source says it belongs. So the examples cannot rot: a rule file that no
//! longer parses, a config key that no longer exists or a routing that
//! changes fails here.
//!
//! The config is the example config with only the server URLs replaced and
//! the rules path made absolute (the repository's own `shard-rules/`,
//! located at compile time, never through the working directory).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::connect;

const SHARDS: u64 = 4;

/// Source tables of the examples, with rows.
const SOURCE: &str = "
CREATE DATABASE shop;
CREATE TABLE shop.orders (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  buyer_id INT NOT NULL,
  amount DECIMAL(12,2) NULL,
  created DATETIME(6) NULL
);
CREATE TABLE shop.items (
  order_id BIGINT UNSIGNED NOT NULL,
  line INT NOT NULL,
  sku VARCHAR(32) NOT NULL,
  price DECIMAL(10,3) NULL,
  PRIMARY KEY (order_id, line)
);
CREATE TABLE shop.events (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  payload JSON NOT NULL,
  created_at DATETIME(3) NOT NULL
);
CREATE TABLE shop.accounts (
  id INT UNSIGNED NOT NULL PRIMARY KEY,
  tenant_id INT UNSIGNED NOT NULL,
  email VARCHAR(255) NOT NULL
);
CREATE TABLE shop.customers (
  id INT UNSIGNED NOT NULL PRIMARY KEY,
  email VARCHAR(255) NOT NULL,
  password_hash VARBINARY(60) NULL,
  status ENUM('active', 'closed', 'test') NOT NULL
);
CREATE TABLE shop.products (
  sku VARCHAR(32) NOT NULL PRIMARY KEY,
  title VARCHAR(200) NOT NULL,
  price DECIMAL(10,2) NOT NULL,
  updated_at DATETIME(3) NOT NULL
);
";

/// The rows: every table gets enough to reach every shard.
const ROWS: &str = "
USE shop;
INSERT INTO shop.orders SELECT seq, seq % 37, seq / 4, TIMESTAMP('2024-01-01') + INTERVAL seq MINUTE FROM seq_1_to_300;
INSERT INTO shop.items SELECT 1 + seq DIV 3, seq % 3, CONCAT('SKU-', seq % 50), seq / 8 FROM seq_0_to_449;
INSERT INTO shop.events SELECT seq, JSON_OBJECT('tenant', CONCAT('tenant-', seq % 23), 'type', IF(seq % 2, 'login', 'order')), TIMESTAMP('2024-02-01') + INTERVAL seq SECOND FROM seq_1_to_250;
INSERT INTO shop.accounts SELECT seq, seq % 20, CONCAT('user', seq, '@example.com') FROM seq_1_to_200;
INSERT INTO shop.customers SELECT seq, CONCAT('c', seq, '@example.com'), UNHEX(SHA2(seq, 256)), ELT(1 + seq % 5, 'active', 'active', 'closed', 'active', 'test') FROM seq_1_to_180;
INSERT INTO shop.products SELECT CONCAT('SKU-', seq), CONCAT('Product ', seq), seq * 1.25, TIMESTAMP('2024-03-01') + INTERVAL seq HOUR FROM seq_1_to_120;
";

/// The target tables in one shard database.
fn target_ddl(db: &str) -> String {
    const V: &str = "_reshard_version BINARY(16) NOT NULL DEFAULT ''";
    format!(
        "CREATE DATABASE {db};
CREATE TABLE {db}.orders (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, buyer_id INT NOT NULL, amount DECIMAL(12,2) NULL, created DATETIME(6) NULL, shard_no INT NULL, {V});
CREATE TABLE {db}.items (order_id BIGINT UNSIGNED NOT NULL, line INT NOT NULL, sku VARCHAR(32) NOT NULL, price DECIMAL(10,3) NULL, {V}, PRIMARY KEY (order_id, line));
CREATE TABLE {db}.events (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, payload JSON NOT NULL, created_at DATETIME(3) NOT NULL, tenant VARCHAR(64) NOT NULL, {V});
CREATE TABLE {db}.accounts (id INT UNSIGNED NOT NULL PRIMARY KEY, tenant_id INT UNSIGNED NOT NULL, email VARCHAR(255) NOT NULL, {V});
CREATE TABLE {db}.customers (id INT UNSIGNED NOT NULL PRIMARY KEY, email VARCHAR(255) NOT NULL, status ENUM('active', 'closed', 'test') NOT NULL, {V});
CREATE TABLE {db}.products (sku VARCHAR(32) NOT NULL PRIMARY KEY, title VARCHAR(200) NOT NULL, price DECIMAL(10,2) NOT NULL, updated_at DATETIME(3) NOT NULL, {V});"
    )
}

/// Tenants placed by the directory of `shard-rules/accounts.toml`.
const DIRECTORY: [(u64, u64); 2] = [(7, 3), (12, 3)];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `reshard.example.toml` with the URLs of the test servers and the
/// repository's `shard-rules/` as an absolute path; everything else as in
/// the example. Creates the target databases on the way.
fn config_from_example() -> String {
    let c = cluster();
    let text = std::fs::read_to_string(repo().join("reshard.example.toml")).unwrap();
    let mut cfg: toml::Table = text.parse().unwrap();
    let examples: Vec<String> = cfg["targets"].as_table().unwrap().keys().cloned().collect();
    let wanted: Vec<String> = (0..SHARDS).map(|i| format!("s{i}")).collect();
    assert_eq!(examples, wanted, "the shards the rule files name");
    let mut targets = toml::Table::new();
    for (i, name) in wanted.iter().enumerate() {
        let server = &c.targets[i % c.targets.len()];
        let db = format!("shop_{name}");
        server.sql(&target_ddl(&db)).unwrap();
        targets.insert(name.clone(), server.url(&db).into());
    }
    let set = |cfg: &mut toml::Table, section: &str, key: &str, value: toml::Value| {
        cfg[section]
            .as_table_mut()
            .unwrap()
            .insert(key.into(), value);
    };
    set(&mut cfg, "source", "url", c.source.url("").into());
    set(
        &mut cfg,
        "control",
        "url",
        c.targets[0].url("reshard_meta").into(),
    );
    let rules = repo().join("shard-rules");
    set(
        &mut cfg,
        "pipeline",
        "rules",
        rules.to_string_lossy().into_owned().into(),
    );
    cfg.insert("targets".into(), targets.into());
    toml::to_string(&cfg).unwrap()
}

/// Per-shard counts from `SELECT shard, COUNT(*) … GROUP BY 1` on the source.
async fn counts(sql: &str) -> BTreeMap<String, u64> {
    let mut c = connect(&cluster().source.url("shop")).await.unwrap();
    let rows: Vec<(u64, u64)> = c.query(sql).await.unwrap();
    rows.into_iter()
        .map(|(s, n)| (format!("s{s}"), n))
        .collect()
}

/// What the examples should route where, computed by the source server.
async fn expected() -> BTreeMap<&'static str, BTreeMap<String, u64>> {
    let mut want = BTreeMap::new();
    for (table, sql) in [
        ("orders", "SELECT CRC32(buyer_id) % 4, COUNT(*) FROM orders GROUP BY 1"),
        ("items", "SELECT CRC32(order_id) % 4, COUNT(*) FROM items GROUP BY 1"),
        (
            "events",
            "SELECT CRC32(JSON_UNQUOTE(JSON_EXTRACT(payload, '$.tenant'))) % 4, COUNT(*) FROM events GROUP BY 1",
        ),
        (
            "customers",
            "SELECT CRC32(id) % 4, COUNT(*) FROM customers WHERE status <> 'test' GROUP BY 1",
        ),
        ("products", "SELECT CRC32(sku) % 4, COUNT(*) FROM products GROUP BY 1"),
    ] {
        want.insert(table, counts(sql).await);
    }
    // the directory's tenants on their shard, the others hashed
    let mut c = connect(&cluster().source.url("shop")).await.unwrap();
    let per_tenant: Vec<(u64, u64, u64)> = c
        .query("SELECT tenant_id, CRC32(tenant_id) % 4, COUNT(*) FROM accounts GROUP BY 1, 2")
        .await
        .unwrap();
    let mut accounts = BTreeMap::new();
    for (tenant, hashed, n) in per_tenant {
        let shard = match DIRECTORY.iter().find(|(t, _)| *t == tenant) {
            Some(&(_, placed)) => {
                assert_ne!(placed, hashed, "tenant {tenant}: the directory must matter");
                placed
            }
            None => hashed,
        };
        *accounts.entry(format!("s{shard}")).or_default() += n;
    }
    want.insert("accounts", accounts);
    want
}

/// The source's binlog head.
async fn head() -> (String, u64) {
    let mut c = connect(&cluster().source.url("")).await.unwrap();
    let status: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    (status.get(0).unwrap(), status.get(1).unwrap())
}

fn dry_run(config: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(BIN)
        .args(["dry-run", "--json", "--config"])
        .arg(config)
        .args(extra)
        .current_dir(config.parent().unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}\n{stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

/// A JSON `{shard: count}` object without its zero counts.
fn nonzero(counts: &serde_json::Value) -> BTreeMap<String, u64> {
    counts
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {counts}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shard_rules_examples_dry_run_cleanly_and_route_as_sql_says() {
    let c = cluster();
    c.source.sql(SOURCE).unwrap();
    let text = config_from_example();
    let directory: Vec<String> = DIRECTORY
        .iter()
        .map(|(k, v)| format!("('{k}', {v})"))
        .collect();
    c.targets[0]
        .sql(&format!(
            "CREATE DATABASE reshard_meta; CREATE TABLE reshard_meta.tenant_shard (k VARCHAR(64) PRIMARY KEY, v INT NOT NULL); INSERT INTO reshard_meta.tenant_shard VALUES {};",
            directory.join(", ")
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config: PathBuf = dir.path().join("reshard.toml");
    std::fs::write(&config, text).unwrap();

    let from = head().await;
    c.source.sql(ROWS).unwrap();
    let to = head().await;

    let want = expected().await;
    let files: Vec<String> = std::fs::read_dir(repo().join("shard-rules"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".toml")?.to_string())
        })
        .collect();
    assert_eq!(
        files.len(),
        want.len(),
        "every example rule file is checked: {files:?}"
    );

    let (code, json, stderr) = dry_run(
        &config,
        &[
            "--sample",
            "100000",
            "--from",
            &format!("{}:{}", from.0, from.1),
            "--to",
            &format!("{}:{}", to.0, to.1),
        ],
    );
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    assert_eq!(json["ok"], true, "{json:#}");
    for (table, per_shard) in &want {
        let t = &json["tables"][format!("shop.{table}")];
        assert_eq!(t["exact"], true, "{table}: {t:#}");
        assert_eq!(t["failures_total"], 0, "{table}: {t:#}");
        assert_eq!(
            &nonzero(&t["per_shard"]),
            per_shard,
            "{table}: rows per shard"
        );
        // the same rows, inserted in the binlog range, route the same way
        assert_eq!(
            &nonzero(&t["binlog_ops_per_shard"]),
            per_shard,
            "{table}: binlog inserts per shard"
        );
    }
}
