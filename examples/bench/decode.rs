//! Row 1, decode: rows/s and MB/s over the main workload's binlog of
//! reshard's tailer (live replica stream, CRC32 check, TABLE_MAP + rows
//! decoding, transaction assembly), reshard's offline file decoder
//! ([`reshard::source::BinlogFile`], the same decoder over a file), a plain
//! mysql_common loop (every row → `Value`s, the generic path, no CRC
//! check), and `mariadb-binlog --base64-output=DECODE-ROWS -v` (the
//! process, output to /dev/null). Median of `BENCH_RUNS` runs each.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::{EventData, TableMapEvent};
use mysql_common::binlog::value::BinlogValue;
use mysql_common::value::Value;
use reshard::config::Endpoint;
use reshard::db::{self, Flavor, Session};
use reshard::source::{BinlogFile, SourceItem, Tailer, TailerOptions};

use crate::env::{median, Bench, Settings};
use crate::report::Report;
use crate::workload::Workload;
use crate::Res;

pub async fn run(b: &Bench, s: &Settings, w: &Workload, report: &mut Report) -> Res<()> {
    let file_bytes = std::fs::metadata(&w.file)?.len();
    let mut tailer = Vec::new();
    let mut file = Vec::new();
    let mut generic = Vec::new();
    let mut tool = Vec::new();
    for run in 0..s.runs {
        tailer.push(timed(w.changes, tailer_decode(b, w).await?)?);
        file.push(timed(w.changes, file_decode(&w.file)?)?);
        generic.push(timed(w.changes, generic_decode(&w.file)?)?);
        tool.push(mariadb_binlog(&w.file)?);
        eprintln!(
            "bench: decode run {}: tailer {:.0}, file {:.0}, generic {:.0} rows/s, mariadb-binlog {:.2} s",
            run + 1,
            w.changes as f64 / tailer[run],
            w.changes as f64 / file[run],
            w.changes as f64 / generic[run],
            tool[run]
        );
    }
    let (t, f, g, m) = (median(tailer), median(file), median(generic), median(tool));
    let rows = w.changes as f64;
    let generic_rate = rows / g;
    let mut row = |name: &str, secs: f64, bytes: u64, vs: Option<(&str, f64)>| {
        report.add(
            "decode",
            name,
            rows / secs,
            "rows/s",
            vs.map(|(what, base)| (what.to_string(), (rows / secs) / base)),
            serde_json::json!({"secs": secs, "rows": w.changes, "bytes": bytes, "mb_per_s": bytes as f64 / secs / 1e6}),
        )
    };
    row(
        "reshard tailer (replica stream)",
        t,
        w.bytes,
        Some(("generic", generic_rate)),
    );
    row(
        "reshard file decoder",
        f,
        file_bytes,
        Some(("generic", generic_rate)),
    );
    row(
        "mysql_common generic loop (rows → Value)",
        g,
        file_bytes,
        None,
    );
    row(
        "mariadb-binlog --base64-output=DECODE-ROWS -v",
        m,
        file_bytes,
        Some(("generic", generic_rate)),
    );
    report.add(
        "decode",
        "reshard file decoder vs mariadb-binlog -v (same file)",
        m / f,
        "×",
        None,
        serde_json::json!({"file_secs": f, "mariadb_binlog_secs": m}),
    );
    Ok(())
}

/// Seconds of a run that decoded `rows` row changes (checked).
fn timed(expected: u64, (rows, secs): (u64, f64)) -> Res<f64> {
    if rows != expected {
        return Err(format!("decoded {rows} row changes, expected {expected}").into());
    }
    Ok(secs)
}

async fn tailer_decode(b: &Bench, w: &Workload) -> Res<(u64, f64)> {
    let ep = Endpoint::new("source", b.source.url(""));
    let budget = Duration::from_secs(10);
    let stream = db::connect(&ep, Session::Read, budget).await?;
    let schema = db::connect(&ep, Session::Read, budget).await?;
    let t = Instant::now();
    let mut tailer = Tailer::start(
        stream,
        schema,
        w.start.clone(),
        TailerOptions {
            server_id: 77,
            epoch: 0,
            heartbeat: Duration::from_secs(1),
            flavor: Flavor::MariaDb,
            checksum: true,
            filter: Arc::new(|d: &str, t: &str| d == "bench" && t == "t"),
            hold: Default::default(),
        },
    )
    .await?;
    let mut rows = 0u64;
    loop {
        match tailer.next().await? {
            SourceItem::Rows(chunk) => rows += chunk.changes.len() as u64,
            SourceItem::Transaction(txn) => {
                if txn.end >= w.end {
                    break;
                }
            }
            SourceItem::Heartbeat(_) => {}
        }
    }
    let secs = t.elapsed().as_secs_f64();
    tailer.close().await;
    Ok((rows, secs))
}

fn file_decode(path: &Path) -> Res<(u64, f64)> {
    let t = Instant::now();
    let mut f = BinlogFile::open(path)?;
    let mut rows = 0u64;
    while let Some(item) = f.next()? {
        if let SourceItem::Rows(chunk) = item {
            rows += chunk.changes.len() as u64;
        }
    }
    Ok((rows, t.elapsed().as_secs_f64()))
}

/// The generic path: mysql_common's file reader, every row image into
/// `Vec<Value>`.
fn generic_decode(path: &Path) -> Res<(u64, f64)> {
    let t = Instant::now();
    let file = BufReader::with_capacity(1 << 20, File::open(path)?);
    let reader = mysql_common::binlog::BinlogFile::new(BinlogVersion::Version4, file)?;
    let mut maps: HashMap<u64, TableMapEvent<'static>> = HashMap::new();
    let mut rows = 0u64;
    let mut values = 0usize;
    for event in reader {
        let event = event?;
        match event.read_data()? {
            Some(EventData::TableMapEvent(tme)) => {
                maps.insert(tme.table_id(), tme.into_owned());
            }
            Some(EventData::RowsEvent(ev)) => {
                let tme = maps
                    .get(&ev.table_id())
                    .ok_or("rows event without table map")?;
                for r in ev.rows(tme) {
                    let (before, after) = r?;
                    for image in [before, after].into_iter().flatten() {
                        let vals: Vec<Value> = image
                            .unwrap()
                            .into_iter()
                            .map(|v| match v {
                                BinlogValue::Value(v) => v,
                                _ => Value::NULL,
                            })
                            .collect();
                        values += vals.len();
                    }
                    rows += 1;
                }
            }
            _ => {}
        }
    }
    std::hint::black_box(values);
    Ok((rows, t.elapsed().as_secs_f64()))
}

fn mariadb_binlog(path: &Path) -> Res<f64> {
    let t = Instant::now();
    let st = Command::new("mariadb-binlog")
        .args(["--no-defaults", "--base64-output=DECODE-ROWS", "-v"])
        .arg(path)
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        return Err(format!("mariadb-binlog failed: {st}").into());
    }
    Ok(t.elapsed().as_secs_f64())
}
