//! Broadcast (`CONTRACT.md` guarantee 1): every message a client sends reaches every other
//! client registered at that time, on any server, exactly once, in its sender's order, and
//! never comes back to its sender. Also `--send` and `--send-file`, and files arriving
//! byte-identical.
//!
//! Every test starts its own cluster (`common::Cluster`, which returns once every server
//! links to every other) and waits for each client's `registered` event before anyone
//! sends, so every client is "registered at that time" for every message. A test that
//! checks "exactly once" ends its clients with [`Client::finish`] (stdin closed, exit
//! awaited, stdout read to its end) and then checks each client's whole output.

mod common;

use std::io::Write;
use std::thread;

use common::{
    Client, Cluster, TIMEOUT, TempDir, assert_seqs_exactly, events_of, finish_all, message_seqs,
};

/// Asserts that no client received a message from itself and none reported a gap.
fn assert_no_echo_no_gap(clients: &[Client]) {
    for client in clients {
        let events = client.events_so_far();
        assert!(
            message_seqs(&events, &client.name).is_empty(),
            "{} must never receive its own messages; events: {events:?}",
            client.name
        );
        assert!(
            events_of(&events, "gap").is_empty(),
            "{} reported a gap: {events:?}",
            client.name
        );
    }
}

#[test]
fn two_clients_on_one_server_get_each_others_messages() {
    let cluster = Cluster::start(1);
    let mut clients = [
        Client::start_on("alice", cluster.coordinator(), cluster.addr(0)),
        Client::start_on("bob", cluster.coordinator(), cluster.addr(0)),
    ];
    for client in &clients {
        client.wait_registered();
    }
    clients[0].send_line("hello bob");
    // bob receives alice's line as message 1 from alice.
    let got = clients[1].messages_from("alice", 1);
    assert_eq!(got[0]["text"], "hello bob", "bob got {got:?}");
    assert_eq!(got[0]["seq"], 1, "alice's first message is seq 1: {got:?}");

    clients[1].send_line("hello alice");
    // alice receives bob's line as message 1 from bob.
    let got = clients[0].messages_from("bob", 1);
    assert_eq!(got[0]["text"], "hello alice", "alice got {got:?}");
    assert_eq!(got[0]["seq"], 1, "bob's first message is seq 1: {got:?}");

    finish_all(&mut clients);
    // In all, each got exactly the other's one message and never its own.
    assert_seqs_exactly(&clients[0].events_so_far(), "alice", "bob", 1, 1);
    assert_seqs_exactly(&clients[1].events_so_far(), "bob", "alice", 1, 1);
    assert_no_echo_no_gap(&clients);
}

#[test]
fn clients_on_three_servers_receive_everything_in_order() {
    const PER_CLIENT: u64 = 5;
    let cluster = Cluster::start(3);
    let names = ["alice", "bob", "carol"];
    let mut clients: Vec<Client> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Client::start_on(name, cluster.coordinator(), cluster.addr(i)))
        .collect();
    // Each client is on its own server, the one it was pinned to.
    for (i, client) in clients.iter().enumerate() {
        assert_eq!(client.wait_registered(), cluster.addr(i));
    }
    for client in clients.iter_mut() {
        for k in 1..=PER_CLIENT {
            let line = format!("{} line {k}", client.name);
            client.send_line(&line);
        }
    }
    // Every client receives the others' lines, seqs 1..=5 with the matching texts, in order.
    for client in &clients {
        for sender in names.iter().filter(|&&n| n != client.name) {
            let texts = client.texts_from(sender, PER_CLIENT as usize);
            let expected: Vec<String> = (1..=PER_CLIENT)
                .map(|k| format!("{sender} line {k}"))
                .collect();
            assert_eq!(texts, expected, "{} from {sender}", client.name);
        }
    }
    finish_all(&mut clients);
    // Nothing more arrived afterwards: exactly once each, and nobody heard itself.
    for client in &clients {
        for sender in names.iter().filter(|&&n| n != client.name) {
            assert_seqs_exactly(&client.events_so_far(), &client.name, sender, 1, PER_CLIENT);
        }
    }
    assert_no_echo_no_gap(&clients);
}

