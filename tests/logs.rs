//! What the logs say: each line names what happened, in words, at a level that fits, and
//! names the connection it is about.
//!
//! A handshake that misses its deadline is logged as that, not as `os error 11`; a client
//! that loses its server logs "server closed the connection" or "server silent", not a
//! "protocol error"; a hung server that wakes up says, for each client, that its
//! connection closed without a goodbye, and that it was fenced because its clients were
//! moved. A server without a coordinator keeps saying so, at a calm pace. Servers that
//! join, or rejoin after a fence, log no warning: being turned away by a peer that has
//! not heard of them yet is a normal step. A registered client that stops inside a frame,
//! or sends an absurd length, is logged with its address and what it did.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use common::{
    Client, Cluster, HEARTBEAT_TIMEOUT_MS, Proc, TIMEOUT, start_coordinator_at, start_server,
    unused_addr,
};
use dsys::protocol::{Body, Message, Role};

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
fn a_client_with_no_server_to_go_to_says_so_once_not_at_every_retry() {
    let mut cluster = Cluster::start(1);
    let mut cmd = common::dsys();
    cmd.env("RUST_LOG", "debug");
    let alice = Client::start_from(
        cmd,
        "alice",
        cluster.coordinator(),
        Some(cluster.addr(0)),
        &[],
    );
    alice.wait_registered();
    cluster.kill_server(0);
    // A DEBUG line for the same failure means the client has retried at least once.
    let retried = alice.proc.wait_for_stderr(
        "DEBUG dsys::roles::client::session::register] cannot reach server",
        TIMEOUT,
    );
    assert!(retried.contains(cluster.addr(0)), "{retried}");
    let said: Vec<String> = alice
        .proc
        .stderr_so_far()
        .into_iter()
        .filter(|l| l.contains("cannot reach server") && !l.contains("DEBUG"))
        .collect();
    assert_eq!(said.len(), 1, "said once at INFO: {said:#?}");
    assert!(said[0].contains("INFO"), "{}", said[0]);
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

/// The lines `proc` logged at WARN or ERROR from its `from`-th line on.
fn alarms_from(proc: &Proc, from: usize) -> Vec<String> {
    proc.stderr_so_far()
        .into_iter()
        .skip(from)
        .filter(|line| matches!(level(line), "WARN" | "ERROR"))
        .collect()
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

/// Servers that join a cluster are turned away by each peer until the coordinator has
/// listed them to it: a normal step, logged as such, never as a warning.
#[test]
fn servers_that_join_log_no_warning() {
    // Few enough clients that no open-file limit warns at start.
    let cluster = Cluster::start_with(3, &[], &["--max-clients", "100"]);
    // `start` returns once every server has a link up to every other: each join is over.
    for proc in [
        &cluster.coordinator,
        cluster.server(0),
        cluster.server(1),
        cluster.server(2),
    ] {
        let alarms = alarms_from(proc, 0);
        assert!(alarms.is_empty(), "{} warned: {alarms:#?}", proc.name());
    }
}

/// A server that hung, was declared dead and wakes up is fenced, and rejoins as a new
/// incarnation. The fence is its own warning to give; the other servers, which turn its
/// new incarnation away until they have heard of it, and the coordinator warn of nothing.
#[test]
fn a_rejoin_after_a_fence_warns_nobody_else() {
    let cluster = Cluster::start_with(2, &[], &["--max-clients", "100"]);
    cluster.hang_server(0);
    cluster.coordinator.wait_for_stderr(
        &format!("server declared dead addr={} ", cluster.addr(0)),
        TIMEOUT,
    );
    let before_wake = [
        cluster.coordinator.stderr_so_far().len(),
        cluster.server(1).stderr_so_far().len(),
    ];
    cluster.wake_server(0);
    cluster
        .server(0)
        .wait_for_stderr("fenced by the coordinator", TIMEOUT);
    // The new incarnation's links are up both ways: the rejoin is over.
    cluster.wait_peer_links(0, 1, 2);
    cluster.wait_peer_links(1, 0, 2);

    for (proc, from) in [&cluster.coordinator, cluster.server(1)]
        .into_iter()
        .zip(before_wake)
    {
        let alarms = alarms_from(proc, from);
        assert!(alarms.is_empty(), "{} warned: {alarms:#?}", proc.name());
    }
}

/// A connection registered as `name` on `server`, straight from the test: it can then stop
/// wherever a test wants, mid-frame included.
fn registered_connection(server: &str, name: &str) -> TcpStream {
    let mut stream = dsys::net::connect_as(server, Role::Client, TIMEOUT, None)
        .unwrap_or_else(|e| panic!("connect to {server}: {e}"));
    let register = Message::Register {
        name: name.to_string(),
        resume: None,
    };
    match dsys::net::request(&mut stream, &register) {
        Ok(Message::Registered { .. }) => stream,
        other => panic!("{name} was not registered: {other:?}"),
    }
}

#[test]
fn a_client_that_stops_inside_a_frame_is_logged_with_its_address_and_what_it_did() {
    let cluster = Cluster::start(1);
    let mut stream = registered_connection(cluster.addr(0), "torn");
    let peer = stream.local_addr().expect("local_addr").to_string();
    let publish = Message::Publish {
        seq: 1,
        body: Body::Text {
            number: 1,
            text: "cut short".into(),
        },
    }
    .encode();
    // The length and part of the body, then the end of the stream: a client killed while
    // it wrote, as the server sees it.
    let sent = publish.len() / 2;
    stream
        .write_all(&publish[..sent])
        .expect("write half a frame");
    stream.shutdown(Shutdown::Write).expect("shutdown");

    let line = cluster
        .server(0)
        .wait_for_stderr("client left name=torn ", TIMEOUT);
    assert!(line.contains(&format!("peer={peer} ")), "{line}");
    let what = format!(
        "connection closed inside a frame: {sent} of its {} bytes had arrived",
        publish.len()
    );
    assert!(line.contains(&what), "{line}");
    // Its own end, not a fault an operator could fix.
    assert_eq!(level(&line), "INFO", "{line}");
}

#[test]
fn a_client_that_sends_an_absurd_length_is_logged_with_its_address_and_what_it_did() {
    let cluster = Cluster::start(1);
    let mut stream = registered_connection(cluster.addr(0), "absurd");
    let peer = stream.local_addr().expect("local_addr").to_string();
    stream.write_all(&[0xff; 4]).expect("write the length");

    let line = cluster
        .server(0)
        .wait_for_stderr("client left name=absurd ", TIMEOUT);
    assert!(line.contains(&format!("peer={peer} ")), "{line}");
    assert!(
        line.contains("frame of 4294967295 bytes exceeds the 1048576-byte cap"),
        "{line}"
    );
    // A client that breaks the protocol is worth a look: a bug, or an attack.
    assert_eq!(level(&line), "WARN", "{line}");
}
