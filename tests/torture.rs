//! The torture test (acceptance of the initial copy / replay issue): a
//! random workload on pre-loaded tables, at least 10 crashes at random
//! points (during the parallel initial copy — three readers, two tables
//! in key ranges — and during streaming), restarts, and
//! replays of random earlier ranges, while a sampler reads random target
//! rows and tombstones the whole time. The final state equals the routed
//! source, `verify` agrees, and the sampler never saw a key's version go
//! down nor a row below its tombstone (a deleted row coming back).
//!
//! Besides `orders` and `items`, a `tagged` table keyed by a `BINARY(16)`
//! and a `utf8mb4_general_ci` `VARCHAR` (issue 8: keys ending in 0x00,
//! keys whose spelling changes to a collation-equal one) takes its own
//! random changes throughout.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::tables::{add_table, compare_table, Table};
use common::*;
use mysql_async::prelude::Queryable;
use mysql_async::Value;
use rand::{Rng, SeedableRng};
use reshard::writer::keyenc;
use reshard_testkit::scenario::{connect, Scenario, Workload, WorkloadOptions};

const BULK: u64 = 12_000;

/// Keys that production schemas have: a `BINARY(16)` (mixed-case ASCII
/// bytes, half ending in 0x00) and a case-insensitive text (mixed case,
/// some ending in a NUL character or spaces), routed by the text.
const TAGGED: Table = Table {
    name: "tagged",
    columns: "bin BINARY(16) NOT NULL, name VARCHAR(24) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL, n INT NOT NULL",
    key: "PRIMARY KEY (bin, name)",
    shard: "crc32(name) % 4",
    shard_sql: "CRC32(name) % 4",
};

/// A key of `tagged` (unique for each `i`).
fn tagged_key(rng: &mut rand::rngs::StdRng, i: u64) -> (Vec<u8>, String) {
    let letters = b"aAbBcCdDeEfFxXyYzZ0189";
    let mut bin: Vec<u8> = (0..16)
        .map(|_| letters[rng.gen_range(0..letters.len())])
        .collect();
    bin[..7].copy_from_slice(format!("{i:07}").as_bytes());
    if rng.gen_bool(0.5) {
        let zeros = rng.gen_range(1..4);
        bin[16 - zeros..].fill(0);
    }
    let chars = ['a', 'A', 'b', 'B', '\u{e9}', '\u{c9}', 'z', 'Z', '-'];
    let mut name: String = (0..rng.gen_range(1..10))
        .map(|_| chars[rng.gen_range(0..chars.len())])
        .collect();
    match rng.gen_range(0..4) {
        0 => name.push('\0'),
        1 => name.push_str("  "),
        _ => {}
    }
    (bin, name)
}

/// The same text in another case (collation-equal under `general_ci`).
fn swap_case(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_lowercase() {
                c.to_uppercase().next().unwrap_or(c)
            } else {
                c.to_lowercase().next().unwrap_or(c)
            }
        })
        .collect()
}

