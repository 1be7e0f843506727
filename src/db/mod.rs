//! Connections to the servers reshard talks to.
//!
//! * [`connect`] opens one connection with a **bounded** retry (an
//!   unreachable server or refused credentials is an error well under a
//!   minute, never an endless loop; see `docs/architecture.md`, "Errors,
//!   retries and ownership"), naming the server and never its password.
//! * [`Session`] fixes what every session must agree on: `time_zone =
//!   '+00:00'` so TIMESTAMP values never shift, and for writers the `binary`
//!   connection character set so text keeps its column's own character set
//!   end to end (the bytes of a latin1 column are bound as-is and stored
//!   as-is; the server does not convert a binary string).
//! * [`classify`] splits driver errors into transient (retry from the
//!   checkpoint with backoff) and definite ones ([`Retry`]); every error
//!   type above passes that decision on instead of making its own. The
//!   list of transient causes, and the [`Backoff`] between tries, are in
//!   [`retry`].
//! * [`grants`] checks, before anything runs, that each account has the
//!   privileges reshard needs, naming the `GRANT` for any it lacks.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, SslOpts};

use crate::config::{redact_url, Endpoint, Tls, TlsMode};

pub mod grants;
pub mod retry;
pub mod wire;

pub use retry::{Backoff, Transient, ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT};

/// Session flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// Reading: UTC, utf8mb4 results.
    Read,
    /// Writing rows: UTC, binary character set, READ COMMITTED.
    Write,
}

/// Whether running the attempt again can help. Decided once per failure,
/// where it happens ([`classify`] for driver errors); wrapping errors only
/// pass it on. See `docs/architecture.md`, "Errors, retries and ownership".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A lost connection, a restart, a deadlock: retry from the checkpoint
    /// with backoff (safe: replays converge).
    Transient,
    /// Retrying will fail the same way: stop and say why.
    Definite,
}

/// A database failure, with the server it concerns.
///
/// The message is the driver's text with any URL password redacted; the
/// driver error itself is kept ([`DbError::driver`]) but not returned by
/// `source()`, because its unredacted text may echo a connection URL.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "cannot connect to {server} ({url}) after {attempts} attempt(s) in {secs:.1}s: {message}"
    )]
    Connect {
        server: String,
        url: String,
        attempts: u32,
        secs: f64,
        message: String,
    },
    /// A statement failed: the server refused it or the connection broke.
    #[error("{server}: {context}: {message}")]
    Query {
        server: String,
        context: String,
        message: String,
        retry: Retry,
        /// MySQL error code, when the server sent one.
        code: Option<u16>,
        driver: Box<mysql_async::Error>,
    },
    /// The server answered, but not what reshard needs (a missing status
    /// row, an unexpected result shape, a collision it must not accept).
    #[error("{server}: {context}: {message}")]
    Unexpected {
        server: String,
        context: String,
        message: String,
    },
}

impl DbError {
    /// Connection failures are transient (the connect itself already gave
    /// up on refused credentials); statements as [`classify`] says.
    pub fn retry(&self) -> Retry {
        match self {
            DbError::Connect { .. } => Retry::Transient,
            DbError::Query { retry, .. } => *retry,
            DbError::Unexpected { .. } => Retry::Definite,
        }
    }

    /// Why the failure is transient (`None` when it is definite), for the
    /// log line of the retry.
    pub fn transient(&self) -> Option<Transient> {
        match self {
            DbError::Connect { .. } => Some(Transient::CannotConnect),
            DbError::Query {
                retry: Retry::Transient,
                driver,
                ..
            } => Some(retry::transient(driver).unwrap_or(Transient::ConnectionLost)),
            DbError::Query { .. } | DbError::Unexpected { .. } => None,
        }
    }

    pub fn code(&self) -> Option<u16> {
        match self {
            DbError::Query { code, .. } => *code,
            DbError::Connect { .. } | DbError::Unexpected { .. } => None,
        }
    }

    /// The driver error of a failed statement.
    pub fn driver(&self) -> Option<&mysql_async::Error> {
        match self {
            DbError::Query { driver, .. } => Some(driver),
            DbError::Connect { .. } | DbError::Unexpected { .. } => None,
        }
    }

