//! Archived binlog files as a source: `replay --binlog-dir DIR` reads the
//! files a server wrote (copied to a backup host, restored from S3) instead
//! of asking the server, through the same [`Decoder`] as the live tailer.
//!
//! # Why an archived replay applies exactly what a live one would
//!
//! A live stream places each event at `file:offset` of the server's binlog
//! (`log_pos - size`); a file places it at its byte offset in the file of
//! the same name. For a file copied from the server these are the same
//! bytes at the same offsets, so every row gets the same position and
//! therefore the same version ([`crate::version`]), and every transaction
//! the same end position. The decoder is the live one, so transactions,
//! boundaries and refusals (MINIMAL images, partial JSON, XA) are too. The
//! coordinator that consumes the items is the live one: floor, forward-only
//! checkpoint and `stop_at` behave the same.
//!
//! Files follow each other in the order the server wrote them: the index
//! file's (`*.index`, as the server keeps it) when the directory has one,
//! else by numeric sequence among the files of the `--from` file's base
//! name. A sequence gap after `--from` is an error, not a skip: the missing
//! file's transactions would be lost. A transaction never spans files, so
//! each file gets a decoder of its own, as a rotation resets table ids.
//!
//! As when the server starts a stream at a position past the format
//! description, reading from `FILE:POS` reads the file's format
//! description for its layout and then jumps to `POS` (which must be an
//! event start), without handing the format description to the decoder.
//!
//! Column names come from the TABLE_MAP metadata
//! (`binlog_row_metadata=FULL`), else from the source's information_schema
//! when a connection was given; with neither, the first row of such a table
//! is an error naming it, never rows written by position.
//!
//! A DDL of a mapped table is recorded in the pipeline's schema history
//! and judged by `[pipeline] on_ddl` as on a live stream
//! ([`ArchiveReader::watch_ddl`]; `docs/architecture.md`, "The DDL
//! policy"): the same bytes at the same positions give the same records.
//!
//! At the end of each file that ends between transactions, a boundary at
//! its end is handed on (the live stream's rotation does the same), so the
//! checkpoint can reach the end of the archive.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use futures_util::FutureExt;
use mysql_async::Conn;

use super::change::{SourceItem, Transaction};
use super::events::{Decoder, DecoderOptions, TableFilter};
use super::file::{framed_at, BinlogFile, FileError};
use super::framing::{panic_text, EventReader, MAGIC};
use super::history::SchemaHistory;
use super::schema::SchemaOrigin;
use super::SourceError;
use crate::db::Retry;
use crate::position::{file_seq, Position};

/// Why an archive cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{dir}: {source}")]
    Io { dir: String, source: std::io::Error },
    #[error("{dir}: no binlog file named {file} (the archive holds {holds})")]
    Missing {
        dir: String,
        file: String,
        holds: String,
    },
    #[error(
        "{dir}: {file} is missing (between {before} and {after}); its transactions would be lost"
    )]
    Gap {
        dir: String,
        file: String,
        before: String,
        after: String,
    },
    #[error("{position} is beyond the end of the archived binlog files, which end at {end}")]
    BeyondEnd { position: Position, end: Position },
    #[error(transparent)]
    File(#[from] Box<FileError>),
}

/// A directory of archived binlog files.
#[derive(Debug, Clone)]
pub struct Archive {
    pub dir: PathBuf,
    /// File names in the order the server wrote them.
    pub files: Vec<String>,
}

