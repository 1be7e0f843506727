//! The offline reader: binlog *files* through the same [`Decoder`] as the
//! live tailer, over the file framing of [`super::framing`] (event sizes
//! checked against the file, CRC32s verified, compressed payloads
//! inflated; every error names the file and the byte offset).
//!
//! Positions are `file name:byte offset` in the file read, whatever the
//! events' own `log_pos` say (relay logs carry the upstream's).

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use mysql_common::binlog::events::Event;

use super::change::SourceItem;
use super::events::{Decoder, DecoderOptions, EventAt, Hold, TableFilter};
pub use super::framing::MAGIC;
use super::framing::{panic_text, EventReader, Framed};
use super::SourceError;
use crate::position::Position;

/// A failure reading a binlog file. Every variant names the file; those
/// about an event name its byte offset.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: not a binlog file (starts with {found:02x?}, expected fe 62 69 6e)")]
    NotBinlog { file: String, found: Vec<u8> },
    #[error("{file} at byte offset {offset}: truncated event: {message}")]
    Truncated {
        file: String,
        offset: u64,
        message: String,
    },
    #[error("{file} at byte offset {offset}: corrupt event: {message}")]
    Corrupt {
        file: String,
        offset: u64,
        message: String,
    },
    #[error("{file} at byte offset {offset}: binlog checksum mismatch in event type {event_type}: stored {expected:#010x}, computed {actual:#010x}")]
    Checksum {
        file: String,
        offset: u64,
        event_type: u8,
        expected: u32,
        actual: u32,
    },
    /// (Not a chained `source`: the message holds it, and a chain would
    /// print it twice.)
    #[error("{file} at byte offset {offset}: {error}")]
    Event {
        file: String,
        offset: u64,
        error: Box<SourceError>,
    },
    #[error("{file}: reading stopped at byte offset {offset} after an earlier error")]
    Halted { file: String, offset: u64 },
}

impl FileError {
    /// The byte offset of the event at fault, if the error is about one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            FileError::Io { .. } | FileError::NotBinlog { .. } => None,
            FileError::Truncated { offset, .. }
            | FileError::Corrupt { offset, .. }
            | FileError::Checksum { offset, .. }
            | FileError::Event { offset, .. }
            | FileError::Halted { offset, .. } => Some(*offset),
        }
    }
}

impl From<FileError> for SourceError {
    fn from(e: FileError) -> Self {
        SourceError::File(Box::new(e))
    }
}

/// Row-change counts of one table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TableCounts {
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
}

impl TableCounts {
    pub fn total(&self) -> u64 {
        self.inserts + self.updates + self.deletes
    }
}

/// What a whole file decoded into.
#[derive(Debug, Default, Clone)]
pub struct FileSummary {
    /// Events read, inner events of compressed payloads included.
    pub events: u64,
    /// Committed transactions with at least one row change.
    pub transactions: u64,
    /// Boundaries without row changes (DDL, empty commits, rotations…).
    pub boundaries: u64,
    /// Row changes in committed transactions.
    pub rows: u64,
    /// Per `db.table`.
    pub tables: BTreeMap<String, TableCounts>,
    /// Row changes of a transaction still open at the end of the file.
    pub uncommitted_rows: usize,
    /// Where the next event would start.
    pub end: Option<Position>,
}

/// One binlog file, read event by event into committed transactions.
pub struct BinlogFile {
    reader: EventReader,
    decoder: Decoder,
    failed: bool,
    /// Offset of the last event handed to the decoder.
    last_offset: u64,
}

impl BinlogFile {
    /// Opens a binlog file decoding every table, at epoch 0.
    pub fn open(path: impl AsRef<Path>) -> Result<BinlogFile, FileError> {
        let all: TableFilter = Arc::new(|_, _| true);
        Self::open_with(
            path,
            DecoderOptions {
                epoch: 0,
                checksum: false,
                filter: all,
                hold: Hold::default(),
            },
        )
    }

    /// Opens a binlog file and checks its magic. Positions name the file by
    /// its base name (see [`EventReader::open`]). `opts.checksum` is not
    /// used: each file's format description says whether it has CRC32s.
    pub fn open_with(
        path: impl AsRef<Path>,
        opts: DecoderOptions,
    ) -> Result<BinlogFile, FileError> {
        let reader = EventReader::open(path)?;
        let decoder = Decoder::new(Position::new(reader.name(), 4), opts);
        Ok(BinlogFile {
            reader,
            decoder,
            failed: false,
            last_offset: 0,
        })
    }

    /// The start of the next event (after the last committed transaction
    /// once [`BinlogFile::next`] returned one).
    pub fn position(&self) -> &Position {
        self.decoder.position()
    }

