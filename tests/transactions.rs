//! Transactions the source commits in more than one step or only in part:
//! XA (PREPARE, then COMMIT or ROLLBACK later, possibly from another
//! session, across a crash of reshard), and rollbacks that leave
//! non-transactional (Aria) changes behind. Against a real MariaDB source,
//! through the real binary; the targets must equal the source.
//!
//! The tests of this binary run one at a time: XA ids are global on the
//! shared source, and a stream that starts between another test's PREPARE
//! and its COMMIT would rightly halt on a COMMIT it never saw prepared.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use reshard::position::Position;
use reshard_testkit::scenario::{connect, Scenario};
use tokio::sync::{Mutex, MutexGuard};

/// One test at a time (see the module docs).
async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// A migrated scenario streaming from the source's head; with `aria`, its
/// source `items` table is an Aria table (non-transactional).
async fn streaming(name: &str, aria: bool) -> (Scenario, Child) {
    let s = Scenario::create(cluster(), name).unwrap();
    if aria {
        let alter = format!("ALTER TABLE {}.items ENGINE=Aria", s.source_db);
        cluster().source.sql(&alter).unwrap();
    }
    migrate(&s);
    let (file, pos) = s.source_head().await.unwrap();
    let run = spawn_run(&s, &["--from", &format!("{file}:{pos}")]);
    (s, run)
}

async fn sql(c: &mut Conn, statements: &[&str]) {
    for q in statements {
        c.query_drop(*q)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
}

/// Waits until the targets equal the routed source, then stops reshard.
async fn converges(s: &Scenario, mut run: Child) {
    s.wait_caught_up(Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(s)));
    let diffs = s.compare(20).await.unwrap();
    let st = terminate(&mut run, Duration::from_secs(30));
    assert!(diffs.is_empty(), "{}\n{}", diffs.join("\n"), run_log(s));
    assert!(st.success(), "{}", run_log(s));
}

/// Waits (at most a minute) until the run log holds `text`.
async fn log_says(s: &Scenario, what: &str, text: &str) {
    wait_until(s, what, Duration::from_secs(60), || {
        let log = run_log(s);
        async move { log.contains(text) }
    })
    .await;
}

/// Runs `statements` in one session on a source whose `items` table is
/// Aria, while streaming; returns once the targets equal the source.
async fn aria_session(name: &str, statements: &[&str]) -> Scenario {
    let (s, run) = streaming(name, true).await;
    let mut c = s.source().await.unwrap();
    sql(&mut c, statements).await;
    converges(&s, run).await;
    s
}

/// How many target rows of `orders` have `id` (over every shard).
async fn target_orders(s: &Scenario, id: u64) -> u64 {
    let mut n = 0;
    for url in s.shard_urls.values() {
        let mut c = connect(url).await.unwrap();
        let k: Option<u64> = c
            .exec_first("SELECT COUNT(*) FROM orders WHERE id = ?", (id,))
            .await
            .unwrap();
        n += k.unwrap_or(0);
    }
    n
}

