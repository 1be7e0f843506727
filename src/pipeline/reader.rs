//! The reader task: the binlog tailer of one attempt, forwarding its items
//! to the coordinator over a bounded channel so that reading overlaps
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
//! That is safe because every item ends at a transaction boundary (a
//! transaction's `end`, or a heartbeat's position outside a transaction),
//! exactly what a checkpoint names and what the stream is resumed from
//! after a restart (`docs/architecture.md`, "Checkpoint watermark"). The
//! half-read transaction the old stream held is dropped and read again
//! whole; nothing is skipped or forwarded twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use tokio::sync::mpsc::{self, error::SendTimeoutError};

use super::{Attempt, PipelineError};
use crate::config::Endpoint;
use crate::db::{self, DbError, Flavor, Session};
use crate::source::{SourceError, SourceItem, StartAt, TableFilter, Tailer, TailerOptions};
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
    let (tailer, patience) = spec.open(a.start.clone()).await?;
    let (tx, rx) = mpsc::channel(CHANNEL);
    let task = Background::spawn(forward(spec, tailer, patience, a.start.clone(), tx));
    Ok((rx, task))
}

/// Where the stream resumes after `item` was forwarded, when it names a
/// boundary.
fn boundary(item: &Result<SourceItem, SourceError>) -> Option<StartAt> {
    match item {
        Ok(SourceItem::Transaction(t)) => Some(StartAt::Position(t.end.clone())),
        Ok(SourceItem::Heartbeat(Some(p))) => Some(StartAt::Position(p.clone())),
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
    mut resume: StartAt,
    tx: mpsc::Sender<Result<SourceItem, SourceError>>,
) {
    loop {
        let item = tailer.next().await;
        let failed = item.is_err();
        let next = boundary(&item);
        let item = match tx.send_timeout(item, patience).await {
            Ok(()) => None,
            Err(SendTimeoutError::Closed(_)) => break,
            Err(SendTimeoutError::Timeout(item)) => Some(item),
        };
        if let Some(item) = item {
            // the coordinator is busy: stop reading before the source
            // gives up on us, and wait for room with nothing open
            tailer.close().await;
            tracing::info!(
                waited_ms = patience.as_millis() as u64,
                "the targets are behind: binlog stream paused until the coordinator takes more"
            );
            if tx.send(item).await.is_err() || failed {
                return;
            }
            if let Some(n) = next {
                resume = n;
            }
            match spec.open(resume.clone()).await {
                Ok((t, p)) => {
                    tracing::info!(at = %describe(&resume), "binlog stream resumed");
                    tailer = t;
                    patience = p;
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
            continue;
        }
        if failed {
            break;
        }
        if let Some(n) = next {
            resume = n;
        }
    }
    tailer.close().await;
}

fn describe(at: &StartAt) -> String {
    match at {
        StartAt::Position(p) => p.to_string(),
        StartAt::Gtid(g) => format!("GTID {g}"),
    }
}
