//! Values between the three worlds: decoded row cells (bindable
//! `mysql_common::Value`s), expression values, and back.
//!
//! A column reference evaluates to the value the server would show for the
//! column, so that `crc32(col)` equals the server's `CRC32(col)`: integers
//! as numbers, DECIMAL as its exact text with the declared scale, DATETIME
//! and TIME with the declared fractional digits, TIMESTAMP in UTC, text as
//! bytes in the column's own character set.

use mysql_common::constants::ColumnType;
use mysql_common::value::Value as Cell;

use super::expr::Value;
use crate::source::Column;

/// A decoded cell as an expression value.
pub fn cell_to_expr(cell: &Cell, col: &Column) -> Value {
    match cell {
        Cell::NULL => Value::Null,
        Cell::Int(i) => Value::Int(*i),
        Cell::UInt(u) => Value::UInt(*u),
        Cell::Float(f) => Value::Double(f64::from(*f)),
        Cell::Double(f) => Value::Double(*f),
        Cell::Bytes(b) => match col.ty {
            ColumnType::MYSQL_TYPE_NEWDECIMAL | ColumnType::MYSQL_TYPE_DECIMAL => {
                Value::Decimal(String::from_utf8_lossy(b).into_owned())
            }
            _ => Value::Bytes(b.clone()),
        },
        Cell::Date(y, m, d, hh, mm, ss, us) => {
            let mut s = format!("{y:04}-{m:02}-{d:02}");
            if !matches!(
                col.ty,
                ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE
            ) {
                s.push_str(&format!(" {hh:02}:{mm:02}:{ss:02}"));
                push_fraction(&mut s, *us, col.decimals);
            }
            Value::Bytes(s.into_bytes())
        }
        Cell::Time(neg, days, hh, mm, ss, us) => {
            let hours = u64::from(*days) * 24 + u64::from(*hh);
            let mut s = format!("{}{hours:02}:{mm:02}:{ss:02}", if *neg { "-" } else { "" });
            push_fraction(&mut s, *us, col.decimals);
            Value::Bytes(s.into_bytes())
        }
    }
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

    #[test]
    fn decimals_stay_exact_text() {
        let c = Cell::Bytes(b"5.00".to_vec());
        assert_eq!(
            cell_to_expr(&c, &col(ColumnType::MYSQL_TYPE_NEWDECIMAL, 2)),
            Value::Decimal("5.00".into())
        );
    }
}
