//! A sample resharding scenario on a [`Cluster`], shared by the integration
//! tests and the demo: a `shop` schema on the source (an `orders` table
//! keyed by a `BIGINT UNSIGNED` id, and an `items` table with a composite
//! key), four logical shards spread over the target servers, a config and
//! rule files in a temporary directory, a random workload that exercises
//! every kind of change, and a comparison of the targets with the source
//! routed by the server's own `CRC32()`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Cluster, TestkitError};

/// Number of logical shards.
pub const SHARDS: usize = 4;

/// A scenario's databases, config and rules.
pub struct Scenario {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub source_url: String,
    pub control_url: String,
    /// Shard name → URL (`s0`…`s3`).
    pub shard_urls: BTreeMap<String, String>,
    /// The source database name.
    pub source_db: String,
}

fn err(e: impl std::fmt::Display) -> TestkitError {
    TestkitError::Scenario(e.to_string())
}

const ORDERS: &str = "(
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  buyer_id INT NOT NULL,
  note VARCHAR(100) CHARACTER SET utf8mb4 NULL,
  latin VARCHAR(50) CHARACTER SET latin1 NULL,
  amount DECIMAL(12,2) NULL,
  created DATETIME(6) NULL,
  ts TIMESTAMP(6) NULL DEFAULT NULL,
  doc JSON NULL,
  data BLOB NULL,
  qty INT NULL,
  big BIGINT UNSIGNED NULL
)";

const ITEMS: &str = "(
  order_id BIGINT UNSIGNED NOT NULL,
  line INT NOT NULL,
  sku VARCHAR(32) CHARACTER SET utf8mb4 NOT NULL,
  price DECIMAL(10,3) NULL,
  flag TINYINT UNSIGNED NULL,
  memo TEXT CHARACTER SET latin1 NULL,
  PRIMARY KEY (order_id, line)
)";

const VERSION_COL: &str = "_reshard_version BINARY(16) NOT NULL DEFAULT ''";

impl Scenario {
    /// Creates the databases and tables and writes config and rules.
    /// `name` must be unique per cluster (it prefixes every database).
    pub fn create(cluster: &Cluster, name: &str) -> Result<Scenario, TestkitError> {
        Self::create_in(cluster, name, &format!("{name}_src"))
    }

