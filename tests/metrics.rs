//! Operating a running reshard (README, "Metrics, throttling and stall
//! alarms"): the Prometheus endpoint scraped during a run, `status` showing
//! the same figures, the rows/s cap and the lag throttle holding writes
//! back (by a lag query, and by `Seconds_Behind_Master` of a target whose
//! replication is broken), and the stall alarm naming a lane whose target
//! is frozen.
//!
//! The tests share servers of their own (`own_cluster`): one freezes a
//! target with `FLUSH TABLES WITH READ LOCK`, which would stall any other
//! test writing there.

mod common;

use std::time::{Duration, Instant};

use common::load::*;
use common::scrape::{free_port, positive, scrape, sum, Sample};
use common::{migrate, reshard, run_log, spawn_run, status_json, wait_until};
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::{connect, Scenario};

/// The metrics every run exports (labelled counters appear once counted).
const NAMES: &[&str] = &[
    "reshard_rows_applied_total",
    "reshard_events_read_total",
    "reshard_source_lag_seconds",
    "reshard_source_lag_bytes",
    "reshard_checkpoint_position",
    "reshard_batch_seconds_bucket",
    "reshard_snapshot_rows_total",
    "reshard_stalled",
    "reshard_throttled",
];

/// Appends the `[metrics]` section (and `more` sections after it).
fn with_metrics(s: &Scenario, port: u16, more: &str) {
    s.configure(&format!(
        "\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n{more}"
    ))
    .unwrap();
}

/// Waits for the first checkpoint and for the endpoint to answer.
async fn started(s: &Scenario, port: u16) -> Vec<Sample> {
    wait_until(
        s,
        "the first checkpoint",
        Duration::from_secs(90),
        || async { checkpoint(s).await.is_some() },
    )
    .await;
    scrape_until(s, port, "the metrics endpoint", |_| true).await
}

