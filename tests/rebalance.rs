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
//! loaded machine. Every client keeps talking throughout ([`Chatter`]).

mod common;

use std::io::Write;
use std::process::ChildStdin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::{
    Client, Cluster, TIMEOUT, assert_seqs_exactly, entry_clients, events_of, finish_all,
    status_entry,
};
use serde_json::Value;

/// How long after a server's return the spread may take to even out: one heartbeat
/// timeout before the server takes clients, then a few heartbeats; the rest is room for a
/// 2-core machine running several test binaries at once.
const REBALANCE_BOUND: Duration = Duration::from_secs(15);
/// How often each client sends a line while the cluster changes under it.
const CHATTER_EVERY: Duration = Duration::from_millis(25);

/// Every client writing numbered lines (`"{name} n{k}"`) to its stdin at a steady pace, one
/// thread each, until [`Chatter::stop`]; dropped early (a failed assertion), it stops too.
struct Chatter {
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<(ChildStdin, u64)>>,
}

impl Chatter {
    fn start(clients: &mut [Client]) -> Chatter {
        let stop = Arc::new(AtomicBool::new(false));
        let writers = clients
            .iter_mut()
            .map(|client| {
                let (name, mut stdin) = (client.name.clone(), client.take_stdin());
                let stop = stop.clone();
                thread::spawn(move || {
                    let mut written = 0;
                    while !stop.load(Ordering::Relaxed) {
                        written += 1;
                        if writeln!(stdin, "{name} n{written}").is_err() {
                            break; // the client is gone: the test fails on its own
                        }
                        thread::sleep(CHATTER_EVERY); // pacing the load, not waiting for anything
                    }
                    (stdin, written)
                })
            })
            .collect();
        Chatter { stop, writers }
    }

    /// Stops every writer; returns their stdins, still open (a client whose stdin ends
    /// leaves once its own messages are acknowledged, maybe before it has everyone
    /// else's), and how many lines each wrote, in the clients' order.
    fn stop(mut self) -> (Vec<ChildStdin>, Vec<u64>) {
        self.stop.store(true, Ordering::Relaxed);
        self.writers
            .drain(..)
            .map(|w| w.join().expect("a chatter thread panicked"))
            .unzip()
    }
}

impl Drop for Chatter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers.drain(..) {
            let _ = writer.join();
        }
    }
}

/// Starts four clients pinned to each server, named `s<i>c<k>`, and returns once `dsys
/// status` lists them all under their servers.
fn start_four_per_server(cluster: &Cluster) -> Vec<Client> {
    let servers = cluster.addrs().len();
    let clients: Vec<Client> = (0..servers)
        .flat_map(|i| (0..4).map(move |k| (i, k)))
        .map(|(i, k)| {
            Client::start_on(&format!("s{i}c{k}"), cluster.coordinator(), cluster.addr(i))
        })
        .collect();
    for client in &clients {
        client.wait_registered();
    }
    cluster.wait_status("every client listed", TIMEOUT, |st| {
        (0..servers).all(|i| entry_clients(&status_entry(st, cluster.addr(i))).len() == 4)
    });
    clients
}

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

/// The end of every test here: stops the chatter, waits until every client has every line
/// of every other one, ends them all, and asserts over whole outputs that each got from
/// each other one seqs 1..=written exactly once, in order, with the texts in the order they
/// were written, and no gap. Returns each client's events.
fn finish_and_assert_everything_arrived(
    clients: &mut [Client],
    chatter: Chatter,
) -> Vec<Vec<Value>> {
    let (stdins, written) = chatter.stop();
    for receiver in clients.iter() {
        for (sender, &count) in clients.iter().zip(&written) {
            if sender.name != receiver.name {
                receiver.wait_messages(&[sender.name.as_str()], count as usize, TIMEOUT);
            }
        }
    }
    drop(stdins);
    finish_all(clients);
    let all: Vec<Vec<Value>> = clients.iter().map(Client::events_so_far).collect();
    for (receiver, events) in clients.iter().zip(&all) {
        for (sender, &count) in clients.iter().zip(&written) {
            if sender.name == receiver.name {
                continue;
            }
            assert_seqs_exactly(events, &receiver.name, &sender.name, 1, count);
            let texts: Vec<&str> = events
                .iter()
                .filter(|e| e["event"] == "message" && e["from"] == sender.name.as_str())
                .filter_map(|e| e["text"].as_str())
                .collect();
            let expected: Vec<String> = (1..=count)
                .map(|k| format!("{} n{k}", sender.name))
                .collect();
            assert!(
                texts == expected,
                "{} got {}'s lines out of order",
                receiver.name,
                sender.name
            );
        }
        assert!(
            events_of(events, "gap").is_empty(),
            "{} reported a gap: {:?}",
            receiver.name,
            events_of(events, "gap")
        );
    }
    all
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
    let mut clients = start_four_per_server(&cluster);
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
    let mut clients = start_four_per_server(&cluster);
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
