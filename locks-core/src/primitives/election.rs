//! Leader election: one leader per role, its fence as the term.

use std::future::Future;

use tokio::time::Instant;

use crate::backend::LeaseInfo;
use crate::error::LockError;
use crate::lease::{LeaseHandle, LockGuard};
use crate::options::{AcquireOptions, RetryPolicy};
use crate::service::LockService;
use crate::state::LostReason;

/// Leader election for a named role: one leader at a time, its fencing token as the term.
///
/// ```
/// use locks_core::LockService;
/// use locks_memory::MemoryBackend;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), locks_core::LockError> {
/// let locks = LockService::new(MemoryBackend::new())?;
/// let election = locks.election("scheduler")?;
/// let leadership = election.campaign().await?;
/// let leader = election.leader().await?.expect("someone leads");
/// assert_eq!(leader.owner, leadership.token());
/// assert_eq!(leader.fence, leadership.term());
/// leadership.resign().await?;
/// assert!(election.leader().await?.is_none());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Election {
    service: LockService,
    role: String,
}

/// Being the leader: a lease on the role. Dereferences to [`LeaseHandle`] (`lost()`,
/// `state()`, `fence()`, ...). Dropping it resigns in the background.
#[derive(Debug)]
#[must_use = "dropping a Leadership resigns at once"]
#[clippy::has_significant_drop]
pub struct Leadership {
    guard: LockGuard,
}

impl std::ops::Deref for Leadership {
    type Target = LeaseHandle;
    fn deref(&self) -> &LeaseHandle {
        &self.guard
    }
}

impl Leadership {
    /// The leadership term: the lease's fencing token, larger for every new leader. Stamp
    /// writes with it so a deposed leader's late writes can be rejected.
    pub fn term(&self) -> u64 {
        self.guard.fence()
    }

    /// Step down: stop renewing and release the role so another candidate can win.
    ///
    /// # Cancel safety
    ///
    /// Renewal has stopped once the future first runs; dropping it before the store answered
    /// leaves the lease to end by its ttl at the latest.
    pub async fn resign(self) -> Result<(), LockError> {
        self.guard.release().await
    }
}

impl Election {
    /// The role's name.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Campaign until elected (or the default wait timeout passes).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing (a lease an attempt
    /// in flight may have created is released in the background).
    pub async fn campaign(&self) -> Result<Leadership, LockError> {
        self.campaign_opts(AcquireOptions::default()).await
    }

    /// Campaign with these options (ttl = how long a crashed leader blocks the role).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing (a lease an attempt
    /// in flight may have created is released in the background).
    pub async fn campaign_opts(&self, opts: AcquireOptions) -> Result<Leadership, LockError> {
        let guard = self.service.acquire_opts(&self.role, opts).await?;
        Ok(Leadership { guard })
    }

    /// Become leader only if nobody leads now.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing (a lease an attempt
    /// in flight may have created is released in the background).
    pub async fn try_campaign(&self) -> Result<Leadership, LockError> {
        let guard = self.service.try_acquire(&self.role).await?;
        Ok(Leadership { guard })
    }

    /// Who leads now: owner token, remaining ttl, and term (`fence`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads the store.
    pub async fn leader(&self) -> Result<Option<LeaseInfo>, LockError> {
        self.service.inspect(&self.role).await
    }

    /// Keep campaigning and run `task` only while leadership holds.
    ///
    /// Each time this candidate is elected, `task` runs with the leadership's handle. When the
    /// leadership is lost (`lost()` fires: revoked, deadline passed, shutdown), the task's
    /// future is dropped — cancelled — and the candidate campaigns again. Since a holder's
    /// local deadline comes before the store's expiry, a leader cut off from the store stops
    /// before a new one can be elected. When `task` finishes by itself, the role is resigned
    /// and `run` returns `Ok`. `run` also returns `Ok` when the service shuts down; a
    /// permanent store error is returned as `Err`. Dropping the `run` future cancels the task
    /// and resigns in the background.
    ///
    /// A campaign that fails (its wait budget ran out, or a transient store error) is followed
    /// by the next one no sooner than `opts`' retry delay (the service's retry policy if
    /// `opts` sets none) after it began, growing with every failure in a row: exponential,
    /// capped at the policy's `max_delay`, jittered. So a store that fails at once is asked
    /// a few times a second at most, not in a tight loop, while a campaign that waited its
    /// whole budget is followed at once. Being elected resets the backoff.
    ///
    /// Candidates of one service wait for the role in a local first-come, first-served line
    /// (the role is a mutex); across services there is no queue (see
    /// [`LockService::acquire_opts`]).
    ///
    /// To hand leadership over cleanly (a deploy), use [`run_until`](Election::run_until):
    /// [`LockService::shutdown`] releases the role at once, so the next leader may start while
    /// this task is still being cancelled — the term (fence) protects the resource then.
    ///
    /// # Cancel safety
    ///
    /// As [`run_until`](Election::run_until).
    pub async fn run<F, Fut>(&self, opts: AcquireOptions, task: F) -> Result<(), LockError>
    where
        F: FnMut(LeaseHandle) -> Fut,
        Fut: Future<Output = ()>,
    {
        self.run_until(opts, task, std::future::pending()).await
    }

