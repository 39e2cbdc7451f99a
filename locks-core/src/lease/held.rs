//! A held lease together with the keeper that watches it: how a lease starts, is extended
//! and ends. (The only module that uses both the lease's state and the keeper.)

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::keeper::Keeper;
use super::resource::Resource;
use super::shared::{LeaseConfig, LeaseShared};
use crate::error::{BackendError, LockError};
use crate::metrics_labels::HELD;
use crate::state::LostReason;
use crate::token::OwnerToken;

/// One held lease and the keeper renewing it. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Held {
    pub shared: Arc<LeaseShared>,
    pub keeper: Weak<Keeper>,
}

impl Held {
    /// Build the lease acquired by a request sent at `sent` and hand it to the service's
    /// keeper, which renews it and watches its deadline. `span` is its `lock.hold` span.
    pub fn start(
        keeper: &Arc<Keeper>,
        resource: Arc<Resource>,
        token: OwnerToken,
        fence: u64,
        sent: Instant,
        cfg: &LeaseConfig,
        span: tracing::Span,
    ) -> Held {
        let id = keeper.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = LeaseShared::new(id, resource, token, fence, sent, cfg, span);
        keeper.insert(Arc::clone(&shared));
        Held {
            shared,
            keeper: Arc::downgrade(keeper),
        }
    }

    /// Stop renewal (waiting for a renewal in flight), then release in the store.
    /// `Ok(None)`: someone else (release, drop or shutdown) already finished this lease.
    pub async fn finish(&self, reason: LostReason) -> Result<Option<bool>, BackendError> {
        finish(&self.shared, &self.keeper, reason).await
    }

    /// Extend to `ttl` from now, then let the keeper plan the next event from the new timing
    /// (also after a failure: the deadline may have been lowered).
    pub async fn extend(&self, ttl: Duration) -> Result<(), LockError> {
        let result = self.shared.extend(ttl).await;
        if let Some(keeper) = self.keeper.upgrade() {
            keeper.replan(self.shared.id);
        }
        result
    }

    /// Stop renewing; the lease ends at its deadline unless extended.
    pub fn stop_auto_renew(&self) {
        self.shared.auto_renewing.store(false, Ordering::SeqCst);
        if let Some(keeper) = self.keeper.upgrade() {
            keeper.replan(self.shared.id);
        }
    }

    /// Forget the lease without releasing it (it ends by its ttl in the store).
    pub fn abandon(&self) {
        if !self.shared.claim_finish() {
            return;
        }
        if let Some(keeper) = self.keeper.upgrade() {
            keeper.remove(self.shared.id);
        }
        self.shared.resource.labels.gauge(HELD, -1.0);
        self.shared.span.record("outcome", "abandoned");
        self.shared.mark_lost(LostReason::Abandoned);
    }

    /// The guard is gone (its release follows in the background): its task no longer holds it.
    pub fn disown(&self) {
        if let Some(keeper) = self.keeper.upgrade() {
            keeper.disown(self.shared.id);
        }
    }

    /// Stop renewing and watching, keeping the lease registered (no runtime to release on).
    pub fn stop(&self) {
        if let Some(keeper) = self.keeper.upgrade() {
            keeper.stop(self.shared.id);
        }
    }
}

/// Finish `shared`: claim it, take it off `keeper`'s books, release it in the store.
/// `Ok(None)`: it was already finished.
pub(crate) async fn finish(
    shared: &Arc<LeaseShared>,
    keeper: &Weak<Keeper>,
    reason: LostReason,
) -> Result<Option<bool>, BackendError> {
    if !shared.claim_finish() {
        return Ok(None);
    }
    if let Some(keeper) = keeper.upgrade() {
        keeper.remove(shared.id);
    }
    shared.finish_claimed(reason).await.map(Some)
}
