//! The validated configuration object (`reshard.toml`; every key is shown
//! in `reshard.example.toml` at the top of the repository).
//!
//! Loading is two passes, as in Vector: [`raw`] deserializes the TOML with
//! `deny_unknown_fields` (an unknown key is an error that names the key,
//! with file, line and column), then `Config::from_raw` expands
//! `${VAR}` references, parses URLs, resolves paths relative to the config
//! file (never the working directory) and checks cross-field rules.
//! Commands only ever see a [`Config`].

pub mod observe;
pub mod raw;
mod redact;

use crate::source::Hold;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use redact::{redact_url, Redacted};

/// What to do with a row whose shard key cannot be derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnDeriveError {
    /// Stop the pipeline with the row, rule and error (default).
    Halt,
    /// Record the row in the control database's dead-letter table and go on.
    DeadLetter,
}

/// What a DDL statement on a mapped source table does to the pipeline
/// (see [`crate::source::ddl_policy`]). Whatever the mode, a DDL that drops,
/// renames or retypes a key, shard-expression or version column halts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnDdl {
    /// Stop at every DDL of a mapped table (default; Vitess's `--on-ddl=STOP`).
    Halt,
    /// Carry added nullable or defaulted columns (adding them to the
    /// targets), go on past changes that touch no column, halt on the rest.
    Follow,
    /// Log a warning and go on; the targets are the operator's business.
    Ignore,
}

/// How the copy's readers and the lanes' plain upserts talk to the
/// servers (`protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Connections of reshard's own ([`crate::db::wire`]) where they
    /// speak what the connection needs (no TLS, password
    /// authentication), the driver's elsewhere (default).
    #[default]
    Wire,
    /// Always the driver's connections.
    Driver,
}

/// How a connection uses TLS (`ssl_mode`, or `?ssl-mode=` in the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Never.
    Disabled,
    /// TLS when the server offers it, without verifying its certificate
    /// (the MySQL clients' default).
    #[default]
    Preferred,
    /// TLS or no connection, without verifying the certificate
    /// (encryption against eavesdroppers, not against impostors).
    Required,
    /// TLS with the certificate verified against `ca_file` (else the
    /// built-in web roots) and issued for the host name of the URL.
    VerifyIdentity,
}

impl std::str::FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "disabled" => TlsMode::Disabled,
            "preferred" => TlsMode::Preferred,
            "required" => TlsMode::Required,
            "verify-identity" => TlsMode::VerifyIdentity,
            _ => {
                return Err(format!(
                    "{s:?} is not a TLS mode (disabled, preferred, required, verify-identity)"
                ))
            }
        })
    }
}

/// TLS settings of an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    pub mode: TlsMode,
    /// CA certificate(s) (PEM), absolute: what `verify-identity` trusts
    /// (instead of the built-in web roots).
    pub ca_file: Option<PathBuf>,
}

/// A MySQL endpoint: its name for messages and its URL (secret inside).
#[derive(Clone)]
pub struct Endpoint {
    /// `source`, `control`, or the shard name.
    pub name: String,
    pub url: String,
    /// From `password_file`: replaces the URL's password. Never shown.
    pub password: Option<String>,
    pub tls: Tls,
}

impl Endpoint {
    /// An endpoint with the URL's own password and TLS `preferred`.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Endpoint {
        Endpoint {
            name: name.into(),
            url: url.into(),
            password: None,
            tls: Tls::default(),
        }
    }

    /// The URL with the password replaced by `***`, for every message.
    pub fn redacted(&self) -> String {
        redact_url(&self.url)
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.redacted())
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub source: Endpoint,
    pub server_id: u32,
    pub control: Endpoint,
    /// Shard name → endpoint, in name order.
    pub targets: BTreeMap<String, Endpoint>,
    pub pipeline: Pipeline,
    /// `[metrics]`.
    pub metrics: observe::Metrics,
    /// `[throttle]`.
    pub throttle: observe::Throttle,
}

/// How many writer connections (lanes) the targets get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lanes {
    /// `lanes_per_server`: that many lanes per target server, shared by
    /// the shards it holds (targets whose URLs differ only in the
    /// database; see `writer::pool`).
    PerServer(usize),
    /// `lanes_per_shard`: that many lanes per shard, each serving its
    /// shard alone (the default).
    PerShard(usize),
}

impl Lanes {
    /// How many lanes write each shard (with `lanes_per_server`, all of
    /// its server's).
    pub fn per_shard(self) -> usize {
        match self {
            Lanes::PerServer(n) | Lanes::PerShard(n) => n,
        }
    }
}

