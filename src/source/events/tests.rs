//! The decoder on hand-built event sequences: MySQL's XA groups (no MySQL
//! server or XA fixture binlog is at hand), MariaDB's, savepoints and
//! rolled-back groups. Events are framed as in a binlog file without
//! checksums and handed over as [`EventAt::File`].

use mysql_common::value::Value;

use super::*;
use crate::source::RowChange;
use crate::version::Version;

const FILE: &str = "mysql-bin.000007";
const QUERY: u8 = 2;
const XID: u8 = 16;
const TABLE_MAP: u8 = 19;
const WRITE_ROWS: u8 = 30;
const DELETE_ROWS: u8 = 32;
const HEARTBEAT: u8 = 27;
const ANONYMOUS_GTID: u8 = 34;
const XA_PREPARE_LOG: u8 = 38;

/// A transaction as the tests look at it: the rows of all its chunks,
/// its end and where a checkpoint after it may resume.
#[derive(Debug)]
struct Txn {
    changes: Vec<RowChange>,
    end: Position,
    resume: Position,
}

/// A decoder fed with events framed one after the other.
struct Log {
    dec: Decoder,
    offset: u64,
}

fn pos(n: u64) -> Position {
    Position::new(FILE, n)
}

impl Log {
    fn new(start: u64) -> Log {
        Log::with_hold(start, Hold::default())
    }

    fn with_hold(start: u64, hold: Hold) -> Log {
        Log {
            dec: Decoder::new(
                pos(start),
                DecoderOptions {
                    epoch: 0,
                    checksum: false,
                    filter: Arc::new(|_, _| true),
                    hold,
                },
            ),
            offset: start,
        }
    }

    /// Feeds an event; returns every item it produced.
    async fn feed(&mut self, ty: u8, body: Vec<u8>) -> Result<Vec<SourceItem>, SourceError> {
        let size = 19 + body.len() as u32;
        let event = crate::source::decode::test_event(ty, self.offset as u32 + size, &body);
        let at = EventAt::File {
            offset: self.offset,
            inner: false,
        };
        self.offset += u64::from(size);
        self.dec.handle(&event, at, None).await?;
        let mut items = Vec::new();
        while let Some(item) = self.dec.next_item()? {
            items.push(item);
        }
        Ok(items)
    }

    /// Feeds an event that must not end a transaction.
    async fn quiet(&mut self, ty: u8, body: Vec<u8>) {
        let items = self.feed(ty, body).await.unwrap();
        assert!(items.is_empty(), "unexpected {items:?}");
    }

    /// Feeds an event that must end a transaction or boundary: its rows'
    /// chunks, then its end.
    async fn txn(&mut self, ty: u8, body: Vec<u8>) -> Txn {
        let mut changes = Vec::new();
        let mut items = self.feed(ty, body).await.unwrap().into_iter();
        loop {
            match items.next() {
                Some(SourceItem::Rows(c)) => changes.extend(c.changes),
                Some(SourceItem::Transaction(t)) => {
                    assert!(items.next().is_none(), "items after the transaction");
                    assert_eq!(t.rows, changes.len() as u64);
                    return Txn {
                        changes,
                        end: t.end,
                        resume: t.resume,
                    };
                }
                other => panic!("expected a transaction, got {other:?}"),
            }
        }
    }

    /// A TABLE_MAP of `d.<table>` (id 1 for `t`, 2 otherwise) and a
    /// WRITE_ROWS of `rows`; returns where the rows event starts.
    async fn insert(&mut self, table: &str, rows: &[(i32, i32)]) -> u64 {
        let id = if table == "t" { 1 } else { 2 };
        self.quiet(TABLE_MAP, table_map(id, table)).await;
        let at = self.offset;
        self.quiet(WRITE_ROWS, rows_body(id, rows)).await;
        at
    }
}

fn query(q: &str) -> Vec<u8> {
    let mut b = vec![0; 4 + 4];
    b.push(0); // db length
    b.extend([0, 0, 0, 0]); // error code, status vars length
    b.push(0); // db ""
    b.extend(q.as_bytes());
    b
}

fn table_map(id: u8, table: &str) -> Vec<u8> {
    let mut b = vec![id, 0, 0, 0, 0, 0, 0, 0];
    b.extend([1, b'd', 0]);
    b.push(table.len() as u8);
    b.extend(table.as_bytes());
    b.push(0);
    b.extend([2, 3, 3]); // two INT columns
    b.push(0); // no column metadata
    b.push(0); // null bitmap
    b
}

fn rows_body(id: u8, rows: &[(i32, i32)]) -> Vec<u8> {
    let mut b = vec![id, 0, 0, 0, 0, 0, 1, 0, 2, 0]; // STMT_END_F, no extra data
    b.extend([2, 0b11]);
    for (a, c) in rows {
        b.push(0);
        b.extend(a.to_le_bytes());
        b.extend(c.to_le_bytes());
    }
    b
}

