//! A counting global allocator: `std::alloc::System` plus one relaxed counter of allocation
//! calls, so the profile rows can print allocations per cycle (every thread included).
//! Deallocations are not counted; `realloc` counts as one allocation.
//!
//! Counting is off unless [`Counting::enable`]d (the profile rows turn it on around their own
//! measurement): off, an allocation costs one relaxed load of a flag nobody writes, so the
//! other figures (the memory backend's nanoseconds above all) do not pay for a counter that
//! every thread would write to.

// The one unsafe item of the benchmark: `GlobalAlloc` is an unsafe trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Count one allocation call, if counting is on.
#[inline]
fn count() {
    if ENABLED.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// `System`, counting every `alloc`, `alloc_zeroed` and `realloc` while enabled.
#[derive(Debug)]
pub struct Counting;

impl Counting {
    /// Turn counting on until the returned guard is dropped.
    pub fn enable() -> Enabled {
        ENABLED.store(true, Ordering::SeqCst);
        Enabled(())
    }
}

/// Counting is on while this lives.
#[derive(Debug)]
pub struct Enabled(());

impl Drop for Enabled {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::SeqCst);
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counter touches no memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's guarantees for `alloc` are passed on as they are.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as for `dealloc`; `new_size` is the caller's, checked by the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocation calls counted so far (every thread, while counting was on).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use std::hint::black_box;

    use super::*;

    #[test]
    fn counts_only_while_enabled() {
        let before = allocations();
        drop(black_box(Box::new(1u64)));
        assert_eq!(allocations(), before, "counted while off");
        let on = Counting::enable();
        drop(black_box(Box::new(2u64)));
        drop(black_box(vec![0u8; 100]));
        assert!(allocations() >= before + 2, "not counted while on");
        drop(on);
        let after = allocations();
        drop(black_box(Box::new(3u64)));
        assert_eq!(allocations(), after, "counted after the guard was dropped");
    }
}
