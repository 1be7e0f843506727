//! Learned collation weights (`reshard_collation`), kept so that a restart
//! does not ask the source for a million weights again (see
//! [`crate::source::collation`]).
//!
//! A row is keyed by the source's `@@version` and the collation's name:
//! the weights are a function of the server build and the collation alone,
//! so a row is valid for as long as that build serves the source. Another
//! build (an upgrade, a fail-over to another version) has another key and
//! is learned afresh. A row that does not decode is ignored and learned
//! again.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::err;
use crate::db::DbError;
use crate::writer::collation::Collation;

/// The collations kept for source build `server_version`, by name.
pub async fn load(
    conn: &mut Conn,
    server_version: &str,
) -> Result<HashMap<String, Arc<Collation>>, DbError> {
    let rows: Vec<(String, u16, bool, Vec<u8>)> = conn
        .exec(
            "SELECT collation_name, collation_id, pad_space, weights FROM reshard_collation WHERE server_version = ?",
            (server_version,),
        )
        .await
        .map_err(err("reading the learned collations"))?;
    Ok(decode(rows))
}

/// The collations kept for the build a binlog file's format description
/// names: its version, cut to the 49 characters the event holds, is the
/// build's `@@version` or, when that long, its beginning.
pub async fn load_for_binlog(
    conn: &mut Conn,
    fde_version: &str,
) -> Result<HashMap<String, Arc<Collation>>, DbError> {
    let n = fde_version.chars().count();
    let rows: Vec<(String, u16, bool, Vec<u8>)> = conn
        .exec(
            "SELECT collation_name, collation_id, pad_space, weights FROM reshard_collation WHERE server_version = ? OR (? >= 49 AND LEFT(server_version, ?) = ?)",
            (fde_version, n, n, fde_version),
        )
        .await
        .map_err(err("reading the learned collations"))?;
    Ok(decode(rows))
}

/// The rows that decode, by collation name.
fn decode(rows: Vec<(String, u16, bool, Vec<u8>)>) -> HashMap<String, Arc<Collation>> {
    rows.into_iter()
        .filter_map(|(name, id, pad, w)| {
            let c = Collation::from_weight_bytes(&name, id, pad, &w)?;
            Some((name, Arc::new(c)))
        })
        .collect()
}

/// Keeps a collation learned from source build `server_version` (a
/// collation whose weights cannot be written is not kept).
pub async fn store(conn: &mut Conn, server_version: &str, c: &Collation) -> Result<(), DbError> {
    let Some(weights) = c.weights_to_bytes() else {
        return Ok(());
    };
    conn.exec_drop(
        "REPLACE INTO reshard_collation (server_version, collation_name, collation_id, pad_space, weights) VALUES (?, ?, ?, ?, ?)",
        (server_version, &c.name, c.id, c.pad_space, weights),
    )
    .await
    .map_err(err(format!("keeping the weights of {}", c.name)))
}
