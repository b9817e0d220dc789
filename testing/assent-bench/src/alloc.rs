//! A counting global allocator: live heap bytes at any moment (NF-3) and allocation calls (the
//! allocations an NF-2 lifecycle makes). It counts on top of the allocator the `assent` binary
//! ships with, so the engine is timed on the same heap it runs on.

use std::{
    alloc::{GlobalAlloc, Layout},
    sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering},
};

/// The `assent` binary's allocator (its default `jemalloc` feature).
#[cfg(not(any(target_env = "msvc", feature = "system-allocator")))]
const HEAP: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
/// The system's malloc: where jemalloc does not build, or for heap profilers such as heaptrack
/// that follow malloc (the bench's `system-allocator` feature).
#[cfg(any(target_env = "msvc", feature = "system-allocator"))]
const HEAP: std::alloc::System = std::alloc::System;

/// Wraps the gateway's allocator and tracks live bytes.
pub(crate) struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);

/// Counting is on from the start and switched off once NF-3 is measured: the shared counters
/// are cache lines both worker threads write on every allocation, which cost the throughput
/// figures about 8% of their CPU time. Timed runs go without it.
static COUNTING: AtomicBool = AtomicBool::new(true);

/// Stops counting; [`live_bytes`] is meaningless from then on.
pub(crate) fn stop_counting() {
    COUNTING.store(false, Ordering::Relaxed);
}

/// Counts allocation calls again (live bytes stay meaningless once stopped).
pub(crate) fn count_calls() {
    COUNTING.store(true, Ordering::Relaxed);
}

fn count(delta: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_add(delta, Ordering::Relaxed);
        if delta > 0 {
            CALLS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Allocation calls counted so far (`alloc`, and `realloc` that grows).
pub(crate) fn calls() -> u64 {
    CALLS.load(Ordering::SeqCst)
}

/// Live heap bytes now.
pub(crate) fn live_bytes() -> isize {
    LIVE.load(Ordering::SeqCst)
}

fn size(layout: Layout) -> isize {
    isize::try_from(layout.size()).unwrap_or(isize::MAX)
}

// SAFETY: every method forwards to `HEAP` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is exactly that allocator's; the counter is a side effect only.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(size(layout));
        // SAFETY: forwarded unchanged (see above).
        unsafe { HEAP.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(size(layout));
        // SAFETY: forwarded unchanged (see above). jemalloc's own zeroing skips fresh pages.
        unsafe { HEAP.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-size(layout));
        // SAFETY: forwarded unchanged (see above).
        unsafe { HEAP.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(isize::try_from(new_size).unwrap_or(isize::MAX) - size(layout));
        // SAFETY: forwarded unchanged (see above).
        unsafe { HEAP.realloc(ptr, layout, new_size) }
    }
}
