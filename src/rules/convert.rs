//! Values between the three worlds: decoded row cells (bindable
//! `mysql_common::Value`s), expression values, and back.
//!
//! A column reference evaluates to the value the server would show for the
//! column, so that `crc32(col)` equals the server's `CRC32(col)` (checked
//! against MariaDB by `tests/crc32.rs`). Per column type, the text
//! ([`Value::to_text`]) of the expression value is:
//!
//! | column | expression value | text, as the server's `CAST(col AS CHAR)` |
//! |---|---|---|
//! | integers | `Int` / `UInt` | decimal digits |
//! | `DECIMAL(p,s)` | `Decimal` | exact, with `s` fraction digits (`5.00`, `-0.50`) |
//! | `DOUBLE` | `Double` | shortest round-trip digits laid out like `my_gcvt` (`1e20`, `0.1`) |
//! | `FLOAT` | `Double` | 6 significant digits, see below |
//! | `DATE` | `Bytes` | `YYYY-MM-DD` (zero dates as `0000-00-00`) |
//! | `DATETIME(n)`, `TIMESTAMP(n)` | `Bytes` | `YYYY-MM-DD hh:mm:ss[.f]`, `n` fraction digits; TIMESTAMP in UTC |
//! | `TIME(n)` | `Bytes` | `[-]hhh:mm:ss[.f]`, `n` fraction digits |
//! | `YEAR` | `Int`, or `Bytes` `0000` for 0 | 4 digits |
//! | `ENUM` | `Bytes` | the label; index 0 (an invalid value) is the empty string |
//! | `SET` | `Bytes` | the labels of the set bits, definition order, joined by `,` |
//! | `BIT(n)` | `Bytes` | the value big-endian in `ceil(n/8)` bytes |
//! | `CHAR(n)` | `Bytes` | the text without trailing spaces |
//! | `VARCHAR`, `TEXT`, JSON on MariaDB | `Bytes` | as stored, in the column's own character set |
//! | `BINARY(n)` | `Bytes` | all `n` bytes (the decoder restores the zero padding the binlog leaves out, see [`crate::source::row_image`]) |
//! | `VARBINARY`, `BLOB` | `Bytes` | the bytes |
//!
//! `FLOAT`: the server prints a FLOAT with `my_gcvt(x, MY_GCVT_ARG_FLOAT)`:
//! the single-precision value widened to double, rounded (half to even, on
//! the exact binary value) to 6 significant digits, trailing zeros dropped,
//! in the same plain/exponent layout as a DOUBLE (`0.1`, `123457000` for
//! 123456789, `1.23457e17`, `3.40282e38`, `1e-16`). So a FLOAT column
//! evaluates to the double nearest to those 6 digits, whose own text is
//! exactly them. (Arithmetic on it therefore uses the printed value: `f =
//! 0.1` is true here for a FLOAT holding 0.1, unlike on the server.)
//!
//! # Known differences from the server
//!
//! * `FLOAT(m,d)` / `DOUBLE(m,d)` print with `d` fixed digits on the
//!   server; TABLE_MAP events do not carry `d`, so they print as plain
//!   FLOAT / DOUBLE here (on every path, so routing stays consistent).
//! * ENUM and SET labels are what the schema holds. From a TABLE_MAP with
//!   `binlog_row_metadata=FULL` they are exact; from `information_schema`
//!   (no FULL metadata, and the initial copy) they are UTF-8 text whatever
//!   the column's character set, with 4-byte characters shown as `?`.
//! * Without labels, ENUM and SET stay their index / bitmap; without the
//!   width, BIT uses as few bytes as the value needs (at least one).

use mysql_common::constants::ColumnType;
use mysql_common::value::Value as Cell;

use super::expr::Value;
use crate::source::schema::BINARY_CHARSET;
use crate::source::Column;

