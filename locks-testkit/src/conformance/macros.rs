//! The macros a backend crate invokes to instantiate the suites.

/// Instantiate the mutex suite for a backend. See the [module docs](crate::conformance).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!($factory, time = paused);
    };
    ($factory:path, time = $time:ident) => {
        /// The locks-testkit mutex suite.
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            $crate::__mutex_cases!(__suite_tests!($factory, $time, MUTEX));
        }
    };
}

/// Instantiate the semaphore, read-write lock and coordination suites for a backend.
#[macro_export]
macro_rules! primitives_tests {
    ($factory:path) => {
        $crate::primitives_tests!($factory, time = paused);
    };
    ($factory:path, time = $time:ident) => {
        /// The locks-testkit primitives suites.
        mod primitives {
            #[allow(unused_imports)]
            use super::*;
            $crate::__semaphore_cases!(__suite_tests!($factory, $time, SEMAPHORE));
            $crate::__rwlock_cases!(__suite_tests!($factory, $time, RWLOCK));
            $crate::__coordination_cases!(__suite_tests!($factory, $time, COORDINATION));
        }
    };
}

/// Run the mutex suite through a one-permit semaphore and through a write lock.
#[macro_export]
macro_rules! adapter_conformance_tests {
    ($factory:path $(, time = $time:ident)?) => {
        /// The mutex suite through a one-permit semaphore.
        mod semaphore_as_mutex {
            #[allow(unused_imports)]
            use super::*;
            async fn adapted() -> $crate::conformance::adapters::AdaptedHarness<impl $crate::Harness> {
                $crate::conformance::adapters::AdaptedHarness::semaphore($factory().await)
            }
            $crate::conformance_tests!(adapted $(, time = $time)?);
        }
        /// The mutex suite through the write side of a read-write lock.
        mod write_lock_as_mutex {
            #[allow(unused_imports)]
            use super::*;
            async fn adapted() -> $crate::conformance::adapters::AdaptedHarness<impl $crate::Harness> {
                $crate::conformance::adapters::AdaptedHarness::write_lock($factory().await)
            }
            $crate::conformance_tests!(adapted $(, time = $time)?);
        }
    };
}

/// One test per case of a suite's list.
#[doc(hidden)]
#[macro_export]
macro_rules! __suite_tests {
    ($factory:path, paused, $suite:ident ; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "current_thread", start_paused = true)]
            async fn $case() {
                $crate::conformance::$suite
                    .run(stringify!($case), ::std::boxed::Box::new($factory().await))
                    .await;
            }
        )*
    };
    ($factory:path, real, $suite:ident ; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::conformance::$suite
                    .run(stringify!($case), ::std::boxed::Box::new($factory().await))
                    .await;
            }
        )*
    };
}
