//! The binlog event state machine shared by the live tailer
//! ([`super::stream`]) and the offline file reader ([`super::file`]): it
//! turns parsed events into committed transactions of decoded row changes.
//!
//! # Why the positions it reports are safe to resume from
//!
//! A transaction's `end` is the position right after its commit event
//! (XID, or a `COMMIT` query for non-transactional tables), which is the
//! start of the next event and never inside a transaction. Rows are only
//! handed out when their transaction commits. Rows the source rolled back
//! (`ROLLBACK`, `ROLLBACK TO` a savepoint) are dropped, except those of
//! non-transactional tables, which persisted ([`super::rollback`]). DDL and
//! rotations are boundaries of their own. So a checkpoint taken at any
//! `end` resumes at a transaction boundary, which is the only place the
//! server accepts (ER 1236 or orphan rows events otherwise).
//!
//! XA transactions commit in two steps: the rows of a PREPARE group are
//! held until its `XA COMMIT` (then handed out, ending there) or `XA
//! ROLLBACK` (then dropped); see [`super::xa`]. While one is held, a
//! checkpoint must not pass the start of its PREPARE group (nor sit
//! between a PREPARE and its COMMIT), so every transaction also carries
//! `resume`: its `end`, or such a start if earlier
//! ([`Decoder::resume_position`]). The start of a group is the `end` of
//! the last transaction or boundary handed out before it, so `resume` is a
//! boundary too.
//!
//! Versions come from the position of the rows event (or of the compressed
//! payload that holds it) and the row's index in it, so replaying the same
//! range yields the same versions (see [`crate::version`]).
//!
//! # Where positions come from
//!
//! Streamed events ([`EventAt::Stream`]) are placed by their header's
//! `log_pos` (the end of the event in the source's binlog), and ROTATE
//! events switch the file. Events read from a file ([`EventAt::File`]) are
//! placed by their byte offset in that file, which stays the position's
//! file: `log_pos` of a relay log names the upstream binlog, not the file on
//! disk, and inner events of a compressed payload have none.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mysql_async::Conn;
use mysql_common::binlog::consts::{EventType, RowsEventFlags, UnknownEventType};
use mysql_common::binlog::events::{
    Event, EventData, QueryEvent, RotateEvent, TableMapEvent, XidEvent,
};

use super::change::{RowChange, SourceItem, Transaction};
use super::history::SchemaHistory;
use super::rollback::{savepoint_name, Engines, Savepoints};
use super::row_image::{decode_row, DecodeError};
use super::schema::{complete_with, from_table_map, SchemaCache, SchemaOrigin, TableSchema};
use super::xa::{self, Held, Prepared, Xid};
use super::{checksum, SourceError};
use crate::position::Position;
use crate::version::Version;

/// Decides which source tables are decoded (`db`, `table`).
pub type TableFilter = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// What a [`Decoder`] needs to know.
#[derive(Clone)]
pub struct DecoderOptions {
    /// Version epoch (see [`crate::version`]).
    pub epoch: u16,
    /// Whether the source writes CRC32 event checksums (the first streamed
    /// ROTATE still carries them before any format description).
    pub checksum: bool,
    pub filter: TableFilter,
}

/// Where an event handed to [`Decoder::handle`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAt {
    /// From a replication stream: positioned by the header's `log_pos`;
    /// checksums are verified here.
    Stream,
    /// From a binlog file, starting at byte `offset` of the current file
    /// (for events inside a TRANSACTION_PAYLOAD, `inner` is true and
    /// `offset` is the payload's). The reader verifies checksums itself.
    File { offset: u64, inner: bool },
}

/// A compressed transaction payload whose inner events are being handled.
struct Payload {
    start: Position,
    end: u64,
    rows: u64,
}

/// Assembles committed transactions from binlog events.
pub struct Decoder {
    cache: SchemaCache,
    /// The schema history: when set, TABLE_MAPs without column names are
    /// decoded with the columns of their position, and DDL is recorded.
    history: Option<SchemaHistory>,
    opts: DecoderOptions,
    file: String,
    /// Start of the next event (what a checkpoint may hold).
    pos: Position,
    fde_seen: bool,
    /// Decoded schemas by table id (`None`: filtered out).
    tables: HashMap<u64, Option<Arc<TableSchema>>>,
    /// The TABLE_MAP events themselves, which the row parser needs.
    tmes: HashMap<u64, TableMapEvent<'static>>,
    ignored_logged: HashSet<String>,
    txn: Option<Vec<RowChange>>,
    /// The open transaction was begun by a rows event, not BEGIN or a GTID.
    implicit: bool,
    payload: Option<Payload>,
    /// Savepoints of the open transaction.
    savepoints: Savepoints,
    /// Which tables are transactional, for rolled-back rows.
    engines: Engines,
    /// The xid of the open transaction, when it is an XA one.
    open_xa: Option<Xid>,
    /// Prepared XA transactions whose outcome is still to come.
    prepared: Prepared,
    /// End of the last transaction or boundary handed out: where the event
    /// group being read began.
    last_end: Position,
    /// Where this decoder started reading.
    started: Position,
}

