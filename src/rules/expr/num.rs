//! Numeric coercion, arithmetic and comparison with MySQL-like semantics.
//!
//! Every operand is first turned into a [`Num`]:
//!
//! * `Int` / `UInt` become an exact `i128` integer;
//! * `Decimal` text becomes an exact scaled `i128` ([`Dec`]) when it has at
//!   most 38 digits, otherwise a double;
//! * `Double` stays a double;
//! * strings (`Bytes`) become a double like MySQL does: the longest numeric
//!   prefix after leading whitespace (`"12abc"` → 12, `" 1.5e3x"` → 1500),
//!   `0` when there is none (`"abc"` → 0). No error is raised.
//!
//! Then the widest kind wins: any double makes the operation a double
//! operation; otherwise any decimal makes it an exact decimal operation
//! (falling back to doubles if the exact result would need more than 38
//! digits); otherwise it is an integer operation. Integer results must fit
//! `i64` (→ `Int`) or `u64` (→ `UInt`), else the operation fails with an
//! overflow error. Double results must be finite.

use std::cmp::Ordering;

use super::error::EvalError;
use super::value::Value;

/// Largest scale MySQL gives a DECIMAL result (`DECIMAL_MAX_SCALE`).
const MAX_SCALE: u32 = 30;
/// Digits `/` adds to the dividend's scale (`div_precision_increment`).
const DIV_SCALE_INCREMENT: u32 = 4;

/// An exact decimal: `mant / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dec {
    pub mant: i128,
    pub scale: u32,
}

impl Dec {
    /// Parses MySQL decimal text (`-12.50`, `7`, `0.5`, `1.`); `None` when
    /// the text is not plain decimal or does not fit 38 digits.
    pub fn parse(text: &str) -> Option<Dec> {
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (int_part, frac) = match body.split_once('.') {
            Some((i, f)) => (i, f),
            None => (body, ""),
        };
        if int_part.is_empty() && frac.is_empty() {
            return None;
        }
        let mut mant: i128 = 0;
        for b in int_part.bytes().chain(frac.bytes()) {
            if !b.is_ascii_digit() {
                return None;
            }
            mant = mant.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        let scale = u32::try_from(frac.len()).ok()?;
        if scale > 38 {
            return None;
        }
        Some(Dec {
            mant: if negative { -mant } else { mant },
            scale,
        })
    }

    /// MySQL's text for this decimal: `-0.05`, `12.50`, `3`.
    pub fn to_text(self) -> String {
        let digits = self.mant.unsigned_abs().to_string();
        let scale = self.scale as usize;
        let padded = if digits.len() <= scale {
            format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
        } else {
            digits
        };
        let (int_part, frac) = padded.split_at(padded.len() - scale);
        let sign = if self.mant < 0 { "-" } else { "" };
        if frac.is_empty() {
            format!("{sign}{int_part}")
        } else {
            format!("{sign}{int_part}.{frac}")
        }
    }

    /// The same value with a larger scale, if it fits.
    fn rescale(self, scale: u32) -> Option<Dec> {
        let factor = pow10(scale.checked_sub(self.scale)?)?;
        Some(Dec {
            mant: self.mant.checked_mul(factor)?,
            scale,
        })
    }

    /// Rounds (half away from zero) to a smaller scale.
    fn round_to(self, scale: u32) -> Option<Dec> {
        if scale >= self.scale {
            return Some(self);
        }
        let divisor = pow10(self.scale - scale)?;
        Some(Dec {
            mant: div_round(self.mant, divisor)?,
            scale,
        })
    }

    fn to_f64(self) -> f64 {
        self.to_text().parse().unwrap_or(0.0)
    }
}

/// `10^n` if it fits in `i128`.
fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

/// `n / d` rounded half away from zero; `None` when `d == 0`.
fn div_round(n: i128, d: i128) -> Option<i128> {
    let q = n.checked_div(d)?;
    let r = n.checked_rem(d)?;
    let (r_abs, d_abs) = (r.unsigned_abs(), d.unsigned_abs());
    if r_abs >= d_abs - r_abs {
        let away = if (n < 0) == (d < 0) { 1 } else { -1 };
        q.checked_add(away)
    } else {
        Some(q)
    }
}

/// A value in numeric context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i128),
    Dec(Dec),
    Float(f64),
}

impl Num {
    /// Numeric view of a value; `None` for NULL.
    pub fn from_value(value: &Value) -> Option<Num> {
        Some(match value {
            Value::Null => return None,
            Value::Int(i) => Num::Int(i128::from(*i)),
            Value::UInt(u) => Num::Int(i128::from(*u)),
            Value::Decimal(s) => match Dec::parse(s) {
                Some(d) => Num::Dec(d),
                None => Num::Float(str_to_f64(s.as_bytes())),
            },
            Value::Double(d) => Num::Float(*d),
            Value::Bytes(b) => Num::Float(str_to_f64(b)),
        })
    }

