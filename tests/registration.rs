//! Registration as `CONTRACT.md` pins it: the text and JSON answers to `dsys client
//! --register`, the refusals (a name already in use, here or on another server, however the
//! client got there; an invalid name) with exit status 1 and one clear stderr line, and
//! `dsys status` listing each client under its server.
//!
//! Every test starts its own coordinator and servers on free ports (see `common::Cluster`).
//! A client that must stay registered is a [`Client`] with its stdin open; a client that
//! only registers and leaves runs to completion with [`run_dsys`] (stdin empty).

mod common;

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::{
    Client, Cluster, TIMEOUT, TempDir, entry_clients, run_dsys, status_entry, status_servers,
};
use dsys::protocol::{Message, PROTOCOL_VERSION, Role, read_message, write_message};

/// Runs `dsys client --register --name NAME [--server SERVER]` to completion with stdin
/// empty and logs off (so stderr holds only what the user is told), plus `extra` flags.
/// Without a server the client asks the coordinator where to go.
fn register_once(
    cluster: &Cluster,
    name: &str,
    server: Option<&str>,
    extra: &[&str],
) -> common::Finished {
    let downloads = TempDir::new("registration");
    let dir = downloads.path().to_str().expect("temp paths are UTF-8");
    let mut args = vec![
        "client",
        "--register",
        "--name",
        name,
        "--coordinator",
        cluster.coordinator(),
        "--download-dir",
        dir,
    ];
    if let Some(server) = server {
        args.extend_from_slice(&["--server", server]);
    }
    args.extend_from_slice(extra);
    run_dsys(&args, &[("RUST_LOG", "off")], TIMEOUT)
}

#[test]
fn text_output_says_registration_successful() {
    let cluster = Cluster::start(1);
    // With stdin empty the client registers, has nothing to send, deregisters and exits 0.
    let done = register_once(&cluster, "alice", Some(cluster.addr(0)), &[]);
    assert_eq!(
        done.code(),
        Some(0),
        "a client with nothing to send should exit 0; stderr: {:?}",
        done.stderr
    );
    // Its first stdout line is `Registration successful!`, possibly followed by details
    // after a space.
    let first = done.stdout.lines().next().unwrap_or_default();
    assert!(
        first == "Registration successful!" || first.starts_with("Registration successful! "),
        "the first stdout line should announce the registration; stdout:\n{}",
        done.stdout
    );
}

#[test]
fn json_registered_event_names_client_and_server() {
    let cluster = Cluster::start(2);
    let alice = Client::start("alice", cluster.coordinator());
    let event = alice.expect_event("a `registered` event", TIMEOUT, |v| {
        v["event"] == "registered"
    });
    // The event carries the name the client asked for ...
    assert_eq!(event["name"], "alice", "registered event: {event}");
    // ... and the server it was placed on, as `host:port`, one of the cluster's servers.
    let server = event["server"].as_str().unwrap_or_default();
    assert!(
        cluster.addrs().iter().any(|a| a == server),
        "`server` should be one of {:?}: {event}",
        cluster.addrs()
    );

    // With --server, the client starts on exactly that server.
    let bob = Client::start_on("bob", cluster.coordinator(), cluster.addr(1));
    assert_eq!(bob.wait_registered(), cluster.addr(1));
}

#[test]
fn name_in_use_is_refused_with_exit_1() {
    let cluster = Cluster::start(1);
    let alice = Client::start_on("alice", cluster.coordinator(), cluster.addr(0));
    alice.wait_registered();

    // A second `alice` on the same server, while the first is registered, is refused:
    // exit status 1 and exactly one stderr line that names the name and says it is taken.
    let done = register_once(&cluster, "alice", Some(cluster.addr(0)), &[]);
    assert_eq!(
        done.code(),
        Some(1),
        "a taken name should exit 1; stderr: {:?}",
        done.stderr
    );
    let lines = done.stderr_lines();
    assert_eq!(lines.len(), 1, "one stderr line expected, got {lines:?}");
    assert!(
        lines[0].contains("alice") && lines[0].contains("taken"),
        "the stderr line should say that the name alice is taken: {:?}",
        lines[0]
    );
    // Nothing was printed as if it had registered.
    assert!(
        !done.stdout.contains("Registration successful!"),
        "a refused client must not announce a registration; stdout: {:?}",
        done.stdout
    );
}

/// Names are unique across the cluster, not only per server: a client that asks the
/// coordinator for a server, under a name registered on another server, is sent to that
/// server and refused there. Once the owner has left, the name is free at once.
#[test]
fn a_name_live_on_another_server_is_refused_and_free_again_once_its_owner_leaves() {
    let cluster = Cluster::start(2);
    let mut alice = Client::start_on("alice", cluster.coordinator(), cluster.addr(0));
    alice.wait_registered();
    // The coordinator learns the name from server 0's next heartbeat.
    cluster.wait_status("alice listed on server 0", TIMEOUT, |status| {
        entry_clients(&status_entry(status, cluster.addr(0))).contains(&"alice".to_string())
    });

    // Server 1 has nobody, so a name-blind choice would send the newcomer there.
    let done = register_once(&cluster, "alice", None, &[]);
    assert_eq!(done.code(), Some(1), "stderr: {:?}", done.stderr);
    assert!(
        done.stderr_lines().iter().any(|l| l.contains("taken")),
        "stderr should say the name is taken: {:?}",
        done.stderr
    );

    alice.close_stdin();
    assert!(alice.finish(TIMEOUT).success());
    let done = register_once(&cluster, "alice", None, &[]);
    assert_eq!(
        done.code(),
        Some(0),
        "a name whose owner left is free at once; stderr: {:?}",
        done.stderr
    );
}

