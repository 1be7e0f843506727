//! Recovery inside the process (README, "Running for weeks: retries and
//! recovery"): a target down for 15 s, a source restart, every reshard
//! connection killed, connections closed by `wait_timeout` — each under a
//! steady load on the source — are ridden out by one `reshard run`
//! process. It keeps running, resumes from its checkpoint, converges, and
//! `reshard verify` exits 0; SIGTERM then ends it with exit code 0. The
//! retries are counted in `reshard_retries_total{stage,reason}`.
//!
//! These tests stop, restart and reconfigure servers, so they take turns
//! on a cluster of their own (a source and two targets; the control
//! database is on the first target, shards s0 and s2 too, s1 and s3 on the
//! second).

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::load::*;
use common::scrape::{free_port, scrape};
use common::{migrate, run_log, spawn_run, wait_until};
use reshard_testkit::scenario::Scenario;
use reshard_testkit::MariaDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Starts `run` on a fresh scenario and waits until it streams under load.
async fn start_under_load(s: &Scenario) -> (Child, Load) {
    migrate(s);
    let run = spawn_run(s, &[]);
    wait_until(
        s,
        "the first checkpoint",
        Duration::from_secs(60),
        || async { checkpoint(s).await.is_some() },
    )
    .await;
    let load = Load::start(s, 1);
    load.wait_for(100, "the load to start", s).await;
    wait_applied_to_now(s, "the pipeline to stream").await;
    (run, load)
}

/// The connections of the processlist that `filter` selects (an SQL
/// condition), except the one asking.
fn connections(server: &MariaDb, filter: &str) -> Vec<String> {
    server
        .sql(&format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND USER = 'root' AND ({filter})"
        ))
        .expect("processlist")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Kills connections; returns how many were still there to kill.
