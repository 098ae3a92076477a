//! Giving freed memory back to the system after many clients have left: `malloc_trim`, a
//! [`Trimmer`] that decides when it is worth its cost (never per client), and a cap on
//! glibc's allocator arenas ([`limit_arenas`]).
//!
//! **Who calls it.** The server's `trim` thread (`roles/server/trim.rs`), which owns the
//! [`Trimmer`], and the server's `run` at start (`limit_arenas`). glibc only; elsewhere
//! this does nothing. `malloc_trim` is declared by hand (no `libc` crate).
//!
//! Why resident memory stays near its peak without it, and what a trim gives back,
//! measured: `docs/thread-per-connection.md`, "What a thread, a client and a writer cost".
//! `malloc_trim` is glibc's (from `sys.rs`); elsewhere this does nothing.

use std::time::{Duration, Instant};

/// Says when the client count has fallen well below its recent peak and the departures
/// have paused: the moment to give memory back ([`give_back_freed_memory`]).
///
/// Not during the departures: a trim then competes for the arenas' locks with every
/// departing thread, for pages that are still being freed. And a departing client's threads
/// free the rest of their memory only as they end, a little after the client is gone from
/// the count (a writer lingers for a second in case more frames come), while glibc gives
/// back nothing by itself from the middle of an arena. So each trim is followed by one
/// more, [`SETTLE`] later, for what those threads freed.
#[derive(Debug, Default)]
pub struct Trimmer {
    peak: usize,
    last: usize,
    follow_up: Option<Instant>,
}

/// The fall from the peak that is worth a trim: a tenth of it, and at least this many
/// clients (a few departures free too little to matter).
const WORTH_IT: usize = 256;

/// How long after a trim the threads of the clients that just left have surely ended
/// (their connection threads at once, their writers after `WRITER_LINGER`, 1 s).
pub const SETTLE: Duration = Duration::from_secs(3);

impl Trimmer {
    /// Notes the current number of clients at `now`, as counted once in a while: it is
    /// time to give memory back when the count has fallen by a tenth of the peak (and by
    /// at least [`WORTH_IT`]), or to none at all, and is the same as at the last call; and
    /// once more [`SETTLE`] after each such time. Returns whether now is such a moment;
    /// after a fall the peak starts again from `clients`.
    pub fn due(&mut self, clients: usize, now: Instant) -> bool {
        let paused = clients == self.last;
        self.last = clients;
        self.peak = self.peak.max(clients);
        let fallen = self.peak - clients;
        let large =
            (clients == 0 && fallen > 0) || (fallen >= WORTH_IT && fallen >= self.peak / 10);
        if large && paused {
            self.peak = clients;
            self.follow_up = Some(now + SETTLE);
            return true;
        }
        match self.follow_up {
            Some(at) if now >= at => {
                self.follow_up = None;
                true
            }
            _ => false,
        }
    }
}

/// Caps how many arenas glibc's allocator makes, at one per core.
///
/// glibc gives threads arenas of their own, up to eight per core, so that threads on
/// different cores rarely wait for each other's allocations. With thousands of threads each
/// allocating a little, every arena ends up with live blocks scattered over it, and what a
/// trim can give back shrinks: with the default 16 arenas on the 2-core development
/// machine, a server that had held 10,000 clients kept about 2.5 times its starting memory
/// after they left; with 2, about 1.8 times (docs/thread-per-connection.md). No more threads
/// than cores run at once, so one arena per core is still enough to keep them from waiting
/// on each other. Call it before starting threads; it affects arenas made from then on.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit_arenas() {
    /// glibc's `M_ARENA_MAX` (malloc.h).
    const M_ARENA_MAX: i32 = -8;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let arenas = i32::try_from(cores).unwrap_or(i32::MAX);
    super::sys::mallopt(M_ARENA_MAX, arenas);
}

/// Not glibc: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_arenas() {}

/// Returns the free pages of every allocator arena to the system (`malloc_trim(0)`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn give_back_freed_memory() {
    let released = super::sys::malloc_trim(0);
    log::debug!("gave freed memory back to the system released={released}");
}

/// Not glibc: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back_freed_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_is_due_after_a_large_fall_once_the_departures_pause() {
        let mut trimmer = Trimmer::default();
        let now = Instant::now();
        assert!(!trimmer.due(10_000, now));
        assert!(!trimmer.due(9_500, now), "a 5 % fall is not worth it");
        assert!(!trimmer.due(8_000, now), "clients are still leaving");
        assert!(
            trimmer.due(8_000, now),
            "a 20 % fall, and the departures paused"
        );
        assert!(!trimmer.due(8_000, now), "the peak starts again from 8,000");
        assert!(!trimmer.due(7_950, now));
        assert!(!trimmer.due(7_950, now), "50 fewer is below WORTH_IT");
        assert!(!trimmer.due(0, now));
        assert!(trimmer.due(0, now), "every client gone is always worth it");
        assert!(!trimmer.due(0, now));
    }

    #[test]
    fn each_trim_is_followed_by_one_more_once_the_departed_threads_have_ended() {
        let mut trimmer = Trimmer::default();
        let start = Instant::now();
        assert!(!trimmer.due(1_000, start));
        assert!(!trimmer.due(0, start));
        assert!(trimmer.due(0, start));
        assert!(
            !trimmer.due(0, start + SETTLE / 2),
            "too early for the follow-up"
        );
        assert!(trimmer.due(0, start + SETTLE), "the follow-up");
        assert!(!trimmer.due(0, start + SETTLE * 3), "only one follow-up");
    }
}