    /// A deadlock or lock wait timeout: the server rolled the transaction
    /// (or statement) back, and running it again may well succeed.
    pub fn is_lock_conflict(&self) -> bool {
        matches!(self.code(), Some(ER_LOCK_DEADLOCK | ER_LOCK_WAIT_TIMEOUT))
    }

    /// Wraps a driver error with the server name and what was being done.
    pub fn query(server: &str, context: impl Into<String>, e: mysql_async::Error) -> DbError {
        let code = match &e {
            mysql_async::Error::Server(s) => Some(s.code),
            _ => None,
        };
        DbError::Query {
            server: server.to_string(),
            context: context.into(),
            message: redact_url(&e.to_string()),
            retry: classify(&e),
            code,
            driver: Box::new(e),
        }
    }

    /// A statement that got no answer within `after`: the connection is
    /// presumed dead (half-open: the peer vanished without closing it),
    /// which is transient like any lost connection.
    pub fn no_answer(server: &str, context: impl Into<String>, after: Duration) -> DbError {
        let io = std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {:.0}s", after.as_secs_f64()),
        );
        DbError::query(
            server,
            context,
            mysql_async::Error::Io(mysql_async::IoError::Io(io)),
        )
    }

    /// A result reshard cannot use (definite).
    pub fn unexpected(
        server: &str,
        context: impl Into<String>,
        message: impl Into<String>,
    ) -> DbError {
        DbError::Unexpected {
            server: server.to_string(),
            context: context.into(),
            message: message.into(),
        }
    }
}

/// Whether a driver error is worth retrying (see [`retry::transient`],
/// the one place that decides).
pub fn classify(e: &mysql_async::Error) -> Retry {
    match retry::transient(e) {
        Some(_) => Retry::Transient,
        None => Retry::Definite,
    }
}

/// Driver options for an endpoint and session flavour.
pub fn opts(
    ep: &Endpoint,
    session: Session,
    db_override: Option<Option<&str>>,
) -> Result<Opts, DbError> {
    let base = Opts::from_url(&ep.url).map_err(|e| DbError::Connect {
        server: ep.name.clone(),
        url: ep.redacted(),
        attempts: 0,
        secs: 0.0,
        message: redact_url(&e.to_string()),
    })?;
    let mut init = vec!["SET time_zone = '+00:00'".to_string()];
    match session {
        Session::Read => init.push("SET NAMES utf8mb4".into()),
        Session::Write => {
            init.push("SET NAMES binary".into());
            init.push("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".into());
            init.push("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')".into());
        }
    }
    // A cached prepared statement keeps ~200 bytes of metadata per
    // parameter: a lane's 500-row upsert is ~1 MB. 256 of them per lane
    // grew the process by hundreds of MiB (tests/large_transactions.rs).
    let mut b = OptsBuilder::from_opts(base)
        .prefer_socket(false)
        .init(init)
        .stmt_cache_size(16)
        .ssl_opts(ssl_opts(&ep.tls));
    if let Some(pw) = &ep.password {
        b = b.pass(Some(pw.clone()));
    }
    if let Some(db) = db_override {
        b = b.db_name(db.map(str::to_string));
    }
    Ok(Opts::from(b))
}

/// The driver's TLS options for an endpoint's mode (see
/// [`crate::config::TlsMode`]; `preferred` falls back to a plain
/// connection in [`connect_opts`] when the server offers no TLS).
fn ssl_opts(tls: &Tls) -> Option<SslOpts> {
    let unverified = || {
        SslOpts::default()
            .with_danger_accept_invalid_certs(true)
            .with_danger_skip_domain_validation(true)
    };
    match tls.mode {
        TlsMode::Disabled => None,
        TlsMode::Preferred | TlsMode::Required => Some(unverified()),
        TlsMode::VerifyIdentity => {
            let roots = tls.ca_file.iter().map(|f| f.clone().into()).collect();
            Some(
                SslOpts::default()
                    .with_root_certs(roots)
                    .with_disable_built_in_roots(tls.ca_file.is_some()),
            )
        }
    }
}

