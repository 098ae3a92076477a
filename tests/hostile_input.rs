//! Hostile input against every listening port, the coordinator's and each server's, through
//! the real binary: silent connections, random bytes, an absurd length prefix, truncated
//! and trickled frames, frames in the wrong state, and more connections than allowed. Each
//! costs only its own connection (closed, with an `Error` frame when the frame made sense),
//! and afterwards the registered clients still share messages with nothing lost.
//!
//! The processes run with a short handshake deadline, so the connections that must be
//! closed at it are closed quickly; every wait for a close is bounded by [`CLOSE_WITHIN`].

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{Client, Cluster, Proc, assert_seqs_exactly, pseudo_random_bytes};
use dsys::protocol::{
    Body, Departure, MAX_PAYLOAD_LEN, Message, PROTOCOL_VERSION, Role, read_message,
};

/// A short handshake deadline for the processes under test.
const SHORT_HANDSHAKE: &[&str] = &["--handshake-timeout", "1000"];
/// How long a test waits for a process to close a connection that it must close: the
/// handshake deadline with plenty of slack for a loaded machine.
const CLOSE_WITHIN: Duration = Duration::from_secs(15);
/// Messages each client sends in one exchange.
const PER_EXCHANGE: u64 = 20;
const MIB: u64 = 1024 * 1024;
/// Time allowed for tens of megabytes of text to cross a loaded machine.
const BIG_TIMEOUT: Duration = Duration::from_secs(120);

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(CLOSE_WITHIN)).unwrap();
    stream.set_write_timeout(Some(CLOSE_WITHIN)).unwrap();
    stream
}

/// The opening of a connection that has no secret (the clusters here have none). It
/// may be written before the process's `Challenge` is read: the process reads it after.
fn hello(role: Role) -> Message {
    Message::Hello {
        version: PROTOCOL_VERSION,
        role,
        proof: [0; 32],
    }
}

/// Reads until the process closes the connection and returns the frames it sent first.
///
/// # Panics
/// When the connection is still open after [`CLOSE_WITHIN`].
fn read_until_closed(stream: &mut TcpStream, what: &str) -> Vec<Message> {
    let mut messages = Vec::new();
    loop {
        match read_message(stream) {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => return messages,
            Err(e) if e.is_timeout() => panic!("{what}: still open after {CLOSE_WITHIN:?}"),
            Err(_) => return messages, // reset: the process closed with our bytes unread
        }
    }
}

