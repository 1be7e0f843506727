//! A lane's connection to its shard.
//!
//! A [`Link`] opens its connection when first needed and opens a new one
//! after a failure ([`Link::lost`]; what the lane does meanwhile is in
//! [`super::outage`]). While the lane has nothing to apply it pings the
//! server every third of the session's `wait_timeout`
//! ([`crate::db::keepalive_interval`]), so a quiet night does not end in a
//! connection the server closed; a ping that fails only drops the
//! connection (nothing was pending), and the next batch opens a new one.
//!
//! Beside it a link keeps a connection of reshard's own
//! ([`crate::db::wire`], unless `protocol = "driver"`) for the batches of
//! plain upserts (`docs/architecture.md`, "Batches without a
//! transaction"): opened on first use, dropped with the other on a
//! failure, pinged with it. When it cannot be opened (TLS, another
//! authentication, the server's connection limit) the link writes
//! through the driver alone for the rest of its life.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql_async::Conn;

use crate::config::Endpoint;
use crate::db::wire::WireConn;
use crate::db::{self, DbError, Session};

/// Whether a link said why it writes through the driver only (once a run).
static SAID_DRIVER: AtomicBool = AtomicBool::new(false);

/// A keep-alive ping that takes longer means the connection is dead.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// A lane's connection to its shard (see the module docs).
pub struct Link {
    ep: Endpoint,
    budget: Duration,
    conn: Option<Conn>,
    /// The connection of our own, and whether the link may have one.
    wire: Option<WireConn>,
    wire_on: bool,
    keepalive: Duration,
    used: Instant,
}

impl Link {
    /// A link that connects when first used, within `budget`; with
    /// `wire`, with a connection of our own too (see the module docs).
    pub fn new(ep: Endpoint, budget: Duration, wire: bool) -> Link {
        Link {
            ep,
            budget,
            conn: None,
            wire: None,
            wire_on: wire,
            keepalive: Duration::from_secs(300),
            used: Instant::now(),
        }
    }

    /// The shard's name.
    pub fn server(&self) -> &str {
        &self.ep.name
    }

    /// The connection, opened first when there is none (within the budget,
    /// or `quick` when given).
    pub async fn conn(&mut self, quick: Option<Duration>) -> Result<&mut Conn, DbError> {
        self.used = Instant::now();
        let conn = match self.conn.take() {
            Some(c) => c,
            None => {
                let budget = quick.map_or(self.budget, |q| q.min(self.budget));
                let mut c = db::connect(&self.ep, Session::Write, budget).await?;
                self.keepalive = db::keepalive_interval(&mut c).await;
                c
            }
        };
        Ok(self.conn.insert(conn))
    }

    /// The driver's connection ([`Link::conn`]) and the connection of our
    /// own, when the link has one or can open one now.
    pub async fn both(
        &mut self,
        quick: Option<Duration>,
    ) -> Result<(&mut Conn, Option<&mut WireConn>), DbError> {
        self.conn(quick).await?;
        if self.wire_on && self.wire.is_none() {
            let budget = quick.map_or(self.budget, |q| q.min(self.budget));
            match WireConn::connect(&self.ep, Session::Write, budget).await {
                Ok(w) => self.wire = Some(w),
                // the driver's connection is open: whatever keeps this one
                // from opening (TLS, another authentication, the server's
                // connection limit) only costs speed
                Err(e) => {
                    if !SAID_DRIVER.swap(true, Ordering::Relaxed) {
                        tracing::info!(shard = %self.ep.name, reason = %e, "the lanes write through the driver only");
                    }
                    self.wire_on = false;
                }
            }
        }
        match self.conn.as_mut() {
            Some(c) => Ok((c, self.wire.as_mut())),
            None => Err(DbError::Unexpected {
                server: self.ep.name.clone(),
                context: "connecting".into(),
                message: "no connection after connecting".into(),
            }),
        }
    }

    /// Forgets a connection that failed (the server rolls back whatever
    /// it had open), and the connection of our own with it.
    pub fn lost(&mut self) {
        self.conn = None;
        self.wire = None;
    }

    /// When the idle connection needs a ping (`None` without one).
    pub fn ping_due(&self) -> Option<tokio::time::Instant> {
        self.conn
            .as_ref()
            .map(|_| tokio::time::Instant::from_std(self.used + self.keepalive))
    }

    /// Pings the idle connection; a failed ping drops it (the next batch
    /// connects again).
    pub async fn keep_alive(&mut self) {
        self.used = Instant::now();
        let name = self.ep.name.clone();
        if let Some(c) = self.conn.as_mut() {
            if let Err(e) = db::ping(c, &name, PING_TIMEOUT).await {
                tracing::info!(shard = %name, error = %e, "idle writer connection lost; reconnecting at the next batch");
                self.conn = None;
            }
        }
        if let Some(w) = self.wire.as_mut() {
            let pinged = tokio::time::timeout(PING_TIMEOUT, w.ping()).await;
            if !matches!(pinged, Ok(Ok(()))) {
                self.wire = None;
            }
        }
    }

    pub async fn close(self) {
        if let Some(c) = self.conn {
            let _ = c.disconnect().await;
        }
        if let Some(w) = self.wire {
            w.close().await;
        }
    }
}
