//! One throw-away `mariadbd`.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::binaries::Binaries;
use super::watchdog::Watchdog;
use super::TestkitError;

/// How many free ports we try before giving up when `mariadbd` cannot bind.
const PORT_ATTEMPTS: u32 = 5;
/// How long we wait for a started server to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`MariaDb::stop`] waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest temporary-directory path that leaves room for `/data/mysql.sock`
/// in a unix socket address (108 bytes on Linux, including the NUL).
const MAX_DIR_LEN: usize = 85;
/// InnoDB sizing, used both to install and to run (so nothing is resized).
const INNODB_ARGS: &[&str] = &[
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=48M",
];

/// How to start a [`MariaDb`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// Write a binary log (a source): adds
    /// `--log-bin=<datadir>/mysql-bin --binlog-format=ROW
    /// --binlog-row-image=FULL --binlog-row-metadata=FULL`.
    pub binlog: bool,
    /// `--server-id`.
    pub server_id: u32,
    /// Extra `mariadbd` command-line arguments, appended last (so they win).
    pub extra_args: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            binlog: false,
            server_id: 1,
            extra_args: Vec::new(),
        }
    }
}

impl ServerOptions {
    /// A binlog-writing source with the given server id.
    pub fn source(server_id: u32) -> Self {
        ServerOptions {
            binlog: true,
            server_id,
            extra_args: Vec::new(),
        }
    }

    /// A plain (no binlog) server with the given server id, e.g. a target.
    pub fn plain(server_id: u32) -> Self {
        ServerOptions {
            binlog: false,
            server_id,
            extra_args: Vec::new(),
        }
    }
}

/// A running throw-away MariaDB server in a temporary data dir, reachable on
/// `127.0.0.1:<port>` as `root` with [`MariaDb::ROOT_PASSWORD`].
///
/// Dropping it stops the server and removes the data dir; if the process
/// dies first, a watchdog does both (see the [module docs](super)).
#[derive(Debug)]
pub struct MariaDb {
    port: u16,
    server_id: u32,
    /// What it was started with, for [`MariaDb::start_again`].
    opts: ServerOptions,
    client: PathBuf,
    child: Option<Child>,
    watchdog: Option<Watchdog>,
    /// `<dir>/data`.
    datadir: PathBuf,
    /// Holds `data/` (the data dir), `tmp/` (the server's `--tmpdir`) and
    /// the watchdog's pid file. Declared last: removed after the server and
    /// watchdog are gone.
    dir: TempDir,
}

impl MariaDb {
    /// Password of the `root` accounts (`root@localhost`, `root@127.0.0.1`,
    /// `root@%`).
    pub const ROOT_PASSWORD: &'static str = "reshard-test-pw";

