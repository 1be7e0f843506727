//! Which failures are worth retrying, and how long to wait between tries.
//!
//! [`transient`] is the one place that reads a driver error and decides
//! whether running the work again can succeed: the connection broke (any
//! I/O error, the server gone or lost, an idle connection closed by
//! `wait_timeout`, a killed connection), the server is shutting down or
//! refusing new connections, a lock conflict rolled the transaction back,
//! or a target is read-only for a moment (a failover in progress). Each
//! cause has a short name ([`Transient::describe`]) for the log line that
//! says what is retried and why. Everything else is definite.
//!
//! Retrying is safe for every transient cause because the work is resumed
//! from the checkpoint, which names only durable work, and re-applied
//! writes converge (`docs/architecture.md`, "Errors, retries and
//! ownership"). A statement cut off by a lost connection was rolled back
//! by the server with its transaction, or it committed; either way running
//! the batch again gives the same rows.
//!
//! [`Backoff`] spaces the retries: capped exponential, with jitter so that
//! many lanes (or processes) that lost the same server do not reconnect
//! in lockstep, and reset once the work has run well for a while.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// Deadlock found when trying to get lock.
pub const ER_LOCK_DEADLOCK: u16 = 1213;
/// Lock wait timeout exceeded.
pub const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// Why a failure is transient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    /// An I/O error, the connection closed, the server gone away or lost.
    ConnectionLost,
    /// No connection could be opened within the connect budget.
    CannotConnect,
    /// The server closed a connection idle for longer than `wait_timeout`
    /// (MySQL 8.0.24+ says so with error 4031; MariaDB just closes it).
    IdleTimeout,
    /// `KILL` of the connection.
    Killed,
    /// `KILL QUERY`, or a statement interrupted by a shutdown.
    Interrupted,
    /// The server is shutting down.
    ServerShutdown,
    /// Too many connections, for the server or for the user.
    TooManyConnections,
    Deadlock,
    LockWaitTimeout,
    /// The server runs read-only (e.g. a target during a failover).
    ReadOnly,
}

impl Transient {
    /// A few words for the log.
    pub fn describe(self) -> &'static str {
        match self {
            Transient::ConnectionLost => "connection lost",
            Transient::CannotConnect => "cannot connect",
            Transient::IdleTimeout => "idle connection closed by the server",
            Transient::Killed => "connection killed",
            Transient::Interrupted => "statement interrupted",
            Transient::ServerShutdown => "server shutting down",
            Transient::TooManyConnections => "too many connections",
            Transient::Deadlock => "deadlock",
            Transient::LockWaitTimeout => "lock wait timeout",
            Transient::ReadOnly => "server is read-only",
        }
    }
}

/// Whether a driver error is transient, and why: the one place that
/// decides (see the module docs).
pub fn transient(e: &mysql_async::Error) -> Option<Transient> {
    use mysql_async::DriverError as D;
    match e {
        mysql_async::Error::Io(_) => Some(Transient::ConnectionLost),
        // a connection that lost its place in the protocol (e.g. a reply
        // to a killed statement) is as good as lost
        mysql_async::Error::Driver(D::ConnectionClosed | D::PacketOutOfOrder) => {
            Some(Transient::ConnectionLost)
        }
        mysql_async::Error::Server(s) => server_error(s.code, &s.message),
        mysql_async::Error::Driver(_)
        | mysql_async::Error::Url(_)
        | mysql_async::Error::Other(_) => None,
    }
}

/// Server error codes (and the client-side codes some servers and proxies
/// send back) that a later try can get past.
fn server_error(code: u16, message: &str) -> Option<Transient> {
    Some(match code {
        // ER_ABORTING_CONNECTION, ER_NET_READ_ERROR, ER_NET_READ_INTERRUPTED,
        // ER_NET_ERROR_ON_WRITE, ER_NET_WRITE_INTERRUPTED,
        // ER_NEW_ABORTING_CONNECTION, ER_HANDSHAKE_ERROR
        1152 | 1158..=1161 | 1184 | 1043 => Transient::ConnectionLost,
        // CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR, CR_SERVER_GONE_ERROR,
        // CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED
        2002 | 2003 | 2006 | 2013 | 2055 => Transient::ConnectionLost,
        // ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8.0.24+)
        4031 => Transient::IdleTimeout,
        // ER_CONNECTION_KILLED (MariaDB), ER_SESSION_WAS_KILLED (MySQL)
        1927 | 3169 => Transient::Killed,
        // ER_QUERY_INTERRUPTED
        1317 => Transient::Interrupted,
        // ER_SERVER_SHUTDOWN
        1053 => Transient::ServerShutdown,
        // ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS
        1040 | 1203 => Transient::TooManyConnections,
        ER_LOCK_DEADLOCK => Transient::Deadlock,
        ER_LOCK_WAIT_TIMEOUT => Transient::LockWaitTimeout,
        // ER_READ_ONLY_MODE, ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
        1836 | 1792 => Transient::ReadOnly,
        // ER_OPTION_PREVENTS_STATEMENT is read-only only when it says so
        // (the same code names --secure-file-priv, --skip-grant-tables, …)
        1290 if is_read_only(message) => Transient::ReadOnly,
        _ => return None,
    })
}