fn xa_prepare_log(one_phase: bool, gtrid: &str) -> Vec<u8> {
    let mut b = vec![u8::from(one_phase)];
    b.extend(1i32.to_le_bytes());
    b.extend((gtrid.len() as u32).to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend(gtrid.as_bytes());
    b
}

fn mariadb_gtid(seq: u64, flags: u8, gtrid: Option<&str>) -> Vec<u8> {
    let mut b = seq.to_le_bytes().to_vec();
    b.extend(0u32.to_le_bytes());
    b.push(flags);
    if let Some(g) = gtrid {
        b.extend(1u32.to_le_bytes());
        b.extend([g.len() as u8, 0]);
        b.extend(g.as_bytes());
    }
    b
}

fn keys(t: &Txn) -> Vec<(Value, &'static str)> {
    t.changes
        .iter()
        .map(|c| {
            let img = c.after.as_ref().or(c.before.as_ref()).unwrap();
            (img[0].clone(), c.kind())
        })
        .collect()
}

fn int(n: i64) -> Value {
    Value::Int(n)
}

/// MySQL's PREPARE group: a GTID, `XA START`, rows, `XA END`, XA_PREPARE.
async fn mysql_prepare(log: &mut Log, xid: &str, rows: &[(i32, i32)]) -> (u64, u64, Txn) {
    let start = log.offset;
    log.quiet(ANONYMOUS_GTID, vec![0; 25]).await;
    log.quiet(QUERY, query(&format!("XA START X'{}',X'',1", hex(xid))))
        .await;
    let rows_at = log.insert("t", rows).await;
    log.quiet(QUERY, query(&format!("XA END X'{}',X'',1", hex(xid))))
        .await;
    let t = log.txn(XA_PREPARE_LOG, xa_prepare_log(false, xid)).await;
    (start, rows_at, t)
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

async fn mysql_commit(log: &mut Log, verb: &str, xid: &str) -> Txn {
    log.quiet(ANONYMOUS_GTID, vec![0; 25]).await;
    log.txn(QUERY, query(&format!("XA {verb} X'{}',X'',1", hex(xid))))
        .await
}

async fn plain(log: &mut Log, rows: &[(i32, i32)]) -> Txn {
    log.quiet(ANONYMOUS_GTID, vec![0; 25]).await;
    log.quiet(QUERY, query("BEGIN")).await;
    log.insert("t", rows).await;
    log.txn(XID, vec![9; 8]).await
}

#[tokio::test]
async fn mysql_xa_rows_are_held_until_the_commit_and_keep_their_versions() {
    let mut log = Log::new(4);
    let (start, rows_at, prepared) = mysql_prepare(&mut log, "x1", &[(1, 10), (2, 20)]).await;
    assert!(prepared.changes.is_empty(), "rows held, not applied");
    assert_eq!(
        prepared.resume,
        pos(start),
        "the checkpoint stays before the PREPARE"
    );
    assert_eq!(log.dec.prepared_xa(), 1);
    // a normal transaction between PREPARE and COMMIT
    let between = plain(&mut log, &[(3, 30)]).await;
    assert_eq!(keys(&between), vec![(int(3), "insert")]);
    assert_eq!(between.resume, pos(start));
    assert_eq!(log.dec.resume_position(), pos(start));
    let hb = log
        .feed(HEARTBEAT, b"mysql-bin.000007".to_vec())
        .await
        .unwrap();
    assert!(
        matches!(hb.as_slice(), [SourceItem::Heartbeat(None)]),
        "no idle position while an XA is prepared: {hb:?}"
    );
    let commit = mysql_commit(&mut log, "COMMIT", "x1").await;
    assert_eq!(keys(&commit), vec![(int(1), "insert"), (int(2), "insert")]);
    assert_eq!(commit.end, pos(log.offset));
    assert_eq!(
        commit.resume, commit.end,
        "resolved: the checkpoint may pass"
    );
    let v: Vec<Version> = commit.changes.iter().map(|c| c.version).collect();
    assert_eq!(
        v,
        vec![
            Version::at(0, &pos(rows_at), 0).unwrap(),
            Version::at(0, &pos(rows_at), 1).unwrap()
        ],
        "versions of the PREPARE group's rows events"
    );
    assert_eq!(log.dec.prepared_xa(), 0);
}

#[tokio::test]
async fn mysql_xa_rollback_drops_the_prepared_rows() {
    let mut log = Log::new(4);
    mysql_prepare(&mut log, "x2", &[(1, 10)]).await;
    let rb = mysql_commit(&mut log, "ROLLBACK", "x2").await;
    assert!(rb.changes.is_empty());
    assert_eq!(rb.resume, rb.end);
    // the XA START did not leave a transaction open
    let next = plain(&mut log, &[(5, 50)]).await;
    assert_eq!(keys(&next), vec![(int(5), "insert")]);
}

#[tokio::test]
async fn mysql_one_phase_xa_commit_is_an_ordinary_transaction() {
    let mut log = Log::new(4);
    log.quiet(ANONYMOUS_GTID, vec![0; 25]).await;
    log.quiet(QUERY, query("XA START X'6f6e65',X'',1")).await;
    log.insert("t", &[(7, 70)]).await;
    log.quiet(QUERY, query("XA END X'6f6e65',X'',1")).await;
    let t = log.txn(XA_PREPARE_LOG, xa_prepare_log(true, "one")).await;
    assert_eq!(keys(&t), vec![(int(7), "insert")]);
    assert_eq!(t.resume, t.end);
    assert_eq!(log.dec.prepared_xa(), 0);
}

#[tokio::test]
async fn the_oldest_pending_prepare_holds_the_resume_position() {
    let mut log = Log::new(4);
    let (a, _, _) = mysql_prepare(&mut log, "a", &[(1, 1)]).await;
    let (b, _, _) = mysql_prepare(&mut log, "b", &[(2, 2)]).await;
    let t = mysql_commit(&mut log, "COMMIT", "a").await;
    assert_eq!(keys(&t), vec![(int(1), "insert")]);
    assert!(a < b);
    assert_eq!(
        t.resume,
        pos(a),
        "b's start is between a's PREPARE and COMMIT: not a safe resume"
    );
    let t = mysql_commit(&mut log, "COMMIT", "b").await;
    assert_eq!(t.resume, t.end);
}

#[tokio::test]
async fn an_xa_commit_whose_prepare_was_not_read_is_refused() {
    let mut log = Log::new(1000);
    // a ROLLBACK of an unknown xid loses nothing
    let rb = mysql_commit(&mut log, "ROLLBACK", "gone").await;
    assert!(rb.changes.is_empty());
    log.quiet(ANONYMOUS_GTID, vec![0; 25]).await;
    let err = log
        .feed(QUERY, query("XA COMMIT X'6c6f7374',X'',1"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("XA COMMIT 'lost'") && msg.contains("XA PREPARE") && msg.contains(":1000"),
        "{msg}"
    );
    assert_eq!(err.retry(), crate::db::Retry::Definite);
}

#[tokio::test]
async fn mariadb_xa_groups_hold_and_release_rows() {
    const PREPARED: u8 = 0x4c; // FL_PREPARED_XA | transactional | parallel
    const COMPLETED: u8 = 0x8d; // FL_COMPLETED_XA | standalone | …
    let mut log = Log::new(4);
    let start = log.offset;
    log.quiet(MARIADB_GTID, mariadb_gtid(5, PREPARED, Some("x1")))
        .await;
    log.insert("t", &[(1, 10)]).await;
    log.quiet(QUERY, query("XA END X'7831',X'',1")).await;
    let p = log.txn(XA_PREPARE_LOG, xa_prepare_log(false, "x1")).await;
    assert_eq!((p.changes.len(), p.resume), (0, pos(start)));
    assert_eq!(log.dec.open_xa, None);
    // the second one rolls back
    log.quiet(MARIADB_GTID, mariadb_gtid(6, PREPARED, Some("x2")))
        .await;
    log.quiet(TABLE_MAP, table_map(1, "t")).await;
    log.quiet(DELETE_ROWS, rows_body(1, &[(9, 90)])).await;
    log.quiet(QUERY, query("XA END X'7832',X'',1")).await;
    log.txn(XA_PREPARE_LOG, xa_prepare_log(false, "x2")).await;
    log.quiet(MARIADB_GTID, mariadb_gtid(7, COMPLETED, Some("x1")))
        .await;
    let c = log.txn(QUERY, query("XA COMMIT X'7831',X'',1")).await;
    assert_eq!(keys(&c), vec![(int(1), "insert")]);
    assert!(c.resume < c.end, "x2 is still prepared");
    log.quiet(MARIADB_GTID, mariadb_gtid(8, COMPLETED, Some("x2")))
        .await;
    let r = log.txn(QUERY, query("XA ROLLBACK X'7832',X'',1")).await;
    assert!(r.changes.is_empty());
    assert_eq!(r.resume, r.end);
}

/// BEGIN, rows, SAVEPOINT, rows, ROLLBACK TO, rows, XID.
#[tokio::test]
async fn rows_after_a_rolled_back_savepoint_are_dropped() {
    let mut log = Log::new(4);
    log.quiet(QUERY, query("BEGIN")).await;
    log.insert("t", &[(1, 1)]).await;
    log.quiet(QUERY, query("SAVEPOINT `a`")).await;
    log.insert("t", &[(2, 2)]).await;
    log.quiet(QUERY, query("SAVEPOINT `b`")).await;
    log.insert("t", &[(3, 3)]).await;
    log.quiet(QUERY, query("ROLLBACK TO `B`")).await;
    log.insert("t", &[(4, 4)]).await;
    log.quiet(QUERY, query("ROLLBACK TO `a`")).await;
    log.insert("t", &[(5, 5)]).await;
    let t = log.txn(XID, vec![1; 8]).await;
    assert_eq!(keys(&t), vec![(int(1), "insert"), (int(5), "insert")]);
    // savepoints do not outlive their transaction
    log.quiet(QUERY, query("BEGIN")).await;
    let err = log.feed(QUERY, query("ROLLBACK TO `a`")).await.unwrap_err();
    assert!(err.to_string().contains("never set"), "{err}");
}

/// A MySQL 5.1-style group: transactional and non-transactional rows in
/// one group that ends in ROLLBACK (or in a ROLLBACK TO region): the
/// non-transactional ones persisted on the source and are applied.
#[tokio::test]
async fn non_transactional_rows_of_a_rolled_back_group_are_applied() {
    let mut log = Log::new(4);
    log.dec.engines.assume("d", "m", false);
    log.dec.engines.assume("d", "t", true);
    log.quiet(QUERY, query("BEGIN")).await;
    log.insert("t", &[(1, 1)]).await;
    log.insert("m", &[(2, 2)]).await;
    let t = log.txn(QUERY, query("ROLLBACK")).await;
    assert_eq!(keys(&t), vec![(int(2), "insert")]);
    assert_eq!(t.changes[0].table.table, "m");
    assert_eq!(t.end, pos(log.offset));

    log.quiet(QUERY, query("BEGIN")).await;
    log.insert("t", &[(3, 3)]).await;
    log.quiet(QUERY, query("SAVEPOINT s")).await;
    log.insert("t", &[(4, 4)]).await;
    log.insert("m", &[(5, 5)]).await;
    log.quiet(QUERY, query("ROLLBACK TO SAVEPOINT s")).await;
    let t = log.txn(XID, vec![1; 8]).await;
    assert_eq!(keys(&t), vec![(int(3), "insert"), (int(5), "insert")]);

    // without a connection, an unknown engine counts as transactional
    log.quiet(QUERY, query("BEGIN")).await;
    log.insert("u", &[(6, 6)]).await;
    let t = log.txn(QUERY, query("ROLLBACK")).await;
    assert!(t.changes.is_empty());
}

/// A transaction of many rows events comes out in chunks of whole events
/// (then its end), with the versions of its events; rows held past the
/// memory budget go to a file and come back the same, for an open group
/// and for a prepared XA transaction.
#[tokio::test]
async fn large_transactions_come_out_in_chunks_also_from_a_file() {
    for memory in [1 << 20, 0] {
        let hold = Hold {
            memory,
            dir: None,
            chunk_rows: 3,
            chunk_bytes: 1 << 20,
        };
        let mut log = Log::with_hold(4, hold);
        let (start, _, _) = mysql_prepare(&mut log, "big", &[(100, 0), (101, 0)]).await;
        log.quiet(QUERY, query("BEGIN")).await;
        let mut at = Vec::new();
        for k in 0..4 {
            at.push(log.insert("t", &[(2 * k, 0), (2 * k + 1, 0)]).await);
        }
        assert_eq!(log.dec.open_rows(), Some(8));
        let items = log.feed(XID, vec![1; 8]).await.unwrap();
        let sizes: Vec<usize> = items
            .iter()
            .map(|i| match i {
                SourceItem::Rows(c) => c.changes.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(
            sizes,
            [4, 4, 0],
            "memory {memory}: chunks of whole events, then the end"
        );
        let SourceItem::Rows(first) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(
            first.changes[3].version,
            Version::at(0, &pos(at[1]), 1).unwrap()
        );
        assert_eq!(first.changes[3].position(), pos(at[1]));
        let SourceItem::Transaction(t) = &items[2] else {
            panic!("{items:?}")
        };
        assert_eq!((t.rows, t.resume.clone()), (8, pos(start)));
        assert_eq!(first.end, t.end);
        let c = mysql_commit(&mut log, "COMMIT", "big").await;
        assert_eq!(keys(&c), vec![(int(100), "insert"), (int(101), "insert")]);
        assert_eq!(
            log.dec.held_memory(),
            0,
            "memory {memory}: nothing held any more"
        );
    }
}
