//! The server's `trim` thread ([`trim_loop`]): gives the memory of departed clients back to
//! the system (`malloc_trim`, through `support::memory`), only when a good part of the
//! clients has gone and the departures have paused ([`memory::Trimmer`]). It has a thread of
//! its own because a trim during a mass departure can take a second or more: on the
//! `heartbeat` thread it once delayed heartbeats past the coordinator's timeout.
//!
//! Started by [`super::start_server`]; it reads the hub's client count once a heartbeat
//! interval and ends when the server's stop channel disconnects. The figures:
//! `docs/thread-per-connection.md`, "What a thread, a client and a writer cost".

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