/// Random changes of `tagged`, `preload` inserts first: inserts, updates,
/// spelling changes of the text key, new binary keys, deletes.
async fn tagged_workload(
    mut c: mysql_async::Conn,
    seed: u64,
    first: u64,
    preload: u64,
    ops: u64,
) -> Result<(), mysql_async::Error> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut live: Vec<(Vec<u8>, String)> = Vec::new();
    let rows: Vec<(Vec<u8>, String)> = c.query("SELECT bin, name FROM tagged").await?;
    live.extend(rows);
    let bind = |k: &(Vec<u8>, String)| (Value::Bytes(k.0.clone()), k.1.clone());
    for i in 0..preload + ops {
        let pick = rng.gen_range(0..live.len().max(1));
        let op = if i < preload || live.len() < 20 {
            0
        } else {
            rng.gen_range(0..6)
        };
        let sql = match op {
            0 | 1 => {
                let k = tagged_key(&mut rng, first + i);
                let (b, n) = bind(&k);
                c.exec_drop("INSERT INTO tagged VALUES (?, ?, 0)", (b, n))
                    .await?;
                live.push(k);
                continue;
            }
            2 => "UPDATE tagged SET n = n + 1 WHERE bin = ? AND name = ?",
            3 => {
                let (b, n) = bind(&live[pick]);
                let new = swap_case(&live[pick].1);
                c.exec_drop(
                    "UPDATE tagged SET name = ? WHERE bin = ? AND name = ?",
                    (new.clone(), b, n),
                )
                .await?;
                live[pick].1 = new;
                continue;
            }
            4 => {
                let (b, n) = bind(&live[pick]);
                let new = tagged_key(&mut rng, first + preload + ops + i).0;
                c.exec_drop(
                    "UPDATE tagged SET bin = ? WHERE bin = ? AND name = ?",
                    (Value::Bytes(new.clone()), b, n),
                )
                .await?;
                live[pick].0 = new;
                continue;
            }
            _ => "DELETE FROM tagged WHERE bin = ? AND name = ?",
        };
        let k = if op == 2 {
            live[pick].clone()
        } else {
            live.swap_remove(pick)
        };
        c.exec_drop(sql, bind(&k)).await?;
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// Reads random orders keys on random shards, row and tombstone in one
/// consistent snapshot, and remembers the highest version seen per key.
async fn sampler(shards: Vec<String>, stop: Arc<AtomicBool>, seed: u64) -> (u64, Vec<String>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut conns = Vec::new();
    for url in &shards {
        conns.push(connect(url).await.unwrap());
    }
    let mut seen: HashMap<(usize, u64), [u8; 16]> = HashMap::new();
    let mut violations = Vec::new();
    let mut reads = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let s = rng.gen_range(0..conns.len());
        let ids: Vec<u64> = (0..20).map(|_| rng.gen_range(1..=BULK)).collect();
        let c = &mut conns[s];
        if c.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await
            .is_err()
        {
            continue;
        }
        let list = ids
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let rows: Vec<(u64, Vec<u8>)> = c
            .query(format!(
                "SELECT id, _reshard_version FROM orders WHERE id IN ({list})"
            ))
            .await
            .unwrap_or_default();
        let keys: Vec<Value> = ids
            .iter()
            .map(|i| Value::Bytes(keyenc::encode(&[Value::UInt(*i)])))
            .collect();
        let marks = vec!["?"; keys.len()].join(",");
        let mut params = vec![Value::Bytes(b"orders".to_vec())];
        params.extend(keys);
        let tombs: Vec<(Vec<u8>, Vec<u8>)> = c
            .exec(
                format!(
                    "SELECT k, version FROM _reshard_tombstone WHERE tbl = ? AND k IN ({marks})"
                ),
                params,
            )
            .await
            .unwrap_or_default();
        let _ = c.query_drop("COMMIT").await;
        reads += 1;
        let tomb: HashMap<Vec<u8>, [u8; 16]> = tombs
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.try_into().ok()?)))
            .collect();
        for id in ids {
            let row = rows
                .iter()
                .find(|(i, _)| *i == id)
                .and_then(|(_, v)| <[u8; 16]>::try_from(v.as_slice()).ok());
            let t = tomb.get(&keyenc::encode(&[Value::UInt(id)])).copied();
            if let (Some(r), Some(t)) = (row, t) {
                if r <= t {
                    violations.push(format!("shard {s} id {id}: row version {r:02x?} not above its tombstone {t:02x?} (a deleted row is visible)"));
                }
            }
            let observed = row.into_iter().chain(t).max();
            if let Some(o) = observed {
                let prev = seen.entry((s, id)).or_insert(o);
                if o < *prev {
                    violations.push(format!(
                        "shard {s} id {id}: version went down from {prev:02x?} to {o:02x?}"
                    ));
                }
                *prev = (*prev).max(o);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (reads, violations)
}

/// Waits until the run log shows `runs` runs started (past start-up:
/// connected, lease taken, collations ready).
async fn wait_started(s: &Scenario, runs: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while run_log(s).matches(" starting pipeline=").count() < runs {
        assert!(std::time::Instant::now() < deadline, "{}", run_log(s));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_restarts_and_replays_converge_and_never_go_backwards() {
    let seed: u64 = std::env::var("RESHARD_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7_700);
    let s = Scenario::create(cluster(), "torture").unwrap();
    let (orders, items) = s.bulk_load(BULK).await.unwrap();
    add_table(&s, &TAGGED).await;
    // loaded before the copy, like the bulk load, then changed while the
    // pipeline runs
    tagged_workload(s.source().await.unwrap(), seed, 0, 1500, 0)
        .await
        .unwrap();
    // the copy reads 3 units at once: parts of `orders` and `items` (their
    // keys start with an integer; fresh statistics make the row estimate
    // that decides the parts deterministic) and `tagged` whole
    for t in ["orders", "items", "tagged"] {
        s.source()
            .await
            .unwrap()
            .query_drop(format!("ANALYZE TABLE {}.{t}", s.source_db))
            .await
            .unwrap();
    }
    s.configure(
        "snapshot_chunk_rows = 400\nsnapshot_rows_per_sec = 10000\nsnapshot_readers = 3\nbatch_size = 200\nsnapshot_batch_rows = 200",
    )
    .unwrap();
    migrate(&s);

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sampler(
        s.shard_urls.values().cloned().collect(),
        stop.clone(),
        seed,
    ));
    let mut run = spawn_run(&s, &[]);
    // the first start learns the key collation of `tagged` from the source
    // (once per source build; later starts read it from the control
    // database): let it finish before the crashes begin
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !run_log(&s).contains("key collations ready") {
        assert!(std::time::Instant::now() < deadline, "{}", run_log(&s));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut conn = s.source().await.unwrap();
    let tagged = tokio::spawn(tagged_workload(
        s.source().await.unwrap(),
        seed + 1,
        1_000_000,
        0,
        3000,
    ));
    let workload = tokio::spawn(async move {
        let mut w = Workload::new(seed);
        w.adopt(orders, items);
        for _ in 0..16 {
            w.run(
                &mut conn,
                &WorkloadOptions {
                    operations: 250,
                    seed,
                    rotate_every: 1200,
                },
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        Ok::<usize, reshard_testkit::TestkitError>(w.done)
    });

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut boundaries: Vec<(String, u64)> = Vec::new();
    let mut crashes = 0;
    let mut replays = 0;
    while crashes < 10 || replays < 2 || !workload.is_finished() || !tagged.is_finished() {
        // the crash comes at a random point after this run started, however
        // long its start-up takes on a loaded machine (a fixed interval from
        // the spawn killed every run before it did anything)
        wait_started(&s, crashes + 1).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(150..600))).await;
        if let Some(cp) = s.checkpoint().await.unwrap() {
            if boundaries.last() != Some(&cp) {
                boundaries.push(cp);
            }
        }
        crash(&mut run);
        crashes += 1;
        let snapshot_done = run_log(&s).contains("initial copy done");
        if snapshot_done && boundaries.len() >= 2 && rng.gen_bool(0.5) {
            // replay a random earlier range (its ends are transaction boundaries)
            let a = rng.gen_range(0..boundaries.len() - 1);
            let b = rng.gen_range(a + 1..boundaries.len());
            let (from, to) = (&boundaries[a], &boundaries[b]);
            let out = reshard(
                &s,
                &[
                    "replay",
                    "--from",
                    &format!("{}:{}", from.0, from.1),
                    "--to",
                    &format!("{}:{}", to.0, to.1),
                ],
            );
            assert_eq!(
                out.status.code(),
                Some(0),
                "replay failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            replays += 1;
        }
        run = spawn_run(&s, &[]);
        if crashes > 60 {
            break;
        }
    }
    workload.await.unwrap().unwrap();
    tagged.await.unwrap().unwrap();
    s.wait_caught_up(Duration::from_secs(180))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    stop.store(true, Ordering::Relaxed);
    let (reads, violations) = sampler.await.unwrap();
    let mut diffs = s.compare(20).await.unwrap();
    diffs.extend(compare_table(&s, &TAGGED, 20).await);
    terminate(&mut run, Duration::from_secs(30));
    eprintln!("torture: {crashes} crashes, {replays} replays, {reads} sampler reads");
    assert!(
        crashes >= 10 && replays >= 2,
        "{crashes} crashes, {replays} replays\n{}",
        run_log(&s)
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    assert!(diffs.is_empty(), "{}\n{}", diffs.join("\n"), run_log(&s));
    let out = reshard(&s, &["verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = run_log(&s);
    assert!(
        log.contains("resuming the initial copy"),
        "at least one crash hit the initial copy"
    );
    for t in ["orders", "items"] {
        assert!(
            log.contains(&format!(
                "copying in parts (key ranges read in parallel) table={}.{t} parts=",
                s.source_db
            )),
            "{t} is copied in key ranges read at once"
        );
    }
}

/// Transactions committed continuously while the snapshot position is
/// taken are neither lost nor double-applied: P comes from the consistent
/// snapshot, not from SHOW MASTER STATUS (see src/snapshot/mod.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_racing_the_snapshot_position_are_not_lost() {
    for round in 0..3 {
        let s = Scenario::create(cluster(), &format!("race{round}")).unwrap();
        migrate(&s);
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..4u64 {
            let url = s.source_url.clone();
            let stop = stop.clone();
            writers.push(tokio::spawn(async move {
                let mut c = connect(&url).await.unwrap();
                let mut id = w * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    id += 1;
                    c.exec_drop(
                        "INSERT INTO orders (id, buyer_id) VALUES (?, ?)",
                        (id, (id % 97) as i64),
                    )
                    .await
                    .unwrap();
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut run = spawn_run(&s, &[]);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        s.wait_caught_up(Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
        let diffs = s.compare(10).await.unwrap();
        terminate(&mut run, Duration::from_secs(30));
        assert!(
            diffs.is_empty(),
            "round {round}: {}\n{}",
            diffs.join("\n"),
            run_log(&s)
        );
    }
}
