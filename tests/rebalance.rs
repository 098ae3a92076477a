//! Rebalancing (`CONTRACT.md` guarantee 7): when a server comes back, clients are moved to
//! it, a few at a time, until the live servers' counts differ by at most one; every message
//! still reaches every other client exactly once and in order, and no client is moved back
//! and forth. And rebalancing never fights failover: a server that dies in the middle of a
//! rebalance costs nothing either.
//!
//! Timing: servers heartbeat every `HEARTBEAT_INTERVAL_MS` (100 ms) and the coordinator
//! declares a silent server dead after `HEARTBEAT_TIMEOUT_MS` (1000 ms). A returning
//! server takes clients once it has been alive for one heartbeat timeout, so a spread of
//! 6/6/0 becomes 4/4/4 in about 1.5 s here; [`REBALANCE_BOUND`] allows much more for a
//! loaded machine. Every client keeps talking throughout (`Chatter`, in `tests/common/`).

mod common;

use std::time::Duration;

use common::{
    Chatter, Client, Cluster, TIMEOUT, entry_clients, events_of,
    finish_and_assert_everything_arrived, status_entry,
};
use serde_json::Value;

/// How long after a server's return the spread may take to even out: one heartbeat
/// timeout before the server takes clients, then a few heartbeats; the rest is room for a
/// 2-core machine running several test binaries at once.
const REBALANCE_BOUND: Duration = Duration::from_secs(15);

/// The live servers' client counts in `status`, sorted.
fn live_spread(status: &Value) -> Vec<usize> {
    let mut counts: Vec<usize> = status["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["alive"] == true)
        .map(|s| entry_clients(s).len())
        .collect();
    counts.sort_unstable();
    counts
}

/// Waits until the live servers hold `spread` clients (sorted) and `dead` is not alive.
fn wait_spread(
    cluster: &Cluster,
    what: &str,
    dead: Option<&str>,
    spread: &[usize],
    within: Duration,
) {
    cluster.wait_status(what, within, |st| {
        dead.is_none_or(|d| status_entry(st, d)["alive"] == false) && live_spread(st) == spread
    });
}

/// Kills server 2 and waits until its four clients have failed over, two to each
/// survivor (6/6/0); returns its address.
fn kill_server_2_and_wait_for_failover(cluster: &mut Cluster) -> String {
    let lost = cluster.addr(2).to_string();
    cluster.kill_server(2);
    wait_spread(
        cluster,
        "6/6 on the survivors",
        Some(&lost),
        &[6, 6],
        TIMEOUT,
    );
    lost
}

/// Asserts that no client printed more than one `moved` event, and returns how many did.
fn assert_moved_at_most_once(clients: &[Client], events: &[Vec<Value>]) -> usize {
    let mut moved = 0;
    for (client, events) in clients.iter().zip(events) {
        let moves = events_of(events, "moved");
        assert!(
            moves.len() <= 1,
            "{} was moved more than once: {moves:?}",
            client.name
        );
        moved += moves.len();
    }
    moved
}

#[test]
fn a_returning_server_gets_its_share_back_with_nothing_lost() {
    let mut cluster = Cluster::start(3);
    let mut clients = cluster.start_four_per_server();
    let chatter = Chatter::start(&mut clients);
    clients[0].wait_messages(&["s2c0"], 3, TIMEOUT);
    let returning = kill_server_2_and_wait_for_failover(&mut cluster);

    // It comes back: two clients move to it from each survivor (4/4/4), while everyone talks.
    cluster.restart_server(2);
    wait_spread(
        &cluster,
        "4/4/4 after the return",
        None,
        &[4, 4, 4],
        REBALANCE_BOUND,
    );

    let events = finish_and_assert_everything_arrived(&mut clients, chatter);
    assert_eq!(
        assert_moved_at_most_once(&clients, &events),
        4,
        "four clients move back"
    );
    for (client, events) in clients.iter().zip(&events) {
        for moved in events_of(events, "moved") {
            assert_eq!(
                moved["to"],
                returning.as_str(),
                "{} moved elsewhere: {moved}",
                client.name
            );
        }
    }
}

#[test]
fn a_server_that_dies_during_a_rebalance_costs_nothing() {
    // One move a second, so that the rebalance is still going on when its target dies.
    let mut cluster = Cluster::start_with(3, &["--rebalance-pace", "1"], &[]);
    let mut clients = cluster.start_four_per_server();
    let chatter = Chatter::start(&mut clients);
    let returning = kill_server_2_and_wait_for_failover(&mut cluster);
    cluster.restart_server(2);
    // The first client to move there ...
    let first = wait_first_moved(&clients);
    // ... loses it again at once: the returning server dies mid-rebalance.
    cluster.kill_server(2);
    let mover = clients
        .iter()
        .position(|c| c.name == first)
        .expect("a known client");
    clients[mover].expect_event("a failover after the move", TIMEOUT, |e| {
        e["event"] == "failover"
    });
    // Whatever was under way, the twelve end evenly on the two live servers.
    wait_spread(
        &cluster,
        "6/6 after the target died",
        Some(&returning),
        &[6, 6],
        REBALANCE_BOUND,
    );

    let events = finish_and_assert_everything_arrived(&mut clients, chatter);
    assert_moved_at_most_once(&clients, &events);
}

/// Waits for the first `moved` event of any client, and returns that client's name.
fn wait_first_moved(clients: &[Client]) -> String {
    common::poll_until("a client's `moved` event", REBALANCE_BOUND, || {
        clients
            .iter()
            .find(|c| c.events_so_far().iter().any(|e| e["event"] == "moved"))
            .map(|c| c.name.clone())
            .ok_or_else(|| "no client has moved yet".to_string())
    })
}
