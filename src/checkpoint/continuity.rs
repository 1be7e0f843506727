//! Failover safety: does the source still hold the history the checkpoint
//! was taken on?
//!
//! A checkpoint is a position in one server's binlog. After a failover to
//! a replica that was behind, a `RESET MASTER`, or a restore of the data
//! directory from a backup, the server may answer at the same address, with
//! the same `server_id` (so the same identity) and the same file names, and
//! still not hold the transactions before the checkpoint — reshard already
//! applied them — or hold *other* ones at the same positions. Streaming
//! from the checkpoint then silently follows another history: rows of the
//! lost transactions stay on the targets, and the new ones are versioned as
//! if they came after them.
//!
//! So before `run` resumes ([`check`]; and before each attempt after a
//! failure, [`recheck`], which also wants the same server):
//!
//! * the checkpoint (and the anchor below) must be inside the source's
//!   binlog: its file listed and at least that long. A restored server
//!   starts a new file where the lost one was, shorter than the checkpoint.
//! * On MariaDB, the **anchor** — a position at or before the checkpoint
//!   with the GTID state the source reported for it (`BINLOG_GTID_POS`),
//!   kept in the checkpoint row — must still hold: the source's
//!   `gtid_binlog_pos` must include its GTIDs (every domain at least as far;
//!   a restored or lagging server is behind), and the source must report
//!   the same GTID state at the anchor's position (a server that wrote other
//!   transactions there reports other GTIDs).
//!
//! Either failing is a definite error saying what was expected, what was
//! found and how to continue (an epoch raise with `run --from … --force`,
//! `replay --from-gtid`, or a re-seed); never a silent resume.
//!
//! The anchor is refreshed while `run` runs ([`start`], every
//! [`ANCHOR_EVERY`]) and when it stops ([`record`]): `BINLOG_GTID_POS`
//! reads the binlog file up to the position, so it is not run at every
//! checkpoint. A history lost between the anchor and the checkpoint is
//! caught by the position check only. An epoch raise or `--from` clears
//! the anchor: the checkpoint then starts a new history. MySQL has no
//! `BINLOG_GTID_POS`; its checkpoints get the position check only. The
//! argument is in `docs/architecture.md`, "Errors, retries and ownership".

use std::collections::BTreeMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::config::Config;
use crate::control::checkpoint::{self, Anchor};
use crate::db::{self, DbError, Retry, Session};
use crate::position::Position;
use crate::task::Background;

/// How often a running pipeline refreshes its anchor.
pub const ANCHOR_EVERY: Duration = Duration::from_secs(300);

/// The source does not hold the checkpoint's history.
#[derive(Debug, thiserror::Error)]
pub enum ContinuityError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the source's binlog does not contain the {what} {position}: {found}. The source lost binlog that reshard already applied (restored from a backup, reset, or failed over to a server that was behind). {HOW}")]
    Truncated {
        what: &'static str,
        position: Position,
        found: String,
    },
    #[error("the source's GTID state does not include the checkpoint's: expected gtid_binlog_pos to include {expected} (recorded at {position}, at or before the checkpoint), found {found}. The source lost transactions that reshard already applied to the targets (restored from a backup, or failed over to a server that was behind). {HOW}")]
    GtidMissing {
        expected: String,
        found: String,
        position: Position,
    },
    #[error("the source is another server than the one the checkpoint was taken on: {found}, not {expected} (a failover while reshard was running?); its binlog positions are not comparable. {HOW}")]
    ServerChanged { expected: String, found: String },
    #[error("the source holds another history than the checkpoint's: at {position} it reports the GTID state {found}, but reshard recorded {expected} there. {HOW}")]
    Diverged {
        expected: String,
        found: String,
        position: Position,
    },
}

impl ContinuityError {
    /// Only a failure to ask the source can pass; the rest is definite.
    pub fn retry(&self) -> Retry {
        match self {
            ContinuityError::Db(e) => e.retry(),
            _ => Retry::Definite,
        }
    }
}

const HOW: &str = "Resuming here would stream another history: the rows of the lost transactions stay on the targets and new changes could be versioned below them. To continue on purpose, raise [pipeline] epoch and start with `reshard run --from FILE:POS --force` at a position of the source's current history (e.g. its head), re-apply a range with `reshard replay --from-gtid SET`, or re-seed the targets";

