//! The TOML shape of `reshard.toml`, with documented defaults.
//! Every struct denies unknown fields, so a typo is an error naming the key.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::observe::{RawMetrics, RawThrottle};
use super::{OnDdl, OnDeriveError, TlsMode};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub source: RawSource,
    pub control: RawControl,
    /// shard name → `mysql://user:pass@host:port/db`, or a table with
    /// `url` and the connection options of [`RawEndpoint`].
    pub targets: BTreeMap<String, RawTarget>,
    pub pipeline: RawPipeline,
    /// `[metrics]`: the Prometheus endpoint. Default: none.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// `[throttle]`: rows/s cap and target lag. Default: none.
    #[serde(default)]
    pub throttle: RawThrottle,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// `mysql://user:${PASSWORD}@host:port` — `${VAR}` comes from the environment.
    pub url: String,
    /// The replica server id reshard registers with; unique among replicas.
    pub server_id: u32,
    /// See [`RawConnOpts`].
    pub password_file: Option<String>,
    pub ssl_mode: Option<TlsMode>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    /// Database for checkpoints and dead letters, e.g. `mysql://root@host/reshard_meta`.
    pub url: String,
    /// See [`RawConnOpts`].
    pub password_file: Option<String>,
    pub ssl_mode: Option<TlsMode>,
    pub ca_file: Option<String>,
}

/// Connection options besides the URL, in a server's section.
#[derive(Debug, Default)]
pub struct RawConnOpts {
    /// A file holding the password (relative to the config file; one
    /// trailing newline is dropped). Replaces a password in the URL.
    pub password_file: Option<String>,
    /// `disabled`, `preferred` (default), `required`, `verify-identity`.
    pub ssl_mode: Option<TlsMode>,
    /// CA certificate(s) (PEM) to verify the server against.
    pub ca_file: Option<String>,
}

/// A target: its URL alone, or a table with the URL and options.
#[derive(Debug)]
pub enum RawTarget {
    Url(String),
    Full(RawEndpoint),
}

/// `[targets] name = { url = "…", password_file = "…", … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    pub url: String,
    pub password_file: Option<String>,
    pub ssl_mode: Option<TlsMode>,
    pub ca_file: Option<String>,
}

impl RawSource {
    pub fn conn(&self) -> RawConnOpts {
        RawConnOpts {
            password_file: self.password_file.clone(),
            ssl_mode: self.ssl_mode,
            ca_file: self.ca_file.clone(),
        }
    }
}

impl RawControl {
    pub fn conn(&self) -> RawConnOpts {
        RawConnOpts {
            password_file: self.password_file.clone(),
            ssl_mode: self.ssl_mode,
            ca_file: self.ca_file.clone(),
        }
    }
}

impl RawTarget {
    /// The URL and the options.
    pub fn parts(&self) -> (&str, RawConnOpts) {
        match self {
            RawTarget::Url(u) => (u, RawConnOpts::default()),
            RawTarget::Full(e) => (
                &e.url,
                RawConnOpts {
                    password_file: e.password_file.clone(),
                    ssl_mode: e.ssl_mode,
                    ca_file: e.ca_file.clone(),
                },
            ),
        }
    }
}

