//! reshard's own tables, created by numbered SQL files embedded in the binary
//! (`migrations/control/*.sql`, `migrations/shard/*.sql`), so the installed
//! binary works from any directory.
//!
//! Each database records what it applied in a migrations table; applying
//! is idempotent (`CREATE TABLE IF NOT EXISTS`, and a migration already
//! recorded is skipped). `run` refuses to start when a database is behind.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::db::DbError;

/// One numbered migration.
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Which set of tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationSet {
    /// The control database: checkpoints, dead letters.
    Control,
    /// Every target database: tombstones, applied positions.
    Shard,
}

pub const CONTROL: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init",
        sql: include_str!("../../migrations/control/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_snapshot",
        sql: include_str!("../../migrations/control/0002_snapshot.sql"),
    },
    Migration {
        version: 3,
        name: "0003_schema_history",
        sql: include_str!("../../migrations/control/0003_schema_history.sql"),
    },
    Migration {
        version: 4,
        name: "0004_keys",
        sql: include_str!("../../migrations/control/0004_keys.sql"),
    },
    Migration {
        version: 5,
        name: "0005_lease",
        sql: include_str!("../../migrations/control/0005_lease.sql"),
    },
    Migration {
        version: 6,
        name: "0006_position_log_epoch",
        sql: include_str!("../../migrations/control/0006_position_log_epoch.sql"),
    },
    Migration {
        version: 7,
        name: "0007_scale_out_and_failover",
        sql: include_str!("../../migrations/control/0007_scale_out_and_failover.sql"),
    },
    Migration {
        version: 8,
        name: "0008_dead_letter_retry",
        sql: include_str!("../../migrations/control/0008_dead_letter_retry.sql"),
    },
    Migration {
        version: 9,
        name: "0009_snapshot_parts",
        sql: include_str!("../../migrations/control/0009_snapshot_parts.sql"),
    },
    Migration {
        version: 10,
        name: "0010_figures",
        sql: include_str!("../../migrations/control/0010_figures.sql"),
    },
];

pub const SHARD: &[Migration] = &[Migration {
    version: 1,
    name: "0001_init",
    sql: include_str!("../../migrations/shard/0001_init.sql"),
}];

impl MigrationSet {
    pub fn migrations(self) -> &'static [Migration] {
        match self {
            MigrationSet::Control => CONTROL,
            MigrationSet::Shard => SHARD,
        }
    }

    fn table(self) -> &'static str {
        match self {
            MigrationSet::Control => "reshard_migrations",
            MigrationSet::Shard => "_reshard_migrations",
        }
    }

    pub fn latest(self) -> u32 {
        self.migrations()
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0)
    }
}

/// Applies what is missing; returns the names applied now.
pub async fn apply(
    conn: &mut Conn,
    set: MigrationSet,
    server: &str,
) -> Result<Vec<&'static str>, DbError> {
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {} (version INT UNSIGNED NOT NULL PRIMARY KEY, name VARCHAR(128) NOT NULL, applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
        set.table()
    );
    conn.query_drop(&create)
        .await
        .map_err(|e| DbError::query(server, "creating the migrations table", e))?;
    let current = applied_version(conn, set, server).await?.unwrap_or(0);
    let mut done = Vec::new();
    for m in set.migrations().iter().filter(|m| m.version > current) {
        for stmt in split_statements(m.sql) {
            conn.query_drop(stmt)
                .await
                .map_err(|e| DbError::query(server, format!("migration {}", m.name), e))?;
        }
        conn.exec_drop(
            format!(
                "INSERT IGNORE INTO {} (version, name) VALUES (?, ?)",
                set.table()
            ),
            (m.version, m.name),
        )
        .await
        .map_err(|e| DbError::query(server, format!("recording migration {}", m.name), e))?;
        done.push(m.name);
    }
    Ok(done)
}

/// The highest applied migration, or `None` when the set was never applied.
pub async fn applied_version(
    conn: &mut Conn,
    set: MigrationSet,
    server: &str,
) -> Result<Option<u32>, DbError> {
    let exists: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
            (set.table(),),
        )
        .await
        .map_err(|e| DbError::query(server, "checking migrations", e))?;
    if exists.unwrap_or(0) == 0 {
        return Ok(None);
    }
    let v: Option<Option<u32>> = conn
        .query_first(format!("SELECT MAX(version) FROM {}", set.table()))
        .await
        .map_err(|e| DbError::query(server, "reading migrations", e))?;
    Ok(v.flatten())
}

/// Splits a migration file into statements at `;` line ends, dropping
/// comment-only chunks.
pub fn split_statements(sql: &str) -> Vec<&str> {
    sql.split(";\n")
        .map(str::trim)
        .map(|s| s.trim_end_matches(';'))
        .filter(|s| {
            s.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_split_into_statements() {
        assert_eq!(split_statements(CONTROL[0].sql).len(), 2);
        assert_eq!(split_statements(CONTROL[1].sql).len(), 4);
        assert_eq!(split_statements(CONTROL[2].sql).len(), 1);
        assert_eq!(split_statements(CONTROL[4].sql).len(), 1);
        assert_eq!(split_statements(CONTROL[5].sql).len(), 2);
        assert_eq!(split_statements(CONTROL[6].sql).len(), 5);
        assert_eq!(split_statements(CONTROL[7].sql).len(), 1);
        assert_eq!(split_statements(CONTROL[8].sql).len(), 1);
        assert_eq!(split_statements(CONTROL[9].sql).len(), 1);
        assert_eq!(split_statements(SHARD[0].sql).len(), 2);
        assert_eq!(split_statements("-- only a comment\n"), Vec::<&str>::new());
    }

    #[test]
    fn versions_are_increasing() {
        for set in [MigrationSet::Control, MigrationSet::Shard] {
            let v: Vec<u32> = set.migrations().iter().map(|m| m.version).collect();
            assert!(v.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(set.latest(), *v.last().unwrap());
        }
    }
}
