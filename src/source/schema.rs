//! Table schemas of the source, as the row decoder and the router need them.
//!
//! Column names, signedness, character sets and the primary key come from
//! the TABLE_MAP event when the source writes `binlog_row_metadata=FULL`;
//! otherwise, in a pipeline, from the schema history at the event's
//! position ([`super::history`]), and elsewhere (dry-run) from
//! `information_schema`, cached per table and dropped on any DDL (see
//! [`SchemaCache::invalidate`]). A TABLE_MAP whose column count or
//! types disagree with the schema we hold is an error, never a guess: rows
//! decoded against the wrong columns would be written to the wrong columns.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use mysql_common::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_common::constants::ColumnType;

use crate::db::DbError;
use crate::position::Position;

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
    /// ENUM/SET labels in definition order (ENUM index 1 = `labels[0]`).
    pub labels: Vec<Vec<u8>>,
    /// BIT(n) width in bits.
    pub bits: u16,
    /// Declared byte length of a CHAR/BINARY column (`BINARY(n)`: n), 0 when
    /// unknown. The binlog drops a BINARY value's trailing zero padding.
    pub length: u32,
    /// `information_schema` DATA_TYPE when known (e.g. `json` on MariaDB,
    /// where the binlog only says LONGTEXT).
    pub data_type: Option<String>,
}

impl Column {
    /// A column with just a name and a type.
    pub fn new(name: impl Into<String>, ty: ColumnType) -> Column {
        Column {
            name: name.into(),
            ty,
            unsigned: false,
            decimals: 0,
            charset: 0,
            labels: Vec::new(),
            bits: 0,
            length: 0,
            data_type: None,
        }
    }
}

/// Where a schema came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaOrigin {
    BinlogMetadata,
    InformationSchema,
    /// Offline, without FULL metadata or a server to ask: columns are
    /// named by position (`@1`, `@2`…) and the primary key is unknown.
    Positional,
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
    /// The binlog does not name the columns, and the schema history
    /// cannot tell them at this position or disagrees with the TABLE_MAP
    /// (see [`super::history`]).
    #[error("cannot decode {} at {}: {}. {}", .0.table, .0.position, .0.reason, history_fix(.0.resume.as_ref()))]
    History(Box<HistoryGap>),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Why the schema history cannot decode a table at a position.
#[derive(Debug)]
pub struct HistoryGap {
    /// `db.table`
    pub table: String,
    pub position: Position,
    pub reason: String,
    /// Where the history knows the table again, if anywhere.
    pub resume: Option<Position>,
}

