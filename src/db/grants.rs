//! The privileges each server's account needs, checked before anything
//! runs, so that a missing grant is named with the `GRANT` that fixes it
//! rather than found hours later as a failing statement.
//!
//! The account's own privileges are read from information_schema
//! (`USER_PRIVILEGES`, `SCHEMA_PRIVILEGES`, `TABLE_PRIVILEGES`, which show
//! a user its own grants): a privilege counts when granted globally, on the
//! database (also through a `LIKE` pattern such as `shop\_%`) or, where a
//! table is named, on the table. Privileges that come through a role do
//! not show there, so for an account with an active role a gap is only a
//! warning.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::{quote_ident, DbError};

/// Where a privilege is needed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Global,
    Db(String),
    Table(String, String),
}

impl Scope {
    /// As `GRANT … ON` names it.
    fn on(&self) -> String {
        match self {
            Scope::Global => "*.*".into(),
            Scope::Db(d) => format!("{}.*", quote_ident(d)),
            Scope::Table(d, t) => format!("{}.{}", quote_ident(d), quote_ident(t)),
        }
    }
}

/// A privilege an account needs: its name in `GRANT`, and the names that
/// also satisfy it (e.g. MariaDB's `BINLOG MONITOR` for `REPLICATION
/// CLIENT`).
#[derive(Debug, Clone)]
pub struct Need {
    pub privilege: &'static str,
    pub also: &'static [&'static str],
    pub scope: Scope,
    /// Where the fix grants it, when wider than `scope` (one `GRANT … ON
    /// db.*` rather than one per table).
    pub grant_on: Option<Scope>,
}

impl Need {
    pub fn new(privilege: &'static str, scope: Scope) -> Need {
        Need {
            privilege,
            also: &[],
            scope,
            grant_on: None,
        }
    }
}

/// What one server's account lacks, and the statement that grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub server: String,
    pub account: String,
    pub privileges: Vec<&'static str>,
    pub scope: Scope,
}

impl Missing {
    /// `GRANT … ON … TO …;`
    pub fn grant(&self) -> String {
        format!(
            "GRANT {} ON {} TO {};",
            self.privileges.join(", "),
            self.scope.on(),
            self.account
        )
    }
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the account {} lacks {} on {}; fix: {}",
            self.server,
            self.account,
            self.privileges.join(", "),
            self.scope.on(),
            self.grant()
        )
    }
}

/// The account's privileges as information_schema shows them.
struct Held {
    global: Vec<String>,
    /// (database pattern, privilege)
    schema: Vec<(String, String)>,
    /// (database, table, privilege)
    table: Vec<(String, String, String)>,
}

impl Held {
    fn has(&self, privilege: &str, scope: &Scope) -> bool {
        let p = |x: &String| x.eq_ignore_ascii_case(privilege);
        if self.global.iter().any(p) {
            return true;
        }
        let (db, table) = match scope {
            Scope::Global => return false,
            Scope::Db(d) => (d, None),
            Scope::Table(d, t) => (d, Some(t)),
        };
        self.schema.iter().any(|(pat, x)| p(x) && like(db, pat))
            || table.is_some_and(|t| {
                self.table
                    .iter()
                    .any(|(d, tt, x)| p(x) && d == db && tt.eq_ignore_ascii_case(t))
            })
    }
}

/// `value LIKE pattern` as the grant tables use it (`%`, `_`, `\` escapes).
fn like(value: &str, pattern: &str) -> bool {
    fn go(v: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('%', rest)) => (0..=v.len()).any(|i| go(&v[i..], rest)),
            Some(('_', rest)) => !v.is_empty() && go(&v[1..], rest),
            Some(('\\', rest)) if !rest.is_empty() => {
                v.first() == Some(&rest[0]) && go(&v[1..], &rest[1..])
            }
            Some((c, rest)) => v.first() == Some(c) && go(&v[1..], rest),
        }
    }
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&v, &p)
}

