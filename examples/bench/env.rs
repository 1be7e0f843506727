//! Settings, the servers, and `reshard` processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use reshard::config::Endpoint;
use reshard::position::Position;
use reshard_testkit::scenario::connect;
use reshard_testkit::{MariaDb, ServerOptions};

use crate::Res;

/// Logical shards, `s0`…`s3`; shard `s` lives on target server `s % 2`.
pub const SHARDS: usize = 4;

fn var<T: std::str::FromStr>(name: &str, default: T) -> Res<T> {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a number").into()),
        Err(_) => Ok(default),
    }
}

/// What the environment asks for. Every size has a variable.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `BENCH_ROWS` (500,000): rows inserted, then updated in one
    /// transaction (the decode, ceiling and end-to-end stream holds twice
    /// as many row changes).
    pub rows: usize,
    /// `BENCH_RUNS` (3): runs of the cheap rows (decode, ceiling); the
    /// median is reported.
    pub runs: usize,
    /// `BENCH_E2E_RUNS` (1): runs of the end-to-end row.
    pub e2e_runs: usize,
    /// `BENCH_LAG_RATE` (20,000) row changes/s for `BENCH_LAG_SECS` (60).
    pub lag_rate: u64,
    pub lag_secs: u64,
    /// `BENCH_MEMORY_BYTES` (1 GiB): binlog size of the large transaction.
    pub memory_bytes: u64,
    /// `BENCH_SNAPSHOT_ROWS` (1,000,000): rows the initial copy copies.
    pub snapshot_rows: usize,
    /// `BENCH_SMALL_TXNS` (100,000): one-row `INSERT` transactions, then
    /// as many one-row `UPDATE` transactions (row `small`).
    pub small_txns: usize,
    /// `BENCH_PIPELINE`: extra `[pipeline]` lines for reshard's config
    /// (e.g. `lanes_per_shard = 4`), `;`-separated.
    pub pipeline: String,
    /// `BENCH_BUFFER_POOL` (512M): InnoDB buffer pool of every server.
    pub buffer_pool: String,
    /// `BENCH_JSON` (bench.json): where the JSON report goes.
    pub json: PathBuf,
    /// `BENCH_TIMEOUT` (1800 s): longest wait for any one step.
    pub timeout: Duration,
}

impl Settings {
    pub fn from_env() -> Res<Settings> {
        Ok(Settings {
            rows: var("BENCH_ROWS", 500_000)?,
            runs: var("BENCH_RUNS", 3usize)?.max(1),
            e2e_runs: var("BENCH_E2E_RUNS", 1usize)?.max(1),
            lag_rate: var("BENCH_LAG_RATE", 20_000)?,
            lag_secs: var("BENCH_LAG_SECS", 60)?,
            memory_bytes: var("BENCH_MEMORY_BYTES", 1u64 << 30)?,
            snapshot_rows: var("BENCH_SNAPSHOT_ROWS", 1_000_000)?,
            small_txns: var("BENCH_SMALL_TXNS", 100_000)?,
            pipeline: std::env::var("BENCH_PIPELINE")
                .unwrap_or_default()
                .replace(';', "\n"),
            buffer_pool: std::env::var("BENCH_BUFFER_POOL").unwrap_or_else(|_| "512M".into()),
            json: std::env::var("BENCH_JSON")
                .unwrap_or_else(|_| "bench.json".into())
                .into(),
            timeout: Duration::from_secs(var("BENCH_TIMEOUT", 1800)?),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "rows {} (+ one UPDATE of all), runs {} (e2e {}), lag {} rows/s for {} s, memory {} MiB, snapshot {} rows, small {} transactions, pipeline [{}]",
            self.rows,
            self.runs,
            self.e2e_runs,
            self.lag_rate,
            self.lag_secs,
            self.memory_bytes >> 20,
            self.snapshot_rows,
            self.small_txns,
            self.pipeline.replace('\n', "; ")
        )
    }

    /// Writer connections reshard opens: its lanes (`lanes_per_shard`,
    /// default 2, on each of the 4 shards, or `lanes_per_server` on each
    /// of the 2 servers). The loaders open as many.
    pub fn connections(&self) -> usize {
        match self.pipeline_value("lanes_per_server") {
            Some(n) => n * 2,
            None => self.pipeline_value("lanes_per_shard").unwrap_or(2) * SHARDS,
        }
    }

    /// Rows per batch of reshard (and per statement of the loader).
    pub fn batch_size(&self) -> usize {
        self.pipeline_value("batch_size").unwrap_or(500)
    }

    /// A numeric `[pipeline]` setting given in `BENCH_PIPELINE`.
    fn pipeline_value(&self, key: &str) -> Option<usize> {
        self.pipeline.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim().parse().ok()).flatten()
        })
    }
}

