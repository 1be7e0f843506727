//! The built-in functions: the registry used when binding (names, arity)
//! and the implementations used when evaluating.
//!
//! Function names are case-insensitive. Unless stated otherwise a NULL
//! argument makes the result NULL.

use super::error::EvalError;
use super::num::Num;
use super::value::Value;

/// A built-in function whose arguments are ordinary expressions. The
/// implementations below (and in `eval.rs` for the lazy ones) have the
/// details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    /// `crc32('MySQL')` → 3259397556; see [`crc32`].
    Crc32,
    /// `concat('a', 1)` → `'a1'`; see [`concat()`].
    Concat,
    /// `substr('abcdef', 2, 3)` → `'bcd'`; see [`substr`].
    Substr,
    /// `lower('MySQL')` → `'mysql'`; see [`lower`].
    Lower,
    /// `upper('MySQL')` → `'MYSQL'`; see [`upper`].
    Upper,
    /// `coalesce(a, b, ...)`: the first non-NULL argument (later arguments
    /// are not evaluated), NULL if all are NULL.
    ///
    /// ```text
    /// coalesce(NULL, 'x', 1 / 0)  → 'x'
    /// coalesce(NULL, NULL)        → NULL
    /// ```
    Coalesce,
    /// `if(cond, a, b)`: `a` if `cond` is true (nonzero; strings are
    /// converted to numbers), else `b` — also when `cond` is NULL. Only the
    /// chosen branch is evaluated.
    ///
    /// ```text
    /// if(status = 'vip', 0, crc32(id) % 3 + 1)
    /// if(NULL, 'a', 'b')   → 'b'
    /// ```
    If,
    /// `abs(-2.50)` → `2.50`; see [`abs`].
    Abs,
    /// `year('2024-02-29')` → 2024; see [`date_part`].
    Year,
    /// `month('2024-02-29')` → 2; see [`date_part`].
    Month,
    /// `day('2024-02-29')` → 29; see [`date_part`].
    Day,
    /// `hash64(a, b)`: see [`hash64`].
    Hash64,
}

/// How a function's call is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// All arguments are bound as expressions.
    Plain(Func),
    /// `range(x, [b1, ..., bn])`: the bounds must be ascending numeric
    /// literals; see [`range`].
    Range,
    /// `lookup('table', key)`: the value the [`EvalContext`] maps `key` to
    /// in `table` (a string literal, checked when binding); NULL when the
    /// key is NULL or absent; an error if the context fails.
    ///
    /// ```text
    /// lookup('tenant_shard', tenant_id)
    /// coalesce(lookup('tenant_shard', tenant_id), crc32(tenant_id) % 4)
    /// ```
    ///
    /// [`EvalContext`]: super::EvalContext
    Lookup,
    /// `json_extract(doc, path)`: the value at `path` in the JSON text
    /// `doc`; a literal path is checked when binding. See
    /// [`json::extract`](super::json::extract) for the result types.
    ///
    /// ```text
    /// json_extract('{"user": {"id": "u7"}}', '$.user.id')  → 'u7'
    /// json_extract('{"a": [10, 20]}', '$.a[1]')            → 20
    /// json_extract('{"a": 1}', '$.b')                      → NULL
    /// ```
    JsonExtract,
}

/// Name and arity of a built-in function.
#[derive(Debug)]
pub(crate) struct Spec {
    pub kind: Kind,
    /// Canonical name, used in messages.
    pub name: &'static str,
    pub min_args: usize,
    /// `None`: any number of arguments from `min_args` on.
    pub max_args: Option<usize>,
}

const fn spec(kind: Kind, name: &'static str, min_args: usize, max_args: Option<usize>) -> Spec {
    Spec {
        kind,
        name,
        min_args,
        max_args,
    }
}

