//! `crc32(col)` in a rule file equals the server's `CRC32(col)` for every
//! supported column type (README, "Expression language"), and so does the routing
//! `crc32(col) % n`.
//!
//! Each batch creates its own database with a table holding one column per
//! type, inserts random values (biased towards edge cases), reads the rows
//! back from the binlog through the real [`Tailer`] and the way the initial
//! copy reads them (`SELECT` with an `information_schema` schema), evaluates
//! the rule expressions on both with the real expression language, and
//! compares with what the server computes from the stored columns (`SELECT
//! CRC32(c) % n FROM t`, with `time_zone = '+00:00'`).
//!
//! `CRC32_SEED` fixes the seed (printed on failure), `CRC32_BATCHES` /
//! `CRC32_ROWS` the size; with `CI=true` the default size is smaller.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value as Cell};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reshard::config::Endpoint;
use reshard::db::{self, Flavor, Session};
use reshard::position::Position;
use reshard::rules::convert::cell_to_expr;
use reshard::rules::expr::{parse, NoContext, Value};
use reshard::source::row_image::civil_from_unix;
use reshard::source::rows::{normalize, select_list};
use reshard::source::schema::load_table;
use reshard::source::{SourceItem, TableSchema, Tailer, TailerOptions};
use reshard_testkit::scenario::connect;

/// Moduli checked for every column besides plain `crc32(col)`.
const MODULI: [u64; 5] = [2, 3, 7, 16, 1000];

type Gen = fn(&mut StdRng) -> String;

/// One column of the test table: name, SQL type, generator of SQL literals,
/// and whether only the binlog path is checked (see
/// `catalog_enum_set_labels_match_server_crc32`).
struct Col {
    name: &'static str,
    sql: String,
    gen: Gen,
    binlog_only: bool,
}

fn col(name: &'static str, sql: impl Into<String>, gen: Gen) -> Col {
    Col {
        name,
        sql: sql.into(),
        gen,
        binlog_only: false,
    }
}

const ENUM_LABELS: [&str; 5] = ["a", "bé", "c d", "ñ", ""];
const SET_LABELS: [&str; 5] = ["a", "b", "c", "dé", "Ω"];
// labels information_schema cannot give exactly
const ENUM_4BYTE_LABELS: [&str; 3] = ["a", "🦀", "é"];
const ENUM_LATIN1_LABELS: [&str; 3] = ["x", "é", "ÿz"];
const SET_4BYTE_LABELS: [&str; 4] = ["a", "b", "dé", "🦀"];
const SET_LATIN1_LABELS: [&str; 3] = ["a", "é", "ÿz"];

fn set64_labels() -> Vec<String> {
    (0..64).map(|i| format!("l{i}")).collect()
}

fn quoted_list(labels: &[&str]) -> String {
    labels
        .iter()
        .map(|l| format!("'{l}'"))
        .collect::<Vec<_>>()
        .join(",")
}

