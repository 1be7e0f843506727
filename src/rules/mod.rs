//! The *router* role: rule files, the expression language and shard-key
//! derivation.
//!
//! * [`file`] — loading and parsing `shard-rules/*.toml`;
//! * [`expr`] — the expression language (parser, binder, evaluator);
//! * [`convert`] — row cells ⇄ expression values;
//! * [`lookup`] — `lookup()` tables from the control database;
//! * [`route`] — [`Router`]: row changes → versioned write operations.

pub mod convert;
pub mod expr;
pub mod file;
pub mod lookup;
pub mod route;

pub use file::{load_dir, Rule, RuleError};
pub use route::{DeriveCause, DeriveStage, RouteError, Routed, Router};
