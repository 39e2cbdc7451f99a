//! Compile-time checks of `#[with_lock]`: every misuse is a compile error that names the
//! problem (snapshots in `ui/fail/*.stderr`), and the supported shapes compile and run
//! (`ui/pass/*.rs`).
//!
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo nextest run -p locks-macros`, then
//! read them.

#[test]
fn with_lock_ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
