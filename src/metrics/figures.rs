//! The process's figures for `status`: the registry's values, read with
//! the same `gather()` the endpoint encodes, in a shape for JSON and for a
//! short table. The monitor keeps the latest in the control database
//! ([`crate::control::figures`]), so `status` shows them from anywhere.

use std::collections::BTreeMap;

use prometheus::proto::{Metric, MetricFamily};
use serde::{Deserialize, Serialize};

use super::Metrics;

/// Row operations of one (shard, table, op).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowsApplied {
    pub shard: String,
    pub table: String,
    pub op: String,
    pub rows: u64,
}

/// Retries of one (stage, reason).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retries {
    pub stage: String,
    pub reason: String,
    pub count: u64,
}

/// A throttle in effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throttled {
    pub reason: String,
    /// The lagging server (`reason = "lag"`).
    pub server: String,
}

/// Everything the endpoint shows, at one moment (names as in the metrics).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub rows_applied: Vec<RowsApplied>,
    pub events_read: BTreeMap<String, u64>,
    pub source_lag_seconds: f64,
    pub source_lag_bytes: u64,
    /// `FILE:POS`, as the monitor last read it.
    pub checkpoint: Option<String>,
    /// Batches applied and the seconds they took (`reshard_batch_seconds`).
    pub batches: u64,
    pub batch_seconds_sum: f64,
    pub retries: Vec<Retries>,
    pub dead_letters: BTreeMap<String, u64>,
    pub snapshot_rows: BTreeMap<String, u64>,
    /// The stages stalled now.
    pub stalled: Vec<String>,
    pub throttled: Vec<Throttled>,
    pub throttle_wait_seconds: BTreeMap<String, f64>,
    /// Per target server; `None`: unknown.
    pub target_lag_seconds: BTreeMap<String, Option<f64>>,
}

impl Figures {
    /// The current values of `m`.
    pub fn of(m: &Metrics) -> Figures {
        let mut f = Figures::default();
        for family in m.registry().gather() {
            f.add(&family);
        }
        f
    }

    fn add(&mut self, family: &MetricFamily) {
        for metric in family.get_metric() {
            let counter = metric.get_counter().get_value();
            let gauge = metric.get_gauge().get_value();
            let l = |name: &str| label(metric, name);
            match family.name() {
                "reshard_rows_applied_total" => self.rows_applied.push(RowsApplied {
                    shard: l("shard"),
                    table: l("table"),
                    op: l("op"),
                    rows: counter as u64,
                }),
                "reshard_events_read_total" => {
                    self.events_read.insert(l("type"), counter as u64);
                }
                "reshard_source_lag_seconds" => self.source_lag_seconds = gauge,
                "reshard_source_lag_bytes" => self.source_lag_bytes = gauge as u64,
                "reshard_checkpoint_position" => {
                    self.checkpoint = Some(format!("{}:{}", l("file"), gauge as u64))
                }
                "reshard_batch_seconds" => {
                    self.batches = metric.get_histogram().get_sample_count();
                    self.batch_seconds_sum = metric.get_histogram().get_sample_sum();
                }
                "reshard_retries_total" => self.retries.push(Retries {
                    stage: l("stage"),
                    reason: l("reason"),
                    count: counter as u64,
                }),
                "reshard_dead_letters_total" => {
                    self.dead_letters.insert(l("table"), counter as u64);
                }
                "reshard_snapshot_rows_total" => {
                    self.snapshot_rows.insert(l("table"), counter as u64);
                }
                "reshard_stalled" if gauge > 0.0 => self.stalled.push(l("stage")),
                "reshard_throttled" if gauge > 0.0 => self.throttled.push(Throttled {
                    reason: l("reason"),
                    server: l("server"),
                }),
                "reshard_throttle_wait_seconds_total" => {
                    self.throttle_wait_seconds.insert(l("reason"), counter);
                }
                "reshard_target_lag_seconds" => {
                    self.target_lag_seconds
                        .insert(l("server"), gauge.is_finite().then_some(gauge));
                }
                _ => {}
            }
        }
    }

