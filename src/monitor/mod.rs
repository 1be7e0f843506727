//! Watching a running `run` or `replay` from inside: [`start`] opens the
//! Prometheus endpoint (`[metrics] listen`, [`crate::metrics::serve`]),
//! installs the throttle ([`crate::throttle`]) and starts the monitor
//! task, which once a second:
//!
//! * reads the source head and the stored checkpoint and sets
//!   `reshard_source_lag_bytes`, `reshard_source_lag_seconds` and
//!   `reshard_checkpoint_position` (the lag `status` computes, [`lag`]);
//! * runs the stall alarm ([`stall`]): a stage that stalls is logged as an
//!   error naming it, and `reshard_stalled{stage}` is 1 until it moves
//!   again;
//! * every `progress_interval_secs`, keeps the process's figures in the
//!   control database for `status` ([`crate::control::figures`]).
//!
//! The monitor has connections of its own (source and control, read
//! only) and only reads what the pipeline wrote: it decides nothing, and
//! a server it cannot reach only leaves its figures as they were (it
//! reconnects at the next second). All of it ends when the returned
//! [`Observer`] is dropped. Why none of it can change what the pipeline
//! applies: `docs/architecture.md`, "Watching and throttling".
//!
//! Beside it, [`waits`] is what the copy's dispatcher and the stream's
//! coordinator keep of where they waited, for their progress lines.

pub mod lag;
pub mod stall;
pub mod waits;

use std::time::{Duration, Instant};

use mysql_async::Conn;

use crate::checkpoint::continuity;
use crate::config::Config;
use crate::control::{self, checkpoint, lease::Owner};
use crate::db::{self, DbError, Session};
use crate::metrics::figures::Figures;
use crate::metrics::serve::{self, ServeError};
use crate::metrics::{self, Metrics};
use crate::position::Position;
use crate::source;
use crate::task::Background;
use stall::{Change, StallWatch};

/// How often the monitor looks.
const EVERY: Duration = Duration::from_secs(1);

/// A query of the monitor that takes longer is abandoned (and its
/// connection dropped).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The endpoint, the throttle's checks and the monitor, until dropped.
pub struct Observer {
    _tasks: Vec<Background>,
}

/// Starts everything that watches this process (see the module docs). An
/// endpoint address that cannot be bound is an error.
pub async fn start(cfg: &Config) -> Result<Observer, ServeError> {
    let m = metrics::global();
    let mut tasks = Vec::new();
    if let Some(addr) = cfg.metrics.listen {
        tasks.push(serve::start(addr, m).await?);
    }
    tasks.extend(crate::throttle::install(cfg));
    let monitor = Monitor {
        cfg: cfg.clone(),
        m,
        source: None,
        control: None,
        stall: cfg
            .pipeline
            .stall
            .map(|s| StallWatch::new(s, Instant::now())),
        checkpoint_file: None,
        saved: None,
    };
    tasks.push(Background::spawn(monitor.run()));
    Ok(Observer { _tasks: tasks })
}

struct Monitor {
    cfg: Config,
    m: &'static Metrics,
    source: Option<Conn>,
    control: Option<Conn>,
    stall: Option<StallWatch>,
    /// The file the checkpoint gauge is labelled with.
    checkpoint_file: Option<String>,
    /// When the figures were last kept.
    saved: Option<Instant>,
}

impl Monitor {
    async fn run(mut self) {
        let mut ticker = tokio::time::interval(EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let head = self.lag().await;
            self.stalls(head.as_ref());
            self.keep_figures().await;
        }
    }