/// `lanes_per_shard` when neither it nor `lanes_per_server` is set.
pub const DEFAULT_LANES_PER_SHARD: usize = 2;

/// The largest `batch_size` and `snapshot_batch_rows`.
const MAX_BATCH: usize = 10_000;

impl Config {
    /// Whether this process applies the shard `name` (`[pipeline] shards`;
    /// every shard by default).
    pub fn applies(&self, name: &str) -> bool {
        self.pipeline
            .shards
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == name))
    }

    /// The configuration the initial copy's lanes run with: batches of
    /// `snapshot_batch_rows` in place of `batch_size`. Every copy batch is
    /// plain upserts sent as one statement, and the rows it holds are
    /// bounded by its batches (`snapshot::dispatch`), so the copy
    /// can be tuned apart from the stream, whose batches also close on
    /// time (`BENCHMARKS.md`, session 9).
    pub fn for_copy(&self) -> Config {
        let mut cfg = self.clone();
        cfg.pipeline.batch_size = self.pipeline.snapshot_batch_rows;
        cfg
    }

    /// The targets this process applies, in name order.
    pub fn applied_targets(&self) -> impl Iterator<Item = &Endpoint> {
        self.targets.values().filter(|ep| self.applies(&ep.name))
    }

    /// The names of the shards this process applies, in name order.
    pub fn applied_shards(&self) -> Vec<String> {
        self.applied_targets().map(|ep| ep.name.clone()).collect()
    }
}

/// `[pipeline]` after validation.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Names this process's rows in the control database (checkpoint,
    /// copy progress, floor, position log, schema history, dead letters)
    /// and its lanes' rows on the shards: `[pipeline] name`, followed by
    /// `/` and the shard subset when `shards` names one ([`subset_key`]).
    pub name: String,
    /// `[pipeline] name` as configured, shared by every shard subset: the
    /// per-shard leases are taken under it.
    pub base_name: String,
    /// `[pipeline] shards`: the subset this process applies, sorted;
    /// `None` when it applies every shard of `[targets]` (also when the
    /// list names them all).
    pub shards: Option<Vec<String>>,
    /// Directory of rule files, absolute.
    pub rules: PathBuf,
    pub epoch: u16,
    pub lanes: Lanes,
    pub batch_size: usize,
    pub linger: Duration,
    pub shutdown_timeout: Duration,
    pub connect_timeout: Duration,
    pub progress_interval: Duration,
    pub on_derive_error: OnDeriveError,
    pub on_ddl: OnDdl,
    /// DDL events (by start position) the operator handled and lets
    /// through whatever `on_ddl` says (`run --accept-ddl`; not a config key).
    pub accept_ddl: Vec<crate::position::Position>,
    pub heartbeat: Duration,
    pub lookup_ttl: Duration,
    pub snapshot_chunk_rows: usize,
    /// Rows per batch of the initial copy's lanes ([`Config::for_copy`]);
    /// `batch_size` unless set.
    pub snapshot_batch_rows: usize,
    /// 0 = unlimited.
    pub snapshot_rows_per_sec: u64,
    /// Source connections reading the copy's chunks in parallel.
    pub snapshot_readers: usize,
    pub protocol: Protocol,
    pub tombstone_retention: Duration,
    pub prune_interval: Duration,
    /// `None`: stalls are not reported.
    pub stall: Option<Duration>,
    /// How transactions' rows are held until their outcome and handed out
    /// (`hold_memory_mb`, `spool_dir`, `stream_chunk_rows`).
    pub hold: Hold,
}

/// A config that cannot be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: {key}: environment variable ${{{var}}} is not set", located(path, *at))]
    MissingVar {
        path: PathBuf,
        /// Line and column of the key, once known.
        at: Option<(usize, usize)>,
        key: String,
        var: String,
    },
    #[error("{}: {key}: cannot read {file}: {source}", located(path, *at))]
    File {
        path: PathBuf,
        at: Option<(usize, usize)>,
        key: String,
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {key}: {message}", located(path, *at))]
    Invalid {
        path: PathBuf,
        at: Option<(usize, usize)>,
        key: String,
        message: String,
    },
}

/// `path:line:column`, or the path alone.
fn located(path: &Path, at: Option<(usize, usize)>) -> String {
    match at {
        Some((l, c)) => format!("{}:{l}:{c}", path.display()),
        None => path.display().to_string(),
    }
}

impl ConfigError {
    /// Places an error about a key at the key's line and column in `text`.
    fn place(mut self, text: &str) -> ConfigError {
        if let ConfigError::MissingVar { key, at, .. }
        | ConfigError::File { key, at, .. }
        | ConfigError::Invalid { key, at, .. } = &mut self
        {
            *at = key_position(text, key);
        }
        self
    }
}

