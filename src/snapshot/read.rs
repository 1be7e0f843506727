//! The copy's readers: `snapshot_readers` source connections, each taking
//! the next unit ([`super::plan::Unit`]) from a shared queue and reading
//! it in keyset pages, in key order, into one bounded channel.
//!
//! A unit is read by one reader from start to end, so its pages reach the
//! channel in key order; the dispatcher ([`super::dispatch`]) relies on
//! that to move the unit's saved cursor forward only. Each page is a
//! statement of its own that starts after P was taken (module docs of
//! [`super`]). The channel holds two pages per reader: readers wait while
//! the lanes are behind, so memory stays bounded.
//!
//! A reader reads on a connection of reshard's own ([`crate::db::wire`])
//! unless `protocol = "driver"` or the connection needs what only
//! the driver speaks (TLS, other authentication): then on the driver's
//! ([`Source`]). Both run the same statement and yield the same values.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mysql_async::Conn;
use mysql_common::value::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::{Config, Protocol};
use crate::db::wire::WireConn;
use crate::db::{self, DbError, Session};
use crate::source::rows::TableReader;

/// One page of a unit.
pub struct Page {
    /// Index of the unit in the plan.
    pub unit: usize,
    pub rows: Vec<Vec<Value>>,
    /// The key of the page's last row (the unit's cursor once applied).
    pub cursor: Option<Vec<Value>>,
    /// The unit's last page.
    pub finished: bool,
}

/// A unit as a reader walks it.
pub struct Work {
    pub unit: usize,
    pub reader: Arc<TableReader>,
    pub cursor: Option<Vec<Value>>,
    pub upper: Option<Vec<Value>>,
}

/// The reader tasks and their pages.
pub struct Readers {
    pub tasks: JoinSet<Result<(), DbError>>,
    pub pages: mpsc::Receiver<Page>,
}

/// Starts the readers over `work`, in its order.
pub fn start(cfg: &Config, work: Vec<Work>) -> Readers {
    let p = &cfg.pipeline;
    let n = p.snapshot_readers.clamp(1, work.len().max(1));
    let queue = Arc::new(Mutex::new(VecDeque::from(work)));
    let (tx, pages) = mpsc::channel(2 * n);
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        tasks.spawn(read(
            cfg.clone(),
            queue.clone(),
            tx.clone(),
            p.snapshot_chunk_rows,
        ));
    }
    Readers { tasks, pages }
}

/// One reader: units from the queue until it is empty.
async fn read(
    cfg: Config,
    queue: Arc<Mutex<VecDeque<Work>>>,
    tx: mpsc::Sender<Page>,
    chunk: usize,
) -> Result<(), DbError> {
    let next = || queue.lock().ok().and_then(|mut q| q.pop_front());
    let Some(mut work) = next() else {
        return Ok(());
    };
    let mut conn = Source::connect(&cfg).await?;
    loop {
        if !read_unit(&mut conn, &mut work, &tx, chunk).await? {
            break;
        }
        match next() {
            Some(w) => work = w,
            None => break,
        }
    }
    conn.close().await;
    Ok(())
}

/// A reader's source connection.
enum Source {
    Wire(Box<WireConn>),
    Driver(Conn),
}

/// Whether a reader said why it reads through the driver (once a run).
static SAID_DRIVER: AtomicBool = AtomicBool::new(false);

impl Source {
    /// A connection of our own when the configuration lets it and the
    /// server speaks what it does, else the driver's.
    async fn connect(cfg: &Config) -> Result<Source, DbError> {
        let budget = cfg.pipeline.connect_timeout;
        if cfg.pipeline.protocol == Protocol::Wire {
            match WireConn::connect(&cfg.source, Session::Write, budget).await {
                Ok(c) => return Ok(Source::Wire(Box::new(c))),
                Err(e) => {
                    if !SAID_DRIVER.swap(true, Ordering::Relaxed) {
                        tracing::info!(server = %cfg.source.name, reason = %e, "the copy reads through the driver");
                    }
                }
            }
        }
        Ok(Source::Driver(
            db::connect(&cfg.source, Session::Write, budget).await?,
        ))
    }

    async fn page(&mut self, work: &Work, chunk: usize) -> Result<Vec<Vec<Value>>, DbError> {
        let (lo, hi) = (work.cursor.as_deref(), work.upper.as_deref());
        match self {
            Source::Wire(c) => work.reader.page_wire(c, lo, hi, chunk).await,
            Source::Driver(c) => work.reader.page(c, lo, hi, chunk).await,
        }
    }

    async fn close(self) {
        match self {
            Source::Wire(c) => c.close().await,
            Source::Driver(c) => {
                let _ = c.disconnect().await;
            }
        }
    }
}

/// Reads one unit to its end; `false` when the dispatcher is gone.
async fn read_unit(
    conn: &mut Source,
    work: &mut Work,
    tx: &mpsc::Sender<Page>,
    chunk: usize,
) -> Result<bool, DbError> {
    loop {
        let rows = conn.page(work, chunk).await?;
        if let Some(last) = rows.last() {
            work.cursor = Some(work.reader.key_of(last));
        }
        let finished = rows.len() < chunk;
        let page = Page {
            unit: work.unit,
            rows,
            cursor: work.cursor.clone(),
            finished,
        };
        if tx.send(page).await.is_err() {
            return Ok(false);
        }
        if finished {
            return Ok(true);
        }
    }
}
