//! The shard leases: one named lock per target shard
//! (`GET_LOCK('reshard:<pipeline>:<shard>')`, [`lock_name`]) on the control
//! connection, held as long as that connection's session lives. A process
//! takes the lease of every shard it applies ([`Claim`]: all of them, or
//! its `[pipeline] shards` subset), all or none, so no shard ever has two
//! appliers: two `run`s of one subset, a `run` and a `replay`, or two
//! subsets that overlap cannot interleave their writes and checkpoints,
//! while processes with disjoint subsets run side by side
//! (`docs/architecture.md`, "Scale-out: shard subsets"). The lease rows
//! (`reshard_lease`, one per shard) record which connection took each lock
//! and which process that is ([`Owner`]: host, pid, start time; the
//! subset; the replica server id), to name the holder when another process
//! is refused, and to refuse a second process of the pipeline that would
//! stream with the same server id (the source drops a replica's stream
//! when another connects with its id).
//!
//! # Taking the lease again
//!
//! The session, not the process, holds the lock. When the process loses
//! its control connection (a network blip, a half-open connection after a
//! failover, an idle connection closed by the server) the server may not
//! know yet: the old session — and the lock — live on until the server
//! notices, which for a half-open connection can be hours. Waiting for
//! that, or giving up with "another reshard holds the lease", are both
//! wrong. So [`acquire`] looks at the lease rows first: when one names
//! *this process* and its lock is held by the connection it names, that
//! connection is our own lost one, and it is `KILL`ed before `GET_LOCK`
//! waits (boundedly) for the server to release the locks. Another process's
//! connection is never killed: the identity must match, and the lock
//! holder must be the recorded connection (a connection id reused after a
//! server restart does not hold our lock).
//!
//! While it runs, the coordinator checks every [`CHECK_EVERY`] that the
//! control connection still holds every lease ([`holds`], bounded by
//! [`CHECK_TIMEOUT`]); that keeps the connection from idling past
//! `wait_timeout` and notices a dead one within seconds.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::err;
use crate::config::Config;
use crate::db::DbError;

/// How often a running pipeline checks that it still holds the lease.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// A check that takes longer means the control connection is dead.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long re-taking the lease waits for a killed session to let go.
pub const TAKEOVER_WAIT: Duration = Duration::from_secs(10);

/// Who a process is: recorded with the lease, compared to recognise our
/// own connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    /// When the process started, in microseconds since the Unix epoch.
    pub started_us: u64,
}

impl Owner {
    /// This process (the same value for every call).
    pub fn this_process() -> &'static Owner {
        static ME: OnceLock<Owner> = OnceLock::new();
        ME.get_or_init(|| Owner {
            host: host_name(),
            pid: std::process::id(),
            started_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
        })
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A lease row: the connection that took a shard's lease, and its process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub owner: Owner,
    /// The shard whose lease this is.
    pub shard: String,
    /// The key of the holder's checkpoint row (`name` or `name/s0,s1`).
    pub subset: String,
    /// The replica server id the holder streams the binlog with.
    pub server_id: u32,
    pub connection_id: u64,
    /// When it was taken (UTC, as the control server reports it).
    pub acquired_at: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = utc_text(self.owner.started_us);
        write!(
            f,
            "host {}, pid {}, running since {since}, lease taken {} UTC (control connection {})",
            self.owner.host, self.owner.pid, self.acquired_at, self.connection_id
        )
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` of microseconds since the epoch.
fn utc_text(us: u64) -> String {
    let secs = us / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What a process claims: the lease of every shard it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// `[pipeline] name` as configured (shared by every subset).
    pub pipeline: String,
    /// The key of this process's checkpoint row.
    pub subset: String,
    /// The shards it applies, sorted.
    pub shards: Vec<String>,
    /// `[source] server_id`.
    pub server_id: u32,
}

impl Claim {
    /// The claim of a process running `cfg`.
    pub fn of(cfg: &Config) -> Claim {
        Claim {
            pipeline: cfg.pipeline.base_name.clone(),
            subset: cfg.pipeline.name.clone(),
            shards: cfg.applied_shards(),
            server_id: cfg.server_id,
        }
    }

    fn locks(&self) -> Vec<String> {
        self.shards
            .iter()
            .map(|s| lock_name(&self.pipeline, s))
            .collect()
    }
}

/// The outcome of [`acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// This connection holds the lease of every claimed shard.
    Acquired,
    /// Another session holds the lease of `shard`: the recorded holder
    /// when the row names the connection that holds the lock (`None` when
    /// it does not, e.g. the holder is taking it right now). Nothing is
    /// held.
    HeldBy {
        shard: String,
        holder: Option<Holder>,
    },
    /// Another live process of the pipeline streams with the same replica
    /// server id: the source would drop one stream whenever the other
    /// connects. Nothing is held.
    SameServerId(Holder),
}

