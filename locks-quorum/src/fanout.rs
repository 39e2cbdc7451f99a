//! Sending one operation to many nodes at once and reading the answers as they arrive.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use locks_core::{BackendError, LockBackend};
use tokio::sync::mpsc;

/// The answers of one operation sent to several nodes, in the order they arrive.
///
/// Every node's call runs in its own task, cut off at the node timeout (a call cut off may or
/// may not have been applied, like any dropped connection). Dropping a `Fanout` does not stop
/// the calls still running: a straggler's answer is simply not read.
pub(crate) struct Fanout<T> {
    rx: mpsc::UnboundedReceiver<(usize, Result<T, BackendError>)>,
    pending: usize,
}

impl<T: Send + 'static> Fanout<T> {
    /// Start `call(index, node)` on every node of `targets` (indexes into `nodes`).
    pub(crate) fn start<F, Fut>(
        nodes: &[Arc<dyn LockBackend>],
        targets: impl IntoIterator<Item = usize>,
        timeout: Duration,
        mut call: F,
    ) -> Self
    where
        F: FnMut(usize, Arc<dyn LockBackend>) -> Fut,
        Fut: Future<Output = Result<T, BackendError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut pending = 0;
        for i in targets {
            let Some(node) = nodes.get(i) else { continue };
            let fut = call(i, Arc::clone(node));
            let tx = tx.clone();
            let name = node.name();
            pending += 1;
            tokio::spawn(async move {
                let answer = match tokio::time::timeout(timeout, fut).await {
                    Ok(answer) => answer,
                    Err(_) => Err(BackendError::transient(format!(
                        "quorum node {i} ({name}) did not answer within {timeout:?}"
                    ))),
                };
                // The receiver may be gone: nobody waits for a straggler.
                let _ = tx.send((i, answer));
            });
        }
        Fanout { rx, pending }
    }

    /// The next answer: the node's index and what it said; `None` once every node answered.
    pub(crate) async fn next(&mut self) -> Option<(usize, Result<T, BackendError>)> {
        if self.pending == 0 {
            return None;
        }
        let answer = self.rx.recv().await;
        self.pending -= 1;
        answer
    }
}

/// Counts of yes/no answers and failures for an operation that answers a `bool`.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) yes: usize,
    pub(crate) no: usize,
    pub(crate) failed: Vec<BackendError>,
    /// The nodes that answered `false`.
    pub(crate) said_no: Vec<usize>,
}

impl Tally {
    /// Reads the answers of `fanout` until `decided` says the outcome is known (or all came).
    pub(crate) async fn collect(
        mut fanout: Fanout<bool>,
        decided: impl Fn(&Tally) -> bool,
    ) -> Tally {
        let mut tally = Tally::default();
        while let Some((i, answer)) = fanout.next().await {
            match answer {
                Ok(true) => tally.yes += 1,
                Ok(false) => {
                    tally.no += 1;
                    tally.said_no.push(i);
                }
                Err(e) => tally.failed.push(e),
            }
            if decided(&tally) {
                break;
            }
        }
        tally
    }
}

/// A permanent error to report when permanent failures alone deny a majority (every node
/// refused the request itself: a bad ttl, a key a store rejects), so the caller does not retry
/// in vain. `None` otherwise.
pub(crate) fn permanent_majority(
    failed: &mut Vec<BackendError>,
    nodes: usize,
    quorum: usize,
) -> Option<BackendError> {
    let permanent = failed.iter().filter(|e| !e.is_transient()).count();
    if permanent > nodes - quorum {
        let at = failed.iter().position(|e| !e.is_transient())?;
        Some(failed.swap_remove(at))
    } else {
        None
    }
}
