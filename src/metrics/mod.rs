//! What a running reshard counts, for Prometheus (`[metrics] listen`,
//! [`serve`]), for `status` ([`figures`], kept in the control database by
//! [`crate::monitor`]) and for the stall alarm ([`board`]).
//!
//! # One registry, read two ways
//!
//! Every figure lives once, in the process's [`Metrics`] (a `prometheus`
//! registry and the handles of its metrics). The endpoint encodes the
//! registry with the crate's text encoder; `status` shows
//! [`figures::Figures`], built from the same `gather()`. So the scrape and
//! `status --json` cannot disagree about what they both show.
//!
//! # Cheap on the hot path
//!
//! Nothing here is called per row. The writer records a batch once it is
//! committed ([`Metrics::batch_applied`]: one counter add per table and
//! kind of operation in the batch); the decoder counts an event with one
//! atomic add on a handle resolved once per event type
//! ([`Metrics::event_read`]); the copy records a chunk, a dead letter is
//! recorded where it is written. Labels are looked up per batch, never
//! allocated per row.
//!
//! # Process-wide
//!
//! Like a `tracing` subscriber, the registry is one per process
//! ([`global`]): the writer lanes, the decoder and the copy record into it
//! without a handle being passed through every stage. Each command runs in
//! a process of its own, so nothing is shared between pipelines.
//!
//! Nothing in the pipeline reads a figure back, so counting cannot change
//! what is applied (`docs/architecture.md`, "Watching and throttling").

pub mod board;
pub mod figures;
pub mod serve;

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

use crate::writer::lane::{Group, LaneConfig};
pub use board::Board;

/// Upper bounds of `reshard_batch_seconds`.
const BATCH_BUCKETS: &[f64] = &[
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Stages that can be stalled whatever the lanes are (each starts at 0).
pub const STAGES: &[&str] = &["reader", "router", "copy"];

/// The process's metrics (see the module docs).
pub struct Metrics {
    registry: Registry,
    rows_applied: IntCounterVec,
    events_read: IntCounterVec,
    /// `events_read` resolved per event type code, on first use.
    events_by_code: [OnceLock<IntCounter>; 256],
    pub source_lag_seconds: Gauge,
    pub source_lag_bytes: IntGauge,
    pub checkpoint_position: IntGaugeVec,
    batch_seconds: Histogram,
    retries: IntCounterVec,
    dead_letters: IntCounterVec,
    snapshot_rows: IntCounterVec,
    pub stalled: IntGaugeVec,
    pub throttled: IntGaugeVec,
    pub throttle_wait_seconds: prometheus::CounterVec,
    pub target_lag_seconds: GaugeVec,
    /// Progress clocks of the stages, for the stall alarm.
    pub board: Board,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let m = Metrics {
            rows_applied: counter_vec(
                &registry,
                opts("reshard_rows_applied_total", "Row operations committed on the target shards (after deduplication within a batch), by shard, target table and operation (upsert, delete)."),
                &["shard", "table", "op"],
            ),
            events_read: counter_vec(
                &registry,
                opts("reshard_events_read_total", "Binlog events read, by event type."),
                &["type"],
            ),
            events_by_code: [const { OnceLock::new() }; 256],
            source_lag_seconds: register(&registry, gauge("reshard_source_lag_seconds", "Seconds since the source committed the transaction at the checkpoint (0 when the checkpoint is at the source head).")),
            source_lag_bytes: register(&registry, int_gauge("reshard_source_lag_bytes", "Bytes of source binlog between the checkpoint and the source head.")),
            checkpoint_position: register(&registry, int_gauge_vec(opts("reshard_checkpoint_position", "Offset of the checkpoint in its binlog file (the label)."), &["file"])),
            batch_seconds: register(&registry, histogram()),
            retries: counter_vec(
                &registry,
                opts("reshard_retries_total", "Work retried after a transient failure, by stage (writer, pipeline) and cause."),
                &["stage", "reason"],
            ),
            dead_letters: counter_vec(
                &registry,
                opts("reshard_dead_letters_total", "Rows written to the dead-letter table, by source table."),
                &["table"],
            ),
            snapshot_rows: counter_vec(
                &registry,
                opts("reshard_snapshot_rows_total", "Rows read and applied by the initial copy, by source table."),
                &["table"],
            ),
            stalled: register(&registry, int_gauge_vec(opts("reshard_stalled", "1 while a stage has had work and made no progress for stall_secs: reader, router, copy, or lane:SHARD/N."), &["stage"])),
            throttled: register(&registry, int_gauge_vec(opts("reshard_throttled", "1 while the throttle holds writes back: reason rate (max_rows_per_sec) or lag (a target server's lag above max_lag_secs, server label)."), &["reason", "server"])),
            throttle_wait_seconds: register(&registry, prometheus::CounterVec::new(opts("reshard_throttle_wait_seconds_total", "Seconds writer lanes waited for the throttle, summed over lanes, by reason."), &["reason"]).unwrap_or_else(|e| unreachable_metric(e))),
            target_lag_seconds: register(&registry, GaugeVec::new(opts("reshard_target_lag_seconds", "Replication lag of each target server as the throttle last measured it (NaN: unknown)."), &["server"]).unwrap_or_else(|e| unreachable_metric(e))),
            board: Board::new(),
            registry,
        };
        for stage in STAGES {
            m.stalled.with_label_values(&[stage]).set(0);
        }
        m
    }

    /// The registry (for the endpoint and the figures).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A batch committed on `shard` (by a lane or the copy) after one try
    /// of `took`: counts its operations per target table and kind, once
    /// per batch.
    pub fn batch_applied(&self, lane: &LaneConfig, batch: &[Group], took: Duration) {
        for g in batch {
            let shard = lane
                .shards
                .iter()
                .find(|s| s.index == g.shard)
                .map_or(lane.shard.as_str(), |s| s.name.as_str());
            let deletes = g.ops.iter().filter(|b| b.op.kind.is_delete()).count() as u64;
            let upserts = g.ops.len() as u64 - deletes;
            for (op, n) in [("upsert", upserts), ("delete", deletes)] {
                if n > 0 {
                    self.rows_applied
                        .with_label_values(&[shard, g.table.name.as_str(), op])
                        .inc_by(n);
                }
            }
        }
        self.batch_seconds.observe(took.as_secs_f64());
        self.board.committed();
    }

    /// A binlog event of type `code` was read.
    pub fn event_read(&self, code: u8) {
        let counter = self.events_by_code[usize::from(code)].get_or_init(|| {
            self.events_read
                .with_label_values(&[&event_type_name(code)])
        });
        counter.inc();
        self.board.event_read();
    }

    /// Work retried at `stage` because of `reason`.
    pub fn retried(&self, stage: &str, reason: &str) {
        self.retries.with_label_values(&[stage, reason]).inc();
    }

    /// A row of source table `table` was dead-lettered.
    pub fn dead_lettered(&self, table: &str) {
        self.dead_letters.with_label_values(&[table]).inc();
    }

    /// The initial copy applied `rows` rows of source table `table`.
    pub fn copied(&self, table: &str, rows: u64) {
        self.snapshot_rows.with_label_values(&[table]).inc_by(rows);
        self.board.copied();
    }

    /// Moves the checkpoint gauge to `file`, dropping the old file's
    /// series.
    pub fn set_checkpoint(&self, old: Option<&str>, file: &str, pos: u64) {
        if let Some(old) = old.filter(|o| *o != file) {
            let _ = self.checkpoint_position.remove_label_values(&[old]);
        }
        self.checkpoint_position
            .with_label_values(&[file])
            .set(i64::try_from(pos).unwrap_or(i64::MAX));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// `write_rows_v1`, `query`, `mariadb_gtid`… of an event type code: the
/// name `inspect` prints ([`crate::source::view::event_type_name`]), in
/// lower case.
pub fn event_type_name(code: u8) -> String {
    crate::source::view::event_type_name(code).to_ascii_lowercase()
}

/// Registration only fails for a duplicate or malformed name: a bug in
/// this module, caught by its tests.
fn unreachable_metric(e: prometheus::Error) -> ! {
    panic!("metric definition: {e}")
}

fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: M) -> M {
    if let Err(e) = registry.register(Box::new(m.clone())) {
        unreachable_metric(e)
    }
    m
}

fn counter_vec(registry: &Registry, o: Opts, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(o, labels).unwrap_or_else(|e| unreachable_metric(e)),
    )
}

