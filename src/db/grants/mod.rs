//! The privileges each server's account needs, checked before anything
//! runs, so that a missing grant is named with the `GRANT` that fixes it
//! rather than found hours later as a failing statement.
//!
//! # Why the check sees what the server enforces
//!
//! The account's privileges are read with `SHOW GRANTS` ([`show`]), which
//! every account may run for itself. For the current session it lists the
//! account's own grants, those of `PUBLIC` (MariaDB 10.11+) and, on
//! MariaDB, those of the active role and of every role that role holds; on
//! MySQL 8 the active roles' privileges are listed `USING` the roles
//! `CURRENT_ROLE()` names. reshard never runs `SET ROLE`, so the roles
//! active in its sessions are the account's default roles, which is what
//! `CURRENT_ROLE()` reports right after connecting. The lines read are
//! therefore the privileges reshard's own sessions have: a privilege
//! counts when a line grants it, or `ALL PRIVILEGES`, on `*.*` (unless a
//! MySQL partial revoke takes it back on that database), on the database
//! (its `LIKE` pattern, such as `shop\_%`) or, where a table is named, on
//! the table. A column grant covers only its columns and counts for
//! nothing here; so does a role granted to the account but not active, and
//! the error then says how to make it the default.

pub mod show;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::{quote_ident, DbError};
use show::{Grantee, Line, On};

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

    fn db(&self) -> Option<&str> {
        match self {
            Scope::Global => None,
            Scope::Db(d) | Scope::Table(d, _) => Some(d),
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
    /// Roles granted to the account that are not active in its sessions
    /// (one of them may hold what is missing).
    pub inactive_roles: Vec<String>,
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
        )?;
        if let Some(r) = self.inactive_roles.first() {
            let roles: Vec<String> = self.inactive_roles.iter().map(|r| quote_ident(r)).collect();
            write!(
                f,
                " (the role(s) {} granted to the account are not active in its sessions, and reshard does not SET ROLE; if one holds it, make it the default: SET DEFAULT ROLE {} FOR {};)",
                roles.join(", "),
                quote_ident(r),
                self.account
            )?;
        }
        Ok(())
    }
}

/// The privileges of a session, from its `SHOW GRANTS` lines.
#[derive(Debug, Default)]
struct Held {
    grants: Vec<(Vec<String>, On)>,
    /// MySQL partial revokes of global privileges on a database.
    revokes: Vec<(Vec<String>, On)>,
    /// Roles granted to the account itself.
    roles: Vec<String>,
    /// Grantees of the listed privileges (the account, its active roles).
    grantees: Vec<String>,
}

impl Held {
    /// From `SHOW GRANTS` lines of the account `user`@`host`.
    fn read(lines: &[String], (user, host): (&str, &str)) -> Held {
        let mut held = Held::default();
        for line in lines.iter().filter_map(|l| show::parse(l)) {
            match line {
                Line::Grant {
                    privileges,
                    on,
                    grantee,
                } => {
                    held.grantees.push(grantee.name);
                    held.grants.push((privileges, on));
                }
                Line::Revoke { privileges, on } => held.revokes.push((privileges, on)),
                Line::Roles { roles, grantee } if is(&grantee, user, host) => {
                    held.roles.extend(roles)
                }
                Line::Roles { .. } => {}
            }
        }
        held
    }

    fn has(&self, privilege: &str, scope: &Scope) -> bool {
        let names = |ps: &[String]| {
            ps.iter()
                .any(|p| p == "ALL" || p.eq_ignore_ascii_case(privilege))
        };
        let revoked = |db: Option<&str>| {
            db.is_some_and(|db| {
                self.revokes
                    .iter()
                    .any(|(ps, on)| names(ps) && *on == On::Db(db.to_string()))
            })
        };
        self.grants.iter().any(|(ps, on)| {
            names(ps)
                && match (on, scope) {
                    (On::Global, _) => !revoked(scope.db()),
                    (On::Db(pat), Scope::Db(db) | Scope::Table(db, _)) => like(db, pat),
                    (On::Table(d, t), Scope::Table(db, table)) => {
                        d == db && t.eq_ignore_ascii_case(table)
                    }
                    _ => false,
                }
        })
    }

