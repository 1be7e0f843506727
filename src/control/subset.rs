//! The shard subsets of a pipeline (`reshard_subset`): which shards each
//! checkpoint row stands for.
//!
//! With `[pipeline] shards`, several processes tail one source and each
//! applies a disjoint subset of the shards; each subset has its own rows
//! in the control database, keyed `name/s0,s1` (checkpoint, copy, floor,
//! position log, schema history, dead letters). A row's checkpoint says:
//! every change up to here is durable on every shard *of this subset*. That
//! statement stays true whoever applies the shards later (targets only
//! move forward), which is what lets subsets be regrouped:
//!
//! * a **new subset** (no checkpoint row) whose shards other subsets
//!   applied before resumes at the lowest, over its shards, of the highest
//!   checkpoint that covers each ([`inherit`]): every shard then has every
//!   change before it. It must not copy instead — a copy only writes the
//!   rows the source has, so rows deleted since the old subset stopped
//!   would stay on its shards;
//! * the **floor** of a set of shards is the highest floor of any row that
//!   covers one of them ([`floor`]): tombstones are pruned per shard, by
//!   whichever subset applied it, and a replay or a resumed subset must
//!   skip (or refuse) what lies below any of them;
//! * an **old row** resumed after its shards moved on under other subsets
//!   must not start below their floors ([`check_resume`]): re-applying an
//!   insert whose delete's tombstone is pruned would resurrect the row.
//!
//! The argument in full: `docs/architecture.md`, "Scale-out: shard
//! subsets".

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::err;
use crate::checkpoint::Checkpoint;
use crate::config::Pipeline;
use crate::db::DbError;
use crate::position::Position;
use crate::version::Version;

/// One checkpoint row of a pipeline and the shards it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subset {
    /// The row's key (`name` or `name/s0,s1`).
    pub key: String,
    /// Its shards; `None`: every shard of `[targets]`.
    pub shards: Option<Vec<String>>,
    pub checkpoint: Option<Checkpoint>,
    pub floor: Option<Version>,
    /// Its initial copy started and has not finished.
    pub copying: bool,
    /// Commit time of the checkpointed transaction (0: unknown).
    pub source_ts: u32,
}

impl Subset {
    /// Whether the row stands for `shard`.
    pub fn covers(&self, shard: &str) -> bool {
        self.shards
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == shard))
    }

    fn overlaps(&self, shards: &[String]) -> bool {
        shards.iter().any(|s| self.covers(s))
    }
}

/// Records which shards the process's rows stand for (before it writes
/// any of them).
pub async fn register(conn: &mut Conn, p: &Pipeline) -> Result<(), DbError> {
    let shards = p.shards.as_ref().map(|s| s.join(",")).unwrap_or_default();
    conn.exec_drop(
        "INSERT INTO reshard_subset (pipeline, base_pipeline, shards) VALUES (?, ?, ?) \
         ON DUPLICATE KEY UPDATE base_pipeline = VALUES(base_pipeline), shards = VALUES(shards)",
        (&p.name, &p.base_name, shards),
    )
    .await
    .map_err(err("registering the shard subset"))
}

type Row = (
    String,
    String,
    Option<String>,
    Option<u64>,
    Option<u16>,
    Option<String>,
    Option<Vec<u8>>,
    Option<u32>,
    Option<String>,
);

/// Every registered subset of the pipeline `base`, by key.
pub async fn list(conn: &mut Conn, base: &str) -> Result<Vec<Subset>, DbError> {
    let rows: Vec<Row> = conn
        .exec(
            "SELECT s.pipeline, s.shards, c.binlog_file, c.binlog_pos, c.epoch, c.source_identity, \
             c.floor, c.source_ts, n.state FROM reshard_subset s \
             LEFT JOIN reshard_checkpoint c ON c.pipeline = s.pipeline \
             LEFT JOIN reshard_snapshot n ON n.pipeline = s.pipeline \
             WHERE s.base_pipeline = ? ORDER BY s.pipeline",
            (base,),
        )
        .await
        .map_err(err("reading the shard subsets"))?;
    Ok(rows.into_iter().map(subset).collect())
}

fn subset((key, shards, file, pos, epoch, identity, floor, ts, copy): Row) -> Subset {
    let checkpoint = match (file, pos, epoch, identity) {
        (Some(file), Some(pos), Some(epoch), Some(source_identity)) => Some(Checkpoint {
            position: Position::new(file, pos),
            epoch,
            source_identity,
        }),
        _ => None,
    };
    Subset {
        key,
        shards: (!shards.is_empty()).then(|| shards.split(',').map(str::to_string).collect()),
        checkpoint,
        floor: floor
            .and_then(|b| Version::from_bytes(&b).ok())
            .filter(|v| *v > Version::ZERO),
        copying: copy.is_some_and(|s| s != "done"),
        source_ts: ts.unwrap_or(0),
    }
}

