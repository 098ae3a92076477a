//! The life of this server's incarnation, as the coordinator sees it: its epoch, when it is
//! ready to take clients, which peer incarnations it accepts links from, and the fence
//! that ends it.
//!
//! An incarnation is one `(address, epoch)`: the coordinator gives a server an epoch when
//! it joins, and a server it declared dead must rejoin with a new one
//! (`docs/heartbeats-and-failover.md`). Called by the `heartbeat` thread (epoch, fence),
//! a peer link's receiving side (accept, synced) and a client's connection thread, which
//! waits for readiness before it registers anyone ([`Hub::wait_ready`]).

use std::time::Duration;

use super::{Hub, State};

impl Hub {
    /// This incarnation's epoch (0 before the first heartbeat reply).
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Sets this incarnation's epoch (from a heartbeat reply).
    pub fn set_epoch(&self, epoch: u64) {
        self.lock().epoch = epoch;
    }

    /// Forgets this incarnation after the coordinator fenced it: every client is cut off
    /// (they have been moved elsewhere already), peers and the outbound log are dropped, and
    /// the epoch returns to 0 so the next heartbeat joins as a new server.
    ///
    /// The history window and the watermarks ([`History`](super::History)) are kept. They hold real
    /// messages, stored once and never altered, and when every other server failed too they
    /// may be the only copy left of what a failed-over client has not seen yet. Keeping them
    /// cannot cause a duplicate: replays and watermarks are per sender and `seq`, like
    /// everything else.
    pub fn reset_incarnation(&self) {
        self.with_state(|state, _, cutoffs| {
            state.clients.remove_all(cutoffs);
            let old = std::mem::take(state);
            *state = State {
                addr: old.addr,
                next_id: old.next_id,
                taken: old.taken,
                history: old.history,
                clients: old.clients.emptied(),
                ..State::default()
            };
        });
        self.room.notify_all();
    }

    /// Cuts off every client and peer link: the first step of stopping the server.
    pub fn shut_down(&self) {
        self.reset_incarnation();
    }

    /// Accepts an incoming link from the peer incarnation `(addr, epoch)` if the coordinator
    /// lists it as live. Returns the last relay index already received from it, and whether
    /// this server wants the peer's history first: it asks every peer incarnation once,
    /// until that peer's history has arrived whole.
    ///
    /// A new server asks to fill its window. A ready one asks too, because a peer that
    /// rejoins after a fence keeps its window ([`Hub::reset_incarnation`]), and when every
    /// server failed in turn, that window may hold acknowledged messages no other server
    /// has. They arrive above this server's watermarks and are delivered like live ones; the
    /// rest are repeats. A freshly started peer has an empty window, so asking costs nothing.
    pub fn accept_peer(&self, addr: &str, epoch: u64) -> Option<(u64, bool)> {
        let state = self.lock();
        if !state.relay.is_live_peer(addr, epoch) {
            return None;
        }
        let want_history = !state.synced_from.contains(&(addr.to_string(), epoch));
        Some((state.relay.last_received(addr, epoch), want_history))
    }

    /// Records that the peer incarnation `(addr, epoch)` has sent its whole history.
    pub fn peer_synced(&self, addr: &str, epoch: u64) {
        let mut state = self.lock();
        if state.relay.is_live_peer(addr, epoch) {
            state.synced_from.insert((addr.to_string(), epoch));
            self.note_ready(&mut state);
        }
    }

    /// Blocks until the server is ready, or `timeout` passes. Returns whether it is ready.
    ///
    /// Ready means: the coordinator's complete peer list has arrived, and every peer on it
    /// has linked into this server and sent its history. From then on, every message
    /// published anywhere in the cluster reaches this server, and its window holds what the
    /// peers' windows held. A client registered before that could miss messages, so
    /// registration waits for it (a few heartbeat intervals, plus the time to copy the
    /// peers' windows, when a server has just started; never afterwards).
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let state = self.lock().into_guard();
        let (state, _) = self
            .ready_changed
            .wait_timeout_while(state, timeout, |s| !s.ready)
            .unwrap_or_else(|p| p.into_inner());
        state.ready
    }

    /// Latches `ready` when its conditions hold, and wakes the waiting registrations.
    pub(super) fn note_ready(&self, state: &mut State) {
        if state.ready || !state.knows_peers {
            return;
        }
        let synced = &state.synced_from;
        if state
            .relay
            .incarnations()
            .all(|(addr, epoch)| synced.contains(&(addr.to_string(), epoch)))
        {
            state.ready = true;
            log::info!(
                "server ready addr={} peers={}",
                state.addr,
                state.relay.peer_count()
            );
            self.ready_changed.notify_all();
        }
    }
}