/// A decoded cell as an expression value; see the module docs for the text
/// each column type gets.
pub fn cell_to_expr(cell: &Cell, col: &Column) -> Value {
    use ColumnType::*;
    match (col.ty, cell) {
        (_, Cell::NULL) => Value::Null,
        (MYSQL_TYPE_ENUM, Cell::Int(i)) => enum_label(col, i128::from(*i), Value::Int(*i)),
        (MYSQL_TYPE_ENUM, Cell::UInt(u)) => enum_label(col, i128::from(*u), Value::UInt(*u)),
        (MYSQL_TYPE_SET, Cell::UInt(u)) => set_labels(col, *u),
        (MYSQL_TYPE_SET, Cell::Int(i)) => set_labels(col, *i as u64),
        (MYSQL_TYPE_BIT, Cell::UInt(u)) => bit_bytes(col, *u),
        (MYSQL_TYPE_BIT, Cell::Int(i)) => bit_bytes(col, *i as u64),
        (MYSQL_TYPE_YEAR, Cell::Int(0) | Cell::UInt(0)) => Value::Bytes(b"0000".to_vec()),
        // BINARY(n): all n bytes, as the decoder restored them
        (MYSQL_TYPE_STRING, Cell::Bytes(b)) if col.charset == BINARY_CHARSET => {
            Value::Bytes(b.clone())
        }
        (MYSQL_TYPE_STRING, Cell::Bytes(b)) => {
            // CHAR: the server shows the value without its pad spaces.
            let len = b.iter().rposition(|c| *c != b' ').map_or(0, |p| p + 1);
            Value::Bytes(b[..len].to_vec())
        }
        (MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL, Cell::Bytes(b)) => {
            Value::Decimal(String::from_utf8_lossy(b).into_owned())
        }
        (_, Cell::Int(i)) => Value::Int(*i),
        (_, Cell::UInt(u)) => Value::UInt(*u),
        (_, Cell::Float(f)) => Value::Double(float_as_printed(*f)),
        (_, Cell::Double(f)) => Value::Double(*f),
        (_, Cell::Bytes(b)) => Value::Bytes(b.clone()),
        (_, Cell::Date(y, m, d, hh, mm, ss, us)) => {
            let mut s = format!("{y:04}-{m:02}-{d:02}");
            if !matches!(col.ty, MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE) {
                s.push_str(&format!(" {hh:02}:{mm:02}:{ss:02}"));
                push_fraction(&mut s, *us, col.decimals);
            }
            Value::Bytes(s.into_bytes())
        }
        (_, Cell::Time(neg, days, hh, mm, ss, us)) => {
            let hours = u64::from(*days) * 24 + u64::from(*hh);
            let mut s = format!("{}{hours:02}:{mm:02}:{ss:02}", if *neg { "-" } else { "" });
            push_fraction(&mut s, *us, col.decimals);
            Value::Bytes(s.into_bytes())
        }
    }
}

/// ENUM index → label (1-based; 0 is the empty string of an invalid value).
/// Without labels, or for an index beyond them, `index_value`.
fn enum_label(col: &Column, index: i128, index_value: Value) -> Value {
    if index == 0 {
        return Value::Bytes(Vec::new());
    }
    let label = usize::try_from(index - 1)
        .ok()
        .and_then(|i| col.labels.get(i));
    match label {
        Some(l) => Value::Bytes(l.clone()),
        None => index_value,
    }
}

/// SET bitmap → the labels of its bits in definition order, joined by `,`.
/// Without labels (or with bits beyond them), the bitmap itself.
fn set_labels(col: &Column, bits: u64) -> Value {
    if bits != 0 && (col.labels.len() < 64 && bits >> col.labels.len() != 0) {
        return Value::UInt(bits);
    }
    let mut out = Vec::new();
    for (i, label) in col.labels.iter().enumerate().take(64) {
        if bits & (1u64 << i) != 0 {
            if !out.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(label);
        }
    }
    Value::Bytes(out)
}

/// BIT(n) value → its big-endian bytes, `ceil(n/8)` of them (as few as the
/// value needs, at least one, when the width is unknown).
fn bit_bytes(col: &Column, value: u64) -> Value {
    let be = value.to_be_bytes();
    let n = if col.bits > 0 {
        usize::from(col.bits).div_ceil(8).min(8)
    } else {
        be.iter().position(|b| *b != 0).map_or(1, |p| 8 - p)
    };
    Value::Bytes(be[8 - n..].to_vec())
}

/// The double whose text is what the server prints for a FLOAT: the value
/// rounded to 6 significant digits (`my_gcvt(.., MY_GCVT_ARG_FLOAT, ..)`
/// uses `FLT_DIG` digits). A decimal of at most 6 digits reads back as a
/// double whose shortest round-trip digits are those same digits, so
/// [`Value::to_text`] then prints exactly them.
fn float_as_printed(f: f32) -> f64 {
    let x = f64::from(f);
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    // `{:.5e}` rounds the exact binary value half to even, like dtoa.
    format!("{x:.5e}").parse().unwrap_or(x)
}

