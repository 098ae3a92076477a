//! A planned stop (`CONTRACT.md` guarantee 8): SIGTERM or SIGINT to a server hands its
//! clients to the other live servers before it exits. They print `moved`, not `failover`;
//! every message still reaches every other client exactly once and in order; the
//! coordinator logs the server as left and never declares it dead; the server exits 0. A
//! second signal, or a drain longer than `--drain-timeout`, stops it at once; the last
//! server, with nowhere to send its clients, says so and exits.
//!
//! Timing: servers heartbeat every `HEARTBEAT_INTERVAL_MS` (100 ms), and the coordinator
//! orders up to 500 moves a second, so the four clients of a stopping server here move
//! within a heartbeat or two. A client that is hung (SIGSTOP) cannot move: it holds a drain
//! open for as long as a test needs to look at it.

mod common;

use std::time::Instant;

use common::{
    Chatter, Client, Cluster, TIMEOUT, entry_clients, events_of,
    finish_and_assert_everything_arrived, status_entry,
};
use serde_json::Value;

/// Asserts that the coordinator never declared a server dead.
fn assert_nobody_declared_dead(cluster: &Cluster) {
    let declared: Vec<String> = cluster
        .coordinator
        .stderr_so_far()
        .into_iter()
        .filter(|line| line.contains("declared dead"))
        .collect();
    assert!(
        declared.is_empty(),
        "the coordinator declared a server dead during a planned stop: {declared:?}\n{}",
        cluster.coordinator.stderr_report()
    );
}

/// A client registered on server `i` that hangs (SIGSTOP): it cannot move, so server `i`'s
/// drain stays open until something cuts it short.
fn hung_client_on(cluster: &Cluster, i: usize) -> Client {
    let client = Client::start_on("stuck", cluster.coordinator(), cluster.addr(i));
    client.wait_registered();
    cluster.wait_status("the stuck client listed", TIMEOUT, |st| {
        entry_clients(&status_entry(st, cluster.addr(i))) == ["stuck"]
    });
    client.proc.stop();
    client
}

/// SIGTERMs server `i` and waits until the coordinator shows it `leaving` (and alive).
fn start_planned_stop(cluster: &Cluster, i: usize) -> Value {
    let addr = cluster.addr(i).to_string();
    cluster.terminate_server(i);
    cluster
        .coordinator
        .wait_for_stderr(&format!("server leaving addr={addr} "), TIMEOUT);
    cluster.wait_status("the stopping server shown as leaving", TIMEOUT, |st| {
        let entry = status_entry(st, &addr);
        entry["state"] == "leaving" && entry["alive"] == true
    })
}

#[test]
fn a_planned_stop_moves_every_client_first_with_nothing_lost() {
    let mut cluster = Cluster::start(3);
    let mut clients = cluster.start_four_per_server();
    let chatter = Chatter::start(&mut clients);
    clients[0].wait_messages(&["s2c0"], 3, TIMEOUT);
    let stopped = cluster.addr(2).to_string();

    cluster.terminate_server(2);
    let status = cluster.wait_server_exit(2, TIMEOUT);
    assert!(status.success(), "a planned stop exits 0: {status}");
    cluster
        .server(2)
        .wait_for_stderr("every client has moved", TIMEOUT);
    cluster
        .coordinator
        .wait_for_stderr(&format!("server left addr={stopped} "), TIMEOUT);
    // Its four clients went to the least loaded servers: two to each. The status shows
    // each server's clients as of its last heartbeat, so wait until all twelve are listed
    // again before looking at where they are.
    let after = cluster.wait_status(
        "the stopped server left, every client listed",
        TIMEOUT,
        |st| {
            status_entry(st, &stopped)["state"] == "left"
                && (0..2)
                    .map(|i| entry_clients(&status_entry(st, cluster.addr(i))).len())
                    .sum::<usize>()
                    == 12
        },
    );
    assert_eq!(status_entry(&after, &stopped)["alive"], false);
    for i in 0..2 {
        assert_eq!(
            entry_clients(&status_entry(&after, cluster.addr(i))).len(),
            6,
            "{after}"
        );
    }

    let events = finish_and_assert_everything_arrived(&mut clients, chatter);
    for (client, events) in clients.iter().zip(&events) {
        assert!(
            events_of(events, "failover").is_empty(),
            "{} failed over during a planned stop: {events:?}",
            client.name
        );
        let moves = events_of(events, "moved");
        if client.name.starts_with("s2") {
            assert_eq!(moves.len(), 1, "{} moved once: {moves:?}", client.name);
            assert_eq!(moves[0]["from"], stopped.as_str());
            assert_ne!(moves[0]["to"], stopped.as_str());
        } else {
            assert!(moves.is_empty(), "{} had no reason to move", client.name);
        }
    }
    assert_nobody_declared_dead(&cluster);
}

