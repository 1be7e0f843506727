//! End-to-end: tail → derive → versioned write → checkpoint, against real
//! MariaDB servers, driving the real binary.

mod common;

use std::time::Duration;

use common::*;
use reshard_testkit::scenario::{Scenario, Workload, WorkloadOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_small_workload_converges() {
    let s = Scenario::create(cluster(), "smoke").unwrap();
    migrate(&s);
    let mut run = spawn_run(&s, &[]);
    // wait for the start checkpoint
    for _ in 0..100 {
        if s.checkpoint().await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut w = Workload::new(1);
    let mut conn = s.source().await.unwrap();
    w.run(
        &mut conn,
        &WorkloadOptions {
            operations: 300,
            seed: 1,
            rotate_every: 100,
        },
    )
    .await
    .unwrap();
    converge_and_stop(&s, &mut run, Duration::from_secs(60)).await;
}

/// Acceptance: a random workload of 10,000 operations on two tables, with
/// the binlog rotating and the pipeline crashed (SIGKILL) or stopped
/// (SIGTERM) at random points at least 5 times, converges: the union of the
/// shards equals the source routed by the server's own CRC32(), with the
/// derived column right and nothing extra. Then the same binlog range is
/// applied a second time and must leave every target table unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_with_crashes_converges_and_replaying_the_range_changes_nothing() {
    use rand::{Rng, SeedableRng};
    let s = Scenario::create(cluster(), "torture").unwrap();
    migrate(&s);
    let (file, pos) = s.source_head().await.unwrap();
    let first = format!("{file}:{pos}");
    let mut run = spawn_run(&s, &["--from", &first]);

    let seed: u64 = std::env::var("RESHARD_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261122);
    let mut conn = s.source().await.unwrap();
    let workload = tokio::spawn(async move {
        let mut w = Workload::new(seed);
        for _ in 0..20 {
            w.run(
                &mut conn,
                &WorkloadOptions {
                    operations: 500,
                    seed,
                    rotate_every: 1500,
                },
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        Ok::<usize, reshard_testkit::TestkitError>(w.done)
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut stops = 0;
    while stops < 6 || !workload.is_finished() {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(150..700))).await;
        if rng.gen_bool(0.75) {
            crash(&mut run);
        } else {
            let st = terminate(&mut run, Duration::from_secs(30));
            assert!(st.success(), "SIGTERM must exit 0\n{}", run_log(&s));
        }
        stops += 1;
        run = spawn_run(&s, &[]);
        if stops > 40 {
            break;
        }
    }
    let done = workload.await.unwrap().unwrap();
    assert!(done >= 10_000, "only {done} operations ran");
    assert!(stops >= 5);
    eprintln!("workload: {done} operations, {stops} stops/crashes");
    s.wait_caught_up(Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    let diffs = s.compare(20).await.unwrap();
    assert!(
        diffs.is_empty(),
        "after {stops} stops:\n{}\n{}",
        diffs.join("\n"),
        run_log(&s)
    );
    let st = terminate(&mut run, Duration::from_secs(30));
    assert!(st.success(), "{}", run_log(&s));
    let log = run_log(&s);
    assert!(
        log.contains("mysql-bin.000"),
        "progress lines name positions"
    );

    // the same range again, from the very first position
    let before = s.target_fingerprint().await.unwrap();
    let mut again = spawn_run(&s, &["--from", &first, "--force"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.wait_caught_up(Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    let st = terminate(&mut again, Duration::from_secs(30));
    assert!(st.success(), "{}", run_log(&s));
    let after = s.target_fingerprint().await.unwrap();
    assert_eq!(
        before, after,
        "re-applying the binlog range changed a target"
    );
    assert!(s.compare(5).await.unwrap().is_empty());
}

/// A row whose shard cannot be derived stops the pipeline (default) with
/// the table, key and error, and the checkpoint does not pass it; with
/// `on_derive_error = "dead-letter"` the row is recorded and the rest flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underivable_rows_halt_or_go_to_dead_letters_never_dropped() {
    use mysql_async::prelude::Queryable;
    for (name, mode) in [("halt", None), ("deadl", Some("dead-letter"))] {
        let s = Scenario::create(cluster(), name).unwrap();
        // qty may be NULL: crc32(NULL) is NULL, which is no shard index
        let rule = std::fs::read_to_string(s.dir.path().join("rules/orders.toml")).unwrap();
        std::fs::write(
            s.dir.path().join("rules/orders.toml"),
            rule.replace(
                "shard = \"crc32(buyer_id) % 4\"",
                "shard = \"crc32(qty) % 4\"",
            ),
        )
        .unwrap();
        if let Some(mode) = mode {
            let cfg = std::fs::read_to_string(&s.config).unwrap();
            std::fs::write(&s.config, format!("{cfg}on_derive_error = \"{mode}\"\n")).unwrap();
        }
        migrate(&s);
        let (file, pos) = s.source_head().await.unwrap();
        let mut src = s.source().await.unwrap();
        src.query_drop(
            "INSERT INTO orders (id, buyer_id, qty) VALUES (1, 1, 5), (2, 2, NULL), (3, 3, 7)",
        )
        .await
        .unwrap();
        let from = format!("{file}:{pos}");
        let mut run = spawn_run(&s, &["--from", &from]);
        if mode.is_none() {
            let st = tokio::task::spawn_blocking(move || run.wait().unwrap())
                .await
                .unwrap();
            let log = run_log(&s);
            assert_eq!(st.code(), Some(2), "{log}");
            assert!(
                log.contains("halt_src.orders") && log.contains("(2)"),
                "names table and key: {log}"
            );
            let cp = s.checkpoint().await.unwrap().unwrap();
            assert_eq!(
                (cp.0.as_str(), cp.1),
                (file.as_str(), pos),
                "checkpoint must not pass the failed row"
            );
        } else {
            s.wait_caught_up(Duration::from_secs(60))
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
            terminate(&mut run, Duration::from_secs(30));
            let mut ctl = reshard_testkit::scenario::connect(&s.control_url)
                .await
                .unwrap();
            let dl: Vec<(String, String)> = ctl
                .query("SELECT row_key, error FROM reshard_dead_letter")
                .await
                .unwrap();
            assert_eq!(dl.len(), 1, "{dl:?}");
            assert_eq!(dl[0].0, "(2)");
            let mut total = 0u64;
            for url in s.shard_urls.values() {
                let mut c = reshard_testkit::scenario::connect(url).await.unwrap();
                let n: Option<u64> = c.query_first("SELECT COUNT(*) FROM orders").await.unwrap();
                total += n.unwrap_or(0);
            }
            assert_eq!(total, 2, "the two derivable rows are applied");
        }
    }
}

/// Pre-flight: a source without a binlog is refused, naming the setting,
/// the expected and the actual value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_names_the_setting_expected_and_actual() {
    let c = cluster();
    let s = Scenario::create(c, "preflight").unwrap();
    migrate(&s);
    // point the source at a target server, which has no binlog
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    let cfg = cfg.replace(&c.source.url(""), &c.targets[1].url(""));
    std::fs::write(&s.config, cfg).unwrap();
    let out = reshard(&s, &["run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("log_bin: expected ON, got OFF"), "{err}");
}

/// `version = { column = "qty" }`: a change with a lower column value does
/// not overwrite a higher one, equal values keep binlog order, and a
/// re-insert below a deleted row's value stays deleted (documented).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_versions_order_by_the_column_then_the_binlog() {
    use mysql_async::prelude::Queryable;
    let s = Scenario::create(cluster(), "colver").unwrap();
    let rule = s.dir.path().join("rules/orders.toml");
    let text = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(
        &rule,
        text.replace("[derive]", "version = { column = \"qty\" }\n\n[derive]"),
    )
    .unwrap();
    migrate(&s);
    let (file, pos) = s.source_head().await.unwrap();
    let mut src = s.source().await.unwrap();
    for q in [
        "INSERT INTO orders (id, buyer_id, qty, note) VALUES (1, 1, 10, 'a'), (2, 2, 1, 'x')",
        "UPDATE orders SET qty = 5, note = 'b' WHERE id = 1",
        "UPDATE orders SET qty = 20, note = 'c' WHERE id = 1",
        "UPDATE orders SET note = 'd' WHERE id = 1",
        "UPDATE orders SET qty = 2, note = 'y' WHERE id = 2",
        "DELETE FROM orders WHERE id = 2",
        "INSERT INTO orders (id, buyer_id, qty, note) VALUES (2, 2, 1, 'z')",
    ] {
        src.query_drop(q).await.unwrap();
    }
    let mut run = spawn_run(&s, &["--from", &format!("{file}:{pos}")]);
    s.wait_caught_up(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    terminate(&mut run, Duration::from_secs(30));
    let mut rows: Vec<(u64, Option<i32>, Option<String>)> = Vec::new();
    for url in s.shard_urls.values() {
        let mut c = reshard_testkit::scenario::connect(url).await.unwrap();
        rows.extend(
            c.query::<(u64, Option<i32>, Option<String>), _>("SELECT id, qty, note FROM orders")
                .await
                .unwrap(),
        );
    }
    rows.sort();
    assert_eq!(
        rows,
        vec![(1, Some(20), Some("d".to_string()))],
        "{}",
        run_log(&s)
    );
}

/// Acceptance (initial copy): 50,000 rows exist before `run` starts and a
/// random workload (touching copied rows too) runs throughout the copy,
/// which is also crashed once and resumed. The targets converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_under_live_load_with_a_crash_converges() {
    let s = Scenario::create(cluster(), "snap").unwrap();
    let (orders, items) = s.bulk_load(25_000).await.unwrap();
    s.configure("snapshot_chunk_rows = 500\nsnapshot_rows_per_sec = 12000")
        .unwrap();
    migrate(&s);
    let mut run = spawn_run(&s, &[]);
    let mut conn = s.source().await.unwrap();
    let workload = tokio::spawn(async move {
        let mut w = Workload::new(99);
        w.adopt(orders, items);
        for _ in 0..12 {
            w.run(
                &mut conn,
                &WorkloadOptions {
                    operations: 250,
                    seed: 99,
                    rotate_every: 1000,
                },
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok::<usize, reshard_testkit::TestkitError>(w.done)
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    crash(&mut run);
    let log = run_log(&s);
    assert!(log.contains("initial copy"), "{log}");
    run = spawn_run(&s, &[]);
    workload.await.unwrap().unwrap();
    s.wait_caught_up(Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    let diffs = s.compare(20).await.unwrap();
    terminate(&mut run, Duration::from_secs(30));
    let log = run_log(&s);
    assert!(diffs.is_empty(), "{}\n{log}", diffs.join("\n"));
    assert!(
        log.contains("resuming the initial copy"),
        "the crash happened mid-copy: {log}"
    );
    assert!(log.contains("initial copy done"), "{log}");
    // held back by its throttle, and it says so
    let done = log
        .lines()
        .find(|l| l.contains("initial copy done"))
        .unwrap_or_default();
    assert!(done.contains("bound_by=\"throttle\""), "{done}");
    assert!(done.contains("waited_for_targets_pct="), "{done}");
    let out = reshard(&s, &["verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The copy reads the tombstones a target already holds: a row deleted
/// there under a newer version than the copy's stays deleted, while the
/// batches of tables with no tombstone go out without a transaction
/// (`docs/architecture.md`, "Batches without a transaction").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_honours_tombstones_already_on_the_targets() {
    use mysql_async::prelude::Queryable;
    use mysql_async::Value;
    use reshard::version::Version;
    use reshard::writer::keyenc::encode;

    let s = Scenario::create(cluster(), "copytomb").unwrap();
    s.bulk_load(3000).await.unwrap();
    s.configure("batch_size = 100\nsnapshot_batch_rows = 100\nsnapshot_chunk_rows = 50")
        .unwrap();
    migrate(&s);
    let doomed = 1234u64;
    // epoch 9: above every version this pipeline (epoch 0) writes
    let v = Version::new(9, 1, 4, 0).unwrap().to_bytes().to_vec();
    for url in s.shard_urls.values() {
        let mut c = reshard_testkit::scenario::connect(url).await.unwrap();
        for k in [
            encode(&[Value::UInt(doomed)]),
            encode(&[Value::Int(doomed as i64)]),
        ] {
            c.exec_drop(
                "INSERT INTO _reshard_tombstone (tbl, k, version) VALUES ('orders', ?, ?)",
                (k, v.clone()),
            )
            .await
            .unwrap();
        }
    }
    let mut run = spawn_run(&s, &[]);
    s.wait_caught_up(Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    let (mut orders, mut items, mut found) = (0u64, 0u64, 0u64);
    for url in s.shard_urls.values() {
        let mut c = reshard_testkit::scenario::connect(url).await.unwrap();
        let n: Option<(u64, u64, u64)> = c
            .exec_first(
                "SELECT (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM items), (SELECT COUNT(*) FROM orders WHERE id = ?)",
                (doomed,),
            )
            .await
            .unwrap();
        let (o, i, f) = n.unwrap_or_default();
        (orders, items, found) = (orders + o, items + i, found + f);
    }
    terminate(&mut run, Duration::from_secs(30));
    let log = run_log(&s);
    assert_eq!(
        found, 0,
        "the copy brought back a row deleted under a newer version:\n{log}"
    );
    assert_eq!(orders, 2999, "{log}");
    assert_eq!(items, 3000, "{log}");
    // regression: a table whose parts finished together was announced
    // once per part
    for t in ["orders", "items"] {
        let line = format!("table copied table={}.{t} ", s.source_db);
        assert_eq!(log.matches(&line).count(), 1, "{line}\n{log}");
    }
}

/// Regression: the rows of an XA PREPAREd transaction were dropped when the
/// next transaction began. They are held until the XA COMMIT and applied
/// then (more in `tests/transactions.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_prepared_rows_are_applied_at_commit_not_dropped() {
    use mysql_async::prelude::Queryable;
    let s = Scenario::create(cluster(), "xa").unwrap();
    migrate(&s);
    let (file, pos) = s.source_head().await.unwrap();
    let mut src = s.source().await.unwrap();
    let mut other = s.source().await.unwrap();
    for q in [
        "XA START 'reshard-xa'",
        "INSERT INTO orders (id, buyer_id) VALUES (1, 1)",
        "XA END 'reshard-xa'",
        "XA PREPARE 'reshard-xa'",
    ] {
        src.query_drop(q).await.unwrap();
    }
    other
        .query_drop("INSERT INTO orders (id, buyer_id) VALUES (2, 2)")
        .await
        .unwrap();
    src.query_drop("XA COMMIT 'reshard-xa'").await.unwrap();
    let mut run = spawn_run(&s, &["--from", &format!("{file}:{pos}")]);
    converge_and_stop(&s, &mut run, Duration::from_secs(60)).await;
}

/// A secondary UNIQUE key on a target makes `ON DUPLICATE KEY UPDATE`
/// update another row (the gh-ost data-loss trap): the writer notices that
/// a row did not land on its own key, rolls the batch back and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_unique_collision_stops_instead_of_corrupting() {
    use mysql_async::prelude::Queryable;
    let c = cluster();
    let s = Scenario::create(c, "uniq").unwrap();
    for shard in 0..4 {
        c.targets[shard % 2]
            .sql(&format!(
                "ALTER TABLE uniq_s{shard}.orders ADD UNIQUE KEY by_buyer (buyer_id)"
            ))
            .unwrap();
    }
    migrate(&s);
    let (file, pos) = s.source_head().await.unwrap();
    let mut src = s.source().await.unwrap();
    src.query_drop("INSERT INTO orders (id, buyer_id, note) VALUES (1, 5, 'first')")
        .await
        .unwrap();
    src.query_drop("INSERT INTO orders (id, buyer_id, note) VALUES (2, 5, 'second')")
        .await
        .unwrap();
    let out = reshard(&s, &["run", "--from", &format!("{file}:{pos}")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("secondary UNIQUE key"), "{err}");
    let mut rows: Vec<(u64, String)> = Vec::new();
    for url in s.shard_urls.values() {
        let mut t = reshard_testkit::scenario::connect(url).await.unwrap();
        rows.extend(
            t.query::<(u64, String), _>("SELECT id, note FROM orders")
                .await
                .unwrap(),
        );
    }
    // lanes may apply either row first; whichever landed must be intact
    for (id, note) in &rows {
        let want = if *id == 1 { "first" } else { "second" };
        assert_eq!(note, want, "a row was overwritten by the other: {rows:?}");
    }
    assert_eq!(
        rows.len(),
        1,
        "only the first row to land is there: {rows:?}"
    );
}

/// Rows wider than a statement may carry: the target allows 1 MiB packets
/// and one transaction inserts 300 rows of 60 KB (18 MB, one batch). The
/// writer splits the batch into statements within half the target's
/// `max_allowed_packet` (one statement of 300 rows used to be refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_rows_are_split_to_fit_max_allowed_packet() {
    use mysql_async::prelude::Queryable;
    use reshard_testkit::{Cluster, MariaDb, ServerOptions};
    let small = ServerOptions {
        extra_args: vec!["--max-allowed-packet=1M".into()],
        ..ServerOptions::plain(2)
    };
    let cluster = Cluster {
        source: MariaDb::start(ServerOptions::source(1)).unwrap(),
        targets: vec![MariaDb::start(small).unwrap()],
    };
    let s = Scenario::create(&cluster, "packet").unwrap();
    migrate(&s);
    let (file, pos) = s.source_head().await.unwrap();
    let mut run = spawn_run(&s, &["--from", &format!("{file}:{pos}")]);
    let mut c = s.source().await.unwrap();
    c.query_drop(
        "INSERT INTO orders (id, buyer_id, data) SELECT seq, seq % 7, REPEAT('x', 60000) FROM seq_1_to_300",
    )
    .await
    .unwrap();
    converge_and_stop(&s, &mut run, Duration::from_secs(120)).await;
}

/// Waits (at most `timeout`) until the checkpoint reaches the source head,
/// stops `run`, and asserts the targets equal the routed source and the
/// run exited cleanly.
async fn converge_and_stop(s: &Scenario, run: &mut std::process::Child, timeout: Duration) {
    s.wait_caught_up(timeout)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(s)));
    let diffs = s.compare(20).await.unwrap();
    let st = terminate(run, Duration::from_secs(30));
    assert!(diffs.is_empty(), "{}\n{}", diffs.join("\n"), run_log(s));
    assert!(st.success(), "{}", run_log(s));
}

/// Connections of our own (`db::wire`: the copy's readers, the lanes' plain
/// upserts) read and write every column type
/// — NULLs, extremes, negative TIMEs, zero dates, every character set —
/// exactly as the driver does, page by page along the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_connections_read_and_write_every_column_type_as_the_driver_does() {
    use mysql_async::prelude::Queryable;
    use reshard::config::Endpoint;
    use reshard::db::wire::{WireConn, WireError};
    use reshard::db::{self, Session};
    use reshard::source::rows::TableReader;
    use reshard::source::schema::load_table;

    let s = Scenario::create(cluster(), "wire").unwrap();
    let mut c = s.source().await.unwrap();
    c.query_drop(
        "CREATE TABLE every (id INT NOT NULL PRIMARY KEY, \
         ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED, mi MEDIUMINT, mu MEDIUMINT UNSIGNED, \
         i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, f FLOAT, d DOUBLE, de DECIMAL(40,12), \
         dt DATE, dtm DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME(2), y YEAR, \
         c CHAR(5) CHARACTER SET latin1, vc VARCHAR(40) CHARACTER SET utf8mb4, bn BINARY(4), vb VARBINARY(10), \
         bl BLOB, tx TEXT CHARACTER SET utf8mb4, e ENUM('a','b','c'), st SET('x','y','z'), bt BIT(10), j JSON)",
    )
    .await
    .unwrap();
    c.query_drop("SET SESSION sql_mode = ''").await.unwrap();
    c.query_drop(
        "INSERT INTO every VALUES \
         (-1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, \
          -3.4e38, -1.7976931348623157e308, -1234567890123456789012345678.123456789012, \
          '0000-00-00', '0000-00-00 00:00:00', '1970-01-01 00:00:01.000', '-838:59:59.00', 1901, \
          'ab', '\u{f1}\u{1f600}', x'00000000', x'', x'00ff', '', 'a', '', b'0', '[]'), \
         (-2, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 9223372036854775807, 0, \
          1.5e-38, 2.2250738585072014e-308, 0.000000000001, \
          '9999-12-31', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999', '-00:00:01.50', 2155, \
          'zz   ', 'x', x'ff00ff00', x'ffffffffffffffffffff', REPEAT('b', 70000), REPEAT('\u{e9}', 1000), 'c', 'x,y,z', b'1111111111', '{\"a\": [1, 2.5, null, \"\u{f1}\"]}'), \
         (-3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    .await
    .unwrap();
    c.query_drop(
        "INSERT INTO every SELECT seq, seq % 100, seq % 200, seq, seq, seq, seq, seq * 1000, seq, seq * 1000000007, seq, \
         seq / 7, seq / 3, seq / 9, DATE('2020-01-01') + INTERVAL seq DAY, TIMESTAMP'2020-01-01 00:00:00' + INTERVAL seq * 1001 MICROSECOND, \
         TIMESTAMP'2021-01-01 00:00:00' + INTERVAL seq SECOND, SEC_TO_TIME(CAST(seq AS SIGNED) - 1000) + INTERVAL 0.25 SECOND, 2000 + seq % 100, \
         CONCAT('r', seq % 1000), CONCAT('\u{f1}', seq), UNHEX(LPAD(HEX(seq), 8, '0')), UNHEX(HEX(seq)), REPEAT(CHAR(seq % 256), seq % 50), \
         REPEAT('\u{f1}', seq % 30), ELT(1 + seq % 3, 'a', 'b', 'c'), ELT(1 + seq % 3, 'x', 'y,z', ''), seq % 1024, \
         JSON_OBJECT('n', seq, 's', CONCAT('v', seq)) FROM seq_1_to_2500",
    )
    .await
    .unwrap();

    let ep = Endpoint::new("source", s.source_url.clone());
    let budget = Duration::from_secs(10);
    let mut driver = db::connect(&ep, Session::Write, budget).await.unwrap();
    let mut wire = match WireConn::connect(&ep, Session::Write, budget).await {
        Ok(w) => w,
        Err(e) => panic!("the test server needs nothing only the driver speaks: {e}"),
    };
    let schema = load_table(&mut driver, &s.source_db, "every")
        .await
        .unwrap();
    let reader = TableReader::open(&mut driver, "source", std::sync::Arc::new(schema), vec![0])
        .await
        .unwrap();
    let (mut cursor, mut rows) = (None::<Vec<mysql_async::Value>>, 0);
    loop {
        let by_driver = reader
            .page(&mut driver, cursor.as_deref(), None, 700)
            .await
            .unwrap();
        let by_wire = reader
            .page_wire(&mut wire, cursor.as_deref(), None, 700)
            .await
            .unwrap();
        assert_eq!(by_wire.len(), by_driver.len());
        for (w, d) in by_wire.iter().zip(&by_driver) {
            assert_eq!(w, d, "the row with key {:?}", d.first());
        }
        rows += by_wire.len();
        match by_wire.last() {
            Some(last) if by_wire.len() == 700 => cursor = Some(reader.key_of(last)),
            _ => break,
        }
    }
    assert_eq!(rows, 2503);

    // written back with parameters bound by reference (the lanes' plain
    // upserts), every value lands as the driver's binding lands it
    c.query_drop("CREATE TABLE every_w LIKE every; CREATE TABLE every_d LIKE every")
        .await
        .unwrap();
    let all = reader.page_wire(&mut wire, None, None, 5000).await.unwrap();
    let marks = vec!["?"; all[0].len()].join(", ");
    for chunk in all.chunks(100) {
        let rows = vec![format!("({marks})"); chunk.len()].join(", ");
        let params = wire.bind();
        chunk.iter().flatten().for_each(|v| params.value(v));
        let into = |t: &str| format!("INSERT INTO `{}`.{t} VALUES {rows}", s.source_db);
        wire.exec_bound(&into("every_w")).await.unwrap();
        let flat: Vec<mysql_async::Value> = chunk.iter().flatten().cloned().collect();
        driver.exec_drop(into("every_d"), flat).await.unwrap();
    }
    let dump = |t: &str| format!("SELECT * FROM `{}`.{t} ORDER BY id", s.source_db);
    let w: Vec<mysql_async::Row> = driver.query(dump("every_w")).await.unwrap();
    let d: Vec<mysql_async::Row> = driver.query(dump("every_d")).await.unwrap();
    let e: Vec<mysql_async::Row> = driver.query(dump("every")).await.unwrap();
    assert_eq!(w.len(), 2503);
    for ((w, d), e) in w.into_iter().zip(d).zip(e) {
        let (w, d, e) = (w.unwrap(), d.unwrap(), e.unwrap());
        assert_eq!(w, d);
        assert_eq!(w, e);
    }

    // a server error keeps its code (and so its retry class)
    let missing = wire.rows("SELECT * FROM no_such_table", &[]).await;
    assert!(
        matches!(missing, Err(WireError::Server { code: 1146, .. })),
        "{missing:?}"
    );
    // and the connection goes on after it
    let after = reader.page_wire(&mut wire, None, None, 3).await.unwrap();
    assert_eq!(after.len(), 3);
    // more statements than stay prepared: the oldest are closed, and the
    // connection stays in step
    for n in 1..=40u32 {
        let sql = format!("SELECT id FROM every WHERE id > ? ORDER BY id LIMIT {n}");
        let got = wire
            .rows(&sql, &[mysql_async::Value::Int(100)])
            .await
            .unwrap();
        let want: Vec<Vec<mysql_async::Value>> = (101..=100 + i64::from(n))
            .map(|i| vec![mysql_async::Value::Int(i)])
            .collect();
        assert_eq!(got, want);
    }
    wire.close().await;
}

/// What a lane's kept statement handles rely on (`writer::prepared`): a
/// handle the driver closed fails with "unknown prepared statement
/// handler" and changes nothing, and the server never gives its number to
/// another statement of the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_statement_handle_fails_cleanly_and_its_number_is_never_reused() {
    use mysql_async::prelude::Queryable;
    use reshard::writer::prepared::is_unknown_handle;

    let s = Scenario::create(cluster(), "handles").unwrap();
    let mut c = s.source().await.unwrap();
    c.query_drop("CREATE TABLE h (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let insert = c.prep("INSERT INTO h VALUES (?)").await.unwrap();
    c.exec_drop(&insert, (1,)).await.unwrap();
    c.close(insert.clone()).await.unwrap();
    let mut later = Vec::new();
    for n in 0..20 {
        later.push(
            c.prep(format!("SELECT id + {n} FROM h"))
                .await
                .unwrap()
                .id(),
        );
    }
    assert!(
        later.iter().all(|&id| id > insert.id()),
        "{later:?} after {}",
        insert.id()
    );
    let e = c.exec_drop(&insert, (2,)).await.unwrap_err();
    assert!(is_unknown_handle(&e), "{e}");
    let ids: Vec<i32> = c.query("SELECT id FROM h").await.unwrap();
    assert_eq!(ids, vec![1]);
}

/// On MariaDB a lane sends a batch's upserts as arrays of one statement
/// (`COM_STMT_BULK_EXECUTE`), which declares one type per column. A
/// derived column whose expression gives an integer for some rows and a
/// string for others cannot be sent so: those batches take the multi-row
/// statement. Pinned with such a column, in the copy and in the stream:
/// every row must hold the value its expression gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_derived_column_of_mixed_types_is_written_row_by_row_right() {
    use mysql_async::prelude::Queryable;
    let s = Scenario::create(cluster(), "mixedtypes").unwrap();
    let rule = s.dir.path().join("rules/orders.toml");
    let text = std::fs::read_to_string(&rule).unwrap();
    let mixed = "shard_no = \"if(id % 2 = 0, id % 1000, concat('', id % 1000 + 1000))\"";
    std::fs::write(
        &rule,
        text.replace("shard_no = \"crc32(buyer_id) % 4\"", mixed),
    )
    .unwrap();
    assert!(std::fs::read_to_string(&rule).unwrap().contains(mixed));
    let insert = |lo: u64| {
        format!(
            "INSERT INTO orders (id, buyer_id) SELECT seq, seq % 97 FROM seq_{lo}_to_{}",
            lo + 1999
        )
    };
    on_source(&s, &[&insert(1)]).await;
    migrate(&s);
    let mut run = spawn_run(&s, &[]);
    on_source(
        &s,
        &[&insert(2001), "UPDATE orders SET qty = 7 WHERE id % 3 = 0"],
    )
    .await;
    s.wait_caught_up(Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    let st = terminate(&mut run, Duration::from_secs(30));
    assert!(st.success(), "{}", run_log(&s));
    let (mut rows, mut wrong) = (0u64, Vec::new());
    for url in s.shard_urls.values() {
        let mut c = reshard_testkit::scenario::connect(url).await.unwrap();
        let n: Option<u64> = c.query_first("SELECT COUNT(*) FROM orders").await.unwrap();
        rows += n.unwrap_or(0);
        wrong.extend(
            c.query::<(u64, Option<i64>, Option<i32>), _>(
                "SELECT id, shard_no, qty FROM orders \
                 WHERE NOT shard_no <=> IF(id % 2 = 0, id % 1000, id % 1000 + 1000) \
                 OR NOT qty <=> IF(id % 3 = 0, 7, NULL) LIMIT 5",
            )
            .await
            .unwrap(),
        );
    }
    assert_eq!(rows, 4000, "{}", run_log(&s));
    assert!(
        wrong.is_empty(),
        "rows written wrong: {wrong:?}\n{}",
        run_log(&s)
    );
}

/// Batches of plain upserts run without a transaction, and record the
/// lane's applied position afterwards, as a statement of its own, in every
/// shard they wrote (`docs/architecture.md`, "Batches without a
/// transaction"). Pinned after that position moved out of the batch's
/// transaction: an insert-only stream must still leave `_reshard_applied`
/// at its last transaction in every shard, and never past the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_only_batches_record_the_applied_position_after_their_upserts() {
    applied_position_recorded("appliedrec", "wire").await;
}

/// The same through the driver's connection alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_only_batches_record_the_applied_position_on_the_driver_too() {
    applied_position_recorded("appliedrecd", "driver").await;
}

async fn applied_position_recorded(name: &str, protocol: &str) {
    use mysql_async::prelude::Queryable;
    let s = Scenario::create(cluster(), name).unwrap();
    // a lane lingers long past the 100 ms tick, so the mark of the last
    // transaction arrives while its rows still wait in the lane's batch
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, cfg.replace("linger_ms = 10", "linger_ms = 3000")).unwrap();
    s.configure(&format!("batch_size = 10000\nprotocol = \"{protocol}\""))
        .unwrap();
    migrate(&s);
    let (file, pos) = s.source_head().await.unwrap();
    let mut run = spawn_run(&s, &["--from", &format!("{file}:{pos}")]);
    let insert = |lo: u64| {
        format!(
            "INSERT INTO orders (id, buyer_id) SELECT seq, seq % 97 FROM seq_{lo}_to_{}",
            lo + 399
        )
    };
    on_source(&s, &[&insert(1), &insert(401)]).await;
    let before_last = s.source_head().await.unwrap();
    on_source(&s, &[&insert(801)]).await;
    s.wait_caught_up(Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    let st = terminate(&mut run, Duration::from_secs(30));
    // the source is shared: other tests' transactions follow ours
    let head = s.source_head().await.unwrap();
    assert!(st.success(), "{}", run_log(&s));
    assert!(s.compare(20).await.unwrap().is_empty(), "{}", run_log(&s));
    let order = |p: &(String, u64)| (p.0.clone(), p.1);
    for (shard, url) in &s.shard_urls {
        let mut c = reshard_testkit::scenario::connect(url).await.unwrap();
        let rows: Vec<(String, u64)> = c
            .exec(
                "SELECT binlog_file, binlog_pos FROM _reshard_applied WHERE pipeline = ? AND shard = ?",
                (name, shard),
            )
            .await
            .unwrap();
        let newest = rows.iter().map(order).max();
        assert!(
            newest.as_ref().is_some_and(|n| *n > order(&before_last) && *n <= order(&head)),
            "shard {shard}: the lanes' applied positions {rows:?} should reach the last insert (after {before_last:?}, at most the head {head:?})\n{}",
            run_log(&s)
        );
    }
}
