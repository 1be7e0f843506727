//! The binlog event state machine shared by the live tailer
//! ([`super::stream`]) and the offline readers ([`super::file`],
//! [`super::archive`]): it turns parsed events into committed
//! transactions of decoded row changes.
//!
//! # How items come out
//!
//! [`Decoder::handle`] takes one event; [`Decoder::next_item`] then hands
//! out what it produced until it returns `None`: a committed transaction's
//! rows in chunks of at most `chunk_rows` row changes (whole rows events
//! at a time; [`SourceItem::Rows`]), decoded only as each chunk is taken,
//! then its [`SourceItem::Transaction`]; or a boundary or a heartbeat. The
//! rows of a group are held, as raw rows events, until its outcome is read
//! ([`super::spool`]: in memory up to a budget, in a temporary file
//! beyond it), so memory stays bounded however large a transaction is.
//!
//! # Why the positions it reports are safe to resume from
//!
//! A transaction's `end` is the position right after its commit event
//! (XID, or a `COMMIT` query for non-transactional tables), which is the
//! start of the next event and never inside a transaction. Rows are only
//! handed out once their transaction's commit was read. Rows the source rolled back
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

mod groups;
mod tables;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use mysql_async::Conn;
use mysql_common::binlog::consts::{EventType, UnknownEventType};
use mysql_common::binlog::events::{Event, RotateEvent};

use super::change::{Chunk, SourceItem, Transaction};
use super::history::SchemaHistory;
use super::rollback::{Engines, Savepoints};
use super::schema::SchemaCache;
use super::spool::{Budget, Mapped, Mark, Release, Spool};
use super::xa::{Prepared, Xid};
use super::{checksum, SourceError};
use crate::position::Position;

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
    /// How held rows are kept and handed out.
    pub hold: Hold,
}

/// How the rows of event groups are held until their outcome and handed
/// out after it (see [`super::spool`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Bytes of rows events all held groups keep in memory together
    /// (the open one and every prepared XA transaction); beyond, a group
    /// moves to a temporary file.
    pub memory: usize,
    /// Where those files go (the system's temporary directory by default).
    pub dir: Option<PathBuf>,
    /// Row changes per chunk handed out (whole rows events, so a chunk may
    /// hold one event's rows more).
    pub chunk_rows: usize,
    /// Bytes of rows events per chunk.
    pub chunk_bytes: usize,
}

impl Default for Hold {
    fn default() -> Self {
        Hold {
            memory: 64 << 20,
            dir: None,
            chunk_rows: 100,
            chunk_bytes: 1 << 20,
        }
    }
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

/// What an event produced, for [`Decoder::next_item`].
enum Out {
    Item(SourceItem),
    /// A committed transaction's rows, then the transaction.
    Release(Box<Release>, Transaction),
}

/// What an event handler returns.
type Step = Result<Option<Out>, SourceError>;

/// Assembles committed transactions from binlog events.
pub struct Decoder {
    cache: SchemaCache,
    /// The schema history: when set, DDL is recorded and judged by the
    /// DDL policy, and (with `names_by_history`) TABLE_MAPs without column
    /// names are decoded with the columns of their position.
    history: Option<SchemaHistory>,
    names_by_history: bool,
    opts: DecoderOptions,
    file: String,
    /// The current file's name and sequence, shared by its rows.
    file_id: Option<(Arc<str>, u32)>,
    /// Start of the next event (what a checkpoint may hold).
    pos: Position,
    fde_seen: bool,
    /// Mapped tables by table id (`None`: filtered out).
    tables: HashMap<u64, Option<Arc<Mapped>>>,
    /// Mapped tables by their TABLE_MAP without the table id: a table's
    /// TABLE_MAP repeats in every transaction, and its schema and layout
    /// are only read once (until the next DDL).
    maps: HashMap<Vec<u8>, Option<Arc<Mapped>>>,
    ignored_logged: HashSet<String>,
    /// The rows of the open event group.
    txn: Option<Spool>,
    /// The open transaction was begun by a rows event, not BEGIN or a GTID.
    implicit: bool,
    payload: Option<Payload>,
    /// Savepoints of the open transaction.
    savepoints: Savepoints<Mark>,
    /// Which tables are transactional, for rolled-back rows.
    engines: Engines,
    /// The xid of the open transaction, when it is an XA one.
    open_xa: Option<Xid>,
    /// Prepared XA transactions whose outcome is still to come.
    prepared: Prepared<Spool>,
    /// End of the last transaction or boundary handed out: where the event
    /// group being read began.
    last_end: Position,
    /// Where this decoder started reading.
    started: Position,
    /// The memory held rows may take (shared by every held group).
    budget: Budget,
    /// What the last event produced and [`Decoder::next_item`] hands out.
    out: Option<Out>,
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
        let budget = Budget::new(opts.hold.memory, opts.hold.dir.clone());
        Decoder {
            cache: SchemaCache::default(),
            history: None,
            names_by_history: false,
            opts,
            file: start.file.clone(),
            file_id: None,
            pos: start.clone(),
            fde_seen: false,
            tables: HashMap::new(),
            maps: HashMap::new(),
            ignored_logged: HashSet::new(),
            txn: None,
            implicit: false,
            payload: None,
            savepoints: Savepoints::default(),
            engines: Engines::default(),
            open_xa: None,
            prepared: Prepared::default(),
            last_end: start.clone(),
            started: start,
            budget,
            out: None,
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
        self.names_by_history = true;
    }

