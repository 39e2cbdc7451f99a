//! The shared state of one held lease: its timing (local deadline), its state cell and the
//! operations the guard and the keeper apply to it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::resource::Resource;
use crate::error::{BackendError, LockError};
use crate::metrics_labels::{HELD, HOLD_SECONDS, LOST_TOTAL, RELEASE_FAILED_TOTAL};
use crate::options::validate_ttl;
use crate::state::{LeaseState, LostReason};
use crate::token::OwnerToken;

/// The safety margin subtracted from a ttl for the holder's local deadline: 1 % of the ttl
/// plus 2 ms (as in Redlock), at most half the ttl.
pub fn drift_margin(ttl: Duration) -> Duration {
    (ttl / 100 + Duration::from_millis(2)).min(ttl / 2)
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) ttl: Duration,
    pub(crate) sent: Instant,
    pub(crate) deadline: Instant,
    pub(crate) version: u64,
    /// A provisional lease (a fair-mode grant, kept by the store for `ttl` only until its
    /// holder renews it): the ttl its first renewal asks for. Cleared by that renewal's
    /// confirmation or by the holder's `extend`.
    pub(crate) grow_to: Option<Duration>,
}

/// The lease state, with a `watch` channel created only when someone subscribes (most leases
/// are released without anyone watching, and a channel costs an allocation and a notification
/// per change).
#[derive(Default)]
pub(crate) struct StateCell {
    inner: Mutex<StateInner>,
}

struct StateInner {
    state: LeaseState,
    watch: Option<watch::Sender<LeaseState>>,
}

impl Default for StateInner {
    fn default() -> Self {
        StateInner {
            state: LeaseState::Held,
            watch: None,
        }
    }
}

impl StateCell {
    pub(crate) fn get(&self) -> LeaseState {
        lock(&self.inner).state
    }

