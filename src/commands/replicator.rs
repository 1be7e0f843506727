//! What `run` and `replay` share: the start-up sequence (config, rules,
//! servers, migrations, pre-flight checks, the pipeline lease), the
//! shutdown signal, and the pause between attempts after a transient
//! failure, after which the control connection is known to hold the lease
//! (see [`crate::control::lease`] and `docs/architecture.md`, "Errors,
//! retries and ownership").

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::watch;

use super::servers::Servers;
use crate::config::{redact_url, Config};
use crate::control;
use crate::control::lease::{self, Acquire, Claim, Owner};
use crate::db::{self, Backoff, Flavor};
use crate::pipeline::PipelineError;
use crate::rules::lookup::Lookups;
use crate::rules::{load_dir, Router, Rule};
use crate::source::collation::{CollationLoader, KeyCollations};
use crate::source::{self, preflight};
use crate::writer::collation::Collation;

/// A replicating command after its start-up checks.
pub struct Replicator {
    pub cfg: Config,
    pub router: Router,
    pub lookups: Lookups,
    pub servers: Servers,
    pub flavor: Flavor,
    pub checksum: bool,
    /// The source server's identity (see [`source::server_identity`]).
    pub identity: String,
}

impl Replicator {
    /// Loads config and rules, connects every server, checks migrations and
    /// the source settings, and takes the pipeline lease.
    pub async fn start(path: &Path) -> anyhow::Result<Replicator> {
        let (cfg, router, lookups) = load(path)?;
        let mut servers = Servers::connect(&cfg).await?;
        let mut gaps = source_gaps(&router, &mut servers.source).await?;
        gaps.extend(applier_gaps(&cfg, &router, &mut servers.control, &mut servers.targets).await?);
        refuse_gaps(&gaps)?;
        servers.ensure_migrated(&cfg).await?;
        let flavor = db::flavor(&mut servers.source, "source").await?;
        let (checksum, _) = preflight::run_all(&mut servers.source)
            .await
            .context("source pre-flight check")?;
        let collations =
            key_collations(&mut servers.source, &mut servers.control, router.rules()).await?;
        let router = router.with_key_collations(Arc::new(collations));
        take_lease(&cfg, &mut servers.control).await?;
        let identity = source::server_identity(&mut servers.source).await?;
        Ok(Replicator {
            cfg,
            router,
            lookups,
            servers,
            flavor,
            checksum,
            identity,
        })
    }
}

/// What the source account lacks of what reshard needs (see
/// [`db::grants`]): replication and `SELECT` on the mapped tables.
async fn source_gaps(router: &Router, conn: &mut Conn) -> anyhow::Result<Vec<db::grants::Missing>> {
    use db::grants::{missing, Need, Scope};
    let mut source = vec![
        Need::new("REPLICATION SLAVE", Scope::Global),
        Need {
            also: &["BINLOG MONITOR", "SUPER"],
            ..Need::new("REPLICATION CLIENT", Scope::Global)
        },
    ];
    source.extend(router.rules().map(|r| {
        Need::new(
            "SELECT",
            Scope::Table(r.source_db.clone(), r.source_table.clone()),
        )
    }));
    Ok(missing(conn, "source", &source).await?)
}

