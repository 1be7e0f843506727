//! The offline decoder against real binlog files written by MySQL 5.0–9.x,
//! Percona, Aurora and MariaDB (`../shared/fixtures/binlogs/`, see each
//! directory's PROVENANCE.md). Every file decodes, or — the deliberately
//! broken ones, and those holding what reshard refuses by design — fails
//! with an error naming the file and a byte offset. Nothing panics.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::fixtures::{self, binlogs, path, BROKEN};

use mysql_common::value::Value;
use reshard::source::file::{FileError, FileSummary};
use reshard::source::{BinlogFile, RowChange, SourceItem, Transaction};

fn fixtures() -> Option<PathBuf> {
    fixtures::dir()
}

fn decode(path: &Path) -> Result<FileSummary, FileError> {
    BinlogFile::decode_all(path, Arc::new(|_, _| true))
}

/// A committed transaction: the rows of its chunks, and its end.
#[derive(Debug)]
struct Txn {
    changes: Vec<RowChange>,
    t: Transaction,
}

/// All committed transactions with rows.
fn transactions(path: &Path) -> Vec<Txn> {
    let mut f = BinlogFile::open(path).unwrap();
    let mut out = Vec::new();
    let mut changes = Vec::new();
    while let Some(item) = f.next().unwrap() {
        match item {
            SourceItem::Rows(c) => changes.extend(c.changes),
            SourceItem::Transaction(t) if !changes.is_empty() => out.push(Txn {
                changes: std::mem::take(&mut changes),
                t,
            }),
            _ => {}
        }
    }
    out
}

/// Valid binlogs holding what reshard refuses rather than guess at (it
/// would lose or misplace rows), with the reason the error must give.
const REFUSED: &[(&str, &str)] = &[
    // MINIMAL / NDB partial images, and 8.0's hidden functional-index column
    ("gh-ost/mysql-bin.000066", "binlog_row_image=FULL"),
    (
        "rust_mysql_common/minimal_row_metadata.000001",
        "binlog_row_image=FULL",
    ),
    (
        "rust_mysql_common/rpl_unfiltered_hidden_gcol.000001",
        "binlog_row_image=FULL",
    ),
    (
        "rust_mysql_common/update-full-row.binlog",
        "binlog_row_image=FULL",
    ),
    (
        "rust_mysql_common/update-partial-row.binlog",
        "binlog_row_image=FULL",
    ),
    (
        "rust_mysql_common/write-full-row.binlog",
        "binlog_row_image=FULL",
    ),
    (
        "rust_mysql_common/write-partial-row.binlog",
        "binlog_row_image=FULL",
    ),
    (
        "rust_mysql_common/json.binlog.000001",
        "binlog_row_value_options",
    ),
    (
        "rust_mysql_common/ver_5_1-wl2325_s.001",
        "pre-GA rows event",
    ),
    ("rust_mysql_common/bug40482-bin.000001", "INCIDENT"),
];

/// Files whose provenance documents row events: (file, row changes).
const ROWS: &[(&str, u64)] = &[
    ("binlog-parser/mysql-bin.01", 10),
    ("binlog-parser/mysql-bin.02", 1),
    ("binlog-parser/mysql-bin.03", 7),
    ("binlog-parser/mysql-bin.06", 2),
    ("binlog-parser/mysql-bin.07", 2),
    ("gh-ost/mysql-bin.000070", 20),
    ("go-mysql/tcb-eval002c-bin.003320", 17),
    ("mysql-binlog-connector-java/mysql-bin.compressed", 1),
    ("rust_mysql_common/binlog-invisible-columns.000001", 3),
    ("rust_mysql_common/binlog_56_gtid_reserved_word.000001", 1),
    (
        "rust_mysql_common/binlog_transaction_with_GTID_TAG.000001",
        1,
    ),
    ("rust_mysql_common/bug32407.001", 2),
    ("rust_mysql_common/mariadb-bin.000001", 2),
    ("rust_mysql_common/json-opaque.binlog", 8),
    ("rust_mysql_common/mysql-enum-string-set.000001", 3),
    ("rust_mysql_common/mysql_type_bit.000001", 1),
    ("rust_mysql_common/time_issue.000001", 1),
    ("rust_mysql_common/transaction_compression.000001", 1),
    ("rust_mysql_common/vector.binlog", 10),
    ("rust_mysql_common/ver_5_1_23.001", 5),
    ("rust_mysql_common/ver_trunk_row_v2.001", 5),
];

