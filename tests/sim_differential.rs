//! Keeps the simulation's in-memory target honest: random batches of
//! versioned upserts and deletes go through the model (`tests/sim/target.rs`)
//! and through the writer's real SQL (`writer::lane::apply_batch`, which
//! issues `writer::sql` and `control::shard` statements) against a real
//! MariaDB, and after every batch both must hold the same rows (cells and
//! versions) and the same tombstones.
//!
//! Key columns: BIGINT; VARCHAR under `utf8mb4_general_ci` and
//! `latin1_swedish_ci` (case and trailing spaces); `BINARY(4)` (the server
//! pads with zero bytes). Each operation's `key_enc` is the canonical key
//! under the collation `source::collation` learns from this server, as
//! the router computes it, so tombstones of two spellings are one row on
//! the server as in the model. Versions come from a small range so ties
//! (`>` against `>=`: the `ON DUPLICATE KEY UPDATE` guard, `GREATEST` on
//! tombstones, the upsert skipped under an equal tombstone) are frequent.

mod sim;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};
use reshard::config::Endpoint;
use reshard::control::migrations::{self, MigrationSet};
use reshard::db::{self, Session};
use reshard::position::Position;
use reshard::source::collation::CollationLoader;
use reshard::source::schema::SchemaOrigin;
use reshard::source::{Column, TableSchema};
use reshard::version::Version;
use reshard::writer::keyenc::KeyPart;
use reshard::writer::lane::{apply_batch, LaneConfig, LaneMemo, LaneShard, Stats};
use reshard::writer::{keyenc, OpKind, TargetTable, WriteOp};
use reshard_testkit::{MariaDb, ServerOptions};
use sim::model::Rng;
use sim::target::{assigned_columns, Cell, Collation, Target};

fn server() -> &'static MariaDb {
    static SERVER: OnceLock<MariaDb> = OnceLock::new();
    SERVER.get_or_init(|| match MariaDb::start(ServerOptions::plain(2)) {
        Ok(s) => s,
        Err(e) => panic!("cannot start MariaDB: {e}"),
    })
}

/// One kind of key column.
struct Kind {
    db: &'static str,
    column: &'static str,
    coll: Collation,
    keys: Vec<Value>,
}

fn kinds() -> Vec<Kind> {
    let bytes = |v: &[&[u8]]| v.iter().map(|b| Value::Bytes(b.to_vec())).collect();
    let ci: &[&[u8]] = &[b"a", b"A", b"a ", b"A  ", b"b", b"B", b"c"];
    vec![
        Kind {
            db: "diff_int",
            column: "BIGINT",
            coll: Collation::Binary,
            keys: (1..5).map(Value::Int).collect(),
        },
        Kind {
            db: "diff_utf8_ci",
            column: "VARCHAR(8) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
            coll: Collation::CaseInsensitive,
            keys: bytes(ci),
        },
        Kind {
            db: "diff_latin1_ci",
            column: "VARCHAR(8) CHARACTER SET latin1 COLLATE latin1_swedish_ci",
            coll: Collation::CaseInsensitive,
            keys: bytes(ci),
        },
        Kind {
            db: "diff_binary",
            column: "BINARY(4)",
            coll: Collation::PaddedBinary(4),
            keys: bytes(&[b"ab", b"ab\0", b"ab\0\0", b"c", b"c\0\0\0", b"\0\0\0\0"]),
        },
    ]
}

fn table() -> Arc<TargetTable> {
    Arc::new(TargetTable {
        name: "t".into(),
        source: "app.t".into(),
        columns: ["id", "tenant", "upd", "val"].map(String::from).to_vec(),
        key: vec![0],
    })
}

/// The key column's part of the canonical key, learned from the server
/// as `run` learns it from the source.
async fn key_part(conn: &mut Conn, db: &str) -> KeyPart {
    let mut loader = CollationLoader::default();
    loader
        .learn_table(conn, db, "t", None)
        .await
        .expect("learn the key collation");
    let schema = TableSchema {
        db: db.into(),
        table: "t".into(),
        columns: vec![Column::new("id", ColumnType::MYSQL_TYPE_VARCHAR)],
        pk: vec![0],
        origin: SchemaOrigin::InformationSchema,
    };
    loader
        .finish()
        .part(&schema, 0)
        .expect("the key column was learned")
}

fn random_op(rng: &mut Rng, kind: &Kind, part: &KeyPart, table: &Arc<TargetTable>) -> WriteOp {
    let key = vec![kind.keys[rng.below(kind.keys.len() as u64) as usize].clone()];
    let kind_ = if rng.below(5) < 3 {
        let tenant = match rng.below(3) {
            0 => Value::NULL,
            t => Value::Int(t as i64),
        };
        OpKind::Upsert(vec![
            key[0].clone(),
            tenant,
            Value::Int(rng.below(4) as i64),
            Value::Int(rng.below(100) as i64),
        ])
    } else {
        OpKind::Delete(key.clone())
    };
    let key_enc = keyenc::canonical(&key, std::slice::from_ref(part));
    let version = Version(1 + u128::from(rng.below(12)));
    WriteOp::new(0, table.clone(), key_enc, kind_, version)
}

