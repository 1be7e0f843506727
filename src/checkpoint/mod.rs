//! Checkpoints: the checkpoint value ([`Checkpoint`]), the low-watermark
//! computation ([`tracker`]), the coordinator's bookkeeping of what to save
//! ([`bookkeeping`]), tombstone pruning with its replay floor
//! ([`prune`]) and the failover check of a resumed checkpoint
//! ([`continuity`]). The tables they are stored in are [`crate::control`]'s.

pub mod bookkeeping;
pub mod continuity;
pub mod prune;
pub mod tracker;

pub use bookkeeping::{Bookkeeping, Saves};
pub use tracker::{LaneProgress, Tracker};

use crate::position::Position;

/// A stored checkpoint.
///
/// The position of the last source transaction whose operations are
/// durably applied on every shard — always a transaction boundary — plus
/// the epoch and the identity of the source server it was taken on, so a
/// restart can tell when the source's numbering went backwards (`RESET
/// MASTER`, another server) and refuse to write versions that would
/// silently lose against what the targets hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: Position,
    pub epoch: u16,
    pub source_identity: String,
}