/// Waits for reshard to exit by itself.
async fn exits(s: &Scenario, run: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = run.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            crash(run);
            panic!("reshard did not stop by itself\n{}", run_log(s));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// MariaDB binlogs XA PREPARE as an event group of its own and the COMMIT
/// or ROLLBACK as a later one. Committed XA work arrives, rolled-back XA
/// work does not (not even a delete of a row committed by someone else),
/// one-phase XA is an ordinary transaction, and the normal transactions
/// between PREPARE and COMMIT are applied as they come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_commit_rollback_and_one_phase_apply_exactly_the_committed_work() {
    let _one = serial().await;
    let (s, run) = streaming("xa_mix", false).await;
    let mut a = s.source().await.unwrap();
    let mut b = s.source().await.unwrap();
    let mut c = s.source().await.unwrap();
    let mut d = s.source().await.unwrap();
    sql(
        &mut b,
        &["INSERT INTO orders (id, buyer_id, qty) VALUES (1, 1, 1), (2, 2, 2), (3, 3, 3)"],
    )
    .await;
    sql(
        &mut a,
        &[
            "XA START 'mix_commit'",
            "INSERT INTO orders (id, buyer_id) VALUES (10, 10)",
            "UPDATE orders SET qty = 50 WHERE id = 1",
            "INSERT INTO items (order_id, line, sku) VALUES (10, 1, 'xa')",
            "XA END 'mix_commit'",
            "XA PREPARE 'mix_commit'",
        ],
    )
    .await;
    // normal work between PREPARE and COMMIT, on other rows
    sql(
        &mut b,
        &[
            "INSERT INTO orders (id, buyer_id) VALUES (4, 4)",
            "UPDATE orders SET qty = 70 WHERE id = 2",
        ],
    )
    .await;
    sql(
        &mut c,
        &[
            "XA START 'mix_rollback', 'branch', 7",
            "INSERT INTO orders (id, buyer_id) VALUES (20, 20)",
            "DELETE FROM orders WHERE id = 3",
            "UPDATE orders SET buyer_id = 99 WHERE id = 4",
            "XA END 'mix_rollback', 'branch', 7",
            "XA PREPARE 'mix_rollback', 'branch', 7",
        ],
    )
    .await;
    // an XA on a table without a rule, committed from another session
    sql(
        &mut d,
        &[
            "XA START 'mix_unmapped'",
            "INSERT INTO unmapped (id) VALUES (1)",
            "XA END 'mix_unmapped'",
            "XA PREPARE 'mix_unmapped'",
        ],
    )
    .await;
    d.disconnect().await.unwrap();
    sql(&mut a, &["XA COMMIT 'mix_commit'"]).await;
    // the server detaches the prepared transaction once it has seen the
    // disconnect; until then another session gets "unknown XID"
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = b.query_drop("XA COMMIT 'mix_unmapped'").await {
        assert!(Instant::now() < deadline, "XA COMMIT 'mix_unmapped': {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sql(&mut b, &["INSERT INTO orders (id, buyer_id) VALUES (5, 5)"]).await;
    sql(&mut c, &["XA ROLLBACK 'mix_rollback', 'branch', 7"]).await;
    sql(
        &mut a,
        &[
            "XA START 'mix_one_phase'",
            "INSERT INTO orders (id, buyer_id) VALUES (30, 30)",
            "DELETE FROM orders WHERE id = 5",
            "XA END 'mix_one_phase'",
            "XA COMMIT 'mix_one_phase' ONE PHASE",
        ],
    )
    .await;
    converges(&s, run).await;
    assert_eq!(target_orders(&s, 20).await, 0, "rolled-back XA row applied");
    assert_eq!(target_orders(&s, 10).await, 1);
}

/// A kill -9 of reshard between XA PREPARE and XA COMMIT: the checkpoint
/// never passed the PREPARE (so the restart reads its rows again), and
/// once the COMMIT comes the rows arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_prepared_rows_survive_a_kill_between_prepare_and_commit() {
    let _one = serial().await;
    let (s, mut run) = streaming("xa_kill", false).await;
    let mut x = s.source().await.unwrap();
    let mut n = s.source().await.unwrap();
    sql(
        &mut n,
        &["INSERT INTO orders (id, buyer_id, qty) VALUES (1, 1, 1), (2, 2, 2)"],
    )
    .await;
    let (file, pos) = s.source_head().await.unwrap();
    sql(
        &mut x,
        &[
            "XA START 'kill_me'",
            "INSERT INTO orders (id, buyer_id) VALUES (100, 100)",
            "UPDATE orders SET qty = 11 WHERE id = 1",
            "XA END 'kill_me'",
            "XA PREPARE 'kill_me'",
        ],
    )
    .await;
    sql(
        &mut n,
        &["INSERT INTO orders (id, buyer_id) VALUES (101, 101)"],
    )
    .await;
    // the transaction after the PREPARE is applied …
    wait_until(&s, "row 101 on a target", Duration::from_secs(60), || {
        let s = &s;
        async move { target_orders(s, 101).await == 1 }
    })
    .await;
    // … and the checkpoint reaches the PREPARE group's start, not beyond
    let prepare = (file.clone(), pos);
    wait_until(
        &s,
        "the checkpoint at the PREPARE",
        Duration::from_secs(60),
        || {
            let s = &s;
            let prepare = prepare.clone();
            async move { s.checkpoint().await.unwrap() == Some(prepare) }
        },
    )
    .await;
    crash(&mut run);
    assert_eq!(
        s.checkpoint().await.unwrap(),
        Some((file, pos)),
        "the checkpoint passed an unresolved XA PREPARE\n{}",
        run_log(&s)
    );
    assert_eq!(
        target_orders(&s, 100).await,
        0,
        "prepared rows applied early"
    );
    sql(&mut x, &["XA COMMIT 'kill_me'"]).await;
    sql(&mut n, &["UPDATE orders SET qty = 12 WHERE id = 2"]).await;
    let run = spawn_run(&s, &[]);
    converges(&s, run).await;
    assert_eq!(target_orders(&s, 100).await, 1);
}

/// Two XA transactions whose PREPARE–COMMIT spans overlap: A prepared, B
/// prepared, A committed, kill -9, B committed. The checkpoint must not
/// sit between A's PREPARE and its COMMIT (a restart there would read a
/// COMMIT without its PREPARE and rightly stop), nor pass B's PREPARE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_xa_transactions_survive_a_kill() {
    let _one = serial().await;
    let (s, mut run) = streaming("xa_overlap", false).await;
    let mut a = s.source().await.unwrap();
    let mut b = s.source().await.unwrap();
    let mut n = s.source().await.unwrap();
    sql(&mut n, &["INSERT INTO orders (id, buyer_id) VALUES (1, 1)"]).await;
    let (file, pos) = s.source_head().await.unwrap();
    let xa = |x: &str, id: u32| {
        [
            format!("XA START '{x}'"),
            format!("INSERT INTO orders (id, buyer_id) VALUES ({id}, {id})"),
            format!("XA END '{x}'"),
            format!("XA PREPARE '{x}'"),
        ]
    };
    let first = xa("overlap_a", 200);
    sql(
        &mut a,
        &first.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let second = xa("overlap_b", 201);
    sql(
        &mut b,
        &second.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    sql(&mut a, &["XA COMMIT 'overlap_a'"]).await;
    sql(
        &mut n,
        &["INSERT INTO orders (id, buyer_id) VALUES (202, 202)"],
    )
    .await;
    wait_until(
        &s,
        "rows 200 and 202 on the targets",
        Duration::from_secs(60),
        || {
            let s = &s;
            async move { target_orders(s, 200).await == 1 && target_orders(s, 202).await == 1 }
        },
    )
    .await;
    let prepare = (file.clone(), pos);
    wait_until(
        &s,
        "the checkpoint at A's PREPARE",
        Duration::from_secs(60),
        || {
            let s = &s;
            let prepare = prepare.clone();
            async move { s.checkpoint().await.unwrap() == Some(prepare) }
        },
    )
    .await;
    crash(&mut run);
    assert_eq!(s.checkpoint().await.unwrap(), Some((file, pos)));
    sql(&mut b, &["XA COMMIT 'overlap_b'"]).await;
    let run = spawn_run(&s, &[]);
    converges(&s, run).await;
    assert_eq!(target_orders(&s, 201).await, 1);
}

/// A stream that starts after an XA PREPARE never sees its rows; when the
/// COMMIT comes, reshard stops and says so rather than lose them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_commit_whose_prepare_was_not_read_halts() {
    let _one = serial().await;
    let s = Scenario::create(cluster(), "xa_unseen").unwrap();
    migrate(&s);
    let mut x = s.source().await.unwrap();
    sql(
        &mut x,
        &[
            "XA START 'unseen'",
            "INSERT INTO orders (id, buyer_id) VALUES (1, 1)",
            "XA END 'unseen'",
            "XA PREPARE 'unseen'",
        ],
    )
    .await;
    let (file, pos) = s.source_head().await.unwrap();
    let mut run = spawn_run(&s, &["--from", &format!("{file}:{pos}")]);
    let (file, pos) = s.source_head().await.unwrap();
    sql(&mut x, &["XA COMMIT 'unseen'"]).await;
    let st = exits(&s, &mut run, Duration::from_secs(60)).await;
    let log = run_log(&s);
    assert_eq!(st.code(), Some(2), "{log}");
    assert!(
        log.contains("XA COMMIT") && log.contains("'unseen'") && log.contains("PREPARE"),
        "{log}"
    );
    let (cp_file, cp_pos) = s.checkpoint().await.unwrap().unwrap();
    assert!(
        Position::new(cp_file, cp_pos) <= Position::new(file, pos),
        "the checkpoint moved past the COMMIT"
    );
}

/// The initial copy cannot see the rows of a prepared XA transaction, and
/// a stream from the snapshot position would see only its COMMIT: the
/// copy waits until `XA RECOVER` lists nothing, then takes its position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_copy_waits_for_prepared_xa_transactions() {
    let _one = serial().await;
    let s = Scenario::create(cluster(), "xa_snap").unwrap();
    migrate(&s);
    let mut x = s.source().await.unwrap();
    sql(
        &mut x,
        &[
            "INSERT INTO orders (id, buyer_id, qty) VALUES (1, 1, 1), (2, 2, 2)",
            "XA START 'snap_wait'",
            "INSERT INTO orders (id, buyer_id) VALUES (50, 50)",
            "UPDATE orders SET qty = 9 WHERE id = 1",
            "XA END 'snap_wait'",
            "XA PREPARE 'snap_wait'",
        ],
    )
    .await;
    let run = spawn_run(&s, &[]);
    log_says(&s, "the copy to wait for XA", "prepared XA").await;
    sql(&mut x, &["XA COMMIT 'snap_wait'"]).await;
    // the checkpoint is at the copy's position before the copy: wait for
    // the copy itself, or the comparison can run before it
    log_says(&s, "the initial copy to end", "initial copy done").await;
    converges(&s, run).await;
    assert_eq!(target_orders(&s, 50).await, 1);
}