/// Why a subset cannot start where its shards' history says.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubsetError {
    #[error("shard(s) {shards} of this subset were never applied by another subset, but {applied} were (by {by}): the ones need an initial copy, the others must resume where they stopped. Run the new shards in a subset of their own (it copies them), or start with --from FILE:POS")]
    Partly {
        shards: String,
        applied: String,
        by: String,
    },
    #[error("subset {key} applied shards of this one and has not finished its initial copy; finish it first (run it again), then regroup")]
    Copying { key: String },
    #[error("subset {key} applied shards of this one at epoch {epoch} on source {identity}, not at [pipeline] epoch {want} on this source: its positions cannot be compared. Start with --from FILE:POS --force")]
    Incomparable {
        key: String,
        epoch: u16,
        identity: String,
        want: u16,
    },
    #[error("the start {start} is below the floor {floor} of subset {key}: tombstones of its shards are pruned up to there, and re-applying older changes could bring deleted rows back. Start with --from FILE:POS --force at or after the floor's position, or re-seed the shards")]
    BelowFloor {
        start: Position,
        floor: Version,
        key: String,
    },
    #[error("checkpoint position {0}: {1}")]
    Version(Position, crate::version::VersionError),
}

/// Where a new subset starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inherit {
    /// No other subset applied any of its shards: the initial copy.
    Fresh,
    /// Resume here, with this floor; `from` names the rows it comes from.
    Resume {
        position: Position,
        floor: Option<Version>,
        from: Vec<String>,
    },
}

