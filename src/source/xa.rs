//! XA transactions: their ids as the binlog writes them, and the rows of
//! prepared transactions held until their outcome is known.
//!
//! # What the binlog holds
//!
//! * **MariaDB 10.5+** writes `XA PREPARE` as an event group of its own: a
//!   GTID event flagged `FL_PREPARED_XA` that carries the xid, the rows,
//!   `XA END xid` (QUERY) and an XA_PREPARE_LOG event. The outcome comes
//!   later as another group: a GTID flagged `FL_COMPLETED_XA` and a QUERY
//!   `XA COMMIT xid` or `XA ROLLBACK xid`. `XA COMMIT … ONE PHASE` is
//!   written as an ordinary `BEGIN … COMMIT` group.
//! * **MySQL 5.7.7+** writes the same groups, but opens the first with a
//!   QUERY `XA START xid` instead of the GTID flag; one-phase commit is an
//!   XA_PREPARE_LOG event with its `one_phase` byte set.
//!
//! Both print xids as `X'gtrid',X'bqual',formatID`.
//!
//! # Why holding is correct
//!
//! Rows of a prepared transaction are neither committed nor rolled back
//! yet: applying them could apply rolled-back work, dropping them could
//! lose committed work. So [`Prepared`] holds them (keyed by xid) until the
//! `XA COMMIT`, when they are handed out as a transaction ending at the
//! commit, or the `XA ROLLBACK`, when they are dropped.
//!
//! Their versions stay those of the PREPARE group's positions. That is
//! safe: the transaction holds InnoDB row locks on every row it changed
//! from the change through its commit (also across a server restart, as a
//! recovered prepared transaction), so no other transaction can change the
//! same rows between PREPARE and COMMIT. Every other change of those keys
//! is either committed before the XA changed them (binlogged before the
//! PREPARE group: a lower version) or after the XA COMMIT (a higher one).
//! See `docs/architecture.md`, "Versions".
//!
//! While a transaction is prepared, a checkpoint must not move past the
//! start of its PREPARE group, or a restart would never read its rows
//! again. Nor may it sit between the PREPARE and the COMMIT of a committed
//! one: a restart there would read a COMMIT without its PREPARE, which
//! the decoder refuses because it cannot tell whether the rows were
//! applied. [`Prepared::resume`] is the latest position at or before a
//! transaction's end that is inside no such span: the position a
//! checkpoint may hold (see `docs/architecture.md`, "Checkpoint
//! watermark"). With that rule, a stream that resumes from a checkpoint
//! meets an unknown `XA COMMIT` only when the pipeline started (`--from`,
//! the initial copy) after its PREPARE.
//!
//! Held rows are the PREPARE group's rows events in a [`Spool`]: in
//! memory within the decoder's budget, in a temporary file beyond it, so
//! any number of prepared transactions of any size costs bounded memory.
//! A prepared transaction that stays open for long holds its rows (and
//! the checkpoint) for as long; after a restart they are read again from
//! the binlog, starting at the PREPARE group.

use std::collections::BTreeMap;
use std::fmt;

use super::change::RowChange;
#[cfg(doc)]
use super::spool::Spool;
use crate::position::Position;

/// An XA transaction id: format id, global transaction id and branch
/// qualifier (each at most 64 bytes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Xid {
    pub format_id: i64,
    pub gtrid: Vec<u8>,
    pub bqual: Vec<u8>,
}

/// An xid that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct XidError(String);

/// MariaDB GTID event flags: the group is an XA PREPARE, or an XA COMMIT
/// or ROLLBACK; both carry the xid.
pub const FL_PREPARED_XA: u8 = 64;
pub const FL_COMPLETED_XA: u8 = 128;
const FL_GROUP_COMMIT_ID: u8 = 2;
const MAX_PART: usize = 64;

