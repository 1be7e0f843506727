//! Events re-made from other events' bytes: MariaDB's compressed QUERY and
//! rows events (types 165–171, `log_bin_compress=ON`) become the plain
//! events they compress, and the pre-GA rows events of MySQL 5.1.0–5.1.15
//! (types 20–22) become the v1 rows events they are laid out like.
//! mysql_common parses neither; after this it parses both.
//!
//! # MariaDB compressed events
//!
//! Only the variable tail of the event is compressed: for a QUERY, the
//! statement text (after the post-header, the status variables and the
//! schema name); for a rows event, the row images (after the post-header,
//! the v2 extra data, the column count and the column bitmaps). The tail is
//! one header byte (`1000 0nnn`: compressed, algorithm 0 = zlib, `nnn` the
//! width of the length field), the uncompressed length in `nnn` big-endian
//! bytes, and a zlib stream (MariaDB's `binlog_buf_uncompress`). The
//! inflated tail is refused unless it is exactly the announced length, and
//! that length is capped ([`MAX_INFLATED`]), so a corrupt event cannot
//! exhaust memory.
//!
//! # Pre-GA rows events
//!
//! MySQL 5.1.0–5.1.15 wrote rows events with the v1 layout under types
//! 20–22, except that the update event has one column bitmap for both
//! images (`m_cols_ai` came with the GA types). The update is re-made with
//! its bitmap twice, and each event is parsed with the post-header length
//! of its pre-GA type.
//!
//! A re-made event keeps the original's header fields (the caller places
//! it by the original) and carries no checksum: the original's was
//! verified before.

use std::io::Read;

use mysql_common::binlog::consts::{BinlogChecksumAlg, EventType};
use mysql_common::binlog::events::{BinlogEventFooter, Event, FormatDescriptionEvent};

/// Why an event cannot be re-made (the message says what is wrong with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RebuildError(pub String);

/// Refuse to inflate a compressed event beyond this (MariaDB's own limit
/// is `max_allowed_packet`, at most 1 GiB).
pub const MAX_INFLATED: u64 = 1 << 30;

/// The first MariaDB compressed event type (QUERY_COMPRESSED).
pub const MARIADB_COMPRESSED_FIRST: u8 = 165;
/// The last one (DELETE_ROWS_COMPRESSED).
pub const MARIADB_COMPRESSED_LAST: u8 = 171;

/// Whether a raw type is one of MariaDB's compressed events.
pub fn is_mariadb_compressed(ty: u8) -> bool {
    (MARIADB_COMPRESSED_FIRST..=MARIADB_COMPRESSED_LAST).contains(&ty)
}

/// Whether a raw type is a pre-GA rows event.
pub fn is_pre_ga_rows(ty: u8) -> bool {
    (20..=22).contains(&ty)
}

/// The plain event a MariaDB compressed one stands for.
pub fn inflate_mariadb(event: &Event) -> Result<Event, RebuildError> {
    inflate(event).map_err(RebuildError)
}

fn inflate(event: &Event) -> Result<Event, String> {
    let ty = event.header().event_type_raw();
    let data = event.data();
    let fde = event.fde();
    let post = usize::from(post_header_len(fde, ty));
    let (plain, start) = match ty {
        165 => (EventType::QUERY_EVENT as u8, query_tail(data, post)?),
        166..=168 => (
            ty - 166 + EventType::WRITE_ROWS_EVENT_V1 as u8,
            rows_tail(data, post, ty == 167)?,
        ),
        169..=171 => (
            ty - 169 + EventType::WRITE_ROWS_EVENT as u8,
            rows_tail(data, post, ty == 170)?,
        ),
        _ => return Err(format!("event type {ty} is not a MariaDB compressed event")),
    };
    let tail = data
        .get(start..)
        .ok_or_else(|| "compressed part starts beyond the event".to_string())?;
    let mut body = data[..start].to_vec();
    body.extend_from_slice(&inflate_tail(tail)?);
    rebuild(event, plain, &body, fde.clone())
}

/// Where a QUERY_COMPRESSED's statement starts: after the post-header, the
/// status variables and the schema name with its NUL.
fn query_tail(data: &[u8], post: usize) -> Result<usize, String> {
    // post-header: thread id u32, exec time u32, schema length u8,
    // error code u16, status vars length u16
    let db_len = usize::from(*data.get(8).ok_or("QUERY post-header is truncated")?);
    let vars = data.get(11..13).ok_or("QUERY post-header is truncated")?;
    let vars = usize::from(u16::from_le_bytes([vars[0], vars[1]]));
    Ok(post + vars + db_len + 1)
}

