//! The lag checks of the throttle: one task per target server (shards on
//! the same host and port share it), which every `check_interval_ms`
//! asks the server for its replication lag and opens or closes the gate
//! its shards' lanes wait at.
//!
//! The lag is `lag_query`'s first column of its first row, in seconds, or
//! by default `Seconds_Behind_Master` (`Seconds_Behind_Source` on MySQL
//! 8.0.22+) of `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS`, the largest
//! over the server's replication channels, and 0 on a server that
//! replicates from none. A lag that cannot be known — the query fails
//! (e.g. a missing grant), returns no row or NULL, replication is stopped
//! (NULL) — closes the gate too: the throttle exists to protect the
//! server, and an unknown lag may be a large one. The log says why.

use std::collections::HashMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use tokio::sync::watch;

use crate::config::{Config, Endpoint};
use crate::db::{self, Session};
use crate::metrics;
use crate::task::Background;

/// A server's gate as the lanes see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// Before the first check: closed, like an unknown lag.
    Unchecked,
    Open,
    /// The lag is above the maximum.
    Lagging(f64),
    /// The lag could not be read; why.
    Unknown(String),
}

impl Gate {
    pub fn open(&self) -> bool {
        matches!(self, Gate::Open)
    }
}

/// Shard → (its server's `host:port`, the server's gate).
pub type Gates = HashMap<String, (String, watch::Receiver<Gate>)>;

/// One target server and what its check needs.
struct Server {
    /// `host:port`, the `server` label.
    key: String,
    /// A shard on it (its URL's credentials and database serve the check).
    endpoint: Endpoint,
    query: Option<String>,
    max: Duration,
    interval: Duration,
    budget: Duration,
}

/// Starts one check per target server this process applies; returns the
/// gate of every shard (with its server) and the tasks.
pub fn start(cfg: &Config, max: Duration) -> (Gates, Vec<Background>) {
    let mut by_server: HashMap<String, watch::Receiver<Gate>> = HashMap::new();
    let mut gates = HashMap::new();
    let mut tasks = Vec::new();
    for ep in cfg.applied_targets() {
        let key = server_key(&ep.url).unwrap_or_else(|| ep.name.clone());
        let rx = by_server.entry(key.clone()).or_insert_with(|| {
            // closed until the first check says otherwise
            let (tx, rx) = watch::channel(Gate::Unchecked);
            let server = Server {
                key: key.clone(),
                endpoint: ep.clone(),
                query: cfg.throttle.lag_query.clone(),
                max,
                interval: cfg.throttle.check_interval,
                budget: cfg.pipeline.connect_timeout,
            };
            tasks.push(Background::spawn(check_loop(server, tx)));
            rx
        });
        gates.insert(ep.name.clone(), (key, rx.clone()));
    }
    (gates, tasks)
}

/// `host:port` of a URL.
fn server_key(url: &str) -> Option<String> {
    let o = mysql_async::Opts::from_url(url).ok()?;
    Some(format!("{}:{}", o.ip_or_hostname(), o.tcp_port()))
}

async fn check_loop(server: Server, gate: watch::Sender<Gate>) {
    let m = metrics::global();
    let lag_gauge = m.target_lag_seconds.with_label_values(&[&server.key]);
    let throttled = m.throttled.with_label_values(&["lag", &server.key]);
    let mut conn: Option<Conn> = None;
    let mut ticker = tokio::time::interval(server.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let lag = measure(&server, &mut conn).await;
        lag_gauge.set(lag.as_ref().map_or(f64::NAN, |l| *l));
        let next = match lag {
            Ok(l) if l > server.max.as_secs_f64() => Gate::Lagging(l),
            Ok(_) => Gate::Open,
            Err(why) => Gate::Unknown(why),
        };
        let before = gate.borrow().clone();
        if before != next {
            log_change(&server, &before, &next);
            throttled.set(i64::from(!next.open()));
            let _ = gate.send_replace(next);
        }
    }
}

