//! Why an attempt (or the initial copy) failed, and whether to retry.
//!
//! Each variant carries the typed error it came from; the retry decision
//! ([`PipelineError::retry`]) is the one its cause made
//! ([`crate::db::classify`] for database failures), never re-derived from
//! the message. Wrappers that add nothing are `transparent`; a variant
//! that adds context returns its cause from `source()` unless its message
//! must come after the cause (a route error is followed by what to do).

use tokio::task::JoinError;

use crate::db::{DbError, Retry};
use crate::position::Position;
use crate::rules::RouteError;
use crate::source::preflight::PreflightError;
use crate::source::schema::SchemaError;
use crate::source::SourceError;
use crate::writer::LaneError;

/// Where a row could not be routed, for the advice that follows the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Streaming: resumes from the checkpoint.
    Stream,
    /// The initial copy: resumes at its last finished chunk.
    Copy,
}

impl Stage {
    fn advice(self) -> &'static str {
        match self {
            Stage::Stream => "The pipeline stopped so that no row is dropped; fix the rule (or set [pipeline] on_derive_error = \"dead-letter\") and run again: it resumes from the checkpoint.",
            Stage::Copy => "The initial copy stopped so that no row is dropped; fix the rule (or set on_derive_error = \"dead-letter\") and run again: the copy resumes at its last finished chunk.",
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Lane(#[from] LaneError),
    /// A lane task ended without an error while it was still needed.
    #[error("a writer lane stopped unexpectedly")]
    LaneStopped,
    /// A lane task panicked or was cancelled.
    #[error("a writer lane crashed")]
    LaneCrashed(#[source] JoinError),
    /// The binlog reader task ended without sending its error.
    #[error("the binlog reader stopped")]
    ReaderStopped,
    /// `stop_at` was dispatched but not everything before it was applied
    /// (the drain timed out).
    #[error("stopped before {stop}: applied up to {applied}")]
    StoppedShort { stop: Position, applied: Position },
    /// A row that cannot be routed, with `on_derive_error = "halt"` (or a
    /// failure other than deriving the key).
    #[error("{error}\n{}", .stage.advice())]
    Route { error: RouteError, stage: Stage },
    /// The control connection no longer holds the pipeline lease, or did
    /// not answer the check in time (see [`crate::control::lease`]):
    /// the pause between attempts takes the lease again or stops.
    #[error("the control connection lost the pipeline lease: {0}")]
    LeaseLost(&'static str),
    /// A definite failure described by its message alone.
    #[error("{0}")]
    Definite(String),
}

impl PipelineError {
    /// Whether to run the attempt again from the checkpoint.
    pub fn retry(&self) -> Retry {
        match self {
            PipelineError::Db(e) => e.retry(),
            PipelineError::Source(e) => e.retry(),
            PipelineError::Lane(e) => e.retry(),
            PipelineError::LaneStopped
            | PipelineError::ReaderStopped
            | PipelineError::StoppedShort { .. }
            | PipelineError::LeaseLost(_) => Retry::Transient,
            PipelineError::LaneCrashed(_)
            | PipelineError::Route { .. }
            | PipelineError::Definite(_) => Retry::Definite,
        }
    }

    /// The database failure behind this one, if any.
    pub fn db_error(&self) -> Option<&DbError> {
        match self {
            PipelineError::Db(e) => Some(e),
            PipelineError::Lane(e) => Some(&e.source),
            PipelineError::Source(
                SourceError::Db(e)
                | SourceError::Schema(SchemaError::Db(e))
                | SourceError::Preflight(PreflightError::Db(e)),
            ) => Some(e),
            _ => None,
        }
    }

    /// Why a transient failure happened, in a few words for the log line
    /// of the retry.
    pub fn transient_cause(&self) -> &'static str {
        if let Some(t) = self.db_error().and_then(DbError::transient) {
            return t.describe();
        }
        match self {
            PipelineError::Source(SourceError::Transient(_)) => "binlog stream lost",
            PipelineError::LaneStopped => "a writer lane stopped",
            PipelineError::ReaderStopped => "the binlog reader stopped",
            PipelineError::StoppedShort { .. } => "the drain timed out",
            PipelineError::LeaseLost(_) => "pipeline lease lost",
            _ => "transient failure",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_errors_keep_their_decision_and_their_text() {
        let e = PipelineError::from(DbError::unexpected("s1", "reading", "nothing"));
        assert_eq!(e.retry(), Retry::Definite);
        assert_eq!(e.to_string(), "s1: reading: nothing");
        let e = PipelineError::from(SourceError::Transient("closed".into()));
        assert_eq!(e.retry(), Retry::Transient);
        assert_eq!(e.to_string(), "closed");
    }

    #[test]
    fn a_lane_error_chains_to_its_database_error() {
        let e = PipelineError::from(LaneError {
            shard: "s1".into(),
            lane: 2,
            source: DbError::unexpected("s1", "upserting into t", "collision"),
        });
        assert_eq!(e.retry(), Retry::Definite);
        let chain: Vec<String> =
            std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                .map(|e| e.to_string())
                .collect();
        assert_eq!(
            chain,
            [
                "writer lane 2 of shard s1",
                "s1: upserting into t: collision"
            ]
        );
    }

    #[test]
    fn the_cause_of_a_retry_comes_from_the_database_error() {
        let lost = mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed);
        let e = PipelineError::from(LaneError {
            shard: "s1".into(),
            lane: 0,
            source: DbError::query("s1", "COMMIT", lost),
        });
        assert_eq!(e.retry(), Retry::Transient);
        assert_eq!(e.transient_cause(), "connection lost");
        let idle = mysql_async::Error::Server(mysql_async::ServerError {
            code: 4031,
            message: "The client was disconnected by the server because of inactivity".into(),
            state: "HY000".into(),
        });
        let e = PipelineError::from(SourceError::Db(DbError::query("source", "SELECT", idle)));
        assert_eq!(e.retry(), Retry::Transient);
        assert_eq!(e.transient_cause(), "idle connection closed by the server");
        assert_eq!(
            PipelineError::LeaseLost("no answer").transient_cause(),
            "pipeline lease lost"
        );
    }

    #[test]
    fn stream_failures_without_a_cause_are_transient() {
        for e in [
            PipelineError::LaneStopped,
            PipelineError::ReaderStopped,
            PipelineError::StoppedShort {
                stop: Position::new("b.000001", 10),
                applied: Position::new("b.000001", 4),
            },
            PipelineError::LeaseLost("no answer"),
        ] {
            assert_eq!(e.retry(), Retry::Transient, "{e}");
        }
    }
}
