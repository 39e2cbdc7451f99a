//! Graceful shutdown on a signal: release every lease when the process is asked to stop.

use std::future::Future;

use tokio::task::JoinHandle;

use super::{LockService, ShutdownReport};

impl LockService {
    /// Shut the service down when `signal` completes: a task waits for it, then runs
    /// [`shutdown`](LockService::shutdown) — waiters get `ShuttingDown`, renewals stop, every
    /// lease is released (so other instances take over at once instead of after a ttl). The
    /// handle yields the [`ShutdownReport`]; dropping it leaves the task running.
    ///
    /// With the feature `signal`, `locks_core::terminate()` completes on SIGTERM or Ctrl-C, so
    /// the one line is `locks.shutdown_on(locks_core::terminate());`. Any future works:
    ///
    /// ```
    /// # use locks_core::LockService; use locks_memory::MemoryBackend;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), locks_core::LockError> {
    /// let locks = LockService::new(MemoryBackend::new())?;
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let done = locks.shutdown_on(async {
    ///     let _ = stopped.await;
    /// });
    /// let guard = locks.acquire("job").await?;
    /// stop.send(()).ok(); // e.g. SIGTERM arrived
    /// let report = done.await.expect("shutdown task");
    /// assert_eq!(report.released, 1);
    /// assert!(guard.lost().await == locks_core::LostReason::Shutdown);
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (it spawns a task).
    pub fn shutdown_on<S>(&self, signal: S) -> JoinHandle<ShutdownReport>
    where
        S: Future<Output = ()> + Send + 'static,
    {
        let locks = self.clone();
        tokio::spawn(async move {
            signal.await;
            locks.shutdown().await
        })
    }
}

/// Completes on SIGTERM or Ctrl-C (SIGINT) — what orchestrators and terminals send to stop a
/// process — for [`LockService::shutdown_on`]. If a signal handler cannot be installed, that
/// signal is ignored (the other still works) and a warning is logged.
///
/// # Cancel safety
///
/// Cancel safe: dropping it stops listening.
#[cfg(feature = "signal")]
pub async fn terminate() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