fn columns() -> Vec<Col> {
    let set64: Vec<String> = set64_labels();
    let set64: Vec<&str> = set64.iter().map(|s| s.as_str()).collect();
    let exotic = exotic_label_columns().into_iter().map(|c| Col {
        binlog_only: true,
        ..c
    });
    let plain = vec![
        col("ti", "TINYINT", |r| int(r, -128, 127)),
        col("tiu", "TINYINT UNSIGNED", |r| int(r, 0, 255)),
        col("si", "SMALLINT", |r| int(r, -32768, 32767)),
        col("siu", "SMALLINT UNSIGNED", |r| int(r, 0, 65535)),
        col("mi", "MEDIUMINT", |r| int(r, -8_388_608, 8_388_607)),
        col("miu", "MEDIUMINT UNSIGNED", |r| int(r, 0, 16_777_215)),
        col("i", "INT", |r| int(r, i32::MIN.into(), i32::MAX.into())),
        col("iu", "INT UNSIGNED", |r| int(r, 0, u32::MAX.into())),
        col("bi", "BIGINT", |r| int(r, i64::MIN.into(), i64::MAX.into())),
        col("biu", "BIGINT UNSIGNED", |r| int(r, 0, u64::MAX.into())),
        col("dec0", "DECIMAL(10,0)", |r| decimal(r, 10, 0)),
        col("dec2", "DECIMAL(10,2)", |r| decimal(r, 10, 2)),
        col("dec5", "DECIMAL(5,5)", |r| decimal(r, 5, 5)),
        col("dec40", "DECIMAL(40,10)", |r| decimal(r, 40, 10)),
        col("dec65", "DECIMAL(65,30)", |r| decimal(r, 65, 30)),
        col("fl", "FLOAT", float),
        col("dbl", "DOUBLE", double),
        col("dt", "DATETIME", datetime),
        col("dt3", "DATETIME(3)", datetime),
        col("dt6", "DATETIME(6)", datetime),
        col("d", "DATE", |r| datetime(r)[..11].to_string() + "'"),
        col("tm", "TIME", time),
        col("tm1", "TIME(1)", time),
        col("tm2", "TIME(2)", time),
        col("tm3", "TIME(3)", time),
        col("tm6", "TIME(6)", time),
        col("ts", "TIMESTAMP NULL", timestamp),
        col("ts2", "TIMESTAMP(2) NULL", timestamp),
        col("ts6", "TIMESTAMP(6) NULL", timestamp),
        col("y", "YEAR", |r| {
            if r.gen_bool(0.2) {
                "0".into()
            } else {
                r.gen_range(1901..=2155).to_string()
            }
        }),
        col(
            "e",
            format!("ENUM({}) CHARACTER SET utf8mb4", quoted_list(&ENUM_LABELS)),
            |r| utf8_lit(ENUM_LABELS[r.gen_range(0..ENUM_LABELS.len())]),
        ),
        col(
            "s",
            format!("SET({}) CHARACTER SET utf8mb4", quoted_list(&SET_LABELS)),
            |r| set_value(r, &SET_LABELS),
        ),
        col("s64", format!("SET({})", quoted_list(&set64)), |r| {
            let labels = set64_labels();
            let labels: Vec<&str> = labels.iter().map(|s| s.as_str()).collect();
            set_value(r, &labels)
        }),
        col("b1", "BIT(1)", |r| bits(r, 1)),
        col("b10", "BIT(10)", |r| bits(r, 10)),
        col("b17", "BIT(17)", |r| bits(r, 17)),
        col("b64", "BIT(64)", |r| bits(r, 64)),
        col("j", "JSON", json),
        col("vl", "VARCHAR(20) CHARACTER SET latin1", |r| {
            latin1_lit(&latin1(r, 20))
        }),
        col("vu", "VARCHAR(20) CHARACTER SET utf8mb4", |r| {
            utf8_lit(&utf8(r, 20))
        }),
        col("chu", "CHAR(5) CHARACTER SET utf8mb4", |r| {
            utf8_lit(&padded(utf8(r, 5), 5))
        }),
        col("chl", "CHAR(5) CHARACTER SET latin1", |r| {
            let s = latin1(r, 5);
            let mut s = padded_bytes(s, 5);
            s.truncate(5);
            latin1_lit(&s)
        }),
        col(
            "chb",
            "CHAR(4) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
            |r| utf8_lit(&padded(utf8(r, 4), 4)),
        ),
        col("bn1", "BINARY(1)", |r| bytes_lit(&binary(r, 1))),
        col("bn6", "BINARY(6)", |r| bytes_lit(&binary(r, 6))),
        col("vb", "VARBINARY(20)", |r| bytes_lit(&binary(r, 20))),
        col("bl", "BLOB", |r| bytes_lit(&binary(r, 300))),
        col("tx", "TEXT CHARACTER SET utf8mb4", |r| {
            utf8_lit(&utf8(r, 300))
        }),
        col("txl", "TEXT CHARACTER SET latin1", |r| {
            latin1_lit(&latin1(r, 300))
        }),
    ];
    plain.into_iter().chain(exotic).collect()
}

