//! Long-running behaviour against real servers, through the real binary:
//! progress under a backlog (checkpoints and progress lines while the
//! source always has a transaction ready), shutdown during a bulk
//! catch-up, and tombstone pruning around replays and epoch raises.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::{connect, Scenario};
use reshard_testkit::Cluster;

/// Rows per multi-row statement (one source transaction each).
const CHUNK: u64 = 1000;

/// Queues `2 * rows` row changes on the source: `rows` inserts into
/// `orders` (ids `1..=rows`), then an update of every row, each statement
/// one transaction of [`CHUNK`] rows.
async fn queue_backlog(s: &Scenario, rows: u64) {
    let mut c = s.source().await.unwrap();
    for lo in (1..=rows).step_by(CHUNK as usize) {
        let hi = (lo + CHUNK - 1).min(rows);
        c.query_drop(format!(
            "INSERT INTO orders (id, buyer_id, note, amount, qty) \
             SELECT seq, CAST(seq % 997 AS SIGNED) - 400, CONCAT('backlog ', seq), seq / 7, 0 FROM seq_{lo}_to_{hi}"
        ))
        .await
        .unwrap();
    }
    for lo in (1..=rows).step_by(CHUNK as usize) {
        let hi = (lo + CHUNK - 1).min(rows);
        c.query_drop(format!(
            "UPDATE orders SET qty = 1 WHERE id BETWEEN {lo} AND {hi}"
        ))
        .await
        .unwrap();
    }
}

/// `SELECT SUM(...)` of `expr` over `orders` on every shard.
async fn targets_sum(s: &Scenario, expr: &str) -> u64 {
    targets_sum_except(s, expr, "").await
}

/// `SELECT SUM(...)` of `expr` over `orders` on every shard but `except`.
async fn targets_sum_except(s: &Scenario, expr: &str, except: &str) -> u64 {
    let mut n = 0;
    for (shard, url) in &s.shard_urls {
        if shard == except {
            continue;
        }
        let mut c = connect(url).await.unwrap();
        let v: Option<Option<u64>> = c
            .query_first(format!("SELECT CAST(SUM({expr}) AS UNSIGNED) FROM orders"))
            .await
            .unwrap();
        n += v.flatten().unwrap_or(0);
    }
    n
}

