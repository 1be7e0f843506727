//! The tailer: one replica connection streaming the source's binlog into
//! a [`Decoder`], which assembles the transactions (see
//! [`super::events`] for why the positions it reports are safe to resume
//! from).
//!
//! # A stream that went silent
//!
//! The tailer asks the source for a heartbeat every `heartbeat` period
//! of idleness, so a live stream never stays silent longer than that. A
//! source that vanished without closing the connection (a failover, a
//! dead host, a dropped NAT entry: a half-open connection) sends nothing
//! and no error either. So a stream with no event and no heartbeat for
//! [`stall_after`] (three heartbeat periods and a margin) is declared dead
//! with a transient error, and the attempt resumes from the checkpoint on
//! a new connection. The schema connection, idle between table look-ups,
//! and the schema history's control connection, idle between DDLs, are
//! pinged so that the servers' `wait_timeout` does not close them.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn};

use super::change::SourceItem;
pub use super::events::TableFilter;
use super::events::{Decoder, DecoderOptions, EventAt, Hold};
use super::history::SchemaHistory;
use super::schema::SchemaError;
use super::SourceError;
use crate::db::{self, DbError, Flavor};
use crate::position::Position;

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
    /// How large transactions are held and handed out.
    pub hold: Hold,
}

/// Streams committed transactions from a start position.
pub struct Tailer {
    stream: BinlogStream,
    schema_conn: Conn,
    decoder: Decoder,
    /// The heartbeat period asked for.
    heartbeat: Duration,
    /// How often the idle schema connection is pinged, and when it was.
    keepalive: Duration,
    schema_pinged: Instant,
}

/// How long a stream with the given heartbeat period may stay silent.
pub fn stall_after(heartbeat: Duration) -> Duration {
    heartbeat * 3 + Duration::from_secs(2)
}

/// A ping of the schema connection that takes longer means it is dead.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

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
        mut schema_conn: Conn,
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
        let stream = stream_conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| stream_error(e, &start))?;
        let decoder = Decoder::new(
            start,
            DecoderOptions {
                epoch: opts.epoch,
                checksum: opts.checksum,
                filter: opts.filter,
                hold: opts.hold,
            },
        );
        let keepalive = db::keepalive_interval(&mut schema_conn).await;
        Ok(Tailer {
            stream,
            schema_conn,
            decoder,
            heartbeat: opts.heartbeat,
            keepalive,
            schema_pinged: Instant::now(),
        })
    }

    /// The start of the next event.
    pub fn position(&self) -> &Position {
        self.decoder.position()
    }

    /// Decodes TABLE_MAPs without column names by the schema history
    /// (see [`super::history`]).
    pub fn set_history(&mut self, history: SchemaHistory) {
        self.decoder.set_history(history);
    }

    /// Hands the schema history back, e.g. to go on with it in a tailer
    /// reopened where this one left off.
    pub fn take_history(&mut self) -> Option<SchemaHistory> {
        self.decoder.take_history()
    }

    /// The next item: a chunk of a committed transaction's rows, the end
    /// of a transaction, or a heartbeat; an error when the stream stays
    /// silent too long (see the module docs).
    pub async fn next(&mut self) -> Result<SourceItem, SourceError> {
        let mut heard = Instant::now();
        loop {
            if let Some(item) = self.decoder.next_item()? {
                return Ok(item);
            }
            let ping = self.schema_pinged + self.keepalive;
            if Instant::now() >= ping {
                self.keep_alive().await?;
                continue;
            }
            let stalled = heard + stall_after(self.heartbeat);
            let next = tokio::select! {
                biased;
                next = self.stream.next() => next,
                _ = tokio::time::sleep_until(stalled.min(ping).into()) => {
                    if Instant::now() >= stalled {
                        return Err(self.stalled());
                    }
                    continue;
                }
            };
            heard = Instant::now();
            let event = match next {
                None => {
                    return Err(SourceError::Transient(format!(
                        "the source closed the binlog stream at {}",
                        self.decoder.position()
                    )))
                }
                Some(Err(e)) => return Err(stream_error(e, self.decoder.position())),
                Some(Ok(ev)) => ev,
            };
            self.decoder
                .handle(&event, EventAt::Stream, Some(&mut self.schema_conn))
                .await?;
        }
    }

    /// Pings the idle schema connection and the schema history's.
    async fn keep_alive(&mut self) -> Result<(), SourceError> {
        db::ping(&mut self.schema_conn, "source", PING_TIMEOUT).await?;
        if let Some(mut history) = self.decoder.take_history() {
            let pinged = history.keep_alive(PING_TIMEOUT).await;
            self.decoder.set_history(history);
            pinged?;
        }
        self.schema_pinged = Instant::now();
        Ok(())
    }

    fn stalled(&self) -> SourceError {
        SourceError::Transient(format!(
            "no binlog event and no heartbeat from the source for {}s at {} (heartbeats were asked for every {}s): the connection is presumed dead",
            stall_after(self.heartbeat).as_secs(),
            self.decoder.position(),
            self.heartbeat.as_secs(),
        ))
    }

    /// Closes the replica connection (and the history's).
    pub async fn close(mut self) {
        if let Some(h) = self.decoder.take_history() {
            h.close().await;
        }
        let _ = self.stream.close().await;
        let _ = self.schema_conn.disconnect().await;
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
    DbError::query("source", format!("reading the binlog at {at}"), e).into()
}

impl From<SchemaError> for SourceError {
    fn from(e: SchemaError) -> Self {
        SourceError::Schema(e)
    }
}
