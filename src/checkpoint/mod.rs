//! Checkpoints: reshard's own tables ([`migrate`]), the checkpoint row
//! ([`store`]), the low-watermark computation ([`tracker`]), the
//! coordinator's bookkeeping of what to save ([`bookkeeping`]) and tombstone
//! pruning with its replay floor ([`prune`]).

pub mod bookkeeping;
pub mod migrate;
pub mod prune;
pub mod store;
pub mod tracker;

pub use store::Checkpoint;
pub use tracker::{LaneProgress, Tracker};
