//! Target-side schema changes of the DDL policy's `follow` mode
//! ([`crate::source::ddl_policy`]): columns added on the source are added
//! to the target tables, once, before any row that carries them is routed.
//!
//! # Why this is safe to repeat
//!
//! Each target's columns are read first and only the missing ones are
//! added, so reading the same DDL again after a restart (the checkpoint was
//! still before it) changes nothing. The decoder calls this before it
//! hands out anything after the DDL, so every upsert that carries a new
//! column reaches a target that has it; upserts from before the DDL do not
//! name the column and leave it at its default (`docs/architecture.md`,
//! "Schema history").

use mysql_async::prelude::Queryable;

use crate::config::{db_name, Endpoint};
use crate::db::{self, quote_ident, DbError, Retry, Session};

/// A column to add: its target name and its definition (type, nullability,
/// default, character set), as `ALTER TABLE … ADD COLUMN` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewColumn {
    pub name: String,
    pub definition: String,
}

/// Why a target was not changed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The target refused the statement (no `ALTER` privilege, no such
    /// table…): the operator must run it.
    #[error("target {shard} refused `{statement}`: {message}")]
    Refused {
        shard: String,
        statement: String,
        message: String,
    },
    /// A connection failure (transient, retried from the checkpoint).
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The `ALTER TABLE` that adds `columns` to `db.table`.
pub fn add_statement(db: &str, table: &str, columns: &[&NewColumn]) -> String {
    let adds: Vec<String> = columns
        .iter()
        .map(|c| format!("ADD COLUMN {} {}", quote_ident(&c.name), c.definition))
        .collect();
    format!(
        "ALTER TABLE {}.{} {}",
        quote_ident(db),
        quote_ident(table),
        adds.join(", ")
    )
}

/// Adds the columns each shard's `table` lacks; returns the statements run.
pub async fn add_columns(
    shards: &[Endpoint],
    table: &str,
    columns: &[NewColumn],
    budget: std::time::Duration,
) -> Result<Vec<String>, FollowError> {
    let mut done = Vec::new();
    for ep in shards {
        let Some(dbname) = db_name(&ep.url) else {
            continue;
        };
        let mut conn = db::connect(ep, Session::Read, budget).await?;
        let have: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&dbname, table),
            )
            .await
            .map_err(|e| DbError::query(&ep.name, "reading the target table's columns", e))?;
        let missing: Vec<&NewColumn> = columns
            .iter()
            .filter(|c| !have.iter().any(|h| h.eq_ignore_ascii_case(&c.name)))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let statement = add_statement(&dbname, table, &missing);
        if let Err(e) = conn.query_drop(&statement).await {
            let e = DbError::query(&ep.name, "adding a column the source added", e);
            if e.retry() == Retry::Transient {
                return Err(e.into());
            }
            return Err(FollowError::Refused {
                shard: ep.name.clone(),
                statement,
                message: e.to_string(),
            });
        }
        tracing::info!(shard = %ep.name, statement = %statement, "on_ddl = follow: added the source's new column(s) to the target");
        done.push(statement);
        let _ = conn.disconnect().await;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_statement_adds_every_missing_column() {
        let a = NewColumn {
            name: "note`x".into(),
            definition: "varchar(20) CHARACTER SET utf8mb4 DEFAULT NULL".into(),
        };
        let b = NewColumn {
            name: "qty".into(),
            definition: "int(11) NOT NULL DEFAULT 0".into(),
        };
        assert_eq!(
            add_statement("shop_s1", "orders", &[&a, &b]),
            "ALTER TABLE `shop_s1`.`orders` ADD COLUMN `note``x` varchar(20) CHARACTER SET utf8mb4 DEFAULT NULL, ADD COLUMN `qty` int(11) NOT NULL DEFAULT 0"
        );
    }
}
