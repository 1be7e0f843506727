//! SQL for key ranges and key look-ups, on the source and on the targets.
//!
//! Rows are read over a `binary` connection, so a bound string parameter is
//! a *binary* string; compared with a text column as it is, it would make
//! the comparison byte-wise while `ORDER BY` follows the column's collation,
//! and keyset pagination could skip or repeat rows. So each key parameter
//! is wrapped to compare exactly like the column sorts:
//! `CONVERT(? USING cs) COLLATE coll` for text (relabelling the bytes in the
//! column's own character set and collation), `CAST(? AS DECIMAL(65,s))` for
//! DECIMAL (a string compared with a DECIMAL would otherwise compare as a
//! double), a plain `?` otherwise.

pub use crate::inspect::sample::after_params;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use mysql_common::value::Value;

use crate::db::{quote_ident, DbError};

/// A key column as used in conditions: the quoted name and the parameter
/// expression to compare it with.
#[derive(Debug, Clone)]
pub struct KeyCol {
    pub name: String,
    pub param: String,
}

/// Reads how to bind each of `names` (columns of `db.table`) from
/// `information_schema`.
pub async fn key_cols(
    conn: &mut Conn,
    server: &str,
    db: &str,
    table: &str,
    names: &[String],
) -> Result<Vec<KeyCol>, DbError> {
    // name, data type, character set, collation, scale
    type Described = (String, String, Option<String>, Option<String>, Option<u64>);
    let rows: Vec<Described> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_SET_NAME, COLLATION_NAME, NUMERIC_SCALE \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .await
        .map_err(|e| {
            DbError::query(
                server,
                format!("reading the key columns of {db}.{table}"),
                e,
            )
        })?;
    Ok(names
        .iter()
        .map(|n| {
            let found = rows.iter().find(|r| r.0.eq_ignore_ascii_case(n));
            KeyCol {
                name: quote_ident(n),
                param: found
                    .map(|(_, ty, cs, coll, scale)| {
                        param_for(ty, cs.as_deref(), coll.as_deref(), *scale)
                    })
                    .unwrap_or_else(|| "?".into()),
            }
        })
        .collect())
}

fn identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// The parameter expression for a column of this type.
pub fn param_for(
    data_type: &str,
    charset: Option<&str>,
    collation: Option<&str>,
    scale: Option<u64>,
) -> String {
    match (charset, collation) {
        (Some(cs), Some(coll)) if cs != "binary" && identifier(cs) && identifier(coll) => {
            return format!("CONVERT(? USING {cs}) COLLATE {coll}");
        }
        _ => {}
    }
    if data_type.eq_ignore_ascii_case("decimal") || data_type.eq_ignore_ascii_case("numeric") {
        return format!("CAST(? AS DECIMAL(65,{}))", scale.unwrap_or(0).min(30));
    }
    "?".into()
}

/// `ORDER BY` list.
pub fn order_by(keys: &[KeyCol]) -> String {
    keys.iter()
        .map(|k| k.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(k1 <op> ?) OR (k1 = ? AND k2 <op> ?) …`: the lexicographic prefix
/// comparisons shared by [`after`] and [`at_most`].
fn prefix_compare(keys: &[KeyCol], op: &str) -> Vec<String> {
    (0..keys.len())
        .map(|i| {
            let mut ands: Vec<String> = keys[..i]
                .iter()
                .map(|k| format!("{} = {}", k.name, k.param))
                .collect();
            ands.push(format!("{} {op} {}", keys[i].name, keys[i].param));
            format!("({})", ands.join(" AND "))
        })
        .collect()
}

/// `key > (bound)`, expanded so both MySQL and MariaDB use an index range:
/// `(k1 > ?) OR (k1 = ? AND k2 > ?)`. Parameters: [`after_params`].
pub fn after(keys: &[KeyCol]) -> String {
    prefix_compare(keys, ">").join(" OR ")
}

/// `key <= (bound)`: `(k1 < ?) OR (k1 = ? AND k2 < ?) OR (k1 = ? AND k2 = ?)`.
/// Parameters: [`at_most_params`].
pub fn at_most(keys: &[KeyCol]) -> String {
    let mut ors = prefix_compare(keys, "<");
    ors.push(format!("({})", equals(keys)));
    ors.join(" OR ")
}

pub fn at_most_params(bound: &[Value]) -> Vec<Value> {
    let mut p = after_params(bound);
    p.extend(bound.iter().cloned());
    p
}

/// `k1 = ? AND k2 = ?` (parameters: the key).
pub fn equals(keys: &[KeyCol]) -> String {
    keys.iter()
        .map(|k| format!("{} = {}", k.name, k.param))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The `WHERE` clause (with its parameters) of a range `(lo, hi]`; either
/// side may be open. Empty when both are.
pub fn range(keys: &[KeyCol], lo: Option<&[Value]>, hi: Option<&[Value]>) -> (String, Vec<Value>) {
    let mut conds = Vec::new();
    let mut params = Vec::new();
    if let Some(lo) = lo {
        conds.push(format!("({})", after(keys)));
        params.extend(after_params(lo));
    }
    if let Some(hi) = hi {
        conds.push(format!("({})", at_most(keys)));
        params.extend(at_most_params(hi));
    }
    if conds.is_empty() {
        (String::new(), params)
    } else {
        (format!("WHERE {}", conds.join(" AND ")), params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> KeyCol {
        KeyCol {
            name: format!("`{name}`"),
            param: "?".into(),
        }
    }

    #[test]
    fn range_conditions_expand_for_composite_keys() {
        let keys = vec![k("a"), k("b")];
        assert_eq!(after(&keys), "(`a` > ?) OR (`a` = ? AND `b` > ?)");
        assert_eq!(
            at_most(&keys),
            "(`a` < ?) OR (`a` = ? AND `b` < ?) OR (`a` = ? AND `b` = ?)"
        );
        let b = [Value::Int(1), Value::Int(2)];
        assert_eq!(
            at_most_params(&b),
            vec![
                Value::Int(1),
                Value::Int(1),
                Value::Int(2),
                Value::Int(1),
                Value::Int(2)
            ]
        );
        let (sql, params) = range(&keys, None, None);
        assert!(sql.is_empty() && params.is_empty());
        let (sql, params) = range(&keys, Some(&b), Some(&b));
        assert_eq!(sql.matches('?').count(), params.len());
    }

    #[test]
    fn parameters_compare_like_the_column() {
        assert_eq!(
            param_for("varchar", Some("utf8mb4"), Some("utf8mb4_general_ci"), None),
            "CONVERT(? USING utf8mb4) COLLATE utf8mb4_general_ci"
        );
        assert_eq!(
            param_for("varbinary", Some("binary"), Some("binary"), None),
            "?"
        );
        assert_eq!(
            param_for("decimal", None, None, Some(2)),
            "CAST(? AS DECIMAL(65,2))"
        );
        assert_eq!(param_for("bigint", None, None, Some(0)), "?");
        assert_eq!(
            param_for("varchar", Some("x; DROP"), Some("y"), None),
            "?",
            "never pastes anything but an identifier"
        );
    }
}
