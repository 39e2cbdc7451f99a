//! The acquire loop: one attempt, or waiting with notifications, backoff and the local line,
//! then registering the lease with the keeper.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;
use tracing::field::Empty;

use super::LockService;
use super::line::{count_in_line, join_line, note_contended};
use crate::backend::{AcquireResult, ReleaseListener, Wake};
use crate::error::{BackendError, LockError};
use crate::kind::{FAIR_WAITER_TTL, LeaseKind};
use crate::lease::LockGuard;
use crate::lease::held::Held;
use crate::lease::resource::Resource;
use crate::lease::shared::LeaseConfig;
use crate::metrics_labels::{
    ACQUIRE_TOTAL, ACQUIRE_WAIT_SECONDS, HANDOFF_SECONDS, Labels, WAITERS,
};
use crate::options::Resolved;
use crate::token::OwnerToken;

/// Random spread of the yields after a release notification (see [`shuffle_after_wake`]).
const WAKE_SPREAD: usize = 4;
/// Extra yields per missing level of age (see [`shuffle_after_wake`]).
const AGE_STEP: usize = 2;
/// Failed attempts after which a waiter gets no extra yields.
const AGE_LEVELS: usize = 6;

/// How often a fair waiter asking for leases of `ttl` re-asks the store at the latest: a third
/// of the ttl of a grant, `min(ttl, FAIR_WAITER_TTL)` (so at most once a second).
///
/// Twice a reason: its queue entry lives [`FAIR_WAITER_TTL`] from its last attempt; and a
/// grant it is handed lives that long unless claimed, so some attempt of the waiter is applied
/// while the grant is still its own even when the grant's notification is delayed or lost.
/// That attempt claims it (`Acquired`), which is why a grant notification can be trusted: a
/// waiter's attempt answered `Held` after its grant had lapsed would need the grant to stay
/// unclaimed through three refreshes.
fn fair_refresh(ttl: Duration) -> Duration {
    (ttl.min(FAIR_WAITER_TTL) / 3).max(Duration::from_millis(1))
}

/// Let other ready tasks run a few times before asking the store after a release notification:
/// a random `0..WAKE_SPREAD` times, plus `AGE_STEP` for every level a waiter is younger than
/// `AGE_LEVELS` failed attempts.
///
/// Waiters in other services (other processes) woken by the same release all ask at once, and
/// whoever asks first wins: the store keeps no queue. The order in which they are woken is
/// mostly the same every time (the order of their subscriptions, sockets and tasks), so
/// without this the same waiters would win round after round. The random part breaks the
/// order; the age part lets a waiter that has lost many rounds ask before fresh ones, so
/// waiting is roughly first come, first served across processes too. A holder that released a
/// contended key and asks again at once starts at age 0, behind everyone already waiting.
/// Yields cost no timer, only a pass of the scheduler each.
async fn shuffle_after_wake(failed: u32) {
    let age = usize::try_from(failed)
        .unwrap_or(usize::MAX)
        .min(AGE_LEVELS);
    let yields = fastrand::usize(..WAKE_SPREAD) + AGE_STEP * (AGE_LEVELS - age);
    for _ in 0..yields {
        tokio::task::yield_now().await;
    }
}

/// Retires a token that an attempt may have used to create a lease (or a writer's waiting
/// mark) when the acquire ends without a guard (error, timeout, shutdown, or the caller
/// dropping the future): see [`Resource::retire`].
struct MaybeHeld {
    armed: Option<(Arc<Resource>, OwnerToken)>,
}

impl Drop for MaybeHeld {
    fn drop(&mut self) {
        if let Some((resource, token)) = self.armed.take() {
            resource.retire_in_background(token);
        }
    }
}

pub(crate) enum Mode {
    Wait,
    Once,
}

/// This caller counted in the [`WAITERS`] gauge from [`start`](Waiting::start) (the first time
/// it has to wait) until it is dropped (the acquire ended, however).
pub(crate) struct Waiting<'a> {
    labels: &'a Labels,
    counted: bool,
}

impl<'a> Waiting<'a> {
    fn new(labels: &'a Labels) -> Self {
        Waiting {
            labels,
            counted: false,
        }
    }

    /// Count this caller as waiting (once).
    pub(crate) fn start(&mut self) {
        if !self.counted {
            self.counted = true;
            self.labels.gauge(WAITERS, 1.0);
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.labels.gauge(WAITERS, -1.0);
        }
    }
}

