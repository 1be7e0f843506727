//! The dry-run report: one JSON document with `--json` (schema in the
//! README), a readable table otherwise.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Something about the plan that needs fixing (exit code 1).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Stable identifier, e.g. `missing_target_column`.
    pub kind: &'static str,
    /// Source table (`db.table`) or rule file it concerns.
    pub table: String,
    /// Target shard, when it concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub message: String,
    /// SQL (or config change) that fixes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    /// A finding about a whole source table, with no shard and no fix.
    pub fn table(kind: &'static str, table: &str, message: String) -> Finding {
        Finding {
            kind,
            table: table.to_string(),
            shard: None,
            message,
            fix: None,
        }
    }
}

/// A row that could not be routed.
#[derive(Debug, Clone, Serialize)]
pub struct DeriveFailure {
    pub key: String,
    pub expression: String,
    pub error: String,
}

/// Counts for one source table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableReport {
    pub target: String,
    /// Rows read from the source.
    pub rows_sampled: u64,
    /// The server's row estimate (information_schema), or the exact count
    /// when `exact`.
    pub rows_in_table: u64,
    /// Every row of the table was routed: the counts are exact.
    pub exact: bool,
    /// Rows per shard name (every shard of the rule, zeros included).
    pub per_shard: BTreeMap<String, u64>,
    /// Rows per physical target server (`host:port`).
    pub per_server: BTreeMap<String, u64>,
    /// max / mean over the rule's shards (1.0 is perfectly even).
    pub skew: f64,
    pub failures_total: u64,
    /// The first failures (capped).
    pub failures: Vec<DeriveFailure>,
    /// Operations per shard from the binlog range, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binlog_ops_per_shard: Option<BTreeMap<String, u64>>,
}

impl TableReport {
    /// Counts a row that could not be routed and lists it if fewer than
    /// `cap` are listed.
    pub fn record_failure(&mut self, failure: DeriveFailure, cap: usize) {
        self.failures_total += 1;
        if self.failures.len() < cap {
            self.failures.push(failure);
        }
    }

    /// Fills `skew` from `per_shard`.
    pub fn compute_skew(&mut self) {
        let n = self.per_shard.len().max(1) as f64;
        let total: u64 = self.per_shard.values().sum();
        let max = self.per_shard.values().copied().max().unwrap_or(0);
        self.skew = if total == 0 {
            0.0
        } else {
            max as f64 / (total as f64 / n)
        };
    }
}

/// The whole dry-run result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// No findings.
    pub ok: bool,
    pub config: String,
    pub findings: Vec<Finding>,
    /// Per source table (`db.table`).
    pub tables: BTreeMap<String, TableReport>,
}

impl Report {
    /// The human form.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "reshard dry-run of {}", self.config);
        for (table, t) in &self.tables {
            let _ = writeln!(out);
            let scope = if t.exact {
                format!("all {} rows", t.rows_sampled)
            } else {
                format!(
                    "sample of {} rows of ~{}, spread over the key range",
                    t.rows_sampled, t.rows_in_table
                )
            };
            let _ = writeln!(out, "{table} -> {} ({scope})", t.target);
            let total: u64 = t.per_shard.values().sum::<u64>().max(1);
            let _ = writeln!(out, "  {:<16} {:>10} {:>7}", "shard", "rows", "share");
            for (shard, n) in &t.per_shard {
                let _ = writeln!(
                    out,
                    "  {:<16} {:>10} {:>6.1}%",
                    shard,
                    n,
                    *n as f64 * 100.0 / total as f64
                );
            }
            for (server, n) in &t.per_server {
                let _ = writeln!(out, "  server {server}: {n} rows");
            }
            let _ = writeln!(out, "  skew (max/mean): {:.2}", t.skew);
            if let Some(ops) = &t.binlog_ops_per_shard {
                let parts: Vec<String> = ops.iter().map(|(s, n)| format!("{s}={n}")).collect();
                let _ = writeln!(out, "  binlog range operations: {}", parts.join(" "));
            }
            let _ = writeln!(out, "  derivation failures: {}", t.failures_total);
            for f in &t.failures {
                let _ = writeln!(out, "    key {}: `{}`: {}", f.key, f.expression, f.error);
            }
        }
        let _ = writeln!(out);
        if self.findings.is_empty() {
            let _ = writeln!(out, "no findings: the plan is valid");
        } else {
            let _ = writeln!(out, "findings ({}):", self.findings.len());
            for f in &self.findings {
                let on = f
                    .shard
                    .as_ref()
                    .map(|s| format!(" on {s}"))
                    .unwrap_or_default();
                let _ = writeln!(out, "  [{}] {}{on}: {}", f.kind, f.table, f.message);
                if let Some(fix) = &f.fix {
                    for line in fix.lines() {
                        let _ = writeln!(out, "      fix: {line}");
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_is_max_over_mean() {
        let mut t = TableReport::default();
        t.per_shard.insert("a".into(), 30);
        t.per_shard.insert("b".into(), 10);
        t.compute_skew();
        assert!((t.skew - 1.5).abs() < 1e-9);
        let mut e = TableReport::default();
        e.per_shard.insert("a".into(), 0);
        e.compute_skew();
        assert_eq!(e.skew, 0.0);
    }
}
