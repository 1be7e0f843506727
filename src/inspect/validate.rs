//! Rules against the real schemas: every source table and column exists,
//! every target table exists on every shard of its rule with the row
//! identity as primary key (whose text columns have the source's
//! collations), every target column and the version column are there, and
//! no secondary UNIQUE key can make an upsert hit another row. Each finding
//! carries the SQL that fixes it.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::report::Finding;
use crate::db::{quote_ident, DbError};
use crate::rules::Rule;
use crate::source::schema::{load_catalog, CatalogColumn, SchemaError};
use crate::writer::sql::VERSION_COLUMN;
use crate::writer::TargetTable;

/// What a target table looks like on one shard.
#[derive(Debug, Clone)]
pub struct TargetCatalog {
    pub columns: Vec<CatalogColumn>,
    pub pk: Vec<String>,
}

impl TargetCatalog {
    pub fn column(&self, name: &str) -> Option<&CatalogColumn> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// `db`.`table`
fn qualified(db: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(db), quote_ident(table))
}

fn column_def(c: &CatalogColumn) -> String {
    format!(
        "{}{}",
        c.column_type,
        if c.nullable { " NULL" } else { " NOT NULL" }
    )
}

const VERSION_DEF: &str = "BINARY(16) NOT NULL DEFAULT ''";

/// Checks one rule's target table on one shard.
#[allow(clippy::too_many_arguments)]
pub async fn check_target(
    conn: &mut Conn,
    shard: &str,
    db: &str,
    rule: &Rule,
    target: &TargetTable,
    source_cols: &[CatalogColumn],
    findings: &mut Vec<Finding>,
) -> Result<Option<TargetCatalog>, DbError> {
    let check = TargetCheck {
        table: rule.source_name(),
        shard,
        db,
        rule,
        target,
        source_cols,
        tq: qualified(db, &target.name),
    };
    let (cols, pk) = match load_catalog(conn, shard, db, &target.name).await {
        Ok(x) => x,
        Err(SchemaError::Missing { .. }) => {
            findings.push(check.missing_table());
            return Ok(None);
        }
        Err(SchemaError::Db(e)) => return Err(e),
        Err(other) => {
            findings.push(check.finding("target_schema", other.to_string(), None));
            return Ok(None);
        }
    };
    let cat = TargetCatalog { columns: cols, pk };
    check.columns(&cat, findings);
    findings.extend(check.version_column(&cat));
    findings.extend(check.key(&cat));
    check.key_collations(&cat, findings);
    check.unique_keys(conn, findings).await?;
    Ok(Some(cat))
}

/// One rule's target table on one shard, and the findings about it.
struct TargetCheck<'a> {
    /// The rule's source table, `db.table`.
    table: String,
    shard: &'a str,
    db: &'a str,
    rule: &'a Rule,
    target: &'a TargetTable,
    source_cols: &'a [CatalogColumn],
    /// `db`.`table` of the target table.
    tq: String,
}

