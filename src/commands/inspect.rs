//! `reshard inspect FILE…`: a mysqlbinlog-like view of binlog files, one
//! event at a time, through the same framing and decoding as the pipeline
//! ([`crate::source::view`]). Connects to nothing.
//!
//! Every event is shown, also those the pipeline refuses; an event that
//! cannot be decoded is shown with the reason and skipped. Only a file
//! that cannot be walked — truncated, an impossible event size, a checksum
//! mismatch, not a binlog — is an error: the events before it are shown,
//! the error names the file and the byte offset, the other files are still
//! read, and the exit code is 2.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::source::framing::EventReader;
use crate::source::view::{render, Cell, EventRecord, EventView};

use super::EXIT_ERROR;

/// Arguments of `inspect`.
pub struct InspectArgs {
    pub files: Vec<PathBuf>,
    /// Show the events that start at or after this byte offset (which must
    /// be where an event starts).
    pub start_position: Option<u64>,
    /// Stop before the first event that starts at or after this offset.
    pub stop_position: Option<u64>,
    pub json: bool,
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut failed = false;
    for path in &args.files {
        match inspect_file(path, &args, &mut out) {
            Ok(()) => {}
            Err(Failure::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                return Ok(ExitCode::SUCCESS)
            }
            Err(Failure::Output(e)) => return Err(e.into()),
            Err(Failure::File(e)) => {
                let _ = out.flush();
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(if failed {
        ExitCode::from(EXIT_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

enum Failure {
    /// Writing the output failed.
    Output(std::io::Error),
    /// The file cannot be read on (it names the file and the offset).
    File(crate::source::file::FileError),
}

fn inspect_file(path: &PathBuf, args: &InspectArgs, out: &mut impl Write) -> Result<(), Failure> {
    let mut reader = EventReader::open(path).map_err(Failure::File)?;
    let mut view = EventView::new(reader.name());
    if let Some(start) = args.start_position {
        if let Some(fde) = reader.skip_to(start).map_err(Failure::File)? {
            // read for its format, not shown: it starts before `start`
            view.view(&fde);
        }
    }
    while let Some(framed) = reader.next().map_err(Failure::File)? {
        if args.stop_position.is_some_and(|stop| framed.offset >= stop) {
            break;
        }
        let rec = view.view(&framed);
        let written = if args.json {
            serde_json::to_string(&rec)
                .map_err(std::io::Error::other)
                .and_then(|line| writeln!(out, "{line}"))
        } else {
            write_text(out, &rec)
        };
        written.map_err(Failure::Output)?;
    }
    Ok(())
}

/// The human form: one line per event, then one indented line per row
/// image of a rows event.
fn write_text(out: &mut impl Write, rec: &EventRecord) -> std::io::Result<()> {
    let at = match rec.inner {
        Some(i) => format!("{}:{}+{i}", rec.file, rec.pos),
        None => format!("{}:{}", rec.file, rec.pos),
    };
    write!(
        out,
        "{at} {} {} server_id={} size={} gtid={}",
        rec.type_name,
        render::timestamp(rec.timestamp),
        rec.server_id,
        rec.size,
        rec.gtid.as_deref().unwrap_or("-")
    )?;
    if let Some(t) = &rec.table {
        write!(out, " {t}")?;
    }
    if let Some(i) = &rec.info {
        write!(out, " {}", i.replace('\n', " "))?;
    }
    if let Some(u) = &rec.undecodable {
        write!(out, " UNDECODABLE: {u}")?;
    }
    writeln!(out)?;
    for (n, row) in rec.rows.iter().flatten().enumerate() {
        if let Some(b) = &row.before {
            writeln!(out, "    #{} before: {}", n + 1, cells(b))?;
        }
        if let Some(a) = &row.after {
            writeln!(out, "    #{} after:  {}", n + 1, cells(a))?;
        }
    }
    Ok(())
}

fn cells(cells: &[Cell]) -> String {
    cells
        .iter()
        .map(|c| format!("{}={}", c.name, c.text))
        .collect::<Vec<_>>()
        .join(" ")
}
