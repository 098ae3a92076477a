//! Allocation tracking: a global allocator that records the largest single allocation
//! of the current thread, so a test can show that bad input is refused before anything
//! sized by it is allocated.

use super::*;

/// Forwards to the system allocator and records, per thread, the largest single request.
/// Per thread, because the test harness runs tests on parallel threads.
struct TrackingAllocator;

thread_local! {
    /// The largest allocation (or reallocation target) this thread asked for since the last
    /// reset. `const`-initialised and without a destructor, so reading it never allocates.
    static LARGEST_ALLOCATION: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(size: usize) {
    // `try_with` fails only while the thread is being torn down; nothing to record then.
    let _ = LARGEST_ALLOCATION.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the bookkeeping touches only a thread-local `Cell`.
unsafe impl GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: the caller's guarantees about `layout` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`, since every allocation
        // above is forwarded to it.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        // SAFETY: as for `dealloc`; the caller guarantees `new_size` is valid for `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator;

/// Anything this small is an error message or bookkeeping, not a buffer sized by the input.
pub(crate) const SMALL_ALLOCATION: usize = 4096;

/// Generous on purpose: the work is a few comparisons, but a loaded CI machine can pause a
/// test thread for tens of milliseconds.
pub(crate) const QUICKLY: Duration = Duration::from_millis(500);

/// Runs `f` and returns its result with the largest single allocation it made on this
/// thread.
pub(crate) fn largest_allocation_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST_ALLOCATION.with(|largest| largest.set(0));
    let result = f();
    (result, LARGEST_ALLOCATION.with(Cell::get))
}

/// Asserts that `f` fails with a protocol error, quickly and without allocating more than
/// [`SMALL_ALLOCATION`] bytes at once. Returns the error's reason.
#[track_caller]
pub(crate) fn assert_refused_cheaply<T: std::fmt::Debug>(
    what: &str,
    f: impl FnOnce() -> dsys::Result<T>,
) -> String {
    let start = Instant::now();
    let (result, largest) = largest_allocation_during(f);
    let elapsed = start.elapsed();
    let reason = assert_protocol_error(result, what);
    assert!(
        largest <= SMALL_ALLOCATION,
        "{what}: allocated {largest} bytes at once before refusing"
    );
    assert!(elapsed < QUICKLY, "{what}: took {elapsed:?} to refuse");
    reason
}
