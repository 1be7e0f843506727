//! The stored form of a dead-lettered row change: its table schema and
//! both images, typed, as JSON. Decoding gives back the same
//! [`RowChange`] the router failed on (same schema, same values, same
//! version and event length), so a retry routes exactly that change.

use std::sync::Arc;

use mysql_common::constants::ColumnType;
use mysql_common::value::Value;
use serde::{Deserialize, Serialize};

use crate::position::Position;
use crate::source::schema::{Column, SchemaOrigin, TableSchema};
use crate::source::RowChange;
use crate::version::Version;

/// A value, tagged by its kind (bytes as hex).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "t", content = "v")]
enum Cell {
    Null,
    Bytes(String),
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    Date(u16, u8, u8, u8, u8, u8, u32),
    Time(bool, u32, u8, u8, u8, u32),
}

#[derive(Serialize, Deserialize)]
struct StoredColumn {
    name: String,
    ty: u8,
    unsigned: bool,
    decimals: u8,
    charset: u16,
    labels: Vec<Vec<u8>>,
    bits: u16,
    length: u32,
    data_type: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredChange {
    db: String,
    table: String,
    pk: Vec<usize>,
    origin: String,
    columns: Vec<StoredColumn>,
    before: Option<Vec<Cell>>,
    after: Option<Vec<Cell>>,
}

/// Why a stored change cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("the stored row change does not parse: {0}")]
pub struct StoredError(String);

/// The JSON of a change (without its version, position and span, which
/// have columns of their own).
pub fn encode(change: &RowChange) -> String {
    let t = &change.table;
    let stored = StoredChange {
        db: t.db.clone(),
        table: t.table.clone(),
        pk: t.pk.clone(),
        origin: format!("{:?}", t.origin),
        columns: t.columns.iter().map(column).collect(),
        before: change.before.as_deref().map(cells),
        after: change.after.as_deref().map(cells),
    };
    serde_json::to_string(&stored).unwrap_or_default()
}

/// The change back from its JSON, version, position and span.
pub fn decode(
    json: &str,
    version: Version,
    position: Position,
    span: u64,
) -> Result<RowChange, StoredError> {
    let s: StoredChange = serde_json::from_str(json).map_err(|e| StoredError(e.to_string()))?;
    let columns = s
        .columns
        .into_iter()
        .map(|c| {
            let ty = ColumnType::try_from(c.ty)
                .map_err(|_| StoredError(format!("column {}: type {}", c.name, c.ty)))?;
            Ok(Column {
                name: c.name,
                ty,
                unsigned: c.unsigned,
                decimals: c.decimals,
                charset: c.charset,
                labels: c.labels,
                bits: c.bits,
                length: c.length,
                data_type: c.data_type,
            })
        })
        .collect::<Result<Vec<_>, StoredError>>()?;
    let origin = match s.origin.as_str() {
        "BinlogMetadata" => SchemaOrigin::BinlogMetadata,
        "InformationSchema" => SchemaOrigin::InformationSchema,
        _ => SchemaOrigin::Positional,
    };
    let table = Arc::new(TableSchema {
        db: s.db,
        table: s.table,
        columns,
        pk: s.pk,
        origin,
    });
    Ok(RowChange {
        table,
        before: s.before.map(values).transpose()?,
        after: s.after.map(values).transpose()?,
        version,
        span,
        file: Arc::from(position.file.as_str()),
    })
}

fn column(c: &Column) -> StoredColumn {
    StoredColumn {
        name: c.name.clone(),
        ty: c.ty as u8,
        unsigned: c.unsigned,
        decimals: c.decimals,
        charset: c.charset,
        labels: c.labels.clone(),
        bits: c.bits,
        length: c.length,
        data_type: c.data_type.clone(),
    }
}

fn cells(row: &[Value]) -> Vec<Cell> {
    row.iter()
        .map(|v| match v {
            Value::NULL => Cell::Null,
            Value::Bytes(b) => Cell::Bytes(b.iter().map(|x| format!("{x:02x}")).collect()),
            Value::Int(i) => Cell::Int(*i),
            Value::UInt(u) => Cell::UInt(*u),
            Value::Float(f) => Cell::Float(*f),
            Value::Double(d) => Cell::Double(*d),
            Value::Date(y, m, d, h, i, s, us) => Cell::Date(*y, *m, *d, *h, *i, *s, *us),
            Value::Time(n, d, h, i, s, us) => Cell::Time(*n, *d, *h, *i, *s, *us),
        })
        .collect()
}

fn values(row: Vec<Cell>) -> Result<Vec<Value>, StoredError> {
    row.into_iter()
        .map(|c| {
            Ok(match c {
                Cell::Null => Value::NULL,
                Cell::Bytes(h) => Value::Bytes(unhex(&h)?),
                Cell::Int(i) => Value::Int(i),
                Cell::UInt(u) => Value::UInt(u),
                Cell::Float(f) => Value::Float(f),
                Cell::Double(d) => Value::Double(d),
                Cell::Date(y, m, d, h, i, s, us) => Value::Date(y, m, d, h, i, s, us),
                Cell::Time(n, d, h, i, s, us) => Value::Time(n, d, h, i, s, us),
            })
        })
        .collect()
}

fn unhex(h: &str) -> Result<Vec<u8>, StoredError> {
    let bad = || StoredError(format!("bad hex {h:?}"));
    if !h.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..h.len())
        .step_by(2)
        .map(|i| {
            h.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_round_trips_exactly() {
        let mut col = Column::new("id", ColumnType::MYSQL_TYPE_LONGLONG);
        col.unsigned = true;
        let mut text = Column::new("note", ColumnType::MYSQL_TYPE_VARCHAR);
        text.charset = 8;
        text.labels = vec![b"a".to_vec()];
        let table = Arc::new(TableSchema {
            db: "d".into(),
            table: "t".into(),
            columns: vec![col, text, Column::new("f", ColumnType::MYSQL_TYPE_DOUBLE)],
            pk: vec![0],
            origin: SchemaOrigin::BinlogMetadata,
        });
        let change = RowChange {
            table,
            before: Some(vec![
                Value::UInt(u64::MAX),
                Value::Bytes(vec![0, 0xe9, b'x']),
                Value::Double(0.1),
            ]),
            after: Some(vec![
                Value::UInt(7),
                Value::NULL,
                Value::Time(true, 1, 2, 3, 4, 5),
            ]),
            version: Version(42),
            span: 120,
            file: Arc::from("b.000003"),
        };
        let back = decode(
            &encode(&change),
            Version(42),
            Position::new("b.000003", 77),
            120,
        )
        .unwrap();
        assert_eq!(back.table, change.table);
        assert_eq!(back.before, change.before);
        assert_eq!(back.after, change.after);
        assert_eq!((back.version, back.span), (change.version, change.span));
        assert!(decode("{", Version(0), Position::new("b.1", 4), 0).is_err());
    }
}
