//! Throw-away MariaDB servers for reshard's tests, the demo and the
//! benchmark.
//!
//! This is a crate of its own, used only as a dev-dependency, so the
//! `reshard` library and binary carry no server-spawning code, no root
//! password and none of the dependencies below (`tempfile`, `rand`, `libc`).
//!
//! No Docker here: each [`MariaDb`] is a real `mariadbd` started from the
//! installed binaries, with a fresh data dir (`mariadb-install-db`) in a
//! temporary directory, listening on a free port of 127.0.0.1. `root` logs in
//! over TCP with [`MariaDb::ROOT_PASSWORD`]; [`MariaDb::url`] gives the
//! connection URL. Starting one takes about a second. If the binaries are
//! missing, [`MariaDb::start`] fails with a message pointing at
//! `scripts/ensure-mariadb.sh` (which `scripts/test` runs first).
//!
//! Each server has its own temporary directory holding its data dir
//! (`data/`, with `error.log`, `mysql.sock` and any binlog) and a private
//! `--tmpdir` (`tmp/`): a starting `mariadbd` deletes every `#sql*` file in
//! its tmpdir, so servers sharing /tmp break each other's startup.
//!
//! A source (`binlog: true`) writes a ROW binlog with full row images and
//! full row metadata into its data dir. The testkit's own account setup is
//! not binlogged, so a fresh source's binlog holds only the server's header
//! events.
//!
//! ```no_run
//! use std::sync::OnceLock;
//! use reshard_testkit::{Cluster, MariaDb, ServerOptions, TestkitError};
//!
//! // One set of servers per test binary, shared by its tests; each test
//! // works in databases of its own.
//! fn cluster() -> &'static Cluster {
//!     static CLUSTER: OnceLock<Cluster> = OnceLock::new();
//!     CLUSTER.get_or_init(|| Cluster::start(2).expect("start MariaDB cluster"))
//! }
//!
//! # fn main() -> Result<(), TestkitError> {
//! let c = cluster();
//! c.source.sql("CREATE DATABASE t_insert; CREATE TABLE t_insert.a (id INT PRIMARY KEY)")?;
//! let url = c.targets[0].url("t_insert"); // mysql://root:…@127.0.0.1:<port>/t_insert
//! # let _ = url;
//!
//! // Or a single server, stopped when dropped:
//! let db = MariaDb::start(ServerOptions { binlog: true, ..Default::default() })?;
//! assert_eq!(db.sql("SELECT @@log_bin")?.trim(), "1");
//! # Ok(())
//! # }
//! ```
//!
//! # Teardown and the watchdog
//!
//! Dropping a [`MariaDb`] stops the server (SIGTERM, then SIGKILL after
//! 10 s) and removes its data dir. But servers kept in `static` `OnceLock`s
//! are never dropped, and a test binary can be killed outright. So alongside
//! each server runs a tiny detached shell, in its own process group, that
//! polls the test process once a second; once it is gone, the shell kills
//! the server with SIGKILL and removes the data dir. Thus no server outlives
//! its test process by more than about a second, however the process ends.
//! (`PR_SET_PDEATHSIG` would not do: it fires when the spawning *thread*
//! exits, and test threads end long before the process.)

mod binaries;
mod error;
pub mod scenario;
mod server;
mod watchdog;

use std::thread;

pub use error::TestkitError;
pub use server::{MariaDb, ServerOptions};

/// The `reshard` binary for an example (the demo, the benchmark): the path
/// in the environment variable `var` when set, else the one built beside
/// the example (`target/<profile>/examples/X` → `target/<profile>/reshard`).
pub fn reshard_binary(var: &str) -> std::path::PathBuf {
    if let Ok(p) = std::env::var(var) {
        return p.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| {
            p.parent()
                .and_then(|d| d.parent())
                .map(|d| d.join("reshard"))
        })
        .unwrap_or_else(|| "reshard".into())
}

/// A binlog-writing source (server id 1) and `n` plain target servers
/// (server ids 2, 3, …), started in parallel.
#[derive(Debug)]
pub struct Cluster {
    /// The source: `binlog: true`, `server_id` 1.
    pub source: MariaDb,
    /// The targets: no binlog, `server_id` 2 + index.
    pub targets: Vec<MariaDb>,
}

