//! What the initial copy reads: every mapped table, a large one in parts.
//!
//! A *unit* is one key range `(cursor, upper]` of one table, read in
//! keyset pages by one reader at a time ([`super::read`]). A table is one
//! unit, or, when its row identity starts with an integer column and it
//! holds enough rows to keep several readers busy, several: the boundaries
//! are real keys, the first key at or above evenly spaced values of that
//! column between its `MIN` and `MAX`. Consecutive ranges share their
//! boundary key as one's upper bound (inclusive) and the next one's lower
//! bound (exclusive), and the first and last ranges are open, so the
//! ranges tile the whole key space: every row, including one inserted
//! while the copy runs, falls into exactly one of them.
//!
//! The parts of a table are saved together ([`control::snapshot::save_parts`])
//! before any of them is read, so a resumed copy finds all of them or
//! none and never plans a table twice; it resumes each part after the last
//! key of its last applied chunk.

use std::collections::BTreeMap;
use std::sync::Arc;

use mysql_async::Conn;
use mysql_common::constants::ColumnType;
use mysql_common::value::Value;

use super::Copy;
use crate::control;
use crate::db::DbError;
use crate::pipeline::PipelineError;
use crate::source::rows::TableReader;
use crate::source::schema::load_table;
use crate::writer::keyenc;

/// A table part is worth a reader of its own from this many chunks on.
const CHUNKS_PER_PART: u64 = 4;

/// A mapped table being copied.
pub struct CopyTable {
    /// `db.table` on the source.
    pub full: String,
    pub reader: Arc<TableReader>,
}

/// One key range of one table: `(cursor, upper]` is still to copy.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Index into [`Plan::tables`].
    pub table: usize,
    pub part: u32,
    pub cursor: Option<Vec<Value>>,
    pub upper: Option<Vec<Value>>,
    /// Rows applied (with those of earlier runs).
    pub rows: u64,
    pub estimate: u64,
    pub done: bool,
}

impl Unit {
    /// The unit as the control database keeps it.
    pub fn saved(&self, full: &str) -> control::snapshot::TableCopy {
        control::snapshot::TableCopy {
            table: full.to_string(),
            part: self.part,
            last_key: self.cursor.as_ref().map(|k| keyenc::encode(k)),
            upper_key: self.upper.as_ref().map(|k| keyenc::encode(k)),
            rows_copied: self.rows,
            rows_estimate: self.estimate.max(self.rows),
            done: self.done,
        }
    }

    fn restored(table: usize, t: control::snapshot::TableCopy) -> Unit {
        Unit {
            table,
            part: t.part,
            cursor: t.last_key.and_then(|k| keyenc::decode(&k)),
            upper: t.upper_key.and_then(|k| keyenc::decode(&k)),
            rows: t.rows_copied,
            estimate: t.rows_estimate,
            done: t.done,
        }
    }
}

/// The tables and their units.
pub struct Plan {
    pub tables: Vec<CopyTable>,
    pub units: Vec<Unit>,
}

/// Opens a reader for every mapped table and restores or plans its units
/// (see the module docs).
pub async fn plan(c: &mut Copy<'_>, source: &mut Conn) -> Result<Plan, PipelineError> {
    let p = &c.cfg.pipeline;
    let mut saved: BTreeMap<String, Vec<control::snapshot::TableCopy>> = BTreeMap::new();
    for t in control::snapshot::tables(c.control, &p.name).await? {
        saved.entry(t.table.clone()).or_default().push(t);
    }
    let mut names: Vec<(String, String)> = c
        .router
        .rules()
        .map(|r| (r.source_db.clone(), r.source_table.clone()))
        .collect();
    names.sort();
    let mut plan = Plan {
        tables: Vec::new(),
        units: Vec::new(),
    };
    for (db_name, table) in names {
        let full = format!("{db_name}.{table}");
        let reader = open_reader(c, source, &db_name, &table).await?;
        let index = plan.tables.len();
        let units: Vec<Unit> = match saved.remove(&full) {
            Some(parts) => parts
                .into_iter()
                .map(|t| Unit::restored(index, t))
                .collect(),
            None => {
                let units = split(
                    &reader,
                    source,
                    index,
                    p.snapshot_chunk_rows,
                    p.snapshot_readers,
                )
                .await?;
                let rows: Vec<_> = units.iter().map(|u| u.saved(&full)).collect();
                control::snapshot::save_parts(c.control, &p.name, &rows).await?;
                units
            }
        };
        if units.len() > 1 {
            tracing::info!(table = %full, parts = units.len(), "copying in parts (key ranges read in parallel)");
        }
        plan.units.extend(units);
        plan.tables.push(CopyTable {
            full,
            reader: Arc::new(reader),
        });
    }
    Ok(plan)
}

