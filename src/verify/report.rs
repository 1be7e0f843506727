//! The verify report: one JSON document with `--json` (schema in the
//! README), a readable table otherwise.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// The kinds of difference, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Expected on a shard, found on none.
    Missing,
    /// On a target while the source has no row with that key (or has one
    /// the rule's `where` excludes).
    Extra,
    /// On a shard other than the one the rule routes it to.
    Misplaced,
    /// On the right shard with other values.
    Different,
    /// A source row the rule cannot route (its shard cannot be derived).
    Unroutable,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Missing => "missing",
            Category::Extra => "extra",
            Category::Misplaced => "misplaced",
            Category::Different => "different",
            Category::Unroutable => "unroutable",
        }
    }
}

/// One key that differs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyEntry {
    /// The row identity, e.g. `(42)` or `(7, "a")`.
    pub key: String,
    /// missing: the shard the row belongs on; extra, misplaced, different:
    /// the shard holding the row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// misplaced: where the rule routes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_shard: Option<String>,
    /// different: the target columns whose values differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// unroutable: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// All differences of one kind in one table: the full count and the first
/// keys.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Keys {
    pub count: u64,
    pub keys: Vec<KeyEntry>,
}

/// Counts of one shard of one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardCounts {
    /// Source rows the rule routes to this shard.
    pub expected: u64,
    /// Target rows read from this shard.
    pub found: u64,
    pub missing: u64,
    pub extra: u64,
    pub misplaced: u64,
    pub different: u64,
}

/// The result for one source table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableReport {
    pub target: String,
    /// Source rows read.
    pub source_rows: u64,
    /// Key-range chunks compared.
    pub chunks: u64,
    /// Chunks whose digests differed on some shard (and were compared row
    /// by row).
    pub chunks_differing: u64,
    /// Keys re-read because they differed at first sight.
    pub rechecked: u64,
    /// Per shard of the rule (name → counts).
    pub per_shard: BTreeMap<String, ShardCounts>,
    pub missing: Keys,
    pub extra: Keys,
    pub misplaced: Keys,
    pub different: Keys,
    pub unroutable: Keys,
}

impl TableReport {
    pub fn keys(&self, c: Category) -> &Keys {
        match c {
            Category::Missing => &self.missing,
            Category::Extra => &self.extra,
            Category::Misplaced => &self.misplaced,
            Category::Different => &self.different,
            Category::Unroutable => &self.unroutable,
        }
    }

    fn keys_mut(&mut self, c: Category) -> &mut Keys {
        match c {
            Category::Missing => &mut self.missing,
            Category::Extra => &mut self.extra,
            Category::Misplaced => &mut self.misplaced,
            Category::Different => &mut self.different,
            Category::Unroutable => &mut self.unroutable,
        }
    }

    /// Records one difference, keeping at most `cap` keys per category.
    pub fn record(&mut self, c: Category, entry: KeyEntry, cap: usize) {
        if let Some(shard) = &entry.shard {
            let counts = self.per_shard.entry(shard.clone()).or_default();
            match c {
                Category::Missing => counts.missing += 1,
                Category::Extra => counts.extra += 1,
                Category::Misplaced => counts.misplaced += 1,
                Category::Different => counts.different += 1,
                Category::Unroutable => {}
            }
        }
        let k = self.keys_mut(c);
        k.count += 1;
        if k.keys.len() < cap {
            k.keys.push(entry);
        }
    }

    /// Every difference, all categories.
    pub fn differences(&self) -> u64 {
        ALL.iter().map(|c| self.keys(*c).count).sum()
    }
}

const ALL: [Category; 5] = [
    Category::Missing,
    Category::Extra,
    Category::Misplaced,
    Category::Different,
    Category::Unroutable,
];

/// The whole verify result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// No differences anywhere.
    pub ok: bool,
    pub config: String,
    /// Total differences over all tables.
    pub differences: u64,
    /// Per source table (`db.table`).
    pub tables: BTreeMap<String, TableReport>,
}

impl Report {
    /// Fills `ok` and `differences` from the tables.
    pub fn finish(&mut self) {
        self.differences = self.tables.values().map(TableReport::differences).sum();
        self.ok = self.differences == 0;
    }

    /// The human-readable form.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "reshard verify of {}\n", self.config);
        for (name, t) in &self.tables {
            let _ = writeln!(
                out,
                "{name} -> {} ({} source rows in {} chunk(s), {} differing)",
                t.target, t.source_rows, t.chunks, t.chunks_differing
            );
            let _ = writeln!(
                out,
                "  {:<16} {:>10} {:>10} {:>8} {:>8} {:>9} {:>9}",
                "shard", "expected", "found", "missing", "extra", "misplaced", "different"
            );
            for (shard, c) in &t.per_shard {
                let _ = writeln!(
                    out,
                    "  {:<16} {:>10} {:>10} {:>8} {:>8} {:>9} {:>9}",
                    shard, c.expected, c.found, c.missing, c.extra, c.misplaced, c.different
                );
            }
            for c in ALL {
                let k = t.keys(c);
                for e in &k.keys {
                    let mut line = format!("  {:<10} {}", c.name(), e.key);
                    if let Some(s) = &e.shard {
                        let _ = write!(line, " on {s}");
                    }
                    if let Some(s) = &e.expected_shard {
                        let _ = write!(line, " (belongs on {s})");
                    }
                    if !e.columns.is_empty() {
                        let _ = write!(line, ": {}", e.columns.join(", "));
                    }
                    if let Some(err) = &e.error {
                        let _ = write!(line, ": {err}");
                    }
                    let _ = writeln!(out, "{line}");
                }
                if k.count > k.keys.len() as u64 {
                    let _ = writeln!(
                        out,
                        "  … and {} more {}",
                        k.count - k.keys.len() as u64,
                        c.name()
                    );
                }
            }
            let _ = writeln!(out);
        }
        if self.ok {
            let _ = writeln!(out, "no differences: the targets match the source");
        } else {
            let _ = writeln!(out, "{} difference(s)", self.differences);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_capped_but_counted() {
        let mut t = TableReport::default();
        for i in 0..5 {
            t.record(
                Category::Missing,
                KeyEntry {
                    key: format!("({i})"),
                    shard: Some("s0".into()),
                    expected_shard: None,
                    columns: Vec::new(),
                    error: None,
                },
                2,
            );
        }
        assert_eq!(t.missing.count, 5);
        assert_eq!(t.missing.keys.len(), 2);
        assert_eq!(t.per_shard["s0"].missing, 5);
        let mut r = Report::default();
        r.tables.insert("a.b".into(), t);
        r.finish();
        assert!(!r.ok);
        assert_eq!(r.differences, 5);
        assert!(r.render().contains("… and 3 more missing"));
    }
}