/// Where a compressed rows event's row images start.
fn rows_tail(data: &[u8], post: usize, update: bool) -> Result<usize, String> {
    // table id (6) and flags (2), then the v2 extra data
    let mut at = 8;
    if post == 10 {
        let len = data.get(8..10).ok_or("rows post-header is truncated")?;
        at += usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    let (width, n) = lenenc(data.get(at..).unwrap_or(&[]))?;
    at += n;
    let bitmap = usize::try_from(width.div_ceil(8)).map_err(|_| "column count overflows")?;
    Ok(at + bitmap * if update { 2 } else { 1 })
}

/// A length-encoded integer: (value, bytes used).
fn lenenc(b: &[u8]) -> Result<(u64, usize), String> {
    let short = || "column count is truncated".to_string();
    let first = *b.first().ok_or_else(short)?;
    let wide = |n: usize| -> Result<(u64, usize), String> {
        let bytes = b.get(1..=n).ok_or_else(short)?;
        let mut v = 0u64;
        for (i, x) in bytes.iter().enumerate() {
            v |= u64::from(*x) << (8 * i);
        }
        Ok((v, n + 1))
    };
    match first {
        0..=250 => Ok((u64::from(first), 1)),
        252 => wide(2),
        253 => wide(3),
        254 => wide(8),
        _ => Err(format!("bad length-encoded integer (first byte {first})")),
    }
}

/// Inflates `1000 0nnn | length (nnn bytes, big-endian) | zlib stream`.
fn inflate_tail(tail: &[u8]) -> Result<Vec<u8>, String> {
    let head = *tail.first().ok_or("compressed part is empty")?;
    if head & 0xe0 != 0x80 {
        return Err(format!(
            "compressed part starts with {head:#04x}: not zlib (MariaDB writes 0x81-0x84)"
        ));
    }
    let width = usize::from(head & 0x07);
    if !(1..=4).contains(&width) {
        return Err(format!("compressed length field of {width} bytes"));
    }
    let len = tail
        .get(1..=width)
        .ok_or("compressed length is truncated")?
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    if len > MAX_INFLATED {
        return Err(format!("announces {len} bytes, beyond {MAX_INFLATED}"));
    }
    let mut out = Vec::with_capacity(len.min(1 << 20) as usize);
    flate2::read::ZlibDecoder::new(&tail[1 + width..])
        .take(len + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zlib: {e}"))?;
    if out.len() as u64 != len {
        return Err(format!("inflates to {} bytes, {len} announced", out.len()));
    }
    Ok(out)
}

/// The v1 rows event a pre-GA rows event is laid out like.
pub fn pre_ga_as_v1(event: &Event) -> Result<Event, RebuildError> {
    as_v1(event).map_err(RebuildError)
}

fn as_v1(event: &Event) -> Result<Event, String> {
    let ty = event.header().event_type_raw();
    let data = event.data();
    let post = post_header_len(event.fde(), ty);
    if post != 6 && post != 8 {
        // the format description says this type is something else here
        // (development builds of 5.1/5.2 numbered their events otherwise)
        return Err(format!(
            "event type {ty} has a post-header of {post} bytes in this file's format description, not a pre-GA rows event's 6 or 8"
        ));
    }
    let body = if ty == EventType::PRE_GA_UPDATE_ROWS_EVENT as u8 {
        // one bitmap for both images: write it twice
        let at = usize::from(post);
        let (width, n) = lenenc(data.get(at..).unwrap_or(&[]))?;
        let bitmap = usize::try_from(width.div_ceil(8)).map_err(|_| "column count overflows")?;
        let end = at + n + bitmap;
        let cols = data.get(at + n..end).ok_or("column bitmap is truncated")?;
        let mut body = data[..end].to_vec();
        body.extend_from_slice(cols);
        body.extend_from_slice(&data[end..]);
        body
    } else {
        data.to_vec()
    };
    let v1 = ty - 20 + EventType::WRITE_ROWS_EVENT_V1 as u8;
    // parse with the pre-GA post-header length under the v1 type
    let mut lengths = event.fde().event_type_header_lengths().to_vec();
    if lengths.len() < 25 {
        lengths.resize(25, 0);
    }
    lengths[usize::from(v1) - 1] = post;
    let fde = event.fde().clone().with_event_type_header_lengths(lengths);
    rebuild(event, v1, &body, fde)
}

/// The post-header length the format description gives a raw type, with
/// the servers' defaults for types it does not list.
fn post_header_len(fde: &FormatDescriptionEvent<'_>, ty: u8) -> u8 {
    let listed = usize::from(ty)
        .checked_sub(1)
        .and_then(|i| fde.event_type_header_lengths().get(i).copied());
    listed.unwrap_or(match ty {
        165 => 13,
        20..=22 | 166..=168 => 8,
        _ => 10,
    })
}

/// An event of type `ty` with `event`'s header fields and `body`, parsed
/// without a checksum under `fde`.
fn rebuild(
    event: &Event,
    ty: u8,
    body: &[u8],
    fde: FormatDescriptionEvent<'static>,
) -> Result<Event, String> {
    let h = event.header();
    let size = u32::try_from(19 + body.len()).map_err(|_| "event too large".to_string())?;
    let mut raw = Vec::with_capacity(19 + body.len());
    raw.extend_from_slice(&h.timestamp().to_le_bytes());
    raw.push(ty);
    raw.extend_from_slice(&h.server_id().to_le_bytes());
    raw.extend_from_slice(&size.to_le_bytes());
    raw.extend_from_slice(&h.log_pos().to_le_bytes());
    raw.extend_from_slice(&h.flags_raw().to_le_bytes());
    raw.extend_from_slice(body);
    let fde = fde.with_footer(BinlogEventFooter::new(
        BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_OFF,
    ));
    Event::read(&fde, &raw[..]).map_err(|e| format!("re-made event type {ty}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tails_inflate_with_a_big_endian_length() {
        let text = vec![b'x'; 300];
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&text).unwrap();
        let mut tail = vec![0x82, 0x01, 0x2c];
        tail.extend(z.finish().unwrap());
        assert_eq!(inflate_tail(&tail).unwrap(), text);
        // a length that does not match is refused, and so is a bad header
        tail[2] = 0x2b;
        assert!(inflate_tail(&tail).is_err());
        assert!(inflate_tail(&[0x00, 1]).is_err());
        assert!(inflate_tail(&[0x85, 1]).is_err());
    }

    #[test]
    fn lenenc_reads_wide_values() {
        assert_eq!(lenenc(&[5]).unwrap(), (5, 1));
        assert_eq!(lenenc(&[252, 0x34, 0x12]).unwrap(), (0x1234, 3));
        assert!(lenenc(&[253, 1]).is_err());
        assert!(lenenc(&[]).is_err());
    }
}
