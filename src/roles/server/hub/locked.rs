//! The hub's lock, and what letting it go does: [`Locked`], the guard every method of the
//! hub holds while it reads or changes the state.
//!
//! Letting the lock go is where work that must not happen under it is done: the pens
//! taken under the lock (`State::taken`: clients with frames queued and nobody writing
//! them) are handed to writers once it is released, unless the thread that took them
//! writes for them itself (`Hub::publish`, `write/through.rs`). Shutting down the sockets
//! of the clients cut off under the lock happens at the same point, in `Hub::with_state`.

use std::ops::{Deref, DerefMut};
use std::sync::MutexGuard;

use super::{Hub, Pool, State};

impl Hub {
    pub(super) fn lock(&self) -> Locked<'_> {
        // The state stays consistent between statements; a panic in one connection thread
        // must not take the whole server down with a poisoned lock.
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.locked(guard)
    }

    /// Wraps a guard the hub got back from a condition variable's wait.
    pub(super) fn locked<'a>(&'a self, guard: MutexGuard<'a, State>) -> Locked<'a> {
        Locked {
            guard: Some(guard),
            pool: &self.pool,
        }
    }
}

/// The hub's state, locked. Letting it go hands every pen taken under it
/// ([`State::taken`]) to a writer (`Pool::hand_over`), after the lock is released: so a
/// frame queued for a client is never left with nobody to write it, whichever method queued
/// it. The one path that writes for its pens itself takes them out first
/// ([`Hub::publish`]).
pub(super) struct Locked<'a> {
    /// `None` only while it is being let go.
    guard: Option<MutexGuard<'a, State>>,
    pool: &'a Pool,
}

impl<'a> Locked<'a> {
    /// The plain guard, for a condition variable's wait. The pens taken so far are handed
    /// over first, under the lock (a channel send, which never blocks).
    pub(super) fn into_guard(mut self) -> MutexGuard<'a, State> {
        let mut guard = self.guard.take().expect("a Locked is let go once");
        for pen in guard.taken.drain(..) {
            self.pool.hand_over(pen);
        }
        guard
    }
}

impl Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.guard.as_ref().expect("a Locked is let go once")
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.guard.as_mut().expect("a Locked is let go once")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let Some(mut guard) = self.guard.take() else {
            return;
        };
        if guard.taken.is_empty() {
            // The usual case: a publish moved its pens to the caller's `Pens`. Leaving the
            // empty list in place keeps its room for the next publish.
            return;
        }
        let taken = std::mem::take(&mut guard.taken);
        drop(guard);
        for pen in taken {
            self.pool.hand_over(pen);
        }
    }
}
