//! Command-line arguments (clap). Turned into a validated [`crate::config::Config`]
//! by the command layer before anything runs.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::position::Position;

/// reshard — reshard a live MySQL/MariaDB database by tailing its binlog.
#[derive(Debug, Parser)]
#[command(name = "reshard", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (also RESHARD_LOG), e.g. `info`, `reshard=debug`.
    #[arg(long, global = true, default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Long-lived replicator: resume from the checkpoint; with none, copy the
    /// existing rows at a consistent position (or start at --from), then
    /// stream until SIGINT/SIGTERM.
    Run {
        /// The config file (reshard.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Start at this position (FILE:POS) when there is no checkpoint.
        #[arg(long, value_name = "FILE:POS")]
        from: Option<Position>,
        /// With --from: replace an existing checkpoint.
        #[arg(long, requires = "from")]
        force: bool,
        /// Let the DDL event starting at FILE:POS through whatever
        /// `on_ddl` says (after making the targets fit; a halt names it).
        /// Repeatable.
        #[arg(long, value_name = "FILE:POS")]
        accept_ddl: Vec<Position>,
    },
    /// Validate config and rules against the real schemas, route a sample
    /// of source rows (and optionally a binlog range) and report the
    /// per-shard distribution, skew and every failure. Writes nothing.
    DryRun {
        /// The config file (reshard.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Source rows routed per table (every row when the table has no more).
        #[arg(long, default_value_t = 10_000, value_name = "N")]
        sample: u64,
        /// Also route the row events from this binlog position…
        #[arg(long, value_name = "FILE:POS")]
        from: Option<Position>,
        /// …up to this one (default: the source's current head).
        #[arg(long, value_name = "FILE:POS", requires = "from")]
        to: Option<Position>,
        /// Print exactly one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Re-apply a binlog range from the source, or from archived binlog
    /// files with --binlog-dir (never snapshots, moves the checkpoint only
    /// forward). With --to, exit once that transaction is applied; without,
    /// go on like `run` (from files: up to their end).
    Replay {
        /// The config file (reshard.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Start here (FILE:POS, a transaction boundary).
        #[arg(
            long,
            value_name = "FILE:POS",
            required_unless_present = "from_gtid",
            conflicts_with = "from_gtid"
        )]
        from: Option<Position>,
        /// Start after this GTID set (MariaDB `d-s-n,…`, MySQL `uuid:1-5,…`).
        #[arg(long, value_name = "SET")]
        from_gtid: Option<String>,
        /// Stop once the transaction ending here is applied.
        #[arg(long, value_name = "FILE:POS")]
        to: Option<Position>,
        /// Also apply changes below the floor (deleted rows may reappear
        /// until the replay passes their deletes).
        #[arg(long)]
        below_floor: bool,
        /// Read archived binlog files from this directory instead of the
        /// source server (in the index file's order, else by sequence);
        /// ends at the archive's end without --to.
        #[arg(long, value_name = "DIR", conflicts_with = "from_gtid")]
        binlog_dir: Option<PathBuf>,
        /// Let the DDL event starting at FILE:POS through whatever
        /// `on_ddl` says. Repeatable.
        #[arg(long, value_name = "FILE:POS")]
        accept_ddl: Vec<Position>,
    },
    /// Checkpoint, floor, source head, lag and initial-copy progress.
    Status {
        /// The config file (reshard.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print exactly one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Compare the source with the routed targets: rows missing, extra,
    /// misplaced (on the wrong shard) or different, per table and shard.
    /// Reads only, without locks. Exit 0 equal, 1 differences, 2 error.
    Verify {
        /// The config file (reshard.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Only this source table (DB.TABLE).
        #[arg(long, value_name = "DB.TABLE")]
        table: Option<String>,
        /// Source rows per chunk (one short SELECT each).
        #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
        chunk_rows: u64,
        /// Re-checks of a differing key before it is reported.
        #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100))]
        rechecks: u32,
        /// Wait before each re-check (give a running pipeline time to apply).
        #[arg(long, default_value_t = 500, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=600_000))]
        recheck_delay_ms: u64,
        /// Print exactly one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show the events of binlog files, one line (or with --json one JSON
    /// object) per event, like mysqlbinlog. Connects to nothing. Exit 2 when
    /// a file is truncated or corrupt (the error names the file and offset).
    Inspect {
        /// Binlog files, read in the order given.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Show events starting at this byte offset (an event start).
        #[arg(long, value_name = "N")]
        start_position: Option<u64>,
        /// Stop before the first event starting at or after this offset.
        #[arg(long, value_name = "N")]
        stop_position: Option<u64>,
        /// One JSON object per event (JSON Lines); see the README.
        #[arg(long)]
        json: bool,
    },
    /// Cut-over fence: exit 0 once every shard has applied the source
    /// through FILE:POS, GTIDs, or `now` (the source's head at the call);
    /// exit 1 on timeout with the lag per shard.
    Wait {
        /// The config file (reshard.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// `now`, FILE:POS or GTIDs (MariaDB domain-server-seq,…; MySQL
        /// uuid:1-5,…).
        #[arg(long, value_name = "FILE:POS|GTID|now")]
        until: String,
        /// Give up after this many seconds (default: wait as long as it takes).
        #[arg(long, value_name = "S")]
        timeout: Option<u64>,
    },
    /// Rows whose shard could not be derived (`on_derive_error =
    /// "dead-letter"`): show them, re-drive them through the current
    /// rules, or discard them.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Create or upgrade reshard's own tables (control schema, and the
    /// per-shard tables on every target).
    Migrate {
        /// The config file (reshard.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// `reshard dead-letters …`.
#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// Show the dead letters: table, key, position, expression, error.
    List {
        /// The config file (reshard.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Only this source table (DB.TABLE).
        #[arg(long, value_name = "DB.TABLE")]
        table: Option<String>,
        /// Print exactly one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Route the dead letters again through the current rules and apply
    /// them at their own versions (never over newer data). Takes the
    /// pipeline lease: stop `run` first. Exit 1 when some stay.
    Retry {
        /// The config file (reshard.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Only this source table (DB.TABLE).
        #[arg(long, value_name = "DB.TABLE")]
        table: Option<String>,
    },
    /// Delete the dead letters (their rows stay off the targets).
    Drop {
        /// The config file (reshard.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Only this source table (DB.TABLE).
        #[arg(long, value_name = "DB.TABLE")]
        table: Option<String>,
    },
}