/// The servers and a scratch directory.
pub struct Bench {
    pub source: MariaDb,
    pub targets: Vec<MariaDb>,
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
    pub timeout: Duration,
}

impl Bench {
    /// Starts the source and the two target servers, and creates the shard
    /// databases (`s0`…`s3`) with reshard's tables.
    pub async fn start(s: &Settings) -> Res<Bench> {
        let opts = |mut o: ServerOptions| {
            o.extra_args = vec![
                format!("--innodb-buffer-pool-size={}", s.buffer_pool),
                "--max-binlog-size=1G".into(),
            ];
            o
        };
        let source = MariaDb::start(opts(ServerOptions::source(1)))?;
        let targets = vec![
            MariaDb::start(opts(ServerOptions::plain(2)))?,
            MariaDb::start(opts(ServerOptions::plain(3)))?,
        ];
        source.sql("CREATE DATABASE bench")?;
        let bench = Bench {
            source,
            targets,
            dir: tempfile::tempdir()?,
            bin: reshard_testkit::reshard_binary("BENCH_RESHARD"),
            timeout: s.timeout,
        };
        for sh in 0..SHARDS {
            bench.target_of(sh).sql(&format!("CREATE DATABASE s{sh}"))?;
        }
        Ok(bench)
    }

    pub fn target_of(&self, shard: usize) -> &MariaDb {
        &self.targets[shard % self.targets.len()]
    }

    pub fn shard_endpoint(&self, shard: usize) -> Endpoint {
        Endpoint::new(
            format!("s{shard}"),
            self.target_of(shard).url(&format!("s{shard}")),
        )
    }

    /// Creates `name` on the source and, with the version column, in every
    /// shard.
    pub fn create_table(&self, name: &str, columns: &str) -> Res<()> {
        self.source.sql(&format!(
            "CREATE TABLE bench.{name} ({columns}) ENGINE=InnoDB"
        ))?;
        for sh in 0..SHARDS {
            self.target_of(sh).sql(&format!(
                "CREATE TABLE s{sh}.{name} ({columns}, _reshard_version BINARY(16) NOT NULL DEFAULT '') ENGINE=InnoDB"
            ))?;
        }
        Ok(())
    }

    /// Empties `table` in every shard, and reshard's state: the control
    /// database and the shards' tombstones and applied positions.
    pub fn reset(&self, table: &str) -> Res<()> {
        self.targets[0].sql("DROP DATABASE IF EXISTS meta")?;
        for sh in 0..SHARDS {
            let t = self.target_of(sh);
            t.sql(&format!("TRUNCATE TABLE s{sh}.{table}"))?;
            for own in ["_reshard_tombstone", "_reshard_applied"] {
                let exists = t.sql(&format!(
                    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 's{sh}' AND TABLE_NAME = '{own}'"
                ))?;
                if exists.trim() == "1" {
                    t.sql(&format!("TRUNCATE TABLE s{sh}.{own}"))?;
                }
            }
        }
        Ok(())
    }

    /// Writes a config whose rules route `bench.<table>` by
    /// `crc32(buyer) % 4` for every table named, runs `migrate`, and
    /// returns the config's path.
    /// Each row starts with a fresh control database.
    pub fn configure(&self, name: &str, tables: &[&str], s: &Settings) -> Res<PathBuf> {
        self.targets[0].sql("DROP DATABASE IF EXISTS meta")?;
        let dir = self.dir.path().join(name);
        let rules = dir.join("rules");
        std::fs::create_dir_all(&rules)?;
        for t in tables {
            let key = if *t == "hb" { "id" } else { "buyer" };
            std::fs::write(
                rules.join(format!("{t}.toml")),
                format!(
                    "source = \"bench.{t}\"\nshard = \"crc32({key}) % 4\"\nshards = [\"s0\", \"s1\", \"s2\", \"s3\"]\n"
                ),
            )?;
        }
        let mut targets = String::new();
        for sh in 0..SHARDS {
            targets.push_str(&format!("s{sh} = \"{}\"\n", self.shard_endpoint(sh).url));
        }
        let cfg = dir.join("reshard.toml");
        std::fs::write(
            &cfg,
            format!(
                "[source]\nurl = \"{}\"\nserver_id = 78\n[control]\nurl = \"{}\"\n[targets]\n{targets}[pipeline]\nrules = \"rules\"\n{}{}\n",
                self.source.url(""),
                self.targets[0].url("meta"),
                if s.pipeline.contains("progress_interval_secs") { "" } else { "progress_interval_secs = 5\n" },
                s.pipeline
            ),
        )?;
        self.migrate(&cfg)?;
        Ok(cfg)
    }

