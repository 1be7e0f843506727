//! The reader task: the binlog tailer of one attempt (or, for `replay
//! --binlog-dir`, the reader of archived files), forwarding its items to
//! the coordinator over a bounded channel so that reading overlaps
//! applying.
//!
//! # Why the stream survives a stall
//!
//! The channel is bounded (memory stays bounded under any backlog), so when
//! the targets apply slower than the source writes, the reader waits for
//! room. While it waits it does not read the socket, and the source, which
//! cannot write, drops the replica connection after its
//! `net_write_timeout` — a stalled shard or a very large transaction would
//! end the attempt without a drain. Two things prevent that:
//!
//! * The stream session asks for a `net_write_timeout` of at least ten
//!   minutes. (A socket becomes writable again only once a good part of
//!   its buffer was read, so a reader that keeps reading, but slowly, can
//!   run into the timeout too.)
//! * The reader never waits for room longer than half that timeout (at
//!   most 30 s): past that it closes the stream itself, waits for room as
//!   long as it takes (nothing is open that could time out), and then opens
//!   a new stream where the last forwarded item ended. This also holds
//!   where the server ignores the session's timeout.
//!
//! That is safe because the new stream starts where a checkpoint after the
//! last forwarded item would resume (a transaction's `resume` position, or
//! a heartbeat's position outside a transaction): a transaction boundary,
//! the same place a restart resumes from (`docs/architecture.md`,
//! "Checkpoint watermark"). That is the item's end, or, while an XA
//! transaction is prepared, the start of its PREPARE group, read again so
//! that the decoder holds its rows once more. Items the new stream repeats
//! up to the end of the last forwarded one are dropped, and so are the
//! chunks of rows forwarded after it (of a large transaction the pause cut
//! through: the decoder cuts the same rows into the same chunks on every
//! read), so the coordinator sees the same sequence as without the pause:
//! nothing skipped, nothing twice. The reopened tailer goes
//! on with the same schema history ([`crate::source::history`]): its
//! records are keyed by position and never change, so reading a DDL again
//! records nothing new.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use tokio::sync::mpsc::{self, error::SendTimeoutError, error::TrySendError};

use super::{Attempt, PipelineError};
use crate::config::Endpoint;
use crate::db::{self, DbError, Flavor, Session};
use crate::metrics::board::ReaderBlocked;
use crate::position::Position;
use crate::source::archive::{ArchiveReader, ArchiveSource};
use crate::source::history::SchemaHistory;
use crate::source::{
    DecoderOptions, Hold, SourceError, SourceItem, StartAt, TableFilter, Tailer, TailerOptions,
};
use crate::task::Background;

/// Source items as the reader forwards them.
pub(super) type SourceRx = mpsc::Receiver<Result<SourceItem, SourceError>>;

/// Items the channel holds before the reader waits for room. An item is
/// at most one chunk of `stream_chunk_rows` row changes, so this bounds
/// the decoded rows between the reader and the coordinator.
const CHANNEL: usize = 16;

/// Never wait for room longer than this, whatever the source's timeout.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// The least `net_write_timeout` asked of the stream session.
const SERVER_PATIENCE: Duration = Duration::from_secs(600);

/// Everything needed to open (and reopen) the stream.
struct SourceSpec {
    endpoint: Endpoint,
    budget: Duration,
    server_id: u32,
    epoch: u16,
    heartbeat: Duration,
    flavor: Flavor,
    checksum: bool,
    filter: TableFilter,
    hold: Hold,
}

impl SourceSpec {
    /// Opens a tailer at `at`; also returns how long the reader may wait
    /// for room before the source could drop the stream.
    async fn open(&self, at: StartAt) -> Result<(Tailer, Duration), SourceError> {
        let mut stream_conn = db::connect(&self.endpoint, Session::Read, self.budget).await?;
        let schema_conn = db::connect(&self.endpoint, Session::Read, self.budget).await?;
        let patience = write_patience(&mut stream_conn).await?;
        let opts = TailerOptions {
            server_id: self.server_id,
            epoch: self.epoch,
            heartbeat: self.heartbeat,
            flavor: self.flavor,
            checksum: self.checksum,
            filter: self.filter.clone(),
            hold: self.hold.clone(),
        };
        let tailer = Tailer::open(stream_conn, schema_conn, at, opts).await?;
        Ok((tailer, patience))
    }
}