    pub fn to_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Dec(d) => d.to_f64(),
            Num::Float(f) => f,
        }
    }

    fn to_dec(self) -> Option<Dec> {
        match self {
            Num::Int(i) => Some(Dec { mant: i, scale: 0 }),
            Num::Dec(d) => Some(d),
            Num::Float(_) => None,
        }
    }

    pub fn is_zero(self) -> bool {
        match self {
            Num::Int(i) => i == 0,
            Num::Dec(d) => d.mant == 0,
            Num::Float(f) => f == 0.0,
        }
    }

    /// The value as a `Value` (integers must fit `i64`/`u64`).
    pub fn into_value(self, op: &'static str) -> Result<Value, EvalError> {
        match self {
            Num::Int(i) => int_value(i, op),
            Num::Dec(d) => Ok(Value::Decimal(d.to_text())),
            Num::Float(f) => float_value(f, op),
        }
    }

    /// Rounds to the nearest integer (half away from zero) and saturates to
    /// the `i64` range — how MySQL reads a position or length argument.
    pub fn to_i64_saturating(self) -> i64 {
        let rounded: i128 = match self {
            Num::Int(i) => i,
            Num::Dec(d) => match pow10(d.scale).and_then(|p| div_round(d.mant, p)) {
                Some(v) => v,
                None => d.to_f64().round() as i128,
            },
            // `as` saturates and maps NaN to 0.
            Num::Float(f) => f.round() as i128,
        };
        rounded.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// Exact (where possible) numeric ordering; `None` only for NaN.
    pub fn compare(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (Num::Float(_), _) | (_, Num::Float(_)) => self.to_f64().partial_cmp(&other.to_f64()),
            _ => match (self.to_dec(), other.to_dec()) {
                (Some(a), Some(b)) => {
                    let scale = a.scale.max(b.scale);
                    match (a.rescale(scale), b.rescale(scale)) {
                        (Some(a), Some(b)) => Some(a.mant.cmp(&b.mant)),
                        _ => self.to_f64().partial_cmp(&other.to_f64()),
                    }
                }
                _ => self.to_f64().partial_cmp(&other.to_f64()),
            },
        }
    }
}

/// An `i128` as `Int` if it fits `i64`, else `UInt` if it fits `u64`, else
/// an overflow error for `op`.
pub(crate) fn int_value(v: i128, op: &'static str) -> Result<Value, EvalError> {
    if let Ok(i) = i64::try_from(v) {
        Ok(Value::Int(i))
    } else if let Ok(u) = u64::try_from(v) {
        Ok(Value::UInt(u))
    } else {
        Err(EvalError::Overflow { op })
    }
}

/// A finite double as `Double`, else an overflow error for `op`.
pub(crate) fn float_value(f: f64, op: &'static str) -> Result<Value, EvalError> {
    if f.is_finite() {
        Ok(Value::Double(f))
    } else {
        Err(EvalError::Overflow { op })
    }
}

