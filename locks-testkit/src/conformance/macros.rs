//! The macros a backend crate invokes to instantiate the suites.

/// Instantiate the mutex suite for a backend. See the [module docs](crate::conformance).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path $(, time = $time:ident)?) => {
        $crate::__suites_module! {
            conformance, "The locks-testkit mutex suite.", $factory $(, time = $time)?;
            __mutex_cases => MUTEX,
        }
    };
}

/// Instantiate the semaphore, read-write lock, coordination and fair mutex suites for a
/// backend.
#[macro_export]
macro_rules! primitives_tests {
    ($factory:path $(, time = $time:ident)?) => {
        $crate::__suites_module! {
            primitives, "The locks-testkit primitives suites.", $factory $(, time = $time)?;
            __semaphore_cases => SEMAPHORE,
            __rwlock_cases => RWLOCK,
            __coordination_cases => COORDINATION,
            __fair_cases => FAIR,
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

/// A test module for a backend: one test per case of each listed suite (`list => SUITE`), on
/// paused tokio time unless `time = real` says otherwise.
#[doc(hidden)]
#[macro_export]
macro_rules! __suites_module {
    ($module:ident, $doc:literal, $factory:path; $($lists:tt)+) => {
        $crate::__suites_module! { $module, $doc, $factory, time = paused; $($lists)+ }
    };
    (
        $module:ident, $doc:literal, $factory:path, time = $time:ident;
        $($list:ident => $suite:ident),+ $(,)?
    ) => {
        #[doc = $doc]
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $($crate::$list!(__suite_tests!($factory, $time, $suite));)+
        }
    };
}

/// One test per case of a suite's list, on a paused-time or a real-time runtime.
#[doc(hidden)]
#[macro_export]
macro_rules! __suite_tests {
    (
        @runtime $runtime:meta, $factory:path, $suite:ident;
        $($module:ident :: $case:ident),* $(,)?
    ) => {
        $(
            #[$runtime]
            async fn $case() {
                $crate::conformance::$suite
                    .run(stringify!($case), ::std::boxed::Box::new($factory().await))
                    .await;
            }
        )*
    };
    ($factory:path, paused, $($rest:tt)*) => {
        $crate::__suite_tests!(
            @runtime ::tokio::test(flavor = "current_thread", start_paused = true),
            $factory, $($rest)*
        );
    };
    ($factory:path, real, $($rest:tt)*) => {
        $crate::__suite_tests!(
            @runtime ::tokio::test(flavor = "multi_thread", worker_threads = 2),
            $factory, $($rest)*
        );
    };
}
