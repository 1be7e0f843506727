//! Event checksums (CRC32), verified for every event.
//!
//! mysql_common parses the checksum but never checks it: a flipped byte in
//! a row image decodes into a wrong value silently. We recompute the CRC32
//! (crc32fast, through `Event::calc_checksum`, which hashes the serialized
//! header and body exactly as the server did) and compare.

use mysql_common::binlog::consts::BinlogChecksumAlg;
use mysql_common::binlog::events::Event;

/// `Some((expected, actual))` when the event's checksum does not match.
pub fn mismatch(event: &Event) -> Option<(u32, u32)> {
    let stored = event.checksum()?;
    let alg = event.footer().get_checksum_alg().ok().flatten()?;
    if alg != BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32 {
        return None;
    }
    let stored = u32::from_le_bytes(stored);
    let actual = event.calc_checksum(alg);
    (stored != actual).then_some((stored, actual))
}