/// The account's name as `GRANT` takes it, and whether a role is active.
async fn account(conn: &mut Conn, server: &str) -> Result<(String, bool), DbError> {
    let user: Option<String> = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .map_err(|e| DbError::query(server, "SELECT CURRENT_USER()", e))?;
    let user = user.unwrap_or_default();
    let (name, host) = user.rsplit_once('@').unwrap_or((&user, "%"));
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    // NULL (MariaDB) or NONE (MySQL) without a role; an error where the
    // server has no roles
    let row: Option<mysql_async::Row> = conn
        .query_first("SELECT CURRENT_ROLE()")
        .await
        .ok()
        .flatten();
    let role = row
        .and_then(|r| r.get::<Option<String>, _>(0).flatten())
        .is_some_and(|r| !r.is_empty() && !r.eq_ignore_ascii_case("NONE"));
    Ok((format!("{}@{}", quote(name), quote(host)), role))
}

async fn held(conn: &mut Conn, server: &str, grantee: &str) -> Result<Held, DbError> {
    let q = |what: &str| format!("reading the account's privileges ({what})");
    let global: Vec<String> = conn
        .exec(
            "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?",
            (grantee,),
        )
        .await
        .map_err(|e| DbError::query(server, q("global"), e))?;
    let schema: Vec<(String, String)> = conn
        .exec(
            "SELECT TABLE_SCHEMA, PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?",
            (grantee,),
        )
        .await
        .map_err(|e| DbError::query(server, q("databases"), e))?;
    let table: Vec<(String, String, String)> = conn
        .exec(
            "SELECT TABLE_SCHEMA, TABLE_NAME, PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE = ?",
            (grantee,),
        )
        .await
        .map_err(|e| DbError::query(server, q("tables"), e))?;
    Ok(Held {
        global,
        schema,
        table,
    })
}

/// What the account of `conn` lacks of `needs`, grouped by scope. With an
/// active role (whose privileges information_schema does not show), gaps
/// are logged as warnings and not returned.
pub async fn missing(
    conn: &mut Conn,
    server: &str,
    needs: &[Need],
) -> Result<Vec<Missing>, DbError> {
    let (account, role) = account(conn, server).await?;
    let held = held(conn, server, &account).await?;
    let mut out: Vec<Missing> = Vec::new();
    for n in needs {
        if held.has(n.privilege, &n.scope) || n.also.iter().any(|a| held.has(a, &n.scope)) {
            continue;
        }
        let scope = n.grant_on.as_ref().unwrap_or(&n.scope);
        match out.iter_mut().find(|m| m.scope == *scope) {
            Some(m) if !m.privileges.contains(&n.privilege) => m.privileges.push(n.privilege),
            Some(_) => {}
            None => out.push(Missing {
                server: server.to_string(),
                account: account.clone(),
                privileges: vec![n.privilege],
                scope: scope.clone(),
            }),
        }
    }
    if role && !out.is_empty() {
        for m in &out {
            tracing::warn!(missing = %m, "the account has an active role, whose privileges reshard cannot see; going on");
        }
        return Ok(Vec::new());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_found_at_every_level() {
        let held = Held {
            global: vec!["REPLICATION SLAVE".into()],
            schema: vec![("shop\\_s%".into(), "DELETE".into())],
            table: vec![("shop".into(), "orders".into(), "SELECT".into())],
        };
        let t = |d: &str, t: &str| Scope::Table(d.into(), t.into());
        assert!(held.has("replication slave", &Scope::Global));
        assert!(held.has("DELETE", &t("shop_s1", "orders")));
        assert!(!held.has("DELETE", &t("shopxs1", "orders")));
        assert!(held.has("SELECT", &t("shop", "orders")));
        assert!(!held.has("SELECT", &t("shop", "items")));
        assert!(!held.has("SELECT", &Scope::Db("shop".into())));
    }

    #[test]
    fn the_fix_is_one_grant_per_scope() {
        let m = Missing {
            server: "target s0".into(),
            account: "'app'@'%'".into(),
            privileges: vec!["DELETE", "UPDATE"],
            scope: Scope::Db("shop_s0".into()),
        };
        assert_eq!(
            m.grant(),
            "GRANT DELETE, UPDATE ON `shop_s0`.* TO 'app'@'%';"
        );
        assert!(m
            .to_string()
            .starts_with("target s0: the account 'app'@'%' lacks DELETE, UPDATE"));
    }
}