/// What to do when the schema history cannot decode a table.
fn history_fix(resume: Option<&Position>) -> String {
    let from = resume.map_or_else(|| "FILE:POS".to_string(), Position::to_string);
    format!(
        "The events before the DDL cannot be decoded with certainty, and reshard does not guess. \
         To go on, restart from a position after the DDL: `reshard run --from {from} --force` (or raise [pipeline] epoch), \
         and re-seed the table's rows changed before it (`reshard verify` lists them). \
         Set binlog_row_metadata=FULL on the source so that new events name their columns"
    )
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
    let (enum_labels, set_labels) = labels(tme).map_err(err)?;
    let mut enum_labels = enum_labels.into_iter();
    let mut set_labels = set_labels.into_iter();
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
        let labels = match ty {
            ColumnType::MYSQL_TYPE_ENUM => enum_labels.next().unwrap_or_default(),
            ColumnType::MYSQL_TYPE_SET => set_labels.next().unwrap_or_default(),
            _ => Vec::new(),
        };
        let bits = if ty == ColumnType::MYSQL_TYPE_BIT {
            u16::from(md.get(1).copied().unwrap_or(0)) * 8
                + u16::from(md.first().copied().unwrap_or(0))
        } else {
            0
        };
        let length = if ty == ColumnType::MYSQL_TYPE_STRING {
            string_length(md)
        } else {
            0
        };
        columns.push(Column {
            name: if has_names {
                names.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            },
            ty,
            unsigned,
            decimals,
            charset,
            labels,
            bits,
            length,
            data_type: None,
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

/// The ENUM and SET labels of a TABLE_MAP's optional metadata, per column
/// of each kind in column order.
type Labels = Vec<Vec<Vec<u8>>>;

fn labels(tme: &TableMapEvent<'_>) -> Result<(Labels, Labels), String> {
    let mut enum_labels = Vec::new();
    let mut set_labels = Vec::new();
    for field in tme.iter_optional_meta() {
        match field {
            Ok(OptionalMetadataField::EnumStrValue(v)) => {
                for e in v.iter_values() {
                    let e = e.map_err(|e| format!("bad ENUM labels: {e}"))?;
                    enum_labels.push(e.values().iter().map(|x| x.value_raw().to_vec()).collect());
                }
            }
            Ok(OptionalMetadataField::SetStrValue(v)) => {
                for e in v.iter_values() {
                    let e = e.map_err(|e| format!("bad SET labels: {e}"))?;
                    set_labels.push(e.values().iter().map(|x| x.value_raw().to_vec()).collect());
                }
            }
            Ok(_) => {}
            Err(e) => return Err(format!("bad optional metadata: {e}")),
        }
    }
    Ok((enum_labels, set_labels))
}

/// One column as `information_schema` describes it (also the form the
/// schema history stores, see [`super::history`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CatalogColumn {
    pub name: String,
    /// DATA_TYPE, lower case.
    pub data_type: String,
    /// COLUMN_TYPE, e.g. `int(10) unsigned`, `enum('a','b')`.
    pub column_type: String,
    pub unsigned: bool,
    pub charset_binary: bool,
    pub nullable: bool,
    /// NUMERIC_SCALE or DATETIME_PRECISION.
    pub decimals: u8,
    /// NUMERIC_PRECISION (BIT width).
    pub precision: u64,
    /// CHARACTER_OCTET_LENGTH.
    pub octets: Option<u64>,
    pub labels: Vec<Vec<u8>>,
    /// COLLATION_NAME (`None` for non-character columns).
    #[serde(default)]
    pub collation: Option<String>,
}

/// A table's catalog columns and primary-key column names.
pub type Catalog = (Vec<CatalogColumn>, Vec<String>);

/// Caches `information_schema` descriptions of source tables.
#[derive(Default)]
pub struct SchemaCache {
    tables: HashMap<(String, String), Arc<Catalog>>,
}

impl SchemaCache {
    /// Drops everything: called on every DDL QUERY event.
    pub fn invalidate(&mut self) {
        self.tables.clear();
    }

    /// Completes a schema decoded from a TABLE_MAP without names with the
    /// table's catalog as information_schema shows it now.
    pub async fn complete(
        &mut self,
        conn: &mut Conn,
        schema: TableSchema,
    ) -> Result<TableSchema, SchemaError> {
        let key = (schema.db.clone(), schema.table.clone());
        let entry = match self.tables.get(&key) {
            Some(e) => e.clone(),
            None => {
                let e = Arc::new(load_catalog(conn, "source", &schema.db, &schema.table).await?);
                self.tables.insert(key, e.clone());
                e
            }
        };
        complete_with(schema, &entry)
    }
}

/// Completes a schema decoded from a TABLE_MAP without names with a
/// catalog of its table: names, signedness, labels, the primary key. The
/// TABLE_MAP's column count and types must match the catalog's.
pub fn complete_with(
    mut schema: TableSchema,
    (cols, pk): &Catalog,
) -> Result<TableSchema, SchemaError> {
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
        if c.labels.is_empty() {
            c.labels = cat.labels.clone();
        }
        c.data_type = Some(cat.data_type.clone());
    }
    schema.pk = pk
        .iter()
        .filter_map(|name| schema.column_index(name))
        .collect();
    schema.origin = SchemaOrigin::InformationSchema;
    Ok(schema)
}

/// The byte length of a CHAR/BINARY column from its TABLE_MAP metadata: the
/// low byte, with two more bits folded into the type byte (MySQL bug
/// #37426).
fn string_length(md: &[u8]) -> u32 {
    match md {
        [b0, b1, ..] if (b0 & 0x30) != 0x30 => {
            u32::from(*b1) | (u32::from((b0 & 0x30) ^ 0x30) << 4)
        }
        [_, b1, ..] => u32::from(*b1),
        _ => 0,
    }
}

/// Reads a table's columns and primary key from `information_schema`.
pub async fn load_catalog(
    conn: &mut Conn,
    server: &str,
    db: &str,
    table: &str,
) -> Result<(Vec<CatalogColumn>, Vec<String>), SchemaError> {
    let full = format!("{db}.{table}");
    let rows: Vec<mysql_async::Row> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, IS_NULLABLE, \
             COALESCE(NUMERIC_SCALE, DATETIME_PRECISION, 0), COALESCE(NUMERIC_PRECISION, 0), CHARACTER_OCTET_LENGTH, \
             COLLATION_NAME \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .map_err(|e| DbError::query(server, format!("reading columns of {full}"), e))?;
    if rows.is_empty() {
        return Err(SchemaError::Missing { table: full });
    }
    let mut cols = Vec::with_capacity(rows.len());
    for r in rows {
        let text = |i: usize| -> String {
            match r.as_ref(i) {
                Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            }
        };
        let num = |i: usize| -> Option<u64> {
            match r.as_ref(i) {
                Some(mysql_async::Value::Int(v)) => u64::try_from(*v).ok(),
                Some(mysql_async::Value::UInt(v)) => Some(*v),
                Some(mysql_async::Value::Bytes(b)) => std::str::from_utf8(b).ok()?.parse().ok(),
                _ => None,
            }
        };
        let column_type = text(2);
        let data_type = text(1).to_ascii_lowercase();
        let labels = if data_type == "enum" || data_type == "set" {
            parse_labels(&column_type)
        } else {
            Vec::new()
        };
        cols.push(CatalogColumn {
            name: text(0),
            unsigned: column_type.to_ascii_lowercase().contains("unsigned"),
            charset_binary: matches!(r.as_ref(3), None | Some(mysql_async::Value::NULL)),
            nullable: text(4).eq_ignore_ascii_case("YES"),
            decimals: num(5).unwrap_or(0).min(30) as u8,
            precision: num(6).unwrap_or(0),
            octets: num(7),
            labels,
            data_type,
            column_type,
            collation: Some(text(8)).filter(|c| !c.is_empty()),
        });
    }
    let pk: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (db, table),
        )
        .await
        .map_err(|e| DbError::query(server, format!("reading the primary key of {full}"), e))?;
    Ok((cols, pk))
}

