//! The client's input through the real binary: every stdin line is one message, and a line
//! that cannot be sent costs only itself.
//!
//! A line that is not UTF-8, one just over the payload cap, one of megabytes, an unknown or
//! incomplete `/` command: each gets one `error` event (one stderr line in text mode), every
//! other line is delivered once and in order, and at the end of input the client exits 1,
//! its last stderr line saying how many it refused (a script can tell).
//! `--send-file` naming a missing file ends the client with exit status 1 and one line,
//! before it registers.
//!
//! Each test ends its input with the line `end`: a receiver that has `end` has everything
//! the sender sent before it (a sender's messages arrive in order), so the check of "exactly
//! these, once, in order" needs no sleep.

mod common;

use std::io::{Read, Write};
use std::process::{ExitStatus, Stdio};
use std::thread;

use common::{Client, Cluster, Proc, TIMEOUT, TempDir, dsys, run_dsys, unused_addr};
use dsys::protocol::MAX_PAYLOAD_LEN;
use serde_json::Value;

/// What a client that ran to the end of its input left behind.
struct Ran {
    status: ExitStatus,
    stdout: String,
    /// Its stderr; the client runs with `RUST_LOG=off`, so this is what the user sees.
    stderr: Vec<String>,
}

impl Ran {
    /// Its stdout as JSON events (for `--output json`).
    fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    }

    /// The messages of its non-fatal `error` events: the refusals.
    fn errors(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "error" && e["fatal"] == false)
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// Runs `dsys client NAME` on server 0 of `cluster` with `input` on its stdin and logs
/// off, and waits until it exits by itself (the end of input).
fn run_client(cluster: &Cluster, name: &str, output: &str, input: &[u8]) -> Ran {
    let downloads = TempDir::new(&format!("input-{name}"));
    let mut cmd = dsys();
    cmd.args(["client", "--register", "--name", name, "--output", output])
        .args([
            "--coordinator",
            cluster.coordinator(),
            "--server",
            cluster.addr(0),
        ])
        .arg("--download-dir")
        .arg(downloads.path())
        .env("RUST_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut proc = Proc::spawn(format!("client {name}"), cmd);
    let mut stdin = proc.take_stdin().expect("stdin was set to piped above");
    let mut stdout = proc.take_stdout().expect("stdout was set to piped above");
    // Input and output go at once, each on its own scoped thread: a client that reads a
    // long line while its stdout fills must find both ends drained.
    thread::scope(|s| {
        s.spawn(move || {
            // A client that has exited early makes this fail; its exit status says why.
            let _ = stdin.write_all(input);
        });
        let reader = s.spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let status = proc.wait_exit(TIMEOUT);
        Ran {
            status,
            stdout: reader.join().expect("the stdout reader does not panic"),
            stderr: proc.stderr_to_end(TIMEOUT),
        }
    })
}

/// Waits until `receiver` has `sender`'s line `end`, then asserts that everything it got
/// from `sender` is `texts`, numbered 1, 2, 3, ... (once each, in order).
fn assert_received_exactly(receiver: &Client, sender: &str, texts: &[&str]) {
    receiver.expect_event(&format!("{sender}'s line `end`"), TIMEOUT, |v| {
        v["event"] == "message" && v["from"] == sender && v["text"] == "end"
    });
    let got: Vec<(u64, String)> = receiver
        .events_so_far()
        .iter()
        .filter(|e| e["event"] == "message" && e["from"] == sender)
        .map(|e| {
            let text = e["text"].as_str().unwrap_or_default();
            (e["seq"].as_u64().unwrap_or(0), text.to_string())
        })
        .collect();
    let expected: Vec<(u64, String)> = (1..).zip(texts.iter().map(|t| t.to_string())).collect();
    let short = |list: &[(u64, String)]| -> Vec<(u64, String)> {
        let cut = |t: &String| t.chars().take(20).collect::<String>();
        list.iter().map(|(n, t)| (*n, cut(t))).collect()
    };
    assert!(
        got == expected,
        "{} should have {sender}'s lines {:?}, numbered from 1; it has {:?}",
        receiver.name,
        short(&expected),
        short(&got)
    );
}

/// The end of a client that refused `refused` lines: exit status 1, its last stderr line
/// counting them, and in JSON mode a last event that is a fatal `error` saying the same.
fn assert_exit_1_after_refusing(ran: &Ran, what: &str, refused: usize) {
    assert_eq!(
        ran.status.code(),
        Some(1),
        "{what}: a client that refused a line should exit 1 at the end of input, got {}; \
         stderr: {:?}",
        ran.status,
        ran.stderr
    );
    let counted = format!("refused {refused} of the lines and files");
    assert!(
        ran.stderr.last().is_some_and(|l| l.contains(&counted)),
        "{what}: the last stderr line should say {counted:?}: {:?}",
        ran.stderr
    );
    if ran.stdout.starts_with('{') {
        let events = ran.events();
        let last = events.last().expect("at least the registration");
        assert!(
            last["event"] == "error"
                && last["fatal"] == true
                && last["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&counted)),
            "{what}: the last JSON event should be the fatal error: {last}"
        );
    }
    assert!(
        !ran.stderr.iter().any(|l| l.contains("panicked")),
        "{what}: the client panicked: {:?}",
        ran.stderr
    );
}

/// A cluster of one server and a receiver, bob, registered on it.
fn cluster_with_receiver() -> (Cluster, Client) {
    let cluster = Cluster::start(1);
    let bob = Client::start_on("bob", cluster.coordinator(), cluster.addr(0));
    bob.wait_registered();
    (cluster, bob)
}

#[test]
fn a_line_that_is_not_utf8_is_refused_and_the_next_lines_go_on() {
    let (cluster, bob) = cluster_with_receiver();
    let ran = run_client(&cluster, "alice", "json", b"a\n\xff\xfe\nb\nend\n");
    assert_exit_1_after_refusing(&ran, "a non-UTF-8 line", 1);
    // One error, about line 2, and the three other lines delivered, numbered 1 to 3.
    let errors = ran.errors();
    assert_eq!(errors.len(), 1, "one error event expected: {errors:?}");
    assert!(
        errors[0].contains("line 2") && errors[0].contains("UTF-8"),
        "{errors:?}"
    );
    assert_received_exactly(&bob, "alice", &["a", "b", "end"]);

    // In text mode the error is one line on stderr, and stdout is the registration only.
    let ran = run_client(&cluster, "carol", "text", b"c\n\xc3\nend\n");
    assert_exit_1_after_refusing(&ran, "a non-UTF-8 line, text mode", 1);
    assert_eq!(
        ran.stderr.len(),
        2,
        "the refusal and the count: {:?}",
        ran.stderr
    );
    assert!(
        ran.stderr[0].starts_with("error: line 2") && ran.stderr[0].contains("UTF-8"),
        "{:?}",
        ran.stderr
    );
    assert!(
        ran.stdout.starts_with("Registration successful!") && ran.stdout.lines().count() == 1,
        "{:?}",
        ran.stdout
    );
    assert_received_exactly(&bob, "carol", &["c", "end"]);
}

#[test]
fn a_line_just_over_the_payload_cap_is_refused_and_one_at_the_cap_is_sent() {
    let (cluster, bob) = cluster_with_receiver();
    let at_cap = "x".repeat(MAX_PAYLOAD_LEN);
    let over = "y".repeat(MAX_PAYLOAD_LEN + 1);
    let input = format!("a\n{at_cap}\n{over}\nb\nend\n");
    let ran = run_client(&cluster, "alice", "json", input.as_bytes());
    assert_exit_1_after_refusing(&ran, "a line just over the cap", 1);
    // The refusal says how long the line was and what the limit is.
    let errors = ran.errors();
    assert_eq!(errors.len(), 1, "one error event expected: {errors:?}");
    for needle in [
        "line 3".to_string(),
        (MAX_PAYLOAD_LEN + 1).to_string(),
        MAX_PAYLOAD_LEN.to_string(),
    ] {
        assert!(errors[0].contains(&needle), "{needle:?} in {errors:?}");
    }
    assert_received_exactly(&bob, "alice", &["a", &at_cap, "b", "end"]);
    // It never reached the server: nothing was closed for being too large.
    assert!(
        !cluster
            .server(0)
            .stderr_so_far()
            .iter()
            .any(|l| l.contains("too large")),
        "the server saw the line: {:?}",
        cluster.server(0).stderr_so_far()
    );
}

#[test]
fn a_line_of_megabytes_is_refused_without_a_crash() {
    let (cluster, bob) = cluster_with_receiver();
    let huge = "x".repeat(2 * 1024 * 1024);
    let input = format!("a\n{huge}\nb\nend\n");
    let ran = run_client(&cluster, "alice", "text", input.as_bytes());
    assert_exit_1_after_refusing(&ran, "a 2 MiB line", 1);
    assert_eq!(
        ran.stderr.len(),
        2,
        "the refusal and the count: {:?}",
        ran.stderr
    );
    assert!(
        ran.stderr[0].contains(&(2 * 1024 * 1024).to_string()),
        "{:?}",
        ran.stderr
    );
    assert_received_exactly(&bob, "alice", &["a", "b", "end"]);
}

/// A line of 64 MiB costs the client about one message of memory, not the line.
#[test]
fn reading_a_huge_line_takes_bounded_memory() {
    const HUGE: usize = 64 * 1024 * 1024;
    // Well above what the client needs (its windows are empty), well below the line.
    const BOUND: u64 = 32 * 1024 * 1024;
    let (cluster, bob) = cluster_with_receiver();
    let mut alice = Client::start_on("alice", cluster.coordinator(), cluster.addr(0));
    alice.wait_registered();
    let mut stdin = alice.take_stdin();
    // Written from a scoped thread, which hands stdin back open: the client must still be
    // running when its peak memory is read.
    let stdin = thread::scope(|s| {
        let writer = s.spawn(move || {
            let chunk = vec![b'z'; 1024 * 1024];
            for _ in 0..HUGE / chunk.len() {
                stdin.write_all(&chunk).expect("the client reads its stdin");
            }
            stdin
                .write_all(b"\nend\n")
                .expect("the client reads its stdin");
            stdin
        });
        alice.expect_event("the error for the huge line", TIMEOUT, |v| {
            v["event"] == "error"
        });
        writer.join().expect("the writer does not panic")
    });
    assert_received_exactly(&bob, "alice", &["end"]);
    let peak = alice.proc.peak_rss_bytes();
    drop(stdin);
    assert!(
        peak < BOUND,
        "reading a {HUGE}-byte line took the client {peak} bytes at its peak"
    );
    assert_eq!(alice.finish(TIMEOUT).code(), Some(1), "it refused the line");
}

#[test]
fn slash_commands_that_are_unknown_or_incomplete_are_refused_and_double_slash_sends_one() {
    let (cluster, bob) = cluster_with_receiver();
    let ran = run_client(
        &cluster,
        "alice",
        "json",
        b"/file\n/help\n/nope x\n//x\nend\n",
    );
    assert_exit_1_after_refusing(&ran, "slash commands", 2);
    // `/file` without a path: an error that gives the usage; `/nope`: an error that says
    // how to send such a line.
    let errors = ran.errors();
    assert_eq!(errors.len(), 2, "two error events expected: {errors:?}");
    assert!(errors[0].contains("/file PATH"), "{errors:?}");
    assert!(
        errors[1].contains("/nope") && errors[1].contains("//nope"),
        "{errors:?}"
    );
    // `/help` prints the help on stderr (stdout stays events) and sends nothing.
    assert!(
        ran.stderr.iter().any(|l| l.contains("/file PATH")),
        "the help on stderr: {:?}",
        ran.stderr
    );
    // Only `//x` went out, as `/x`, then `end`.
    assert_received_exactly(&bob, "alice", &["/x", "end"]);
}

#[test]
fn a_missing_send_file_exits_1_naming_it_before_registering() {
    let files = TempDir::new("send-file-check");
    let present = files.path().join("present.txt");
    std::fs::write(&present, b"here").expect("write a temp file");
    let missing = files.path().join("missing.txt");
    let (present, missing) = (present.to_str().unwrap(), missing.to_str().unwrap());
    // Nothing listens at the coordinator's address: the check comes before any connection,
    // so the line is about the file, not about the coordinator.
    let coordinator = unused_addr();
    let args = [
        "client",
        "--register",
        "--coordinator",
        &coordinator,
        "--download-dir",
        files.path().to_str().unwrap(),
        "--send-file",
        present,
        "--send-file",
        missing,
    ];
    let done = run_dsys(&args, &[("RUST_LOG", "off")], TIMEOUT);
    assert_eq!(done.code(), Some(1), "stderr: {:?}", done.stderr);
    let lines = done.stderr_lines();
    assert_eq!(lines.len(), 1, "one stderr line: {lines:?}");
    assert!(lines[0].contains(missing), "{lines:?}");
    assert!(
        !done.stdout.contains("Registration successful!"),
        "{:?}",
        done.stdout
    );
}
