//! Refusals a program acts on carry a code (`Refusal` in `src/error.rs`, `docs/protocol.md`
//! 6.8), and the receiver acts on the code, never on the words.
//!
//! For each code, one test makes the real refusal (the real binary refuses the real
//! request) and checks what the receiver does because of it. Where the receiver is a dsys
//! process and the refusal is hard to provoke on cue (a peer's), a stand-in that the test
//! runs says the code in new words: the receiver must act the same. The last test has the
//! stand-in say the old words with no code: the receiver must not act on them. And a peer
//! of another protocol version still gets a refusal it can read.
//!
//! Stand-ins (`with_stand_in`) run on scoped threads and stop when the test's closure
//! returns, pass or fail; every process is a `Proc`, killed on drop.

mod common;

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::{
    Cluster, HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS, RawClient, TIMEOUT, run_dsys,
    start_coordinator, start_server, start_server_with, status_entry, status_json, wait_until,
    wait_until_servers_alive,
};
use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};
use dsys::protocol::{
    Departure, Message, PROTOCOL_VERSION, Refusal, Role, read_frame, read_message, write_message,
};

// --- NoLiveServer -------------------------------------------------------------------------

/// A coordinator that knows no live server refuses a `Locate` with `NoLiveServer`, and the
/// client says "no live server" instead of calling the coordinator unreachable; it does so
/// for that code in any words.
#[test]
fn no_live_server_is_told_by_its_code() {
    let (_coordinator, coordinator) = start_coordinator(HEARTBEAT_TIMEOUT_MS);
    // The real refusal carries the code.
    let mut stream = dsys::net::connect_as(&coordinator, Role::Locate, TIMEOUT, None)
        .expect("the coordinator takes a Locate connection");
    let locate = Message::Locate {
        name: "alice".into(),
        suspect: String::new(),
        unreachable: false,
    };
    assert_eq!(
        refusal_of(dsys::net::request(&mut stream, &locate)),
        Refusal::NoLiveServer
    );
    // The client turns it into its own sentence.
    let said = client_fails_with(&coordinator);
    assert!(said.contains("no live server"), "{said}");
    assert!(said.contains("has no server to offer"), "{said}");
    // A coordinator that says the code in other words gets the same sentence.
    with_stand_in(
        None,
        Refusal::NoLiveServer,
        "nothing to offer today",
        |stand_in| {
            let said = client_fails_with(stand_in);
            assert!(said.contains("has no server to offer"), "{said}");
        },
    );
}

/// `dsys client` asking `coordinator` for a server, to the end: its one stderr line.
fn client_fails_with(coordinator: &str) -> String {
    let args = ["client", "--coordinator", coordinator, "--name", "alice"];
    let done = run_dsys(&args, &[("RUST_LOG", "off")], TIMEOUT);
    assert_eq!(done.code(), Some(1), "{:?}", done.stderr);
    let lines = done.stderr_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].to_string()
}

// --- ServerFull ---------------------------------------------------------------------------

/// A server at `--max-clients` refuses with `ServerFull`, and logs that refusal as a WARN
/// (the operator's business), where a name refused is an INFO (the client's).
#[test]
fn a_full_server_refuses_with_server_full_and_warns_its_operator() {
    let (_coordinator, coordinator) = start_coordinator(HEARTBEAT_TIMEOUT_MS);
    let flags = ["--max-clients", "1"];
    let (server, addr) = start_server_with(&coordinator, HEARTBEAT_INTERVAL_MS, &flags);
    wait_until_servers_alive(&coordinator, 1, TIMEOUT);
    let _first = RawClient::register(&addr, "first").expect("the first client fits");

    // The second does not, and the refusal says so by its code ...
    assert_eq!(
        refusal_of(RawClient::register(&addr, "second").map(|c| c.name)),
        Refusal::ServerFull
    );
    // ... which makes the server's line a WARN.
    let full = server.wait_for_stderr("registration refused name=\"second\"", TIMEOUT);
    assert_eq!(level(&full), "WARN", "{full}");

    // A name taken is refused with no code to act on, and logged as an INFO.
    assert_eq!(
        refusal_of(RawClient::register(&addr, "first").map(|c| c.name)),
        Refusal::Other
    );
    let taken = server.wait_for_stderr("registration refused name=\"first\"", TIMEOUT);
    assert_eq!(level(&taken), "INFO", "{taken}");
}