/// What the accounts that apply lack: the control account DML and DDL on
/// the control database, each target account DML on its target tables
/// and reshard's own.
async fn applier_gaps(
    cfg: &Config,
    router: &Router,
    control_conn: &mut Conn,
    targets: &mut [(String, Conn)],
) -> anyhow::Result<Vec<db::grants::Missing>> {
    use db::grants::{missing, Need, Scope};
    let control_db = crate::config::db_name(&cfg.control.url).unwrap_or_default();
    let control: Vec<Need> = [
        "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX",
    ]
    .into_iter()
    .map(|p| Need::new(p, Scope::Db(control_db.clone())))
    .collect();
    let mut gaps = missing(control_conn, "control", &control).await?;
    for (name, conn) in targets.iter_mut() {
        let db = cfg
            .targets
            .get(name)
            .and_then(|ep| crate::config::db_name(&ep.url))
            .unwrap_or_default();
        let mut tables: Vec<String> = router
            .rules()
            .filter(|r| r.shards.contains(name))
            .map(|r| r.target.clone())
            .chain([
                "_reshard_tombstone".to_string(),
                "_reshard_applied".to_string(),
            ])
            .collect();
        tables.sort();
        tables.dedup();
        let needs: Vec<Need> = tables
            .iter()
            .flat_map(|t| {
                ["SELECT", "INSERT", "UPDATE", "DELETE"].map(|p| Need {
                    grant_on: Some(Scope::Db(db.clone())),
                    ..Need::new(p, Scope::Table(db.clone(), t.clone()))
                })
            })
            .collect();
        gaps.extend(missing(conn, &format!("target {name}"), &needs).await?);
    }
    Ok(gaps)
}

/// Stops naming each missing privilege with the `GRANT` that fixes it.
fn refuse_gaps(gaps: &[db::grants::Missing]) -> anyhow::Result<()> {
    if gaps.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = gaps.iter().map(|g| format!("  {g}")).collect();
    bail!(
        "missing privileges (README, \"Grants\"):\n{}",
        lines.join("\n")
    )
}

/// Learns the collations of every mapped table's key columns from the
/// source (or takes them from the control database, where they are kept
/// per source build), refusing a column reshard cannot compare exactly
/// (see [`crate::source::collation`]).
pub async fn key_collations<'a>(
    source: &mut Conn,
    control: &mut Conn,
    rules: impl Iterator<Item = &'a Arc<Rule>>,
) -> anyhow::Result<KeyCollations> {
    let learned = learn_key_collations(source, control, rules, false).await?;
    Ok(learned.loader.finish())
}

/// What [`learn_key_collations`] learned.
struct Learned<'a> {
    loader: CollationLoader,
    /// The source's `@@version`.
    version: String,
    /// The rules whose tables the source does not have (only when asked
    /// to skip them).
    absent: Vec<&'a Arc<Rule>>,
}

/// Learns the key collations of the rules' tables from the source, keeping
/// each new one in the control database at once (a start that dies later
/// need not learn it again). With `skip_absent`, a table the source does
/// not have is returned instead of refused.
async fn learn_key_collations<'a>(
    source: &mut Conn,
    control: &mut Conn,
    rules: impl Iterator<Item = &'a Arc<Rule>>,
    skip_absent: bool,
) -> anyhow::Result<Learned<'a>> {
    let version: Option<String> = source
        .query_first("SELECT @@version")
        .await
        .context("reading the source's version")?;
    let version = version.unwrap_or_default();
    let started = std::time::Instant::now();
    let known = control::collations::load(control, &version).await?;
    let kept = known.len();
    let mut loader = CollationLoader::with_known(known);
    let (mut stored, mut absent) = (0, Vec::new());
    for r in rules {
        let (db, table, key) = (&r.source_db, &r.source_table, r.key.as_deref());
        let present = if skip_absent {
            loader.learn_table_if_present(source, db, table, key).await
        } else {
            loader
                .learn_table(source, db, table, key)
                .await
                .map(|()| true)
        }
        .with_context(|| format!("{}: the key of {}", r.file.display(), r.source_name()))?;
        if !present {
            absent.push(r);
        }
        for c in loader.learned_now().iter().skip(stored) {
            control::collations::store(control, &version, c).await?;
            stored += 1;
        }
    }
    tracing::info!(
        kept,
        learned = stored,
        ms = started.elapsed().as_millis() as u64,
        "key collations ready"
    );
    Ok(Learned {
        loader,
        version,
        absent,
    })
}