/// Scrapes until `cond` holds (at most 60 s); returns that scrape.
async fn scrape_until(
    s: &Scenario,
    port: u16,
    what: &str,
    cond: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(m) = scrape(port).await {
            if cond(&m) {
                return m;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            run_log(s)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scrape_now(s: &Scenario, port: u16) -> Vec<Sample> {
    match scrape(port).await {
        Some(m) => m,
        None => panic!("the metrics endpoint does not answer\n{}", run_log(s)),
    }
}

/// Rows in `table` of shard `shard`.
async fn rows_on(s: &Scenario, shard: &str, table: &str) -> u64 {
    let mut c = connect(&s.shard_urls[shard]).await.expect("connect shard");
    let n: Option<u64> = c
        .query_first(format!("SELECT COUNT(*) FROM `{table}`"))
        .await
        .expect("count");
    n.unwrap_or(0)
}

/// The process figures `status --json` shows, once they are kept.
async fn status_figures(s: &Scenario, what: &str, cond: impl Fn(&serde_json::Value) -> bool) {
    wait_until(s, what, Duration::from_secs(60), || async {
        let st = status_json(s);
        cond(&st["process"]["figures"])
    })
    .await;
}

fn rows_total(figures: &serde_json::Value) -> u64 {
    figures["rows_applied"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["rows"].as_u64()).sum())
        .unwrap_or(0)
}

const CAP: f64 = 400.0;
const BATCH: f64 = 50.0;
/// Lanes of the scenario: 4 shards × 2.
const LANES: f64 = 8.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_during_a_capped_run_shows_the_rows_applied_and_the_lag() {
    let cluster = own_cluster().await;
    let s = Scenario::create(&cluster, "obs_scrape").unwrap();
    let port = free_port();
    s.configure(&format!("batch_size = {BATCH}")).unwrap();
    // the lag check by Seconds_Behind_Master: the targets replicate from
    // nothing, so their lag is 0 and only the cap holds writes back
    with_metrics(
        &s,
        port,
        &format!("\n[throttle]\nmax_rows_per_sec = {CAP}\nmax_lag_secs = 30\n"),
    );
    migrate(&s);
    let mut run = spawn_run(&s, &[]);
    let first = started(&s, port).await;
    assert_eq!(sum(&first, "reshard_rows_applied_total", &[]), 0.0);

    // 2n row operations against a cap: a backlog for several seconds
    let n = 2000u64;
    let loaded_at = Instant::now();
    s.bulk_load(n).await.unwrap();
    let (mut saw_lag, mut saw_throttled) = (false, false);
    let mut last = (loaded_at, 0.0);
    while last.1 < 2.0 * n as f64 {
        assert!(
            loaded_at.elapsed() < Duration::from_secs(240),
            "{} of {} rows applied\n{}",
            last.1,
            2 * n,
            run_log(&s)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let m = scrape_now(&s, port).await;
        last = (Instant::now(), sum(&m, "reshard_rows_applied_total", &[]));
        saw_lag |= sum(&m, "reshard_source_lag_bytes", &[]) > 0.0;
        saw_throttled |= sum(&m, "reshard_throttled", &[("reason", "rate")]) > 0.0;
        // the cap holds over every window since the load: what started
        // in it, plus one second of burst and the batches in flight
        let secs = last.0.duration_since(loaded_at).as_secs_f64();
        assert!(
            last.1 <= CAP * secs + CAP + LANES * BATCH,
            "{} rows applied {secs:.1} s after the load, above the cap of {CAP}/s",
            last.1
        );
    }
    let secs = last.0.duration_since(loaded_at).as_secs_f64();
    eprintln!(
        "{} rows applied in {secs:.1} s under a cap of {CAP}/s",
        last.1
    );
    assert!(saw_lag, "the lag gauge never showed the backlog");
    assert!(
        saw_throttled,
        "reshard_throttled{{reason=\"rate\"}} never was 1"
    );
    assert!(
        run_log(&s).contains("throttled: the rows/s cap"),
        "{}",
        run_log(&s)
    );

    // caught up: the counters match the rows, the gauges the checkpoint
    s.wait_caught_up(Duration::from_secs(120)).await.unwrap();
    let head = s.source_head().await.unwrap();
    let m = scrape_until(&s, port, "the lag gauges at the head", |m| {
        sum(m, "reshard_source_lag_bytes", &[]) == 0.0
            && sum(m, "reshard_checkpoint_position", &[("file", &head.0)]) == head.1 as f64
    })
    .await;
    let text_names: Vec<&str> = m.iter().map(|x| x.name.as_str()).collect();
    for name in NAMES {
        assert!(text_names.contains(name), "{name} missing from the scrape");
    }
    let rows = |table: &str, op: &str| {
        sum(
            &m,
            "reshard_rows_applied_total",
            &[("table", table), ("op", op)],
        ) as u64
    };
    assert_eq!((rows("orders", "upsert"), rows("items", "upsert")), (n, n));
    assert_eq!(rows("orders", "delete") + rows("items", "delete"), 0);
    // MariaDB writes version 1 rows events
    let writes: f64 = m
        .iter()
        .filter(|x| x.name == "reshard_events_read_total")
        .filter(|x| {
            x.labels
                .get("type")
                .is_some_and(|t| t.starts_with("write_rows"))
        })
        .map(|x| x.value)
        .sum();
    assert!(writes >= 2.0, "{m:?}");
    assert!(sum(&m, "reshard_batch_seconds_count", &[]) >= 2.0 * n as f64 / BATCH);
    assert!(positive(&m, "reshard_stalled").is_empty(), "{m:?}");
    let lags: Vec<f64> = m
        .iter()
        .filter(|x| x.name == "reshard_target_lag_seconds")
        .map(|x| x.value)
        .collect();
    assert_eq!(lags, [0.0, 0.0], "{m:?}");
    assert_eq!(sum(&m, "reshard_throttled", &[("reason", "lag")]), 0.0);

    // status carries the same figures, for machines and for people
    status_figures(&s, "status to show the rows applied", |f| {
        rows_total(f) == 2 * n
    })
    .await;
    let human = reshard(&s, &["status"]);
    let text = String::from_utf8_lossy(&human.stdout);
    eprintln!("{text}");
    assert!(text.contains(&format!("rows applied {}", 2 * n)), "{text}");
    assert!(text.contains("stalled      no"), "{text}");
    assert!(text.contains("orders"), "{text}");
    converges_and_stops(&s, &mut run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lag_query_throttle_pauses_the_lagging_server_and_resumes() {
    let cluster = own_cluster().await;
    let s = Scenario::create(&cluster, "obs_lag").unwrap();
    for t in &cluster.targets {
        t.sql("CREATE DATABASE obs_lag_lag; CREATE TABLE obs_lag_lag.lag (secs INT NOT NULL); INSERT INTO obs_lag_lag.lag VALUES (0)")
            .unwrap();
    }
    let port = free_port();
    with_metrics(
        &s,
        port,
        "\n[throttle]\nmax_lag_secs = 5\nlag_query = \"SELECT secs FROM obs_lag_lag.lag\"\ncheck_interval_ms = 200\n",
    );
    migrate(&s);
    let mut run = spawn_run(&s, &[]);
    started(&s, port).await;
    let lagging = format!("127.0.0.1:{}", cluster.targets[1].port());
    let throttled = |m: &[Sample]| {
        sum(
            m,
            "reshard_throttled",
            &[("reason", "lag"), ("server", &lagging)],
        )
    };
    wait_until(
        &s,
        "both servers checked, none lagging",
        Duration::from_secs(30),
        || async {
            let m = scrape(port).await.unwrap_or_default();
            m.iter()
                .filter(|x| x.name == "reshard_target_lag_seconds")
                .count()
                == 2
                && sum(&m, "reshard_throttled", &[]) == 0.0
        },
    )
    .await;

    // target 1 (shards s1 and s3) reports 100 s of lag: its lanes wait
    cluster.targets[1]
        .sql("UPDATE obs_lag_lag.lag SET secs = 100")
        .unwrap();
    wait_until(
        &s,
        "the throttle on target 1",
        Duration::from_secs(30),
        || async { throttled(&scrape(port).await.unwrap_or_default()) == 1.0 },
    )
    .await;
    s.bulk_load(300).await.unwrap();
    let mut src = s.source().await.unwrap();
    let per_shard: Vec<(u32, u64)> = src
        .query("SELECT CRC32(buyer_id) % 4, COUNT(*) FROM orders GROUP BY 1")
        .await
        .unwrap();
    let expected = |sh: u32| {
        per_shard
            .iter()
            .find(|(k, _)| *k == sh)
            .map_or(0, |(_, n)| *n)
    };
    wait_until(
        &s,
        "shards s0 and s2 to apply their rows",
        Duration::from_secs(60),
        || async {
            rows_on(&s, "s0", "orders").await == expected(0)
                && rows_on(&s, "s2", "orders").await == expected(2)
        },
    )
    .await;
    for shard in ["s1", "s3"] {
        assert_eq!(
            rows_on(&s, shard, "orders").await,
            0,
            "{shard} was written while throttled"
        );
        assert_eq!(
            rows_on(&s, shard, "items").await,
            0,
            "{shard} was written while throttled"
        );
    }
    assert!(
        checkpoint(&s).await < Some(head(&s).await),
        "the checkpoint passed the paused lanes"
    );
    let log = run_log(&s);
    assert!(
        log.contains("throttled: the server's replication lag is above max_lag_secs"),
        "{log}"
    );
    status_figures(&s, "status to show the throttle", |f| {
        f["throttled"].as_array().is_some_and(|a| {
            a.iter()
                .any(|t| t["reason"] == "lag" && t["server"] == lagging.as_str())
        })
    })
    .await;

    // the lag is gone: the lanes go on and everything converges
    cluster.targets[1]
        .sql("UPDATE obs_lag_lag.lag SET secs = 0")
        .unwrap();
    s.wait_caught_up(Duration::from_secs(120)).await.unwrap();
    assert!(run_log(&s).contains("throttle lifted"), "{}", run_log(&s));
    assert_eq!(throttled(&scrape_now(&s, port).await), 0.0);
    let m = scrape_now(&s, port).await;
    assert!(
        sum(
            &m,
            "reshard_throttle_wait_seconds_total",
            &[("reason", "lag")]
        ) > 0.0
    );
    converges_and_stops(&s, &mut run).await;
    for t in &cluster.targets {
        t.sql("DROP DATABASE obs_lag_lag").unwrap();
    }
}

/// The stalled lanes a scrape shows (`lane:SHARD/N`).
fn stalled_lanes(m: &[Sample]) -> Vec<String> {
    positive(m, "reshard_stalled")
        .into_iter()
        .filter_map(|l| l.get("stage").cloned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_frozen_by_a_global_read_lock_fires_the_stall_alarm_naming_its_lane() {
    let cluster = own_cluster().await;
    let s = Scenario::create(&cluster, "obs_stall").unwrap();
    let port = free_port();
    s.configure("stall_secs = 3").unwrap();
    with_metrics(&s, port, "");
    migrate(&s);
    let mut run = spawn_run(&s, &[]);
    started(&s, port).await;

    // target 1 holds shards s1 and s3: freeze it, then write to every shard
    let mut lock = connect(&cluster.targets[1].url("")).await.unwrap();
    lock.query_drop("FLUSH TABLES WITH READ LOCK")
        .await
        .unwrap();
    s.bulk_load(300).await.unwrap();
    let on_frozen = |stage: &str| stage.starts_with("lane:s1/") || stage.starts_with("lane:s3/");
    let m = scrape_until(&s, port, "the stall alarm naming a lane of s1 or s3", |m| {
        stalled_lanes(m).iter().any(|st| on_frozen(st))
    })
    .await;
    let stalled = stalled_lanes(&m);
    let log = run_log(&s);
    let alarm = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("stalled:"))
        .unwrap_or_else(|| panic!("no stall error in the log\n{log}"));
    assert!(
        alarm.contains("stage=lane:s1/") || alarm.contains("stage=lane:s3/"),
        "{alarm}"
    );
    assert!(alarm.contains("has not committed its batch"), "{alarm}");
    status_figures(&s, "status to show the stalled lane", |f| {
        f["stalled"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str().is_some_and(on_frozen)))
    })
    .await;
    eprintln!("stalled: {stalled:?}\n{alarm}");

    // unfrozen: the batches commit, the alarm ends, everything converges
    lock.query_drop("UNLOCK TABLES").await.unwrap();
    s.wait_caught_up(Duration::from_secs(120)).await.unwrap();
    wait_until(&s, "the alarm to end", Duration::from_secs(30), || async {
        stalled_lanes(&scrape(port).await.unwrap_or_default()).is_empty()
    })
    .await;
    assert!(run_log(&s).contains("stall over"), "{}", run_log(&s));
    drop(lock);
    converges_and_stops(&s, &mut run).await;
}

/// Makes a target a replica of nobody, its IO thread never connected
/// (`Seconds_Behind_Master` NULL), and undoes it when dropped.
struct BrokenReplica<'a>(&'a reshard_testkit::MariaDb);

impl<'a> BrokenReplica<'a> {
    fn start(server: &'a reshard_testkit::MariaDb) -> BrokenReplica<'a> {
        server
            .sql("CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = 9, MASTER_USER = 'nobody', MASTER_CONNECT_RETRY = 1; START SLAVE")
            .unwrap();
        BrokenReplica(server)
    }
}

impl Drop for BrokenReplica<'_> {
    fn drop(&mut self) {
        let _ = self.0.sql("STOP SLAVE; RESET SLAVE ALL");
    }
}

/// The default lag check (`SHOW SLAVE STATUS`) on a target replicating
/// from a server it cannot reach: the lag is unknown, so that server's
/// lanes wait (the other server's go on) and the gauge shows NaN; once the
/// target replicates from nobody again, they resume and converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_with_broken_replication_is_throttled_until_its_lag_is_known() {
    let cluster = own_cluster().await;
    let s = Scenario::create(&cluster, "obs_sbm").unwrap();
    let port = free_port();
    with_metrics(
        &s,
        port,
        "\n[throttle]\nmax_lag_secs = 5\ncheck_interval_ms = 200\n",
    );
    migrate(&s);
    let mut run = spawn_run(&s, &[]);
    started(&s, port).await;
    let broken = format!("127.0.0.1:{}", cluster.targets[1].port());
    let throttled = |m: &[Sample]| {
        sum(
            m,
            "reshard_throttled",
            &[("reason", "lag"), ("server", &broken)],
        )
    };
    let replica = BrokenReplica::start(&cluster.targets[1]);
    let m = scrape_until(&s, port, "the throttle on target 1", |m| {
        throttled(m) == 1.0
    })
    .await;
    let lag: Vec<f64> = m
        .iter()
        .filter(|x| {
            x.name == "reshard_target_lag_seconds" && x.labels.get("server") == Some(&broken)
        })
        .map(|x| x.value)
        .collect();
    assert!(lag.len() == 1 && lag[0].is_nan(), "{lag:?}");
    s.bulk_load(100).await.unwrap();
    let mut src = s.source().await.unwrap();
    let on_s0: u64 = src
        .query_first("SELECT COUNT(*) FROM orders WHERE CRC32(buyer_id) % 4 = 0")
        .await
        .unwrap()
        .unwrap_or(0);
    wait_until(
        &s,
        "shard s0 to apply its rows",
        Duration::from_secs(60),
        || async { rows_on(&s, "s0", "orders").await == on_s0 },
    )
    .await;
    assert_eq!(
        rows_on(&s, "s1", "orders").await,
        0,
        "s1 was written while throttled"
    );
    let log = run_log(&s);
    assert!(log.contains("Seconds_Behind_Master is NULL"), "{log}");

    drop(replica);
    s.wait_caught_up(Duration::from_secs(120)).await.unwrap();
    assert_eq!(throttled(&scrape_now(&s, port).await), 0.0);
    converges_and_stops(&s, &mut run).await;
}