    /// Records DDL in the schema history and judges it by its DDL policy,
    /// but names the columns of TABLE_MAPs without names as without a
    /// history (information_schema, else by position): archived files
    /// ([`super::archive`]) may predate everything the history knows.
    pub fn watch_ddl(&mut self, history: SchemaHistory) {
        self.history = Some(history);
        self.names_by_history = false;
    }

    /// Hands the schema history back (to close its connection).
    pub fn take_history(&mut self) -> Option<SchemaHistory> {
        self.history.take()
    }

    /// Row changes seen since the last commit, if a transaction is open.
    pub fn open_rows(&self) -> Option<usize> {
        self.txn.as_ref().map(|s| s.rows() as usize)
    }

    /// Prepared XA transactions whose XA COMMIT or XA ROLLBACK has not
    /// been read yet.
    pub fn prepared_xa(&self) -> usize {
        self.prepared.len()
    }

    /// Bytes of held rows events in memory now (all groups).
    pub fn held_memory(&self) -> usize {
        self.budget.used()
    }

    /// Where a checkpoint may resume now: the end of the last transaction
    /// handed out, unless that is after an XA PREPARE still pending or
    /// between the PREPARE and the COMMIT of a committed one; then the
    /// start of that PREPARE group (see [`super::xa`]).
    pub fn resume_position(&self) -> Position {
        self.prepared.peek(&self.last_end)
    }

    /// Handles one event; then take what it produced with
    /// [`Decoder::next_item`] until that returns `None`, before the next
    /// event. `conn` serves information_schema look-ups for TABLE_MAPs
    /// without column names; without one, columns are named by position
    /// (`@1`, `@2`…, origin [`super::schema::SchemaOrigin::Positional`]).
    pub async fn handle(
        &mut self,
        event: &Event,
        at: EventAt,
        conn: Option<&mut Conn>,
    ) -> Result<(), SourceError> {
        if self.out.is_some() {
            return Err(SourceError::Definite(format!(
                "decoder: an event at {} was handed in before the items of the previous one were taken",
                self.pos
            )));
        }
        crate::metrics::global().event_read(event.header().event_type_raw());
        let ev = self.place(event, at)?;
        self.out = match event.header().event_type() {
            Ok(ty) => self.dispatch(ty, event, &ev, conn).await?,
            Err(UnknownEventType(raw)) => self.on_unlisted(raw, event, &ev, conn).await?,
        };
        Ok(())
    }

    /// The next item the last event produced: a chunk of a committed
    /// transaction's rows (decoded now), the transaction after its last
    /// chunk, a boundary or a heartbeat; `None` when there is nothing
    /// (more).
    pub fn next_item(&mut self) -> Result<Option<SourceItem>, SourceError> {
        let (mut rows, txn) = match self.out.take() {
            None => return Ok(None),
            Some(Out::Item(item)) => return Ok(Some(item)),
            Some(Out::Release(rows, txn)) => (rows, txn),
        };
        let hold = &self.opts.hold;
        let changes = rows.chunk(hold.chunk_rows, hold.chunk_bytes)?;
        if changes.is_empty() {
            return Ok(Some(SourceItem::Transaction(txn)));
        }
        let end = txn.end.clone();
        self.out = Some(if rows.remaining() {
            Out::Release(rows, txn)
        } else {
            Out::Item(SourceItem::Transaction(txn))
        });
        Ok(Some(SourceItem::Rows(Chunk { changes, end })))
    }

