//! The rows of an event group whose outcome is not known yet, held as the
//! raw rows events (the most compact form there is) until the group
//! commits, rolls back, or — for an XA PREPARE group — its `XA COMMIT` or
//! `XA ROLLBACK` comes.
//!
//! # Why rows are held until the outcome
//!
//! A server writes most transactions to its binlog only once they commit,
//! but not all: a transaction that also wrote a non-transactional table or
//! created a temporary table is written with its transactional rows and a
//! closing `ROLLBACK` when it rolls back, and the rows between a
//! `SAVEPOINT` and a `ROLLBACK TO` it stay in a group that commits (see
//! [`super::rollback`]); nothing at the start of such a group tells it
//! apart. An XA PREPARE group ends in a PREPARE whose outcome comes later.
//! A row handed to the lanes before its group's outcome is known could be
//! one the source rolled back, and a versioned write cannot be taken back.
//! So rows are handed out only after the outcome, and the memory that
//! costs is bounded here instead (see `docs/architecture.md`, "Large
//! transactions").
//!
//! # Bounded memory
//!
//! Every spool of a decoder shares one [`Budget`]: while the bytes held in
//! memory by all of them (the open group and every prepared XA
//! transaction) stay under its limit, a spool keeps its events in memory;
//! past it, the spool that grows moves to an unnamed temporary file in the
//! budget's directory (deleted by the system when it is closed, also after
//! a crash) and keeps at most [`WRITE_BUFFER`] bytes in memory from then
//! on. The events are decoded only when they are handed out, a bounded
//! chunk at a time ([`Release`]). A finished spool leaves its buffer (at
//! most 4 MiB) to the next one, so a stream of small transactions does not
//! allocate a new one each time.
//!
//! # Records
//!
//! Each rows event is one record: a fixed header (table, binlog file,
//! event type, where it starts, its row count and the index of its first
//! row, for versions) and the event body. A savepoint is a [`Mark`]: the
//! spool's length then. Records never straddle a mark, so `ROLLBACK TO`
//! truncates at it.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::change::RowChange;
use super::decode::{decode_error, Layout, RowsEvent};
use super::schema::TableSchema;
use crate::version::Version;

/// Bytes a spool that moved to its file keeps in memory before writing.
pub const WRITE_BUFFER: usize = 256 * 1024;

/// The largest buffer a finished spool leaves to the next one (so that a
/// stream of transactions does not grow a new buffer for each).
const MAX_SPARE: usize = 4 << 20;

/// A table as a TABLE_MAP described it: its schema and column layout.
#[derive(Debug)]
pub struct Mapped {
    pub schema: Arc<TableSchema>,
    pub layout: Layout,
}

/// A spool failure: the temporary file, or rows that do not decode.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot hold a large transaction's rows in a temporary file in {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot decode the rows event at {file}:{offset}: {message}")]
    Decode {
        file: String,
        offset: u64,
        message: String,
    },
}

/// The memory all spools of a decoder may hold together, and where they
/// spill beyond it.
#[derive(Debug, Clone)]
pub struct Budget {
    limit: usize,
    used: Arc<AtomicUsize>,
    dir: Option<Arc<Path>>,
    /// The buffer of the last finished spool, for the next one.
    spare: Arc<Mutex<Vec<u8>>>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(64 << 20, None)
    }
}

impl Budget {
    /// `limit` bytes in memory; files in `dir` (the system's temporary
    /// directory when `None`).
    pub fn new(limit: usize, dir: Option<PathBuf>) -> Budget {
        Budget {
            limit,
            used: Arc::new(AtomicUsize::new(0)),
            dir: dir.map(Arc::from),
            spare: Arc::default(),
        }
    }

    /// Bytes held in memory now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take_spare(&self) -> Vec<u8> {
        let mut spare = self
            .spare
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        spare.clear();
        spare
    }

    fn give_back(&self, buf: Vec<u8>) {
        if buf.capacity() <= MAX_SPARE {
            if let Ok(mut spare) = self.spare.lock() {
                if spare.capacity() < buf.capacity() {
                    *spare = buf;
                }
            }
        }
    }

    fn dir(&self) -> PathBuf {
        self.dir
            .as_deref()
            .map_or_else(std::env::temp_dir, Path::to_path_buf)
    }

    fn io(&self, source: std::io::Error) -> SpoolError {
        SpoolError::Io {
            dir: self.dir().display().to_string(),
            source,
        }
    }
}

/// A position in a spool (a savepoint): its length, rows and records then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    bytes: u64,
    rows: u64,
}

