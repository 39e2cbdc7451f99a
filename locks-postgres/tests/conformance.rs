//! The shared conformance suites (mutex, primitives, and the mutex suite through a 1-permit
//! semaphore and a write lock) on a real PostgreSQL server, in real time. Every test gets a
//! schema of its own on the run's one shared server.

mod common;

use common::harness;

locks_testkit::conformance_tests!(harness, time = real);
locks_testkit::primitives_tests!(harness, time = real);
locks_testkit::adapter_conformance_tests!(harness, time = real);