/// The key collations of `replay --binlog-dir`: learned from the source,
/// when reachable, for the tables it has (as `run` does); every other
/// table's key columns take the collation their TABLE_MAP names, with the
/// weights the control database keeps for the server build(s) that wrote
/// the files, `builds` (their format descriptions' versions). A text key
/// whose weights are known by neither way is an error when its first row
/// is routed, never compared byte-wise.
pub async fn archive_key_collations<'a>(
    source: Option<&mut Conn>,
    control: &mut Conn,
    rules: impl Iterator<Item = &'a Arc<Rule>>,
    builds: &[String],
) -> anyhow::Result<KeyCollations> {
    let mut by_id: HashMap<u16, Arc<Collation>> = HashMap::new();
    let (loader, absent) = match source {
        Some(source) => {
            let learned = learn_key_collations(source, control, rules, true).await?;
            // the source's weights serve the files when it is their build
            let wrote = |fde: &String| {
                *fde == learned.version
                    || (fde.chars().count() >= 49 && learned.version.starts_with(fde.as_str()))
            };
            if builds.iter().any(wrote) {
                for c in learned.loader.known().filter(|c| c.id != 0) {
                    by_id.insert(c.id, c.clone());
                }
            }
            let why = "the table does not exist on the source";
            (learned.loader, with_reason(learned.absent, why))
        }
        None => {
            let why = "the source server is not reachable";
            (CollationLoader::default(), with_reason(rules, why))
        }
    };
    for build in builds {
        for c in control::collations::load_for_binlog(control, build)
            .await?
            .into_values()
        {
            if c.id != 0 {
                by_id.entry(c.id).or_insert(c);
            }
        }
    }
    tracing::info!(
        from_binlog = absent.len(),
        weights = by_id.len(),
        builds = builds.join(", "),
        "key collations of tables not on the source come from their TABLE_MAPs"
    );
    Ok(loader.finish_with_binlog(absent, by_id, builds.join(", ")))
}

/// `(db, table, why)` of each rule's source table.
fn with_reason<'a>(
    rules: impl IntoIterator<Item = &'a Arc<Rule>>,
    why: &str,
) -> Vec<(String, String, String)> {
    rules
        .into_iter()
        .map(|r| (r.source_db.clone(), r.source_table.clone(), why.to_string()))
        .collect()
}
/// `replay --binlog-dir` after its start-up checks: like [`Replicator`],
/// but the source server is optional (the binlog comes from files; the
/// source only answers for column names the files lack) and its settings
/// are not checked (the files' events are).
pub struct ArchiveReplicator {
    pub cfg: Config,
    pub router: Router,
    pub lookups: Lookups,
    pub servers: Servers<Option<Conn>>,
}

impl ArchiveReplicator {
    /// Loads config and rules, connects the control server and the targets
    /// (and the source when reachable), checks migrations, settles the key
    /// collations (see [`archive_key_collations`]; `builds`: the versions
    /// of the servers that wrote the files) and takes the pipeline lease.
    pub async fn start(path: &Path, builds: &[String]) -> anyhow::Result<ArchiveReplicator> {
        let (cfg, router, lookups) = load(path)?;
        let mut servers = Servers::connect_source_optional(&cfg).await?;
        // the source, when reachable, serves information_schema only
        refuse_gaps(
            &applier_gaps(&cfg, &router, &mut servers.control, &mut servers.targets).await?,
        )?;
        servers.ensure_migrated(&cfg).await?;
        let collations = archive_key_collations(
            servers.source.as_mut(),
            &mut servers.control,
            router.rules(),
            builds,
        )
        .await?;
        let router = router.with_key_collations(Arc::new(collations));
        take_lease(&cfg, &mut servers.control).await?;
        Ok(ArchiveReplicator {
            cfg,
            router,
            lookups,
            servers,
        })
    }
}

/// The config, the router over its rules and the `lookup()` cache.
fn load(path: &Path) -> anyhow::Result<(Config, Router, Lookups)> {
    let cfg = Config::load(path)?;
    let rules = load_dir(&cfg.pipeline.rules)?;
    let shard_names: Vec<String> = cfg.targets.keys().cloned().collect();
    let lookups = Lookups::new(&rules, cfg.pipeline.lookup_ttl);
    let router = Router::new(rules, &shard_names)?;
    Ok((cfg, router, lookups))
}