fn kill(server: &MariaDb, ids: &[String]) -> usize {
    ids.iter()
        .filter(|id| server.sql(&format!("KILL CONNECTION {id}")).is_ok())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_down_for_15s_other_shards_go_on_and_the_checkpoint_waits() {
    let mut c = own_cluster().await;
    let s = Scenario::create(&c, "rec_outage").unwrap();
    let (mut run, load) = start_under_load(&s).await;

    // s1 and s3 live on the second target
    c.targets[1].stop();
    let down_at = head(&s).await;
    let started = Instant::now();
    let outage = Duration::from_secs(15);
    let mut healthy_early = None;
    let mut commits_early = 0;
    while started.elapsed() < outage {
        if let Some(cp) = checkpoint(&s).await {
            assert!(
                cp <= down_at,
                "the checkpoint {cp:?} passed the source head {down_at:?} of when s1/s3 went down: it names work the down shards never applied\n{}",
                run_log(&s)
            );
        }
        if healthy_early.is_none() && started.elapsed() > Duration::from_secs(3) {
            healthy_early = Some(format!(
                "{}{}",
                shard_state(&s, "s0").await,
                shard_state(&s, "s2").await
            ));
            commits_early = load.commits();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let healthy_late = format!(
        "{}{}",
        shard_state(&s, "s0").await,
        shard_state(&s, "s2").await
    );
    assert!(load.commits() > commits_early, "the load went on");
    assert_ne!(
        healthy_early.as_deref(),
        Some(healthy_late.as_str()),
        "s0 and s2 stopped applying while s1/s3 were down\n{}",
        run_log(&s)
    );
    assert_running(&mut run, &s, "during the target outage");
    c.targets[1].start_again().expect("start the target again");

    load.wait_for(100, "the load after the outage", &s).await;
    wait_applied_to_now(&s, "the pipeline to resume after the outage").await;
    load.stop().await;
    converges_and_stops(&s, &mut run).await;
    let log = run_log(&s);
    assert!(log.contains("s1"), "the retry names the shard\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_restart_under_load() {
    let mut c = own_cluster().await;
    let s = Scenario::create(&c, "rec_source").unwrap();
    let (mut run, load) = start_under_load(&s).await;

    c.source.restart().expect("restart the source");
    load.wait_for(200, "the load after the restart", &s).await;
    wait_applied_to_now(&s, "the pipeline to resume after the restart").await;
    assert_running(&mut run, &s, "after the source restart");
    load.stop().await;
    converges_and_stops(&s, &mut run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reshard_connection_killed_on_a_target_and_on_the_source() {
    let c = own_cluster().await;
    let s = Scenario::create(&c, "rec_kill").unwrap();
    let port = free_port();
    s.configure(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\""))
        .unwrap();
    let (mut run, load) = start_under_load(&s).await;

    for round in 0..2 {
        // the control database (with the lease) and shards s0 and s2
        let target = connections(&c.targets[0], "DB LIKE 'rec\\_kill\\_%'");
        // the binlog stream and the schema connection (no database)
        let source = connections(&c.source, "DB IS NULL OR COMMAND LIKE 'Binlog Dump%'");
        let on_target = kill(&c.targets[0], &target);
        let on_source = kill(&c.source, &source);
        eprintln!(
            "round {round}: killed {on_target} of {} on the target, {on_source} of {} on the source (the others had closed)",
            target.len(),
            source.len()
        );
        // control and lanes; binlog stream and schema connection
        assert!(
            target.len() >= 3 && source.len() >= 2,
            "{target:?} / {source:?}"
        );
        load.wait_for(100, "the load after the kill", &s).await;
        wait_applied_to_now(&s, "the pipeline to resume after the kill").await;
        assert_running(&mut run, &s, "after its connections were killed");
    }
    // each retry counted by stage and cause, as the log names them
    let m = scrape(port).await.expect("the metrics endpoint");
    let retries: Vec<_> = m
        .iter()
        .filter(|x| x.name == "reshard_retries_total" && x.value > 0.0)
        .collect();
    let total: f64 = retries.iter().map(|x| x.value).sum();
    assert!(total >= 2.0, "{retries:?}\n{}", run_log(&s));
    for r in &retries {
        let stage = r.labels.get("stage").map_or("", String::as_str);
        let reason = r.labels.get("reason").map_or("", String::as_str);
        assert!(
            ["writer", "reader", "control", "pipeline"].contains(&stage) && !reason.is_empty(),
            "{r:?}"
        );
    }
    load.stop().await;
    converges_and_stops(&s, &mut run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_past_wait_timeout_then_continue() {
    let c = own_cluster().await;
    for server in c.servers() {
        set_wait_timeout(server, 5);
    }
    let s = Scenario::create(&c, "rec_idle").unwrap();
    // a heartbeat every second: a source that did not send them would be
    // taken for dead (and retried) during the idle time
    s.configure("heartbeat_secs = 1").unwrap();
    let (mut run, load) = start_under_load(&s).await;
    load.stop().await;
    wait_applied_to_now(&s, "the pipeline to catch up before the idle time").await;

    // idle: every connection reshard holds outlives wait_timeout
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_running(&mut run, &s, "after the idle time");
    let holder = c.targets[0]
        .sql("SELECT IS_USED_LOCK('reshard:rec_idle:s0')")
        .expect("lease holder");
    assert_ne!(
        holder.trim(),
        "NULL",
        "the lease was lost while idle: another reshard could take the pipeline\n{}",
        run_log(&s)
    );

    let load = Load::start(&s, 1_000_000);
    load.wait_for(100, "the load after the idle time", &s).await;
    wait_applied_to_now(&s, "the pipeline to apply after the idle time").await;
    load.stop().await;
    converges_and_stops(&s, &mut run).await;
    for server in c.servers() {
        set_wait_timeout(server, 28800);
    }
    let log = run_log(&s);
    assert!(
        !log.contains("transient failure"),
        "idle connections are kept alive, not lost and retried\n{log}"
    );
}

/// A TCP proxy in front of a server whose connections can be frozen: no
/// byte passes any more either way, but no socket closes — what both ends
/// see when the network path dies without a FIN or RST (a half-open
/// connection). Connections made after the freeze pass normally.
struct Proxy {
    port: u16,
    generation: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (generation, _) = watch::channel(0u64);
        let gen = generation.clone();
        let task = tokio::spawn(async move {
            let mut pipes = JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let born = *gen.borrow();
                let frozen = gen.subscribe();
                pipes.spawn(async move {
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::join!(
                        pass(ri, wo, born, frozen.clone()),
                        pass(ro, wi, born, frozen)
                    );
                });
            }
        });
        Proxy {
            port,
            generation,
            task,
        }
    }

    /// Freezes every connection open now.
    fn freeze(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // the pipes (and their sockets) go with the accept task's JoinSet
        self.task.abort();
    }
}

/// Copies bytes until the connection is closed or frozen; a frozen one
/// keeps its sockets open and silent until the proxy is dropped.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    born: u64,
    mut generation: watch::Receiver<u64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let now = generation.clone();
    loop {
        tokio::select! {
            _ = async { generation.wait_for(|g| *g > born).await.map(|_| ()) } => break,
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let frozen = *now.borrow() > born;
                    if frozen || to.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_source_and_control_connections_are_detected() {
    let c = own_cluster().await;
    let s = Scenario::create(&c, "rec_halfopen").unwrap();
    s.configure("heartbeat_secs = 1").unwrap();
    let source = Proxy::start(c.source.port()).await;
    let control = Proxy::start(c.targets[0].port()).await;
    let config = std::fs::read_to_string(&s.config).unwrap();
    let direct_source = format!("127.0.0.1:{}\"", c.source.port());
    let direct_control = format!("127.0.0.1:{}/rec_halfopen_meta", c.targets[0].port());
    assert!(config.contains(&direct_source) && config.contains(&direct_control));
    let config = config
        .replace(&direct_source, &format!("127.0.0.1:{}\"", source.port))
        .replace(
            &direct_control,
            &format!("127.0.0.1:{}/rec_halfopen_meta", control.port),
        );
    std::fs::write(&s.config, config).unwrap();
    let (mut run, load) = start_under_load(&s).await;

    // the binlog stream and the schema connection go silent without
    // closing, then the control connection (holding the lease)
    source.freeze();
    load.wait_for(200, "the load after the source froze", &s)
        .await;
    wait_applied_to_now(&s, "the pipeline to resume on a new stream").await;
    assert_running(&mut run, &s, "after the source connections went half-open");
    control.freeze();
    load.wait_for(200, "the load after the control froze", &s)
        .await;
    wait_applied_to_now(&s, "the pipeline to resume with the lease").await;
    assert_running(&mut run, &s, "after the control connection went half-open");
    load.stop().await;
    converges_and_stops(&s, &mut run).await;
    let log = run_log(&s);
    assert!(
        log.contains("no binlog event and no heartbeat"),
        "the silent stream was noticed\n{log}"
    );
    assert!(
        log.contains("lost control connection"),
        "the lease was taken back from the half-open control session\n{log}"
    );
}
