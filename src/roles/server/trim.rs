//! The server's `trim` thread: gives the memory of departed clients back to the system.
//!
//! When many clients leave, their threads free what they held, but glibc keeps the freed
//! pages inside its arenas; `malloc_trim` returns them, and costs a walk over every arena
//! while holding each one's lock (`support::memory`). So this thread does it, and only when
//! a good part of the clients has gone and the departures have paused
//! ([`memory::Trimmer`]). It has a thread of its own because a trim during a mass departure
//! can take a second or more: on the `heartbeat` thread it once delayed heartbeats past the
//! coordinator's timeout, and a server that was only busy was declared dead.
//!
//! It reads the hub's client count once a heartbeat interval and ends when the server's
//! stop channel disconnects.

use std::time::Instant;

use crossbeam_channel::{select, tick};

use super::Shared;
use crate::support::memory::{self, Trimmer};

/// The loop of the `trim` thread.
pub(super) fn trim_loop(shared: Shared) {
    let ticker = tick(shared.heartbeat_interval);
    let mut trimmer = Trimmer::default();
    loop {
        if trimmer.due(shared.hub.client_count(), Instant::now()) {
            shared.hub.shrink_to_fit();
            memory::give_back_freed_memory();
        }
        select! {
            recv(ticker) -> _ => {}
            recv(shared.stop_rx) -> _ => break,
        }
    }
    log::debug!("trim thread stopped");
}