/// An event as [`Decoder::place`] placed it.
struct Placed {
    at: EventAt,
    /// Raw event type, for messages.
    ty: u8,
    flags: u16,
    /// The header's own `log_pos` (0 for artificial events).
    header_log_pos: u32,
    timestamp: u32,
    /// Where the event starts.
    start: Position,
    /// The position after it (0: none, e.g. inside a payload).
    log_pos: u64,
    /// Inside a compressed transaction payload.
    inner: bool,
}

/// Event types mysql_common does not list: MySQL's HEARTBEAT_V2 and
/// MariaDB's own.
const HEARTBEAT_V2: u8 = 41;
const MARIADB_ANNOTATE_ROWS: u8 = 160;
const MARIADB_BINLOG_CHECKPOINT: u8 = 161;
const MARIADB_GTID: u8 = 162;
const MARIADB_GTID_LIST: u8 = 163;
const MARIADB_START_ENCRYPTION: u8 = 164;
/// MariaDB's compressed QUERY and rows events (`log_bin_compress`).
const MARIADB_COMPRESSED_FIRST: u8 = 165;
const MARIADB_COMPRESSED_LAST: u8 = 171;

/// MariaDB GTID flag: a statement outside a transaction (DDL).
const FL_STANDALONE: u8 = 1;
/// `LOG_EVENT_IGNORABLE_F`: a reader that does not know the event may skip it.
const FL_IGNORABLE: u16 = 0x80;

impl Decoder {
    /// A decoder whose next event starts at `start`.
    pub fn new(start: Position, opts: DecoderOptions) -> Decoder {
        Decoder {
            cache: SchemaCache::default(),
            history: None,
            opts,
            file: start.file.clone(),
            pos: start.clone(),
            fde_seen: false,
            tables: HashMap::new(),
            tmes: HashMap::new(),
            ignored_logged: HashSet::new(),
            txn: None,
            implicit: false,
            payload: None,
            savepoints: Savepoints::default(),
            engines: Engines::default(),
            open_xa: None,
            prepared: Prepared::default(),
            last_end: start.clone(),
            started: start.clone(),
        }
    }

    /// The start of the next event.
    pub fn position(&self) -> &Position {
        &self.pos
    }

    /// Follows the schema history (see [`super::history`]): TABLE_MAPs
    /// without column names are decoded with the columns of their
    /// position instead of information_schema's current ones.
    pub fn set_history(&mut self, history: SchemaHistory) {
        self.history = Some(history);
    }

    /// Hands the schema history back (to close its connection).
    pub fn take_history(&mut self) -> Option<SchemaHistory> {
        self.history.take()
    }

    /// Row changes seen since the last commit, if a transaction is open.
    pub fn open_rows(&self) -> Option<usize> {
        self.txn.as_ref().map(Vec::len)
    }

    /// Prepared XA transactions whose XA COMMIT or XA ROLLBACK has not
    /// been read yet.
    pub fn prepared_xa(&self) -> usize {
        self.prepared.len()
    }

    /// Where a checkpoint may resume now: the end of the last transaction
    /// handed out, unless that is after an XA PREPARE still pending or
    /// between the PREPARE and the COMMIT of a committed one; then the
    /// start of that PREPARE group (see [`super::xa`]).
    pub fn resume_position(&self) -> Position {
        self.prepared.peek(&self.last_end)
    }

