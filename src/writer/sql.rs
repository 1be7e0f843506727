//! SQL text for versioned writes to the target tables (reshard's own
//! tables are in [`crate::control`]). Identifiers are always quoted, and
//! a target table is always named with its shard's database
//! ([`qualified`]): a lane may serve several shards of one server.
//!
//! Values are always bound as parameters of prepared statements (the
//! connection caches them).
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

use mysql_common::value::Value;

use crate::db::quote_ident;

/// Most placeholders one statement binds (the protocol allows 65,535).
pub const MAX_PARAMS: usize = 30_000;

/// The share of the server's `max_allowed_packet` one statement may use:
/// half, so that an estimate off by the packet's framing, or a server
/// whose limit was lowered a little since it was read, still fits.
pub fn statement_budget(max_allowed_packet: u64) -> usize {
    usize::try_from(max_allowed_packet / 2)
        .unwrap_or(usize::MAX)
        .max(1024)
}

/// An upper bound of the bytes a bound value takes in a `COM_STMT_EXECUTE`
/// packet: its type (2), and its length-encoded or fixed-size value.
pub fn param_bytes(v: &Value) -> usize {
    2 + match v {
        Value::NULL => 0,
        Value::Bytes(b) => 9 + b.len(),
        Value::Int(_) | Value::UInt(_) | Value::Double(_) => 8,
        Value::Float(_) => 4,
        Value::Date(..) => 12,
        Value::Time(..) => 13,
    }
}

/// The rows of one statement while they are bound: at most `max_rows`
/// rows and `max_bytes` bytes, sized as each row is bound (no pass of its
/// own over the values). A row larger than `max_bytes` makes a statement
/// of its own (the server decides whether it fits).
#[derive(Debug)]
pub struct Run {
    rows: usize,
    bytes: usize,
    max_rows: usize,
    max_bytes: usize,
}

impl Run {
    pub fn new(max_rows: usize, max_bytes: usize) -> Run {
        Run {
            rows: 0,
            bytes: 0,
            max_rows: max_rows.max(1),
            max_bytes,
        }
    }

    /// Takes a row of `size` bytes if it fits (the first row always
    /// does); `false` when the statement is full.
    pub fn take(&mut self, size: usize) -> bool {
        if self.rows > 0
            && (self.rows >= self.max_rows || self.bytes.saturating_add(size) > self.max_bytes)
        {
            return false;
        }
        self.rows += 1;
        self.bytes = self.bytes.saturating_add(size);
        true
    }

    /// Rows taken.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// The version column on every target table.
pub const VERSION_COLUMN: &str = "_reshard_version";

/// `` `db`.`table` ``: a table of one shard's database.
pub fn qualified(db: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(db), quote_ident(table))
}

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
/// for `rows` rows of `columns` plus the version column, into `table` (a
/// [`qualified`] name).
pub fn upsert(table: &str, columns: &[String], key: &[usize], rows: usize) -> String {
    upsert_rows(table, columns, key, rows, &placeholders(columns.len() + 1))
}

/// [`upsert`] for rows that all carry `version` (the initial copy's
/// batches): the version is a literal in the statement instead of a
/// parameter of every row, so a row binds one value fewer. The text is the
/// same for every batch of one copy, so it is prepared once.
pub fn upsert_at(
    table: &str,
    columns: &[String],
    key: &[usize],
    rows: usize,
    version: &[u8; 16],
) -> String {
    let mut row = placeholders(columns.len());
    row.pop();
    row.push_str(", X'");
    for b in version {
        row.push_str(&format!("{b:02X}"));
    }
    row.push_str("')");
    upsert_rows(table, columns, key, rows, &row)
}

/// The upsert of `rows` rows, each written as `row`.
fn upsert_rows(table: &str, columns: &[String], key: &[usize], rows: usize, row: &str) -> String {
    let mut sql = upsert_head(table, columns);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql.push_str(&upsert_tail(columns, key));
    sql
}

/// `INSERT INTO table (columns…, version) VALUES ` (before the rows).
pub fn upsert_head(table: &str, columns: &[String]) -> String {
    let mut cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    cols.push(quote_ident(VERSION_COLUMN));
    format!("INSERT INTO {table} ({}) VALUES ", cols.join(", "))
}

