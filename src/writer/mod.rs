//! The *applier* role: versioned writes to the target shards.
//!
//! * [`op`] — write operations and target tables;
//! * [`keyenc`] — canonical key bytes (tombstone key, lane choice, batch
//!   deduplication), with [`collation`] for text keys;
//! * [`sql`] — the SQL text of versioned upserts and deletes (tombstones
//!   and applied positions: [`crate::control::shard`]);
//! * [`lane`] — one connection applying batches in order, each batch
//!   deduplicated first ([`dedup`]);
//! * [`link`] — a lane's connection, kept alive and reopened;
//!   [`memo`] — what a lane knows of its shards between batches, with
//!   [`prepared`], the upsert statements it keeps prepared;
//!   [`outage`] — what a lane does while its shard cannot be written;
//! * [`pool`] — the lanes of an attempt, and which lane a key goes to;
//!   [`queue`] — a lane's queue, bounded by the operations it holds;
//! * [`follow`] — columns the source added, added to the target tables
//!   (`on_ddl = "follow"`).

pub mod collation;
pub mod dedup;
pub mod follow;
pub mod keyenc;
pub mod lane;
pub mod link;
mod memo;
pub mod op;
mod outage;
pub mod pool;
pub mod prepared;
pub mod queue;
pub mod sql;

pub use lane::{LaneConfig, LaneError, LaneMsg, Stats};
pub use op::{OpKind, TargetTable, WriteOp};
pub use pool::LanePool;
