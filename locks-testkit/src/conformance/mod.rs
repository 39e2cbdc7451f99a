//! The conformance suites: one set of async tests every [`LockBackend`](locks_core::LockBackend)
//! runs, for the lease kinds it supports.
//!
//! | suite | kinds | cases |
//! |---|---|---|
//! | [`MUTEX`] | `Mutex` | mutual exclusion, ownership, fencing, expiry, renewal and loss, waiting, retries, shutdown, `with_lock`, validation |
//! | [`SEMAPHORE`] | `Permit` | the permit limit, crashed holders, renewal, changing the count, wake-ups, validation |
//! | [`RWLOCK`] | `Read`, `Write` | readers share, writers exclude, writer preference, renewal |
//! | [`COORDINATION`] | `Mutex` | leader election, ordered multi-lock, listing live leases |
//! | [`FAIR`] | `FairMutex` | FIFO order across services by direct hand-off, waiters that give up leave the queue |
//!
//! Besides, the mutex suite runs again through [`adapters`] (a one-permit semaphore and the
//! write side of a read-write lock), so every primitive keeps mutual exclusion.
//!
//! A backend crate instantiates the suites with a factory that returns a fresh [`Harness`]
//! (its own type, or a [`BackendHarness`] made of the backend and an expire function):
//!
//! ```ignore
//! async fn harness() -> MyHarness { MyHarness::new().await }
//! locks_testkit::conformance_tests!(harness);               // tokio paused time
//! locks_testkit::primitives_tests!(harness);
//! locks_testkit::adapter_conformance_tests!(harness);
//! // or, for a networked store with its own clock:
//! locks_testkit::conformance_tests!(harness, time = real);
//! ```
//!
//! The invoking crate needs `tokio` (features `macros`, `rt`, `test-util`) as a
//! dev-dependency. With `time = paused` every test runs on a current-thread runtime with
//! tokio's clock paused, so the memory backend's tests take no wall time; `time = real` is for
//! stores with their own clock (Redis) and keeps every ttl short.
//!
//! **One case list per suite.** Each suite's cases are written once, in its list macro; the
//! list builds both the suite's registry ([`MUTEX`], ...) and the tests the macros generate, one
//! per case. The case functions are private and reachable only through the registry, so a case
//! missing from its list is dead code, which `clippy -D warnings` rejects.
//!
//! **Capability-aware.** A generated test runs its case when the backend supports the suite's
//! kinds; otherwise it checks that the service refuses the primitive with
//! `LockError::Unsupported` when it is created. A backend never skips a case silently. Run one
//! case by hand with [`Suite::run`].

pub mod adapters;
mod common;
mod coordination;
mod fair;
mod listing;
mod macros;
mod mutex;
mod rwlock;
mod semaphore;
mod waiting;

pub use common::{BackendHarness, Case, CaseFuture, Harness, Suite, service};
use locks_core::LeaseKind;

/// The one case list of the mutex suite.
#[doc(hidden)]
#[macro_export]
macro_rules! __mutex_cases {
    ($cb:ident ! ($($args:tt)*)) => {
        $crate::$cb! { $($args)* ;
            mutex::mutual_exclusion_100_tasks,
            mutex::try_acquire_fails_while_held,
            mutex::non_owner_cannot_release_or_extend,
            mutex::acquire_is_idempotent_for_the_same_token,
            mutex::expiry_lets_the_next_holder_in,
            mutex::fencing_strictly_increases,
            mutex::extend_resets_ttl_and_later_renewals_use_it,
            mutex::renewal_keeps_lease_past_ttl,
            mutex::lost_fires_when_store_revokes,
            mutex::lost_fires_at_local_deadline_when_store_unreachable,
            waiting::transient_renewal_failure_is_unknown_then_held,
            waiting::max_hold_stops_renewal,
            waiting::wait_budget_is_honoured,
            waiting::max_attempts_limits_waiting,
            waiting::waiter_gets_lock_after_release,
            waiting::releaser_does_not_keep_winning,
            waiting::transient_acquire_errors_are_retried,
            waiting::lost_acquire_reply_does_not_leak_a_lease,
            waiting::shutdown_releases_and_refuses,
            waiting::with_lock_releases_on_success_error_and_panic,
            waiting::with_lock_releases_on_cancellation,
            waiting::dropped_guard_releases_in_background,
            waiting::validation_errors_are_typed_and_write_nothing,
        }
    };
}

