//! The testkit's error type.

use std::path::PathBuf;

/// Everything that can go wrong while starting, using or stopping a
/// throw-away MariaDB server. Messages are meant to be read by a developer
/// whose test just failed, so they carry the command output or log tail.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A MariaDB program is not installed (or not where we look).
    #[error(
        "MariaDB {what} not found (looked for {names} in PATH, /usr/sbin and /usr/bin); \
         run scripts/ensure-mariadb.sh to install Debian's mariadb-server"
    )]
    BinaryMissing {
        /// What the program is for, e.g. "server".
        what: &'static str,
        /// The names that were tried, e.g. "mariadbd or mysqld".
        names: String,
    },

    /// An operating-system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// `mariadb-install-db` failed.
    #[error("{program} failed ({status}) for data dir {datadir}:\n{output}")]
    Install {
        /// The install program that ran.
        program: PathBuf,
        /// Its exit status.
        status: String,
        /// The data directory being installed.
        datadir: PathBuf,
        /// Its combined stdout and stderr (tail).
        output: String,
    },

    /// `mariadbd` did not come up (exited, could not bind, or timed out).
    #[error("mariadbd did not start: {reason}\n--- tail of {log} ---\n{tail}")]
    Start {
        /// Why we gave up.
        reason: String,
        /// The server's error log.
        log: PathBuf,
        /// The last lines of the error log (and of the server's stderr).
        tail: String,
    },

    /// The `mariadb` client exited with an error.
    #[error("SQL failed on MariaDB at port {port} ({status}): {stderr}\n--- SQL ---\n{sql}")]
    Sql {
        /// The server's TCP port.
        port: u16,
        /// The client's exit status.
        status: String,
        /// The client's stderr (the server's error message).
        stderr: String,
        /// The statements sent (possibly shortened).
        sql: String,
    },

    /// A scenario step (connection, query, comparison) failed.
    #[error("scenario: {0}")]
    Scenario(String),

    /// A server-starting thread of [`Cluster::start`](super::Cluster::start) panicked.
    #[error("a thread starting a MariaDB server panicked")]
    ThreadPanicked,
}

impl TestkitError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        TestkitError::Io {
            what: what.into(),
            source,
        }
    }
}

impl From<std::io::Error> for TestkitError {
    fn from(e: std::io::Error) -> Self {
        TestkitError::io("scenario files", e)
    }
}
