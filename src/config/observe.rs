//! `[metrics]` and `[throttle]`: how a running reshard is watched and how
//! it spares the targets. Both sections are optional; without them there
//! is no metrics endpoint and no throttle.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// `[metrics]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `IP:PORT` of the Prometheus endpoint (`GET /metrics`), e.g.
    /// `127.0.0.1:9187`. Default: none (no endpoint).
    #[serde(default)]
    pub listen: Option<String>,
}

/// `[throttle]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThrottle {
    /// Row operations applied per second over all shards of this process;
    /// 0 = no cap. Default 0.
    #[serde(default)]
    pub max_rows_per_sec: u64,
    /// Pause the lanes of a target server while its replication lag is
    /// above this many seconds; 0 = off. Default 0.
    #[serde(default)]
    pub max_lag_secs: u64,
    /// A query run on each target server that returns its lag in seconds
    /// (first column of the first row). Default: `Seconds_Behind_Master`
    /// of `SHOW SLAVE STATUS` (0 on a server that replicates from none).
    #[serde(default)]
    pub lag_query: Option<String>,
    /// How often the lag is checked, in ms. Default 1000.
    #[serde(default = "default_check_interval")]
    pub check_interval_ms: u64,
}

fn default_check_interval() -> u64 {
    1000
}

impl Default for RawThrottle {
    fn default() -> Self {
        RawThrottle {
            max_rows_per_sec: 0,
            max_lag_secs: 0,
            lag_query: None,
            check_interval_ms: default_check_interval(),
        }
    }
}

/// `[metrics]` after validation.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Where `GET /metrics` is served; `None`: no endpoint.
    pub listen: Option<SocketAddr>,
}

/// `[throttle]` after validation.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// 0 = no cap.
    pub max_rows_per_sec: u64,
    /// `None`: the lag is not checked.
    pub max_lag: Option<Duration>,
    /// `None`: `Seconds_Behind_Master`.
    pub lag_query: Option<String>,
    pub check_interval: Duration,
}

impl Throttle {
    /// Whether any throttle is configured.
    pub fn enabled(&self) -> bool {
        self.max_rows_per_sec > 0 || self.max_lag.is_some()
    }
}

/// Checks `[metrics]`; errors are `(key, message)`.
pub fn metrics(raw: RawMetrics) -> Result<Metrics, (String, String)> {
    let listen = match raw.listen {
        None => None,
        Some(s) => Some(s.parse::<SocketAddr>().map_err(|e| {
            (
                "metrics.listen".to_string(),
                format!("{s:?} is not IP:PORT (e.g. \"127.0.0.1:9187\"): {e}"),
            )
        })?),
    };
    Ok(Metrics { listen })
}

/// Checks `[throttle]`; errors are `(key, message)`.
pub fn throttle(raw: RawThrottle) -> Result<Throttle, (String, String)> {
    if raw.lag_query.is_some() && raw.max_lag_secs == 0 {
        return Err((
            "throttle.lag_query".into(),
            "is only used with max_lag_secs > 0 (the lag above which a server's lanes pause)"
                .into(),
        ));
    }
    if let Some(q) = &raw.lag_query {
        if q.trim().is_empty() {
            return Err(("throttle.lag_query".into(), "is empty".into()));
        }
    }
    if raw.check_interval_ms == 0 {
        return Err((
            "throttle.check_interval_ms".into(),
            "must be greater than 0".into(),
        ));
    }
    Ok(Throttle {
        max_rows_per_sec: raw.max_rows_per_sec,
        max_lag: (raw.max_lag_secs > 0).then(|| Duration::from_secs(raw.max_lag_secs)),
        lag_query: raw.lag_query,
        check_interval: Duration::from_millis(raw.check_interval_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_must_be_an_address() {
        let m = metrics(RawMetrics {
            listen: Some("127.0.0.1:9187".into()),
        })
        .unwrap();
        assert_eq!(m.listen.unwrap().port(), 9187);
        let (key, msg) = metrics(RawMetrics {
            listen: Some("localhost".into()),
        })
        .unwrap_err();
        assert_eq!(key, "metrics.listen");
        assert!(msg.contains("IP:PORT"), "{msg}");
    }

    #[test]
    fn a_lag_query_needs_a_maximum() {
        let raw = RawThrottle {
            lag_query: Some("SELECT 1".into()),
            ..Default::default()
        };
        assert_eq!(throttle(raw).unwrap_err().0, "throttle.lag_query");
        let t = throttle(RawThrottle {
            max_lag_secs: 5,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(t.max_lag, Some(Duration::from_secs(5)));
        assert!(t.enabled());
    }
}
