//! Table schemas of the source, as the row decoder and the router need them.
//!
//! Column names, signedness, character sets and the primary key come from
//! the TABLE_MAP event when the source writes `binlog_row_metadata=FULL`;
//! otherwise from `information_schema`, cached per table and dropped on any
//! DDL (see [`SchemaCache::invalidate`]). A TABLE_MAP whose column count or
//! types disagree with the schema we hold is an error, never a guess: rows
//! decoded against the wrong columns would be written to the wrong columns.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use mysql_common::binlog::events::{OptionalMetaExtractor, TableMapEvent};
use mysql_common::constants::ColumnType;

use crate::db::DbError;

/// Collation id of the `binary` character set.
pub const BINARY_CHARSET: u16 = 63;

/// One source column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// Binlog (real) type.
    pub ty: ColumnType,
    pub unsigned: bool,
    /// Fractional-second digits of DATETIME/TIME/TIMESTAMP, scale of DECIMAL.
    pub decimals: u8,
    /// Collation id for character columns (63 = binary), 0 when unknown.
    pub charset: u16,
}

/// Where a schema came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaOrigin {
    BinlogMetadata,
    InformationSchema,
}

/// The schema of one source table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    pub db: String,
    pub table: String,
    pub columns: Vec<Column>,
    /// Indices of the primary key columns, in key order. Empty if none.
    pub pk: Vec<usize>,
    pub origin: SchemaOrigin,
}