/// ENUM and SET columns whose labels the catalog cannot give exactly: labels
/// with 4-byte characters (information_schema and SHOW CREATE TABLE show
/// them as `?`) or in another character set than UTF-8.
fn exotic_label_columns() -> Vec<Col> {
    vec![
        col(
            "e4",
            format!(
                "ENUM({}) CHARACTER SET utf8mb4",
                quoted_list(&ENUM_4BYTE_LABELS)
            ),
            |r| utf8_lit(ENUM_4BYTE_LABELS[r.gen_range(0..ENUM_4BYTE_LABELS.len())]),
        ),
        col(
            "el",
            format!(
                "ENUM({}) CHARACTER SET latin1",
                quoted_list(&ENUM_LATIN1_LABELS)
            ),
            |r| utf8_lit(ENUM_LATIN1_LABELS[r.gen_range(0..ENUM_LATIN1_LABELS.len())]),
        ),
        col(
            "s4",
            format!(
                "SET({}) CHARACTER SET utf8mb4",
                quoted_list(&SET_4BYTE_LABELS)
            ),
            |r| set_value(r, &SET_4BYTE_LABELS),
        ),
        col(
            "sl",
            format!(
                "SET({}) CHARACTER SET latin1",
                quoted_list(&SET_LATIN1_LABELS)
            ),
            |r| set_value(r, &SET_LATIN1_LABELS),
        ),
    ]
}

/// DOUBLE values exactly halfway between two shortest digit strings: see
/// `double_ties_match_server_crc32`.
fn double_tie_columns() -> Vec<Col> {
    fn tie(r: &mut StdRng) -> String {
        // spacing 1/8 in [2^49, 2^50): n.25 is halfway between n.2 and n.3
        let n = r.gen_range(1u64 << 49..1u64 << 50) as f64;
        let x = if r.gen_bool(0.5) {
            n + 0.25
        } else {
            -(n + 0.25)
        };
        format!("{x:e}")
    }
    vec![col("dtie", "DOUBLE", tie)]
}

/// Negative TIME(1)/TIME(2) values with a fraction: see
/// `negative_time_fractions_match_server_crc32`.
fn negative_time_columns() -> Vec<Col> {
    fn neg_frac(r: &mut StdRng) -> String {
        let hh = r.gen_range(0..838);
        let f = r.gen_range(1..100);
        format!(
            "'-{hh:02}:{:02}:{:02}.{f:02}'",
            r.gen_range(0..60),
            r.gen_range(0..60)
        )
    }
    vec![
        col("tn1", "TIME(1)", neg_frac),
        col("tn2", "TIME(2)", neg_frac),
    ]
}

// ---- value generators: SQL literals, biased towards edge cases ----------

fn int(r: &mut StdRng, min: i128, max: i128) -> String {
    let edges = [min, max, 0, 1, -1, min + 1, max - 1, max / 2, max / 2 + 1];
    let v = if r.gen_bool(0.35) {
        edges[r.gen_range(0..edges.len())].clamp(min, max)
    } else if r.gen_bool(0.3) {
        r.gen_range(-1000i128..=1000).clamp(min, max)
    } else {
        r.gen_range(min..=max)
    };
    v.to_string()
}

fn digits(r: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + r.gen_range(0..10u8)))
        .collect()
}

/// A DECIMAL(p,s) literal within range (sometimes with more fraction digits
/// than the scale, which the server rounds).
fn decimal(r: &mut StdRng, p: usize, s: usize) -> String {
    let ip = p - s;
    let max_int = if ip == 0 {
        "0".to_string()
    } else {
        "9".repeat(ip)
    };
    let max = if s == 0 {
        max_int
    } else {
        format!("{max_int}.{}", "9".repeat(s))
    };
    let edges = [
        "0".to_string(),
        "-0".to_string(),
        "-0.00".to_string(),
        max.clone(),
        format!("-{max}"),
        "-0.5".to_string(),
        "0.001".to_string(),
        "-0.001".to_string(),
        if ip == 0 { "0.1" } else { "1" }.to_string(),
    ];
    if r.gen_bool(0.25) {
        return edges[r.gen_range(0..edges.len())].clone();
    }
    let sign = if r.gen_bool(0.5) { "-" } else { "" };
    let int_digits = r.gen_range(0..=ip);
    let int_part = if int_digits == 0 {
        "0".to_string()
    } else {
        digits(r, int_digits)
    };
    // extra digits get rounded, which could overflow a full integer part
    let max_frac = if int_digits == ip { s } else { s + 2 };
    let frac_digits = r.gen_range(0..=max_frac);
    if frac_digits == 0 {
        format!("{sign}{int_part}")
    } else {
        format!("{sign}{int_part}.{}", digits(r, frac_digits))
    }
}

