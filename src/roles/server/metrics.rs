//! What a server counts for `--metrics` (`net/metrics_http.rs` serves it): one [`Metrics`]
//! per server, shared by every thread through an `Arc`, each counter an `AtomicU64` added
//! to with `Relaxed` where its event happens. A counter costs its event one atomic add,
//! never a lock or a system call: on the data path, one add per batch of messages or per
//! send, not per frame. The gauges (clients, the history window, peer links, the
//! keepalive interval) are not counted at all: they are read from the hub when a scrape
//! asks ([`render`]), with one short hold of its lock.
//!
//! `docs/heartbeats-and-failover.md` ("Metrics") lists every metric with its meaning.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Shared;
use crate::net::metrics_http::{Exposition, Kind};

/// A server's counters. Every field is a Prometheus counter: it only goes up, from 0 when
/// the process starts.
#[derive(Default, Debug)]
pub struct Metrics {
    /// Messages published by this server's clients and taken into the hub.
    pub publishes: AtomicU64,
    /// Messages relayed in from peer servers (their clients' publishes).
    pub relays_in: AtomicU64,
    /// Messages handed to this server's clients: live fan-out, catch-up from the window,
    /// and the replay of a client that resumed here.
    pub deliveries_out: AtomicU64,
    /// Bytes read from client connections.
    pub client_bytes_in: AtomicU64,
    /// Bytes written to client connections.
    pub client_bytes_out: AtomicU64,
    /// Publishes not taken in: a body the server refuses (the connection is closed), or a
    /// connection replaced by a newer one of the same client.
    pub publishes_refused: AtomicU64,
    /// Clients cut off as slow consumers: fell behind the history window, or a write to
    /// them blocked for `--write-timeout`.
    pub slow_consumer_cutoffs: AtomicU64,
    /// Times a client that fell behind (its outbox full) was caught up from the window.
    pub catch_ups: AtomicU64,
    /// Registrations of a fresh session.
    pub registrations: AtomicU64,
    /// Registrations that resumed a session: a client that failed over or moved here.
    pub resumes: AtomicU64,
    /// `Move` orders sent to clients (rebalancing, or this server's planned stop).
    pub moves_out: AtomicU64,
}

impl Metrics {
    /// Adds `n` to `counter`: the one way every count is made.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

fn get(counter: &AtomicU64) -> f64 {
    counter.load(Ordering::Relaxed) as f64
}

/// Writes every server metric: the counters, then the gauges read from the hub.
pub(super) fn render(shared: &Shared, out: &mut Exposition) {
    let m = &*shared.metrics;
    let gauges = shared.hub.gauges();
    out.one(
        "dsys_server_clients",
        Kind::Gauge,
        "Clients registered on this server.",
        gauges.clients as f64,
    );
    out.family(
        "dsys_server_messages_in_total",
        Kind::Counter,
        "Messages taken in, by where they came from: published by a client of this server, \
         or relayed by a peer server.",
        &[
            ("from=\"client\"", get(&m.publishes)),
            ("from=\"peer\"", get(&m.relays_in)),
        ],
    );
    out.one(
        "dsys_server_deliveries_total",
        Kind::Counter,
        "Messages handed to this server's clients (fan-out, catch-up and replay).",
        get(&m.deliveries_out),
    );
    out.one(
        "dsys_server_client_bytes_received_total",
        Kind::Counter,
        "Bytes read from client connections.",
        get(&m.client_bytes_in),
    );
    out.one(
        "dsys_server_client_bytes_sent_total",
        Kind::Counter,
        "Bytes written to client connections.",
        get(&m.client_bytes_out),
    );
    out.one(
        "dsys_server_publishes_refused_total",
        Kind::Counter,
        "Publishes not taken in: a refused body, or a connection replaced by a newer one.",
        get(&m.publishes_refused),
    );
    out.one(
        "dsys_server_slow_consumer_cutoffs_total",
        Kind::Counter,
        "Clients cut off for not reading: behind the history window, or a write blocked \
         for the write timeout.",
        get(&m.slow_consumer_cutoffs),
    );
    out.one(
        "dsys_server_catch_ups_total",
        Kind::Counter,
        "Clients that fell behind and were caught up from the history window.",
        get(&m.catch_ups),
    );
    out.family(
        "dsys_server_registrations_total",
        Kind::Counter,
        "Client registrations: a new session, or a resumed one (a failover or a move in).",
        &[
            ("kind=\"new\"", get(&m.registrations)),
            ("kind=\"resumed\"", get(&m.resumes)),
        ],
    );
    out.one(
        "dsys_server_moves_out_total",
        Kind::Counter,
        "Move orders sent to clients (rebalancing or a planned stop).",
        get(&m.moves_out),
    );
    out.one(
        "dsys_server_history_window_bytes",
        Kind::Gauge,
        "Payload bytes held in the history window.",
        gauges.history_bytes as f64,
    );
    out.one(
        "dsys_server_peer_links_up",
        Kind::Gauge,
        "Peer servers this server has a connected link to.",
        gauges.peer_links_up as f64,
    );
    out.one(
        "dsys_server_keepalive_interval_seconds",
        Kind::Gauge,
        "How long a client goes unwritten before this server writes it a keepalive.",
        shared.client_timers.quiet.as_secs_f64(),
    );
}