/// A table's schema from `information_schema` alone (no binlog event): for
/// dry-run and the initial copy.
pub async fn load_table(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> Result<TableSchema, SchemaError> {
    let (cols, pk) = load_catalog(conn, "source", db, table).await?;
    Ok(from_catalog(db, table, &cols, &pk))
}

/// Builds a schema from catalog columns and primary key names.
pub fn from_catalog(db: &str, table: &str, cols: &[CatalogColumn], pk: &[String]) -> TableSchema {
    let columns: Vec<Column> = cols
        .iter()
        .map(|c| Column {
            name: c.name.clone(),
            ty: catalog_type(&c.data_type),
            unsigned: c.unsigned,
            decimals: c.decimals,
            charset: if c.charset_binary && is_string_type(&c.data_type) {
                BINARY_CHARSET
            } else {
                0
            },
            labels: c.labels.clone(),
            bits: if c.data_type == "bit" {
                c.precision.min(64) as u16
            } else {
                0
            },
            length: if matches!(c.data_type.as_str(), "char" | "binary") {
                c.octets.unwrap_or(0).min(u64::from(u32::MAX)) as u32
            } else {
                0
            },
            data_type: Some(c.data_type.clone()),
        })
        .collect();
    let pk = pk
        .iter()
        .filter_map(|n| columns.iter().position(|c| c.name.eq_ignore_ascii_case(n)))
        .collect();
    TableSchema {
        db: db.to_string(),
        table: table.to_string(),
        columns,
        pk,
        origin: SchemaOrigin::InformationSchema,
    }
}

fn is_string_type(data_type: &str) -> bool {
    matches!(
        data_type,
        "char"
            | "varchar"
            | "binary"
            | "varbinary"
            | "tinyblob"
            | "blob"
            | "mediumblob"
            | "longblob"
            | "tinytext"
            | "text"
            | "mediumtext"
            | "longtext"
    )
}

/// The binlog type a catalog DATA_TYPE is logged as.
pub fn catalog_type(data_type: &str) -> ColumnType {
    use ColumnType::*;
    match data_type {
        "tinyint" | "bool" | "boolean" => MYSQL_TYPE_TINY,
        "smallint" => MYSQL_TYPE_SHORT,
        "mediumint" => MYSQL_TYPE_INT24,
        "int" | "integer" => MYSQL_TYPE_LONG,
        "bigint" => MYSQL_TYPE_LONGLONG,
        "float" => MYSQL_TYPE_FLOAT,
        "double" | "real" => MYSQL_TYPE_DOUBLE,
        "decimal" | "numeric" => MYSQL_TYPE_NEWDECIMAL,
        "date" => MYSQL_TYPE_NEWDATE,
        "datetime" => MYSQL_TYPE_DATETIME2,
        "timestamp" => MYSQL_TYPE_TIMESTAMP2,
        "time" => MYSQL_TYPE_TIME2,
        "year" => MYSQL_TYPE_YEAR,
        "bit" => MYSQL_TYPE_BIT,
        "enum" => MYSQL_TYPE_ENUM,
        "set" => MYSQL_TYPE_SET,
        "json" => MYSQL_TYPE_JSON,
        "char" | "binary" => MYSQL_TYPE_STRING,
        "varchar" | "varbinary" => MYSQL_TYPE_VARCHAR,
        "tinyblob" | "blob" | "mediumblob" | "longblob" | "tinytext" | "text" | "mediumtext"
        | "longtext" => MYSQL_TYPE_BLOB,
        _ => MYSQL_TYPE_GEOMETRY,
    }
}

/// Labels of `enum('a','b''c')` / `set(...)`, with `''` and backslash escapes.
pub fn parse_labels(column_type: &str) -> Vec<Vec<u8>> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let bytes = column_type.as_bytes();
    let mut out = Vec::new();
    let mut i = open + 1;
    while i < bytes.len() {
        if bytes[i] != b'\'' {
            i += 1;
            continue;
        }
        i += 1;
        let mut label = Vec::new();
        while i < bytes.len() {
            match bytes[i] {
                b'\'' if bytes.get(i + 1) == Some(&b'\'') => {
                    label.push(b'\'');
                    i += 2;
                }
                b'\'' => {
                    i += 1;
                    break;
                }
                b'\\' if i + 1 < bytes.len() => {
                    label.push(bytes[i + 1]);
                    i += 2;
                }
                b => {
                    label.push(b);
                    i += 1;
                }
            }
        }
        out.push(label);
    }
    out
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

    #[test]
    fn enum_labels_parse_with_escapes() {
        assert_eq!(
            parse_labels("enum('a','b''c','d\\\\e','')"),
            vec![
                b"a".to_vec(),
                b"b'c".to_vec(),
                b"d\\e".to_vec(),
                b"".to_vec()
            ]
        );
        assert_eq!(parse_labels("set('x,y')"), vec![b"x,y".to_vec()]);
        assert!(parse_labels("int").is_empty());
    }
}
