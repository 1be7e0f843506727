//! The table on stdout and the JSON file.

use std::time::Duration;

use serde_json::{json, Value};

use crate::env::Settings;
use crate::Res;

struct Line {
    row: String,
    name: String,
    value: f64,
    unit: String,
    ratio: Option<(String, f64)>,
    details: Value,
}

pub struct Report {
    lines: Vec<Line>,
    meta: Value,
    json: std::path::PathBuf,
}

fn shell(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Report {
    pub fn new(s: &Settings) -> Report {
        let commit = std::env::var("BENCH_COMMIT")
            .unwrap_or_else(|_| shell("git rev-parse --short HEAD 2>/dev/null"));
        let meta = json!({
            "date": shell("date -u +%Y-%m-%dT%H:%M:%SZ"),
            "commit": commit,
            "machine": {
                "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                "cpu": shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
                "memory": shell("grep MemTotal /proc/meminfo | awk '{print $2 \" kB\"}'"),
                "mariadb": shell("mariadbd --version 2>/dev/null || /usr/sbin/mariadbd --version"),
                "loadavg_start": loadavg(),
            },
            "settings": {
                "rows": s.rows,
                "runs": s.runs,
                "e2e_runs": s.e2e_runs,
                "lag_rate": s.lag_rate,
                "lag_secs": s.lag_secs,
                "memory_bytes": s.memory_bytes,
                "snapshot_rows": s.snapshot_rows,
                "pipeline": s.pipeline,
                "connections": s.connections(),
                "buffer_pool": s.buffer_pool,
            },
        });
        Report {
            lines: Vec::new(),
            meta,
            json: s.json.clone(),
        }
    }

    /// Adds a figure; `ratio` is (what it is compared with, value / that).
    pub fn add(
        &mut self,
        row: &str,
        name: &str,
        value: f64,
        unit: &str,
        ratio: Option<(String, f64)>,
        details: Value,
    ) {
        self.lines.push(Line {
            row: row.into(),
            name: name.into(),
            value,
            unit: unit.into(),
            ratio,
            details,
        });
    }

    /// Prints the table and writes the JSON file.
    pub fn finish(mut self, took: Duration) -> Res<()> {
        self.meta["loadavg_end"] = json!(loadavg());
        self.meta["seconds"] = json!(took.as_secs_f64().round());
        println!(
            "\n{} commit {}, {} CPUs, load {} → {}\n",
            self.meta["date"].as_str().unwrap_or(""),
            self.meta["commit"].as_str().unwrap_or(""),
            self.meta["machine"]["cpus"],
            self.meta["machine"]["loadavg_start"].as_str().unwrap_or(""),
            loadavg()
        );
        println!("| row | measurement | value | ratio |");
        println!("|---|---|---:|---:|");
        for l in &self.lines {
            let value = if l.value >= 100.0 {
                format!("{:.0} {}", l.value, l.unit)
            } else {
                format!("{:.2} {}", l.value, l.unit)
            };
            let ratio = l
                .ratio
                .as_ref()
                .map(|(what, r)| format!("{r:.2} × {what}"))
                .unwrap_or_default();
            let cell = |s: &str| s.replace('|', "\\|");
            println!(
                "| {} | {} | {value} | {} |",
                l.row,
                cell(&l.name),
                cell(&ratio)
            );
        }
        let lines: Vec<Value> = self
            .lines
            .iter()
            .map(|l| {
                json!({
                    "row": l.row,
                    "name": l.name,
                    "value": l.value,
                    "unit": l.unit,
                    "ratio": l.ratio.as_ref().map(|(w, r)| json!({"to": w, "ratio": r})),
                    "details": l.details,
                })
            })
            .collect();
        let mut doc = self.meta;
        doc["results"] = json!(lines);
        std::fs::write(&self.json, serde_json::to_string_pretty(&doc)?)?;
        println!("\nJSON: {}", self.json.display());
        Ok(())
    }
}
