//! MySQL GTID sets (`uuid:1-5:7,uuid:tag:1-3`) and where a set is complete
//! in a server's binlog: the position the cut-over fence (`reshard wait
//! --until GTID`) waits for on MySQL.
//!
//! # Why the position is the fence
//!
//! The checkpoint is a binlog position (`docs/architecture.md`, "The
//! cut-over fence"); reshard keeps no GTID set with it. MySQL has no
//! `BINLOG_GTID_POS`, but every binlog file starts with a
//! `Previous_gtids` event, the set of every transaction written before the
//! file, and each transaction in it starts with its `Gtid` event. So the
//! set written before a position P of file F is `Previous_gtids(F)` plus
//! the GTIDs of F's transactions before P, and the fence set is complete
//! at the end of the transaction that adds its last missing GTID: the
//! position Q where the next transaction (or the `Rotate`/`Stop` event)
//! starts. A checkpoint at or past Q names a transaction boundary at or
//! after Q, all of whose earlier transactions are applied on every shard;
//! one before Q is at or before the start of that transaction, which is
//! then not (yet) known to be applied. So "checkpoint ≥ Q" is exactly "the
//! fence is applied".
//!
//! [`fence_position`] finds Q from `SHOW BINARY LOGS` and `SHOW BINLOG
//! EVENTS`: the newest file whose `Previous_gtids` lacks part of the fence
//! holds the transaction that completes it (every later file's does not
//! lack it); that file is scanned. When its listing ends with the fence
//! complete (the active file, or a file cut short without a `Rotate`), Q
//! is the source's head read after the listing, or the next file's start:
//! later than the tightest bound, never earlier. A fence the binlog does
//! not complete yet has no Q; `wait` looks again when the head moves.
//! Anonymous transactions (`gtid_mode` not ON) carry no GTID; `wait`
//! refuses a GTID fence on such a source.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::db::DbError;
use crate::position::Position;

/// A text that is not a MySQL GTID set.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not a MySQL GTID set (uuid:1-5[:7-9][,uuid:tag:1-3…]): {why}")]
pub struct GtidError {
    pub text: String,
    pub why: String,
}

/// A MySQL GTID set: per source UUID and tag (empty: untagged), sorted,
/// disjoint, non-adjacent inclusive ranges of transaction numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet(BTreeMap<(String, String), Vec<(u64, u64)>>);

impl GtidSet {
    /// Parses MySQL's syntax: `uuid:interval[:interval…][:tag:interval…]`,
    /// elements separated by commas (whitespace and newlines around them
    /// allowed, as `gtid_executed` prints them); the empty text is the
    /// empty set.
    pub fn parse(text: &str) -> Result<GtidSet, GtidError> {
        let bad = |why: &str| GtidError {
            text: text.to_string(),
            why: why.to_string(),
        };
        let mut set = GtidSet::default();
        for element in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let mut parts = element.split(':').map(str::trim);
            let uuid = parts.next().unwrap_or_default().to_ascii_lowercase();
            if !is_uuid(&uuid) {
                return Err(bad(&format!("{uuid:?} is not a server UUID")));
            }
            let (mut tag, mut any) = (String::new(), false);
            for part in parts {
                if part.starts_with(|c: char| c.is_ascii_digit()) {
                    let (a, b) =
                        interval(part).ok_or_else(|| bad(&format!("bad interval {part:?}")))?;
                    set.add(&uuid, &tag, a, b);
                    any = true;
                } else if is_tag(part) {
                    tag = part.to_ascii_lowercase();
                } else {
                    return Err(bad(&format!("{part:?} is neither an interval nor a tag")));
                }
            }
            if !any {
                return Err(bad(&format!("{element:?} has no interval")));
            }
        }
        Ok(set)
    }

    /// Adds the transactions `a..=b` of `uuid` (with `tag`).
    pub fn add(&mut self, uuid: &str, tag: &str, a: u64, b: u64) {
        let ranges = self
            .0
            .entry((uuid.to_string(), tag.to_string()))
            .or_default();
        ranges.push((a, b));
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for &(a, b) in ranges.iter() {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        *ranges = merged;
    }

    /// Adds every transaction of `other`.
    pub fn extend(&mut self, other: &GtidSet) {
        for ((uuid, tag), ranges) in &other.0 {
            for &(a, b) in ranges {
                self.add(uuid, tag, a, b);
            }
        }
    }

    /// Whether every transaction of `other` is in this set.
    pub fn contains(&self, other: &GtidSet) -> bool {
        other.0.iter().all(|(key, ranges)| {
            let have = self.0.get(key).map_or(&[][..], Vec::as_slice);
            ranges
                .iter()
                .all(|&(a, b)| have.iter().any(|&(x, y)| x <= a && b <= y))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for GtidSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        let mut last_uuid = "";
        for ((uuid, tag), ranges) in &self.0 {
            if uuid != last_uuid {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(uuid)?;
                last_uuid = uuid;
            }
            first = false;
            if !tag.is_empty() {
                write!(f, ":{tag}")?;
            }
            for &(a, b) in ranges {
                match a == b {
                    true => write!(f, ":{a}")?,
                    false => write!(f, ":{a}-{b}")?,
                }
            }
        }
        Ok(())
    }
}

/// `8-4-4-4-12` hex digits (as MySQL prints them), or 32 in a row.
fn is_uuid(s: &str) -> bool {
    let hex = s.chars().filter(|c| *c != '-');
    let groups: Vec<usize> = s.split('-').map(str::len).collect();
    hex.clone().count() == 32
        && hex.into_iter().all(|c| c.is_ascii_hexdigit())
        && (groups == [8, 4, 4, 4, 12] || groups == [32])
}

/// A GTID tag (MySQL 8.3+): a letter or `_`, then letters, digits or `_`,
/// at most 32.
fn is_tag(s: &str) -> bool {
    s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `5` or `1-5` (numbers from 1).
fn interval(s: &str) -> Option<(u64, u64)> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let n = s.parse().ok()?;
            (n, n)
        }
    };
    (a >= 1 && a <= b).then_some((a, b))
}