/// Raises the stream session's `net_write_timeout` to at least
/// [`SERVER_PATIENCE`] (the source then waits that long for a reader that
/// reads slowly or not at all), and returns how long the reader may wait
/// for room: half the session's timeout, at most [`MAX_WAIT`].
async fn write_patience(conn: &mut mysql_async::Conn) -> Result<Duration, DbError> {
    let raise = format!(
        "SET SESSION net_write_timeout = GREATEST(@@SESSION.net_write_timeout, {})",
        SERVER_PATIENCE.as_secs()
    );
    if let Err(e) = conn.query_drop(&raise).await {
        tracing::debug!(error = %e, "cannot raise net_write_timeout of the binlog stream");
    }
    let timeout: Option<u64> = conn
        .query_first("SELECT @@SESSION.net_write_timeout")
        .await
        .map_err(|e| DbError::query("source", "reading net_write_timeout", e))?;
    Ok(Duration::from_secs(timeout.unwrap_or(60) / 2).clamp(Duration::from_millis(500), MAX_WAIT))
}

/// Opens the binlog tailer on the router's tables and starts the reader
/// task. A source that cannot be opened fails the attempt here.
pub(super) async fn start(a: &Attempt<'_>) -> Result<(SourceRx, Background), PipelineError> {
    let cfg = a.cfg;
    let wanted: HashSet<(String, String)> = a
        .router
        .rules()
        .map(|r| (r.source_db.clone(), r.source_table.clone()))
        .collect();
    let filter: TableFilter =
        Arc::new(move |d: &str, t: &str| wanted.contains(&(d.to_string(), t.to_string())));
    if let Some(archive) = &a.archive {
        return start_archive(a, archive, filter).await;
    }
    let spec = SourceSpec {
        endpoint: cfg.source.clone(),
        budget: cfg.pipeline.connect_timeout,
        server_id: cfg.server_id,
        epoch: cfg.pipeline.epoch,
        heartbeat: cfg.pipeline.heartbeat,
        flavor: a.flavor,
        checksum: a.checksum,
        filter,
        hold: cfg.pipeline.hold.clone(),
    };
    let (mut tailer, patience) = spec.open(a.start.clone()).await?;
    let at = match &a.start {
        StartAt::Position(p) => Some(p),
        StartAt::Gtid(_) => None,
    };
    tailer.set_history(super::open_history(cfg, a.router, at, a.command).await?);
    let (tx, rx) = mpsc::channel(CHANNEL);
    let task = Background::spawn(forward(spec, tailer, patience, a.start.clone(), tx));
    Ok((rx, task))
}