/// Every function, with aliases (an alias shares the canonical name).
const FUNCTIONS: &[(&str, Spec)] = &[
    ("crc32", spec(Kind::Plain(Func::Crc32), "crc32", 1, Some(1))),
    ("concat", spec(Kind::Plain(Func::Concat), "concat", 1, None)),
    (
        "substr",
        spec(Kind::Plain(Func::Substr), "substr", 2, Some(3)),
    ),
    (
        "substring",
        spec(Kind::Plain(Func::Substr), "substr", 2, Some(3)),
    ),
    ("lower", spec(Kind::Plain(Func::Lower), "lower", 1, Some(1))),
    ("upper", spec(Kind::Plain(Func::Upper), "upper", 1, Some(1))),
    (
        "coalesce",
        spec(Kind::Plain(Func::Coalesce), "coalesce", 1, None),
    ),
    ("if", spec(Kind::Plain(Func::If), "if", 3, Some(3))),
    ("abs", spec(Kind::Plain(Func::Abs), "abs", 1, Some(1))),
    (
        "json_extract",
        spec(Kind::JsonExtract, "json_extract", 2, Some(2)),
    ),
    ("year", spec(Kind::Plain(Func::Year), "year", 1, Some(1))),
    ("month", spec(Kind::Plain(Func::Month), "month", 1, Some(1))),
    ("day", spec(Kind::Plain(Func::Day), "day", 1, Some(1))),
    ("range", spec(Kind::Range, "range", 2, Some(2))),
    ("hash64", spec(Kind::Plain(Func::Hash64), "hash64", 1, None)),
    ("lookup", spec(Kind::Lookup, "lookup", 2, Some(2))),
];

/// Looks a function up by name (case-insensitive).
pub(crate) fn find(name: &str) -> Option<&'static Spec> {
    FUNCTIONS
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
        .map(|(_, spec)| spec)
}

impl Spec {
    /// The error message if `got` arguments is the wrong number.
    pub fn arity_error(&self, got: usize) -> Option<String> {
        let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
        let name = self.name;
        match self.max_args {
            Some(max) if max == self.min_args && got != max => {
                Some(format!("{name}() takes {max} {}, got {got}", plural(max)))
            }
            Some(max) if got < self.min_args || got > max => Some(format!(
                "{name}() takes {} to {max} arguments, got {got}",
                self.min_args
            )),
            None if got < self.min_args => Some(format!(
                "{name}() takes at least {} {}, got {got}",
                self.min_args,
                plural(self.min_args)
            )),
            _ => None,
        }
    }
}

/// A short, printable rendering of a value for error messages.
pub(crate) fn show(value: &Value) -> String {
    match value.to_text() {
        None => "NULL".to_string(),
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let mut short: String = text.chars().take(40).collect();
            if short.len() < text.len() {
                short.push('…');
            }
            format!("'{}'", short.escape_debug())
        }
    }
}

/// `crc32(x)`: the CRC-32 (IEEE) of `x`'s text, as MySQL's `CRC32()`.
///
/// ```text
/// crc32('MySQL')  → 3259397556
/// crc32(123)      → 2286445522   (same as crc32('123'))
/// crc32(NULL)     → NULL
/// ```
pub(crate) fn crc32(x: &Value) -> Value {
    // an integer's decimal digits are written on the stack (the common
    // `crc32(int_column)` of a shard expression allocates nothing)
    let mut digits = [0u8; 24];
    let text = match x {
        Value::Int(i) => decimal(i128::from(*i), &mut digits),
        Value::UInt(u) => decimal(i128::from(*u), &mut digits),
        _ => match x.to_text() {
            Some(text) => return Value::UInt(u64::from(crc32fast::hash(&text))),
            None => return Value::Null,
        },
    };
    Value::UInt(u64::from(crc32fast::hash(text)))
}