impl TableSchema {
    /// `db.table`
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.db, self.table)
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("table map for {table}: {message}")]
    TableMap { table: String, message: String },
    #[error("table map for {table} has {binlog} columns but information_schema has {catalog}; the table changed without a DDL event reshard saw (expected {catalog}, got {binlog})")]
    ColumnCount {
        table: String,
        binlog: usize,
        catalog: usize,
    },
    #[error("table map for {table}: column {column} is {binlog:?} in the binlog but {catalog} in information_schema")]
    ColumnType {
        table: String,
        column: String,
        binlog: ColumnType,
        catalog: String,
    },
    #[error(
        "table {table} does not exist on the source (information_schema has no columns for it)"
    )]
    Missing { table: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Reads types and metadata from a TABLE_MAP event. Returns the schema if the
/// event carries column names (`binlog_row_metadata=FULL`), else the column
/// types and decimals only (names empty), to be completed from the catalog.
pub fn from_table_map(tme: &TableMapEvent<'_>) -> Result<(TableSchema, bool), SchemaError> {
    let table = format!("{}.{}", tme.database_name(), tme.table_name());
    let err = |message: String| SchemaError::TableMap {
        table: table.clone(),
        message,
    };
    let n =
        usize::try_from(tme.columns_count()).map_err(|_| err("column count overflows".into()))?;
    let meta = OptionalMetaExtractor::new(tme.iter_optional_meta())
        .map_err(|e| err(format!("bad optional metadata: {e}")))?;
    let mut signedness = meta.iter_signedness();
    let mut charsets = meta.iter_charset();
    let mut enum_charsets = meta.iter_enum_and_set_charset();
    let names: Vec<String> = meta
        .iter_column_name()
        .map(|r| r.map(|c| c.name().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("bad column names: {e}")))?;
    let has_names = names.len() == n;
    let mut pk = Vec::new();
    for k in meta.iter_primary_key() {
        let k = k.map_err(|e| err(format!("bad primary key metadata: {e}")))?;
        pk.push(usize::try_from(k).map_err(|_| err("primary key index overflows".into()))?);
    }
    let mut columns = Vec::with_capacity(n);
    for i in 0..n {
        let ty = tme
            .get_column_type(i)
            .map_err(|e| err(format!("column {i}: {e}")))?
            .ok_or_else(|| err(format!("column {i} has no type")))?;
        let md = tme.get_column_metadata(i).unwrap_or(&[]);
        let unsigned = ty.is_numeric_type() && signedness.next().unwrap_or(false);
        let charset = if ty.is_character_type() {
            charsets.next().transpose().ok().flatten().unwrap_or(0)
        } else if ty.is_enum_or_set_type() {
            enum_charsets.next().transpose().ok().flatten().unwrap_or(0)
        } else {
            0
        };
        let decimals = match ty {
            ColumnType::MYSQL_TYPE_DATETIME2
            | ColumnType::MYSQL_TYPE_TIME2
            | ColumnType::MYSQL_TYPE_TIMESTAMP2 => md.first().copied().unwrap_or(0),
            ColumnType::MYSQL_TYPE_NEWDECIMAL => md.get(1).copied().unwrap_or(0),
            _ => 0,
        };
        columns.push(Column {
            name: if has_names {
                names[i].clone()
            } else {
                String::new()
            },
            ty,
            unsigned,
            decimals,
            charset,
        });
    }
    if pk.iter().any(|&k| k >= n) {
        return Err(err(
            "primary key names a column beyond the column count".into()
        ));
    }
    Ok((
        TableSchema {
            db: tme.database_name().into_owned(),
            table: tme.table_name().into_owned(),
            columns,
            pk,
            origin: SchemaOrigin::BinlogMetadata,
        },
        has_names,
    ))
}

/// One column as `information_schema` describes it.
#[derive(Debug, Clone)]
struct CatalogColumn {
    name: String,
    data_type: String,
    unsigned: bool,
    charset_binary: bool,
}

/// Caches `information_schema` descriptions of source tables.
#[derive(Default)]
pub struct SchemaCache {
    tables: HashMap<(String, String), Arc<(Vec<CatalogColumn>, Vec<String>)>>,
}

impl SchemaCache {
    /// Drops everything: called on every DDL QUERY event.
    pub fn invalidate(&mut self) {
        self.tables.clear();
    }

    /// Completes a schema decoded from a TABLE_MAP without names.
    pub async fn complete(
        &mut self,
        conn: &mut Conn,
        mut schema: TableSchema,
    ) -> Result<TableSchema, SchemaError> {
        let key = (schema.db.clone(), schema.table.clone());
        let entry = match self.tables.get(&key) {
            Some(e) => e.clone(),
            None => {
                let e = Arc::new(load_catalog(conn, &schema.db, &schema.table).await?);
                self.tables.insert(key, e.clone());
                e
            }
        };
        let (cols, pk) = &*entry;
        let table = schema.full_name();
        if cols.len() != schema.columns.len() {
            return Err(SchemaError::ColumnCount {
                table,
                binlog: schema.columns.len(),
                catalog: cols.len(),
            });
        }
        for (c, cat) in schema.columns.iter_mut().zip(cols.iter()) {
            if !type_matches(c.ty, &cat.data_type) {
                return Err(SchemaError::ColumnType {
                    table,
                    column: cat.name.clone(),
                    binlog: c.ty,
                    catalog: cat.data_type.clone(),
                });
            }
            c.name = cat.name.clone();
            c.unsigned = cat.unsigned;
            if c.charset == 0 && cat.charset_binary {
                c.charset = BINARY_CHARSET;
            }
        }
        schema.pk = pk
            .iter()
            .filter_map(|name| schema.column_index(name))
            .collect();
        schema.origin = SchemaOrigin::InformationSchema;
        Ok(schema)
    }
}

async fn load_catalog(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> Result<(Vec<CatalogColumn>, Vec<String>), SchemaError> {
    let full = format!("{db}.{table}");
    let rows: Vec<(String, String, String, Option<String>)> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .map_err(|e| DbError::query("source", format!("reading columns of {full}"), e))?;
    if rows.is_empty() {
        return Err(SchemaError::Missing { table: full });
    }
    let cols = rows
        .into_iter()
        .map(|(name, data_type, column_type, charset)| CatalogColumn {
            name,
            unsigned: column_type.to_ascii_lowercase().contains("unsigned"),
            data_type: data_type.to_ascii_lowercase(),
            charset_binary: charset.is_none(),
        })
        .collect();
    let pk: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (db, table),
        )
        .await
        .map_err(|e| DbError::query("source", format!("reading the primary key of {full}"), e))?;
    Ok((cols, pk))
}

/// Whether a binlog type can be the catalog's `DATA_TYPE`.
fn type_matches(ty: ColumnType, data_type: &str) -> bool {
    use ColumnType::*;
    let expected: &[&str] = match ty {
        MYSQL_TYPE_TINY => &["tinyint", "bool", "boolean"],
        MYSQL_TYPE_SHORT => &["smallint"],
        MYSQL_TYPE_INT24 => &["mediumint"],
        MYSQL_TYPE_LONG => &["int", "integer"],
        MYSQL_TYPE_LONGLONG => &["bigint"],
        MYSQL_TYPE_FLOAT => &["float"],
        MYSQL_TYPE_DOUBLE => &["double", "real"],
        MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => &["decimal", "numeric"],
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => &["date"],
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => &["datetime"],
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => &["timestamp"],
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => &["time"],
        MYSQL_TYPE_YEAR => &["year"],
        MYSQL_TYPE_BIT => &["bit"],
        MYSQL_TYPE_ENUM => &["enum"],
        MYSQL_TYPE_SET => &["set"],
        MYSQL_TYPE_JSON => &["json"],
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING | MYSQL_TYPE_STRING => &[
            "varchar",
            "char",
            "varbinary",
            "binary",
            "enum",
            "set",
            "inet6",
            "inet4",
            "uuid",
        ],
        MYSQL_TYPE_BLOB | MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB => {
            &[
                "blob",
                "tinyblob",
                "mediumblob",
                "longblob",
                "text",
                "tinytext",
                "mediumtext",
                "longtext",
                "json",
            ]
        }
        MYSQL_TYPE_GEOMETRY => &[
            "geometry",
            "point",
            "linestring",
            "polygon",
            "multipoint",
            "multilinestring",
            "multipolygon",
            "geometrycollection",
        ],
        _ => return true,
    };
    expected.contains(&data_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_types_match_binlog_types() {
        assert!(type_matches(ColumnType::MYSQL_TYPE_LONGLONG, "bigint"));
        assert!(type_matches(ColumnType::MYSQL_TYPE_BLOB, "longtext"));
        assert!(!type_matches(ColumnType::MYSQL_TYPE_LONGLONG, "varchar"));
        assert!(!type_matches(ColumnType::MYSQL_TYPE_DATETIME2, "date"));
    }
}
