//! CPU seconds spent by each process of a step (`/proc/PID/stat` user +
//! system time): the servers, reshard or the loader (this process). On a
//! shared machine this says where a step's time went better than wall
//! time alone.

use std::collections::BTreeMap;

use crate::env::Bench;

/// CPU seconds per process name at one instant.
#[derive(Debug, Clone, Default)]
pub struct Cpu(BTreeMap<String, f64>);

fn seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the fields after the command name, which is in parentheses
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

impl Cpu {
    /// The servers, this process, and `reshard` when given.
    pub fn take(b: &Bench, reshard: Option<u32>) -> Cpu {
        let mut m = BTreeMap::new();
        let mut server = |name: &str, dir: &std::path::Path| {
            if let Ok(pid) = std::fs::read_to_string(dir.join("mariadbd.pid")) {
                if let Some(s) = seconds(pid.trim()) {
                    m.insert(name.to_string(), s);
                }
            }
        };
        server("source", b.source.datadir());
        for (i, t) in b.targets.iter().enumerate() {
            server(&format!("target{i}"), t.datadir());
        }
        if let Some(s) = seconds("self") {
            m.insert("bench".into(), s);
        }
        if let Some(s) = reshard.and_then(|p| seconds(&p.to_string())) {
            m.insert("reshard".into(), s);
        }
        Cpu(m)
    }

    /// CPU seconds since `earlier`, as JSON.
    pub fn since(&self, earlier: &Cpu) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (k, v) in &self.0 {
            let d = v - earlier.0.get(k).copied().unwrap_or(0.0);
            out.insert(k.clone(), serde_json::json!((d * 100.0).round() / 100.0));
        }
        serde_json::Value::Object(out)
    }
}

/// CPU seconds of this process's waited-for children and their waited-for
/// children (`RUSAGE_CHILDREN`): the dump pipelines' clients.
pub fn children_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Statement counters of the target servers (`SHOW GLOBAL STATUS`), summed.
pub fn counters(b: &Bench) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for t in &b.targets {
        let out = t
            .sql("SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_stmt_prepare', 'Com_stmt_execute', 'Com_commit', 'Questions', 'Com_select', 'Bytes_received')")
            .unwrap_or_default();
        for line in out.lines() {
            if let Some((k, v)) = line.split_once('\t') {
                *m.entry(k.to_string()).or_insert(0.0) += v.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    m
}

/// Counter increments since `earlier`, as JSON.
pub fn counters_since(b: &Bench, earlier: &BTreeMap<String, f64>) -> serde_json::Value {
    let now = counters(b);
    let mut out = serde_json::Map::new();
    for (k, v) in now {
        out.insert(
            k.clone(),
            serde_json::json!(v - earlier.get(&k).copied().unwrap_or(0.0)),
        );
    }
    serde_json::Value::Object(out)
}

/// The machine's idle and total time so far (`/proc/stat`'s `cpu` line,
/// in ticks): how much of the cores a step left idle, which per-process
/// CPU seconds cannot show (the copy and the dump do about the same work;
/// what separates them is the time every core waits, BENCHMARKS.md,
/// session 11).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stat {
    idle: u64,
    total: u64,
}

impl Stat {
    pub fn take() -> Stat {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
            return Stat::default();
        };
        // user nice system idle iowait irq softirq steal (guests are in user)
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        Stat {
            idle: f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0),
            total: f.iter().sum(),
        }
    }

    /// Cores idle on average since `earlier` (0 to the core count).
    pub fn idle_cores_since(&self, earlier: &Stat) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let idle = self.idle.saturating_sub(earlier.idle) as f64 / total as f64 * cores;
        (idle * 100.0).round() / 100.0
    }
}