impl Xid {
    /// Parses the xid that starts `text` (`X'hex'`, `'string'` or `0xhex`,
    /// then optionally `, bqual` and `, formatID`, as in `XA COMMIT …`);
    /// returns it and the rest of the text.
    pub fn parse(text: &str) -> Result<(Xid, &str), XidError> {
        let (gtrid, mut rest) = string(text)?;
        let mut bqual = Vec::new();
        let mut format_id = 1;
        if let Some(r) = rest.trim_start().strip_prefix(',') {
            let (b, r) = string(r)?;
            bqual = b;
            rest = r;
            if let Some(r) = rest.trim_start().strip_prefix(',') {
                let r = r.trim_start();
                let end = r
                    .char_indices()
                    .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
                    .map_or(r.len(), |(i, _)| i);
                format_id = r[..end]
                    .parse()
                    .map_err(|_| XidError(format!("bad XA format id in {text:?}")))?;
                rest = &r[end..];
            }
        }
        if gtrid.len() > MAX_PART || bqual.len() > MAX_PART {
            return Err(XidError(format!("XA id longer than 64 bytes in {text:?}")));
        }
        Ok((
            Xid {
                format_id,
                gtrid,
                bqual,
            },
            rest,
        ))
    }

    /// The body of an XA_PREPARE_LOG event (without the checksum):
    /// `one_phase u8, formatID i32, gtrid_length u32, bqual_length u32,
    /// data`. Returns whether it is a one-phase commit, and the xid.
    pub fn from_prepare_log(body: &[u8]) -> Result<(bool, Xid), XidError> {
        let bad = || XidError(format!("malformed XA_PREPARE_LOG event body {body:02x?}"));
        let int = |at: usize| -> Result<[u8; 4], XidError> {
            let b = body.get(at..at + 4).ok_or_else(bad)?;
            Ok([b[0], b[1], b[2], b[3]])
        };
        let one_phase = *body.first().ok_or_else(bad)? != 0;
        let format_id = i64::from(i32::from_le_bytes(int(1)?));
        let gl = u32::from_le_bytes(int(5)?) as usize;
        let bl = u32::from_le_bytes(int(9)?) as usize;
        let xid =
            Xid::from_parts(format_id, body.get(13..).ok_or_else(bad)?, gl, bl).ok_or_else(bad)?;
        Ok((one_phase, xid))
    }

    /// The xid of a MariaDB GTID event body flagged [`FL_PREPARED_XA`] or
    /// [`FL_COMPLETED_XA`]: after `seq_no u64, domain_id u32, flags u8` and,
    /// with `FL_GROUP_COMMIT_ID`, `commit_id u64`, comes `formatID u32,
    /// gtrid_length u8, bqual_length u8, data`.
    pub fn from_mariadb_gtid(body: &[u8]) -> Result<Option<Xid>, XidError> {
        let bad = || XidError(format!("malformed MariaDB GTID event body {body:02x?}"));
        let flags = *body.get(12).ok_or_else(bad)?;
        if flags & (FL_PREPARED_XA | FL_COMPLETED_XA) == 0 {
            return Ok(None);
        }
        let at = if flags & FL_GROUP_COMMIT_ID != 0 {
            21
        } else {
            13
        };
        let head = body.get(at..at + 6).ok_or_else(bad)?;
        let format_id = i64::from(i32::from_le_bytes([head[0], head[1], head[2], head[3]]));
        let (gl, bl) = (usize::from(head[4]), usize::from(head[5]));
        Xid::from_parts(format_id, &body[at + 6..], gl, bl)
            .map(Some)
            .ok_or_else(bad)
    }

    fn from_parts(format_id: i64, data: &[u8], gl: usize, bl: usize) -> Option<Xid> {
        if gl > MAX_PART || bl > MAX_PART {
            return None;
        }
        Some(Xid {
            format_id,
            gtrid: data.get(..gl)?.to_vec(),
            bqual: data.get(gl..gl + bl)?.to_vec(),
        })
    }
}

