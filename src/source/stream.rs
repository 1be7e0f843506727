//! The tailer: one replica connection streaming the source's binlog.
//!
//! # Why the positions it reports are safe to resume from
//!
//! A transaction's `end` is the position right after its commit event
//! (XID, or a `COMMIT` query for non-transactional tables), which is the
//! start of the next event and never inside a transaction. Rows are only
//! handed out when their transaction commits; a transaction that ends in
//! `ROLLBACK` is dropped whole. DDL and rotations are boundaries of their
//! own. So a checkpoint taken at any `end` resumes at a transaction
//! boundary, which is the only place the server accepts (ER 1236 or orphan
//! rows events otherwise).
//!
//! Versions come from the position of the rows event (or of the compressed
//! payload that holds it) and the row's index in it, so replaying the same
//! range yields the same versions (see [`crate::version`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn};
use mysql_common::binlog::events::{Event, EventData, QueryEvent, RotateEvent, TableMapEvent};

use super::change::{RowChange, SourceItem, Transaction};
use super::decode::{decode_row, DecodeError};
use super::schema::{from_table_map, SchemaCache, SchemaError, TableSchema};
use super::{checksum, SourceError};
use crate::db::{DbError, Flavor};
use crate::position::Position;
use crate::version::Version;

/// Decides which source tables are decoded (`db`, `table`).
pub type TableFilter = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Where a tailer starts.
#[derive(Debug, Clone)]
pub enum StartAt {
    Position(Position),
    /// A GTID set in the source's own syntax.
    Gtid(String),
}

/// Settings of a tailer.
pub struct TailerOptions {
    pub server_id: u32,
    pub epoch: u16,
    pub heartbeat: Duration,
    pub flavor: Flavor,
    pub checksum: bool,
    pub filter: TableFilter,
}

struct Payload {
    start: Position,
    end: u64,
    rows: u64,
}

/// Streams committed transactions from a start position.
pub struct Tailer {
    stream: BinlogStream,
    schema_conn: Conn,
    cache: SchemaCache,
    opts: TailerOptions,
    file: String,
    /// Start of the next event (what a checkpoint may hold).
    pos: Position,
    fde_seen: bool,
    tables: HashMap<u64, Option<Arc<TableSchema>>>,
    ignored_logged: HashSet<String>,
    txn: Option<Vec<RowChange>>,
    payload: Option<Payload>,
}

const FL_STANDALONE: u8 = 1;

impl Tailer {
    /// Registers as a replica on `stream_conn` and requests the binlog from
    /// `start`. `schema_conn` serves information_schema look-ups.
    pub async fn start(
        stream_conn: Conn,
        schema_conn: Conn,
        start: Position,
        opts: TailerOptions,
    ) -> Result<Tailer, SourceError> {
        Self::open(stream_conn, schema_conn, StartAt::Position(start), opts).await
    }