/// Where `section.key[.inner]` is written in a config text (1-based line
/// and column of the key), when it is written as `[section]` then
/// `key = …` (`inner` inside an inline table on that line).
fn key_position(text: &str, key: &str) -> Option<(usize, usize)> {
    let mut parts = key.splitn(3, '.');
    let (section, name, inner) = (parts.next()?, parts.next(), parts.next());
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.trim() == format!("[{section}]"))?;
    let Some(name) = name else {
        return Some((header + 1, 1));
    };
    for (i, line) in lines.iter().enumerate().skip(header + 1) {
        let t = line.trim_start();
        if t.starts_with('[') {
            break;
        }
        let is_key = t
            .strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if !is_key {
            continue;
        }
        let mut col = line.len() - t.len();
        if let Some(inner) = inner {
            col = line
                .find(&format!("{inner} "))
                .or_else(|| line.find(&format!("{inner}=")))
                .unwrap_or(col);
        }
        return Some((i + 1, line[..col].chars().count() + 1));
    }
    Some((header + 1, 1))
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text, &|k| std::env::var(k).ok())
    }

    /// Parses config text; `env` resolves `${VAR}`.
    pub fn parse(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        Self::from_raw(path, text, raw, env).map_err(|e| e.place(text))
    }

    fn from_raw(
        path: &Path,
        text: &str,
        mut raw: raw::RawConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let check = Check { path, text, env };
        let source = check.endpoint("source", "source", &raw.source.url, raw.source.conn())?;
        if raw.source.server_id == 0 {
            return Err(check.invalid(
                "source.server_id",
                "must be a non-zero replica server id, unique among the source's replicas".into(),
            ));
        }
        let control = check.control(&raw.control.url, raw.control.conn())?;
        let targets = check.targets(&raw.targets)?;
        let shards = check.shards(raw.pipeline.shards.take(), &targets)?;
        let pipeline = check.pipeline(raw.pipeline, shards)?;
        let invalid = |(key, message): (String, String)| check.invalid(&key, message);
        let metrics = observe::metrics(raw.metrics).map_err(invalid)?;
        let throttle = observe::throttle(raw.throttle).map_err(invalid)?;
        Ok(Config {
            path: path.to_path_buf(),
            source,
            server_id: raw.source.server_id,
            control,
            targets,
            pipeline,
            metrics,
            throttle,
        })
    }

    /// Every endpoint a command needs: source, control, then the targets.
    pub fn endpoints(&self) -> Vec<&Endpoint> {
        let mut v = vec![&self.source, &self.control];
        v.extend(self.targets.values());
        v
    }
}