/// The one case list of the semaphore suite.
#[doc(hidden)]
#[macro_export]
macro_rules! __semaphore_cases {
    ($cb:ident ! ($($args:tt)*)) => {
        $crate::$cb! { $($args)* ;
            semaphore::semaphore_never_exceeds_its_permits,
            semaphore::semaphore_crashed_holder_permit_returns_after_ttl,
            semaphore::semaphore_permits_renew_and_report_loss,
            semaphore::semaphore_permit_count_can_change,
            semaphore::semaphore_waiter_is_woken_by_release,
            semaphore::primitive_inputs_are_validated,
        }
    };
}

/// The one case list of the read-write lock suite.
#[doc(hidden)]
#[macro_export]
macro_rules! __rwlock_cases {
    ($cb:ident ! ($($args:tt)*)) => {
        $crate::$cb! { $($args)* ;
            rwlock::rwlock_readers_share_writers_exclude,
            rwlock::rwlock_writer_is_not_starved_by_readers,
            rwlock::rwlock_abandoned_writer_does_not_block_readers,
            rwlock::rwlock_leases_renew_and_report_loss,
        }
    };
}

/// The one case list of the coordination suite (election, multi-lock).
#[doc(hidden)]
#[macro_export]
macro_rules! __coordination_cases {
    ($cb:ident ! ($($args:tt)*)) => {
        $crate::$cb! { $($args)* ;
            coordination::election_one_leader_with_increasing_terms,
            coordination::election_task_cancelled_before_next_leader_starts,
            coordination::election_run_returns_on_shutdown,
            coordination::multi_lock_opposite_orders_never_deadlock,
            coordination::multi_lock_rolls_back_on_timeout,
            listing::list_reports_live_leases_in_bounded_pages,
        }
    };
}

/// The one case list of the fair mutex suite.
#[doc(hidden)]
#[macro_export]
macro_rules! __fair_cases {
    ($cb:ident ! ($($args:tt)*)) => {
        $crate::$cb! { $($args)* ;
            fair::fair_waiters_get_the_lease_in_arrival_order_by_hand_off,
            fair::fair_waiters_that_give_up_leave_the_queue,
        }
    };
}

/// Builds a suite's registry from its case list.
#[doc(hidden)]
#[macro_export]
macro_rules! __suite_registry {
    ($name:literal, $kinds:expr ; $($module:ident :: $case:ident),* $(,)?) => {
        Suite {
            name: $name,
            kinds: $kinds,
            cases: &[$(
                Case {
                    name: stringify!($case),
                    run: |h| Box::pin($module::$case(h)),
                },
            )*],
        }
    };
}

/// The mutex suite.
pub static MUTEX: Suite = __mutex_cases!(__suite_registry!("mutex", &[LeaseKind::Mutex]));

/// The semaphore suite.
pub static SEMAPHORE: Suite = __semaphore_cases!(__suite_registry!(
    "semaphore",
    &[LeaseKind::Permit { limit: 1 }]
));

/// The read-write lock suite.
pub static RWLOCK: Suite = __rwlock_cases!(__suite_registry!(
    "rwlock",
    &[LeaseKind::Read, LeaseKind::Write]
));

/// The coordination suite (leader election, ordered multi-lock and listing, on mutex leases).
pub static COORDINATION: Suite =
    __coordination_cases!(__suite_registry!("coordination", &[LeaseKind::Mutex]));

/// The fair mutex suite (fair mode: a store-side FIFO queue with direct hand-off).
pub static FAIR: Suite = __fair_cases!(__suite_registry!("fair", &[LeaseKind::FairMutex]));

/// Every suite, for tools that check coverage.
pub static SUITES: [&Suite; 5] = [&MUTEX, &SEMAPHORE, &RWLOCK, &COORDINATION, &FAIR];
