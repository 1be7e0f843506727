//! Source rows for dry-run, read by key ranges so a 10-million-row table is
//! never read into memory: a table no larger than the sample is read whole
//! (keyset pagination, exact counts); a larger one is sampled in runs of
//! consecutive keys starting at evenly spaced points of the key range
//! (integer keys), or by a server-side random filter otherwise.
//!
//! Rows are read through [`crate::source::rows`], in the form the binlog
//! decoder produces (ENUM and SET as numbers, TIMESTAMP in UTC, text as
//! bytes in the column's character set), so that the router sees exactly
//! what it will see when streaming.

use std::collections::HashSet;
use std::sync::Arc;

use mysql_async::Conn;
use mysql_common::constants::ColumnType;
use mysql_common::value::Value;

use crate::db::DbError;
use crate::source::rows::TableReader;
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

/// Reads up to `n` rows of the table (all of them when it has at most `n`),
/// calling `visit` for each. `key` are the source column indices of the
/// row identity.
pub async fn sample(
    conn: &mut Conn,
    schema: &Arc<TableSchema>,
    key: &[usize],
    n: u64,
    mut visit: impl FnMut(Vec<Value>),
) -> Result<SampleStats, DbError> {
    let reader = TableReader::open(conn, "source", schema.clone(), key.to_vec()).await?;
    let estimate = reader.estimate(conn).await?;
    if let Some(all) = read_whole(conn, &reader, n).await? {
        let rows = all.len() as u64;
        all.into_iter().for_each(visit);
        return Ok(SampleStats {
            rows,
            exact: true,
            estimate: rows,
        });
    }
    let integer_key = reader.first_key().is_some_and(|k| {
        matches!(
            k.ty,
            ColumnType::MYSQL_TYPE_TINY
                | ColumnType::MYSQL_TYPE_SHORT
                | ColumnType::MYSQL_TYPE_INT24
                | ColumnType::MYSQL_TYPE_LONG
                | ColumnType::MYSQL_TYPE_LONGLONG
        )
    });
    let rows = if integer_key {
        spread(conn, &reader, n, &mut visit).await?
    } else {
        let p = (n as f64 * 1.2 / estimate.max(1) as f64).min(1.0);
        let page = reader.random(conn, p, n).await?;
        let rows = page.len() as u64;
        page.into_iter().for_each(visit);
        rows
    };
    Ok(SampleStats {
        rows,
        exact: false,
        estimate,
    })
}

/// Every row of the table if it has at most `n`, read from the start in
/// key order; `None` when it has more.
async fn read_whole(
    conn: &mut Conn,
    reader: &TableReader,
    n: u64,
) -> Result<Option<Vec<Vec<Value>>>, DbError> {
    let mut first: Vec<Vec<Value>> = Vec::new();
    let mut cursor: Option<Vec<Value>> = None;
    while (first.len() as u64) <= n {
        let page = reader.next_page(conn, &mut cursor, PAGE).await?;
        let got = page.len();
        first.extend(page);
        if got < PAGE {
            return Ok((first.len() as u64 <= n).then_some(first));
        }
    }
    Ok(None)
}

/// Up to `n` rows in runs of consecutive keys starting at evenly spaced
/// points of an integer key's range.
async fn spread(
    conn: &mut Conn,
    reader: &TableReader,
    n: u64,
    visit: &mut impl FnMut(Vec<Value>),
) -> Result<u64, DbError> {
    let (min, max) = reader.first_key_bounds(conn).await?;
    let as_i128 = |v: &Value| match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    };
    let (Some(lo), Some(hi)) = (as_i128(&min), as_i128(&max)) else {
        return Ok(0);
    };
    let unsigned = reader.first_key().is_some_and(|k| k.unsigned);
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut rows = 0u64;
    let runs = n.div_ceil(PAGE as u64).max(1);
    let per = n.div_ceil(runs).max(1);
    for i in 0..runs {
        let start = lo + (hi - lo) * i128::from(i) / i128::from(runs);
        let start = if unsigned {
            Value::UInt(u64::try_from(start).unwrap_or(0))
        } else {
            Value::Int(i64::try_from(start).unwrap_or(i64::MIN))
        };
        for row in reader.from_first_key(conn, start, per).await? {
            if seen.insert(keyenc::encode(&reader.key_of(&row))) && rows < n {
                rows += 1;
                visit(row);
            }
        }
    }
    Ok(rows)
}