    /// Handles one event. `conn` serves information_schema look-ups for
    /// TABLE_MAPs without column names; without one, columns are named by
    /// position (`@1`, `@2`…, origin [`SchemaOrigin::Positional`]).
    ///
    /// Dispatches on mysql_common's [`EventType`]; the types it does not
    /// know (MariaDB's, MySQL's HEARTBEAT_V2) go by their raw number
    /// ([`Decoder::on_unlisted`]).
    pub async fn handle(
        &mut self,
        event: &Event,
        at: EventAt,
        conn: Option<&mut Conn>,
    ) -> Result<Option<SourceItem>, SourceError> {
        crate::metrics::global().event_read(event.header().event_type_raw());
        let ev = self.place(event, at)?;
        use EventType::*;
        let ty = match event.header().event_type() {
            Ok(ty) => ty,
            Err(UnknownEventType(raw)) => return self.on_unlisted(raw, event, &ev, conn).await,
        };
        match ty {
            ROTATE_EVENT => self.on_rotate(event, &ev),
            FORMAT_DESCRIPTION_EVENT => self.on_format_description(&ev),
            QUERY_EVENT => self.on_query(event, &ev, conn).await,
            XID_EVENT => self.on_xid(event, &ev),
            TABLE_MAP_EVENT => self.on_table_map(event, &ev, conn).await,
            WRITE_ROWS_EVENT_V1 | UPDATE_ROWS_EVENT_V1 | DELETE_ROWS_EVENT_V1 | WRITE_ROWS_EVENT
            | UPDATE_ROWS_EVENT | DELETE_ROWS_EVENT => self.on_rows(event, &ev),
            TRANSACTION_PAYLOAD_EVENT => self.on_payload(&ev),
            HEARTBEAT_EVENT => Ok(Some(self.heartbeat())),
            XA_PREPARE_LOG_EVENT => self.on_xa_prepare(event, &ev),
            PRE_GA_WRITE_ROWS_EVENT | PRE_GA_UPDATE_ROWS_EVENT | PRE_GA_DELETE_ROWS_EVENT => {
                Err(SourceError::Definite(format!(
                    "pre-GA rows event (type {}) at {}: binlogs of MySQL 5.1.15 and older are not supported",
                    ev.ty, ev.start
                )))
            }
            PARTIAL_UPDATE_ROWS_EVENT => Err(SourceError::Definite(format!(
                "partial JSON update event at {}: set binlog_row_value_options='' on the source",
                ev.start
            ))),
            // the source says its binlog misses changes here (a replica
            // stops too)
            INCIDENT_EVENT => Err(SourceError::Definite(format!(
                "INCIDENT event at {}: the source recorded that changes may be missing from its binlog here; re-seed the targets from a snapshot taken after it",
                ev.start
            ))),
            // events without rows
            START_EVENT_V3 | STOP_EVENT | INTVAR_EVENT | RAND_EVENT | USER_VAR_EVENT
            | IGNORABLE_EVENT | ROWS_QUERY_EVENT | GTID_EVENT | ANONYMOUS_GTID_EVENT
            | TRANSACTION_CONTEXT_EVENT | VIEW_CHANGE_EVENT | GTID_TAGGED_LOG_EVENT => {
                Ok(self.skip(&ev))
            }
            APPEND_BLOCK_EVENT | BEGIN_LOAD_QUERY_EVENT | EXECUTE_LOAD_QUERY_EVENT => {
                Ok(self.on_statement_load(&ev))
            }
            PREVIOUS_GTIDS_EVENT => Ok(self.on_file_level(&ev)),
            UNKNOWN_EVENT | LOAD_EVENT | SLAVE_EVENT | CREATE_FILE_EVENT | EXEC_LOAD_EVENT
            | DELETE_FILE_EVENT | NEW_LOAD_EVENT | ENUM_END_EVENT => self.on_unknown(&ev),
        }
    }

    /// Places an event: where it starts, the position after it, whether it
    /// is inside a compressed payload; and verifies a streamed event's
    /// checksum.
    fn place(&mut self, event: &Event, at: EventAt) -> Result<Placed, SourceError> {
        let h = event.header();
        let ty = h.event_type_raw();
        let size = u64::from(h.event_size());
        // From a file, the offset stands in for log_pos: inner events of a
        // payload get 0, as they do not advance the file position.
        let log_pos = match at {
            EventAt::Stream => u64::from(h.log_pos()),
            EventAt::File { inner: true, .. } => 0,
            EventAt::File { offset, .. } => offset.saturating_add(size),
        };

        // Inner events of a compressed transaction payload carry no usable
        // position of their own: they are versioned by the payload's start.
        let inner = match &self.payload {
            Some(p) => log_pos == 0 || log_pos <= p.end,
            None => false,
        };
        if !inner {
            self.payload = None;
        }
        let start = match at {
            _ if inner => self.pos.clone(),
            EventAt::File { offset, .. } => Position::new(self.file.clone(), offset),
            EventAt::Stream if log_pos == 0 => self.pos.clone(),
            EventAt::Stream => Position::new(self.file.clone(), log_pos.saturating_sub(size)),
        };

        // Inner events of a payload carry no checksum of their own (WL#3549):
        // the payload event's covers them.
        if at == EventAt::Stream && !inner {
            if let Some((expected, actual)) = checksum::mismatch(event) {
                return Err(SourceError::Checksum {
                    position: start,
                    event_type: ty,
                    expected,
                    actual,
                });
            }
        }
        Ok(Placed {
            at,
            ty,
            flags: h.flags_raw(),
            header_log_pos: h.log_pos(),
            timestamp: h.timestamp(),
            start,
            log_pos,
            inner,
        })
    }