    /// Handles an event of a type mysql_common lists.
    async fn dispatch(
        &mut self,
        ty: EventType,
        event: &Event,
        ev: &Placed,
        conn: Option<&mut Conn>,
    ) -> Step {
        use EventType::*;
        match ty {
            ROTATE_EVENT => self.on_rotate(event, ev),
            FORMAT_DESCRIPTION_EVENT => self.on_format_description(ev),
            QUERY_EVENT => self.on_query(event, ev, conn).await,
            XID_EVENT => self.on_xid(event, ev),
            TABLE_MAP_EVENT => self.on_table_map(event, ev, conn).await,
            WRITE_ROWS_EVENT_V1 | UPDATE_ROWS_EVENT_V1 | DELETE_ROWS_EVENT_V1 | WRITE_ROWS_EVENT
            | UPDATE_ROWS_EVENT | DELETE_ROWS_EVENT => self.on_rows(event, ev),
            TRANSACTION_PAYLOAD_EVENT => self.on_payload(ev),
            HEARTBEAT_EVENT => Ok(Some(self.heartbeat())),
            XA_PREPARE_LOG_EVENT => self.on_xa_prepare(event, ev),
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
                Ok(self.skip(ev))
            }
            APPEND_BLOCK_EVENT | BEGIN_LOAD_QUERY_EVENT | EXECUTE_LOAD_QUERY_EVENT => {
                Ok(self.on_statement_load(ev))
            }
            PREVIOUS_GTIDS_EVENT => Ok(self.on_file_level(ev)),
            UNKNOWN_EVENT | LOAD_EVENT | SLAVE_EVENT | CREATE_FILE_EVENT | EXEC_LOAD_EVENT
            | DELETE_FILE_EVENT | NEW_LOAD_EVENT | ENUM_END_EVENT => self.on_unknown(ev),
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
    ) -> Step {
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
    ) -> Step {
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
    fn on_unknown(&mut self, ev: &Placed) -> Step {
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
    fn on_rotate(&mut self, event: &Event, ev: &Placed) -> Step {
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
    fn close_file(&mut self, timestamp: u32) -> Option<Out> {
        self.tables.clear();
        self.txn.is_none().then(|| self.boundary(timestamp))
    }

    fn on_format_description(&mut self, ev: &Placed) -> Step {
        self.fde_seen = true;
        self.advance(ev);
        Ok(self.idle_boundary(ev.log_pos, ev.timestamp))
    }

    /// HEARTBEAT (v1, v2): the source is idle at its current position,
    /// which a checkpoint may hold unless a transaction is open or an XA
    /// transaction is prepared.
    fn heartbeat(&self) -> Out {
        let idle = self.txn.is_none() && self.prepared.is_empty();
        Out::Item(SourceItem::Heartbeat(idle.then(|| self.pos.clone())))
    }

    /// Events without rows: INTVAR, RAND, USER_VAR, STOP, IGNORABLE,
    /// ROWS_QUERY, GTIDs, TRANSACTION_CONTEXT, VIEW_CHANGE, MariaDB
    /// ANNOTATE_ROWS, and unknown ones marked ignorable.
    fn skip(&mut self, ev: &Placed) -> Option<Out> {
        self.advance(ev);
        None
    }

    /// Statement-based LOAD DATA (APPEND_BLOCK, BEGIN_LOAD_QUERY,
    /// EXECUTE_LOAD_QUERY): like other statements, not replicated; with
    /// binlog_format=ROW the server logs rows instead.
    fn on_statement_load(&mut self, ev: &Placed) -> Option<Out> {
        tracing::warn!(position = %ev.start, event_type = ev.ty, "statement-based LOAD DATA event; its changes are not replicated (use binlog_format=ROW)");
        self.skip(ev)
    }

    /// File-level events between transactions (PREVIOUS_GTIDS, MariaDB's
    /// BINLOG_CHECKPOINT, GTID_LIST, START_ENCRYPTION): their end is a
    /// boundary, so an idle source's checkpoint reaches the head.
    fn on_file_level(&mut self, ev: &Placed) -> Option<Out> {
        self.advance(ev);
        self.idle_boundary(ev.log_pos, ev.timestamp)
    }

    /// Hands out `rows` (none for a boundary) as a transaction ending at
    /// `end` (a boundary), with the position a checkpoint may hold after
    /// it.
    fn finish(
        &mut self,
        rows: Option<Spool>,
        end: Position,
        timestamp: u32,
    ) -> Result<Out, SourceError> {
        self.pos = end.clone();
        self.last_end = end.clone();
        self.savepoints.clear();
        self.open_xa = None;
        let txn = Transaction {
            resume: self.prepared.resume(&end),
            end,
            timestamp,
            rows: rows.as_ref().map_or(0, Spool::rows),
        };
        Ok(match rows.filter(|r| !r.is_empty()) {
            Some(rows) => Out::Release(Box::new(rows.release(self.opts.epoch)?), txn),
            None => Out::Item(SourceItem::Transaction(txn)),
        })
    }

    /// A boundary at the current position, when outside a transaction and
    /// the event had a real position.
    fn idle_boundary(&mut self, log_pos: u64, timestamp: u32) -> Option<Out> {
        (self.txn.is_none() && self.payload.is_none() && log_pos > 0)
            .then(|| self.boundary(timestamp))
    }

    fn boundary(&mut self, timestamp: u32) -> Out {
        self.pos.clone_into(&mut self.last_end);
        self.savepoints.clear();
        self.open_xa = None;
        Out::Item(SourceItem::Transaction(Transaction {
            resume: self.prepared.resume(&self.pos),
            end: self.pos.clone(),
            timestamp,
            rows: 0,
        }))
    }
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
