//! Background tasks that end with their owner.
//!
//! A dropped [`tokio::task::JoinHandle`] detaches its task: it keeps running
//! (and holding its connections) after whoever started it returned, on an
//! error path as much as on a normal one. [`Background`] aborts the task when
//! it is dropped, so a task started for an attempt or a command cannot
//! outlive it, whichever way it ends.

use tokio::task::JoinHandle;

/// A spawned task, aborted when this handle is dropped.
#[derive(Debug)]
pub struct Background(JoinHandle<()>);

impl Background {
    /// Spawns `fut` on the runtime.
    pub fn spawn<F>(fut: F) -> Background
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        Background(tokio::spawn(fut))
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_dropped_task_is_aborted() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let task = Background::spawn(async move {
            // holds the sender until aborted
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        assert!(!task.is_finished());
        drop(task);
        let closed = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(closed, Ok(None), "the task ended and dropped its sender");
    }
}