/// Reads archived binlog files from a task of its own, like the tailer
/// ([`crate::source::archive`]); a read past the last file is an error
/// unless `stop_at` ended the attempt first. (Files cannot time out: no
/// pause is needed.)
async fn start_archive(
    a: &Attempt<'_>,
    archive: &ArchiveSource,
    filter: TableFilter,
) -> Result<(SourceRx, Background), PipelineError> {
    let cfg = a.cfg;
    let StartAt::Position(start) = &a.start else {
        return Err(SourceError::Definite(
            "archived binlogs are read from a position (--from FILE:POS), not a GTID set".into(),
        )
        .into());
    };
    let schema_conn = if archive.schemas_from_source {
        Some(db::connect(&cfg.source, Session::Read, cfg.pipeline.connect_timeout).await?)
    } else {
        None
    };
    let opts = DecoderOptions {
        epoch: cfg.pipeline.epoch,
        checksum: false,
        filter,
        hold: cfg.pipeline.hold.clone(),
    };
    let mut reader = ArchiveReader::new(archive.archive.clone(), start.clone(), opts, schema_conn);
    // DDL is judged by on_ddl as on a live stream; the columns at `start`
    // are recorded from the source when it is reachable
    let at = archive.schemas_from_source.then_some(start);
    reader.watch_ddl(super::open_history(cfg, a.router, at, a.command).await?);
    let (tx, rx) = mpsc::channel(CHANNEL);
    let task = Background::spawn(async move {
        loop {
            let item = match reader.next().await {
                Ok(Some(item)) => Ok(item),
                Ok(None) => Err(SourceError::Definite(
                    "the archived binlog files end before the replay's end position".into(),
                )),
                Err(e) => Err(e),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
        close_history(reader.take_history()).await;
    });
    Ok((rx, task))
}

/// The resume position and end of an item that is a boundary: where a
/// checkpoint after it may resume (its end, or the start of a PREPARE group
/// still pending then, whose rows the decoder holds and a new stream must
/// read again), and where it ends.
fn boundary(item: &Result<SourceItem, SourceError>) -> Option<(Position, Position)> {
    match item {
        Ok(SourceItem::Transaction(t)) => Some((t.resume.clone(), t.end.clone())),
        Ok(SourceItem::Heartbeat(Some(p))) => Some((p.clone(), p.clone())),
        _ => None,
    }
}

/// What was forwarded: the last boundary (resume position and end), and
/// the chunks of rows forwarded since (of the transaction after it).
#[derive(Default)]
struct Forwarded {
    last: Option<(Position, Position)>,
    chunks: usize,
}

/// What kind of item was sent.
enum Sent {
    Boundary((Position, Position)),
    Rows,
    Other,
}

impl Sent {
    fn of(item: &Result<SourceItem, SourceError>) -> Sent {
        match (boundary(item), item) {
            (Some(b), _) => Sent::Boundary(b),
            (None, Ok(SourceItem::Rows(_))) => Sent::Rows,
            _ => Sent::Other,
        }
    }
}

impl Forwarded {
    fn record(&mut self, sent: Sent) {
        match sent {
            Sent::Boundary(b) => {
                self.last = Some(b);
                self.chunks = 0;
            }
            Sent::Rows => self.chunks += 1,
            Sent::Other => {}
        }
    }

    /// Where to reopen the stream: the last boundary's resume position.
    fn resume(&self, start: &StartAt) -> StartAt {
        match &self.last {
            Some((resume, _)) => StartAt::Position(resume.clone()),
            None => start.clone(),
        }
    }

    /// What the stream reopened at [`Forwarded::resume`] repeats:
    /// everything up to the last boundary's end, and the chunks forwarded
    /// since.
    fn repeats(&self) -> Option<Repeats> {
        (self.last.is_some() || self.chunks > 0).then(|| Repeats {
            limit: self.last.as_ref().map(|(_, end)| end.clone()),
            chunks: self.chunks,
        })
    }
}

/// Items of a reopened stream that were forwarded already.
struct Repeats {
    limit: Option<Position>,
    chunks: usize,
}

impl Repeats {
    /// Whether `item` was forwarded already; `None` once the new stream
    /// has passed everything forwarded.
    fn forwarded(&mut self, item: &Result<SourceItem, SourceError>) -> Option<bool> {
        let up_to = |end: &Position| self.limit.as_ref().is_some_and(|l| end <= l);
        match item {
            Ok(SourceItem::Rows(c)) if up_to(&c.end) => Some(true),
            Ok(SourceItem::Rows(_)) if self.chunks > 0 => {
                // chunks are the same on every read (same rows, same
                // limits)
                self.chunks -= 1;
                Some(true)
            }
            Ok(SourceItem::Rows(_)) => None,
            other => match boundary(other) {
                Some((_, end)) if up_to(&end) => Some(true),
                Some(_) => None,
                None => Some(false),
            },
        }
    }
}

/// Reads items and forwards them until the coordinator hangs up or an error
/// was forwarded; pauses the stream while the coordinator takes no item
/// (see the module docs).
async fn forward(
    spec: SourceSpec,
    mut tailer: Tailer,
    mut patience: Duration,
    start: StartAt,
    tx: mpsc::Sender<Result<SourceItem, SourceError>>,
) {
    let mut done = Forwarded::default();
    let mut repeats: Option<Repeats> = None;
    loop {
        let item = tailer.next().await;
        if let Some(r) = repeats.as_mut() {
            match r.forwarded(&item) {
                Some(true) => continue,
                Some(false) => {}
                None => repeats = None,
            }
        }
        let failed = item.is_err();
        let sent = Sent::of(&item);
        let (item, blocked) = match hand_over(&tx, item, patience).await {
            Handed::Done(true) if !failed => {
                done.record(sent);
                continue;
            }
            // an error was forwarded, or the coordinator is gone
            Handed::Done(_) => break,
            Handed::Waited(item, blocked) => (item, blocked),
        };
        // the coordinator is busy: stop reading before the source gives
        // up on us, and wait for room with nothing open (the schema
        // history goes on in the reopened tailer)
        let history = tailer.take_history();
        tailer.close().await;
        tracing::info!(
            waited_ms = patience.as_millis() as u64,
            "the targets are behind: binlog stream paused until the coordinator takes more"
        );
        if tx.send(item).await.is_err() || failed {
            close_history(history).await;
            return;
        }
        drop(blocked);
        done.record(sent);
        let at = done.resume(&start);
        match spec.open(at.clone()).await {
            Ok((mut t, p)) => {
                tracing::info!(at = %describe(&at), "binlog stream resumed");
                if let Some(h) = history {
                    t.set_history(h);
                }
                tailer = t;
                patience = p;
                repeats = done.repeats();
            }
            Err(e) => {
                close_history(history).await;
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
    tailer.close().await;
}

/// How an item was handed to the coordinator.
enum Handed {
    /// Taken (`true`), or the coordinator is gone (`false`).
    Done(bool),
    /// No room within the patience: the item back, and the guard that
    /// shows the reader blocked until it is dropped.
    Waited(Result<SourceItem, SourceError>, ReaderBlocked<'static>),
}

/// Hands `item` to the coordinator, waiting at most `patience` for room.
async fn hand_over(
    tx: &mpsc::Sender<Result<SourceItem, SourceError>>,
    item: Result<SourceItem, SourceError>,
    patience: Duration,
) -> Handed {
    // room at once (the common case): no timer, no clock read
    let item = match tx.try_send(item) {
        Ok(()) => return Handed::Done(true),
        Err(TrySendError::Closed(_)) => return Handed::Done(false),
        Err(TrySendError::Full(item)) => item,
    };
    let blocked = crate::metrics::global().board.reader_blocked();
    match tx.send_timeout(item, patience).await {
        Ok(()) => Handed::Done(true),
        Err(SendTimeoutError::Closed(_)) => Handed::Done(false),
        Err(SendTimeoutError::Timeout(item)) => Handed::Waited(item, blocked),
    }
}

async fn close_history(history: Option<SchemaHistory>) {
    if let Some(h) = history {
        h.close().await;
    }
}

fn describe(at: &StartAt) -> String {
    match at {
        StartAt::Position(p) => p.to_string(),
        StartAt::Gtid(g) => format!("GTID {g}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{Chunk, Transaction};

    fn pos(n: u64) -> Position {
        Position::new("b.000001", n)
    }

    fn rows(end: u64) -> Result<SourceItem, SourceError> {
        Ok(SourceItem::Rows(Chunk {
            changes: Vec::new(),
            end: pos(end),
        }))
    }

    fn txn(resume: u64, end: u64) -> Result<SourceItem, SourceError> {
        Ok(SourceItem::Transaction(Transaction {
            end: pos(end),
            resume: pos(resume),
            timestamp: 0,
            rows: 0,
        }))
    }

    /// What a stream reopened after `sent` lets through of `again`.
    fn replay(
        sent: &[Result<SourceItem, SourceError>],
        again: &[Result<SourceItem, SourceError>],
    ) -> Vec<usize> {
        let mut done = Forwarded::default();
        for item in sent {
            done.record(Sent::of(item));
        }
        let mut repeats = done.repeats();
        let mut through = Vec::new();
        for (i, item) in again.iter().enumerate() {
            if let Some(r) = repeats.as_mut() {
                match r.forwarded(item) {
                    Some(true) => continue,
                    Some(false) => {}
                    None => repeats = None,
                }
            }
            through.push(i);
        }
        through
    }

    #[test]
    fn a_pause_inside_a_large_transaction_skips_its_forwarded_chunks() {
        // T1 ends at 100; T2 (to 200) was cut after two of its chunks
        let sent = [rows(100), txn(100, 100), rows(200), rows(200)];
        let again = [
            rows(100),
            txn(100, 100),
            rows(200),
            rows(200),
            rows(200),
            txn(200, 200),
            rows(300),
        ];
        assert_eq!(replay(&sent, &again), [4, 5, 6]);
        let mut done = Forwarded::default();
        sent.iter().for_each(|i| done.record(Sent::of(i)));
        let at = done.resume(&StartAt::Gtid(String::new()));
        assert!(matches!(at, StartAt::Position(p) if p == pos(100)));
    }

    #[test]
    fn a_pause_before_any_boundary_skips_the_chunks_from_the_start() {
        let again = [rows(200), rows(200), txn(200, 200)];
        assert_eq!(replay(&[rows(200)], &again), [1, 2]);
    }

    #[test]
    fn a_held_xa_transaction_is_read_again_from_its_prepare() {
        // the PREPARE group (50..100) is held: T2's resume stays at 50, and
        // the reopened stream repeats T2 before the COMMIT's chunks
        let sent = [txn(50, 100), txn(50, 200), rows(300)];
        let again = [
            txn(50, 100),
            Ok(SourceItem::Heartbeat(None)),
            txn(50, 200),
            rows(300),
            rows(300),
            txn(300, 300),
        ];
        assert_eq!(replay(&sent, &again), [1, 4, 5]);
    }
}