// --- DeclaredDead -------------------------------------------------------------------------

/// A server that saw the coordinator drop a peer incarnation refuses that incarnation's
/// link with `DeclaredDead`; a server whose link is refused so, in any words, fences itself:
/// it warns, and comes back as a new incarnation. (`tests/partitions.rs` has the whole
/// story, where the server cut off from the coordinator alone learns it this way.)
#[test]
fn declared_dead_is_told_by_its_code_and_fences_the_server() {
    let cluster = Cluster::start(2);
    let (a, b) = (cluster.addr(0), cluster.addr(1));
    let epoch = status_entry(&status_json(cluster.coordinator()), a)["epoch"]
        .as_u64()
        .expect("status gives each server's epoch");
    // Server 0 hangs until it is declared dead, and server 1 drops its incarnation.
    cluster.hang_server(0);
    cluster
        .server(1)
        .wait_for_stderr(&format!("peer removed addr={a} epoch={epoch}"), TIMEOUT);
    // A link from that incarnation is refused with the code.
    assert_eq!(peer_hello(b, a, epoch), Refusal::DeclaredDead);

    // A server whose link meets that code fences itself, whatever the words.
    let (coordinator_proc, coordinator) = start_coordinator(HEARTBEAT_TIMEOUT_MS);
    with_stand_in(
        Some(&coordinator),
        Refusal::DeclaredDead,
        "gone, sorry",
        |stand_in| {
            let (server, addr) = start_server(&coordinator, HEARTBEAT_INTERVAL_MS);
            let fenced = format!("peer {stand_in} says this server was declared dead");
            server.wait_for_stderr(&fenced, TIMEOUT);
            // It rejoins: the coordinator sees a second incarnation of it come up.
            let up = format!("server up addr={addr} ");
            wait_until("the server back as a new incarnation", TIMEOUT, || {
                count_lines(&coordinator_proc.stderr_so_far(), &up) >= 2
            });
        },
    );
}

// --- NotListedYet -------------------------------------------------------------------------

/// A server refuses a link from an incarnation it has not heard of with `NotListedYet`; a
/// server whose link is refused so, in any words, waits and tries again, at INFO.
#[test]
fn not_listed_yet_is_told_by_its_code_and_the_link_waits() {
    let (_coordinator, coordinator) = start_coordinator(HEARTBEAT_TIMEOUT_MS);
    let (_server, addr) = start_server(&coordinator, HEARTBEAT_INTERVAL_MS);
    wait_until_servers_alive(&coordinator, 1, TIMEOUT);
    // An incarnation nobody listed is refused with the code.
    assert_eq!(peer_hello(&addr, "127.0.0.1:9", 1), Refusal::NotListedYet);

    with_stand_in(
        Some(&coordinator),
        Refusal::NotListedYet,
        "who are you?",
        |stand_in| {
            let (server, _) = start_server(&coordinator, HEARTBEAT_INTERVAL_MS);
            // Twice: it does not give up on the peer.
            let waits = format!("peer link waits addr={stand_in} ");
            wait_until("the link to wait twice", TIMEOUT, || {
                count_lines(&server.stderr_so_far(), &waits) >= 2
            });
            let line = server.wait_for_stderr(&waits, TIMEOUT);
            assert_eq!(level(&line), "INFO", "{line}");
        },
    );
}

// --- The words alone ----------------------------------------------------------------------

