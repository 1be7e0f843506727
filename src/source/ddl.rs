//! What a DDL statement from the binlog does to tables, for the schema
//! history ([`super::history`]): which tables it creates, alters, drops or
//! renames, and where their names are in the text, so that the statement
//! can be replayed on a scratch copy of the table under another name.
//!
//! This is not an SQL parser. It tokenizes (comments, strings, quoted
//! identifiers and MySQL's executable comments `/*!…*/` are handled) and
//! reads only the statement's head: `ALTER TABLE t`, `CREATE TABLE t`,
//! `CREATE INDEX … ON t`, `DROP TABLE a, b`, `RENAME TABLE a TO b`,
//! `DROP DATABASE d`, `TRUNCATE [TABLE] t`. What the statement does to the
//! columns is left to the server that replays it. `TRUNCATE` changes no
//! column but deletes every row without row events ([`Ddl::Truncate`], for
//! the DDL policy); other statements that change no table's columns
//! (`GRANT`, views, routines…) are [`Ddl::None`]; an `ALTER`,
//! `CREATE`, `DROP` or `RENAME` of a kind not listed is [`Ddl::Unknown`],
//! with every name it mentions, so that the caller can refuse to guess for
//! the tables it may touch.

use std::ops::Range;

/// A table named in a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub db: String,
    pub table: String,
    /// Bytes of the (possibly qualified) name in the statement.
    pub span: Range<usize>,
}

/// What a statement does to tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ddl {
    /// `ALTER TABLE t …`; `renamed_to` when it has a `RENAME [TO|AS]` clause.
    Alter {
        table: TableRef,
        renamed_to: Option<TableRef>,
    },
    /// `CREATE [OR REPLACE] TABLE t …`. `defines` when the statement alone
    /// defines the columns (not `LIKE` or `… SELECT`); `new` when it would
    /// fail if the table existed (neither `OR REPLACE` nor `IF NOT
    /// EXISTS`): logged, it says the table did not exist before it.
    Create {
        table: TableRef,
        if_not_exists: bool,
        defines: bool,
        new: bool,
    },
    /// `CREATE … INDEX … ON t` or `DROP INDEX … ON t`: may change the key.
    Index { table: TableRef },
    /// `DROP TABLE a, b`.
    Drop { tables: Vec<TableRef> },
    /// `RENAME TABLE a TO b, c TO d`, in order.
    Rename { pairs: Vec<(TableRef, TableRef)> },
    /// `DROP DATABASE d`.
    DropDatabase { db: String },
    /// `TRUNCATE [TABLE] t`: no column changes, but every row is deleted
    /// without row events.
    Truncate { table: TableRef },
    /// Changes no table's columns.
    None,
    /// A definition statement reshard does not interpret: every name it
    /// mentions (unqualified ones with the default database).
    Unknown { mentions: Vec<TableRef> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A word or a `quoted` identifier (its value).
    Word {
        quoted: bool,
    },
    Str,
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    text: String,
    span: Range<usize>,
}

impl Token {
    fn is(&self, keyword: &str) -> bool {
        self.kind == Kind::Word { quoted: false } && self.text.eq_ignore_ascii_case(keyword)
    }

    fn is_word(&self) -> bool {
        matches!(self.kind, Kind::Word { .. })
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Splits a statement into tokens, skipping comments and whitespace.
fn tokenize(q: &str) -> Vec<Token> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let rest = &b[i..];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if rest.starts_with(b"/*!") || rest.starts_with(b"/*M!") {
            // executable comment: its content is code
            i += if rest[2] == b'M' { 4 } else { 3 };
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        } else if rest.starts_with(b"*/") {
            i += 2;
        } else if rest.starts_with(b"/*") {
            i = find(b, i + 2, b"*/").map_or(b.len(), |e| e + 2);
        } else if c == b'#'
            || (rest.starts_with(b"--") && rest.get(2).is_none_or(|x| x.is_ascii_whitespace()))
        {
            i = find(b, i, b"\n").map_or(b.len(), |e| e + 1);
        } else if c == b'`' {
            let (text, end) = quoted(q, i, b'`', false);
            out.push(token(Kind::Word { quoted: true }, text, i..end));
            i = end;
        } else if c == b'\'' || c == b'"' {
            let (text, end) = quoted(q, i, c, true);
            out.push(token(Kind::Str, text, i..end));
            i = end;
        } else if is_word_byte(c) {
            let start = i;
            while i < b.len() && is_word_byte(b[i]) {
                i += 1;
            }
            let text = q.get(start..i).unwrap_or_default().to_string();
            out.push(token(Kind::Word { quoted: false }, text, start..i));
        } else {
            let ch = q[i..].chars().next().unwrap_or(' ');
            out.push(token(Kind::Punct(ch), ch.to_string(), i..i + ch.len_utf8()));
            i += ch.len_utf8();
        }
    }
    out
}

