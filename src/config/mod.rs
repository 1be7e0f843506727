//! The validated configuration object (`reshard.toml`; every key is shown
//! in `reshard.example.toml` at the top of the repository).
//!
//! Loading is two passes, as in Vector: [`raw`] deserializes the TOML with
//! `deny_unknown_fields` (an unknown key is an error that names the key,
//! with file, line and column), then `Config::from_raw` expands
//! `${VAR}` references, parses URLs, resolves paths relative to the config
//! file (never the working directory) and checks cross-field rules.
//! Commands only ever see a [`Config`].

pub mod raw;
mod redact;

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

/// A MySQL endpoint: its name for messages and its URL (secret inside).
#[derive(Clone)]
pub struct Endpoint {
    /// `source`, `control`, or the shard name.
    pub name: String,
    pub url: String,
}

impl Endpoint {
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
}

/// `[pipeline]` after validation.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Names this pipeline's checkpoint in the control database.
    pub name: String,
    /// Directory of rule files, absolute.
    pub rules: PathBuf,
    pub epoch: u16,
    pub lanes_per_shard: usize,
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
    /// 0 = unlimited.
    pub snapshot_rows_per_sec: u64,
    pub tombstone_retention: Duration,
    pub prune_interval: Duration,
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
    #[error("{path}: {key}: environment variable ${{{var}}} is not set")]
    MissingVar {
        path: PathBuf,
        key: String,
        var: String,
    },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
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
        Self::from_raw(path, raw, env)
    }

    fn from_raw(
        path: &Path,
        raw: raw::RawConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let check = Check { path, env };
        let source = check.endpoint("source.url", "source", &raw.source.url)?;
        if raw.source.server_id == 0 {
            return Err(check.invalid(
                "source.server_id",
                "must be a non-zero replica server id, unique among the source's replicas".into(),
            ));
        }
        let control = check.control(&raw.control.url)?;
        let targets = check.targets(&raw.targets)?;
        let pipeline = check.pipeline(raw.pipeline)?;
        Ok(Config {
            path: path.to_path_buf(),
            source,
            server_id: raw.source.server_id,
            control,
            targets,
            pipeline,
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
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Check<'_> {
    fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            message,
        }
    }

    /// A server URL with `${VAR}`s expanded, which must parse.
    fn endpoint(&self, key: &str, name: &str, url: &str) -> Result<Endpoint, ConfigError> {
        let url = expand_env(url, self.env).map_err(|var| ConfigError::MissingVar {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            var,
        })?;
        if let Err(e) = mysql_async::Opts::from_url(&url) {
            return Err(self.invalid(
                key,
                format!(
                    "{} is not a valid mysql:// URL: {}",
                    redact_url(&url),
                    redact_url(&e.to_string())
                ),
            ));
        }
        Ok(Endpoint {
            name: name.to_string(),
            url,
        })
    }

    /// `[control] url`, which must name the control database.
    fn control(&self, url: &str) -> Result<Endpoint, ConfigError> {
        let control = self.endpoint("control.url", "control", url)?;
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
        raw: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, Endpoint>, ConfigError> {
        if raw.is_empty() {
            return Err(self.invalid("targets", "at least one target shard is required".into()));
        }
        let mut targets = BTreeMap::new();
        for (name, url) in raw {
            let key = format!("targets.{name}");
            let ep = self.endpoint(&key, name, url)?;
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

    /// `[pipeline]`: limits checked, the rules directory made absolute
    /// against the config file's directory, durations typed.
    fn pipeline(&self, p: raw::RawPipeline) -> Result<Pipeline, ConfigError> {
        let base = self.path.parent().unwrap_or(Path::new("."));
        let rules = base.join(&p.rules);
        let positive = |key: &str, v: u64| -> Result<(), ConfigError> {
            if v == 0 {
                Err(self.invalid(key, "must be greater than 0".into()))
            } else {
                Ok(())
            }
        };
        positive("pipeline.lanes_per_shard", p.lanes_per_shard as u64)?;
        positive("pipeline.batch_size", p.batch_size as u64)?;
        positive("pipeline.connect_timeout_secs", p.connect_timeout_secs)?;
        positive("pipeline.snapshot_chunk_rows", p.snapshot_chunk_rows as u64)?;
        if p.batch_size > 10_000 {
            return Err(self.invalid(
                "pipeline.batch_size",
                format!("{} is above the maximum of 10000", p.batch_size),
            ));
        }
        if p.name.is_empty() || p.name.len() > 64 {
            return Err(self.invalid("pipeline.name", "must be 1 to 64 characters".into()));
        }
        Ok(Pipeline {
            name: p.name,
            rules,
            epoch: p.epoch,
            lanes_per_shard: p.lanes_per_shard,
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
            snapshot_rows_per_sec: p.snapshot_rows_per_sec,
            tombstone_retention: Duration::from_secs(p.tombstone_retention_secs),
            prune_interval: Duration::from_secs(p.prune_interval_secs.max(1)),
        })
    }
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
        assert_eq!(c.pipeline.lanes_per_shard, 2);
        assert!(c.pipeline.linger <= Duration::from_millis(100));
        assert_eq!(c.pipeline.shutdown_timeout, Duration::from_secs(30));
        assert!(!format!("{:?}", c).contains("s3cret"));
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
        let enabled: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(opt)
                    if opt.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_')
                    }) =>
                {
                    opt
                }
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(enabled.contains("\nepoch = 0"), "{enabled}");
        Config::parse(Path::new("/srv/reshard/reshard.toml"), &enabled, &env).unwrap();
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
    fn missing_env_var_is_named() {
        let e = Config::parse(Path::new("r.toml"), GOOD, &|_| None).unwrap_err();
        assert!(e.to_string().contains("${SOURCE_PASSWORD}"), "{e}");
    }

    #[test]
    fn target_without_database_is_rejected() {
        let text = GOOD.replace("3308/shop", "3308");
        let e = Config::parse(Path::new("r.toml"), &text, &env).unwrap_err();
        assert!(e.to_string().contains("targets.shard1"), "{e}");
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