/// One row of `SHOW BINLOG EVENTS`, as far as the fence needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Where the event starts.
    pub pos: u64,
    /// `End_log_pos`.
    pub end: u64,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A transaction starts: its GTID, `None` when anonymous.
    Transaction(Option<GtidSet>),
    /// `Previous_gtids`: every transaction written before the file.
    Previous(GtidSet),
    /// `Rotate` or `Stop`: the file's transactions ended before it.
    FileEnd,
    Other,
}

impl Listed {
    /// From the `Pos`, `Event_type`, `End_log_pos` and `Info` columns. A
    /// transaction starts where `Info` sets `GTID_NEXT` (`Gtid`,
    /// `Anonymous_Gtid`, tagged GTIDs alike).
    pub fn from_row(pos: u64, ty: &str, end: u64, info: &str) -> Result<Listed, GtidError> {
        let kind = if let Some(next) = gtid_next(info) {
            match next.eq_ignore_ascii_case("ANONYMOUS") {
                true => Kind::Transaction(None),
                false => Kind::Transaction(Some(GtidSet::parse(next)?)),
            }
        } else if ty.eq_ignore_ascii_case("Previous_gtids") {
            Kind::Previous(GtidSet::parse(info)?)
        } else if ty.eq_ignore_ascii_case("Rotate") || ty.eq_ignore_ascii_case("Stop") {
            Kind::FileEnd
        } else {
            Kind::Other
        };
        Ok(Listed { pos, end, kind })
    }
}

/// `'…'` of `SET @@SESSION.GTID_NEXT= '…'`.
fn gtid_next(info: &str) -> Option<&str> {
    let rest = info
        .trim_start()
        .get(..23)
        .filter(|h| h.eq_ignore_ascii_case("SET @@SESSION.GTID_NEXT"))
        .map(|_| &info.trim_start()[23..])?;
    let start = rest.find('\'')? + 1;
    let len = rest[start..].find('\'')?;
    Some(&rest[start..start + len])
}

/// Walks one file's events for the position where the fence becomes
/// complete (see the module docs).
pub struct FenceScan {
    fence: GtidSet,
    written: GtidSet,
}

impl FenceScan {
    /// Before the file's first event, with the file's `Previous_gtids`.
    pub fn new(fence: GtidSet, previous: GtidSet) -> FenceScan {
        FenceScan {
            fence,
            written: previous,
        }
    }

    /// The next event; the position where the fence is complete when this
    /// event starts what follows its last transaction.
    pub fn step(&mut self, e: &Listed) -> Option<u64> {
        match &e.kind {
            Kind::Transaction(_) | Kind::FileEnd if self.complete() => return Some(e.pos),
            Kind::Transaction(Some(g)) => self.written.extend(g),
            Kind::Previous(g) => self.written.extend(g),
            _ => {}
        }
        None
    }

    /// Whether everything listed so far completes the fence.
    pub fn complete(&self) -> bool {
        self.written.contains(&self.fence)
    }
}

/// Rows per `SHOW BINLOG EVENTS` page.
const PAGE: usize = 1000;