    /// Moves the position past an event that has a real one.
    fn advance(&mut self, ev: &Placed) {
        if !ev.inner && ev.log_pos > 0 {
            self.pos = Position::new(self.file.clone(), ev.log_pos);
        }
    }

    /// The event types mysql_common does not list, by raw number.
    async fn on_unlisted(
        &mut self,
        raw: u8,
        event: &Event,
        ev: &Placed,
        conn: Option<&mut Conn>,
    ) -> Result<Option<SourceItem>, SourceError> {
        match raw {
            HEARTBEAT_V2 => Ok(Some(self.heartbeat())),
            MARIADB_ANNOTATE_ROWS => Ok(self.skip(ev)),
            MARIADB_BINLOG_CHECKPOINT | MARIADB_GTID_LIST | MARIADB_START_ENCRYPTION => {
                Ok(self.on_file_level(ev))
            }
            MARIADB_GTID => self.on_mariadb_gtid(event, ev),
            MARIADB_COMPRESSED_FIRST..=MARIADB_COMPRESSED_LAST => {
                self.on_compressed(raw, event, ev, conn).await
            }
            _ => self.on_unknown(ev),
        }
    }

    /// MariaDB's compressed QUERY and rows events (`log_bin_compress=ON`):
    /// handled as the plain events they compress
    /// ([`super::rebuild::inflate_mariadb`]), placed where they are.
    async fn on_compressed(
        &mut self,
        raw: u8,
        event: &Event,
        ev: &Placed,
        conn: Option<&mut Conn>,
    ) -> Result<Option<SourceItem>, SourceError> {
        let plain =
            super::rebuild::inflate_mariadb(event).map_err(|message| SourceError::Decode {
                position: ev.start.clone(),
                message: format!("MariaDB compressed event (type {raw}): {message}"),
            })?;
        if raw == MARIADB_COMPRESSED_FIRST {
            self.on_query(&plain, ev, conn).await
        } else {
            self.on_rows(&plain, ev)
        }
    }

    /// An event this reader does not know: skipped when the server marked
    /// it as safe to skip (e.g. Amazon Aurora's padding, type 100), refused
    /// otherwise.
    fn on_unknown(&mut self, ev: &Placed) -> Result<Option<SourceItem>, SourceError> {
        if ev.flags & FL_IGNORABLE != 0 {
            return Ok(self.skip(ev));
        }
        Err(SourceError::Definite(format!(
            "unknown binlog event type {} at {}; refusing to skip it since it may carry rows",
            ev.ty, ev.start
        )))
    }

    /// ROTATE: a streamed one names the next file; in a file, a real one
    /// ends it.
    fn on_rotate(&mut self, event: &Event, ev: &Placed) -> Result<Option<SourceItem>, SourceError> {
        let re: RotateEvent<'_> = event.read_event().map_err(|e| bad(&ev.start, ev.ty, e))?;
        if let EventAt::File { .. } = ev.at {
            // A file keeps its own name and offsets; a real rotation
            // (log_pos ≠ 0; relay logs also hold the upstream's
            // artificial ones) ends it and restarts table ids.
            self.advance(ev);
            if ev.header_log_pos != 0 {
                return Ok(self.close_file(ev.timestamp));
            }
            return Ok(None);
        }
        let mut name = re.name_raw().to_vec();
        if ev.log_pos == 0 && !self.fde_seen && self.opts.checksum && name.len() > 4 {
            // the artificial first ROTATE arrives before the format
            // description, so its body still holds the checksum
            name.truncate(name.len() - 4);
        }
        let name = String::from_utf8(name).map_err(|_| {
            SourceError::Definite(format!(
                "ROTATE at {} names a file that is not UTF-8",
                ev.start
            ))
        })?;
        self.file = name;
        self.pos = Position::new(self.file.clone(), re.position().max(4));
        if ev.log_pos != 0 {
            return Ok(self.close_file(ev.timestamp));
        }
        Ok(None)
    }

