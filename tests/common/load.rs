//! A steady load on the source and the checks around it, shared by the
//! tests that keep `reshard run` processes going under load while servers
//! and processes fail (recovery, single owner, scale-out, failover).

use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, TxOpts};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reshard_testkit::scenario::{connect, Scenario};
use reshard_testkit::{Cluster, MariaDb};
use tokio::sync::{Mutex, MutexGuard};
use tokio::task::JoinHandle;

use super::{reshard, run_log, terminate, wait_until};

/// A steady load on the source: small transactions that insert, update
/// (moving rows between shards too) and delete, from one connection that
/// is opened again whenever the source drops it. Statements are written
/// so that a transaction whose outcome was lost can run again.
pub struct Load {
    stop: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Load {
    pub fn start(s: &Scenario, first_id: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(AtomicU64::new(0));
        let url = s.source_url.clone();
        let (stop2, commits2) = (stop.clone(), commits.clone());
        let task = tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(first_id);
            let mut next = first_id;
            let mut conn: Option<Conn> = None;
            while !stop2.load(Ordering::Relaxed) {
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => match connect(&url).await {
                        Ok(c) => conn.insert(c),
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                match one_transaction(c, &mut rng, first_id, next).await {
                    Ok(()) => {
                        commits2.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => conn = None,
                }
                next += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Load {
            stop,
            commits,
            task,
        }
    }

    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Waits until `n` more transactions were committed.
    pub async fn wait_for(&self, n: u64, what: &str, s: &Scenario) {
        let goal = self.commits() + n;
        wait_until(s, what, Duration::from_secs(120), || async {
            self.commits() >= goal
        })
        .await;
    }

    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("load task");
        self.commits.load(Ordering::Relaxed)
    }
}

async fn one_transaction(
    c: &mut Conn,
    rng: &mut StdRng,
    first: u64,
    id: u64,
) -> Result<(), mysql_async::Error> {
    let mut tx = c.start_transaction(TxOpts::default()).await?;
    tx.exec_drop(
        "INSERT INTO orders (id, buyer_id, note, qty) VALUES (?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE buyer_id = VALUES(buyer_id), note = VALUES(note), qty = VALUES(qty)",
        (id, rng.gen_range(-1000..1000), format!("order {id}"), rng.gen_range(0..100)),
    )
    .await?;
    tx.exec_drop(
        "INSERT INTO items (order_id, line, sku) VALUES (?, 1, ?) ON DUPLICATE KEY UPDATE sku = VALUES(sku)",
        (id, format!("SKU{id}")),
    )
    .await?;
    if id > first + 10 {
        let other = rng.gen_range(first..id);
        match rng.gen_range(0..4) {
            0 => {
                tx.exec_drop(
                    "UPDATE orders SET note = ? WHERE id = ?",
                    (format!("changed at {id}"), other),
                )
                .await?
            }
            // the shard key: the row moves to another shard
            1 => {
                tx.exec_drop(
                    "UPDATE orders SET buyer_id = ? WHERE id = ?",
                    (rng.gen_range(-1000..1000), other),
                )
                .await?
            }
            2 => {
                tx.exec_drop("DELETE FROM orders WHERE id = ?", (other,))
                    .await?;
                tx.exec_drop("DELETE FROM items WHERE order_id = ?", (other,))
                    .await?
            }
            _ => {
                tx.exec_drop(
                    "UPDATE items SET price = ? WHERE order_id = ?",
                    (rng.gen_range(0..10_000), other),
                )
                .await?
            }
        }
    }
    tx.commit().await
}

/// A binlog position as an ordered pair (file sequence, offset).
pub fn ordered(p: &(String, u64)) -> (u64, u64) {
    let seq =
        p.0.rsplit('.')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
    (seq, p.1)
}

pub async fn checkpoint(s: &Scenario) -> Option<(u64, u64)> {
    checkpoint_of(s, &s.name).await
}

/// The checkpoint of the control rows keyed `pipeline` (a shard subset's
/// key is `name/s0,s1`).
pub async fn checkpoint_of(s: &Scenario, pipeline: &str) -> Option<(u64, u64)> {
    let mut c = connect(&s.control_url).await.ok()?;
    let row: Option<(String, u64)> = c
        .exec_first(
            "SELECT binlog_file, binlog_pos FROM reshard_checkpoint WHERE pipeline = ?",
            (pipeline,),
        )
        .await
        .ok()?;
    row.map(|c| ordered(&c))
}

pub async fn head(s: &Scenario) -> (u64, u64) {
    ordered(&s.source_head().await.expect("source head"))
}

/// Waits until the checkpoint reaches the source head as it is now (the
/// pipeline streams and applies).
pub async fn wait_applied_to_now(s: &Scenario, what: &str) {
    let now = head(s).await;
    wait_until(s, what, Duration::from_secs(120), || async {
        checkpoint(s).await.is_some_and(|c| c >= now)
    })
    .await;
}

/// Rows and newest version of both tables of a shard: changes whenever a
/// write lands there.
pub async fn shard_state(s: &Scenario, shard: &str) -> String {
    let mut c = connect(&s.shard_urls[shard]).await.expect("connect shard");
    let mut out = String::new();
    for table in ["orders", "items"] {
        let row: Option<(u64, Option<String>)> = c
            .query_first(format!(
                "SELECT COUNT(*), HEX(MAX(_reshard_version)) FROM `{table}`"
            ))
            .await
            .expect("shard state");
        out.push_str(&format!("{table}={row:?} "));
    }
    out
}

pub fn assert_running(run: &mut Child, s: &Scenario, when: &str) {
    if let Some(status) = run.try_wait().expect("wait") {
        panic!(
            "reshard run exited ({status}) {when}; it must ride out transient failures\n{}",
            run_log(s)
        );
    }
}

/// The end of every test: the load has stopped; the pipeline catches up,
/// the targets equal the routed source, `verify` exits 0, the process is
/// still the one started at the beginning, and SIGTERM ends it with 0.
pub async fn converges_and_stops(s: &Scenario, run: &mut Child) {
    s.wait_caught_up(Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(s)));
    assert_running(run, s, "before the end");
    let diffs = s.compare(20).await.expect("compare");
    assert!(diffs.is_empty(), "{}\n{}", diffs.join("\n"), run_log(s));
    assert_verified(s, &run_log(s));
    assert_running(run, s, "at the end");
    let status = terminate(run, Duration::from_secs(60));
    assert!(status.success(), "SIGTERM: {status}\n{}", run_log(s));
}

/// `reshard verify` exits 0 (`logs` are shown when it does not).
pub fn assert_verified(s: &Scenario, logs: &str) {
    let out = reshard(s, &["verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify: {}{}\n{logs}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// The servers of a test binary whose tests stop, restart and reconfigure
/// them: one test at a time (an async lock, so holding it across awaits
/// blocks no runtime), each starting from servers that run with their
/// defaults (a failed test may have left one stopped or reconfigured).
pub async fn own_cluster() -> MutexGuard<'static, Cluster> {
    static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();
    let cluster = CLUSTER.get_or_init(|| match Cluster::start(2) {
        Ok(c) => Mutex::new(c),
        Err(e) => panic!("cannot start the MariaDB test cluster: {e}"),
    });
    let mut guard = cluster.lock().await;
    let c = &mut *guard;
    for server in std::iter::once(&mut c.source).chain(c.targets.iter_mut()) {
        server.start_again().expect("start the server again");
        set_wait_timeout(server, 28800);
    }
    guard
}

pub fn set_wait_timeout(server: &MariaDb, secs: u32) {
    server
        .sql(&format!("SET GLOBAL wait_timeout = {secs}"))
        .expect("set wait_timeout");
}
