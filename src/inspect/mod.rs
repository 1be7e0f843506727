//! The *inspector* role (gh-ost's name): everything `dry-run` checks before
//! a row moves, without writing anything anywhere.
//!
//! * [`validate`] — rules against the real source and target schemas, with
//!   the SQL that fixes what is missing;
//! * [`sample`] — source rows read by key ranges through the shared row
//!   reader ([`crate::source::rows`], never the whole table into memory)
//!   and routed through the real router;
//! * [`report`] — the findings and counts, for humans and as JSON.
//!
//! Only `SELECT`s run on the servers, plus a replica registration when a
//! binlog range is routed; no table is created, altered or written.

pub mod report;
pub mod sample;
pub mod validate;

pub use report::{Finding, Report, TableReport};