/// One quoted part of an xid, and the rest of the text.
fn string(text: &str) -> Result<(Vec<u8>, &str), XidError> {
    let t = text.trim_start();
    let bad = || XidError(format!("expected an XA id in {text:?}"));
    if let Some(r) = t.strip_prefix("X'").or_else(|| t.strip_prefix("x'")) {
        let end = r.find('\'').ok_or_else(bad)?;
        return Ok((hex(&r[..end]).ok_or_else(bad)?, &r[end + 1..]));
    }
    if let Some(r) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        let end = r.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(r.len());
        return Ok((hex(&r[..end]).ok_or_else(bad)?, &r[end..]));
    }
    let b = t.as_bytes();
    let quote = *b
        .first()
        .filter(|c| **c == b'\'' || **c == b'"')
        .ok_or_else(bad)?;
    let mut out = Vec::new();
    let mut i = 1;
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            // a backslash escape: the next byte stands for itself
            out.push(*b.get(i + 1).ok_or_else(bad)?);
            i += 2;
        } else if c == quote && b.get(i + 1) == Some(&quote) {
            // a doubled quote stands for itself
            out.push(quote);
            i += 2;
        } else if c == quote {
            return Ok((out, &t[i + 1..]));
        } else {
            out.push(c);
            i += 1;
        }
    }
    Err(bad())
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Like SQL: `'gtrid'` (or `X'…'` when not printable), then `,'bqual',n`
/// when they are not the defaults.
impl fmt::Display for Xid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn part(f: &mut fmt::Formatter<'_>, b: &[u8]) -> fmt::Result {
            if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') && !b.contains(&b'\'') {
                write!(f, "'{}'", String::from_utf8_lossy(b))
            } else {
                write!(f, "X'")?;
                for c in b {
                    write!(f, "{c:02x}")?;
                }
                write!(f, "'")
            }
        }
        part(f, &self.gtrid)?;
        if !self.bqual.is_empty() || self.format_id != 1 {
            write!(f, ",")?;
            part(f, &self.bqual)?;
            write!(f, ",{}", self.format_id)?;
        }
        Ok(())
    }
}

/// A prepared XA transaction: where its PREPARE group starts, where its
/// XA_PREPARE_LOG event is, and its rows: the decoder holds them as their
/// rows events in a [`Spool`] (in memory or a temporary file), the
/// simulation in `tests/sim` as decoded changes (the default).
#[derive(Debug, Clone)]
pub struct Held<R = Vec<RowChange>> {
    pub start: Position,
    pub prepared_at: Position,
    pub changes: R,
}

/// The prepared XA transactions whose outcome has not been read yet, and
/// the spans (PREPARE group start, end of the COMMIT) of committed ones
/// that a checkpoint could still fall into. (`Clone` lets the simulation
/// in `tests/sim` copy a stream's state; the decoder holds
/// `Prepared<Spool>`.)
#[derive(Debug, Clone)]
pub struct Prepared<R = Vec<RowChange>> {
    held: BTreeMap<Xid, Held<R>>,
    committed: Vec<(Position, Position)>,
}

impl<R> Default for Prepared<R> {
    fn default() -> Self {
        Prepared {
            held: BTreeMap::new(),
            committed: Vec::new(),
        }
    }
}

/// A second PREPARE of an xid that is still prepared.
#[derive(Debug, thiserror::Error)]
#[error("XA PREPARE of {xid} at {again} while the same xid, prepared at {first}, has no XA COMMIT or XA ROLLBACK yet")]
pub struct DuplicatePrepare {
    pub xid: Xid,
    pub first: Position,
    pub again: Position,
}

impl<R> Prepared<R> {
    /// Holds the rows of `xid`, whose PREPARE group starts at `held.start`.
    pub fn prepare(&mut self, xid: Xid, held: Held<R>) -> Result<(), DuplicatePrepare> {
        if let Some(first) = self.held.get(&xid) {
            return Err(DuplicatePrepare {
                xid,
                first: first.prepared_at.clone(),
                again: held.prepared_at,
            });
        }
        self.held.insert(xid, held);
        Ok(())
    }

