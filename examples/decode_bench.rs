//! Row decoding speed, without servers: reshard's decoder
//! (`source::Decoder`: transaction assembly, held rows, chunks, values in
//! their final form) against mysql_common's generic loop (rows event →
//! `BinlogRow` → `Value`) over the same generated stream.
//!
//! ```text
//! cargo run --release --example decode_bench [ROWS] [reshard]
//! ```
//!
//! (`reshard` times only reshard's decoder, for a profiler.)
//!
//! The stream: transactions of 1000 row changes (`BEGIN`, TABLE_MAP, rows
//! events of 100 rows, `XID`), half inserts and half updates (two images),
//! of an 8-column table like the tests' `orders` (BIGINT UNSIGNED, INT,
//! VARCHAR(100), DECIMAL(12,2), DATETIME(6), INT, BIGINT UNSIGNED,
//! TIMESTAMP(6)). Default 1,000,000 row changes. Prints rows/s and MB/s
//! of rows events for both, and their ratio; the best of three runs each.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// The reshard binary's allocator (mimalloc: with glibc's, allocation and
/// its bookkeeping take a large share of both decoders' time).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::{Event, EventData, FormatDescriptionEvent, TableMapEvent};
use mysql_common::value::Value;
use reshard::position::Position;
use reshard::source::{Decoder, DecoderOptions, EventAt, SourceItem};

const ROWS_PER_EVENT: usize = 100;
const EVENTS_PER_TXN: usize = 10;

/// One framed event of the stream and where it starts in its "file".
struct Framed {
    offset: u64,
    event: Event,
    rows_bytes: usize,
}

fn frame(fde: &FormatDescriptionEvent, offset: u64, ty: u8, body: &[u8]) -> Framed {
    let size = 19 + body.len() as u32;
    let mut raw = Vec::with_capacity(size as usize);
    raw.extend(1_700_000_000u32.to_le_bytes());
    raw.push(ty);
    raw.extend(1u32.to_le_bytes());
    raw.extend(size.to_le_bytes());
    raw.extend((offset as u32 + size).to_le_bytes());
    raw.extend(0u16.to_le_bytes());
    raw.extend(body);
    let event = Event::read(fde, &raw[..]).expect("a well-formed event");
    let rows_bytes = if matches!(ty, 30 | 31) { body.len() } else { 0 };
    Framed {
        offset,
        event,
        rows_bytes,
    }
}

fn query(q: &str) -> Vec<u8> {
    let mut b = vec![0; 8];
    b.extend([0, 0, 0, 0, 0, 0]);
    b.extend(q.as_bytes());
    b
}

fn table_map() -> Vec<u8> {
    let mut b = vec![1, 0, 0, 0, 0, 0, 0, 0];
    b.extend([
        5, b'b', b'e', b'n', b'c', b'h', 0, 6, b'o', b'r', b'd', b'e', b'r', b's', 0,
    ]);
    let types = [8u8, 3, 15, 246, 18, 3, 8, 17];
    b.push(types.len() as u8);
    b.extend(types);
    let meta = [0x90, 0x01, 12, 2, 6, 6];
    b.push(meta.len() as u8);
    b.extend(meta);
    b.push(0xFF); // nullable
                  // SIGNEDNESS of the numeric columns id, buyer, amount, qty, big
    b.extend([1, 1, 0b1000_1000]);
    b
}

/// One full row image of row `i`.
fn image(i: u64, updated: bool, out: &mut Vec<u8>) {
    out.push(0); // no NULLs
    out.extend(i.to_le_bytes());
    out.extend(((i % 997) as i32 - 400).to_le_bytes());
    let note = if updated {
        format!("order {i} updated")
    } else {
        format!("order {i}")
    };
    out.extend((note.len() as u16).to_le_bytes());
    out.extend(note.as_bytes());
    // DECIMAL(12,2): 10 integer digits (1 + 4 bytes), 2 fraction digits
    let int = (i / 7) as u32;
    out.push(0x80 | (int / 1_000_000_000) as u8);
    out.extend((int % 1_000_000_000).to_be_bytes());
    out.push((i % 100) as u8);
    // DATETIME(6) 2024-01-02 03:04:05.i%1e6
    let ym: i64 = 2024 * 13 + 1;
    let packed = (((ym << 5) | 2) << 17 | (3 << 12) | (4 << 6) | 5) + 0x80_0000_0000;
    out.extend(&packed.to_be_bytes()[3..]);
    out.extend(&((i % 1_000_000) as u32).to_be_bytes()[1..]);
    out.extend(((i % 100) as i32 + i32::from(updated)).to_le_bytes());
    out.extend((i * 1_000_003).to_le_bytes());
    out.extend((1_700_000_000u32 + i as u32).to_be_bytes());
    out.extend(&((i % 1_000_000) as u32).to_be_bytes()[1..]);
}