type Rows = Vec<(Vec<Cell>, Version)>;
type Tombs = Vec<(Vec<u8>, Version)>;

async fn server_state(conn: &mut Conn) -> (Rows, Tombs) {
    let rows: Vec<mysql_async::Row> = conn
        .exec("SELECT id, tenant, upd, val, _reshard_version FROM t", ())
        .await
        .expect("read rows");
    let mut out: Rows = rows
        .into_iter()
        .map(|r| {
            let vals = r.unwrap();
            let version = match &vals[4] {
                Value::Bytes(b) => Version::from_bytes(b).expect("16 bytes"),
                v => panic!("version {v:?}"),
            };
            (vals[..4].iter().map(Cell::of).collect(), version)
        })
        .collect();
    out.sort();
    let tombs: Vec<(Vec<u8>, Vec<u8>)> = conn
        .exec(
            "SELECT k, version FROM _reshard_tombstone WHERE tbl = 't'",
            (),
        )
        .await
        .expect("read tombstones");
    let mut tombs: Tombs = tombs
        .into_iter()
        .map(|(k, v)| (k, Version::from_bytes(&v).expect("16 bytes")))
        .collect();
    tombs.sort();
    (out, tombs)
}

fn model_state(t: &Target) -> (Rows, Tombs) {
    let mut rows: Rows = t
        .rows
        .values()
        .map(|r| (r.cells.clone(), r.version))
        .collect();
    rows.sort();
    let mut tombs: Tombs = t
        .tombs
        .iter()
        .map(|(k, v)| (k.clone(), v.version))
        .collect();
    tombs.sort();
    (rows, tombs)
}

fn show(ops: &[WriteOp]) -> String {
    ops.iter()
        .map(|o| {
            let k = o
                .key()
                .next()
                .map(|v| Cell::of(v).show())
                .unwrap_or_default();
            match &o.kind {
                OpKind::Delete(_) => format!("delete {k} @{}", o.version.0),
                OpKind::Upsert(v) => format!(
                    "upsert {k} ({}) @{}",
                    v.iter()
                        .map(|c| Cell::of(c).show())
                        .collect::<Vec<_>>()
                        .join(","),
                    o.version.0
                ),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

async fn run_kind(kind: &Kind, sequences: u64, batches: usize) {
    let srv = server();
    srv.sql(&format!(
        "CREATE DATABASE IF NOT EXISTS {db}; CREATE TABLE IF NOT EXISTS {db}.t (id {col} NOT NULL PRIMARY KEY, tenant BIGINT NULL, upd BIGINT NOT NULL, val BIGINT NOT NULL, _reshard_version BINARY(16) NOT NULL DEFAULT '') ENGINE=InnoDB",
        db = kind.db,
        col = kind.column
    ))
    .expect("create the table");
    let ep = Endpoint::new("s0", srv.url(kind.db));
    let mut conn = db::connect(&ep, Session::Write, Duration::from_secs(10))
        .await
        .expect("connect");
    migrations::apply(&mut conn, MigrationSet::Shard, "s0")
        .await
        .expect("shard migrations");
    let part = key_part(&mut conn, kind.db).await;
    assert_eq!(
        matches!(part, KeyPart::Collated(_)),
        kind.coll == Collation::CaseInsensitive,
        "{}: a text key compares under its collation, others exactly",
        kind.column
    );
    let table = table();
    let assigned = assigned_columns(&table.columns, &table.key);
    let cfg = LaneConfig {
        pipeline: "diff".into(),
        shard: "s0".into(),
        lane: 0,
        lane_in_shard: 0,
        batch_size: 10,
        linger: Duration::from_millis(1),
        shards: vec![LaneShard {
            index: 0,
            name: "s0".into(),
            database: kind.db.into(),
        }],
    };
    let stats = Stats::default();
    for seed in 0..sequences {
        conn.query_drop("DELETE FROM t").await.expect("clear");
        conn.query_drop("DELETE FROM _reshard_tombstone")
            .await
            .expect("clear");
        let mut rng = Rng::new(seed);
        let mut model = Target::default();
        let mut hint = None;
        let mut hints = LaneMemo::default();
        let mut history = Vec::new();
        for b in 0..batches {
            let n = 1 + rng.below(5) as usize;
            let ops: Vec<WriteOp> = (0..n)
                .map(|_| random_op(&mut rng, kind, &part, &table))
                .collect();
            history.push(show(&ops));
            model.apply(ops.clone(), kind.coll, &assigned, &mut hint);
            let end = Position::new("b.000001", 4 + b as u64);
            apply_batch(&mut conn, &cfg, ops, Some(&end), &stats, &mut hints)
                .await
                .expect("apply the batch");
            let real = server_state(&mut conn).await;
            let modelled = model_state(&model);
            assert_eq!(
                real,
                modelled,
                "{} seed {seed}: the server (left) and the model (right) differ after batch {b}:\n{}",
                kind.column,
                history.join("\n")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_memory_target_matches_the_writers_sql_on_mariadb() {
    let sequences = std::env::var("SIM_DIFF_SEQUENCES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40);
    for kind in kinds() {
        run_kind(&kind, sequences, 12).await;
    }
}
