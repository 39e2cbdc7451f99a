//! Workspace integration tests live in `tests/`. The README's Rust examples are compiled and
//! run as this crate's doctests, so the README cannot drift from the API.
#![doc = include_str!("../../README.md")]
