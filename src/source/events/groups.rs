//! Event groups: where transactions begin and end — BEGIN, COMMIT, XID,
//! ROLLBACK, savepoints, the XA statements, MariaDB's GTID — and DDL
//! outside them. The rows of an open group are held in its [`Spool`] until
//! its outcome; see the parent module for what is handed out when.

use mysql_async::Conn;
use mysql_common::binlog::events::{Event, QueryEvent, XidEvent};

use super::{bad, truncate, Decoder, Out, Placed, Step, FL_STANDALONE};
use crate::position::Position;
use crate::source::rollback::savepoint_name;
use crate::source::spool::{Mark, Spool};
use crate::source::xa::{self, Held, Xid};
use crate::source::SourceError;

impl Decoder {
    /// QUERY: BEGIN, COMMIT, ROLLBACK, savepoints inside a transaction, XA
    /// statements, and DDL outside a transaction.
    pub(super) async fn on_query(
        &mut self,
        event: &Event,
        ev: &Placed,
        conn: Option<&mut Conn>,
    ) -> Step {
        let qe: QueryEvent<'_> = event.read_event().map_err(|e| bad(&ev.start, ev.ty, e))?;
        let q = qe.query();
        let word = q
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        self.advance(ev);
        let end_pos = self.end_position();
        let open = self.txn.is_some();
        match word.as_str() {
            "BEGIN" => {
                self.begin(&ev.start)?;
                Ok(None)
            }
            "COMMIT" => self.commit(end_pos, ev.timestamp).map(Some),
            "XA" => self.on_xa_query(&q, ev, end_pos),
            "ROLLBACK" if is_rollback_to(&q) => self.on_rollback_to(&q, ev, conn).await,
            "ROLLBACK" => self.on_rollback(ev, conn).await,
            "SAVEPOINT" | "RELEASE" if open => self.on_savepoint(&q, &word, ev),
            _ if open => Ok(None),
            _ => {
                // DDL: schemas may have changed
                tracing::info!(position = %ev.start, query = %truncate(&q, 200), "DDL on the source; schema cache dropped");
                if let Some(h) = self.history.as_mut() {
                    // recorded before the boundary after it is handed out
                    h.on_ddl(&qe.schema(), &q, &ev.start, &self.pos)
                        .await
                        .map_err(SourceError::Schema)?;
                }
                self.cache.invalidate();
                self.engines.invalidate();
                self.tables.clear();
                self.maps.clear();
                Ok(Some(self.boundary(ev.timestamp)))
            }
        }
    }

    /// `SAVEPOINT name` (where the held rows end now) or `RELEASE
    /// SAVEPOINT name`.
    fn on_savepoint(&mut self, q: &str, word: &str, ev: &Placed) -> Step {
        let at = self.txn.as_ref().map_or(Mark::default(), Spool::mark);
        match savepoint_name(q) {
            Some(name) if word == "SAVEPOINT" => self.savepoints.set(&name, at),
            Some(name) => self.savepoints.release(&name),
            None => {
                return Err(SourceError::Definite(format!(
                    "cannot read the savepoint name in {:?} at {}",
                    truncate(q, 200),
                    ev.start
                )))
            }
        }
        Ok(None)
    }

    /// `ROLLBACK`: the transaction's rows are dropped, except those of
    /// non-transactional tables, which persisted on the source (see
    /// [`crate::source::rollback`]).
    async fn on_rollback(&mut self, ev: &Placed, conn: Option<&mut Conn>) -> Step {
        let mut rows = self.txn.take();
        if let Some(rows) = rows.as_mut() {
            self.keep_persisted(rows, Mark::default(), ev, conn).await?;
        }
        let end = self.pos.clone();
        self.finish(rows, end, ev.timestamp).map(Some)
    }

    /// `ROLLBACK TO savepoint`: the rows after the savepoint are dropped,
    /// except those of non-transactional tables.
    async fn on_rollback_to(&mut self, q: &str, ev: &Placed, conn: Option<&mut Conn>) -> Step {
        let Some(mut rows) = self.txn.take() else {
            return Ok(None);
        };
        let keep = savepoint_name(q).and_then(|n| self.savepoints.rollback_to(&n));
        let Some(keep) = keep else {
            return Err(SourceError::Definite(format!(
                "{:?} at {} names a savepoint this transaction never set in the binlog; refusing to guess which rows the source rolled back",
                truncate(q, 200),
                ev.start
            )));
        };
        self.keep_persisted(&mut rows, keep, ev, conn).await?;
        self.txn = Some(rows);
        Ok(None)
    }

