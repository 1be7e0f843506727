//! How far a checkpoint is behind the source head, in binlog bytes and in
//! seconds: what `status` shows and the monitor exports as
//! `reshard_source_lag_bytes` / `reshard_source_lag_seconds`.

use crate::checkpoint::Checkpoint;
use crate::position::Position;

/// Bytes of binlog between two positions, from `SHOW BINARY LOGS` sizes;
/// `None` when `from`'s file is not listed.
pub fn lag_bytes(from: &Position, to: &Position, files: &[(String, u64)]) -> Option<u64> {
    if from >= to {
        return Some(0);
    }
    if from.file == to.file {
        return Some(to.pos - from.pos);
    }
    let mut total = 0u64;
    let mut inside = false;
    for (name, size) in files {
        if *name == from.file {
            inside = true;
            total += size.saturating_sub(from.pos);
        } else if *name == to.file {
            return inside.then_some(total + to.pos);
        } else if inside {
            total += size;
        }
    }
    None
}

/// Lag in bytes and seconds of a checkpoint behind the source head;
/// `source_ts` is the source commit time of the checkpoint's transaction
/// (0: unknown). At the head the lag is 0 seconds whatever that time.
pub fn lags(
    cp: Option<&Checkpoint>,
    head: &Position,
    files: &[(String, u64)],
    source_ts: u32,
) -> (Option<u64>, Option<u64>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let lag_b = cp.and_then(|c| lag_bytes(&c.position, head, files));
    let lag_s = match cp {
        Some(_) if lag_b == Some(0) => Some(0),
        Some(_) if source_ts > 0 => Some(now.saturating_sub(u64::from(source_ts))),
        _ => None,
    };
    (lag_b, lag_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_bytes_spans_files() {
        let files = vec![
            ("b.000001".to_string(), 1000),
            ("b.000002".to_string(), 500),
            ("b.000003".to_string(), 300),
        ];
        let p = |f: &str, n| Position::new(f, n);
        assert_eq!(
            lag_bytes(&p("b.000001", 900), &p("b.000001", 950), &files),
            Some(50)
        );
        assert_eq!(
            lag_bytes(&p("b.000001", 900), &p("b.000003", 10), &files),
            Some(100 + 500 + 10)
        );
        assert_eq!(
            lag_bytes(&p("b.000003", 10), &p("b.000001", 900), &files),
            Some(0)
        );
        assert_eq!(
            lag_bytes(&p("b.000000", 10), &p("b.000003", 10), &files),
            None
        );
    }
}