/// Writes `frames` to a new connection to `addr` (a write may fail once the process has
/// closed) and returns the reason of the `Error` frame the process answered with.
fn refusal(addr: &str, frames: &[Message], what: &str) -> String {
    let mut stream = connect(addr);
    for frame in frames {
        let _ = stream.write_all(&frame.encode());
    }
    let replies = read_until_closed(&mut stream, what);
    replies
        .iter()
        .find_map(|m| match m {
            Message::Error { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{what}: closed without an Error frame, after {replies:?}"))
}

/// Garbage at `addr`: 200 connections that never speak (returned still open), 50 bursts
/// of random bytes, a 0xFFFFFFFF length prefix and a truncated frame. Every connection but
/// the silent ones is closed by the process before this returns.
fn abuse(addr: &str, seed: u64) -> Vec<TcpStream> {
    let silent: Vec<TcpStream> = (0..200).map(|_| connect(addr)).collect();
    for i in 0..50 {
        let mut stream = connect(addr);
        let len = 1 + (seed as usize * 7919 + i * 977) % 4096;
        let _ = stream.write_all(&pseudo_random_bytes(len, seed * 1000 + i as u64));
        read_until_closed(&mut stream, "a burst of random bytes");
    }
    let mut stream = connect(addr);
    let _ = stream.write_all(&[0xFF; 4]);
    read_until_closed(&mut stream, "a 0xFFFFFFFF length prefix");

    let frame = hello(Role::Client).encode();
    let mut stream = connect(addr);
    stream.write_all(&frame[..frame.len() / 2]).unwrap();
    read_until_closed(&mut stream, "a truncated frame");
    silent
}

/// `alice` and `bob` each send [`PER_EXCHANGE`] more messages, and each receives all of
/// the other's so far, exactly once and in order (exchange `round`, counting from 0).
fn exchange(alice: &mut Client, bob: &mut Client, round: u64) {
    for i in 0..PER_EXCHANGE {
        alice.send_line(&format!("alice round {round} line {i}"));
        bob.send_line(&format!("bob round {round} line {i}"));
    }
    let total = PER_EXCHANGE * (round + 1);
    for (receiver, sender) in [(&*alice, "bob"), (&*bob, "alice")] {
        receiver.wait_messages(&[sender], total as usize, common::TIMEOUT);
        assert_seqs_exactly(&receiver.events_so_far(), &receiver.name, sender, 1, total);
    }
}

fn two_clients(cluster: &Cluster) -> (Client, Client) {
    let alice = Client::start_on("alice", cluster.coordinator(), cluster.addr(0));
    let bob = Client::start_on("bob", cluster.coordinator(), cluster.addr(1));
    alice.wait_registered();
    bob.wait_registered();
    (alice, bob)
}

#[test]
fn garbage_on_every_port_costs_only_its_connection_and_bounded_memory() {
    let cluster = Cluster::start_with(2, SHORT_HANDSHAKE, SHORT_HANDSHAKE);
    let (mut alice, mut bob) = two_clients(&cluster);
    let procs: Vec<&Proc> = vec![&cluster.coordinator, cluster.server(0), cluster.server(1)];
    let before: Vec<u64> = procs.iter().map(|p| p.rss_bytes()).collect();
    let ports = [cluster.coordinator(), cluster.addr(0), cluster.addr(1)];

    for (round, port) in ports.iter().enumerate() {
        let mut silent = abuse(port, round as u64 + 1);
        // While the silent connections are open, the clients still talk.
        exchange(&mut alice, &mut bob, round as u64);
        for stream in &mut silent {
            let replies = read_until_closed(stream, "a connection that never speaks");
            assert!(
                matches!(replies[..], [Message::Challenge { .. }]),
                "a silent connection should get its challenge and nothing else: {replies:?}"
            );
        }
    }

    for (proc, before) in procs.iter().zip(before) {
        let peak = proc.peak_rss_bytes();
        let growth = peak.saturating_sub(before);
        eprintln!(
            "{}: {:.1} MiB before, peak {:.1} MiB",
            proc.name(),
            before as f64 / MIB as f64,
            peak as f64 / MIB as f64
        );
        assert!(
            growth < 64 * MIB,
            "{} grew by {growth} bytes under garbage",
            proc.name()
        );
    }
}

#[test]
fn frames_in_the_wrong_state_are_refused_with_a_reason() {
    let cluster = Cluster::start_with(2, SHORT_HANDSHAKE, SHORT_HANDSHAKE);
    let (mut alice, mut bob) = two_clients(&cluster);
    let (server, coordinator) = (cluster.addr(0), cluster.coordinator());
    let heartbeat = Message::Heartbeat {
        addr: "127.0.0.1:1".into(),
        epoch: 0,
        clients: Some(vec![]),
        cut_off: Vec::new(),
        departure: Departure::Staying,
    };
    let publish = Message::Publish {
        seq: 1,
        body: Body::Text {
            number: 1,
            text: "sneaked in".into(),
        },
    };
    let register = |name: &str| Message::Register {
        name: name.into(),
        resume: None,
    };
    let cases: Vec<(&str, Vec<Message>, &str, &str)> = vec![
        (
            server,
            vec![hello(Role::Client), heartbeat.clone()],
            "expected Register",
            "a heartbeat on a client connection",
        ),
        (
            server,
            vec![hello(Role::Client), publish.clone()],
            "expected Register",
            "a broadcast before registration",
        ),
        (
            server,
            vec![hello(Role::Client), register("mallory"), heartbeat.clone()],
            "unexpected Heartbeat",
            "a heartbeat from a registered client",
        ),
        (
            server,
            vec![
                hello(Role::Client),
                register("mallory2"),
                Message::Publish {
                    seq: 1,
                    body: Body::Text {
                        number: 1,
                        text: "x".repeat(MAX_PAYLOAD_LEN + 1),
                    },
                },
            ],
            "too large",
            "a publish whose payload is over the cap",
        ),
        (
            server,
            vec![hello(Role::Peer), publish.clone()],
            "expected PeerHello",
            "a publish on a peer link",
        ),
        (
            server,
            vec![hello(Role::Heartbeat)],
            "does not serve",
            "a heartbeat connection to a server",
        ),
        (
            coordinator,
            vec![hello(Role::Client)],
            "does not serve",
            "a client connection to the coordinator",
        ),
        (
            coordinator,
            vec![hello(Role::Heartbeat), publish],
            "expected Heartbeat",
            "a publish on a heartbeat connection",
        ),
        (
            coordinator,
            vec![
                hello(Role::Heartbeat),
                Message::Heartbeat {
                    addr: format!("{}:1", "h".repeat(60_000)),
                    epoch: 0,
                    clients: Some(vec![]),
                    cut_off: Vec::new(),
                    departure: Departure::Staying,
                },
            ],
            "HOST:PORT of at most",
            "a heartbeat whose address is 60 KB long",
        ),
        (
            coordinator,
            vec![hello(Role::Locate), Message::StatusQuery],
            "expected Locate",
            "a status query on a locate connection",
        ),
    ];
    for (addr, frames, expected, what) in cases {
        let reason = refusal(addr, &frames, what);
        assert!(
            reason.contains(expected),
            "{what}: refused with {reason:?}, expected it to say {expected:?}"
        );
    }
    exchange(&mut alice, &mut bob, 0);
}

/// A handshake sent one byte at a time, each well within the handshake deadline, must
/// still be complete by the deadline: the deadline is for the whole handshake, not for
/// each read, or a trickle could hold a thread for ever.
#[test]
fn a_handshake_trickled_a_byte_at_a_time_is_cut_off_at_the_deadline() {
    let cluster = Cluster::start_with(1, SHORT_HANDSHAKE, SHORT_HANDSHAKE);
    let opening: Vec<u8> = [
        hello(Role::Client).encode(),
        Message::Register {
            name: "trickle".into(),
            resume: None,
        }
        .encode(),
    ]
    .concat();
    let mut stream = connect(cluster.addr(0));
    for byte in &opening {
        if stream.write_all(&[*byte]).is_err() {
            break; // closed already
        }
        // The pace of the trickle is the behaviour under test: 5 bytes a second, so the
        // whole handshake would take several times the deadline.
        std::thread::sleep(Duration::from_millis(200));
    }
    let replies = read_until_closed(&mut stream, "a trickled handshake");
    assert!(
        !replies
            .iter()
            .any(|m| matches!(m, Message::Registered { .. })),
        "a handshake that took longer than the deadline was accepted: {replies:?}"
    );
}

/// Opens connections to `addr` that never speak until one is refused; returns the open
/// ones and the refusal's reason.
///
/// # Panics
/// When `limit + 1` connections are open and none was refused.
fn fill_up(addr: &str, limit: usize) -> (Vec<TcpStream>, String) {
    let mut open = Vec::new();
    for _ in 0..=limit {
        let mut stream = connect(addr);
        // An accepted connection is challenged at once; a refused one is told why.
        match read_message(&mut stream) {
            Ok(Some(Message::Challenge { .. })) => open.push(stream),
            Ok(Some(Message::Error { reason, .. })) => return (open, reason),
            other => panic!("a fresh connection to {addr} got {other:?}"),
        }
    }
    panic!("{} connections to {addr} and none refused", limit + 1)
}

#[test]
fn connections_over_the_limit_are_refused_with_a_reason() {
    const LIMIT: usize = 40;
    let cluster = Cluster::start_with(
        2,
        &["--max-connections", "40"],
        &["--max-connections", "40"],
    );
    let (mut alice, mut bob) = two_clients(&cluster);
    for (round, addr) in [cluster.coordinator(), cluster.addr(0)].iter().enumerate() {
        let (open, reason) = fill_up(addr, LIMIT);
        assert!(
            reason.contains("too many connections"),
            "refused with {reason:?}"
        );
        // The clients registered before the flood keep talking through it.
        exchange(&mut alice, &mut bob, round as u64);
        drop(open);
    }
    // Once the flood is gone, newcomers are served again.
    common::wait_until("server 0 accepting again", common::TIMEOUT, || {
        let mut stream = connect(cluster.addr(0));
        let _ = stream.write_all(&hello(Role::Client).encode());
        let _ = stream.write_all(
            &Message::Register {
                name: "newcomer".into(),
                resume: None,
            }
            .encode(),
        );
        let challenged = matches!(
            read_message(&mut stream),
            Ok(Some(Message::Challenge { .. }))
        );
        challenged
            && matches!(
                read_message(&mut stream),
                Ok(Some(Message::Registered { .. }))
            )
    });
}

/// A client that stops reading (SIGSTOP) while another sends 30 MB of text, more than the
/// socket buffers hold. Its server cuts it off with a reason once a write to it has blocked
/// for the write timeout; meanwhile a client on another server gets every message; and the
/// stopped client, woken up, resumes and has every message too, once and in order.
#[test]
fn a_client_that_stops_reading_is_cut_off_with_a_reason_and_loses_nothing() {
    const LINES: u64 = 30_000;
    let cluster = Cluster::start_with(
        2,
        &[],
        &[
            "--write-timeout",
            "2000",
            "--stall-timeout",
            "500",
            // Room for everything the stopped client misses, so it can lose nothing.
            "--history-bytes",
            "67108864",
        ],
    );
    let mut alice = Client::start_on("alice", cluster.coordinator(), cluster.addr(0));
    let stopped = Client::start_on("carol", cluster.coordinator(), cluster.addr(0));
    let bob = Client::start_on("bob", cluster.coordinator(), cluster.addr(1));
    for client in [&alice, &stopped, &bob] {
        client.wait_registered();
    }

    stopped.proc.stop();
    let padding = "x".repeat(1000);
    for i in 0..LINES {
        alice.send_line(&format!("{i} {padding}"));
    }
    bob.wait_messages(&["alice"], LINES as usize, BIG_TIMEOUT);
    assert_seqs_exactly(&bob.events_so_far(), "bob", "alice", 1, LINES);
    cluster
        .server(0)
        .wait_for_stderr("slow consumer cut off name=carol", BIG_TIMEOUT);

    stopped.proc.cont();
    stopped.wait_messages(&["alice"], LINES as usize, BIG_TIMEOUT);
    assert_seqs_exactly(&stopped.events_so_far(), "carol", "alice", 1, LINES);
}

/// A registered connection that falls silent (no keepalive, nothing) is closed after
/// `--idle-timeout`, and its name is free again.
#[test]
fn a_registered_client_that_falls_silent_is_closed_after_the_idle_timeout() {
    let cluster = Cluster::start_with(1, &[], &["--idle-timeout", "1000"]);
    let mut stream = connect(cluster.addr(0));
    let register = Message::Register {
        name: "quiet".into(),
        resume: None,
    };
    stream.write_all(&hello(Role::Client).encode()).unwrap();
    stream.write_all(&register.encode()).unwrap();
    let replies = read_until_closed(&mut stream, "a registered client that falls silent");
    assert!(
        replies
            .iter()
            .any(|m| matches!(m, Message::Registered { .. })),
        "it should have been registered first: {replies:?}"
    );
    cluster
        .server(0)
        .wait_for_stderr("client left name=quiet", CLOSE_WITHIN);
}

/// A server or coordinator listening beyond loopback without a secret says, in its log,
/// that anyone who can reach it may join.
#[test]
fn listening_beyond_loopback_without_a_secret_logs_a_warning() {
    let mut cmd = common::dsys();
    cmd.args(["coordinator", "--listen", "0.0.0.0:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    let coordinator = Proc::spawn("coordinator on 0.0.0.0", cmd);
    coordinator.wait_for_stderr("without a cluster secret", common::TIMEOUT);
}