/// The decimal text of `n` (as [`Value::to_text`] writes an integer),
/// written into the end of `buf`.
fn decimal(n: i128, buf: &mut [u8; 24]) -> &[u8] {
    let mut at = buf.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

/// `concat(a, b, ...)`: the arguments' texts joined; NULL if any is NULL.
///
/// ```text
/// concat('a', 1, 2.50)  → 'a12.50'
/// concat('a', NULL)     → NULL
/// ```
pub(crate) fn concat(args: &[Value]) -> Value {
    let mut out = Vec::new();
    for arg in args {
        match arg.to_text() {
            Some(text) => out.extend_from_slice(&text),
            None => return Value::Null,
        }
    }
    Value::Bytes(out)
}

/// `substr(s, pos[, len])` (alias `substring`): MySQL `SUBSTRING()`.
/// Positions are 1-based; a negative `pos` counts from the end; `pos = 0`
/// or `len < 1` give `''`. Non-integer `pos`/`len` are rounded.
///
/// It works on BYTES, which equals characters for single-byte character
/// sets (latin1, ascii, binary) but not for multi-byte ones (utf8mb4).
///
/// ```text
/// substr('abcdef', 2)      → 'bcdef'
/// substr('abcdef', -2)     → 'ef'
/// substr('abcdef', 2, 3)   → 'bcd'
/// substr(12345, 1, 2)      → '12'
/// ```
pub(crate) fn substr(s: &Value, pos: &Value, len: Option<&Value>) -> Value {
    let (Some(text), Some(pos)) = (s.to_text(), Num::from_value(pos)) else {
        return Value::Null;
    };
    let len = match len.map(Num::from_value) {
        None => None,
        Some(None) => return Value::Null,
        Some(Some(n)) => Some(n.to_i64_saturating()),
    };
    let pos = pos.to_i64_saturating();
    let total = i128::try_from(text.len()).unwrap_or(i128::MAX);
    let start: i128 = match pos {
        0 => return Value::Bytes(Vec::new()),
        p if p > 0 => i128::from(p) - 1,
        p => total + i128::from(p),
    };
    if start < 0 || start >= total {
        return Value::Bytes(Vec::new());
    }
    let end = match len {
        None => total,
        Some(l) if l < 1 => return Value::Bytes(Vec::new()),
        Some(l) => (start + i128::from(l)).min(total),
    };
    // 0 <= start < end <= total = text.len(), so both fit usize.
    let (start, end) = (start as usize, end as usize);
    Value::Bytes(text.get(start..end).unwrap_or_default().to_vec())
}

fn map_text(x: &Value, f: fn(&[u8]) -> Vec<u8>) -> Value {
    match x.to_text() {
        Some(text) => Value::Bytes(f(&text)),
        None => Value::Null,
    }
}

/// `lower(s)`: ASCII letters to lower case; other bytes (including
/// non-ASCII letters) are unchanged.
///
/// ```text
/// lower('MySQL')  → 'mysql'
/// ```
pub(crate) fn lower(x: &Value) -> Value {
    map_text(x, <[u8]>::to_ascii_lowercase)
}

/// `upper(s)`: ASCII letters to upper case; other bytes (including
/// non-ASCII letters) are unchanged.
///
/// ```text
/// upper('MySQL')  → 'MYSQL'
/// ```
pub(crate) fn upper(x: &Value) -> Value {
    map_text(x, <[u8]>::to_ascii_uppercase)
}

/// `abs(x)`: absolute value, keeping the type (strings become doubles).
/// `abs(-9223372036854775808)` overflows, as in MySQL.
///
/// ```text
/// abs(-5)      → 5
/// abs(-2.50)   → 2.50
/// ```
pub(crate) fn abs(x: &Value) -> Result<Value, EvalError> {
    const OP: &str = "abs()";
    match x {
        Value::Null => Ok(Value::Null),
        Value::Int(i) => i
            .checked_abs()
            .map(Value::Int)
            .ok_or(EvalError::Overflow { op: OP }),
        Value::UInt(u) => Ok(Value::UInt(*u)),
        Value::Decimal(d) if !d.starts_with('+') => {
            Ok(Value::Decimal(d.strip_prefix('-').unwrap_or(d).to_string()))
        }
        other => match Num::from_value(other) {
            None => Ok(Value::Null),
            Some(Num::Float(f)) => Ok(Value::Double(f.abs())),
            Some(n) if n.compare(Num::Int(0)) == Some(std::cmp::Ordering::Less) => {
                super::num::negate(&n.into_value(OP)?)
            }
            Some(n) => n.into_value(OP),
        },
    }
}

/// Which part of a date [`date_part`] extracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DatePart {
    Year,
    Month,
    Day,
}

/// Parses `YYYY-MM-DD[( |T)hh:mm:ss[.f{1,6}]]`. Zero dates and zero parts
/// (`0000-00-00`, `2024-00-00`) are accepted as MySQL can store them;
/// otherwise the day must exist in that month.
fn parse_date(text: &[u8]) -> Option<(i64, i64, i64)> {
    fn num(bytes: &[u8]) -> Option<i64> {
        if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            bytes
                .iter()
                .fold(0, |acc, b| acc * 10 + i64::from(b - b'0')),
        )
    }
    let date = text.get(..10)?;
    if date[4] != b'-' || date[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(&date[..4])?, num(&date[5..7])?, num(&date[8..10])?);
    if month > 12 || day > 31 {
        return None;
    }
    if month > 0 && day > 0 {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let days = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        if day > days {
            return None;
        }
    }
    let rest = &text[10..];
    if !rest.is_empty() {
        if !matches!(rest[0], b' ' | b'T') || rest.len() < 9 || rest[3] != b':' || rest[6] != b':' {
            return None;
        }
        let (h, m, s) = (num(&rest[1..3])?, num(&rest[4..6])?, num(&rest[7..9])?);
        if h > 23 || m > 59 || s > 59 {
            return None;
        }
        let frac = &rest[9..];
        if !frac.is_empty() {
            if frac[0] != b'.' || frac.len() < 2 || frac.len() > 7 {
                return None;
            }
            num(&frac[1..])?;
        }
    }
    Some((year, month, day))
}

