//! The pipeline lease: a named lock (`GET_LOCK('reshard:<pipeline>')`) on
//! the control connection, held as long as that connection lives, so two
//! `run`s (or a `run` and a `replay`) of one pipeline cannot interleave
//! their checkpoints.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::err;
use crate::db::DbError;

/// Takes the pipeline's lease; `false` when another connection holds it.
pub async fn acquire(conn: &mut Conn, pipeline: &str) -> Result<bool, DbError> {
    let got: Option<Option<i64>> = conn
        .exec_first("SELECT GET_LOCK(?, 0)", (format!("reshard:{pipeline}"),))
        .await
        .map_err(err("taking the pipeline lease"))?;
    Ok(got.flatten() == Some(1))
}
