//! Start-up connections shared by the commands: every server a command
//! needs is connected (in parallel, each with a bounded retry) before
//! anything is done, so an unreachable or refusing server is an error
//! within the connect budget, naming the server and never its password.

use anyhow::Context;
use mysql_async::Conn;

use crate::config::Config;
use crate::control::migrations::{self as migrate, MigrationSet};
use crate::db::{self, Session};

/// Connections to every configured server. (`S` is `Option<Conn>` for
/// `replay --binlog-dir`, which can do without the source.)
pub struct Servers<S = Conn> {
    pub source: S,
    pub control: Conn,
    pub targets: Vec<(String, Conn)>,
}

impl Servers<Option<Conn>> {
    /// Like [`Servers::connect`], but an unreachable source is `None` (with
    /// a warning) rather than an error.
    pub async fn connect_source_optional(cfg: &Config) -> anyhow::Result<Self> {
        let (source, control, targets) = connect_all(cfg, true, false, false).await?;
        let source = match source {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %crate::config::redact_url(&format!("{e:#}")), "the source server is not reachable; reading without it");
                None
            }
        };
        Ok(Servers {
            source,
            control,
            targets,
        })
    }
}

impl Servers {
    /// Connects to source, control and the targets this process applies
    /// (`[pipeline] shards`: a process does not depend on the shards of
    /// another), in parallel.
    pub async fn connect(cfg: &Config) -> anyhow::Result<Servers> {
        let (source, control, targets) = connect_all(cfg, true, true, false).await?;
        Ok(Servers {
            source: source.context("source server")?,
            control,
            targets,
        })
    }

    /// Like [`Servers::connect`], but with every target (`verify`,
    /// `dry-run`); with `control_db` false the control server is reached
    /// without selecting its database (which `migrate` creates), for
    /// commands that must work before `migrate`.
    pub async fn connect_with(cfg: &Config, control_db: bool) -> anyhow::Result<Servers> {
        let (source, control, targets) = connect_all(cfg, control_db, true, true).await?;
        Ok(Servers {
            source: source.context("source server")?,
            control,
            targets,
        })
    }
}

/// Connects every server in parallel (of the targets, every one or only
/// those this process applies); the source's failure is returned
/// (or, when `require_source`, is the error, reported before any other
/// server's), the others' are errors.
async fn connect_all(
    cfg: &Config,
    control_db: bool,
    require_source: bool,
    all_targets: bool,
) -> anyhow::Result<(anyhow::Result<Conn>, Conn, Vec<(String, Conn)>)> {
    let budget = cfg.pipeline.connect_timeout;
    let source = db::connect(&cfg.source, Session::Read, budget);
    let control_opts = db::opts(
        &cfg.control,
        Session::Read,
        if control_db { None } else { Some(None) },
    )?;
    let control = db::connect_opts(&cfg.control, control_opts, budget);
    let wanted: Vec<&crate::config::Endpoint> = if all_targets {
        cfg.targets.values().collect()
    } else {
        cfg.applied_targets().collect()
    };
    let targets = futures_util::future::join_all(wanted.into_iter().map(|ep| async move {
        (
            ep.name.clone(),
            db::connect(ep, Session::Read, budget).await,
        )
    }));
    let (source, control, targets) = tokio::join!(source, control, targets);
    let source = match source {
        Err(e) if require_source => return Err(anyhow::Error::from(e).context("source server")),
        other => other,
    };
    let control = control.context("control server")?;
    let mut out = Vec::new();
    for (name, t) in targets {
        out.push((name.clone(), t.with_context(|| format!("target {name}"))?));
    }
    Ok((source.map_err(anyhow::Error::from), control, out))
}

impl<S> Servers<S> {
    /// Refuses to go on when reshard's own tables are missing or old.
    pub async fn ensure_migrated(&mut self, cfg: &Config) -> anyhow::Result<()> {
        let hint = format!(
            "run `reshard migrate --config {}` first",
            cfg.path.display()
        );
        let latest = MigrationSet::Control.latest();
        let v =
            migrate::applied_version(&mut self.control, MigrationSet::Control, "control").await?;
        if v.unwrap_or(0) < latest {
            anyhow::bail!(
                "control database: reshard's tables are at migration {} but this build needs {latest}; {hint}",
                v.unwrap_or(0)
            );
        }
        let latest = MigrationSet::Shard.latest();
        for (name, conn) in &mut self.targets {
            let v = migrate::applied_version(conn, MigrationSet::Shard, name).await?;
            if v.unwrap_or(0) < latest {
                anyhow::bail!(
                    "target {name}: reshard's per-shard tables are at migration {} but this build needs {latest}; {hint}",
                    v.unwrap_or(0)
                );
            }
        }
        Ok(())
    }
}
