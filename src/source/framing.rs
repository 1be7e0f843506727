//! The framing of binlog *files*: the event iterator under both the offline
//! reader ([`super::file::BinlogFile`], the same [`super::Decoder`] as the
//! live tailer) and `reshard inspect`, which shows every event, also those
//! the pipeline refuses.
//!
//! Events are framed here, not by mysql_common's file reader (which panics
//! on a truncated event body): the 19-byte header's `event_size` is checked
//! against the bytes left before anything is read, and the CRC32 is
//! verified over the raw bytes when the format description says CRC32.
//! Only a complete, checked event is handed to mysql_common. The
//! TRANSACTION_PAYLOAD of MySQL's binlog transaction compression is
//! decompressed here and its inner events (which carry no checksum of their
//! own) come right after the payload event, as the replication stream
//! sends them. Every error names the file and the byte offset of the event;
//! nothing on this path panics on bad input (as a last line of defence, a
//! panic inside mysql_common's parsers is caught and reported as an error
//! too). Bodies whose mysql_common parsers trust counts or lengths are
//! checked first ([`super::bounds`]) and handed on as undecodable when
//! they fail. A decompressed payload is capped at [`MAX_PAYLOAD`], so a corrupt
//! one cannot exhaust memory.
//!
//! What is *fatal* here is only what makes the file unwalkable or its bytes
//! untrustworthy: a truncated or impossible event size, a checksum
//! mismatch, an I/O error. An event whose body mysql_common cannot make
//! sense of is still a well-framed event: it is handed on, and the
//! consumer decides (the decoder refuses it, `inspect` shows it as
//! undecodable and goes on).

use std::fs::File;
use std::io::{BufReader, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use mysql_common::binlog::consts::{BinlogChecksumAlg, BinlogVersion, EventType};
use mysql_common::binlog::events::{
    BinlogEventFooter, Event, FormatDescriptionEvent, TransactionPayloadEvent,
};

use super::bounds;
use super::file::FileError;

/// The magic at the start of every binlog file.
pub const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];
/// The common header of every event.
pub const HEADER_LEN: u64 = 19;
const CRC_LEN: u64 = 4;
const FORMAT_DESCRIPTION: u8 = EventType::FORMAT_DESCRIPTION_EVENT as u8;
const START_V3: u8 = EventType::START_EVENT_V3 as u8;
const TRANSACTION_PAYLOAD: u8 = EventType::TRANSACTION_PAYLOAD_EVENT as u8;
/// Low byte of the header's flags, and `LOG_EVENT_BINLOG_IN_USE_F`.
const FLAGS_OFFSET: usize = 17;
const FL_BINLOG_IN_USE: u8 = 0x01;
/// Refuse to inflate a compressed transaction beyond this (the server's own
/// limit is 1 GiB, `max_allowed_packet`).
pub const MAX_PAYLOAD: u64 = 1 << 30;

/// One framed, checked and parsed event.
pub struct Framed {
    /// Byte offset of the event in the file; for an event inside a
    /// TRANSACTION_PAYLOAD, the offset of the payload event.
    pub offset: u64,
    /// For an event inside a TRANSACTION_PAYLOAD: its byte offset in the
    /// decompressed payload.
    pub inner: Option<u64>,
    pub event: Event,
    /// Why the body must not be parsed: it fails the bounds checks
    /// ([`super::bounds`]), or it is a TRANSACTION_PAYLOAD whose content
    /// cannot be decompressed (its inner events are not read).
    pub undecodable: Option<String>,
}

/// Events of a decompressed TRANSACTION_PAYLOAD still to be read.
struct Inner {
    buf: Vec<u8>,
    at: usize,
    /// Offset of the payload event in the file.
    offset: u64,
}

/// One binlog file, event by event.
pub struct EventReader {
    /// The path as given, for messages.
    path: String,
    /// The name positions use (see [`EventReader::open`]).
    name: String,
    reader: BufReader<File>,
    len: u64,
    /// Offset of the next event.
    offset: u64,
    fde: FormatDescriptionEvent<'static>,
    crc: bool,
    first: bool,
    inner: Option<Inner>,
    failed: bool,
    events: u64,
}

