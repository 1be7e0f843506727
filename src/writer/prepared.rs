//! A lane's upsert statements, kept prepared.
//!
//! Executing a statement given as text makes the driver scan the whole
//! text for named parameters and look it up in its statement cache on
//! every call; a copy batch's upsert is ~10 KB of text, and that was a
//! tenth of reshard's CPU in the copy (`BENCHMARKS.md`). So a lane keeps
//! the few upsert statements it last used as prepared handles and
//! executes those.
//!
//! # Why a kept handle is never the wrong statement
//!
//! * A handle belongs to the connection that prepared it: it is used only
//!   on a connection with the same id ([`ConnId`]); a lane that
//!   reconnected prepares again.
//! * The driver may close a statement when its own cache is full. A server
//!   numbers the statements of a connection upwards and never reuses a
//!   closed number, so executing the handle then fails with "unknown
//!   prepared statement handler" (1243) and changes nothing: the caller
//!   forgets the handle and runs the statement as text
//!   ([`is_unknown_handle`]).
//! * At most [`KEPT`] handles are kept: each holds the metadata of every
//!   parameter (~200 bytes each, ~400 KB for a 330-row upsert).

use std::collections::VecDeque;

use mysql_async::{Conn, Statement, Transaction};

/// Handles kept per lane.
const KEPT: usize = 4;

/// MySQL's "Unknown prepared statement handler".
const ER_UNKNOWN_STMT_HANDLER: u16 = 1243;

/// The connection a statement runs on, by id.
pub trait ConnId {
    fn conn_id(&self) -> u32;
}

impl ConnId for Conn {
    fn conn_id(&self) -> u32 {
        self.id()
    }
}

impl ConnId for Transaction<'_> {
    fn conn_id(&self) -> u32 {
        self.id()
    }
}

/// The last statements a lane prepared, newest last.
#[derive(Debug, Default)]
pub struct Prepared {
    kept: VecDeque<(String, Statement)>,
}

impl Prepared {
    /// The handle of `sql` prepared on connection `conn`, if kept.
    pub fn get(&self, sql: &str, conn: u32) -> Option<Statement> {
        self.kept
            .iter()
            .find(|(s, h)| h.connection_id() == conn && s == sql)
            .map(|(_, h)| h.clone())
    }

    /// Keeps `handle` for `sql`, dropping the oldest beyond [`KEPT`].
    pub fn keep(&mut self, sql: String, handle: Statement) {
        self.forget(&sql);
        if self.kept.len() >= KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back((sql, handle));
    }

    /// Drops the handle of `sql`.
    pub fn forget(&mut self, sql: &str) {
        self.kept.retain(|(s, _)| s != sql);
    }
}

/// Whether `e` says the handle was closed (see the module docs).
pub fn is_unknown_handle(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == ER_UNKNOWN_STMT_HANDLER)
}