    /// A real rotation closes the file: table ids restart, and outside a
    /// transaction it is a boundary.
    fn close_file(&mut self, timestamp: u32) -> Option<SourceItem> {
        self.tables.clear();
        self.tmes.clear();
        self.txn.is_none().then(|| self.boundary(timestamp))
    }

    fn on_format_description(&mut self, ev: &Placed) -> Result<Option<SourceItem>, SourceError> {
        self.fde_seen = true;
        self.advance(ev);
        Ok(self.idle_boundary(ev.log_pos, ev.timestamp))
    }

    /// QUERY: BEGIN, COMMIT, ROLLBACK, savepoints inside a transaction, XA
    /// statements, and DDL outside a transaction.
    async fn on_query(
        &mut self,
        event: &Event,
        ev: &Placed,
        conn: Option<&mut Conn>,
    ) -> Result<Option<SourceItem>, SourceError> {
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
            "COMMIT" => Ok(Some(self.commit(end_pos, ev.timestamp))),
            "XA" => self.on_xa_query(&q, ev, end_pos),
            "ROLLBACK" if is_rollback_to(&q) => self.on_rollback_to(&q, ev, conn).await,
            "ROLLBACK" => self.on_rollback(ev, conn).await,
            "SAVEPOINT" | "RELEASE" if open => {
                let rows = self.txn.as_ref().map_or(0, Vec::len);
                match savepoint_name(&q) {
                    Some(name) if word == "SAVEPOINT" => self.savepoints.set(&name, rows),
                    Some(name) => self.savepoints.release(&name),
                    None => {
                        return Err(SourceError::Definite(format!(
                            "cannot read the savepoint name in {:?} at {}",
                            truncate(&q, 200),
                            ev.start
                        )))
                    }
                }
                Ok(None)
            }
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
                self.tmes.clear();
                Ok(Some(self.boundary(ev.timestamp)))
            }
        }
    }

    /// `ROLLBACK`: the transaction's rows are dropped, except those of
    /// non-transactional tables, which persisted on the source (see
    /// [`super::rollback`]).
    async fn on_rollback(
        &mut self,
        ev: &Placed,
        conn: Option<&mut Conn>,
    ) -> Result<Option<SourceItem>, SourceError> {
        let rows = self.txn.take().unwrap_or_default();
        let kept = self.persisted(rows, ev, conn).await?;
        let end = self.pos.clone();
        Ok(Some(self.finish(kept, end, ev.timestamp)))
    }

    /// `ROLLBACK TO savepoint`: the rows after the savepoint are dropped,
    /// except those of non-transactional tables.
    async fn on_rollback_to(
        &mut self,
        q: &str,
        ev: &Placed,
        conn: Option<&mut Conn>,
    ) -> Result<Option<SourceItem>, SourceError> {
        let Some(rows) = self.txn.as_mut() else {
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
        let undone = rows.split_off(keep.min(rows.len()));
        let kept = self.persisted(undone, ev, conn).await?;
        self.txn.get_or_insert_with(Vec::new).extend(kept);
        Ok(None)
    }

    /// Of rolled-back rows, those that persisted on the source: the rows
    /// of non-transactional tables, with a warning naming each table.
    async fn persisted(
        &mut self,
        rows: Vec<RowChange>,
        ev: &Placed,
        conn: Option<&mut Conn>,
    ) -> Result<Vec<RowChange>, SourceError> {
        if rows.is_empty() {
            return Ok(rows);
        }
        let (kept, undone) = self.engines.persisted(rows, conn).await?;
        let mut tables: Vec<String> = kept.iter().map(|c| c.table.full_name()).collect();
        tables.sort();
        tables.dedup();
        for table in tables {
            tracing::warn!(position = %ev.start, table = %table, "rows of a non-transactional table in a rolled-back transaction persisted on the source; applying them");
        }
        if !undone.is_empty() {
            tracing::info!(position = %ev.start, rows = undone.len(), "rows rolled back on the source are not applied");
        }
        Ok(kept)
    }

    /// `XA START`, `XA END`, `XA COMMIT`, `XA ROLLBACK` (see [`super::xa`]).
    fn on_xa_query(
        &mut self,
        q: &str,
        ev: &Placed,
        end_pos: Position,
    ) -> Result<Option<SourceItem>, SourceError> {
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
                let open = self.txn.take().unwrap_or_default();
                if rest.starts_with("ONE") {
                    return Ok(Some(self.finish(open, end_pos, ev.timestamp)));
                }
                match self.prepared.commit(&x, &end_pos) {
                    Some(mut held) => {
                        held.changes.extend(open);
                        Ok(Some(self.finish(held.changes, end_pos, ev.timestamp)))
                    }
                    None => Err(SourceError::Definite(format!(
                        "XA COMMIT {x} at {}: reshard never read its XA PREPARE, which must be before where this stream started ({}), so the transaction's rows are neither in the targets nor in the stream. Re-seed the targets (run without a checkpoint: the copy waits until `XA RECOVER` lists nothing) or stream --from a position before its XA PREPARE",
                        ev.start, self.started
                    ))),
                }
            }
            "ROLLBACK" => {
                let (x, _) = xid()?;
                if let Some(held) = self.prepared.rollback(&x) {
                    tracing::info!(position = %ev.start, xid = %x, rows = held.changes.len(), "XA ROLLBACK: the prepared rows are not applied");
                }
                self.txn = None;
                Ok(Some(self.boundary(ev.timestamp)))
            }
            // XA END inside the transaction; nothing else changes rows
            _ if self.txn.is_some() => Ok(None),
            _ => Ok(Some(self.boundary(ev.timestamp))),
        }
    }

    fn on_xid(&mut self, event: &Event, ev: &Placed) -> Result<Option<SourceItem>, SourceError> {
        let _: XidEvent = event.read_event().map_err(|e| bad(&ev.start, ev.ty, e))?;
        self.advance(ev);
        let end_pos = self.end_position();
        Ok(Some(self.commit(end_pos, ev.timestamp)))
    }

    /// TABLE_MAP: the schema of a mapped table (completed from
    /// information_schema when the event has no column names), or a note
    /// that the table is filtered out.
    async fn on_table_map(
        &mut self,
        event: &Event,
        ev: &Placed,
        conn: Option<&mut Conn>,
    ) -> Result<Option<SourceItem>, SourceError> {
        let tme: TableMapEvent<'_> = event.read_event().map_err(|e| bad(&ev.start, ev.ty, e))?;
        let db = tme.database_name().into_owned();
        let table = tme.table_name().into_owned();
        let schema = if (self.opts.filter)(&db, &table) {
            let (mut schema, has_names) = from_table_map(&tme).map_err(SourceError::Schema)?;
            if !has_names {
                schema = self.name_columns(schema, &ev.start, conn).await?;
            }
            Some(Arc::new(schema))
        } else {
            let full = format!("{db}.{table}");
            if self.ignored_logged.insert(full.clone()) {
                tracing::info!(table = %full, "no shard rule for this table; its changes are ignored");
            }
            None
        };
        let id = tme.table_id();
        if schema.is_some() {
            self.tmes.insert(id, tme.into_owned());
        } else {
            self.tmes.remove(&id);
        }
        self.tables.insert(id, schema);
        self.advance(ev);
        Ok(None)
    }

    /// Names the columns of a TABLE_MAP without names: from the schema
    /// history at the event's position when there is one, else from
    /// information_schema now (`conn`), else by position.
    async fn name_columns(
        &mut self,
        mut schema: TableSchema,
        at: &Position,
        conn: Option<&mut Conn>,
    ) -> Result<TableSchema, SourceError> {
        if let Some(h) = &self.history {
            let (catalog, valid_from) = h.catalog_at(&schema.db, &schema.table, at)?;
            let table = (schema.db.clone(), schema.table.clone());
            return complete_with(schema, catalog).map_err(|e| {
                SourceError::Schema(h.mismatch(e, (&table.0, &table.1), at, valid_from))
            });
        }
        match conn {
            Some(conn) => Ok(self.cache.complete(conn, schema).await?),
            None => {
                positional_names(&mut schema);
                Ok(schema)
            }
        }
    }

    /// WRITE/UPDATE/DELETE rows (v1 and v2).
    fn on_rows(&mut self, event: &Event, ev: &Placed) -> Result<Option<SourceItem>, SourceError> {
        if self.txn.is_none() {
            self.implicit = true;
        }
        let stmt_end = self.rows(event, ev.start.clone(), ev.inner)?;
        self.advance(ev);
        if stmt_end && self.implicit && self.txn.is_some() && !ev.inner {
            // rows outside BEGIN…COMMIT (non-transactional tables on MySQL
            // 5.1): the end of the statement commits them
            self.implicit = false;
            let end_pos = self.end_position();
            return Ok(Some(self.commit(end_pos, ev.timestamp)));
        }
        Ok(None)
    }

    /// TRANSACTION_PAYLOAD (MySQL binlog_transaction_compression): its
    /// inner events follow.
    fn on_payload(&mut self, ev: &Placed) -> Result<Option<SourceItem>, SourceError> {
        self.payload = Some(Payload {
            start: ev.start.clone(),
            end: ev.log_pos,
            rows: 0,
        });
        Ok(None)
    }

    /// HEARTBEAT (v1, v2): the source is idle at its current position,
    /// which a checkpoint may hold unless a transaction is open or an XA
    /// transaction is prepared.
    fn heartbeat(&self) -> SourceItem {
        let idle = self.txn.is_none() && self.prepared.is_empty();
        SourceItem::Heartbeat(idle.then(|| self.pos.clone()))
    }

    /// XA_PREPARE_LOG: ends an XA transaction's PREPARE group, whose rows
    /// are held until its XA COMMIT or XA ROLLBACK; or, with `one_phase`
    /// (MySQL's `XA COMMIT … ONE PHASE`), commits it.
    fn on_xa_prepare(
        &mut self,
        event: &Event,
        ev: &Placed,
    ) -> Result<Option<SourceItem>, SourceError> {
        let (one_phase, x) =
            Xid::from_prepare_log(event.data()).map_err(|e| SourceError::Decode {
                position: ev.start.clone(),
                message: e.to_string(),
            })?;
        self.advance(ev);
        let end = self.end_position();
        if one_phase {
            return Ok(Some(self.commit(end, ev.timestamp)));
        }
        if let Some(open) = self.open_xa.as_ref().filter(|o| **o != x) {
            tracing::warn!(position = %ev.start, started = %open, prepared = %x, "XA PREPARE names another xid than the transaction's start; holding its rows under the PREPARE's");
        }
        let changes = self.txn.take().unwrap_or_default();
        tracing::info!(position = %ev.start, xid = %x, rows = changes.len(), "XA PREPARE: rows held until its XA COMMIT or XA ROLLBACK");
        let held = Held {
            start: self.last_end.clone(),
            prepared_at: ev.start.clone(),
            changes,
        };
        self.prepared
            .prepare(x, held)
            .map_err(|e| SourceError::Definite(e.to_string()))?;
        Ok(Some(self.finish(Vec::new(), end, ev.timestamp)))
    }

    /// MariaDB GTID: begins a transaction unless standalone (DDL).
    fn on_mariadb_gtid(
        &mut self,
        event: &Event,
        ev: &Placed,
    ) -> Result<Option<SourceItem>, SourceError> {
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

    /// Events without rows: INTVAR, RAND, USER_VAR, STOP, IGNORABLE,
    /// ROWS_QUERY, GTIDs, TRANSACTION_CONTEXT, VIEW_CHANGE, MariaDB
    /// ANNOTATE_ROWS, and unknown ones marked ignorable.
    fn skip(&mut self, ev: &Placed) -> Option<SourceItem> {
        self.advance(ev);
        None
    }

    /// Statement-based LOAD DATA (APPEND_BLOCK, BEGIN_LOAD_QUERY,
    /// EXECUTE_LOAD_QUERY): like other statements, not replicated; with
    /// binlog_format=ROW the server logs rows instead.
    fn on_statement_load(&mut self, ev: &Placed) -> Option<SourceItem> {
        tracing::warn!(position = %ev.start, event_type = ev.ty, "statement-based LOAD DATA event; its changes are not replicated (use binlog_format=ROW)");
        self.skip(ev)
    }

    /// File-level events between transactions (PREVIOUS_GTIDS, MariaDB's
    /// BINLOG_CHECKPOINT, GTID_LIST, START_ENCRYPTION): their end is a
    /// boundary, so an idle source's checkpoint reaches the head.
    fn on_file_level(&mut self, ev: &Placed) -> Option<SourceItem> {
        self.advance(ev);
        self.idle_boundary(ev.log_pos, ev.timestamp)
    }

    /// Decodes a rows event into the open transaction; true if it ends its
    /// statement.
    fn rows(&mut self, event: &Event, start: Position, inner: bool) -> Result<bool, SourceError> {
        let data = event
            .read_data()
            .map_err(|e| bad(&start, event.header().event_type_raw(), e))?;
        let Some(EventData::RowsEvent(rows)) = data else {
            return Err(SourceError::Definite(format!(
                "rows event at {start} did not decode as rows"
            )));
        };
        let table_id = rows.table_id();
        let stmt_end = rows.flags().contains(RowsEventFlags::STMT_END);
        let schema = match self.tables.get(&table_id) {
            Some(Some(s)) => s.clone(),
            Some(None) => return Ok(stmt_end),
            None => {
                return Err(SourceError::Definite(format!(
                    "rows event at {start} refers to table id {table_id} without a preceding TABLE_MAP (stream resumed inside a transaction?)"
                )))
            }
        };
        let tme = self.tmes.get(&table_id).ok_or_else(|| {
            SourceError::Definite(format!(
                "rows event at {start}: table map {table_id} was not kept by the decoder"
            ))
        })?;
        let (base, mut index, span) = match (&self.payload, inner) {
            (Some(p), true) => (p.start.clone(), p.rows, p.end.saturating_sub(p.start.pos)),
            _ => (start.clone(), 0, u64::from(event.header().event_size())),
        };
        let txn = self.txn.get_or_insert_with(Vec::new);
        // every real row takes at least one byte (its null bitmap): a row of
        // no bytes (a damaged event whose images name no column) ends it
        for row in rows.rows(tme).take(rows.rows_data().len()) {
            let (before, after) = row.map_err(|e| SourceError::Decode {
                position: start.clone(),
                message: format!("{}: {e}", schema.full_name()),
            })?;
            let decode =
                |r: Option<mysql_common::binlog::row::BinlogRow>| -> Result<_, DecodeError> {
                    r.map(|r| decode_row(r, &schema)).transpose()
                };
            let before = decode(before).map_err(|e| SourceError::Decode {
                position: start.clone(),
                message: e.to_string(),
            })?;
            let after = decode(after).map_err(|e| SourceError::Decode {
                position: start.clone(),
                message: e.to_string(),
            })?;
            let version = Version::at(self.opts.epoch, &base, index).map_err(|e| {
                SourceError::Definite(format!(
                    "cannot version the row at {base} (row {index}): {e}"
                ))
            })?;
            index += 1;
            txn.push(RowChange {
                table: schema.clone(),
                before,
                after,
                version,
                position: base.clone(),
                span,
            });
        }
        if let (Some(p), true) = (self.payload.as_mut(), inner) {
            p.rows = index;
        }
        Ok(stmt_end)
    }

    /// Starts a transaction. A transaction still open with rows means its
    /// commit event never came: refuse rather than drop its rows.
    fn begin(&mut self, at: &Position) -> Result<(), SourceError> {
        if let Some(open) = &self.txn {
            if !open.is_empty() {
                return Err(SourceError::Definite(format!(
                    "a new transaction begins at {at} while {} row change(s) of the previous one never saw a commit event",
                    open.len()
                )));
            }
        }
        self.txn = Some(Vec::new());
        self.implicit = false;
        self.savepoints.clear();
        self.open_xa = None;
        Ok(())
    }

    /// Where a transaction committed now ends: after the payload when the
    /// commit came from inside one.
    fn end_position(&self) -> Position {
        match &self.payload {
            Some(p) => Position::new(self.file.clone(), p.end),
            None => self.pos.clone(),
        }
    }

    fn commit(&mut self, end: Position, timestamp: u32) -> SourceItem {
        let changes = self.txn.take().unwrap_or_default();
        self.finish(changes, end, timestamp)
    }

    /// Hands out `changes` as a transaction ending at `end` (a boundary),
    /// with the position a checkpoint may hold after it.
    fn finish(&mut self, changes: Vec<RowChange>, end: Position, timestamp: u32) -> SourceItem {
        self.pos = end.clone();
        self.last_end = end.clone();
        self.savepoints.clear();
        self.open_xa = None;
        SourceItem::Transaction(Transaction {
            changes,
            resume: self.prepared.resume(&end),
            end,
            timestamp,
        })
    }

    /// A boundary at the current position, when outside a transaction and
    /// the event had a real position.
    fn idle_boundary(&mut self, log_pos: u64, timestamp: u32) -> Option<SourceItem> {
        (self.txn.is_none() && self.payload.is_none() && log_pos > 0)
            .then(|| self.boundary(timestamp))
    }

    fn boundary(&mut self, timestamp: u32) -> SourceItem {
        let end = self.pos.clone();
        self.finish(Vec::new(), end, timestamp)
    }
}

/// Without FULL row metadata and without a connection to ask, columns can
/// only be named by position.
fn positional_names(schema: &mut TableSchema) {
    for (i, c) in schema.columns.iter_mut().enumerate() {
        c.name = format!("@{}", i + 1);
    }
    schema.origin = SchemaOrigin::Positional;
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

fn bad(at: &Position, ty: u8, e: std::io::Error) -> SourceError {
    SourceError::Decode {
        position: at.clone(),
        message: format!("event type {ty}: {e}"),
    }
}

/// `s` cut to at most `n` bytes (at a character boundary), for messages.
pub(super) fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

#[cfg(test)]
mod tests;