impl TargetCheck<'_> {
    fn finding(&self, kind: &'static str, message: String, fix: Option<String>) -> Finding {
        Finding {
            kind,
            table: self.table.clone(),
            shard: Some(self.shard.to_string()),
            message,
            fix,
        }
    }

    /// The source column definition of a target column (None for derived
    /// ones).
    fn source_def(&self, target_col: &str) -> Option<&CatalogColumn> {
        let src_name = self
            .rule
            .rename
            .iter()
            .find(|(_, to)| to.eq_ignore_ascii_case(target_col))
            .map(|(from, _)| from.as_str())
            .unwrap_or(target_col);
        self.source_cols
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(src_name))
    }

    /// The names of the row identity's columns.
    fn key_names(&self) -> Vec<&str> {
        self.target
            .key
            .iter()
            .map(|&i| self.target.columns[i].as_str())
            .collect()
    }

    /// `missing_target_table`, with the `CREATE TABLE` that fixes it.
    fn missing_table(&self) -> Finding {
        let mut defs: Vec<String> = self
            .target
            .columns
            .iter()
            .map(|c| {
                let def = self.source_def(c).map(column_def).unwrap_or_else(|| {
                    "BIGINT NULL /* derived: adjust to the expression */".into()
                });
                format!("  {} {def}", quote_ident(c))
            })
            .collect();
        defs.push(format!("  {} {VERSION_DEF}", quote_ident(VERSION_COLUMN)));
        let keys: Vec<String> = self.key_names().iter().map(|k| quote_ident(k)).collect();
        defs.push(format!("  PRIMARY KEY ({})", keys.join(", ")));
        self.finding(
            "missing_target_table",
            format!("target table {} does not exist", self.tq),
            Some(format!(
                "CREATE TABLE {} (\n{}\n);",
                self.tq,
                defs.join(",\n")
            )),
        )
    }

    /// `missing_target_column` for each column the rule writes that the
    /// target table lacks.
    fn columns(&self, cat: &TargetCatalog, findings: &mut Vec<Finding>) {
        let tq = &self.tq;
        for c in &self.target.columns {
            if cat.column(c).is_some() {
                continue;
            }
            let def = self.source_def(c).map(column_def).unwrap_or_else(|| {
                "BIGINT NULL /* derived: adjust to the expression's type */".into()
            });
            let derived = self
                .rule
                .derive
                .iter()
                .any(|(d, _)| d.eq_ignore_ascii_case(c));
            findings.push(self.finding(
                "missing_target_column",
                format!(
                    "{tq} has no column {}{}",
                    quote_ident(c),
                    if derived { " (derived column)" } else { "" }
                ),
                Some(format!(
                    "ALTER TABLE {tq} ADD COLUMN {} {def};",
                    quote_ident(c)
                )),
            ));
        }
    }

    /// The version column: present, `BINARY(16) NOT NULL`.
    fn version_column(&self, cat: &TargetCatalog) -> Option<Finding> {
        let tq = &self.tq;
        match cat.column(VERSION_COLUMN) {
            None => Some(self.finding(
                "missing_version_column",
                format!("{tq} has no version column {VERSION_COLUMN}"),
                Some(format!(
                    "ALTER TABLE {tq} ADD COLUMN {} {VERSION_DEF};",
                    quote_ident(VERSION_COLUMN)
                )),
            )),
            Some(v) if !v.column_type.eq_ignore_ascii_case("binary(16)") || v.nullable => {
                Some(self.finding(
                    "bad_version_column",
                    format!(
                        "{tq}.{VERSION_COLUMN} is {}{}, expected BINARY(16) NOT NULL",
                        v.column_type,
                        if v.nullable { " NULL" } else { "" }
                    ),
                    Some(format!(
                        "ALTER TABLE {tq} MODIFY COLUMN {} {VERSION_DEF};",
                        quote_ident(VERSION_COLUMN)
                    )),
                ))
            }
            Some(_) => None,
        }
    }

    /// The target's primary key is the row identity.
    fn key(&self, cat: &TargetCatalog) -> Option<Finding> {
        let tq = &self.tq;
        let key_names = self.key_names();
        let same_key = cat.pk.len() == key_names.len()
            && key_names
                .iter()
                .all(|k| cat.pk.iter().any(|p| p.eq_ignore_ascii_case(k)));
        if same_key {
            return None;
        }
        let keys: Vec<String> = key_names.iter().map(|k| quote_ident(k)).collect();
        Some(self.finding(
            "key_mismatch",
            format!(
                "the primary key of {tq} is ({}) but the row identity is ({}); versioned upserts need the identity as primary key",
                cat.pk.join(", "),
                key_names.join(", ")
            ),
            Some(format!(
                "ALTER TABLE {tq} {}ADD PRIMARY KEY ({});",
                if cat.pk.is_empty() { "" } else { "DROP PRIMARY KEY, " },
                keys.join(", ")
            )),
        ))
    }

    /// `key_collation` for each key column whose collation on the target is
    /// not the source's: the target would find keys equal (or different)
    /// that the source does not, and reshard's canonical keys follow the
    /// source's collation.
    fn key_collations(&self, cat: &TargetCatalog, findings: &mut Vec<Finding>) {
        let tq = &self.tq;
        for k in self.key_names() {
            let (Some(src), Some(tgt)) = (self.source_def(k), cat.column(k)) else {
                continue;
            };
            if src.collation == tgt.collation {
                continue;
            }
            let name = |c: &Option<String>| c.clone().unwrap_or_else(|| "binary".into());
            let (want, have) = (name(&src.collation), name(&tgt.collation));
            findings.push(self.finding(
                "key_collation",
                format!(
                    "key column {} of {tq} has collation {have}, the source's has {want}: keys one of them finds equal the other may not",
                    quote_ident(k)
                ),
                src.collation.as_ref().map(|coll| {
                    format!(
                        "ALTER TABLE {tq} MODIFY COLUMN {} {} COLLATE {coll}{};",
                        quote_ident(k),
                        tgt.column_type,
                        if tgt.nullable { " NULL" } else { " NOT NULL" }
                    )
                }),
            ));
        }
    }

    /// `secondary_unique_key` for each UNIQUE key besides the primary key.
    async fn unique_keys(
        &self,
        conn: &mut Conn,
        findings: &mut Vec<Finding>,
    ) -> Result<(), DbError> {
        let tq = &self.tq;
        let uniques: Vec<(String, String)> = conn
            .exec(
                "SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 AND INDEX_NAME <> 'PRIMARY' GROUP BY INDEX_NAME",
                (self.db, &self.target.name),
            )
            .await
            .map_err(|e| DbError::query(self.shard, format!("reading the keys of {tq}"), e))?;
        for (name, cols) in uniques {
            findings.push(self.finding(
                "secondary_unique_key",
                format!(
                    "{tq} has a secondary UNIQUE key {} ({cols}): an upsert that collides on it would update or replace another row. Drop it on the targets or make sure the source enforces the same key",
                    quote_ident(&name)
                ),
                Some(format!("ALTER TABLE {tq} DROP INDEX {};", quote_ident(&name))),
            ));
        }
        Ok(())
    }
}

