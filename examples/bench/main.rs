//! The benchmark (`scripts/bench [ROW…]`, see BENCHMARKS.md and the README):
//! starts its own servers (a binlog source and two target servers holding
//! four shards `s0`…`s3`, `s0`/`s2` on the first and `s1`/`s3` on the
//! second), generates each workload, and prints a table and writes a JSON
//! file. Rows (all by default, or those named on the command line):
//!
//! * `decode`: reshard's tailer and offline file decoder against a plain
//!   mysql_common decode loop and `mariadb-binlog -v`, over the same binlog
//!   (`BENCH_ROWS` inserts, then one `UPDATE` of every row);
//! * `forms`: the same loader in other statement forms (text literals,
//!   reshard's versioned upsert, its transaction), each against `REPLACE`:
//!   what the guard and the round trips cost the servers;
//! * `ceiling`: a plain multi-row `REPLACE` loader writing the same row
//!   changes into the same shards with as many connections as reshard;
//! * `e2e`: `reshard run` applying that binlog: rows/s, ratio to the
//!   ceiling, peak RSS;
//! * `lag`: heartbeat lag under a paced source load;
//! * `memory`: peak RSS while one large transaction streams through;
//! * `snapshot`: the initial copy against `mysqldump | mariadb`;
//! * `small`: many one-row transactions replayed (what per-transaction
//!   work costs).
//!
//! Sizes come from environment variables (see [`Settings`]), so a quick
//! run is possible; the defaults are issue 10's sizes.

mod cpu;
mod decode;
mod env;
mod lag;
mod literal;
mod load;
mod memory;
mod report;
mod small;
mod snapshot;
mod workload;

use std::time::Instant;

use env::{Bench, Settings};
use report::Report;

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The rows of the benchmark, in the order they run.
pub const ROWS: [&str; 8] = [
    "decode", "forms", "ceiling", "e2e", "lag", "memory", "snapshot", "small",
];

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for a in &args {
        if !ROWS.contains(&a.as_str()) {
            return Err(format!("unknown row {a:?}; rows are: {}", ROWS.join(" ")).into());
        }
    }
    let wanted = |row: &str| args.is_empty() || args.iter().any(|a| a == row);
    let settings = Settings::from_env()?;
    let mut report = Report::new(&settings);
    eprintln!("bench: {}", settings.describe());
    let started = Instant::now();
    let bench = Bench::start(&settings).await?;
    if wanted("decode") || wanted("forms") || wanted("ceiling") || wanted("e2e") {
        let w = workload::main_workload(&bench, &settings).await?;
        eprintln!(
            "bench: workload: {} row changes, binlog {} .. {} ({:.1} MB)",
            w.changes,
            w.start,
            w.end,
            w.bytes as f64 / 1e6
        );
        if wanted("decode") {
            decode::run(&bench, &settings, &w, &mut report).await?;
        }
        if wanted("forms") || wanted("ceiling") || wanted("e2e") {
            load::run(
                &bench,
                &settings,
                &w,
                &mut report,
                wanted("ceiling"),
                wanted("e2e"),
                wanted("forms"),
            )
            .await?;
        }
    }
    if wanted("lag") {
        lag::run(&bench, &settings, &mut report).await?;
    }
    if wanted("memory") {
        memory::run(&bench, &settings, &mut report).await?;
    }
    if wanted("snapshot") {
        snapshot::run(&bench, &settings, &mut report).await?;
    }
    if wanted("small") {
        small::run(&bench, &settings, &mut report).await?;
    }
    report.finish(started.elapsed())?;
    Ok(())
}