/// Resolves a table's schema and row identity.
async fn open_reader(
    c: &mut Copy<'_>,
    source: &mut Conn,
    db_name: &str,
    table: &str,
) -> Result<TableReader, PipelineError> {
    let definite = |e: String| PipelineError::Definite(e);
    let schema = Arc::new(
        load_table(source, db_name, table)
            .await
            .map_err(|e| definite(e.to_string()))?,
    );
    let key = c
        .router
        .row_identity(&schema)
        .map_err(|e| definite(e.to_string()))?;
    Ok(TableReader::open(source, "source", schema, key).await?)
}

/// The units of a table not copied before: one, or up to `readers` key
/// ranges (see the module docs).
async fn split(
    reader: &TableReader,
    source: &mut Conn,
    table: usize,
    chunk: usize,
    readers: usize,
) -> Result<Vec<Unit>, DbError> {
    let estimate = reader.estimate(source).await?;
    let wanted = (estimate / (chunk as u64 * CHUNKS_PER_PART).max(1)).min(readers as u64);
    let mut bounds: Vec<Vec<Value>> = Vec::new();
    if wanted >= 2 {
        if let Some(column) = reader.first_key().filter(|c| is_integer(c.ty)) {
            let unsigned = column.unsigned;
            let (lo, hi) = reader.first_key_bounds(source).await?;
            for v in split_values(as_i128(&lo), as_i128(&hi), wanted) {
                let start = if unsigned {
                    Value::UInt(u64::try_from(v).unwrap_or(u64::MAX))
                } else {
                    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
                };
                let first = reader.from_first_key(source, start, 1).await?;
                if let Some(key) = first.first().map(|row| reader.key_of(row)) {
                    if bounds.last() != Some(&key) {
                        bounds.push(key);
                    }
                }
            }
        }
    }
    let parts = bounds.len() + 1;
    let mut lower: Option<Vec<Value>> = None;
    let mut units = Vec::with_capacity(parts);
    for (i, upper) in bounds.into_iter().map(Some).chain([None]).enumerate() {
        units.push(Unit {
            table,
            part: i as u32,
            cursor: lower.take(),
            upper: upper.clone(),
            rows: 0,
            estimate: estimate / parts as u64,
            done: false,
        });
        lower = upper;
    }
    Ok(units)
}

fn is_integer(ty: ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::MYSQL_TYPE_TINY
            | ColumnType::MYSQL_TYPE_SHORT
            | ColumnType::MYSQL_TYPE_INT24
            | ColumnType::MYSQL_TYPE_LONG
            | ColumnType::MYSQL_TYPE_LONGLONG
    )
}

/// An integer `MIN`/`MAX` as the text protocol returns it (`NULL` for an
/// empty table).
fn as_i128(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// `parts - 1` values evenly spaced strictly inside `(lo, hi]`, ascending
/// and distinct.
fn split_values(lo: Option<i128>, hi: Option<i128>, parts: u64) -> Vec<i128> {
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Vec::new();
    };
    let span = hi - lo;
    let mut out: Vec<i128> = Vec::new();
    for i in 1..parts {
        let v = lo + span * i128::from(i) / i128::from(parts);
        if v > lo && out.last() != Some(&v) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_values_are_inside_the_range_ascending_and_distinct() {
        assert_eq!(split_values(Some(0), Some(100), 4), vec![25, 50, 75]);
        assert_eq!(split_values(Some(1), Some(3), 4), vec![2]);
        assert_eq!(split_values(Some(5), Some(5), 4), Vec::<i128>::new());
        assert_eq!(split_values(None, None, 4), Vec::<i128>::new());
        assert_eq!(
            split_values(Some(i128::from(i64::MIN)), Some(i128::from(i64::MAX)), 2),
            vec![-1]
        );
    }

    #[test]
    fn text_bounds_parse() {
        assert_eq!(as_i128(&Value::Bytes(b"-12".to_vec())), Some(-12));
        assert_eq!(as_i128(&Value::UInt(u64::MAX)), Some(i128::from(u64::MAX)));
        assert_eq!(as_i128(&Value::NULL), None);
    }
}
