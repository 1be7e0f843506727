//! `reshard inspect` throughput (`scripts/bench-inspect`): MB/s and rows/s
//! over a generated binlog of `BENCH_INSPECT_MB` megabytes (default 100),
//! next to `mariadb-binlog --base64-output=DECODE-ROWS -v` on the same
//! files, both writing to /dev/null. Record results in BENCHMARKS.md.

use std::process::{Command, Stdio};
use std::time::Instant;

use reshard_testkit::{MariaDb, ServerOptions};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn bin() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| {
            p.parent()
                .and_then(|d| d.parent())
                .map(|d| d.join("reshard"))
        })
        .unwrap_or_else(|| "reshard".into())
}

/// Runs a command with stdout to /dev/null; returns the seconds it took.
fn timed(cmd: &mut Command) -> Res<f64> {
    let t = Instant::now();
    let st = cmd.stdout(Stdio::null()).status()?;
    if !st.success() {
        return Err(format!("{cmd:?} failed: {st}").into());
    }
    Ok(t.elapsed().as_secs_f64())
}

fn main() -> Res<()> {
    let mb: u64 = std::env::var("BENCH_INSPECT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let source = MariaDb::start(ServerOptions::source(1))?;
    source.sql(
        "CREATE DATABASE bench; CREATE TABLE bench.t (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, \
         buyer INT NOT NULL, name VARCHAR(64) NOT NULL, amount DECIMAL(12,2) NOT NULL, \
         created DATETIME(6) NOT NULL, doc JSON NULL) ENGINE=InnoDB; FLUSH BINARY LOGS",
    )?;
    // rows of about 150 bytes in the binlog, 20000 per statement
    let mut rows = 0u64;
    let files = loop {
        source.sql(&format!(
            "INSERT INTO bench.t SELECT seq, seq % 997, CONCAT('name ', seq, ' \u{e9}'), seq / 7, \
             TIMESTAMP('2024-01-01') + INTERVAL seq SECOND, CONCAT('{{\"k\": ', seq, ', \"tags\": [\"a\", \"b\"]}}') \
             FROM bench.seq_{}_to_{}",
            rows + 1,
            rows + 20_000
        ))?;
        rows += 20_000;
        let listed = source.sql("SHOW BINARY LOGS")?;
        let total: u64 = listed
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        if total >= mb << 20 {
            source.sql("FLUSH BINARY LOGS")?;
            let listed = source.sql("SHOW BINARY LOGS")?;
            let names: Vec<String> = listed
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .filter(|n| n.starts_with("mysql-bin."))
                .collect();
            // every closed file (the last one is the new, empty active one)
            break names[..names.len() - 1]
                .iter()
                .map(|n| source.datadir().join(n))
                .collect::<Vec<_>>();
        }
    };
    let bytes: u64 = files
        .iter()
        .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    let inspect = timed(Command::new(bin()).arg("inspect").args(&files))?;
    let json = timed(Command::new(bin()).args(["inspect", "--json"]).args(&files))?;
    let mariadb = timed(
        Command::new("mariadb-binlog")
            .args(["--base64-output=DECODE-ROWS", "-v"])
            .args(&files),
    )?;
    let mbs = bytes as f64 / (1 << 20) as f64;
    println!(
        "binlog: {} file(s), {mbs:.1} MB, {rows} rows\n",
        files.len()
    );
    println!("| tool | seconds | MB/s | rows/s |\n|---|---:|---:|---:|");
    for (name, s) in [
        ("`reshard inspect`", inspect),
        ("`reshard inspect --json`", json),
        ("`mariadb-binlog --base64-output=DECODE-ROWS -v`", mariadb),
    ] {
        println!(
            "| {name} | {s:.2} | {:.1} | {:.0} |",
            mbs / s,
            rows as f64 / s
        );
    }
    Ok(())
}