    /// Apply `modify`; when it reports a change, subscribers see the new state.
    pub(crate) fn update(&self, modify: impl FnOnce(&mut LeaseState) -> bool) -> bool {
        let mut inner = lock(&self.inner);
        let changed = modify(&mut inner.state);
        if changed {
            let state = inner.state;
            if let Some(tx) = &inner.watch {
                tx.send_replace(state);
            }
        }
        changed
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<LeaseState> {
        let mut inner = lock(&self.inner);
        let state = inner.state;
        inner
            .watch
            .get_or_insert_with(|| watch::Sender::new(state))
            .subscribe()
    }
}

pub(crate) struct LeaseConfig {
    pub ttl: Duration,
    /// See [`Timing::grow_to`].
    pub grow_to: Option<Duration>,
    pub max_ttl: Duration,
    pub auto_renew: bool,
    pub renew_fraction: f64,
    pub max_hold: Option<Duration>,
}

pub(crate) struct LeaseShared {
    pub(crate) id: u64,
    /// The tokio task that acquired the lease (for self-wait detection), when inside one.
    pub(crate) task: Option<tokio::task::Id>,
    pub(crate) resource: Arc<Resource>,
    pub(crate) token: OwnerToken,
    pub(crate) fence: u64,
    pub(crate) acquired_at: Instant,
    pub(crate) hold_end: Option<Instant>,
    pub(crate) auto_renew: bool,
    pub(crate) renew_fraction: f64,
    pub(crate) max_ttl: Duration,
    pub(crate) timing: Mutex<Timing>,
    pub(crate) state: StateCell,
    /// A renewal of this lease is in flight (set by the keeper under its lock).
    pub(crate) renewing: AtomicBool,
    /// Signalled when an in-flight renewal has ended.
    pub(crate) renewal_done: Notify,
    pub(crate) finished: AtomicBool,
    /// Renewal may run (cleared by [`LockGuard::stop_auto_renew`](crate::LockGuard::stop_auto_renew)).
    pub(crate) auto_renewing: AtomicBool,
    /// Held across every store call that may change the lease's expiry (the keeper's renewal,
    /// the holder's `extend`), so that they never overlap and each one's effect on the local
    /// deadline is known.
    pub(crate) expiry_change: tokio::sync::Mutex<()>,
    /// The `lock.hold` span: renewals are its children, loss and failed releases its events.
    pub(crate) span: tracing::Span,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LeaseShared {
    /// Build the shared state of lease `id`, acquired by a request sent at `sent`.
    pub(crate) fn new(
        id: u64,
        resource: Arc<Resource>,
        token: OwnerToken,
        fence: u64,
        sent: Instant,
        cfg: &LeaseConfig,
        span: tracing::Span,
    ) -> Arc<Self> {
        let deadline = sent + cfg.ttl.saturating_sub(drift_margin(cfg.ttl));
        let shared = Arc::new(LeaseShared {
            id,
            task: tokio::task::try_id(),
            resource,
            token,
            fence,
            acquired_at: sent,
            hold_end: cfg.max_hold.and_then(|h| sent.checked_add(h)),
            auto_renew: cfg.auto_renew,
            renew_fraction: cfg.renew_fraction,
            max_ttl: cfg.max_ttl,
            timing: Mutex::new(Timing {
                ttl: cfg.ttl,
                grow_to: cfg.grow_to,
                sent,
                deadline,
                version: 0,
            }),
            state: StateCell::default(),
            renewing: AtomicBool::new(false),
            renewal_done: Notify::new(),
            finished: AtomicBool::new(false),
            auto_renewing: AtomicBool::new(cfg.auto_renew),
            expiry_change: tokio::sync::Mutex::new(()),
            span,
        });
        shared.resource.labels.gauge(HELD, 1.0);
        shared
    }

    pub(crate) fn timing(&self) -> Timing {
        *lock(&self.timing)
    }

    pub(crate) fn mark_lost(&self, reason: LostReason) {
        let changed = self.state.update(|s| {
            if matches!(s, LeaseState::Lost(_)) {
                false
            } else {
                *s = LeaseState::Lost(reason);
                true
            }
        });
        if changed && !matches!(reason, LostReason::Released | LostReason::Abandoned) {
            self.resource
                .labels
                .counter(LOST_TOTAL, Some(("reason", reason.label())));
            let outcome = if reason == LostReason::Shutdown {
                "shutdown"
            } else {
                "lost"
            };
            self.span.record("outcome", outcome);
            if reason == LostReason::Shutdown {
                // Deliberate: the service's shutdown released it.
                tracing::info!(
                    name: "lock.lost",
                    parent: &self.span,
                    key = self.resource.key.name(),
                    fence = self.fence,
                    reason = reason.label(),
                    "lease released by shutdown"
                );
            } else {
                tracing::warn!(
                    name: "lock.lost",
                    parent: &self.span,
                    key = self.resource.key.name(),
                    fence = self.fence,
                    reason = reason.label(),
                    "lease lost: {reason}"
                );
            }
        }
    }

    pub(crate) fn set_state(&self, new: LeaseState) {
        self.state.update(|s| {
            if matches!(s, LeaseState::Lost(_)) || *s == new {
                false
            } else {
                *s = new;
                true
            }
        });
    }

    /// The state, with the local deadline checked on the spot: a holder that was paused (or
    /// whose keeper has not run yet) never reports `Held` past its deadline.
    pub(crate) fn current_state(&self) -> LeaseState {
        let state = self.state.get();
        if matches!(state, LeaseState::Lost(_)) {
            return state;
        }
        let timing = self.timing();
        if Instant::now() >= timing.deadline {
            self.mark_lost(self.deadline_reason(&timing, false));
            return self.state.get();
        }
        state
    }

    /// Why the lease is lost when its deadline passes: `MaxHoldReached` if `max_hold` is what
    /// stopped renewal, else `DeadlineExpired`.
    pub(crate) fn deadline_reason(&self, timing: &Timing, hold_exhausted: bool) -> LostReason {
        match self.hold_end {
            Some(end)
                if self.auto_renew
                    && (hold_exhausted || timing.deadline + drift_margin(timing.ttl) >= end) =>
            {
                LostReason::MaxHoldReached
            }
            _ => LostReason::DeadlineExpired,
        }
    }

    /// Wait until no renewal of this lease is in flight. The caller has already taken the lease
    /// off the keeper's schedule, so none can start afterwards.
    async fn renewal_ended(&self) {
        while self.renewing.load(Ordering::SeqCst) {
            let done = self.renewal_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if !self.renewing.load(Ordering::SeqCst) {
                return;
            }
            done.await;
        }
    }

    /// Claim the right to finish this lease: `false` when release, drop, abandon or shutdown
    /// already did.
    pub(crate) fn claim_finish(&self) -> bool {
        !self.finished.swap(true, Ordering::SeqCst)
    }

    /// After [`claim_finish`](Self::claim_finish) and taking the lease off the keeper's
    /// books: wait for a renewal in flight, tell the holder (`lost()` fires), then release in
    /// the store. `Ok(false)`: the store no longer listed this owner.
    pub(crate) async fn finish_claimed(&self, reason: LostReason) -> Result<bool, BackendError> {
        self.renewal_ended().await;
        let labels = &self.resource.labels;
        labels.gauge(HELD, -1.0);
        labels.seconds(HOLD_SECONDS, self.acquired_at.elapsed());
        let revoked = self.current_state() == LeaseState::Lost(LostReason::NotOwner);
        // Tell the holder first (lost() fires), then give the lease back.
        self.mark_lost(reason);
        let result = if revoked {
            Ok(false)
        } else {
            self.resource.release(self.token).await
        };
        match &result {
            Ok(true) => {
                if reason == LostReason::Released {
                    self.span.record("outcome", "released");
                }
            }
            Ok(false) => {
                labels.counter(RELEASE_FAILED_TOTAL, Some(("result", "not_owner")));
                tracing::warn!(
                    name: "lock.release_failed",
                    parent: &self.span,
                    key = self.resource.key.name(),
                    fence = self.fence,
                    result = "not_owner",
                    "release: the lease had expired or was taken"
                );
            }
            Err(e) => {
                labels.counter(RELEASE_FAILED_TOTAL, Some(("result", "error")));
                tracing::warn!(
                    name: "lock.release_failed",
                    parent: &self.span,
                    key = self.resource.key.name(),
                    fence = self.fence,
                    result = "error",
                    error = %e,
                    "release failed; the lease ends by its ttl"
                );
            }
        }
        result
    }

    /// Before sending a request that may set the store's expiry to `sent + ttl`: lower the
    /// local deadline to it (minus the drift margin) if that is earlier. Only a confirmation
    /// raises the deadline again. Returns the deadline now in force.
    pub(crate) fn lower_deadline(&self, sent: Instant, ttl: Duration) -> Instant {
        let mut t = lock(&self.timing);
        let at_most = sent + ttl.saturating_sub(drift_margin(ttl));
        if at_most < t.deadline {
            t.deadline = at_most;
        }
        t.deadline
    }

    /// The holder's extend: never beside a renewal; the deadline is lowered before the request
    /// is sent and raised only by its confirmation; a failure leaves the state `Unknown`.
    pub(crate) async fn extend(&self, ttl: Duration) -> Result<(), LockError> {
        validate_ttl(ttl, self.max_ttl)?;
        let _one_at_a_time = self.expiry_change.lock().await;
        if let LeaseState::Lost(reason) = self.current_state() {
            return Err(LockError::Lost {
                key: self.resource.key.name().to_owned(),
                reason,
            });
        }
        let sent = Instant::now();
        self.lower_deadline(sent, ttl);
        match self.resource.extend(self.token, ttl).await {
            Ok(true) => {
                {
                    let mut t = lock(&self.timing);
                    t.ttl = ttl;
                    t.grow_to = None;
                    t.sent = sent;
                    t.deadline = sent + ttl.saturating_sub(drift_margin(ttl));
                    t.version += 1;
                }
                self.set_state(LeaseState::Held);
                Ok(())
            }
            Ok(false) => {
                self.mark_lost(LostReason::NotOwner);
                Err(LockError::NotOwner {
                    key: self.resource.key.name().to_owned(),
                })
            }
            Err(e) => {
                // It may or may not have been applied: trust neither the old nor the new ttl
                // beyond the lowered deadline, until a renewal is confirmed.
                self.set_state(LeaseState::Unknown);
                Err(LockError::backend("extend", e))
            }
        }
    }
}
