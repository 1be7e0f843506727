//! The one reader of table rows by `SELECT`: the initial copy
//! ([`crate::snapshot`]), dry-run sampling ([`crate::inspect::sample`]) and
//! verify ([`crate::verify`], on the source and on the targets) all read
//! through a [`TableReader`].
//!
//! # Rows look like decoded binlog rows
//!
//! A row read here must reach the router exactly as the same row would
//! when streamed, or the copy would route it elsewhere than its later
//! updates (see "Copy and stream" in `docs/architecture.md`). So the
//! connection is a [`crate::db::Session::Write`] session (binary character
//! set: text arrives as bytes in the column's own character set; time zone
//! UTC: TIMESTAMP arrives as the binlog's UTC date-time), the select list
//! ([`select_list`]) reads ENUM, SET and BIT as numbers, and [`normalize`]
//! fixes what the server still returns differently from
//! [`super::row_image`] (unsigned integers, SET and BIT as unsigned, YEAR
//! as a number).
//!
//! # Keyset paging follows the index's order
//!
//! Tables are read in pages ordered by the row identity ([`row_identity`]:
//! the rule's `key`, else the primary key), each page starting after the
//! last key of the one before, so a table is never read whole into memory
//! and a page costs one index range scan. That is only correct if the
//! `WHERE` comparison orders keys exactly like `ORDER BY` does: a page
//! could skip rows (or read some twice) otherwise. Over a `binary`
//! connection a bound string parameter is a *binary* string, and compared
//! with a text column as it is, it would make the comparison byte-wise
//! while `ORDER BY` follows the column's collation (`'a' < 'B'` in
//! `utf8mb4_general_ci`, not in bytes). So each key parameter is wrapped to
//! compare exactly like the column sorts ([`param_for`]):
//! `CONVERT(? USING cs) COLLATE coll` for text (relabelling the bytes in
//! the column's own character set and collation), `CAST(? AS
//! DECIMAL(65,s))` for DECIMAL (a string compared with a DECIMAL would
//! otherwise compare as a double), a plain `?` otherwise.
//!
//! Keys in a `WHERE` are spelled as the expanded lexicographic comparison
//! `(k1 > ?) OR (k1 = ? AND k2 > ?)` rather than a row constructor, which
//! both MySQL and MariaDB turn into an index range.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row};
use mysql_common::constants::ColumnType;
use mysql_common::value::Value;

use super::schema::TableSchema;
use crate::db::wire::{self, WireConn};
use crate::db::{quote_ident, DbError};

/// Why a table has no row identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("key column {column:?} is not in {table}")]
    UnknownColumn { table: String, column: String },
    #[error("{table} has no primary key; declare the row identity with key = [\"col\", ...] (a unique NOT NULL key)")]
    None { table: String },
}

/// The row identity of a table: the source column indices of `key` (a
/// rule's `key = [...]`) when given, else of the primary key.
pub fn row_identity(
    schema: &TableSchema,
    key: Option<&[String]>,
) -> Result<Vec<usize>, IdentityError> {
    let cols: Vec<usize> = match key {
        Some(names) => names
            .iter()
            .map(|c| {
                schema
                    .column_index(c)
                    .ok_or_else(|| IdentityError::UnknownColumn {
                        table: schema.full_name(),
                        column: c.clone(),
                    })
            })
            .collect::<Result<_, _>>()?,
        None => schema.pk.clone(),
    };
    if cols.is_empty() {
        return Err(IdentityError::None {
            table: schema.full_name(),
        });
    }
    Ok(cols)
}

/// The select list of every column of `schema`, in the form [`normalize`]
/// expects (ENUM, SET and BIT as numbers).
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
    normalize_values(row.unwrap(), schema)
}