/// Whether a connection failed because the server offers no TLS.
fn no_tls_offered(e: &mysql_async::Error) -> bool {
    matches!(
        e,
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)
    )
}

/// Opens a connection, retrying for at most `budget`.
pub async fn connect(ep: &Endpoint, session: Session, budget: Duration) -> Result<Conn, DbError> {
    connect_opts(ep, opts(ep, session, None)?, budget).await
}

/// Like [`connect`] with explicit options (e.g. without the database).
pub async fn connect_opts(
    ep: &Endpoint,
    mut opts: Opts,
    budget: Duration,
) -> Result<Conn, DbError> {
    let start = Instant::now();
    let mut attempts = 0;
    let mut delay = Duration::from_millis(200);
    loop {
        attempts += 1;
        let left = budget
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(500));
        let res = tokio::time::timeout(left, Conn::new(opts.clone())).await;
        let message = match res {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(e)) if ep.tls.mode == TlsMode::Preferred && no_tls_offered(&e) => {
                tracing::debug!(server = %ep.name, "the server offers no TLS; connecting without (ssl_mode = preferred)");
                opts = Opts::from(OptsBuilder::from_opts(opts).ssl_opts(None::<SslOpts>));
                continue;
            }
            Ok(Err(e)) => {
                // refused credentials or unknown database will not get better
                let fatal = matches!(&e, mysql_async::Error::Server(s) if matches!(s.code, 1044 | 1045 | 1049 | 1698));
                let message = redact_url(&e.to_string());
                if fatal {
                    return Err(DbError::Connect {
                        server: ep.name.clone(),
                        url: ep.redacted(),
                        attempts,
                        secs: start.elapsed().as_secs_f64(),
                        message,
                    });
                }
                message
            }
            Err(_) => format!("no answer within {:.1}s", left.as_secs_f64()),
        };
        if start.elapsed() + delay >= budget {
            return Err(DbError::Connect {
                server: ep.name.clone(),
                url: ep.redacted(),
                attempts,
                secs: start.elapsed().as_secs_f64(),
                message,
            });
        }
        tracing::debug!(server = %ep.name, attempt = attempts, error = %message, "connect failed, retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// How often an idle connection must be used so that the server does not
/// close it: a third of the session's `wait_timeout`, between half a
/// second and five minutes.
pub async fn keepalive_interval(conn: &mut Conn) -> Duration {
    let secs: Option<u64> = conn
        .query_first("SELECT @@SESSION.wait_timeout")
        .await
        .ok()
        .flatten();
    Duration::from_millis(secs.unwrap_or(28_800).saturating_mul(1000) / 3)
        .clamp(Duration::from_millis(500), Duration::from_secs(300))
}

/// `COM_PING`, bounded by `within`: keeps an idle connection alive and
/// proves it is.
pub async fn ping(conn: &mut Conn, server: &str, within: Duration) -> Result<(), DbError> {
    match tokio::time::timeout(within, conn.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DbError::query(server, "keep-alive ping", e)),
        Err(_) => Err(DbError::no_answer(server, "keep-alive ping", within)),
    }
}

/// Quotes an identifier with backticks.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Server flavour, detected from `@@version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

/// Detects the flavour of a connection's server.
pub async fn flavor(conn: &mut Conn, server: &str) -> Result<Flavor, DbError> {
    let v: Option<String> = conn
        .query_first("SELECT @@version")
        .await
        .map_err(|e| DbError::query(server, "SELECT @@version", e))?;
    Ok(
        if v.unwrap_or_default()
            .to_ascii_lowercase()
            .contains("mariadb")
        {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        },
    )
}

#[cfg(test)]
mod tests {
    use super::quote_ident;

    #[test]
    fn no_answer_is_a_transient_lost_connection() {
        let e = super::DbError::no_answer("s1", "COMMIT", std::time::Duration::from_secs(5));
        assert_eq!(e.retry(), super::Retry::Transient);
        assert_eq!(e.transient(), Some(super::Transient::ConnectionLost));
        assert!(e.to_string().contains("no answer within 5s"), "{e}");
    }

    #[test]
    fn quotes_backticks() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_ident("orders"), "`orders`");
    }
}