impl<'de> Deserialize<'de> for RawTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = RawTarget;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mysql:// URL, or a table with url, password_file, ssl_mode, ca_file")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawTarget, E> {
                Ok(RawTarget::Url(s.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<RawTarget, A::Error> {
                RawEndpoint::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(RawTarget::Full)
            }
        }
        d.deserialize_any(Either)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// Directory of rule files, relative to the config file.
    pub rules: String,
    /// Pipeline name (key of its checkpoint). Default `default`.
    #[serde(default = "default_name")]
    pub name: String,
    /// The target shards this process applies (scale-out: several
    /// processes, disjoint subsets). Default: every shard of `[targets]`.
    /// Spanned, so an unknown name is reported with its line and column.
    #[serde(default)]
    pub shards: Option<toml::Spanned<Vec<toml::Spanned<String>>>>,
    /// Version epoch; raise it to continue on purpose after the source's
    /// binlog numbering went backwards. Default 0.
    #[serde(default)]
    pub epoch: u16,
    /// Writer connections (lanes) per target shard, each serving that
    /// shard alone. Default 2.
    #[serde(default)]
    pub lanes_per_shard: Option<usize>,
    /// Instead: writer connections per target server, shared by the
    /// shards it holds.
    #[serde(default)]
    pub lanes_per_server: Option<usize>,
    /// Operations per batch transaction. Default 500. A batch also ends
    /// at 4 MiB of rows (`writer::queue::BATCH_BYTES`).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// How long a batch waits for more rows, in ms. Default 20.
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    /// Drain time allowed after SIGINT/SIGTERM, in seconds. Default 30.
    #[serde(default = "default_shutdown")]
    pub shutdown_timeout_secs: u64,
    /// Start-up connection budget per server, in seconds. Default 10.
    #[serde(default = "default_connect")]
    pub connect_timeout_secs: u64,
    /// Seconds between progress log lines. Default 10.
    #[serde(default = "default_progress")]
    pub progress_interval_secs: u64,
    /// `halt` (default) or `dead-letter`.
    #[serde(default = "default_on_error")]
    pub on_derive_error: OnDeriveError,
    /// What a DDL statement on a mapped table does: `halt` (default),
    /// `follow` or `ignore`.
    #[serde(default = "default_on_ddl")]
    pub on_ddl: OnDdl,
    /// How long a `lookup()` table is cached before it is re-read, in
    /// seconds. Default 60.
    #[serde(default = "default_lookup_ttl")]
    pub lookup_ttl_secs: u64,
    /// Rows per chunk (page) of the initial copy, at most: a page also
    /// stops near 4 MiB of rows (`snapshot::read`). Default 1000.
    #[serde(default = "default_snapshot_chunk")]
    pub snapshot_chunk_rows: usize,
    /// Rows per batch (one statement) of the initial copy's lanes.
    /// Default: `batch_size`; at most 10000.
    #[serde(default)]
    pub snapshot_batch_rows: Option<usize>,
    /// Throttle of the initial copy in rows/s; 0 = unlimited. Default 0.
    #[serde(default)]
    pub snapshot_rows_per_sec: u64,
    /// Source connections reading the initial copy's chunks in parallel
    /// (tables, and key ranges of large tables). Default 4.
    #[serde(default = "default_snapshot_readers")]
    pub snapshot_readers: usize,
    /// How the initial copy's readers and the lanes' batches of plain
    /// upserts talk to the servers: `"wire"`, connections of reshard's
    /// own where they can (no TLS, password authentication; on MariaDB
    /// plain upserts go out as arrays, `COM_STMT_BULK_EXECUTE`), or
    /// `"driver"`. Default `"wire"`.
    #[serde(default)]
    pub protocol: super::Protocol,
    /// Tombstones are kept for this much binlog time behind the checkpoint,
    /// in seconds. Default 604800 (7 days).
    #[serde(default = "default_retention")]
    pub tombstone_retention_secs: u64,
    /// Seconds between tombstone pruning passes. Default 600.
    #[serde(default = "default_prune_interval")]
    pub prune_interval_secs: u64,
    /// Source heartbeat period in seconds. Default 5.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// A stage with work that makes no progress for this long is reported
    /// stalled (error log, `reshard_stalled`), in seconds; 0 = never.
    /// Default 120.
    #[serde(default = "default_stall")]
    pub stall_secs: u64,
    /// MiB of rows events held in memory while their transaction's outcome
    /// is not read yet (the open transaction and every prepared XA
    /// transaction together); beyond, they go to a temporary file in
    /// `spool_dir`. Default 64.
    #[serde(default = "default_hold_memory")]
    pub hold_memory_mb: u64,
    /// Directory of those temporary files, relative to the config file.
    /// Default: the system's temporary directory.
    #[serde(default)]
    pub spool_dir: Option<String>,
    /// Row changes of a transaction handed to the router at a time (a
    /// large transaction streams through in chunks of this size). Default
    /// 100: small enough that a chunk's rows are routed while the decoder
    /// left them in the cache (1000 cost reshard about 8 % more CPU in
    /// the benchmark's `UPDATE`, BENCHMARKS.md).
    #[serde(default = "default_stream_chunk")]
    pub stream_chunk_rows: usize,
}

fn default_name() -> String {
    "default".into()
}
fn default_snapshot_readers() -> usize {
    4
}
fn default_batch() -> usize {
    500
}
fn default_linger() -> u64 {
    20
}
fn default_shutdown() -> u64 {
    30
}
fn default_connect() -> u64 {
    10
}
fn default_progress() -> u64 {
    10
}
fn default_on_error() -> OnDeriveError {
    OnDeriveError::Halt
}
fn default_on_ddl() -> OnDdl {
    OnDdl::Halt
}
fn default_stream_chunk() -> usize {
    crate::source::Hold::default().chunk_rows
}
fn default_snapshot_chunk() -> usize {
    1000
}
fn default_retention() -> u64 {
    7 * 24 * 3600
}
fn default_prune_interval() -> u64 {
    600
}
fn default_lookup_ttl() -> u64 {
    60
}
fn default_heartbeat() -> u64 {
    5
}
fn default_stall() -> u64 {
    120
}
fn default_hold_memory() -> u64 {
    64
}
