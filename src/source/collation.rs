//! The collations of the key columns of mapped tables, learned from the
//! source once at start-up (see "Keys and collations" in
//! `docs/architecture.md`).
//!
//! The writer must know when two spellings of a text key are the same row
//! on the target ([`crate::writer::keyenc::canonical`]). The source server
//! knows: for each collation a key column uses, reshard asks it for the
//! weight of every character (`WEIGHT_STRING()` of each code point, or of
//! each byte of a single-byte character set) and builds a
//! [`Collation`] table from the answers.
//!
//! # What is accepted, and why that is exact
//!
//! Per-character weights reproduce the server's comparison only when the
//! weight string of a text is the concatenation of its characters' weight
//! strings. That holds for:
//!
//! * `*_bin` collations of UTF-8 and single-byte character sets: code point
//!   order, i.e. bytes (no table);
//! * every other collation of a single-byte character set whose weights
//!   concatenate for **every** pair of bytes, which is checked on the
//!   server (all 65,536 pairs): this refuses `latin2_czech_cs` and
//!   `cp1250_czech_cs` (contractions, several levels);
//! * the UTF-8 (`utf8mb3`, `utf8mb4`) collations without tailoring:
//!   `general_ci`, `general_mysql500_ci`, `unicode_ci` (UCA 4.0.0) and
//!   `unicode_520_ci` (UCA 5.2.0), with their `nopad` variants, whose
//!   implementations have no contractions; a probe of about 200,000 pairs (Latin,
//!   Greek and Cyrillic letters with combining marks, Thai, Lao, Tibetan,
//!   Hangul) guards that on each server.
//!
//! Everything else is refused at start-up with the table, the column and
//! the collation: language collations (`utf8mb4_czech_ci`, `_spanish2_ci`…
//! have contractions: 'ch' weighs as one letter), UCA 9.0/14.0 collations
//! (`utf8mb4_0900_ai_ci`, `uca1400_ai_ci`: their root has contractions,
//! e.g. 'И' + U+0306 = 'Й'), and other multi-byte character sets. A guess
//! would put two spellings of one key on two lanes with two tombstones.
//!
//! PAD SPACE is asked of the server too (`'a' = 'a '`), not derived from
//! the name.
//!
//! # Archived files
//!
//! `replay --binlog-dir` learns the tables the source has as above. A
//! table the source does not have takes each text key column's collation
//! from its TABLE_MAP (the collation id) and the weights kept for that id
//! under the build that wrote the files (`FromBinlog`): the weights a
//! live run against that build learned, so the canonical keys are the live
//! run's. Without them the column is refused by name, never compared
//! byte-wise.
//!
//! Learning a full Unicode collation takes the source about half a second;
//! `run` and `replay` keep what they learned in the control database
//! ([`crate::control::collations`], per source build) and reuse it on the
//! next start.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::rows::IdentityError;
use super::schema::{
    load_catalog, CatalogColumn, Column, SchemaError, TableSchema, BINARY_CHARSET,
};
use crate::db::DbError;
use crate::writer::collation::{Collation, WeightTable, Weights};
use crate::writer::keyenc::KeyPart;