    /// Events read so far.
    pub fn events(&self) -> u64 {
        self.reader.events()
    }

    /// The next committed transaction (or boundary); `None` at the end of
    /// the file. Rows of a transaction the file ends inside are not
    /// returned (see [`BinlogFile::open_rows`]). After an error, every call
    /// fails. (Not an `Iterator`: errors are terminal and typed.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<SourceItem>, FileError> {
        if self.failed {
            return Err(FileError::Halted {
                file: self.reader.path().to_string(),
                offset: self.reader.offset(),
            });
        }
        let r = self.step();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// Row changes of a transaction that is open (not yet committed).
    pub fn open_rows(&self) -> Option<usize> {
        self.decoder.open_rows()
    }

    /// Decodes the whole file and counts what it holds.
    pub fn summarize(mut self) -> Result<FileSummary, FileError> {
        let mut s = FileSummary::default();
        while let Some(item) = self.next()? {
            let chunk = match item {
                SourceItem::Transaction(t) if t.rows == 0 => {
                    s.boundaries += 1;
                    continue;
                }
                SourceItem::Transaction(_) => {
                    s.transactions += 1;
                    continue;
                }
                SourceItem::Rows(chunk) => chunk,
                SourceItem::Heartbeat(_) => continue,
            };
            for c in &chunk.changes {
                s.rows += 1;
                let e = s.tables.entry(c.table.full_name()).or_default();
                match c.kind() {
                    "insert" => e.inserts += 1,
                    "update" => e.updates += 1,
                    _ => e.deletes += 1,
                }
            }
        }
        s.events = self.reader.events();
        s.uncommitted_rows = self.open_rows().unwrap_or(0);
        s.end = Some(self.position().clone());
        Ok(s)
    }

    /// [`BinlogFile::open_with`] + [`BinlogFile::summarize`].
    pub fn decode_all(
        path: impl AsRef<Path>,
        filter: TableFilter,
    ) -> Result<FileSummary, FileError> {
        Self::open_with(
            path,
            DecoderOptions {
                epoch: 0,
                checksum: false,
                filter,
                hold: Hold::default(),
            },
        )?
        .summarize()
    }

    fn step(&mut self) -> Result<Option<SourceItem>, FileError> {
        loop {
            if let Some(item) = self.take()? {
                return Ok(Some(item));
            }
            let Some(framed) = self.reader.next()? else {
                return Ok(None);
            };
            let at = framed_at(&framed);
            let offset = framed.offset;
            if let Some(why) = framed.undecodable {
                return Err(self.reader.corrupt(offset, why));
            }
            self.last_offset = offset;
            self.feed(&framed.event, at, offset)?;
        }
    }

    /// The next item the decoder holds (a transaction's rows are decoded
    /// as they are taken; an error names the event that committed them).
    fn take(&mut self) -> Result<Option<SourceItem>, FileError> {
        let decoder = &mut self.decoder;
        match catch_unwind(AssertUnwindSafe(|| decoder.next_item())) {
            Ok(Ok(item)) => Ok(item),
            Ok(Err(e)) => Err(FileError::Event {
                file: self.reader.path().to_string(),
                offset: self.last_offset,
                error: Box::new(e),
            }),
            Err(p) => Err(self.reader.corrupt(
                self.last_offset,
                format!("decoding rows panicked: {}", panic_text(&p)),
            )),
        }
    }

    /// Runs the decoder on one event. Offline it has no connection, so its
    /// future never waits: one poll finishes it.
    fn feed(&mut self, event: &Event, at: EventAt, offset: u64) -> Result<(), FileError> {
        let decoder = &mut self.decoder;
        let polled = catch_unwind(AssertUnwindSafe(|| {
            let fut = decoder.handle(event, at, None);
            let mut fut = std::pin::pin!(fut);
            let mut cx = Context::from_waker(Waker::noop());
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(r) => Some(r),
                Poll::Pending => None,
            }
        }));
        match polled {
            Ok(Some(Ok(()))) => Ok(()),
            Ok(Some(Err(e))) => Err(FileError::Event {
                file: self.reader.path().to_string(),
                offset,
                error: Box::new(e),
            }),
            Ok(None) => Err(self.reader.corrupt(
                offset,
                "the decoder waited for a server, which an offline read has not".into(),
            )),
            Err(p) => Err(self.reader.corrupt(
                offset,
                format!(
                    "decoding event type {} panicked: {}",
                    event.header().event_type_raw(),
                    panic_text(&p)
                ),
            )),
        }
    }
}

/// Where a framed event is, for the decoder.
pub fn framed_at(framed: &Framed) -> EventAt {
    EventAt::File {
        offset: framed.offset,
        inner: framed.inner.is_some(),
    }
}