    /// Reads head and checkpoint and sets the lag gauges; returns the head.
    async fn lag(&mut self) -> Option<Position> {
        let cfg = &self.cfg;
        let budget = cfg.pipeline.connect_timeout;
        let (head, files) = {
            let conn = open(&mut self.source, &cfg.source, budget).await?;
            let read = async {
                let head = source::head(conn).await?;
                let files = continuity::binlog_sizes(conn).await?;
                Ok::<_, DbError>((head, files))
            };
            let r = bounded(read).await;
            forget_on_error(&mut self.source, r)?
        };
        let name = &cfg.pipeline.name;
        let cp = {
            let conn = open(&mut self.control, &cfg.control, budget).await;
            let conn = match conn {
                Some(c) => c,
                None => return Some(head),
            };
            let read = async {
                let cp = checkpoint::load(conn, name).await?;
                let ts = checkpoint::source_ts(conn, name).await?;
                Ok::<_, DbError>((cp, ts))
            };
            let r = bounded(read).await;
            forget_on_error(&mut self.control, r)
        };
        if let Some((Some(cp), ts)) = cp {
            let (bytes, secs) = lag::lags(Some(&cp), &head, &files, ts.unwrap_or(0));
            if let Some(b) = bytes {
                self.m
                    .source_lag_bytes
                    .set(i64::try_from(b).unwrap_or(i64::MAX));
            }
            if let Some(s) = secs {
                self.m.source_lag_seconds.set(s as f64);
            }
            let old = self.checkpoint_file.replace(cp.position.file.clone());
            self.m
                .set_checkpoint(old.as_deref(), &cp.position.file, cp.position.pos);
        }
        Some(head)
    }

    /// Runs the stall alarm; logs and exports what began and ended.
    fn stalls(&mut self, head: Option<&Position>) {
        let Some(watch) = &mut self.stall else {
            return;
        };
        let view = self.m.board.view();
        for change in watch.observe(Instant::now(), head, &view) {
            match change {
                Change::Began(s) => {
                    self.m.stalled.with_label_values(&[&s.stage]).set(1);
                    tracing::error!(stage = %s.stage, stall_secs = self.cfg.pipeline.stall.map_or(0, |d| d.as_secs()), "stalled: {}", s.what);
                }
                Change::Ended { stage, after } => {
                    self.m.stalled.with_label_values(&[&stage]).set(0);
                    tracing::info!(stage = %stage, stalled_s = after.as_secs(), "stall over: the stage makes progress again");
                }
            }
        }
    }

    /// Every `progress_interval`: the figures into the control database.
    async fn keep_figures(&mut self) {
        let due = self
            .saved
            .is_none_or(|at| at.elapsed() >= self.cfg.pipeline.progress_interval);
        if !due {
            return;
        }
        let json = match serde_json::to_string(&Figures::of(self.m)) {
            Ok(j) => j,
            Err(e) => {
                tracing::debug!(error = %e, "cannot encode the figures");
                return;
            }
        };
        let budget = self.cfg.pipeline.connect_timeout;
        let Some(conn) = open(&mut self.control, &self.cfg.control, budget).await else {
            return;
        };
        let name = &self.cfg.pipeline.name;
        let r = bounded(control::figures::save(
            conn,
            name,
            Owner::this_process(),
            &json,
        ))
        .await;
        if forget_on_error(&mut self.control, r).is_some() {
            self.saved = Some(Instant::now());
        }
    }
}

/// The monitor's connection, opened when there is none (`None`: cannot
/// be opened now; logged at debug level, tried again next time).
async fn open<'a>(
    slot: &'a mut Option<Conn>,
    ep: &crate::config::Endpoint,
    budget: Duration,
) -> Option<&'a mut Conn> {
    if slot.is_none() {
        match db::connect(ep, Session::Read, budget).await {
            Ok(c) => *slot = Some(c),
            Err(e) => {
                tracing::debug!(server = %ep.name, error = %e, "monitor: cannot connect");
                return None;
            }
        }
    }
    slot.as_mut()
}

/// `work` within [`QUERY_TIMEOUT`].
async fn bounded<T>(
    work: impl std::future::Future<Output = Result<T, DbError>>,
) -> Result<T, DbError> {
    tokio::time::timeout(QUERY_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(DbError::no_answer(
                "monitor",
                "reading the lag",
                QUERY_TIMEOUT,
            ))
        })
}

/// The value, or `None` after dropping the connection that failed.
fn forget_on_error<T>(slot: &mut Option<Conn>, r: Result<T, DbError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!(error = %e, "monitor: query failed; reconnecting next time");
            *slot = None;
            None
        }
    }
}
