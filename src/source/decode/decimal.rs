//! MySQL's binary DECIMAL → its exact text, written straight into the
//! value's bytes (no intermediate digit vector). The text is what
//! mysql_common's `Decimal` prints for the same bytes: the integer part
//! without leading zeros (`0` when it is zero), then `.` and exactly
//! `scale` fraction digits.
//!
//! The binary form stores the digits in groups of nine per big-endian
//! 4-byte word, with a shorter word for a leading (integer) or trailing
//! (fraction) group of fewer digits; the sign is the inverted top bit, and
//! a negative number has every byte inverted.

use super::bytes::Cursor;
use super::values::ValueError;

const DIG_PER_DEC: usize = 9;
const DIG_TO_BYTES: [usize; DIG_PER_DEC + 1] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
const POWERS_10: [u32; DIG_PER_DEC + 1] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

/// Bytes of a DECIMAL(precision, scale) value.
pub fn bin_size(precision: u8, scale: u8) -> usize {
    let intg = usize::from(precision.saturating_sub(scale));
    let frac = usize::from(scale);
    (intg / DIG_PER_DEC) * 4
        + DIG_TO_BYTES[intg % DIG_PER_DEC]
        + (frac / DIG_PER_DEC) * 4
        + DIG_TO_BYTES[frac % DIG_PER_DEC]
}

/// The digit groups of a value: (digits, value) from the most significant.
struct Groups<'a> {
    bytes: &'a [u8],
    at: usize,
    /// 0 for a positive number, 0xFF for a negative one.
    mask: u8,
}

impl Groups<'_> {
    /// The next group of `digits` digits.
    fn next(&mut self, digits: usize) -> Result<u32, ValueError> {
        let n = DIG_TO_BYTES[digits];
        let mut v = 0u32;
        for (i, b) in self.bytes[self.at..self.at + n].iter().enumerate() {
            let b = if self.at + i == 0 { b ^ 0x80 } else { *b };
            v = (v << 8) | u32::from(b ^ self.mask);
        }
        self.at += n;
        if v >= POWERS_10[digits] {
            return Err(ValueError::Bad(format!(
                "DECIMAL digit group {v} has more than {digits} digits"
            )));
        }
        Ok(v)
    }
}

/// Reads a DECIMAL(precision, scale) value as text.
pub fn to_text(c: &mut Cursor<'_>, precision: u8, scale: u8) -> Result<Vec<u8>, ValueError> {
    let bytes = c.take(bin_size(precision, scale))?;
    let mask = if bytes.first().is_some_and(|b| b & 0x80 == 0) {
        0xFF
    } else {
        0
    };
    let mut g = Groups { bytes, at: 0, mask };
    let intg = usize::from(precision - scale);
    let frac = usize::from(scale);
    let mut out = Vec::with_capacity(usize::from(precision) + 3);
    if mask != 0 {
        out.push(b'-');
    }
    let mut started = false;
    let mut int_group = |v: u32, digits: usize, out: &mut Vec<u8>| {
        if started {
            push_padded(out, v, digits);
        } else if v != 0 {
            push_unpadded(out, v);
            started = true;
        }
    };
    if intg % DIG_PER_DEC > 0 {
        let v = g.next(intg % DIG_PER_DEC)?;
        int_group(v, DIG_PER_DEC, &mut out);
    }
    for _ in 0..intg / DIG_PER_DEC {
        let v = g.next(DIG_PER_DEC)?;
        int_group(v, DIG_PER_DEC, &mut out);
    }
    if !started {
        if frac == 0 && mask != 0 {
            // a negative zero without a fraction prints as `0` (with one,
            // as `-0.00`), as mysql_common prints it
            out.clear();
        }
        out.push(b'0');
    }
    if frac > 0 {
        out.push(b'.');
        for _ in 0..frac / DIG_PER_DEC {
            let v = g.next(DIG_PER_DEC)?;
            push_padded(&mut out, v, DIG_PER_DEC);
        }
        if frac % DIG_PER_DEC > 0 {
            let v = g.next(frac % DIG_PER_DEC)?;
            push_padded(&mut out, v, frac % DIG_PER_DEC);
        }
    }
    Ok(out)
}

/// `v` with exactly `digits` digits (leading zeros).
fn push_padded(out: &mut Vec<u8>, mut v: u32, digits: usize) {
    let start = out.len();
    out.resize(start + digits, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn push_unpadded(out: &mut Vec<u8>, v: u32) {
    let digits = POWERS_10
        .iter()
        .position(|p| v < *p)
        .unwrap_or(DIG_PER_DEC + 1)
        .max(1);
    push_padded(out, v, digits);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::binlog::decimal::Decimal;

    /// The binary DECIMAL(p, s) of `text` (as the server writes it), and
    /// the text mysql_common reads back from it.
    fn reference(text: &str, p: u8, s: u8) -> (Vec<u8>, String) {
        let (neg, digits) = match text.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, text),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let intg = usize::from(p - s);
        let int = format!("{int:0>intg$}");
        let frac = format!("{frac:0<w$}", w = usize::from(s));
        let mut groups: Vec<(usize, u32)> = Vec::new();
        let lead = intg % DIG_PER_DEC;
        let mut rest = &int[..];
        if lead > 0 {
            groups.push((lead, rest[..lead].parse().unwrap()));
            rest = &rest[lead..];
        }
        while !rest.is_empty() {
            groups.push((9, rest[..9].parse().unwrap()));
            rest = &rest[9..];
        }
        let mut rest = &frac[..];
        while !rest.is_empty() {
            let n = rest.len().min(9);
            groups.push((n, rest[..n].parse().unwrap()));
            rest = &rest[n..];
        }
        let mut bin = Vec::new();
        for (d, v) in groups {
            let n = DIG_TO_BYTES[d];
            bin.extend_from_slice(&v.to_be_bytes()[4 - n..]);
        }
        if neg {
            bin.iter_mut().for_each(|b| *b = !*b);
        }
        bin[0] ^= 0x80;
        let back = Decimal::read_bin(&bin[..], usize::from(p), usize::from(s), false).unwrap();
        (bin, back.to_string())
    }

    #[test]
    fn prints_what_mysql_common_prints() {
        let cases: &[(&str, u8, u8)] = &[
            ("0.00", 12, 2),
            ("-0.05", 10, 2),
            ("123.45", 12, 2),
            ("1000000000.5", 12, 1),
            ("-99999999999999999999.999999999", 29, 9),
            ("12345678901234567890123456789.1234567890123", 42, 13),
            ("7", 1, 0),
            ("-7", 5, 0),
            ("0.000000001", 20, 9),
        ];
        for &(text, p, s) in cases {
            let (bin, want) = reference(text, p, s);
            assert_eq!(bin.len(), bin_size(p, s), "{text}");
            let got = to_text(&mut Cursor::new(&bin), p, s).unwrap();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                want,
                "{text} as DECIMAL({p},{s})"
            );
        }
    }

    #[test]
    fn refuses_groups_out_of_range() {
        // DECIMAL(2,0): one byte, at most 99
        assert!(to_text(&mut Cursor::new(&[0x80 | 100]), 2, 0).is_err());
        assert!(to_text(&mut Cursor::new(&[]), 2, 0).is_err());
    }
}