impl Archive {
    /// The files of `dir` that follow each other from `from`'s file on: in
    /// the index file's order when there is one, else by sequence among
    /// the files of the same base name. A missing file after `from` is an
    /// error.
    pub fn open(dir: &Path, from: &Position) -> Result<Archive, ArchiveError> {
        let shown = dir.display().to_string();
        let io = |source| ArchiveError::Io {
            dir: shown.clone(),
            source,
        };
        let mut names = Vec::new();
        let mut index = None;
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if name.ends_with(".index") && path.is_file() {
                index = Some(path);
            } else if path.is_file() && starts_with_magic(&path) {
                names.push(name);
            }
        }
        let ordered = match index {
            Some(index) => by_index(&index, &names).map_err(io)?,
            None => by_sequence(&names, &from.file),
        };
        let Some(at) = ordered.iter().position(|f| *f == from.file) else {
            return Err(ArchiveError::Missing {
                dir: shown,
                file: from.file.clone(),
                holds: summary(&ordered),
            });
        };
        let files = ordered[at..].to_vec();
        check_gaps(&shown, &files)?;
        Ok(Archive {
            dir: dir.to_path_buf(),
            files,
        })
    }

    /// The path of one of the files.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The versions of the server builds that wrote the files (their
    /// format descriptions' `@@version`), each once, in file order.
    pub fn server_versions(&self) -> Result<Vec<String>, ArchiveError> {
        let mut versions = Vec::new();
        for file in &self.files {
            let mut reader = EventReader::open(self.path(file)).map_err(Box::new)?;
            if reader.next().map_err(Box::new)?.is_some() {
                let v = reader.server_version();
                if !v.is_empty() && !versions.contains(&v) {
                    versions.push(v);
                }
            }
        }
        Ok(versions)
    }

    /// The last transaction boundary of the archive: the end of the last
    /// file, or where the transaction it ends inside began (a file copied
    /// while the server was still writing it).
    pub fn end(&self) -> Result<Position, ArchiveError> {
        let Some(last) = self.files.last() else {
            return Err(ArchiveError::Missing {
                dir: self.dir.display().to_string(),
                file: "(any)".into(),
                holds: "nothing".into(),
            });
        };
        let none: TableFilter = std::sync::Arc::new(|_, _| false);
        let mut f = BinlogFile::open_with(
            self.path(last),
            DecoderOptions {
                epoch: 0,
                checksum: false,
                filter: none,
                hold: Default::default(),
            },
        )
        .map_err(Box::new)?;
        let mut end = Position::new(last.clone(), 4);
        while let Some(item) = f.next().map_err(Box::new)? {
            if let SourceItem::Transaction(t) = item {
                end = t.end;
            }
        }
        if f.open_rows().is_none() {
            end = f.position().clone();
        } else {
            tracing::warn!(file = %last, last_boundary = %end, "the last archived file ends inside a transaction (copied while the server wrote it?); the archive ends at the last complete transaction");
        }
        Ok(end)
    }
}

fn starts_with_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == MAGIC
}

/// The index file's order (its lines name files as `./mysql-bin.000001` or
/// by full path), keeping those in the directory.
fn by_index(index: &Path, present: &[String]) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string(index)?;
    Ok(text
        .lines()
        .filter_map(|l| Path::new(l.trim()).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| present.contains(n))
        .collect())
}

/// The files of `from`'s base name by sequence.
fn by_sequence(names: &[String], from: &str) -> Vec<String> {
    let base = |n: &str| n.rsplit_once('.').map(|(b, _)| b.to_string());
    let want = base(from);
    let mut seqs: BTreeMap<u32, String> = BTreeMap::new();
    for n in names {
        if base(n) == want {
            if let Ok(seq) = file_seq(n) {
                seqs.insert(seq, n.clone());
            }
        }
    }
    seqs.into_values().collect()
}

/// Consecutive files must have consecutive sequence numbers.
fn check_gaps(dir: &str, files: &[String]) -> Result<(), ArchiveError> {
    for pair in files.windows(2) {
        let (Ok(a), Ok(b)) = (file_seq(&pair[0]), file_seq(&pair[1])) else {
            continue;
        };
        if b != a.saturating_add(1) {
            let (base, _) = pair[0].rsplit_once('.').unwrap_or((&pair[0], ""));
            let width = pair[0].len() - base.len() - 1;
            return Err(ArchiveError::Gap {
                dir: dir.to_string(),
                file: format!("{base}.{:0width$}", a.saturating_add(1)),
                before: pair[0].clone(),
                after: pair[1].clone(),
            });
        }
    }
    Ok(())
}

fn summary(files: &[String]) -> String {
    match (files.first(), files.last()) {
        (Some(a), Some(b)) if a != b => format!("{a} … {b}"),
        (Some(a), _) => a.clone(),
        _ => "no binlog files".into(),
    }
}

/// Reads an archive from a position into committed transactions, like the
/// live [`super::Tailer`].
pub struct ArchiveReader {
    archive: Archive,
    /// Index of the current file in `archive.files`.
    next_file: usize,
    current: Option<(EventReader, Decoder)>,
    start: Position,
    opts: DecoderOptions,
    schema_conn: Option<Conn>,
    /// Commit time of the last item, for the boundary at a file's end.
    timestamp: u32,
    /// End of the last item handed on.
    last_end: Option<Position>,
    /// The schema history DDL is recorded in and judged by (the DDL
    /// policy), handed from each file's decoder to the next.
    history: Option<SchemaHistory>,
}

impl ArchiveReader {
    /// A reader from `start` (a transaction boundary in the archive's first
    /// file). `schema_conn` serves information_schema for TABLE_MAPs
    /// without column names.
    pub fn new(
        archive: Archive,
        start: Position,
        opts: DecoderOptions,
        schema_conn: Option<Conn>,
    ) -> ArchiveReader {
        ArchiveReader {
            archive,
            next_file: 0,
            current: None,
            start,
            opts,
            schema_conn,
            timestamp: 0,
            last_end: None,
            history: None,
        }
    }

