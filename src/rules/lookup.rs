//! `lookup('table', key)`: directory mappings kept in the control database.
//!
//! A lookup table is a table of the control database with a key column `k`
//! and a value column `v` (e.g. `CREATE TABLE tenant_shard (k VARCHAR(64)
//! PRIMARY KEY, v INT NOT NULL)`). Keys are matched by their text form, so
//! `lookup('tenant_shard', tenant_id)` finds `k = '42'` for the integer 42.
//!
//! Tables are read whole into memory (directories are small) and re-read
//! when older than the configured TTL, before the next transaction is
//! routed; evaluation itself never waits on the network. A key that is not
//! in the table evaluates to NULL, so a rule can fall back with
//! `coalesce(lookup(...), …)`; a shard expression that ends up NULL stops
//! the pipeline or dead-letters the row, as configured.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use mysql_common::value::Value as Cell;

use super::convert::cell_to_expr;
use super::expr::{EvalContext, Expr, Value};
use super::file::Rule;
use crate::db::{quote_ident, DbError};
use crate::source::Column;

struct Table {
    loaded: Instant,
    map: HashMap<Vec<u8>, Value>,
}

/// In-memory copies of the lookup tables the rules use.
pub struct Lookups {
    ttl: Duration,
    tables: HashMap<String, Table>,
    wanted: BTreeSet<String>,
}

/// Lookup table names used by an expression (first argument literals).
pub fn tables_of(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::Call { name, args, .. } => {
            if name.eq_ignore_ascii_case("lookup") {
                if let Some(Expr::Literal {
                    value: Value::Bytes(b),
                    ..
                }) = args.first()
                {
                    out.insert(String::from_utf8_lossy(b).into_owned());
                }
            }
            for a in args {
                tables_of(a, out);
            }
        }
        Expr::List { items, .. } => items.iter().for_each(|i| tables_of(i, out)),
        Expr::Unary { operand, .. } | Expr::IsNull { operand, .. } => tables_of(operand, out),
        Expr::Binary { left, right, .. } => {
            tables_of(left, out);
            tables_of(right, out);
        }
        Expr::Literal { .. } | Expr::Column { .. } => {}
    }
}

impl Lookups {
    /// The lookup tables used by `rules`.
    pub fn new<'a>(rules: impl IntoIterator<Item = &'a Rule>, ttl: Duration) -> Lookups {
        let mut wanted = BTreeSet::new();
        for r in rules {
            tables_of(&r.shard.expr, &mut wanted);
            for (_, d) in &r.derive {
                tables_of(&d.expr, &mut wanted);
            }
            if let Some(w) = &r.where_ {
                tables_of(&w.expr, &mut wanted);
            }
        }
        Lookups {
            ttl,
            tables: HashMap::new(),
            wanted,
        }
    }

    /// Whether any rule uses `lookup`.
    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }

    /// The tables the rules use.
    pub fn wanted(&self) -> impl Iterator<Item = &String> {
        self.wanted.iter()
    }

    /// Re-reads every table older than the TTL.
    pub async fn refresh(&mut self, control: &mut Conn) -> Result<(), DbError> {
        for name in self.wanted.clone() {
            if self
                .tables
                .get(&name)
                .is_some_and(|t| t.loaded.elapsed() < self.ttl)
            {
                continue;
            }
            // binary protocol: numbers arrive as numbers, not text
            let rows: Vec<(Cell, Cell)> = control
                .exec(format!("SELECT k, v FROM {}", quote_ident(&name)), ())
                .await
                .map_err(|e| {
                    DbError::query(
                        "control",
                        format!("reading lookup table {name} (columns k, v)"),
                        e,
                    )
                })?;
            let plain = Column::new(
                "v",
                mysql_common::constants::ColumnType::MYSQL_TYPE_VAR_STRING,
            );
            let mut map = HashMap::with_capacity(rows.len());
            for (k, v) in rows {
                let k = cell_to_expr(&k, &plain);
                if let Some(text) = k.to_text() {
                    map.insert(text.into_owned(), cell_to_expr(&v, &plain));
                }
            }
            tracing::debug!(table = %name, entries = map.len(), "lookup table loaded");
            self.tables.insert(
                name,
                Table {
                    loaded: Instant::now(),
                    map,
                },
            );
        }
        Ok(())
    }
}

impl EvalContext for Lookups {
    fn lookup(&self, table: &str, key: &Value) -> Result<Option<Value>, String> {
        let t = self
            .tables
            .get(table)
            .ok_or_else(|| format!("lookup table {table} is not loaded"))?;
        let Some(k) = key.to_text() else {
            return Ok(None);
        };
        Ok(t.map.get(k.as_ref()).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lookup_tables_in_nested_expressions() {
        let e = super::super::expr::parse(
            "coalesce(lookup('a', x), if(y > 1, lookup(\"b\", y), 0)) % 4",
        )
        .unwrap();
        let mut out = BTreeSet::new();
        tables_of(&e, &mut out);
        assert_eq!(
            out.into_iter().collect::<Vec<_>>(),
            vec!["a".to_string(), "b".to_string()]
        );
    }

    #[test]
    fn keys_match_by_text() {
        let mut l = Lookups {
            ttl: Duration::from_secs(60),
            tables: HashMap::new(),
            wanted: BTreeSet::new(),
        };
        let mut map = HashMap::new();
        map.insert(b"42".to_vec(), Value::Int(3));
        l.tables.insert(
            "t".into(),
            Table {
                loaded: Instant::now(),
                map,
            },
        );
        assert_eq!(l.lookup("t", &Value::Int(42)).unwrap(), Some(Value::Int(3)));
        assert_eq!(
            l.lookup("t", &Value::Bytes(b"42".to_vec())).unwrap(),
            Some(Value::Int(3))
        );
        assert_eq!(l.lookup("t", &Value::Int(7)).unwrap(), None);
        assert!(l.lookup("u", &Value::Int(7)).is_err());
    }
}
