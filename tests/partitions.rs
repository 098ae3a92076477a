//! Network partitions: every process is alive, and some packets do not arrive
//! (`docs/guarantees.md`, "Faults that are not a dead process"). Each test puts the
//! coordinator, each server and the clients in network namespaces of their own
//! ([`Lab`]), cuts one link while every client talks ([`Chatter`]), and checks that the
//! clients that were cut off deliver again within [`STRANDED_BOUND`], or, where dsys can
//! only detect the cut, that they say so; and, once the cut is healed, that every message
//! reached every other client exactly once and in order.
//!
//! These tests need root (network namespaces); without it each prints `SKIPPED` and why.
//!
//! Timing: servers heartbeat every `HEARTBEAT_INTERVAL_MS` (100 ms), the coordinator's
//! timeout is `HEARTBEAT_TIMEOUT_MS` (1000 ms). A cut-off client is moved in about two
//! timeouts; [`STRANDED_BOUND`] leaves room for a loaded machine.

mod common;

use std::time::{Duration, Instant};

use common::{
    Chatter, Client, HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS, Lab, Node, Proc, TIMEOUT,
    finish_and_assert_everything_arrived,
};

/// How long the flapping link of [`a_flapping_link_loses_and_duplicates_nothing`] flaps.
const FLAPPING_FOR: Duration = Duration::from_secs(3);
/// How long it stays cut, and then healed, each time: a few heartbeat intervals, so that
/// some detectors fire and others see it healed just before they act.
const FLAP_EVERY: Duration = Duration::from_millis(250);

/// How long a client cut off from the cluster may go without a new server: a few heartbeat
/// timeouts (detection, the coordinator's decision, the move), with room for a loaded
/// 2-core machine. The designed figures are in `docs/guarantees.md`.
const STRANDED_BOUND: Duration = Duration::from_secs(10);

/// A coordinator, two servers (`s0`, `s1`) and four clients (`a0`, `a1` on `s0`, `b0`, `b1`
/// on `s1`), each process in the node of its name; the clients share the node `clients`.
/// Fields are in drop order: clients first, the lab last.
struct Partitioned {
    clients: Vec<Client>,
    servers: Vec<Proc>,
    _coordinator: Proc,
    server_addrs: Vec<String>,
    coordinator_node: Node,
    server_nodes: Vec<Node>,
    client_node: Node,
    lab: Lab,
}

impl Partitioned {
    /// Starts everything and returns once every client is registered and has heard from
    /// every other one; `None` when namespaces cannot be made here (the test is skipped).
    fn start() -> Option<Partitioned> {
        let mut lab = Lab::new()?;
        let coordinator_node = lab.node("coordinator");
        let server_nodes = vec![lab.node("s0"), lab.node("s1")];
        let client_node = lab.node("clients");
        let (coordinator, coordinator_addr) =
            lab.coordinator(&coordinator_node, HEARTBEAT_TIMEOUT_MS);
        let (servers, server_addrs): (Vec<Proc>, Vec<String>) = server_nodes
            .iter()
            .map(|node| lab.server(node, &coordinator_addr, HEARTBEAT_INTERVAL_MS))
            .unzip();
        // Each server's link to the other is up: a message published anywhere from now on
        // reaches both. (`dsys status` cannot be asked from outside the lab.)
        for server in &servers {
            server.wait_for_stderr("peer link up", TIMEOUT);
        }
        let clients: Vec<Client> = [("a0", 0), ("a1", 0), ("b0", 1), ("b1", 1)]
            .into_iter()
            .map(|(name, s)| lab.client(&client_node, name, &coordinator_addr, &server_addrs[s]))
            .collect();
        for client in &clients {
            client.wait_registered();
        }
        Some(Partitioned {
            clients,
            servers,
            _coordinator: coordinator,
            server_addrs,
            coordinator_node,
            server_nodes,
            client_node,
            lab,
        })
    }

    /// Waits until the clients of server 0 (`a0`, `a1`) have each failed over to server 1.
    fn wait_clients_of_s0_moved(&self, within: Duration) {
        self.wait_clients_moved(0, within);
    }

    /// Waits until the two clients of server `lost` have each failed over to the other.
    fn wait_clients_moved(&self, lost: usize, within: Duration) {
        let other = 1 - lost;
        for client in &self.clients[2 * lost..2 * lost + 2] {
            let event = client.expect_event(
                &format!("a failover away from server {lost}"),
                within,
                |e| e["event"] == "failover",
            );
            assert_eq!(event["from"], self.server_addrs[lost].as_str(), "{event}");
            assert_eq!(event["to"], self.server_addrs[other].as_str(), "{event}");
        }
    }
}

#[test]
fn a_server_cut_off_from_the_coordinator_alone_hands_its_clients_over() {
    let Some(mut p) = Partitioned::start() else {
        return;
    };
    let chatter = Chatter::start(&mut p.clients);
    // The coordinator declares s0 dead; s1 drops it; s0 cannot be told, but its peer's
    // refusal tells it, and it drops its clients, which fail over to s1.
    p.lab.cut(&p.coordinator_node, &p.server_nodes[0]);
    p.wait_clients_of_s0_moved(STRANDED_BOUND);
    // It was the refusal's code (`Refusal::DeclaredDead`) that told s0.
    p.servers[0].wait_for_stderr("says this server was declared dead", TIMEOUT);
    p.lab.heal(&p.coordinator_node, &p.server_nodes[0]);
    finish_and_assert_everything_arrived(&mut p.clients, chatter);
}

