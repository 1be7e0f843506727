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
//! A page holds at most `snapshot_chunk_rows` rows, and about
//! [`PAGE_BYTES`] of them: a unit's first page asks for [`FIRST_ROWS`],
//! and each next one for twice as many as the last, or for fewer when the
//! last page's rows were wide ([`next_limit`]). So the rows the copy holds
//! — a few pages per reader and the pages waiting for their lanes — are
//! bounded in bytes too, whatever the width of a table's rows.
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

/// About how many bytes of rows a page holds at most (one row more when a
/// single row is wider).
const PAGE_BYTES: usize = 4 << 20;

/// Rows asked for by a unit's first page: a wide table's first page is
/// not `snapshot_chunk_rows` of its rows.
const FIRST_ROWS: usize = 64;

/// The rows to ask for in the page after one of `rows` rows and `bytes`
/// bytes asked for with `limit`: twice `limit`, at most `chunk`, and at
/// most what fits [`PAGE_BYTES`] at the page's average row width, as a
/// power of two (each limit is a statement of its own, prepared once per
/// connection: a few of them per table). At least 1.
fn next_limit(chunk: usize, limit: usize, rows: usize, bytes: usize) -> usize {
    let grown = limit.saturating_mul(2).min(chunk).max(1);
    if rows == 0 {
        return grown;
    }
    let width = (bytes / rows).max(1);
    let fits = (PAGE_BYTES / width).max(1);
    if fits >= grown {
        grown
    } else {
        // the largest power of two that fits
        1 << fits.ilog2()
    }
}

/// About the memory a row of values holds.
fn row_bytes(row: &[Value]) -> usize {
    let heap: usize = row
        .iter()
        .map(|v| match v {
            Value::Bytes(b) => b.len(),
            _ => 0,
        })
        .sum();
    heap + std::mem::size_of_val(row)
}

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
    let mut limit = FIRST_ROWS.min(chunk).max(1);
    loop {
        let rows = conn.page(work, limit).await?;
        if let Some(last) = rows.last() {
            work.cursor = Some(work.reader.key_of(last));
        }
        // a page shorter than it asked for is the unit's last
        let finished = rows.len() < limit;
        let bytes = rows.iter().map(|r| row_bytes(r)).sum();
        limit = next_limit(chunk, limit, rows.len(), bytes);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_rows_grow_the_page_to_the_chunk() {
        let mut limit = FIRST_ROWS;
        let mut seen = Vec::new();
        while limit < 1000 {
            limit = next_limit(1000, limit, limit, limit * 100);
            seen.push(limit);
        }
        assert_eq!(seen, [128, 256, 512, 1000]);
        assert_eq!(next_limit(1000, 1000, 1000, 100_000), 1000);
        assert_eq!(next_limit(7, 4, 4, 400), 7, "never above the chunk");
    }

    #[test]
    fn wide_rows_shrink_the_page_to_what_fits_its_bytes() {
        let mib = 1 << 20;
        // 64 rows of 1 MiB: 4 fit
        assert_eq!(next_limit(1000, 64, 64, 64 * mib), 4);
        // 300 KiB rows: 13 fit, asked as 8
        assert_eq!(next_limit(1000, 64, 64, 64 * 300 * 1024), 8);
        // one row wider than a page: one row a page
        assert_eq!(next_limit(1000, 1, 1, 64 * mib), 1);
        // rows narrowing again: the page grows back by doubling
        assert_eq!(next_limit(1000, 1, 1, 100), 2);
        // the last page (no rows): grows as for narrow rows
        assert_eq!(next_limit(1000, 8, 0, 0), 16);
    }
}