/// Writing a non-transactional (Aria) table inside a transaction makes
/// the server keep the transactional rows of a `ROLLBACK TO SAVEPOINT` in
/// the binlog, followed by the `ROLLBACK TO` itself: those rows were
/// rolled back on the source and must not be applied. The Aria rows were
/// not rolled back (the server logs them as a group of their own) and must
/// be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_rolled_back_to_a_savepoint_next_to_an_aria_table_are_not_applied() {
    let _one = serial().await;
    let s = aria_session(
        "sp_aria",
        &[
            "INSERT INTO orders (id, buyer_id, qty) VALUES (1, 1, 1)",
            "BEGIN",
            "INSERT INTO orders (id, buyer_id) VALUES (2, 2)",
            "SAVEPOINT `first`",
            "INSERT INTO orders (id, buyer_id) VALUES (3, 3)",
            "UPDATE orders SET qty = 9 WHERE id = 1",
            // (no SAVEPOINT can be set once Aria is in the transaction)
            "SAVEPOINT second",
            "DELETE FROM orders WHERE id = 2",
            "ROLLBACK TO SAVEPOINT second",
            "UPDATE orders SET qty = 8 WHERE id = 2",
            "INSERT INTO items (order_id, line, sku) VALUES (1, 1, 'aria')",
            "ROLLBACK TO SAVEPOINT `FIRST`",
            "INSERT INTO orders (id, buyer_id) VALUES (4, 4)",
            "INSERT INTO items (order_id, line, sku) VALUES (1, 2, 'aria')",
            "UPDATE orders SET qty = 7 WHERE id = 4",
            "COMMIT",
        ],
    )
    .await;
    assert_eq!(target_orders(&s, 3).await, 0, "rolled-back row applied");
}