/// Whether a derived value fits its target column; `Some(reason)` if not.
pub fn fits(value: &mysql_common::value::Value, col: &CatalogColumn) -> Option<String> {
    use mysql_common::value::Value as V;
    let int_range: Option<(i128, i128)> = match (col.data_type.as_str(), col.unsigned) {
        ("tinyint", false) => Some((-128, 127)),
        ("tinyint", true) => Some((0, 255)),
        ("smallint", false) => Some((-32768, 32767)),
        ("smallint", true) => Some((0, 65535)),
        ("mediumint", false) => Some((-8_388_608, 8_388_607)),
        ("mediumint", true) => Some((0, 16_777_215)),
        ("int" | "integer", false) => Some((i128::from(i32::MIN), i128::from(i32::MAX))),
        ("int" | "integer", true) => Some((0, i128::from(u32::MAX))),
        ("bigint", false) => Some((i128::from(i64::MIN), i128::from(i64::MAX))),
        ("bigint", true) => Some((0, i128::from(u64::MAX))),
        _ => None,
    };
    match value {
        V::NULL if !col.nullable => Some(format!("NULL into NOT NULL column {}", col.name)),
        V::Int(i) => int_range
            .filter(|(lo, hi)| i128::from(*i) < *lo || i128::from(*i) > *hi)
            .map(|_| format!("{i} does not fit {} {}", col.name, col.column_type)),
        V::UInt(u) => int_range
            .filter(|(lo, hi)| i128::from(*u) < *lo || i128::from(*u) > *hi)
            .map(|_| format!("{u} does not fit {} {}", col.name, col.column_type)),
        V::Bytes(b) => {
            if int_range.is_some() {
                let ok = std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.trim().parse::<i128>().ok());
                return match ok {
                    Some(n) if int_range.is_some_and(|(lo, hi)| n >= lo && n <= hi) => None,
                    _ => Some(format!(
                        "{:?} is not an integer that fits {} {}",
                        String::from_utf8_lossy(b),
                        col.name,
                        col.column_type
                    )),
                };
            }
            col.octets.filter(|max| b.len() as u64 > *max).map(|max| {
                format!(
                    "{} bytes do not fit {} {} ({max} bytes)",
                    b.len(),
                    col.name,
                    col.column_type
                )
            })
        }
        _ => None,
    }
}

/// Groups shard names by physical server (`host:port`).
pub fn servers_of(targets: &BTreeMap<String, crate::config::Endpoint>) -> BTreeMap<String, String> {
    targets
        .iter()
        .map(|(name, ep)| {
            let server = mysql_async::Opts::from_url(&ep.url)
                .map(|o| format!("{}:{}", o.ip_or_hostname(), o.tcp_port()))
                .unwrap_or_else(|_| name.clone());
            (name.clone(), server)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::value::Value;

    fn col(
        data_type: &str,
        column_type: &str,
        unsigned: bool,
        octets: Option<u64>,
    ) -> CatalogColumn {
        CatalogColumn {
            name: "c".into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            unsigned,
            charset_binary: false,
            nullable: true,
            decimals: 0,
            precision: 0,
            octets,
            labels: Vec::new(),
            collation: None,
        }
    }

    #[test]
    fn derived_values_must_fit_their_column() {
        let tiny = col("tinyint", "tinyint(4)", false, None);
        assert!(fits(&Value::Int(127), &tiny).is_none());
        assert!(fits(&Value::Int(128), &tiny).is_some());
        assert!(fits(
            &Value::UInt(u64::MAX),
            &col("bigint", "bigint(20) unsigned", true, None)
        )
        .is_none());
        assert!(fits(&Value::Int(-1), &col("int", "int(10) unsigned", true, None)).is_some());
        assert!(fits(
            &Value::Bytes(b"abcd".to_vec()),
            &col("varchar", "varchar(3)", false, Some(3))
        )
        .is_some());
        assert!(fits(
            &Value::Bytes(b"abc".to_vec()),
            &col("varchar", "varchar(3)", false, Some(3))
        )
        .is_none());
    }
}
