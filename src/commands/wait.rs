//! `reshard wait --until FILE:POS|GTID|now [--timeout S]`: the cut-over
//! fence. Exits 0 once every shard has applied everything the source wrote
//! up to that position, 1 on timeout with what each shard still lacks.
//!
//! # Why the checkpoint is the fence
//!
//! The checkpoint is the end of a source transaction all of whose
//! operations, and all earlier ones, are durable on every shard
//! (`docs/architecture.md`, "Checkpoint watermark", and its cut-over
//! fence). So once it is at or
//! past the fence position, every shard holds every change up to it.
//! `now` is the source's head when `wait` starts: after the application
//! stopped writing (`read_only`), that is every change there will be, and
//! an idle source's heartbeats carry the checkpoint to the head.
//!
//! A GTID fence (MariaDB `domain-server-seq,…`) is reached when the GTID
//! state at the checkpoint (`BINLOG_GTID_POS`) has, in each domain of the
//! fence, reached its sequence number. A MySQL GTID set (`uuid:1-5,…`) is
//! turned into the position of the source's binlog where the set is
//! complete ([`crate::source::gtid`]), looked for again whenever the
//! source's head moved until it is found; the fence is then that position.
//!
//! On timeout, each shard's applied position is the checkpoint or, when
//! every one of its lanes recorded a later one in `_reshard_applied`, the
//! least of those: both are lower bounds of what the shard holds.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::servers::Servers;
use super::EXIT_FINDINGS;
use crate::config::Config;
use crate::control::{checkpoint, shard};
use crate::db::{self, Flavor};
use crate::monitor::lag::lag_bytes;
use crate::position::Position;
use crate::source;
use crate::source::gtid::{self, GtidSet};

/// How often the checkpoint is read.
const POLL: Duration = Duration::from_millis(200);

/// What `--until` names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fence {
    Position(Position),
    /// MariaDB GTIDs: (domain, server, seq).
    Gtid(Vec<(u32, u32, u64)>),
    /// A MySQL GTID set.
    MySqlGtid(GtidSet),
}

impl std::fmt::Display for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fence::Position(p) => write!(f, "{p}"),
            Fence::Gtid(g) => write!(f, "GTID {}", gtid_text(g)),
            Fence::MySqlGtid(g) => write!(f, "GTID {g}"),
        }
    }
}

fn gtid_text(g: &[(u32, u32, u64)]) -> String {
    g.iter()
        .map(|(d, s, n)| format!("{d}-{s}-{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// MariaDB's `domain-server-seq[,…]`; `None` when `s` is not that.
fn parse_gtids(s: &str) -> Option<Vec<(u32, u32, u64)>> {
    s.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| {
            let mut it = g.split('-');
            let t = (
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
            );
            it.next().is_none().then_some(t)
        })
        .collect::<Option<Vec<_>>>()
        .filter(|v| !v.is_empty())
}

/// `--until`: `now` (the source's head), `FILE:POS`, MariaDB GTIDs, or a
/// MySQL GTID set.
async fn fence(until: &str, source: &mut Conn, flavor: Flavor) -> anyhow::Result<Fence> {
    if until.eq_ignore_ascii_case("now") {
        return Ok(Fence::Position(source::head(source).await?));
    }
    if let Ok(p) = until.parse::<Position>() {
        return Ok(Fence::Position(p));
    }
    match (parse_gtids(until), flavor) {
        (Some(g), Flavor::MariaDb) => Ok(Fence::Gtid(g)),
        (Some(_), Flavor::MySql) => bail!("--until {until}: MariaDB GTIDs on a MySQL source"),
        (None, Flavor::MySql) => mysql_fence(until, source).await,
        (None, Flavor::MariaDb) => bail!("--until {until}: expected now, FILE:POS (e.g. mysql-bin.000042:1234) or GTIDs (domain-server-seq,…)"),
    }
}

/// A MySQL GTID set, on a source that writes GTIDs.
async fn mysql_fence(until: &str, source: &mut Conn) -> anyhow::Result<Fence> {
    let set = GtidSet::parse(until).with_context(|| {
        format!("--until {until}: expected now, FILE:POS (SHOW BINARY LOG STATUS) or a GTID set")
    })?;
    if set.is_empty() {
        bail!("--until {until:?}: an empty GTID set");
    }
    let mode: Option<String> = source
        .query_first("SELECT @@GLOBAL.gtid_mode")
        .await
        .context("source: reading gtid_mode")?;
    let mode = mode.unwrap_or_default();
    if !mode.eq_ignore_ascii_case("ON") {
        bail!("--until {until}: the source does not write GTIDs to every transaction (gtid_mode = {mode}); give FILE:POS (SHOW BINARY LOG STATUS) or now");
    }
    Ok(Fence::MySqlGtid(set))
}

/// The fence, and for a MySQL GTID set the position that completes it
/// once the source's binlog does.
struct Waiting {
    fence: Fence,
    /// Where the binlog completes a MySQL GTID set.
    complete_at: Option<Position>,
    /// The source's head when `complete_at` was last looked for.
    looked_at: Option<Position>,
}

impl Waiting {
    fn new(fence: Fence) -> Waiting {
        let complete_at = match &fence {
            Fence::Position(p) => Some(p.clone()),
            _ => None,
        };
        Waiting {
            fence,
            complete_at,
            looked_at: None,
        }
    }

    /// Whether the checkpoint `cp` is at or past the fence.
    async fn reached(&mut self, cp: &Position, source: &mut Conn) -> anyhow::Result<bool> {
        if let (Fence::MySqlGtid(set), None) = (&self.fence, &self.complete_at) {
            let head = source::head(source).await?;
            if self.looked_at.as_ref() != Some(&head) {
                self.complete_at = gtid::fence_position(source, set)
                    .await
                    .context("source: finding where the GTID set is complete")?;
                self.looked_at = Some(head);
                if let Some(at) = &self.complete_at {
                    tracing::info!(gtid = %set, position = %at, "the source's binlog completes the GTID set here");
                }
            }
        }
        match &self.fence {
            Fence::Gtid(want) => gtid_reached(want, cp, source).await,
            _ => Ok(self.complete_at.as_ref().is_some_and(|at| cp >= at)),
        }
    }
}

/// Whether the MariaDB GTID state at the checkpoint has reached `want`.
async fn gtid_reached(
    want: &[(u32, u32, u64)],
    cp: &Position,
    source: &mut Conn,
) -> anyhow::Result<bool> {
    // NULL when the position is not in the binlog any more
    let at: Option<mysql_async::Row> = source
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&cp.file, cp.pos))
        .await
        .context("source: BINLOG_GTID_POS at the checkpoint")?;
    let have = at
        .and_then(|r| r.get::<Option<String>, _>(0).flatten())
        .and_then(|s| parse_gtids(&s))
        .unwrap_or_default();
    Ok(want
        .iter()
        .all(|(d, _, n)| have.iter().any(|(hd, _, hn)| hd == d && hn >= n)))
}