/// Takes the lease of every shard this process applies, or says who holds
/// one, and registers the process's subset (see
/// [`crate::control::subset`]).
async fn take_lease(cfg: &Config, control: &mut Conn) -> anyhow::Result<()> {
    let me = Owner::this_process();
    let claim = Claim::of(cfg);
    let acquired = lease::acquire(control, &claim, me, Duration::ZERO).await?;
    refused(cfg, acquired)?;
    control::subset::register(control, &cfg.pipeline).await?;
    Ok(())
}

/// The error of a refused lease.
fn refused(cfg: &Config, acquired: Acquire) -> anyhow::Result<()> {
    let name = &cfg.pipeline.base_name;
    match acquired {
        Acquire::Acquired => Ok(()),
        Acquire::HeldBy { shard, holder: Some(h) } => bail!(
            "pipeline {name:?} is already running on shard {shard}: another reshard ({}) holds its lease in the control database ({h})",
            h.subset
        ),
        Acquire::HeldBy { shard, holder: None } => bail!(
            "pipeline {name:?} is already running on shard {shard} (another reshard holds its lease in the control database)"
        ),
        Acquire::SameServerId(h) => bail!(
            "[source] server_id {} is already used by another reshard of pipeline {name:?} ({}, {h}); the source would drop one binlog stream whenever the other connects. Give every process its own server_id",
            cfg.server_id,
            h.subset
        ),
    }
}

/// A receiver that turns true on SIGINT or SIGTERM: the command drains
/// (within `shutdown_timeout_secs`), saves the checkpoint and exits 0.
///
/// A second signal during the drain exits at once, with status 128 + the
/// signal number (130 for SIGINT, 143 for SIGTERM, the shell's convention
/// for death by a signal). That is always safe: the checkpoint only ever
/// names work applied on every shard, the servers roll back the batches in
/// flight, and a restart applies again whatever followed the checkpoint.
///
/// It listens from the moment it is called (not from when its task first
/// runs), so the commands call it first thing: a signal during start-up is
/// a request to stop, never death by the signal's default action.
/// One listener per process: later calls return a receiver of the same
/// one.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    static STOP: std::sync::OnceLock<watch::Receiver<bool>> = std::sync::OnceLock::new();
    STOP.get_or_init(listen_for_stop).clone()
}

fn listen_for_stop() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    // listening once, for both signals, so none is missed in between
    let mut signals = StopSignals::listen();
    tokio::spawn(async move {
        let first = signals.next().await;
        tracing::info!(
            signal = first.name(),
            "shutdown requested; draining (a second signal exits at once)"
        );
        let _ = tx.send(true);
        let second = signals.next().await;
        tracing::warn!(
            signal = second.name(),
            "second signal: exiting without waiting for the drain; the checkpoint names only applied work, and what followed it is applied again on restart"
        );
        std::process::exit(second.exit_status());
    });
    rx
}

/// A signal that asks reshard to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Interrupt,
    Terminate,
}

impl StopSignal {
    fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    /// 128 + the signal number.
    fn exit_status(self) -> i32 {
        match self {
            StopSignal::Interrupt => 130,
            StopSignal::Terminate => 143,
        }
    }
}

