//! Rule files (`shard-rules/*.toml`, one source table each; the README
//! describes them under "Rule files").
//!
//! A file is parsed with `deny_unknown_fields`, and every expression in it
//! is parsed right away, so a syntax error is reported with the file, the
//! line and column *in the file* and a caret under the problem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::expr::{self, Expr};
use crate::config::line_col;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    source: Spanned<String>,
    target: Option<String>,
    shard: Spanned<String>,
    shards: Vec<String>,
    #[serde(default)]
    derive: BTreeMap<String, Spanned<String>>,
    #[serde(rename = "where")]
    where_: Option<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    rename: BTreeMap<String, String>,
    key: Option<Vec<String>>,
    version: Option<Spanned<RawVersion>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersion {
    column: String,
}

/// An expression with where it came from, for messages.
#[derive(Debug, Clone)]
pub struct RuleExpr {
    /// `shard`, `derive.shard_no`, `where`.
    pub name: String,
    pub text: String,
    pub expr: Expr,
    /// Byte offset of the expression text in the file.
    pub offset: usize,
}

/// A parsed rule file.
#[derive(Debug, Clone)]
pub struct Rule {
    pub file: PathBuf,
    /// The file's text, for error excerpts.
    pub text: String,
    pub source_db: String,
    pub source_table: String,
    pub target: String,
    pub shard: RuleExpr,
    /// Shard index → target name.
    pub shards: Vec<String>,
    /// Derived target columns, in name order.
    pub derive: Vec<(String, RuleExpr)>,
    pub where_: Option<RuleExpr>,
    pub exclude: Vec<String>,
    /// source column → target column
    pub rename: BTreeMap<String, String>,
    pub key: Option<Vec<String>>,
    /// `version = { column = "…" }`: version by this column, then position.
    pub version_column: Option<String>,
}

impl Rule {
    /// `db.table`
    pub fn source_name(&self) -> String {
        format!("{}.{}", self.source_db, self.source_table)
    }

    /// `file:line:col: message` with a caret excerpt for an offset in the file.
    pub fn locate(&self, offset: usize, message: &str) -> String {
        locate(&self.file, &self.text, offset, message)
    }
}

/// A rule file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("cannot read rule file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(String),
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// `file:line:col: message`, then the line and a caret.
pub fn locate(file: &Path, text: &str, offset: usize, message: &str) -> String {
    let (line, col) = line_col(text, offset);
    let src_line = text.lines().nth(line - 1).unwrap_or("");
    format!(
        "{}:{}:{}: {}\n  {}\n  {}^",
        file.display(),
        line,
        col,
        message,
        src_line,
        " ".repeat(col.saturating_sub(1))
    )
}

/// Offset of the first character of a string value's content, given the
/// span of the TOML value (which includes its quotes).
fn content_offset(text: &str, span_start: usize) -> usize {
    let rest = &text.as_bytes()[span_start.min(text.len())..];
    if rest.starts_with(b"\"\"\"") || rest.starts_with(b"'''") {
        span_start + 3
    } else if rest.starts_with(b"\"") || rest.starts_with(b"'") {
        span_start + 1
    } else {
        span_start
    }
}

fn parse_expr(
    path: &Path,
    text: &str,
    name: &str,
    s: &Spanned<String>,
) -> Result<RuleExpr, RuleError> {
    let base = content_offset(text, s.span().start);
    let src = s.get_ref();
    expr::parse(src)
        .map(|expr| RuleExpr {
            name: name.to_string(),
            text: src.clone(),
            expr,
            offset: base,
        })
        .map_err(|e| {
            // offsets inside the expression map 1:1 onto the file for
            // strings without escapes, which is what rule files use
            RuleError::Syntax(locate(
                path,
                text,
                base + e.offset,
                &format!("in `{name}`: {}", e.message),
            ))
        })
}