/// [`normalize`] for a row's values as decoded ([`crate::db::wire`]).
pub fn normalize_values(values: Vec<Value>, schema: &TableSchema) -> Vec<Value> {
    values
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

/// A key column as used in conditions: the quoted name and the parameter
/// expression to compare it with ([`param_for`]).
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

/// The parameter expression that compares like a column of this type
/// sorts (see the module docs).
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

/// `key > (bound)`: `(k1 > ?) OR (k1 = ? AND k2 > ?)`. Parameters:
/// [`after_params`].
pub fn after(keys: &[KeyCol]) -> String {
    prefix_compare(keys, ">").join(" OR ")
}

/// The parameters of [`after`]: each prefix of the bound in turn.
pub fn after_params(bound: &[Value]) -> Vec<Value> {
    let mut p = Vec::new();
    for i in 0..bound.len() {
        p.extend(bound[..=i].iter().cloned());
    }
    p
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

/// Reads one table's rows, normalized like decoded binlog rows, by key
/// ranges or by keys (see the module docs).
#[derive(Debug, Clone)]
pub struct TableReader {
    schema: Arc<TableSchema>,
    /// Server name for messages (`source` or a shard).
    server: String,
    /// `` `db`.`table` ``
    table: String,
    select: String,
    /// Column indices of the row identity, in key order.
    key: Vec<usize>,
    keys: Vec<KeyCol>,
}

impl TableReader {
    /// A reader of `schema`'s table whose row identity is the columns
    /// `key` (indices into `schema`); `catalog` answers the
    /// `information_schema` query for the key columns' collations.
    pub async fn open(
        catalog: &mut Conn,
        server: &str,
        schema: Arc<TableSchema>,
        key: Vec<usize>,
    ) -> Result<TableReader, DbError> {
        let names: Vec<String> = key
            .iter()
            .filter_map(|&i| schema.columns.get(i).map(|c| c.name.clone()))
            .collect();
        let keys = key_cols(catalog, server, &schema.db, &schema.table, &names).await?;
        Ok(TableReader {
            server: server.to_string(),
            table: format!("{}.{}", quote_ident(&schema.db), quote_ident(&schema.table)),
            select: select_list(&schema),
            schema,
            key,
            keys,
        })
    }

    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    /// The row identity's cells of a row.
    pub fn key_of(&self, row: &[Value]) -> Vec<Value> {
        self.key
            .iter()
            .filter_map(|&i| row.get(i).cloned())
            .collect()
    }

    /// The first key column.
    pub fn first_key(&self) -> Option<&super::Column> {
        self.key.first().and_then(|&i| self.schema.columns.get(i))
    }

    async fn fetch(
        &self,
        conn: &mut Conn,
        sql: String,
        params: Vec<Value>,
        what: &str,
    ) -> Result<Vec<Vec<Value>>, DbError> {
        let rows: Vec<Row> = conn
            .exec(sql, Params::from(params))
            .await
            .map_err(|e| DbError::query(&self.server, format!("{what} {}", self.table), e))?;
        Ok(rows
            .into_iter()
            .map(|r| normalize(r, &self.schema))
            .collect())
    }

    /// One keyset page: the rows with keys in `(lo, hi]` in key order, at
    /// most `limit` (either bound may be open).
    pub async fn page(
        &self,
        conn: &mut Conn,
        lo: Option<&[Value]>,
        hi: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, DbError> {
        let (sql, params) = self.page_query(lo, hi, limit);
        self.fetch(conn, sql, params, "reading").await
    }

    /// [`TableReader::page`] on a connection of our own
    /// ([`crate::db::wire`]).
    pub async fn page_wire(
        &self,
        conn: &mut WireConn,
        lo: Option<&[Value]>,
        hi: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, DbError> {
        let (sql, params) = self.page_query(lo, hi, limit);
        let rows = conn
            .rows(&sql, &params)
            .await
            .map_err(|e| wire::db_error(&self.server, format!("reading {}", self.table), e))?;
        Ok(rows
            .into_iter()
            .map(|r| normalize_values(r, &self.schema))
            .collect())
    }

    /// The statement and parameters of one keyset page.
    fn page_query(
        &self,
        lo: Option<&[Value]>,
        hi: Option<&[Value]>,
        limit: usize,
    ) -> (String, Vec<Value>) {
        let (cond, params) = range(&self.keys, lo, hi);
        let sql = format!(
            "SELECT {} FROM {} {cond} ORDER BY {} LIMIT {limit}",
            self.select,
            self.table,
            order_by(&self.keys)
        );
        (sql, params)
    }

    /// The next page of a walk in key order: the rows after `cursor` (from
    /// the start when it is `None`), at most `limit`; moves `cursor` to the
    /// last key read. A page shorter than `limit` is the last.
    pub async fn next_page(
        &self,
        conn: &mut Conn,
        cursor: &mut Option<Vec<Value>>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, DbError> {
        let rows = self.page(conn, cursor.as_deref(), None, limit).await?;
        if let Some(last) = rows.last() {
            *cursor = Some(self.key_of(last));
        }
        Ok(rows)
    }

    /// The rows with these keys (in no particular order).
    pub async fn with_keys(
        &self,
        conn: &mut Conn,
        wanted: &[&[Value]],
    ) -> Result<Vec<Vec<Value>>, DbError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let one = format!("({})", equals(&self.keys));
        let cond = vec![one; wanted.len()].join(" OR ");
        let params: Vec<Value> = wanted.iter().flat_map(|k| k.iter().cloned()).collect();
        let sql = format!("SELECT {} FROM {} WHERE {cond}", self.select, self.table);
        self.fetch(conn, sql, params, "re-reading keys of").await
    }

    /// Up to `limit` rows in key order whose first key column is at least
    /// `start`.
    pub async fn from_first_key(
        &self,
        conn: &mut Conn,
        start: Value,
        limit: u64,
    ) -> Result<Vec<Vec<Value>>, DbError> {
        let Some(k) = self.keys.first() else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {} FROM {} WHERE {} >= {} ORDER BY {} LIMIT {limit}",
            self.select,
            self.table,
            k.name,
            k.param,
            order_by(&self.keys)
        );
        self.fetch(conn, sql, vec![start], "sampling").await
    }

    /// Up to `limit` rows, each taken with probability `fraction` by a
    /// server-side filter with a fixed seed.
    pub async fn random(
        &self,
        conn: &mut Conn,
        fraction: f64,
        limit: u64,
    ) -> Result<Vec<Vec<Value>>, DbError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE RAND(42) < ? LIMIT {limit}",
            self.select, self.table
        );
        self.fetch(conn, sql, vec![Value::Double(fraction)], "sampling")
            .await
    }

    /// The smallest and the largest value of the first key column (`NULL`
    /// for an empty table).
    pub async fn first_key_bounds(&self, conn: &mut Conn) -> Result<(Value, Value), DbError> {
        let Some(k) = self.keys.first() else {
            return Ok((Value::NULL, Value::NULL));
        };
        let sql = format!("SELECT MIN({k}), MAX({k}) FROM {}", self.table, k = k.name);
        let bounds: Option<(Value, Value)> = conn.query_first(sql).await.map_err(|e| {
            DbError::query(
                &self.server,
                format!("reading the key range of {}", self.table),
                e,
            )
        })?;
        Ok(bounds.unwrap_or((Value::NULL, Value::NULL)))
    }

    /// `information_schema`'s estimate of the table's row count.
    pub async fn estimate(&self, conn: &mut Conn) -> Result<u64, DbError> {
        let estimate: Option<Option<u64>> = conn
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&self.schema.db, &self.schema.table),
            )
            .await
            .map_err(|e| {
                DbError::query(
                    &self.server,
                    format!("estimating the size of {}", self.table),
                    e,
                )
            })?;
        Ok(estimate.flatten().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::schema::{Column, SchemaOrigin};

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
            after_params(&[Value::Int(1), Value::Int(2)]),
            vec![Value::Int(1), Value::Int(1), Value::Int(2)]
        );
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

    #[test]
    fn identity_is_the_rule_key_else_the_primary_key() {
        let schema = TableSchema {
            db: "d".into(),
            table: "t".into(),
            columns: vec![
                Column::new("id", ColumnType::MYSQL_TYPE_LONG),
                Column::new("email", ColumnType::MYSQL_TYPE_VARCHAR),
            ],
            pk: vec![0],
            origin: SchemaOrigin::InformationSchema,
        };
        assert_eq!(row_identity(&schema, None), Ok(vec![0]));
        assert_eq!(
            row_identity(&schema, Some(&["EMAIL".to_string()])),
            Ok(vec![1])
        );
        assert!(matches!(
            row_identity(&schema, Some(&["nope".to_string()])),
            Err(IdentityError::UnknownColumn { .. })
        ));
        let no_pk = TableSchema {
            pk: vec![],
            ..schema
        };
        assert!(matches!(
            row_identity(&no_pk, None),
            Err(IdentityError::None { .. })
        ));
    }
}
