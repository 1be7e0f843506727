//! Date and time values of row images. The 5.6.4+ formats (DATETIME2,
//! TIME2, TIMESTAMP2) follow the server's `my_*_packed_from_binary`, as
//! mysql_common's `binlog::misc` does, with its negative TIME(1)/TIME(2)
//! fix: a negative value with a fraction subtracts 0x100 from the fraction
//! byte, which must be signed arithmetic (mysql_common 0.37.3 underflowed
//! an unsigned one: a panic in debug builds, a wrong TIME in release).
//!
//! TIMESTAMP becomes a UTC date-time (every session runs at `time_zone =
//! '+00:00'`); seconds are unsigned (MariaDB 11.5+ goes past 2038).

use mysql_common::value::Value;

use super::bytes::Cursor;
use super::layout::Codec;
use super::values::ValueError;
use crate::source::row_image::civil_from_unix;

const TIMEF_INT_OFS: i64 = 0x80_0000;
const TIMEF_OFS: i64 = 0x8000_0000_0000;
const DATETIMEF_INT_OFS: i64 = 0x80_0000_0000;

/// Bytes of the fractional part for `fsp` digits.
pub fn frac_len(fsp: u8) -> usize {
    usize::from(fsp).div_ceil(2)
}

/// Decodes a temporal codec (the caller passes only those).
pub fn decode(codec: Codec, c: &mut Cursor<'_>) -> Result<Value, ValueError> {
    Ok(match codec {
        Codec::Date => {
            let v = c.le(3)?;
            Value::Date(
                (v >> 9) as u16,
                ((v >> 5) & 15) as u8,
                (v & 31) as u8,
                0,
                0,
                0,
                0,
            )
        }
        Codec::OldDateTime => {
            let v = c.le(8)?;
            let (d, t) = (v / 1_000_000, v % 1_000_000);
            Value::Date(
                (d / 10_000) as u16,
                ((d % 10_000) / 100) as u8,
                (d % 100) as u8,
                (t / 10_000) as u8,
                ((t % 10_000) / 100) as u8,
                (t % 100) as u8,
                0,
            )
        }
        Codec::OldTime => {
            let v = c.le(3)? as u32;
            let h = v / 10_000;
            Value::Time(
                false,
                h / 24,
                (h % 24) as u8,
                ((v % 10_000) / 100) as u8,
                (v % 100) as u8,
                0,
            )
        }
        Codec::OldTimestamp => timestamp(c.le(4)? as i64, 0)?,
        Codec::DateTime2 { fsp } => datetime_from_packed(datetime_packed(c, fsp)?),
        Codec::Time2 { fsp } => time_from_packed(time_packed(c, fsp)?),
        Codec::Timestamp2 { fsp } => {
            let secs = c.be(4)? as i64;
            let micros = match fsp {
                1 | 2 => c.be_signed(1)? * 10_000,
                3 | 4 => c.be_signed(2)? * 100,
                5 | 6 => c.be_signed(3)?,
                _ => 0,
            };
            let micros = u32::try_from(micros)
                .ok()
                .filter(|m| *m < 1_000_000)
                .ok_or_else(|| ValueError::Bad(format!("bad TIMESTAMP fraction {micros}")))?;
            timestamp(secs, micros)?
        }
        other => return Err(ValueError::Bad(format!("{other:?} is not a temporal type"))),
    })
}

/// Seconds since the epoch → UTC date-time (0 is the zero date).
fn timestamp(secs: i64, micros: u32) -> Result<Value, ValueError> {
    if secs == 0 && micros == 0 {
        return Ok(Value::Date(0, 0, 0, 0, 0, 0, 0));
    }
    let (y, m, d, hh, mm, ss) = civil_from_unix(secs);
    let y =
        u16::try_from(y).map_err(|_| ValueError::Bad(format!("TIMESTAMP {secs} out of range")))?;
    Ok(Value::Date(y, m, d, hh, mm, ss, micros))
}

fn packed(int: i64, frac: i64) -> i64 {
    ((int as u64) << 24) as i64 + frac
}

fn datetime_packed(c: &mut Cursor<'_>, fsp: u8) -> Result<i64, ValueError> {
    let int = c.be(5)? as i64 - DATETIMEF_INT_OFS;
    let frac = match fsp {
        1 | 2 => c.be_signed(1)? * 10_000,
        3 | 4 => c.be_signed(2)? * 100,
        5 | 6 => c.be_signed(3)?,
        _ => return Ok(packed(int, 0)),
    };
    Ok(packed(int, frac))
}