    /// Drops the rows held since `from`, except those of non-transactional
    /// tables, which persisted on the source (with a warning naming each
    /// table).
    async fn keep_persisted(
        &mut self,
        rows: &mut Spool,
        from: Mark,
        ev: &Placed,
        mut conn: Option<&mut Conn>,
    ) -> Result<(), SourceError> {
        let mut keep = Vec::new();
        for t in rows.tables_since(from)? {
            let (db, table) = (&t.schema.db, &t.schema.table);
            if !self
                .engines
                .transactional(db, table, conn.as_deref_mut())
                .await?
            {
                tracing::warn!(position = %ev.start, table = %t.schema.full_name(), "rows of a non-transactional table in a rolled-back transaction persisted on the source; applying them");
                keep.push(t);
            }
        }
        let dropped = rows.rollback_to(from, &keep)?;
        if dropped > 0 {
            tracing::info!(position = %ev.start, rows = dropped, "rows rolled back on the source are not applied");
        }
        Ok(())
    }

    /// `XA START`, `XA END`, `XA COMMIT`, `XA ROLLBACK` (see
    /// [`crate::source::xa`]).
    fn on_xa_query(&mut self, q: &str, ev: &Placed, end_pos: Position) -> Step {
        // the first word is `XA` (two bytes)
        let after_xa = q.trim_start().get(2..).unwrap_or("").trim_start();
        let verb_len = after_xa.find(char::is_whitespace).unwrap_or(after_xa.len());
        let verb = after_xa[..verb_len].to_ascii_uppercase();
        let xid = || -> Result<(Xid, String), SourceError> {
            let (xid, rest) = Xid::parse(&after_xa[verb_len..]).map_err(|e| {
                SourceError::Definite(format!("{e} (the query at {} is {q:?})", ev.start))
            })?;
            Ok((xid, rest.trim().to_ascii_uppercase()))
        };
        match verb.as_str() {
            "START" | "BEGIN" => {
                // MySQL opens an XA transaction with this query, no BEGIN
                let (x, _) = xid()?;
                self.begin(&ev.start)?;
                self.open_xa = Some(x);
                Ok(None)
            }
            "COMMIT" => {
                let (x, rest) = xid()?;
                self.on_xa_commit(x, rest.starts_with("ONE"), ev, end_pos)
            }
            "ROLLBACK" => {
                let (x, _) = xid()?;
                if let Some(held) = self.prepared.rollback(&x) {
                    tracing::info!(position = %ev.start, xid = %x, rows = held.changes.rows(), "XA ROLLBACK: the prepared rows are not applied");
                }
                self.txn = None;
                Ok(Some(self.boundary(ev.timestamp)))
            }
            // XA END inside the transaction; nothing else changes rows
            _ if self.txn.is_some() => Ok(None),
            _ => Ok(Some(self.boundary(ev.timestamp))),
        }
    }

    /// `XA COMMIT xid [ONE PHASE]`: the rows held since its PREPARE (and
    /// any of the open group) are handed out, ending here.
    fn on_xa_commit(&mut self, x: Xid, one_phase: bool, ev: &Placed, end_pos: Position) -> Step {
        let open = self.txn.take();
        if one_phase {
            return self.finish(open, end_pos, ev.timestamp).map(Some);
        }
        let Some(Held {
            changes: mut held, ..
        }) = self.prepared.commit(&x, &end_pos)
        else {
            return Err(SourceError::Definite(format!(
                "XA COMMIT {x} at {}: reshard never read its XA PREPARE, which must be before where this stream started ({}), so the transaction's rows are neither in the targets nor in the stream. Re-seed the targets (run without a checkpoint: the copy waits until `XA RECOVER` lists nothing) or stream --from a position before its XA PREPARE",
                ev.start, self.started
            )));
        };
        if let Some(mut open) = open {
            held.extend(&mut open)?;
        }
        self.finish(Some(held), end_pos, ev.timestamp).map(Some)
    }

