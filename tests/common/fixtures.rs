//! The third-party binlog fixtures (`../shared/fixtures/binlogs/`, see each
//! directory's PROVENANCE.md): where they are, which files are binlogs,
//! which are broken on purpose, and what their PROVENANCE tables say.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The fixtures folder, or `None` (with a message) when it is absent:
/// `../shared` next to the repository; a git worktree one level deeper
/// (`wt/NAME`) finds it at `../../shared`; RESHARD_FIXTURES overrides.
pub fn dir() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("RESHARD_FIXTURES").map(PathBuf::from),
        Some(root.join("../shared/fixtures/binlogs")),
        Some(root.join("../../shared/fixtures/binlogs")),
    ];
    let found = candidates.into_iter().flatten().find(|d| d.is_dir());
    if found.is_none() {
        println!(
            "skipped: {} is absent (the third-party binlog fixtures live outside the repo)",
            root.join("../shared/fixtures/binlogs").display()
        );
    }
    found
}

/// A fixture by its path relative to the folder, if present.
pub fn path(rel: &str) -> Option<PathBuf> {
    let p = dir()?.join(rel);
    p.is_file().then_some(p)
}

/// Every file under `dir` that starts with the binlog magic, by path
/// relative to `dir`.
pub fn binlogs(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            if bytes.starts_with(&[0xfe, b'b', b'i', b'n']) {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, path);
            }
        }
    }
    out
}

/// `rust_mysql_common/json-opaque.binlog`'s eight documents as MySQL's
/// `JSON_EXTRACT` prints them. (PROVENANCE lists mysql_common's own
/// rendering, which quotes DECIMALs and packs the text; MySQL prints a bare
/// number and a space after `:` and `,`.)
pub const JSON_OPAQUE: [&str; 8] = [
    r#"{"a": "base64:type15:VQ=="}"#,
    r#"{"b": "2012-03-18"}"#,
    r#"{"c": "2012-03-18 11:30:45.000000"}"#,
    r#"{"c": "87:31:46.654321"}"#,
    r#"{"d": 123.456}"#,
    r#"{"e": 9.00}"#,
    r#"{"e": [0, 1, true, false]}"#,
    r#"{"e": null}"#,
];

/// Deliberately broken upstream (the fixtures README lists them).
pub const BROKEN: &[&str] = &[
    "rust_mysql_common/binlog_truncated_event.000001",
    "rust_mysql_common/binlog_truncated_prev_gtid_event.000001",
    "rust_mysql_common/corrupt-relay-bin.000624",
    "rust_mysql_common/ver_5_1-wl2325_r.001",
];

/// The event types of the top-level events of a binlog, by walking the
/// 19-byte headers (timestamp u32, type u8, server id u32, size u32,
/// log_pos u32, flags u16) and nothing else; `Err(offset)` where the walk
/// cannot go on.
pub fn header_walk(bytes: &[u8]) -> Result<Vec<u8>, u64> {
    let mut types = Vec::new();
    let mut at = 4usize;
    while at < bytes.len() {
        let Some(h) = bytes.get(at..at + 19) else {
            return Err(at as u64);
        };
        let size = u32::from_le_bytes([h[9], h[10], h[11], h[12]]) as usize;
        if size < 19 || at + size > bytes.len() {
            return Err(at as u64);
        }
        types.push(h[4]);
        at += size;
    }
    Ok(types)
}

/// A length-encoded integer at `*at` (advanced past it).
fn lenenc(b: &[u8], at: &mut usize) -> u64 {
    let first = b[*at];
    *at += 1;
    let n = match first {
        0..=250 => return u64::from(first),
        252 => 2,
        253 => 3,
        _ => 8,
    };
    let v = b[*at..*at + n]
        .iter()
        .rev()
        .fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
    *at += n;
    v
}

