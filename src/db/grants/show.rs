//! Reading `SHOW GRANTS`: the statements that recreate an account's
//! privileges, one a line, as the server prints them. Only what the
//! pre-flight check needs is kept: privileges on `*.*`, a database (a
//! `LIKE` pattern) or a table, the roles granted to an account, and
//! MySQL's partial revokes (`REVOKE … ON db.* FROM …`, with
//! `partial_revokes` on). Column, routine and proxy grants satisfy none of
//! reshard's needs and are skipped, as is anything after the grantee
//! (`IDENTIFIED BY PASSWORD …`, which is never kept or shown).

/// A lexical token of a `SHOW GRANTS` line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word (`SELECT`, `ON`, `PUBLIC`, an unquoted name).
    Word(String),
    /// A `` `quoted` `` identifier, unescaped.
    Quoted(String),
    /// A `'string'` or `"string"`, unescaped.
    Str(String),
    Punct(char),
}

fn lex(line: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '`' | '\'' | '"' => {
                let mut s = String::new();
                while let Some(d) = chars.next() {
                    if d == '\\' && c != '`' {
                        s.extend(chars.next());
                    } else if d == c && chars.peek() == Some(&c) {
                        chars.next();
                        s.push(c);
                    } else if d == c {
                        break;
                    } else {
                        s.push(d);
                    }
                }
                out.push(if c == '`' {
                    Token::Quoted(s)
                } else {
                    Token::Str(s)
                });
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                let mut s = String::from(c);
                while let Some(&d) = chars.peek() {
                    if !(d.is_alphanumeric() || d == '_' || d == '$') {
                        break;
                    }
                    s.push(d);
                    chars.next();
                }
                out.push(Token::Word(s));
            }
            c => out.push(Token::Punct(c)),
        }
    }
    out
}

/// Where a line grants (or revokes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum On {
    Global,
    /// A database name as a `LIKE` pattern (`shop\_%`).
    Db(String),
    /// A database and a table (names, no patterns).
    Table(String, String),
}

/// An account or role a line names: `'name'@'host'`, a role (no host), or
/// `PUBLIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grantee {
    pub name: String,
    pub host: Option<String>,
}

/// One line of `SHOW GRANTS` that matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `GRANT privileges ON … TO grantee`: privileges upper-cased, `ALL
    /// PRIVILEGES` as `ALL`; column-level ones left out.
    Grant {
        privileges: Vec<String>,
        on: On,
        grantee: Grantee,
    },
    /// `REVOKE privileges ON db.* FROM grantee` (MySQL partial revokes).
    Revoke { privileges: Vec<String>, on: On },
    /// `GRANT role[, role…] TO grantee`.
    Roles {
        roles: Vec<String>,
        grantee: Grantee,
    },
}

/// Parses one line; `None` for what the check does not use.
pub fn parse(line: &str) -> Option<Line> {
    let tokens = lex(line);
    let (first, rest) = tokens.split_first()?;
    let revoke = match first {
        Token::Word(w) if w.eq_ignore_ascii_case("GRANT") => false,
        Token::Word(w) if w.eq_ignore_ascii_case("REVOKE") => true,
        _ => return None,
    };
    let to = if revoke { "FROM" } else { "TO" };
    let Some(on_at) = find_word(rest, "ON") else {
        if revoke {
            return None;
        }
        let to_at = find_word(rest, to)?;
        let roles = split_commas(&rest[..to_at])
            .iter()
            .filter_map(|item| name(item.first()?))
            .collect();
        let grantee = grantee(&rest[to_at + 1..])?;
        return Some(Line::Roles { roles, grantee });
    };
    let privileges = privileges(&rest[..on_at]);
    let after = &rest[on_at + 1..];
    let to_at = find_word(after, to)?;
    let on = object(&after[..to_at])?;
    if revoke {
        return Some(Line::Revoke { privileges, on });
    }
    let grantee = grantee(&after[to_at + 1..])?;
    Some(Line::Grant {
        privileges,
        on,
        grantee,
    })
}

/// The first bare `word` outside parentheses.
fn find_word(tokens: &[Token], word: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => depth -= 1,
            Token::Word(w) if depth == 0 && w.eq_ignore_ascii_case(word) => return Some(i),
            _ => {}
        }
    }
    None
}

/// Comma-separated items outside parentheses.
fn split_commas(tokens: &[Token]) -> Vec<&[Token]> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => depth -= 1,
            Token::Punct(',') if depth == 0 => {
                out.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&tokens[start..]);
    out
}

/// `SELECT, INSERT, REPLICATION SLAVE`: each upper-cased; a privilege
/// with a column list is left out (it covers those columns only).
fn privileges(tokens: &[Token]) -> Vec<String> {
    split_commas(tokens)
        .into_iter()
        .filter(|item| !item.contains(&Token::Punct('(')))
        .filter_map(|item| {
            let words: Option<Vec<String>> = item
                .iter()
                .map(|t| match t {
                    Token::Word(w) => Some(w.to_ascii_uppercase()),
                    _ => None,
                })
                .collect();
            let p = words?.join(" ");
            match p.as_str() {
                "" => None,
                "ALL PRIVILEGES" => Some("ALL".to_string()),
                _ => Some(p),
            }
        })
        .collect()
}

fn name(t: &Token) -> Option<String> {
    match t {
        Token::Word(s) | Token::Quoted(s) | Token::Str(s) => Some(s.clone()),
        Token::Punct(_) => None,
    }
}