    pub(super) fn on_xid(&mut self, event: &Event, ev: &Placed) -> Step {
        let _: XidEvent = event.read_event().map_err(|e| bad(&ev.start, ev.ty, e))?;
        self.advance(ev);
        let end_pos = self.end_position();
        self.commit(end_pos, ev.timestamp).map(Some)
    }

    /// XA_PREPARE_LOG: ends an XA transaction's PREPARE group, whose rows
    /// are held until its XA COMMIT or XA ROLLBACK; or, with `one_phase`
    /// (MySQL's `XA COMMIT … ONE PHASE`), commits it.
    pub(super) fn on_xa_prepare(&mut self, event: &Event, ev: &Placed) -> Step {
        let (one_phase, x) =
            Xid::from_prepare_log(event.data()).map_err(|e| SourceError::Decode {
                position: ev.start.clone(),
                message: e.to_string(),
            })?;
        self.advance(ev);
        let end = self.end_position();
        if one_phase {
            return self.commit(end, ev.timestamp).map(Some);
        }
        if let Some(open) = self.open_xa.as_ref().filter(|o| **o != x) {
            tracing::warn!(position = %ev.start, started = %open, prepared = %x, "XA PREPARE names another xid than the transaction's start; holding its rows under the PREPARE's");
        }
        let rows = self
            .txn
            .take()
            .unwrap_or_else(|| Spool::new(self.budget.clone()));
        tracing::info!(position = %ev.start, xid = %x, rows = rows.rows(), in_file = rows.spilled(), "XA PREPARE: rows held until its XA COMMIT or XA ROLLBACK");
        let held = Held {
            start: self.last_end.clone(),
            prepared_at: ev.start.clone(),
            changes: rows,
        };
        self.prepared
            .prepare(x, held)
            .map_err(|e| SourceError::Definite(e.to_string()))?;
        self.finish(None, end, ev.timestamp).map(Some)
    }

    /// MariaDB GTID: begins a transaction unless standalone (DDL).
    pub(super) fn on_mariadb_gtid(&mut self, event: &Event, ev: &Placed) -> Step {
        let flags = event.data().get(12).copied().unwrap_or(0);
        if flags & FL_STANDALONE == 0 {
            self.begin(&ev.start)?;
        }
        if flags & xa::FL_PREPARED_XA != 0 {
            // MariaDB opens an XA PREPARE group with this flag, no query
            self.open_xa =
                Xid::from_mariadb_gtid(event.data()).map_err(|e| SourceError::Decode {
                    position: ev.start.clone(),
                    message: e.to_string(),
                })?;
        }
        self.advance(ev);
        Ok(None)
    }

    /// Starts a transaction. A transaction still open with rows means its
    /// commit event never came: refuse rather than drop its rows.
    pub(super) fn begin(&mut self, at: &Position) -> Result<(), SourceError> {
        if let Some(open) = &self.txn {
            if !open.is_empty() {
                return Err(SourceError::Definite(format!(
                    "a new transaction begins at {at} while {} row change(s) of the previous one never saw a commit event",
                    open.rows()
                )));
            }
        }
        self.txn = Some(Spool::new(self.budget.clone()));
        self.implicit = false;
        self.savepoints.clear();
        self.open_xa = None;
        Ok(())
    }

    /// Where a transaction committed now ends: after the payload when the
    /// commit came from inside one.
    pub(super) fn end_position(&self) -> Position {
        match &self.payload {
            Some(p) => Position::new(self.file.clone(), p.end),
            None => self.pos.clone(),
        }
    }

    /// Commits the open group: its rows are handed out, ending at `end`.
    pub(super) fn commit(&mut self, end: Position, timestamp: u32) -> Result<Out, SourceError> {
        let rows = self.txn.take();
        self.finish(rows, end, timestamp)
    }
}

/// `ROLLBACK [WORK] TO …`, not a whole-transaction `ROLLBACK`.
fn is_rollback_to(q: &str) -> bool {
    let mut words = q.split_whitespace().skip(1);
    let next = words.next().unwrap_or("");
    let next = if next.eq_ignore_ascii_case("WORK") {
        words.next().unwrap_or("")
    } else {
        next
    };
    next.eq_ignore_ascii_case("TO") || next.to_ascii_uppercase().starts_with("TO`")
}