/// `year(d)`, `month(d)`, `day(d)`: a part of a DATE or DATETIME text
/// (`YYYY-MM-DD[ hh:mm:ss[.ffffff]]`); anything else is an error.
///
/// ```text
/// year('2024-02-29 13:45:00')  → 2024
/// month('2024-02-29')          → 2
/// day('2024-02-29')            → 29
/// month('2024-02-30')          → error
/// ```
pub(crate) fn date_part(func: &'static str, x: &Value, part: DatePart) -> Result<Value, EvalError> {
    let Some(text) = x.to_text() else {
        return Ok(Value::Null);
    };
    let (year, month, day) = parse_date(&text).ok_or_else(|| EvalError::BadArgument {
        func,
        arg: 1,
        message: format!(
            "must be a date 'YYYY-MM-DD[ hh:mm:ss[.ffffff]]', got {}",
            show(x)
        ),
    })?;
    Ok(Value::Int(match part {
        DatePart::Year => year,
        DatePart::Month => month,
        DatePart::Day => day,
    }))
}

/// `range(x, [b1, b2, ..., bn])`: the bucket of `x`, i.e. how many bounds
/// are `<= x`: `x < b1` → 0, `b1 <= x < b2` → 1, ..., `x >= bn` → n. The
/// bounds are numeric literals in strictly ascending order (checked when
/// binding); `x` is compared numerically (strings are converted to
/// numbers). NULL `x` gives NULL.
///
/// ```text
/// range(5, [10, 20])    → 0
/// range(10, [10, 20])   → 1
/// range(25, [10, 20])   → 2
/// ```
pub(crate) fn range(x: &Value, bounds: &[Num]) -> Value {
    let Some(x) = Num::from_value(x) else {
        return Value::Null;
    };
    let below = bounds
        .iter()
        .take_while(|b| {
            matches!(
                b.compare(x),
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
            )
        })
        .count();
    Value::Int(i64::try_from(below).unwrap_or(i64::MAX))
}

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The hash behind `hash64(a, b, ...)`, exposed so other code (and users)
/// can reproduce it.
///
/// Algorithm: FNV-1a 64 (offset basis `0xcbf29ce484222325`, prime
/// `0x100000001b3`; for each byte: `h ^= byte; h = h.wrapping_mul(prime)`)
/// over the concatenation, for each argument in order, of
///
/// * a tag byte: `0x00` for NULL, `0x01` otherwise;
/// * the argument's [`Value::to_text`] bytes (none for NULL);
/// * the length of those bytes as 4 bytes little-endian (`0` for NULL).
///
/// This encoding is unambiguous (read it from the end), so
/// `hash64('ab', 'c') != hash64('a', 'bc')` and `hash64(NULL) != hash64('')`.
///
/// ```
/// use reshard::rules::expr::{hash64, Value};
/// // FNV-1a 64 over the bytes 01 'a' 01 00 00 00
/// assert_eq!(hash64(&[Value::Bytes(b"a".to_vec())]), 0xfddf_3539_0cb2_a536);
/// // 12345 hashes as its text "12345", exactly like '12345'
/// assert_eq!(hash64(&[Value::Int(12345)]), hash64(&[Value::Bytes(b"12345".to_vec())]));
/// ```
pub fn hash64(args: &[Value]) -> u64 {
    let mut hash = FNV_OFFSET;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    };
    for arg in args {
        match arg.to_text() {
            None => {
                feed(&[0]);
                feed(&0u32.to_le_bytes());
            }
            Some(text) => {
                feed(&[1]);
                feed(&text);
                let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
                feed(&len.to_le_bytes());
            }
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `crc32` of an integer hashes the same text as of its string.
    #[test]
    fn crc32_of_an_integer_hashes_its_decimal_text() {
        let ints = [0i64, 7, -1, 10, -10, 12345, i64::MAX, i64::MIN];
        for i in ints {
            let text = Value::Bytes(i.to_string().into_bytes());
            assert_eq!(crc32(&Value::Int(i)), crc32(&text), "{i}");
        }
        for u in [0u64, 9, 100, u64::MAX] {
            let text = Value::Bytes(u.to_string().into_bytes());
            assert_eq!(crc32(&Value::UInt(u)), crc32(&text), "{u}");
        }
        assert_eq!(crc32(&Value::Null), Value::Null);
    }
}
