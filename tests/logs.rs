//! What the logs say: each line names what happened, in words, at a level that fits.
//!
//! A handshake that misses its deadline is logged as that, not as `os error 11`; a client
//! that loses its server logs "server closed the connection" or "server silent", not a
//! "protocol error"; a hung server that wakes up says, for each client, that its
//! connection closed without a goodbye, and that it was fenced because its clients were
//! moved. A server without a coordinator keeps saying so, at a calm pace.

mod common;

use std::io::Read;
use std::net::TcpStream;

use common::{
    Client, Cluster, HEARTBEAT_TIMEOUT_MS, TIMEOUT, start_coordinator_at, start_server, unused_addr,
};

/// A short handshake deadline, so that the test waits for it briefly.
const SHORT_HANDSHAKE: &[&str] = &["--handshake-timeout", "300"];

#[test]
fn a_missed_handshake_deadline_is_logged_as_such() {
    let cluster = Cluster::start_with(1, SHORT_HANDSHAKE, SHORT_HANDSHAKE);
    for (who, addr) in [
        (&cluster.coordinator, cluster.coordinator()),
        (cluster.server(0), cluster.addr(0)),
    ] {
        // Connect, take the challenge, say nothing.
        let mut stream = TcpStream::connect(addr).expect("connect");
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).expect("the challenge");
        let local = stream.local_addr().expect("local_addr").to_string();
        let line = who.wait_for_stderr(&format!("connection closed peer={local}"), TIMEOUT);
        assert!(
            line.contains("the handshake deadline passed"),
            "{}: {line}",
            who.name()
        );
    }
}

#[test]
fn a_client_that_loses_its_server_logs_why_in_words() {
    let mut cluster = Cluster::start(2);
    let alice = Client::start_on("alice", cluster.coordinator(), cluster.addr(0));
    alice.wait_registered();
    cluster.kill_server(0);
    let line = alice.proc.wait_for_stderr("lost server", TIMEOUT);
    assert!(
        line.contains("reason=\"server closed the connection\""),
        "{line}"
    );
}

#[test]
fn a_woken_server_says_its_clients_moved_and_why_it_was_fenced() {
    let cluster = Cluster::start(2);
    let alice = Client::start_on("alice", cluster.coordinator(), cluster.addr(0));
    alice.wait_registered();
    cluster.wait_status("alice listed on server 0", TIMEOUT, |status| {
        common::entry_clients(&common::status_entry(status, cluster.addr(0)))
            .contains(&"alice".to_string())
    });

    // Hung, the server falls silent: alice says so, in those words, and moves.
    cluster.hang_server(0);
    let line = alice.proc.wait_for_stderr("lost server", TIMEOUT);
    assert!(
        line.contains("reason=\"server silent for") && !line.contains("protocol error"),
        "{line}"
    );
    alice.expect_event("alice's failover", TIMEOUT, |v| v["event"] == "failover");

    // Woken, the server finds alice's connection closed (she moved while it was hung)
    // and says so, then learns from the coordinator that it was fenced, and why. Should
    // the coordinator's answer come first, the fencing drops alice and counts her.
    cluster.wake_server(0);
    let server = cluster.server(0);
    let fenced = server.wait_for_stderr("fenced by the coordinator", TIMEOUT);
    assert!(
        fenced.contains("declared dead") && fenced.contains("clients were moved"),
        "{fenced}"
    );
    let left = server
        .stderr_so_far()
        .into_iter()
        .find(|line| line.contains("client left name=alice"));
    let left = match left {
        Some(left) => left,
        // Dropped by the fencing before her connection's thread saw it close.
        None if fenced.contains("dropping the 1 still connected") => return,
        // Her connection's thread removed her, but had not logged it yet.
        None => server.wait_for_stderr("client left name=alice", TIMEOUT),
    };
    assert!(
        left.contains("without a goodbye") && left.contains("moved to another server"),
        "{left}"
    );
}

/// The level of an `env_logger` line (`[TIME LEVEL  module] text`): `WARN`, `INFO`, ...
fn level(line: &str) -> &str {
    line.split_whitespace().nth(1).unwrap_or_default()
}

#[test]
fn a_server_without_a_coordinator_keeps_saying_so() {
    // Nothing listens at the coordinator's address until the end of the test. A 10 ms
    // heartbeat interval makes the reminders (every 60 intervals) come every 0.6 s.
    let coordinator = unused_addr();
    let (server, _) = start_server(&coordinator, 10);

    let first = server.wait_for_stderr("coordinator unreachable", TIMEOUT);
    assert_eq!(level(&first), "WARN", "{first}");
    for consequence in ["checked on this server only", "no failover is possible"] {
        assert!(first.contains(consequence), "{first}");
    }
    // It says so again, and again: not once and then never.
    for _ in 0..2 {
        let reminder = server.wait_for_stderr("coordinator still unreachable", TIMEOUT);
        assert_eq!(level(&reminder), "WARN", "{reminder}");
        assert!(reminder.contains("no failover is possible"), "{reminder}");
    }

    // And it says when the coordinator is back.
    let (_coordinator, _) = start_coordinator_at(&coordinator, HEARTBEAT_TIMEOUT_MS);
    let back = server.wait_for_stderr("coordinator reachable again", TIMEOUT);
    assert_eq!(level(&back), "INFO", "{back}");
}