/// The second pass of loading: the file's path (for messages and relative
/// paths) and how `${VAR}` is resolved.
struct Check<'a> {
    path: &'a Path,
    text: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Check<'_> {
    fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            at: None,
            key: key.to_string(),
            message,
        }
    }

    /// A server's endpoint: the URL with `${VAR}`s expanded and its TLS
    /// parameters taken out (it must then parse), the password from
    /// `password_file`, the TLS settings. `section` prefixes the keys in
    /// messages (`source`, `control`, `targets.NAME`).
    fn endpoint(
        &self,
        section: &str,
        name: &str,
        url: &str,
        conn: raw::RawConnOpts,
    ) -> Result<Endpoint, ConfigError> {
        let key = format!("{section}.url");
        let url = expand_env(url, self.env).map_err(|var| ConfigError::MissingVar {
            path: self.path.to_path_buf(),
            at: None,
            key: key.clone(),
            var,
        })?;
        let (url, url_mode, url_ca) = split_tls_params(&url).map_err(|m| self.invalid(&key, m))?;
        if let Err(e) = mysql_async::Opts::from_url(&url) {
            return Err(self.invalid(
                &key,
                format!(
                    "{} is not a valid mysql:// URL: {}",
                    redact_url(&url),
                    redact_url(&e.to_string())
                ),
            ));
        }
        let password = match &conn.password_file {
            Some(f) => Some(self.password(&format!("{section}.password_file"), f)?),
            None => None,
        };
        let ca_file = conn.ca_file.or(url_ca).map(|f| self.relative(&f));
        if let Some(f) = &ca_file {
            std::fs::metadata(f).map_err(|source| ConfigError::File {
                path: self.path.to_path_buf(),
                at: None,
                key: format!("{section}.ca_file"),
                file: f.clone(),
                source,
            })?;
        }
        Ok(Endpoint {
            name: name.to_string(),
            url,
            password,
            tls: Tls {
                mode: conn.ssl_mode.or(url_mode).unwrap_or_default(),
                ca_file,
            },
        })
    }

    /// A path relative to the config file's directory.
    fn relative(&self, file: &str) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).join(file)
    }

    /// The password in `file`, without one trailing newline.
    fn password(&self, key: &str, file: &str) -> Result<String, ConfigError> {
        let f = self.relative(file);
        let text = std::fs::read_to_string(&f).map_err(|source| ConfigError::File {
            path: self.path.to_path_buf(),
            at: None,
            key: key.to_string(),
            file: f.clone(),
            source,
        })?;
        let pw = text.strip_suffix('\n').unwrap_or(&text);
        Ok(pw.strip_suffix('\r').unwrap_or(pw).to_string())
    }

    /// `[control] url`, which must name the control database.
    fn control(&self, url: &str, conn: raw::RawConnOpts) -> Result<Endpoint, ConfigError> {
        let control = self.endpoint("control", "control", url, conn)?;
        if db_name(&control.url).is_none() {
            return Err(self.invalid(
                "control.url",
                format!(
                    "{} names no database (expected e.g. mysql://user@host:3306/reshard_meta)",
                    control.redacted()
                ),
            ));
        }
        Ok(control)
    }

    /// `[targets]`: at least one, each URL naming its database.
    fn targets(
        &self,
        raw: &BTreeMap<String, raw::RawTarget>,
    ) -> Result<BTreeMap<String, Endpoint>, ConfigError> {
        if raw.is_empty() {
            return Err(self.invalid("targets", "at least one target shard is required".into()));
        }
        let mut targets = BTreeMap::new();
        for (name, target) in raw {
            let key = format!("targets.{name}");
            let (url, conn) = target.parts();
            let ep = self.endpoint(&key, name, url, conn)?;
            if db_name(&ep.url).is_none() {
                return Err(self.invalid(
                    &key,
                    format!(
                        "{} names no database (expected mysql://user@host:port/DB)",
                        ep.redacted()
                    ),
                ));
            }
            targets.insert(name.clone(), ep);
        }
        Ok(targets)
    }

    /// An error at a place in the file.
    fn at(&self, span: std::ops::Range<usize>, message: String) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError::Syntax {
            path: self.path.to_path_buf(),
            line,
            column,
            message,
        }
    }

    /// `[pipeline] shards`: every name a target, none twice, at least one.
    /// A list of every target is the default (`None`).
    fn shards(
        &self,
        raw: Option<toml::Spanned<Vec<toml::Spanned<String>>>>,
        targets: &BTreeMap<String, Endpoint>,
    ) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let span = raw.span();
        let mut names: Vec<String> = Vec::new();
        for name in raw.into_inner() {
            let span = name.span();
            let name = name.into_inner();
            if !targets.contains_key(&name) {
                let known: Vec<&str> = targets.keys().map(String::as_str).collect();
                return Err(self.at(
                    span,
                    format!(
                        "pipeline.shards: unknown shard {name:?} (the shards of [targets] are {})",
                        known.join(", ")
                    ),
                ));
            }
            if names.contains(&name) {
                return Err(self.at(span, format!("pipeline.shards: {name:?} is named twice")));
            }
            names.push(name);
        }
        if names.is_empty() {
            return Err(self.at(
                span,
                "pipeline.shards: name at least one shard (leave the key out to apply every shard)"
                    .into(),
            ));
        }
        names.sort();
        Ok((names.len() < targets.len()).then_some(names))
    }

    /// `[pipeline]`: limits checked, the rules directory made absolute
    /// against the config file's directory, durations typed.
    fn pipeline(
        &self,
        p: raw::RawPipeline,
        shards: Option<Vec<String>>,
    ) -> Result<Pipeline, ConfigError> {
        let base = self.path.parent().unwrap_or(Path::new("."));
        let rules = base.join(&p.rules);
        let positive = |key: &str, v: u64| -> Result<(), ConfigError> {
            if v == 0 {
                Err(self.invalid(key, "must be greater than 0".into()))
            } else {
                Ok(())
            }
        };
        let lanes = match (p.lanes_per_server, p.lanes_per_shard) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    "pipeline.lanes_per_shard",
                    "set lanes_per_server or lanes_per_shard, not both".into(),
                ))
            }
            (Some(n), None) => {
                positive("pipeline.lanes_per_server", n as u64)?;
                Lanes::PerServer(n)
            }
            (None, Some(n)) => {
                positive("pipeline.lanes_per_shard", n as u64)?;
                Lanes::PerShard(n)
            }
            (None, None) => Lanes::PerShard(DEFAULT_LANES_PER_SHARD),
        };
        positive("pipeline.batch_size", p.batch_size as u64)?;
        positive("pipeline.connect_timeout_secs", p.connect_timeout_secs)?;
        positive("pipeline.snapshot_chunk_rows", p.snapshot_chunk_rows as u64)?;
        positive("pipeline.snapshot_readers", p.snapshot_readers as u64)?;
        positive("pipeline.stream_chunk_rows", p.stream_chunk_rows as u64)?;
        let snapshot_batch_rows = p.snapshot_batch_rows.unwrap_or(p.batch_size);
        positive("pipeline.snapshot_batch_rows", snapshot_batch_rows as u64)?;
        for (key, n) in [
            ("pipeline.batch_size", p.batch_size),
            ("pipeline.snapshot_batch_rows", snapshot_batch_rows),
        ] {
            if n > MAX_BATCH {
                return Err(self.invalid(key, format!("{n} is above the maximum of {MAX_BATCH}")));
            }
        }
        if p.name.is_empty() || p.name.len() > 64 {
            return Err(self.invalid("pipeline.name", "must be 1 to 64 characters".into()));
        }
        let name = match &shards {
            None => p.name.clone(),
            Some(s) => subset_key(&p.name, s).ok_or_else(|| {
                self.invalid(
                    "pipeline.name",
                    format!("must be at most {} characters with `shards`", 64 - 18),
                )
            })?,
        };
        Ok(Pipeline {
            name,
            base_name: p.name,
            shards,
            rules,
            epoch: p.epoch,
            lanes,
            batch_size: p.batch_size,
            linger: Duration::from_millis(p.linger_ms),
            shutdown_timeout: Duration::from_secs(p.shutdown_timeout_secs),
            connect_timeout: Duration::from_secs(p.connect_timeout_secs),
            progress_interval: Duration::from_secs(p.progress_interval_secs.max(1)),
            on_derive_error: p.on_derive_error,
            on_ddl: p.on_ddl,
            accept_ddl: Vec::new(),
            heartbeat: Duration::from_secs(p.heartbeat_secs.max(1)),
            lookup_ttl: Duration::from_secs(p.lookup_ttl_secs),
            snapshot_chunk_rows: p.snapshot_chunk_rows,
            snapshot_batch_rows,
            snapshot_rows_per_sec: p.snapshot_rows_per_sec,
            snapshot_readers: p.snapshot_readers,
            protocol: p.protocol,
            tombstone_retention: Duration::from_secs(p.tombstone_retention_secs),
            prune_interval: Duration::from_secs(p.prune_interval_secs.max(1)),
            stall: (p.stall_secs > 0).then(|| Duration::from_secs(p.stall_secs)),
            hold: Hold {
                memory: usize::try_from(p.hold_memory_mb.saturating_mul(1 << 20))
                    .unwrap_or(usize::MAX),
                dir: p.spool_dir.map(|d| base.join(d)),
                chunk_rows: p.stream_chunk_rows,
                ..Hold::default()
            },
        })
    }
}

