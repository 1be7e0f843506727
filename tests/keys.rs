//! Keys as production schemas have them, against real MariaDB servers
//! through the real binary: `BINARY(n)` keys whose value ends in zero bytes,
//! keys that are equal under their column's collation, copy paging on text
//! keys, and the longest keys MySQL allows.

mod common;

use std::time::{Duration, Instant};

use common::tables::{add_table, compare_table, head, only_own_rules, Table};
use common::*;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reshard_testkit::scenario::Scenario;

/// Waits until the run log contains `text`.
fn wait_for_log(s: &Scenario, text: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !run_log(s).contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in the run log within {timeout:?}:\n{}",
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
/// source.
async fn replay_and_compare(s: &Scenario, from: &str, tables: &[&Table<'_>]) {
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
    assert!(
        diffs.is_empty(),
        "after the replay:\n{}\n{}",
        diffs.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
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
    let s = Scenario::create(cluster(), "kbin").unwrap();
    only_own_rules(&s);
    add_table(&s, &UUIDS).await;
    migrate(&s);
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
    wait_for_log(&s, "initial copy done", Duration::from_secs(60));
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
        tx.exec_drop("DELETE FROM uuids WHERE id = ?", (Value::Bytes(id.clone()),))
            .await
            .unwrap();
        insert_uuid_tx(&mut tx, id).await;
        tx.commit().await.unwrap();
    }
    // deleted, half of what is left
    for id in live.iter().step_by(2) {
        c.exec_drop("DELETE FROM uuids WHERE id = ?", (Value::Bytes(id.clone()),))
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