    /// Row operations applied over all shards and tables.
    pub fn rows_total(&self) -> u64 {
        self.rows_applied.iter().map(|r| r.rows).sum()
    }

    /// A few lines for people (`status`), each indented by `indent`.
    pub fn render(&self, indent: &str) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mut line = |k: &str, v: String| {
            let _ = writeln!(out, "{indent}{k:<13}{v}");
        };
        let avg_ms = if self.batches > 0 {
            1000.0 * self.batch_seconds_sum / self.batches as f64
        } else {
            0.0
        };
        line(
            "rows applied",
            format!(
                "{} in {} batches ({avg_ms:.1} ms each)",
                self.rows_total(),
                self.batches
            ),
        );
        line("events read", sum_and_parts(&self.events_read));
        line("retries", retries(&self.retries));
        line("throttled", throttled(self));
        line(
            "stalled",
            if self.stalled.is_empty() {
                "no".into()
            } else {
                self.stalled.join(", ")
            },
        );
        if !self.dead_letters.is_empty() {
            line("dead letters", sum_and_parts(&self.dead_letters));
        }
        if !self.snapshot_rows.is_empty() {
            line("copied", sum_and_parts(&self.snapshot_rows));
        }
        out.push_str(&self.table(indent));
        out
    }

    /// Rows applied per shard and table, upserts and deletes side by side.
    fn table(&self, indent: &str) -> String {
        use std::fmt::Write;
        let mut rows: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
        for r in &self.rows_applied {
            let e = rows.entry((&r.shard, &r.table)).or_default();
            if r.op == "delete" {
                e.1 += r.rows;
            } else {
                e.0 += r.rows;
            }
        }
        if rows.is_empty() {
            return String::new();
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{indent}{:<12} {:<24} {:>12} {:>12}",
            "shard", "table", "upserts", "deletes"
        );
        for ((shard, table), (u, d)) in rows {
            let _ = writeln!(out, "{indent}{shard:<12} {table:<24} {u:>12} {d:>12}");
        }
        out
    }
}

fn label(m: &Metric, name: &str) -> String {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value().to_string())
        .unwrap_or_default()
}

/// `12 (a 10, b 2)`, or `0`.
fn sum_and_parts(m: &BTreeMap<String, u64>) -> String {
    let total: u64 = m.values().sum();
    if total == 0 {
        return "0".into();
    }
    let parts: Vec<String> = m
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    format!("{total} ({})", parts.join(", "))
}

fn retries(r: &[Retries]) -> String {
    let total: u64 = r.iter().map(|x| x.count).sum();
    if total == 0 {
        return "0".into();
    }
    let parts: Vec<String> = r
        .iter()
        .map(|x| format!("{}: {} {}", x.stage, x.reason, x.count))
        .collect();
    format!("{total} ({})", parts.join(", "))
}

fn throttled(f: &Figures) -> String {
    if f.throttled.is_empty() {
        return "no".into();
    }
    f.throttled
        .iter()
        .map(|t| match t.reason.as_str() {
            "lag" => {
                let lag = f.target_lag_seconds.get(&t.server).copied().flatten();
                match lag {
                    Some(s) => format!("lag of {} ({s:.0} s)", t.server),
                    None => format!("lag of {} (unknown)", t.server),
                }
            }
            _ => "rows/s cap".to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_the_registry() {
        let m = crate::metrics::tests::touched();
        m.stalled.with_label_values(&["lane:s1/0"]).set(1);
        let f = Figures::of(&m);
        assert_eq!(f.retries[0].count, 1);
        assert_eq!(f.dead_letters["db.t"], 1);
        assert_eq!(f.snapshot_rows["db.t"], 10);
        assert_eq!(f.events_read["query"], 1);
        assert_eq!(f.stalled, ["lane:s1/0"]);
        assert_eq!(f.checkpoint.as_deref(), Some("b.000002:77"));
        let text = f.render("  ");
        assert!(text.contains("stalled      lane:s1/0"), "{text}");
        assert!(text.contains("lag of h:1 (12 s)"), "{text}");
        let back: Figures = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }
}
