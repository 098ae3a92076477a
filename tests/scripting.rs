//! The client as a script drives it (`CONTRACT.md`, "Client"): a client that only listens,
//! exit statuses that say whether everything given was sent, an `acked` event when the
//! cluster holds a message, a fatal error as the last JSON event, and a warning when a
//! client runs on a server with no coordinator behind it.
//!
//! Each test runs the real binary and asserts what the script sees: stdout events, the exit
//! status, the last stderr line.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{
    Client, Cluster, Proc, TIMEOUT, TempDir, dsys, run_dsys, start_server_with, unused_addr,
};
use serde_json::Value;

/// Starts a JSON client on server `server` of `cluster` that only listens (`--listen`,
/// plus `extra`), with its stdin closed at once: a listener never reads it.
fn listener(cluster: &Cluster, name: &str, server: usize, extra: &[&str]) -> Client {
    let args: Vec<&str> = ["--listen"].iter().chain(extra).copied().collect();
    let mut client = Client::start_with(
        name,
        cluster.coordinator(),
        Some(cluster.addr(server)),
        &args,
    );
    client.close_stdin();
    client.wait_registered();
    client
}

#[test]
fn a_listener_with_stdin_closed_receives_fails_over_and_exits_0_on_sigterm() {
    let mut cluster = Cluster::start(2);
    let mut ears = listener(&cluster, "ears", 0, &[]);
    let mut alice = Client::start_on("alice", cluster.coordinator(), cluster.addr(1));
    alice.wait_registered();

    alice.send_line("before");
    assert_eq!(ears.texts_from("alice", 1), ["before"]);

    cluster.kill_server(0);
    let moved = ears.expect_event("a failover to the live server", TIMEOUT, |v| {
        v["event"] == "failover"
    });
    assert_eq!(moved["to"].as_str(), Some(cluster.addr(1)), "{moved}");
    alice.send_line("after");
    assert_eq!(ears.texts_from("alice", 1), ["after"]);

    ears.proc.terminate();
    let status = ears.finish(TIMEOUT);
    assert!(status.success(), "SIGTERM ends a listener with 0: {status}");
    let seqs: Vec<u64> = ears
        .events_so_far()
        .iter()
        .filter(|e| e["event"] == "message")
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert_eq!(seqs, [1, 2], "each message once, in order");
    assert_eq!(alice.finish(TIMEOUT).code(), Some(0));
}

#[test]
fn a_listener_with_count_leaves_by_itself_after_that_many_messages() {
    let cluster = Cluster::start(1);
    let mut ears = listener(&cluster, "ears", 0, &["--count", "2"]);
    let mut alice = Client::start_on("alice", cluster.coordinator(), cluster.addr(0));
    alice.wait_registered();
    for text in ["one", "two", "three"] {
        alice.send_line(text);
    }
    let status = ears.proc.wait_exit(TIMEOUT);
    assert!(status.success(), "a listener that got its count exits 0");
    ears.finish(TIMEOUT);
    let texts: Vec<Value> = ears
        .events_so_far()
        .into_iter()
        .filter(|e| e["event"] == "message")
        .map(|e| e["text"].clone())
        .collect();
    assert_eq!(texts, ["one", "two"], "exactly --count messages are shown");
    assert_eq!(alice.finish(TIMEOUT).code(), Some(0));
}

#[test]
fn a_listener_cannot_be_given_anything_to_send() {
    for flag in ["--send", "--send-file"] {
        let done = run_dsys(&["client", "--listen", flag, "x"], &[], TIMEOUT);
        assert_eq!(
            done.code(),
            Some(2),
            "--listen with {flag} is a usage error"
        );
    }
    let done = run_dsys(&["client", "--count", "3"], &[], TIMEOUT);
    assert_eq!(done.code(), Some(2), "--count needs --listen");
}