/// Parses one rule file's text.
pub fn parse_rule(path: &Path, text: &str) -> Result<Rule, RuleError> {
    let raw: RawRule = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        RuleError::Syntax(locate(path, text, offset, e.message().trim()))
    })?;
    let invalid = |message: String| RuleError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let (db, table) = raw
        .source
        .get_ref()
        .split_once('.')
        .filter(|(d, t)| !d.is_empty() && !t.is_empty() && !t.contains('.'))
        .ok_or_else(|| {
            RuleError::Syntax(locate(
                path,
                text,
                content_offset(text, raw.source.span().start),
                &format!("source {:?} must be db.table", raw.source.get_ref()),
            ))
        })?;
    if raw.shards.is_empty() {
        return Err(invalid("`shards` must name at least one target".into()));
    }
    let shard = parse_expr(path, text, "shard", &raw.shard)?;
    let mut derive = Vec::new();
    for (col, e) in &raw.derive {
        derive.push((
            col.clone(),
            parse_expr(path, text, &format!("derive.{col}"), e)?,
        ));
    }
    let where_ = raw
        .where_
        .as_ref()
        .map(|w| parse_expr(path, text, "where", w))
        .transpose()?;
    if let Some(k) = &raw.key {
        if k.is_empty() {
            return Err(invalid("`key` must name at least one column".into()));
        }
    }
    Ok(Rule {
        file: path.to_path_buf(),
        text: text.to_string(),
        source_db: db.to_string(),
        source_table: table.to_string(),
        target: raw.target.unwrap_or_else(|| table.to_string()),
        shard,
        shards: raw.shards,
        derive,
        where_,
        exclude: raw.exclude,
        rename: raw.rename,
        key: raw.key,
        version_column: raw.version.map(|v| v.into_inner().column),
    })
}

/// Loads every `*.toml` in a directory, sorted by file name. Two files for
/// one source table are an error.
pub fn load_dir(dir: &Path) -> Result<Vec<Rule>, RuleError> {
    let entries = std::fs::read_dir(dir).map_err(|source| RuleError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut rules: Vec<Rule> = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|source| RuleError::Read {
            path: p.clone(),
            source,
        })?;
        let rule = parse_rule(&p, &text)?;
        if let Some(other) = rules.iter().find(|r| r.source_name() == rule.source_name()) {
            return Err(RuleError::Invalid {
                path: p.clone(),
                message: format!(
                    "source {} already has a rule in {}",
                    rule.source_name(),
                    other.file.display()
                ),
            });
        }
        rules.push(rule);
    }
    if rules.is_empty() {
        return Err(RuleError::Invalid {
            path: dir.to_path_buf(),
            message: "no rule files (*.toml) in the rules directory".into(),
        });
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = r#"source = "shop.orders"
target = "orders"
shard = "crc32(buyer_id) % 4"
shards = ["shard0", "shard1", "shard0", "shard1"]

[derive]
shard_no = "crc32(buyer_id) % 4"
"#;

    #[test]
    fn parses_the_design_example() {
        let r = parse_rule(Path::new("orders.toml"), RULE).unwrap();
        assert_eq!(r.source_name(), "shop.orders");
        assert_eq!(r.target, "orders");
        assert_eq!(r.shards.len(), 4);
        assert_eq!(r.derive[0].0, "shard_no");
    }

    #[test]
    fn expression_syntax_error_points_into_the_file() {
        let text = RULE.replace(
            "crc32(buyer_id) % 4\"\nshards",
            "crc32(buyer_id %% 4\"\nshards",
        );
        let e = parse_rule(Path::new("orders.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("orders.toml:3:"), "{e}");
        assert!(e.contains('^'), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = format!("{RULE}\n");
        let text = text.replace("target =", "targt =");
        let e = parse_rule(Path::new("orders.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("targt") && e.starts_with("orders.toml:2:1"),
            "{e}"
        );
    }

    #[test]
    fn source_must_be_db_dot_table() {
        let text = RULE.replace("shop.orders", "orders");
        let e = parse_rule(Path::new("o.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("db.table"), "{e}");
    }
}
