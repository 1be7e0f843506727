//! Runtime values of the expression language and their MySQL text form.
//!
//! A [`Value`] is what a column holds after decoding and what every
//! expression evaluates to. [`Value::to_text`] yields the exact bytes MySQL's
//! `CRC32()` / `CONCAT()` would see for the same value, which is what makes
//! `crc32(col)` in a rule file reproducible with plain SQL.

use std::borrow::Cow;

/// A runtime value. Strings are BYTES in their column's own character set
/// (latin1 bytes stay latin1).
///
/// ```
/// use reshard::rules::expr::Value;
/// assert_eq!(Value::Int(-5).to_text().as_deref(), Some(&b"-5"[..]));
/// assert_eq!(Value::Double(1e20).to_text().as_deref(), Some(&b"1e20"[..]));
/// assert_eq!(Value::Null.to_text(), None);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A signed integer (any MySQL integer type that fits `i64`).
    Int(i64),
    /// An unsigned integer (`BIGINT UNSIGNED` values above `i64::MAX`, and
    /// the results of `crc32()` / `hash64()`).
    UInt(u64),
    /// Exact decimal text as MySQL prints it, e.g. `"-12.50"` (keeps the
    /// declared scale).
    Decimal(String),
    /// An IEEE double.
    Double(f64),
    /// A text or binary string; the text of dates/times is also carried as
    /// bytes (e.g. `b"2024-01-02 03:04:05.123456"`).
    Bytes(Vec<u8>),
}

impl Value {
    /// The bytes MySQL's `CRC32()` / `CONCAT()` would see: integers in
    /// decimal, `Decimal` text as is, `Bytes` as is, `Double` formatted like
    /// MySQL prints a DOUBLE. `Null` gives `None`.
    ///
    /// Doubles use the shortest digits that round-trip, the even candidate
    /// on an exact tie (what MySQL's `dtoa` produces) laid out like MySQL's `my_gcvt()`: plain notation when the
    /// decimal exponent `e` (value = `d.ddd × 10^e`) satisfies
    /// `-15 <= e <= 14` — or `e == 15` with 17 significant digits — and
    /// `d.ddde[-]N` otherwise. So `1.5 → "1.5"`, `100.0 → "100"`,
    /// `1e14 → "100000000000000"`, `1e15 → "1e15"`, `1e20 → "1e20"`,
    /// `0.0001 → "0.0001"`, `1e-16 → "1e-16"`, `-0.0 → "-0"`. Non-finite
    /// values (which MySQL cannot hold) print as `inf`, `-inf` and `nan`.
    pub fn to_text(&self) -> Option<Cow<'_, [u8]>> {
        match self {
            Value::Null => None,
            Value::Int(i) => Some(Cow::Owned(i.to_string().into_bytes())),
            Value::UInt(u) => Some(Cow::Owned(u.to_string().into_bytes())),
            Value::Decimal(s) => Some(Cow::Borrowed(s.as_bytes())),
            Value::Double(d) => Some(Cow::Owned(format_double(*d).into_bytes())),
            Value::Bytes(b) => Some(Cow::Borrowed(b.as_slice())),
        }
    }

    /// Whether this is SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A short name of the value's type for error messages: `NULL`,
    /// `integer`, `decimal`, `double` or `string`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) | Value::UInt(_) => "integer",
            Value::Decimal(_) => "decimal",
            Value::Double(_) => "double",
            Value::Bytes(_) => "string",
        }
    }

    /// The value as an exact integer, if it is one: `Int`/`UInt`, a
    /// `Decimal` whose fraction is all zeros, or an integral finite
    /// `Double`. Strings and NULL give `None`. Handy for turning a shard
    /// expression's result into an index.
    ///
    /// ```
    /// use reshard::rules::expr::Value;
    /// assert_eq!(Value::Decimal("3.00".into()).as_integer(), Some(3));
    /// assert_eq!(Value::Double(2.5).as_integer(), None);
    /// ```
    pub fn as_integer(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(i128::from(*i)),
            Value::UInt(u) => Some(i128::from(*u)),
            Value::Decimal(s) => {
                let (int_part, frac) = match s.split_once('.') {
                    Some((i, f)) => (i, f),
                    None => (s.as_str(), ""),
                };
                if !frac.bytes().all(|b| b == b'0') {
                    return None;
                }
                int_part.parse::<i128>().ok()
            }
            Value::Double(d) => {
                // 2^100 is far beyond any shard count and safely inside i128.
                if d.is_finite() && d.fract() == 0.0 && d.abs() < 1.3e30 {
                    Some(*d as i128)
                } else {
                    None
                }
            }
            Value::Null | Value::Bytes(_) => None,
        }
    }
}