/// The events of a binlog as (offset, type, end, body after the header), by
/// the header walk alone; the events inside a ZSTD TRANSACTION_PAYLOAD
/// (its field list up to the end mark, then zstd) follow it, with its
/// offset and end. The tests' own decoding, independent of reshard.
pub fn walk_events(bytes: &[u8]) -> Vec<(u64, u8, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 4;
    while at + 19 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 9..at + 13].try_into().unwrap()) as usize;
        let (ty, end) = (bytes[at + 4], (at + size) as u64);
        let body = &bytes[at + 19..at + size];
        out.push((at as u64, ty, end, body.to_vec()));
        if ty == 40 {
            let mut p = 0;
            while lenenc(body, &mut p) != 0 {
                let len = lenenc(body, &mut p) as usize;
                p += len;
            }
            // the payload runs to the checksum
            let inner = zstd::decode_all(&body[p..body.len() - 4]).unwrap();
            let mut i = 0;
            while i < inner.len() {
                let isize = u32::from_le_bytes(inner[i + 9..i + 13].try_into().unwrap()) as usize;
                out.push((
                    at as u64,
                    inner[i + 4],
                    end,
                    inner[i + 19..i + isize].to_vec(),
                ));
                i += isize;
            }
        }
        at += size;
    }
    out
}

/// The leading `n` INT columns of the first WRITE_ROWS_V2 (none NULL):
/// post-header (table id, flags, extra data), column count, the columns
/// and null bitmaps, then the values.
pub fn first_row_ints(bytes: &[u8], n: usize) -> Vec<i32> {
    let events = walk_events(bytes);
    let (_, _, _, ev) = events.iter().find(|e| e.1 == 30).expect("no WRITE_ROWS_V2");
    let extra = u16::from_le_bytes([ev[8], ev[9]]) as usize;
    let mut q = 8 + extra;
    let width = lenenc(ev, &mut q) as usize;
    q += width.div_ceil(8) * 2;
    (0..n)
        .map(|i| i32::from_le_bytes(ev[q + 4 * i..q + 4 * i + 4].try_into().unwrap()))
        .collect()
}

/// The end of the first XID after the first event of type `ty`: the
/// boundary after that event's transaction.
pub fn commit_after(bytes: &[u8], ty: u8) -> u64 {
    let events = walk_events(bytes);
    let from = events
        .iter()
        .position(|e| e.1 == ty)
        .expect("no such event");
    events[from..]
        .iter()
        .find(|e| e.1 == 16)
        .map(|e| e.2)
        .expect("no XID after it")
}

/// What a PROVENANCE table says about one file: event counts by type name
/// (as `inspect` names them), top level and inside TRANSACTION_PAYLOADs.
#[derive(Debug, Default, Clone)]
pub struct Documented {
    pub top: BTreeMap<String, u64>,
    pub inner: BTreeMap<String, u64>,
}

/// The per-file rows of every PROVENANCE.md verification table, by path
/// relative to the fixtures folder.
pub fn provenance(dir: &Path) -> HashMap<String, Documented> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let sub = entry.unwrap().path();
        let Ok(text) = std::fs::read_to_string(sub.join("PROVENANCE.md")) else {
            continue;
        };
        let folder = sub.file_name().unwrap().to_string_lossy().into_owned();
        for line in text.lines() {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            // | `file` | bytes | sha | version | checksum | types | details |
            if cols.len() < 8 || !cols[1].starts_with('`') || !cols[6].contains('×') {
                continue;
            }
            let file = cols[1].trim_matches('`');
            let mut doc = Documented {
                top: counts(cols[6]),
                ..Default::default()
            };
            if let Some(inner) = cols[7].split("inside TRANSACTION_PAYLOAD: ").nth(1) {
                let inner: String = inner.split(';').next().unwrap_or("").to_string();
                doc.inner = counts(&inner);
            }
            out.insert(format!("{folder}/{file}"), doc);
        }
    }
    out
}

/// `QUERY×4, WRITE_ROWS_v2×2, MARIA_GTID×1` → counts by `inspect`'s names.
fn counts(list: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for item in list.split(',') {
        let Some((name, n)) = item.trim().rsplit_once('×') else {
            continue;
        };
        let n: u64 = n.trim().parse().unwrap();
        let name = if let Some(rest) = name.strip_prefix("type") {
            format!("UNKNOWN_{}", rest.split('(').next().unwrap())
        } else if let Some(rest) = name.strip_prefix("MARIA_") {
            format!("MARIADB_{rest}")
        } else {
            name.to_ascii_uppercase()
        };
        *out.entry(name).or_default() += n;
    }
    out
}