    /// `XA COMMIT xid`, ending at `end`: its held rows, if it was
    /// prepared.
    pub fn commit(&mut self, xid: &Xid, end: &Position) -> Option<Held<R>> {
        let held = self.held.remove(xid)?;
        self.committed.push((held.start.clone(), end.clone()));
        Some(held)
    }

    /// `XA ROLLBACK xid`: its held rows, if it was prepared. (A restart
    /// that reads the ROLLBACK without the PREPARE loses nothing.)
    pub fn rollback(&mut self, xid: &Xid) -> Option<Held<R>> {
        self.held.remove(xid)
    }

    /// No prepared transaction is pending.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Prepared transactions pending.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Where a checkpoint taken after a transaction ending at `end` may
    /// resume: the latest of `end` and the PREPARE group starts that lies
    /// after no pending PREPARE's start and strictly inside no committed
    /// span. All candidates are transaction boundaries.
    ///
    /// Lowering `r` to the start `s` of a span that contains it is forced:
    /// every position between `s` and `r` is inside the span too. So the
    /// result is the latest allowed position, and it never decreases from
    /// one transaction to the next (a new span starts after the previous
    /// `end`, and a pending span only shrinks when it is committed), so
    /// spans that end at or before it are forgotten.
    pub fn resume(&mut self, end: &Position) -> Position {
        let r = self.peek(end);
        self.committed.retain(|(_, e)| *e > r);
        r
    }