    /// Like [`Tailer::start`], from a position or a GTID set: MariaDB
    /// `domain-server-seq[,…]` (resumes after those transactions) or a MySQL
    /// GTID set `uuid:1-5[,…]` (streams what is not in the set).
    pub async fn open(
        mut stream_conn: Conn,
        schema_conn: Conn,
        at: StartAt,
        opts: TailerOptions,
    ) -> Result<Tailer, SourceError> {
        let ns = opts
            .heartbeat
            .as_nanos()
            .min(u128::from(u32::MAX) * 1_000_000);
        let mut setup = vec![format!("SET @master_heartbeat_period = {ns}")];
        if opts.flavor == Flavor::MariaDb {
            // Without this MariaDB replaces GTID/GTID_LIST/ANNOTATE events
            // with dummies, and transactions lose their GTID boundaries.
            setup.push("SET @mariadb_slave_capability = 4".into());
        }
        for s in setup {
            stream_conn
                .query_drop(&s)
                .await
                .map_err(|e| DbError::query("source", s.clone(), e))?;
        }
        let (start, request) = match &at {
            StartAt::Position(p) => (
                p.clone(),
                BinlogStreamRequest::new(opts.server_id)
                    .with_filename(p.file.as_bytes())
                    .with_pos(p.pos),
            ),
            StartAt::Gtid(set) if opts.flavor == Flavor::MariaDb => {
                if !set.split(',').all(|g| {
                    let parts: Vec<&str> = g.trim().split('-').collect();
                    parts.len() == 3
                        && parts
                            .iter()
                            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                }) {
                    return Err(SourceError::Definite(format!(
                        "--from-gtid {set:?}: a MariaDB GTID position is domain-server-seq[,domain-server-seq…], e.g. 0-1-100"
                    )));
                }
                stream_conn
                    .exec_drop("SET @slave_connect_state = ?", (set.as_str(),))
                    .await
                    .map_err(|e| DbError::query("source", "SET @slave_connect_state", e))?;
                (
                    Position::new("", 4),
                    BinlogStreamRequest::new(opts.server_id).with_pos(4),
                )
            }
            StartAt::Gtid(set) => {
                let mut sids = Vec::new();
                for part in set.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let sid: mysql_common::packets::Sid<'static> = part.parse().map_err(|e| {
                        SourceError::Definite(format!(
                            "--from-gtid: {part:?} is not a MySQL GTID set element (uuid:1-5): {e}"
                        ))
                    })?;
                    sids.push(sid);
                }
                (
                    Position::new("", 4),
                    BinlogStreamRequest::new(opts.server_id)
                        .with_gtid()
                        .with_gtid_set(sids)
                        .with_pos(4),
                )
            }
        };
        let file = start.file.clone();
        let stream = stream_conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| stream_error(e, &start))?;
        Ok(Tailer {
            stream,
            schema_conn,
            cache: SchemaCache::default(),
            opts,
            file,
            pos: start,
            fde_seen: false,
            tables: HashMap::new(),
            ignored_logged: HashSet::new(),
            txn: None,
            payload: None,
        })
    }

    /// The start of the next event.
    pub fn position(&self) -> &Position {
        &self.pos
    }

    /// The next committed transaction or heartbeat.
    pub async fn next(&mut self) -> Result<SourceItem, SourceError> {
        loop {
            let event = match self.stream.next().await {
                None => {
                    return Err(SourceError::Transient(format!(
                        "the source closed the binlog stream at {}",
                        self.pos
                    )))
                }
                Some(Err(e)) => return Err(stream_error(e, &self.pos)),
                Some(Ok(ev)) => ev,
            };
            if let Some(item) = self.handle(event).await? {
                return Ok(item);
            }
        }
    }

    async fn handle(&mut self, event: Event) -> Result<Option<SourceItem>, SourceError> {
        let h = event.header();
        let ty = h.event_type_raw();
        let log_pos = u64::from(h.log_pos());
        let size = u64::from(h.event_size());

        // Inner events of a compressed transaction payload carry no usable
        // position of their own: they are versioned by the payload's start.
        let inner = match &self.payload {
            Some(p) => log_pos == 0 || log_pos <= p.end,
            None => false,
        };
        if !inner {
            self.payload = None;
        }
        let start = if inner || log_pos == 0 {
            self.pos.clone()
        } else {
            Position::new(self.file.clone(), log_pos.saturating_sub(size))
        };

        if let Some((expected, actual)) = checksum::mismatch(&event) {
            return Err(SourceError::Checksum {
                position: start,
                event_type: ty,
                expected,
                actual,
            });
        }
        let advance = |this: &mut Self| {
            if !inner && log_pos > 0 {
                this.pos = Position::new(this.file.clone(), log_pos);
            }
        };

        match ty {
            // ROTATE
            4 => {
                let re: RotateEvent<'_> = event.read_event().map_err(|e| self.bad(&start, ty, e))?;
                let mut name = re.name_raw().to_vec();
                if log_pos == 0 && !self.fde_seen && self.opts.checksum && name.len() > 4 {
                    // the artificial first ROTATE arrives before the format
                    // description, so its body still holds the checksum
                    name.truncate(name.len() - 4);
                }
                let name = String::from_utf8(name).map_err(|_| SourceError::Definite(format!("ROTATE at {start} names a file that is not UTF-8")))?;
                self.file = name;
                self.pos = Position::new(self.file.clone(), re.position().max(4));
                if log_pos != 0 {
                    // a real rotation closes the file; tables ids restart
                    self.tables.clear();
                    if self.txn.is_none() {
                        return Ok(Some(self.boundary(h.timestamp())));
                    }
                }
                Ok(None)
            }
            // FORMAT_DESCRIPTION
            15 => {
                self.fde_seen = true;
                advance(self);
                Ok(self.idle_boundary(log_pos, h.timestamp()))
            }
            // QUERY
            2 => {
                let qe: QueryEvent<'_> = event.read_event().map_err(|e| self.bad(&start, ty, e))?;
                let q = qe.query();
                let word = q.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                advance(self);
                let end_pos = self.end_position();
                match word.as_str() {
                    "BEGIN" => {
                        self.begin(&start)?;
                        Ok(None)
                    }
                    "COMMIT" => Ok(Some(self.commit(end_pos, h.timestamp()))),
                    "ROLLBACK" if !q.to_ascii_uppercase().contains(" TO ") => {
                        if let Some(rows) = self.txn.take() {
                            if !rows.is_empty() {
                                tracing::warn!(position = %start, rows = rows.len(), "transaction ended in ROLLBACK; its rows are not applied");
                            }
                        }
                        Ok(Some(self.boundary(h.timestamp())))
                    }
                    _ if self.txn.is_some() => Ok(None), // SAVEPOINT and friends
                    _ => {
                        // DDL: schemas may have changed
                        tracing::info!(position = %start, query = %truncate(&q, 200), "DDL on the source; schema cache dropped");
                        self.cache.invalidate();
                        self.tables.clear();
                        Ok(Some(self.boundary(h.timestamp())))
                    }
                }
            }
            // XID
            16 => {
                advance(self);
                let end_pos = self.end_position();
                Ok(Some(self.commit(end_pos, h.timestamp())))
            }
            // TABLE_MAP
            19 => {
                let tme: TableMapEvent<'_> = event.read_event().map_err(|e| self.bad(&start, ty, e))?;
                let db = tme.database_name().into_owned();
                let table = tme.table_name().into_owned();
                let schema = if (self.opts.filter)(&db, &table) {
                    let (schema, has_names) = from_table_map(&tme).map_err(SourceError::Schema)?;
                    let schema = if has_names {
                        schema
                    } else {
                        self.cache
                            .complete(&mut self.schema_conn, schema)
                            .await
                            .map_err(SourceError::Schema)?
                    };
                    Some(Arc::new(schema))
                } else {
                    let full = format!("{db}.{table}");
                    if self.ignored_logged.insert(full.clone()) {
                        tracing::info!(table = %full, "no shard rule for this table; its changes are ignored");
                    }
                    None
                };
                self.tables.insert(tme.table_id(), schema);
                advance(self);
                Ok(None)
            }
            // WRITE/UPDATE/DELETE rows v1 and v2
            23 | 24 | 25 | 30 | 31 | 32 => {
                self.rows(&event, start, inner)?;
                advance(self);
                Ok(None)
            }
            // TRANSACTION_PAYLOAD (MySQL binlog_transaction_compression)
            40 => {
                self.payload = Some(Payload {
                    start: start.clone(),
                    end: log_pos,
                    rows: 0,
                });
                Ok(None)
            }
            // MariaDB GTID: begins a transaction unless standalone (DDL)
            162 => {
                let flags = event.data().get(12).copied().unwrap_or(0);
                if flags & FL_STANDALONE == 0 {
                    self.begin(&start)?;
                }
                advance(self);
                Ok(None)
            }
            // HEARTBEAT (v1, v2): the source is idle at its current position
            27 | 41 => Ok(Some(SourceItem::Heartbeat(
                self.txn.is_none().then(|| self.pos.clone()),
            ))),
            20..=22 => Err(SourceError::Definite(format!(
                "pre-GA rows event (type {ty}) at {start}: binlogs of MySQL 5.1.15 and older are not supported"
            ))),
            39 => Err(SourceError::Definite(format!(
                "partial JSON update event at {start}: set binlog_row_value_options='' on the source"
            ))),
            165..=171 => Err(SourceError::Definite(format!(
                "MariaDB compressed binlog event (type {ty}) at {start}: set log_bin_compress=OFF on the source; reshard cannot decode compressed events"
            ))),
            // events without rows: INTVAR, RAND, USER_VAR, STOP, IGNORABLE,
            // ROWS_QUERY, GTIDs, PREVIOUS_GTIDS, TRANSACTION_CONTEXT,
            // VIEW_CHANGE, XA_PREPARE, MariaDB ANNOTATE_ROWS,
            // BINLOG_CHECKPOINT, GTID_LIST, START_ENCRYPTION
            // XA PREPARE: the transaction's rows are in the binlog now, but
            // it commits (or rolls back) later with an `XA COMMIT` query.
            // Applying them now could apply a rollback; dropping them would
            // lose a commit. Refuse rather than guess.
            38 => {
                if self.txn.as_ref().is_some_and(|t| !t.is_empty()) {
                    return Err(SourceError::Definite(format!(
                        "XA PREPARE at {start} holds rows of mapped tables; XA transactions are not supported yet (their commit comes later as `XA COMMIT`). Avoid XA on mapped tables"
                    )));
                }
                self.txn = None;
                advance(self);
                Ok(self.idle_boundary(log_pos, h.timestamp()))
            }
            1 | 3 | 5 | 13 | 14 | 28 | 29 | 33 | 34 | 36 | 37 | 42 | 160 => {
                advance(self);
                Ok(None)
            }
            // file-level events between transactions: their end is a
            // boundary, so an idle source's checkpoint reaches the head
            35 | 161 | 163 | 164 => {
                advance(self);
                Ok(self.idle_boundary(log_pos, h.timestamp()))
            }
            _ => Err(SourceError::Definite(format!(
                "unknown binlog event type {ty} at {start}; refusing to skip it since it may carry rows"
            ))),
        }
    }

    fn rows(&mut self, event: &Event, start: Position, inner: bool) -> Result<(), SourceError> {
        let data = event
            .read_data()
            .map_err(|e| self.bad(&start, event.header().event_type_raw(), e))?;
        let Some(EventData::RowsEvent(rows)) = data else {
            return Err(SourceError::Definite(format!(
                "rows event at {start} did not decode as rows"
            )));
        };
        let table_id = rows.table_id();
        let schema = match self.tables.get(&table_id) {
            Some(Some(s)) => s.clone(),
            Some(None) => return Ok(()),
            None => {
                return Err(SourceError::Definite(format!(
                    "rows event at {start} refers to table id {table_id} without a preceding TABLE_MAP (stream resumed inside a transaction?)"
                )))
            }
        };
        let tme = self.stream.get_tme(table_id).ok_or_else(|| {
            SourceError::Definite(format!(
                "rows event at {start}: table map {table_id} was not kept by the decoder"
            ))
        })?;
        let (base, mut index) = match (&self.payload, inner) {
            (Some(p), true) => (p.start.clone(), p.rows),
            _ => (start.clone(), 0),
        };
        let txn = self.txn.get_or_insert_with(Vec::new);
        for row in rows.rows(tme) {
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
            });
        }
        if let (Some(p), true) = (self.payload.as_mut(), inner) {
            p.rows = index;
        }
        Ok(())
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
        self.pos = end.clone();
        SourceItem::Transaction(Transaction {
            changes: self.txn.take().unwrap_or_default(),
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
        SourceItem::Transaction(Transaction {
            changes: Vec::new(),
            end: self.pos.clone(),
            timestamp,
        })
    }

    fn bad(&self, at: &Position, ty: u8, e: std::io::Error) -> SourceError {
        SourceError::Decode {
            position: at.clone(),
            message: format!("event type {ty}: {e}"),
        }
    }

    /// Closes the replica connection.
    pub async fn close(self) {
        let _ = self.stream.close().await;
        let _ = self.schema_conn.disconnect().await;
    }
}

fn truncate(s: &str, n: usize) -> String {
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

/// Maps a stream error: ER 1236 (purged or invalid position) is definite
/// and says what to do; connection losses are transient.
fn stream_error(e: mysql_async::Error, at: &Position) -> SourceError {
    if let mysql_async::Error::Server(s) = &e {
        if s.code == 1236 {
            return SourceError::Unavailable {
                position: at.clone(),
                message: s.message.clone(),
            };
        }
    }
    let err = DbError::query("source", format!("reading the binlog at {at}"), e);
    if err.is_transient() {
        SourceError::Transient(err.to_string())
    } else {
        SourceError::Definite(err.to_string())
    }
}

impl From<SchemaError> for SourceError {
    fn from(e: SchemaError) -> Self {
        SourceError::Schema(e)
    }
}