#[test]
fn a_second_signal_stops_a_planned_stop_at_once() {
    // A drain timeout far beyond the test's waits: only the second signal can end it.
    let mut cluster = Cluster::start_with(2, &[], &["--drain-timeout", "600000"]);
    let _stuck = hung_client_on(&cluster, 1);
    let stopped = cluster.addr(1).to_string();
    start_planned_stop(&cluster, 1);

    let second = Instant::now();
    cluster.terminate_server(1);
    let status = cluster.wait_server_exit(1, TIMEOUT);
    assert!(status.success(), "stopped at once, as today: {status}");
    cluster
        .server(1)
        .wait_for_stderr("second signal: stopping at once", TIMEOUT);
    println!("exited {:?} after the second signal", second.elapsed());
    // The coordinator heard it go: left, with the stuck client planned elsewhere.
    cluster
        .coordinator
        .wait_for_stderr(&format!("server left addr={stopped} epoch="), TIMEOUT);
    assert_nobody_declared_dead(&cluster);
}

#[test]
fn a_drain_that_outlasts_its_timeout_stops_at_once() {
    let mut cluster = Cluster::start_with(2, &[], &["--drain-timeout", "1500"]);
    let _stuck = hung_client_on(&cluster, 1);
    let stopped = cluster.addr(1).to_string();
    start_planned_stop(&cluster, 1);

    let status = cluster.wait_server_exit(1, TIMEOUT);
    assert!(status.success(), "{status}");
    cluster
        .server(1)
        .wait_for_stderr("longer than --drain-timeout 1500 ms", TIMEOUT);
    cluster
        .coordinator
        .wait_for_stderr(&format!("server left addr={stopped} "), TIMEOUT);
    assert_nobody_declared_dead(&cluster);
}

#[test]
fn the_last_server_says_it_has_nowhere_to_send_its_clients_and_exits() {
    let mut cluster = Cluster::start(1);
    let alice = Client::start_on("alice", cluster.coordinator(), cluster.addr(0));
    alice.wait_registered();
    cluster.wait_status("alice listed", TIMEOUT, |st| {
        entry_clients(&status_entry(st, cluster.addr(0))) == ["alice"]
    });
    let last = cluster.addr(0).to_string();

    cluster.terminate_server(0);
    let status = cluster.wait_server_exit(0, TIMEOUT);
    assert!(status.success(), "{status}");
    let lines = cluster.server(0).stderr_to_end(TIMEOUT);
    let nowhere: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("no other live server to take the 1 client(s)"))
        .collect();
    assert_eq!(nowhere.len(), 1, "one line says so: {lines:#?}");
    assert!(nowhere[0].contains("WARN"), "{}", nowhere[0]);
    cluster
        .coordinator
        .wait_for_stderr(&format!("server left addr={last} "), TIMEOUT);
    assert_nobody_declared_dead(&cluster);
}

#[test]
fn a_server_with_no_client_and_no_coordinator_stops_without_waiting_out_the_drain() {
    // The drain timeout is far beyond the test's wait: only stopping at once passes.
    let nowhere = common::unused_addr();
    let (mut server, _) = common::start_server_with(&nowhere, 100, &["--drain-timeout", "600000"]);
    server.wait_for_stderr("coordinator unreachable", TIMEOUT);
    server.terminate();
    let status = server.wait_exit(TIMEOUT);
    assert!(status.success(), "{status}");
    server.wait_for_stderr("every client has moved; stopping", TIMEOUT);
}
