//! The invariants of `docs/architecture.md`, "Invariants and the
//! simulation", checked after every step (invariant 3 is checked as each
//! checkpoint is written, in `steps`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::steps::sv;
use super::system::{Env, Ghost, Mode, Phase, State, Violation};
use super::target::{Cell, TRow};

fn show_key(row: &TRow) -> String {
    row.cells.first().map(Cell::show).unwrap_or_default()
}

impl Env {
    /// Invariants 1, 2 and 4.
    pub fn check(&mut self, s: &mut State) -> Result<(), Violation> {
        // the ghost's updates, found first: most steps change no target,
        // and then the ghost is not copied
        let mut updates: Vec<((u8, Vec<u8>), Ghost)> = Vec::new();
        for (shard, t) in s.targets.iter().enumerate() {
            for tomb in t.tombs.values() {
                let k = (shard as u8, tomb.key.clone());
                let g = s.ghost.get(&k).copied().unwrap_or_default();
                if tomb.version > g.tomb {
                    updates.push((
                        k,
                        Ghost {
                            tomb: tomb.version,
                            ..g
                        },
                    ));
                }
            }
        }
        if !updates.is_empty() {
            let ghost = Arc::make_mut(&mut s.ghost);
            for (k, g) in updates.drain(..) {
                ghost.insert(k, g);
            }
        }
        let column = self.w.column_version;
        for (shard, t) in s.targets.iter().enumerate() {
            for (k, row) in &t.rows {
                let key = (shard as u8, k.clone());
                let g = s.ghost.get(&key).copied().unwrap_or_default();
                if row.version < g.row {
                    return Err(Violation {
                        invariant: 1,
                        what: format!(
                            "s{shard} key {} went from @{} to @{}",
                            show_key(row),
                            sv(g.row, column),
                            sv(row.version, column)
                        ),
                    });
                }
                if row.version <= g.tomb {
                    return Err(Violation {
                        invariant: 2,
                        what: format!(
                            "s{shard} key {} is present @{} but was deleted @{}",
                            show_key(row),
                            sv(row.version, column),
                            sv(g.tomb, column)
                        ),
                    });
                }
                if row.version > g.row {
                    updates.push((
                        key,
                        Ghost {
                            row: row.version,
                            ..g
                        },
                    ));
                }
            }
        }
        if !updates.is_empty() {
            let ghost = Arc::make_mut(&mut s.ghost);
            for (k, g) in updates {
                ghost.insert(k, g);
            }
        }
        if self.quiescent(s) {
            self.converged(s)?;
        }
        Ok(())
    }

    /// No pending work: everything committed was dispatched and applied
    /// by `run`.
    pub fn quiescent(&self, s: &State) -> bool {
        match &s.phase {
            Phase::Stream(st) => {
                st.mode == Mode::Run && st.cursor == s.committed && st.idle_lanes()
            }
            Phase::Copy { .. } => false,
        }
    }

    /// Invariant 4: every target equals route(source), by an oracle that
    /// does not use reshard (shard = tenant % 2, rows with a tenant; a key
    /// found by its collation, stored with the source's bytes).
    fn converged(&mut self, s: &State) -> Result<(), Violation> {
        self.seen.converged += 1;
        let mut want: Vec<BTreeMap<Vec<u8>, Vec<Cell>>> = vec![BTreeMap::new(); self.p.shards];
        for row in self.w.states[usize::from(s.committed)].values() {
            let Some(t) = row.tenant else { continue };
            let cells = row.cells(self.w.mode);
            let key = self.coll.key(&cells[..1], true);
            let mut stored: Vec<Cell> = cells.iter().map(Cell::of).collect();
            stored[0] = self.coll.stored(&cells[0]);
            want[t.rem_euclid(2) as usize].insert(key, stored);
        }
        for (shard, (t, want)) in s.targets.iter().zip(&want).enumerate() {
            let have: BTreeMap<&Vec<u8>, &Vec<Cell>> =
                t.rows.iter().map(|(k, r)| (k, &r.cells)).collect();
            let want: BTreeMap<&Vec<u8>, &Vec<Cell>> = want.iter().collect();
            if have != want {
                let show = |m: &BTreeMap<&Vec<u8>, &Vec<Cell>>| {
                    let rows: Vec<String> = m
                        .values()
                        .map(|c| c.iter().map(Cell::show).collect::<Vec<_>>().join(","))
                        .collect();
                    format!("[{}]", rows.join(" "))
                };
                return Err(Violation {
                    invariant: 4,
                    what: format!(
                        "after {} event groups s{shard} holds {} but route(source) is {}",
                        s.committed,
                        show(&have),
                        show(&want)
                    ),
                });
            }
        }
        Ok(())
    }
}
