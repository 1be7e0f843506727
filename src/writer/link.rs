//! A lane's connection to its shard.
//!
//! A [`Link`] opens its connection when first needed and opens a new one
//! after a failure ([`Link::lost`]; what the lane does meanwhile is in
//! [`super::outage`]). While the lane has nothing to apply it pings the
//! server every third of the session's `wait_timeout`
//! ([`crate::db::keepalive_interval`]), so a quiet night does not end in a
//! connection the server closed; a ping that fails only drops the
//! connection (nothing was pending), and the next batch opens a new one.

use std::time::{Duration, Instant};

use mysql_async::Conn;

use crate::config::Endpoint;
use crate::db::{self, DbError, Session};

/// A keep-alive ping that takes longer means the connection is dead.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// A lane's connection to its shard (see the module docs).
pub struct Link {
    ep: Endpoint,
    budget: Duration,
    conn: Option<Conn>,
    keepalive: Duration,
    used: Instant,
}

impl Link {
    /// A link that connects when first used, within `budget`.
    pub fn new(ep: Endpoint, budget: Duration) -> Link {
        Link {
            ep,
            budget,
            conn: None,
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

    /// Forgets a connection that failed (the server rolls back whatever
    /// it had open).
    pub fn lost(&mut self) {
        self.conn = None;
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
    }

    pub async fn close(self) {
        if let Some(c) = self.conn {
            let _ = c.disconnect().await;
        }
    }
}