    /// [`Scenario::create`] with the source tables in the database
    /// `source_db` (e.g. `shop`, as the repository's `shard-rules/`
    /// examples name it) instead of `{name}_src`.
    pub fn create_in(
        cluster: &Cluster,
        name: &str,
        source_db: &str,
    ) -> Result<Scenario, TestkitError> {
        let source_db = source_db.to_string();
        cluster.source.sql(&format!(
            "CREATE DATABASE {source_db}; CREATE TABLE {source_db}.orders {ORDERS} ENGINE=InnoDB; CREATE TABLE {source_db}.items {ITEMS} ENGINE=InnoDB; CREATE TABLE {source_db}.unmapped (id INT PRIMARY KEY) ENGINE=InnoDB;"
        ))?;
        let mut shard_urls = BTreeMap::new();
        for s in 0..SHARDS {
            let server = &cluster.targets[s % cluster.targets.len()];
            let db = format!("{name}_s{s}");
            let orders = ORDERS.replacen(
                "big BIGINT UNSIGNED NULL\n)",
                &format!("big BIGINT UNSIGNED NULL,\n  shard_no INT NULL,\n  {VERSION_COL}\n)"),
                1,
            );
            let items = ITEMS.replacen("PRIMARY KEY", &format!("{VERSION_COL},\n  PRIMARY KEY"), 1);
            server.sql(&format!(
                "CREATE DATABASE {db}; CREATE TABLE {db}.orders {orders} ENGINE=InnoDB; CREATE TABLE {db}.items {items} ENGINE=InnoDB;"
            ))?;
            shard_urls.insert(format!("s{s}"), server.url(&db));
        }
        let control_url = cluster.targets[0].url(&format!("{name}_meta"));
        let dir = tempfile::Builder::new()
            .prefix(&format!("reshard-{name}-"))
            .tempdir()?;
        let config = dir.path().join("reshard.toml");
        let mut targets = String::new();
        for (k, v) in &shard_urls {
            targets.push_str(&format!("{k} = \"{v}\"\n"));
        }
        std::fs::write(
            &config,
            format!(
                "[source]\nurl = \"{}\"\nserver_id = {}\n\n[control]\nurl = \"{control_url}\"\n\n[targets]\n{targets}\n[pipeline]\nrules = \"rules\"\nname = \"{name}\"\nlinger_ms = 10\nprogress_interval_secs = 2\nconnect_timeout_secs = 5\nshutdown_timeout_secs = 20\n",
                cluster.source.url(""),
                4000 + (name.len() as u32 * 31 + name.bytes().map(u32::from).sum::<u32>()) % 1000,
            ),
        )?;
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules)?;
        std::fs::write(
            rules.join("orders.toml"),
            format!(
                "source = \"{source_db}.orders\"\ntarget = \"orders\"\nshard = \"crc32(buyer_id) % 4\"\nshards = [\"s0\", \"s1\", \"s2\", \"s3\"]\n\n[derive]\nshard_no = \"crc32(buyer_id) % 4\"\n"
            ),
        )?;
        std::fs::write(
            rules.join("items.toml"),
            format!(
                "source = \"{source_db}.items\"\nshard = \"crc32(order_id) % 4\"\nshards = [\"s0\", \"s1\", \"s2\", \"s3\"]\n"
            ),
        )?;
        Ok(Scenario {
            name: name.to_string(),
            dir,
            config,
            source_url: cluster.source.url(&source_db),
            control_url,
            shard_urls,
            source_db,
        })
    }

    /// Replaces the scenario's rule file of the same name with a copy of
    /// `file` (e.g. one of the repository's `shard-rules/` examples, whose
    /// routing must then be the scenario's: see [`Scenario::compare`]).
    pub fn use_rule_file(&self, file: &std::path::Path) -> Result<(), TestkitError> {
        let name = file
            .file_name()
            .ok_or_else(|| err(format!("{} is not a file", file.display())))?;
        std::fs::copy(file, self.dir.path().join("rules").join(name))?;
        Ok(())
    }

    /// A `reshard` command with `--config` set, run from the scenario's
    /// temporary directory (never the caller's working directory).
    pub fn reshard(&self, bin: &str, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.args(args)
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path());
        c
    }

    pub async fn source(&self) -> Result<Conn, TestkitError> {
        connect(&self.source_url).await
    }

    /// Loads `n` orders (ids 1..=n) and `n` items (order_id 1..=n, line 1)
    /// with server-side generated values; returns their keys.
    pub async fn bulk_load(&self, n: u64) -> Result<(Vec<u64>, Vec<(u64, i32)>), TestkitError> {
        let mut c = self.source().await?;
        c.query_drop(format!(
            "INSERT INTO orders (id, buyer_id, note, latin, amount, created, qty, big) \
             SELECT seq, CAST(seq % 997 AS SIGNED) - 400, CONCAT('bulk ', seq, ' \u{e9}'), CONVERT(CAST(CONCAT('l', seq) AS BINARY) USING latin1), seq / 7, \
             TIMESTAMP('2024-01-01') + INTERVAL seq SECOND, IF(seq % 5 = 0, NULL, seq % 100), seq * 1000003 FROM seq_1_to_{n}"
        ))
        .await
        .map_err(err)?;
        c.query_drop(format!(
            "INSERT INTO items (order_id, line, sku, price, flag) SELECT seq, 1, CONCAT('SKU', seq), seq / 3, seq % 256 FROM seq_1_to_{n}"
        ))
        .await
        .map_err(err)?;
        Ok(((1..=n).collect(), (1..=n).map(|i| (i, 1)).collect()))
    }

    /// Appends lines to the `[pipeline]` section of the config.
    pub fn configure(&self, lines: &str) -> Result<(), TestkitError> {
        let mut cfg = std::fs::read_to_string(&self.config)?;
        cfg.push_str(lines);
        cfg.push('\n');
        std::fs::write(&self.config, cfg)?;
        Ok(())
    }

    /// The source's current binlog head as `FILE:POS`.
    pub async fn source_head(&self) -> Result<(String, u64), TestkitError> {
        let mut c = self.source().await?;
        let row: Option<mysql_async::Row> =
            c.query_first("SHOW MASTER STATUS").await.map_err(err)?;
        let row = row.ok_or_else(|| err("no binlog"))?;
        let file: String = row.get(0).ok_or_else(|| err("no file"))?;
        let pos: u64 = row.get(1).ok_or_else(|| err("no pos"))?;
        Ok((file, pos))
    }

    /// The stored checkpoint, if any.
    pub async fn checkpoint(&self) -> Result<Option<(String, u64)>, TestkitError> {
        let mut c = connect(&self.control_url).await?;
        let r: Result<Option<(String, u64)>, _> = c
            .exec_first(
                "SELECT binlog_file, binlog_pos FROM reshard_checkpoint WHERE pipeline = ?",
                (&self.name,),
            )
            .await;
        Ok(r.unwrap_or(None))
    }

    /// Whether an initial copy is in progress (its position is saved as the
    /// checkpoint before any row is copied).
    pub async fn copying(&self) -> Result<bool, TestkitError> {
        let mut c = connect(&self.control_url).await?;
        let r: Result<Option<String>, _> = c
            .exec_first(
                "SELECT state FROM reshard_snapshot WHERE pipeline = ?",
                (&self.name,),
            )
            .await;
        Ok(r.unwrap_or(None).is_some_and(|s| s != "done"))
    }

    /// Waits until the checkpoint reaches the source head, after the
    /// initial copy if there is one: during the copy the checkpoint is
    /// already its position, which may be the head of an idle source.
    pub async fn wait_caught_up(&self, timeout: std::time::Duration) -> Result<(), TestkitError> {
        let deadline = std::time::Instant::now() + timeout;
        let head = self.source_head().await?;
        loop {
            if self.copying().await? {
                if std::time::Instant::now() > deadline {
                    return Err(err("the initial copy did not finish"));
                }
            } else if let Some(cp) = self.checkpoint().await? {
                let seq = |f: &str| {
                    f.rsplit('.')
                        .next()
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                if (seq(&cp.0), cp.1) >= (seq(&head.0), head.1) {
                    return Ok(());
                }
                if std::time::Instant::now() > deadline {
                    return Err(err(format!(
                        "not caught up: checkpoint {cp:?}, head {head:?}"
                    )));
                }
            } else if std::time::Instant::now() > deadline {
                return Err(err("no checkpoint"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Compares targets with the routed source. Returns the differences
    /// (empty when converged), capped at `cap` lines.
    pub async fn compare(&self, cap: usize) -> Result<Vec<String>, TestkitError> {
        let mut diffs = Vec::new();
        let mut src = self.source().await?;
        src.query_drop("SET time_zone = '+00:00'")
            .await
            .map_err(err)?;
        let tables: [(&str, &[&str], &str, &[&str]); 2] = [
            (
                "orders",
                &[
                    "id", "buyer_id", "note", "latin", "amount", "created", "ts", "doc", "data",
                    "qty", "big",
                ],
                "CRC32(buyer_id) % 4",
                &["shard_no"],
            ),
            (
                "items",
                &["order_id", "line", "sku", "price", "flag", "memo"],
                "CRC32(order_id) % 4",
                &[],
            ),
        ];
        for (table, cols, shard_expr, derived) in tables {
            let render = |cols: &[&str]| -> String {
                let parts: Vec<String> = cols
                    .iter()
                    .map(|c| format!("IFNULL(HEX(CAST(`{c}` AS BINARY)), 'NULL')"))
                    .collect();
                format!("CONCAT_WS('|', {})", parts.join(", "))
            };
            // expected: per shard, row text (source columns + derived shard_no)
            let derived_sql = if derived.is_empty() {
                "''".to_string()
            } else {
                format!("HEX(CAST({shard_expr} AS BINARY))")
            };
            let q = format!(
                "SELECT {shard_expr}, {}, {derived_sql} FROM `{table}`",
                render(cols)
            );
            let rows: Vec<(u64, Vec<u8>, Vec<u8>)> = src.query(q).await.map_err(err)?;
            let mut expected: BTreeMap<String, std::collections::BTreeSet<String>> =
                BTreeMap::new();
            for (shard, row, d) in rows {
                let mut text = String::from_utf8_lossy(&row).into_owned();
                if !derived.is_empty() {
                    text.push('|');
                    text.push_str(&String::from_utf8_lossy(&d));
                }
                expected
                    .entry(format!("s{shard}"))
                    .or_default()
                    .insert(text);
            }
            for (shard, url) in &self.shard_urls {
                let mut t = connect(url).await?;
                t.query_drop("SET time_zone = '+00:00'")
                    .await
                    .map_err(err)?;
                let mut all: Vec<&str> = cols.to_vec();
                all.extend_from_slice(derived);
                let q = format!("SELECT {} FROM `{table}`", render(&all));
                let rows: Vec<Vec<u8>> = t.query(q).await.map_err(err)?;
                let got: std::collections::BTreeSet<String> = rows
                    .into_iter()
                    .map(|r| String::from_utf8_lossy(&r).into_owned())
                    .collect();
                let want = expected.remove(shard).unwrap_or_default();
                for r in want.difference(&got).take(cap) {
                    diffs.push(format!("{table}@{shard}: missing or different: {r}"));
                }
                for r in got.difference(&want).take(cap) {
                    diffs.push(format!("{table}@{shard}: extra or different: {r}"));
                }
            }
            for (shard, rows) in expected {
                diffs.push(format!(
                    "{table}: {} rows routed to unknown shard {shard}",
                    rows.len()
                ));
            }
        }
        diffs.truncate(cap);
        Ok(diffs)
    }

    /// A checksum of every target table including versions and tombstones.
    pub async fn target_fingerprint(&self) -> Result<Vec<String>, TestkitError> {
        let mut out = Vec::new();
        for (shard, url) in &self.shard_urls {
            let mut t = connect(url).await?;
            for table in ["orders", "items", "_reshard_tombstone"] {
                let r: Option<(String, Option<i64>)> = t
                    .query_first(format!("CHECKSUM TABLE `{table}` EXTENDED"))
                    .await
                    .map_err(err)?;
                out.push(format!("{shard}.{table}={:?}", r.and_then(|r| r.1)));
            }
        }
        Ok(out)
    }
}

/// Connects with a `mysql://` URL.
pub async fn connect(url: &str) -> Result<Conn, TestkitError> {
    let opts = Opts::from_url(url).map_err(err)?;
    let opts = mysql_async::OptsBuilder::from_opts(opts).prefer_socket(false);
    Conn::new(opts).await.map_err(err)
}

/// Settings of [`Workload::run`].
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    pub operations: usize,
    pub seed: u64,
    /// Rotate the binlog (FLUSH BINARY LOGS) every this many operations.
    pub rotate_every: usize,
}

/// Random changes on the scenario's source tables.
pub struct Workload {
    rng: StdRng,
    live_orders: Vec<u64>,
    deleted_orders: Vec<u64>,
    live_items: Vec<(u64, i32)>,
    deleted_items: Vec<(u64, i32)>,
    pub done: usize,
}

fn random_id(rng: &mut StdRng) -> u64 {
    match rng.gen_range(0..4) {
        0 => rng.gen_range(1..1_000_000),
        1 => rng.gen_range((1u64 << 63)..u64::MAX),
        2 => u64::MAX - rng.gen_range(0..1000),
        _ => rng.gen(),
    }
}

/// NULL with probability `null`, else a date-time with microseconds in
/// `years`.
fn datetime(rng: &mut StdRng, null: f64, years: std::ops::Range<u16>) -> Value {
    if rng.gen_bool(null) {
        return Value::NULL;
    }
    Value::Date(
        rng.gen_range(years),
        rng.gen_range(1..13),
        rng.gen_range(1..29),
        rng.gen_range(0..24),
        rng.gen_range(0..60),
        rng.gen_range(0..60),
        rng.gen_range(0..1_000_000),
    )
}

fn text(rng: &mut StdRng, latin: bool) -> Value {
    if rng.gen_bool(0.15) {
        return Value::NULL;
    }
    let n = rng.gen_range(0..20);
    let alphabet: &[&str] = if latin {
        &["a", "b", "Z", " ", "\u{e9}", "\u{fc}", "\u{df}", "'", "\\"]
    } else {
        &[
            "a",
            "b",
            "Z",
            " ",
            "\u{e9}",
            "\u{4e2d}",
            "\u{1f600}",
            "'",
            "\"",
            "\\",
            "%",
        ]
    };
    let s: String = (0..n)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
        .collect();
    if latin {
        // latin1 bytes, not utf8: bind them with a latin1 introducer below
        Value::Bytes(s.chars().map(|c| c as u32 as u8).collect())
    } else {
        Value::Bytes(s.into_bytes())
    }
}

impl Workload {
    pub fn new(seed: u64) -> Workload {
        Workload {
            rng: StdRng::seed_from_u64(seed),
            live_orders: Vec::new(),
            deleted_orders: Vec::new(),
            live_items: Vec::new(),
            deleted_items: Vec::new(),
            done: 0,
        }
    }

    /// Lets the workload update and delete rows that existed before it
    /// (e.g. rows loaded by [`Scenario::bulk_load`]).
    pub fn adopt(
        &mut self,
        orders: impl IntoIterator<Item = u64>,
        items: impl IntoIterator<Item = (u64, i32)>,
    ) {
        self.live_orders.extend(orders);
        self.live_items.extend(items);
    }

    fn order_values(&mut self, id: u64) -> Vec<Value> {
        let rng = &mut self.rng;
        let big = if rng.gen_bool(0.2) {
            Value::NULL
        } else {
            Value::UInt(random_id(rng))
        };
        vec![
            Value::UInt(id),
            Value::Int(rng.gen_range(-1000..1000)),
            text(rng, false),
            text(rng, true),
            if rng.gen_bool(0.1) {
                Value::NULL
            } else {
                Value::Bytes(
                    format!(
                        "{}.{:02}",
                        rng.gen_range(-99_999_999..99_999_999),
                        rng.gen_range(0..100)
                    )
                    .into_bytes(),
                )
            },
            datetime(rng, 0.1, 1000..9999),
            datetime(rng, 0.2, 1971..2037),
            if rng.gen_bool(0.2) {
                Value::NULL
            } else {
                Value::Bytes(
                    format!(
                        "{{\"k\": {}, \"s\": \"x\\u00e9{}\", \"a\": [1, 2.5, null]}}",
                        rng.gen_range(0..100),
                        rng.gen_range(0..9)
                    )
                    .into_bytes(),
                )
            },
            if rng.gen_bool(0.2) {
                Value::NULL
            } else {
                Value::Bytes(
                    (0..rng.gen_range(0..40))
                        .map(|_| if rng.gen_bool(0.3) { 0u8 } else { rng.gen() })
                        .collect(),
                )
            },
            if rng.gen_bool(0.3) {
                Value::NULL
            } else {
                Value::Int(rng.gen_range(-5..100))
            },
            big,
        ]
    }

    fn item_values(&mut self, key: (u64, i32)) -> Vec<Value> {
        let rng = &mut self.rng;
        vec![
            Value::UInt(key.0),
            Value::Int(i64::from(key.1)),
            Value::Bytes(format!("SKU-{}-\u{4e2d}", rng.gen_range(0..1000)).into_bytes()),
            if rng.gen_bool(0.1) {
                Value::NULL
            } else {
                Value::Bytes(
                    format!(
                        "{}.{:03}",
                        rng.gen_range(0..9_999_999),
                        rng.gen_range(0..1000)
                    )
                    .into_bytes(),
                )
            },
            if rng.gen_bool(0.1) {
                Value::NULL
            } else {
                Value::UInt(rng.gen_range(0..256))
            },
            text(rng, true),
        ]
    }

    /// Runs `opts.operations` operations in transactions of 1–5.
    pub async fn run(
        &mut self,
        conn: &mut Conn,
        opts: &WorkloadOptions,
    ) -> Result<(), TestkitError> {
        // binary client charset: latin1 bytes stay latin1 bytes
        conn.query_drop("SET time_zone = '+00:00', NAMES binary")
            .await
            .map_err(err)?;
        let target = self.done + opts.operations;
        while self.done < target {
            let n = self.rng.gen_range(1..=5).min(target - self.done);
            let mut tx = conn
                .start_transaction(mysql_async::TxOpts::default())
                .await
                .map_err(err)?;
            for _ in 0..n {
                self.one(&mut tx).await?;
                self.done += 1;
            }
            tx.commit().await.map_err(err)?;
            if opts.rotate_every > 0
                && (self.done / opts.rotate_every) != ((self.done - n) / opts.rotate_every)
            {
                conn.query_drop("FLUSH BINARY LOGS").await.map_err(err)?;
            }
        }
        Ok(())
    }

    async fn one(&mut self, tx: &mut mysql_async::Transaction<'_>) -> Result<(), TestkitError> {
        const INS_O: &str = "INSERT INTO orders (id, buyer_id, note, latin, amount, created, ts, doc, data, qty, big) VALUES (?, ?, ?, CONVERT(CAST(? AS BINARY) USING latin1), ?, ?, ?, ?, ?, ?, ?)";
        const INS_I: &str = "INSERT INTO items (order_id, line, sku, price, flag, memo) VALUES (?, ?, ?, ?, ?, CONVERT(CAST(? AS BINARY) USING latin1))";
        let choice = self.rng.gen_range(0..100);
        let q = |e| err(e);
        match choice {
            // insert an order (sometimes re-inserting a deleted key)
            0..=19 => {
                let id = if !self.deleted_orders.is_empty() && self.rng.gen_bool(0.3) {
                    let i = self.rng.gen_range(0..self.deleted_orders.len());
                    self.deleted_orders.swap_remove(i)
                } else {
                    random_id(&mut self.rng)
                };
                if self.live_orders.contains(&id) {
                    return Ok(());
                }
                let v = self.order_values(id);
                tx.exec_drop(INS_O, v).await.map_err(q)?;
                self.live_orders.push(id);
            }
            20..=34 => {
                let key = if !self.deleted_items.is_empty() && self.rng.gen_bool(0.3) {
                    let i = self.rng.gen_range(0..self.deleted_items.len());
                    self.deleted_items.swap_remove(i)
                } else {
                    (random_id(&mut self.rng), self.rng.gen_range(1..5))
                };
                if self.live_items.contains(&key) {
                    return Ok(());
                }
                let v = self.item_values(key);
                tx.exec_drop(INS_I, v).await.map_err(q)?;
                self.live_items.push(key);
            }
            // update plain columns
            35..=49 if !self.live_orders.is_empty() => {
                let id = self.live_orders[self.rng.gen_range(0..self.live_orders.len())];
                let v = self.order_values(id);
                tx.exec_drop(
                    "UPDATE orders SET note = ?, latin = CONVERT(CAST(? AS BINARY) USING latin1), amount = ?, doc = ?, data = ?, qty = ?, ts = ? WHERE id = ?",
                    vec![v[2].clone(), v[3].clone(), v[4].clone(), v[7].clone(), v[8].clone(), v[9].clone(), v[6].clone(), Value::UInt(id)],
                )
                .await
                .map_err(q)?;
            }
            // update the shard key column
            50..=59 if !self.live_orders.is_empty() => {
                let id = self.live_orders[self.rng.gen_range(0..self.live_orders.len())];
                let buyer = self.rng.gen_range(-1000..1000);
                tx.exec_drop("UPDATE orders SET buyer_id = ? WHERE id = ?", (buyer, id))
                    .await
                    .map_err(q)?;
            }
            // update the primary key
            60..=66 if !self.live_orders.is_empty() => {
                let i = self.rng.gen_range(0..self.live_orders.len());
                let old = self.live_orders[i];
                let new = random_id(&mut self.rng);
                if self.live_orders.contains(&new) {
                    return Ok(());
                }
                tx.exec_drop("UPDATE orders SET id = ? WHERE id = ?", (new, old))
                    .await
                    .map_err(q)?;
                self.live_orders[i] = new;
                self.deleted_orders.push(old);
            }
            67..=74 if !self.live_items.is_empty() => {
                let i = self.rng.gen_range(0..self.live_items.len());
                let old = self.live_items[i];
                let new = if self.rng.gen_bool(0.5) {
                    (random_id(&mut self.rng), old.1)
                } else {
                    (old.0, old.1 + 10)
                };
                if self.live_items.contains(&new) {
                    return Ok(());
                }
                tx.exec_drop("UPDATE items SET order_id = ?, line = ?, price = NULL WHERE order_id = ? AND line = ?", (new.0, new.1, old.0, old.1))
                    .await
                    .map_err(q)?;
                self.live_items[i] = new;
                self.deleted_items.push(old);
            }
            75..=79 if !self.live_items.is_empty() => {
                let key = self.live_items[self.rng.gen_range(0..self.live_items.len())];
                let v = self.item_values(key);
                tx.exec_drop("UPDATE items SET sku = ?, memo = CONVERT(CAST(? AS BINARY) USING latin1) WHERE order_id = ? AND line = ?", (v[2].clone(), v[5].clone(), key.0, key.1))
                    .await
                    .map_err(q)?;
            }
            // deletes
            80..=91 if !self.live_orders.is_empty() => {
                let i = self.rng.gen_range(0..self.live_orders.len());
                let id = self.live_orders.swap_remove(i);
                tx.exec_drop("DELETE FROM orders WHERE id = ?", (id,))
                    .await
                    .map_err(q)?;
                self.deleted_orders.push(id);
            }
            92..=97 if !self.live_items.is_empty() => {
                let i = self.rng.gen_range(0..self.live_items.len());
                let key = self.live_items.swap_remove(i);
                tx.exec_drop(
                    "DELETE FROM items WHERE order_id = ? AND line = ?",
                    (key.0, key.1),
                )
                .await
                .map_err(q)?;
                self.deleted_items.push(key);
            }
            // a table without a rule
            98 => {
                let id: u32 = self.rng.gen();
                tx.exec_drop("INSERT IGNORE INTO unmapped (id) VALUES (?)", (id,))
                    .await
                    .map_err(q)?;
            }
            // multi-row statement
            _ => {
                let a = random_id(&mut self.rng);
                let b = random_id(&mut self.rng);
                if a == b || self.live_orders.contains(&a) || self.live_orders.contains(&b) {
                    return Ok(());
                }
                let mut v = self.order_values(a);
                v.extend(self.order_values(b));
                tx.exec_drop(
                    "INSERT INTO orders (id, buyer_id, note, latin, amount, created, ts, doc, data, qty, big) VALUES (?, ?, ?, CONVERT(CAST(? AS BINARY) USING latin1), ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, CONVERT(CAST(? AS BINARY) USING latin1), ?, ?, ?, ?, ?, ?, ?)",
                    v,
                )
                .await
                .map_err(q)?;
                self.live_orders.push(a);
                self.live_orders.push(b);
            }
        }
        Ok(())
    }
}