impl EventReader {
    /// Opens a binlog file and checks its magic. Positions name the file by
    /// its base name, with `.000000` appended if it has no numeric sequence
    /// suffix (versions need one).
    pub fn open(path: impl AsRef<Path>) -> Result<EventReader, FileError> {
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
        Ok(EventReader {
            path: shown,
            name,
            reader,
            len,
            offset: 4,
            fde: FormatDescriptionEvent::new(BinlogVersion::Version4),
            crc: false,
            first: true,
            inner: None,
            failed: false,
            events: 0,
        })
    }

    /// The file name positions use.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file holds nothing after its magic.
    pub fn is_empty(&self) -> bool {
        self.len <= 4
    }

    /// The offset of the next event in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The server version the last format description read names (the
    /// writing server's `@@version`, at most 50 bytes), empty before one.
    pub fn server_version(&self) -> String {
        self.fde
            .server_version()
            .trim_end_matches(['\0', ' '])
            .to_string()
    }

    /// Events read so far (inner events of payloads included).
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The next event; `None` at the end of the file. After an error, every
    /// call fails. (Not an `Iterator`: errors are terminal and typed.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Framed>, FileError> {
        if self.failed {
            return Err(FileError::Halted {
                file: self.path.clone(),
                offset: self.offset,
            });
        }
        let r = match self.next_inner() {
            Ok(None) if self.inner.is_none() => self.next_outer(),
            other => other,
        };
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// Reads the format description (when not read yet) and then walks the
    /// event headers, without parsing the events, up to byte `pos`, which
    /// must be where an event starts. Returns the format description when
    /// it was read here. The next [`EventReader::next`] returns the event at
    /// `pos`.
    pub fn skip_to(&mut self, pos: u64) -> Result<Option<Framed>, FileError> {
        let fde = if self.first && pos > 4 {
            self.next()?
        } else {
            None
        };
        while self.offset < pos {
            let offset = self.offset;
            let (size, ty) = self.header_at(offset)?;
            if offset + size > pos {
                return Err(self.corrupt(
                    offset,
                    format!("byte offset {pos} is not the start of an event: the event of type {ty} at {offset} ends at {}", offset + size),
                ));
            }
            self.reader
                .seek_relative((size - HEADER_LEN) as i64)
                .map_err(|e| self.io_at(offset, e))?;
            self.offset = offset + size;
        }
        if self.offset > pos {
            return Err(self.corrupt(
                self.offset,
                format!("byte offset {pos} is not the start of an event"),
            ));
        }
        Ok(fde)
    }

    /// Reads a header at the current offset: the event's size, checked
    /// against the file, and its type.
    fn header_at(&mut self, offset: u64) -> Result<(u64, u8), FileError> {
        let left = self.len.saturating_sub(offset);
        if left < HEADER_LEN {
            return Err(self.truncated(
                offset,
                format!("{left} byte(s) left, less than an event header ({HEADER_LEN})"),
            ));
        }
        let mut raw = [0u8; HEADER_LEN as usize];
        self.reader
            .read_exact(&mut raw)
            .map_err(|e| self.io_at(offset, e))?;
        let size = u64::from(u32::from_le_bytes([raw[9], raw[10], raw[11], raw[12]]));
        check_size(size, left, raw[4]).map_err(|(truncated, message)| {
            if truncated {
                self.truncated(offset, message)
            } else {
                self.corrupt(offset, message)
            }
        })?;
        Ok((size, raw[4]))
    }

    fn next_outer(&mut self) -> Result<Option<Framed>, FileError> {
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
        let mut undecodable = bounds::check(&event).err();
        if ty == TRANSACTION_PAYLOAD && undecodable.is_none() {
            undecodable = self.inflate(offset, &event)?;
        }
        Ok(Some(Framed {
            offset,
            inner: None,
            event,
            undecodable,
        }))
    }

