//! Giving freed memory back to the system after many clients have left.
//!
//! Each connection thread allocates a little (its client's entry, buffers while it reads),
//! and glibc's allocator serves threads from several arenas; what ten thousand departed
//! clients freed stays mapped in those arenas, scattered between live blocks, so the
//! process's resident memory would stay near its peak. `malloc_trim(0)` returns the free
//! pages of every arena to the kernel. It costs a walk over the arenas, so the server calls
//! it only when a good part of its clients has gone ([`Trimmer`]), never per client.
//!
//! `malloc_trim` is glibc's; elsewhere this does nothing. It is declared by hand, as the
//! other C functions in `support/` are (no `libc` crate).

/// Says when the client count has fallen well below its recent peak: the moment to give
/// memory back ([`give_back_freed_memory`]).
#[derive(Debug, Default)]
pub struct Trimmer {
    peak: usize,
}

/// The fall from the peak that is worth a trim: a tenth of it, and at least this many
/// clients (a few departures free too little to matter).
const WORTH_IT: usize = 256;

impl Trimmer {
    /// Notes the current number of clients: it is time to give memory back when it has
    /// fallen by a tenth of the peak (and by at least [`WORTH_IT`]) since the last time, or
    /// to none at all.
    /// Returns whether now is such a moment; the peak then starts again from `clients`.
    pub fn due(&mut self, clients: usize) -> bool {
        self.peak = self.peak.max(clients);
        let fallen = self.peak - clients;
        let all_gone = clients == 0 && fallen > 0;
        let due = all_gone || (fallen >= WORTH_IT && fallen >= self.peak / 10);
        if due {
            self.peak = clients;
        }
        due
    }
}

/// Returns the free pages of every allocator arena to the system (`malloc_trim(0)`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn give_back_freed_memory() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: malloc_trim takes a byte count and touches only the allocator's own state.
    let released = unsafe { malloc_trim(0) };
    log::debug!(
        "gave freed memory back to the system released={}",
        released != 0
    );
}

/// Not glibc: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back_freed_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_is_due_only_after_a_large_fall_or_when_every_client_left() {
        let mut trimmer = Trimmer::default();
        assert!(!trimmer.due(10_000));
        assert!(!trimmer.due(9_500), "a 5 % fall is not worth it");
        assert!(trimmer.due(8_000));
        assert!(!trimmer.due(8_000), "the peak starts again from 8,000");
        assert!(trimmer.due(100));
        assert!(!trimmer.due(50), "50 fewer is below WORTH_IT");
        assert!(trimmer.due(0), "every client gone is always worth it");
        assert!(!trimmer.due(0));
    }
}