fn float(r: &mut StdRng) -> String {
    let edges: [f32; 16] = [
        0.0,
        0.1,
        -0.3,
        1e20,
        1e15,
        1e14,
        123_456_789.0,
        16_777_217.0,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        1.4e-45,
        1_234_565.0,
        1e-15,
        1e-16,
        std::f32::consts::PI,
    ];
    let x = if r.gen_bool(0.3) {
        edges[r.gen_range(0..edges.len())]
    } else if r.gen_bool(0.3) {
        // short decimals, as people type them
        let digits = r.gen_range(1..=7);
        let mantissa = r.gen_range(0..10i64.pow(digits));
        let exp = r.gen_range(-20..=20);
        format!("{mantissa}e{exp}").parse().unwrap_or(0.0)
    } else {
        loop {
            let x = f32::from_bits(r.gen());
            if x.is_finite() {
                break x;
            }
        }
    };
    // The double equal to the float: parses back to exactly it.
    format!("{:e}", f64::from(x))
}

fn double(r: &mut StdRng) -> String {
    let edges: [f64; 18] = [
        0.0,
        0.1,
        -0.3,
        1e20,
        1e15,
        1e14,
        1e16,
        123_456_789_012_345_680.0,
        1_234_567_890_123_456.7,
        123_456_789_012_345.67,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        1e-15,
        1e-16,
        0.000_123,
        2.0f64.powi(53) + 2.0,
        std::f64::consts::PI,
    ];
    format!("{:e}", double_any(r, &edges))
}

fn double_any(r: &mut StdRng, edges: &[f64]) -> f64 {
    if r.gen_bool(0.3) {
        edges[r.gen_range(0..edges.len())]
    } else if r.gen_bool(0.3) {
        let digits = r.gen_range(1..=17);
        let mantissa = r.gen_range(0..10i64.pow(digits));
        let exp = r.gen_range(-25..=25);
        format!("{mantissa}e{exp}").parse().unwrap_or(0.0)
    } else {
        loop {
            let x = f64::from_bits(r.gen());
            // subnormals excluded: MariaDB reads them as out of range
            if x.is_finite() && (x == 0.0 || x.abs() >= f64::MIN_POSITIVE) {
                break x;
            }
        }
    }
}

fn fraction(r: &mut StdRng) -> String {
    match r.gen_range(0..4) {
        0 => String::new(),
        1 => format!(".{}", r.gen_range(0..10)),
        _ => format!(".{:06}", r.gen_range(0..1_000_000)),
    }
}

fn datetime(r: &mut StdRng) -> String {
    match r.gen_range(0..12) {
        0 => "'0000-00-00 00:00:00'".into(),
        1 => "'9999-12-31 23:59:59.999999'".into(),
        2 => format!("'2024-00-00 12:00:00{}'", fraction(r)),
        3 => "'1000-01-01 00:00:00'".into(),
        4 => "'2024-02-29 00:00:00.000001'".into(),
        _ => {
            let y = r.gen_range(0..=9999);
            let m = r.gen_range(1..=12);
            let d = r.gen_range(1..=28);
            let hh = r.gen_range(0..24);
            let mm = r.gen_range(0..60);
            let ss = r.gen_range(0..60);
            let f = fraction(r);
            format!("'{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}{f}'")
        }
    }
}

/// A TIME literal (for TIME(1)/TIME(2) negative values with a fraction
/// too, see `negative_time_fractions_match_server_crc32`).
fn time(r: &mut StdRng) -> String {
    match r.gen_range(0..10) {
        0 => "'-838:59:59'".into(),
        1 => "'838:59:59'".into(),
        2 => "'-00:00:00.000001'".into(),
        3 => "'00:00:00'".into(),
        4 => format!("'-00:00:01{}'", fraction(r)),
        _ => {
            let neg = if r.gen_bool(0.4) { "-" } else { "" };
            let hh = r.gen_range(0..838);
            let mm = r.gen_range(0..60);
            let ss = r.gen_range(0..60);
            let f = fraction(r);
            format!("'{neg}{hh:02}:{mm:02}:{ss:02}{f}'")
        }
    }
}

/// A TIMESTAMP literal in UTC (the session runs at `+00:00`).
fn timestamp(r: &mut StdRng) -> String {
    let secs: i64 = match r.gen_range(0..10) {
        0 => return "'0000-00-00 00:00:00'".into(),
        1 => 1,
        2 => i64::from(i32::MAX),
        _ => r.gen_range(1..=i64::from(i32::MAX)),
    };
    let (y, m, d, hh, mm, ss) = civil_from_unix(secs);
    let f = if secs == i64::from(i32::MAX) {
        ".999999".to_string()
    } else {
        fraction(r)
    };
    format!("'{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}{f}'")
}