    /// [`Prepared::resume`] without forgetting anything.
    pub fn peek(&self, end: &Position) -> Position {
        let mut r = end.clone();
        loop {
            let pending = self.held.values().map(|h| &h.start).filter(|s| **s < r);
            let inside = self
                .committed
                .iter()
                .filter(|(s, e)| *s < r && r < *e)
                .map(|(s, _)| s);
            match pending.chain(inside).min() {
                Some(s) => r = s.clone(),
                None => return r,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xid(g: &str, b: &str, f: i64) -> Xid {
        Xid {
            format_id: f,
            gtrid: g.as_bytes().to_vec(),
            bqual: b.as_bytes().to_vec(),
        }
    }

    fn pos(n: u64) -> Position {
        Position::new("mysql-bin.000001", n)
    }

    fn held(start: u64) -> Held {
        Held {
            start: pos(start),
            prepared_at: pos(start + 50),
            changes: Vec::new(),
        }
    }

    #[test]
    fn xids_parse_as_servers_write_them_and_as_users_type_them() {
        let (x, rest) = Xid::parse("X'7831',X'',1").unwrap();
        assert_eq!((x, rest), (xid("x1", "", 1), ""));
        let (x, rest) = Xid::parse(" X'7832',X'62',7 ONE PHASE").unwrap();
        assert_eq!((x, rest), (xid("x2", "b", 7), " ONE PHASE"));
        assert_eq!(Xid::parse("'x1'").unwrap().0, xid("x1", "", 1));
        assert_eq!(
            Xid::parse("'it''s', \"b\\\"q\", -3").unwrap().0,
            xid("it's", "b\"q", -3)
        );
        assert_eq!(Xid::parse("0x7831").unwrap().0, xid("x1", "", 1));
        assert!(Xid::parse("").is_err());
        assert!(Xid::parse("X'783'").is_err());
        assert!(Xid::parse("'open").is_err());
        assert!(Xid::parse(&format!("'{}'", "a".repeat(65))).is_err());
    }

    #[test]
    fn xids_display_like_sql() {
        assert_eq!(xid("x1", "", 1).to_string(), "'x1'");
        assert_eq!(xid("x2", "b", 7).to_string(), "'x2','b',7");
        let odd = Xid {
            format_id: 1,
            gtrid: vec![0, 0xff],
            bqual: vec![],
        };
        assert_eq!(odd.to_string(), "X'00ff'");
        assert_eq!(Xid::parse(&odd.to_string()).unwrap().0, odd);
    }

    #[test]
    fn xids_come_from_prepare_log_and_mariadb_gtid_bodies() {
        // MariaDB 10.11's XA_PREPARE_LOG of `XA PREPARE 'x2','b',7`
        let body = [0, 7, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, b'x', b'2', b'b'];
        assert_eq!(
            Xid::from_prepare_log(&body).unwrap(),
            (false, xid("x2", "b", 7))
        );
        let mut one = body;
        one[0] = 1;
        assert!(Xid::from_prepare_log(&one).unwrap().0);
        assert!(Xid::from_prepare_log(&body[..14]).is_err());
        // its GTID event of the PREPARE group: seq 8, domain 0, flags 0x4c
        let gtid = [
            8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x4c, 7, 0, 0, 0, 2, 1, b'x', b'2', b'b', 1, 0xff,
        ];
        assert_eq!(
            Xid::from_mariadb_gtid(&gtid).unwrap(),
            Some(xid("x2", "b", 7))
        );
        let mut plain = gtid;
        plain[12] = 0x0c;
        assert_eq!(Xid::from_mariadb_gtid(&plain).unwrap(), None);
        assert!(Xid::from_mariadb_gtid(&gtid[..20]).is_err());
    }

    #[test]
    fn the_resume_position_never_passes_a_pending_prepare() {
        let mut p = Prepared::default();
        assert_eq!(p.resume(&pos(100)), pos(100));
        p.prepare(xid("a", "", 1), held(200)).unwrap();
        p.prepare(xid("b", "", 1), held(300)).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p.resume(&pos(400)), pos(200));
        assert!(
            p.prepare(xid("a", "", 1), held(350)).is_err(),
            "a second PREPARE of a pending xid"
        );
        assert!(p.commit(&xid("c", "", 1), &pos(400)).is_none());
        assert_eq!(p.rollback(&xid("a", "", 1)).unwrap().start, pos(200));
        assert_eq!(p.resume(&pos(400)), pos(300));
        assert!(p.commit(&xid("b", "", 1), &pos(450)).is_some());
        assert!(p.is_empty());
        assert_eq!(p.resume(&pos(500)), pos(500));
    }

    #[test]
    fn the_resume_position_never_splits_a_prepare_from_its_commit() {
        let mut p = Prepared::default();
        // a: PREPARE group at 100, b: at 200, a commits ending at 300
        p.prepare(xid("a", "", 1), held(100)).unwrap();
        p.prepare(xid("b", "", 1), held(200)).unwrap();
        p.commit(&xid("a", "", 1), &pos(300)).unwrap();
        // 200 would re-read a's COMMIT without its PREPARE
        assert_eq!(p.resume(&pos(300)), pos(100));
        // c prepared at 350 and committed at 400, inside b's span
        p.prepare(xid("c", "", 1), held(350)).unwrap();
        p.commit(&xid("c", "", 1), &pos(400)).unwrap();
        assert_eq!(p.resume(&pos(400)), pos(100));
        // b commits at 500: every span is closed
        p.commit(&xid("b", "", 1), &pos(500)).unwrap();
        assert_eq!(p.peek(&pos(450)), pos(100), "450 is inside b's span");
        assert_eq!(p.resume(&pos(500)), pos(500));
        assert!(
            p.committed.is_empty(),
            "spans behind the resume are forgotten"
        );
        // a span that ends exactly at the candidate does not hold it back
        p.prepare(xid("d", "", 1), held(600)).unwrap();
        p.commit(&xid("d", "", 1), &pos(700)).unwrap();
        assert_eq!(p.resume(&pos(700)), pos(700));
    }
}