impl Cluster {
    /// Start the source and `n_targets` targets, each in its own thread. On
    /// any failure the servers already started are stopped and the first
    /// error is returned.
    pub fn start(n_targets: usize) -> Result<Cluster, TestkitError> {
        let mut options = vec![ServerOptions::source(1)];
        options.extend((0..n_targets).map(|i| ServerOptions::plain(2 + i as u32)));

        let results: Vec<Result<MariaDb, TestkitError>> = thread::scope(|s| {
            let handles: Vec<_> = options
                .into_iter()
                .map(|opts| s.spawn(move || MariaDb::start(opts)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(TestkitError::ThreadPanicked)))
                .collect()
        });

        let mut servers = Vec::with_capacity(results.len());
        for result in results {
            // Returning early drops (stops) the servers started so far.
            servers.push(result?);
        }
        let mut servers = servers.into_iter();
        let source = servers.next().ok_or(TestkitError::ThreadPanicked)?;
        Ok(Cluster {
            source,
            targets: servers.collect(),
        })
    }

    /// Stop all servers at once (each as [`MariaDb::stop`]). Dropping the
    /// cluster also stops them, one after the other.
    pub fn stop(&mut self) {
        thread::scope(|s| {
            for server in std::iter::once(&mut self.source).chain(self.targets.iter_mut()) {
                s.spawn(move || server.stop());
            }
        });
    }

    /// The source followed by the targets.
    pub fn servers(&self) -> impl Iterator<Item = &MariaDb> {
        std::iter::once(&self.source).chain(self.targets.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binlog_server_starts_and_stops() {
        let mut db = MariaDb::start(ServerOptions {
            binlog: true,
            ..Default::default()
        })
        .expect("start MariaDB");
        let out = db.sql("SELECT @@log_bin, @@binlog_format").expect("query");
        assert_eq!(out.trim_end(), "1\tROW");
        assert_eq!(
            db.sql("SELECT @@binlog_row_image, @@binlog_row_metadata, @@server_id")
                .expect("query")
                .trim_end(),
            "FULL\tFULL\t1"
        );
        assert!(db.url("").ends_with(&format!("127.0.0.1:{}", db.port())));
        assert!(db.url("x").ends_with(&format!(":{}/x", db.port())));

        let err = db.sql("SELECT * FROM no_such_db.t").expect_err("must fail");
        assert!(err.to_string().contains("no_such_db"), "{err}");

        let datadir = db.datadir().to_path_buf();
        assert!(datadir.join("mysql-bin.index").exists());
        db.stop();
        assert!(!db.is_running());
        assert!(db.sql("SELECT 1").is_err());
        drop(db);
        assert!(!datadir.exists(), "data dir must be removed on drop");
    }

    #[test]
    fn cluster_with_one_target() {
        let mut cluster = Cluster::start(1).expect("start cluster");
        assert_eq!(cluster.targets.len(), 1);
        assert_eq!(
            cluster
                .source
                .sql("SELECT @@log_bin, @@server_id")
                .expect("q")
                .trim_end(),
            "1\t1"
        );
        let target = &cluster.targets[0];
        assert_eq!(
            target
                .sql("SELECT @@log_bin, @@server_id")
                .expect("q")
                .trim_end(),
            "0\t2"
        );
        assert_ne!(cluster.source.port(), target.port());

        // The TCP account is a full root, and utf8mb4 round-trips.
        target
            .sql(
                "CREATE DATABASE tk; CREATE TABLE tk.t (id INT PRIMARY KEY, s VARCHAR(20));\
                 INSERT INTO tk.t VALUES (1, 'héllo 🦀'), (2, NULL);",
            )
            .expect("setup");
        assert_eq!(
            target
                .sql("SELECT id, s FROM tk.t ORDER BY id")
                .expect("select"),
            "1\théllo 🦀\n2\tNULL\n"
        );
        assert!(target
            .sql("SHOW GRANTS FOR 'root'@'%'")
            .expect("grants")
            .contains("WITH GRANT OPTION"));

        cluster.stop();
        assert!(cluster.source.sql("SELECT 1").is_err());
    }
}
