//! What the coordinator counts for `--metrics`: one [`Metrics`] in the registry, each
//! counter an `AtomicU64` added to with `Relaxed` where its event happens, and [`render`],
//! which writes them with the servers by state.
//!
//! **Who calls it.** The registry's decisions count (a server declared dead, a plan made):
//! they run under the registry's lock anyway and are rare, so a count takes no lock of its
//! own. The `metrics` thread of `net/metrics_http.rs` calls [`render`] for each scrape,
//! which locks the registry only to count the servers by state.
//!
//! **How it stops.** Nothing of its own: the counters are dropped with the registry, and the
//! `metrics` thread stops with the coordinator. `docs/heartbeats-and-failover.md`
//! ("Metrics") lists every metric with its meaning.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Coordinator;
use crate::net::metrics_http::{Exposition, Kind};

/// The coordinator's counters, from 0 when the process starts.
#[derive(Default, Debug)]
pub struct Metrics {
    /// Servers declared dead (silent past the heartbeat timeout, or cut off from the rest).
    pub declared_dead: AtomicU64,
    /// Servers that left after a planned stop.
    pub left: AtomicU64,
    /// Plans made to move the clients of a server that died or left.
    pub redistribution_plans: AtomicU64,
    /// Plans made to even out the servers' clients.
    pub rebalance_plans: AtomicU64,
    /// Plans made to empty a server that is leaving.
    pub drain_plans: AtomicU64,
    /// Client moves in those plans, by the same three kinds.
    pub redistribution_moves: AtomicU64,
    /// See `redistribution_moves`.
    pub rebalance_moves: AtomicU64,
    /// See `redistribution_moves`.
    pub drain_moves: AtomicU64,
}

impl Metrics {
    /// Counts one plan of `moves` client moves in `plans` and `moved`.
    pub(super) fn plan(plans: &AtomicU64, moved: &AtomicU64, moves: usize) {
        plans.fetch_add(1, Ordering::Relaxed);
        moved.fetch_add(moves as u64, Ordering::Relaxed);
    }

    /// Counts one event in `counter`.
    pub(super) fn one(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn get(counter: &AtomicU64) -> f64 {
    counter.load(Ordering::Relaxed) as f64
}

/// Writes every coordinator metric.
pub(super) fn render(coordinator: &Coordinator, out: &mut Exposition) {
    let (counts, metrics) = {
        let registry = coordinator.lock();
        let mut counts = [0u32; 4]; // live, leaving, dead, left
        for entry in registry.servers.values() {
            counts[match (entry.alive, entry.leaving) {
                (true, false) => 0,
                (true, true) => 1,
                (false, false) => 2,
                (false, true) => 3,
            }] += 1;
        }
        (counts, registry.metrics.clone())
    };
    out.family(
        "dsys_coordinator_servers",
        Kind::Gauge,
        "Servers the coordinator knows, by state: live, leaving (a planned stop under way), \
         dead (declared dead), left (stopped on purpose).",
        &[
            ("state=\"live\"", f64::from(counts[0])),
            ("state=\"leaving\"", f64::from(counts[1])),
            ("state=\"dead\"", f64::from(counts[2])),
            ("state=\"left\"", f64::from(counts[3])),
        ],
    );
    let m = &*metrics;
    out.one(
        "dsys_coordinator_servers_declared_dead_total",
        Kind::Counter,
        "Servers declared dead: silent past the heartbeat timeout, or cut off from the others.",
        get(&m.declared_dead),
    );
    out.one(
        "dsys_coordinator_servers_left_total",
        Kind::Counter,
        "Servers that left after a planned stop.",
        get(&m.left),
    );
    out.family(
        "dsys_coordinator_plans_total",
        Kind::Counter,
        "Plans made, by kind: redistribution (the clients of a server that died or left: \
         failovers), rebalance (evening out), drain (emptying a leaving server).",
        &[
            ("kind=\"redistribution\"", get(&m.redistribution_plans)),
            ("kind=\"rebalance\"", get(&m.rebalance_plans)),
            ("kind=\"drain\"", get(&m.drain_plans)),
        ],
    );
    out.family(
        "dsys_coordinator_planned_moves_total",
        Kind::Counter,
        "Client moves in the plans made, by the plan's kind.",
        &[
            ("kind=\"redistribution\"", get(&m.redistribution_moves)),
            ("kind=\"rebalance\"", get(&m.rebalance_moves)),
            ("kind=\"drain\"", get(&m.drain_moves)),
        ],
    );
}