/// ` ON DUPLICATE KEY UPDATE …` (after the rows): every column guarded by
/// the version, key columns also by `k <=> VALUES(k)`, the version last.
pub fn upsert_tail(columns: &[String], key: &[usize]) -> String {
    let v = quote_ident(VERSION_COLUMN);
    let mut sql = String::from(" ON DUPLICATE KEY UPDATE ");
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
        "DELETE FROM {table} WHERE {}",
        keys_with_version(key_columns, "<", rows)
    )
}

/// Counts how many of `rows` keys hold at least the given version: after an
/// upsert into a table with a secondary UNIQUE key, every row must have
/// landed on its own key (a collision updates another row instead).
pub fn landed(table: &str, key_columns: &[&str], rows: usize) -> String {
    format!(
        "SELECT COUNT(*) FROM {table} WHERE {}",
        keys_with_version(key_columns, ">=", rows)
    )
}

/// The column names of a target table (database, table).
pub const TARGET_COLUMNS: &str = "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?";

/// Whether a target table (database, table) has a UNIQUE key besides its
/// primary key.
pub const SECONDARY_UNIQUE: &str = "SELECT COUNT(*) FROM information_schema.STATISTICS \
     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 AND INDEX_NAME <> 'PRIMARY'";

/// The server's `max_allowed_packet` (session value).
pub const MAX_ALLOWED_PACKET: &str = "SELECT @@max_allowed_packet";

#[cfg(test)]
mod tests {
    use super::*;

    /// The row counts of the statements rows of `sizes` make.
    fn runs(
        sizes: impl IntoIterator<Item = usize>,
        max_rows: usize,
        max_bytes: usize,
    ) -> Vec<usize> {
        let mut out = Vec::new();
        let mut run = Run::new(max_rows, max_bytes);
        for size in sizes {
            if !run.take(size) {
                out.push(run.rows());
                run = Run::new(max_rows, max_bytes);
                assert!(run.take(size), "a first row always fits");
            }
        }
        if run.rows() > 0 {
            out.push(run.rows());
        }
        out
    }

    #[test]
    fn runs_respect_the_row_and_byte_budgets() {
        assert_eq!(runs([10; 7], 3, 1000), vec![3, 3, 1]);
        assert_eq!(runs([10, 10, 10, 10], 100, 25), vec![2, 2]);
        // a row over the budget goes alone; the next run starts after it
        assert_eq!(runs([10, 100, 10, 10], 100, 25), vec![1, 1, 2]);
        assert_eq!(runs([100, 100], 100, 25), vec![1, 1]);
        assert!(runs(Vec::<usize>::new(), 10, 10).is_empty());
        assert_eq!(statement_budget(16 << 20), 8 << 20);
        assert_eq!(param_bytes(&Value::Bytes(vec![0; 100])), 111);
    }

    #[test]
    fn upsert_at_puts_the_shared_version_in_every_row_as_a_literal() {
        let cols = vec!["id".to_string(), "n".to_string()];
        let mut v = [0u8; 16];
        v[15] = 0xAB;
        let sql = upsert_at("`d`.`t`", &cols, &[0], 2, &v);
        let row = "(?, ?, X'000000000000000000000000000000AB')";
        assert!(
            sql.contains(&format!("VALUES {row}, {row} ON DUPLICATE")),
            "{sql}"
        );
        assert_eq!(sql.matches('?').count(), 4, "{sql}");
        assert!(sql.ends_with(&upsert_tail(&cols, &[0])), "{sql}");
    }

    #[test]
    fn upsert_assigns_version_last_and_key_columns_only_on_their_own_row() {
        let cols = vec!["id".to_string(), "name".to_string(), "shard_no".to_string()];
        let sql = upsert("`orders`", &cols, &[0], 2);
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
        let sql = upsert(&qualified("d`b", "we`ird"), &["a`b".to_string()], &[0], 1);
        assert!(
            sql.starts_with("INSERT INTO `d``b`.`we``ird` (`a``b`, "),
            "{sql}"
        );
    }

    #[test]
    fn delete_guards_each_key_by_version() {
        assert_eq!(
            delete("`t`", &["a", "b"], 2),
            "DELETE FROM `t` WHERE (`a` = ? AND `b` = ? AND `_reshard_version` < ?) OR (`a` = ? AND `b` = ? AND `_reshard_version` < ?)"
        );
    }

    #[test]
    fn landed_counts_keys_at_their_version() {
        assert_eq!(
            landed("`t`", &["id"], 2),
            "SELECT COUNT(*) FROM `t` WHERE (`id` = ? AND `_reshard_version` >= ?) OR (`id` = ? AND `_reshard_version` >= ?)"
        );
    }
}
