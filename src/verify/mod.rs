//! The *verifier*: compares the source with the routed targets and reports,
//! per table and shard, the rows that are **missing** (the rule routes a
//! source row to a shard, and no shard of the rule holds its key),
//! **extra** (a target holds a key the source does not have, or has only
//! in a row the rule's `where` excludes), **misplaced** (a shard other
//! than the routed one holds the key) and **different** (the routed shard
//! holds the key with other values), plus source rows the rule cannot
//! route (**unroutable**). Used by `reshard verify`.
//!
//! # How
//!
//! Each mapped source table is walked in key order (the rule's row
//! identity: the primary key or `key = […]`) in chunks of
//! [`Options::chunk_rows`] rows by keyset pagination. Every source row goes
//! through the real [`Router`] as an insert (`before: None`), so the
//! expected target row — shard, column order, derived values — is exactly
//! what the pipeline writes. For each shard of the rule the target rows of
//! the *same key range* are read, and the chunk is compared by an
//! order-independent digest (sum of 128-bit hashes of canonical rows, see
//! [`canon`]) plus a row count; only a chunk whose digest differs on some
//! shard is compared row by row. Values are compared by their canonical
//! text per target column ([`canon`]), so a derived `UInt(3)` equals the
//! `Int(3)` read back from an `INT` column; `_reshard_version` and target
//! columns the rule does not write are not read.
//!
//! # Why the comparison is complete
//!
//! Chunk `i` of the source is the rows with keys in `(b[i-1], b[i]]`,
//! where `b[i]` is the last key of chunk `i`; the first chunk is open below
//! (`b[0] = −∞`) and the last one open above (`b[n] = +∞`: it is the chunk
//! that returned fewer rows than asked). These ranges **tile the whole key
//! space**: they are disjoint and every possible key lies in exactly one of
//! them. Each target is read over exactly the same ranges, with the same
//! comparison the server uses to order its index (key parameters are bound
//! in the column's own character set and collation, see
//! [`crate::source::rows`]). Hence every
//! source row is compared once, and every target row is read once —
//! including target rows whose keys lie below the source's first key, above
//! its last, or between two source keys: those are exactly the extra rows,
//! and no range can hide them. A key found in one range on the source and
//! in another on a target (a target column with another collation) shows
//! up as a candidate on both sides and is settled by the re-check below,
//! which reads by key rather than by range.
//!
//! # Why it takes no locks
//!
//! Every read is one short, autocommitted `SELECT` (a keyset page of at
//! most `chunk_rows` rows, or a look-up of a bounded batch of keys) at
//! `READ COMMITTED`: InnoDB serves it from a consistent non-locking read,
//! so writers are never blocked and no transaction stays open between
//! statements (no `LOCK TABLES`, no `FOR UPDATE`, no long snapshot holding
//! back purge). Nothing is ever written.
//!
//! The price of not freezing the source is that source and targets are read
//! at slightly different moments, so a row changing during the verify can
//! look different at first sight while the pipeline is still applying it.
//! Therefore a key is not reported when first seen: candidates are
//! collected (at most [`Options::pending_max`] at a time) and **re-checked**
//! — after [`Options::recheck_delay`], the source row and that key on every
//! shard of the rule are read again and re-classified — up to
//! [`Options::rechecks`] times; only a key that still differs after the
//! last re-check is reported, with the verdict of that last read. The
//! delay runs once per batch of candidates, not per key, so a table with
//! many differences is not slowed down per row. A row that exists
//! throughout the verify is always compared (completeness above); a row
//! inserted or deleted meanwhile is either compared or not, but never
//! reported falsely unless the pipeline lags more than the re-checks wait.
//!
//! Memory stays bounded by a chunk, a page of target rows and the pending
//! candidates: tables larger than memory are fine.
//!
//! # Limitations
//!
//! Keys are matched byte-wise after canonicalisation (like
//! [`crate::writer::keyenc`]): two keys a case-insensitive collation treats
//! as equal are two keys here. Derived values are compared by their text,
//! so a derived text that the target column stores in another form (a date
//! written as `'2024-1-2'`) shows as different.

pub mod canon;
pub mod report;
mod walk;

use std::time::Duration;

use mysql_async::Conn;

use crate::db::DbError;
use crate::rules::lookup::Lookups;
use crate::rules::{RouteError, Router};
use crate::source::schema::SchemaError;

pub use report::{Category, KeyEntry, Report, TableReport};

/// Why a table cannot be verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// (The message leaves out the source's: a chain printed in full, as
    /// `reshard verify` prints it, says it once.)
    #[error("the rule for {table} does not fit its source table")]
    Rule {
        table: String,
        #[source]
        source: Box<RouteError>,
    },
    #[error("the rule for {table} routes rows to shard {shard:?}, which is not in [targets]")]
    UnknownShard { table: String, shard: String },
    #[error("target {shard}: table {db}.{table} does not exist (`reshard dry-run` prints what is missing)")]
    MissingTarget {
        shard: String,
        db: String,
        table: String,
    },
    #[error("target {shard}: {db}.{table} has no column {column}, which the rule for {source_table} writes (`reshard dry-run` prints the fix)")]
    MissingColumn {
        shard: String,
        db: String,
        table: String,
        column: String,
        source_table: String,
    },
}

/// Tuning of a verify run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Source rows per chunk (one `SELECT` each).
    pub chunk_rows: usize,
    /// Re-checks of a differing key before it is reported (0: report what
    /// the first look found).
    pub rechecks: u32,
    /// Wait before each re-check, giving a running pipeline time to apply.
    pub recheck_delay: Duration,
    /// Keys listed per category and table (all are counted).
    pub key_cap: usize,
    /// Candidates collected before they are re-checked together.
    pub pending_max: usize,
    /// Keys per look-up statement.
    pub lookup_batch: usize,
    /// Period of the progress log line.
    pub progress_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            chunk_rows: 1000,
            rechecks: 3,
            recheck_delay: Duration::from_millis(500),
            key_cap: 20,
            pending_max: 5000,
            lookup_batch: 100,
            progress_interval: Duration::from_secs(10),
        }
    }
}

/// One target shard's connections.
pub struct Target {
    /// Shard name (`[targets]` key).
    pub name: String,
    /// The shard's database.
    pub db: String,
    /// For `information_schema` (any session).
    pub catalog: Conn,
    /// For rows: a [`crate::db::Session::Write`] session (binary character
    /// set, UTC), the same settings the source is read with.
    pub rows: Conn,
}

/// Everything a verify run reads from.
pub struct Verifier {
    pub router: Router,
    pub lookups: Lookups,
    /// The control database, for `lookup()` tables (None when no rule
    /// uses them).
    pub control: Option<Conn>,
    /// Source connection for `information_schema`.
    pub source_catalog: Conn,
    /// Source connection for rows ([`crate::db::Session::Write`]).
    pub source: Conn,
    /// Every configured target, in `[targets]` name order (the router's
    /// shard indices).
    pub targets: Vec<Target>,
    pub options: Options,
}
