//! `reshard_figures`: the latest figures of the process applying each
//! checkpoint row (its metrics as JSON, [`crate::metrics::figures`]),
//! written by the monitor of `run` and `replay`, read by `status`. Only
//! ever informative: nothing decides anything by it.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::err;
use super::lease::Owner;
use crate::db::DbError;

/// A process's figures as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The checkpoint row (pipeline or subset key) they belong to.
    pub pipeline: String,
    pub host: String,
    pub pid: u32,
    /// JSON of [`crate::metrics::figures::Figures`].
    pub figures: String,
    /// Seconds since they were written (by the control server's clock).
    pub age_secs: u64,
}

/// Replaces the figures of `pipeline` with this process's.
pub async fn save(
    conn: &mut Conn,
    pipeline: &str,
    owner: &Owner,
    figures: &str,
) -> Result<(), DbError> {
    conn.exec_drop(
        "INSERT INTO reshard_figures (pipeline, host, pid, figures) VALUES (?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE host = VALUES(host), pid = VALUES(pid), figures = VALUES(figures), updated_at = CURRENT_TIMESTAMP(6)",
        (pipeline, &owner.host, owner.pid, figures),
    )
    .await
    .map_err(err("saving the process figures"))
}

/// The figures of the pipeline `base` and of its shard subsets.
pub async fn list(conn: &mut Conn, base: &str) -> Result<Vec<Stored>, DbError> {
    let like = format!(
        "{}/%",
        base.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let rows: Vec<(String, String, u32, String, i64)> = conn
        .exec(
            "SELECT pipeline, host, pid, figures, TIMESTAMPDIFF(SECOND, updated_at, CURRENT_TIMESTAMP(6)) \
             FROM reshard_figures WHERE pipeline = ? OR pipeline LIKE ? ORDER BY pipeline",
            (base, like),
        )
        .await
        .map_err(err("reading the process figures"))?;
    Ok(rows
        .into_iter()
        .map(|(pipeline, host, pid, figures, age)| Stored {
            pipeline,
            host,
            pid,
            figures,
            age_secs: age.max(0) as u64,
        })
        .collect())
}