/// A key column reshard cannot compare exactly, or cannot learn.
#[derive(Debug, thiserror::Error)]
pub enum CollationError {
    #[error("key column {column} of {table} uses collation {collation}, which reshard cannot compare exactly: {why}. reshard refuses the table rather than treat two spellings of one key as two keys (see \"Keys, collations and what reshard refuses\" in the README)")]
    Unsupported {
        table: String,
        column: String,
        collation: String,
        why: String,
    },
    #[error("key column {column} of {table} now has collation id {now}, but reshard learned {learned} at start-up (the column changed by DDL): restart reshard so that it learns the new collation")]
    Changed {
        table: String,
        column: String,
        learned: String,
        now: u16,
    },
    #[error("key column {column} of {table} was not a key column when reshard started (the table changed by DDL): restart reshard so that it learns its collation")]
    NotLearned { table: String, column: String },
    #[error("key column {column} of {table} has collation {collation} in the binlog's TABLE_MAP, but {why}: reshard refuses rather than compare the key byte-wise, which would make two spellings of one key two keys. Create the table (with the same key) on the source so that reshard learns the collation there, or replay with a control database that keeps its weights (every `run` or `replay` against the server build that wrote the files, {builds}, keeps them)")]
    Unknown {
        table: String,
        column: String,
        collation: String,
        why: String,
        builds: String,
    },
    #[error("{0}")]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What was learned about one key column.
#[derive(Debug, Clone)]
struct Learned {
    part: KeyPart,
}

/// The key columns of the mapped tables and how each takes part in the
/// canonical key.
#[derive(Debug, Clone, Default)]
pub struct KeyCollations {
    /// Refuse a key column that was not learned at start-up (`run`,
    /// `replay`). Without (the default: dry-run, verify and tests, which
    /// write nothing), such a column compares byte-wise.
    strict: bool,
    /// (db, table, column), lower case.
    columns: HashMap<(String, String, String), Learned>,
    /// Tables whose key collations come from their TABLE_MAPs (archived
    /// files whose tables the source does not have).
    binlog: FromBinlog,
}

/// Key collations read from the TABLE_MAP (`replay --binlog-dir`): the
/// column's collation id, resolved to the weights that the control
/// database keeps for the server build that wrote the files.
#[derive(Debug, Clone, Default)]
struct FromBinlog {
    /// (db, table), lower case → why its key was not learned from the
    /// source (for messages).
    tables: HashMap<(String, String), String>,
    /// The weights of the build that wrote the files, by collation id.
    by_id: HashMap<u16, Arc<Collation>>,
    /// That build's `@@version`s (from the files' format descriptions).
    builds: String,
}

impl FromBinlog {
    /// How column `col` of `table` (not learned from the source) takes
    /// part in the key: bytes for a non-text or binary column; the weights
    /// kept for its TABLE_MAP collation id; else an error naming the
    /// table, column and collation, never a byte-wise comparison.
    fn part(&self, table: &str, col: &Column, why: &str) -> Result<KeyPart, CollationError> {
        if !col.ty.is_character_type() || col.charset == BINARY_CHARSET {
            return Ok(KeyPart::Exact);
        }
        if let Some(c) = self.by_id.get(&col.charset) {
            return Ok(KeyPart::Collated(c.clone()));
        }
        let (collation, why) = match col.charset {
            0 => (
                "unknown".to_string(),
                format!("the TABLE_MAP carries no collation for it (binlog_row_metadata=NO_LOG) and {why}"),
            ),
            id => {
                let name = collation_name(id);
                if name.contains("_0900_") {
                    return Err(CollationError::Unsupported {
                        table: table.to_string(),
                        column: col.name.clone(),
                        collation: name,
                        why: CONTRACTIONS.into(),
                    });
                }
                (
                    name,
                    format!("{why}, and the control database keeps no weights for it"),
                )
            }
        };
        Err(CollationError::Unknown {
            table: table.to_string(),
            column: col.name.clone(),
            collation,
            why,
            builds: self.builds.clone(),
        })
    }
}

/// The name MySQL gives collation `id` (with the id), or the id alone.
/// Ids below 256 name the same collations on MariaDB.
fn collation_name(id: u16) -> String {
    use mysql_common::collations::{Collation as Known, CollationId};
    match CollationId::from(id) {
        CollationId::UNKNOWN_COLLATION_ID => format!("id {id}"),
        known => format!("{} (id {id})", Known::from(known).collation()),
    }
}

/// Why language and UCA 9.0/14.0 collations are refused.
const CONTRACTIONS: &str = "a language or UCA 9.0/14.0 collation has contractions (several characters that weigh as one, like 'ch' in Czech); use a key column with a collation reshard supports (`_bin`, `_general_ci`, `_unicode_ci`, `_unicode_520_ci`)";

fn lower(db: &str, table: &str, column: &str) -> (String, String, String) {
    (
        db.to_lowercase(),
        table.to_lowercase(),
        column.to_lowercase(),
    )
}

/// Text types whose key values compare under a collation.
fn is_text(data_type: &str) -> bool {
    matches!(
        data_type,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext"
    )
}

impl KeyCollations {
    /// Key columns `(db, table, column)` with their parts given rather
    /// than learned from a server, refusing any other key column as
    /// [`CollationLoader::finish`] does (the simulation in `tests/sim`
    /// routes with it).
    pub fn given<'a>(
        columns: impl IntoIterator<Item = ((&'a str, &'a str, &'a str), KeyPart)>,
    ) -> KeyCollations {
        KeyCollations {
            strict: true,
            columns: columns
                .into_iter()
                .map(|((db, table, column), part)| (lower(db, table, column), Learned { part }))
                .collect(),
            binlog: FromBinlog::default(),
        }
    }

    /// How column `i` of `schema` takes part in the canonical key. A
    /// TABLE_MAP that gives the column another collation than the one
    /// learned is an error (the column changed by DDL since start-up).
    pub fn part(&self, schema: &TableSchema, i: usize) -> Result<KeyPart, CollationError> {
        let Some(col) = schema.columns.get(i) else {
            return Ok(KeyPart::Exact);
        };
        let found = self
            .columns
            .get(&lower(&schema.db, &schema.table, &col.name));
        let Some(learned) = found else {
            let table = (schema.db.to_lowercase(), schema.table.to_lowercase());
            if let Some(why) = self.binlog.tables.get(&table) {
                return self.binlog.part(&schema.full_name(), col, why);
            }
            if self.strict {
                return Err(CollationError::NotLearned {
                    table: schema.full_name(),
                    column: col.name.clone(),
                });
            }
            return Ok(KeyPart::Exact);
        };
        // the binlog's collation id, when it has one, must be the learned one
        if col.ty.is_character_type() && col.charset != 0 && col.charset != BINARY_CHARSET {
            let (name, id) = match &learned.part {
                KeyPart::Collated(c) => (c.name.clone(), c.id),
                KeyPart::Exact => ("binary".to_string(), BINARY_CHARSET),
            };
            if id != 0 && id != col.charset {
                return Err(CollationError::Changed {
                    table: schema.full_name(),
                    column: col.name.clone(),
                    learned: name,
                    now: col.charset,
                });
            }
        }
        Ok(learned.part.clone())
    }
}

/// Learns the key collations of tables one by one, sharing each
/// collation's table.
#[derive(Default)]
pub struct CollationLoader {
    cache: HashMap<String, Arc<Collation>>,
    /// Names of the collations learned from the server (not given).
    fresh: Vec<String>,
    learned: KeyCollations,
}

impl CollationLoader {
    /// A loader that takes the collations of `known` as learned (kept
    /// from an earlier start, see [`crate::control::collations`]).
    pub fn with_known(known: HashMap<String, Arc<Collation>>) -> CollationLoader {
        CollationLoader {
            cache: known,
            ..CollationLoader::default()
        }
    }

