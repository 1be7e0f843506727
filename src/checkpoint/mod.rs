//! Checkpoints: reshard's own tables ([`migrate`]), the checkpoint row
//! ([`store`]) and the low-watermark computation ([`tracker`]).

pub mod migrate;
pub mod store;
pub mod tracker;

pub use store::Checkpoint;
pub use tracker::{LaneProgress, Tracker};