    /// Install a fresh data dir, start `mariadbd` on a free loopback port,
    /// wait until it accepts connections and give `root` its password.
    /// Takes about a second.
    pub fn start(opts: ServerOptions) -> Result<MariaDb, TestkitError> {
        let started = Instant::now();
        let bins = Binaries::locate()?;
        let dir = make_dir()?;
        // Watch from the start: if we die while installing, the files go too.
        let watchdog = Watchdog::spawn(dir.path())?;
        let datadir = dir.path().join("data");
        let mut server = MariaDb {
            port: 0,
            server_id: opts.server_id,
            opts: opts.clone(),
            client: bins.client.clone(),
            child: None,
            watchdog: Some(watchdog),
            datadir,
            dir,
        };
        // A private --tmpdir: every starting mariadbd deletes all `#sql*`
        // files in its tmpdir, which breaks other servers sharing /tmp
        // (seen as "ERROR: 1051 Unknown table 'mysql.tmp_user_sys'" from a
        // concurrent mariadb-install-db).
        for sub in [server.datadir.as_path(), &server.tmpdir()] {
            fs::create_dir(sub)
                .map_err(|e| TestkitError::io(format!("cannot create {}", sub.display()), e))?;
        }
        server.install(&bins)?;
        let installed = started.elapsed();

        let mut attempt = 1;
        loop {
            let port = free_port()?;
            match server.launch(&bins, port, &opts) {
                Ok(()) => break,
                Err(Launch::PortInUse(e)) if attempt < PORT_ATTEMPTS => {
                    tracing::debug!(port, attempt, error = %e, "mariadbd could not bind; retrying on another port");
                    attempt += 1;
                }
                Err(Launch::PortInUse(e)) | Err(Launch::Failed(e)) => return Err(e),
            }
        }
        server.setup_accounts()?;
        // Prove the TCP account works before handing the server out.
        server.sql("SELECT 1")?;
        tracing::debug!(
            port = server.port,
            server_id = opts.server_id,
            binlog = opts.binlog,
            datadir = %server.datadir().display(),
            install_ms = installed.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "started throw-away MariaDB"
        );
        Ok(server)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `--server-id` the server runs with.
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// Connection URL for the TCP root account:
    /// `mysql://root:<pw>@127.0.0.1:<port>/<db>`, without the `/<db>` part
    /// when `db` is empty.
    pub fn url(&self, db: &str) -> String {
        let base = format!(
            "mysql://root:{}@127.0.0.1:{}",
            Self::ROOT_PASSWORD,
            self.port
        );
        if db.is_empty() {
            base
        } else {
            format!("{base}/{db}")
        }
    }

    /// Run SQL statements (separated by `;`) through the `mariadb`
    /// command-line client over TCP as root, in batch mode without column
    /// names (`-N -B`). Returns stdout: one line per row, columns separated
    /// by tabs, `NULL` for NULL. A failing statement stops the batch and is
    /// returned as [`TestkitError::Sql`] with the server's message.
    pub fn sql(&self, sql: &str) -> Result<String, TestkitError> {
        let port = self.port.to_string();
        let password = format!("--password={}", Self::ROOT_PASSWORD);
        self.run_client(
            &[
                "--protocol=tcp",
                "--host=127.0.0.1",
                "--port",
                &port,
                "--user=root",
                &password,
            ],
            sql,
        )
    }

    /// The data directory (also holds `error.log`, `mysql.sock` and, with
    /// `binlog`, the `mysql-bin.*` files).
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// The server's `--tmpdir` (next to the data dir).
    fn tmpdir(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    /// The unix socket (`<datadir>/mysql.sock`).
    pub fn socket_path(&self) -> PathBuf {
        self.datadir().join("mysql.sock")
    }

    /// The server's error log (`<datadir>/error.log`).
    pub fn error_log(&self) -> PathBuf {
        self.datadir().join("error.log")
    }

    /// Where `mariadbd`'s stderr goes (messages before the error log opens).
    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("mariadbd.stderr")
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stop the server: SIGTERM, wait up to 10 s, then SIGKILL. Also stops
    /// the watchdog. Idempotent; [`Drop`] calls it. The data dir stays until
    /// the value is dropped; [`MariaDb::start_again`] starts it again.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, self.port);
        }
        // Dropping the watchdog kills it; the server is already gone.
        self.watchdog.take();
    }

    /// Start a stopped server again: the same data dir, port and options,
    /// as after a restart of a production server (clients see their
    /// connections drop and the server come back at the same address).
    /// Does nothing when it is running. Fails when the port was taken in
    /// the meantime.
    pub fn start_again(&mut self) -> Result<(), TestkitError> {
        if self.is_running() {
            return Ok(());
        }
        let bins = Binaries::locate()?;
        if self.watchdog.is_none() {
            self.watchdog = Some(Watchdog::spawn(self.dir.path())?);
        }
        let opts = self.opts.clone();
        match self.launch(&bins, self.port, &opts) {
            Ok(()) => Ok(()),
            Err(Launch::PortInUse(e) | Launch::Failed(e)) => Err(e),
        }
    }