/// A SET literal: labels in random order with repeats, or the bitmap as a
/// number.
fn set_value(r: &mut StdRng, labels: &[&str]) -> String {
    let n = labels.len();
    let all = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    let mask = match r.gen_range(0..6) {
        0 => 0,
        1 => all,
        2 => 1u64 << (n - 1),
        _ => r.gen::<u64>() & all,
    };
    if r.gen_bool(0.3) {
        return mask.to_string();
    }
    let mut picked: Vec<&str> = (0..n)
        .filter(|i| mask & (1u64 << i) != 0)
        .map(|i| labels[i])
        .collect();
    if !picked.is_empty() && r.gen_bool(0.3) {
        let dup = picked[r.gen_range(0..picked.len())];
        picked.push(dup);
    }
    // shuffle
    for i in (1..picked.len()).rev() {
        let j = r.gen_range(0..=i);
        picked.swap(i, j);
    }
    utf8_lit(&picked.join(","))
}

fn bits(r: &mut StdRng, n: u32) -> String {
    let max = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    let v = match r.gen_range(0..6) {
        0 => 0,
        1 => max,
        2 => 1,
        _ => r.gen::<u64>() & max,
    };
    v.to_string()
}

fn json(r: &mut StdRng) -> String {
    fn ws(r: &mut StdRng) -> &'static str {
        ["", "", " ", "  ", "\n"][r.gen_range(0..5)]
    }
    fn value(r: &mut StdRng, depth: u32) -> String {
        match r.gen_range(0..if depth > 2 { 5 } else { 7 }) {
            0 => "null".into(),
            1 => ["true", "false"][r.gen_range(0..2)].into(),
            2 => ["0", "-1.50", "1e2", "12345678901234567890", "0.1"][r.gen_range(0..5)].into(),
            3 => serde_json::to_string(&utf8(r, 8)).unwrap_or_default(),
            4 => format!("\"é🦀\\u00e9\\n{}\"", r.gen_range(0..100)),
            5 => {
                let items: Vec<String> = (0..r.gen_range(0..4))
                    .map(|_| format!("{}{}{}", ws(r), value(r, depth + 1), ws(r)))
                    .collect();
                format!("[{}]", items.join(","))
            }
            _ => {
                let items: Vec<String> = (0..r.gen_range(0..4))
                    .map(|k| {
                        format!(
                            "{}\"k{k}\"{}:{}{}",
                            ws(r),
                            ws(r),
                            ws(r),
                            value(r, depth + 1)
                        )
                    })
                    .collect();
                format!("{{{}}}", items.join(","))
            }
        }
    }
    let v = value(r, 0);
    // only values MariaDB's JSON_VALID accepts
    if serde_json::from_str::<serde_json::Value>(&v).is_ok() {
        utf8_lit(&v)
    } else {
        "'{}'".into()
    }
}

fn latin1(r: &mut StdRng, max: usize) -> Vec<u8> {
    let n = r.gen_range(0..=max);
    (0..n)
        .map(|_| match r.gen_range(0..4) {
            0 => r.gen_range(0x80..=0xFFu8),
            1 => b' ',
            _ => r.gen_range(0x20..0x7Fu8),
        })
        .collect()
}

fn utf8(r: &mut StdRng, max_chars: usize) -> String {
    let n = r.gen_range(0..=max_chars);
    (0..n)
        .map(|_| match r.gen_range(0..8) {
            0 => ['🦀', '😀', '𝄞', '\u{10FFFF}'][r.gen_range(0..4)],
            1 => ['é', 'ñ', 'ß', 'Ω', 'ж'][r.gen_range(0..5)],
            2 => ['中', '€', '\u{FFFD}'][r.gen_range(0..3)],
            3 => ' ',
            4 => r.gen::<char>(),
            _ => char::from(r.gen_range(0x20..0x7Fu8)),
        })
        .collect()
}

/// Sometimes with trailing or leading spaces, within `n` characters.
fn padded(mut s: String, n: usize) -> String {
    let len = s.chars().count();
    if len < n {
        if len.is_multiple_of(2) {
            s.push(' ');
        } else {
            s.insert(0, ' ');
        }
    }
    s
}

