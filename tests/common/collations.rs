//! Text keys that are equal under their column's collation (issue 8):
//! tables with `_ci` keys and a workload that changes keys to
//! collation-equal spellings, shared by the key and archive tests.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

use super::tables::Table;

pub const CI_UTF8: Table = Table {
    name: "ci_utf8",
    columns: "k VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL, tenant INT NOT NULL, n INT NULL",
    key: "PRIMARY KEY (k)",
    shard: "crc32(tenant) % 4",
    shard_sql: "CRC32(tenant) % 4",
};

pub const CI_LATIN1: Table = Table {
    name: "ci_latin1",
    columns: "k VARCHAR(40) CHARACTER SET latin1 COLLATE latin1_swedish_ci NOT NULL, tenant INT NOT NULL, n INT NULL",
    key: "PRIMARY KEY (k)",
    shard: "crc32(tenant) % 4",
    shard_sql: "CRC32(tenant) % 4",
};

/// Pairs of keys equal under both collations (case, accents, trailing
/// spaces under PAD SPACE), the first spelling inserted, the second the
/// one a key is changed to.
pub fn equal_pairs(i: usize) -> [(String, String); 4] {
    [
        (format!("case-{i}-abc"), format!("CASE-{i}-Abc")),
        (format!("cafe-{i}"), format!("caf\u{e9}-{i}")),
        (format!("pad-{i}"), format!("pad-{i}  ")),
        (
            format!("Mixed-{i}-\u{c9}t\u{e9}"),
            format!("mIXED-{i}-\u{e9}T\u{c9} "),
        ),
    ]
}

/// Inserts the first spelling of every pair of keys `0..keys`.
pub async fn insert_first_spellings(c: &mut Conn, table: &str, keys: usize) {
    for i in 0..keys {
        for (a, _) in equal_pairs(i) {
            exec(
                c,
                format!("INSERT INTO {table} (k, tenant, n) VALUES (?, ?, 0)"),
                vec![a.into(), (i as i64).into()],
            )
            .await;
        }
    }
}

pub async fn exec(c: &mut Conn, sql: String, params: Vec<Value>) {
    c.exec_drop(sql, params).await.unwrap();
}

/// The changes of one table: key spellings changed to collation-equal
/// ones (alone, with other columns, and back), a key deleted and its
/// other spelling inserted (in one transaction and in two), non-key
/// updates in between.
pub async fn collation_workload(c: &mut Conn, table: &str, keys: usize) {
    for i in 0..keys {
        for (j, (a, b)) in equal_pairs(i).into_iter().enumerate() {
            let t = format!("UPDATE {table} SET k = ? WHERE k = ?");
            match (i + j) % 4 {
                0 => exec(c, t, vec![b.into(), a.into()]).await,
                1 => {
                    exec(c, t.clone(), vec![b.clone().into(), a.clone().into()]).await;
                    exec(
                        c,
                        format!("UPDATE {table} SET n = n + 1 WHERE k = ?"),
                        vec![b.clone().into()],
                    )
                    .await;
                    exec(c, t, vec![a.into(), b.into()]).await;
                }
                2 => {
                    let mut tx = c
                        .start_transaction(mysql_async::TxOpts::default())
                        .await
                        .unwrap();
                    tx.exec_drop(format!("DELETE FROM {table} WHERE k = ?"), (a.clone(),))
                        .await
                        .unwrap();
                    tx.exec_drop(
                        format!("INSERT INTO {table} (k, tenant, n) VALUES (?, ?, 100)"),
                        (b, i as i64),
                    )
                    .await
                    .unwrap();
                    tx.commit().await.unwrap();
                }
                _ => {
                    exec(
                        c,
                        format!("DELETE FROM {table} WHERE k = ?"),
                        vec![a.into()],
                    )
                    .await;
                    exec(
                        c,
                        format!("INSERT INTO {table} (k, tenant, n) VALUES (?, ?, 200)"),
                        vec![b.into(), (i as i64).into()],
                    )
                    .await;
                }
            }
        }
    }
}