fn int_gauge_vec(o: Opts, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(o, labels).unwrap_or_else(|e| unreachable_metric(e))
}

fn gauge(name: &str, help: &str) -> Gauge {
    Gauge::with_opts(opts(name, help)).unwrap_or_else(|e| unreachable_metric(e))
}

fn int_gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::with_opts(opts(name, help)).unwrap_or_else(|e| unreachable_metric(e))
}

fn histogram() -> Histogram {
    Histogram::with_opts(
        HistogramOpts::new(
            "reshard_batch_seconds",
            "Time to apply one writer batch transaction (one try), in seconds.",
        )
        .buckets(BATCH_BUCKETS.to_vec()),
    )
    .unwrap_or_else(|e| unreachable_metric(e))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::version::Version;
    use crate::writer::lane::{BatchOp, LaneShard};
    use crate::writer::{OpKind, TargetTable, WriteOp};
    use mysql_common::value::Value;
    use prometheus::Encoder;
    use std::sync::Arc;

    fn op(shard: usize, table: &Arc<TargetTable>, kind: OpKind) -> BatchOp {
        BatchOp {
            op: WriteOp::new(shard, table.clone(), vec![1], kind, Version(1)),
            tombstone: None,
        }
    }

    /// Every metric with one series, as a scrape after some work shows.
    pub(crate) fn touched() -> Metrics {
        let m = Metrics::new();
        m.retried("writer", "deadlock");
        m.dead_lettered("db.t");
        m.copied("db.t", 10);
        m.event_read(2);
        m.set_checkpoint(None, "b.000002", 77);
        m.rows_applied
            .with_label_values(&["s", "t", "upsert"])
            .inc();
        m.throttle_wait_seconds.with_label_values(&["rate"]).inc();
        m.throttled.with_label_values(&["lag", "h:1"]).set(1);
        m.target_lag_seconds.with_label_values(&["h:1"]).set(12.0);
        m
    }

    /// `text` holds each of `lines`.
    fn has(text: &str, lines: &[&str]) {
        for l in lines {
            assert!(text.contains(l), "{l} missing from\n{text}");
        }
    }

    fn text(m: &Metrics) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&m.registry().gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_batch_counts_per_shard_table_and_operation() {
        let m = Metrics::new();
        let t = Arc::new(TargetTable {
            name: "orders".into(),
            source: "db.orders".into(),
            columns: vec!["id".into()],
            key: vec![0],
        });
        let shard = |index: usize, name: &str| LaneShard {
            index,
            name: name.into(),
            database: name.into(),
        };
        // one lane serving two shards of one server
        let lane = LaneConfig {
            pipeline: "p".into(),
            shard: "s1+s3".into(),
            lane: 0,
            lane_in_shard: 0,
            batch_size: 10,
            linger: Duration::ZERO,
            shards: vec![shard(1, "s1"), shard(3, "s3")],
        };
        let group = |i: usize, ops| Group {
            shard: i,
            table: t.clone(),
            ops,
        };
        let batch = vec![
            group(
                1,
                vec![
                    op(1, &t, OpKind::Upsert(vec![Value::Int(1)])),
                    op(1, &t, OpKind::Upsert(vec![Value::Int(2)])),
                    op(1, &t, OpKind::Delete(vec![Value::Int(1)])),
                ],
            ),
            group(3, vec![op(3, &t, OpKind::Delete(vec![Value::Int(1)]))]),
        ];
        m.batch_applied(&lane, &batch, Duration::from_millis(4));
        m.batch_applied(&lane, &batch, Duration::from_millis(4));
        has(
            &text(&m),
            &[
                r#"reshard_rows_applied_total{op="upsert",shard="s1",table="orders"} 4"#,
                r#"reshard_rows_applied_total{op="delete",shard="s1",table="orders"} 2"#,
                r#"reshard_rows_applied_total{op="delete",shard="s3",table="orders"} 2"#,
                "reshard_batch_seconds_count 2",
                r#"reshard_stalled{stage="reader"} 0"#,
            ],
        );
    }

    #[test]
    fn events_are_named_by_type() {
        let m = Metrics::new();
        m.event_read(30);
        m.event_read(30);
        m.event_read(2);
        m.event_read(162);
        m.event_read(250);
        has(
            &text(&m),
            &[
                r#"reshard_events_read_total{type="write_rows_v2"} 2"#,
                r#"reshard_events_read_total{type="mariadb_gtid"} 1"#,
                r#"reshard_events_read_total{type="query"} 1"#,
                r#"reshard_events_read_total{type="unknown_250"} 1"#,
            ],
        );
    }

    /// Asserts that every `reshard_*` name in a PromQL expression is a
    /// metric of the registry (histograms by their `_bucket` series);
    /// returns the names.
    fn real_metrics(expr: &str) -> Vec<String> {
        let m = touched();
        let names: Vec<String> = m
            .registry()
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert_eq!(names.len(), 13, "{names:?}");
        let mut used = Vec::new();
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("reshard_") {
                let base = word.strip_suffix("_bucket").unwrap_or(word);
                assert!(names.iter().any(|n| n == base), "{word} in {expr}");
                used.push(base.to_string());
            }
        }
        used
    }

    /// The dashboard in docs/ graphs only metrics this registry has.
    #[test]
    fn the_grafana_dashboard_names_real_metrics() {
        let dash: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/grafana-dashboard.json")).unwrap();
        let panels = dash["panels"].as_array().unwrap();
        assert!(panels.len() >= 10);
        for target in panels.iter().flat_map(|p| p["targets"].as_array().unwrap()) {
            real_metrics(target["expr"].as_str().unwrap());
        }
    }

    /// The README's example alert rules alert on lag, stalls and dead
    /// letters with metrics this registry has.
    #[test]
    fn the_readme_alert_rules_name_real_metrics() {
        let readme = include_str!("../../README.md");
        let rules = readme
            .split("```yaml")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("a yaml block of alert rules in the README");
        let mut used = Vec::new();
        for line in rules.lines() {
            if let Some(expr) = line.trim().strip_prefix("expr:") {
                used.extend(real_metrics(expr));
            }
        }
        for m in [
            "reshard_source_lag_seconds",
            "reshard_stalled",
            "reshard_dead_letters_total",
        ] {
            assert!(used.iter().any(|u| u == m), "no alert on {m}: {rules}");
        }
    }

    #[test]
    fn the_checkpoint_gauge_follows_the_file() {
        let m = Metrics::new();
        m.set_checkpoint(None, "b.000001", 100);
        m.set_checkpoint(Some("b.000001"), "b.000002", 4);
        let text = text(&m);
        assert!(!text.contains("b.000001"), "{text}");
        assert!(
            text.contains(r#"reshard_checkpoint_position{file="b.000002"} 4"#),
            "{text}"
        );
    }
}