/// Takes `ssl-mode` and `ssl-ca` out of a URL's query (mysql_async does
/// not know them): the URL without them, and their values.
#[allow(clippy::type_complexity)]
fn split_tls_params(url: &str) -> Result<(String, Option<TlsMode>, Option<String>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None, None));
    };
    let (mut mode, mut ca, mut keep) = (None, None, Vec::new());
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        match k.replace('_', "-").as_str() {
            "ssl-mode" => mode = Some(v.parse::<TlsMode>()?),
            "ssl-ca" => ca = Some(v.to_string()),
            _ => keep.push(param),
        }
    }
    let url = if keep.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", keep.join("&"))
    };
    Ok((url, mode, ca))
}

/// The key of a shard subset's rows in the control database:
/// `name/s0,s1`, or `name/#` and 16 hex digits of the list's SHA-256 when
/// that is longer than the 64 characters the control tables allow; `None`
/// when even that does not fit.
pub fn subset_key(name: &str, shards: &[String]) -> Option<String> {
    use sha2::Digest;
    let list = shards.join(",");
    let key = format!("{name}/{list}");
    if key.len() <= 64 {
        return Some(key);
    }
    let digest = sha2::Sha256::digest(list.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("{name}/#{hex}");
    (key.len() <= 64).then_some(key)
}

/// The database named in a URL's path, if any.
pub fn db_name(url: &str) -> Option<String> {
    mysql_async::Opts::from_url(url)
        .ok()
        .and_then(|o| o.db_name().map(str::to_string))
        .filter(|d| !d.is_empty())
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Replaces `${VAR}` with the variable's value. `$${` stays a literal `${`.
/// Returns the name of the first variable that is not set.
pub fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if i > 0 && rest.as_bytes()[i - 1] == b'$' {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let var = &after[..end];
        match env(var) {
            Some(v) => out.push_str(&v),
            None => return Err(var.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[source]
url = "mysql://repl:${SOURCE_PASSWORD}@127.0.0.1:3306"
server_id = 4001

[control]
url = "mysql://root@127.0.0.1:3307/reshard_meta"

[targets]
shard0 = "mysql://root@127.0.0.1:3307/shop"
shard1 = "mysql://root@127.0.0.1:3308/shop"

[pipeline]
rules = "shard-rules"
"#;

    fn env(k: &str) -> Option<String> {
        (k == "SOURCE_PASSWORD").then(|| "s3cret".to_string())
    }

    #[test]
    fn parses_the_design_example_with_defaults() {
        let c = Config::parse(Path::new("/etc/reshard/reshard.toml"), GOOD, &env).unwrap();
        assert_eq!(c.source.url, "mysql://repl:s3cret@127.0.0.1:3306");
        assert_eq!(c.server_id, 4001);
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.pipeline.rules, Path::new("/etc/reshard/shard-rules"));
        assert_eq!(c.pipeline.lanes, Lanes::PerShard(2));
        assert!(c.pipeline.linger <= Duration::from_millis(100));
        assert_eq!(c.pipeline.shutdown_timeout, Duration::from_secs(30));
        assert!(!format!("{:?}", c).contains("s3cret"));
        assert_eq!(c.pipeline.hold, Hold::default());
        assert_eq!(c.pipeline.hold.memory, 64 << 20);
    }

    #[test]
    fn large_transaction_settings() {
        let text =
            format!("{GOOD}hold_memory_mb = 8\nspool_dir = \"spool\"\nstream_chunk_rows = 250\n");
        let c = Config::parse(Path::new("/etc/reshard/reshard.toml"), &text, &env).unwrap();
        let h = &c.pipeline.hold;
        assert_eq!(h.memory, 8 << 20);
        assert_eq!(h.dir.as_deref(), Some(Path::new("/etc/reshard/spool")));
        assert_eq!(h.chunk_rows, 250);
        let zero = format!("{GOOD}stream_chunk_rows = 0\n");
        let e = Config::parse(Path::new("/r.toml"), &zero, &env).unwrap_err();
        assert!(e.to_string().contains("stream_chunk_rows"), "{e}");
    }

    #[test]
    fn the_copy_has_its_own_batch_size() {
        let c = Config::parse(Path::new("r.toml"), GOOD, &env).unwrap();
        assert_eq!(c.pipeline.batch_size, 500);
        assert_eq!(c.pipeline.snapshot_batch_rows, 500);
        assert_eq!(c.for_copy().pipeline.batch_size, 500);
        let stream = format!("{GOOD}batch_size = 200\n");
        let c = Config::parse(Path::new("r.toml"), &stream, &env).unwrap();
        assert_eq!(
            c.for_copy().pipeline.batch_size,
            200,
            "batch_size unless set"
        );
        let set = format!("{GOOD}snapshot_batch_rows = 300\n");
        let c = Config::parse(Path::new("r.toml"), &set, &env).unwrap();
        assert_eq!(c.for_copy().pipeline.batch_size, 300);
        for (n, why) in [("0", "must be"), ("10001", "above the maximum of 10000")] {
            let text = format!("{GOOD}snapshot_batch_rows = {n}\n");
            let e = Config::parse(Path::new("r.toml"), &text, &env).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with("r.toml:15:1: pipeline.snapshot_batch_rows"),
                "{msg}"
            );
            assert!(msg.contains(why), "{msg}");
        }
    }

    /// `text` with every option it shows commented out (`# key = value`)
    /// enabled, but those named in `except`; and how many were enabled.
    fn enable_shown(text: &str, except: &[&str]) -> (String, usize) {
        let mut shown = 0;
        let enabled = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(opt)
                    if opt.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty()
                            && k.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_')
                            && !except.contains(&k)
                    }) =>
                {
                    shown += 1;
                    format!("{opt}\n")
                }
                _ => format!("{l}\n"),
            })
            .collect();
        (enabled, shown)
    }

    #[test]
    fn the_example_config_parses() {
        // the file a user copies (tests/examples.rs dry-runs it with its rules)
        let text = include_str!("../../reshard.example.toml");
        let env = |_: &str| Some("pw".to_string());
        let c = Config::parse(Path::new("/srv/reshard/reshard.toml"), text, &env).unwrap();
        assert_eq!(c.pipeline.rules, Path::new("/srv/reshard/shard-rules"));
        assert_eq!(c.targets.len(), 4);
        assert_eq!(c.pipeline.name, "shop");
        // the options shown commented out are real keys with valid values
        let (enabled, _) = enable_shown(text, &[]);
        assert!(enabled.contains("\nepoch = 0"), "{enabled}");
        Config::parse(Path::new("/srv/reshard/reshard.toml"), &enabled, &env).unwrap();
    }

    /// Regression: `snapshot_chunk_rows` took `stream_chunk_rows`' default
    /// (100) while the example and the README said 1000, so the copy read
    /// ten times the pages it should have (`BENCHMARKS.md`, session 12).
    /// Every option the example shows commented out with its default must
    /// leave the configuration as it is without it.
    #[test]
    fn the_defaults_the_example_shows_are_the_defaults() {
        let text = include_str!("../../reshard.example.toml");
        let env = |_: &str| Some("pw".to_string());
        let path = Path::new("/srv/reshard/reshard.toml");
        // shown as examples, not as their defaults (their comments say so)
        let examples = ["shards", "spool_dir", "listen", "max_lag_secs", "lag_query"];
        let (enabled, shown) = enable_shown(text, &examples);
        assert!(shown >= 20, "{shown} options shown");
        let base = Config::parse(path, text, &env).unwrap();
        let with = Config::parse(path, &enabled, &env).unwrap();
        assert_eq!(base.pipeline.snapshot_chunk_rows, 1000);
        assert_eq!(
            format!("{:?}", base.pipeline),
            format!("{:?}", with.pipeline)
        );
        assert_eq!(
            format!("{:?}", base.throttle),
            format!("{:?}", with.throttle)
        );
    }

    #[test]
    fn unknown_key_is_named_with_line_and_column() {
        let text = GOOD.replace("server_id = 4001", "server_id = 4001\nserverid = 1");
        let e = Config::parse(Path::new("r.toml"), &text, &env).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("serverid"), "{msg}");
        assert!(msg.starts_with("r.toml:5:1:"), "{msg}");
    }

    #[test]
    fn passwords_come_from_files_and_tls_from_sections_or_urls() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "f1le-pw\n").unwrap();
        std::fs::write(dir.path().join("ca.pem"), "-").unwrap();
        let text = GOOD
            .replace(
                "server_id = 4001",
                "server_id = 4001\npassword_file = \"pw\"\nssl_mode = \"verify-identity\"\nca_file = \"ca.pem\"",
            )
            .replace(
                "shard1 = \"mysql://root@127.0.0.1:3308/shop\"",
                "shard1 = { url = \"mysql://root@127.0.0.1:3308/shop?ssl-mode=required&ssl-ca=ca.pem\", password_file = \"pw\" }",
            );
        let c = Config::parse(&dir.path().join("r.toml"), &text, &env).unwrap();
        assert_eq!(c.source.password.as_deref(), Some("f1le-pw"));
        assert_eq!(c.source.tls.mode, TlsMode::VerifyIdentity);
        assert_eq!(c.source.tls.ca_file, Some(dir.path().join("ca.pem")));
        let s1 = &c.targets["shard1"];
        assert_eq!(s1.url, "mysql://root@127.0.0.1:3308/shop");
        assert_eq!(
            (s1.tls.mode, s1.password.as_deref()),
            (TlsMode::Required, Some("f1le-pw"))
        );
        assert_eq!(c.targets["shard0"].tls.mode, TlsMode::Preferred);
        assert!(!format!("{c:?}").contains("f1le-pw"));
        let bad = text.replace("password_file = \"pw\" }", "password_fil = \"pw\" }");
        let e = Config::parse(&dir.path().join("r.toml"), &bad, &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("password_fil") && e.contains("r.toml:14:"),
            "{e}"
        );
        let bad = text.replace("ssl-mode=required", "ssl-mode=sometimes");
        let e = Config::parse(&dir.path().join("r.toml"), &bad, &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("targets.shard1.url") && e.contains("not a TLS mode"),
            "{e}"
        );
        let bad = text.replace("\"pw\"\nssl_mode", "\"nope\"\nssl_mode");
        let e = Config::parse(&dir.path().join("r.toml"), &bad, &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("r.toml:5:1: source.password_file: cannot read"),
            "{e}"
        );
    }

    #[test]
    fn a_shard_subset_has_its_own_key() {
        let text = GOOD.replace("[pipeline]\n", "[pipeline]\nshards = [\"shard1\"]\n");
        let c = Config::parse(Path::new("r.toml"), &text, &env).unwrap();
        assert_eq!(c.pipeline.name, "default/shard1");
        assert_eq!(c.pipeline.base_name, "default");
        assert_eq!(c.applied_shards(), vec!["shard1".to_string()]);
        assert!(c.applies("shard1") && !c.applies("shard0"));
        // every shard is the default
        let all = GOOD.replace(
            "[pipeline]\n",
            "[pipeline]\nshards = [\"shard1\", \"shard0\"]\n",
        );
        let c = Config::parse(Path::new("r.toml"), &all, &env).unwrap();
        assert_eq!(
            (c.pipeline.name.as_str(), c.pipeline.shards),
            ("default", None)
        );
        let long: Vec<String> = (0..40).map(|i| format!("shard{i}")).collect();
        let key = subset_key("default", &long).unwrap();
        assert!(
            key.starts_with("default/#") && key.len() == 8 + 1 + 16,
            "{key}"
        );
        assert_eq!(subset_key(&"n".repeat(60), &long), None);
    }

    #[test]
    fn an_unknown_shard_in_the_subset_is_named_with_its_line() {
        let text = GOOD.replace(
            "[pipeline]\n",
            "[pipeline]\nshards = [\"shard0\", \"shard9\"]\n",
        );
        let e = Config::parse(Path::new("r.toml"), &text, &env).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("r.toml:14:21:"), "{msg}");
        assert!(msg.contains("unknown shard \"shard9\""), "{msg}");
        assert!(msg.contains("shard0, shard1"), "{msg}");
        let twice = GOOD.replace(
            "[pipeline]\n",
            "[pipeline]\nshards = [\"shard0\", \"shard0\"]\n",
        );
        let e = Config::parse(Path::new("r.toml"), &twice, &env).unwrap_err();
        assert!(e.to_string().contains("named twice"), "{e}");
        let none = GOOD.replace("[pipeline]\n", "[pipeline]\nshards = []\n");
        let e = Config::parse(Path::new("r.toml"), &none, &env).unwrap_err();
        assert!(e.to_string().contains("at least one shard"), "{e}");
    }

    #[test]
    fn metrics_and_throttle_sections_deny_unknown_keys() {
        let c = Config::parse(Path::new("r.toml"), GOOD, &env).unwrap();
        assert_eq!(c.metrics.listen, None);
        assert!(!c.throttle.enabled());
        assert_eq!(c.pipeline.stall, Some(Duration::from_secs(120)));
        let on = format!("{GOOD}\n[metrics]\nlisten = \"127.0.0.1:9187\"\n\n[throttle]\nmax_rows_per_sec = 500\n");
        let c = Config::parse(Path::new("r.toml"), &on, &env).unwrap();
        assert_eq!(c.metrics.listen.map(|a| a.port()), Some(9187));
        assert_eq!(c.throttle.max_rows_per_sec, 500);
        for (section, typo) in [("metrics", "lisen = \"x\""), ("throttle", "max_rows = 1")] {
            let text = format!("{GOOD}\n[{section}]\n{typo}\n");
            let e = Config::parse(Path::new("r.toml"), &text, &env).unwrap_err();
            let key = typo.split(' ').next().unwrap_or_default();
            assert!(e.to_string().contains(key), "{e}");
        }
        let bad = format!("{GOOD}\n[metrics]\nlisten = \"localhost\"\n");
        let e = Config::parse(Path::new("r.toml"), &bad, &env).unwrap_err();
        assert!(e.to_string().contains("metrics.listen"), "{e}");
    }

    #[test]
    fn missing_env_var_is_named() {
        let e = Config::parse(Path::new("r.toml"), GOOD, &|_| None).unwrap_err();
        assert!(e.to_string().contains("${SOURCE_PASSWORD}"), "{e}");
    }

    #[test]
    fn target_without_database_is_rejected() {
        let text = GOOD.replace("3308/shop", "3308");
        let e = Config::parse(Path::new("r.toml"), &text, &env).unwrap_err();
        assert!(
            e.to_string().starts_with("r.toml:11:1: targets.shard1:"),
            "{e}"
        );
    }

    #[test]
    fn expand_env_handles_escapes_and_unterminated() {
        let f = |k: &str| (k == "A").then(|| "1".to_string());
        assert_eq!(expand_env("x${A}y", &f).unwrap(), "x1y");
        assert_eq!(expand_env("$${A}", &f).unwrap(), "${A}");
        assert_eq!(expand_env("${A", &f).unwrap(), "${A");
        assert_eq!(expand_env("${B}", &f).unwrap_err(), "B");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
