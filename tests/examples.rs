//! The examples in `examples/` run as a learner runs them, and print the lines that carry
//! their lesson: the connection over the limit refused with its reason, a cloned `Receiver`
//! delivering each message to one consumer only, a writer thread only for the client whose
//! socket is full, the silent sender declared dead, every stopped thread joined.
//!
//! **Where the binaries come from.** `cargo test` builds every example before it runs any
//! test, into `<target>/<profile>/examples/<name>`; this test binary lives in
//! `<target>/<profile>/deps/`, so the examples are found from its own path. A run narrowed
//! to this file (`cargo test --test examples`) builds no examples, so an example that is
//! missing or older than its source is first built with `cargo build --offline` for the
//! same profile and target directory.
//!
//! **Threads.** Each run reads the example's stdout on a `stdout-<name>` thread, which ends
//! at end of file, when the example exits or is killed.
//!
//! **When an example fails.** Each runs under the harness's guard ([`common::Proc`]), which
//! kills it when the test ends, pass or fail, and with a deadline ([`common::TIMEOUT`]) for
//! something that finishes in a second; a failure message shows everything it printed.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::channel;
use std::thread;

use common::{Proc, TIMEOUT};

#[test]
fn accept_loop_refuses_the_connection_over_the_limit_with_its_reason() {
    let out = run_example("accept_loop");
    // Each of the first two clients is served by a thread of its own, named after its peer.
    line_with(&out, "client 1 got: served by thread conn-127.0.0.1:");
    line_with(&out, "client 2 got: served by thread conn-127.0.0.1:");
    // The third is refused by the accept thread, told why, and closed.
    line_with(&out, "[accept] 2 open: refusing 127.0.0.1:");
    line_with(
        &out,
        "client 3 got: refused: too many connections (2 open); try again later",
    );
    line_with(&out, "client 3 then got: end of stream");
    // When the first leaves, its place is free again.
    line_with(&out, "client 1 said bye, then got: end of stream");
    line_with(&out, "client 4 got: served by thread conn-127.0.0.1:");
}

#[test]
fn a_cloned_receiver_gives_each_message_to_one_consumer_and_outboxes_give_it_to_all() {
    let out = run_example("broadcast");
    let (wrong, right) = out
        .split_once("right:")
        .unwrap_or_else(|| panic!("no `right:` section in:\n{out}"));
    // Wrong: bob and carol share the eight messages; between them each arrives exactly once.
    let mut shared = [got(wrong, "bob"), got(wrong, "carol")].concat();
    shared.sort_unstable();
    assert_eq!(shared, (1..=8).collect::<Vec<_>>(), "in:\n{out}");
    line_with(wrong, "WRONG: 8 messages made 8 deliveries, not 16");
    // Right: the readers get everything; the one that stopped reading is dropped when its
    // outbox is full, after the four messages the outbox holds.
    assert_eq!(got(right, "bob"), (1..=8).collect::<Vec<_>>(), "in:\n{out}");
    assert_eq!(
        got(right, "carol"),
        (1..=8).collect::<Vec<_>>(),
        "in:\n{out}"
    );
    line_with(right, "message 5: dave's outbox is full: dropped");
    line_with(right, "dave took nothing; his outbox held [1, 2, 3, 4]");
}

#[test]
fn writing_through_needs_a_writer_thread_only_for_the_client_whose_socket_is_full() {
    let out = run_example("write_through");
    let (v1, v2) = out
        .split_once("v2:")
        .unwrap_or_else(|| panic!("no `v2:` section in:\n{out}"));
    // Both versions deliver every message to every client, once and in order; dave, whose
    // socket fills, too: the bytes his socket did not take went with the pen.
    for version in [v1, v2] {
        for name in ["bob", "carol", "dave"] {
            let all: Vec<u32> = (1..=8).collect();
            assert_eq!(got(version, name), all, "{name} in:\n{out}");
        }
    }
    // A writer per client, for good, and every message handed to each of them ...
    line_with(
        v1,
        "v1: writer threads started: 3 (bob, carol, dave); messages handed to them: 24",
    );
    // ... against writers only for dave, whose socket filled: the publisher wrote the rest
    // itself. (Usually one: when his socket fills again, the pen goes back to the writer
    // that lingers. Not asserted: on a loaded machine that writer may be gone by then, and
    // a second one starts, rightly.)
    let started = line_with(v2, "v2: writer threads started: ");
    let names = started
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(names, _)| names)
        .unwrap_or_else(|| panic!("no names in {started:?}"));
    assert!(
        !names.is_empty() && names.split(", ").all(|name| name == "dave"),
        "writers for others than dave, or for nobody: {started:?}\nin:\n{out}"
    );
    line_with(v2, "dave's socket is full: the pen goes with");
}