/// `reshard wait`.
pub async fn wait(path: &Path, until: &str, timeout: Option<u64>) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(path)?;
    let mut servers = Servers::connect(&cfg).await?;
    servers.ensure_migrated(&cfg).await?;
    let flavor = db::flavor(&mut servers.source, "source").await?;
    let mut waiting = Waiting::new(fence(until, &mut servers.source, flavor).await?);
    let deadline = timeout.map(|s| Instant::now() + Duration::from_secs(s));
    let name = &cfg.pipeline.name;
    tracing::info!(fence = %waiting.fence, "waiting until every shard has applied through the fence");
    loop {
        let cp = checkpoint::load(&mut servers.control, name).await?;
        if let Some(cp) = &cp {
            if waiting.reached(&cp.position, &mut servers.source).await? {
                println!(
                    "reached {}: every shard has applied through it (checkpoint {})",
                    waiting.fence, cp.position
                );
                return Ok(ExitCode::SUCCESS);
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let cp = cp.map(|c| c.position);
            print!(
                "{}",
                lag_report(&cfg, &mut servers, &waiting, cp.as_ref()).await?
            );
            return Ok(ExitCode::from(EXIT_FINDINGS));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What each shard still lacks when the fence was not reached in time.
async fn lag_report(
    cfg: &Config,
    servers: &mut Servers,
    waiting: &Waiting,
    cp: Option<&Position>,
) -> anyhow::Result<String> {
    let fence = &waiting.fence;
    let files = crate::checkpoint::continuity::binlog_sizes(&mut servers.source)
        .await
        .unwrap_or_default();
    let mut out = format!(
        "timed out before {fence}: checkpoint {}\n",
        cp.map_or_else(|| "none".to_string(), Position::to_string)
    );
    for (name, conn) in &mut servers.targets {
        let lanes = shard::applied(conn, &cfg.pipeline.name, name).await?;
        let applied = shard_applied(cp, &lanes, cfg.pipeline.lanes.per_shard());
        let lag = match (fence, &waiting.complete_at, &applied) {
            (_, _, None) => "nothing applied".to_string(),
            (Fence::Gtid(_), _, Some(_)) => "GTID not reached".to_string(),
            (_, Some(to), Some(at)) => lag_bytes(at, to, &files)
                .map_or_else(|| "behind".to_string(), |b| format!("{b} bytes behind")),
            (_, None, Some(_)) => {
                "the source's binlog does not complete the GTID set yet".to_string()
            }
        };
        let at = applied.map_or_else(|| "-".to_string(), |p| p.to_string());
        out.push_str(&format!("  shard {name}: applied through {at}, {lag}\n"));
    }
    Ok(out)
}

/// A lower bound of what a shard applied: the checkpoint, or the least of
/// its lanes' recorded positions when every lane recorded a later one.
fn shard_applied(cp: Option<&Position>, lanes: &[Position], per_shard: usize) -> Option<Position> {
    let least = lanes.iter().min().filter(|_| lanes.len() >= per_shard);
    match (cp, least) {
        (Some(c), Some(l)) => Some(c.max(l).clone()),
        (c, l) => c.or(l).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtids_parse_and_positions_are_not_gtids() {
        assert_eq!(
            parse_gtids("0-1-100, 2-5-7"),
            Some(vec![(0, 1, 100), (2, 5, 7)])
        );
        assert_eq!(parse_gtids("mysql-bin.000001:4"), None);
        assert_eq!(parse_gtids("0-1"), None);
        assert_eq!(parse_gtids(""), None);
    }

    #[test]
    fn a_shard_has_applied_at_least_the_checkpoint() {
        let p = |n| Position::new("b.000001", n);
        assert_eq!(shard_applied(Some(&p(50)), &[p(70), p(90)], 2), Some(p(70)));
        // a lane without a record: only the checkpoint is known
        assert_eq!(shard_applied(Some(&p(50)), &[p(90)], 2), Some(p(50)));
        assert_eq!(shard_applied(Some(&p(50)), &[p(10), p(20)], 2), Some(p(50)));
        assert_eq!(shard_applied(None, &[], 2), None);
    }
}
