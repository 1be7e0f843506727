//! A deterministic simulation of reshard: copy, stream, lanes, crashes,
//! replays, pruning and epoch raises, driving reshard's real pure parts
//! with simulated I/O. `docs/architecture.md`, "Invariants and the
//! simulation", states what it checks and why that is the argument.
//!
//! * [`model`] — the source: workloads, binlog positions;
//! * [`target`] — an in-memory target with the server's write guards;
//! * [`system`] — the pipeline's state and the steps the scheduler may take;
//! * [`steps`] — what each step does (reshard's real parts, wired);
//! * [`check`] — the invariants;
//! * [`search`] — exhaustive (BFS) and random search, shrinking, traces.
#![allow(dead_code)]

pub mod check;
pub mod model;
pub mod search;
pub mod steps;
pub mod system;
pub mod target;