/// The start of a new subset `key` applying `shards` (see the module
/// docs), from the other rows of its pipeline.
pub fn inherit(
    key: &str,
    shards: &[String],
    rows: &[Subset],
    epoch: u16,
    identity: &str,
) -> Result<Inherit, SubsetError> {
    let others: Vec<&Subset> = rows
        .iter()
        .filter(|r| r.key != key && r.checkpoint.is_some() && r.overlaps(shards))
        .collect();
    if others.is_empty() {
        return Ok(Inherit::Fresh);
    }
    let (covered, uncovered): (Vec<&String>, Vec<&String>) = shards
        .iter()
        .partition(|s| others.iter().any(|r| r.covers(s)));
    if !uncovered.is_empty() {
        let join = |v: Vec<&String>| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        return Err(SubsetError::Partly {
            shards: join(uncovered),
            applied: join(covered),
            by: others
                .iter()
                .map(|r| r.key.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    for r in &others {
        comparable(r, epoch, identity)?;
    }
    let highest = |s: &String| {
        others
            .iter()
            .filter(|r| r.covers(s))
            .filter_map(|r| r.checkpoint.as_ref().map(|c| &c.position))
            .max()
    };
    let Some(position) = shards.iter().filter_map(highest).min().cloned() else {
        return Ok(Inherit::Fresh);
    };
    check_floors(&position, epoch, shards, rows)?;
    Ok(Inherit::Resume {
        floor: floor(shards, rows),
        from: others.iter().map(|r| r.key.clone()).collect(),
        position,
    })
}

/// A row whose positions can be compared with this start's.
fn comparable(r: &Subset, epoch: u16, identity: &str) -> Result<(), SubsetError> {
    if r.copying {
        return Err(SubsetError::Copying { key: r.key.clone() });
    }
    match &r.checkpoint {
        Some(c) if c.epoch != epoch || c.source_identity != identity => {
            Err(SubsetError::Incomparable {
                key: r.key.clone(),
                epoch: c.epoch,
                identity: c.source_identity.clone(),
                want: epoch,
            })
        }
        _ => Ok(()),
    }
}

/// The floor of `shards`: the highest floor of a row covering one.
pub fn floor(shards: &[String], rows: &[Subset]) -> Option<Version> {
    rows.iter()
        .filter(|r| r.overlaps(shards))
        .filter_map(|r| r.floor)
        .max()
}

/// Refuses to stream `shards` from `start` when another row pruned their
/// tombstones above it (see the module docs).
fn check_floors(
    start: &Position,
    epoch: u16,
    shards: &[String],
    rows: &[Subset],
) -> Result<(), SubsetError> {
    let v = Version::at(epoch, start, 0).map_err(|e| SubsetError::Version(start.clone(), e))?;
    let above = rows
        .iter()
        .filter(|r| r.overlaps(shards))
        .filter_map(|r| r.floor.map(|f| (f, &r.key)))
        .filter(|(f, _)| *f > v)
        .max();
    match above {
        Some((floor, key)) => Err(SubsetError::BelowFloor {
            start: start.clone(),
            floor,
            key: key.clone(),
        }),
        None => Ok(()),
    }
}

/// Refuses to resume the existing row `key` at `start` when another
/// subset's pruning has since passed it on one of its shards.
pub fn check_resume(
    key: &str,
    start: &Position,
    epoch: u16,
    shards: &[String],
    rows: &[Subset],
) -> Result<(), SubsetError> {
    let others: Vec<Subset> = rows.iter().filter(|r| r.key != key).cloned().collect();
    check_floors(start, epoch, shards, &others)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, shards: Option<&[&str]>, pos: Option<u64>, floor: Option<u64>) -> Subset {
        Subset {
            key: key.into(),
            shards: shards.map(|s| s.iter().map(|x| x.to_string()).collect()),
            checkpoint: pos.map(|p| Checkpoint {
                position: Position::new("b.000002", p),
                epoch: 0,
                source_identity: "server_id=1".into(),
            }),
            floor: floor.map(|f| Version::new(0, 2, f, 0).unwrap()),
            copying: false,
            source_ts: 0,
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_subset_nobody_applied_is_copied() {
        let rows = [row("p/s0", Some(&["s0"]), Some(100), None)];
        let got = inherit("p/s1", &names(&["s1"]), &rows, 0, "server_id=1");
        assert_eq!(got, Ok(Inherit::Fresh));
    }

    /// Each shard is as far as the highest row that covers it; the new
    /// subset starts at the lowest of those.
    #[test]
    fn regrouping_resumes_at_the_lowest_highest_checkpoint() {
        let rows = [
            row("p", None, Some(50), Some(10)),
            row("p/s0,s1", Some(&["s0", "s1"]), Some(300), Some(20)),
            row("p/s2,s3", Some(&["s2", "s3"]), Some(200), None),
        ];
        let got = inherit("p/s1,s2", &names(&["s1", "s2"]), &rows, 0, "server_id=1").unwrap();
        let Inherit::Resume {
            position,
            floor,
            from,
        } = got
        else {
            panic!("{got:?}");
        };
        assert_eq!(position, Position::new("b.000002", 200));
        assert_eq!(floor, Some(Version::new(0, 2, 20, 0).unwrap()));
        assert_eq!(from.len(), 3);
        // back to one process: the same rule over every shard
        let all = names(&["s0", "s1", "s2", "s3"]);
        let back = [
            row("p/s0,s1", Some(&["s0", "s1"]), Some(300), None),
            rows[2].clone(),
        ];
        let Ok(Inherit::Resume { position, .. }) = inherit("p", &all, &back, 0, "server_id=1")
        else {
            panic!()
        };
        assert_eq!(position.pos, 200);
    }

    #[test]
    fn a_half_applied_subset_is_refused() {
        let rows = [row("p/s0", Some(&["s0"]), Some(100), None)];
        let e = inherit("p/s0,s9", &names(&["s0", "s9"]), &rows, 0, "server_id=1").unwrap_err();
        assert!(matches!(e, SubsetError::Partly { .. }), "{e}");
        let mut copying = rows.clone();
        copying[0].copying = true;
        let e = inherit("q", &names(&["s0"]), &copying, 0, "server_id=1").unwrap_err();
        assert!(matches!(e, SubsetError::Copying { .. }), "{e}");
        let e = inherit("q", &names(&["s0"]), &rows, 1, "server_id=1").unwrap_err();
        assert!(matches!(e, SubsetError::Incomparable { .. }), "{e}");
    }

    /// A start below another row's floor on a shared shard could bring
    /// back rows whose tombstones that row pruned.
    #[test]
    fn a_start_below_a_floor_of_its_shards_is_refused() {
        let rows = [
            row("p/s0", Some(&["s0"]), Some(100), None),
            row("p/s1", Some(&["s1"]), Some(900), Some(500)),
        ];
        let e = inherit("p", &names(&["s0", "s1"]), &rows, 0, "server_id=1").unwrap_err();
        assert!(matches!(e, SubsetError::BelowFloor { .. }), "{e}");
        // an old row resumed after the shard moved on
        let old = row("p", None, Some(100), None);
        let all = [old, rows[1].clone()];
        let start = Position::new("b.000002", 100);
        assert!(check_resume("p", &start, 0, &names(&["s0", "s1"]), &all).is_err());
        assert!(check_resume("p/s1", &start, 0, &names(&["s1"]), &all).is_ok());
        assert_eq!(
            floor(&names(&["s0"]), &all),
            None,
            "s0's floor ignores s1's pruning"
        );
    }
}