#[test]
fn concurrent_senders_are_delivered_exactly_once_in_order() {
    const LINES: u64 = 200;
    let cluster = Cluster::start(2);
    let names = ["c1", "c2", "c3", "c4"];
    // Two clients on each server, so that half the traffic crosses a peer link.
    let mut clients: Vec<Client> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Client::start_on(name, cluster.coordinator(), cluster.addr(i % 2)))
        .collect();
    for client in &clients {
        client.wait_registered();
    }

    // Every client writes its 200 lines at once, all four at the same time, one writer
    // thread each. stdin stays open afterwards: a client whose stdin ends leaves as soon as
    // its own messages are acknowledged, which may be before the others' have reached it.
    let mut stdins: Vec<_> = clients.iter_mut().map(Client::take_stdin).collect();
    thread::scope(|s| {
        for (stdin, name) in stdins.iter_mut().zip(names) {
            s.spawn(move || {
                for k in 1..=LINES {
                    writeln!(stdin, "{name} says {k}").expect("write to a client's stdin");
                }
                stdin.flush().expect("flush a client's stdin");
            });
        }
    });

    // Every client receives 200 messages from each of the three others.
    for client in &clients {
        let others: Vec<&str> = names
            .iter()
            .copied()
            .filter(|&n| n != client.name)
            .collect();
        client.wait_messages(&others, LINES as usize, TIMEOUT);
    }
    drop(stdins);
    // Each exits 0: all its 200 messages were acknowledged.
    finish_all(&mut clients);
    // And over the whole run, each received from each other exactly seqs 1..=200 once, in
    // order, with the texts in the same order.
    for client in &clients {
        let events = client.events_so_far();
        for sender in names.iter().filter(|&&n| n != client.name) {
            assert_seqs_exactly(&events, &client.name, sender, 1, LINES);
            let texts: Vec<&str> = events
                .iter()
                .filter(|e| e["event"] == "message" && e["from"] == *sender)
                .filter_map(|e| e["text"].as_str())
                .collect();
            let expected: Vec<String> = (1..=LINES).map(|k| format!("{sender} says {k}")).collect();
            assert_eq!(texts, expected, "{} from {sender}", client.name);
        }
    }
    assert_no_echo_no_gap(&clients);
}

#[test]
fn send_and_send_file_flags_deliver_text_and_file() {
    let cluster = Cluster::start(2);
    let files = TempDir::new("send-file");
    // A small binary file: every byte value, then a pattern, 50 KiB in all.
    let original: Vec<u8> = (0..50 * 1024u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let path = files.path().join("notes.bin");
    std::fs::write(&path, &original).expect("write the file to send");
    let path_arg = path.to_str().expect("temp paths are UTF-8");

    let mut bob = Client::start_on("bob", cluster.coordinator(), cluster.addr(1));
    bob.wait_registered();
    let mut alice = Client::start_with(
        "alice",
        cluster.coordinator(),
        Some(cluster.addr(0)),
        &["--send", "first words", "--send-file", path_arg],
    );
    alice.wait_registered();

    // bob receives the --send text as alice's message 1 ...
    let text = bob.expect_event("alice's --send text", TIMEOUT, |v| {
        v["event"] == "message" && v["from"] == "alice"
    });
    assert_eq!(text["text"], "first words", "{text}");
    assert_eq!(text["seq"], 1, "{text}");
    // ... then the --send-file file as message 2: a `file` event with the file's size and
    // a path inside bob's download directory whose content equals the original.
    let file = bob.expect_event("alice's --send-file file", TIMEOUT, |v| {
        v["event"] == "file" && v["from"] == "alice"
    });
    assert_eq!(file["seq"], 2, "{file}");
    assert_eq!(file["size"], original.len() as u64, "{file}");
    assert_eq!(file["name"], "notes.bin", "{file}");
    let saved = std::path::PathBuf::from(file["path"].as_str().unwrap_or_default());
    assert!(
        saved.starts_with(bob.download_dir()),
        "the file should be saved under bob's download dir {}: {file}",
        bob.download_dir().display()
    );
    let content = std::fs::read(&saved).unwrap_or_else(|e| panic!("read {file}: {e}"));
    assert!(
        content == original,
        "the saved file differs from the original"
    );

    // Both leave cleanly: alice's two messages were acknowledged.
    let alice_status = alice.finish(TIMEOUT);
    assert!(alice_status.success(), "alice exit: {alice_status}");
    let bob_status = bob.finish(TIMEOUT);
    assert!(bob_status.success(), "bob exit: {bob_status}");
    assert_seqs_exactly(&bob.events_so_far(), "bob", "alice", 1, 2);
}