/// Largest decimal exponent (`decpt`, digits before the point) printed in
/// plain notation; MySQL's `MAX_DECPT_FOR_F_FORMAT` (= `DBL_DIG`).
const MAX_DECPT_FOR_F_FORMAT: i32 = 15;

/// Formats a double like MySQL's `my_gcvt(x, MY_GCVT_ARG_DOUBLE, ...)` with
/// the wide buffer MySQL uses for `String::set_real()`; see
/// [`Value::to_text`].
pub(crate) fn format_double(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0");
    }
    let Some((digits, exponent)) = shortest_digits(x.abs()) else {
        return x.to_string();
    };
    let len = digits.len() as i32;
    let decpt = exponent + 1;
    let fixed = decpt > -MAX_DECPT_FOR_F_FORMAT && (decpt <= MAX_DECPT_FOR_F_FORMAT || len > decpt);
    let mut out = String::with_capacity(len as usize + 24);
    out.push_str(sign);
    if fixed {
        if decpt <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-decpt) as usize));
            out.push_str(&digits);
        } else if decpt < len {
            let (int_part, frac) = digits.split_at(decpt as usize);
            out.push_str(int_part);
            out.push('.');
            out.push_str(frac);
        } else {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (decpt - len) as usize));
        }
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push_str(&exponent.to_string());
    }
    out
}

/// The shortest digits that read back as `x` (finite, positive), without
/// the point, and the decimal exponent of the first one: `0.0125` →
/// `("125", -2)`. Like MySQL's `dtoa()` mode 0 (David Gay's), when two
/// candidates of that length are equally close to `x` the one with the
/// even last digit wins: `758485875790979.25` → `...9792`, where Rust's
/// `{:e}` alone gives `...9793`.
fn shortest_digits(x: f64) -> Option<(String, i32)> {
    fn split(sci: &str) -> Option<(String, i32)> {
        let (mantissa, exponent) = sci.split_once('e')?;
        let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
        Some((digits, exponent.parse().ok()?))
    }
    // `{:e}` prints the shortest round-trip digits, the closest to `x`
    // among them, rounding an exact tie up: "1.2345e-7", "1e20".
    let (digits, exponent) = split(&format!("{x:e}"))?;
    let odd = digits
        .bytes()
        .last()
        .is_some_and(|d| !(d - b'0').is_multiple_of(2));
    if digits.len() < 2 || !odd {
        return Some((digits, exponent));
    }
    // An odd last digit: if `x` lies exactly halfway between `digits` and
    // the candidate below, and that one reads back as `x` too, take it.
    // `x`'s exact expansion (at most 767 significant digits) tells.
    let (exact, exact_exponent) = split(&format!("{x:.800e}"))?;
    let (head, tail) = exact.split_at(digits.len());
    if exact_exponent != exponent
        || !tail.starts_with('5')
        || tail.bytes().skip(1).any(|d| d != b'0')
        || head >= digits.as_str()
    {
        return Some((digits, exponent));
    }
    let below = format!("{}.{}e{exponent}", &head[..1], &head[1..]);
    if below.parse::<f64>().ok() == Some(x) {
        return Some((head.trim_end_matches('0').to_string(), exponent));
    }
    Some((digits, exponent))
}
