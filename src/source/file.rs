//! The offline reader: binlog *files* through the same [`Decoder`] as the
//! live tailer.
//!
//! Events are framed here, not by mysql_common's file reader (which panics
//! on a truncated event body): the 19-byte header's `event_size` is checked
//! against the bytes left before anything is read, and the CRC32 is
//! verified over the raw bytes when the format description says CRC32.
//! Only a complete, checked event is handed to mysql_common. The
//! TRANSACTION_PAYLOAD of MySQL's binlog transaction compression is
//! decompressed here and its inner events (which carry no checksum of their
//! own) are fed to the decoder right after the payload event, as the
//! replication stream does. Every error names the file and the byte offset
//! of the event; nothing on this path panics on bad input (as a last line
//! of defence, a panic inside mysql_common's parsers is caught and reported
//! as an error too).
//!
//! Positions are `file name:byte offset` in the file read, whatever the
//! events' own `log_pos` say (relay logs carry the upstream's).

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io::{BufReader, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use mysql_common::binlog::consts::{BinlogChecksumAlg, BinlogVersion, EventType};
use mysql_common::binlog::events::{
    BinlogEventFooter, Event, FormatDescriptionEvent, TransactionPayloadEvent,
};

use super::change::SourceItem;
use super::events::{Decoder, DecoderOptions, EventAt, TableFilter};
use super::SourceError;
use crate::position::Position;

/// The magic at the start of every binlog file.
pub const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];
const HEADER_LEN: u64 = 19;
const CRC_LEN: u64 = 4;
const FORMAT_DESCRIPTION: u8 = EventType::FORMAT_DESCRIPTION_EVENT as u8;
const START_V3: u8 = EventType::START_EVENT_V3 as u8;
const TRANSACTION_PAYLOAD: u8 = EventType::TRANSACTION_PAYLOAD_EVENT as u8;
/// Low byte of the header's flags, and `LOG_EVENT_BINLOG_IN_USE_F`.
const FLAGS_OFFSET: usize = 17;
const FL_BINLOG_IN_USE: u8 = 0x01;
/// Refuse to inflate a compressed transaction beyond this (the server's own
/// limit is 1 GiB, `max_allowed_packet`).
const MAX_PAYLOAD: u64 = 1 << 30;

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
    #[error("{file} at byte offset {offset}: {source}")]
    Event {
        file: String,
        offset: u64,
        source: Box<SourceError>,
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

/// Events of a decompressed TRANSACTION_PAYLOAD still to be fed.
struct Inner {
    buf: Vec<u8>,
    at: usize,
    /// Offset of the payload event in the file.
    offset: u64,
}

/// One binlog file, read event by event into committed transactions.
pub struct BinlogFile {
    /// The path as given, for messages.
    path: String,
    reader: BufReader<File>,
    len: u64,
    /// Offset of the next event.
    offset: u64,
    fde: FormatDescriptionEvent<'static>,
    crc: bool,
    first: bool,
    decoder: Decoder,
    inner: Option<Inner>,
    failed: bool,
    events: u64,
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
            },
        )
    }

    /// Opens a binlog file and checks its magic. Positions name the file by
    /// its base name (with `.000000` appended if it has no numeric sequence
    /// suffix, which versions need). `opts.checksum` is not used: each
    /// file's format description says whether it has CRC32s.
    pub fn open_with(
        path: impl AsRef<Path>,
        opts: DecoderOptions,
    ) -> Result<BinlogFile, FileError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let io = |source| FileError::Io {
            file: shown.clone(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut reader = BufReader::new(file);
        let mut magic = Vec::with_capacity(4);
        (&mut reader).take(4).read_to_end(&mut magic).map_err(io)?;
        if magic != MAGIC {
            return Err(FileError::NotBinlog {
                file: shown,
                found: magic,
            });
        }
        let mut name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| shown.clone());
        if crate::position::file_seq(&name).is_err() {
            // versions need a sequence number: a file named without one
            // (a copy, a fixture) is sequence 0
            name.push_str(".000000");
        }
        Ok(BinlogFile {
            path: shown,
            reader,
            len,
            offset: 4,
            fde: FormatDescriptionEvent::new(BinlogVersion::Version4),
            crc: false,
            first: true,
            decoder: Decoder::new(Position::new(name, 4), opts),
            inner: None,
            failed: false,
            events: 0,
        })
    }

    /// The start of the next event (after the last committed transaction
    /// once [`BinlogFile::next`] returned one).
    pub fn position(&self) -> &Position {
        self.decoder.position()
    }

    /// Events read so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The next committed transaction (or boundary); `None` at the end of
    /// the file. Rows of a transaction the file ends inside are not
    /// returned (see [`BinlogFile::open_rows`]). After an error, every call
    /// fails. (Not an `Iterator`: errors are terminal and typed.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<SourceItem>, FileError> {
        if self.failed {
            return Err(FileError::Halted {
                file: self.path.clone(),
                offset: self.offset,
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
            let SourceItem::Transaction(t) = item else {
                continue;
            };
            if t.changes.is_empty() {
                s.boundaries += 1;
                continue;
            }
            s.transactions += 1;
            for c in &t.changes {
                s.rows += 1;
                let e = s.tables.entry(c.table.full_name()).or_default();
                match c.kind() {
                    "insert" => e.inserts += 1,
                    "update" => e.updates += 1,
                    _ => e.deletes += 1,
                }
            }
        }
        s.events = self.events;
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
            },
        )?
        .summarize()
    }

    fn step(&mut self) -> Result<Option<SourceItem>, FileError> {
        loop {
            if let Some(item) = self.step_inner()? {
                return Ok(Some(item));
            }
            if self.inner.is_some() {
                continue;
            }
            let offset = self.offset;
            let Some(raw) = self.frame()? else {
                return Ok(None);
            };
            self.events += 1;
            let ty = raw[4];
            if self.first {
                self.first = false;
                if ty == START_V3 {
                    return Err(self.corrupt(
                        offset,
                        "binlog format v1/v3 (MySQL before 5.0): not supported".into(),
                    ));
                }
            }
            let event = if ty == FORMAT_DESCRIPTION {
                self.format_description(offset, &raw)?
            } else {
                if self.crc {
                    self.verify_crc(offset, ty, &raw)?;
                }
                self.parse(offset, &raw, &self.fde)?
            };
            let item = self.feed(
                &event,
                EventAt::File {
                    offset,
                    inner: false,
                },
                offset,
            )?;
            if ty == TRANSACTION_PAYLOAD {
                self.inflate(offset, &event)?;
            }
            if let Some(item) = item {
                return Ok(Some(item));
            }
        }
    }

    /// Feeds the next inner event of a payload, if any is left.
    fn step_inner(&mut self) -> Result<Option<SourceItem>, FileError> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(None);
        };
        let left = inner.buf.len().saturating_sub(inner.at);
        if left == 0 {
            self.inner = None;
            return Ok(None);
        }
        let offset = inner.offset;
        let at = inner.at;
        let whole = inner.buf.len();
        let frame = inner.buf.get(at..).unwrap_or(&[]);
        let size = match frame.get(9..13) {
            Some(b) => u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            None => {
                let message = format!(
                    "event inside the TRANSACTION_PAYLOAD at byte {at} of {whole}: {left} byte(s) left, less than an event header"
                );
                return Err(self.truncated(offset, message));
            }
        };
        if size < HEADER_LEN || size > left as u64 {
            let message = format!(
                "event inside the TRANSACTION_PAYLOAD at byte {at} of {whole} claims {size} bytes, {left} left"
            );
            return Err(self.truncated(offset, message));
        }
        let raw = frame[..size as usize].to_vec();
        if let Some(i) = self.inner.as_mut() {
            i.at += size as usize;
        }
        self.events += 1;
        if raw[4] == TRANSACTION_PAYLOAD || raw[4] == FORMAT_DESCRIPTION {
            let message = format!(
                "event type {} inside a TRANSACTION_PAYLOAD (byte {at})",
                raw[4]
            );
            return Err(self.corrupt(offset, message));
        }
        // inner events carry no checksum (WL#3549)
        let fde = self.fde.clone().with_footer(BinlogEventFooter::new(
            BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_OFF,
        ));
        let event = self.parse(offset, &raw, &fde)?;
        self.feed(
            &event,
            EventAt::File {
                offset,
                inner: true,
            },
            offset,
        )
    }

    /// Reads the next event's bytes, checking its size against the file.
    fn frame(&mut self) -> Result<Option<Vec<u8>>, FileError> {
        let offset = self.offset;
        let left = self.len.saturating_sub(offset);
        if left == 0 {
            return Ok(None);
        }
        if left < HEADER_LEN {
            return Err(self.truncated(
                offset,
                format!("{left} byte(s) left, less than an event header ({HEADER_LEN})"),
            ));
        }
        let mut raw = vec![0u8; HEADER_LEN as usize];
        self.reader
            .read_exact(&mut raw)
            .map_err(|e| self.io_at(offset, e))?;
        let size = u64::from(u32::from_le_bytes([raw[9], raw[10], raw[11], raw[12]]));
        if size < HEADER_LEN {
            return Err(self.corrupt(
                offset,
                format!(
                    "event type {} claims {size} bytes, less than its own header",
                    raw[4]
                ),
            ));
        }
        if size > left {
            return Err(self.truncated(
                offset,
                format!(
                    "event type {} claims {size} bytes but only {left} are left in the file",
                    raw[4]
                ),
            ));
        }
        raw.resize(size as usize, 0);
        self.reader
            .read_exact(&mut raw[HEADER_LEN as usize..])
            .map_err(|e| self.io_at(offset, e))?;
        self.offset = offset + size;
        Ok(Some(raw))
    }

    /// Parses a FORMAT_DESCRIPTION, makes it the current one and checks
    /// its own CRC32 (it carries one whenever it names an algorithm).
    fn format_description(&mut self, offset: u64, raw: &[u8]) -> Result<Event, FileError> {
        let event = self.parse(offset, raw, &self.fde.clone())?;
        let fde = event
            .read_event::<FormatDescriptionEvent<'_>>()
            .map_err(|e| self.corrupt(offset, format!("format description: {e}")))?
            .into_owned()
            .with_footer(event.footer());
        self.crc = match event.footer().get_checksum_alg() {
            Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32)) => true,
            Ok(_) => false,
            Err(e) => {
                return Err(self.corrupt(
                    offset,
                    format!("format description names an unknown checksum algorithm: {e}"),
                ))
            }
        };
        if self.crc {
            // The server checksums the format description before it clears
            // LOG_EVENT_BINLOG_IN_USE_F on closing the file: verify without it.
            let mut raw = raw.to_vec();
            raw[FLAGS_OFFSET] &= !FL_BINLOG_IN_USE;
            self.verify_crc(offset, FORMAT_DESCRIPTION, &raw)?;
        }
        self.fde = fde;
        Ok(event)
    }

    fn verify_crc(&self, offset: u64, ty: u8, raw: &[u8]) -> Result<(), FileError> {
        let n = raw.len();
        if (n as u64) < HEADER_LEN + CRC_LEN {
            return Err(self.corrupt(
                offset,
                format!("event type {ty} of {n} bytes has no room for its checksum"),
            ));
        }
        let (body, tail) = raw.split_at(n - CRC_LEN as usize);
        let expected = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        let actual = crc32fast::hash(body);
        if expected != actual {
            return Err(FileError::Checksum {
                file: self.path.clone(),
                offset,
                event_type: ty,
                expected,
                actual,
            });
        }
        Ok(())
    }

    /// Hands framed bytes to mysql_common.
    fn parse(
        &self,
        offset: u64,
        raw: &[u8],
        fde: &FormatDescriptionEvent<'static>,
    ) -> Result<Event, FileError> {
        match catch_unwind(AssertUnwindSafe(|| Event::read(fde, raw))) {
            Ok(Ok(e)) => Ok(e),
            Ok(Err(e)) => Err(self.corrupt(offset, format!("event type {}: {e}", raw[4]))),
            Err(p) => Err(self.corrupt(
                offset,
                format!("event type {}: parser panicked: {}", raw[4], panic_text(&p)),
            )),
        }
    }

    /// Decompresses a TRANSACTION_PAYLOAD; its events come next.
    fn inflate(&mut self, offset: u64, event: &Event) -> Result<(), FileError> {
        let tpe: TransactionPayloadEvent<'_> = event
            .read_event()
            .map_err(|e| self.corrupt(offset, format!("TRANSACTION_PAYLOAD: {e}")))?;
        let mut buf = Vec::new();
        let inflated = catch_unwind(AssertUnwindSafe(|| -> std::io::Result<usize> {
            tpe.decompressed()?
                .take(MAX_PAYLOAD + 1)
                .read_to_end(&mut buf)
        }));
        match inflated {
            Ok(Ok(n)) if n as u64 > MAX_PAYLOAD => {
                return Err(self.corrupt(
                    offset,
                    format!("TRANSACTION_PAYLOAD inflates beyond {MAX_PAYLOAD} bytes"),
                ))
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(self.corrupt(offset, format!("TRANSACTION_PAYLOAD: {e}")));
            }
            Err(p) => {
                return Err(self.corrupt(
                    offset,
                    format!(
                        "TRANSACTION_PAYLOAD: decompression panicked: {}",
                        panic_text(&p)
                    ),
                ))
            }
        }
        self.inner = Some(Inner { buf, at: 0, offset });
        Ok(())
    }

    /// Runs the decoder on one event. Offline it has no connection, so its
    /// future never waits: one poll finishes it.
    fn feed(
        &mut self,
        event: &Event,
        at: EventAt,
        offset: u64,
    ) -> Result<Option<SourceItem>, FileError> {
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
            Ok(Some(Ok(item))) => Ok(item),
            Ok(Some(Err(e))) => Err(FileError::Event {
                file: self.path.clone(),
                offset,
                source: Box::new(e),
            }),
            Ok(None) => Err(self.corrupt(
                offset,
                "the decoder waited for a server, which an offline read has not".into(),
            )),
            Err(p) => Err(self.corrupt(
                offset,
                format!(
                    "decoding event type {} panicked: {}",
                    event.header().event_type_raw(),
                    panic_text(&p)
                ),
            )),
        }
    }

    fn truncated(&self, offset: u64, message: String) -> FileError {
        FileError::Truncated {
            file: self.path.clone(),
            offset,
            message,
        }
    }

    fn corrupt(&self, offset: u64, message: String) -> FileError {
        FileError::Corrupt {
            file: self.path.clone(),
            offset,
            message,
        }
    }

    fn io_at(&self, offset: u64, e: std::io::Error) -> FileError {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            self.truncated(
                offset,
                "the file ended inside the event (is it still being written?)".into(),
            )
        } else {
            FileError::Io {
                file: format!("{} at byte offset {offset}", self.path),
                source: e,
            }
        }
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