    /// The collations this loader learned from the server.
    pub fn learned_now(&self) -> Vec<Arc<Collation>> {
        self.fresh
            .iter()
            .filter_map(|n| self.cache.get(n).cloned())
            .collect()
    }

    /// Learns the key columns of `db.table` (`key`: a rule's `key`, else
    /// the primary key).
    pub async fn learn_table(
        &mut self,
        conn: &mut Conn,
        db: &str,
        table: &str,
        key: Option<&[String]>,
    ) -> Result<(), CollationError> {
        let (cols, pk) = load_catalog(conn, "source", db, table).await?;
        let names = key.map(<[String]>::to_vec).unwrap_or(pk);
        let full = format!("{db}.{table}");
        if names.is_empty() {
            return Err(IdentityError::None { table: full }.into());
        }
        for name in &names {
            let col = cols
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(name))
                .ok_or_else(|| IdentityError::UnknownColumn {
                    table: full.clone(),
                    column: name.clone(),
                })?;
            let part = self.part_of(conn, &full, col).await?;
            self.learned
                .columns
                .insert(lower(db, table, &col.name), Learned { part });
        }
        Ok(())
    }

    /// Like [`CollationLoader::learn_table`], but false when the source
    /// has no such table.
    pub async fn learn_table_if_present(
        &mut self,
        conn: &mut Conn,
        db: &str,
        table: &str,
        key: Option<&[String]>,
    ) -> Result<bool, CollationError> {
        match self.learn_table(conn, db, table, key).await {
            Err(CollationError::Schema(SchemaError::Missing { .. })) => Ok(false),
            r => r.map(|()| true),
        }
    }