fn push_fraction(s: &mut String, micros: u32, digits: u8) {
    if digits > 0 {
        let frac = format!("{micros:06}");
        s.push('.');
        s.push_str(&frac[..usize::from(digits.min(6))]);
    }
}

/// An expression result as a value to bind into a target column.
pub fn expr_to_cell(v: Value) -> Cell {
    match v {
        Value::Null => Cell::NULL,
        Value::Int(i) => Cell::Int(i),
        Value::UInt(u) => Cell::UInt(u),
        Value::Decimal(s) => Cell::Bytes(s.into_bytes()),
        Value::Double(f) => Cell::Double(f),
        Value::Bytes(b) => Cell::Bytes(b),
    }
}

/// A short human form of a key, for messages and dead letters.
pub fn display_cells(cells: &[Cell]) -> String {
    let parts: Vec<String> = cells
        .iter()
        .map(|c| match c {
            Cell::NULL => "NULL".into(),
            Cell::Int(i) => i.to_string(),
            Cell::UInt(u) => u.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Double(f) => f.to_string(),
            Cell::Bytes(b) => {
                let s = String::from_utf8_lossy(b);
                let s: String = s.chars().take(64).collect();
                format!("{s:?}")
            }
            other => other.as_sql(true),
        })
        .collect();
    format!("({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(ty: ColumnType, decimals: u8) -> Column {
        Column {
            decimals,
            ..Column::new("c", ty)
        }
    }

    #[test]
    fn datetimes_keep_declared_fraction_digits() {
        let c = Cell::Date(2024, 1, 2, 3, 4, 5, 120_000);
        assert_eq!(
            cell_to_expr(&c, &col(ColumnType::MYSQL_TYPE_DATETIME2, 6)),
            Value::Bytes(b"2024-01-02 03:04:05.120000".to_vec())
        );
        assert_eq!(
            cell_to_expr(&c, &col(ColumnType::MYSQL_TYPE_DATETIME2, 2)),
            Value::Bytes(b"2024-01-02 03:04:05.12".to_vec())
        );
        assert_eq!(
            cell_to_expr(&c, &col(ColumnType::MYSQL_TYPE_DATE, 0)),
            Value::Bytes(b"2024-01-02".to_vec())
        );
        let t = Cell::Time(true, 1, 2, 3, 4, 0);
        assert_eq!(
            cell_to_expr(&t, &col(ColumnType::MYSQL_TYPE_TIME2, 0)),
            Value::Bytes(b"-26:03:04".to_vec())
        );
    }

    fn text(v: Value) -> Vec<u8> {
        v.to_text().map(|t| t.into_owned()).unwrap_or_default()
    }

    fn labelled(ty: ColumnType, labels: &[&str]) -> Column {
        Column {
            labels: labels.iter().map(|l| l.as_bytes().to_vec()).collect(),
            ..Column::new("c", ty)
        }
    }

    #[test]
    fn enums_are_their_labels() {
        let c = labelled(ColumnType::MYSQL_TYPE_ENUM, &["a", "bé", "c"]);
        assert_eq!(text(cell_to_expr(&Cell::Int(2), &c)), "bé".as_bytes());
        assert_eq!(text(cell_to_expr(&Cell::Int(0), &c)), b"");
        // unknown labels: the index
        assert_eq!(
            cell_to_expr(&Cell::Int(2), &col(ColumnType::MYSQL_TYPE_ENUM, 0)),
            Value::Int(2)
        );
        // from a SELECT: already the label
        assert_eq!(
            cell_to_expr(&Cell::Bytes(b"c".to_vec()), &c),
            Value::Bytes(b"c".to_vec())
        );
    }

    #[test]
    fn sets_are_labels_in_definition_order() {
        let c = labelled(ColumnType::MYSQL_TYPE_SET, &["x", "y", "z"]);
        assert_eq!(text(cell_to_expr(&Cell::UInt(0b101), &c)), b"x,z");
        assert_eq!(text(cell_to_expr(&Cell::UInt(0b111), &c)), b"x,y,z");
        assert_eq!(text(cell_to_expr(&Cell::UInt(0), &c)), b"");
        assert_eq!(cell_to_expr(&Cell::UInt(0b1000), &c), Value::UInt(8));
        let all: Vec<String> = (0..64).map(|i| format!("l{i}")).collect();
        let refs: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        let c = labelled(ColumnType::MYSQL_TYPE_SET, &refs);
        assert_eq!(text(cell_to_expr(&Cell::UInt(1 << 63), &c)), b"l63");
    }

    #[test]
    fn bits_are_big_endian_bytes_of_the_declared_width() {
        let bit = |bits| Column {
            bits,
            ..Column::new("c", ColumnType::MYSQL_TYPE_BIT)
        };
        assert_eq!(text(cell_to_expr(&Cell::UInt(5), &bit(10))), [0, 5]);
        assert_eq!(text(cell_to_expr(&Cell::UInt(1), &bit(1))), [1]);
        assert_eq!(text(cell_to_expr(&Cell::UInt(0), &bit(1))), [0]);
        assert_eq!(
            text(cell_to_expr(&Cell::UInt(u64::MAX), &bit(64))),
            [0xFF; 8]
        );
        assert_eq!(text(cell_to_expr(&Cell::UInt(0x0102), &bit(0))), [1, 2]);
        assert_eq!(text(cell_to_expr(&Cell::UInt(0), &bit(0))), [0]);
    }

    #[test]
    fn years_have_four_digits() {
        let c = col(ColumnType::MYSQL_TYPE_YEAR, 0);
        assert_eq!(text(cell_to_expr(&Cell::Int(0), &c)), b"0000");
        assert_eq!(cell_to_expr(&Cell::Int(2024), &c), Value::Int(2024));
    }

    #[test]
    fn floats_print_six_significant_digits() {
        let c = col(ColumnType::MYSQL_TYPE_FLOAT, 0);
        let f = |x: f32| String::from_utf8(text(cell_to_expr(&Cell::Float(x), &c))).unwrap();
        // what MariaDB 10.11 prints for these FLOAT column values
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(0.3), "0.3");
        assert_eq!(f(1e20), "1e20");
        assert_eq!(f(123_456_789.0), "123457000");
        assert_eq!(f(16_777_217.0), "16777200");
        assert_eq!(f(-1.5e-10), "-0.00000000015");
        assert_eq!(f(3.402_823_4e38), "3.40282e38");
        assert_eq!(f(1.175_494_4e-38), "1.17549e-38");
        assert_eq!(f(1.4e-45), "1.4013e-45");
        assert_eq!(f(1e15), "1e15");
        assert_eq!(f(1e14), "100000000000000");
        assert_eq!(f(0.000_001_234_565), "0.00000123457");
        assert_eq!(f(1e-15), "0.000000000000001");
        assert_eq!(f(1e-16), "1e-16");
        assert_eq!(f(1.234_567_9e17), "1.23457e17");
        assert_eq!(f(std::f32::consts::PI), "3.14159");
        assert_eq!(f(12_345.678), "12345.7");
        // ties on the exact value go to even
        assert_eq!(f(1_234_565.0), "1234560");
        assert_eq!(f(1_234_575.0), "1234580");
        assert_eq!(f(0.0), "0");
    }

    #[test]
    fn char_drops_pad_spaces_but_binary_keeps_bytes() {
        let char_col = Column {
            charset: 45,
            ..Column::new("c", ColumnType::MYSQL_TYPE_STRING)
        };
        assert_eq!(
            text(cell_to_expr(&Cell::Bytes(b" a  ".to_vec()), &char_col)),
            b" a"
        );
        let bin_col = Column {
            charset: BINARY_CHARSET,
            ..Column::new("c", ColumnType::MYSQL_TYPE_STRING)
        };
        assert_eq!(
            text(cell_to_expr(&Cell::Bytes(b"a \0".to_vec()), &bin_col)),
            b"a \0"
        );
        let varchar = Column::new("c", ColumnType::MYSQL_TYPE_VARCHAR);
        assert_eq!(
            text(cell_to_expr(&Cell::Bytes(b"a  ".to_vec()), &varchar)),
            b"a  "
        );
    }

    #[test]
    fn decimals_stay_exact_text() {
        let c = Cell::Bytes(b"5.00".to_vec());
        assert_eq!(
            cell_to_expr(&c, &col(ColumnType::MYSQL_TYPE_NEWDECIMAL, 2)),
            Value::Decimal("5.00".into())
        );
    }
}