/// The named lock of one shard of a pipeline. MySQL limits lock names to
/// 64 characters; a longer name is replaced by a digest.
pub fn lock_name(pipeline: &str, shard: &str) -> String {
    use sha2::Digest;
    let name = format!("reshard:{pipeline}:{shard}");
    if name.len() <= 64 {
        return name;
    }
    let digest = sha2::Sha256::digest(format!("{pipeline}\0{shard}").as_bytes());
    let hex: String = digest[..24].iter().map(|b| format!("{b:02x}")).collect();
    format!("reshard:#{hex}")
}

/// Takes the lease of every shard of `claim` on `conn` for `me`, or none.
/// When a lease row says a lock is held by a lost connection of `me`
/// itself, that connection is killed first and the locks awaited for up to
/// `wait` (see the module docs); otherwise a lock is only taken when free.
pub async fn acquire(
    conn: &mut Conn,
    claim: &Claim,
    me: &Owner,
    wait: Duration,
) -> Result<Acquire, DbError> {
    let rows = live_holders(conn, &claim.pipeline).await?;
    let me_id: Option<u64> = conn
        .query_first("SELECT CONNECTION_ID()")
        .await
        .map_err(err("reading the connection id"))?;
    let me_id = me_id.unwrap_or(0);
    let mut lost: Vec<u64> = rows
        .iter()
        .filter(|r| r.owner == *me && r.connection_id != me_id)
        .map(|r| r.connection_id)
        .collect();
    lost.sort_unstable();
    lost.dedup();
    for id in &lost {
        tracing::info!(
            connection = id,
            "a shard lease is held by this process's lost control connection; killing it"
        );
        kill(conn, *id).await?;
    }
    let timeout = if lost.is_empty() {
        0
    } else {
        wait.as_secs().max(1)
    };
    for (i, (shard, name)) in claim.shards.iter().zip(claim.locks()).enumerate() {
        let got: Option<Option<i64>> = conn
            .exec_first("SELECT GET_LOCK(?, ?)", (&name, timeout))
            .await
            .map_err(err("taking a shard lease"))?;
        if got.flatten() != Some(1) {
            release(conn, &claim.locks()[..i]).await?;
            let holder = live_holders(conn, &claim.pipeline)
                .await?
                .into_iter()
                .find(|h| h.shard == *shard);
            return Ok(Acquire::HeldBy {
                shard: shard.clone(),
                holder,
            });
        }
    }
    let twin = rows.into_iter().find(|r| {
        r.server_id == claim.server_id && r.owner != *me && !claim.shards.contains(&r.shard)
    });
    if let Some(twin) = twin {
        release(conn, &claim.locks()).await?;
        return Ok(Acquire::SameServerId(twin));
    }
    for shard in &claim.shards {
        record(conn, claim, shard, me).await?;
    }
    Ok(Acquire::Acquired)
}

/// `RELEASE_LOCK` of each name.
async fn release(conn: &mut Conn, names: &[String]) -> Result<(), DbError> {
    for name in names {
        conn.exec_drop("DO RELEASE_LOCK(?)", (name,))
            .await
            .map_err(err("releasing a shard lease"))?;
    }
    Ok(())
}

/// `KILL CONNECTION id`; a connection that is already gone is fine.
async fn kill(conn: &mut Conn, id: u64) -> Result<(), DbError> {
    match conn.query_drop(format!("KILL CONNECTION {id}")).await {
        Ok(()) => Ok(()),
        // ER_NO_SUCH_THREAD
        Err(mysql_async::Error::Server(s)) if s.code == 1094 => Ok(()),
        Err(e) => Err(err("killing the lost control connection")(e)),
    }
}