/// A refusal with no code is only words, even the words a declared-dead or not-listed
/// refusal used to be recognised by: the server neither fences itself nor waits, it logs
/// the link as down.
#[test]
fn the_old_words_without_a_code_change_nothing() {
    let words = "127.0.0.1:1 epoch 1 was declared dead: the coordinator no longer lists it; \
                 127.0.0.1:1 epoch 1 is not a live peer of 127.0.0.1:2";
    let (_coordinator, coordinator) = start_coordinator(HEARTBEAT_TIMEOUT_MS);
    with_stand_in(Some(&coordinator), Refusal::Other, words, |stand_in| {
        let (server, _) = start_server(&coordinator, HEARTBEAT_INTERVAL_MS);
        server.wait_for_stderr(&format!("peer link down addr={stand_in} "), TIMEOUT);
        let acted: Vec<String> = server
            .stderr_so_far()
            .into_iter()
            .filter(|l| {
                l.contains("says this server was declared dead") || l.contains("peer link waits")
            })
            .collect();
        assert!(acted.is_empty(), "acted on the words: {acted:#?}");
    });
}

// --- Another version --------------------------------------------------------------------

/// A peer that speaks another protocol version is refused in words it can read: the
/// refusal has code `Other`, which is laid out as in every version so far, the words alone
/// (`docs/protocol.md`, 5.1), so a build of version 6, which knows no code, reads it whole.
#[test]
fn a_peer_of_another_version_is_refused_in_a_frame_every_version_reads() {
    let (_coordinator, coordinator) = start_coordinator(HEARTBEAT_TIMEOUT_MS);
    let (_server, addr) = start_server(&coordinator, HEARTBEAT_INTERVAL_MS);
    for (version, port) in [
        (PROTOCOL_VERSION - 1, &addr),
        (PROTOCOL_VERSION + 1, &coordinator),
    ] {
        let mut stream = TcpStream::connect(port).expect("connect");
        stream
            .set_read_timeout(Some(TIMEOUT))
            .expect("set_read_timeout");
        let Ok(Some(Message::Challenge { nonce: _ })) = read_message(&mut stream) else {
            panic!("{port} did not open with a challenge");
        };
        let hello = Message::Hello {
            version,
            role: Role::Client,
            proof: [0; 32],
        };
        write_message(&mut stream, &hello).expect("write the Hello");
        let body = read_frame(&mut stream)
            .expect("a refusal")
            .expect("a frame before the close");
        // Version 6's `Error`: type 0x02, then a `str`, and not a byte more.
        let words = format!("protocol version {version}, this build speaks {PROTOCOL_VERSION}");
        let mut version_6 = vec![0x02];
        version_6.extend_from_slice(&(words.len() as u16).to_be_bytes());
        version_6.extend_from_slice(words.as_bytes());
        assert_eq!(body, version_6, "{port} refusing version {version}");
    }
}

// --- Helpers ------------------------------------------------------------------------------