fn listing(file: &str, from: u64, limit: usize) -> String {
    format!(
        "SHOW BINLOG EVENTS IN '{}' FROM {from} LIMIT {limit}",
        file.replace('\\', "\\\\").replace('\'', "''")
    )
}

fn listed(row: &mysql_async::Row) -> Result<Listed, GtidError> {
    let text = |i: usize| {
        row.get::<Option<String>, _>(i)
            .flatten()
            .unwrap_or_default()
    };
    Listed::from_row(
        row.get::<u64, _>(1).unwrap_or(0),
        &text(2),
        row.get::<u64, _>(4).unwrap_or(0),
        &text(5),
    )
}

/// What [`fence_position`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the source's binlog lists {0}")]
    Gtid(#[from] GtidError),
}

/// The position of the source's binlog at which `fence` is complete;
/// `None` while the binlog does not complete it.
pub async fn fence_position(
    conn: &mut Conn,
    fence: &GtidSet,
) -> Result<Option<Position>, FenceError> {
    let files = super::binlog_files(conn).await?;
    for (i, file) in files.iter().enumerate().rev() {
        let previous = previous_gtids(conn, file).await?;
        if previous.contains(fence) {
            continue;
        }
        let scan = FenceScan::new(fence.clone(), previous);
        return scan_file(conn, scan, file, files.get(i + 1)).await;
    }
    Ok(files.first().map(|f| Position::new(f.clone(), 4)))
}

/// A file's `Previous_gtids` (empty when it has none).
async fn previous_gtids(conn: &mut Conn, file: &str) -> Result<GtidSet, FenceError> {
    let rows: Vec<mysql_async::Row> = conn.query(listing(file, 4, 4)).await.map_err(|e| {
        DbError::query("source", format!("reading the Previous_gtids of {file}"), e)
    })?;
    for row in &rows {
        if let Kind::Previous(g) = listed(row)?.kind {
            return Ok(g);
        }
    }
    Ok(GtidSet::default())
}

