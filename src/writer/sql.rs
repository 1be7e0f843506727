//! SQL text for versioned writes to the target tables (reshard's own
//! tables are in [`crate::control`]). Values are always bound as parameters;
//! identifiers are always quoted.
//!
//! The upsert assigns every column through
//! `IF(VALUES(_reshard_version) > _reshard_version, VALUES(c), c)` and the
//! version column **last**: MySQL evaluates assignments left to right, so a
//! version assigned earlier would make the later comparisons see the new
//! version and keep the old values. `VALUES()` works on MariaDB and on
//! MySQL (deprecated since 8.0.20, still accepted).
//!
//! Key columns are assigned too, so that the stored bytes follow the
//! source when a key changes to a spelling its collation finds equal
//! ('abc' → 'ABC' finds the row 'abc' as a duplicate; see
//! [`super::keyenc`]). Each is guarded by the version **and** by
//! `k <=> VALUES(k)`: true for the row found by its primary key, false for
//! a row found through a secondary UNIQUE key, whose own key must never be
//! rewritten (the landed check then sees the collision, see
//! [`landed`]).

use crate::db::quote_ident;

/// The version column on every target table.
pub const VERSION_COLUMN: &str = "_reshard_version";
fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3 + 2);
    s.push('(');
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s.push(')');
    s
}

/// `INSERT … VALUES (…), … ON DUPLICATE KEY UPDATE` guarded by the version,
/// for `rows` rows of `columns` plus the version column.
pub fn upsert(table: &str, columns: &[String], key: &[usize], rows: usize) -> String {
    let v = quote_ident(VERSION_COLUMN);
    let mut cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    cols.push(v.clone());
    let row = placeholders(cols.len());
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        quote_ident(table),
        cols.join(", ")
    );
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql.push_str(" ON DUPLICATE KEY UPDATE ");
    let newer = format!("VALUES({v}) > {v}");
    let mut sets: Vec<String> = columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !key.contains(i))
        .map(|(_, c)| {
            let c = quote_ident(c);
            format!("{c} = IF({newer}, VALUES({c}), {c})")
        })
        .collect();
    for &k in key {
        if let Some(c) = columns.get(k) {
            let c = quote_ident(c);
            sets.push(format!(
                "{c} = IF({newer} AND {c} <=> VALUES({c}), VALUES({c}), {c})"
            ));
        }
    }
    sets.push(format!("{v} = IF({newer}, VALUES({v}), {v})"));
    sql.push_str(&sets.join(", "));
    sql
}

/// `(k1 = ? AND k2 = ? AND _reshard_version <op> ?) OR …` for `rows` keys.
fn keys_with_version(key_columns: &[&str], version_op: &str, rows: usize) -> String {
    let mut parts: Vec<String> = key_columns
        .iter()
        .map(|c| format!("{} = ?", quote_ident(c)))
        .collect();
    parts.push(format!("{} {version_op} ?", quote_ident(VERSION_COLUMN)));
    vec![format!("({})", parts.join(" AND ")); rows].join(" OR ")
}

/// `DELETE` of `rows` keys, each only where the row's version is older.
pub fn delete(table: &str, key_columns: &[&str], rows: usize) -> String {
    format!(
        "DELETE FROM {} WHERE {}",
        quote_ident(table),
        keys_with_version(key_columns, "<", rows)
    )
}

/// Counts how many of `rows` keys hold at least the given version: after an
/// upsert into a table with a secondary UNIQUE key, every row must have
/// landed on its own key (a collision updates another row instead).
pub fn landed(table: &str, key_columns: &[&str], rows: usize) -> String {
    format!(
        "SELECT COUNT(*) FROM {} WHERE {}",
        quote_ident(table),
        keys_with_version(key_columns, ">=", rows)
    )
}

/// The column names of a target table.
pub const TARGET_COLUMNS: &str = "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?";

/// Whether a target table has a UNIQUE key besides its primary key.
pub const SECONDARY_UNIQUE: &str = "SELECT COUNT(*) FROM information_schema.STATISTICS \
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND NON_UNIQUE = 0 AND INDEX_NAME <> 'PRIMARY'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_assigns_version_last_and_key_columns_only_on_their_own_row() {
        let cols = vec!["id".to_string(), "name".to_string(), "shard_no".to_string()];
        let sql = upsert("orders", &cols, &[0], 2);
        assert_eq!(
            sql,
            "INSERT INTO `orders` (`id`, `name`, `shard_no`, `_reshard_version`) VALUES (?, ?, ?, ?), (?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE \
             `name` = IF(VALUES(`_reshard_version`) > `_reshard_version`, VALUES(`name`), `name`), \
             `shard_no` = IF(VALUES(`_reshard_version`) > `_reshard_version`, VALUES(`shard_no`), `shard_no`), \
             `id` = IF(VALUES(`_reshard_version`) > `_reshard_version` AND `id` <=> VALUES(`id`), VALUES(`id`), `id`), \
             `_reshard_version` = IF(VALUES(`_reshard_version`) > `_reshard_version`, VALUES(`_reshard_version`), `_reshard_version`)"
        );
        assert!(sql.ends_with("`_reshard_version`)"));
    }

    #[test]
    fn identifiers_are_quoted() {
        let sql = upsert("we`ird", &["a`b".to_string()], &[0], 1);
        assert!(sql.starts_with("INSERT INTO `we``ird` (`a``b`, "), "{sql}");
    }

    #[test]
    fn delete_guards_each_key_by_version() {
        assert_eq!(
            delete("t", &["a", "b"], 2),
            "DELETE FROM `t` WHERE (`a` = ? AND `b` = ? AND `_reshard_version` < ?) OR (`a` = ? AND `b` = ? AND `_reshard_version` < ?)"
        );
    }

    #[test]
    fn landed_counts_keys_at_their_version() {
        assert_eq!(
            landed("t", &["id"], 2),
            "SELECT COUNT(*) FROM `t` WHERE (`id` = ? AND `_reshard_version` >= ?) OR (`id` = ? AND `_reshard_version` >= ?)"
        );
    }
}
