//! The acquire loop: one attempt, or waiting with notifications, backoff and the local line,
//! then registering the lease with the keeper.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::LockService;
use super::line::{join_line, note_contended};
use crate::backend::{AcquireResult, ReleaseListener, Wake};
use crate::error::{BackendError, LockError};
use crate::lease::LockGuard;
use crate::lease::held::Held;
use crate::lease::resource::Resource;
use crate::lease::shared::LeaseConfig;
use crate::options::Resolved;
use crate::token::OwnerToken;

/// Random spread of the yields after a release notification (see [`shuffle_after_wake`]).
const WAKE_SPREAD: usize = 4;
/// Extra yields per missing level of age (see [`shuffle_after_wake`]).
const AGE_STEP: usize = 2;
/// Failed attempts after which a waiter gets no extra yields.
const AGE_LEVELS: usize = 6;

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

/// Releases a lease that an attempt may have created when the acquire ends without a guard
/// (error, timeout, shutdown, or the caller dropping the future).
struct MaybeHeld {
    armed: Option<(Arc<Resource>, OwnerToken)>,
}

impl Drop for MaybeHeld {
    fn drop(&mut self) {
        if let Some((resource, token)) = self.armed.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = resource.release(token).await;
            });
        }
    }
}

pub(crate) enum Mode {
    Wait,
    Once,
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

    pub(crate) async fn run_acquire(
        &self,
        resource: Arc<Resource>,
        opts: &Resolved,
        mode: Mode,
    ) -> Result<LockGuard, LockError> {
        if self.is_shut_down() {
            return Err(LockError::ShuttingDown);
        }
        let backend = resource.backend_name();
        let start = Instant::now();
        let deadline = start
            .checked_add(opts.wait_timeout)
            .unwrap_or_else(|| start + Duration::from_secs(86400 * 365 * 30));
        // The key's name is copied into a `String` only for an error.
        let line_key = (resource.key.clone(), resource.kind);
        let name = line_key.0.name();
        let token = OwnerToken::new();
        let timeout = |attempts: u32, last_error: Option<BackendError>| {
            metrics::counter!("locks_acquire_total", "backend" => backend, "result" => "timeout")
                .increment(1);
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
        let (ticket, contended) = match mode {
            Mode::Wait if resource.kind.is_exclusive() => {
                match join_line(&self.inner.lines, &self.inner.closing, &line_key, deadline).await {
                    Ok(Some((t, contended))) => (Some(t), contended),
                    Ok(None) => return Err(timeout(0, None)),
                    Err(()) => return Err(LockError::ShuttingDown),
                }
            }
            _ => (None, false),
        };

        let mut maybe_held = MaybeHeld { armed: None };
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
        if contended {
            shuffle_after_wake(failed).await;
        }
        loop {
            if self.is_shut_down() {
                return Err(LockError::ShuttingDown);
            }
            attempts = attempts.saturating_add(1);
            let sent = Instant::now();
            maybe_held.armed = Some((Arc::clone(&resource), token));
            let hint = match resource.try_acquire(token, opts.ttl).await {
                Ok(AcquireResult::Acquired(lease)) => {
                    maybe_held.armed = None;
                    if listened_first && attempts == 1 {
                        // Free at once after all: stop treating the key as contended.
                        note_contended(&self.inner.lines, &line_key, None);
                    }
                    metrics::counter!("locks_acquire_total", "backend" => backend, "result" => "acquired")
                        .increment(1);
                    metrics::histogram!("locks_acquire_wait_seconds", "backend" => backend)
                        .record(start.elapsed().as_secs_f64());
                    return self.register(resource, token, lease.fence, sent, opts);
                }
                Ok(AcquireResult::Held { remaining }) => {
                    // Acquire is idempotent per token: "held" means not by us.
                    if !resource.kind.leaves_mark_when_waiting() {
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
                    None
                }
                Err(e) => {
                    metrics::counter!("locks_acquire_total", "backend" => backend, "result" => "error")
                        .increment(1);
                    return Err(LockError::backend("acquire", e));
                }
            };
            if let Mode::Once = mode {
                if let Some(e) = last_error {
                    return Err(LockError::backend("acquire", e));
                }
                metrics::counter!("locks_acquire_total", "backend" => backend, "result" => "contended")
                    .increment(1);
                return Err(LockError::Contended {
                    key: name.to_owned(),
                    remaining: hint,
                });
            }
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
            let mut delay = opts.retry.delay(attempts);
            if let Some(remaining) = hint {
                delay = delay.min(remaining.max(Duration::from_millis(1)));
            }
            delay = delay.min(deadline.saturating_duration_since(now));
            let waited = match listener.as_mut() {
                Some(l) => tokio::select! {
                    r = l.wait_for_release(delay) => r,
                    _ = self.inner.closing.cancelled() => return Err(LockError::ShuttingDown),
                },
                None => tokio::select! {
                    _ = tokio::time::sleep(delay) => Ok(Wake::TimedOut),
                    _ = self.inner.closing.cancelled() => return Err(LockError::ShuttingDown),
                },
            };
            match waited {
                Ok(Wake::Notified) => shuffle_after_wake(failed).await,
                Ok(Wake::TimedOut) => {}
                Err(e) => {
                    tracing::debug!(key = %name, error = %e, "release listener failed; listening again");
                    listener = None;
                }
            }
        }
    }

    fn register(
        &self,
        resource: Arc<Resource>,
        token: OwnerToken,
        fence: u64,
        sent: Instant,
        opts: &Resolved,
    ) -> Result<LockGuard, LockError> {
        let cfg = LeaseConfig {
            ttl: opts.ttl,
            max_ttl: self.inner.defaults.max_ttl,
            auto_renew: opts.auto_renew,
            renew_fraction: opts.renew_fraction,
            max_hold: opts.max_hold,
        };
        let held = Held::start(&self.inner.keeper, resource, token, fence, sent, &cfg);
        let guard = LockGuard::new(held);
        if self.is_shut_down() {
            // Shutdown began while we acquired: dropping the guard releases the lease.
            drop(guard);
            return Err(LockError::ShuttingDown);
        }
        Ok(guard)
    }
}