/// The code of the refusal `outcome` must be.
#[track_caller]
fn refusal_of<T: std::fmt::Debug>(outcome: dsys::Result<T>) -> Refusal {
    match outcome {
        Err(dsys::Error::Refused(code, _)) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Opens a peer link to `server` as the incarnation `(addr, epoch)` and returns the code it
/// is refused with.
fn peer_hello(server: &str, addr: &str, epoch: u64) -> Refusal {
    let mut stream = dsys::net::connect_as(server, Role::Peer, TIMEOUT, None)
        .unwrap_or_else(|e| panic!("connect to {server}: {e}"));
    let hello = Message::PeerHello {
        addr: addr.to_string(),
        epoch,
    };
    refusal_of(dsys::net::request(&mut stream, &hello))
}

/// The level of an env_logger line: `[TIME LEVEL module] text`.
fn level(line: &str) -> &str {
    line.split_whitespace().nth(1).unwrap_or_default()
}

fn count_lines(lines: &[String], pattern: &str) -> usize {
    lines.iter().filter(|l| l.contains(pattern)).count()
}

/// The heartbeat interval of a stand-in server, as the real ones in these tests.
const STAND_IN_INTERVAL: Duration = Duration::from_millis(HEARTBEAT_INTERVAL_MS);

/// Runs `test` with a stand-in listening at the address it is given. The stand-in answers
/// every connection as a dsys process does (a `Challenge` first), then answers the first
/// request after the `Hello` (a `PeerHello`, a `Locate`) with `Error{code, words}`. With a
/// `coordinator`, it also heartbeats to it as a server of that address, so that the real
/// servers link to it.
///
/// Its threads are scoped: on the way out of `test`, pass or fail, the stop channel is
/// dropped and the accept is woken, so both end and are joined.
fn with_stand_in<T>(
    coordinator: Option<&str>,
    code: Refusal,
    words: &str,
    test: impl FnOnce(&str) -> T,
) -> T {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr").to_string();
    let stopping = AtomicBool::new(false);
    let (stop_tx, stop_rx) = bounded::<()>(0);
    thread::scope(|scope| {
        let stop = Stop {
            stop_tx: Some(stop_tx),
            stopping: &stopping,
            addr: &addr,
        };
        if let Some(coordinator) = coordinator {
            let addr = &addr;
            scope.spawn(move || heartbeat_as(coordinator, addr, stop_rx));
        }
        scope.spawn(|| refuse_every_request(&listener, code, words, &stopping));
        let outcome = test(&addr);
        drop(stop);
        outcome
    })
}

/// Stops a stand-in when dropped: drops the stop channel's sender, which ends the heartbeat
/// loop's wait at once, and sets the flag, then wakes the accept with a connection of its
/// own, which sees the flag and returns.
struct Stop<'a> {
    stop_tx: Option<crossbeam_channel::Sender<()>>,
    stopping: &'a AtomicBool,
    addr: &'a str,
}

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        drop(self.stop_tx.take());
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Heartbeats to `coordinator` as a server at `addr`, every [`STAND_IN_INTERVAL`], until
/// `stop_rx` disconnects or the coordinator goes.
fn heartbeat_as(coordinator: &str, addr: &str, stop_rx: Receiver<()>) {
    let Ok(mut stream) = dsys::net::connect_as(coordinator, Role::Heartbeat, TIMEOUT, None) else {
        return;
    };
    let mut epoch = 0;
    loop {
        let heartbeat = Message::Heartbeat {
            addr: addr.to_string(),
            epoch,
            clients: Some(Vec::new()),
            cut_off: Vec::new(),
            departure: Departure::Staying,
        };
        match dsys::net::request(&mut stream, &heartbeat) {
            Ok(Message::HeartbeatReply { epoch: given, .. }) => epoch = given,
            _ => return,
        }
        // The pace that keeps it alive; the disconnect ends the wait at once.
        if let Err(RecvTimeoutError::Disconnected) = stop_rx.recv_timeout(STAND_IN_INTERVAL) {
            return;
        }
    }
}

/// Accepts until `stopping`, answering each connection's first request with the refusal.
fn refuse_every_request(listener: &TcpListener, code: Refusal, words: &str, stopping: &AtomicBool) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(mut stream) = stream {
            let _ = refuse_first_request(&mut stream, code, words);
        }
    }
}

/// One connection: the challenge, the `Hello`, the request, the refusal. A connection that
/// closes before its request (the coordinator's probe) is let go.
fn refuse_first_request(stream: &mut TcpStream, code: Refusal, words: &str) -> dsys::Result<()> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    write_message(stream, &Message::Challenge { nonce: [0; 16] })?;
    if let Some(Message::Hello { .. }) = read_message(stream)?
        && read_message(stream)?.is_some()
    {
        let reason = words.to_string();
        write_message(stream, &Message::Error { code, reason })?;
    }
    Ok(())
}
