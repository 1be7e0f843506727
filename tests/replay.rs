//! `replay`, the floor, tombstone pruning and `status`, against real
//! servers through the real binary.

mod common;

use std::time::Duration;

use common::load::{self, checkpoint_of};
use common::*;
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::{connect, Scenario, Workload, WorkloadOptions};

async fn first_position(s: &Scenario) -> String {
    let mut c = s.source().await.unwrap();
    let files: Vec<mysql_async::Row> = c.query("SHOW BINARY LOGS").await.unwrap();
    let first: String = files[0].get(0).unwrap();
    format!("{first}:4")
}

/// Acceptance: `replay --from` the first binlog position after convergence
/// leaves every target row unchanged, for a pipeline that started with a
/// snapshot (changes before it are below the floor and skipped) and for one
/// that started with `run --from` the first position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_the_first_position_changes_nothing() {
    for (name, snapshot) in [("rpsnap", true), ("rpfrom", false)] {
        let s = Scenario::create(cluster(), name).unwrap();
        migrate(&s);
        let first = first_position(&s).await;
        let mut conn = s.source().await.unwrap();
        let mut w = Workload::new(5);
        let mut run = if snapshot {
            // history before the snapshot: inserts, updates, deletes
            w.run(
                &mut conn,
                &WorkloadOptions {
                    operations: 600,
                    seed: 5,
                    rotate_every: 300,
                },
            )
            .await
            .unwrap();
            spawn_run(&s, &[])
        } else {
            spawn_run(&s, &["--from", &first])
        };
        w.run(
            &mut conn,
            &WorkloadOptions {
                operations: 600,
                seed: 5,
                rotate_every: 300,
            },
        )
        .await
        .unwrap();
        s.wait_caught_up(Duration::from_secs(90))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
        assert!(terminate(&mut run, Duration::from_secs(30)).success());
        assert!(s.compare(10).await.unwrap().is_empty(), "{}", run_log(&s));
        let before = s.target_fingerprint().await.unwrap();
        let cp_before = s.checkpoint().await.unwrap();
        let (hf, hp) = s.source_head().await.unwrap();
        let out = reshard(
            &s,
            &["replay", "--from", &first, "--to", &format!("{hf}:{hp}")],
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        assert_eq!(
            s.target_fingerprint().await.unwrap(),
            before,
            "{name}: replay changed a target\n{stderr}"
        );
        let seq = |c: &Option<(String, u64)>| {
            c.as_ref().map(|(f, p)| {
                (
                    f.rsplit('.')
                        .next()
                        .unwrap_or("")
                        .parse::<u64>()
                        .unwrap_or(0),
                    *p,
                )
            })
        };
        let cp_after = s.checkpoint().await.unwrap();
        assert!(
            seq(&cp_after) >= seq(&cp_before),
            "{name}: the checkpoint moved backwards: {cp_before:?} -> {cp_after:?}"
        );
        if snapshot {
            let skipped: u64 = stdout
                .split_whitespace()
                .find_map(|w| w.parse().ok())
                .unwrap_or(0);
            assert!(
                skipped > 0,
                "changes before the snapshot are below the floor: {stdout}"
            );
            // --below-floor applies them; deleted rows may come back until
            // the replay passes their deletes, and it converges again
            let out = reshard(
                &s,
                &[
                    "replay",
                    "--from",
                    &first,
                    "--to",
                    &format!("{hf}:{hp}"),
                    "--below-floor",
                ],
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{err}");
            assert!(err.contains("--below-floor"), "warns: {err}");
            assert!(s.compare(10).await.unwrap().is_empty());
        }
    }
}

/// `status` shows checkpoint, head, lag and the initial copy; tombstones
/// older than the retention are pruned and the floor rises first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_tombstone_pruning() {
    let s = Scenario::create(cluster(), "prune").unwrap();
    s.configure("tombstone_retention_secs = 1\nprune_interval_secs = 1")
        .unwrap();
    migrate(&s);
    let mut run = spawn_run(&s, &[]);
    for _ in 0..100 {
        if s.checkpoint().await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = status_json(&s);
    let floor0 = st["floor"].as_str().unwrap_or("").to_string();
    assert!(!floor0.is_empty(), "the snapshot sets the floor: {st:#}");
    let mut conn = s.source().await.unwrap();
    let mut w = Workload::new(8);
    w.run(
        &mut conn,
        &WorkloadOptions {
            operations: 800,
            seed: 8,
            rotate_every: 0,
        },
    )
    .await
    .unwrap();
    s.wait_caught_up(Duration::from_secs(60)).await.unwrap();
    let tombstones = |url: String| async move {
        let mut c = connect(&url).await.unwrap();
        let n: Option<u64> = c
            .query_first("SELECT COUNT(*) FROM _reshard_tombstone")
            .await
            .unwrap();
        n.unwrap_or(0)
    };
    let mut before = 0;
    for url in s.shard_urls.values() {
        before += tombstones(url.clone()).await;
    }
    assert!(before > 0, "deletes leave tombstones");
    // nudge the source so newer positions get logged, then let pruning run
    let mut after = before;
    for _ in 0..40 {
        conn.query_drop("INSERT INTO unmapped (id) VALUES (FLOOR(RAND() * 1e9))")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = 0;
        for url in s.shard_urls.values() {
            after += tombstones(url.clone()).await;
        }
        if after == 0 {
            break;
        }
    }
    assert!(
        after < before,
        "tombstones older than the retention are pruned: {before} -> {after}\n{}",
        run_log(&s)
    );
    let st = status_json(&s);
    assert!(
        st["floor"].as_str().unwrap() > floor0.as_str()
            || st["floor"].as_str().unwrap().len() > floor0.len(),
        "the floor rose: {floor0} -> {st:#}"
    );
    // The source server is shared with the other test of this binary, whose
    // writes move the head between any two reads: poll until `status` itself
    // sees the checkpoint at the head, rather than assume one read suffices.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let st = loop {
        s.wait_caught_up(Duration::from_secs(30)).await.unwrap();
        let st = status_json(&s);
        if st["lag_bytes"] == 0 || std::time::Instant::now() > deadline {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(st["snapshot"]["state"], "done");
    assert_eq!(st["lag_bytes"], 0, "{st:#}");
    assert!(st["source_head"].as_str().unwrap().contains("mysql-bin."));
    terminate(&mut run, Duration::from_secs(30));
    assert!(s.compare(10).await.unwrap().is_empty());
}

/// Runs `run` until it streams and the checkpoint of the rows `key`
/// reaches the source's head as it is now, and stops it.
async fn run_to_head(s: &Scenario, key: &str) {
    let streams = || run_log(s).matches(" streaming ").count();
    let before = streams();
    let mut run = spawn_run(s, &[]);
    let now = load::head(s).await;
    wait_until(s, "run to catch up", Duration::from_secs(120), || async {
        streams() > before && checkpoint_of(s, key).await.is_some_and(|c| c >= now)
    })
    .await;
    let st = terminate(&mut run, Duration::from_secs(30));
    assert!(st.success(), "{}", run_log(s));
}

/// How the replay of [`replay_past_an_unapplied_gap`] names its start.
#[derive(PartialEq)]
enum Start {
    /// `--from FILE:POS`.
    Position,
    /// `--from FILE:POS`, applying shards s0 and s1 as a shard subset
    /// without a checkpoint row yet (the pipeline's C vouches for its
    /// shards); a subset of s2 and s3 catches up its shards afterwards.
    Subset,
    /// `--from-gtid` the source's GTID state at X.
    Gtid,
}

/// `run` to a checkpoint C and stop; the source commits T1; X = the
/// source's head; it commits T2; `replay` from X to the head, then `run`
/// until caught up: T1, between C and X, must be on the targets.
async fn replay_past_an_unapplied_gap(name: &str, start: Start) {
    let s = Scenario::create(cluster(), name).unwrap();
    migrate(&s);
    let mut conn = s.source().await.unwrap();
    let mut w = Workload::new(21);
    let ops = |operations, seed| WorkloadOptions {
        operations,
        seed,
        rotate_every: 0,
    };
    w.run(&mut conn, &ops(200, 21)).await.unwrap();
    run_until_caught_up(&s, &[]).await;
    let c = s.checkpoint().await.unwrap().expect("a checkpoint");
    // T1: never applied by anyone
    w.run(&mut conn, &ops(300, 22)).await.unwrap();
    let (xf, xp) = s.source_head().await.unwrap();
    let gtid_x: Option<String> = conn.query_first("SELECT @@gtid_binlog_pos").await.unwrap();
    // T2
    w.run(&mut conn, &ops(300, 23)).await.unwrap();
    let (hf, hp) = s.source_head().await.unwrap();
    let to = format!("{hf}:{hp}");
    // [pipeline] is the config's last section
    let base = std::fs::read_to_string(&s.config).unwrap();
    let shards =
        |list: &str| std::fs::write(&s.config, format!("{base}shards = {list}\n")).unwrap();
    let key = if start == Start::Subset {
        shards(r#"["s0", "s1"]"#);
        format!("{name}/s0,s1")
    } else {
        name.to_string()
    };
    let from = match start {
        Start::Gtid => ["--from-gtid".to_string(), gtid_x.expect("a GTID state")],
        _ => ["--from".to_string(), format!("{xf}:{xp}")],
    };
    let out = reshard(&s, &["replay", &from[0], &from[1], "--to", &to]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let after_replay = checkpoint_of(&s, &key).await;
    if start == Start::Gtid {
        // from the GTID state at C the replay covers T1: the checkpoint moves
        let at_c: Option<String> = conn
            .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&c.0, c.1))
            .await
            .unwrap();
        let at_c = at_c.expect("the GTID state at the checkpoint");
        let out = reshard(&s, &["replay", "--from-gtid", &at_c, "--to", &to]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        let moved = checkpoint_of(&s, &key).await;
        assert_eq!(moved, Some(load::ordered(&(hf.clone(), hp))), "{err}");
    }
    // `run` applies from C: T1, and T2 again (harmless: versions)
    run_to_head(&s, &key).await;
    if start == Start::Subset {
        shards(r#"["s2", "s3"]"#);
        run_to_head(&s, &format!("{name}/s2,s3")).await;
        std::fs::write(&s.config, &base).unwrap();
    }
    let diffs = s.compare(10).await.unwrap();
    assert!(
        diffs.is_empty(),
        "T1 is missing on the targets:\n{}\n{stderr}\n{}",
        diffs.join("\n"),
        run_log(&s)
    );
    load::assert_verified(&s, &run_log(&s));
    // the subset's row is made by its `run`, where the pipeline's row left
    // its shards
    let expected = (start != Start::Subset).then(|| load::ordered(&c));
    assert_eq!(
        after_replay, expected,
        "the replay moved the checkpoint across T1, which it never applied\n{stderr}"
    );
    assert!(
        stderr.contains("checkpoint stays") || stderr.contains("saves none"),
        "the replay says why it leaves the checkpoint: {stderr}"
    );
}

/// A finding of the model checker
/// (`finding_replay_from_beyond_the_checkpoint_skips_transactions` in
/// tests/simulation.rs, before the fix): `replay --from X` with X past
/// the checkpoint C saved checkpoints past X, so the transactions between
/// C and X, which nobody applied, were skipped by every later `run`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_beyond_the_checkpoint_leaves_it_and_run_applies_the_gap() {
    replay_past_an_unapplied_gap("rpgap", Start::Position).await;
}

/// The same for a shard subset without a checkpoint row whose shards
/// another row covers: the replay created the subset's row at X, and its
/// `run` resumed there instead of where the pipeline's row left the
/// shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_new_subset_leaves_its_shards_where_the_pipeline_stopped() {
    replay_past_an_unapplied_gap("rpgapsub", Start::Subset).await;
}

/// The same with `--from-gtid`: a GTID set the state at the checkpoint
/// does not include starts past it; one it includes moves the checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_gtids_past_the_checkpoint_leaves_it() {
    replay_past_an_unapplied_gap("rpgapgtid", Start::Gtid).await;
}
