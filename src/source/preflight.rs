//! Pre-flight checks on the source, before any event is read (the
//! Materialize `ensure_*` pattern). Each failure names the setting, the
//! expected value and the actual one, so the operator knows what to change.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("source setting {setting}: expected {expected}, got {actual}. {hint}")]
    Setting {
        setting: &'static str,
        expected: &'static str,
        actual: String,
        hint: &'static str,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

async fn var(conn: &mut Conn, name: &str) -> Result<Option<String>, DbError> {
    let row: Option<(String, String)> = conn
        .exec_first("SHOW GLOBAL VARIABLES WHERE Variable_name = ?", (name,))
        .await
        .map_err(|e| DbError::query("source", format!("reading @@{name}"), e))?;
    Ok(row.map(|(_, v)| v))
}

fn expect(
    setting: &'static str,
    expected: &'static str,
    actual: Option<String>,
    hint: &'static str,
) -> Result<(), PreflightError> {
    let actual = actual.unwrap_or_else(|| "(not set)".into());
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(PreflightError::Setting {
            setting,
            expected,
            actual,
            hint,
        })
    }
}

/// The binary log is on.
pub async fn ensure_log_bin(conn: &mut Conn) -> Result<(), PreflightError> {
    expect(
        "log_bin",
        "ON",
        var(conn, "log_bin").await?,
        "Start the source with --log-bin.",
    )
}

/// Row-based logging.
pub async fn ensure_row_format(conn: &mut Conn) -> Result<(), PreflightError> {
    expect(
        "binlog_format",
        "ROW",
        var(conn, "binlog_format").await?,
        "Set binlog_format=ROW (statement events carry no rows to route).",
    )
}

/// Full before and after images.
pub async fn ensure_full_row_image(conn: &mut Conn) -> Result<(), PreflightError> {
    expect(
        "binlog_row_image",
        "FULL",
        var(conn, "binlog_row_image").await?,
        "Set binlog_row_image=FULL (versioned overwrites need whole rows).",
    )
}

/// Checksum algorithm: NONE or CRC32.
pub async fn ensure_checksum(conn: &mut Conn) -> Result<bool, PreflightError> {
    match var(conn, "binlog_checksum").await?.as_deref() {
        None | Some("NONE") => Ok(false),
        Some("CRC32") => Ok(true),
        Some(other) => Err(PreflightError::Setting {
            setting: "binlog_checksum",
            expected: "CRC32 or NONE",
            actual: other.to_string(),
            hint: "",
        }),
    }
}

/// Whether TABLE_MAP events will carry column names. Not an error when
/// missing: names then come from information_schema.
pub async fn row_metadata_full(conn: &mut Conn) -> Result<bool, PreflightError> {
    Ok(var(conn, "binlog_row_metadata")
        .await?
        .is_some_and(|v| v.eq_ignore_ascii_case("FULL")))
}

/// All of the above, in order. Returns (checksum on, metadata full).
pub async fn run_all(conn: &mut Conn) -> Result<(bool, bool), PreflightError> {
    ensure_log_bin(conn).await?;
    ensure_row_format(conn).await?;
    ensure_full_row_image(conn).await?;
    let checksum = ensure_checksum(conn).await?;
    let full = row_metadata_full(conn).await?;
    if !full {
        tracing::warn!("binlog_row_metadata is not FULL: column names and keys come from reshard's schema history (information_schema at the start, then every DDL followed in the stream); events of a table altered before reshard first recorded it cannot be decoded");
    }
    Ok((checksum, full))
}