    /// Records every DDL of a mapped table in the schema history and
    /// judges it by the history's DDL policy, as a live stream does
    /// ([`Decoder::watch_ddl`]: the history names no columns here).
    pub fn watch_ddl(&mut self, history: SchemaHistory) {
        match self.current.as_mut() {
            Some((_, decoder)) => decoder.watch_ddl(history),
            None => self.history = Some(history),
        }
    }

    /// Hands the schema history back (to close its connection).
    pub fn take_history(&mut self) -> Option<SchemaHistory> {
        let current = self.current.as_mut().and_then(|(_, d)| d.take_history());
        current.or_else(|| self.history.take())
    }

    /// The next committed transaction or boundary; `None` after the last
    /// file.
    pub async fn next(&mut self) -> Result<Option<SourceItem>, SourceError> {
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let Some((reader, decoder)) = self.current.as_mut() else {
                continue;
            };
            if let Some(item) = decoder.next_item()? {
                return self.hand_on(item).map(Some);
            }
            let Some(framed) = reader.next()? else {
                let end = self.file_end();
                if let Some((_, mut decoder)) = self.current.take() {
                    self.history = decoder.take_history();
                }
                if let Some(item) = end {
                    return Ok(Some(item));
                }
                continue;
            };
            if let Some(why) = &framed.undecodable {
                return Err(reader.corrupt(framed.offset, why.clone()).into());
            }
            // a panic inside mysql_common's parsers is an error at this
            // event, as for the offline reader (never a dead reader task)
            let handled = AssertUnwindSafe(decoder.handle(
                &framed.event,
                framed_at(&framed),
                self.schema_conn.as_mut(),
            ))
            .catch_unwind()
            .await;
            match handled {
                // a transient failure (the history's control connection, a
                // target `follow` alters) is retried, not blamed on the file
                Ok(Err(e)) if e.retry() == Retry::Transient => return Err(e),
                Ok(r) => r.map_err(|e| FileError::Event {
                    file: reader.path().to_string(),
                    offset: framed.offset,
                    error: Box::new(e),
                })?,
                Err(p) => {
                    let message = format!("decoding the event panicked: {}", panic_text(&p));
                    return Err(reader.corrupt(framed.offset, message).into());
                }
            }
        }
    }

    /// Opens the next file (at the start position for the first); false
    /// when there is none.
    fn open_next(&mut self) -> Result<bool, SourceError> {
        let Some(name) = self.archive.files.get(self.next_file) else {
            return Ok(false);
        };
        let mut reader = EventReader::open(self.archive.path(name))?;
        let mut at = Position::new(reader.name(), 4);
        if self.next_file == 0 && self.start.pos > 4 {
            reader.skip_to(self.start.pos)?;
            at = Position::new(reader.name(), self.start.pos);
        }
        self.next_file += 1;
        let mut decoder = Decoder::new(at, self.opts.clone());
        if let Some(h) = self.history.take() {
            decoder.watch_ddl(h);
        }
        self.current = Some((reader, decoder));
        Ok(true)
    }

    /// The boundary at the end of a file that ends between transactions,
    /// unless one was handed on there already.
    fn file_end(&mut self) -> Option<SourceItem> {
        let (_, decoder) = self.current.as_ref()?;
        if decoder.open_rows().is_some() {
            return None;
        }
        let end = decoder.position().clone();
        if self.last_end.as_ref() == Some(&end) {
            return None;
        }
        self.last_end = Some(end.clone());
        let resume = decoder.resume_position();
        Some(SourceItem::Transaction(Transaction {
            end,
            resume,
            timestamp: self.timestamp,
            rows: 0,
        }))
    }

    /// Checks that every row has named columns, and remembers the end.
    fn hand_on(&mut self, item: SourceItem) -> Result<SourceItem, SourceError> {
        if let SourceItem::Rows(chunk) = &item {
            if let Some(c) = chunk
                .changes
                .iter()
                .find(|c| c.table.origin == SchemaOrigin::Positional)
            {
                return Err(SourceError::Definite(format!(
                    "table {} at {}: the binlog's TABLE_MAP carries no column names (binlog_row_metadata=MINIMAL) and no source connection was available to read them from information_schema; set binlog_row_metadata=FULL on the source for future archives, or make the source reachable",
                    c.table.full_name(),
                    c.position()
                )));
            }
        }
        if let SourceItem::Transaction(t) = &item {
            self.timestamp = t.timestamp;
            self.last_end = Some(t.end.clone());
        }
        Ok(item)
    }
}

/// An archive as a pipeline attempt reads it.
#[derive(Debug, Clone)]
pub struct ArchiveSource {
    pub archive: Archive,
    /// Complete TABLE_MAPs without column names from the source's
    /// information_schema (the source was reachable at start).
    pub schemas_from_source: bool,
}