fn is_read_only(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("read-only") || m.contains("read_only")
}

/// Capped exponential backoff with jitter.
///
/// The n-th pause in a row is a random time between half and all of
/// `min(cap, base × 2ⁿ)`. Once the work has run for `cap` since the last
/// pause ended, the next failure is counted as a first one again, so a
/// blip after weeks of running does not wait as long as the last outage.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    next: Duration,
    /// When the last pause ends (the work resumes).
    resumed_at: Option<Instant>,
    rng: u64,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Backoff {
            base,
            cap: cap.max(base),
            next: base,
            resumed_at: None,
            rng: seed | 1,
        }
    }

    /// The pause before the next try; the one after it doubles (up to the
    /// cap).
    pub fn next_delay(&mut self) -> Duration {
        let now = Instant::now();
        if self
            .resumed_at
            .is_some_and(|t| now.saturating_duration_since(t) >= self.cap)
        {
            self.reset();
        }
        let full = self.next;
        self.next = (self.next * 2).min(self.cap);
        let half = full / 2;
        let delay = half + half.mul_f64(self.unit());
        self.resumed_at = Some(now + delay);
        delay
    }

    /// The next failure is a first one.
    pub fn reset(&mut self) {
        self.next = self.base;
        self.resumed_at = None;
    }

    /// A number in [0, 1) (xorshift64*: jitter needs no better).
    fn unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16, message: &str) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: message.into(),
            state: "HY000".into(),
        })
    }

    #[test]
    fn lost_idle_killed_and_shut_down_connections_are_transient() {
        let cases = [
            (2006, Transient::ConnectionLost), // MariaDB: server has gone away
            (2013, Transient::ConnectionLost), // lost connection during query
            (4031, Transient::IdleTimeout),    // MySQL 8.0.24+ idle disconnect
            (1927, Transient::Killed),         // MariaDB: connection was killed
            (3169, Transient::Killed),         // MySQL: session was killed
            (1053, Transient::ServerShutdown), // server shutdown in progress
            (1317, Transient::Interrupted),
            (1040, Transient::TooManyConnections),
            (1205, Transient::LockWaitTimeout),
            (1213, Transient::Deadlock),
            (1836, Transient::ReadOnly), // running in read-only mode
            (1158, Transient::ConnectionLost),
        ];
        for (code, why) in cases {
            assert_eq!(transient(&server(code, "x")), Some(why), "{code}");
        }
    }

    #[test]
    fn option_prevents_statement_is_transient_only_for_read_only() {
        let ro = "The MariaDB server is running with the --read-only option so it cannot execute this statement";
        assert_eq!(transient(&server(1290, ro)), Some(Transient::ReadOnly));
        let mysql = "The MySQL server is running with the --super-read-only option so it cannot execute this statement";
        assert_eq!(transient(&server(1290, mysql)), Some(Transient::ReadOnly));
        let other = "The MariaDB server is running with the --secure-file-priv option so it cannot execute this statement";
        assert_eq!(transient(&server(1290, other)), None);
    }

    #[test]
    fn io_and_closed_connections_are_transient() {
        let io = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )));
        assert_eq!(transient(&io), Some(Transient::ConnectionLost));
        let closed = mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed);
        assert_eq!(transient(&closed), Some(Transient::ConnectionLost));
    }

    #[test]
    fn refusals_and_bad_statements_are_definite() {
        for code in [1045, 1049, 1062, 1064, 1146, 1054, 1236, 1142] {
            assert_eq!(transient(&server(code, "x")), None, "{code}");
        }
        let d = mysql_async::Error::Driver(mysql_async::DriverError::MixedParams);
        assert_eq!(transient(&d), None);
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_millis(800);
        let mut b = Backoff::new(base, cap);
        let mut full = base;
        for _ in 0..6 {
            let d = b.next_delay();
            assert!(
                d >= full / 2 && d <= full,
                "{d:?} not in [{:?}, {full:?}]",
                full / 2
            );
            full = (full * 2).min(cap);
        }
        b.reset();
        assert!(b.next_delay() <= base);
        let spread: std::collections::HashSet<Duration> = (0..20)
            .map(|_| {
                b.reset();
                b.next_delay()
            })
            .collect();
        assert!(spread.len() > 1, "jitter varies the pause");
    }

    #[test]
    fn backoff_starts_over_after_running_for_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(20));
        for _ in 0..5 {
            b.next_delay();
        }
        assert!(b.next > Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.next_delay() <= Duration::from_millis(1));
    }
}