/// SIGINT and SIGTERM, listened to from creation on: once listened to, a
/// signal no longer ends the process by itself, and every later delivery
/// arrives at [`StopSignals::next`].
struct StopSignals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    fn listen() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = signal(SignalKind::interrupt())
                .and_then(|i| Ok((i, signal(SignalKind::terminate())?)))
                .ok();
            StopSignals { streams }
        }
        #[cfg(not(unix))]
        {
            StopSignals {}
        }
    }

    /// The next SIGINT or SIGTERM.
    async fn next(&mut self) -> StopSignal {
        #[cfg(unix)]
        if let Some((int, term)) = &mut self.streams {
            return tokio::select! {
                _ = int.recv() => StopSignal::Interrupt,
                _ = term.recv() => StopSignal::Terminate,
            };
        }
        if tokio::signal::ctrl_c().await.is_err() {
            // no way to listen: never report a signal that did not come
            tracing::warn!("cannot listen to SIGINT/SIGTERM; only SIGKILL stops reshard");
            std::future::pending::<()>().await;
        }
        StopSignal::Interrupt
    }
}

/// The pause between attempts: capped exponential backoff with jitter
/// (see [`db::retry`]).
pub fn attempt_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
}

/// After a transient failure: logs what failed and why, waits the next
/// backoff pause unless shutdown is requested, and makes sure `control`
/// holds the pipeline lease — keeping a live connection that does,
/// reconnecting and taking the lease again when not, and pausing again
/// while the control database cannot be reached. Returns false when
/// shutdown was requested instead; fails only when another process took
/// the lease.
pub async fn pause_and_reconnect(
    cfg: &Config,
    control: &mut Conn,
    backoff: &mut Backoff,
    stop: &watch::Receiver<bool>,
    error: &PipelineError,
) -> anyhow::Result<bool> {
    let error_text = redact_url(
        &anyhow::Chain::new(error)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(": "),
    );
    let mut cause = error.transient_cause();
    crate::metrics::global().retried(retry_stage(error), cause);
    loop {
        if *stop.borrow() {
            return Ok(false);
        }
        let delay = backoff.next_delay();
        tracing::warn!(
            error = error_text,
            cause,
            retry_in_ms = delay.as_millis() as u64,
            "transient failure; resuming from the checkpoint"
        );
        let mut rx = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = rx.changed() => return Ok(false),
        }
        match keep_lease(cfg, control).await? {
            None => return Ok(true),
            Some(why) => cause = why,
        }
    }
}

/// The stage an attempt failed in, the `stage` label of
/// `reshard_retries_total` (a lane's own retries count as `writer` where
/// they happen).
fn retry_stage(error: &PipelineError) -> &'static str {
    match error {
        PipelineError::Source(_) | PipelineError::ReaderStopped => "reader",
        PipelineError::Lane(_) | PipelineError::LaneStopped | PipelineError::LaneCrashed(_) => {
            "writer"
        }
        PipelineError::LeaseLost(_) => "control",
        _ => "pipeline",
    }
}

/// Makes sure `control` holds the lease (see [`pause_and_reconnect`]):
/// `None` when it does, else why not yet.
async fn keep_lease(cfg: &Config, control: &mut Conn) -> anyhow::Result<Option<&'static str>> {
    let claim = Claim::of(cfg);
    // a live connection answers at once; a dead one is replaced (and its
    // session killed) below
    let check = tokio::time::timeout(Duration::from_secs(2), lease::holds(control, &claim)).await;
    if let Ok(Ok(true)) = check {
        return Ok(None);
    }
    let budget = cfg.pipeline.connect_timeout;
    let mut fresh = match db::connect(&cfg.control, db::Session::Read, budget).await {
        Ok(c) => c,
        Err(_) => return Ok(Some("control database unreachable")),
    };
    let me = Owner::this_process();
    match lease::acquire(&mut fresh, &claim, me, lease::TAKEOVER_WAIT).await {
        Ok(Acquire::Acquired) => {
            tracing::info!("shard leases taken again on a new control connection");
            *control = fresh;
            Ok(None)
        }
        Ok(Acquire::HeldBy {
            holder: Some(h), ..
        }) if h.owner == *me => Ok(Some(
            "this process's lost control connection still holds the lease",
        )),
        Ok(refusal) => {
            refused(cfg, refusal)
                .context("lost the lease to another reshard while reconnecting")?;
            Ok(None)
        }
        Err(_) => Ok(Some("control database failed while taking the lease")),
    }
}