/// `BEGIN … ROLLBACK` around writes to an InnoDB and an Aria table: the
/// Aria rows stay on the source and must arrive; the InnoDB rows must not
/// (also when the server logs the rolled-back group, as it does once the
/// transaction created a temporary table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aria_rows_of_a_rolled_back_transaction_are_applied() {
    let _one = serial().await;
    let s = aria_session(
        "rb_aria",
        &[
            "INSERT INTO orders (id, buyer_id, qty) VALUES (1, 1, 1)",
            "BEGIN",
            "INSERT INTO orders (id, buyer_id) VALUES (2, 2)",
            "INSERT INTO items (order_id, line, sku) VALUES (1, 1, 'aria')",
            "UPDATE orders SET qty = 9 WHERE id = 1",
            "ROLLBACK",
            "BEGIN",
            "INSERT INTO orders (id, buyer_id) VALUES (3, 3)",
            "CREATE TEMPORARY TABLE scratch (i INT)",
            "INSERT INTO items (order_id, line, sku) VALUES (1, 2, 'aria')",
            "DELETE FROM orders WHERE id = 1",
            "ROLLBACK",
        ],
    )
    .await;
    assert_eq!(target_orders(&s, 2).await, 0, "rolled-back row applied");
    assert_eq!(target_orders(&s, 3).await, 0, "rolled-back row applied");
}
