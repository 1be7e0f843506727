//! `reshard inspect` over every third-party fixture binlog
//! (`../shared/fixtures/binlogs/`, skipped with a message when absent):
//! each file is shown whole — as many events as an independent header walk
//! finds, of the types its PROVENANCE table lists — or, for the files
//! broken on purpose, the error names the file and the offset. Where a
//! fixture documents rows or values, the decoded ones match. The files the
//! pipeline refuses (MINIMAL/NOBLOB and NDB partial images, partial JSON,
//! pre-GA rows events, INCIDENT) are shown too.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use common::fixtures::{self, binlogs, header_walk, provenance, BROKEN};
use serde_json::{json, Value};

/// Runs `reshard inspect --json` on one file: (exit code, records, stderr).
fn inspect(path: &Path, extra: &[&str]) -> (i32, Vec<Value>, String) {
    let out = Command::new(common::BIN)
        .arg("inspect")
        .arg("--json")
        .args(extra)
        .arg(path)
        .output()
        .unwrap();
    let records = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        records,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn type_counts<'a>(records: impl Iterator<Item = &'a Value>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in records {
        *out.entry(r["type"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    out
}

/// Acceptance: every fixture is shown whole, or fails naming the offset.
#[test]
fn every_fixture_is_shown_or_fails_naming_the_offset() {
    let Some(dir) = fixtures::dir() else { return };
    let files = binlogs(&dir);
    assert!(
        files.len() >= 40,
        "only {} binlogs in {}",
        files.len(),
        dir.display()
    );
    let documented = provenance(&dir);
    let mut failures = Vec::new();
    let mut checked_types = 0;
    for (rel, path) in &files {
        let (code, records, stderr) = inspect(path, &[]);
        let walk = header_walk(&std::fs::read(path).unwrap());
        let top: Vec<&Value> = records
            .iter()
            .filter(|r| r.get("inner").is_none())
            .collect();
        match (code, &walk) {
            (0, Ok(types)) => {
                if top.len() != types.len() {
                    failures.push(format!(
                        "{rel}: {} events shown, the header walk finds {}",
                        top.len(),
                        types.len()
                    ));
                }
                let shown: Vec<u64> = top
                    .iter()
                    .map(|r| r["type_code"].as_u64().unwrap())
                    .collect();
                let walked: Vec<u64> = types.iter().map(|t| u64::from(*t)).collect();
                if shown != walked {
                    failures.push(format!("{rel}: event types differ from the header walk"));
                }
                if BROKEN.contains(&rel.as_str())
                    && !records.iter().any(|r| r.get("undecodable").is_some())
                {
                    failures.push(format!(
                        "{rel}: broken on purpose, but no event is shown as undecodable"
                    ));
                }
            }
            (2, Err(offset)) => {
                let name = path.file_name().unwrap().to_string_lossy();
                let at = format!("byte offset {offset}");
                if !BROKEN.contains(&rel.as_str()) {
                    failures.push(format!("{rel}: exit 2 but not broken on purpose: {stderr}"));
                } else if !stderr.contains(&*name) || !stderr.contains(&at) {
                    failures.push(format!(
                        "{rel}: the error does not name the file and {at}: {stderr}"
                    ));
                }
            }
            _ => failures.push(format!(
                "{rel}: exit {code}, header walk {walk:?}: {stderr}"
            )),
        }
        if let Some(doc) = documented.get(rel) {
            checked_types += 1;
            let inner = type_counts(records.iter().filter(|r| r.get("inner").is_some()));
            if code == 0 && type_counts(top.iter().copied()) != doc.top {
                failures.push(format!(
                    "{rel}: types {:?}, PROVENANCE says {:?}",
                    type_counts(top.iter().copied()),
                    doc.top
                ));
            }
            if code == 0 && inner != doc.inner {
                failures.push(format!(
                    "{rel}: inner types {inner:?}, PROVENANCE says {:?}",
                    doc.inner
                ));
            }
        }
    }
    assert!(
        checked_types >= 40,
        "only {checked_types} files matched a PROVENANCE row"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// All row images of a file in order: (type, before, after) with each
/// image as column name → value (absent columns left out).
/// A row image: column name → value (absent columns left out).
type Image = HashMap<String, Value>;

fn row_changes(records: &[Value]) -> Vec<(String, Option<Image>, Option<Image>)> {
    let image = |cells: &Value| -> Option<Image> {
        cells.as_array().map(|cells| {
            cells
                .iter()
                .filter(|c| c["present"] == json!(true))
                .map(|c| (c["name"].as_str().unwrap().to_string(), c["value"].clone()))
                .collect()
        })
    };
    let mut out = Vec::new();
    for r in records {
        for row in r["rows"].as_array().into_iter().flatten() {
            out.push((
                r["type"].as_str().unwrap().to_string(),
                image(&row["before"]),
                image(&row["after"]),
            ));
        }
    }
    out
}

/// gh-ost's two binlogs of one script, FULL (000070) and MINIMAL (000066)
/// images: replaying each file's decoded changes onto a map (a MINIMAL
/// update changes only the columns it holds) ends in the table the
/// script leaves, worked out by hand from rbr-sample-2.txt.
#[test]
fn gh_ost_full_and_minimal_images_replay_to_the_script_result() {
    let png = "89504E470D0A1A0A0000000D494844520000001000000010080200000090916836000000017352474200AECE1CE90000000467414D410000B18F0BFC6105000000097048597300000EC300000EC301C76FA8640000001E49444154384F6350DAE843126220493550F1A80662426C349406472801006AC91F1040F796BD0000000049454E44AE426082";
    let want: BTreeMap<i64, Value> = [
        (1, json!([1, 1, "a", null])),
        (2, json!([2, 4, "replaced 2,4", null])),
        (5, json!([5, 5, "update 5,6", null])),
        (6, json!([6, 6, "update 5,6", null])),
        (9, json!([9, 9, "update 9b", {"hex": png}])),
        (10, json!([10, 10, "10", null])),
    ]
    .into_iter()
    .collect();
    for file in ["gh-ost/mysql-bin.000070", "gh-ost/mysql-bin.000066"] {
        let Some(p) = fixtures::path(file) else {
            return;
        };
        let (code, records, stderr) = inspect(&p, &[]);
        assert_eq!(code, 0, "{stderr}");
        let mut table: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
        for (ty, before, after) in row_changes(&records) {
            let id = |img: &Image| img["@1"].as_i64().unwrap();
            let mut row = match &before {
                Some(b) => table
                    .remove(&id(b))
                    .unwrap_or_else(|| panic!("{file}: {ty} of a missing row {b:?}")),
                None => vec![Value::Null; 4],
            };
            let Some(after) = after else { continue };
            for (name, v) in &after {
                let i: usize = name.trim_start_matches('@').parse().unwrap();
                row[i - 1] = v.clone();
            }
            table.insert(row[0].as_i64().unwrap(), row);
        }
        let got: BTreeMap<i64, Value> = table
            .into_iter()
            .map(|(k, v)| (k, Value::Array(v)))
            .collect();
        assert_eq!(got, want, "{file}");
    }
}

/// zalora/binlog-parser's expected JSON (NN.json): the same rows, values
/// and order. Its column names come from test_db.sql (the binlogs carry
/// none), or are `(unknown_N)` by position.
#[test]
fn binlog_parser_documented_rows() {
    let Some(dir) = fixtures::dir() else { return };
    let sql = std::fs::read_to_string(dir.join("binlog-parser/test_db.sql")).unwrap();
    let positions = column_positions(&sql);
    for n in ["01", "02", "03", "05", "06", "07"] {
        let (code, records, stderr) =
            inspect(&dir.join(format!("binlog-parser/mysql-bin.{n}")), &[]);
        assert_eq!(code, 0, "{stderr}");
        let got = row_changes(&records);
        let text = std::fs::read_to_string(dir.join(format!("binlog-parser/{n}.json"))).unwrap();
        let (queries, docs): (Vec<Value>, Vec<Value>) = serde_json::Deserializer::from_str(&text)
            .into_iter()
            .map(Result::unwrap)
            .partition(|d: &Value| d["Type"] == "Query");
        // each documented statement, at the event ending at its position
        for q in &queries {
            let end = &q["Header"]["BinlogPosition"];
            let shown = records
                .iter()
                .find(|r| r["type"] == "QUERY" && &r["log_pos"] == end)
                .unwrap_or_else(|| panic!("mysql-bin.{n}: no QUERY ending at {end}"));
            let info = shown["info"].as_str().unwrap();
            assert!(
                info.ends_with(q["Query"].as_str().unwrap()),
                "mysql-bin.{n}: {info} for {q}"
            );
        }
        assert_eq!(got.len(), docs.len(), "mysql-bin.{n}: row changes");
        for (doc, (_, before, after)) in docs.iter().zip(&got) {
            let table = doc["Header"]["Table"].as_str().unwrap();
            let (old, new) = match doc["Type"].as_str().unwrap() {
                "Insert" => (None, Some(&doc["Data"]["Row"])),
                "Delete" => (Some(&doc["Data"]["Row"]), None),
                _ => (Some(&doc["OldData"]["Row"]), Some(&doc["NewData"]["Row"])),
            };
            for (expected, image) in [(old, before), (new, after)] {
                assert_eq!(expected.is_some(), image.is_some(), "mysql-bin.{n}: {doc}");
                let (Some(expected), Some(image)) = (expected, image) else {
                    continue;
                };
                for (name, v) in expected.as_object().unwrap() {
                    let i = match name.strip_prefix("(unknown_") {
                        Some(k) => k.trim_end_matches(')').parse::<usize>().unwrap(),
                        None => positions[&(table.to_string(), name.clone())],
                    };
                    assert_eq!(
                        &image[&format!("@{}", i + 1)],
                        v,
                        "mysql-bin.{n}: {table}.{name} in {doc}"
                    );
                }
            }
        }
    }
}

/// go-mysql's DECIMAL fixture, whose PROVENANCE names `mariadb-binlog -v`
/// as the reference: every value of its 17 rows × 14 columns as
/// `mariadb-binlog --base64-output=DECODE-ROWS -v` prints it (skipped with
/// a message without the tool).
#[test]
fn go_mysql_decimals_match_mariadb_binlog() {
    let Some(p) = fixtures::path("go-mysql/tcb-eval002c-bin.003320") else {
        return;
    };
    let Ok(out) = Command::new("mariadb-binlog")
        .args(["--base64-output=DECODE-ROWS", "-v"])
        .arg(&p)
        .output()
    else {
        println!("skipped: mariadb-binlog is not installed");
        return;
    };
    let mut want: Vec<Vec<String>> = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        if line.starts_with("### INSERT INTO") {
            want.push(Vec::new());
        } else if let Some((_, v)) = line.strip_prefix("###   @").and_then(|l| l.split_once('=')) {
            want.last_mut().unwrap().push(v.to_string());
        }
    }
    let (code, records, stderr) = inspect(&p, &[]);
    assert_eq!(code, 0, "{stderr}");
    let got: Vec<Vec<String>> = records
        .iter()
        .flat_map(|r| r["rows"].as_array().cloned().unwrap_or_default())
        .map(|row| {
            row["after"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| match &c["value"] {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                })
                .collect()
        })
        .collect();
    assert_eq!(want.len(), 17);
    assert_eq!(got, want);
}

/// rust_mysql_common's upstream test of `mysql-enum-string-set.000001`
/// (CHAR, VARCHAR, ENUM, SET, TEXT; FULL metadata): its insert, update and
/// delete with the values that test expects (ENUM as its index, SET as its
/// bitmap).
#[test]
fn mysql_enum_string_set_upstream_values() {
    let Some(p) = fixtures::path("rust_mysql_common/mysql-enum-string-set.000001") else {
        return;
    };
    let digits = |n: usize| -> String { "0123456789".chars().cycle().take(n).collect() };
    // 298 characters: the digits twice up to 128, then up to 39
    let f2_long = format!("{}{}{}", digits(129), digits(129), digits(40));
    let first = json!({"f1": digits(100), "f2": f2_long, "f3": 1, "f4": 5, "f5": "0123456789"});
    let second = json!({"f1": "field1", "f2": "field_2", "f3": 2, "f4": 10, "f5": f2_long});
    let (code, records, stderr) = inspect(&p, &[]);
    assert_eq!(code, 0, "{stderr}");
    let as_json = |img: &Option<Image>| img.as_ref().map(|i| json!(i)).unwrap_or(Value::Null);
    let got: Vec<(String, Value, Value)> = row_changes(&records)
        .into_iter()
        .map(|(ty, before, after)| (ty, as_json(&before), as_json(&after)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("WRITE_ROWS_V2".into(), Value::Null, first.clone()),
            ("UPDATE_ROWS_V2".into(), first, second.clone()),
            ("DELETE_ROWS_V2".into(), second, Value::Null),
        ]
    );
}

/// (table, column) → position, from the CREATE TABLEs of a dump.
fn column_positions(sql: &str) -> HashMap<(String, String), usize> {
    let mut out = HashMap::new();
    let mut table = None;
    let mut i = 0;
    for line in sql.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("CREATE TABLE `") {
            table = rest.split('`').next().map(str::to_string);
            i = 0;
        } else if let (Some(t), Some(rest)) = (&table, line.strip_prefix('`')) {
            out.insert((t.clone(), rest.split('`').next().unwrap().to_string()), i);
            i += 1;
        }
    }
    out
}

/// The eleven files the pipeline refuses, shown by inspect with what they
/// hold.
#[test]
fn refused_files_are_shown() {
    let Some(dir) = fixtures::dir() else { return };
    let show = |rel: &str| {
        let (code, records, stderr) = inspect(&dir.join(rel), &[]);
        assert_eq!(code, 0, "{rel}: {stderr}");
        records
    };
    // MINIMAL image (8.0.40): the unsigned value, col_2 and col_4 absent
    let r = show("rust_mysql_common/minimal_row_metadata.000001");
    let after = &r.iter().find(|r| r["type"] == "WRITE_ROWS_V2").unwrap()["rows"][0]["after"];
    assert_eq!(after[4]["value"], json!(3_230_202_323u64));
    assert_eq!(after[2]["value"], json!("a"));
    assert_eq!(
        (after[1]["present"].clone(), after[3]["present"].clone()),
        (json!(false), json!(false))
    );
    // NDB partial images (5.1): the update's before image lacks column 2
    let r = show("rust_mysql_common/update-partial-row.binlog");
    let upd = &r.iter().find(|r| r["type"] == "UPDATE_ROWS_V1").unwrap()["rows"][0];
    assert_eq!(upd["before"][1]["present"], json!(false));
    assert_eq!(upd["after"][2]["value"], json!(40));
    for rel in [
        "rust_mysql_common/update-full-row.binlog",
        "rust_mysql_common/write-full-row.binlog",
        "rust_mysql_common/write-partial-row.binlog",
        "rust_mysql_common/rpl_unfiltered_hidden_gcol.000001",
        "gh-ost/mysql-bin.000066",
    ] {
        let r = show(rel);
        assert!(r.iter().any(|r| r["rows"].is_array()), "{rel}: rows shown");
        assert!(r.iter().all(|r| r.get("undecodable").is_none()), "{rel}");
    }
    // PARTIAL_UPDATE_ROWS (8.0.22): the JSON diffs
    let r = show("rust_mysql_common/json.binlog.000001");
    let partial = r
        .iter()
        .find(|r| r["type"] == "PARTIAL_UPDATE_ROWS")
        .unwrap();
    let doc = &partial["rows"][0]["after"][1];
    assert_eq!(doc["diff"][0]["op"], "REPLACE", "{partial}");
    assert_eq!(doc["diff"][0]["path"], "$.age");
    // opaque JSON values print as MySQL's JSON_EXTRACT does
    let r = show("rust_mysql_common/json-opaque.binlog");
    let docs: Vec<&Value> = r
        .iter()
        .filter(|r| r["type"] == "WRITE_ROWS_V2")
        .map(|r| &r["rows"][0]["after"].as_array().unwrap().last().unwrap()["value"])
        .collect();
    assert_eq!(docs[4], &json!(r#"{"d": 123.456}"#));
    assert_eq!(docs[3], &json!(r#"{"c": "87:31:46.654321"}"#));
    // types 20-22 of a 5.2 development build, and an INCIDENT
    let r = show("rust_mysql_common/ver_5_1-wl2325_s.001");
    assert!(r.iter().any(|r| r["type"] == "PRE_GA_UPDATE_ROWS"));
    let r = show("rust_mysql_common/bug40482-bin.000001");
    let incident = r.iter().find(|r| r["type"] == "INCIDENT").unwrap();
    assert!(
        incident["info"]
            .as_str()
            .unwrap()
            .contains("incident type 66"),
        "{incident}"
    );
}

/// Positions, GTIDs and compressed payloads as the README documents them.
#[test]
fn positions_gtids_and_payloads() {
    let Some(dir) = fixtures::dir() else { return };
    let p = dir.join("rust_mysql_common/binlog_transaction_with_GTID_TAG.000001");
    let (_, r, _) = inspect(&p, &[]);
    let rows = r.iter().find(|r| r["type"] == "WRITE_ROWS_V2").unwrap();
    assert_eq!(rows["gtid"], "55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3");
    assert_eq!(rows["rows"][0]["after"][2]["value"], "250.00");
    // --start-position / --stop-position
    let p = dir.join("gh-ost/mysql-bin.000070");
    let (code, r, _) = inspect(&p, &["--start-position", "660", "--stop-position", "890"]);
    assert_eq!(code, 0);
    let pos: Vec<u64> = r.iter().map(|r| r["pos"].as_u64().unwrap()).collect();
    assert_eq!(pos.first(), Some(&660));
    assert!(pos.iter().all(|p| (660..890).contains(p)), "{pos:?}");
    let (code, _, err) = inspect(&p, &["--start-position", "661"]);
    assert_eq!(code, 2);
    assert!(err.contains("not the start of an event"), "{err}");
    // inner events of a TRANSACTION_PAYLOAD carry the payload's position
    let p = dir.join("mysql-binlog-connector-java/mysql-bin.compressed");
    let (_, r, _) = inspect(&p, &[]);
    let payload = r
        .iter()
        .find(|r| r["type"] == "TRANSACTION_PAYLOAD")
        .unwrap();
    let inner: Vec<&Value> = r.iter().filter(|r| r.get("inner").is_some()).collect();
    assert_eq!(inner.len(), 4);
    assert!(inner.iter().all(|i| i["pos"] == payload["pos"]));
    assert_eq!(inner[0]["inner"], 0);
}

/// Mutated fixture bytes through inspect's reader and view and through the
/// decoder `replay --binlog-dir` uses: every case returns (Ok or an error
/// naming an offset) within a deadline, without unwinding; memory stays
/// bounded. After a mutation the CRC32s are recomputed in half the cases,
/// so that damage reaches the parsers instead of stopping at the checksum.
mod mutated {
    use std::path::{Path, PathBuf};
    use std::sync::mpsc;
    use std::time::Duration;

    use proptest::prelude::*;
    use reshard::source::framing::EventReader;
    use reshard::source::view::EventView;
    use reshard::source::BinlogFile;

    use super::common::fixtures;

    /// 400 cases from the fixed seed 0x5eed_2026 (the suite must not pass or
    /// fail by chance), 64 when CI=true. A long campaign overrides both:
    /// RESHARD_FUZZ_CASES=N and RESHARD_FUZZ_SEED=S (decimal or 0x hex).
    fn config() -> ProptestConfig {
        let default = if std::env::var("CI").as_deref() == Ok("true") {
            64
        } else {
            400
        };
        let cases = std::env::var("RESHARD_FUZZ_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default);
        let seed = std::env::var("RESHARD_FUZZ_SEED")
            .ok()
            .and_then(|s| match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16).ok(),
                None => s.parse().ok(),
            })
            .unwrap_or(0x5eed_2026);
        ProptestConfig {
            rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
            ..ProptestConfig::with_cases(cases)
        }
    }

    /// The small fixtures (the big ones add time, not kinds of events).
    fn small_fixtures() -> Vec<Vec<u8>> {
        let Some(dir) = fixtures::dir() else {
            return Vec::new();
        };
        fixtures::binlogs(&dir)
            .values()
            .map(|p| std::fs::read(p).unwrap())
            .filter(|b| b.len() <= 20_000)
            .collect()
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip { at: usize, xor: u8 },
        Set { at: usize, bytes: Vec<u8> },
        Truncate { at: usize },
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
            (any::<usize>(), prop::collection::vec(any::<u8>(), 1..24))
                .prop_map(|(at, bytes)| Mutation::Set { at, bytes }),
            any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        ]
    }

    fn apply(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
        for m in ms {
            // keep the magic: a file without it is refused at once
            let n = b.len().max(5);
            match m {
                Mutation::Flip { at, xor } => {
                    let i = 4 + at % (n - 4);
                    if let Some(x) = b.get_mut(i) {
                        *x ^= xor;
                    }
                }
                Mutation::Set { at, bytes } => {
                    let i = 4 + at % (n - 4);
                    for (k, v) in bytes.iter().enumerate() {
                        if let Some(x) = b.get_mut(i + k) {
                            *x = *v;
                        }
                    }
                }
                Mutation::Truncate { at } => b.truncate(4 + at % (n - 4)),
            }
        }
        b
    }

    /// Recomputes the CRC32 of every event the header walk reaches (after
    /// the format description, whose own is left alone).
    fn rechecksum(b: &mut [u8]) {
        let mut at = 4usize;
        let mut first = true;
        while let Some(h) = b.get(at..at + 19) {
            let size = u32::from_le_bytes([h[9], h[10], h[11], h[12]]) as usize;
            if size < 23 || at + size > b.len() {
                return;
            }
            if !first {
                let crc = crc32fast::hash(&b[at..at + size - 4]);
                b[at + size - 4..at + size].copy_from_slice(&crc.to_le_bytes());
            }
            first = false;
            at += size;
        }
    }

    /// Reads a file as `inspect` does, then as the decoder does; returns
    /// how many events were shown.
    fn read_both(path: &Path) -> usize {
        let mut shown = 0;
        if let Ok(mut reader) = EventReader::open(path) {
            let mut view = EventView::new(reader.name());
            while let Ok(Some(framed)) = reader.next() {
                let rec = view.view(&framed);
                let _ = serde_json::to_string(&rec).unwrap();
                shown += 1;
            }
        }
        let _ = BinlogFile::decode_all(path, std::sync::Arc::new(|_, _| true));
        shown
    }

    /// Every panic in this process, caught or not (`file:line: message`):
    /// the readers turn a parser's panic into an error at the event, which
    /// is only the last line of defence — a panic means a bound that was
    /// not checked before parsing, and fails the case too.
    static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

    fn panics_so_far() -> usize {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                if let Ok(mut p) = PANICS.lock() {
                    p.push(format!("{at}: {message}"));
                }
                previous(info);
            }));
        });
        PANICS.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// The panics recorded since `from` panics. None is tolerated: row
    /// images are read by reshard's bounds-checked decoder on every path
    /// (mysql_common's row value parser, whose DECIMAL overflowed on
    /// corrupt digit groups, is no longer used).
    fn panics_since(from: usize) -> Vec<String> {
        PANICS
            .lock()
            .map(|p| p.get(from..).unwrap_or_default().to_vec())
            .unwrap_or_default()
    }

    /// Runs `read_both` on a thread with a deadline: a hang fails the case.
    fn within_deadline(path: PathBuf) -> Result<usize, String> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(|| read_both(&path));
            let _ = tx.send(r);
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(_)) => Err("a panic escaped the reader".into()),
            Err(_) => Err("no result within 20 s (a hang?)".into()),
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn mutated_fixtures_neither_panic_nor_hang(
            pick in any::<usize>(),
            ms in prop::collection::vec(mutation(), 1..6),
            fix_crc in any::<bool>(),
        ) {
            let files = small_fixtures();
            if files.is_empty() {
                return Ok(());
            }
            let mut bytes = apply(files[pick % files.len()].clone(), &ms);
            if fix_crc {
                rechecksum(&mut bytes);
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("fuzz-bin.000001");
            std::fs::write(&path, &bytes).unwrap();
            let before = panics_so_far();
            let r = within_deadline(path);
            prop_assert!(r.is_ok(), "{:?} with {:?}", r, ms);
            let caught = panics_since(before);
            prop_assert!(caught.is_empty(), "caught panic(s) {:?} with {:?}", caught, ms);
        }
    }

    /// Peak memory of this test process after the cases above (and the rest
    /// of this file) stays far below what an unbounded allocation would take.
    #[test]
    fn memory_stays_bounded() {
        let files = small_fixtures();
        for (i, f) in files.iter().enumerate() {
            // sizes claimed far beyond the file: must not be allocated
            let mut b = f.clone();
            if b.len() > 30 {
                b[4 + 9..4 + 13].copy_from_slice(&u32::MAX.to_le_bytes());
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("big-bin.{:06}", i + 1));
            std::fs::write(&path, &b).unwrap();
            within_deadline(path).unwrap();
        }
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        let peak_mb = usage.ru_maxrss / 1024;
        assert!(peak_mb < 1024, "peak RSS {peak_mb} MB");
    }
}