    /// Every collation known: kept from earlier starts or learned now.
    pub fn known(&self) -> impl Iterator<Item = &Arc<Collation>> {
        self.cache.values()
    }

    /// The collations learned, refusing key columns learned later.
    pub fn finish(self) -> KeyCollations {
        KeyCollations {
            strict: true,
            ..self.learned
        }
    }

    /// Like [`CollationLoader::finish`], for archived files: the key
    /// columns of `tables` (`(db, table, why not learned from the
    /// source)`) take the collation their TABLE_MAP names, resolved in
    /// `by_id`, the weights kept for the build(s) `builds` that wrote the
    /// files (see "Keys and collations" in `docs/architecture.md`).
    pub fn finish_with_binlog(
        self,
        tables: Vec<(String, String, String)>,
        by_id: HashMap<u16, Arc<Collation>>,
        builds: String,
    ) -> KeyCollations {
        let tables = tables
            .into_iter()
            .map(|(db, t, why)| ((db.to_lowercase(), t.to_lowercase()), why))
            .collect();
        KeyCollations {
            strict: true,
            binlog: FromBinlog {
                tables,
                by_id,
                builds,
            },
            ..self.learned
        }
    }

    async fn part_of(
        &mut self,
        conn: &mut Conn,
        table: &str,
        col: &CatalogColumn,
    ) -> Result<KeyPart, CollationError> {
        let Some(name) = col.collation.as_deref().filter(|_| is_text(&col.data_type)) else {
            return Ok(KeyPart::Exact);
        };
        if let Some(c) = self.cache.get(name) {
            return Ok(KeyPart::Collated(c.clone()));
        }
        let refuse = |why: String| CollationError::Unsupported {
            table: table.to_string(),
            column: col.name.clone(),
            collation: name.to_string(),
            why,
        };
        let started = std::time::Instant::now();
        let c = Arc::new(learn(conn, name).await?.map_err(refuse)?);
        tracing::info!(
            collation = name,
            pad_space = c.pad_space,
            ms = started.elapsed().as_millis() as u64,
            "learned the weights of a key collation"
        );
        self.cache.insert(name.to_string(), c.clone());
        self.fresh.push(name.to_string());
        Ok(KeyPart::Collated(c))
    }
}

/// What the server says about a collation.
struct Described {
    charset: String,
    id: u16,
    /// Bytes per character at most.
    maxlen: u32,
    pad_space: bool,
}

fn identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

async fn describe(conn: &mut Conn, name: &str) -> Result<Result<Described, String>, DbError> {
    let q = |e| DbError::query("source", format!("reading collation {name}"), e);
    let row: Option<(String, Option<u64>, u32)> = conn
        .exec_first(
            "SELECT c.CHARACTER_SET_NAME, c.ID, s.MAXLEN FROM information_schema.COLLATIONS c \
             JOIN information_schema.CHARACTER_SETS s ON s.CHARACTER_SET_NAME = c.CHARACTER_SET_NAME \
             WHERE c.COLLATION_NAME = ?",
            (name,),
        )
        .await
        .map_err(q)?;
    let Some((charset, id, maxlen)) = row else {
        return Ok(Err(
            "the server does not list it in information_schema.COLLATIONS".into(),
        ));
    };
    if !identifier(name) || !identifier(&charset) {
        return Ok(Err("its name is not a plain identifier".into()));
    }
    let pad: Option<i64> = conn
        .query_first(format!(
            "SELECT CONVERT(_utf8mb4'a' USING {charset}) COLLATE {name} = CONVERT(_utf8mb4'a ' USING {charset}) COLLATE {name}"
        ))
        .await
        .map_err(q)?;
    Ok(Ok(Described {
        charset,
        id: id.and_then(|i| u16::try_from(i).ok()).unwrap_or(0),
        maxlen,
        pad_space: pad == Some(1),
    }))
}

/// The UTF-8 collations without tailoring (suffixes after `charset_`).
const UTF8_TABLES: &[&str] = &[
    "general_ci",
    "general_nopad_ci",
    "general_mysql500_ci",
    "unicode_ci",
    "unicode_nopad_ci",
    "unicode_520_ci",
    "unicode_520_nopad_ci",
];

/// Learns collation `name`: `Ok(Err(why))` when reshard cannot compare
/// under it exactly (see the module docs).
async fn learn(conn: &mut Conn, name: &str) -> Result<Result<Collation, String>, DbError> {
    let d = match describe(conn, name).await? {
        Ok(d) => d,
        Err(why) => return Ok(Err(why)),
    };
    let utf8 = matches!(d.charset.as_str(), "utf8" | "utf8mb3" | "utf8mb4");
    let suffix = name
        .strip_prefix(d.charset.as_str())
        .and_then(|s| s.strip_prefix('_'))
        .unwrap_or("");
    let bin = name.ends_with("_bin") && (utf8 || d.maxlen == 1);
    let weights = if bin {
        Weights::Bytes
    } else if d.maxlen == 1 {
        match weights(conn, name, &d, 255).await? {
            Ok(t) => Weights::SingleByte(t),
            Err(why) => return Ok(Err(why)),
        }
    } else if utf8 && UTF8_TABLES.contains(&suffix) {
        let max = if d.charset == "utf8mb4" {
            0x10_FFFF
        } else {
            0xFFFF
        };
        match weights(conn, name, &d, max).await? {
            Ok(t) => Weights::Utf8(t),
            Err(why) => return Ok(Err(why)),
        }
    } else if utf8 {
        return Ok(Err(CONTRACTIONS.into()));
    } else {
        return Ok(Err(format!(
            "only UTF-8 and single-byte character sets are supported, {} is neither",
            d.charset
        )));
    };
    if !bin {
        let split = contractions(conn, name, &d).await?;
        if split > 0 {
            return Ok(Err(format!(
                "{split} pairs of characters weigh differently together than apart (contractions, or several weight levels)"
            )));
        }
    }
    Ok(Ok(Collation::new(name, d.id, d.pad_space, weights)))
}

/// `(SELECT 0 n UNION ALL … SELECT 15)`: one hex digit (portable: no
/// sequence engine, no recursive CTE).
fn digits() -> String {
    let list: Vec<String> = (0..16).map(|i| format!("SELECT {i} n")).collect();
    format!("({})", list.join(" UNION ALL "))
}

/// A derived table of rows `cp` from 0 to `max` (at most 0x10FFFF), made
/// of as few hex digits as `max` needs.
fn code_points(max: u32) -> String {
    let d = digits();
    let mut terms = Vec::new();
    let mut tables = Vec::new();
    let low_digits = match max {
        0..=0xF => 1,
        0x10..=0xFF => 2,
        0x100..=0xFFF => 3,
        _ => 4,
    };
    for i in 0..low_digits {
        terms.push(format!("d{i}.n * {}", 1u32 << (4 * i)));
        tables.push(format!("{d} d{i}"));
    }
    if max > 0xFFFF {
        let planes: Vec<String> = (0..=max >> 16).map(|p| format!("SELECT {p} n")).collect();
        terms.push("pl.n * 65536".into());
        tables.push(format!("({}) pl", planes.join(" UNION ALL ")));
    }
    let cp = terms.join(" + ");
    format!(
        "(SELECT {cp} AS cp FROM {} WHERE {cp} <= {max})",
        tables.join(", ")
    )
}

/// The character `cp` of the collation's character set, as SQL.
fn char_sql(cp: &str, d: &Described, name: &str) -> String {
    if d.maxlen == 1 {
        format!("CHAR({cp} USING {}) COLLATE {name}", d.charset)
    } else {
        format!(
            "CONVERT(CHAR({cp} USING utf32) USING {}) COLLATE {name}",
            d.charset
        )
    }
}

/// Characters per row of [`weights`]: 17,408 rows for all of Unicode.
const PER_ROW: u32 = 64;

/// The weight of every character from 0 to `max` (surrogates absent).
/// Each row holds [`PER_ROW`] characters as `len u16 | weight` (length
/// 0xFFFF: no weight), so that a million characters cost few rows; the
/// derived table's `LIMIT` keeps the server from merging it into the outer
/// query, which would compute every weight twice.
async fn weights(
    conn: &mut Conn,
    name: &str,
    d: &Described,
    max: u32,
) -> Result<Result<WeightTable, String>, DbError> {
    let (mut ws, mut entries) = (Vec::new(), Vec::new());
    for i in 0..PER_ROW {
        let cp = format!("b.cp * {PER_ROW} + {i}");
        ws.push(format!("WEIGHT_STRING({}) w{i}", char_sql(&cp, d, name)));
        entries.push(format!(
            "IFNULL(CONCAT(CHAR(LENGTH(w{i}) >> 8, LENGTH(w{i}) & 255), w{i}), CHAR(255, 255))"
        ));
    }
    let sql = format!(
        "SELECT cp, CONCAT({}) FROM (SELECT b.cp, {} FROM {} b LIMIT 18446744073709551615) t",
        entries.join(", "),
        ws.join(", "),
        code_points(max / PER_ROW)
    );
    let mut rows: Vec<(u32, Vec<u8>)> = conn
        .query(sql)
        .await
        .map_err(|e| DbError::query("source", format!("learning the weights of {name}"), e))?;
    rows.sort_unstable_by_key(|r| r.0);
    let mut all: Vec<Option<&[u8]>> = Vec::with_capacity(max as usize + 1);
    for (_, blob) in &rows {
        let mut rest = blob.as_slice();
        for _ in 0..PER_ROW {
            let Some((len, tail)) = rest.split_first_chunk::<2>() else {
                return Ok(Err("the server sent malformed weights".into()));
            };
            let len = usize::from(u16::from_be_bytes(*len));
            if len == 0xFFFF {
                all.push(None);
                rest = tail;
            } else if let Some((w, tail)) = tail.split_at_checked(len) {
                all.push(Some(w));
                rest = tail;
            } else {
                return Ok(Err("the server sent malformed weights".into()));
            }
        }
    }
    all.truncate(max as usize + 1);
    for surrogate in all.iter_mut().skip(0xD800).take(0x800) {
        *surrogate = None;
    }
    Ok(WeightTable::from_sequence(all).ok_or_else(|| "its weights are too large".to_string()))
}

/// How many pairs of characters weigh differently together than apart:
/// every pair of a single-byte character set; for UTF-8, letters up to
/// U+05FF with combining marks and the characters UCA contractions start
/// or end with in other scripts.
async fn contractions(conn: &mut Conn, name: &str, d: &Described) -> Result<u64, DbError> {
    let (firsts, seconds) = if d.maxlen == 1 {
        (code_points(255), code_points(255))
    } else {
        let mut extra: Vec<String> = [
            0x0E01u32, 0x0E40, 0x0EC0, 0x0E81, 0x0F71, 0x0F80, 0x0FB2, 0x0FB3, 0x1100, 0x1161,
            0x11A8, 0x3099, 0x00B7, 0x0068, 0x006C,
        ]
        .iter()
        .map(|c| format!("SELECT {c}"))
        .collect();
        extra.insert(
            0,
            format!(
                "SELECT cp FROM {} m WHERE cp >= 768 AND cp < 880",
                code_points(0x36F)
            ),
        );
        (
            format!(
                "(SELECT cp FROM {} f UNION ALL SELECT 3585 UNION ALL SELECT 3648 UNION ALL SELECT 3776 UNION ALL SELECT 3906 UNION ALL SELECT 4352)",
                code_points(0x5FF)
            ),
            format!("({})", extra.join(" UNION ALL ")),
        )
    };
    let (x, y) = (char_sql("p.cp", d, name), char_sql("q.cp", d, name));
    let sql = format!(
        "SELECT COUNT(*) FROM {firsts} p, {seconds} q \
         WHERE WEIGHT_STRING(CONCAT({x}, {y})) <> CONCAT(WEIGHT_STRING({x}), WEIGHT_STRING({y}))"
    );
    let n: Option<u64> = conn
        .query_first(sql)
        .await
        .map_err(|e| DbError::query("source", format!("checking collation {name}"), e))?;
    Ok(n.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use mysql_common::constants::ColumnType;

    use super::*;
    use crate::source::schema::SchemaOrigin;

    fn table(charset: u16, ty: ColumnType) -> TableSchema {
        let mut k = Column::new("k", ty);
        k.charset = charset;
        TableSchema {
            db: "Db".into(),
            table: "T".into(),
            columns: vec![k],
            pk: vec![0],
            origin: SchemaOrigin::BinlogMetadata,
        }
    }

    fn from_binlog(by_id: HashMap<u16, Arc<Collation>>) -> KeyCollations {
        CollationLoader::default().finish_with_binlog(
            vec![(
                "db".into(),
                "t".into(),
                "the source server is not reachable".into(),
            )],
            by_id,
            "10.11.6-MariaDB-log".into(),
        )
    }

    /// A key column of a table not on the source takes its TABLE_MAP
    /// collation's kept weights; binary and non-text columns are bytes;
    /// anything else is refused by table, column and collation, never
    /// compared byte-wise.
    #[test]
    fn keys_of_archived_tables_take_the_table_maps_collation_or_are_refused() {
        let general = Arc::new(Collation::new(
            "utf8mb4_general_ci",
            45,
            true,
            Weights::Bytes,
        ));
        let kc = from_binlog(HashMap::from([(45, general.clone())]));
        let varchar = ColumnType::MYSQL_TYPE_VARCHAR;
        match kc.part(&table(45, varchar), 0) {
            Ok(KeyPart::Collated(c)) => assert_eq!(c, general),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            kc.part(&table(BINARY_CHARSET, varchar), 0),
            Ok(KeyPart::Exact)
        ));
        assert!(matches!(
            kc.part(&table(0, ColumnType::MYSQL_TYPE_LONG), 0),
            Ok(KeyPart::Exact)
        ));
        let e = kc.part(&table(8, varchar), 0).unwrap_err().to_string();
        assert!(
            e.contains("column k of Db.T")
                && e.contains("latin1_swedish_ci (id 8)")
                && e.contains("not reachable")
                && e.contains("10.11.6-MariaDB-log"),
            "{e}"
        );
        let e = kc.part(&table(0, varchar), 0).unwrap_err().to_string();
        assert!(
            e.contains("binlog_row_metadata") && e.contains("unknown"),
            "{e}"
        );
        let e = kc.part(&table(255, varchar), 0).unwrap_err().to_string();
        assert!(
            e.contains("utf8mb4_0900_ai_ci") && e.contains("contractions"),
            "{e}"
        );
        // a table neither learned nor from the files: refused as before
        let mut other = table(45, varchar);
        other.table = "U".into();
        assert!(kc.part(&other, 0).is_err());
    }
}
