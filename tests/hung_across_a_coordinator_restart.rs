//! A server declared dead, then woken after the coordinator restarted (`docs/guarantees.md`,
//! "Where it falls short"). Its peers dropped it and acknowledged without it; the restarted
//! coordinator has forgotten whom it declared dead and lists it again with its old epoch.
//! Its peers must not take it back as it is (`Hub::set_peers`): they refuse its links with
//! `was declared dead`, it fences itself and rejoins as a new incarnation, which copies
//! their windows, so a client that went back to it misses nothing.
//!
//! The sender exits once its messages are acknowledged, so no later message of its could
//! reveal a loss as a `gap`: without the refusal the loss would be silent.

mod common;

use common::{Client, Cluster, TIMEOUT, finish_and_assert_all_from, status_entry, status_servers};

#[test]
fn a_server_declared_dead_and_woken_after_a_coordinator_restart_loses_its_clients_nothing() {
    // Messages sent while server 0 is out.
    const WHILE_OUT: u64 = 5;
    let mut cluster = Cluster::start(2);
    let a = cluster.addr(0).to_string();
    let mut receiver = Client::start_on("receiver", cluster.coordinator(), &a);
    let mut sender = Client::start_on("sender", cluster.coordinator(), cluster.addr(1));
    receiver.wait_registered();
    sender.wait_registered();
    sender.send_line("m1");
    receiver.wait_messages(&["sender"], 1, TIMEOUT);

    // Server 0 and its receiver hang until server 0 is declared dead; server 1 drops it and
    // acknowledges alone, and the sender exits once all is acknowledged.
    cluster.hang_server(0);
    receiver.proc.stop();
    cluster.wait_status("server 0 declared dead", TIMEOUT, |st| {
        status_entry(st, &a)["alive"] == false
    });
    for n in 2..=1 + WHILE_OUT {
        sender.send_line(&format!("m{n}"));
    }
    assert!(sender.finish(TIMEOUT).success(), "the sender exits with 0");

    // The coordinator dies; the receiver wakes, cannot ask it for a server, and goes back
    // to server 0, which wakes too.
    cluster.kill_coordinator();
    receiver.proc.cont();
    receiver.proc.wait_for_stderr("lost server", TIMEOUT);
    cluster.wake_server(0);
    receiver.expect_event("the receiver back on server 0", TIMEOUT, |e| {
        e["event"] == "reconnected" && e["server"] == a.as_str()
    });

    // A new coordinator lists server 0 again, with the epoch it was declared dead in.
    cluster.restart_coordinator();
    cluster.wait_status("server 0 alive again", TIMEOUT, |st| {
        // Not `status_entry`: the restarted coordinator does not list it at first.
        status_servers(st)
            .iter()
            .any(|s| s["addr"] == a.as_str() && s["alive"] == true)
    });
    receiver.wait_messages(&["sender"], 1 + WHILE_OUT as usize, TIMEOUT);

    finish_and_assert_all_from(&mut receiver, "sender", 1 + WHILE_OUT);
}