fn datetime_from_packed(mut tmp: i64) -> Value {
    if tmp < 0 {
        tmp = tmp.wrapping_neg();
    }
    let usec = tmp % (1 << 24);
    let ymdhms = tmp >> 24;
    let ymd = ymdhms >> 17;
    let ym = ymd >> 5;
    let hms = ymdhms % (1 << 17);
    Value::Date(
        (ym / 13) as u16,
        (ym % 13) as u8,
        (ymd % (1 << 5)) as u8,
        (hms >> 12) as u8,
        ((hms >> 6) % (1 << 6)) as u8,
        (hms % (1 << 6)) as u8,
        usec as u32,
    )
}

fn time_packed(c: &mut Cursor<'_>, fsp: u8) -> Result<i64, ValueError> {
    Ok(match fsp {
        1 | 2 => {
            let mut int = c.be(3)? as i64 - TIMEF_INT_OFS;
            let mut frac = c.u8()? as i64;
            if int < 0 && frac > 0 {
                int += 1;
                frac -= 0x100;
            }
            packed(int, frac * 10_000)
        }
        3 | 4 => {
            let mut int = c.be(3)? as i64 - TIMEF_INT_OFS;
            let mut frac = c.be(2)? as i64;
            if int < 0 && frac > 0 {
                int += 1;
                frac -= 0x10000;
            }
            packed(int, frac * 100)
        }
        5 | 6 => c.be(6)? as i64 - TIMEF_OFS,
        _ => packed(c.be(3)? as i64 - TIMEF_INT_OFS, 0),
    })
}

fn time_from_packed(mut tmp: i64) -> Value {
    let neg = tmp < 0;
    if neg {
        tmp = tmp.wrapping_neg();
    }
    let hms = tmp >> 24;
    let h = ((hms >> 12) as u32) % (1 << 10);
    let m = ((hms >> 6) as u32) % (1 << 6);
    let s = (hms as u32) % (1 << 6);
    let u = tmp % (1 << 24);
    Value::Time(neg, h / 24, (h % 24) as u8, m as u8, s as u8, u as u32)
}

/// What a packed temporal value of a JSON document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packed {
    Date,
    DateTime,
    Time,
}

