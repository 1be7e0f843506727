//! The pipeline lease: a named lock (`GET_LOCK('reshard:<pipeline>')`) on
//! the control connection, held as long as that connection's session
//! lives, so two `run`s (or a `run` and a `replay`) of one pipeline cannot
//! interleave their checkpoints. The lease row (`reshard_lease`) records
//! which connection took it and which process that is ([`Owner`]: host,
//! pid, start time), to name the holder when another process is refused.
//!
//! # Taking the lease again
//!
//! The session, not the process, holds the lock. When the process loses
//! its control connection (a network blip, a half-open connection after a
//! failover, an idle connection closed by the server) the server may not
//! know yet: the old session — and the lock — live on until the server
//! notices, which for a half-open connection can be hours. Waiting for
//! that, or giving up with "another reshard holds the lease", are both
//! wrong. So [`acquire`] looks at the lease row first: when it names *this
//! process* and the lock is held by the connection it names, that
//! connection is our own lost one, and it is `KILL`ed before `GET_LOCK`
//! waits (boundedly) for the server to release the lock. Another process's
//! connection is never killed: the identity must match, and the lock
//! holder must be the recorded connection (a connection id reused after a
//! server restart does not hold our lock).
//!
//! While it runs, the coordinator checks every [`CHECK_EVERY`] that the
//! control connection still holds the lease ([`holds`], bounded by
//! [`CHECK_TIMEOUT`]); that keeps the connection from idling past
//! `wait_timeout` and notices a dead one within seconds.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::err;
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

/// The lease row: the connection that took the lease, and its process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub owner: Owner,
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

/// The outcome of [`acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// This connection holds the lease.
    Acquired,
    /// Another session holds it: the recorded holder when the row names
    /// the connection that holds the lock (`None` when it does not, e.g.
    /// the holder is taking it right now).
    HeldBy(Option<Holder>),
}

fn lock_name(pipeline: &str) -> String {
    format!("reshard:{pipeline}")
}

/// Takes the pipeline's lease on `conn` for `me`. When the lease row says
/// the lock is held by a lost connection of `me` itself, that connection
/// is killed first and the lock awaited for up to `wait` (see the module
/// docs); otherwise the lock is only taken when free.
pub async fn acquire(
    conn: &mut Conn,
    pipeline: &str,
    me: &Owner,
    wait: Duration,
) -> Result<Acquire, DbError> {
    let name = lock_name(pipeline);
    let row = holder(conn, pipeline).await?;
    let (used_by, me_id): (Option<u64>, u64) = conn
        .exec_first("SELECT IS_USED_LOCK(?), CONNECTION_ID()", (&name,))
        .await
        .map_err(err("reading the pipeline lease"))?
        .unwrap_or((None, 0));
    let mut timeout = 0;
    if let (Some(row), Some(id)) = (&row, used_by) {
        if row.owner == *me && row.connection_id == id && id != me_id {
            tracing::info!(
                connection = id,
                "the pipeline lease is held by this process's lost control connection; killing it"
            );
            kill(conn, id).await?;
            timeout = wait.as_secs().max(1);
        }
    }
    let got: Option<Option<i64>> = conn
        .exec_first("SELECT GET_LOCK(?, ?)", (&name, timeout))
        .await
        .map_err(err("taking the pipeline lease"))?;
    if got.flatten() == Some(1) {
        record(conn, pipeline, me).await?;
        return Ok(Acquire::Acquired);
    }
    let used_by: Option<Option<u64>> = conn
        .exec_first("SELECT IS_USED_LOCK(?)", (&name,))
        .await
        .map_err(err("reading the pipeline lease"))?;
    let named = row.filter(|r| used_by.flatten() == Some(r.connection_id));
    Ok(Acquire::HeldBy(named))
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

/// Writes the lease row for the connection that just took the lock.
async fn record(conn: &mut Conn, pipeline: &str, me: &Owner) -> Result<(), DbError> {
    conn.exec_drop(
        "INSERT INTO reshard_lease (pipeline, connection_id, host, pid, started_us) \
         VALUES (?, CONNECTION_ID(), ?, ?, ?) ON DUPLICATE KEY UPDATE \
         connection_id = VALUES(connection_id), host = VALUES(host), pid = VALUES(pid), \
         started_us = VALUES(started_us), acquired_at = CURRENT_TIMESTAMP(6)",
        (pipeline, &me.host, me.pid, me.started_us),
    )
    .await
    .map_err(err("recording the pipeline lease"))
}

/// The lease row (the last process that took the lease; it may have let go
/// since).
pub async fn holder(conn: &mut Conn, pipeline: &str) -> Result<Option<Holder>, DbError> {
    let row: Option<(u64, String, u32, u64, String)> = conn
        .exec_first(
            "SELECT connection_id, host, pid, started_us, DATE_FORMAT(acquired_at, '%Y-%m-%d %H:%i:%s') \
             FROM reshard_lease WHERE pipeline = ?",
            (pipeline,),
        )
        .await
        .map_err(err("reading the pipeline lease"))?;
    Ok(row.map(
        |(connection_id, host, pid, started_us, acquired_at)| Holder {
            owner: Owner {
                host,
                pid,
                started_us,
            },
            connection_id,
            acquired_at,
        },
    ))
}

/// Whether `conn` holds the pipeline's lease (a query on the connection,
/// so it also proves the connection alive).
pub async fn holds(conn: &mut Conn, pipeline: &str) -> Result<bool, DbError> {
    let held: Option<Option<i64>> = conn
        .exec_first(
            "SELECT IS_USED_LOCK(?) = CONNECTION_ID()",
            (lock_name(pipeline),),
        )
        .await
        .map_err(err("checking the pipeline lease"))?;
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
}