fn padded_bytes(mut s: Vec<u8>, n: usize) -> Vec<u8> {
    if s.len() < n {
        s.push(b' ');
    }
    s
}

fn binary(r: &mut StdRng, max: usize) -> Vec<u8> {
    let n = r.gen_range(0..=max);
    (0..n)
        .map(|_| match r.gen_range(0..4) {
            0 => 0,
            1 => b' ',
            _ => r.gen(),
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02X}");
        s
    })
}

fn bytes_lit(b: &[u8]) -> String {
    if b.is_empty() {
        "''".into()
    } else {
        format!("x'{}'", hex(b))
    }
}

fn latin1_lit(b: &[u8]) -> String {
    format!("_latin1 {}", bytes_lit(b))
}

fn utf8_lit(s: &str) -> String {
    format!("_utf8mb4 {}", bytes_lit(s.as_bytes()))
}

// ---- the check -----------------------------------------------------------

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn seed() -> u64 {
    std::env::var("CRC32_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen())
}

async fn head(url: &str) -> Position {
    let mut c = connect(url).await.expect("connect to the source");
    reshard::source::head(&mut c)
        .await
        .expect("SHOW MASTER STATUS")
}

/// Reads the inserted rows of `db.t` from the binlog between `start` and
/// `end`: id → (cells, schema).
async fn binlog_rows(
    db: &str,
    server_id: u32,
    start: Position,
    end: &Position,
) -> BTreeMap<i64, (Vec<Cell>, Arc<TableSchema>)> {
    let ep = Endpoint::new("source", cluster().source.url(""));
    let budget = Duration::from_secs(10);
    let stream = db::connect(&ep, Session::Read, budget)
        .await
        .expect("stream connection");
    let schema = db::connect(&ep, Session::Read, budget)
        .await
        .expect("schema connection");
    let want = db.to_string();
    let mut tailer = Tailer::start(
        stream,
        schema,
        start,
        TailerOptions {
            server_id,
            epoch: 0,
            heartbeat: Duration::from_secs(1),
            flavor: Flavor::MariaDb,
            checksum: true,
            filter: Arc::new(move |d: &str, t: &str| d == want && t == "t"),
            hold: Default::default(),
        },
    )
    .await
    .expect("start the tailer");
    let mut rows = BTreeMap::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), tailer.next())
            .await
            .expect("the tailer stalled")
            .expect("tailer error");
        match item {
            SourceItem::Rows(chunk) => {
                for ch in chunk.changes {
                    let after = ch.after.expect("only inserts");
                    let id = match after.first() {
                        Some(Cell::Int(i)) => *i,
                        other => panic!("id cell {other:?}"),
                    };
                    rows.insert(id, (after, ch.table.clone()));
                }
            }
            SourceItem::Transaction(txn) if txn.end >= *end => break,
            _ => {}
        }
    }
    tailer.close().await;
    rows
}

/// Reads `db.t` the way the initial copy does: schema from
/// information_schema, rows through `source::rows`' select list on a
/// writer session (binary character set, UTC), normalized like binlog rows.
async fn snapshot_rows(db: &str) -> BTreeMap<i64, (Vec<Cell>, Arc<TableSchema>)> {
    let ep = Endpoint::new("source", cluster().source.url(""));
    let mut reader = db::connect(&ep, Session::Write, Duration::from_secs(10))
        .await
        .expect("reader connection");
    let schema = Arc::new(load_table(&mut reader, db, "t").await.expect("load_table"));
    let sql = format!("SELECT {} FROM `{db}`.t ORDER BY id", select_list(&schema));
    let rows: Vec<Row> = reader.exec(&sql, ()).await.expect("select the rows");
    let mut out = BTreeMap::new();
    for r in rows {
        let cells = normalize(r, &schema);
        let id = match cells.first() {
            Some(Cell::Int(i)) => *i,
            other => panic!("id cell {other:?}"),
        };
        out.insert(id, (cells, schema.clone()));
    }
    out
}

fn server_int(v: Option<&Cell>) -> Option<i128> {
    match v? {
        Cell::NULL => None,
        Cell::Int(i) => Some(i128::from(*i)),
        Cell::UInt(u) => Some(i128::from(*u)),
        Cell::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        other => panic!("unexpected server value {other:?}"),
    }
}

fn server_text(v: Option<&Cell>) -> String {
    match v {
        Some(Cell::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Cell::NULL) | None => "NULL".into(),
        Some(other) => format!("{other:?}"),
    }
}