/// Polls until `SUM(expr)` over the targets reaches `n`.
async fn wait_applied(s: &Scenario, expr: &str, n: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = targets_sum(s, expr).await;
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {got} of {n} applied after {timeout:?}\n{}",
            run_log(s)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `(file sequence, offset)` of a `FILE:POS` pair, comparable along the
/// binlog.
fn seq_pos(p: &(String, u64)) -> (u64, u64) {
    let seq = p.0.rsplit('.').next().and_then(|s| s.parse().ok());
    (seq.unwrap_or(0), p.1)
}

/// Lines of the run log containing `what`.
fn log_lines(s: &Scenario, what: &str) -> usize {
    run_log(s).lines().filter(|l| l.contains(what)).count()
}

/// Restarts `run` from the checkpoint and checks that everything
/// converges: targets equal the source and `verify` exits 0.
async fn restart_converges(s: &Scenario) {
    let mut run = spawn_run(s, &[]);
    s.wait_caught_up(Duration::from_secs(240))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(s)));
    let st = terminate(&mut run, Duration::from_secs(60));
    assert!(st.success(), "{}", run_log(s));
    let diffs = s.compare(10).await.unwrap();
    assert!(diffs.is_empty(), "{}\n{}", diffs.join("\n"), run_log(s));
    let out = reshard(s, &["verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 9, progress under backlog: 300,000 row changes queued while
/// reshard is stopped, then `run --from` before them. The source channel
/// always has a transaction ready, and still the checkpoint advances and
/// the progress line comes at its interval; a kill -9 half-way loses only
/// what followed the last checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_and_progress_advance_during_a_backlog() {
    let s = Scenario::create(cluster(), "backlog").unwrap();
    // applying slower than reading: the source channel is never empty.
    // The cap keeps the inserts applying for 5 s however fast the lanes
    // are (without it they took 2 s once the lanes sped up: no progress
    // interval had passed before the kill)
    s.configure("lanes_per_shard = 1\nbatch_size = 50\n[throttle]\nmax_rows_per_sec = 30000")
        .unwrap();
    migrate(&s);
    let start = s.source_head().await.unwrap();
    const ROWS: u64 = 150_000;
    queue_backlog(&s, ROWS).await;
    let head = s.source_head().await.unwrap();
    let began = Instant::now();
    let mut run = spawn_run(&s, &["--from", &format!("{}:{}", start.0, start.1)]);
    // half of the 300,000 changes: every insert
    wait_applied(&s, "1", ROWS, Duration::from_secs(300)).await;
    let elapsed = began.elapsed();
    crash(&mut run);
    let updated = targets_sum(&s, "qty").await;
    let cp = s.checkpoint().await.unwrap().expect("a checkpoint");
    let log = run_log(&s);
    assert!(
        updated < ROWS,
        "the whole backlog was applied before the kill; the test proves nothing"
    );
    // well past the start: at least a quarter of the way to the head
    let (a, b, c) = (seq_pos(&start), seq_pos(&head), seq_pos(&cp));
    let quarter = if a.0 == b.0 {
        (a.0, a.1 + (b.1 - a.1) / 4)
    } else {
        (a.0 + 1, 0)
    };
    assert!(
        c >= quarter,
        "after {elapsed:?} with half the backlog applied the checkpoint is {cp:?} (start {start:?}, head {head:?})\n{log}"
    );
    // progress_interval_secs = 2 in the scenario's config
    let progress = log_lines(&s, " progress ");
    eprintln!("killed after {elapsed:?}: checkpoint {cp:?} of {start:?}..{head:?}, {progress} progress line(s)");
    let expected = (elapsed.as_secs() / 2).saturating_sub(2).max(1) as usize;
    assert!(
        progress >= expected,
        "{progress} progress line(s) in {elapsed:?}, expected at least {expected}\n{log}"
    );
    restart_converges(&s).await;
}

/// Sets the source's global `net_write_timeout` for the sessions opened
/// while it lives, and restores the default when dropped.
struct NetWriteTimeout<'a>(&'a Cluster);

impl<'a> NetWriteTimeout<'a> {
    fn set(cluster: &'a Cluster, secs: u32) -> NetWriteTimeout<'a> {
        cluster
            .source
            .sql(&format!("SET GLOBAL net_write_timeout = {secs}"))
            .unwrap();
        NetWriteTimeout(cluster)
    }
}

impl Drop for NetWriteTimeout<'_> {
    fn drop(&mut self) {
        let _ = self.0.source.sql("SET GLOBAL net_write_timeout = 60");
    }
}