#[test]
fn the_watchdog_declares_the_silent_sender_dead_after_the_timeout() {
    let out = run_example("watchdog");
    // The pure decision: exactly the timeout is alive, a millisecond more is dead.
    line_with(&out, "check: silent for 300 ms: dead=false");
    line_with(&out, "check: silent for 301 ms: dead=true");
    // Five beats, silence, then the declaration, never before the timeout has passed.
    line_with(&out, "heartbeat 5");
    let at = |pattern| out.lines().position(|line| line.contains(pattern));
    let (Some(silent_at), Some(dead_at)) = (at("going silent"), at("declared dead")) else {
        panic!("no silence or no declaration in:\n{out}");
    };
    assert!(
        silent_at < dead_at,
        "declared dead while still beating:\n{out}"
    );
    let dead = line_with(&out, "declared dead");
    let silent_ms: u64 = dead
        .split("silent for ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no silence in {dead:?}"));
    assert!(silent_ms > 300, "declared dead too early: {dead:?}");
    line_with(&out, "stopped: heartbeat joined=true, watchdog joined=true");
}

#[test]
fn shutdown_wakes_every_blocked_thread_and_joins_it() {
    let out = run_example("shutdown");
    // The channel waiters woke with Disconnected, though nothing was ever sent.
    line_with(&out, "joined ticker: select! woke with Err(RecvError)");
    line_with(&out, "joined waiter: recv() returned Err(RecvError)");
    // accept() was woken by the self-connection, and then saw the flag.
    line_with(&out, "joined accept: woken by a connection, saw `stopping`");
    // The reader saw end of stream once its socket was shut down.
    let conn = line_with(&out, "joined conn-127.0.0.1:");
    assert!(conn.ends_with("read() returned end of stream"), "{conn:?}");
    line_with(&out, "every thread joined");
}

/// Runs the example `name` to its end and returns its stdout.
///
/// # Panics
/// When it does not exit within [`TIMEOUT`] (it is killed), or exits with a failure.
fn run_example(name: &str) -> String {
    let mut cmd = Command::new(example_binary(name));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut example = Proc::spawn(format!("example {name}"), cmd);
    let mut stdout = example
        .take_stdout()
        .expect("stdout was set to piped above");
    // Not a scoped thread: a scope would wait for it before a failed wait could unwind and
    // drop the guard, and it waits for the example to end. Dropping `example` kills the
    // example, which closes the pipe and ends this thread.
    let (text_tx, text_rx) = channel();
    thread::Builder::new()
        .name(format!("stdout-{name}"))
        .spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            let _ = text_tx.send(text);
        })
        .expect("cannot start a stdout reader");
    let status = example.wait_exit(TIMEOUT);
    let text = text_rx
        .recv_timeout(TIMEOUT)
        .expect("the example's stdout closes when it exits");
    assert!(
        status.success(),
        "example {name} failed: {status}\nstdout:\n{text}\nstderr:\n{}",
        example.stderr_report()
    );
    text
}

/// The first line of `out` that contains `pattern`.
///
/// # Panics
/// When there is none, with the whole output.
fn line_with<'a>(out: &'a str, pattern: &str) -> &'a str {
    out.lines()
        .find(|line| line.contains(pattern))
        .unwrap_or_else(|| panic!("no line with {pattern:?} in:\n{out}"))
}

/// The numbers in a `<name> got [1, 2, 3]` line of the broadcast or write-through example.
fn got(out: &str, name: &str) -> Vec<u32> {
    let line = line_with(out, &format!("{name} got ["));
    let list = line
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .unwrap_or_else(|| panic!("no list in {line:?}"));
    list.split(", ")
        .filter(|n| !n.is_empty())
        .map(|n| n.parse().unwrap_or_else(|_| panic!("{n:?} in {line:?}")))
        .collect()
}

/// The path of the compiled example `name`, built first if it is missing or stale.
///
/// # Panics
/// When this test binary is not where cargo puts test binaries, or the build fails.
fn example_binary(name: &str) -> PathBuf {
    let test_binary = std::env::current_exe().expect("the path of this test binary");
    // <target>/<profile>/deps/examples-<hash>  ->  <target>/<profile>/examples/<name>
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in <target>/<profile>/deps");
    let binary = profile_dir.join("examples").join(name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.rs"));
    let modified = |path: &Path| path.metadata().and_then(|m| m.modified()).ok();
    if modified(&binary).is_none() || modified(&binary) < modified(&source) {
        build_example(name, profile_dir);
    }
    binary
}

/// Builds the example `name` with the profile and target directory of `profile_dir`,
/// offline: every dependency is already there, since this test was built.
fn build_example(name: &str, profile_dir: &Path) {
    // One build at a time: the tests run in parallel, and cargo would only queue them.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _building = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    let profile = match profile_dir.file_name().and_then(|p| p.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let target_dir = profile_dir
        .parent()
        .expect("a profile dir is inside a target dir");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--offline", "--quiet", "--example", name])
        .args(["--profile", profile, "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build example {name}: {e}"));
    assert!(status.success(), "cargo build --example {name}: {status}");
}