#[test]
fn every_fixture_decodes_or_fails_cleanly() {
    let Some(dir) = fixtures() else { return };
    let files = binlogs(&dir);
    assert!(
        files.len() >= 40,
        "only {} binlogs found in {}",
        files.len(),
        dir.display()
    );
    let mut failures = Vec::new();
    for (rel, path) in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let outcome = match std::panic::catch_unwind(|| decode(path)) {
            Ok(o) => o,
            Err(_) => {
                failures.push(format!("{rel}: the decoder panicked"));
                continue;
            }
        };
        let refused = REFUSED.iter().find(|(f, _)| f == rel).map(|(_, why)| *why);
        match (outcome, BROKEN.contains(&rel.as_str()) || refused.is_some()) {
            (Err(e), true) => {
                let msg = e.to_string();
                println!("{rel}: rejected: {msg}");
                if !msg.contains(&name) || !msg.contains("byte offset") || e.offset().is_none() {
                    failures.push(format!(
                        "{rel}: error does not name the file and an offset: {msg}"
                    ));
                }
                if let Some(why) = refused {
                    if !msg.contains(why) {
                        failures.push(format!("{rel}: error does not say {why:?}: {msg}"));
                    }
                }
            }
            (Ok(s), true) => failures.push(format!(
                "{rel}: decoded ({} rows) but should be rejected",
                s.rows
            )),
            (Err(e), false) => failures.push(format!("{rel}: {e}")),
            (Ok(s), false) => {
                println!(
                    "{rel}: {} events, {} transactions, {} rows {:?}",
                    s.events, s.transactions, s.rows, s.tables
                );
                if let Some((_, rows)) = ROWS.iter().find(|(f, _)| f == rel) {
                    if s.rows != *rows {
                        failures.push(format!("{rel}: {} row changes, expected {rows}", s.rows));
                    }
                }
                if s.uncommitted_rows != 0 {
                    failures.push(format!(
                        "{rel}: {} rows never committed",
                        s.uncommitted_rows
                    ));
                }
            }
        }
    }
    for (f, _) in ROWS {
        if !files.contains_key(*f) {
            failures.push(format!("{f}: missing from the fixtures"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn bytes(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

/// binlog-parser's 01.json: the first insert into test_db.buildings.
#[test]
fn binlog_parser_expected_rows() {
    let Some(p) = path("binlog-parser/mysql-bin.01") else {
        return;
    };
    let txns = transactions(&p);
    let first = &txns[0].changes[0];
    assert_eq!(first.table.full_name(), "test_db.buildings");
    assert_eq!(first.kind(), "insert");
    let after = first.after.as_ref().unwrap();
    // MySQL 5.6 writes no column names: they are positional offline
    assert_eq!(first.table.columns[0].name, "@1");
    assert_eq!(after[0], Value::Int(1));
    assert!(after.contains(&bytes("ACME Headquaters")), "{after:?}");
    assert!(
        after.contains(&bytes("3950 North 1st Street CA 95134")),
        "{after:?}"
    );
    assert_eq!(first.position().file, "mysql-bin.01");
}

/// mysql-binlog-connector-java expects 1462 events in the Sakila binlog;
/// sakila-data.sql inserts 200 actors.
#[test]
fn sakila_counts() {
    let Some(p) = path("mysql-binlog-connector-java/mysql-bin.sakila") else {
        return;
    };
    let s = decode(&p).unwrap();
    assert_eq!(s.events, 1462);
    assert_eq!(s.tables["sakila.actor"].inserts, 200);
    // no numeric suffix: positions get sequence 0
    assert_eq!(s.end.unwrap().file, "mysql-bin.sakila.000000");
}

/// go-mysql's ddsql.sql: DECIMAL columns keep their exact text.
#[test]
fn decimals_keep_their_text() {
    let Some(p) = path("go-mysql/tcb-eval002c-bin.003320") else {
        return;
    };
    let txns = transactions(&p);
    let rows: Vec<&Vec<Value>> = txns[0]
        .changes
        .iter()
        .map(|c| c.after.as_ref().unwrap())
        .collect();
    assert_eq!(rows.len(), 17);
    assert!(
        rows.iter().any(|r| r[1] == bytes("-10.55")),
        "{:?}",
        rows[0]
    );
}

/// rust_mysql_common: BIT, TIME overflow, FULL metadata names, payloads.
#[test]
fn documented_values() {
    if let Some(p) = path("rust_mysql_common/mysql_type_bit.000001") {
        let t = transactions(&p);
        let after = t[0].changes[0].after.clone().unwrap();
        assert_eq!(after, vec![Value::UInt(4), bytes("foo"), Value::UInt(32)]);
    }
    if let Some(p) = path("rust_mysql_common/time_issue.000001") {
        let t = transactions(&p);
        let after = t[0].changes[0].after.clone().unwrap();
        assert_eq!(after, vec![Value::Time(true, 21, 3, 48, 27, 0)]);
    }
    if let Some(p) = path("rust_mysql_common/mariadb-bin.000001") {
        let t = transactions(&p);
        let table = &t[0].changes[0].table;
        assert_eq!(table.full_name(), "toddy_test.outbox");
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "topic", "event_type", "event", "created"]);
        assert_eq!(table.pk, vec![0]);
    }
    if let Some(p) = path("rust_mysql_common/json-opaque.binlog") {
        // SQL scalars inside JSON print as MySQL's JSON_EXTRACT prints them
        let docs: Vec<Value> = transactions(&p)
            .iter()
            .flat_map(|t| t.changes.iter())
            .map(|c| c.after.as_ref().unwrap().last().unwrap().clone())
            .collect();
        assert_eq!(docs, fixtures::JSON_OPAQUE.map(bytes).to_vec());
    }
    if let Some(p) = path("rust_mysql_common/transaction_compression.000001") {
        // rows inside a compressed payload are versioned by the payload's
        // start, and the transaction ends after the payload
        let t = transactions(&p).pop().unwrap();
        let start = t.changes[0].position().pos;
        assert!(t.t.end.pos > start && start > 4, "{t:?}");
    }
}

#[test]
fn non_binlogs_and_damage_are_errors() {
    let Some(dir) = fixtures() else { return };
    let e = BinlogFile::open(dir.join("README.md")).err().unwrap();
    assert!(e.to_string().contains("not a binlog file"), "{e}");
    // a flipped byte inside a row image is a checksum error at its event
    let Some(p) = path("gh-ost/mysql-bin.000070") else {
        return;
    };
    let mut raw = std::fs::read(&p).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("mysql-bin.000070");
    let at = raw.len() - 200;
    raw[at] ^= 0x40;
    std::fs::write(&copy, &raw).unwrap();
    let e = BinlogFile::decode_all(&copy, Arc::new(|_, _| true)).unwrap_err();
    assert!(matches!(e, FileError::Checksum { .. }), "{e}");
    assert!(
        e.to_string().contains("mysql-bin.000070 at byte offset"),
        "{e}"
    );
}

/// A length-encoded integer as MySQL writes it.
fn lenenc(v: u64) -> Vec<u8> {
    match v {
        0..=250 => vec![v as u8],
        251..=0xffff => [vec![252], (v as u16).to_le_bytes().to_vec()].concat(),
        0x1_0000..=0xff_ffff => [vec![253], v.to_le_bytes()[..3].to_vec()].concat(),
        _ => [vec![254], v.to_le_bytes().to_vec()].concat(),
    }
}

/// transaction_compression.000001 with its TRANSACTION_PAYLOAD re-made to
/// hold the WRITE_ROWS event three times (recompressed, sizes and CRC32
/// rewritten): every row inside one payload gets a version of its own,
/// in order, all at the payload's position (no ties).
#[test]
fn rows_inside_one_payload_get_distinct_versions() {
    let Some(p) = path("rust_mysql_common/transaction_compression.000001") else {
        return;
    };
    let raw = std::fs::read(&p).unwrap();
    let (at, size) = {
        let mut at = 4;
        loop {
            let size = u32::from_le_bytes(raw[at + 9..at + 13].try_into().unwrap()) as usize;
            if raw[at + 4] == 40 {
                break (at, size);
            }
            at += size;
        }
    };
    // the payload: fields (type, length, value) up to the end mark, zstd
    let body = &raw[at + 19..at + size - 4];
    let mut q = 0;
    while body[q] != 0 {
        q += 2 + usize::from(body[q + 1]);
    }
    let inner = zstd::decode_all(&body[q + 1..]).unwrap();
    let mut events = Vec::new();
    let mut i = 0;
    while i < inner.len() {
        let n = u32::from_le_bytes(inner[i + 9..i + 13].try_into().unwrap()) as usize;
        let ev = inner[i..i + n].to_vec();
        let copies = if ev[4] == 30 { 3 } else { 1 };
        for _ in 0..copies {
            events.extend_from_slice(&ev);
        }
        i += n;
    }
    let packed = zstd::encode_all(&events[..], 3).unwrap();
    let mut fields = Vec::new();
    for (ty, v) in [(1u8, packed.len() as u64), (2, 0), (3, events.len() as u64)] {
        let enc = lenenc(v);
        fields.push(ty);
        fields.extend(lenenc(enc.len() as u64));
        fields.extend(enc);
    }
    fields.push(0);
    fields.extend(packed);
    let new_size = 19 + fields.len() + 4;
    let mut ev = raw[at..at + 19].to_vec();
    ev[9..13].copy_from_slice(&(new_size as u32).to_le_bytes());
    ev[13..17].copy_from_slice(&((at + new_size) as u32).to_le_bytes());
    ev.extend(fields);
    let crc = crc32fast::hash(&ev);
    ev.extend(crc.to_le_bytes());
    let file = [&raw[..at], &ev[..], &raw[at + size..]].concat();
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("binlog.000042");
    std::fs::write(&copy, file).unwrap();
    let t = transactions(&copy);
    let changes = &t[0].changes;
    assert_eq!(changes.len(), 3);
    assert!(changes.iter().all(|c| c.position().pos == at as u64));
    let rows: Vec<u32> = changes.iter().map(|c| c.version.row()).collect();
    assert_eq!(rows, [0, 1, 2], "one version per row, in order");
    assert!(changes.windows(2).all(|w| w[0].version < w[1].version));
    assert_eq!(
        t[0].t.end.pos,
        (at + new_size) as u64,
        "the transaction ends after the payload"
    );
}