fn eval(expr: &str, schema: &TableSchema, row: &[Value]) -> Option<i128> {
    let bound = parse(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .bind(&|name| schema.column_index(name))
        .unwrap_or_else(|e| panic!("{expr}: {e}"));
    let v = bound
        .eval(row, &NoContext)
        .unwrap_or_else(|e| panic!("{expr}: {e}"));
    if v.is_null() {
        return None;
    }
    Some(
        v.as_integer()
            .unwrap_or_else(|| panic!("{expr} gave a non-integer {v:?}")),
    )
}

/// Inserts `rows` random rows (plus edge rows) of `cols` into a fresh
/// database, reads them back from the binlog and compares every column's
/// `crc32(col)` and `crc32(col) % n` with the server's. Returns the
/// mismatches as (column and path, message).
async fn check_batch(
    batch: u32,
    cols: &[Col],
    rng: &mut StdRng,
    rows: usize,
    seed: u64,
) -> Vec<(String, String)> {
    let source = &cluster().source;
    let db = format!("crc32_{batch}");
    let ddl: Vec<String> = cols
        .iter()
        .map(|c| format!("`{}` {}", c.name, c.sql))
        .collect();
    let mut conn: Conn = connect(&source.url("")).await.expect("connect");
    conn.query_drop(format!(
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}; \
         CREATE TABLE {db}.t (id INT NOT NULL PRIMARY KEY, {}) \
         DEFAULT CHARSET=utf8mb4",
        ddl.join(", ")
    ))
    .await
    .expect("create the table");
    conn.query_drop(format!("USE {db}")).await.expect("use");
    conn.query_drop("SET time_zone = '+00:00', sql_mode = DEFAULT")
        .await
        .expect("session");

    let start = head(&source.url("")).await;
    let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
    let insert = |id: usize, values: &[String]| {
        format!(
            "INSERT INTO t (id, `{}`) VALUES ({id}, {})",
            names.join("`, `"),
            values.join(", ")
        )
    };
    // an all-NULL row, then random rows with ~8% NULLs
    let nulls = vec!["NULL".to_string(); cols.len()];
    conn.query_drop(insert(0, &nulls)).await.expect("insert");
    for id in 1..=rows {
        let values: Vec<String> = cols
            .iter()
            .map(|c| {
                if rng.gen_bool(0.08) {
                    "NULL".into()
                } else {
                    (c.gen)(rng)
                }
            })
            .collect();
        let sql = insert(id, &values);
        if let Err(e) = conn.query_drop(&sql).await {
            panic!("seed {seed}: {e}\n{sql}");
        }
    }
    // ENUM index 0 (an invalid value) needs a non-strict session
    conn.query_drop("SET sql_mode = ''")
        .await
        .expect("sql_mode");
    let mut invalid = nulls.clone();
    for (v, c) in invalid.iter_mut().zip(cols) {
        if c.sql.starts_with("ENUM") {
            *v = "'no such label'".into();
        }
    }
    conn.query_drop(insert(rows + 1, &invalid))
        .await
        .expect("insert");
    let end = head(&source.url("")).await;

    let binlog = binlog_rows(&db, 1000 + batch, start, &end).await;
    assert_eq!(binlog.len(), rows + 2, "rows read back from the binlog");
    let snapshot = snapshot_rows(&db).await;
    assert_eq!(snapshot.len(), rows + 2, "rows read by the initial copy");
    let paths = [("binlog", &binlog), ("initial copy", &snapshot)];

    let mut mismatches = Vec::new();
    for c in cols {
        let name = c.name;
        let mods: String = MODULI
            .iter()
            .map(|n| format!(", CRC32(`{name}`) % {n}"))
            .collect();
        let sql = format!(
            "SELECT id, CRC32(`{name}`){mods}, HEX(CAST(`{name}` AS BINARY)) FROM t ORDER BY id"
        );
        let server: Vec<Row> = conn.exec(&sql, ()).await.expect("select");
        assert_eq!(server.len(), rows + 2);
        for srow in &server {
            let id = server_int(srow.as_ref(0)).expect("id") as i64;
            let theirs_hex = server_text(srow.as_ref(2 + MODULI.len()));
            let mut checks = vec![(format!("crc32(`{name}`)"), server_int(srow.as_ref(1)))];
            for (k, n) in MODULI.iter().enumerate() {
                checks.push((
                    format!("crc32(`{name}`) % {n}"),
                    server_int(srow.as_ref(2 + k)),
                ));
            }
            for (path, rows) in paths {
                if c.binlog_only && path != "binlog" {
                    continue;
                }
                let (cells, schema) = &rows[&id];
                let idx = schema
                    .column_index(name)
                    .unwrap_or_else(|| panic!("no column {name} in {schema:?}"));
                let exprs: Vec<Value> = cells
                    .iter()
                    .zip(&schema.columns)
                    .map(|(cell, col)| cell_to_expr(cell, col))
                    .collect();
                let ours_text = exprs[idx]
                    .to_text()
                    .map(|t| hex(&t))
                    .unwrap_or_else(|| "NULL".into());
                for (expr, theirs) in &checks {
                    let ours = eval(expr, schema, &exprs);
                    if ours != *theirs {
                        mismatches.push((format!("{name} ({path})"), format!(
                            "column {name} {} ({path}: {:?}, cell {:?}), id {id}: {expr} is {} in reshard but {} on the server; \
                             server HEX(CAST({name} AS BINARY)) = {theirs_hex}, reshard text = {ours_text}, \
                             reshard crc32 = {:?}, server CRC32 = {}",
                            c.sql,
                            schema.columns[idx].ty,
                            cells[idx],
                            ours.map_or("NULL".into(), |v| v.to_string()),
                            theirs.map_or("NULL".into(), |v| v.to_string()),
                            eval(&format!("crc32(`{name}`)"), schema, &exprs),
                            server_text(srow.as_ref(1)),
                        )));
                        break;
                    }
                }
            }
        }
    }
    conn.query_drop(format!("DROP DATABASE {db}"))
        .await
        .expect("drop");
    mismatches
}