#[test]
fn a_refused_line_makes_the_exit_status_1_after_the_rest_is_delivered() {
    let cluster = Cluster::start(1);
    let bob = Client::start_on("bob", cluster.coordinator(), cluster.addr(0));
    bob.wait_registered();
    let downloads = TempDir::new("refusing");
    let mut cmd = dsys();
    cmd.args([
        "client",
        "--name",
        "alice",
        "--coordinator",
        cluster.coordinator(),
    ])
    .args(["--server", cluster.addr(0), "--download-dir"])
    .arg(downloads.path())
    .env("RUST_LOG", "off")
    .stdin(Stdio::piped())
    .stdout(Stdio::null());
    let mut alice = Proc::spawn("client alice", cmd);
    let mut stdin = alice.take_stdin().expect("stdin was set to piped above");
    stdin
        .write_all(b"/file /no/such/file\n/bogus\nok after\n")
        .expect("the client reads its stdin");
    drop(stdin);

    assert_eq!(alice.wait_exit(TIMEOUT).code(), Some(1));
    assert_eq!(bob.texts_from("alice", 1), ["ok after"]);
    let stderr = alice.stderr_to_end(TIMEOUT);
    let lines: Vec<&String> = stderr.iter().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("error: line 1: ")),
        "the /file refusal names its line: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("error: line 2: ")),
        "{lines:?}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("refused 2 of the lines and files")),
        "the last stderr line counts the refusals: {lines:?}"
    );
}

#[test]
fn acked_events_count_up_to_the_last_message_sent() {
    let cluster = Cluster::start(2);
    let files = TempDir::new("acked");
    let file = files.path().join("note.txt");
    std::fs::write(&file, b"a file is a message too").expect("write the file");
    let path = file.to_str().expect("a UTF-8 temporary path");
    let mut alice = Client::start_with(
        "alice",
        cluster.coordinator(),
        Some(cluster.addr(0)),
        &["--send-file", path, "--send", "one", "--send", "two"],
    );
    alice.wait_registered();
    let status = alice.finish(TIMEOUT);
    assert!(status.success(), "{status}");
    let acked: Vec<u64> = alice
        .events_so_far()
        .iter()
        .filter(|e| e["event"] == "acked")
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert!(
        acked.windows(2).all(|w| w[0] < w[1]),
        "acks only go up: {acked:?}"
    );
    // Texts are sent before the file's last chunk, so the file is number 3: all three are
    // acknowledged before the client leaves.
    assert_eq!(
        acked.last(),
        Some(&3),
        "every message acknowledged: {acked:?}"
    );
}

#[test]
fn a_fatal_error_is_the_last_json_event_and_exit_status_1() {
    let nowhere = unused_addr();
    let done = run_dsys(
        &["client", "--output", "json", "--coordinator", &nowhere],
        &[],
        TIMEOUT,
    );
    assert_eq!(done.code(), Some(1));
    let events: Vec<Value> = done
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let [event] = events.as_slice() else {
        panic!("one event expected: {events:?}");
    };
    assert_eq!(event["event"], "error");
    assert_eq!(event["fatal"], true);
    let message = event["message"].as_str().unwrap_or_default();
    assert!(message.contains(&nowhere), "names the coordinator: {event}");
    assert!(
        done.stderr_lines().iter().any(|l| l.contains(&nowhere)),
        "stderr says it too: {:?}",
        done.stderr
    );
}

#[test]
fn a_client_on_a_server_without_a_coordinator_is_warned() {
    let nowhere = unused_addr();
    let (_server, addr) = start_server_with(&nowhere, 100, &[]);
    let mut lone = Client::start_on("lone", &nowhere, &addr);
    lone.wait_registered();
    let warning = lone.expect_event("a warning about the coordinator", TIMEOUT, |v| {
        v["event"] == "warning"
    });
    let message = warning["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&nowhere) && message.contains("no failover"),
        "{warning}"
    );
    assert!(lone.finish(TIMEOUT).success());

    // In text mode it is a line on stderr.
    let done = run_dsys(
        &[
            "client",
            "--name",
            "lone2",
            "--server",
            &addr,
            "--coordinator",
            &nowhere,
        ],
        &[("RUST_LOG", "off")],
        TIMEOUT,
    );
    assert_eq!(done.code(), Some(0));
    assert!(
        done.stderr_lines()
            .iter()
            .any(|l| l.starts_with("warning: ") && l.contains("no failover")),
        "{:?}",
        done.stderr
    );
}
