//! The *applier* role: versioned writes to the target shards.
//!
//! * [`op`] — write operations and target tables;
//! * [`keyenc`] — canonical key bytes (tombstone key, lane choice, batch
//!   deduplication), with [`collation`] for text keys;
//! * [`sql`] — the SQL text of versioned upserts and deletes (tombstones
//!   and applied positions: [`crate::control::shard`]);
//! * [`lane`] — one connection applying batches in order;
//! * [`link`] — a lane's connection, kept alive and reopened;
//!   [`outage`] — what a lane does while its shard cannot be written;
//! * [`pool`] — the lanes of an attempt, and which lane a key goes to;
//! * [`follow`] — columns the source added, added to the target tables
//!   (`on_ddl = "follow"`).

pub mod collation;
pub mod follow;
pub mod keyenc;
pub mod lane;
pub mod link;
pub mod op;
mod outage;
pub mod pool;
pub mod sql;

pub use lane::{LaneConfig, LaneError, LaneMsg, Stats};
pub use op::{OpKind, TargetTable, WriteOp};
pub use pool::LanePool;
