//! Rollbacks inside the binlog: `ROLLBACK TO SAVEPOINT` and a whole
//! transaction ending in `ROLLBACK`, and which of their rows persisted.
//!
//! # What the binlog holds
//!
//! A server only writes a transaction that ends in `ROLLBACK`, or the
//! rows before a `ROLLBACK TO` savepoint, when it cannot simply forget
//! them: when the transaction wrote a non-transactional table (MyISAM,
//! Aria, MEMORY), created a temporary table, and similar. With
//! `binlog_format=ROW`, MariaDB and MySQL 5.5.9+ log the non-transactional
//! rows in event groups of their own that end in `COMMIT` (they persisted
//! at once); the rolled-back group then holds the *transactional* rows the
//! source undid, followed by `ROLLBACK` or `ROLLBACK TO `name``. Older
//! servers (and statement-mixed logging) may keep non-transactional rows
//! in the same group.
//!
//! # What is applied
//!
//! * Rows between `SAVEPOINT name` and `ROLLBACK TO name` are removed from
//!   the open transaction ([`Savepoints`] remembers where the transaction's
//!   held rows ended at each savepoint, a [`super::spool::Mark`]);
//!   savepoints set after `name` go with them, as on the server. Rows are
//!   held until their group's outcome is read (see [`super::spool`]), so
//!   a rolled-back row is never handed out.
//! * A transaction ending in `ROLLBACK` is dropped.
//! * In both cases, rows of a table whose engine is not transactional
//!   ([`Engines`], from `information_schema`) did persist on the source:
//!   they are kept and applied, with a warning naming the table. A table
//!   whose engine cannot be told (offline reads, a dropped table) counts
//!   as transactional, which is what every supported server logs.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::db::DbError;

/// The savepoints of the open transaction: name (compared
/// case-insensitively, as the server does) and where the transaction's
/// rows ended when it was set (`M`, a [`super::spool::Mark`]).
#[derive(Debug)]
pub struct Savepoints<M> {
    set: Vec<(String, M)>,
}

impl<M> Default for Savepoints<M> {
    fn default() -> Self {
        Savepoints { set: Vec::new() }
    }
}

impl<M: Copy> Savepoints<M> {
    /// `SAVEPOINT name` with the transaction's rows ending at `at`; an
    /// older savepoint of the same name is replaced.
    pub fn set(&mut self, name: &str, at: M) {
        let name = name.to_lowercase();
        self.set.retain(|(n, _)| *n != name);
        self.set.push((name, at));
    }

    /// `ROLLBACK TO name`: where the rows to keep end, if `name` is set.
    /// Later savepoints are forgotten; `name` stays.
    pub fn rollback_to(&mut self, name: &str) -> Option<M> {
        let i = self.find(name)?;
        self.set.truncate(i + 1);
        Some(self.set[i].1)
    }

    /// `RELEASE SAVEPOINT name`: forgets it and every later one.
    pub fn release(&mut self, name: &str) {
        if let Some(i) = self.find(name) {
            self.set.truncate(i);
        }
    }

    pub fn clear(&mut self) {
        self.set.clear();
    }

    fn find(&self, name: &str) -> Option<usize> {
        let name = name.to_lowercase();
        self.set.iter().rposition(|(n, _)| *n == name)
    }
}

/// The savepoint a `SAVEPOINT`, `ROLLBACK [WORK] TO [SAVEPOINT]` or
/// `RELEASE SAVEPOINT` statement names (`` `quoted` `` or bare).
pub fn savepoint_name(query: &str) -> Option<String> {
    let mut rest = query.trim_start();
    for word in ["ROLLBACK", "WORK", "TO", "RELEASE", "SAVEPOINT"] {
        if rest
            .get(..word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
            && rest[word.len()..].starts_with(|c: char| c.is_whitespace() || c == '`')
        {
            rest = rest[word.len()..].trim_start();
        }
    }
    if let Some(quoted) = rest.strip_prefix('`') {
        let mut name = String::new();
        let mut chars = quoted.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '`' {
                if chars.peek() == Some(&'`') {
                    chars.next();
                } else {
                    return Some(name);
                }
            }
            name.push(c);
        }
        return None;
    }
    let name: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ';')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Whether mapped tables' engines are transactional, from
