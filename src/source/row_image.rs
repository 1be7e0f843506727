//! What the values of a row image become: the bindable values reshard
//! writes, so that a decoded row can be bound as parameters and stored
//! bit-for-bit equal to the source. [`super::decode`] produces them
//! straight from the event bytes (on every path: the tailer, the archive
//! reader, `inspect`); this module holds what its callers share.
//!
//! * integers take their signedness from the column (`BIGINT UNSIGNED`'s
//!   maximum is 18446744073709551615, not -1, even where the TABLE_MAP
//!   carries no signedness and the schema supplies it), and a signed
//!   `MEDIUMINT` is sign-extended from its 24 bits;
//! * TIMESTAMP, logged as seconds since the epoch, becomes a UTC date-time
//!   (every session runs at `time_zone = '+00:00'`); 0 is the zero date;
//! * SET and BIT become their integer value; YEAR its number (0 for the
//!   zero year);
//! * `BINARY(n)` arrives without its trailing zero bytes (the server
//!   strips the pad byte when it logs the value) and gets them back, so that
//!   the value is the `n` bytes the server stores, compares and hashes:
//!   `DELETE … WHERE id = ?` binds a value that matches the row, and the
//!   canonical key (lane, batch, tombstone) is the same as the one the
//!   initial copy computes from the `SELECT`ed row. The decoder is the only
//!   place the padding is restored; every later use sees the full value.
//! * MySQL's binary JSON becomes the JSON text MySQL prints for it
//!   ([`super::json_binary`]);
//! * DECIMAL stays exact text; TIME a (possibly negative) time with days;
//!   strings stay bytes in their column's character set.

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{table}: row image has {got} columns, expected {expected}: the source must use binlog_row_image=FULL")]
    PartialImage {
        table: String,
        got: usize,
        expected: usize,
    },
    #[error("{table}.{column}: {message}")]
    Value {
        table: String,
        column: String,
        message: String,
    },
}

/// Days-from-civil inverse (Howard Hinnant's algorithm), UTC.
pub fn civil_from_unix(secs: i64) -> (i64, u8, u8, u8, u8, u8) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m as u8,
        d as u8,
        (rem / 3600) as u8,
        ((rem % 3600) / 60) as u8,
        (rem % 60) as u8,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(civil_from_unix(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil_from_unix(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil_from_unix(2_147_483_647), (2038, 1, 19, 3, 14, 7));
    }
}