    /// `reshard migrate` (after [`Bench::reset`]).
    pub fn migrate(&self, cfg: &Path) -> Res<()> {
        let out = Command::new(&self.bin)
            .args(["migrate", "--config"])
            .arg(cfg)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "reshard migrate failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(())
    }

    /// Starts `reshard run` (logging to a file beside the config).
    pub fn run_reshard(&self, cfg: &Path, from: Option<&Position>) -> Res<Reshard> {
        let log = cfg.with_extension("log");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("run");
        if let Some(p) = from {
            cmd.args(["--from", &p.to_string()]);
        }
        let child = cmd
            .arg("--config")
            .arg(cfg)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let started = Instant::now();
        // BENCH_PERF=<dir>: sample the process with `perf record -g`
        let perf = match std::env::var("BENCH_PERF") {
            Ok(dir) => Some(
                Command::new("perf")
                    .args(["record", "-F", "499"])
                    // BENCH_PERF_DWARF: unwind with DWARF (.eh_frame),
                    // whole call chains without frame pointers
                    .args(if std::env::var_os("BENCH_PERF_DWARF").is_some() {
                        &["--call-graph", "dwarf,32768"][..]
                    } else {
                        &["-g"][..]
                    })
                    .args(["-p", &child.id().to_string(), "-o"])
                    .arg(Path::new(&dir).join(format!(
                            "perf-{}.data",
                            cfg.parent()
                                .and_then(|d| d.file_name())
                                .map_or("run".into(), |n| n.to_string_lossy())
                        )))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?,
            ),
            Err(_) => None,
        };
        Ok(Reshard {
            child,
            log,
            started,
            perf,
        })
    }

    pub async fn source_conn(&self) -> Res<Conn> {
        Ok(connect(&self.source.url("bench")).await?)
    }

    pub async fn head(&self) -> Res<Position> {
        let mut c = connect(&self.source.url("")).await?;
        let p = reshard::source::head(&mut c).await?;
        c.disconnect().await?;
        Ok(p)
    }
}

/// A running `reshard run`.
pub struct Reshard {
    child: Child,
    pub log: PathBuf,
    pub started: Instant,
    /// `perf record` attached to it (`BENCH_PERF=<dir>`).
    perf: Option<Child>,
}

impl Reshard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Fails when the process has ended (with its log's tail).
    pub fn check_alive(&mut self) -> Res<()> {
        if let Some(st) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!("reshard exited ({st}):\n{}", tail.join("\n")).into());
        }
        Ok(())
    }

    /// Waits until the checkpoint reaches `end`; returns the seconds since
    /// the process started.
    pub async fn wait_checkpoint(&mut self, b: &Bench, end: &Position) -> Res<f64> {
        let mut ctl: Option<Conn> = None;
        loop {
            self.check_alive()?;
            if ctl.is_none() {
                ctl = connect(&b.targets[0].url("meta")).await.ok();
            }
            if let Some(c) = ctl.as_mut() {
                let cp: Option<(String, u64)> = c
                    .query_first("SELECT binlog_file, binlog_pos FROM reshard_checkpoint")
                    .await
                    .unwrap_or(None);
                if let Some((f, p)) = cp {
                    if Position::new(f, p) >= *end {
                        return Ok(self.started.elapsed().as_secs_f64());
                    }
                }
            }
            if self.started.elapsed() > b.timeout {
                return Err(format!("reshard did not reach {end} in {:?}", b.timeout).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, and wait for the exit. With `BENCH_LOGS=<dir>`, the log is
    /// kept there.
    pub fn stop(mut self) -> Res<()> {
        if let Some(mut perf) = self.perf.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(perf.id() as i32, libc::SIGINT);
            }
            perf.wait()?;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait()?;
        if let Ok(dir) = std::env::var("BENCH_LOGS") {
            let name = self
                .log
                .parent()
                .and_then(|d| d.file_name())
                .map_or("run".into(), |n| n.to_string_lossy().into_owned());
            let _ = std::fs::copy(&self.log, Path::new(&dir).join(format!("{name}.log")));
        }
        Ok(())
    }
}

/// Median of a sample (the upper one of an even count).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}