/// A MariaDB GTID state (`domain-server-seq,…`): per domain, its last GTID.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GtidState(BTreeMap<u32, (u32, u64)>);

impl GtidState {
    /// Parses `0-1-100,1-2-5`; `None` when it is not that shape.
    pub fn parse(s: &str) -> Option<GtidState> {
        let mut map = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split('-');
            let (d, srv, seq) = (it.next()?, it.next()?, it.next()?);
            if it.next().is_some() {
                return None;
            }
            map.insert(d.parse().ok()?, (srv.parse().ok()?, seq.parse().ok()?));
        }
        Some(GtidState(map))
    }

    /// Whether every domain of `other` is at least as far here.
    pub fn includes(&self, other: &GtidState) -> bool {
        other
            .0
            .iter()
            .all(|(d, (_, seq))| self.0.get(d).is_some_and(|(_, s)| s >= seq))
    }
}

/// Refuses to resume `cp` of `pipeline` when the source no longer holds
/// its history (see the module docs).
pub async fn check(
    source: &mut Conn,
    control: &mut Conn,
    pipeline: &str,
    cp: &Position,
) -> Result<(), ContinuityError> {
    let anchor = checkpoint::anchor(control, pipeline).await?;
    if let (Some(a), Some(now)) = (&anchor, binlog_gtid_state(source).await?) {
        let expected = GtidState::parse(&a.gtid).unwrap_or_default();
        if !GtidState::parse(&now).is_some_and(|n| n.includes(&expected)) {
            return Err(ContinuityError::GtidMissing {
                expected: a.gtid.clone(),
                found: if now.is_empty() {
                    "nothing".into()
                } else {
                    now
                },
                position: a.position.clone(),
            });
        }
        if let Some(there) = gtid_at(source, &a.position).await {
            if GtidState::parse(&there) != Some(expected) {
                return Err(ContinuityError::Diverged {
                    expected: a.gtid.clone(),
                    found: there,
                    position: a.position.clone(),
                });
            }
        }
    }
    let sizes = binlog_sizes(source).await?;
    inside(&sizes, "checkpoint", cp)?;
    if let Some(a) = &anchor {
        inside(&sizes, "anchor", &a.position)?;
    }
    Ok(())
}

/// Before an attempt that follows a failure, when the source may have
/// failed over in the meantime: the source is still the server the
/// checkpoint `cp` was taken on (`identity`), and [`check`] holds.
pub async fn recheck(cfg: &Config, identity: &str, cp: &Position) -> Result<(), ContinuityError> {
    let budget = cfg.pipeline.connect_timeout;
    let mut source = db::connect(&cfg.source, Session::Read, budget).await?;
    let found = crate::source::server_identity(&mut source).await?;
    if found != identity {
        return Err(ContinuityError::ServerChanged {
            expected: identity.to_string(),
            found,
        });
    }
    let mut control = db::connect(&cfg.control, Session::Read, budget).await?;
    let result = check(&mut source, &mut control, &cfg.pipeline.name, cp).await;
    let _ = source.disconnect().await;
    result
}

/// A position inside its file, when the file is listed (a purged or
/// missing file is the caller's check).
fn inside(
    sizes: &[(String, u64)],
    what: &'static str,
    p: &Position,
) -> Result<(), ContinuityError> {
    match sizes.iter().find(|(f, _)| *f == p.file) {
        Some((_, size)) if p.pos > *size => Err(ContinuityError::Truncated {
            what,
            position: p.clone(),
            found: format!("{} is only {size} bytes long", p.file),
        }),
        _ => Ok(()),
    }
}

/// `@@gtid_binlog_pos`; `None` on a server without it (MySQL).
async fn binlog_gtid_state(source: &mut Conn) -> Result<Option<String>, DbError> {
    match source
        .query_first::<String, _>("SELECT @@gtid_binlog_pos")
        .await
    {
        Ok(v) => Ok(Some(v.unwrap_or_default())),
        // ER_UNKNOWN_SYSTEM_VARIABLE
        Err(mysql_async::Error::Server(e)) if e.code == 1193 => Ok(None),
        Err(e) => Err(DbError::query("source", "SELECT @@gtid_binlog_pos", e)),
    }
}

