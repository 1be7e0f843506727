//! Tables of a test's own next to a [`Scenario`]'s `orders` and `items`:
//! created on the source and on every shard (with the version column), a
//! rule file routing them, and a byte-exact comparison of the targets with
//! the source routed by the server's own expression.

use std::collections::{BTreeMap, BTreeSet};

use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::{connect, Scenario};

/// A table a test adds to a scenario.
pub struct Table<'a> {
    pub name: &'a str,
    /// Column definitions, e.g. `id BINARY(16) NOT NULL, note TEXT NULL`.
    pub columns: &'a str,
    /// Key definition, e.g. `PRIMARY KEY (id)`.
    pub key: &'a str,
    /// The rule's shard expression (reshard's language).
    pub shard: &'a str,
    /// The same expression in the server's SQL, for [`compare_table`].
    pub shard_sql: &'a str,
}

impl Table<'_> {
    /// The column names, in definition order.
    pub fn column_names(&self) -> Vec<String> {
        split_top_level(self.columns)
            .iter()
            .filter_map(|d| d.split_whitespace().next())
            .map(|n| n.trim_matches('`').to_string())
            .collect()
    }
}

/// Splits `a INT, b DECIMAL(10,2)` at the commas outside parentheses.
fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// Removes the scenario's own rule files, so that only the tables a test
/// adds are copied and streamed.
pub fn only_own_rules(s: &Scenario) {
    for f in ["orders.toml", "items.toml"] {
        let _ = std::fs::remove_file(s.dir.path().join("rules").join(f));
    }
}

/// Creates `t` on the source and on every shard, and writes its rule file.
pub async fn add_table(s: &Scenario, t: &Table<'_>) {
    let mut src = s.source().await.unwrap();
    src.query_drop(format!(
        "CREATE TABLE `{}` ({}, {}) ENGINE=InnoDB",
        t.name, t.columns, t.key
    ))
    .await
    .unwrap();
    for url in s.shard_urls.values() {
        let mut c = connect(url).await.unwrap();
        c.query_drop(format!(
            "CREATE TABLE `{}` ({}, _reshard_version BINARY(16) NOT NULL DEFAULT '', {}) ENGINE=InnoDB",
            t.name, t.columns, t.key
        ))
        .await
        .unwrap();
    }
    let shards: Vec<String> = s.shard_urls.keys().map(|k| format!("{k:?}")).collect();
    std::fs::write(
        s.dir.path().join("rules").join(format!("{}.toml", t.name)),
        format!(
            "source = \"{}.{}\"\nshard = \"{}\"\nshards = [{}]\n",
            s.source_db,
            t.name,
            t.shard,
            shards.join(", ")
        ),
    )
    .unwrap();
}

/// `CONCAT_WS` of the hex bytes of every column: a byte-exact row text.
fn render(cols: &[String]) -> String {
    let parts: Vec<String> = cols
        .iter()
        .map(|c| format!("IFNULL(HEX(CAST(`{c}` AS BINARY)), 'NULL')"))
        .collect();
    format!("CONCAT_WS('|', {})", parts.join(", "))
}

/// Compares `t` on the targets with the source routed by `t.shard_sql`:
/// the differences (empty when equal, byte for byte), at most `cap`.
pub async fn compare_table(s: &Scenario, t: &Table<'_>, cap: usize) -> Vec<String> {
    let cols = t.column_names();
    let mut src = s.source().await.unwrap();
    let rows: Vec<(u64, String)> = src
        .query(format!(
            "SELECT {}, {} FROM `{}`",
            t.shard_sql,
            render(&cols),
            t.name
        ))
        .await
        .unwrap();
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (shard, row) in rows {
        expected.entry(format!("s{shard}")).or_default().insert(row);
    }
    let mut diffs = Vec::new();
    for (shard, url) in &s.shard_urls {
        let mut c = connect(url).await.unwrap();
        let rows: Vec<String> = c
            .query(format!("SELECT {} FROM `{}`", render(&cols), t.name))
            .await
            .unwrap();
        let got: BTreeSet<String> = rows.into_iter().collect();
        let want = expected.remove(shard).unwrap_or_default();
        for r in want.difference(&got) {
            diffs.push(format!("{}@{shard}: missing or different: {r}", t.name));
        }
        for r in got.difference(&want) {
            diffs.push(format!("{}@{shard}: extra or different: {r}", t.name));
        }
    }
    for (shard, rows) in expected {
        diffs.push(format!(
            "{}: {} rows routed to unknown shard {shard}",
            t.name,
            rows.len()
        ));
    }
    diffs.truncate(cap);
    diffs
}

/// The source's binlog head as `FILE:POS`.
pub async fn head(s: &Scenario) -> String {
    let (f, p) = s.source_head().await.unwrap();
    format!("{f}:{p}")
}