async fn run(cols: &[Col], first_batch: u32, batches: usize, rows: usize) {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut mismatches = Vec::new();
    for b in 0..batches {
        mismatches.extend(check_batch(first_batch + b as u32, cols, &mut rng, rows, seed).await);
    }
    // one example per column and path, with counts
    let mut by_column: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (key, msg) in &mismatches {
        by_column.entry(key.clone()).or_insert((0, msg.clone())).0 += 1;
    }
    assert!(
        mismatches.is_empty(),
        "seed {seed} (CRC32_SEED={seed} reproduces): {} mismatches in {} column/path pairs:\n{}",
        mismatches.len(),
        by_column.len(),
        by_column
            .iter()
            .map(|(key, (n, msg))| format!("{key}: {n} rows, e.g. {msg}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crc32_of_every_column_type_matches_server() {
    let (batches, rows) = if is_ci() { (2, 60) } else { (6, 150) };
    let batches = env_usize("CRC32_BATCHES").unwrap_or(batches);
    let rows = env_usize("CRC32_ROWS").unwrap_or(rows);
    run(&columns(), 0, batches, rows).await;
}

/// mysql_common 0.37 decodes a negative TIME(1)/TIME(2) binlog value with a
/// nonzero fraction with an unsigned subtraction
/// (`binlog::misc::my_time_packed_from_binary`: `frac -= 0x100` on a `u32`):
/// a debug build panics ("attempt to subtract with overflow"), a release
/// build yields a wrong TIME. reshard's own row decoder
/// (`source::decode::temporal`) subtracts signed; this test pins it
/// against the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_time_fractions_match_server_crc32() {
    run(&negative_time_columns(), 200, 1, 40).await;
}

/// The initial copy takes ENUM/SET labels from information_schema, which
/// shows 4-byte characters as `?` and gives UTF-8 text whatever the
/// column's character set; the binlog (FULL metadata) has them exactly.
/// Needs exact labels in `source::schema::load_catalog`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "catalog ENUM/SET labels lose 4-byte characters and the column charset"]
async fn catalog_enum_set_labels_match_server_crc32() {
    run(&exotic_label_columns(), 400, 1, 40).await;
}

/// A DOUBLE exactly halfway between two shortest digit strings prints with
/// the even one, like MySQL's `dtoa()` (`758485875790979.25` →
/// `758485875790979.2`; Rust's `{:e}` alone gives `...979.3`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_ties_match_server_crc32() {
    run(&double_tie_columns(), 300, 1, 40).await;
}