/// `information_schema` (cached until the next DDL).
#[derive(Debug, Default)]
pub struct Engines {
    known: HashMap<(String, String), bool>,
}

impl Engines {
    /// Forgets what it knows (a DDL may have changed an engine).
    pub fn invalidate(&mut self) {
        self.known.clear();
    }

    /// Records an engine's kind without asking a server (tests, offline
    /// reads that know better).
    pub fn assume(&mut self, db: &str, table: &str, transactional: bool) {
        self.known
            .insert((db.to_string(), table.to_string()), transactional);
    }

    /// Whether `db.table` is transactional: a rolled-back row of a
    /// table that is not persisted on the source. Without a connection, a
    /// table not known already counts as transactional.
    pub async fn transactional(
        &mut self,
        db: &str,
        table: &str,
        conn: Option<&mut Conn>,
    ) -> Result<bool, DbError> {
        let key = (db.to_string(), table.to_string());
        if let Some(t) = self.known.get(&key) {
            return Ok(*t);
        }
        let Some(c) = conn else {
            return Ok(true);
        };
        let t = transactional(c, db, table).await?;
        self.known.insert(key, t);
        Ok(t)
    }
}

/// Whether `db.table`'s engine supports transactions
/// (`information_schema.ENGINES.TRANSACTIONS`); a table the source no
/// longer has counts as transactional.
async fn transactional(conn: &mut Conn, db: &str, table: &str) -> Result<bool, DbError> {
    const Q: &str = "SELECT e.TRANSACTIONS FROM information_schema.TABLES t \
                     JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE \
                     WHERE t.TABLE_SCHEMA = ? AND t.TABLE_NAME = ?";
    let kind: Option<String> = conn
        .exec_first(Q, (db, table))
        .await
        .map_err(|e| DbError::query("source", format!("the engine of {db}.{table}"), e))?;
    Ok(!kind.is_some_and(|k| k.eq_ignore_ascii_case("NO")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn savepoint_names_parse_as_servers_write_them() {
        assert_eq!(savepoint_name("SAVEPOINT `s`").as_deref(), Some("s"));
        assert_eq!(savepoint_name("ROLLBACK TO `s`").as_deref(), Some("s"));
        assert_eq!(
            savepoint_name("ROLLBACK WORK TO SAVEPOINT `a``b`").as_deref(),
            Some("a`b")
        );
        assert_eq!(
            savepoint_name("RELEASE SAVEPOINT first").as_deref(),
            Some("first")
        );
        assert_eq!(savepoint_name("ROLLBACK TO `open"), None);
        assert_eq!(savepoint_name("SAVEPOINT "), None);
    }

    #[test]
    fn rollback_to_keeps_the_savepoint_and_forgets_later_ones() {
        let mut s = Savepoints::<usize>::default();
        s.set("a", 1);
        s.set("b", 3);
        s.set("c", 4);
        assert_eq!(s.rollback_to("B"), Some(3));
        assert_eq!(s.rollback_to("c"), None, "set after b: gone");
        assert_eq!(s.rollback_to("b"), Some(3), "b itself stays");
        s.set("a", 5);
        assert_eq!(s.rollback_to("a"), Some(5), "a second SAVEPOINT a moves it");
        assert_eq!(s.rollback_to("b"), Some(3));
        assert_eq!(s.rollback_to("a"), None, "the new a was set after b");
        s.release("b");
        assert_eq!(s.rollback_to("b"), None);
        s.set("x", 0);
        s.clear();
        assert_eq!(s.rollback_to("x"), None);
    }
}