/// Where a rows event is and how its rows are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Raw event type and table-id width of the post-header.
    pub ty: u8,
    pub id_width: u8,
    /// Start of the event (or of the compressed payload holding it).
    pub offset: u64,
    /// Index of its first row there (0 but inside a payload).
    pub first_row: u64,
    /// Bytes of that event or payload.
    pub span: u64,
    /// Its rows.
    pub rows: u64,
}

const HEADER: usize = 4 + 4 + 1 + 1 + 8 + 8 + 8 + 8 + 4;

/// One record read back.
struct Record {
    table: u32,
    file: u32,
    origin: Origin,
    body: Vec<u8>,
}

/// Appends a record to `out`.
fn encode(table: u32, file: u32, o: &Origin, body: &[u8], out: &mut Vec<u8>) {
    out.extend(table.to_le_bytes());
    out.extend(file.to_le_bytes());
    out.extend([o.ty, o.id_width]);
    for v in [o.offset, o.first_row, o.span, o.rows] {
        out.extend(v.to_le_bytes());
    }
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
}

impl Record {
    /// The header of a record; the body length is its last field.
    fn decode_header(h: &[u8; HEADER]) -> (Record, usize) {
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&h[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let rec = Record {
            table: u32_at(0),
            file: u32_at(4),
            origin: Origin {
                ty: h[8],
                id_width: h[9],
                offset: u64_at(10),
                first_row: u64_at(18),
                span: u64_at(26),
                rows: u64_at(34),
            },
            body: Vec::new(),
        };
        (rec, u32_at(42) as usize)
    }
}

/// The held rows events of one event group.
#[derive(Debug)]
pub struct Spool {
    budget: Budget,
    tables: Vec<Arc<Mapped>>,
    files: Vec<(Arc<str>, u32)>,
    /// Records not in the file: all of them until it spills, then a write
    /// buffer.
    mem: Vec<u8>,
    /// Bytes of `mem` counted in the budget.
    counted: usize,
    file: Option<File>,
    file_len: u64,
    rows: u64,
}

impl Default for Spool {
    fn default() -> Self {
        Spool::new(Budget::default())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.uncount();
        self.budget.give_back(std::mem::take(&mut self.mem));
    }
}

impl Spool {
    pub fn new(budget: Budget) -> Spool {
        Spool {
            mem: budget.take_spare(),
            budget,
            tables: Vec::new(),
            files: Vec::new(),
            counted: 0,
            file: None,
            file_len: 0,
            rows: 0,
        }
    }

    /// Row changes held.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the rows are in a file.
    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }

    fn len(&self) -> u64 {
        self.file_len + self.mem.len() as u64
    }

    /// Where the spool is now (for a savepoint).
    pub fn mark(&self) -> Mark {
        Mark {
            bytes: self.len(),
            rows: self.rows,
        }
    }

    fn uncount(&mut self) {
        self.budget.used.fetch_sub(self.counted, Ordering::Relaxed);
        self.counted = 0;
    }

    /// Appends a rows event of `table` read from binlog `file` (name and
    /// sequence).
    pub fn append(
        &mut self,
        table: &Arc<Mapped>,
        file: (&Arc<str>, u32),
        origin: Origin,
        body: &[u8],
    ) -> Result<(), SpoolError> {
        let table = self.table_index(table);
        let file = self.file_index(file);
        self.push(table, file, &origin, body)
    }

    fn table_index(&mut self, table: &Arc<Mapped>) -> u32 {
        let i = match self.tables.iter().rposition(|t| Arc::ptr_eq(t, table)) {
            Some(i) => i,
            None => {
                self.tables.push(table.clone());
                self.tables.len() - 1
            }
        };
        i as u32
    }

    fn file_index(&mut self, (name, seq): (&Arc<str>, u32)) -> u32 {
        let i = match self.files.iter().rposition(|(n, _)| Arc::ptr_eq(n, name)) {
            Some(i) => i,
            None => {
                self.files.push((name.clone(), seq));
                self.files.len() - 1
            }
        };
        i as u32
    }