    /// The next inner event of a payload, if any is left.
    fn next_inner(&mut self) -> Result<Option<Framed>, FileError> {
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
        let undecodable = bounds::check(&event).err();
        Ok(Some(Framed {
            offset,
            inner: Some(at as u64),
            event,
            undecodable,
        }))
    }

    /// Reads the next event's bytes, checking its size against the file.
    fn frame(&mut self) -> Result<Option<Vec<u8>>, FileError> {
        let offset = self.offset;
        if self.len <= offset {
            return Ok(None);
        }
        let (size, _) = self.header_at(offset)?;
        let mut raw = vec![0u8; size as usize];
        // the header again, from the bytes just read: rewind and read whole
        self.reader
            .seek_relative(-(HEADER_LEN as i64))
            .map_err(|e| self.io_at(offset, e))?;
        self.reader
            .read_exact(&mut raw)
            .map_err(|e| self.io_at(offset, e))?;
        self.offset = offset + size;
        Ok(Some(raw))
    }

    /// Parses a FORMAT_DESCRIPTION, makes it the current one and checks
    /// its own CRC32 (it carries one whenever it names an algorithm).
    fn format_description(&mut self, offset: u64, raw: &[u8]) -> Result<Event, FileError> {
        let event = self.parse(offset, raw, &self.fde.clone())?;
        let fde = guarded(|| event.read_event::<FormatDescriptionEvent<'_>>())
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

    /// Decompresses a TRANSACTION_PAYLOAD; its events come next. A payload
    /// mysql_common cannot read or inflate is returned as undecodable.
    fn inflate(&mut self, offset: u64, event: &Event) -> Result<Option<String>, FileError> {
        let tpe: TransactionPayloadEvent<'_> = match guarded(|| event.read_event()) {
            Ok(t) => t,
            Err(e) => return Ok(Some(format!("TRANSACTION_PAYLOAD: {e}"))),
        };
        let mut buf = Vec::new();
        let inflated = catch_unwind(AssertUnwindSafe(|| -> std::io::Result<usize> {
            tpe.decompressed()?
                .take(MAX_PAYLOAD + 1)
                .read_to_end(&mut buf)
        }));
        match inflated {
            Ok(Ok(n)) if n as u64 > MAX_PAYLOAD => Err(self.corrupt(
                offset,
                format!("TRANSACTION_PAYLOAD inflates beyond {MAX_PAYLOAD} bytes"),
            )),
            Ok(Ok(_)) => {
                self.inner = Some(Inner { buf, at: 0, offset });
                Ok(None)
            }
            Ok(Err(e)) => Ok(Some(format!("TRANSACTION_PAYLOAD: {e}"))),
            Err(p) => Ok(Some(format!(
                "TRANSACTION_PAYLOAD: decompression panicked: {}",
                panic_text(&p)
            ))),
        }
    }

    pub(super) fn truncated(&self, offset: u64, message: String) -> FileError {
        FileError::Truncated {
            file: self.path.clone(),
            offset,
            message,
        }
    }

    pub(super) fn corrupt(&self, offset: u64, message: String) -> FileError {
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

/// Checks an event's claimed size against its header and the bytes left:
/// `Err((truncated, message))`.
fn check_size(size: u64, left: u64, ty: u8) -> Result<(), (bool, String)> {
    if size < HEADER_LEN {
        return Err((
            false,
            format!("event type {ty} claims {size} bytes, less than its own header"),
        ));
    }
    if size > left {
        return Err((
            true,
            format!("event type {ty} claims {size} bytes but only {left} are left in the file"),
        ));
    }
    Ok(())
}

/// Runs a mysql_common parser, turning its error or panic into a message.
pub fn guarded<T>(parse: impl FnOnce() -> std::io::Result<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(parse)) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(e.to_string()),
        Err(p) => Err(format!("the parser panicked: {}", panic_text(&p))),
    }
}

/// The message of a caught panic.
pub fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