/// Writes the lease row of `shard` for the connection that just took it.
async fn record(conn: &mut Conn, claim: &Claim, shard: &str, me: &Owner) -> Result<(), DbError> {
    conn.exec_drop(
        "INSERT INTO reshard_lease (pipeline, shard, holder, connection_id, host, pid, started_us, server_id) \
         VALUES (?, ?, ?, CONNECTION_ID(), ?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
         holder = VALUES(holder), connection_id = VALUES(connection_id), host = VALUES(host), \
         pid = VALUES(pid), started_us = VALUES(started_us), server_id = VALUES(server_id), \
         acquired_at = CURRENT_TIMESTAMP(6)",
        (&claim.pipeline, shard, &claim.subset, &me.host, me.pid, me.started_us, claim.server_id),
    )
    .await
    .map_err(err("recording a shard lease"))
}

/// shard, subset, connection, host, pid, start time, server id, taken at
type LeaseRow = (String, String, u64, String, u32, u64, u32, String);

/// The lease rows of a pipeline (the last process that took each shard's
/// lease; it may have let go since).
pub async fn holders(conn: &mut Conn, pipeline: &str) -> Result<Vec<Holder>, DbError> {
    let rows: Vec<LeaseRow> = conn
        .exec(
            "SELECT shard, holder, connection_id, host, pid, started_us, server_id, \
             DATE_FORMAT(acquired_at, '%Y-%m-%d %H:%i:%s') FROM reshard_lease WHERE pipeline = ? ORDER BY shard",
            (pipeline,),
        )
        .await
        .map_err(err("reading the shard leases"))?;
    Ok(rows
        .into_iter()
        .map(
            |(shard, subset, connection_id, host, pid, started_us, server_id, acquired_at)| {
                Holder {
                    owner: Owner {
                        host,
                        pid,
                        started_us,
                    },
                    shard,
                    subset,
                    server_id,
                    connection_id,
                    acquired_at,
                }
            },
        )
        .collect())
}

/// The lease rows whose lock is held right now by the connection they
/// name (so the process they name is, or its lost session still is, the
/// holder).
pub async fn live_holders(conn: &mut Conn, pipeline: &str) -> Result<Vec<Holder>, DbError> {
    let mut live = Vec::new();
    for h in holders(conn, pipeline).await? {
        let used_by: Option<Option<u64>> = conn
            .exec_first("SELECT IS_USED_LOCK(?)", (lock_name(pipeline, &h.shard),))
            .await
            .map_err(err("reading a shard lease"))?;
        if used_by.flatten() == Some(h.connection_id) {
            live.push(h);
        }
    }
    Ok(live)
}

/// Whether `conn` holds the lease of every shard of `claim` (a query on
/// the connection, so it also proves the connection alive).
pub async fn holds(conn: &mut Conn, claim: &Claim) -> Result<bool, DbError> {
    let locks = claim.locks();
    if locks.is_empty() {
        return Ok(false);
    }
    let sql = format!(
        "SELECT {}",
        vec!["IS_USED_LOCK(?) <=> CONNECTION_ID()"; locks.len()].join(" AND ")
    );
    let held: Option<Option<i64>> = conn
        .exec_first(sql, locks)
        .await
        .map_err(err("checking the shard leases"))?;
    Ok(held.flatten() == Some(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_one_identity() {
        let a = Owner::this_process();
        assert_eq!(a, Owner::this_process());
        assert_eq!(a.pid, std::process::id());
        assert!(!a.host.is_empty());
    }

    #[test]
    fn holder_names_host_pid_and_since() {
        let h = Holder {
            owner: Owner {
                host: "db-7".into(),
                pid: 42,
                started_us: 1_700_000_000_123_456,
            },
            shard: "s0".into(),
            subset: "shop".into(),
            server_id: 4001,
            connection_id: 99,
            acquired_at: "2023-11-14 22:13:21".into(),
        };
        assert_eq!(
            h.to_string(),
            "host db-7, pid 42, running since 2023-11-14 22:13:20 UTC, lease taken 2023-11-14 22:13:21 UTC (control connection 99)"
        );
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(951_782_400_000_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn lock_names_fit_mysqls_64_characters() {
        assert_eq!(lock_name("shop", "s0"), "reshard:shop:s0");
        let long = lock_name(&"p".repeat(64), "shard0");
        assert!(
            long.starts_with("reshard:#") && long.len() == 9 + 48,
            "{long}"
        );
        assert_ne!(long, lock_name(&"p".repeat(64), "shard1"));
    }
}
