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
//! Learning a full Unicode collation takes the source about half a second;
//! `run` and `replay` keep what they learned in the control database
//! ([`crate::control::collations`], per source build) and reuse it on the
//! next start.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::rows::IdentityError;
use super::schema::{load_catalog, CatalogColumn, SchemaError, TableSchema, BINARY_CHARSET};
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
}

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

    /// The collations learned, refusing key columns learned later.
    pub fn finish(self) -> KeyCollations {
        KeyCollations {
            strict: true,
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
        return Ok(Err("a language or UCA 9.0/14.0 collation has contractions (several characters that weigh as one, like 'ch' in Czech); use a key column with a collation reshard supports (`_bin`, `_general_ci`, `_unicode_ci`, `_unicode_520_ci`)".into()));
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
