//! reshard's own tables, and the only place their SQL text lives.
//!
//! In the **control database** (`[control] url`), per pipeline (per shard
//! subset with `[pipeline] shards`):
//!
//! * [`checkpoint`] — the checkpoint row: position, epoch, source identity,
//!   the replay floor, the commit time of the checkpointed transaction and
//!   where the current epoch began;
//! * [`snapshot`] — the initial copy: its position P and per-table progress;
//! * [`dead_letter`] — rows that could not be routed;
//! * [`figures`] — the latest figures (metrics) of the process applying
//!   each checkpoint row, for `status`;
//! * [`lease`] — the named locks that give every shard one applier;
//! * [`subset`] — which shards each checkpoint row stands for (scale-out);
//! * [`position_log`] — (commit time, position) pairs that turn binlog age
//!   into a tombstone pruning threshold;
//! * [`schema_history`] — the columns of each mapped source table from the
//!   position they became valid at, and the scratch table DDLs are
//!   replayed on;
//! * [`migrations`] — the embedded migrations and their record;
//! * [`collations`] — key collation weights learned from the source, per
//!   source build (not per pipeline).
//!
//! On **every target** ([`shard`]): tombstones and the lanes' applied
//! positions.
//!
//! Keeping the SQL here makes the invariants of these tables checkable in
//! one place: the checkpoint is written only by [`checkpoint`] (the initial
//! copy's reset included), tombstones only rise (`GREATEST`) and the
//! floor only rises. Why those rules make resuming and replaying safe is
//! argued in `docs/architecture.md`, "Checkpoint watermark" and
//! "Tombstones and the floor". The schemas are in `migrations/`.

pub mod checkpoint;
pub mod collations;
pub mod dead_letter;
pub mod figures;
pub mod lease;
pub mod migrations;
pub mod position_log;
pub mod schema_history;
pub mod shard;
pub mod snapshot;
pub mod subset;

use crate::db::DbError;

/// Wraps a driver error on the control database.
fn err(context: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> DbError {
    let context = context.into();
    move |e| DbError::query("control", context, e)
}