    /// Roles granted to the account whose privileges are not listed (not
    /// active), besides those `CURRENT_ROLE()` names.
    fn inactive(&self, active: &[String]) -> Vec<String> {
        let mut out: Vec<String> = self
            .roles
            .iter()
            .filter(|r| !self.grantees.contains(r) && !active.contains(r))
            .cloned()
            .collect();
        out.dedup();
        out
    }
}

fn is(g: &Grantee, user: &str, host: &str) -> bool {
    g.name == user && g.host.as_deref() == Some(host)
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

/// The session's account (`user`, `host`) and active roles: MariaDB's
/// `CURRENT_ROLE()` is one name or NULL, MySQL's a list of
/// `` `role`@`host` `` or `NONE`.
async fn account(conn: &mut Conn, server: &str) -> Result<(String, String, String), DbError> {
    let user: Option<String> = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .map_err(|e| DbError::query(server, "SELECT CURRENT_USER()", e))?;
    let user = user.unwrap_or_default();
    let (name, host) = user.rsplit_once('@').unwrap_or((&user, "%"));
    // an error where the server has no roles
    let row: Option<mysql_async::Row> = conn
        .query_first("SELECT CURRENT_ROLE()")
        .await
        .ok()
        .flatten();
    let role = row
        .and_then(|r| r.get::<Option<String>, _>(0).flatten())
        .filter(|r| !r.is_empty() && !r.eq_ignore_ascii_case("NONE"))
        .unwrap_or_default();
    Ok((name.to_string(), host.to_string(), role))
}

/// The session's `SHOW GRANTS` lines; on MySQL with active roles, `USING`
/// them (their privileges are listed only then).
async fn grant_lines(conn: &mut Conn, server: &str, role: &str) -> Result<Vec<String>, DbError> {
    if role.contains('`') {
        let q = format!("SHOW GRANTS FOR CURRENT_USER() USING {role}");
        match conn.query::<String, _>(&q).await {
            Ok(lines) => return Ok(lines),
            Err(e) => {
                tracing::debug!(server, error = %e, "SHOW GRANTS … USING the active roles failed; reading the account's own grants")
            }
        }
    }
    conn.query("SHOW GRANTS")
        .await
        .map_err(|e| DbError::query(server, "reading the account's privileges (SHOW GRANTS)", e))
}

/// What the account of `conn` lacks of `needs`, grouped by scope.
pub async fn missing(
    conn: &mut Conn,
    server: &str,
    needs: &[Need],
) -> Result<Vec<Missing>, DbError> {
    let (user, host, role) = account(conn, server).await?;
    let lines = grant_lines(conn, server, &role).await?;
    let held = Held::read(&lines, (&user, &host));
    let active: Vec<String> = role
        .split(',')
        .map(|r| {
            let name = r.rsplit_once('@').map_or(r, |(n, _)| n);
            name.trim().trim_matches('`').replace("``", "`")
        })
        .collect();
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let account = format!("{}@{}", quote(&user), quote(&host));
    Ok(gaps(&held, needs, server, &account, held.inactive(&active)))
}

/// The needs `held` does not cover, one [`Missing`] per scope of the fix.
fn gaps(
    held: &Held,
    needs: &[Need],
    server: &str,
    account: &str,
    inactive_roles: Vec<String>,
) -> Vec<Missing> {
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
                account: account.to_string(),
                privileges: vec![n.privilege],
                scope: scope.clone(),
                inactive_roles: inactive_roles.clone(),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(lines: &[&str]) -> Held {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        Held::read(&lines, ("u", "%"))
    }

    fn t(d: &str, t: &str) -> Scope {
        Scope::Table(d.into(), t.into())
    }

    #[test]
    fn grants_are_found_at_every_level() {
        let h = held(&[
            "GRANT REPLICATION SLAVE ON *.* TO `u`@`%`",
            "GRANT DELETE ON `shop\\_s%`.* TO `u`@`%`",
            "GRANT SELECT ON `shop`.`orders` TO `u`@`%`",
            "GRANT SELECT (`id`) ON `shop`.`items` TO `u`@`%`",
        ]);
        assert!(h.has("replication slave", &Scope::Global));
        assert!(h.has("DELETE", &t("shop_s1", "orders")));
        assert!(h.has("DELETE", &Scope::Db("shop_s1".into())));
        assert!(!h.has("DELETE", &t("shopxs1", "orders")));
        assert!(!h.has("DELETE", &Scope::Global));
        assert!(h.has("SELECT", &t("shop", "orders")));
        assert!(h.has("SELECT", &t("shop", "ORDERS")));
        assert!(!h.has("SELECT", &t("shop", "items")), "a column grant");
        assert!(!h.has("SELECT", &Scope::Db("shop".into())));
    }

    #[test]
    fn all_privileges_cover_every_privilege_of_their_scope() {
        let h = held(&["GRANT ALL PRIVILEGES ON `shop_s0`.* TO `u`@`%` WITH GRANT OPTION"]);
        for p in ["SELECT", "INSERT", "ALTER", "DROP"] {
            assert!(h.has(p, &t("shop_s0", "orders")), "{p}");
            assert!(h.has(p, &Scope::Db("shop_s0".into())), "{p}");
        }
        assert!(!h.has("SELECT", &t("shop_s1", "orders")));
        assert!(!h.has("REPLICATION SLAVE", &Scope::Global));
        let root = held(&["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"]);
        assert!(root.has("REPLICATION SLAVE", &Scope::Global));
        assert!(root.has("DELETE", &t("any", "table")));
    }

    /// MariaDB lists the default role's privileges, and those of the roles
    /// it holds, after the account's own.
    #[test]
    fn privileges_of_active_roles_count_and_inactive_roles_are_named() {
        let h = held(&[
            "GRANT `r` TO `u`@`%`",
            "GRANT `r3` TO `u`@`%`",
            "GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*D821809F681A40A6E379B50D0463EFAE20BDD122'",
            "GRANT `r2` TO `r`",
            "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `r`",
            "GRANT SELECT ON `shop`.* TO `r`",
            "GRANT USAGE ON *.* TO `r2`",
            "GRANT DELETE ON `shop`.* TO `r2`",
            "SET DEFAULT ROLE `r` FOR `u`@`%`",
        ]);
        assert!(h.has("REPLICATION SLAVE", &Scope::Global));
        assert!(h.has("BINLOG MONITOR", &Scope::Global));
        assert!(h.has("SELECT", &t("shop", "orders")));
        assert!(h.has("DELETE", &t("shop", "orders")), "a role of the role");
        assert!(!h.has("INSERT", &t("shop", "orders")));
        assert_eq!(h.inactive(&["r".into()]), vec!["r3".to_string()]);
        let need = [Need::new("INSERT", Scope::Db("shop".into()))];
        let gaps = gaps(&h, &need, "source", "'u'@'%'", h.inactive(&["r".into()]));
        let text = gaps[0].to_string();
        assert!(
            text.contains("fix: GRANT INSERT ON `shop`.* TO 'u'@'%';")
                && text.contains("SET DEFAULT ROLE `r3` FOR 'u'@'%';"),
            "{text}"
        );
    }

    /// MySQL 8 with `partial_revokes`: a global privilege revoked on one
    /// database does not cover it.
    #[test]
    fn a_partial_revoke_takes_a_global_privilege_back() {
        let h = held(&[
            "GRANT SELECT, INSERT ON *.* TO `u`@`%`",
            "REVOKE INSERT ON `shop_s0`.* FROM `u`@`%`",
        ]);
        assert!(h.has("INSERT", &t("shop_s1", "orders")));
        assert!(!h.has("INSERT", &t("shop_s0", "orders")));
        assert!(h.has("SELECT", &t("shop_s0", "orders")));
    }

    #[test]
    fn the_fix_is_one_grant_per_scope() {
        let h = held(&["GRANT SELECT, INSERT ON `shop_s0`.* TO `u`@`%`"]);
        let needs: Vec<Need> = ["SELECT", "DELETE", "UPDATE"]
            .into_iter()
            .flat_map(|p| {
                ["orders", "_reshard_tombstone"].map(|table| Need {
                    grant_on: Some(Scope::Db("shop_s0".into())),
                    ..Need::new(p, t("shop_s0", table))
                })
            })
            .collect();
        let m = gaps(&h, &needs, "target s0", "'app'@'%'", Vec::new());
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(
            m[0].grant(),
            "GRANT DELETE, UPDATE ON `shop_s0`.* TO 'app'@'%';"
        );
        assert!(m[0]
            .to_string()
            .starts_with("target s0: the account 'app'@'%' lacks DELETE, UPDATE"));
    }
}