/// MySQL's string-to-number conversion: the longest numeric prefix after
/// leading whitespace, `0` if there is none; out-of-range values saturate
/// to `±f64::MAX` like MySQL's `my_strtod`.
pub(crate) fn str_to_f64(bytes: &[u8]) -> f64 {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .unwrap_or(bytes.len());
    let s = &bytes[start..];
    let mut i = 0;
    if matches!(s.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while s.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - int_start;
    if s.get(i) == Some(&b'.') {
        let frac_start = i + 1;
        let mut j = frac_start;
        while s.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        digits += j - frac_start;
        if digits > 0 {
            i = j;
        }
    }
    if digits == 0 {
        return 0.0;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(s.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if s.get(j).is_some_and(u8::is_ascii_digit) {
            while s.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            i = j;
        }
    }
    let text = std::str::from_utf8(&s[..i]).unwrap_or("0");
    let v: f64 = text.parse().unwrap_or(0.0);
    if v.is_infinite() {
        f64::MAX.copysign(v)
    } else {
        v
    }
}

/// SQL truthiness: NULL is unknown, numbers are true when nonzero, strings
/// are converted to numbers first (`'1abc'` is true, `'abc'` is false).
pub(crate) fn truth(value: &Value) -> Option<bool> {
    Num::from_value(value).map(|n| !n.is_zero())
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    IntDiv,
    Mod,
}

impl Arith {
    fn symbol(self) -> &'static str {
        match self {
            Arith::Add => "+",
            Arith::Sub => "-",
            Arith::Mul => "*",
            Arith::Div => "/",
            Arith::IntDiv => "DIV",
            Arith::Mod => "%",
        }
    }
}

/// `a op b` with NULL propagation; see the module doc for the typing rules.
///
/// `/` on integers and decimals is exact like MySQL: the result is a
/// `Decimal` with the dividend's scale plus 4 (at most 30), rounded half
/// away from zero (`7 / 2` → `3.5000`). `DIV` truncates to an integer; `%`
/// keeps the dividend's sign. Division or modulo by zero is an error.
pub(crate) fn arith(op: Arith, a: &Value, b: &Value) -> Result<Value, EvalError> {
    let (Some(x), Some(y)) = (Num::from_value(a), Num::from_value(b)) else {
        return Ok(Value::Null);
    };
    let sym = op.symbol();
    if matches!(op, Arith::Div | Arith::IntDiv | Arith::Mod) && y.is_zero() {
        return Err(EvalError::DivisionByZero);
    }
    match (x, y) {
        (Num::Float(_), _) | (_, Num::Float(_)) => float_arith(op, x.to_f64(), y.to_f64()),
        (Num::Int(p), Num::Int(q)) if op != Arith::Div => {
            let r = match op {
                Arith::Add => p.checked_add(q),
                Arith::Sub => p.checked_sub(q),
                Arith::Mul => p.checked_mul(q),
                Arith::IntDiv => p.checked_div(q),
                Arith::Mod => p.checked_rem(q),
                Arith::Div => None,
            };
            match r {
                Some(v) => int_value(v, sym),
                None => Err(EvalError::Overflow { op: sym }),
            }
        }
        _ => match (x.to_dec(), y.to_dec()) {
            (Some(p), Some(q)) => match dec_arith(op, p, q) {
                Some(n) => n.into_value(sym),
                None => float_arith(op, x.to_f64(), y.to_f64()),
            },
            _ => float_arith(op, x.to_f64(), y.to_f64()),
        },
    }
}

fn float_arith(op: Arith, a: f64, b: f64) -> Result<Value, EvalError> {
    let sym = op.symbol();
    match op {
        Arith::Add => float_value(a + b, sym),
        Arith::Sub => float_value(a - b, sym),
        Arith::Mul => float_value(a * b, sym),
        Arith::Div => float_value(a / b, sym),
        Arith::Mod => float_value(a % b, sym),
        Arith::IntDiv => {
            let q = (a / b).trunc();
            if q.is_finite() && q.abs() < 1e20 {
                int_value(q as i128, sym)
            } else {
                Err(EvalError::Overflow { op: sym })
            }
        }
    }
}

/// Exact decimal arithmetic; `None` when an intermediate does not fit.
fn dec_arith(op: Arith, a: Dec, b: Dec) -> Option<Num> {
    match op {
        Arith::Add | Arith::Sub | Arith::Mod => {
            let scale = a.scale.max(b.scale);
            let (p, q) = (a.rescale(scale)?, b.rescale(scale)?);
            let mant = match op {
                Arith::Add => p.mant.checked_add(q.mant)?,
                Arith::Sub => p.mant.checked_sub(q.mant)?,
                _ => p.mant.checked_rem(q.mant)?,
            };
            Some(Num::Dec(Dec { mant, scale }))
        }
        Arith::Mul => {
            let d = Dec {
                mant: a.mant.checked_mul(b.mant)?,
                scale: a.scale.checked_add(b.scale)?,
            };
            Some(Num::Dec(d.round_to(MAX_SCALE)?))
        }
        Arith::Div => {
            // a/b = am·10^sb / (bm·10^sa); scaled by 10^rs for the result.
            let scale = (a.scale + DIV_SCALE_INCREMENT).min(MAX_SCALE.max(a.scale));
            let num = a.mant.checked_mul(pow10(b.scale.checked_add(scale)?)?)?;
            let den = b.mant.checked_mul(pow10(a.scale)?)?;
            Some(Num::Dec(Dec {
                mant: div_round(num, den)?,
                scale,
            }))
        }
        Arith::IntDiv => {
            let num = a.mant.checked_mul(pow10(b.scale)?)?;
            let den = b.mant.checked_mul(pow10(a.scale)?)?;
            Some(Num::Int(num.checked_div(den)?))
        }
    }
}

/// Unary minus with NULL propagation.
pub(crate) fn negate(value: &Value) -> Result<Value, EvalError> {
    const OP: &str = "unary -";
    match Num::from_value(value) {
        None => Ok(Value::Null),
        Some(Num::Int(i)) => match i.checked_neg() {
            Some(v) => int_value(v, OP),
            None => Err(EvalError::Overflow { op: OP }),
        },
        Some(Num::Dec(d)) => match d.mant.checked_neg() {
            Some(mant) => Num::Dec(Dec {
                mant,
                scale: d.scale,
            })
            .into_value(OP),
            None => Err(EvalError::Overflow { op: OP }),
        },
        Some(Num::Float(f)) => float_value(-f, OP),
    }
}

/// SQL comparison of two values: `None` if either is NULL. Two strings
/// compare bytewise; anything else compares numerically (a string against
/// a number is converted to a number, like MySQL).
pub(crate) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Bytes(x), Value::Bytes(y)) => Some(x.as_slice().cmp(y.as_slice())),
        _ => Num::from_value(a)?.compare(Num::from_value(b)?),
    }
}