#[test]
fn invalid_name_is_refused_with_exit_1() {
    let cluster = Cluster::start(1);
    for bad in ["../x", "a b", ".hidden"] {
        // A name outside the allowed alphabet is refused: exit 1, one line naming the reason.
        let done = register_once(&cluster, bad, Some(cluster.addr(0)), &[]);
        assert_eq!(
            done.code(),
            Some(1),
            "name {bad:?} should be refused with exit 1; stderr: {:?}",
            done.stderr
        );
        let lines = done.stderr_lines();
        assert_eq!(
            lines.len(),
            1,
            "name {bad:?}: one stderr line expected, got {lines:?}"
        );
        assert!(
            lines[0].contains("name"),
            "name {bad:?}: the stderr line should say the name is the problem: {:?}",
            lines[0]
        );
    }
}

#[test]
fn status_lists_clients_under_their_servers() {
    let cluster = Cluster::start(2);
    let (s0, s1) = (cluster.addr(0), cluster.addr(1));
    let clients = [
        Client::start_on("alice", cluster.coordinator(), s0),
        Client::start_on("bob", cluster.coordinator(), s0),
        Client::start_on("carol", cluster.coordinator(), s1),
    ];
    for client in &clients {
        client.wait_registered();
    }
    // Within a few heartbeats the coordinator's status lists alice and bob under the first
    // server and carol under the second, both alive.
    let status = cluster.wait_status(
        "alice, bob on server 0 and carol on server 1",
        TIMEOUT,
        |st| {
            status_servers(st).len() == 2
                && entry_clients(&status_entry(st, s0)) == ["alice", "bob"]
                && entry_clients(&status_entry(st, s1)) == ["carol"]
        },
    );
    for addr in [s0, s1] {
        assert_eq!(
            status_entry(&status, addr)["alive"],
            true,
            "server {addr} should be alive: {status}"
        );
    }
}

/// Asserts that a registration was refused because the name is taken: exit 1, one line.
fn assert_taken(done: &common::Finished, name: &str) {
    assert_eq!(done.code(), Some(1), "stderr: {:?}", done.stderr);
    let lines = done.stderr_lines();
    assert_eq!(lines.len(), 1, "one stderr line expected, got {lines:?}");
    assert!(
        lines[0].contains(name) && lines[0].contains("taken"),
        "{:?}",
        lines[0]
    );
}

/// `--server` does not go around the cluster-wide rule: the server claims the name at the
/// coordinator, which knows it is registered elsewhere.
#[test]
fn a_name_registered_elsewhere_is_refused_through_server_flag_too() {
    let cluster = Cluster::start(2);
    let carol = Client::start_on("carol", cluster.coordinator(), cluster.addr(0));
    carol.wait_registered();
    let done = register_once(&cluster, "carol", Some(cluster.addr(1)), &[]);
    assert_taken(&done, "carol");
}

/// Sends one `Claim` for `name` on behalf of `server` to the coordinator at `coordinator`,
/// as a server does before it registers a client, and returns the holder it answers.
fn claim(coordinator: &str, name: &str, server: &str) -> String {
    let mut stream = TcpStream::connect(coordinator).expect("connect to the coordinator");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let hello = Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Claim,
        proof: [0; 32],
    };
    let claim = Message::Claim {
        name: name.into(),
        server: server.into(),
    };
    write_message(&mut stream, &hello).expect("write Hello");
    write_message(&mut stream, &claim).expect("write Claim");
    let _challenge = read_message(&mut stream).expect("the challenge");
    match read_message(&mut stream).expect("the reply") {
        Some(Message::ClaimReply { holder }) => holder,
        other => panic!("expected ClaimReply, got {other:?}"),
    }
}

/// Two registrations of one name on two servers within one heartbeat interval: no heartbeat
/// lists the name yet, but the first server's claim does. The test plays that first server
/// (its claims are what the server would send), renewing the claim until the second
/// registration is over, so that a slow machine cannot let it expire meanwhile.
#[test]
fn a_name_being_registered_on_one_server_is_refused_on_another() {
    let cluster = Cluster::start(2);
    let (first, second) = (cluster.addr(1), cluster.addr(0));
    let coordinator = cluster.coordinator();
    assert_eq!(claim(coordinator, "dave", first), "");
    let done = AtomicBool::new(false);
    let refused = thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                assert_eq!(claim(coordinator, "dave", first), "");
                thread::sleep(Duration::from_millis(100)); // a renewal, not a wait for state
            }
        });
        let refused = register_once(&cluster, "dave", Some(second), &[]);
        done.store(true, Ordering::Relaxed);
        refused
    });
    assert_taken(&refused, "dave");
    assert!(
        refused.stderr_lines()[0].contains(first),
        "names where: {:?}",
        refused.stderr
    );
}

/// Where uniqueness stops: a server that cannot reach the coordinator registers new names
/// anyway (clients must still be able to join), checking only its own, and says so.
#[test]
fn without_the_coordinator_a_server_registers_names_and_logs_why() {
    let mut cluster = Cluster::start(1);
    cluster.kill_coordinator();
    let done = register_once(&cluster, "erin", Some(cluster.addr(0)), &[]);
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    let line = cluster
        .server(0)
        .wait_for_stderr("name not checked across the cluster name=erin", TIMEOUT);
    assert!(line.contains("unique only on this server"), "{line}");
}