    /// [`MariaDb::stop`] (SIGTERM: a clean shutdown), then
    /// [`MariaDb::start_again`].
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.stop();
        self.start_again()
    }

    /// `mariadb-install-db` into the data dir, with root authenticating by
    /// password (empty until [`MariaDb::setup_accounts`]) rather than by
    /// unix socket credentials.
    fn install(&self, bins: &Binaries) -> Result<(), TestkitError> {
        let datadir = self.datadir();
        let mut cmd = Command::new(&bins.install_db);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            // Skip the host name lookup (fails in some containers).
            .arg("--force")
            .arg(format!("--tmpdir={}", self.tmpdir().display()))
            .args(INNODB_ARGS);
        if is_root() {
            cmd.arg("--user=root");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own group, so the watchdog can kill the script together with
            // its bootstrap server.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                TestkitError::io(format!("cannot run {}", bins.install_db.display()), e)
            })?;
        if let Some(watchdog) = &self.watchdog {
            watchdog.set_target(child.id())?;
        }
        let output = child.wait_with_output().map_err(|e| {
            TestkitError::io(format!("cannot run {}", bins.install_db.display()), e)
        })?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Err(TestkitError::Install {
            program: bins.install_db.clone(),
            status: output.status.to_string(),
            datadir: datadir.to_path_buf(),
            output: tail_lines(&text, 40),
        })
    }

    /// Spawn `mariadbd` on `port` and wait until it answers on its socket.
    fn launch(&mut self, bins: &Binaries, port: u16, opts: &ServerOptions) -> Result<(), Launch> {
        let dir = self.datadir().to_path_buf();
        let log = self.error_log();
        let stderr_path = self.stderr_path();
        // Only what this attempt writes counts when we look for errors.
        let log_offset = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let stderr = fs::File::create(&stderr_path).map_err(|e| {
            Launch::Failed(TestkitError::io(
                format!("cannot create {}", stderr_path.display()),
                e,
            ))
        })?;

        let mut cmd = Command::new(&bins.server);
        cmd.arg("--no-defaults");
        if is_root() {
            cmd.arg("--user=root");
        }
        cmd.arg(format!("--datadir={}", dir.display()))
            .arg(format!("--socket={}", self.socket_path().display()))
            .arg(format!("--tmpdir={}", self.tmpdir().display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--skip-name-resolve")
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .args(INNODB_ARGS)
            .arg("--innodb-flush-log-at-trx-commit=2")
            .arg("--sync-binlog=0")
            .arg(format!("--server-id={}", opts.server_id))
            .arg("--max-connections=500")
            // Refused handshakes (port probes) must never block 127.0.0.1.
            .arg("--max-connect-errors=1000000")
            .arg("--character-set-server=utf8mb4")
            .arg("--collation-server=utf8mb4_general_ci");
        if opts.binlog {
            cmd.arg(format!("--log-bin={}", dir.join("mysql-bin").display()))
                .arg("--binlog-format=ROW")
                .arg("--binlog-row-image=FULL")
                .arg("--binlog-row-metadata=FULL");
        }
        cmd.args(&opts.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // Own process group: terminal signals aimed at the test don't
            // reach it half-way; the watchdog or stop() end it.
            .process_group(0);
        let child = cmd.spawn().map_err(|e| {
            Launch::Failed(TestkitError::io(
                format!("cannot spawn {}", bins.server.display()),
                e,
            ))
        })?;
        let pid = child.id();
        self.child = Some(child);
        self.port = port;
        if let Some(watchdog) = &self.watchdog {
            watchdog.set_target(pid).map_err(Launch::Failed)?;
        }
        self.wait_ready(log_offset)
    }

    fn wait_ready(&mut self, log_offset: u64) -> Result<(), Launch> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let socket = self.socket_path();
        loop {
            let exited: Option<ExitStatus> = match self.child.as_mut() {
                Some(child) => child
                    .try_wait()
                    .map_err(|e| Launch::Failed(TestkitError::io("cannot check on mariadbd", e)))?,
                None => None,
            };
            if let Some(status) = exited {
                self.child = None;
                let tail = self.log_tail(log_offset);
                let err = TestkitError::Start {
                    reason: format!(
                        "mariadbd exited during startup ({status}) on port {}",
                        self.port
                    ),
                    log: self.error_log(),
                    tail: tail.clone(),
                };
                let port_taken =
                    tail.contains("Address already in use") || tail.contains("Bind on TCP/IP port");
                return Err(if port_taken {
                    Launch::PortInUse(err)
                } else {
                    Launch::Failed(err)
                });
            }
            if socket.exists() && self.socket_ping() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(Launch::Failed(TestkitError::Start {
                    reason: format!(
                        "not accepting connections after {} s (port {})",
                        READY_TIMEOUT.as_secs(),
                        self.port
                    ),
                    log: self.error_log(),
                    tail: self.log_tail(log_offset),
                }));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the server answers on its unix socket: `SELECT 1` as root
    /// with the fresh install's empty password, where "access denied" (the
    /// accounts were set up before a restart) also proves it is up.
    fn socket_ping(&self) -> bool {
        let output = Command::new(&self.client)
            .arg("--no-defaults")
            .arg("--protocol=socket")
            .arg(format!("--socket={}", self.socket_path().display()))
            .args([
                "--user=root",
                "--connect-timeout=2",
                "-N",
                "-B",
                "-e",
                "SELECT 1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match output {
            Ok(out) => {
                out.status.success() || String::from_utf8_lossy(&out.stderr).contains("ERROR 1045")
            }
            Err(_) => false,
        }
    }

    /// Give every root account the password and create the TCP accounts.
    /// Runs over the unix socket with `sql_log_bin=0`, so a source's binlog
    /// holds no testkit statements.
    fn setup_accounts(&self) -> Result<(), TestkitError> {
        let pw = Self::ROOT_PASSWORD;
        let sql = format!(
            "SET SESSION sql_log_bin = 0;\n\
             CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED BY '{pw}';\n\
             GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n\
             CREATE OR REPLACE USER 'root'@'%' IDENTIFIED BY '{pw}';\n\
             GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;\n\
             ALTER USER IF EXISTS 'root'@'::1' IDENTIFIED BY '{pw}';\n\
             ALTER USER 'root'@'localhost' IDENTIFIED BY '{pw}';\n"
        );
        let socket = format!("--socket={}", self.socket_path().display());
        self.run_client(&["--protocol=socket", &socket, "--user=root"], &sql)?;
        Ok(())
    }

    /// Run the client with connection `args`, feeding `sql` on stdin.
    fn run_client(&self, args: &[&str], sql: &str) -> Result<String, TestkitError> {
        let mut child = Command::new(&self.client)
            .arg("--no-defaults")
            .args(args)
            .args(["--default-character-set=utf8mb4", "-N", "-B"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TestkitError::io(format!("cannot run {}", self.client.display()), e))?;
        let stdin = child.stdin.take();
        // Feed stdin from another thread: a large script and a large result
        // would otherwise deadlock on full pipes.
        let output = thread::scope(|s| {
            s.spawn(move || {
                if let Some(mut stdin) = stdin {
                    // An early exit (failed statement) closes the pipe; the
                    // exit status reports that.
                    let _ = stdin.write_all(sql.as_bytes());
                }
            });
            child.wait_with_output()
        })
        .map_err(|e| TestkitError::io(format!("cannot run {}", self.client.display()), e))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(TestkitError::Sql {
                port: self.port,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
                sql: shorten(sql, 2000),
            })
        }
    }

    /// The last lines of the error log (from `offset`) and of mariadbd's stderr.
    fn log_tail(&self, offset: u64) -> String {
        let mut text = read_from(&self.error_log(), offset);
        let stderr = read_from(&self.stderr_path(), 0);
        if !stderr.trim().is_empty() {
            text.push_str("\n--- stderr ---\n");
            text.push_str(&stderr);
        }
        tail_lines(&text, 30)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Outcome of one launch attempt that failed.
enum Launch {
    /// The port was taken between our probe and the server's bind: retry.
    PortInUse(TestkitError),
    Failed(TestkitError),
}

fn terminate(child: &mut Child, port: u16) {
    if !matches!(child.try_wait(), Ok(None)) {
        let _ = child.wait();
        return;
    }
    // The child is not reaped yet, so its pid cannot have been recycled.
    let pid = child.id() as libc::pid_t;
    if pid > 1 {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    tracing::warn!(
        port,
        "mariadbd ignored SIGTERM for {} s; killing it",
        STOP_TIMEOUT.as_secs()
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// A fresh temporary directory to serve as data dir, short enough for the
/// unix socket path.
fn make_dir() -> Result<TempDir, TestkitError> {
    let builder = || {
        let mut b = tempfile::Builder::new();
        b.prefix("reshard-mariadb-");
        b
    };
    let dir = builder()
        .tempdir()
        .map_err(|e| TestkitError::io("cannot create a temporary data dir", e))?;
    if dir.path().as_os_str().len() <= MAX_DIR_LEN {
        return Ok(dir);
    }
    // $TMPDIR is too deep for a socket path: fall back to /tmp.
    builder()
        .tempdir_in("/tmp")
        .map_err(|e| TestkitError::io("cannot create a temporary data dir in /tmp", e))
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| TestkitError::io("cannot bind 127.0.0.1:0 to find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| TestkitError::io("cannot read the probe socket's address", e))?
        .port();
    Ok(port)
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = f.read_to_end(&mut buf);
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_port_is_reported_for_retry_and_restart_works() {
        let mut db = MariaDb::start(ServerOptions::plain(7)).expect("start MariaDB");
        db.sql("CREATE DATABASE keep_me").expect("create");
        db.stop();

        let bins = Binaries::locate().expect("binaries");
        let busy = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let busy_port = busy.local_addr().expect("addr").port();
        match db.launch(&bins, busy_port, &ServerOptions::plain(7)) {
            Err(Launch::PortInUse(e)) => {
                assert!(e.to_string().contains("Address already in use"), "{e}")
            }
            Err(Launch::Failed(e)) => panic!("expected PortInUse, got {e}"),
            Ok(()) => panic!("mariadbd started on a taken port"),
        }
        drop(busy);

        // Same data dir, new port: the server comes back with its data and
        // the accounts.
        let port = free_port().expect("port");
        if let Err(Launch::PortInUse(e) | Launch::Failed(e)) =
            db.launch(&bins, port, &ServerOptions::plain(7))
        {
            panic!("restart failed: {e}");
        }
        assert_eq!(
            db.sql("SHOW DATABASES LIKE 'keep_me'").expect("show"),
            "keep_me\n"
        );
    }

    #[test]
    fn start_again_keeps_port_data_and_accounts() {
        let mut db = MariaDb::start(ServerOptions::source(9)).expect("start MariaDB");
        let port = db.port();
        db.sql("CREATE DATABASE kept").expect("create");
        db.restart().expect("restart");
        assert_eq!(db.port(), port);
        assert_eq!(
            db.sql("SHOW DATABASES LIKE 'kept'").expect("show"),
            "kept\n"
        );
        assert_eq!(db.sql("SELECT @@log_bin").expect("log_bin"), "1\n");
        db.stop();
        assert!(db.sql("SELECT 1").is_err());
        db.start_again().expect("start again");
        db.start_again().expect("running: nothing to do");
        assert_eq!(db.sql("SELECT 1").expect("up"), "1\n");
    }

    #[test]
    fn sql_errors_carry_the_server_message_and_output_is_tab_separated() {
        let db = MariaDb::start(ServerOptions::default()).expect("start MariaDB");
        assert_eq!(
            db.sql("SELECT 1, 'a b', NULL; SELECT 2").expect("q"),
            "1\ta b\tNULL\n2\n"
        );
        let err = db.sql("SELECT 1; SELEKT 2").expect_err("syntax error");
        let msg = err.to_string();
        assert!(msg.contains("ERROR 1064"), "{msg}");
        assert!(msg.contains("SELEKT 2"), "{msg}");
        // A large script and a large result do not deadlock the pipes.
        let big = format!("SELECT REPEAT('x', 200000); {}", "DO 1;".repeat(20000));
        assert_eq!(db.sql(&big).expect("big").len(), 200_001);
    }

    #[test]
    fn missing_binary_message_points_at_the_install_script() {
        assert!(crate::binaries::find(&["reshard-no-such-program"]).is_none());
        let err = TestkitError::BinaryMissing {
            what: "server",
            names: "mariadbd or mysqld".into(),
        };
        assert!(err.to_string().contains("scripts/ensure-mariadb.sh"));
    }

    #[test]
    fn helpers() {
        assert_eq!(tail_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(tail_lines("", 2), "");
        assert!(shorten("ééé", 3).starts_with("é…"));
        assert_eq!(shorten("abc", 3), "abc");
    }
}