/// `*.*`, `db.*` or `db.table`; `None` for routines (`PROCEDURE db.p`),
/// proxy grants (`''@'%'`) and anything else.
fn object(tokens: &[Token]) -> Option<On> {
    let part = |t: &Token| match t {
        Token::Punct('*') => Some(None),
        Token::Word(w)
            if ["PROCEDURE", "FUNCTION", "PACKAGE"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k)) =>
        {
            None
        }
        Token::Word(s) | Token::Quoted(s) => Some(Some(s.clone())),
        _ => None,
    };
    match tokens {
        [db, Token::Punct('.'), table] => match (part(db)?, part(table)?) {
            (None, None) => Some(On::Global),
            (Some(db), None) => Some(On::Db(db)),
            (Some(db), Some(table)) => Some(On::Table(db, table)),
            (None, Some(_)) => None,
        },
        _ => None,
    }
}

/// `'name'@'host'`, a role, or `PUBLIC`, up to what follows it.
fn grantee(tokens: &[Token]) -> Option<Grantee> {
    let name = name(tokens.first()?)?;
    let host = match tokens.get(1..3) {
        Some([Token::Punct('@'), h]) => self::name(h),
        _ => None,
    };
    Some(Grantee { name, host })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, host: &str) -> Grantee {
        Grantee {
            name: name.into(),
            host: Some(host.into()),
        }
    }

    fn role(name: &str) -> Grantee {
        Grantee {
            name: name.into(),
            host: None,
        }
    }

    fn grant(privileges: &[&str], on: On, grantee: Grantee) -> Option<Line> {
        Some(Line::Grant {
            privileges: privileges.iter().map(|p| p.to_string()).collect(),
            on,
            grantee,
        })
    }

    /// Lines as MariaDB 10.11 prints them for an account with a default
    /// role that has a role of its own.
    #[test]
    fn mariadb_lines_with_roles() {
        let db = |d: &str| On::Db(d.into());
        assert_eq!(
            parse("GRANT `r` TO `u`@`%`"),
            Some(Line::Roles {
                roles: vec!["r".into()],
                grantee: user("u", "%")
            })
        );
        assert_eq!(
            parse("GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*D821809F681A40A6E379B50D0463EFAE20BDD122'"),
            grant(&["USAGE"], On::Global, user("u", "%"))
        );
        assert_eq!(
            parse("GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `r` WITH GRANT OPTION"),
            grant(
                &["REPLICATION SLAVE", "BINLOG MONITOR"],
                On::Global,
                role("r")
            )
        );
        assert_eq!(
            parse("GRANT ALL PRIVILEGES ON `shop\\_s%`.* TO `r2`"),
            grant(&["ALL"], db("shop\\_s%"), role("r2"))
        );
        assert_eq!(
            parse("GRANT INSERT ON `shop`.`orders` TO `r`"),
            grant(
                &["INSERT"],
                On::Table("shop".into(), "orders".into()),
                role("r")
            )
        );
        assert_eq!(
            parse("GRANT SELECT, CREATE TEMPORARY TABLES, LOCK TABLES ON `test`.* TO PUBLIC"),
            grant(
                &["SELECT", "CREATE TEMPORARY TABLES", "LOCK TABLES"],
                db("test"),
                role("PUBLIC")
            )
        );
        assert_eq!(
            parse("GRANT `r2`, `r``x` TO `r`"),
            Some(Line::Roles {
                roles: vec!["r2".into(), "r`x".into()],
                grantee: role("r")
            })
        );
    }

    /// Column, routine and proxy grants, and lines that grant nothing.
    #[test]
    fn what_satisfies_no_need_is_skipped() {
        assert_eq!(
            parse("GRANT SELECT (`a`), UPDATE (`id`, `a`), INSERT ON `shop`.`items` TO `u`@`%`"),
            grant(
                &["INSERT"],
                On::Table("shop".into(), "items".into()),
                user("u", "%")
            )
        );
        assert_eq!(
            parse("GRANT EXECUTE ON PROCEDURE `mysql`.`addgeometrycolumn` TO `u`@`%`"),
            None
        );
        assert_eq!(parse("GRANT PROXY ON ``@`%` TO `u`@`%`"), None);
        assert_eq!(parse("SET DEFAULT ROLE `r` FOR `u`@`%`"), None);
        assert_eq!(parse("Grants for u@%"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("GRANT SELECT ON"), None);
    }

    /// MySQL 8's forms: quoted roles with hosts, dynamic privileges,
    /// partial revokes, unquoted names.
    #[test]
    fn mysql_lines() {
        assert_eq!(
            parse("GRANT `app_read`@`%`,`app_write`@`%` TO `u`@`%`"),
            Some(Line::Roles {
                roles: vec!["app_read".into(), "app_write".into()],
                grantee: user("u", "%")
            })
        );
        assert_eq!(
            parse("GRANT BACKUP_ADMIN,XA_RECOVER_ADMIN ON *.* TO `u`@`%`"),
            grant(
                &["BACKUP_ADMIN", "XA_RECOVER_ADMIN"],
                On::Global,
                user("u", "%")
            )
        );
        assert_eq!(
            parse("REVOKE INSERT, UPDATE ON `mysql`.* FROM `u`@`%`"),
            Some(Line::Revoke {
                privileges: vec!["INSERT".into(), "UPDATE".into()],
                on: On::Db("mysql".into())
            })
        );
        assert_eq!(
            parse("GRANT SELECT ON shop.orders TO 'u'@'10.0.0.%'"),
            grant(
                &["SELECT"],
                On::Table("shop".into(), "orders".into()),
                user("u", "10.0.0.%")
            )
        );
    }
}
