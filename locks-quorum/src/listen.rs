//! Release notifications from every node, merged: a release wakes waiters through whichever
//! node tells first.

use std::time::Duration;

use async_trait::async_trait;
use futures::future::select_all;
use locks_core::backend::Wake;
use locks_core::{BackendError, LockKey, ReleaseListener};

use crate::backend::QuorumBackend;
use crate::fanout::Fanout;

/// The listeners of the nodes that answered.
struct Merged {
    listeners: Vec<Box<dyn ReleaseListener>>,
}

#[async_trait]
impl ReleaseListener for Merged {
    async fn wait_for_release(&mut self, max: Duration) -> Result<Wake, BackendError> {
        if self.listeners.is_empty() {
            tokio::time::sleep(max).await;
            return Ok(Wake::TimedOut);
        }
        // Every listener is cancel safe: the ones that lose the race keep what they heard
        // for the next call.
        let waits = self.listeners.iter_mut().map(|l| l.wait_for_release(max));
        let (first, index, _) = select_all(waits).await;
        match first {
            Err(e) => {
                // That node's notifications are gone (and may have missed a release): keep
                // the others, and say "maybe released" so the waiter looks again.
                self.listeners.remove(index);
                if self.listeners.is_empty() {
                    Err(e)
                } else {
                    Ok(Wake::Notified)
                }
            }
            answer => answer,
        }
    }
}

/// Listen on every node; the listener hears a release on any of them. Returns once a majority
/// listens; nodes that fail to listen (within the node timeout) are left out: waiters still
/// poll. Fails only when no node listens.
pub(crate) async fn listen_all(
    quorum: &QuorumBackend,
    key: &LockKey,
) -> Result<Box<dyn ReleaseListener>, BackendError> {
    let nodes = quorum.nodes();
    let mut round = Fanout::start(nodes, 0..nodes.len(), quorum.node_timeout(), |_, node| {
        let key = key.clone();
        async move { node.listen(&key).await }
    });
    let mut listeners = Vec::new();
    let mut last_error = None;
    while let Some((_, answer)) = round.next().await {
        match answer {
            Ok(l) => listeners.push(l),
            Err(e) => last_error = Some(e),
        }
        // Every node publishes its releases: a majority of listeners is plenty, and a
        // stalled node does not hold the waiter up.
        if listeners.len() >= quorum.majority() {
            break;
        }
    }
    match (listeners.is_empty(), last_error) {
        (true, Some(e)) => Err(e),
        _ => Ok(Box::new(Merged { listeners })),
    }
}