impl LockService {
    /// Start listening for releases of `resource`, bounded by `deadline` and shutdown.
    /// `Err(ShuttingDown)` on shutdown; `Ok(None)` when listening failed or timed out (the
    /// caller polls this round).
    async fn listen(
        &self,
        resource: &Arc<Resource>,
        deadline: Instant,
    ) -> Result<Option<Box<dyn ReleaseListener>>, LockError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        let listening = tokio::select! {
            r = tokio::time::timeout(budget, resource.listen()) => r,
            _ = self.inner.closing.cancelled() => return Err(LockError::ShuttingDown),
        };
        match listening {
            Ok(Ok(l)) => Ok(Some(l)),
            Ok(Err(e)) => {
                tracing::debug!(key = %&resource.key, error = %e, "cannot listen for releases; polling");
                Ok(None)
            }
            Err(_) => {
                tracing::debug!(key = %&resource.key, "listening for releases timed out; polling");
                Ok(None)
            }
        }
    }

    /// Acquire `resource` inside a `lock.acquire` span (key, kind, backend; attempts, waited,
    /// outcome and fence recorded at the end). The hold span of the lease it returns is a
    /// sibling of it (a child of the caller's span), and follows from it.
    pub(crate) async fn run_acquire(
        &self,
        resource: Arc<Resource>,
        opts: &Resolved,
        mode: Mode,
    ) -> Result<LockGuard, LockError> {
        if self.is_shut_down() {
            return Err(LockError::ShuttingDown);
        }
        let caller = tracing::Span::current();
        let span = tracing::info_span!(
            "lock.acquire",
            key = resource.key.name(),
            kind = %resource.kind,
            backend = resource.backend_name(),
            attempts = Empty,
            waited = Empty,
            outcome = Empty,
            fence = Empty,
        );
        let start = Instant::now();
        let result = self
            .acquire_loop(resource, opts, mode, &caller, &span)
            .instrument(span.clone())
            .await;
        if !span.is_disabled() {
            span.record("waited", tracing::field::debug(start.elapsed()));
            match &result {
                Ok(guard) => {
                    span.record("outcome", "acquired");
                    span.record("fence", guard.fence());
                }
                Err(e) => {
                    span.record("outcome", outcome_label(e));
                }
            }
        }
        result
    }

    async fn acquire_loop(
        &self,
        resource: Arc<Resource>,
        opts: &Resolved,
        mode: Mode,
        caller: &tracing::Span,
        span: &tracing::Span,
    ) -> Result<LockGuard, LockError> {
        let labels = resource.labels.clone();
        let mut waiting = Waiting::new(&labels);
        let start = Instant::now();
        let deadline = start
            .checked_add(opts.wait_timeout)
            .unwrap_or_else(|| start + Duration::from_secs(86400 * 365 * 30));
        // The key's name is copied into a `String` only for an error.
        let line_key = (resource.key.clone(), resource.kind);
        let name = line_key.0.name();
        // Changes after an attempt whose outcome is unknown (see the transient-error arm below).
        let mut token = OwnerToken::new();
        let timeout = |attempts: u32, last_error: Option<BackendError>| {
            labels.counter(ACQUIRE_TOTAL, Some(("result", "timeout")));
            LockError::AcquireTimeout {
                key: name.to_owned(),
                waited: start.elapsed(),
                attempts,
                last_error,
            }
        };

        if matches!(mode, Mode::Wait)
            && resource.kind.is_exclusive()
            && self.inner.detect_self_wait
            && let Some(task) = tokio::task::try_id()
            && self
                .inner
                .keeper
                .held_by_task(&resource.key, resource.kind, task)
        {
            return Err(LockError::SelfWait {
                key: name.to_owned(),
            });
        }
        // Fair mode: the store queues the waiters and hands the lease to the head on release.
        let fair = resource.kind == LeaseKind::FairMutex;
        let (ticket, contended) = match mode {
            // No local line: the store's queue orders every waiter of every process. The count
            // keeps the key's contention hint, so a waiter on a hot key listens first.
            Mode::Wait if fair => {
                let ticket = count_in_line(&self.inner.lines, &line_key);
                let contended = ticket.contended_recently();
                (Some(ticket), contended)
            }
            Mode::Wait if resource.kind.is_exclusive() => {
                let joined = join_line(
                    &self.inner.lines,
                    &self.inner.closing,
                    &line_key,
                    deadline,
                    &mut waiting,
                )
                .await;
                match joined {
                    Ok(Some((t, contended))) => (Some(t), contended),
                    Ok(None) => return Err(timeout(0, None)),
                    Err(()) => return Err(LockError::ShuttingDown),
                }
            }
            _ => (None, false),
        };

        let mut maybe_held = MaybeHeld { armed: None };
        // An attempt of this token may have left a writer's waiting mark.
        let mut marked = false;
        let mut attempts: u32 = 0;
        let mut last_error: Option<BackendError> = None;
        // A key this service found held moments ago is probably still contended: listen before
        // the first attempt, so that a failed attempt needs no second look (one store round
        // trip less per contended acquire). Other keys listen only once an attempt failed.
        let mut listener: Option<Box<dyn ReleaseListener>> = if contended {
            self.listen(&resource, deadline).await?
        } else {
            None
        };
        let listened_first = listener.is_some();
        let mut failed: u32 = 0;
        // When the last release notification woke this caller (for the hand-off latency).
        let mut woken_at: Option<Instant> = None;
        // Fair mode: when the last attempt that the store answered `Held` was sent. A grant
        // to our token came after that attempt was applied (it queued us, or kept our place),
        // so the store's expiry of the granted lease is at least this instant + ttl.
        let mut held_sent: Option<Instant> = None;
        // A fair waiter has no herd to spread: the store queues it.
        if contended && !fair {
            shuffle_after_wake(failed).await;
        }
        loop {
            if self.is_shut_down() {
                return Err(LockError::ShuttingDown);
            }
            attempts = attempts.saturating_add(1);
            span.record("attempts", attempts);
            let sent = Instant::now();
            maybe_held.armed = Some((Arc::clone(&resource), token));
            let hint = match resource.try_acquire(token, opts.ttl).await {
                Ok(AcquireResult::Acquired(lease)) => {
                    maybe_held.armed = None;
                    if listened_first && attempts == 1 {
                        // Free at once after all: stop treating the key as contended.
                        note_contended(&self.inner.lines, &line_key, None);
                    }
                    labels.counter(ACQUIRE_TOTAL, Some(("result", "acquired")));
                    labels.seconds(ACQUIRE_WAIT_SECONDS, start.elapsed());
                    if let Some(woken) = woken_at {
                        labels.seconds(HANDOFF_SECONDS, woken.elapsed());
                    }
                    drop(waiting);
                    return self.register(
                        resource,
                        token,
                        lease.fence,
                        sent,
                        None,
                        opts,
                        caller,
                        span,
                    );
                }
                Ok(AcquireResult::Held { remaining }) => {
                    // Acquire is idempotent per token: "held" means not by us.
                    held_sent = Some(sent);
                    if resource.kind.leaves_mark_when_waiting() {
                        marked = true;
                    } else {
                        maybe_held.armed = None;
                    }
                    failed = failed.saturating_add(1);
                    if ticket.is_some() {
                        note_contended(&self.inner.lines, &line_key, Some(Instant::now()));
                    }
                    remaining
                }
                Err(e) if e.is_transient() => {
                    tracing::debug!(key = %name, error = %e, "acquire attempt failed; retrying");
                    last_error = Some(e);
                    // The attempt may still be applied, late (held in the network, or on a
                    // connection retired after a response timeout): its token is never used
                    // again. Retire it before the next attempt (which then never finds our own
                    // ghost), and carry on with a new one. A late acquire with the old token
                    // is refused by the store, or its lease removed by this release: no lease
                    // is left that nobody holds, and the guard's token never had an unknown
                    // attempt, so its release cannot be undone by one.
                    if matches!(mode, Mode::Wait) {
                        let old = token;
                        token = OwnerToken::new();
                        marked = false;
                        held_sent = None;
                        let retired = tokio::select! {
                            () = resource.retire_once(old) => true,
                            _ = self.inner.closing.cancelled() => false,
                        };
                        if retired {
                            maybe_held.armed = None;
                        } else {
                            // `maybe_held` still holds the old token: retired on return.
                            return Err(LockError::ShuttingDown);
                        }
                    }
                    None
                }
                Err(e) => {
                    // The store answered: this attempt wrote nothing. Only a writer's waiting
                    // mark left by an earlier attempt is still to be cleared.
                    if !marked {
                        maybe_held.armed = None;
                    }
                    labels.counter(ACQUIRE_TOTAL, Some(("result", "error")));
                    return Err(LockError::backend("acquire", e));
                }
            };
            if let Mode::Once = mode {
                if let Some(e) = last_error {
                    labels.counter(ACQUIRE_TOTAL, Some(("result", "error")));
                    return Err(LockError::backend("acquire", e));
                }
                labels.counter(ACQUIRE_TOTAL, Some(("result", "contended")));
                return Err(LockError::Contended {
                    key: name.to_owned(),
                    remaining: hint,
                });
            }
            waiting.start();
            let now = Instant::now();
            if now >= deadline || opts.retry.max_attempts.is_some_and(|max| attempts >= max) {
                return Err(timeout(attempts, last_error));
            }
            if listener.is_none() {
                // If listening fails, poll this round; listening is tried again on the next.
                if let Some(l) = self.listen(&resource, deadline).await? {
                    listener = Some(l);
                    // A release may have happened before we listened: look again at once.
                    continue;
                }
            }
            let now = Instant::now();
            // A fair waiter has no herd to spread: it only re-asks to keep its queue entry.
            let mut delay = if fair {
                fair_refresh(opts.ttl)
            } else {
                opts.retry.delay(attempts)
            };
            if let Some(remaining) = hint {
                delay = delay.min(remaining.max(Duration::from_millis(1)));
            }
            delay = delay.min(deadline.saturating_duration_since(now));
            let wake_at = now + delay;
            let waited = loop {
                let left = wake_at.saturating_duration_since(Instant::now());
                let r = match listener.as_mut() {
                    Some(l) => tokio::select! {
                        r = l.wait_for_release(left) => r,
                        _ = self.inner.closing.cancelled() => return Err(LockError::ShuttingDown),
                    },
                    None => tokio::select! {
                        _ = tokio::time::sleep(left) => Ok(Wake::TimedOut),
                        _ = self.inner.closing.cancelled() => return Err(LockError::ShuttingDown),
                    },
                };
                match r {
                    // The lease went to another waiter (ahead of us in the queue): keep our
                    // place and wait on, without asking the store (no herd), until the refresh.
                    Ok(Wake::Granted { token: to, .. }) if to != token => {
                        if Instant::now() < wake_at {
                            continue;
                        }
                        break Ok(Wake::TimedOut);
                    }
                    other => break other,
                }
            };
            match waited {
                // Direct hand-off: the release gave the lease to our token. No round trip.
                // (Without auto-renewal nobody would renew the provisional grant: such a
                // waiter claims it with one acquire, which gives it the full ttl.)
                Ok(Wake::Granted { token: to, fence })
                    if fair && to == token && opts.auto_renew && held_sent.is_some() =>
                {
                    let granted_at = Instant::now();
                    maybe_held.armed = None;
                    labels.counter(ACQUIRE_TOTAL, Some(("result", "acquired")));
                    labels.seconds(ACQUIRE_WAIT_SECONDS, start.elapsed());
                    labels.seconds(HANDOFF_SECONDS, granted_at.elapsed());
                    drop(waiting);
                    // The grant is provisional: the store keeps it for `min(ttl,
                    // FAIR_WAITER_TTL)` from the release, which came after `held_sent`, until
                    // we renew. So the lease starts as one of that ttl sent at `held_sent`
                    // (its local deadline never outlives the store's), and its first renewal,
                    // due at the usual fraction of it, asks for the full ttl.
                    let sent = held_sent.unwrap_or(granted_at);
                    let provisional = opts.ttl.min(FAIR_WAITER_TTL);
                    return self.register(
                        resource,
                        token,
                        fence,
                        sent,
                        Some(provisional),
                        opts,
                        caller,
                        span,
                    );
                }
                Ok(Wake::Notified | Wake::Granted { .. }) => {
                    woken_at = Some(Instant::now());
                    if !fair {
                        shuffle_after_wake(failed).await;
                    }
                }
                Ok(Wake::TimedOut) => woken_at = None,
                Err(e) => {
                    tracing::debug!(key = %name, error = %e, "release listener failed; listening again");
                    woken_at = None;
                    listener = None;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        resource: Arc<Resource>,
        token: OwnerToken,
        fence: u64,
        sent: Instant,
        provisional: Option<Duration>,
        opts: &Resolved,
        caller: &tracing::Span,
        acquire_span: &tracing::Span,
    ) -> Result<LockGuard, LockError> {
        let cfg = LeaseConfig {
            ttl: provisional.unwrap_or(opts.ttl),
            grow_to: provisional.map(|_| opts.ttl),
            max_ttl: self.inner.defaults.max_ttl,
            auto_renew: opts.auto_renew,
            renew_fraction: opts.renew_fraction,
            max_hold: opts.max_hold,
        };
        let hold_span = tracing::info_span!(
            parent: caller,
            "lock.hold",
            key = resource.key.name(),
            kind = %resource.kind,
            backend = resource.backend_name(),
            fence,
            outcome = Empty,
        );
        hold_span.follows_from(acquire_span);
        let held = Held::start(
            &self.inner.keeper,
            resource,
            token,
            fence,
            sent,
            &cfg,
            hold_span,
        );
        let guard = LockGuard::new(held);
        if self.is_shut_down() {
            // Shutdown began while we acquired: dropping the guard releases the lease.
            drop(guard);
            return Err(LockError::ShuttingDown);
        }
        Ok(guard)
    }
}

/// The `outcome` of a `lock.acquire` span that ended with `e`.
fn outcome_label(e: &LockError) -> &'static str {
    match e {
        LockError::Contended { .. } => "contended",
        LockError::AcquireTimeout { .. } => "timeout",
        LockError::ShuttingDown => "shutting_down",
        LockError::SelfWait { .. } => "self_wait",
        _ => "error",
    }
}