/// Polls the run log until it contains one of `what`, at most `timeout`;
/// returns the one found.
async fn wait_for_log(s: &Scenario, what: &[&str], timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let log = run_log(s);
        if let Some(w) = what.iter().find(|w| log.contains(*w)) {
            return Some(w.to_string());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Issue 9: a shard stalled for much longer than the source's
/// `net_write_timeout` (5 s here) while a backlog waits. The coordinator
/// cannot take more from the source, so the reader stops reading. The
/// stream session asks the source for more patience, and after 30 s of
/// waiting the reader pauses the stream and resumes it later where a
/// checkpoint would: here at an XA transaction prepared before the backlog
/// and committed after the stall, whose rows the new stream must read
/// again. The attempt never fails, and the XA rows arrive.
///
/// Its servers are its own: the source-wide `net_write_timeout` and the XA
/// transaction pending across the other tests' `--from` positions would
/// otherwise reach them (another test's run met the XA COMMIT without its
/// PREPARE and rightly stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_shard_does_not_cost_the_binlog_stream() {
    let own = Cluster::start(2).unwrap();
    let s = Scenario::create(&own, "stall").unwrap();
    s.configure("lanes_per_shard = 1\nbatch_size = 50").unwrap();
    migrate(&s);
    let start = s.source_head().await.unwrap();
    let mut xa = s.source().await.unwrap();
    for q in [
        "XA START 'stall_xa'",
        "INSERT INTO items (order_id, line, sku) VALUES (990001, 1, 'prepared before the stall')",
        "XA END 'stall_xa'",
        "XA PREPARE 'stall_xa'",
    ] {
        xa.query_drop(q).await.unwrap();
    }
    queue_backlog(&s, 100_000).await;
    let timeout = NetWriteTimeout::set(&own, 5);
    // shard s0 stalls: its lane waits for the table lock
    let mut lock = connect(&s.shard_urls["s0"]).await.unwrap();
    lock.query_drop("LOCK TABLES orders WRITE").await.unwrap();
    let mut run = spawn_run(&s, &["--from", &format!("{}:{}", start.0, start.1)]);
    let seen = wait_for_log(
        &s,
        &["binlog stream paused", "transient failure"],
        Duration::from_secs(90),
    )
    .await;
    lock.query_drop("UNLOCK TABLES").await.unwrap();
    drop(lock);
    xa.query_drop("XA COMMIT 'stall_xa'").await.unwrap();
    s.wait_caught_up(Duration::from_secs(240))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    drop(timeout);
    let st = terminate(&mut run, Duration::from_secs(60));
    let log = run_log(&s);
    assert!(st.success(), "{log}");
    assert!(
        !log.contains("transient failure"),
        "the attempt failed while the shard was stalled\n{log}"
    );
    assert_eq!(
        seen.as_deref(),
        Some("binlog stream paused"),
        "the reader pauses the stream while the shard is stalled\n{log}"
    );
    assert!(log.contains("binlog stream resumed"), "{log}");
    let diffs = s.compare(10).await.unwrap();
    assert!(diffs.is_empty(), "{}\n{log}", diffs.join("\n"));
}

/// Sets `[pipeline] key = value` in the scenario's config, replacing an
/// earlier setting of the key.
fn set_option(s: &Scenario, key: &str, value: &str) {
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    let kept: Vec<&str> = cfg
        .lines()
        .filter(|l| !l.trim_start().starts_with(&format!("{key} =")))
        .collect();
    std::fs::write(&s.config, format!("{}\n{key} = {value}\n", kept.join("\n"))).unwrap();
}

/// Tombstones on every shard.
async fn tombstones(s: &Scenario) -> u64 {
    let mut n = 0;
    for url in s.shard_urls.values() {
        let mut c = connect(url).await.unwrap();
        let v: Option<u64> = c
            .query_first("SELECT COUNT(*) FROM _reshard_tombstone")
            .await
            .unwrap();
        n += v.unwrap_or(0);
    }
    n
}

/// The newest logged position and the seconds since its commit.
async fn newest_logged(s: &Scenario) -> Option<((String, u64), i64)> {
    let mut c = connect(&s.control_url).await.unwrap();
    let r: Option<(String, u64, i64)> = c
        .exec_first(
            "SELECT binlog_file, binlog_pos, CAST(UNIX_TIMESTAMP() AS SIGNED) - commit_ts FROM reshard_position_log \
             WHERE pipeline = ? ORDER BY commit_ts DESC, binlog_file DESC, binlog_pos DESC LIMIT 1",
            (&s.name,),
        )
        .await
        .unwrap();
    r.map(|(f, p, age)| ((f, p), age))
}

/// Issue 9, pruning during a replay: `replay --from X --to Y` over a long
/// range, where a row inserted inside the range is deleted after `Y` and
/// its delete is older than the retention. Had pruning run during the
/// replay, the delete's tombstone would go while the replay is still
/// applying the range, and the replayed insert would bring the row back
/// (nothing after `Y` deletes it again). A replay never prunes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_never_prunes_so_no_row_comes_back() {
    let s = Scenario::create(cluster(), "rpprune").unwrap();
    // `run` keeps every tombstone (its first pass would be an hour away)
    s.configure("tombstone_retention_secs = 1\nprune_interval_secs = 3600")
        .unwrap();
    migrate(&s);
    let x = s.source_head().await.unwrap();
    let mut run = spawn_run(&s, &["--from", &format!("{}:{}", x.0, x.1)]);
    // a long range: the replay is still busy when a pruning pass would come
    queue_backlog(&s, 60_000).await;
    let mut c = s.source().await.unwrap();
    c.query_drop("INSERT INTO orders (id, buyer_id, note) VALUES (900001, 7, 'deleted after Y')")
        .await
        .unwrap();
    let y = s.source_head().await.unwrap();
    c.query_drop("DELETE FROM orders WHERE id = 900001")
        .await
        .unwrap();
    let deleted = s.source_head().await.unwrap();
    // a logged position after the delete: pruning would take it as the
    // threshold and prune the delete's tombstone
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        c.query_drop("INSERT INTO unmapped (id) VALUES (FLOOR(RAND() * 1e9))")
            .await
            .unwrap();
        if newest_logged(&s)
            .await
            .is_some_and(|(p, _)| seq_pos(&p) >= seq_pos(&deleted))
        {
            break;
        }
        assert!(Instant::now() < deadline, "{}", run_log(&s));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.wait_caught_up(Duration::from_secs(240))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(&s)));
    assert!(terminate(&mut run, Duration::from_secs(60)).success());
    assert!(s.compare(10).await.unwrap().is_empty(), "{}", run_log(&s));
    let before = tombstones(&s).await;
    assert!(before > 0, "the delete left a tombstone");
    let floor = status_json(&s)["floor"].clone();
    // the delete is older than the retention before the replay starts
    let deadline = Instant::now() + Duration::from_secs(30);
    while newest_logged(&s).await.is_none_or(|(_, age)| age < 2) {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    set_option(&s, "prune_interval_secs", "1");
    let out = reshard(
        &s,
        &[
            "replay",
            "--from",
            &format!("{}:{}", x.0, x.1),
            "--to",
            &format!("{}:{}", y.0, y.1),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let diffs = s.compare(10).await.unwrap();
    assert!(
        diffs.is_empty(),
        "the replay brought a deleted row back:\n{}\n{stderr}",
        diffs.join("\n")
    );
    assert_eq!(tombstones(&s).await, before, "{stderr}");
    assert_eq!(status_json(&s)["floor"], floor, "{stderr}");
}

/// Starts `run` (with `extra` arguments), waits until it has applied the
/// source head, and stops it.
async fn run_until_caught_up(s: &Scenario, extra: &[&str]) {
    let mut run = spawn_run(s, extra);
    s.wait_caught_up(Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(s)));
    assert!(
        terminate(&mut run, Duration::from_secs(60)).success(),
        "{}",
        run_log(s)
    );
}

/// Issue 9, pruning after an epoch raise: the position log holds a
/// position of epoch 0 committed two hours ago (older than the retention)
/// and tombstones of epoch 0 from a minute ago (younger). After raising the
/// epoch to 1, the threshold is that position *at epoch 0*: the young
/// tombstones stay and the floor stays in epoch 0. (Built with the new
/// epoch, the threshold would be above every epoch-0 version: every
/// tombstone pruned at once, and the floor in epoch 1.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_raise_prunes_only_tombstones_older_than_the_retention() {
    let s = Scenario::create(cluster(), "epprune").unwrap();
    s.configure("tombstone_retention_secs = 600\nprune_interval_secs = 3600")
        .unwrap();
    migrate(&s);
    let x = s.source_head().await.unwrap();
    let mut c = s.source().await.unwrap();
    // two hours ago (by the binlog's clock): rows 1-20, 1-10 deleted
    c.query_drop("SET TIMESTAMP = UNIX_TIMESTAMP() - 7200")
        .await
        .unwrap();
    c.query_drop("INSERT INTO orders (id, buyer_id) SELECT seq, seq FROM seq_1_to_20")
        .await
        .unwrap();
    c.query_drop("DELETE FROM orders WHERE id <= 10")
        .await
        .unwrap();
    run_until_caught_up(&s, &["--from", &format!("{}:{}", x.0, x.1)]).await;
    let (_, age) = newest_logged(&s).await.expect("a logged position");
    assert!(age > 3600, "the logged position is two hours old: {age}");
    // now: rows 101-120, 101-110 deleted
    c.query_drop("SET TIMESTAMP = DEFAULT").await.unwrap();
    c.query_drop("INSERT INTO orders (id, buyer_id) SELECT seq, seq FROM seq_101_to_120")
        .await
        .unwrap();
    c.query_drop("DELETE FROM orders WHERE id BETWEEN 101 AND 110")
        .await
        .unwrap();
    run_until_caught_up(&s, &[]).await;
    assert_eq!(tombstones(&s).await, 20);
    // raise the epoch and prune every second
    set_option(&s, "epoch", "1");
    set_option(&s, "prune_interval_secs", "1");
    let passes = log_lines(&s, "tombstones pruned");
    let mut run = spawn_run(&s, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while log_lines(&s, "tombstones pruned") < passes + 2 {
        assert!(
            Instant::now() < deadline,
            "no pruning pass\n{}",
            run_log(&s)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = tombstones(&s).await;
    let floor = status_json(&s)["floor"].as_str().unwrap_or("").to_string();
    assert!(terminate(&mut run, Duration::from_secs(60)).success());
    let log = run_log(&s);
    assert!(
        left >= 10,
        "tombstones younger than the retention were pruned: {left} left of 20\n{log}"
    );
    assert!(
        floor.starts_with("0/"),
        "the floor left epoch 0: {floor}\n{log}"
    );
    assert!(s.compare(10).await.unwrap().is_empty(), "{log}");
}

/// Issue 9, shutdown: SIGTERM while a 250,000-row transaction is being
/// applied in a catch-up. The half-queued transaction is abandoned (it is
/// never marked), the lanes drain within `shutdown_timeout_secs`, the
/// checkpoint is saved at the transaction before it, and `run` exits 0;
/// a restart applies the big transaction again, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_catch_up_drains_within_the_timeout() {
    let s = Scenario::create(cluster(), "sigterm").unwrap();
    s.configure("lanes_per_shard = 1\nbatch_size = 50").unwrap();
    set_option(&s, "shutdown_timeout_secs", "3");
    migrate(&s);
    let start = s.source_head().await.unwrap();
    const ROWS: u64 = 250_000;
    let mut c = s.source().await.unwrap();
    for lo in (1..=ROWS).step_by(10_000) {
        let hi = lo + 9_999;
        c.query_drop(format!(
            "INSERT INTO orders (id, buyer_id, qty) SELECT seq, seq % 997, 0 FROM seq_{lo}_to_{hi}"
        ))
        .await
        .unwrap();
    }
    let before_update = s.source_head().await.unwrap();
    c.query_drop("UPDATE orders SET qty = 1").await.unwrap();
    let mut run = spawn_run(&s, &["--from", &format!("{}:{}", start.0, start.1)]);
    // the big transaction is being applied
    wait_applied(&s, "qty", 1, Duration::from_secs(300)).await;
    let asked = Instant::now();
    signal(&run, libc::SIGTERM);
    let st = wait_exit(&mut run, Duration::from_secs(3 + 2));
    let took = asked.elapsed();
    let log = run_log(&s);
    let Some(st) = st else {
        crash(&mut run);
        panic!("no exit {took:?} after SIGTERM (shutdown_timeout_secs = 3)\n{log}");
    };
    assert!(st.success(), "{st:?}\n{log}");
    let cp = s.checkpoint().await.unwrap().expect("a checkpoint");
    assert!(
        seq_pos(&cp) >= seq_pos(&before_update),
        "the checkpoint {cp:?} is before the inserts' end {before_update:?}\n{log}"
    );
    assert!(log.contains("drained"), "{log}");
    restart_converges(&s).await;
}

/// Issue 9, shutdown: a second SIGTERM during a drain that cannot finish
/// (shard s0 is locked) exits at once with status 143 (128 + SIGTERM); the
/// checkpoint names only applied work, and a restart converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_exits_at_once() {
    let s = Scenario::create(cluster(), "sigterm2").unwrap();
    s.configure("lanes_per_shard = 1\nbatch_size = 50").unwrap();
    set_option(&s, "shutdown_timeout_secs", "120");
    migrate(&s);
    let start = s.source_head().await.unwrap();
    queue_backlog(&s, 20_000).await;
    let mut lock = connect(&s.shard_urls["s0"]).await.unwrap();
    lock.query_drop("LOCK TABLES orders WRITE").await.unwrap();
    let mut run = spawn_run(&s, &["--from", &format!("{}:{}", start.0, start.1)]);
    // the other shards apply; s0 waits for its lock
    let deadline = Instant::now() + Duration::from_secs(120);
    while targets_sum_except(&s, "1", "s0").await == 0 {
        assert!(Instant::now() < deadline, "{}", run_log(&s));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&run, libc::SIGTERM);
    let seen = wait_for_log(&s, &["shutdown requested"], Duration::from_secs(30)).await;
    assert!(seen.is_some(), "{}", run_log(&s));
    assert!(
        wait_exit(&mut run, Duration::from_millis(500)).is_none(),
        "the drain waits for the locked shard\n{}",
        run_log(&s)
    );
    let asked = Instant::now();
    signal(&run, libc::SIGTERM);
    let st = wait_exit(&mut run, Duration::from_secs(5));
    let log = run_log(&s);
    let Some(st) = st else {
        crash(&mut run);
        panic!(
            "no exit {:?} after the second SIGTERM\n{log}",
            asked.elapsed()
        );
    };
    assert_eq!(st.code(), Some(143), "{log}");
    lock.query_drop("UNLOCK TABLES").await.unwrap();
    drop(lock);
    restart_converges(&s).await;
}

/// A SIGTERM during start-up asked the process to stop, but the listener
/// was installed only once start-up was over (and only when its task first
/// ran): before that, the signal's default action killed the process, so a
/// stop sent early (a rolling restart, an operator's Ctrl-C) ended it by
/// signal instead of with exit 0. Start-up is held here on a control table
/// lock, so the signal surely arrives during it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_start_up_stops_cleanly() {
    let s = Scenario::create(cluster(), "earlyterm").unwrap();
    migrate(&s);
    let mut lock = connect(&s.control_url).await.unwrap();
    lock.query_drop("LOCK TABLES reshard_checkpoint WRITE")
        .await
        .unwrap();
    let mut run = spawn_run(&s, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting: Vec<String> = lock
            .query(
                "SELECT COALESCE(INFO, '') FROM information_schema.PROCESSLIST \
                 WHERE STATE LIKE 'Waiting for table%' AND INFO LIKE '%reshard_checkpoint%'",
            )
            .await
            .unwrap();
        if !waiting.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "start-up never read the checkpoint\n{}",
            run_log(&s)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&run, libc::SIGTERM);
    // the process is still there, waiting for the lock, not killed
    let early = wait_exit(&mut run, Duration::from_millis(300));
    lock.query_drop("UNLOCK TABLES").await.unwrap();
    let st = early.or_else(|| wait_exit(&mut run, Duration::from_secs(60)));
    let log = run_log(&s);
    let Some(st) = st else {
        crash(&mut run);
        panic!("no exit after SIGTERM\n{log}");
    };
    assert_eq!(st.code(), Some(0), "{st:?}\n{log}");
}
