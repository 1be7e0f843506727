//! reshard — move a live MySQL/MariaDB database onto a new set of shards by
//! tailing its binary log and applying versioned, idempotent writes.
//!
//! # Layout
//!
//! The pipeline stages are folders, in the order a row travels:
//!
//! * [`source`] — the *streamer*: pre-flight checks, the binlog tailer
//!   (COM_BINLOG_DUMP via mysql_async) or the reader of archived binlog
//!   files, checksum verification, table schemas, the rows of each
//!   transaction held until its commit (in memory or a temporary file:
//!   [`source::spool`]) and then decoded straight from the event bytes
//!   ([`source::decode`]) into [`source::RowChange`]s, handed out in bounded
//!   chunks followed by the transaction's end; and the event-level view
//!   `reshard inspect` prints.
//! * [`rules`] — the *router*: rule files, the expression language
//!   ([`rules::expr`]) and the derivation of shard, target row and derived
//!   columns ([`rules::Router`]).
//! * [`snapshot`] — the initial copy of existing rows at a consistent
//!   position, without locks.
//! * [`writer`] — the *applier*: per-shard lanes that apply versioned upserts
//!   and tombstoning deletes in batched transactions.
//! * [`pipeline`] — the *coordinator* of one streaming attempt: tailer →
//!   router → lane pool, marks, the checkpoint, shutdown and drain.
//! * [`checkpoint`] — the low-watermark tracker that turns per-lane progress
//!   into a transaction-boundary checkpoint, and tombstone pruning.
//! * [`control`] — reshard's own tables (checkpoint, copy progress, dead
//!   letters, lease, position log, migrations; tombstones on the shards).
//! * [`inspect`] — the *inspector*: dry-run's schema validation, sampling
//!   and report.
//! * [`verify`] — the *verifier*: lock-free, chunked source-vs-targets comparison.
//! * [`metrics`] — what a running reshard counts (Prometheus endpoint,
//!   figures for `status`, progress clocks); [`monitor`] — lag, the stall
//!   alarm and the figures kept for `status`, watched from inside `run`;
//!   [`throttle`] — holds writer batches back on a rows/s cap or a target
//!   server's replication lag.
//! * [`commands`] — one module per CLI command; the only place that uses
//!   `anyhow`. [`cli`] is the clap definition of the command line that
//!   `main` parses and hands to them.
//!
//! Shared vocabulary lives at the top: [`position`] (binlog file:pos),
//! [`version`] (the 128-bit row version), [`config`] (the validated config
//! object), [`db`] (connections, session setup, redaction of secrets, and
//! `db::wire`, the copy's own protocol connections),
//! [`task`] (background tasks that end with their owner).
//!
//! Why the pipeline converges — versions, the checkpoint watermark, the
//! copy/stream interleaving, tombstones and the floor, and what reshard
//! refuses — is argued in `docs/architecture.md` in this repository; module
//! docs cite its sections.

pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod db;
pub mod inspect;
pub mod metrics;
pub mod monitor;
pub mod pipeline;
pub mod position;
pub mod rules;
pub mod snapshot;
pub mod source;
pub mod task;
pub mod throttle;
pub mod verify;
pub mod version;
pub mod writer;