/// A date, date-time or time packed into an `i64` (MySQL's
/// `TIME_to_longlong_*_packed`, the form of the DATE, DATETIME, TIMESTAMP
/// and TIME scalars of binary JSON documents) as the text MySQL prints for
/// it in JSON: `YYYY-MM-DD`, `YYYY-MM-DD hh:mm:ss.ffffff` and
/// `[-]hh:mm:ss.ffffff`. Any `i64` prints (a corrupt one as some text).
pub fn packed_text(kind: Packed, packed: i64) -> String {
    let v = match kind {
        Packed::Time => time_from_packed(packed),
        Packed::Date | Packed::DateTime => datetime_from_packed(packed),
    };
    match (kind, v) {
        (Packed::Date, Value::Date(y, m, d, ..)) => format!("{y:04}-{m:02}-{d:02}"),
        (Packed::DateTime, Value::Date(y, m, d, hh, mm, ss, us)) => format!(
            "{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}.{:06}",
            us % 1_000_000
        ),
        (_, Value::Time(neg, days, h, mm, ss, us)) => format!(
            "{}{:02}:{mm:02}:{ss:02}.{:06}",
            if neg { "-" } else { "" },
            days * 24 + u32::from(h),
            us % 1_000_000
        ),
        (_, other) => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(codec: Codec, bytes: &[u8]) -> Value {
        let mut c = Cursor::new(bytes);
        let v = decode(codec, &mut c).unwrap();
        assert!(c.is_empty());
        v
    }

    /// TIME(n) bytes of `sign` `h:m:s.frac` as the server writes them
    /// (`my_time_packed_to_binary`): the packed value plus `TIMEF_OFS`,
    /// big-endian, its fraction cut to the column's bytes.
    fn time2_bytes(neg: bool, (h, m, s): (i64, i64, i64), micros: i64, fsp: u8) -> Vec<u8> {
        let packed = (((h << 12) | (m << 6) | s) << 24) + micros;
        let packed = if neg { -packed } else { packed };
        match fsp {
            1 | 2 => {
                // the integer part shifted arithmetically (one less for a
                // negative value with a fraction), the hundredths of the
                // remainder (negative with it) as a signed byte
                let int = ((packed >> 24) + TIMEF_INT_OFS) as u32;
                let frac = (packed % (1 << 24)) / 10_000;
                vec![
                    (int >> 16) as u8,
                    (int >> 8) as u8,
                    int as u8,
                    frac as i8 as u8,
                ]
            }
            _ => unreachable!("only TIME(1)/(2) here"),
        }
    }

    /// mysql_common 0.37.3 (`binlog::misc::my_time_packed_from_binary`)
    /// subtracts 0x100 from the fraction byte of a negative TIME(1)/(2)
    /// with a fraction as a `u32`: a panic in debug builds, a wrong TIME in
    /// release. The subtraction here is signed; `tests/crc32.rs`
    /// (`negative_time_fractions_match_server_crc32`) checks the same
    /// values against the server.
    #[test]
    fn negative_time_with_one_or_two_fraction_digits() {
        // TIME(2) '-00:00:01.50': intpart -2, borrowed back to -1,
        // and the fraction byte 0x100 - 50 = 206
        let int = (TIMEF_INT_OFS - 2) as u32;
        let b = [(int >> 16) as u8, (int >> 8) as u8, int as u8, 206];
        assert_eq!(
            dec(Codec::Time2 { fsp: 2 }, &b),
            Value::Time(true, 0, 0, 0, 1, 500_000)
        );
        assert_eq!(time2_bytes(true, (0, 0, 1), 500_000, 2), b);
        let cases = [
            (true, (0, 0, 0), 10_000),
            (true, (0, 0, 0), 990_000),
            (true, (12, 34, 56), 100_000),
            (true, (838, 59, 58), 990_000),
            (true, (25, 0, 0), 0),
            (false, (0, 0, 0), 10_000),
            (false, (838, 59, 59), 0),
            (false, (100, 1, 2), 470_000),
        ];
        for fsp in [1, 2] {
            for (neg, (h, m, s), micros) in cases {
                // TIME(1) holds tenths: the server rounds to them
                let micros = if fsp == 1 {
                    micros / 100_000 * 100_000
                } else {
                    micros
                };
                let b = time2_bytes(neg, (h, m, s), micros, fsp);
                // a zero has no sign
                let zero = (h, m, s, micros) == (0, 0, 0, 0);
                let want = Value::Time(
                    neg && !zero,
                    (h / 24) as u32,
                    (h % 24) as u8,
                    m as u8,
                    s as u8,
                    micros as u32,
                );
                assert_eq!(dec(Codec::Time2 { fsp }, &b), want, "TIME({fsp}) {b:?}");
            }
        }
    }

    #[test]
    fn datetime2_and_timestamp2() {
        // 2024-01-02 03:04:05.000006 as DATETIME(6)
        let ym: i64 = 2024 * 13 + 1;
        let int = ((ym << 5 | 2) << 17) | (3 << 12) | (4 << 6) | 5;
        let v = (int + DATETIMEF_INT_OFS) as u64;
        let mut b = v.to_be_bytes()[3..].to_vec();
        b.extend([0, 0, 6]);
        assert_eq!(
            dec(Codec::DateTime2 { fsp: 6 }, &b),
            Value::Date(2024, 1, 2, 3, 4, 5, 6)
        );
        let mut t = 1_700_000_000u32.to_be_bytes().to_vec();
        t.extend([0, 0x7B]);
        assert_eq!(
            dec(Codec::Timestamp2 { fsp: 3 }, &t),
            Value::Date(2023, 11, 14, 22, 13, 20, 12_300)
        );
        assert_eq!(
            dec(Codec::Timestamp2 { fsp: 0 }, &[0; 4]),
            Value::Date(0, 0, 0, 0, 0, 0, 0)
        );
        // past 2038 (MariaDB 11.5+)
        let t = 3_000_000_000u32.to_be_bytes();
        assert_eq!(
            dec(Codec::Timestamp2 { fsp: 0 }, &t),
            Value::Date(2065, 1, 24, 5, 20, 0, 0)
        );
    }

    #[test]
    fn packed_json_scalars_print_as_mysql_does() {
        use mysql_common::binlog::time::MysqlTime;
        // 2024-02-29 13:14:15.000016 and TIME 87:31:46.654321, both signs
        let ymd = ((2024 * 13 + 2) << 5) | 29;
        let dt = (((ymd << 17) | (13 << 12) | (14 << 6) | 15) << 24) | 16;
        let t = ((((87 << 12) | (31 << 6) | 46) as i64) << 24) | 654_321;
        let cases = [
            (Packed::Date, dt),
            (Packed::DateTime, dt),
            (Packed::Time, t),
            (Packed::Time, -t),
        ];
        for (kind, p) in cases {
            let want = match kind {
                Packed::Date => format!("{}", MysqlTime::from_int64_date_packed(p)),
                Packed::DateTime => format!("{:.6}", MysqlTime::from_int64_datetime_packed(p)),
                Packed::Time => format!("{:.6}", MysqlTime::from_int64_time_packed(p)),
            };
            assert_eq!(packed_text(kind, p), want, "{kind:?} {p}");
        }
        assert_eq!(
            packed_text(Packed::DateTime, dt),
            "2024-02-29 13:14:15.000016"
        );
        assert_eq!(packed_text(Packed::Time, -t), "-87:31:46.654321");
        // no panic on any bits (mysql_common negates i64::MIN)
        for p in [i64::MIN, i64::MAX, -1] {
            for kind in [Packed::Date, Packed::DateTime, Packed::Time] {
                let _ = packed_text(kind, p);
            }
        }
    }
}