    /// [`run`](Election::run), until `stop` completes: then the leader task (if running) is
    /// cancelled *first*, the role is resigned, and `run_until` returns `Ok`. A stop while
    /// campaigning just stops campaigning.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the leader task (if running) and resigns in the
    /// background; while campaigning, it holds nothing.
    pub async fn run_until<F, Fut, S>(
        &self,
        opts: AcquireOptions,
        mut task: F,
        stop: S,
    ) -> Result<(), LockError>
    where
        F: FnMut(LeaseHandle) -> Fut,
        Fut: Future<Output = ()>,
        S: Future<Output = ()>,
    {
        let mut stop = std::pin::pin!(stop);
        let retry = opts
            .retry
            .clone()
            .unwrap_or_else(|| self.service.default_retry().clone());
        let mut failed: u32 = 0;
        loop {
            let started = Instant::now();
            let campaign = tokio::select! {
                r = self.campaign_opts(opts.clone()) => r,
                _ = &mut stop => return Ok(()),
            };
            let leadership = match campaign {
                Ok(l) => l,
                Err(LockError::ShuttingDown) => return Ok(()),
                Err(e) if may_win_later(&e) => {
                    failed = failed.saturating_add(1);
                    tracing::debug!(role = %self.role, error = %e, failed, "campaign failed");
                    if pause(&retry, failed, started, &mut stop).await {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            failed = 0;
            let lost = leadership.lost();
            let ended = {
                let work = task(leadership.guard.handle());
                tokio::select! {
                    _ = work => Ended::TaskDone,
                    reason = lost => Ended::Lost(reason),
                    _ = &mut stop => Ended::Stopped,
                }
                // `work` (the leader task) is dropped here, before resigning.
            };
            match ended {
                Ended::TaskDone | Ended::Stopped => {
                    return match leadership.resign().await {
                        Ok(()) | Err(LockError::NotOwner { .. }) | Err(LockError::Lost { .. }) => {
                            Ok(())
                        }
                        Err(e) => Err(e),
                    };
                }
                Ended::Lost(reason) => {
                    tracing::warn!(role = %self.role, term = leadership.term(), %reason,
                        "leadership lost; leader task cancelled");
                    drop(leadership);
                    if reason == LostReason::Shutdown {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Whether a failed campaign may succeed if tried again: its wait budget ran out, or the
/// store failed for a transient reason.
fn may_win_later(e: &LockError) -> bool {
    match e {
        LockError::AcquireTimeout { .. } => true,
        LockError::Backend { source, .. } => source.is_transient(),
        _ => false,
    }
}

/// Wait before the next campaign after `failed` campaigns in a row failed: until the retry
/// policy's delay for `failed` attempts (exponential, capped, jittered) has passed since the
/// failed campaign `started`. A campaign that used up a long wait budget is followed at once;
/// one that failed fast (a store that refuses at once, a zero wait budget) is spaced out, so
/// the loop never spins. `true` when `stop` completed meanwhile.
async fn pause<S>(
    retry: &RetryPolicy,
    failed: u32,
    started: Instant,
    stop: &mut std::pin::Pin<&mut S>,
) -> bool
where
    S: Future<Output = ()>,
{
    let wait = retry.delay(failed).saturating_sub(started.elapsed());
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stop => true,
    }
}

enum Ended {
    TaskDone,
    Stopped,
    Lost(LostReason),
}

impl LockService {
    /// Leader election for `role`.
    pub fn election(&self, role: &str) -> Result<Election, LockError> {
        self.key(role)?;
        Ok(Election {
            service: self.clone(),
            role: role.to_owned(),
        })
    }
}