    fn push(
        &mut self,
        table: u32,
        file: u32,
        origin: &Origin,
        body: &[u8],
    ) -> Result<(), SpoolError> {
        let add = HEADER + body.len();
        if self.file.is_none() && self.budget.used() + add > self.budget.limit {
            self.spill()?;
        }
        if self.file.is_none() && self.mem.capacity() - self.mem.len() < add {
            self.grow(add);
        }
        encode(table, file, origin, body, &mut self.mem);
        self.rows += origin.rows;
        if self.file.is_some() {
            if self.mem.len() >= WRITE_BUFFER {
                self.flush()?;
            }
        } else {
            self.counted += add;
            self.budget.used.fetch_add(add, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Makes room for `add` more bytes in memory: by doubling up to the
    /// size of a spare buffer (most groups are small), then at once up to
    /// the budget's limit. Doubling on copies the records into a new
    /// block each time and leaves the old one to the allocator, which
    /// keeps freed blocks of this size resident for a while: a spool
    /// growing to a 64 MiB limit by doubling held about twice that (8 +
    /// 16 + 32 + 64 MiB). Reserved pages never written take no memory.
    fn grow(&mut self, add: usize) {
        if self.mem.capacity() < MAX_SPARE {
            self.mem.reserve(add);
        } else {
            let room = self.budget.limit.saturating_sub(self.mem.len());
            self.mem.reserve_exact(room.max(add));
        }
    }

    /// Moves the records to a temporary file.
    fn spill(&mut self) -> Result<(), SpoolError> {
        let file = tempfile::tempfile_in(self.budget.dir()).map_err(|e| self.budget.io(e))?;
        tracing::info!(dir = %self.budget.dir().display(), held_bytes = self.mem.len(), "a transaction's rows exceed hold_memory_mb: held in a temporary file");
        self.file = Some(file);
        self.flush()?;
        self.uncount();
        self.budget.give_back(std::mem::take(&mut self.mem));
        Ok(())
    }

    /// Writes the buffer to the file.
    fn flush(&mut self) -> Result<(), SpoolError> {
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        f.seek(SeekFrom::Start(self.file_len))
            .and_then(|_| f.write_all(&self.mem))
            .map_err(|e| self.budget.io(e))?;
        self.file_len += self.mem.len() as u64;
        self.mem.clear();
        Ok(())
    }

    /// Visits the records from `from` on (a [`Mark`] of this spool).
    fn each(
        &mut self,
        from: Mark,
        mut f: impl FnMut(&Spool, Record) -> Result<(), SpoolError>,
    ) -> Result<(), SpoolError> {
        self.flush()?;
        let mut reader = self.reader(from.bytes)?;
        let mut body = Vec::new();
        while let Some(rec) = reader
            .next(&self.mem, &mut body)
            .map_err(|e| self.budget.io(e))?
        {
            let rec = Record {
                body: std::mem::take(&mut body),
                ..rec
            };
            f(self, rec)?;
        }
        Ok(())
    }

    fn reader(&self, from: u64) -> Result<Reader, SpoolError> {
        let file = match &self.file {
            Some(f) => {
                let mut f = f.try_clone().map_err(|e| self.budget.io(e))?;
                f.seek(SeekFrom::Start(from))
                    .map_err(|e| self.budget.io(e))?;
                Some(BufReader::with_capacity(WRITE_BUFFER, f))
            }
            None => None,
        };
        Ok(Reader {
            file,
            at: from,
            end: self.len(),
        })
    }

    /// The tables of the records from `from` on (indices into this spool).
    pub fn tables_since(&mut self, from: Mark) -> Result<Vec<Arc<Mapped>>, SpoolError> {
        let mut seen: Vec<u32> = Vec::new();
        self.each(from, |_, rec| {
            if !seen.contains(&rec.table) {
                seen.push(rec.table);
            }
            Ok(())
        })?;
        Ok(seen
            .iter()
            .map(|&t| self.tables[t as usize].clone())
            .collect())
    }

    /// Drops the records from `from` on, except those of the tables
    /// `keep` names (their rows persisted on the source); returns the
    /// rows dropped.
    pub fn rollback_to(&mut self, from: Mark, keep: &[Arc<Mapped>]) -> Result<u64, SpoolError> {
        let mut kept = Spool::new(self.budget.clone());
        if !keep.is_empty() {
            self.each(from, |me, rec| {
                let table = &me.tables[rec.table as usize];
                if keep.iter().any(|k| Arc::ptr_eq(k, table)) {
                    let file = &me.files[rec.file as usize];
                    kept.append(table, (&file.0, file.1), rec.origin, &rec.body)?;
                }
                Ok(())
            })?;
        }
        let dropped = self.rows - from.rows - kept.rows;
        self.truncate(from)?;
        self.extend(&mut kept)?;
        Ok(dropped)
    }

    fn truncate(&mut self, to: Mark) -> Result<(), SpoolError> {
        if to.bytes >= self.file_len {
            let keep = (to.bytes - self.file_len) as usize;
            if self.file.is_none() {
                let freed = self.mem.len().saturating_sub(keep);
                self.counted -= freed.min(self.counted);
                self.budget.used.fetch_sub(freed, Ordering::Relaxed);
            }
            self.mem.truncate(keep);
        } else if let Some(f) = &self.file {
            f.set_len(to.bytes).map_err(|e| self.budget.io(e))?;
            self.file_len = to.bytes;
            self.mem.clear();
        }
        self.rows = to.rows;
        Ok(())
    }

    /// Appends every record of `other` (which is left as it was).
    pub fn extend(&mut self, other: &mut Spool) -> Result<(), SpoolError> {
        other.each(Mark::default(), |o, rec| {
            let file = &o.files[rec.file as usize];
            self.append(
                &o.tables[rec.table as usize],
                (&file.0, file.1),
                rec.origin,
                &rec.body,
            )
        })
    }

    /// Hands the rows out, decoded a chunk at a time.
    pub fn release(mut self, epoch: u16) -> Result<Release, SpoolError> {
        self.flush()?;
        let reader = self.reader(0)?;
        Ok(Release {
            left: self.rows,
            spool: self,
            reader,
            epoch,
            body: Vec::new(),
        })
    }
}

/// Reads records back, from the file and then the memory.
struct Reader {
    file: Option<BufReader<File>>,
    at: u64,
    end: u64,
}

impl Reader {
    fn next(&mut self, mem: &[u8], body: &mut Vec<u8>) -> std::io::Result<Option<Record>> {
        if self.at >= self.end {
            return Ok(None);
        }
        let mut h = [0u8; HEADER];
        match &mut self.file {
            Some(f) => f.read_exact(&mut h)?,
            None => h.copy_from_slice(&mem[self.at as usize..self.at as usize + HEADER]),
        }
        let (rec, len) = Record::decode_header(&h);
        body.clear();
        match &mut self.file {
            Some(f) => {
                body.resize(len, 0);
                f.read_exact(body)?;
            }
            None => {
                let start = self.at as usize + HEADER;
                body.extend_from_slice(&mem[start..start + len]);
            }
        }
        self.at += (HEADER + len) as u64;
        Ok(Some(rec))
    }
}

/// A committed group's rows, handed out in chunks.
pub struct Release {
    spool: Spool,
    reader: Reader,
    epoch: u16,
    body: Vec<u8>,
    /// Rows not handed out yet.
    left: u64,
}

impl Release {
    /// Rows left.
    pub fn remaining(&self) -> bool {
        self.reader.at < self.reader.end
    }

    /// The next rows, whole events at a time until at least `rows` row
    /// changes or `bytes` bytes of events; empty at the end.
    pub fn chunk(&mut self, rows: usize, bytes: usize) -> Result<Vec<RowChange>, SpoolError> {
        // one allocation for the chunk (a rows event more may come), no
        // larger than the rows left: a one-row transaction's chunk is one
        // row, not `rows`
        let cap = (rows.clamp(1, 1 << 16) + rows / 4)
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let mut out = Vec::with_capacity(cap);
        let mut read = 0;
        while out.len() < rows.max(1) && read < bytes.max(1) {
            let next = self.reader.next(&self.spool.mem, &mut self.body);
            let Some(rec) = next.map_err(|e| self.spool.budget.io(e))? else {
                break;
            };
            read += self.body.len();
            self.decode(&rec, &mut out)?;
        }
        self.left = self.left.saturating_sub(out.len() as u64);
        Ok(out)
    }

    fn decode(&self, rec: &Record, out: &mut Vec<RowChange>) -> Result<(), SpoolError> {
        let table = &self.spool.tables[rec.table as usize];
        let (file, seq) = &self.spool.files[rec.file as usize];
        let o = rec.origin;
        let bad = |message: String| SpoolError::Decode {
            file: file.to_string(),
            offset: o.offset,
            message,
        };
        let ev = RowsEvent::parse(o.ty, usize::from(o.id_width), &self.body)
            .map_err(|e| bad(decode_error(e, &table.schema).to_string()))?;
        out.reserve(o.rows as usize);
        for (i, row) in ev.rows(&table.layout).enumerate() {
            let (before, after) =
                row.map_err(|e| bad(decode_error(e, &table.schema).to_string()))?;
            let version = Version::new(self.epoch, *seq, o.offset, o.first_row + i as u64)
                .map_err(|e| bad(e.to_string()))?;
            out.push(RowChange {
                table: table.schema.clone(),
                before,
                after,
                version,
                span: o.span,
                file: file.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
