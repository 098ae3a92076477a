//! When every server fails in turn (`docs/guarantees.md`, "Every server that held a
//! message fails"): an acknowledged message may then live on one server only, a server that
//! was hung, declared dead and fenced. It keeps its history window through the fence, and
//! when it rejoins, the servers it links to take that window as history, even though they
//! are ready and serving clients already (`Hub::accept_peer`). So a client that is on
//! another server by then still gets those messages, in order, once.
//!
//! The sender exits once its messages are acknowledged, so it cannot send them again after
//! a failover (`Session::resend`): the hung server's window is the only copy left.

mod common;

use common::{Client, Cluster, TIMEOUT, finish_and_assert_all_from, status_entry, status_json};
use serde_json::Value;

/// The epoch the coordinator lists for `addr`.
fn epoch_of(cluster: &Cluster, addr: &str) -> u64 {
    status_entry(&status_json(cluster.coordinator()), addr)["epoch"]
        .as_u64()
        .expect("status gives each server's epoch")
}

/// Waits until `dsys status` lists `addr` as dead.
fn wait_dead(cluster: &Cluster, addr: &str) {
    cluster.wait_status(&format!("{addr} reported dead"), TIMEOUT, |st: &Value| {
        status_entry(st, addr)["alive"] == false
    });
}

/// Waits until `dsys status` lists `addr` alive as a new incarnation (not `old_epoch`).
fn wait_rejoined(cluster: &Cluster, addr: &str, old_epoch: u64) {
    cluster.wait_status(&format!("{addr} alive again"), TIMEOUT, |st: &Value| {
        let entry = status_entry(st, addr);
        entry["alive"] == true && entry["epoch"].as_u64() != Some(old_epoch)
    });
}

#[test]
fn messages_only_a_fenced_server_kept_reach_the_clients_of_a_ready_server() {
    // Messages sent while the receiver's server is down: the ones only server 1 keeps.
    const ALONE: u64 = 5;
    let cluster = Cluster::start(2);
    let (a, b) = (cluster.addr(0).to_string(), cluster.addr(1).to_string());
    let mut receiver = Client::start_on("receiver", cluster.coordinator(), &a);
    let mut sender = Client::start_on("sender", cluster.coordinator(), &b);
    receiver.wait_registered();
    sender.wait_registered();
    sender.send_line("m1");
    receiver.wait_messages(&["sender"], 1, TIMEOUT);

    // Server 0 and its receiver hang; once server 0 is declared dead, server 1 acknowledges
    // alone, so what the sender sends now is stored on server 1 only. The sender then exits,
    // which it does only when all its messages are acknowledged.
    let a_epoch = epoch_of(&cluster, &a);
    cluster.hang_server(0);
    receiver.proc.stop();
    wait_dead(&cluster, &a);
    for n in 2..=1 + ALONE {
        sender.send_line(&format!("m{n}"));
    }
    assert!(sender.finish(TIMEOUT).success(), "the sender exits with 0");

    // Server 1 hangs too: the coordinator has no live server left.
    let b_epoch = epoch_of(&cluster, &b);
    cluster.hang_server(1);
    wait_dead(&cluster, &b);

    // Server 0 comes back first and alone: fenced, it rejoins with no peer to wait for, so it
    // is ready at once, and the receiver fails over to it. It lacks m2..m6.
    cluster.wake_server(0);
    wait_rejoined(&cluster, &a, a_epoch);
    receiver.proc.cont();
    // Same server, so the client says `reconnected`, not `failover`.
    receiver.expect_event("the receiver back on server 0", TIMEOUT, |e| {
        e["event"] == "reconnected" && e["server"] == a.as_str()
    });

    // Server 1 comes back: server 0, ready, takes its window as history.
    cluster.wake_server(1);
    wait_rejoined(&cluster, &b, b_epoch);
    receiver.wait_messages(&["sender"], 1 + ALONE as usize, TIMEOUT);

    finish_and_assert_all_from(&mut receiver, "sender", 1 + ALONE);
}
