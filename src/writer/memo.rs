//! What a lane knows of its shards between batches, so that it can skip
//! statements whose outcome it already knows (`docs/architecture.md`,
//! "Batches without a transaction").
//!
//! * **Tombstones.** Per target table: may tombstones exist for this
//!   lane's keys? A table with no tombstone at all when the lane starts can
//!   only get tombstones for this lane's keys from this lane (one key is
//!   always applied by one lane; a replay cannot run beside it, the lease
//!   forbids it), so until the lane deletes something there the tombstone
//!   read of an insert-only batch can be skipped.
//! * **Applied positions.** Per shard: the applied position the lane's last
//!   *committed* batch recorded there. Writing the same position again
//!   changes nothing, so a batch whose position every shard it writes
//!   already holds records none (the initial copy's batches all carry the
//!   snapshot position). It is updated only after the COMMIT (or, for a
//!   batch without a transaction, the autocommitted statement) that wrote
//!   the position succeeded, so it never claims a position a rolled-back
//!   transaction wrote; a COMMIT that failed but took effect only makes the
//!   lane write the position again.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;

use super::lane::Part;
use super::prepared::Prepared;
use crate::control::shard;
use crate::db::DbError;
use crate::position::Position;

/// A lane's memory of its shards (see the module docs).
#[derive(Debug, Default)]
pub struct LaneMemo {
    /// Shard index → table → may tombstones exist.
    may_exist: HashMap<usize, HashMap<String, bool>>,
    /// Shard index → the applied position last committed there.
    recorded: HashMap<usize, Position>,
    /// The upsert statements last prepared.
    pub(super) prepared: Prepared,
}

impl LaneMemo {
    /// Whether tombstones may exist for `part`'s table (asked once).
    pub(super) async fn may_exist<Q: Queryable>(
        &mut self,
        q: &mut Q,
        part: &Part<'_>,
    ) -> Result<bool, DbError> {
        let table = part.table.name.as_str();
        if let Some(b) = self.known_tombstones(part) {
            return Ok(b);
        }
        let b = shard::any_tombstone(q, part.server(), &part.shard.database, table).await?;
        self.may_exist
            .entry(part.shard.index)
            .or_default()
            .insert(table.to_string(), b);
        Ok(b)
    }

    /// What [`LaneMemo::may_exist`] would answer without asking, if known.
    fn known_tombstones(&self, part: &Part<'_>) -> Option<bool> {
        self.may_exist
            .get(&part.shard.index)
            .and_then(|t| t.get(part.table.name.as_str()))
            .copied()
    }

    /// The lane is writing a tombstone for `part`'s table.
    pub(super) fn written(&mut self, part: &Part<'_>) {
        self.may_exist
            .entry(part.shard.index)
            .or_default()
            .insert(part.table.name.clone(), true);
    }

    /// Whether shard `shard` already holds `end` as this lane's applied
    /// position, from a batch that committed.
    pub(super) fn holds(&self, shard: usize, end: &Position) -> bool {
        self.recorded.get(&shard) == Some(end)
    }

    /// A transaction or statement that recorded `end` in shard `shard`
    /// committed.
    pub(super) fn committed(&mut self, shard: usize, end: &Position) {
        match self.recorded.get_mut(&shard) {
            Some(p) if p == end => {}
            Some(p) => p.clone_from(end),
            None => {
                self.recorded.insert(shard, end.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_applied_position_is_held_only_once_committed_and_follows_the_last_commit() {
        let mut m = LaneMemo::default();
        let p = Position::new("mysql-bin.000001", 4);
        let q = Position::new("mysql-bin.000001", 900);
        assert!(!m.holds(0, &p));
        m.committed(0, &p);
        assert!(m.holds(0, &p));
        assert!(!m.holds(1, &p), "per shard");
        m.committed(0, &q);
        assert!(!m.holds(0, &p));
        assert!(m.holds(0, &q));
    }
}