/// `BINLOG_GTID_POS(file, pos)`: the GTID state at a position; `None`
/// when the server cannot say (MySQL, a purged file, a position past the
/// file's end).
pub async fn gtid_at(source: &mut Conn, p: &Position) -> Option<String> {
    source
        .exec_first::<Option<String>, _, _>("SELECT BINLOG_GTID_POS(?, ?)", (&p.file, p.pos))
        .await
        .ok()
        .flatten()
        .flatten()
}

/// `SHOW BINARY LOGS` as (file, size).
pub async fn binlog_sizes(source: &mut Conn) -> Result<Vec<(String, u64)>, DbError> {
    let rows: Vec<mysql_async::Row> = source
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| DbError::query("source", "SHOW BINARY LOGS", e))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((r.get::<String, _>(0)?, r.get::<u64, _>(1)?)))
        .collect())
}

/// Records the GTID state at the stored checkpoint as its anchor (when the
/// checkpoint moved since the last one, and the source can say).
pub async fn record(cfg: &Config) -> Result<Option<Anchor>, DbError> {
    let budget = cfg.pipeline.connect_timeout;
    let name = &cfg.pipeline.name;
    let mut control = db::connect(&cfg.control, Session::Read, budget).await?;
    let Some(cp) = checkpoint::load(&mut control, name).await? else {
        return Ok(None);
    };
    if cp.epoch != cfg.pipeline.epoch {
        return Ok(None);
    }
    let old = checkpoint::anchor(&mut control, name).await?;
    if old.as_ref().is_some_and(|a| a.position == cp.position) {
        return Ok(old);
    }
    let mut source = db::connect(&cfg.source, Session::Read, budget).await?;
    let Some(gtid) = gtid_at(&mut source, &cp.position).await else {
        return Ok(None);
    };
    let anchor = Anchor {
        position: cp.position,
        gtid,
    };
    checkpoint::set_anchor(&mut control, name, &anchor).await?;
    let _ = source.disconnect().await;
    Ok(Some(anchor))
}

/// Refreshes the anchor now and every [`ANCHOR_EVERY`] until the returned
/// task is dropped; failures are logged and retried at the next turn.
pub fn start(cfg: &Config) -> Background {
    let cfg = cfg.clone();
    Background::spawn(async move {
        loop {
            log_record(&cfg).await;
            tokio::time::sleep(ANCHOR_EVERY).await;
        }
    })
}

/// [`record`], logging the outcome.
pub async fn log_record(cfg: &Config) {
    match record(cfg).await {
        Ok(Some(a)) => {
            tracing::debug!(position = %a.position, gtid = %a.gtid, "checkpoint anchored")
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "recording the checkpoint's GTID state failed; retrying later")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_states_compare_per_domain() {
        let g = |s: &str| GtidState::parse(s).unwrap();
        assert!(g("0-1-100,1-2-5").includes(&g("0-1-99")));
        assert!(
            g("0-2-100").includes(&g("0-1-100")),
            "a failover keeps the domain's sequence"
        );
        assert!(!g("0-1-100").includes(&g("0-1-101")));
        assert!(!g("0-1-100").includes(&g("1-1-1")), "a domain it lacks");
        assert!(g("").includes(&g("")));
        assert!(!g("").includes(&g("0-1-1")), "RESET MASTER");
        assert_eq!(GtidState::parse("0-1"), None);
        assert_eq!(GtidState::parse("0-1-2-3"), None);
        assert_eq!(GtidState::parse("a-1-2"), None);
    }

    #[test]
    fn a_position_past_its_files_end_is_not_in_the_binlog() {
        let sizes = vec![
            ("b.000001".to_string(), 1000),
            ("b.000002".to_string(), 400),
        ];
        let p = |f: &str, n| Position::new(f, n);
        assert!(inside(&sizes, "checkpoint", &p("b.000002", 400)).is_ok());
        assert!(
            inside(&sizes, "checkpoint", &p("b.000009", 4)).is_ok(),
            "the caller's check"
        );
        let e = inside(&sizes, "checkpoint", &p("b.000002", 5000)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("b.000002 is only 400 bytes long"), "{msg}");
        assert!(msg.contains("--from") && msg.contains("epoch"), "{msg}");
    }
}