/// Scans `file` with `scan`; `next` is the file after it, if any.
async fn scan_file(
    conn: &mut Conn,
    mut scan: FenceScan,
    file: &str,
    next: Option<&String>,
) -> Result<Option<Position>, FenceError> {
    let mut pos = 4;
    loop {
        let rows: Vec<mysql_async::Row> =
            conn.query(listing(file, pos, PAGE)).await.map_err(|e| {
                DbError::query(
                    "source",
                    format!("reading the GTIDs of {file} from {pos}"),
                    e,
                )
            })?;
        for row in &rows {
            let e = listed(row)?;
            if let Some(at) = scan.step(&e) {
                return Ok(Some(Position::new(file, at)));
            }
            pos = pos.max(e.end);
        }
        if rows.len() < PAGE {
            break;
        }
    }
    if !scan.complete() {
        return Ok(None);
    }
    Ok(Some(match next {
        Some(n) => Position::new(n.clone(), 4),
        None => super::head(conn).await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "8a94f357-aab4-11df-86ab-c80aa9429562";

    fn set(s: &str) -> GtidSet {
        GtidSet::parse(s).unwrap()
    }

    #[test]
    fn sets_parse_merge_and_print_as_mysql_does() {
        let s = set(&format!("{A}:1-5:7, {}:3:4-6,\n{B}:1", A.to_uppercase()));
        assert_eq!(s.to_string(), format!("{A}:1-7,{B}:1"));
        let tagged = set(&format!("{A}:1-3:blue:1-2:5,{A}:Blue:3"));
        assert_eq!(tagged.to_string(), format!("{A}:1-3:blue:1-3:5"));
        assert!(set("").is_empty());
        for bad in [
            "mysql-bin.000001:4",
            "0-1-100",
            A,
            &format!("{A}:0"),
            &format!("{A}:5-3"),
            &format!("{A}:1-x"),
            &format!("{A}:9tag:1"),
            "3e11fa47-71ca-11e1-9e33:1",
        ] {
            assert!(GtidSet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn containment_is_per_uuid_and_tag_and_range() {
        let have = set(&format!("{A}:1-10:20-30,{B}:1-5,{A}:t:1-2"));
        assert!(have.contains(&set(&format!("{A}:3-7:25,{B}:5"))));
        assert!(have.contains(&set("")));
        assert!(have.contains(&set(&format!("{A}:t:2"))));
        assert!(!have.contains(&set(&format!("{A}:10-20"))), "a gap");
        assert!(!have.contains(&set(&format!("{A}:31"))));
        assert!(!have.contains(&set(&format!("{A}:t:3"))));
        assert!(!have.contains(&set(&format!("{A}:u:1"))), "another tag");
        assert!(!have.contains(&set(&format!("{B}:1,{A}:11"))));
        assert!(!GtidSet::default().contains(&set(&format!("{B}:1"))));
    }

    /// Rows as MySQL 8.0 lists them (`SHOW BINLOG EVENTS`).
    fn rows(gtids: &[&str]) -> Vec<Listed> {
        let mut out = vec![
            Listed::from_row(4, "Format_desc", 126, "Server ver: 8.0.36, Binlog ver: 4").unwrap(),
            Listed::from_row(126, "Previous_gtids", 197, &format!("{A}:1-2")).unwrap(),
        ];
        let mut pos = 197;
        for g in gtids {
            let info = format!("SET @@SESSION.GTID_NEXT= '{g}'");
            let ty = if *g == "ANONYMOUS" {
                "Anonymous_Gtid"
            } else {
                "Gtid"
            };
            out.push(Listed::from_row(pos, ty, pos + 79, &info).unwrap());
            for (ty, info) in [
                ("Query", "BEGIN"),
                ("Table_map", "table_id: 90 (shop.orders)"),
                ("Write_rows", "table_id: 90 flags: STMT_END_F"),
                ("Xid", "COMMIT /* xid=12 */"),
            ] {
                pos += 80;
                out.push(Listed::from_row(pos, ty, pos + 80, info).unwrap());
            }
            pos += 80;
        }
        out
    }

    fn scan(fence: &str, rows: &[Listed]) -> (Option<u64>, bool) {
        let mut s = FenceScan::new(set(fence), GtidSet::default());
        for r in rows {
            if let Some(at) = s.step(r) {
                return (Some(at), true);
            }
        }
        (None, s.complete())
    }

    #[test]
    fn rows_are_read_as_mysql_lists_them() {
        let r = rows(&[&format!("{A}:3"), "ANONYMOUS"]);
        assert_eq!(r[1].kind, Kind::Previous(set(&format!("{A}:1-2"))));
        assert_eq!(r[2].kind, Kind::Transaction(Some(set(&format!("{A}:3")))));
        assert_eq!(r[7].kind, Kind::Transaction(None));
        assert_eq!(r[3].kind, Kind::Other);
        let tagged = Listed::from_row(
            9,
            "Gtid_tagged",
            99,
            &format!("SET @@SESSION.GTID_NEXT= '{A}:blue:7'"),
        )
        .unwrap();
        assert_eq!(
            tagged.kind,
            Kind::Transaction(Some(set(&format!("{A}:blue:7"))))
        );
        let prev =
            Listed::from_row(126, "Previous_gtids", 197, &format!("{A}:1-2,\n{B}:1-9")).unwrap();
        assert_eq!(prev.kind, Kind::Previous(set(&format!("{A}:1-2,{B}:1-9"))));
        assert_eq!(
            Listed::from_row(900, "Rotate", 944, "mysql-bin.000002;pos=4")
                .unwrap()
                .kind,
            Kind::FileEnd
        );
        assert!(Listed::from_row(9, "Gtid", 99, "SET @@SESSION.GTID_NEXT= 'nonsense'").is_err());
    }

    /// The fence is complete where the transaction after its last GTID
    /// starts, at the file's end event, or (listing over) not yet placed.
    #[test]
    fn the_fence_is_the_end_of_the_transaction_that_completes_it() {
        let r = rows(&[&format!("{A}:3"), &format!("{A}:4"), &format!("{A}:5")]);
        // transactions start at 197, 597, 997; each 400 bytes
        assert_eq!(
            scan(&format!("{A}:1-2"), &r),
            (Some(197), true),
            "already before the first"
        );
        assert_eq!(scan(&format!("{A}:3"), &r), (Some(597), true));
        assert_eq!(scan(&format!("{A}:2-4"), &r), (Some(997), true));
        // the last transaction: complete, the position comes from elsewhere
        assert_eq!(scan(&format!("{A}:5"), &r), (None, true));
        let mut ended = r.clone();
        ended.push(Listed::from_row(1397, "Rotate", 1441, "mysql-bin.000002;pos=4").unwrap());
        assert_eq!(scan(&format!("{A}:5"), &ended), (Some(1397), true));
        // not written yet, or another server's
        assert_eq!(scan(&format!("{A}:6"), &ended), (None, false));
        assert_eq!(scan(&format!("{B}:1"), &ended), (None, false));
        // anonymous transactions between do not move it
        let mixed = rows(&[&format!("{A}:3"), "ANONYMOUS", &format!("{A}:4")]);
        assert_eq!(scan(&format!("{A}:3"), &mixed), (Some(597), true));
    }
}