/// The stream: `rows` row changes in transactions of 1000.
fn stream(rows: usize) -> Vec<Framed> {
    let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
    let mut out = Vec::new();
    let mut offset = 4u64;
    let mut push = |out: &mut Vec<Framed>, ty: u8, body: &[u8]| {
        let f = frame(&fde, offset, ty, body);
        offset += 19 + body.len() as u64;
        out.push(f);
    };
    let mut next = 0u64;
    while (next as usize) < rows {
        push(&mut out, 2, &query("BEGIN"));
        push(&mut out, 19, &table_map());
        for e in 0..EVENTS_PER_TXN {
            let update = e % 2 == 1;
            let ty = if update { 31 } else { 30 };
            let mut body = vec![1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 8, 0xFF];
            if update {
                body.push(0xFF);
            }
            for _ in 0..ROWS_PER_EVENT {
                if update {
                    image(next, false, &mut body);
                }
                image(next, update, &mut body);
                next += 1;
            }
            push(&mut out, ty, &body);
        }
        push(&mut out, 16, &[7; 8]);
    }
    out
}

/// reshard's decoder over the stream: row changes decoded.
fn reshard(events: &[Framed]) -> usize {
    let opts = DecoderOptions {
        epoch: 0,
        checksum: false,
        filter: Arc::new(|_, _| true),
        hold: Default::default(),
    };
    let mut dec = Decoder::new(Position::new("bench.000001", 4), opts);
    let mut rows = 0;
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    for f in events {
        let at = EventAt::File {
            offset: f.offset,
            inner: false,
        };
        {
            let fut = dec.handle(&f.event, at, None);
            let mut fut = std::pin::pin!(fut);
            match fut.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(r) => r.expect("decodes"),
                std::task::Poll::Pending => unreachable!("no server to wait for"),
            }
        }
        while let Some(item) = dec.next_item().expect("decodes") {
            if let SourceItem::Rows(c) = item {
                rows += c.changes.len();
                std::hint::black_box(c);
            }
        }
    }
    rows
}

/// mysql_common's generic loop: every rows event parsed, every row image
/// converted to `Value`s.
fn generic(events: &[Framed]) -> usize {
    let mut tme: Option<TableMapEvent<'static>> = None;
    let mut rows = 0;
    for f in events {
        match f.event.read_data().expect("parses") {
            Some(EventData::TableMapEvent(t)) => tme = Some(t.into_owned()),
            Some(EventData::RowsEvent(r)) => {
                let tme = tme.as_ref().expect("a table map first");
                for row in r.rows(tme) {
                    let (before, after) = row.expect("a row");
                    for image in [before, after].into_iter().flatten() {
                        let values: Vec<Value> = image
                            .unwrap()
                            .into_iter()
                            .map(|v| Value::try_from(v).expect("a value"))
                            .collect();
                        std::hint::black_box(values);
                    }
                    rows += 1;
                }
            }
            _ => {}
        }
    }
    rows
}

/// The best of three timed runs of `f`.
fn best(f: impl Fn() -> usize) -> (usize, Duration) {
    let mut best = Duration::MAX;
    let mut rows = 0;
    for _ in 0..3 {
        let t = Instant::now();
        rows = f();
        best = best.min(t.elapsed());
    }
    (rows, best)
}

use std::future::Future;

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let events = stream(rows);
    let bytes: usize = events.iter().map(|f| f.rows_bytes).sum();
    let mb = bytes as f64 / 1e6;
    println!("stream: {rows} row changes (half updates), {mb:.1} MB of rows events");
    if std::env::args().nth(2).as_deref() == Some("reshard") {
        // for profiling one side
        let (a, ta) = best(|| reshard(&events));
        println!("reshard: {:.0} rows/s", a as f64 / ta.as_secs_f64());
        return;
    }
    let (a, ta) = best(|| reshard(&events));
    let (b, tb) = best(|| generic(&events));
    assert_eq!(a, b, "both decode every row change");
    let rate = |n: usize, t: Duration| n as f64 / t.as_secs_f64();
    println!("| decoder | rows/s | MB/s |");
    println!("|---|---:|---:|");
    for (name, t) in [
        ("reshard (source::Decoder)", ta),
        ("mysql_common generic loop", tb),
    ] {
        println!(
            "| {name} | {:.0} | {:.1} |",
            rate(a, t),
            mb / t.as_secs_f64()
        );
    }
    println!("ratio: {:.2}x", tb.as_secs_f64() / ta.as_secs_f64());
}
