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
//! up to the end of the last forwarded one are dropped, so the coordinator
//! sees the same sequence as without the pause: nothing skipped, nothing
//! twice. The reopened tailer goes
//! on with the same schema history ([`crate::source::history`]): its
//! records are keyed by position and never change, so reading a DDL again
//! records nothing new.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use tokio::sync::mpsc::{self, error::SendTimeoutError};

use super::{Attempt, PipelineError};
use crate::config::Endpoint;
use crate::db::{self, DbError, Flavor, Session};
use crate::position::Position;
use crate::source::archive::{ArchiveReader, ArchiveSource};
use crate::source::history::SchemaHistory;
use crate::source::{
    DecoderOptions, SourceError, SourceItem, StartAt, TableFilter, Tailer, TailerOptions,
};
use crate::task::Background;

/// Source items as the reader forwards them.
pub(super) type SourceRx = mpsc::Receiver<Result<SourceItem, SourceError>>;

/// Items the channel holds before the reader waits for room.
const CHANNEL: usize = 64;

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
    };
    let (mut tailer, patience) = spec.open(a.start.clone()).await?;
    let at = match &a.start {
        StartAt::Position(p) => Some(p),
        StartAt::Gtid(_) => None,
    };
    tailer.set_history(super::open_history(cfg, a.router, at).await?);
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
    };
    let mut reader = ArchiveReader::new(archive.archive.clone(), start.clone(), opts, schema_conn);
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
    // the last forwarded boundary: where to reopen, and up to where a
    // reopened stream repeats what was forwarded already
    let mut last: Option<(Position, Position)> = None;
    let mut repeats: Option<Position> = None;
    loop {
        let item = tailer.next().await;
        let b = boundary(&item);
        if let (Some(limit), Some((_, end))) = (&repeats, &b) {
            if end <= limit {
                continue;
            }
            repeats = None;
        }
        let failed = item.is_err();
        let blocked = crate::metrics::global().board.reader_blocked();
        let pending = match tx.send_timeout(item, patience).await {
            Ok(()) => None,
            Err(SendTimeoutError::Closed(_)) => break,
            Err(SendTimeoutError::Timeout(item)) => Some(item),
        };
        if let Some(item) = pending {
            // the coordinator is busy: stop reading before the source
            // gives up on us, and wait for room with nothing open (the
            // schema history goes on in the reopened tailer)
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
            last = b.or(last);
            let at = match &last {
                Some((resume, _)) => StartAt::Position(resume.clone()),
                None => start.clone(),
            };
            match spec.open(at.clone()).await {
                Ok((mut t, p)) => {
                    tracing::info!(at = %describe(&at), "binlog stream resumed");
                    if let Some(h) = history {
                        t.set_history(h);
                    }
                    tailer = t;
                    patience = p;
                    repeats = last.as_ref().map(|(_, end)| end.clone());
                }
                Err(e) => {
                    close_history(history).await;
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
            continue;
        }
        drop(blocked);
        if failed {
            break;
        }
        last = b.or(last);
    }
    tailer.close().await;
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