#[test]
fn clients_that_cannot_reach_their_server_one_way_move_to_another() {
    let Some(mut p) = Partitioned::start() else {
        return;
    };
    let chatter = Chatter::start(&mut p.clients);
    // The clients' packets to s0 are dropped; s0's to them still arrive. The coordinator
    // sees s0 fine, so it must believe the clients that cannot reach it.
    p.lab.cut_one_way(&p.client_node, &p.server_nodes[0]);
    p.wait_clients_of_s0_moved(STRANDED_BOUND);
    p.lab.heal(&p.client_node, &p.server_nodes[0]);
    finish_and_assert_everything_arrived(&mut p.clients, chatter);
}

#[test]
fn of_two_servers_cut_off_from_each_other_one_gives_up_its_clients() {
    let Some(mut p) = Partitioned::start() else {
        return;
    };
    let chatter = Chatter::start(&mut p.clients);
    // Both heartbeat, neither can relay to the other: every message waits. Both report the
    // cut; the coordinator declares one dead (same clients: the higher address, s1), and
    // its clients move to the other.
    let (s0, s1) = (p.server_nodes[0].clone(), p.server_nodes[1].clone());
    p.lab.cut(&s0, &s1);
    p.wait_clients_moved(1, STRANDED_BOUND);
    p.lab.heal(&s0, &s1);
    finish_and_assert_everything_arrived(&mut p.clients, chatter);
}

#[test]
fn a_server_isolated_from_everyone_is_handled_like_a_crash() {
    let Some(mut p) = Partitioned::start() else {
        return;
    };
    let chatter = Chatter::start(&mut p.clients);
    let s0 = p.server_nodes[0].clone();
    for other in [&p.coordinator_node, &p.server_nodes[1], &p.client_node] {
        p.lab.cut(&s0, other);
    }
    p.wait_clients_of_s0_moved(STRANDED_BOUND);
    for other in [&p.coordinator_node, &p.server_nodes[1], &p.client_node] {
        p.lab.heal(&s0, other);
    }
    finish_and_assert_everything_arrived(&mut p.clients, chatter);
}

#[test]
fn clients_cut_off_from_the_coordinator_fail_over_to_their_standby() {
    let Some(mut p) = Partitioned::start() else {
        return;
    };
    let chatter = Chatter::start(&mut p.clients);
    // The coordinator is out of the clients' reach, but s0 dealt its clients a standby (s1)
    // while it lived: when it crashes, they need not ask anyone where to go.
    p.lab.cut(&p.client_node, &p.coordinator_node);
    p.servers[0].kill();
    p.wait_clients_of_s0_moved(STRANDED_BOUND);
    p.lab.heal(&p.client_node, &p.coordinator_node);
    finish_and_assert_everything_arrived(&mut p.clients, chatter);
}

#[test]
fn clients_cut_off_from_the_coordinator_and_their_standby_say_so_when_they_lose_their_server() {
    let Some(mut p) = Partitioned::start() else {
        return;
    };
    let chatter = Chatter::start(&mut p.clients);
    // With the coordinator and the standby (s1) out of reach, the clients of a crashed
    // server have nobody to ask where to go: dsys cannot place them, but it must not be
    // silent about it.
    p.lab.cut(&p.client_node, &p.coordinator_node);
    p.lab.cut(&p.client_node, &p.server_nodes[1]);
    p.servers[0].kill();
    for client in &p.clients[..2] {
        client.expect_event(
            "an error event saying the coordinator is out of reach",
            STRANDED_BOUND,
            |e| {
                e["event"] == "error"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("coordinator"))
            },
        );
    }
    // Once both are reachable again, they fail over and catch up.
    p.lab.heal(&p.client_node, &p.server_nodes[1]);
    p.lab.heal(&p.client_node, &p.coordinator_node);
    p.wait_clients_of_s0_moved(STRANDED_BOUND);
    finish_and_assert_everything_arrived(&mut p.clients, chatter);
}

#[test]
fn a_flapping_link_loses_and_duplicates_nothing() {
    let Some(mut p) = Partitioned::start() else {
        return;
    };
    let chatter = Chatter::start(&mut p.clients);
    // The link between the clients and s0 is cut and healed every FLAP_EVERY: its clients
    // may fail over, or reconnect, or just wait; whatever they do, nothing may be lost,
    // repeated or reordered.
    let (clients, s0) = (p.client_node.clone(), p.server_nodes[0].clone());
    let started = Instant::now();
    while started.elapsed() < FLAPPING_FOR {
        p.lab.cut(&clients, &s0);
        std::thread::sleep(FLAP_EVERY); // the fault's own rhythm, not a wait for an event
        p.lab.heal(&clients, &s0);
        std::thread::sleep(FLAP_EVERY);
    }
    finish_and_assert_everything_arrived(&mut p.clients, chatter);
}
