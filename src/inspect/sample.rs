//! Source rows for dry-run, read by primary-key ranges so a 10-million-row
//! table is never read into memory: a table no larger than the sample is
//! read whole (keyset pagination, exact counts); a larger one is sampled in
//! runs of consecutive keys starting at evenly spaced points of the key
//! range (integer keys), or by a server-side random filter otherwise.
//!
//! Rows are read in the form the binlog decoder produces (ENUM and SET as
//! numbers, TIMESTAMP in UTC, text as bytes in the column's character set)
//! so that the router sees exactly what it will see when streaming.

use std::collections::HashSet;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row};
use mysql_common::constants::ColumnType;
use mysql_common::value::Value;

use crate::db::{quote_ident, DbError};
use crate::source::TableSchema;
use crate::writer::keyenc;

/// Rows per query.
const PAGE: usize = 1000;

/// How a table was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleStats {
    pub rows: u64,
    /// Every row was read.
    pub exact: bool,
    /// information_schema's estimate (or the exact count).
    pub estimate: u64,
}

pub fn select_list(schema: &TableSchema) -> String {
    schema
        .columns
        .iter()
        .map(|c| {
            let q = quote_ident(&c.name);
            match c.ty {
                ColumnType::MYSQL_TYPE_ENUM
                | ColumnType::MYSQL_TYPE_SET
                | ColumnType::MYSQL_TYPE_BIT => {
                    format!("{q} + 0")
                }
                _ => q,
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Makes a fetched row look like a decoded binlog row (use with
/// [`select_list`] and a connection in the binary character set at UTC).
pub fn normalize(row: Row, schema: &TableSchema) -> Vec<Value> {
    // `Row::unwrap` turns the row into its values; it can only panic for a
    // column taken out before with `Row::take`, which nothing here does
    row.unwrap()
        .into_iter()
        .zip(schema.columns.iter())
        .map(|(v, c)| match (v, c.ty) {
            (Value::Int(i), ColumnType::MYSQL_TYPE_SET | ColumnType::MYSQL_TYPE_BIT) => {
                Value::UInt(i as u64)
            }
            (Value::Int(i), _) if c.unsigned && i >= 0 => Value::UInt(i as u64),
            (Value::Bytes(b), ColumnType::MYSQL_TYPE_YEAR) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Value::Int)
                .unwrap_or(Value::Bytes(b)),
            (Value::Int(i), ColumnType::MYSQL_TYPE_ENUM) => Value::Int(i),
            (v, _) => v,
        })
        .collect()
}

/// Keyset condition `(k1, k2) > (?, ?)` in the expanded form both MySQL
/// and MariaDB turn into an index range.
pub fn after_key(keys: &[String]) -> String {
    let mut ors = Vec::new();
    for i in 0..keys.len() {
        let mut ands: Vec<String> = keys[..i].iter().map(|k| format!("{k} = ?")).collect();
        ands.push(format!("{} > ?", keys[i]));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    ors.join(" OR ")
}

pub fn after_params(last: &[Value]) -> Vec<Value> {
    let mut p = Vec::new();
    for i in 0..last.len() {
        p.extend(last[..=i].iter().cloned());
    }
    p
}

/// Reads up to `n` rows of the table (all of them when it has at most `n`),
/// calling `visit` for each. `key` are the source column indices of the
/// row identity.
pub async fn sample(
    conn: &mut Conn,
    schema: &TableSchema,
    key: &[usize],
    n: u64,
    mut visit: impl FnMut(Vec<Value>),
) -> Result<SampleStats, DbError> {
    let table = format!("{}.{}", quote_ident(&schema.db), quote_ident(&schema.table));
    let ctx = |what: &str| format!("{what} {}", schema.full_name());
    let estimate: Option<Option<u64>> = conn
        .exec_first(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&schema.db, &schema.table),
        )
        .await
        .map_err(|e| DbError::query("source", ctx("estimating the size of"), e))?;
    let estimate = estimate.flatten().unwrap_or(0);
    let cols = select_list(schema);
    let keys: Vec<String> = key
        .iter()
        .map(|&i| quote_ident(&schema.columns[i].name))
        .collect();
    let order = keys.join(", ");

    // 1. read from the start; if the table ends within n rows, that is all
    let mut first: Vec<Vec<Value>> = Vec::new();
    let mut last: Option<Vec<Value>> = None;
    let mut complete = false;
    while (first.len() as u64) <= n {
        let (sql, params) = match &last {
            None => (
                format!("SELECT {cols} FROM {table} ORDER BY {order} LIMIT {PAGE}"),
                Vec::new(),
            ),
            Some(l) => (
                format!(
                    "SELECT {cols} FROM {table} WHERE {} ORDER BY {order} LIMIT {PAGE}",
                    after_key(&keys)
                ),
                after_params(l),
            ),
        };
        let rows: Vec<Row> = conn
            .exec(sql, Params::from(params))
            .await
            .map_err(|e| DbError::query("source", ctx("reading"), e))?;
        let got = rows.len();
        for r in rows {
            let row = normalize(r, schema);
            last = Some(key.iter().map(|&i| row[i].clone()).collect());
            first.push(row);
        }
        if got < PAGE {
            complete = true;
            break;
        }
    }
    if complete && first.len() as u64 <= n {
        let rows = first.len() as u64;
        for r in first {
            visit(r);
        }
        return Ok(SampleStats {
            rows,
            exact: true,
            estimate: rows,
        });
    }
    drop(first);

    // 2. larger than the sample: spread over the key range
    let k0 = &schema.columns[key[0]];
    let integer_key = matches!(
        k0.ty,
        ColumnType::MYSQL_TYPE_TINY
            | ColumnType::MYSQL_TYPE_SHORT
            | ColumnType::MYSQL_TYPE_INT24
            | ColumnType::MYSQL_TYPE_LONG
            | ColumnType::MYSQL_TYPE_LONGLONG
    );
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut rows = 0u64;
    if integer_key {
        let (min, max): (Option<Value>, Option<Value>) = conn
            .query_first(format!(
                "SELECT MIN({k}), MAX({k}) FROM {table}",
                k = keys[0]
            ))
            .await
            .map_err(|e| DbError::query("source", ctx("reading the key range of"), e))?
            .unwrap_or((None, None));
        let as_i128 = |v: &Option<Value>| match v {
            Some(Value::Int(i)) => Some(i128::from(*i)),
            Some(Value::UInt(u)) => Some(i128::from(*u)),
            Some(Value::Bytes(b)) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        };
        if let (Some(lo), Some(hi)) = (as_i128(&min), as_i128(&max)) {
            let runs = n.div_ceil(PAGE as u64).max(1);
            let per = n.div_ceil(runs).max(1);
            for i in 0..runs {
                let start = lo + (hi - lo) * i128::from(i) / i128::from(runs);
                let start = if k0.unsigned {
                    Value::UInt(u64::try_from(start).unwrap_or(0))
                } else {
                    Value::Int(i64::try_from(start).unwrap_or(i64::MIN))
                };
                let sql = format!(
                    "SELECT {cols} FROM {table} WHERE {} >= ? ORDER BY {order} LIMIT {per}",
                    keys[0]
                );
                let page: Vec<Row> = conn
                    .exec(sql, (start,))
                    .await
                    .map_err(|e| DbError::query("source", ctx("sampling"), e))?;
                for r in page {
                    let row = normalize(r, schema);
                    let k: Vec<Value> = key.iter().map(|&i| row[i].clone()).collect();
                    if seen.insert(keyenc::encode(&k)) && rows < n {
                        rows += 1;
                        visit(row);
                    }
                }
            }
        }
    } else {
        let p = (n as f64 * 1.2 / estimate.max(1) as f64).min(1.0);
        let sql = format!("SELECT {cols} FROM {table} WHERE RAND(42) < ? LIMIT {n}");
        let page: Vec<Row> = conn
            .exec(sql, (p,))
            .await
            .map_err(|e| DbError::query("source", ctx("sampling"), e))?;
        for r in page {
            rows += 1;
            visit(normalize(r, schema));
        }
    }
    Ok(SampleStats {
        rows,
        exact: false,
        estimate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_condition_expands_for_composite_keys() {
        let keys = vec!["`a`".to_string(), "`b`".to_string()];
        assert_eq!(after_key(&keys), "(`a` > ?) OR (`a` = ? AND `b` > ?)");
        assert_eq!(
            after_params(&[Value::Int(1), Value::Int(2)]),
            vec![Value::Int(1), Value::Int(1), Value::Int(2)]
        );
    }
}