/// Logs a gate that opens or closes (a lag that changes while it stays
/// above the maximum is not logged again).
fn log_change(server: &Server, before: &Gate, next: &Gate) {
    let max = server.max.as_secs();
    match next {
        Gate::Open if *before == Gate::Unchecked => {
            tracing::debug!(server = %server.key, "replication lag within max_lag_secs")
        }
        Gate::Open => {
            tracing::info!(server = %server.key, "throttle lifted: the server's replication lag is within max_lag_secs")
        }
        Gate::Lagging(lag) if !matches!(before, Gate::Lagging(_)) => {
            tracing::warn!(server = %server.key, lag_s = lag, max_lag_secs = max, "throttled: the server's replication lag is above max_lag_secs; its shards' lanes wait")
        }
        Gate::Lagging(_) | Gate::Unchecked => {}
        Gate::Unknown(why) => {
            tracing::warn!(server = %server.key, reason = %why, "throttled: the server's replication lag is unknown; its shards' lanes wait until it can be read")
        }
    }
}

/// The server's lag in seconds, or why it is unknown. Opens the
/// connection when there is none; drops it after a failure.
async fn measure(server: &Server, conn: &mut Option<Conn>) -> Result<f64, String> {
    let c = match conn {
        Some(c) => c,
        None => {
            let c = db::connect(&server.endpoint, Session::Read, server.budget)
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            conn.insert(c)
        }
    };
    let limit = server.interval.max(Duration::from_secs(5));
    let read = tokio::time::timeout(limit, read_lag(c, server.query.as_deref())).await;
    let lag = match read {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
    };
    if lag.is_err() {
        *conn = None;
    }
    lag
}

async fn read_lag(c: &mut Conn, query: Option<&str>) -> Result<f64, String> {
    match query {
        Some(q) => {
            let row: Option<Row> = c
                .query_first(q)
                .await
                .map_err(|e| format!("lag_query failed: {e}"))?;
            let v = row
                .and_then(|r| r.as_ref(0).cloned())
                .ok_or("lag_query returned no row")?;
            seconds(&v).ok_or_else(|| format!("lag_query returned {v:?}, not a number of seconds"))
        }
        None => replica_lag(c).await,
    }
}

/// `Seconds_Behind_Master` (or `_Source`) over the server's channels.
async fn replica_lag(c: &mut Conn) -> Result<f64, String> {
    let rows: Vec<Row> = match c.query("SHOW SLAVE STATUS").await {
        Ok(rows) => rows,
        // MySQL 8.4 knows only the new name
        Err(_) => c
            .query("SHOW REPLICA STATUS")
            .await
            .map_err(|e| format!("SHOW REPLICA STATUS failed: {e}"))?,
    };
    let mut lag = 0.0f64;
    for row in &rows {
        let col = ["Seconds_Behind_Master", "Seconds_Behind_Source"]
            .iter()
            .find_map(|name| row.columns_ref().iter().position(|c| c.name_str() == *name))
            .ok_or("SHOW SLAVE STATUS has no Seconds_Behind_Master column")?;
        let v = row.as_ref(col).cloned().unwrap_or(Value::NULL);
        let s = seconds(&v).ok_or("Seconds_Behind_Master is NULL: replication is not running")?;
        lag = lag.max(s);
    }
    Ok(lag)
}

/// A number of seconds from a result value (integers, floats, decimals as
/// text); `None` for NULL and anything else.
fn seconds(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        Value::Float(f) => Some(f64::from(*f)),
        Value::Double(d) => Some(*d),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
    .filter(|s: &f64| s.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_come_from_numbers_and_text() {
        assert_eq!(seconds(&Value::Int(3)), Some(3.0));
        assert_eq!(seconds(&Value::Bytes(b"2.50".to_vec())), Some(2.5));
        assert_eq!(seconds(&Value::NULL), None);
        assert_eq!(seconds(&Value::Bytes(b"x".to_vec())), None);
    }

    #[test]
    fn servers_are_keyed_by_host_and_port() {
        assert_eq!(
            server_key("mysql://u:p@10.0.0.1:3307/db").as_deref(),
            Some("10.0.0.1:3307")
        );
    }
}