fn token(kind: Kind, text: String, span: Range<usize>) -> Token {
    Token { kind, text, span }
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// A quoted string or identifier starting at `start`: its value and the
/// byte after its closing quote. A doubled quote is one quote; in strings
/// a backslash escapes the next character.
fn quoted(q: &str, start: usize, quote: u8, backslash: bool) -> (String, usize) {
    let b = q.as_bytes();
    let mut value = Vec::new();
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            x if x == quote && b.get(i + 1) == Some(&quote) => {
                value.push(quote);
                i += 2;
            }
            x if x == quote => return (String::from_utf8_lossy(&value).into_owned(), i + 1),
            b'\\' if backslash && i + 1 < b.len() => {
                value.push(b[i + 1]);
                i += 2;
            }
            x => {
                value.push(x);
                i += 1;
            }
        }
    }
    (String::from_utf8_lossy(&value).into_owned(), b.len())
}

/// Reads tokens of one statement.
struct Reader<'a> {
    toks: &'a [Token],
    at: usize,
    default_db: &'a str,
}

impl Reader<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.at)
    }

    /// Consumes the keyword if it is next.
    fn eat(&mut self, keyword: &str) -> bool {
        if self.peek().is_some_and(|t| t.is(keyword)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// Consumes `words` if they all come next.
    fn eat_all(&mut self, words: &[&str]) -> bool {
        let ok = words
            .iter()
            .enumerate()
            .all(|(k, w)| self.toks.get(self.at + k).is_some_and(|t| t.is(w)));
        if ok {
            self.at += words.len();
        }
        ok
    }

    fn eat_punct(&mut self, c: char) -> bool {
        if self.peek().is_some_and(|t| t.kind == Kind::Punct(c)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// `name` or `db.name`.
    fn table(&mut self) -> Option<TableRef> {
        let first = self.peek().filter(|t| t.is_word())?.clone();
        self.at += 1;
        let dotted = self.peek().is_some_and(|t| t.kind == Kind::Punct('.'))
            && self.toks.get(self.at + 1).is_some_and(Token::is_word);
        if dotted {
            let second = self.toks[self.at + 1].clone();
            self.at += 2;
            return Some(TableRef {
                db: first.text,
                table: second.text,
                span: first.span.start..second.span.end,
            });
        }
        Some(TableRef {
            db: self.default_db.to_string(),
            table: first.text,
            span: first.span,
        })
    }

    /// Skips to the next top-level (outside parentheses) `keyword`.
    fn skip_to(&mut self, keyword: &str) -> bool {
        let mut depth = 0i32;
        while let Some(t) = self.peek() {
            match t.kind {
                Kind::Punct('(') => depth += 1,
                Kind::Punct(')') => depth -= 1,
                _ if depth == 0 && t.is(keyword) => {
                    self.at += 1;
                    return true;
                }
                _ => {}
            }
            self.at += 1;
        }
        false
    }

    /// Every name mentioned from here on.
    fn mentions(&mut self) -> Vec<TableRef> {
        let mut out = Vec::new();
        while self.peek().is_some() {
            match self.table() {
                Some(t) => out.push(t),
                None => self.at += 1,
            }
        }
        out
    }
}

/// Classifies one statement; `default_db` qualifies unqualified names.
pub fn classify(default_db: &str, query: &str) -> Ddl {
    let toks = tokenize(query);
    let mut r = Reader {
        toks: &toks,
        at: 0,
        default_db,
    };
    let Some(first) = r.peek().cloned() else {
        return Ddl::None;
    };
    r.at += 1;
    let head = first.text.to_ascii_uppercase();
    let ddl = match head.as_str() {
        "ALTER" => alter(&mut r),
        "CREATE" => create(&mut r),
        "DROP" => drop(&mut r),
        "RENAME" => rename(&mut r),
        "TRUNCATE" => {
            r.eat("TABLE");
            r.table().map(|table| Ddl::Truncate { table })
        }
        _ => return Ddl::None,
    };
    ddl.unwrap_or_else(|| {
        r.at = 1;
        Ddl::Unknown {
            mentions: r.mentions(),
        }
    })
}

/// Objects whose definition never changes a table's columns.
const OTHER_OBJECTS: &[&str] = &[
    "DATABASE",
    "SCHEMA",
    "VIEW",
    "TRIGGER",
    "FUNCTION",
    "PROCEDURE",
    "EVENT",
    "USER",
    "ROLE",
    "SERVER",
    "SEQUENCE",
    "TABLESPACE",
    "LOGFILE",
    "INSTANCE",
    "RESOURCE",
    "PACKAGE",
    "SYNONYM",
];

/// After `ALTER`/`CREATE`/`DROP`/`RENAME` and any `DEFINER = …`, `OR
/// REPLACE`, `ALGORITHM = …`: whether the object is one of
/// [`OTHER_OBJECTS`].
fn other_object(r: &mut Reader<'_>) -> bool {
    let t = match r.peek() {
        Some(t) => t.text.to_ascii_uppercase(),
        None => return false,
    };
    if matches!(
        t.as_str(),
        "DEFINER" | "ALGORITHM" | "SQL" | "AGGREGATE" | "UNDO" | "DEFAULT"
    ) {
        // DEFINER=… VIEW/TRIGGER/PROCEDURE…, ALGORITHM=… VIEW, SQL SECURITY
        return true;
    }
    OTHER_OBJECTS.contains(&t.as_str())
}

fn alter(r: &mut Reader<'_>) -> Option<Ddl> {
    r.eat("ONLINE");
    r.eat("IGNORE");
    if !r.eat("TABLE") {
        return other_object(r).then_some(Ddl::None);
    }
    r.eat_all(&["IF", "EXISTS"]);
    let table = r.table()?;
    let mut renamed_to = None;
    while r.skip_to("RENAME") {
        let word = r.peek().map(|t| t.text.to_ascii_uppercase());
        if matches!(
            word.as_deref(),
            Some("COLUMN" | "INDEX" | "KEY" | "CONSTRAINT")
        ) {
            continue;
        }
        if !r.eat("TO") {
            r.eat("AS");
        }
        renamed_to = r.table();
    }
    Some(Ddl::Alter { table, renamed_to })
}

fn create(r: &mut Reader<'_>) -> Option<Ddl> {
    let replace = r.eat_all(&["OR", "REPLACE"]);
    if r.eat("TEMPORARY") {
        // not in a ROW binlog, and never a mapped table
        return Some(Ddl::None);
    }
    if r.eat("TABLE") {
        let if_not_exists = r.eat_all(&["IF", "NOT", "EXISTS"]);
        let table = r.table()?;
        let rest = &r.toks[r.at..];
        let like =
            rest.first().is_some_and(|t| t.is("LIKE")) || rest.get(1).is_some_and(|t| t.is("LIKE"));
        let select = rest.iter().any(|t| t.is("SELECT"));
        let defines = rest.first().is_some_and(|t| t.kind == Kind::Punct('(')) && !like && !select;
        return Some(Ddl::Create {
            table,
            if_not_exists,
            defines,
            new: !replace && !if_not_exists,
        });
    }
    for modifier in ["UNIQUE", "FULLTEXT", "SPATIAL", "ONLINE", "OFFLINE"] {
        r.eat(modifier);
    }
    index_or_other(r)
}

/// `INDEX … ON t`, or another object than a table.
fn index_or_other(r: &mut Reader<'_>) -> Option<Ddl> {
    if r.eat("INDEX") {
        return r
            .skip_to("ON")
            .then(|| r.table())
            .flatten()
            .map(|table| Ddl::Index { table });
    }
    other_object(r).then_some(Ddl::None)
}

fn drop(r: &mut Reader<'_>) -> Option<Ddl> {
    if r.eat("TEMPORARY") {
        return Some(Ddl::None);
    }
    if r.eat("TABLE") || r.eat("TABLES") {
        r.eat_all(&["IF", "EXISTS"]);
        let mut tables = vec![r.table()?];
        while r.eat_punct(',') {
            tables.push(r.table()?);
        }
        return Some(Ddl::Drop { tables });
    }
    if r.eat("DATABASE") || r.eat("SCHEMA") {
        r.eat_all(&["IF", "EXISTS"]);
        let db = r.peek().filter(|t| t.is_word())?.text.clone();
        return Some(Ddl::DropDatabase { db });
    }
    r.eat("ONLINE");
    index_or_other(r)
}

fn rename(r: &mut Reader<'_>) -> Option<Ddl> {
    if !(r.eat("TABLE") || r.eat("TABLES")) {
        return (r.eat("USER") || r.eat("ROLE")).then_some(Ddl::None);
    }
    r.eat_all(&["IF", "EXISTS"]);
    let mut pairs = Vec::new();
    loop {
        let from = r.table()?;
        if !r.eat("TO") {
            return None;
        }
        pairs.push((from, r.table()?));
        if !r.eat_punct(',') {
            return Some(Ddl::Rename { pairs });
        }
    }
}

/// `query` with the bytes `span` replaced by the quoted name `name`.
pub fn with_name(query: &str, span: &Range<usize>, name: &str) -> String {
    let mut out = String::with_capacity(query.len() + name.len());
    out.push_str(query.get(..span.start).unwrap_or_default());
    out.push_str(&crate::db::quote_ident(name));
    out.push_str(query.get(span.end..).unwrap_or_default());
    out
}

/// A `use \`db\`; statement` text (how `SHOW BINLOG EVENTS` shows a
/// QUERY event): the default database and the statement.
pub fn split_use(info: &str) -> (String, &str) {
    let Some(rest) = info.strip_prefix("use ") else {
        return (String::new(), info);
    };
    if rest.starts_with('`') {
        let (db, end) = quoted(rest, 0, b'`', false);
        if let Some(stmt) = rest.get(end..).and_then(|s| s.strip_prefix("; ")) {
            return (db, stmt);
        }
    }
    (String::new(), info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(db: &str, table: &str, q: &str, name: &str) -> TableRef {
        let start = q.find(name).unwrap();
        TableRef {
            db: db.into(),
            table: table.into(),
            span: start..start + name.len(),
        }
    }

    #[test]
    fn alter_names_its_table_and_a_rename() {
        let q = "ALTER TABLE `shop`.`t` ADD COLUMN c INT AFTER b, ALGORITHM=INSTANT";
        assert_eq!(
            classify("x", q),
            Ddl::Alter {
                table: t("shop", "t", q, "`shop`.`t`"),
                renamed_to: None
            }
        );
        let q = "/* gh-ost */ alter online table t rename column a to b, RENAME TO t2";
        let Ddl::Alter { table, renamed_to } = classify("d", q) else {
            panic!()
        };
        assert_eq!((table.db.as_str(), table.table.as_str()), ("d", "t"));
        assert_eq!(renamed_to.map(|t| t.table), Some("t2".to_string()));
        let q = "ALTER TABLE t RENAME INDEX i TO j, COMMENT 'RENAME TO x'";
        assert!(matches!(
            classify("d", q),
            Ddl::Alter {
                renamed_to: None,
                ..
            }
        ));
    }

    #[test]
    fn create_tells_a_definition_from_like_and_select() {
        let q = "CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY) ENGINE=InnoDB";
        assert_eq!(
            classify("d", q),
            Ddl::Create {
                table: t("d", "t", q, " t ").shifted(1, 1),
                if_not_exists: true,
                defines: true,
                new: false
            }
        );
        assert!(matches!(
            classify("d", "CREATE TABLE t LIKE u"),
            Ddl::Create {
                defines: false,
                new: true,
                ..
            }
        ));
        assert!(matches!(
            classify("d", "CREATE OR REPLACE TABLE t (x INT)"),
            Ddl::Create {
                defines: true,
                new: false,
                ..
            }
        ));
        assert!(matches!(
            classify("d", "CREATE TABLE t (x INT) SELECT 1 AS y"),
            Ddl::Create { defines: false, .. }
        ));
        assert_eq!(classify("d", "CREATE TEMPORARY TABLE t (x INT)"), Ddl::None);
        assert!(matches!(
            classify("d", "CREATE UNIQUE INDEX i ON d2.t (x)"),
            Ddl::Index { table } if table.db == "d2" && table.table == "t"
        ));
    }

    #[test]
    fn drop_and_rename_list_their_tables() {
        let q = "DROP TABLE IF EXISTS `a`, b.c /* generated by server */";
        let Ddl::Drop { tables } = classify("d", q) else {
            panic!()
        };
        let names: Vec<(String, String)> = tables.into_iter().map(|t| (t.db, t.table)).collect();
        assert_eq!(names, [("d".into(), "a".into()), ("b".into(), "c".into())]);
        let Ddl::Rename { pairs } = classify("d", "RENAME TABLE t TO t_old, t_new TO t") else {
            panic!()
        };
        assert_eq!(pairs.len(), 2);
        assert_eq!(
            (pairs[1].0.table.as_str(), pairs[1].1.table.as_str()),
            ("t_new", "t")
        );
        assert_eq!(
            classify("d", "DROP DATABASE IF EXISTS shop"),
            Ddl::DropDatabase { db: "shop".into() }
        );
        assert!(matches!(
            classify("d", "DROP INDEX `PRIMARY` ON t"),
            Ddl::Index { .. }
        ));
    }

    #[test]
    fn statements_without_column_changes_are_none() {
        for q in [
            "GRANT SELECT ON d.t TO u",
            "CREATE DEFINER=`root`@`%` TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET @x = 1",
            "CREATE OR REPLACE VIEW v AS SELECT * FROM t",
            "DROP VIEW v",
            "ALTER DATABASE d CHARACTER SET utf8mb4",
            "ANALYZE TABLE t",
            "BEGIN",
            "",
        ] {
            assert_eq!(classify("d", q), Ddl::None, "{q}");
        }
        let Ddl::Unknown { mentions } = classify("d", "ALTER WHATEVER t x") else {
            panic!()
        };
        assert!(mentions.iter().any(|m| m.table == "t"));
    }

    #[test]
    fn truncate_names_its_table() {
        for q in ["TRUNCATE TABLE d2.t", "truncate `d2`.`t`"] {
            assert!(
                matches!(classify("d", q), Ddl::Truncate { table } if table.db == "d2" && table.table == "t"),
                "{q}"
            );
        }
    }

    #[test]
    fn executable_comments_are_code_and_strings_are_not() {
        let q = "/*!40000 ALTER TABLE `t` DISABLE KEYS */";
        assert!(matches!(classify("d", q), Ddl::Alter { .. }));
        let q = "ALTER TABLE t COMMENT 'it''s -- fine' , ADD x INT # trailing";
        assert!(matches!(
            classify("d", q),
            Ddl::Alter {
                renamed_to: None,
                ..
            }
        ));
    }

    #[test]
    fn a_name_is_replaced_in_place() {
        let q = "ALTER TABLE `shop`.`t` ADD c INT";
        let Ddl::Alter { table, .. } = classify("x", q) else {
            panic!()
        };
        assert_eq!(
            with_name(q, &table.span, "scr`1"),
            "ALTER TABLE `scr``1` ADD c INT"
        );
    }

    #[test]
    fn use_prefix_gives_the_default_database() {
        assert_eq!(
            split_use("use `my``db`; ALTER TABLE t ADD c INT"),
            ("my`db".to_string(), "ALTER TABLE t ADD c INT")
        );
        assert_eq!(split_use("BEGIN"), (String::new(), "BEGIN"));
    }

    impl TableRef {
        /// The span without `head` bytes in front and `tail` behind.
        fn shifted(&self, head: usize, tail: usize) -> TableRef {
            TableRef {
                span: self.span.start + head..self.span.end - tail,
                ..self.clone()
            }
        }
    }
}
